//! Whole images in and out, for images that fit in memory (the in-memory reference path, tests and
//! benches): the input image as 8-bit RGB and the reference mask through [`crate::source`], and the
//! outputs through [`crate::sink`] in one go, each written atomically (temporary file beside the target,
//! then rename), so a failure never leaves a partial file. The CLI streams instead (`predict_stream`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;

pub use crate::sink::{npy_header, ImageFormat};
use crate::sink::{PixelKind, ProbabilityFormat, RowSink, SinkError};
use crate::source::{Channels, ImageSource, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("mask {path} is {mask_width}x{mask_height} but the image is {width}x{height}; pass the mask of this image")]
    MaskSize { path: PathBuf, mask_width: usize, mask_height: usize, width: usize, height: usize },
    #[error("cannot write {path}: {reason}; check that its folder exists and is writable")]
    Write { path: PathBuf, reason: String },
}

fn rgb_image(mut source: ImageSource) -> Result<RgbImage, SourceError> {
    let (width, height) = (source.width() as u32, source.height() as u32);
    let pixels = source.read_all()?;
    Ok(RgbImage::from_raw(width, height, pixels).expect("a source returns width x height x 3 bytes"))
}

/// Decodes image bytes (format recognised from the content) to 8-bit RGB as documented in
/// [`crate::source`].
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, SourceError> {
    rgb_image(ImageSource::from_bytes(bytes, "the image", Channels::Rgb)?)
}

/// Loads the image to predict as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, SourceError> {
    rgb_image(ImageSource::open(path, Channels::Rgb)?)
}

/// Checks that a reference mask has the image's size.
pub fn check_mask_size(mask: &ImageSource, path: &Path, width: usize, height: usize) -> Result<(), IoError> {
    if (mask.width(), mask.height()) != (width, height) {
        return Err(IoError::MaskSize {
            path: path.to_path_buf(),
            mask_width: mask.width(),
            mask_height: mask.height(),
            width,
            height,
        });
    }
    Ok(())
}

/// Loads a reference mask (gray, or colour turned to gray by luminance) and checks its size. Returns class
/// indices: gray > 127 is foreground.
pub fn load_mask(path: &Path, width: usize, height: usize) -> Result<Vec<u8>, IoError> {
    let mut mask = ImageSource::open(path, Channels::Gray)?;
    check_mask_size(&mask, path, width, height)?;
    Ok(mask_classes(&mask.read_all()?))
}

/// Class indices (1 = foreground) of a gray mask: pixel > 127 is foreground.
pub fn mask_classes(gray: &[u8]) -> Vec<u8> {
    gray.iter().map(|&v| u8::from(v > 127)).collect()
}

/// The gray mask image of class indices: foreground white, background black.
pub fn mask_pixels(classes: &[u8]) -> Vec<u8> {
    classes.iter().map(|&c| if c > 0 { 255 } else { 0 }).collect()
}

/// Writes to a temporary file beside `path` through `write`, syncs it and renames it over `path`. On any
/// failure the temporary file is removed and whatever was at `path` is left as it was.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), IoError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<(), String> {
        write(&tmp)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|reason| IoError::Write { path: path.to_path_buf(), reason })
}

/// Writes bytes atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic(path, |tmp| {
        let mut out = BufWriter::new(File::create(tmp).map_err(|e| e.to_string())?);
        out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| e.to_string())
    })
}

/// Writes 8-bit pixels (`kind`) of a whole image to `file` in the format of `format_path`'s extension.
pub fn write_image(
    file: &Path,
    format_path: &Path,
    pixels: &[u8],
    kind: PixelKind,
    width: usize,
    height: usize,
) -> Result<(), SinkError> {
    let mut sink = RowSink::image(file, ImageFormat::from_path(format_path)?, kind, width, height, false)?;
    sink.write_pixels(pixels)?;
    sink.finish()
}

/// Writes the class mask (1 = foreground) as a gray image, foreground white, background black; the format
/// follows the extension (.png, .tif, .jpg).
pub fn write_mask(path: &Path, classes: &[u8], width: usize, height: usize) -> Result<(), IoError> {
    ImageFormat::from_path(path)?.check_size(path, width, height)?;
    let gray = mask_pixels(classes);
    write_atomic(path, |tmp| {
        write_image(tmp, path, &gray, PixelKind::Gray8, width, height).map_err(|e| e.to_string())
    })
}

/// Writes `values` (row-major height x width) as float32 probabilities, .npy or .tif.
pub fn write_probabilities(path: &Path, values: &[f32], height: usize, width: usize) -> Result<(), IoError> {
    assert_eq!(values.len(), height * width, "probabilities do not match their shape");
    let format = ProbabilityFormat::from_path(path)?;
    write_atomic(path, |tmp| {
        let mut sink =
            RowSink::probabilities(tmp, format, width, height, false).map_err(|e| e.to_string())?;
        sink.write_values(values).and_then(|()| sink.finish()).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_threshold_is_above_127() {
        assert_eq!(mask_classes(&[0, 127, 128, 255]), [0, 0, 1, 1]);
        assert_eq!(mask_pixels(&[0, 1]), [0, 255]);
    }
}
