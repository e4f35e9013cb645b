//! JPEG outputs: a JPEG cannot be written by rows, so its rows are gathered and encoded at the end
//! (quality 95), with an APP1 EXIF segment holding the orientation when it is not the stored one. An
//! image above [`JPEG_MAX_SIDE`] a side is refused before any work.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::writer::{create, PixelKind, RowWriter};
use crate::exif::Orientation;

/// The largest side of a JPEG.
pub const JPEG_MAX_SIDE: usize = 65_535;
/// Quality of written JPEGs: high, so that the mask's edges stay close to the prediction.
const JPEG_QUALITY: u8 = 95;

struct JpegWriter {
    file: BufWriter<File>,
    pixels: Vec<u8>,
    pixel: PixelKind,
    size: (u32, u32),
    orientation: Orientation,
}

/// Starts a `width` x `height` JPEG of `pixel` at `path`: room for every row is reserved now.
pub(super) fn start(
    path: &Path,
    pixel: PixelKind,
    (width, height): (usize, usize),
    orientation: Orientation,
) -> Result<Box<dyn RowWriter>, String> {
    let file = create(path)?;
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(width * pixel.bytes() * height)
        .map_err(|_| format!("{width}x{height} does not fit in memory as a JPEG; use .png or .tif"))?;
    let size = (width as u32, height as u32);
    Ok(Box::new(JpegWriter { file, pixels, pixel, size, orientation }))
}

impl RowWriter for JpegWriter {
    fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        self.pixels.extend_from_slice(rows);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        use image::ImageEncoder;
        let JpegWriter { mut file, pixels, pixel, size: (width, height), orientation } = *self;
        let color = match pixel {
            PixelKind::Gray8 => image::ExtendedColorType::L8,
            PixelKind::Rgb8 => image::ExtendedColorType::Rgb8,
        };
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, JPEG_QUALITY);
        // An APP1 segment: "Exif\0\0" and the TIFF-structured block.
        if orientation != Orientation::Normal {
            encoder.set_exif_metadata(orientation.exif()).map_err(|e| e.to_string())?;
        }
        encoder.write_image(&pixels, width, height, color).map_err(|e| e.to_string())?;
        file.flush().map_err(|e| e.to_string())
    }
}
