//! Striped TIFF outputs (Deflate), compressed and written on a thread of their own ([`Threaded`]) while
//! prediction goes on. A TIFF is classic TIFF unless its uncompressed data reaches
//! [`BIGTIFF_FROM_BYTES`], then BigTIFF (whose 64-bit offsets have no 4 GiB limit); the margin below 4 GiB
//! covers Deflate's worst-case growth and the strip tables.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc::Receiver;

use tiff::encoder::{TiffEncoder, TiffKind};
use tiff::tags::{CompressionMethod, Tag};

use super::threaded::Threaded;
use super::writer::{create, RowWriter};
use crate::exif::Orientation;
use crate::pyramid::SampleKind;

/// Uncompressed data size from which a TIFF is written as BigTIFF.
pub const BIGTIFF_FROM_BYTES: u64 = 7 << 29; // 3.5 GiB
/// Target size of one TIFF strip, uncompressed.
const STRIP_BYTES: usize = 1 << 18;

/// A TIFF being written on its own thread: full strips (uncompressed bytes, native byte order as the
/// header says) are sent to it, and it compresses and writes them.
struct TiffWriter {
    thread: Threaded,
    floats: bool,
}

#[derive(Debug, Clone, Copy)]
struct StripLayout {
    width: u32,
    height: u32,
    rows_per_strip: u32,
    samples: SampleKind,
    orientation: Orientation,
}

/// Starts a `width` x `height` striped TIFF of `samples` at `path`: BigTIFF when `force_bigtiff` or when
/// its data reaches [`BIGTIFF_FROM_BYTES`].
pub(super) fn start(
    path: &Path,
    (width, height): (usize, usize),
    samples: SampleKind,
    force_bigtiff: bool,
    orientation: Orientation,
) -> Result<Box<dyn RowWriter>, String> {
    let row_bytes = width * samples.pixel_bytes();
    let big = force_bigtiff || (height as u64).saturating_mul(row_bytes as u64) >= BIGTIFF_FROM_BYTES;
    let mut file = create(path)?;
    let rows_per_strip = (STRIP_BYTES / row_bytes).clamp(1, height);
    let layout = StripLayout {
        width: u32::try_from(width).map_err(|e| e.to_string())?,
        height: u32::try_from(height).map_err(|e| e.to_string())?,
        rows_per_strip: rows_per_strip as u32,
        samples,
        orientation,
    };
    let encode = move |strips: Receiver<Vec<u8>>| {
        if big {
            let encoder = TiffEncoder::new_big(&mut file).map_err(|e| e.to_string())?;
            write_strips(encoder, layout, strips)?;
        } else {
            let encoder = TiffEncoder::new(&mut file).map_err(|e| e.to_string())?;
            write_strips(encoder, layout, strips)?;
        }
        file.flush().map_err(|e| e.to_string())
    };
    let thread = Threaded::spawn("tiff-writer", "the TIFF writer", rows_per_strip * row_bytes, 2, encode)?;
    Ok(Box::new(TiffWriter { thread, floats: matches!(samples, SampleKind::F32) }))
}

impl RowWriter for TiffWriter {
    fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        if self.floats {
            return Err("8-bit rows sent to a float output (a bug in the runner)".into());
        }
        self.thread.write(rows)
    }

    fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        if !self.floats {
            return Err("float rows sent to an 8-bit output (a bug in the runner)".into());
        }
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.thread.write(&bytes)
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        self.thread.finish()
    }
}

/// Writes one striped, Deflate-compressed image: each strip as it arrives, then the directory. (The tiff
/// crate's own strip writer does not compress strips written one at a time, so the strips are compressed
/// here and written as raw data, with the tags written by hand.)
fn write_strips<W, K>(
    mut encoder: TiffEncoder<W, K>,
    layout: StripLayout,
    strips: Receiver<Vec<u8>>,
) -> Result<(), String>
where
    W: Write + std::io::Seek,
    K: TiffKind,
{
    let error = |e: tiff::TiffError| e.to_string();
    let mut directory = encoder.image_directory().map_err(error)?;
    let (mut offsets, mut counts) = (Vec::new(), Vec::new());
    let mut compressed = Vec::new();
    for strip in strips {
        compressed.clear();
        let mut zlib = flate2::write::ZlibEncoder::new(&mut compressed, flate2::Compression::fast());
        zlib.write_all(&strip).and_then(|()| zlib.finish().map(drop)).map_err(|e| e.to_string())?;
        let offset = directory.write_data(compressed.as_slice()).map_err(error)?;
        offsets.push(K::convert_offset(offset).map_err(error)?);
        counts.push(K::convert_offset(compressed.len() as u64).map_err(error)?);
    }
    if offsets.len() as u64 != u64::from(layout.height.div_ceil(layout.rows_per_strip)) {
        return Err("the image ended early".into());
    }
    let (bits, format, photometric): (&[u16], &[u16], u16) = match layout.samples {
        SampleKind::U8 { channels: 3, .. } => (&[8, 8, 8], &[1, 1, 1], 2),
        SampleKind::U8 { .. } => (&[8], &[1], 1),
        SampleKind::F32 => (&[32], &[3], 1),
    };
    directory.write_tag(Tag::ImageWidth, layout.width).map_err(error)?;
    directory.write_tag(Tag::ImageLength, layout.height).map_err(error)?;
    directory.write_tag(Tag::BitsPerSample, bits).map_err(error)?;
    directory.write_tag(Tag::Compression, CompressionMethod::Deflate.to_u16()).map_err(error)?;
    directory.write_tag(Tag::PhotometricInterpretation, photometric).map_err(error)?;
    directory.write_tag(Tag::SamplesPerPixel, bits.len() as u16).map_err(error)?;
    directory.write_tag(Tag::RowsPerStrip, layout.rows_per_strip).map_err(error)?;
    directory.write_tag(Tag::PlanarConfiguration, 1u16).map_err(error)?;
    directory.write_tag(Tag::SampleFormat, format).map_err(error)?;
    directory.write_tag(Tag::StripOffsets, K::convert_slice(&offsets)).map_err(error)?;
    directory.write_tag(Tag::StripByteCounts, K::convert_slice(&counts)).map_err(error)?;
    if layout.orientation != Orientation::Normal {
        directory.write_tag(Tag::Orientation, layout.orientation.tag()).map_err(error)?;
    }
    directory.finish().map_err(error)
}
