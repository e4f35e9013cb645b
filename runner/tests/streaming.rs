//! Streaming prediction (band by band, from files to files) equals the in-memory path byte for byte, for
//! random sizes and every input format; TIFF and BigTIFF in and out.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::Rng;
use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};
use imaging::sink::{ImageFormat, PixelKind, ProbabilityFormat, RowSink};
use imaging::source::{Channels, ImageSource};
use imaging::whole;
use runner::pipeline::{self, Destination, Destinations, OpenedImage};
use runner::predict::{self, PredictOptions};
use runner::render::OverlayRows;
use runner::session::Model;

/// The formats an input is written in for the comparison.
#[derive(Debug, Clone, Copy)]
enum Input {
    PngRgb,
    PngGray16,
    PngRgba,
    TiffRgb,
    TiffGray16,
    /// Written by the runner's own TIFF writer (Deflate strips), as BigTIFF.
    BigTiffRgb,
    Jpeg,
}

fn write_input(path: &Path, rgb: &[u8], width: usize, height: usize, input: Input) {
    let (w, h) = (width as u32, height as u32);
    let rgb_image = || image::RgbImage::from_raw(w, h, rgb.to_vec()).unwrap();
    let save = |image: DynamicImage, format: image::ImageFormat| {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    match input {
        Input::PngRgb => save(DynamicImage::ImageRgb8(rgb_image()), image::ImageFormat::Png),
        Input::TiffRgb => save(DynamicImage::ImageRgb8(rgb_image()), image::ImageFormat::Tiff),
        Input::Jpeg => save(DynamicImage::ImageRgb8(rgb_image()), image::ImageFormat::Jpeg),
        Input::PngRgba => {
            let img = ImageBuffer::from_fn(w, h, |x, y| {
                let i = 3 * (y * w + x) as usize;
                Rgba([rgb[i], rgb[i + 1], rgb[i + 2], (x % 256) as u8])
            });
            save(DynamicImage::ImageRgba8(img), image::ImageFormat::Png)
        }
        Input::PngGray16 | Input::TiffGray16 => {
            let img =
                ImageBuffer::from_fn(w, h, |x, y| Luma([rgb[3 * (y * w + x) as usize] as u16 * 257 + 3]));
            let format = if matches!(input, Input::PngGray16) {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::Tiff
            };
            save(DynamicImage::ImageLuma16(img), format)
        }
        Input::BigTiffRgb => {
            let mut sink =
                RowSink::image(path, ImageFormat::Tiff, PixelKind::Rgb8, width, height, true).unwrap();
            sink.write_pixels(rgb).unwrap();
            sink.finish().unwrap();
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Streams `image` (with `mask`) through the pipeline into the folder `dir`; returns the written files'
/// bytes: mask, probabilities, overlay, errors.
fn streamed(
    model: &mut Model,
    image: &Path,
    mask: &Path,
    dir: &Path,
    tile: usize,
    ext: &str,
) -> [Vec<u8>; 4] {
    let destinations = Destinations {
        mask: Destination::new(
            dir.join(format!("s_mask.{ext}")),
            ImageFormat::from_path(Path::new(ext)).unwrap_or(ImageFormat::Png),
        ),
        probabilities: Some(Destination::new(dir.join("s_prob.npy"), ProbabilityFormat::Npy)),
        overlay: Some(Destination::new(dir.join("s_overlay.png"), ImageFormat::Png)),
        errors: Some(Destination::new(dir.join("s_errors.png"), ImageFormat::Png)),
        geojson: None,
        ngff: Default::default(),
        labels: None,
    };
    let opened = OpenedImage::open(image, "--image", Some(mask), "--mask").unwrap();
    pipeline::run_image(model, opened, &destinations, None, tile, |_| {}).unwrap();
    [
        read(&destinations.mask.file),
        read(&dir.join("s_prob.npy")),
        read(&dir.join("s_overlay.png")),
        read(&dir.join("s_errors.png")),
    ]
}

#[test]
fn streamed_outputs_equal_the_in_memory_ones_byte_for_byte() {
    let mut model = common::session(&common::model("net_4"), 2);
    let mut rng = Rng::new(77);
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        Input::PngRgb,
        Input::PngGray16,
        Input::PngRgba,
        Input::TiffRgb,
        Input::TiffGray16,
        Input::BigTiffRgb,
        Input::Jpeg,
    ];
    let mut cases = 0;
    for (case, input) in inputs.iter().cycle().take(14).enumerate() {
        // Odd and even sizes, one band or many (tiles of 18 to 64 px give up to ~20 bands).
        let tile = [18, 32, 64, 256][case % 4];
        let (height, width) = (rng.range(1, 5 * tile), rng.range(1, 3 * tile));
        let rgb = rng.image(height, width);
        let image_path = dir.path().join(format!("image{case}"));
        write_input(&image_path, &rgb, width, height, *input);
        let mask_classes: Vec<u8> = (0..height * width).map(|_| (rng.next() % 2) as u8).collect();
        let mask_path = dir.path().join(format!("mask{case}.png"));
        whole::write_mask(&mask_path, &mask_classes, width, height).unwrap();

        // The in-memory reference: whole image decoded, predicted, written in one go.
        let decoded = whole::load_rgb(&image_path).unwrap();
        let options = PredictOptions { tile, probabilities: true, logits: false };
        let whole = predict::tiled(&mut model, decoded.as_raw(), height, width, options, |_| {}).unwrap();
        let ext = ["png", "tif"][case % 2];
        let reference_mask = dir.path().join(format!("m_mask.{ext}"));
        whole::write_mask(&reference_mask, &whole.classes, width, height).unwrap();
        let reference_prob = dir.path().join("m_prob.npy");
        whole::write_probabilities(&reference_prob, whole.probabilities.as_ref().unwrap(), height, width)
            .unwrap();
        let mut overlay = OverlayRows::new(width);
        let mut overlay_pixels = overlay.push(decoded.as_raw(), &whole.classes).to_vec();
        overlay_pixels.extend_from_slice(overlay.finish());
        let mut error_pixels = vec![0u8; 3 * width * height];
        for y in 0..height {
            let row = y * width..(y + 1) * width;
            runner::render::error_row(
                &decoded.as_raw()[3 * row.start..3 * row.end],
                &whole.classes[row.clone()],
                &mask_classes[row],
                &mut error_pixels[3 * y * width..3 * (y + 1) * width],
            );
        }

        let [mask, prob, overlay_png, errors_png] =
            streamed(&mut model, &image_path, &mask_path, dir.path(), tile, &format!("x.{ext}"));
        let what = format!("{input:?} {height}x{width} tile {tile}");
        assert_eq!(mask, read(&reference_mask), "{what}: mask file");
        assert_eq!(prob, read(&reference_prob), "{what}: probabilities file");
        let decode = |bytes: &[u8]| whole::decode_rgb(bytes).unwrap().into_raw();
        assert_eq!(decode(&overlay_png), overlay_pixels, "{what}: overlay");
        assert_eq!(decode(&errors_png), error_pixels, "{what}: error map");
        // And the mask file holds the prediction.
        let gray = ImageSource::from_bytes(&mask, "mask", Channels::Gray).unwrap().read_all().unwrap();
        assert_eq!(imaging::masks::classes_from_gray(&gray), whole.classes, "{what}");
        cases += 1;
    }
    assert_eq!(cases, 14);
}

#[test]
fn bigtiff_and_tiff_outputs_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    for (big, name) in [(false, "classic.tif"), (true, "big.tif")] {
        // Several strips: 700 rows of 300 RGB bytes... rows per strip follow the strip size.
        let (width, height) = (301, 1_203);
        let rgb = rng.image(height, width);
        let path = dir.path().join(name);
        let mut sink = RowSink::image(&path, ImageFormat::Tiff, PixelKind::Rgb8, width, height, big).unwrap();
        for rows in rgb.chunks(3 * width * 97) {
            sink.write_pixels(rows).unwrap();
        }
        sink.finish().unwrap();
        let bytes = read(&path);
        assert_eq!(&bytes[..4], if big { b"II+\0" } else { b"II*\0" }, "{name}");
        // Read by bands of odd sizes.
        let mut source = ImageSource::open(&path, Channels::Rgb).unwrap();
        assert_eq!((source.width(), source.height()), (width, height));
        let mut back = Vec::new();
        while back.len() < rgb.len() {
            source.read_rows(37, &mut back).unwrap();
        }
        assert_eq!(back, rgb, "{name}");
        // The image crate reads the classic one too.
        if !big {
            assert_eq!(image::open(&path).unwrap().into_rgb8().into_raw(), rgb);
        }
    }
    // Float32 probabilities as TIFF.
    let (width, height) = (33, 20);
    let values: Vec<f32> = (0..width * height).map(|i| i as f32 / 1000.0).collect();
    let path = dir.path().join("p.tif");
    whole::write_probabilities(&path, &values, height, width).unwrap();
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(decoder.dimensions().unwrap(), (width as u32, height as u32));
    match decoder.read_image().unwrap() {
        tiff::decoder::DecodingResult::F32(v) => assert_eq!(v, values),
        other => panic!("not float32: {:?}", std::mem::discriminant(&other)),
    }
}

#[test]
fn float_gray_tiff_is_clamped_to_unit_range() {
    let dir = tempfile::tempdir().unwrap();
    let values = [-0.5f32, 0.0, 0.25, 0.5, 1.0, 3.0, f32::NAN, 0.999];
    let path = dir.path().join("f.tif");
    whole::write_probabilities(&path, &values, 2, 4).unwrap();
    let rgb = whole::load_rgb(&path).unwrap().into_raw();
    let expected: Vec<u8> = [0u8, 0, 64, 128, 255, 255, 0, 255].iter().flat_map(|&v| [v, v, v]).collect();
    assert_eq!(rgb, expected);
}

/// The committed fixtures (runner/tests/data, made by make_fixtures.py with tifffile): tiled, LZW,
/// Deflate, 16-bit, BigTIFF; each holds the same 8-bit pattern (16-bit ones scaled by 257).
#[test]
fn tiff_fixtures_decode_to_their_pattern() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let expected = |width: usize, height: usize| -> Vec<u8> {
        (0..height)
            .flat_map(|y| {
                (0..width).flat_map(move |x| [(x * 7 + y * 3) as u8, (x * 5 + y * 11) as u8, (x ^ y) as u8])
            })
            .collect()
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "tif") {
            continue;
        }
        let image = whole::load_rgb(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut want = expected(w, h);
        if path.file_name().unwrap().to_string_lossy().contains("gray") {
            want = want.chunks(3).flat_map(|p| [p[0]; 3]).collect();
        }
        assert_eq!(image.into_raw(), want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 5, "fixtures missing: {seen}");
}

#[test]
fn a_reference_mask_of_another_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    whole::write_mask(&dir.path().join("i.png"), &[1; 12], 4, 3).unwrap();
    whole::write_mask(&dir.path().join("m.png"), &[1; 12], 3, 4).unwrap();
    let err =
        OpenedImage::open(&dir.path().join("i.png"), "--image", Some(&dir.path().join("m.png")), "--mask")
            .unwrap_err()
            .to_string();
    assert!(err.contains("is 3x4 but the image is 4x3"), "{err}");
    let _ = Rgb([0u8; 3]);
}
