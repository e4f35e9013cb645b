//! A tiled (512 x 512), pyramidal OME-TIFF written as rows stream in, in bounded memory.
//!
//! Every level keeps only the rows of the tile row it is filling (512 rows of that level); when a tile row
//! is complete its tiles are Deflate-compressed (8-bit samples with the horizontal predictor) and written,
//! and every pair of rows of a level is reduced ([`crate::pyramid`]) into one row of the next level as it
//! arrives. [`super::RowSink`] runs all of this on a thread of its own ([`OmeTiffWriter::spawn`]),
//! as the striped TIFF is compressed on its own thread. The levels are those of [`crate::pyramid::level_sizes`]: full resolution in the first IFD, the
//! lower ones in its SubIFDs (NewSubFileType 1), as OME-TIFF pyramids are laid out.
//!
//! The tile offsets of the first IFD are known only at the end, so the file holds the header, then the tile
//! data of all levels as it comes, then the IFDs (first IFD, then the SubIFDs), and the header's pointer to
//! the first IFD is patched last. The OME-XML (sizes, channels, type, physical pixel size) is the first IFD's
//! ImageDescription. The pixel size is also in every level's XResolution, YResolution and ResolutionUnit
//! (centimetre) tags, where readers that do not parse OME-XML (OpenSlide's `openslide.mpp-x`, libvips'
//! resolution) find it.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::threaded::Threaded;
use super::tiff::BIGTIFF_FROM_BYTES;
use super::writer::{create, RowWriter};
use crate::exif::Orientation;
pub use crate::pyramid::SampleKind as OmeSamples;
use crate::pyramid::{self, push_level_row, LevelRows};

/// The side of a tile.
pub const TILE: usize = 512;
/// About how many bytes of rows the threaded writer receives at a time.
const MESSAGE_BYTES: usize = 1 << 18;

/// The OME-XML of one image: sizes, channels, type and (when known) microns per pixel in x and y.
pub fn ome_xml(
    width: usize,
    height: usize,
    samples: OmeSamples,
    microns_per_pixel: Option<(f64, f64)>,
) -> String {
    let channels = samples.channels();
    let kind = match samples {
        OmeSamples::U8 { .. } => "uint8",
        OmeSamples::F32 => "float",
    };
    let physical = match microns_per_pixel {
        Some((x, y)) if x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite() => format!(
            " PhysicalSizeX=\"{x}\" PhysicalSizeXUnit=\"µm\" PhysicalSizeY=\"{y}\" PhysicalSizeYUnit=\"µm\""
        ),
        _ => String::new(),
    };
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\"",
            " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
            " xsi:schemaLocation=\"http://www.openmicroscopy.org/Schemas/OME/2016-06",
            " http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd\"",
            " Creator=\"imaging {version}\">",
            "<Image ID=\"Image:0\">",
            "<Pixels ID=\"Pixels:0\" DimensionOrder=\"XYCZT\" Type=\"{kind}\"",
            " SizeX=\"{width}\" SizeY=\"{height}\" SizeC=\"{channels}\" SizeZ=\"1\" SizeT=\"1\"{physical}",
            " Interleaved=\"true\">",
            "<Channel ID=\"Channel:0:0\" SamplesPerPixel=\"{channels}\"/>",
            "<TiffData IFD=\"0\" PlaneCount=\"1\"/>",
            "</Pixels></Image></OME>"
        ),
        version = env!("CARGO_PKG_VERSION"),
        kind = kind,
        width = width,
        height = height,
        channels = channels,
        physical = physical,
    )
}

/// One level being filled, with the offsets and sizes of its tiles.
struct Level {
    fill: LevelRows,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

impl AsMut<LevelRows> for Level {
    fn as_mut(&mut self) -> &mut LevelRows {
        &mut self.fill
    }
}

/// An OME-TIFF being written.
pub struct OmeTiffWriter {
    file: BufWriter<File>,
    /// Where the next byte goes.
    pos: u64,
    big: bool,
    samples: OmeSamples,
    orientation: Orientation,
    description: String,
    microns_per_pixel: Option<(f64, f64)>,
    levels: Vec<Level>,
    /// Scratch buffers: a tile and its compressed bytes.
    tile: Vec<u8>,
    compressed: Vec<u8>,
}

impl OmeTiffWriter {
    /// Starts the file (its header) for a `width` x `height` image; BigTIFF when `force_bigtiff` or when
    /// the tiles of all levels, uncompressed, reach [`BIGTIFF_FROM_BYTES`].
    pub fn start(
        mut file: BufWriter<File>,
        width: usize,
        height: usize,
        samples: OmeSamples,
        force_bigtiff: bool,
        orientation: Orientation,
        microns_per_pixel: Option<(f64, f64)>,
    ) -> Result<OmeTiffWriter, String> {
        if width == 0 || height == 0 || u32::try_from(width.max(height)).is_err() {
            return Err(format!("an OME-TIFF cannot be {width}x{height}"));
        }
        let sizes = pyramid::level_sizes(width, height);
        let uncompressed: u64 = sizes
            .iter()
            .map(|&(w, h)| {
                (w.div_ceil(TILE) * TILE) as u64
                    * (h.div_ceil(TILE) * TILE) as u64
                    * samples.pixel_bytes() as u64
            })
            .sum();
        let big = force_bigtiff || uncompressed >= BIGTIFF_FROM_BYTES;
        let header: &[u8] =
            if big { b"II\x2b\x00\x08\x00\x00\x00\0\0\0\0\0\0\0\0" } else { b"II\x2a\x00\0\0\0\0" };
        file.write_all(header).map_err(|e| e.to_string())?;
        let levels = sizes
            .into_iter()
            .map(|(width, height)| Level {
                fill: LevelRows::new(width, height),
                offsets: Vec::new(),
                counts: Vec::new(),
            })
            .collect();
        Ok(OmeTiffWriter {
            file,
            pos: header.len() as u64,
            big,
            samples,
            orientation,
            description: ome_xml(width, height, samples, microns_per_pixel),
            microns_per_pixel,
            levels,
            tile: Vec::new(),
            compressed: Vec::new(),
        })
    }

    /// The sizes of the levels, full resolution first.
    pub fn level_sizes(&self) -> Vec<(usize, usize)> {
        self.levels.iter().map(|l| (l.fill.width, l.fill.height)).collect()
    }

    /// Writes whole rows of 8-bit pixels.
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        if matches!(self.samples, OmeSamples::F32) {
            return Err("8-bit rows sent to a float output (a bug in the runner)".into());
        }
        self.write_stored(rows)
    }

    /// Writes whole rows as stored (float32: little-endian bytes).
    fn write_stored(&mut self, rows: &[u8]) -> Result<(), String> {
        let row_bytes = self.levels[0].fill.width * self.samples.pixel_bytes();
        for row in rows.chunks_exact(row_bytes) {
            self.push_row(row.to_vec())?;
        }
        Ok(())
    }

    /// Writes whole rows of float32 values (stored little-endian).
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        if !matches!(self.samples, OmeSamples::F32) {
            return Err("float rows sent to an 8-bit output (a bug in the runner)".into());
        }
        let width = self.levels[0].fill.width;
        for row in rows.chunks_exact(width) {
            self.push_row(row.iter().flat_map(|v| v.to_le_bytes()).collect())?;
        }
        Ok(())
    }

    /// Moves the writer onto a thread of its own, so that reductions and compression run while the caller
    /// goes on (the runner: prediction).
    pub fn spawn(self) -> Result<OmeTiffThread, String> {
        let row_bytes = self.levels[0].fill.width * self.samples.pixel_bytes();
        let samples = self.samples;
        let message_len = (MESSAGE_BYTES / row_bytes).max(1) * row_bytes;
        // The writer takes its rows in bursts (a row of tiles is compressed, and reduced into the levels
        // below, when its last row arrives): room for a whole row of tiles more lets prediction go on
        // meanwhile instead of waiting for the burst, at the cost of one row of tiles of level 0.
        let capacity = (TILE * row_bytes).div_ceil(message_len) + 1;
        let encode = move |messages: std::sync::mpsc::Receiver<Vec<u8>>| {
            let mut writer = self;
            for rows in messages {
                writer.write_stored(&rows)?;
            }
            writer.finish()
        };
        let thread =
            Threaded::spawn("ome-tiff-writer", "the OME-TIFF writer", message_len, capacity, encode)?;
        Ok(OmeTiffThread { thread, samples })
    }

    /// Adds one row to level 0, and the rows it completes to the levels below.
    fn push_row(&mut self, row: Vec<u8>) -> Result<(), String> {
        let mut levels = std::mem::take(&mut self.levels);
        let pushed =
            push_level_row(&mut levels, self.samples, TILE, row, |_, level| self.write_tile_row(level));
        self.levels = levels;
        pushed
    }

    /// Compresses and writes the tiles of level `i`'s band (padded to whole tiles), then empties the band.
    fn write_tile_row(&mut self, level: &mut Level) -> Result<(), String> {
        let pixel = self.samples.pixel_bytes();
        let Level { fill: LevelRows { width, band, .. }, offsets, counts } = level;
        let row_bytes = *width * pixel;
        let rows = band.len() / row_bytes;
        let tile_row_bytes = TILE * pixel;
        for x0 in (0..*width).step_by(TILE) {
            let used = (*width - x0).min(TILE) * pixel;
            self.tile.clear();
            self.tile.resize(TILE * tile_row_bytes, 0);
            for (y, dst) in self.tile.chunks_exact_mut(tile_row_bytes).take(rows).enumerate() {
                let src = &band[y * row_bytes + x0 * pixel..][..used];
                dst[..used].copy_from_slice(src);
            }
            if let OmeSamples::U8 { channels, .. } = self.samples {
                // Predictor 2: each sample less the same sample of the pixel to its left.
                for dst in self.tile.chunks_exact_mut(tile_row_bytes) {
                    for k in (channels..tile_row_bytes).rev() {
                        dst[k] = dst[k].wrapping_sub(dst[k - channels]);
                    }
                }
            }
            self.compressed.clear();
            let mut zlib = flate2::write::ZlibEncoder::new(&mut self.compressed, flate2::Compression::fast());
            zlib.write_all(&self.tile).and_then(|()| zlib.finish().map(drop)).map_err(|e| e.to_string())?;
            self.file.write_all(&self.compressed).map_err(|e| e.to_string())?;
            offsets.push(self.pos);
            counts.push(self.compressed.len() as u64);
            self.pos += self.compressed.len() as u64;
        }
        band.clear();
        if !self.big && self.pos > u64::from(u32::MAX) {
            return Err("the file passed 4 GiB as classic TIFF (a bug: it should have been BigTIFF)".into());
        }
        Ok(())
    }

    /// Writes the IFDs (every row must have been written), patches the header and flushes the file.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(LevelRows { rows, height, .. }) =
            self.levels.iter().map(|l| &l.fill).find(|l| l.rows != l.height)
        {
            return Err(format!("only {rows} of {height} rows were written"));
        }
        let error = |e: std::io::Error| e.to_string();
        if self.pos % 2 == 1 {
            self.file.write_all(&[0]).map_err(error)?;
            self.pos += 1;
        }
        // The IFDs' sizes do not depend on where they go: lay them out, then write them.
        let sub_count = self.levels.len() - 1;
        let directories: Vec<Vec<Entry>> = (0..self.levels.len())
            .map(|i| self.entries(i, &vec![0; if i == 0 { sub_count } else { 0 }]))
            .collect();
        let mut starts = Vec::with_capacity(directories.len());
        let mut at = self.pos;
        for entries in &directories {
            starts.push(at);
            at += ifd_size(entries, self.big);
        }
        let first = self.entries(0, &starts[1..]);
        let mut bytes = serialize(&first, starts[0], self.big);
        for (entries, &start) in directories.iter().zip(&starts).skip(1) {
            bytes.extend(serialize(entries, start, self.big));
        }
        if !self.big && at > u64::from(u32::MAX) {
            return Err("the file passed 4 GiB as classic TIFF (a bug: it should have been BigTIFF)".into());
        }
        self.file.write_all(&bytes).map_err(error)?;
        self.file.seek(SeekFrom::Start(if self.big { 8 } else { 4 })).map_err(error)?;
        let pointer = if self.big {
            starts[0].to_le_bytes().to_vec()
        } else {
            (starts[0] as u32).to_le_bytes().to_vec()
        };
        self.file.write_all(&pointer).map_err(error)?;
        self.file.flush().map_err(error)
    }

    /// The tags of level `i`'s IFD; the first IFD's point at the SubIFDs at `sub_ifds`.
    fn entries(&self, i: usize, sub_ifds: &[u64]) -> Vec<Entry> {
        let level = &self.levels[i];
        let channels = self.samples.channels();
        let (bits, format) = match self.samples {
            OmeSamples::U8 { .. } => (8, 1),
            OmeSamples::F32 => (32, 3),
        };
        let mut entries = vec![
            Entry::longs(254, &[u32::from(i > 0)]),
            Entry::longs(256, &[level.fill.width as u32]),
            Entry::longs(257, &[level.fill.height as u32]),
            Entry::shorts(258, &vec![bits; channels]),
            Entry::shorts(259, &[8]),
            Entry::shorts(262, &[if channels == 3 { 2 } else { 1 }]),
            Entry::shorts(277, &[channels as u16]),
            Entry::shorts(284, &[1]),
            Entry::ascii(305, &format!("imaging {}", env!("CARGO_PKG_VERSION"))),
            Entry::shorts(322, &[TILE as u16]),
            Entry::shorts(323, &[TILE as u16]),
            Entry::offsets(324, &level.offsets, self.big),
            Entry::offsets(325, &level.counts, self.big),
            Entry::shorts(339, &vec![format; channels]),
        ];
        if matches!(self.samples, OmeSamples::U8 { .. }) {
            entries.push(Entry::shorts(317, &[2]));
        }
        if self.orientation != Orientation::Normal {
            entries.push(Entry::shorts(274, &[self.orientation.tag()]));
        }
        if let Some(mpp) = self.microns_per_pixel {
            // A level's pixel is as many full-resolution pixels as the size ratio says.
            let full = &self.levels[0].fill;
            let scale =
                (full.width as f64 / level.fill.width as f64, full.height as f64 / level.fill.height as f64);
            entries.extend(resolution_entries(mpp, scale));
        }
        if i == 0 {
            entries.push(Entry::ascii(270, &self.description));
            if !sub_ifds.is_empty() {
                entries.push(Entry::offsets(330, sub_ifds, self.big));
            }
        }
        entries.sort_by_key(|e| e.tag);
        entries
    }
}

/// An [`OmeTiffWriter`] on its own thread: whole rows are gathered into messages of about 256 KiB and sent
/// to it; [`OmeTiffThread::finish`] waits for the file to be complete.
pub struct OmeTiffThread {
    thread: Threaded,
    samples: OmeSamples,
}

impl OmeTiffThread {
    /// Writes whole rows of 8-bit pixels.
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        if matches!(self.samples, OmeSamples::F32) {
            return Err("8-bit rows sent to a float output (a bug in the runner)".into());
        }
        self.write_stored(rows)
    }

    /// Writes whole rows of float32 values.
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        if !matches!(self.samples, OmeSamples::F32) {
            return Err("float rows sent to an 8-bit output (a bug in the runner)".into());
        }
        for chunk in rows.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.write_stored(&bytes)?;
        }
        Ok(())
    }

    fn write_stored(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.thread.write(bytes)
    }

    /// Sends the last rows, then waits for the writer to write the IFDs and flush the file.
    pub fn finish(self) -> Result<(), String> {
        self.thread.finish()
    }
}

impl RowWriter for OmeTiffThread {
    fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        OmeTiffThread::write_pixels(self, rows)
    }

    fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        OmeTiffThread::write_values(self, rows)
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        OmeTiffThread::finish(*self)
    }
}

/// Starts a `width` x `height` OME-TIFF of `samples` at `path`, written on a thread of its own.
pub(super) fn start(
    path: &Path,
    (width, height): (usize, usize),
    samples: OmeSamples,
    force_bigtiff: bool,
    orientation: Orientation,
    microns_per_pixel: Option<(f64, f64)>,
) -> Result<Box<dyn RowWriter>, String> {
    let file = create(path)?;
    let writer =
        OmeTiffWriter::start(file, width, height, samples, force_bigtiff, orientation, microns_per_pixel)?;
    Ok(Box::new(writer.spawn()?))
}

/// One IFD entry: tag, field type, count and the values' little-endian bytes.
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    data: Vec<u8>,
}

impl Entry {
    fn shorts(tag: u16, values: &[u16]) -> Entry {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Entry { tag, typ: 3, count: values.len() as u64, data }
    }

    fn longs(tag: u16, values: &[u32]) -> Entry {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Entry { tag, typ: 4, count: values.len() as u64, data }
    }

    /// LONG in a classic TIFF (values checked below 4 GiB by the writer), LONG8 in a BigTIFF.
    fn offsets(tag: u16, values: &[u64], big: bool) -> Entry {
        if big {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Entry { tag, typ: 16, count: values.len() as u64, data }
        } else {
            Entry::longs(tag, &values.iter().map(|&v| v as u32).collect::<Vec<_>>())
        }
    }

    fn rational(tag: u16, (num, den): (u32, u32)) -> Entry {
        let data = [num.to_le_bytes(), den.to_le_bytes()].concat();
        Entry { tag, typ: 5, count: 1, data }
    }

    fn ascii(tag: u16, text: &str) -> Entry {
        let mut data = text.as_bytes().to_vec();
        data.push(0);
        Entry { tag, typ: 2, count: data.len() as u64, data }
    }
}

/// XResolution, YResolution (pixels per centimetre) and ResolutionUnit 3 (centimetre) for pixels of
/// `microns` (x, y) at full resolution, `scale` full-resolution pixels to one of this level's.
fn resolution_entries(microns: (f64, f64), scale: (f64, f64)) -> [Entry; 3] {
    let per_cm = |um: f64, scale: f64| rational(1e4 / (um * scale));
    [
        Entry::rational(282, per_cm(microns.0, scale.0)),
        Entry::rational(283, per_cm(microns.1, scale.1)),
        Entry::shorts(296, &[3]),
    ]
}

/// `v` as a TIFF RATIONAL: the largest power-of-ten denominator (up to 10^6) whose numerator fits 32 bits.
fn rational(v: f64) -> (u32, u32) {
    if !(v.is_finite() && v > 0.0) {
        return (0, 1);
    }
    let mut den = 1_000_000u32;
    while den > 1 && (v * f64::from(den)).round() > f64::from(u32::MAX) {
        den /= 10;
    }
    ((v * f64::from(den)).round().min(f64::from(u32::MAX)) as u32, den)
}

/// The bytes an IFD takes: its entries, next-IFD pointer and the values that do not fit in an entry
/// (each starting on an even offset).
fn ifd_size(entries: &[Entry], big: bool) -> u64 {
    let (head, inline) = if big { (8 + 20 * entries.len() + 8, 8) } else { (2 + 12 * entries.len() + 4, 4) };
    let outside: usize =
        entries.iter().filter(|e| e.data.len() > inline).map(|e| e.data.len().next_multiple_of(2)).sum();
    (head + outside) as u64
}

/// An IFD placed at `start`, with no next IFD (the SubIFDs are not in the main chain).
fn serialize(entries: &[Entry], start: u64, big: bool) -> Vec<u8> {
    let inline = if big { 8 } else { 4 };
    let head = if big { 8 + 20 * entries.len() + 8 } else { 2 + 12 * entries.len() + 4 };
    let mut out = Vec::with_capacity(ifd_size(entries, big) as usize);
    let mut extra = Vec::new();
    if big {
        out.extend((entries.len() as u64).to_le_bytes());
    } else {
        out.extend((entries.len() as u16).to_le_bytes());
    }
    for e in entries {
        out.extend(e.tag.to_le_bytes());
        out.extend(e.typ.to_le_bytes());
        if big {
            out.extend(e.count.to_le_bytes());
        } else {
            out.extend((e.count as u32).to_le_bytes());
        }
        let mut field = vec![0u8; inline];
        if e.data.len() <= inline {
            field[..e.data.len()].copy_from_slice(&e.data);
        } else {
            let at = start + (head + extra.len()) as u64;
            field.copy_from_slice(&if big {
                at.to_le_bytes().to_vec()
            } else {
                (at as u32).to_le_bytes().to_vec()
            });
            extra.extend_from_slice(&e.data);
            if extra.len() % 2 == 1 {
                extra.push(0);
            }
        }
        out.extend(field);
    }
    out.extend(vec![0u8; if big { 8 } else { 4 }]);
    out.extend(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyramid::Reduction;

    #[test]
    fn ifd_sizes_match_their_bytes() {
        for big in [false, true] {
            let entries = vec![
                Entry::shorts(258, &[8, 8, 8]),
                Entry::longs(256, &[5]),
                Entry::ascii(270, "odd"),
                Entry::offsets(324, &[1, 2, 3], big),
            ];
            assert_eq!(serialize(&entries, 100, big).len() as u64, ifd_size(&entries, big));
        }
    }

    #[test]
    fn the_pixel_size_is_in_the_resolution_tags_of_every_level() {
        let value = |e: &Entry| {
            let num = u32::from_le_bytes(e.data[..4].try_into().unwrap());
            let den = u32::from_le_bytes(e.data[4..].try_into().unwrap());
            f64::from(num) / f64::from(den)
        };
        // 0.25 x 0.5 um at full resolution: 40000 and 20000 pixels per centimetre.
        let [x, y, unit] = resolution_entries((0.25, 0.5), (1.0, 1.0));
        assert_eq!((x.tag, x.typ, y.tag, y.typ), (282, 5, 283, 5));
        assert_eq!((value(&x), value(&y)), (40000.0, 20000.0));
        assert_eq!((unit.tag, unit.data.as_slice()), (296, &3u16.to_le_bytes()[..]));
        // A level of 2305 -> 1153 pixels: its pixel is 2305/1153 of a full-resolution one.
        let [x, _, _] = resolution_entries((0.25, 0.5), (2305.0 / 1153.0, 2.0));
        let mpp = 1e4 / value(&x);
        assert!((mpp - 0.25 * 2305.0 / 1153.0).abs() < 1e-9, "{mpp}");
        assert_eq!(rational(0.1234567), (123457, 1_000_000));
        assert_eq!(rational(1e9), (1_000_000_000, 1));
        assert_eq!(rational(f64::NAN), (0, 1));
    }

    #[test]
    fn the_ome_xml_names_sizes_type_and_physical_size() {
        let xml = ome_xml(30, 20, OmeSamples::F32, Some((0.25, 0.5)));
        assert!(xml.contains("Type=\"float\" SizeX=\"30\" SizeY=\"20\" SizeC=\"1\""), "{xml}");
        assert!(
            xml.contains("PhysicalSizeX=\"0.25\" PhysicalSizeXUnit=\"µm\" PhysicalSizeY=\"0.5\""),
            "{xml}"
        );
        let rgb = ome_xml(3, 2, OmeSamples::U8 { channels: 3, rule: Reduction::Mean }, None);
        assert!(rgb.contains("Type=\"uint8\"") && rgb.contains("SizeC=\"3\"") && !rgb.contains("Physical"));
    }
}
