//! Outputs written row by row, top to bottom, so that memory does not grow with the image height: PNG
//! (streaming encoder), TIFF (striped, Deflate; compressed on a thread of its own while prediction goes
//! on) and NumPy .npy (header first, then rows). JPEG cannot be written by rows: its rows are gathered and
//! encoded at the end, so a JPEG output is refused before any work for an image above 65,535 px a side.
//!
//! Image outputs can carry an EXIF orientation ([`SinkOptions::orientation`], the input's): TIFF tag 274,
//! a PNG eXIf chunk, or a JPEG APP1 EXIF segment, each holding the orientation only, so that viewers show
//! the outputs turned like the input while their pixels stay in the input's stored order. A .npy file has
//! no such tag: it stays in stored orientation.
//!
//! A TIFF is classic TIFF unless its uncompressed data reaches [`BIGTIFF_FROM_BYTES`], then BigTIFF (whose
//! 64-bit offsets have no 4 GiB limit); the margin below 4 GiB covers Deflate's worst-case growth and the
//! strip tables. Each sink writes to the path it is given (a temporary file); the format comes from the
//! final path's extension, decided by the caller.
//!
//! A path ending in `.ome.tif` / `.ome.tiff` is a tiled, pyramidal OME-TIFF ([`ome_tiff`]): full resolution
//! and its 2x reductions ([`crate::pyramid`]) as SubIFDs, written as the rows stream in.
//!
//! A path ending in `.ome.zarr` is an OME-Zarr store (a directory, NGFF 0.4 or, with
//! [`SinkOptions::ngff`], 0.5; [`ome_zarr`]) with the same levels; the sink is given the final path (see [`crate::files::OutputSet::add_store`]) and the writer puts
//! the store in place itself when it finishes.

pub mod ome_tiff;
pub mod ome_zarr;
pub mod ome_zarr_shards;
pub mod zarr_labels;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use tiff::encoder::{TiffEncoder, TiffKind};

use crate::pyramid::Reduction;
use ome_tiff::{OmeSamples, OmeTiffThread, OmeTiffWriter};
use ome_zarr::{NgffVersion, OmeZarrWriter, StoreLayout};

pub use crate::exif::Orientation;
use tiff::tags::{CompressionMethod, Tag};

/// Uncompressed data size from which a TIFF is written as BigTIFF.
pub const BIGTIFF_FROM_BYTES: u64 = 7 << 29; // 3.5 GiB
/// The largest side of a JPEG.
pub const JPEG_MAX_SIDE: usize = 65_535;
/// Quality of written JPEGs: high, so that the mask's edges stay close to the prediction.
const JPEG_QUALITY: u8 = 95;
/// Target size of one TIFF strip, uncompressed.
const STRIP_BYTES: usize = 1 << 18;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: unsupported {what} format; use a file name ending in {allowed}")]
    Format { path: PathBuf, what: &'static str, allowed: &'static str },
    #[error(
        "{path}: a JPEG cannot be {width}x{height} (at most {JPEG_MAX_SIDE} px a side); use .png or .tif"
    )]
    JpegTooLarge { path: PathBuf, width: usize, height: usize },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Image formats of the mask, overlay and error map, chosen by the final path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Tiff,
    /// A tiled, pyramidal OME-TIFF (`.ome.tif`, `.ome.tiff`).
    OmeTiff,
    /// An OME-Zarr store (`.ome.zarr`, a directory; [`ome_zarr`]).
    OmeZarr,
}

impl ImageFormat {
    pub fn from_path(path: &Path) -> Result<ImageFormat, SinkError> {
        if is_ome_tiff(path) {
            return Ok(ImageFormat::OmeTiff);
        }
        if ome_zarr::is_ome_zarr_path(path) {
            return Ok(ImageFormat::OmeZarr);
        }
        match extension(path).as_deref() {
            Some("png") => Ok(ImageFormat::Png),
            Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
            Some("tif" | "tiff") => Ok(ImageFormat::Tiff),
            _ => Err(SinkError::Format {
                path: path.to_path_buf(),
                what: "image",
                allowed: ".png, .tif, .tiff, .ome.tif, .ome.zarr, .jpg or .jpeg",
            }),
        }
    }

    /// Refuses, before any work, an image this format cannot hold.
    pub fn check_size(self, path: &Path, width: usize, height: usize) -> Result<(), SinkError> {
        if self == ImageFormat::Jpeg && (width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE) {
            return Err(SinkError::JpegTooLarge { path: path.to_path_buf(), width, height });
        }
        Ok(())
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Tiff => "tif",
            ImageFormat::OmeTiff => "ome.tif",
            ImageFormat::OmeZarr => "ome.zarr",
        }
    }
}

/// Formats of the foreground probabilities: float32 (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbabilityFormat {
    Npy,
    Tiff,
    /// A tiled, pyramidal OME-TIFF of float32 (`.ome.tif`, `.ome.tiff`).
    OmeTiff,
    /// An OME-Zarr store of float32 (`.ome.zarr`, a directory).
    OmeZarr,
}

impl ProbabilityFormat {
    pub fn from_path(path: &Path) -> Result<ProbabilityFormat, SinkError> {
        if is_ome_tiff(path) {
            return Ok(ProbabilityFormat::OmeTiff);
        }
        if ome_zarr::is_ome_zarr_path(path) {
            return Ok(ProbabilityFormat::OmeZarr);
        }
        match extension(path).as_deref() {
            Some("npy") => Ok(ProbabilityFormat::Npy),
            Some("tif" | "tiff") => Ok(ProbabilityFormat::Tiff),
            _ => Err(SinkError::Format {
                path: path.to_path_buf(),
                what: "probabilities",
                allowed: ".npy, .tif, .tiff, .ome.tif or .ome.zarr",
            }),
        }
    }
}

/// Whether the file name ends in `.ome.tif` or `.ome.tiff` (any case).
fn is_ome_tiff(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    name.ends_with(".ome.tif") || name.ends_with(".ome.tiff")
}

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

/// How an output is written, besides its format and size.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SinkOptions {
    /// Write a TIFF as BigTIFF whatever its size.
    pub force_bigtiff: bool,
    /// The orientation tag written into image outputs (TIFF, PNG, JPEG; not .npy). `Normal` writes none.
    pub orientation: Orientation,
    /// Microns per pixel in x and y (the input's), written into an OME-TIFF's OME-XML; `None`: unknown.
    pub microns_per_pixel: Option<(f64, f64)>,
    /// The NGFF version of an OME-Zarr output (0.4 on Zarr v2 by default, or 0.5 on Zarr v3).
    pub ngff: NgffVersion,
}

/// What one pixel of an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelKind {
    Gray8,
    Rgb8,
}

impl PixelKind {
    fn bytes(self) -> usize {
        match self {
            PixelKind::Gray8 => 1,
            PixelKind::Rgb8 => 3,
        }
    }
}

/// The header of a NumPy .npy file (format version 1.0) for a little-endian float32 C-order array of shape
/// (height, width): magic, version, header length, then the header dict padded with spaces to a multiple of
/// 64 bytes and ended by a newline.
pub fn npy_header(height: usize, width: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({height}, {width}), }}");
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(10 + header_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out
}

/// What a TIFF's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TiffPixel {
    Gray8,
    Rgb8,
    GrayF32,
}

impl TiffPixel {
    fn bytes(self) -> usize {
        match self {
            TiffPixel::Gray8 => 1,
            TiffPixel::Rgb8 => 3,
            TiffPixel::GrayF32 => 4,
        }
    }
}

/// A TIFF being written on its own thread: full strips (uncompressed bytes, native byte order as the
/// header says) are sent to it, and it compresses and writes them.
struct TiffWriter {
    strips: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    /// Rows gathered for the next strip.
    pending: Vec<u8>,
    strip_len: usize,
}

impl TiffWriter {
    fn start(
        file: BufWriter<File>,
        width: usize,
        height: usize,
        pixel: TiffPixel,
        big: bool,
        orientation: Orientation,
    ) -> Result<TiffWriter, String> {
        let row_bytes = width * pixel.bytes();
        let rows_per_strip = (STRIP_BYTES / row_bytes).clamp(1, height);
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(2);
        let layout = StripLayout {
            width: u32::try_from(width).map_err(|e| e.to_string())?,
            height: u32::try_from(height).map_err(|e| e.to_string())?,
            rows_per_strip: rows_per_strip as u32,
            pixel,
            orientation,
        };
        let thread = std::thread::Builder::new()
            .name("tiff-writer".into())
            .spawn(move || {
                if big {
                    let encoder = TiffEncoder::new_big(file).map_err(|e| e.to_string())?;
                    write_strips(encoder, layout, receiver)
                } else {
                    let encoder = TiffEncoder::new(file).map_err(|e| e.to_string())?;
                    write_strips(encoder, layout, receiver)
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(TiffWriter {
            strips: Some(sender),
            thread: Some(thread),
            pending: Vec::new(),
            strip_len: rows_per_strip * row_bytes,
        })
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let take = (self.strip_len - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == self.strip_len {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), String> {
        let strip = std::mem::replace(&mut self.pending, Vec::with_capacity(self.strip_len));
        let sent = self.strips.as_ref().map(|s| s.send(strip).is_ok()).unwrap_or(false);
        if !sent {
            // The writer thread stopped: its error says why.
            return Err(self.join().err().unwrap_or_else(|| "the TIFF writer stopped".into()));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), String> {
        self.strips = None;
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err("the TIFF writer panicked".into())),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            self.send()?;
        }
        self.join()
    }
}

#[derive(Debug, Clone, Copy)]
struct StripLayout {
    width: u32,
    height: u32,
    rows_per_strip: u32,
    pixel: TiffPixel,
    orientation: Orientation,
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
    let (bits, format, photometric): (&[u16], &[u16], u16) = match layout.pixel {
        TiffPixel::Gray8 => (&[8], &[1], 1),
        TiffPixel::Rgb8 => (&[8, 8, 8], &[1, 1, 1], 2),
        TiffPixel::GrayF32 => (&[32], &[3], 1),
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

enum Encoder {
    Png(Box<png::StreamWriter<'static, BufWriter<File>>>),
    Tiff(TiffWriter),
    OmeTiff(OmeTiffThread),
    OmeZarr(Box<OmeZarrWriter>),
    /// Rows gathered for a whole-image encoder.
    Jpeg {
        file: BufWriter<File>,
        pixels: Vec<u8>,
        pixel: PixelKind,
        orientation: Orientation,
    },
    Npy(BufWriter<File>),
}

/// One output being written, row by row.
pub struct RowSink {
    path: PathBuf,
    encoder: Encoder,
    width: usize,
    height: usize,
    rows_written: usize,
    /// Bytes (images) or values (probabilities) per row.
    row_len: usize,
    /// Whether rows are float32 values (probabilities) rather than 8-bit pixels.
    floats: bool,
}

impl std::fmt::Debug for RowSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowSink({}, {}x{})", self.path.display(), self.width, self.height)
    }
}

impl RowSink {
    /// An image output (mask, overlay, error map) of `width` x `height` written to `path` as `format`.
    pub fn image(
        path: &Path,
        format: ImageFormat,
        pixel: PixelKind,
        width: usize,
        height: usize,
        force_bigtiff: bool,
    ) -> Result<RowSink, SinkError> {
        let options = SinkOptions { force_bigtiff, ..SinkOptions::default() };
        RowSink::image_with(path, format, pixel, width, height, options)
    }

    /// An image output written with `options` (e.g. the input's orientation).
    pub fn image_with(
        path: &Path,
        format: ImageFormat,
        pixel: PixelKind,
        width: usize,
        height: usize,
        options: SinkOptions,
    ) -> Result<RowSink, SinkError> {
        let SinkOptions { force_bigtiff, orientation, microns_per_pixel, ngff } = options;
        format.check_size(path, width, height)?;
        let write_error = |reason: String| SinkError::Write { path: path.to_path_buf(), reason };
        let row_len = width * pixel.bytes();
        if format == ImageFormat::OmeZarr {
            let samples = match pixel {
                PixelKind::Gray8 => OmeSamples::U8 { channels: 1, rule: Reduction::Mask },
                PixelKind::Rgb8 => OmeSamples::U8 { channels: 3, rule: Reduction::Mean },
            };
            let layout = StoreLayout::output(ngff, width, height, samples, microns_per_pixel);
            let writer = OmeZarrWriter::create_with(path, samples, layout);
            return Ok(RowSink {
                path: path.to_path_buf(),
                encoder: Encoder::OmeZarr(Box::new(writer.map_err(write_error)?)),
                width,
                height,
                rows_written: 0,
                row_len,
                floats: false,
            });
        }
        let file = create(path)?;
        let encoder = match format {
            ImageFormat::Png => {
                let (w, h) = (to_u32(width, path)?, to_u32(height, path)?);
                let mut encoder = png::Encoder::new(file, w, h);
                encoder.set_color(match pixel {
                    PixelKind::Gray8 => png::ColorType::Grayscale,
                    PixelKind::Rgb8 => png::ColorType::Rgb,
                });
                encoder.set_depth(png::BitDepth::Eight);
                encoder.set_compression(png::Compression::Fast);
                let mut writer = encoder.write_header().map_err(|e| write_error(e.to_string()))?;
                if orientation != Orientation::Normal {
                    writer
                        .write_chunk(png::chunk::eXIf, &orientation.exif())
                        .map_err(|e| write_error(e.to_string()))?;
                }
                let stream =
                    writer.into_stream_writer_with_size(1 << 16).map_err(|e| write_error(e.to_string()))?;
                Encoder::Png(Box::new(stream))
            }
            ImageFormat::Tiff => {
                let big =
                    force_bigtiff || (height as u64).saturating_mul(row_len as u64) >= BIGTIFF_FROM_BYTES;
                let tiff_pixel = match pixel {
                    PixelKind::Gray8 => TiffPixel::Gray8,
                    PixelKind::Rgb8 => TiffPixel::Rgb8,
                };
                let writer = TiffWriter::start(file, width, height, tiff_pixel, big, orientation);
                Encoder::Tiff(writer.map_err(write_error)?)
            }
            ImageFormat::OmeTiff => {
                let (channels, rule) = match pixel {
                    PixelKind::Gray8 => (1, Reduction::Mask),
                    PixelKind::Rgb8 => (3, Reduction::Mean),
                };
                let samples = OmeSamples::U8 { channels, rule };
                let writer = OmeTiffWriter::start(
                    file,
                    width,
                    height,
                    samples,
                    force_bigtiff,
                    orientation,
                    microns_per_pixel,
                );
                Encoder::OmeTiff(writer.and_then(OmeTiffWriter::spawn).map_err(write_error)?)
            }
            ImageFormat::OmeZarr => unreachable!("returned above"),
            ImageFormat::Jpeg => {
                let mut pixels = Vec::new();
                pixels.try_reserve_exact(row_len * height).map_err(|_| {
                    write_error(format!(
                        "{width}x{height} does not fit in memory as a JPEG; use .png or .tif"
                    ))
                })?;
                Encoder::Jpeg { file, pixels, pixel, orientation }
            }
        };
        Ok(RowSink {
            path: path.to_path_buf(),
            encoder,
            width,
            height,
            rows_written: 0,
            row_len,
            floats: false,
        })
    }

    /// A float32 (height, width) output of probabilities.
    pub fn probabilities(
        path: &Path,
        format: ProbabilityFormat,
        width: usize,
        height: usize,
        force_bigtiff: bool,
    ) -> Result<RowSink, SinkError> {
        let options = SinkOptions { force_bigtiff, ..SinkOptions::default() };
        RowSink::probabilities_with(path, format, width, height, options)
    }

    /// A float32 output of probabilities written with `options`: a TIFF carries the orientation; a .npy
    /// file cannot, and stays in stored orientation.
    pub fn probabilities_with(
        path: &Path,
        format: ProbabilityFormat,
        width: usize,
        height: usize,
        options: SinkOptions,
    ) -> Result<RowSink, SinkError> {
        let SinkOptions { force_bigtiff, orientation, microns_per_pixel, ngff } = options;
        let write_error = |reason: String| SinkError::Write { path: path.to_path_buf(), reason };
        if format == ProbabilityFormat::OmeZarr {
            let layout = StoreLayout::output(ngff, width, height, OmeSamples::F32, microns_per_pixel);
            let writer = OmeZarrWriter::create_with(path, OmeSamples::F32, layout);
            return Ok(RowSink {
                path: path.to_path_buf(),
                encoder: Encoder::OmeZarr(Box::new(writer.map_err(write_error)?)),
                width,
                height,
                rows_written: 0,
                row_len: width,
                floats: true,
            });
        }
        let mut file = create(path)?;
        let encoder = match format {
            ProbabilityFormat::Npy => {
                file.write_all(&npy_header(height, width)).map_err(|e| write_error(e.to_string()))?;
                Encoder::Npy(file)
            }
            ProbabilityFormat::Tiff => {
                let big =
                    force_bigtiff || (height as u64).saturating_mul(4 * width as u64) >= BIGTIFF_FROM_BYTES;
                let writer = TiffWriter::start(file, width, height, TiffPixel::GrayF32, big, orientation);
                Encoder::Tiff(writer.map_err(write_error)?)
            }
            ProbabilityFormat::OmeTiff => {
                let writer = OmeTiffWriter::start(
                    file,
                    width,
                    height,
                    OmeSamples::F32,
                    force_bigtiff,
                    orientation,
                    microns_per_pixel,
                );
                Encoder::OmeTiff(writer.and_then(OmeTiffWriter::spawn).map_err(write_error)?)
            }
            ProbabilityFormat::OmeZarr => unreachable!("returned above"),
        };
        Ok(RowSink {
            path: path.to_path_buf(),
            encoder,
            width,
            height,
            rows_written: 0,
            row_len: width,
            floats: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn count_rows(&mut self, len: usize) -> Result<(), SinkError> {
        let rows = len / self.row_len;
        if !len.is_multiple_of(self.row_len) || self.rows_written + rows > self.height {
            return Err(SinkError::Write {
                path: self.path.clone(),
                reason: format!(
                    "{len} values do not make whole rows of the remaining image (a bug in the runner)"
                ),
            });
        }
        self.rows_written += rows;
        Ok(())
    }

    /// Writes whole rows of 8-bit pixels (mask, overlay, error map).
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), SinkError> {
        self.count_rows(rows.len())?;
        let result = match &mut self.encoder {
            Encoder::Png(stream) => stream.write_all(rows).map_err(|e| e.to_string()),
            Encoder::Tiff(writer) if !self.floats => writer.write(rows),
            Encoder::OmeTiff(writer) if !self.floats => writer.write_pixels(rows),
            Encoder::OmeZarr(writer) if !self.floats => writer.write_pixels(rows),
            Encoder::Jpeg { pixels, .. } => {
                pixels.extend_from_slice(rows);
                Ok(())
            }
            Encoder::Tiff(_) | Encoder::OmeTiff(_) | Encoder::OmeZarr(_) | Encoder::Npy(_) => {
                Err("8-bit rows sent to a float output (a bug in the runner)".into())
            }
        };
        result.map_err(|reason| SinkError::Write { path: self.path.clone(), reason })
    }

    /// Writes whole rows of float32 values (probabilities).
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), SinkError> {
        self.count_rows(rows.len())?;
        let result = match &mut self.encoder {
            Encoder::Npy(file) => {
                let mut bytes = Vec::with_capacity(rows.len().min(1 << 16) * 4);
                let mut result = Ok(());
                for chunk in rows.chunks(1 << 16) {
                    bytes.clear();
                    bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                    result = file.write_all(&bytes).map_err(|e| e.to_string());
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Encoder::Tiff(writer) if self.floats => {
                let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_ne_bytes()).collect();
                writer.write(&bytes)
            }
            Encoder::OmeTiff(writer) if self.floats => writer.write_values(rows),
            Encoder::OmeZarr(writer) if self.floats => writer.write_values(rows),
            _ => Err("float rows sent to an 8-bit output (a bug in the runner)".into()),
        };
        result.map_err(|reason| SinkError::Write { path: self.path.clone(), reason })
    }

    /// Ends the file (every row must have been written) and flushes it.
    pub fn finish(self) -> Result<(), SinkError> {
        let RowSink { path, encoder, width, height, rows_written, .. } = self;
        let write_error = |reason: String| SinkError::Write { path: path.clone(), reason };
        if rows_written != height {
            return Err(write_error(format!("only {rows_written} of {height} rows were written")));
        }
        match encoder {
            Encoder::Png(stream) => stream.finish().map_err(|e| e.to_string()),
            Encoder::Tiff(writer) => writer.finish(),
            Encoder::OmeTiff(writer) => writer.finish(),
            Encoder::OmeZarr(writer) => writer.finish(),
            Encoder::Jpeg { mut file, pixels, pixel, orientation } => {
                use image::ImageEncoder;
                let color = match pixel {
                    PixelKind::Gray8 => image::ExtendedColorType::L8,
                    PixelKind::Rgb8 => image::ExtendedColorType::Rgb8,
                };
                let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, JPEG_QUALITY);
                // An APP1 segment: "Exif\0\0" and the TIFF-structured block.
                let exif = match orientation {
                    Orientation::Normal => Ok(()),
                    o => encoder.set_exif_metadata(o.exif()).map_err(|e| e.to_string()),
                };
                exif.and_then(|()| {
                    encoder
                        .write_image(&pixels, width as u32, height as u32, color)
                        .map_err(|e| e.to_string())
                })
                .and_then(|()| file.flush().map_err(|e| e.to_string()))
            }
            Encoder::Npy(mut file) => file.flush().map_err(|e| e.to_string()),
        }
        .map_err(write_error)
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, SinkError> {
    let file = File::create(path).map_err(|e| SinkError::Write {
        path: path.to_path_buf(),
        reason: format!("{e}; check that its folder exists and is writable"),
    })?;
    Ok(BufWriter::with_capacity(1 << 16, file))
}

fn to_u32(n: usize, path: &Path) -> Result<u32, SinkError> {
    u32::try_from(n).map_err(|_| SinkError::Write {
        path: path.to_path_buf(),
        reason: format!("{n} pixels is too large"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        for (h, w) in [(1, 1), (480, 640), (8192, 8192)] {
            let header = npy_header(h, w);
            assert_eq!(header.len() % 64, 0);
            assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
            let len = u16::from_le_bytes([header[8], header[9]]) as usize;
            assert_eq!(10 + len, header.len());
            let text = std::str::from_utf8(&header[10..]).unwrap();
            assert!(text
                .starts_with(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}")));
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn output_format_follows_the_extension() {
        assert_eq!(ImageFormat::from_path(Path::new("a/p.PNG")).unwrap(), ImageFormat::Png);
        assert_eq!(ImageFormat::from_path(Path::new("p.jpg")).unwrap(), ImageFormat::Jpeg);
        assert_eq!(ImageFormat::from_path(Path::new("p.jpeg")).unwrap(), ImageFormat::Jpeg);
        assert_eq!(ImageFormat::from_path(Path::new("p.tif")).unwrap(), ImageFormat::Tiff);
        assert_eq!(ImageFormat::from_path(Path::new("p.TIFF")).unwrap(), ImageFormat::Tiff);
        assert_eq!(ImageFormat::from_path(Path::new("a.b/p.OME.TIF")).unwrap(), ImageFormat::OmeTiff);
        assert_eq!(ImageFormat::from_path(Path::new("p.ome.tiff")).unwrap(), ImageFormat::OmeTiff);
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.ome.tif")).unwrap(), ProbabilityFormat::OmeTiff);
        for bad in ["p.bmp", "p", "p.npy", "p.ome"] {
            let err = ImageFormat::from_path(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("use a file name ending in .png, .tif"), "{err}");
        }
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.npy")).unwrap(), ProbabilityFormat::Npy);
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.tif")).unwrap(), ProbabilityFormat::Tiff);
        assert!(ProbabilityFormat::from_path(Path::new("p.png")).is_err());
    }

    #[test]
    fn image_outputs_carry_the_orientation_and_npy_stays_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (width, height) = (5, 3);
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 13) as u8).collect();
        for orientation in [Orientation::Normal, Orientation::Rotate90, Orientation::MirrorVertical] {
            for (ext, format) in
                [("png", ImageFormat::Png), ("tif", ImageFormat::Tiff), ("jpg", ImageFormat::Jpeg)]
            {
                let path = dir.path().join(format!("o{}.{ext}", orientation.tag()));
                let options = SinkOptions { orientation, ..SinkOptions::default() };
                let mut sink =
                    RowSink::image_with(&path, format, PixelKind::Rgb8, width, height, options).unwrap();
                sink.write_pixels(&rgb).unwrap();
                sink.finish().unwrap();
                let mut source =
                    crate::source::ImageSource::open(&path, crate::source::Channels::Rgb).unwrap();
                assert_eq!(source.orientation(), orientation, "{ext}");
                let pixels = source.read_all().unwrap();
                if format != ImageFormat::Jpeg {
                    assert_eq!(pixels, rgb, "{ext}: the pixels stay as stored");
                }
            }
            let path = dir.path().join("p.tif");
            let options = SinkOptions { orientation, force_bigtiff: true, ..SinkOptions::default() };
            let mut sink =
                RowSink::probabilities_with(&path, ProbabilityFormat::Tiff, width, height, options).unwrap();
            sink.write_values(&vec![0.5; width * height]).unwrap();
            sink.finish().unwrap();
            let source = crate::source::ImageSource::open(&path, crate::source::Channels::Gray).unwrap();
            assert_eq!(source.orientation(), orientation, "probabilities (BigTIFF)");
        }
    }

    #[test]
    fn a_jpeg_above_its_side_limit_is_refused_before_any_work() {
        let err = ImageFormat::Jpeg.check_size(Path::new("m.jpg"), 70_000, 10).unwrap_err().to_string();
        assert!(err.contains("at most 65535 px a side") && err.contains("70000x10"), "{err}");
        assert!(ImageFormat::Png.check_size(Path::new("m.png"), 70_000, 10).is_ok());
    }
}
