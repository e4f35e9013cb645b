//! JPEG 2000 TIFF chunks (compression 33003 and 33005, Aperio's; 34712, the generic one that Bio-Formats
//! and GDAL write): each chunk is a raw codestream (or a JP2 file), decoded by hayro-jpeg2000 (pure Rust).
//! The decoder applies the codestream's own component transform (RCT or ICT, when its COD marker says
//! so). What the components then are comes from the compression, as OpenSlide reads Aperio's files:
//! 33003 holds Y, Cb, Cr, converted here to RGB with OpenSlide's arithmetic; 33005 and 34712 hold RGB (or
//! gray), taken as decoded. A codestream whose two chroma components are subsampled is taken as YCbCr by
//! the decoder itself (its sYCC conversion, chroma repeated over the pixels it covers), as it would be
//! with no TIFF around it; it is not converted twice. The image size is read from the SIZ marker and
//! checked against the chunk before anything is decoded.

use hayro_jpeg2000::{DecodeSettings, DecoderContext, Image};

/// A decoded JPEG 2000 chunk: 8-bit pixels of `components` samples (1 gray, 3 RGB), `width` x `height`.
pub(super) struct Jpeg2000Chunk {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub components: usize,
}

/// What the SIZ marker of a codestream declares: the image size, and each component's bit depth and
/// subsampling (XRsiz, YRsiz).
#[derive(Debug, PartialEq, Eq)]
struct Siz {
    width: u32,
    height: u32,
    components: Vec<(u8, u8, u8)>,
}

/// The SIZ marker of `data` (a raw codestream, or a JP2 file whose first contiguous codestream box holds
/// one), or why it cannot be read.
fn siz(data: &[u8]) -> Result<Siz, String> {
    let stream = codestream(data)?;
    if !stream.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Err("its JPEG 2000 data does not start with a codestream header (SOC, SIZ)".into());
    }
    let be32 = |at: usize| -> Result<u32, String> {
        stream
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "its JPEG 2000 header is cut short".to_string())
    };
    // SOC (2), SIZ marker (2), Lsiz (2), Rsiz (2), then Xsiz, Ysiz, XOsiz, YOsiz, four tile fields, Csiz.
    let (xsiz, ysiz, xosiz, yosiz) = (be32(8)?, be32(12)?, be32(16)?, be32(20)?);
    let csiz = stream
        .get(40..42)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or("its JPEG 2000 header is cut short")?;
    let table = stream.get(42..42 + 3 * csiz).ok_or("its JPEG 2000 header is cut short")?;
    let components = table.chunks_exact(3).map(|c| ((c[0] & 0x7F) + 1, c[1], c[2])).collect();
    if xosiz >= xsiz || yosiz >= ysiz {
        return Err(format!(
            "its JPEG 2000 header declares an empty image ({xsiz}x{ysiz} from {xosiz},{yosiz})"
        ));
    }
    Ok(Siz { width: xsiz - xosiz, height: ysiz - yosiz, components })
}

/// The codestream of `data`: `data` itself, or the contents of a JP2 file's contiguous codestream box.
fn codestream(data: &[u8]) -> Result<&[u8], String> {
    const JP2: &[u8] = b"\x00\x00\x00\x0C\x6A\x50\x20\x20";
    if !data.starts_with(JP2) {
        return Ok(data);
    }
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as u64;
        let kind = &data[at + 4..at + 8];
        let (header, len) = match len {
            0 => (8, (data.len() - at) as u64),
            1 => {
                let b = data.get(at + 8..at + 16).ok_or("its JP2 box header is cut short")?;
                (16, u64::from_be_bytes(b.try_into().unwrap_or_default()))
            }
            n => (8, n),
        };
        let end = usize::try_from(len).ok().and_then(|l| at.checked_add(l)).filter(|&e| e <= data.len());
        let end = end.filter(|&e| e >= at + header).ok_or("a JP2 box reaches past its chunk")?;
        if kind == b"jp2c" {
            return Ok(&data[at + header..end]);
        }
        at = end;
    }
    Err("its JP2 data holds no codestream box".into())
}

/// Decodes one chunk; `ycbcr` when its components are Y, Cb, Cr (compression 33003, or a YCbCr
/// photometric interpretation). A chunk larger than `max_pixels`, or of more than 4 components, is
/// refused before decoding.
pub(super) fn decode(data: &[u8], ycbcr: bool, max_pixels: usize) -> Result<Jpeg2000Chunk, String> {
    let siz = siz(data)?;
    let (width, height) = (siz.width as usize, siz.height as usize);
    if width.saturating_mul(height) > max_pixels {
        return Err(format!("a JPEG 2000 chunk is {width}x{height}, larger than its chunk"));
    }
    if siz.components.is_empty() || siz.components.len() > 4 {
        return Err(format!("a JPEG 2000 chunk has {} components", siz.components.len()));
    }
    if let Some(&(bits, _, _)) = siz.components.iter().find(|c| c.0 != 8) {
        return Err(format!("a JPEG 2000 chunk has {bits}-bit samples; 8-bit samples are read"));
    }
    let corrupt = |e: hayro_jpeg2000::DecodeError| format!("its JPEG 2000 data is corrupt ({e})");
    let settings = DecodeSettings { resolve_palette_indices: true, strict: false, target_resolution: None };
    let image = Image::new(data, &settings).map_err(corrupt)?;
    if (image.width() as usize, image.height() as usize) != (width, height) {
        return Err(format!(
            "a JPEG 2000 chunk decodes to {}x{}, where its header says {width}x{height}",
            image.width(),
            image.height()
        ));
    }
    let mut context = DecoderContext::default();
    let decoded = image.decode(&mut context).map_err(corrupt)?;
    let components = decoded.components().len();
    let samples = width * height;
    if decoded.components().iter().any(|c| c.samples().len() < samples) {
        return Err(format!("a JPEG 2000 chunk decodes to fewer than its {width}x{height} pixels"));
    }
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(samples * components)
        .map_err(|_| format!("a JPEG 2000 chunk of {width}x{height} does not fit in memory"))?;
    pixels.resize(samples * components, 0);
    decoded.store_u8_into(&mut pixels);
    // Subsampled chroma is what the decoder takes as YCbCr (and converts); full-size components are not.
    let converted = matches!(
        siz.components.as_slice(),
        [y, cb, cr] if (cb.1, cb.2) == (cr.1, cr.2) && (cb.1, cb.2) != (y.1, y.2) && cb.1 >= y.1 && cb.2 >= y.2
    );
    if ycbcr && components >= 3 && !converted {
        for px in pixels.chunks_exact_mut(components) {
            let rgb = ycbcr_to_rgb(px[0], px[1], px[2]);
            px[..3].copy_from_slice(&rgb);
        }
    }
    Ok(Jpeg2000Chunk { pixels, width, height, components })
}

/// OpenSlide's YCbCr to RGB for Aperio's JPEG 2000 (its make-tables.c): red and blue chroma rounded to
/// whole levels, green's in 16-bit fixed point with the rounding half added to the Cb term.
pub(super) fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (i32::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let r = y + (1.402 * cr).round() as i32;
    let g_cb = (65536.0 * (0.5 - 0.34414 * cb)).round() as i32;
    let g_cr = (65536.0 * -0.71414 * cr).round() as i32;
    let g = y + ((g_cb + g_cr) >> 16);
    let b = y + (1.772 * cb).round() as i32;
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOC + SIZ header of a `w`x`h` image of `components` (bits, XRsiz, YRsiz).
    fn header(w: u32, h: u32, components: &[(u8, u8, u8)]) -> Vec<u8> {
        let mut v = vec![0xFF, 0x4F, 0xFF, 0x51];
        v.extend_from_slice(&(38 + 3 * components.len() as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        for x in [w, h, 0, 0, w, h, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&(components.len() as u16).to_be_bytes());
        for &(bits, xr, yr) in components {
            v.extend_from_slice(&[bits - 1, xr, yr]);
        }
        v
    }

    #[test]
    fn the_size_is_read_and_checked_before_decoding() {
        let h = header(32768, 32768, &[(8, 1, 1), (8, 2, 1), (8, 2, 1)]);
        assert_eq!(
            siz(&h).unwrap(),
            Siz { width: 32768, height: 32768, components: vec![(8, 1, 1), (8, 2, 1), (8, 2, 1)] }
        );
        let e = decode(&h, true, 256 * 256).err().unwrap();
        assert!(e.contains("32768x32768, larger than its chunk"), "{e}");
        let e = decode(&header(16, 16, &[(16, 1, 1)]), false, 256).err().unwrap();
        assert!(e.contains("16-bit samples"), "{e}");
        let e = decode(&h[..20], false, 256).err().unwrap();
        assert!(e.contains("cut short"), "{e}");
        let e = decode(b"not a codestream", false, 256).err().unwrap();
        assert!(e.contains("does not start with a codestream"), "{e}");
    }

    #[test]
    fn a_jp2_file_is_opened_to_its_codestream() {
        let h = header(8, 4, &[(8, 1, 1)]);
        let mut jp2 = b"\x00\x00\x00\x0C\x6A\x50\x20\x20\x0D\x0A\x87\x0A".to_vec();
        jp2.extend_from_slice(&(8 + h.len() as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&h);
        assert_eq!(siz(&jp2).unwrap().width, 8);
        jp2.truncate(jp2.len() - 3);
        assert!(siz(&jp2).is_err(), "a box past the end");
    }

    #[test]
    fn ycbcr_conversion_matches_openslide() {
        // Worked by hand from make-tables.c's formulas.
        assert_eq!(ycbcr_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(0, 0, 0), [0, 135, 0]);
        assert_eq!(ycbcr_to_rgb(255, 255, 255), [255, 121, 255]);
        assert_eq!(ycbcr_to_rgb(100, 200, 50), [0, 131, 228]);
    }
}
