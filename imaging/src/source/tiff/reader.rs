//! The TIFF reader: one level (page) read one chunk row (a strip, or a row of tiles) at a time, reading
//! only the chunks, and the few offsets, the next rows need.

use super::codecs::Codec;
use super::decode::{convert_row, interleave, ChunkDecoder};
use super::ifd::*;
use super::image::{Page, Photometric};
use super::levels::Structure;
use crate::source::error::SourceError;
use crate::source::limits::{check_size, MAX_WIDTH, WHOLE_IMAGE_LIMIT};
use crate::source::reader::{Access, Descriptor, FileFormat, Input, LevelReader, Opened, SourceInfo};
use crate::source::samples::Channels;

pub(crate) const FORMAT: Descriptor = Descriptor {
    id: "tiff",
    name: "native TIFF",
    extensions: &[("tif", "a TIFF image"), ("tiff", "a TIFF image")],
    random_access: true,
    levels: true,
    // Aperio SVS, Hamamatsu NDPI, Philips and Ventana slides are TIFFs.
    vendor_container: true,
    access: Access::Stream {
        sniff: |head| [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"].iter().any(|m| head.starts_with(*m)),
        open,
        probe,
    },
};

fn probe(input: Box<dyn Input>, name: &str) -> Result<SourceInfo, SourceError> {
    Ok(Structure::read(input, name, FileFormat::of(&FORMAT))?.info)
}

fn open(input: Box<dyn Input>, name: &str, level: usize, out: Channels) -> Result<Opened, SourceError> {
    let Structure { file, mut levels, info } = Structure::read(input, name, FileFormat::of(&FORMAT))?;
    if level >= levels.len() {
        return Err(SourceError::NoLevel { name: name.to_string(), level, levels: info.levels_line() });
    }
    let page = levels.swap_remove(level);
    let rows = TiffRows::new(file, page, name, out)?;
    Ok(Opened { width: rows.width, height: rows.height, reader: Box::new(rows), info })
}

/// A TIFF level read one chunk row (a strip, or a row of tiles) at a time.
struct TiffRows {
    file: TiffInput,
    width: usize,
    height: usize,
    tiled: bool,
    chunk_width: usize,
    chunk_height: usize,
    /// Chunks across a row of tiles (1 for strips), and in one plane.
    across: usize,
    per_plane: u64,
    /// Planes read of a planar (separate) image: 1 for gray or palette, 3 for RGB; 0 for chunky images.
    planes: usize,
    photometric: Photometric,
    offsets: Entry,
    counts: Entry,
    out: Channels,
    decoder: ChunkDecoder,
    /// Converted rows of the current chunk row, and the image row they start at.
    rows: Vec<u8>,
    rows_y: usize,
    rows_count: usize,
    pixel_row: Vec<u8>,
}

impl TiffRows {
    fn new(mut file: TiffInput, page: Page, name: &str, out: Channels) -> Result<TiffRows, SourceError> {
        let decode = |reason: String| SourceError::Decode { name: name.to_string(), reason };
        let (width, height) = check_size(name, page.width, page.height)?;
        let layout = page.layout(&mut file, name)?;
        let (codec, kind, samples, planar) = (layout.codec, layout.kind, layout.samples, layout.planar);
        let (chunk_width, chunk_height) = (page.chunk_width as usize, page.chunk_height as usize);
        if chunk_width == 0
            || chunk_height == 0
            || chunk_width > MAX_WIDTH
            || (!page.tiled && chunk_width != width)
        {
            return Err(decode(format!("its chunks are {chunk_width}x{chunk_height}")));
        }
        let across = if page.tiled { width.div_ceil(chunk_width) } else { 1 };
        let down = height.div_ceil(chunk_height) as u64;
        let per_plane = down * across as u64;
        let total = per_plane * if planar { samples as u64 } else { 1 };
        let (offsets, counts) = match (page.offsets, page.counts) {
            (Some(o), Some(c)) => (o, c),
            _ => {
                return Err(decode(format!(
                    "it has no {} offsets or byte counts",
                    if page.tiled { "tile" } else { "strip" }
                )))
            }
        };
        if offsets.count < total || counts.count < total {
            return Err(decode(format!(
                "it lists {} chunk offsets and {} byte counts where its layout needs {total}",
                offsets.count, counts.count
            )));
        }
        // One row of chunks is decoded at a time: it must fit the limit of a whole decoded image.
        let row_bytes = ((across * chunk_width) as u64)
            .saturating_mul(chunk_height as u64)
            .saturating_mul(samples as u64)
            .saturating_mul(kind.bytes() as u64);
        if row_bytes > WHOLE_IMAGE_LIMIT {
            return Err(SourceError::TooLarge {
                name: name.to_string(),
                width: width as u64,
                height: height as u64,
                reason: format!(
                    "its {} are {chunk_width}x{chunk_height}, and one row of them is {row_bytes} bytes decoded, \
                     beyond the limit of {WHOLE_IMAGE_LIMIT}; re-save it tiled (e.g. 512x512 tiles)",
                    if page.tiled { "tiles" } else { "strips" }
                ),
            });
        }
        let jpeg_tables = match (codec, page.jpeg_tables) {
            (Codec::Jpeg, Some(entry)) => file.bytes(&entry, 1 << 20, JPEG_TABLES).map_err(decode)?,
            _ => None,
        };
        let reverse_bits =
            page.fill_order == 2 && matches!(codec, Codec::None | Codec::Lzw | Codec::PackBits);
        let decoder = ChunkDecoder::new(&layout, reverse_bits, jpeg_tables, (chunk_width, chunk_height));
        Ok(TiffRows {
            file,
            width,
            height,
            tiled: page.tiled,
            chunk_width,
            chunk_height,
            across,
            per_plane,
            planes: layout.planes,
            photometric: layout.photometric,
            offsets,
            counts,
            out,
            decoder,
            rows: Vec::new(),
            rows_y: 0,
            rows_count: 0,
            pixel_row: Vec::new(),
        })
    }

    /// Decodes chunk row `chunk_row` into `self.rows`, converted.
    fn load_chunk_row(&mut self, chunk_row: usize) -> Result<(), String> {
        let first = chunk_row * self.chunk_height;
        let count = self.chunk_height.min(self.height - first);
        let oc = self.out.count();
        let row_bytes = self.width * oc;
        self.rows_count = 0;
        self.rows.clear();
        // Strips hold only the image's rows; tiles are whole, past the image's edges too.
        let chunk_rows = if self.tiled { self.chunk_height } else { count };
        let planes = self.planes.max(1);
        let mut locations = Vec::with_capacity(planes);
        for plane in 0..planes {
            let start = plane as u64 * self.per_plane + (chunk_row * self.across) as u64;
            let n = self.across as u64;
            let offsets = self.file.uints(
                &self.offsets,
                start,
                n,
                if self.tiled { TILE_OFFSETS } else { STRIP_OFFSETS },
            )?;
            let counts = self.file.uints(
                &self.counts,
                start,
                n,
                if self.tiled { TILE_BYTE_COUNTS } else { STRIP_BYTE_COUNTS },
            )?;
            for (i, &len) in counts.iter().enumerate() {
                self.decoder.check_holds(start + i as u64, len, count)?;
            }
            locations.push((start, offsets, counts));
        }
        self.rows
            .try_reserve(count * row_bytes)
            .map_err(|_| format!("a chunk of {count} rows does not fit in memory"))?;
        self.rows.resize(count * row_bytes, 0);
        for tx in 0..self.across {
            let x0 = tx * self.chunk_width;
            let width = self.chunk_width.min(self.width - x0);
            let decoded = if self.planes == 0 {
                let (start, offsets, counts) = &locations[0];
                let index = start + tx as u64;
                self.decoder.decode(
                    &mut self.file,
                    index,
                    (offsets[tx], counts[tx]),
                    chunk_rows,
                    count,
                    width,
                )?
            } else {
                let mut planes = Vec::with_capacity(self.planes);
                for (start, offsets, counts) in &locations {
                    planes.push(self.decoder.decode(
                        &mut self.file,
                        start + tx as u64,
                        (offsets[tx], counts[tx]),
                        chunk_rows,
                        count,
                        width,
                    )?);
                }
                interleave(planes)?
            };
            for r in 0..count {
                let dst = &mut self.rows[r * row_bytes + x0 * oc..r * row_bytes + (x0 + width) * oc];
                convert_row(&decoded, r, width, &self.photometric, self.out, dst, &mut self.pixel_row);
            }
        }
        self.rows_y = first;
        self.rows_count = count;
        Ok(())
    }
}

impl LevelReader for TiffRows {
    /// Copies rows `first..`, converted, into `dst`, decoding each one's chunk row first if it is not the
    /// current one.
    fn read_rows(
        &mut self,
        first: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError> {
        debug_assert_eq!(out, self.out);
        let row_bytes = self.width * self.out.count();
        for (i, dst) in dst.chunks_exact_mut(row_bytes).enumerate() {
            let y = first + i;
            if y < self.rows_y || y >= self.rows_y + self.rows_count {
                self.load_chunk_row(y / self.chunk_height)
                    .map_err(|reason| SourceError::Decode { name: name.to_string(), reason })?;
            }
            let offset = (y - self.rows_y) * row_bytes;
            dst.copy_from_slice(&self.rows[offset..offset + row_bytes]);
        }
        Ok(())
    }

    fn chunks_read(&self) -> u64 {
        self.decoder.chunks_read
    }
}
