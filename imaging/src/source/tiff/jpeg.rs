//! JPEG-compressed TIFF chunks (compression 7, TIFF Technical Note 2), as libtiff writes them and as
//! scanners, QuPath and tifffile do: the tables-only stream of the JPEGTables tag (347), when there is one,
//! is spliced before each chunk's stream (without the tables' end marker and the chunk's start marker).
//! The components are decoded without any colour transform (the JPEG decoder would guess one from
//! markers, and its own conversion rounds differently from libjpeg's); then, as libtiff decides from the photometric interpretation, YCbCr (6) is converted to RGB
//! with libjpeg's integer arithmetic, and RGB (2) and gray (1) are taken as they are. Chroma subsampling
//! (4:4:4, 4:2:2, 4:2:0, from the stream's sampling factors) is undone by the decoder's "fancy"
//! (triangle-filter) upsampling, as libjpeg-turbo's default.

use jpeg_decoder::{ColorTransform, PixelFormat};

/// A decoded JPEG chunk: 8-bit pixels of `components` samples (1 gray, 3 RGB), `width` x `height`.
pub(super) struct JpegChunk {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub components: usize,
}

/// The stream to decode: `tables` (JPEGTables) spliced before `data`, or `data` alone.
fn splice<'a>(tables: Option<&[u8]>, data: &'a [u8], spliced: &'a mut Vec<u8>) -> &'a [u8] {
    match tables {
        Some(t) if t.len() >= 4 && t.starts_with(&[0xFF, 0xD8]) && data.starts_with(&[0xFF, 0xD8]) => {
            let t = t.strip_suffix(&[0xFF, 0xD9]).unwrap_or(t);
            spliced.clear();
            spliced.extend_from_slice(t);
            spliced.extend_from_slice(&data[2..]);
            spliced
        }
        _ => data,
    }
}

/// Decodes one chunk; `ycbcr` when the TIFF's photometric interpretation is YCbCr. A chunk larger than
/// `max_pixels` is refused before decoding.
pub(super) fn decode(
    tables: Option<&[u8]>,
    data: &[u8],
    ycbcr: bool,
    max_pixels: usize,
    spliced: &mut Vec<u8>,
) -> Result<JpegChunk, String> {
    let stream = splice(tables, data, spliced);
    let corrupt = |e: jpeg_decoder::Error| format!("its JPEG data is corrupt ({e})");
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or("a JPEG chunk has no frame header")?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    if width.saturating_mul(height) > max_pixels {
        return Err(format!("a JPEG chunk is {width}x{height}, larger than its chunk"));
    }
    let components = match info.pixel_format {
        PixelFormat::L8 => 1,
        PixelFormat::RGB24 => 3,
        PixelFormat::L16 => return Err("a JPEG chunk has 12- or 16-bit samples, which are not read".into()),
        PixelFormat::CMYK32 => return Err("a JPEG chunk has 4 components (CMYK), which are not read".into()),
    };
    if components == 3 {
        // "RGB" interleaves the components as they are (jpeg-decoder's `None` does not interleave them).
        decoder.set_color_transform(ColorTransform::RGB);
    }
    decoder.set_max_decoding_buffer_size(max_pixels.saturating_mul(4).max(1 << 20));
    let mut pixels = decoder.decode().map_err(corrupt)?;
    if pixels.len() != width * height * components {
        return Err(format!(
            "a JPEG chunk decodes to {} bytes, not {width}x{height}x{components}",
            pixels.len()
        ));
    }
    if ycbcr && components == 3 {
        for px in pixels.chunks_exact_mut(3) {
            let rgb = ycbcr_to_rgb(px[0], px[1], px[2]);
            px.copy_from_slice(&rgb);
        }
    }
    Ok(JpegChunk { pixels, width, height, components })
}

/// libjpeg's YCbCr to RGB (jdcolor.c): 16-bit fixed point, each term rounded as its tables are.
pub(super) fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const ONE_HALF: i32 = 1 << 15;
    const FIX_1_40200: i32 = 91_881;
    const FIX_1_77200: i32 = 116_130;
    const FIX_0_71414: i32 = 46_802;
    const FIX_0_34414: i32 = 22_554;
    let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
    let r = y + ((FIX_1_40200 * cr + ONE_HALF) >> 16);
    let g = y + ((-FIX_0_34414 * cb + ONE_HALF - FIX_0_71414 * cr) >> 16);
    let b = y + ((FIX_1_77200 * cb + ONE_HALF) >> 16);
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycbcr_conversion_matches_libjpeg() {
        // Worked by hand from jdcolor.c's tables (arithmetic right shifts, then clamping).
        assert_eq!(ycbcr_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(0, 0, 0), [0, 135, 0]);
        assert_eq!(ycbcr_to_rgb(255, 255, 255), [255, 121, 255]);
        assert_eq!(ycbcr_to_rgb(76, 85, 255), [254, 0, 0]);
        assert_eq!(ycbcr_to_rgb(100, 200, 50), [0, 131, 228]);
    }

    #[test]
    fn tables_are_spliced_without_the_inner_markers() {
        let tables = [0xFF, 0xD8, 0xFF, 0xDB, 0xFF, 0xD9];
        let data = [0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xD9];
        let mut spliced = Vec::new();
        assert_eq!(
            splice(Some(&tables), &data, &mut spliced),
            [0xFF, 0xD8, 0xFF, 0xDB, 0xFF, 0xC0, 0xFF, 0xD9]
        );
        assert_eq!(splice(None, &data, &mut spliced), data);
        assert_eq!(splice(Some(&[0, 0]), &data, &mut spliced), data, "tables that are not a stream");
    }
}
