//! Outputs written row by row, top to bottom, so that memory does not grow with the image height. One
//! format per file, each behind [`RowWriter`] (`writer.rs`: rows in, then finish): `png.rs` (streaming
//! encoder), `tiff.rs` (striped, Deflate, compressed on a thread of its own), `jpeg.rs` (rows gathered,
//! encoded at the end: refused before any work above 65,535 px a side), `npy.rs` (header first, then
//! rows), `ome_tiff.rs` (tiled, pyramidal OME-TIFF) and `ome_zarr.rs` (OME-Zarr store, NGFF 0.4 or 0.5);
//! `format.rs` picks the format from the final path's extension. The levels of the pyramidal formats and
//! the cascade that fills them are [`crate::pyramid`]'s; `threaded.rs` is the one encoder-on-a-thread.
//!
//! Image outputs carry the input's EXIF orientation ([`SinkOptions::orientation`]: TIFF tag 274, PNG eXIf,
//! JPEG APP1), so viewers turn them like the input while their pixels stay in stored order (.npy has none).
//!
//! Each sink writes to the path it is given: the temporary an output set handed out (for a store, an
//! empty folder), put in place at the set's commit ([`crate::files`]); every last flush is checked. Also
//! here: the stores of many processes ([`ome_zarr_shards`]) and the label written into an OME-Zarr input
//! ([`zarr_labels`]), over the same NGFF layer ([`ome_zarr::NgffVersion`]).

mod error;
mod format;
mod jpeg;
mod npy;
pub mod ome_tiff;
pub mod ome_zarr;
pub mod ome_zarr_shards;
mod png;
mod threaded;
mod tiff;
mod writer;
pub mod zarr_labels;

use std::path::{Path, PathBuf};

pub use self::error::SinkError;
pub use self::format::{ImageFormat, ProbabilityFormat};
pub use self::jpeg::JPEG_MAX_SIDE;
pub use self::npy::npy_header;
pub use self::tiff::BIGTIFF_FROM_BYTES;
pub use self::writer::{PixelKind, RowWriter};
pub use crate::exif::Orientation;
use crate::pyramid::SampleKind;
use ome_zarr::{NgffVersion, OmeZarrWriter, StoreLayout};

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

/// One output being written, row by row.
pub struct RowSink {
    path: PathBuf,
    writer: Box<dyn RowWriter>,
    height: usize,
    rows_written: usize,
    /// Bytes (images) or values (probabilities) per row.
    row_len: usize,
    /// Whether rows are float32 values (probabilities) rather than 8-bit pixels.
    floats: bool,
}

impl std::fmt::Debug for RowSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowSink({}, {} rows of {})", self.path.display(), self.height, self.row_len)
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
        let SinkOptions { force_bigtiff, orientation, microns_per_pixel: mpp, ngff } = options;
        format.check_size(path, width, height)?;
        let samples = pixel.samples();
        let size = (width, height);
        let writer = match format {
            ImageFormat::Png => {
                let too_large = |n: usize| format!("{n} pixels is too large");
                let w = u32::try_from(width).map_err(|_| too_large(width));
                let h = u32::try_from(height).map_err(|_| too_large(height));
                w.and_then(|w| h.map(|h| (w, h))).and_then(|size| png::start(path, pixel, size, orientation))
            }
            ImageFormat::Tiff => tiff::start(path, size, samples, force_bigtiff, orientation),
            ImageFormat::OmeTiff => ome_tiff::start(path, size, samples, force_bigtiff, orientation, mpp),
            ImageFormat::OmeZarr => store(path, size, samples, ngff, mpp),
            ImageFormat::Jpeg => jpeg::start(path, pixel, size, orientation),
        };
        RowSink::new(path, writer, height, width * pixel.bytes(), false)
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
        let SinkOptions { force_bigtiff, orientation, microns_per_pixel: mpp, ngff } = options;
        let (size, f32) = ((width, height), SampleKind::F32);
        let writer = match format {
            ProbabilityFormat::Npy => npy::start(path, width, height),
            ProbabilityFormat::Tiff => tiff::start(path, size, f32, force_bigtiff, orientation),
            ProbabilityFormat::OmeTiff => ome_tiff::start(path, size, f32, force_bigtiff, orientation, mpp),
            ProbabilityFormat::OmeZarr => store(path, size, f32, ngff, mpp),
        };
        RowSink::new(path, writer, height, width, true)
    }

    /// A `.npy` of `channels` float32 values per pixel, (height, width, channels) in C order: each row's
    /// values pixel by pixel, every channel of a pixel together.
    pub fn npy_channels(
        path: &Path,
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<RowSink, SinkError> {
        let writer = npy::start_shape(path, &[height, width, channels]);
        RowSink::new(path, writer, height, width * channels, true)
    }

    fn new(
        path: &Path,
        writer: Result<Box<dyn RowWriter>, String>,
        height: usize,
        row_len: usize,
        floats: bool,
    ) -> Result<RowSink, SinkError> {
        let writer = writer.map_err(|reason| SinkError::Write { path: path.to_path_buf(), reason })?;
        Ok(RowSink { path: path.to_path_buf(), writer, height, rows_written: 0, row_len, floats })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn count_rows(&mut self, len: usize) -> Result<(), SinkError> {
        let rows = len / self.row_len;
        if !len.is_multiple_of(self.row_len) || self.rows_written + rows > self.height {
            return Err(self.error(format!(
                "{len} values do not make whole rows of the remaining image (a bug in the runner)"
            )));
        }
        self.rows_written += rows;
        Ok(())
    }

    fn error(&self, reason: String) -> SinkError {
        SinkError::Write { path: self.path.clone(), reason }
    }
    /// Writes whole rows of 8-bit pixels (mask, overlay, error map).
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), SinkError> {
        self.count_rows(rows.len())?;
        let result = match self.floats {
            true => Err("8-bit rows sent to a float output (a bug in the runner)".into()),
            false => self.writer.write_pixels(rows),
        };
        result.map_err(|reason| self.error(reason))
    }

    /// Writes whole rows of float32 values (probabilities).
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), SinkError> {
        self.count_rows(rows.len())?;
        let result = match self.floats {
            true => self.writer.write_values(rows),
            false => Err("float rows sent to an 8-bit output (a bug in the runner)".into()),
        };
        result.map_err(|reason| self.error(reason))
    }

    /// Ends the file (every row must have been written) and flushes it.
    pub fn finish(self) -> Result<(), SinkError> {
        let RowSink { path, writer, height, rows_written, .. } = self;
        let result = match rows_written == height {
            true => writer.finish(),
            false => Err(format!("only {rows_written} of {height} rows were written")),
        };
        result.map_err(|reason| SinkError::Write { path, reason })
    }
}

/// An OME-Zarr store of `samples` at `path` (the folder an output set handed out, or a final path).
fn store(
    path: &Path,
    (width, height): (usize, usize),
    samples: SampleKind,
    ngff: NgffVersion,
    microns_per_pixel: Option<(f64, f64)>,
) -> Result<Box<dyn RowWriter>, String> {
    let layout = StoreLayout::output(ngff, width, height, samples, microns_per_pixel);
    Ok(Box::new(OmeZarrWriter::create_with(path, samples, layout)?))
}
