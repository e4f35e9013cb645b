//! Pyramidal OME-TIFF outputs: written band by band, read back level by level with the repository's own
//! TIFF reader (which reads SubIFD pyramids), equal to the pyramid computed in memory from the whole image.

use std::path::Path;

use imaging::pyramid::level_sizes;
use imaging::sink::{ImageFormat, PixelKind, ProbabilityFormat, RowSink, SinkOptions};
use imaging::source::{Channels, ImageSource, PyramidKind};

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The next level of a whole image, pixel by pixel from its block (independent of the row functions).
fn reduce_whole<T: Copy>(
    pixels: &[T],
    width: usize,
    height: usize,
    channels: usize,
    block: impl Fn(&[T]) -> T,
) -> Vec<T> {
    let (w2, h2) = (width.div_ceil(2), height.div_ceil(2));
    let mut out = Vec::with_capacity(w2 * h2 * channels);
    for y in 0..h2 {
        for x in 0..w2 {
            for c in 0..channels {
                let mut values = Vec::new();
                for yy in [2 * y, 2 * y + 1] {
                    for xx in [2 * x, 2 * x + 1] {
                        if xx < width && yy < height {
                            values.push(pixels[(yy * width + xx) * channels + c]);
                        }
                    }
                }
                out.push(block(&values));
            }
        }
    }
    out
}

fn mean_u8(v: &[u8]) -> u8 {
    let n = v.len() as u32;
    ((v.iter().map(|&x| u32::from(x)).sum::<u32>() + n / 2) / n) as u8
}

fn mask_rule(v: &[u8]) -> u8 {
    if 2 * v.iter().filter(|&&x| x >= 128).count() >= v.len() {
        255
    } else {
        0
    }
}

fn mean_f32(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |s, x| s + x) / v.len() as f32
}

/// The in-memory pyramid of a whole image.
fn pyramid<T: Copy>(
    pixels: Vec<T>,
    width: usize,
    height: usize,
    channels: usize,
    block: impl Fn(&[T]) -> T + Copy,
) -> Vec<Vec<T>> {
    let sizes = level_sizes(width, height);
    let mut levels = vec![pixels];
    for pair in sizes.windows(2) {
        let (w, h) = pair[0];
        let next = reduce_whole(levels.last().unwrap(), w, h, channels, block);
        assert_eq!(next.len(), pair[1].0 * pair[1].1 * channels);
        levels.push(next);
    }
    levels
}

/// The row counts of the bands written: odd heights, none a divisor of the tile side.
fn bands(height: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut i) = (height, 0);
    while left > 0 {
        let rows = [37, 101, 1, 263, 55][i % 5].min(left);
        out.push(rows);
        left -= rows;
        i += 1;
    }
    out
}

/// Every level of `path` as read back, in `channels`.
fn read_levels(path: &Path, channels: Channels) -> Vec<(usize, usize, Vec<u8>)> {
    let info = ImageSource::probe(path).unwrap();
    assert_eq!(info.pyramid.is_some(), info.levels.len() > 1);
    if info.levels.len() > 1 {
        assert_eq!(info.pyramid, Some(PyramidKind::SubIfds));
    }
    (0..info.levels.len())
        .map(|level| {
            let mut source = ImageSource::open_level(path, level, channels).unwrap();
            let (w, h) = (source.width(), source.height());
            (w, h, source.read_all().unwrap())
        })
        .collect()
}

fn to_u8(v: f32) -> u8 {
    if v >= 1.0 {
        255
    } else if v > 0.0 {
        (v * 255.0).round() as u8
    } else {
        0
    }
}

#[test]
fn the_streamed_pyramid_equals_the_pyramid_of_the_whole_image() {
    let dir = tempfile::tempdir().unwrap();
    // Odd sizes at every level: 2305x1031, 1153x516, 577x258.
    let (width, height) = (2305, 1031);
    assert_eq!(level_sizes(width, height), vec![(2305, 1031), (1153, 516), (577, 258)]);
    let mut rng = Rng(7);
    // The mask: blobs with thin lines; the overlay: noise; the probabilities: smooth with noise.
    let mask: Vec<u8> = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let on = ((x / 9 + y / 13) % 3 == 0)
                || x % 97 == 0
                || (x + y) % 211 == 0
                || rng.next().is_multiple_of(50);
            if on {
                255
            } else {
                0
            }
        })
        .collect();
    let rgb: Vec<u8> = (0..width * height * 3).map(|_| rng.next() as u8).collect();
    let probabilities: Vec<f32> = (0..width * height)
        .map(|i| ((i % width) as f32 / width as f32) * 0.5 + (rng.next() % 1000) as f32 / 2000.0)
        .collect();
    let options = SinkOptions { microns_per_pixel: Some((0.25, 0.5)), ..SinkOptions::default() };

    let mask_path = dir.path().join("mask.ome.tif");
    let rgb_path = dir.path().join("overlay.ome.tiff");
    let prob_path = dir.path().join("prob.ome.tif");
    let format = |p: &Path| ImageFormat::from_path(p).unwrap();
    let mut mask_sink =
        RowSink::image_with(&mask_path, format(&mask_path), PixelKind::Gray8, width, height, options)
            .unwrap();
    let mut rgb_sink =
        RowSink::image_with(&rgb_path, format(&rgb_path), PixelKind::Rgb8, width, height, options).unwrap();
    let prob_format = ProbabilityFormat::from_path(&prob_path).unwrap();
    assert_eq!(prob_format, ProbabilityFormat::OmeTiff);
    let mut prob_sink = RowSink::probabilities_with(&prob_path, prob_format, width, height, options).unwrap();
    let mut y = 0;
    for rows in bands(height) {
        mask_sink.write_pixels(&mask[y * width..(y + rows) * width]).unwrap();
        rgb_sink.write_pixels(&rgb[y * width * 3..(y + rows) * width * 3]).unwrap();
        prob_sink.write_values(&probabilities[y * width..(y + rows) * width]).unwrap();
        y += rows;
    }
    mask_sink.finish().unwrap();
    rgb_sink.finish().unwrap();
    prob_sink.finish().unwrap();

    let sizes = level_sizes(width, height);
    for (path, channels, expected) in [
        (&mask_path, Channels::Gray, pyramid(mask.clone(), width, height, 1, mask_rule)),
        (&rgb_path, Channels::Rgb, pyramid(rgb.clone(), width, height, 3, mean_u8)),
        (
            &prob_path,
            Channels::Gray,
            pyramid(probabilities.clone(), width, height, 1, mean_f32)
                .into_iter()
                .map(|l| l.into_iter().map(to_u8).collect())
                .collect(),
        ),
    ] {
        let levels = read_levels(path, channels);
        assert_eq!(levels.len(), sizes.len(), "{}", path.display());
        for (i, ((w, h, pixels), expected)) in levels.iter().zip(&expected).enumerate() {
            assert_eq!((*w, *h), sizes[i], "{} level {i}", path.display());
            assert!(
                pixels == expected,
                "{} level {i}: pixels differ from the in-memory pyramid",
                path.display()
            );
        }
        let info = ImageSource::probe(path).unwrap();
        let (x, y) = info.microns_per_pixel.unwrap();
        assert!((x - 0.25).abs() < 1e-12 && (y - 0.5).abs() < 1e-12, "{:?}", info.microns_per_pixel);
    }

    // Level 0 of the probabilities is float32, exactly: read through the tiff crate (tiles, first IFD).
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(&prob_path).unwrap()).unwrap();
    assert_eq!(decoder.get_chunk_type(), tiff::decoder::ChunkType::Tile);
    assert_eq!(decoder.chunk_dimensions(), (512, 512));
    match decoder.read_image().unwrap() {
        tiff::decoder::DecodingResult::F32(values) => assert!(values == probabilities),
        _ => panic!("the probabilities are not float32"),
    }
    let description = match decoder.get_tag(tiff::tags::Tag::ImageDescription).unwrap() {
        tiff::decoder::ifd::Value::Ascii(text) => text,
        other => panic!("{other:?}"),
    };
    assert!(description.starts_with("<?xml") && description.ends_with("</OME>"), "{description}");
    // The pixel size in the TIFF tags too (pixels per centimetre), where OpenSlide and libvips read it.
    let mut rational = |tag| match decoder.get_tag(tag).unwrap() {
        tiff::decoder::ifd::Value::Rational(n, d) => f64::from(n) / f64::from(d),
        other => panic!("{other:?}"),
    };
    assert_eq!(rational(tiff::tags::Tag::XResolution), 40000.0);
    assert_eq!(rational(tiff::tags::Tag::YResolution), 20000.0);
    assert_eq!(decoder.get_tag_u32(tiff::tags::Tag::ResolutionUnit).unwrap(), 3);
    for part in [
        "xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\"",
        "<Image ID=\"Image:0\">",
        "DimensionOrder=\"XYCZT\" Type=\"float\" SizeX=\"2305\" SizeY=\"1031\" SizeC=\"1\" SizeZ=\"1\" SizeT=\"1\"",
        "PhysicalSizeX=\"0.25\" PhysicalSizeXUnit=\"µm\" PhysicalSizeY=\"0.5\" PhysicalSizeYUnit=\"µm\"",
        "<TiffData IFD=\"0\" PlaneCount=\"1\"/>",
    ] {
        assert!(description.contains(part), "{part} missing from {description}");
    }
    // The main chain holds one image: the levels are SubIFDs.
    assert!(!decoder.more_images());
}

#[test]
fn a_3000x2000_mask_has_three_levels_and_no_physical_size_when_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mask.ome.tif");
    let (width, height) = (3000, 2000);
    let mut sink =
        RowSink::image(&path, ImageFormat::OmeTiff, PixelKind::Gray8, width, height, false).unwrap();
    let row: Vec<u8> = (0..width).map(|x| if x % 4 < 2 { 255 } else { 0 }).collect();
    for _ in 0..height {
        sink.write_pixels(&row).unwrap();
    }
    sink.finish().unwrap();
    let info = ImageSource::probe(&path).unwrap();
    let sizes: Vec<_> = info.levels.iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, [(3000, 2000), (1500, 1000), (750, 500)]);
    assert_eq!(info.microns_per_pixel, None);
    // Stripes two pixels wide: each 2x2 block is all foreground or all background, down to level 1;
    // at level 2 every block holds 2 of 4 and stays foreground (ties go to foreground).
    let level2 = ImageSource::open_level(&path, 2, Channels::Gray).unwrap().read_all().unwrap();
    assert!(level2.iter().all(|&v| v == 255));
}

#[test]
fn forced_bigtiff_and_small_images_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for (width, height) in [(1, 1), (513, 3), (3, 1500)] {
        let path = dir.path().join(format!("s{width}x{height}.ome.tif"));
        let options = SinkOptions { force_bigtiff: true, ..SinkOptions::default() };
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 7) as u8).collect();
        let mut sink =
            RowSink::image_with(&path, ImageFormat::OmeTiff, PixelKind::Rgb8, width, height, options)
                .unwrap();
        sink.write_pixels(&rgb).unwrap();
        sink.finish().unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"II\x2b\x00", "BigTIFF");
        let levels = read_levels(&path, Channels::Rgb);
        assert_eq!(levels.len(), level_sizes(width, height).len());
        assert_eq!(levels[0].2, rgb);
        let expected = pyramid(rgb, width, height, 3, mean_u8);
        for (level, expected) in levels.iter().zip(&expected) {
            assert!(&level.2 == expected);
        }
    }
}
