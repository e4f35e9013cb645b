//! Files in and out: the input image (PNG, JPEG or TIFF) as 8-bit RGB, the reference mask, and the outputs
//! (mask image, overlay, .npy probabilities), every output written atomically (temporary file beside the
//! target, then rename), so a failure never leaves a partial file.
//!
//! Input conversion, as documented in the README: RGB as is; RGBA and gray+alpha drop the alpha channel
//! (no compositing); grayscale is repeated to three channels; 16-bit channels are scaled to 8 bits
//! (v * 255 / 65535, rounded); float TIFFs are clamped to [0, 1] and scaled to 255.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Cursor, Seek, Write};
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageReader, Limits, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is not a readable PNG, JPEG or TIFF image ({reason})")]
    Decode { path: PathBuf, reason: String },
    #[error("mask {path} is {mask_width}x{mask_height} but the image is {width}x{height}; pass the mask of this image")]
    MaskSize { path: PathBuf, mask_width: u32, mask_height: u32, width: u32, height: u32 },
    #[error("{path}: unsupported output format; use a file name ending in .png, .jpg or .jpeg")]
    OutputFormat { path: PathBuf },
    #[error("cannot write {path}: {reason}; check that its folder exists and is writable")]
    Write { path: PathBuf, reason: String },
}

/// Decodes image bytes (format guessed from the content) to 8-bit RGB as documented above.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, image::ImageError> {
    Ok(decode(bytes)?.into_rgb8())
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, image::ImageError> {
    decode_from(Cursor::new(bytes))
}

fn decode_from(source: impl BufRead + Seek) -> Result<DynamicImage, image::ImageError> {
    let mut reader = ImageReader::new(source).with_guessed_format()?;
    // The default 512 MiB allocation limit refuses large 16-bit images (8192^2 RGBA16 is 512 MiB).
    let mut limits = Limits::default();
    limits.max_alloc = Some(4 << 30);
    reader.limits(limits);
    reader.decode()
}

/// Decodes the file at `path`, streaming it (a large image's file bytes are never all held at once).
fn load(what: &'static str, path: &Path) -> Result<DynamicImage, IoError> {
    let file = File::open(path).map_err(|source| IoError::Read { what, path: path.to_path_buf(), source })?;
    decode_from(BufReader::new(file))
        .map_err(|e| IoError::Decode { path: path.to_path_buf(), reason: e.to_string() })
}

/// Loads the image to predict as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, IoError> {
    Ok(load("image", path)?.into_rgb8())
}

/// Loads a reference mask (any format the image loader reads; converted to 8-bit gray by luminance) and
/// checks its size. Foreground is gray > 127.
pub fn load_mask(path: &Path, width: u32, height: u32) -> Result<Vec<u8>, IoError> {
    let gray: GrayImage = load("mask", path)?.into_luma8();
    if gray.dimensions() != (width, height) {
        return Err(IoError::MaskSize {
            path: path.to_path_buf(),
            mask_width: gray.width(),
            mask_height: gray.height(),
            width,
            height,
        });
    }
    Ok(mask_classes(gray.as_raw()))
}

/// Class indices (1 = foreground) of a gray mask: pixel > 127 is foreground.
pub fn mask_classes(gray: &[u8]) -> Vec<u8> {
    gray.iter().map(|&v| u8::from(v > 127)).collect()
}

/// Formats the mask and overlay images can be written in, chosen by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

/// Quality of written JPEGs: high, so that the mask's edges stay close to the prediction.
const JPEG_QUALITY: u8 = 95;

impl ImageFormat {
    pub fn from_path(path: &Path) -> Result<ImageFormat, IoError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(ImageFormat::Png),
            Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
            _ => Err(IoError::OutputFormat { path: path.to_path_buf() }),
        }
    }
}

/// Writes to a temporary file beside `path` through `write`, syncs it and renames it over `path`. On any
/// failure the temporary file is removed and whatever was at `path` is left as it was.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), String>,
) -> Result<(), IoError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<(), String> {
        let file = File::create(&tmp).map_err(|e| e.to_string())?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.error().to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|reason| IoError::Write { path: path.to_path_buf(), reason })
}

fn encode(
    out: &mut impl Write,
    format: ImageFormat,
    pixels: &[u8],
    width: u32,
    height: u32,
    color: image::ExtendedColorType,
) -> Result<(), String> {
    use image::ImageEncoder;
    match format {
        ImageFormat::Png => {
            image::codecs::png::PngEncoder::new(out).write_image(pixels, width, height, color)
        }
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(out, JPEG_QUALITY)
            .write_image(pixels, width, height, color),
    }
    .map_err(|e| e.to_string())
}

/// Writes the class mask (1 = foreground) as a gray image, foreground white, background black.
pub fn write_mask(path: &Path, classes: &[u8], width: u32, height: u32) -> Result<(), IoError> {
    let format = ImageFormat::from_path(path)?;
    let gray: Vec<u8> = classes.iter().map(|&c| if c > 0 { 255 } else { 0 }).collect();
    write_atomic(path, |out| encode(out, format, &gray, width, height, image::ExtendedColorType::L8))
}

/// Tint of foreground pixels in the overlay, and its weight.
const TINT: [u8; 3] = [255, 0, 160];
const TINT_WEIGHT: u16 = 128;

/// Tints the foreground pixels of `rgb` in place (half image, half magenta).
pub fn tint_foreground(rgb: &mut [u8], classes: &[u8]) {
    for (px, &c) in rgb.chunks_exact_mut(3).zip(classes) {
        if c > 0 {
            for (v, t) in px.iter_mut().zip(TINT) {
                *v = ((*v as u16 * (256 - TINT_WEIGHT) + t as u16 * TINT_WEIGHT) >> 8) as u8;
            }
        }
    }
}

/// Writes the input with the foreground tinted, for people to look at. Consumes the image (tinted in place:
/// no second copy of a large image).
pub fn write_overlay(path: &Path, mut rgb: RgbImage, classes: &[u8]) -> Result<(), IoError> {
    let format = ImageFormat::from_path(path)?;
    tint_foreground(&mut rgb, classes);
    let (w, h) = rgb.dimensions();
    write_atomic(path, |out| encode(out, format, rgb.as_raw(), w, h, image::ExtendedColorType::Rgb8))
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

/// Writes `values` (row-major height x width) as a float32 .npy file.
pub fn write_npy(path: &Path, values: &[f32], height: usize, width: usize) -> Result<(), IoError> {
    assert_eq!(values.len(), height * width, "npy data does not match its shape");
    write_atomic(path, |out| {
        out.write_all(&npy_header(height, width)).map_err(|e| e.to_string())?;
        for chunk in values.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        Ok(())
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
        for bad in ["p.bmp", "p", "p.tif"] {
            let err = ImageFormat::from_path(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("use a file name ending in .png, .jpg or .jpeg"), "{err}");
        }
    }

    #[test]
    fn mask_threshold_is_above_127() {
        assert_eq!(mask_classes(&[0, 127, 128, 255]), [0, 0, 1, 1]);
    }

    #[test]
    fn tint_changes_only_foreground() {
        let mut rgb = vec![10, 20, 30, 10, 20, 30];
        tint_foreground(&mut rgb, &[0, 1]);
        assert_eq!(&rgb[..3], &[10, 20, 30]);
        assert_ne!(&rgb[3..], &[10, 20, 30]);
    }
}
