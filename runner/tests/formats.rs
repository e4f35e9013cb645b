//! Input formats, each decoded as the README documents: PNG, JPEG and TIFF; RGB as is, RGBA with alpha
//! dropped, gray repeated to three channels, 16-bit scaled to 8 bits (v * 255 / 65535, rounded).

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
use imaging::whole::decode_rgb;

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// A 4x2 pattern of distinct values.
fn values() -> [u8; 8] {
    [0, 1, 64, 127, 128, 200, 254, 255]
}

fn rgb_of(v: u8) -> [u8; 3] {
    [v, 255 - v, v / 2]
}

fn expected_rgb() -> Vec<u8> {
    values().iter().flat_map(|&v| rgb_of(v)).collect()
}

#[test]
fn png_and_tiff_rgb_are_exact() {
    let img = ImageBuffer::from_fn(4, 2, |x, y| Rgb(rgb_of(values()[(y * 4 + x) as usize])));
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let decoded = decode_rgb(&encode(DynamicImage::ImageRgb8(img.clone()), format)).unwrap();
        assert_eq!(decoded.dimensions(), (4, 2));
        assert_eq!(decoded.into_raw(), expected_rgb(), "{format:?}");
    }
}

#[test]
fn rgba_drops_alpha_without_compositing() {
    let img = ImageBuffer::from_fn(4, 2, |x, y| {
        let [r, g, b] = rgb_of(values()[(y * 4 + x) as usize]);
        Rgba([r, g, b, (x * 80) as u8]) // alpha 0 included: the colour is kept as is
    });
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let decoded = decode_rgb(&encode(DynamicImage::ImageRgba8(img.clone()), format)).unwrap();
        assert_eq!(decoded.into_raw(), expected_rgb(), "{format:?}");
    }
}

#[test]
fn gray_is_repeated_to_three_channels() {
    let img = ImageBuffer::from_fn(4, 2, |x, y| Luma([values()[(y * 4 + x) as usize]]));
    let expected: Vec<u8> = values().iter().flat_map(|&v| [v, v, v]).collect();
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let decoded = decode_rgb(&encode(DynamicImage::ImageLuma8(img.clone()), format)).unwrap();
        assert_eq!(decoded.into_raw(), expected, "{format:?}");
    }
    // Gray with alpha: alpha dropped, gray repeated.
    let img = ImageBuffer::from_fn(4, 2, |x, y| LumaA([values()[(y * 4 + x) as usize], 0]));
    let decoded = decode_rgb(&encode(DynamicImage::ImageLumaA8(img), ImageFormat::Png)).unwrap();
    assert_eq!(decoded.into_raw(), expected);
}

/// 16-bit values and their documented 8-bit result (v * 255 / 65535, rounded to nearest).
const SIXTEEN: [(u16, u8); 8] =
    [(0, 0), (128, 0), (129, 1), (257, 1), (25_700, 100), (32_896, 128), (65_278, 254), (65_535, 255)];

#[test]
fn sixteen_bit_is_scaled_to_eight_bits() {
    for (v, expected) in SIXTEEN {
        assert_eq!(((v as f64) * 255.0 / 65535.0).round() as u8, expected, "table entry {v}");
    }
    let gray = ImageBuffer::from_fn(4, 2, |x, y| Luma([SIXTEEN[(y * 4 + x) as usize].0]));
    let rgb = ImageBuffer::from_fn(4, 2, |x, y| {
        let v = SIXTEEN[(y * 4 + x) as usize].0;
        Rgb([v, 65_535 - v, v])
    });
    let rgba = ImageBuffer::from_fn(4, 2, |x, y| {
        let v = SIXTEEN[(y * 4 + x) as usize].0;
        Rgba([v, 65_535 - v, v, 0])
    });
    let gray_expected: Vec<u8> = SIXTEEN.iter().flat_map(|&(_, e)| [e, e, e]).collect();
    let rgb_expected: Vec<u8> = SIXTEEN.iter().flat_map(|&(_, e)| [e, 255 - e, e]).collect();
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let decoded = decode_rgb(&encode(DynamicImage::ImageLuma16(gray.clone()), format)).unwrap();
        assert_eq!(decoded.into_raw(), gray_expected, "gray16 {format:?}");
        let decoded = decode_rgb(&encode(DynamicImage::ImageRgb16(rgb.clone()), format)).unwrap();
        assert_eq!(decoded.into_raw(), rgb_expected, "rgb16 {format:?}");
        let decoded = decode_rgb(&encode(DynamicImage::ImageRgba16(rgba.clone()), format)).unwrap();
        assert_eq!(decoded.into_raw(), rgb_expected, "rgba16 {format:?}");
    }
}

#[test]
fn jpeg_decodes_close_to_its_source() {
    // JPEG is lossy: flat colours survive within a few levels. Gray JPEGs are repeated like gray PNGs.
    let img = ImageBuffer::from_pixel(16, 16, Rgb([200u8, 40, 90]));
    let decoded = decode_rgb(&encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)).unwrap();
    assert_eq!(decoded.dimensions(), (16, 16));
    for p in decoded.pixels() {
        for (got, want) in p.0.iter().zip([200u8, 40, 90]) {
            assert!(got.abs_diff(want) <= 4, "{:?}", p.0);
        }
    }
    let gray = ImageBuffer::from_pixel(16, 16, Luma([77u8]));
    let decoded = decode_rgb(&encode(DynamicImage::ImageLuma8(gray), ImageFormat::Jpeg)).unwrap();
    assert!(decoded.pixels().all(|p| p[0] == p[1] && p[1] == p[2] && p[0].abs_diff(77) <= 2));
}

#[test]
fn files_are_read_by_content_not_extension() {
    // A PNG saved under a .jpg name still loads; garbage is a clear error naming the file.
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuffer::from_fn(4, 2, |x, y| Rgb(rgb_of(values()[(y * 4 + x) as usize])));
    let path = dir.path().join("really_a_png.jpg");
    std::fs::write(&path, encode(DynamicImage::ImageRgb8(img), ImageFormat::Png)).unwrap();
    assert_eq!(imaging::whole::load_rgb(&path).unwrap().into_raw(), expected_rgb());
    let bad = dir.path().join("bad.tif");
    std::fs::write(&bad, b"II*\0 broken").unwrap();
    let err = imaging::whole::load_rgb(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.tif is not a readable PNG, JPEG or TIFF image"), "{err}");
}
