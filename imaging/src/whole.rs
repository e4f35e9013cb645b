//! Whole images in and out, for images that fit in memory (the trainer's images, the runner's in-memory
//! reference path, tests and benches): the input image as 8-bit RGB and the reference mask through
//! [`crate::source`], and the outputs through [`crate::sink`] in one go, each written atomically through
//! [`crate::files`], so a failure never leaves a partial file. The runner's CLI streams instead.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::files::{self, FileError};
use crate::masks::{classes_from_gray, gray_from_classes};
use crate::sink::{ImageFormat, PixelKind, ProbabilityFormat, RowSink, SinkError};
use crate::source::{Channels, ImageSource, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("mask {path} is {mask_width}x{mask_height} but the image is {width}x{height}; pass the mask of this image")]
    MaskSize { path: PathBuf, mask_width: usize, mask_height: usize, width: usize, height: usize },
    #[error(transparent)]
    File(#[from] FileError),
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
    Ok(classes_from_gray(&mask.read_all()?))
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
    let gray = gray_from_classes(classes);
    files::write_atomic_with("the mask", path, |tmp| {
        write_image(tmp, path, &gray, PixelKind::Gray8, width, height).map_err(|e| e.to_string())
    })?;
    Ok(())
}

/// Writes `values` (row-major height x width) as float32 probabilities, .npy or .tif.
pub fn write_probabilities(path: &Path, values: &[f32], height: usize, width: usize) -> Result<(), IoError> {
    assert_eq!(values.len(), height * width, "probabilities do not match their shape");
    let format = ProbabilityFormat::from_path(path)?;
    files::write_atomic_with("the probabilities", path, |tmp| {
        let mut sink =
            RowSink::probabilities(tmp, format, width, height, false).map_err(|e| e.to_string())?;
        sink.write_values(values).and_then(|()| sink.finish()).map_err(|e| e.to_string())
    })?;
    Ok(())
}
