//! Without OpenSlide (the library given does not exist), files the native readers read are read natively,
//! and a vendor's slide they cannot read gives one line: what it probably is and how to get the library.
//! Its own test binary: the library chosen is process-wide.

use std::path::{Path, PathBuf};

use imaging::source::openslide;
use imaging::source::{Channels, FileFormat, ImageSource, SourceError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openslide").join(name)
}

#[test]
fn without_the_library_native_files_are_read_and_slides_say_how_to_get_it() {
    openslide::set_library(Some(PathBuf::from("/nonexistent/libopenslide.so.1")));
    assert!(openslide::library().unwrap_err().to_string().contains("--openslide-lib does not exist"));

    // small.svs has JPEG tiles the native TIFF reader reads.
    let mut svs = ImageSource::open(&fixture("small.svs"), Channels::Rgb).unwrap();
    assert_eq!((svs.format(), svs.width(), svs.height()), (FileFormat::Tiff, 16, 16));
    svs.read_all().unwrap();
    assert_eq!(ImageSource::probe(&fixture("boxes.tiff")).unwrap().levels.len(), 4);

    for (file, what) in [("boxes_0.dcm", "a DICOM slide"), ("unreadable.svs", "an Aperio SVS slide")] {
        let e = match ImageSource::open(&fixture(file), Channels::Rgb) {
            Err(e) => e,
            Ok(mut source) => source.read_all().unwrap_err(),
        };
        let line = e.to_string();
        if file == "unreadable.svs" {
            // Opened natively (its header is fine); its tiles fail natively, without a hint.
            assert!(!line.contains('\n'), "{line}");
            continue;
        }
        assert!(matches!(e, SourceError::NeedsOpenSlide { .. }), "{line}");
        assert!(line.contains(&format!("is probably {what}, which is read through OpenSlide")), "{line}");
        assert!(line.contains("--openslide-lib does not exist: /nonexistent/libopenslide.so.1"), "{line}");
        assert!(
            line.contains("just setup") && line.contains("OPENSLIDE_LIB") && !line.contains('\n'),
            "{line}"
        );
        let e = ImageSource::probe(&fixture(file)).unwrap_err();
        assert!(matches!(e, SourceError::NeedsOpenSlide { .. }), "{e}");
    }

    // A MIRAX slide (an index file beside a folder of data), recognised by its extension.
    let dir = tempfile::tempdir().unwrap();
    let mrxs = dir.path().join("slide.mrxs");
    std::fs::write(&mrxs, b"[GENERAL]\n").unwrap();
    let line = ImageSource::open(&mrxs, Channels::Rgb).unwrap_err().to_string();
    assert!(line.contains("slide.mrxs is probably a 3DHISTECH MIRAX slide"), "{line}");
}
