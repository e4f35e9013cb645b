//! OME-Zarr images (NGFF 0.4 on Zarr v2, NGFF 0.5 on Zarr v3) read as rows and compared with what numpy
//! decoded from them: the fixtures and references of tests/data/zarr, made by zarr-python
//! (tests/data/zarr/make_fixtures.py, see SOURCE.md). Every fixture equals its reference exactly; bands of
//! any row count equal the whole; a band reads only the chunks of its rows; levels, sizes and micrometres
//! per pixel come from the multiscales metadata; bad stores are one-line errors, never panics.

use std::path::{Path, PathBuf};

use imaging::source::{
    looks_like_ome_zarr_store, Channels, FileFormat, ImageSource, PyramidKind, SourceError,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zarr").join(name)
}

const FIXTURES: [&str; 7] = [
    "v04_cyx_u8",
    "v05_cyx_u16_sharded",
    "v04_yx_f32_gray",
    "v05_tczyx_u8_rgba",
    "v04_yxc_i16",
    "sparse_v04_cyx_u8",
    "sparse_v05_cyx_u8_sharded",
];

/// The 8-bit RGB pixels of a reference PNG, and its size.
fn reference(name: &str) -> (Vec<u8>, usize, usize) {
    let image = image::open(data(&format!("{name}.png"))).unwrap().into_rgb8();
    let (w, h) = image.dimensions();
    (image.into_raw(), w as usize, h as usize)
}

fn zarr(name: &str) -> PathBuf {
    data(&format!("{name}.ome.zarr"))
}

fn read_all(path: &Path, level: usize, channels: Channels) -> Result<(Vec<u8>, usize, usize), SourceError> {
    let mut source = ImageSource::open_level(path, level, channels)?;
    let pixels = source.read_all()?;
    Ok((pixels, source.width(), source.height()))
}

#[test]
fn every_fixture_equals_its_reference() {
    for name in FIXTURES {
        assert!(looks_like_ome_zarr_store(&zarr(name)), "{name}");
        let (expected, w, h) = reference(name);
        let (pixels, width, height) = read_all(&zarr(name), 0, Channels::Rgb).unwrap();
        assert_eq!((width, height), (w, h), "{name}");
        assert_eq!((width, height), (97, 75), "{name}");
        let differ = pixels.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{name}: {differ} samples differ");
        assert_eq!(pixels.len(), expected.len(), "{name}");
    }
}

#[test]
fn gray_output_is_the_luminance_of_the_rgb_output() {
    for name in FIXTURES {
        let (rgb, _, _) = read_all(&zarr(name), 0, Channels::Rgb).unwrap();
        let (gray, _, _) = read_all(&zarr(name), 0, Channels::Gray).unwrap();
        let luma: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| ((2126 * p[0] as u32 + 7152 * p[1] as u32 + 722 * p[2] as u32 + 5000) / 10_000) as u8)
            .collect();
        assert_eq!(gray, luma, "{name}");
    }
}

#[test]
fn bands_of_any_row_count_equal_the_whole() {
    for name in FIXTURES {
        let (whole, _, _) = read_all(&zarr(name), 0, Channels::Rgb).unwrap();
        for band in [1, 7, 31, 33, 64, 100] {
            let mut source = ImageSource::open(&zarr(name), Channels::Rgb).unwrap();
            let mut rows = Vec::new();
            while source.read_rows(band, &mut rows).unwrap() > 0 {}
            assert_eq!(rows, whole, "{name}, bands of {band} rows");
        }
    }
}

#[test]
fn a_band_reads_only_the_chunks_of_its_rows() {
    // 3 channels (chunked one by one) x 4 columns of chunks per row of chunks; 3 rows of chunks.
    let mut source = ImageSource::open(&zarr("v04_cyx_u8"), Channels::Rgb).unwrap();
    assert_eq!(source.chunks_read(), 0, "opening reads no chunk");
    let mut rows = Vec::new();
    source.read_rows(32, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 12);
    source.read_rows(1, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 24);
    source.read_rows(100, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 36);
    // Sharded: one shard (2x2 inner chunks) per column of shards.
    let mut source = ImageSource::open(&zarr("v05_cyx_u16_sharded"), Channels::Rgb).unwrap();
    source.read_rows(10, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 2);
}

#[test]
fn levels_sizes_and_microns_per_pixel_come_from_the_metadata() {
    let info = ImageSource::probe(&zarr("v04_cyx_u8")).unwrap();
    assert_eq!(info.format, FileFormat::Zarr);
    assert_eq!(info.pyramid, Some(PyramidKind::ZarrDatasets));
    assert_eq!(info.levels_line(), "0: 97x75, 1: 49x38, 2: 25x19");
    assert_eq!(
        info.levels.iter().map(|l| l.downsample).collect::<Vec<_>>(),
        [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    );
    assert_eq!(info.levels[0].tile, Some((32, 32)));
    assert_eq!(info.levels[0].compression, "Zarr v2 blosc");
    assert_eq!(info.levels[0].photometric, "8-bit RGB");
    assert_eq!(info.microns_per_pixel, Some((0.5, 0.5)));
    let (full, _, _) = reference("v04_cyx_u8");
    for level in [1, 2] {
        let source = ImageSource::open_level(&zarr("v04_cyx_u8"), level, Channels::Rgb).unwrap();
        let step = 1 << level;
        assert_eq!(source.microns_per_pixel(), Some((0.5 * step as f64, 0.5 * step as f64)));
        let (pixels, width, height) = read_all(&zarr("v04_cyx_u8"), level, Channels::Rgb).unwrap();
        assert_eq!((width, height), (97usize.div_ceil(step), 75usize.div_ceil(step)));
        // Each level is level 0 sampled every 2^N pixels.
        let mut expected = Vec::new();
        for y in (0..75).step_by(step) {
            for x in (0..97).step_by(step) {
                expected.extend_from_slice(&full[(y * 97 + x) * 3..][..3]);
            }
        }
        assert_eq!(pixels, expected, "level {level}");
    }

    let sharded = ImageSource::probe(&zarr("v05_cyx_u16_sharded")).unwrap();
    assert_eq!(sharded.levels_line(), "0: 97x75, 1: 49x38");
    assert_eq!(sharded.levels[0].tile, Some((64, 64)), "the shard is the unit read");
    assert!(
        sharded.levels[0].compression.starts_with("Zarr v3 sharding_indexed("),
        "{:?}",
        sharded.levels[0]
    );
    assert_eq!(sharded.levels[0].photometric, "16-bit RGB");
    let (x, y) = sharded.microns_per_pixel.unwrap();
    assert!((x - 0.25).abs() < 1e-12 && (y - 0.25).abs() < 1e-12, "nanometres: {x} {y}");
    let level1 = ImageSource::open_level(&zarr("v05_cyx_u16_sharded"), 1, Channels::Rgb).unwrap();
    let (x, _) = level1.microns_per_pixel().unwrap();
    assert!((x - 0.5).abs() < 1e-12, "{x}");

    let gray = ImageSource::probe(&zarr("v04_yx_f32_gray")).unwrap();
    let (x, y) = gray.microns_per_pixel.unwrap();
    assert!((x - 0.25).abs() < 1e-9 && (y - 0.25).abs() < 1e-9, "millimetres: {x} {y}");
    assert_eq!(gray.levels[0].photometric, "float32 gray");

    let tczyx = ImageSource::probe(&zarr("v05_tczyx_u8_rgba")).unwrap();
    assert_eq!(tczyx.levels_line(), "0: 97x75");
    assert_eq!(tczyx.pyramid, None);
    assert_eq!(tczyx.microns_per_pixel, None, "no unit on the axes");
    assert_eq!(tczyx.levels[0].photometric, "8-bit RGBA");
}

fn one_line_error(result: Result<impl std::fmt::Debug, SourceError>) -> String {
    let message = result.unwrap_err().to_string();
    assert_eq!(message.lines().count(), 1, "{message}");
    message
}

#[test]
fn a_level_that_does_not_exist_lists_the_levels() {
    let message = one_line_error(ImageSource::open_level(&zarr("v04_cyx_u8"), 3, Channels::Rgb));
    assert!(message.ends_with("has no level 3; its levels are 0: 97x75, 1: 49x38, 2: 25x19"), "{message}");
}

#[test]
fn bad_stores_are_one_line_errors() {
    // A corrupt chunk: opening works (only metadata is read); the band that needs it fails, naming it.
    let mut source = ImageSource::open(&zarr("corrupt"), Channels::Rgb).unwrap();
    let mut rows = Vec::new();
    source.read_rows(32, &mut rows).unwrap();
    let message = one_line_error(source.read_rows(32, &mut rows));
    assert!(message.contains("chunk 1,1,2 of array 0 (file 0/1.1.2) cannot be decoded"), "{message}");

    // An absent chunk is the fill value (0 here), as the Zarr specification says: chunk 1,1,2 is the
    // green of rows 32..64, columns 64..96; everything else equals the whole store.
    let (sparse, w, _) = read_all(&zarr("missing"), 0, Channels::Rgb).unwrap();
    let (whole, _, _) = read_all(&zarr("v04_cyx_u8"), 0, Channels::Rgb).unwrap();
    for (i, (a, b)) in sparse.iter().zip(&whole).enumerate() {
        let (x, y, c) = ((i / 3) % w, (i / 3) / w, i % 3);
        let inside = c == 1 && (32..64).contains(&y) && (64..96).contains(&x);
        assert_eq!(*a, if inside { 0 } else { *b }, "x {x} y {y} channel {c}");
    }
    read_all(&zarr("missing"), 1, Channels::Rgb).unwrap();

    // Not an image: a Zarr group without multiscales, a plain folder.
    assert!(!looks_like_ome_zarr_store(&data("plain_group.zarr")));
    let message = one_line_error(ImageSource::open(&data("plain_group.zarr"), Channels::Rgb));
    assert!(
        message.contains("is not a readable OME-Zarr image (a folder without OME-Zarr multiscales"),
        "{message}"
    );
    let message = one_line_error(ImageSource::probe(&data("plain_group.zarr")));
    assert!(message.contains("without OME-Zarr multiscales"), "{message}");
    let empty = tempfile::tempdir().unwrap();
    assert!(!looks_like_ome_zarr_store(empty.path()));
    one_line_error(ImageSource::open(empty.path(), Channels::Rgb));
}

/// Copies the fixture `name` into a temporary folder, for stores broken by the test.
fn copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.ome.zarr"));
    copy_dir(&zarr(name), &path);
    (dir, path)
}

/// What a store the reader does not take says: the true reason in one line, no parser internals.
#[test]
fn unread_stores_say_the_true_reason() {
    let cases: [(&str, &str, &str, &[&str]); 8] = [
        ("0/.zarray", "\"order\": \"C\"", "\"order\": \"F\"", &["Fortran order", "order \"F\""]),
        ("0/.zarray", "\"|u1\"", "\"|b1\"", &["an array of bool", "uint8, uint16, int16 or float32"]),
        ("0/.zarray", "\"|u1\"", "\"<f8\"", &["an array of float64", "uint8, uint16, int16 or float32"]),
        (
            "0/.zarray",
            "\"fill_value\": 0",
            "\"fill_value\": \"zero\"",
            &["its fill_value does not fit its data type", "array 0"],
        ),
        (
            "0/.zarray",
            "\"shape\": [\n    3,\n    75",
            "\"shape\": [\n    3,\n    0",
            &["array 0", "is empty"],
        ),
        (".zattrs", "\"multiscales\": [", "\"multiscales\": [], \"unused\": [", &["lists no images"]),
        (".zattrs", "\"path\": \"0\"", "\"path\": \"../other.ome.zarr/0\"", &["leaves the store"]),
        ("0/.zarray", "\"dimension_separator\": \".\"", "\"dimension_separator\": \"|\"", &["array 0"]),
    ];
    for (file, from, to, expected) in cases {
        let (_dir, path) = copy("v04_cyx_u8");
        let text = std::fs::read_to_string(path.join(file)).unwrap();
        assert!(text.contains(from), "{file}: {text}");
        std::fs::write(path.join(file), text.replacen(from, to, 1)).unwrap();
        let message = match ImageSource::open(&path, Channels::Rgb) {
            Ok(mut source) => one_line_error(source.read_all()),
            Err(e) => e.to_string(),
        };
        assert_eq!(message.lines().count(), 1, "{message}");
        for part in expected {
            assert!(message.contains(part), "{file} {from} -> {to}: {message}");
        }
        for internal in ["untagged enum", "FillValueMetadata", "codec transpose", "not a regular file"] {
            assert!(!message.contains(internal), "{file} {from} -> {to}: {message}");
        }
    }
    // Zarr v3: a transpose codec (a permuted chunk layout).
    let (_dir, path) = copy("v05_cyx_u16_sharded");
    let text = std::fs::read_to_string(path.join("0/zarr.json")).unwrap();
    let from = "\"codecs\": [";
    assert!(text.contains(from), "{text}");
    let to = "\"codecs\": [{\"name\": \"transpose\", \"configuration\": {\"order\": [0, 2, 1]}}, ";
    std::fs::write(path.join("0/zarr.json"), text.replacen(from, to, 1)).unwrap();
    let message = one_line_error(ImageSource::open(&path, Channels::Rgb));
    assert!(message.contains("transpose codec") && !message.contains("codec transpose"), "{message}");
}

#[test]
fn hostile_metadata_is_one_line_errors() {
    let cases: [(&str, &str, &str, &str); 6] = [
        (".zattrs", "\"micrometer\"", "\"micrometer\",", "is not valid JSON"),
        (".zattrs", "\"name\": \"x\"", "\"name\": \"q\"", "axes c,y,q (no y or no x)"),
        (".zattrs", "\"path\": \"0\"", "\"path\": \"nothing\"", "its array nothing cannot be opened"),
        ("0/.zarray", "\"|u1\"", "\"<u4\"", "an array of uint32, which is not supported"),
        (
            ".zattrs",
            "\"axes\": [",
            "\"axes\": [{\"name\": \"z\"}, ",
            "has 3 dimensions but the metadata names 4 axes",
        ),
        ("0/.zarray", "\"shape\": [\n    3,", "\"shape\": [\n    2,", "an image of 2 channels"),
    ];
    for (file, from, to, expected) in cases {
        let (_dir, path) = copy("v04_cyx_u8");
        let text = std::fs::read_to_string(path.join(file)).unwrap();
        assert!(text.contains(from), "{file}: {text}");
        std::fs::write(path.join(file), text.replacen(from, to, 1)).unwrap();
        let message = one_line_error(ImageSource::open(&path, Channels::Rgb));
        assert!(message.contains(expected), "{file} {from} -> {to}: {message}");
    }
}
