//! Inputs a hostile or unlucky user gives: truncated and corrupt images are errors (never silently
//! zero-filled), headers claiming absurd sizes are refused from the header (never a panic or an exhausted
//! machine), and a model whose outputs are not finite is an error naming the tile.

mod common;

use std::io::Cursor;

use image::{DynamicImage, RgbImage};
use imaging::source::{Channels, ImageSource, WHOLE_IMAGE_LIMIT};
use runner::predict::{self, PredictError, PredictOptions};

fn encoded(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let rgb = common::Rng::new(3).image(height as usize, width as usize);
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, rgb).unwrap())
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

/// Decodes every row of `bytes`, as the CLI does.
fn read_all(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut source = ImageSource::from_bytes(bytes, "x", Channels::Rgb).map_err(|e| e.to_string())?;
    source.read_all().map_err(|e| e.to_string())
}

#[test]
fn truncated_images_are_errors_in_every_format() {
    for format in [image::ImageFormat::Jpeg, image::ImageFormat::Png, image::ImageFormat::Tiff] {
        let whole = encoded(format, 96, 80);
        assert!(read_all(&whole).is_ok(), "{format:?} whole");
        for keep in [0.3, 0.6, 0.9, 0.99] {
            let cut = &whole[..(whole.len() as f64 * keep) as usize];
            let err = read_all(cut).expect_err(&format!("{format:?} cut to {keep} was accepted"));
            assert!(err.contains("is not a readable PNG, JPEG or TIFF image"), "{format:?} {keep}: {err}");
        }
    }
    // The JPEG's message says what is wrong (the image crate alone fills the missing part with grey).
    let jpeg = encoded(image::ImageFormat::Jpeg, 96, 80);
    let err = read_all(&jpeg[..jpeg.len() - 300]).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_corrupt_png_tail_is_an_error() {
    // Flip a byte inside the compressed data near the end: the CRC or the zlib stream fails.
    let mut png = encoded(image::ImageFormat::Png, 64, 64);
    let at = png.len() - 40;
    png[at] ^= 0x55;
    assert!(read_all(&png).is_err());
}

/// Sets a JPEG's frame size (the first SOFn marker) to `width` x `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = encoded(image::ImageFormat::Jpeg, 16, 16);
    let sof = jpeg.windows(2).position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1])).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// Sets a PNG's IHDR size to `width` x `height` (CRC fixed, so only the size is wrong).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = encoded(image::ImageFormat::Png, 16, 16);
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    // A JPEG is decoded whole: one claiming 60000x60000 (10.8 GB as RGB) is refused at once, size and limit
    // in the message.
    let err = ImageSource::from_bytes(&jpeg_claiming(60_000, 60_000), "bomb.jpg", Channels::Rgb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("60000x60000") && err.contains(&WHOLE_IMAGE_LIMIT.to_string()), "{err}");
    // A PNG is read by rows: wider than the row limit is refused; a tall one opens (it would stream in
    // bounded memory) but its missing data is an error, and reading it whole is refused by size, without
    // trying to allocate it.
    let err = ImageSource::from_bytes(&png_claiming(400_000, 16), "wide.png", Channels::Rgb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("400000x16") && err.contains("wider than the limit"), "{err}");
    let tall = png_claiming(16, 2_000_000_000);
    let mut source = ImageSource::from_bytes(&tall, "tall.png", Channels::Rgb).unwrap();
    let err = source.read_all().unwrap_err().to_string();
    assert!(err.contains("16x2000000000"), "{err}");
    let mut rows = Vec::new();
    let mut source = ImageSource::from_bytes(&tall, "tall.png", Channels::Rgb).unwrap();
    assert!(source.read_rows(256, &mut rows).is_err(), "16 rows of data cannot give 256");
}

#[test]
fn a_model_with_non_finite_outputs_is_an_error_naming_the_tile() {
    // Every weight NaN: the logits are NaN everywhere, which argmax would turn into an all-background mask.
    let mut session = common::session(&common::model("nan_weights"), 2);
    let rgb = common::Rng::new(1).image(300, 40);
    let err = predict::tiled(&mut session, &rgb, 300, 40, PredictOptions::default(), |_| {}).unwrap_err();
    assert!(matches!(err, PredictError::NonFinite { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not finite (NaN)") && text.contains("in the tile at x 0, y "), "{text}");
}
