//! Vendors' slides through OpenSlide (loaded at run time from .openslide/lib, put there by `just setup`):
//! vendor detection and routing, levels, pixels equal to openslide-python's, bands of any row count equal
//! to the whole read, one-line errors. These tests fail, not skip, when the library is missing.

use std::path::{Path, PathBuf};

use imaging::source::openslide;
use imaging::source::{Channels, FileFormat, ImageSource, PyramidKind, SourceError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openslide").join(name)
}

/// The library, found as the runner finds it; a missing library fails the test with what to do.
fn library() -> &'static openslide::Api {
    let path = openslide::resolve_library(None).unwrap_or_else(|e| {
        panic!("{e}: these tests need OpenSlide; run `just setup` (scripts/setup/fetch_openslide.sh)")
    });
    openslide::load(&path).unwrap_or_else(|e| panic!("{e}; run `just setup`"))
}

fn reference_rgb(name: &str) -> (usize, usize, Vec<u8>) {
    let mut png = ImageSource::open(&fixture(name), Channels::Rgb).unwrap();
    (png.width(), png.height(), png.read_all().unwrap())
}

#[test]
fn vendors_are_detected_and_routed() {
    let api = library();
    assert!(api.version().starts_with('4'), "OpenSlide {}", api.version());
    assert_eq!(api.detect_vendor(&fixture("small.svs")).as_deref(), Some("aperio"));
    assert_eq!(api.detect_vendor(&fixture("boxes.tiff")).as_deref(), Some("generic-tiff"));
    assert_eq!(api.detect_vendor(&fixture("boxes_0.dcm")).as_deref(), Some("dicom"));
    assert_eq!(api.detect_vendor(&fixture("SOURCE.md")), None);

    let svs = ImageSource::probe(&fixture("small.svs")).unwrap();
    assert_eq!((svs.format, svs.vendor.as_deref()), (FileFormat::OpenSlide, Some("aperio")));
    assert_eq!(svs.microns_per_pixel, Some((0.499, 0.499)));
    assert_eq!(svs.levels_line(), "0: 16x16");
    assert_eq!(svs.levels[0].tile, Some((64, 64)));

    // A generic TIFF stays on the native reader, with its four levels.
    let tiff = ImageSource::probe(&fixture("boxes.tiff")).unwrap();
    assert_eq!((tiff.format, tiff.vendor.as_deref()), (FileFormat::Tiff, None));
    assert_eq!(tiff.levels_line(), "0: 300x250, 1: 150x125, 2: 75x62, 3: 37x31");
    assert_eq!(tiff.pyramid, Some(PyramidKind::Pages));

    let dicom = ImageSource::probe(&fixture("boxes_0.dcm")).unwrap();
    assert_eq!((dicom.format, dicom.vendor.as_deref()), (FileFormat::OpenSlide, Some("dicom")));
    assert_eq!(dicom.levels_line(), "0: 16x16");
}

#[test]
fn regions_equal_what_openslide_python_returns() {
    library();
    for (slide, reference) in [("small.svs", "small_svs_level0.png"), ("boxes_0.dcm", "boxes_dcm_level0.png")]
    {
        let mut source = ImageSource::open(&fixture(slide), Channels::Rgb).unwrap();
        assert_eq!(source.format(), FileFormat::OpenSlide);
        let (width, height, expected) = reference_rgb(reference);
        assert_eq!((source.width(), source.height()), (width, height), "{slide}");
        assert!(source.read_all().unwrap() == expected, "{slide}: pixels differ from openslide-python's");
    }
}

#[test]
fn bands_of_odd_row_counts_and_small_chunks_equal_the_whole_read() {
    library();
    let path = fixture("small.svs");
    let whole = ImageSource::open(&path, Channels::Rgb).unwrap().read_all().unwrap();
    for (band, chunk) in [(1, (4096, 256)), (3, (5, 2)), (5, (7, 3)), (7, (16, 1)), (16, (3, 16))] {
        let mut source = ImageSource::open(&path, Channels::Rgb).unwrap();
        source.set_region_chunk(chunk.0, chunk.1);
        let mut rows = Vec::new();
        while source.read_rows(band, &mut rows).unwrap() > 0 {}
        assert!(rows == whole, "bands of {band} rows, regions of {chunk:?}");
    }
    // Gray (masks) is the luminance of the same pixels.
    let gray = ImageSource::open(&path, Channels::Gray).unwrap().read_all().unwrap();
    assert_eq!(gray.len(), whole.len() / 3);
}

#[test]
fn levels_are_checked_and_lower_levels_of_a_generic_tiff_stay_native() {
    library();
    let e = ImageSource::open_level(&fixture("small.svs"), 1, Channels::Rgb).unwrap_err();
    assert!(matches!(e, SourceError::NoLevel { .. }), "{e}");
    assert!(e.to_string().contains("its levels are 0: 16x16"), "{e}");
    let level = ImageSource::open_level(&fixture("boxes.tiff"), 2, Channels::Rgb).unwrap();
    assert_eq!((level.format(), level.width(), level.height()), (FileFormat::Tiff, 75, 62));
}

#[test]
fn unopenable_and_unreadable_slides_give_one_line() {
    library();
    // A generic TIFF goes to the native reader, which refuses its compression.
    let e = ImageSource::open(&fixture("unopenable.tiff"), Channels::Rgb).unwrap_err();
    let line = e.to_string();
    assert!(!line.contains('\n') && line.contains("unopenable.tiff"), "{line}");
    // An Aperio slide whose tiles do not decode: opened, then the read fails with OpenSlide's error.
    let mut source = ImageSource::open(&fixture("unreadable.svs"), Channels::Rgb).unwrap();
    let e = source.read_all().unwrap_err();
    let line = e.to_string();
    assert!(matches!(e, SourceError::OpenSlide { .. }), "{line}");
    assert!(!line.contains('\n') && line.contains("unreadable.svs: OpenSlide cannot read it"), "{line}");
    // A file that is not a slide at all: not OpenSlide's, not the native readers'.
    let e = ImageSource::open(&fixture("SOURCE.md"), Channels::Rgb).unwrap_err();
    assert!(matches!(e, SourceError::Decode { .. }), "{e}");
    // A vendor's extension that OpenSlide does not recognise says so.
    let dir = tempfile::tempdir().unwrap();
    let mrxs = dir.path().join("broken.mrxs");
    std::fs::write(&mrxs, b"[GENERAL]\n").unwrap();
    let line = ImageSource::probe(&mrxs).unwrap_err().to_string();
    assert!(
        line.contains("broken.mrxs: OpenSlide cannot read it (it is probably a 3DHISTECH MIRAX slide"),
        "{line}"
    );
    assert!(line.contains("does not recognise it, nor do the native readers)"), "{line}");
}

#[test]
fn a_pyramid_svs_has_openslides_levels_and_the_native_readers_pixels_within_jpeg_rounding() {
    library();
    // Written by tests/data/make_fixtures.py: an Aperio-like SVS of JPEG tiles with two levels.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiff/aperio_like.svs");
    let info = ImageSource::probe(&path).unwrap();
    assert_eq!((info.vendor.as_deref(), info.pyramid), (Some("aperio"), Some(PyramidKind::OpenSlide)));
    assert_eq!(info.levels_line(), "0: 96x80, 1: 48x40");
    assert_eq!(info.levels[1].downsample, (2.0, 2.0));
    assert_eq!(info.microns_per_pixel, Some((0.25, 0.25)));
    for level in [0, 1] {
        let mut slide = ImageSource::open_level(&path, level, Channels::Rgb).unwrap();
        assert_eq!((slide.format(), slide.level()), (FileFormat::OpenSlide, level));
        assert_eq!(slide.microns_per_pixel(), Some((0.25 * (1 << level) as f64, 0.25 * (1 << level) as f64)));
        let mut native = ImageSource::open_native_level(&path, level, Channels::Rgb).unwrap();
        assert_eq!((slide.width(), slide.height()), (native.width(), native.height()));
        let (a, b) = (slide.read_all().unwrap(), native.read_all().unwrap());
        // Two JPEG decoders (libjpeg-turbo in OpenSlide, jpeg-decoder here) may differ by rounding.
        let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(worst <= 3, "level {level}: OpenSlide and the native reader differ by up to {worst}");
    }
}
