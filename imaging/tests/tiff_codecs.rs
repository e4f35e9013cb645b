//! The TIFFs scanners and imaging tools write, read natively and compared with what tifffile/imagecodecs
//! (libtiff's conventions, libjpeg-turbo, libwebp, zstd) decode from them: the fixtures and references of
//! tests/data/tiff, made by tests/data/make_fixtures.py (see tests/data/SOURCE.md). Lossless codecs must
//! match exactly, lossy ones within the tolerance of tests/data/tiff/manifest.txt; bands of any row count
//! equal the whole; pyramids list their levels; bad files are one-line errors, never panics; a band reads
//! only the chunks it needs.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use imaging::source::{Channels, ImageSource, Orientation, PyramidKind, SourceError};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiff").join(name)
}

/// One line of manifest.txt.
struct Fixture {
    file: String,
    reference: String,
    level: usize,
    tolerance: u8,
    what: String,
}

fn manifest() -> Vec<Fixture> {
    let text = std::fs::read_to_string(data("manifest.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Fixture {
                file: f[0].into(),
                reference: f[1].into(),
                level: f[2].parse().unwrap(),
                tolerance: f[3].parse().unwrap(),
                what: f[4].into(),
            }
        })
        .collect()
}

/// The 8-bit RGB pixels of a reference PNG, and its size.
fn reference(name: &str) -> (Vec<u8>, usize, usize) {
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(data(name)).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight), "{name}");
    pixels.truncate(info.buffer_size());
    (pixels, info.width as usize, info.height as usize)
}

fn read_all(path: &Path, level: usize, channels: Channels) -> Result<(Vec<u8>, usize, usize), SourceError> {
    let mut source = ImageSource::open_level(path, level, channels)?;
    let pixels = source.read_all()?;
    Ok((pixels, source.width(), source.height()))
}

fn luma(p: &[u8]) -> u8 {
    ((2126 * p[0] as u32 + 7152 * p[1] as u32 + 722 * p[2] as u32 + 5000) / 10_000) as u8
}

#[test]
fn every_fixture_matches_what_tifffile_decodes() {
    let mut report = Vec::new();
    for f in manifest() {
        let (want, w, h) = reference(&f.reference);
        let (got, width, height) = read_all(&data(&f.file), f.level, Channels::Rgb)
            .unwrap_or_else(|e| panic!("{} level {} ({}): {e}", f.file, f.level, f.what));
        assert_eq!((width, height), (w, h), "{} level {}", f.file, f.level);
        let diffs: Vec<u8> = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        let exact = diffs.iter().filter(|&&d| d == 0).count() as f64 / diffs.len() as f64;
        report.push(format!(
            "{:34} level {}: max {max}, mean {mean:.4}, {:.2}% of samples equal ({})",
            f.file,
            f.level,
            exact * 100.0,
            f.what
        ));
        assert!(
            max <= f.tolerance,
            "{} level {}: max difference {max} > {} ({})",
            f.file,
            f.level,
            f.tolerance,
            f.what
        );
        // A mask reads the same pixels as gray, by luminance.
        let (gray, _, _) = read_all(&data(&f.file), f.level, Channels::Gray).unwrap();
        let expected: Vec<u8> = got.chunks_exact(3).map(luma).collect();
        assert_eq!(gray, expected, "{} as gray", f.file);
    }
    // Shown with --nocapture: the measured differences against tifffile's decode.
    eprintln!("{}", report.join("\n"));
}

#[test]
fn bands_of_any_row_count_equal_the_whole() {
    for f in manifest() {
        let path = data(&f.file);
        let (whole, width, _) = read_all(&path, f.level, Channels::Rgb).unwrap();
        for band in [1, 7, 13, 33] {
            let mut source = ImageSource::open_level(&path, f.level, Channels::Rgb).unwrap();
            let mut rows = Vec::new();
            let mut chunk = Vec::new();
            loop {
                chunk.clear();
                let n = source.read_rows(band, &mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                assert!(n <= band);
                assert_eq!(chunk.len(), n * width * 3);
                rows.extend_from_slice(&chunk);
            }
            assert!(rows == whole, "{} level {} in bands of {band} rows", f.file, f.level);
        }
    }
}

fn close(a: (f64, f64), b: (f64, f64)) -> bool {
    (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
}

#[test]
fn pyramids_list_their_levels_with_sizes_and_microns_per_pixel() {
    let sizes = |name: &str| -> Vec<(usize, usize)> {
        ImageSource::levels(&data(name)).unwrap().iter().map(|l| (l.width, l.height)).collect()
    };
    for name in ["ome_pyramid.ome.tif", "pages_pyramid.tif"] {
        assert_eq!(sizes(name), [(96, 80), (48, 40), (24, 20)], "{name}");
    }
    assert_eq!(
        sizes("aperio_like.svs"),
        [(96, 80), (48, 40)],
        "the thumbnail, label and macro are not levels"
    );
    assert_eq!(sizes("stack_pages.tif"), [(96, 80)], "a stack of unrelated sizes is not a pyramid");
    assert_eq!(sizes("orientation3.png"), [(96, 80)]);

    let ome = ImageSource::probe(&data("ome_pyramid.ome.tif")).unwrap();
    assert_eq!((ome.pyramid, ome.pages, ome.other_pages), (Some(PyramidKind::SubIfds), 1, 0));
    assert_eq!(ome.levels[1].tile, Some((16, 16)));
    assert_eq!(ome.levels[0].compression, "Deflate");
    assert_eq!(ome.levels[0].photometric, "8-bit RGB");
    assert!(close(ome.levels[2].downsample, (4.0, 4.0)));
    assert!(close(ome.microns_per_pixel.unwrap(), (0.5, 0.75)), "{:?}", ome.microns_per_pixel);
    let level2 = ImageSource::open_level(&data("ome_pyramid.ome.tif"), 2, Channels::Rgb).unwrap();
    assert_eq!((level2.width(), level2.height(), level2.level()), (24, 20, 2));
    assert!(close(level2.microns_per_pixel().unwrap(), (2.0, 3.0)));

    let pages = ImageSource::probe(&data("pages_pyramid.tif")).unwrap();
    assert_eq!((pages.pyramid, pages.pages, pages.other_pages), (Some(PyramidKind::Pages), 3, 0));
    assert!(close(pages.microns_per_pixel.unwrap(), (0.25, 0.25)), "resolution in centimetres");

    // The native reader's view (with OpenSlide present, ImageSource::probe reads an SVS through it:
    // tests/openslide.rs).
    let svs = ImageSource::probe_native(&data("aperio_like.svs")).unwrap();
    assert_eq!((svs.pyramid, svs.pages, svs.other_pages), (Some(PyramidKind::Aperio), 5, 0));
    assert!(close(svs.microns_per_pixel.unwrap(), (0.25, 0.25)), "MPP = 0.2500");
    assert_eq!(svs.levels[0].photometric, "8-bit RGB");
    assert_eq!(svs.levels[0].compression, "JPEG");
    let svs1 = ImageSource::open_native_level(&data("aperio_like.svs"), 1, Channels::Rgb).unwrap();
    assert!(close(svs1.microns_per_pixel().unwrap(), (0.5, 0.5)));

    let stack = ImageSource::probe(&data("stack_pages.tif")).unwrap();
    assert_eq!((stack.pyramid, stack.pages, stack.other_pages), (None, 3, 2));
    assert_eq!(stack.microns_per_pixel, None, "tifffile writes resolution 1 with no unit");

    let jpeg = ImageSource::probe(&data("jpeg_ycbcr420_tables.tif")).unwrap();
    assert_eq!(jpeg.levels[0].photometric, "YCbCr 4:2:0 JPEG");
}

#[test]
fn a_level_that_does_not_exist_is_one_line_listing_the_levels() {
    let err =
        ImageSource::open_level(&data("ome_pyramid.ome.tif"), 3, Channels::Rgb).unwrap_err().to_string();
    assert!(err.ends_with("has no level 3; its levels are 0: 96x80, 1: 48x40, 2: 24x20"), "{err}");
    let err = ImageSource::open_level(&data("orientation3.png"), 1, Channels::Rgb).unwrap_err().to_string();
    assert!(err.contains("has no level 1") && !err.contains('\n'), "{err}");
}

#[test]
fn the_orientation_of_tiff_jpeg_and_png_inputs_is_kept() {
    let orientation = |name: &str| ImageSource::open(&data(name), Channels::Rgb).unwrap().orientation();
    assert_eq!(orientation("orientation6.tif"), Orientation::Rotate90);
    assert_eq!(orientation("orientation8.jpg"), Orientation::Rotate270);
    assert_eq!(orientation("orientation3.png"), Orientation::Rotate180);
    assert_eq!(orientation("zstd_rgb.tif"), Orientation::Normal);
    assert_eq!(ImageSource::probe(&data("orientation8.jpg")).unwrap().orientation, Orientation::Rotate270);
    // The pixels stay as stored.
    let (pixels, _, _) = read_all(&data("orientation6.tif"), 0, Channels::Rgb).unwrap();
    assert_eq!(pixels, reference("ref/rgb8.png").0);
}

#[test]
fn refusals_say_what_the_file_is_and_what_is_read() {
    let ojpeg = ImageSource::open(&data("refused_ojpeg.tif"), Channels::Rgb).unwrap_err().to_string();
    assert!(
        ojpeg.contains("old-style JPEG TIFF (compression 6") && ojpeg.contains("compression 7"),
        "{ojpeg}"
    );
    let uint32 = ImageSource::open(&data("refused_uint32.tif"), Channels::Rgb).unwrap_err().to_string();
    assert!(
        uint32.contains("unsigned 32-bit integer samples") && uint32.contains("images read are"),
        "{uint32}"
    );
    for err in [ojpeg, uint32] {
        assert!(!err.contains('\n'), "{err}");
    }
    // The structure of a refused file can still be listed.
    assert_eq!(ImageSource::levels(&data("refused_ojpeg.tif")).unwrap()[0].compression, "old-style JPEG");
}

/// Reads every row of `bytes`, returning the error, if any, as text.
fn decode_bytes(bytes: &[u8]) -> Result<(), String> {
    let mut source = ImageSource::from_bytes(bytes, "x.tif", Channels::Rgb).map_err(|e| e.to_string())?;
    source.read_all().map(drop).map_err(|e| e.to_string())
}

#[test]
fn truncated_and_corrupt_files_are_one_line_errors_never_panics() {
    let bad = data("bad");
    let mut names: Vec<_> = std::fs::read_dir(&bad).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 16);
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let result = decode_bytes(&std::fs::read(bad.join(&name)).unwrap());
        if name.starts_with("truncated") {
            let err = result.as_ref().expect_err(&name);
            assert!(
                err.contains("is not a readable PNG, JPEG or TIFF image") && err.contains("truncated"),
                "{name}: {err}"
            );
        }
        if let Err(err) = result {
            assert!(!err.contains('\n'), "{name}: {err}");
            assert!(!err.contains("decoder failed"), "{name}: a decoder panicked: {err}");
        } else {
            // JPEG, WebP and ZSTD (without its optional checksum) streams hold no check of their data:
            // flipped bytes decode to other pixels, as they do with tifffile.
            assert!(["jpeg", "webp", "zstd"].iter().any(|c| name.contains(c)), "{name} was accepted");
        }
    }
    // Every fixture cut anywhere, or with a byte flipped anywhere in its first 4 KiB: an error or pixels,
    // never a panic.
    for f in manifest().iter().filter(|f| f.level == 0) {
        let whole = std::fs::read(data(&f.file)).unwrap();
        for keep in (1..20).map(|i| whole.len() * i / 20) {
            if let Err(err) = decode_bytes(&whole[..keep]) {
                assert!(
                    !err.contains('\n') && !err.contains("decoder failed"),
                    "{} cut at {keep}: {err}",
                    f.file
                );
            }
        }
        for at in (0..whole.len().min(4096)).step_by(37) {
            let mut flipped = whole.clone();
            flipped[at] ^= 0xA5;
            if let Err(err) = decode_bytes(&flipped) {
                assert!(!err.contains('\n'), "{} flipped at {at}: {err}", f.file);
            }
        }
    }
}

/// A file whose bytes read are counted.
struct Counting {
    file: std::fs::File,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Counting {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

#[test]
fn a_band_reads_only_the_chunks_it_needs() {
    // 96x80 in 32x32 tiles: 3 tiles across, 3 rows of tiles.
    let mut source = ImageSource::open(&data("zstd_rgb.tif"), Channels::Rgb).unwrap();
    let mut rows = Vec::new();
    assert_eq!(source.chunks_read(), 0, "opening reads no chunk");
    source.read_rows(32, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 3, "the first row of tiles");
    source.read_rows(1, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 6, "the second row of tiles");
    source.read_rows(100, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 9);
    // Planar: each plane's tiles of the row.
    let mut source = ImageSource::open(&data("planar_rgb_tiled.tif"), Channels::Rgb).unwrap();
    source.read_rows(5, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 9, "3 tiles in each of 3 planes");
    // A gray planar image would read one plane; strips are read one at a time.
    let mut source = ImageSource::open(&data("packbits_rgb.tif"), Channels::Rgb).unwrap();
    source.read_rows(7, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 1);
    source.read_rows(8, &mut rows).unwrap();
    assert_eq!(source.chunks_read(), 3);

    // Bytes read from the file: the first row of tiles of a 3-level pyramid is a fraction of it.
    let path = data("pages_pyramid.tif");
    let len = std::fs::metadata(&path).unwrap().len();
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting { file: std::fs::File::open(&path).unwrap(), read: read.clone() };
    let input = Box::new(BufReader::with_capacity(512, counting));
    let mut source = ImageSource::new(input, "pages_pyramid.tif".into(), Channels::Rgb).unwrap();
    let opened = read.load(Ordering::Relaxed);
    source.read_rows(32, &mut rows).unwrap();
    let band = read.load(Ordering::Relaxed) - opened;
    assert!(opened < len / 3, "the directories: {opened} of {len} bytes");
    assert!(band < len / 2, "the first row of tiles read {band} of {len} bytes");
}
