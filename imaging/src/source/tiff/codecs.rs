//! The compressions of TIFF chunks (strips or tiles) that decode to bytes: none, LZW, Deflate, PackBits,
//! ZSTD; WebP tiles; and the predictors: horizontal differencing (2) and floating point (3). JPEG tiles
//! are in `jpeg.rs`, JPEG 2000 tiles in `jpeg2000.rs`. Every decoder writes at most the chunk's size and returns an error, never panics, on
//! corrupt data.

use std::io::Read;

/// How a chunk is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    None,
    Lzw,
    Deflate,
    PackBits,
    Jpeg,
    Zstd,
    WebP,
    /// JPEG 2000; `ycbcr` for Aperio's 33003, whose components are Y, Cb, Cr.
    Jpeg2000 {
        ycbcr: bool,
    },
}

impl Codec {
    /// The codec of TIFF compression `code`, or (what the file is, what to do) when it is not read.
    pub fn from_tag(code: u16) -> Result<Codec, (String, String)> {
        let convert =
            "convert it to a TIFF with Deflate, LZW, ZSTD, JPEG, JPEG 2000 or WebP compression (e.g. \
                       `tiffcp -c zip` or `vips tiffsave --compression deflate`)";
        Ok(match code {
            1 => Codec::None,
            5 => Codec::Lzw,
            8 | 32946 => Codec::Deflate,
            32773 => Codec::PackBits,
            7 => Codec::Jpeg,
            50000 | 34926 => Codec::Zstd,
            50001 | 34927 => Codec::WebP,
            33003 => Codec::Jpeg2000 { ycbcr: true },
            33005 | 34712 => Codec::Jpeg2000 { ycbcr: false },
            6 => return Err((
                "an old-style JPEG TIFF (compression 6, the ambiguous TIFF 6.0 scheme that compression 7 \
                     replaced in 1995)"
                    .into(),
                "re-save it with new-style JPEG (compression 7), e.g. with libtiff's `tiffcp -c jpeg`, or \
                     losslessly with `tiffcp -c zip`"
                    .into(),
            )),
            other => {
                return Err((format!("a TIFF with {} compression ({other})", name(other)), convert.into()))
            }
        })
    }
}

impl Codec {
    /// The codec's name, e.g. "Deflate".
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed data",
            Codec::Lzw => "LZW",
            Codec::Deflate => "Deflate",
            Codec::PackBits => "PackBits",
            Codec::Jpeg => "JPEG",
            Codec::Zstd => "ZSTD",
            Codec::WebP => "WebP",
            Codec::Jpeg2000 { .. } => "JPEG 2000",
        }
    }
}

/// The name of TIFF compression `code`.
pub(super) fn name(code: u16) -> &'static str {
    match code {
        1 => "no",
        2 => "CCITT RLE",
        3 => "CCITT Group 3",
        4 => "CCITT Group 4",
        5 => "LZW",
        6 => "old-style JPEG",
        7 => "JPEG",
        8 | 32946 => "Deflate",
        32773 => "PackBits",
        32809 => "ThunderScan",
        32908 | 32909 => "Pixar",
        33003 | 33005 | 34712 => "JPEG 2000",
        34676 | 34677 => "SGILog",
        34887..=34889 => "LERC",
        34892 => "lossy JPEG (DNG)",
        34925 => "LZMA",
        34926 | 50000 => "ZSTD",
        34927 | 50001 => "WebP",
        34933 => "PNG",
        34934 | 22610 => "JPEG XR",
        50002 | 52546 => "JPEG XL",
        65000..=65002 => "EER",
        _ => "an unknown",
    }
}

/// The most bytes `compressed` bytes of `codec` can decode to, from each format's densest encoding, or
/// `None` where a tiny stream can stand for any size (WebP lossless and JPEG 2000 code a flat image in a
/// few bytes whatever its size; their headers' sizes are checked against the chunk instead). A chunk that
/// declares more than its bytes can hold is refused before anything is allocated for it.
pub(super) fn max_decoded(codec: Codec, compressed: u64) -> Option<u64> {
    let (ratio, slack): (u64, u64) = match codec {
        Codec::None => (1, 0),
        // A repeat run: 2 bytes for 128.
        Codec::PackBits => (64, 128),
        // A length code of 258 bytes in as little as 2 bits (1032:1), plus the stream's header and end.
        Codec::Deflate => (1032, 1 << 10),
        // Codes of at least 9 bits, each at most 4096 bytes long.
        Codec::Lzw => (4096 * 8 / 9 + 1, 4096),
        // An RLE block: 4 bytes for up to 128 KiB.
        Codec::Zstd => (1 << 15, 1 << 17),
        // At least 2 bits (DC and end of block) per 8x8 block and component: 256 bytes per byte.
        Codec::Jpeg => (4096, 1 << 16),
        Codec::WebP | Codec::Jpeg2000 { .. } => return None,
    };
    Some(compressed.saturating_mul(ratio).saturating_add(slack))
}

/// Decompresses a chunk compressed with a byte codec into `out` (cleared first), up to `max` bytes;
/// returns how many bytes it decoded.
pub(super) fn decompress(codec: Codec, raw: &[u8], max: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    out.clear();
    out.try_reserve_exact(max).map_err(|_| format!("a chunk of {max} bytes does not fit in memory"))?;
    out.resize(max, 0);
    let got = match codec {
        Codec::None => {
            let n = raw.len().min(max);
            out[..n].copy_from_slice(&raw[..n]);
            n
        }
        Codec::Lzw => lzw(raw, out)?,
        Codec::Deflate => deflate(raw, out)?,
        Codec::PackBits => packbits(raw, out)?,
        Codec::Zstd => zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(raw, &mut out[..]))
            .map_err(|e| format!("its ZSTD data is corrupt ({e})"))?,
        Codec::Jpeg | Codec::WebP | Codec::Jpeg2000 { .. } => {
            unreachable!("pixel codecs are decoded elsewhere")
        }
    };
    out.truncate(got);
    Ok(got)
}

fn lzw(raw: &[u8], out: &mut [u8]) -> Result<usize, String> {
    if raw.starts_with(&[0, 1]) {
        return Err(
            "its LZW data is of the old, bit-reversed kind (written before libtiff 5), which is not read"
                .into(),
        );
    }
    let mut decoder = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let (mut read, mut written) = (0, 0);
    while written < out.len() {
        let result = decoder.decode_bytes(&raw[read..], &mut out[written..]);
        read += result.consumed_in;
        written += result.consumed_out;
        match result.status {
            Ok(weezl::LzwStatus::Done) => break,
            Ok(weezl::LzwStatus::NoProgress) => break, // the data ends without an end code
            Ok(weezl::LzwStatus::Ok) => {}
            Err(e) => return Err(format!("its LZW data is corrupt ({e})")),
        }
    }
    Ok(written)
}

fn deflate(raw: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut decoder = flate2::read::ZlibDecoder::new(raw);
    let mut written = 0;
    while written < out.len() {
        match decoder.read(&mut out[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("its Deflate data is corrupt ({e})")),
        }
    }
    Ok(written)
}

fn packbits(raw: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let (mut i, mut written) = (0, 0);
    while i < raw.len() && written < out.len() {
        let n = raw[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let src = raw.get(i..i + len).ok_or("its PackBits data ends inside a literal run")?;
            let len = len.min(out.len() - written);
            out[written..written + len].copy_from_slice(&src[..len]);
            written += len;
            i += n as usize + 1;
        } else if n != -128 {
            let len = (1 - n as isize) as usize;
            let &value = raw.get(i).ok_or("its PackBits data ends inside a repeat run")?;
            let len = len.min(out.len() - written);
            out[written..written + len].fill(value);
            written += len;
            i += 1;
        }
    }
    // Runs past the chunk's size (beyond trailing no-op bytes) mean corrupt data, as imagecodecs says.
    if raw[i.min(raw.len())..].iter().any(|&b| b != 0x80) {
        return Err("its PackBits data holds more than its chunk's size".into());
    }
    Ok(written)
}

/// A decoded WebP tile: 8-bit RGB or RGBA pixels, its width, height and samples per pixel.
pub(super) fn webp(raw: &[u8], max_pixels: usize) -> Result<(Vec<u8>, usize, usize, usize), String> {
    let corrupt = |e: image_webp::DecodingError| format!("its WebP data is corrupt ({e})");
    let mut decoder = image_webp::WebPDecoder::new(std::io::Cursor::new(raw)).map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    let (w, h) = (w as usize, h as usize);
    if w.saturating_mul(h) > max_pixels {
        return Err(format!("a WebP tile is {w}x{h}, larger than its chunk"));
    }
    let size = decoder.output_buffer_size().ok_or("a WebP tile's size overflows")?;
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(size).map_err(|_| "a WebP tile does not fit in memory")?;
    pixels.resize(size, 0);
    decoder.read_image(&mut pixels).map_err(corrupt)?;
    let spp = if decoder.has_alpha() { 4 } else { 3 };
    if size != w * h * spp {
        return Err(format!("a WebP tile decodes to {size} bytes, not {w}x{h}x{spp}"));
    }
    Ok((pixels, w, h, spp))
}

/// Undoes horizontal differencing (predictor 2) in place: each sample of a row after the first pixel is
/// stored as the difference from the sample `spp` before it.
pub(super) fn undo_horizontal<T: Copy>(
    values: &mut [T],
    row_len: usize,
    spp: usize,
    add: impl Fn(T, T) -> T,
) {
    for row in values.chunks_exact_mut(row_len) {
        for i in spp..row.len() {
            row[i] = add(row[i], row[i - spp]);
        }
    }
}

/// Undoes the floating-point predictor (3) of one row in place: the row's bytes were split into byte
/// planes (most significant byte first, whatever the file's byte order) and then differenced byte by byte.
/// `row` holds `values` samples of `bytes` bytes each; on return each sample's bytes are big-endian.
pub(super) fn undo_floating_point(row: &mut [u8], values: usize, bytes: usize, scratch: &mut Vec<u8>) {
    for i in 1..row.len() {
        row[i] = row[i].wrapping_add(row[i - 1]);
    }
    scratch.clear();
    scratch.extend_from_slice(row);
    for v in 0..values {
        for b in 0..bytes {
            row[v * bytes + b] = scratch[b * values + v];
        }
    }
}

/// The value of an IEEE half-precision float.
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = (h >> 10) & 0x1F;
    let mantissa = f32::from(h & 0x3FF);
    match exponent {
        0 => sign * mantissa * (2f32).powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * (2f32).powi(i32::from(e) - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_follows_the_specification_example() {
        // The example of the TIFF 6.0 specification (section 9).
        let packed =
            [0xFE, 0xAA, 0x02, 0x80, 0x00, 0x2A, 0xFD, 0xAA, 0x03, 0x80, 0x00, 0x2A, 0x22, 0xF7, 0xAA];
        let unpacked = [
            0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0xAA, 0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0x22, 0xAA, 0xAA,
            0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
        ];
        let mut out = Vec::new();
        assert_eq!(decompress(Codec::PackBits, &packed, 24, &mut out).unwrap(), 24);
        assert_eq!(out, unpacked);
        assert!(decompress(Codec::PackBits, &packed[..4], 24, &mut out).is_err(), "cut in a literal run");
        assert!(decompress(Codec::PackBits, &packed, 5, &mut out).is_err(), "more than the chunk's size");
        let padded = [&packed[..], &[0x80, 0x80]].concat();
        assert_eq!(decompress(Codec::PackBits, &padded, 24, &mut out).unwrap(), 24, "trailing no-ops");
    }

    #[test]
    fn deflate_and_zstd_round_trip_and_corruption_is_an_error() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut zlib, &data).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut out = Vec::new();
        assert_eq!(decompress(Codec::Deflate, &zlib, 5000, &mut out).unwrap(), 5000);
        assert_eq!(out, data);
        let mut bad = zlib.clone();
        bad[0] ^= 0xFF;
        assert!(decompress(Codec::Deflate, &bad, 5000, &mut out).is_err());
        let zstd = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decompress(Codec::Zstd, &zstd, 5000, &mut out).unwrap(), 5000);
        assert_eq!(out, data);
        assert!(decompress(Codec::Zstd, &zstd, 4000, &mut out).is_err(), "more data than the chunk holds");
        assert!(decompress(Codec::Zstd, &zstd[..zstd.len() / 2], 5000, &mut out).is_err());
    }

    #[test]
    fn no_codec_decodes_more_than_its_densest_encoding() {
        // Deflate's densest: a run of zeros.
        let zeros = vec![0u8; 10 << 20];
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut zlib, &zeros).unwrap();
        let zlib = zlib.finish().unwrap();
        assert!(max_decoded(Codec::Deflate, zlib.len() as u64).unwrap() >= zeros.len() as u64);
        let zstd = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(max_decoded(Codec::Zstd, zstd.len() as u64).unwrap() >= zeros.len() as u64);
        // 198 bytes of Deflate cannot be a 32768x32768 tile.
        assert!(max_decoded(Codec::Deflate, 198).unwrap() < 32768 * 32768);
        assert_eq!(max_decoded(Codec::None, 100), Some(100));
        assert_eq!(max_decoded(Codec::WebP, 100), None);
    }

    #[test]
    fn predictors_are_undone() {
        let mut v = [10u8, 20, 1, 1, 255, 2];
        undo_horizontal(&mut v, 6, 2, u8::wrapping_add);
        assert_eq!(v, [10, 20, 11, 21, 10, 23]);
        // Two float32 values 1.0 (3F800000) and -2.0 (C0000000): planes [3F C0] [80 00] [00 00] [00 00],
        // differenced.
        let planes: [u8; 8] = [0x3F, 0xC0, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00];
        let mut row: Vec<u8> = planes
            .iter()
            .scan(0u8, |prev, &b| {
                let d = b.wrapping_sub(*prev);
                *prev = b;
                Some(d)
            })
            .collect();
        undo_floating_point(&mut row, 2, 4, &mut Vec::new());
        assert_eq!(f32::from_be_bytes(row[..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_be_bytes(row[4..].try_into().unwrap()), -2.0);
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x3800), 0.5);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
    }
}
