//! Vendors' slides through the binary with OpenSlide (.openslide/lib, put there by `just setup`; these
//! tests fail when it is missing): `runner predict` at a level of an Aperio slide, folder mode listing
//! slides, `runner info`, and the one-line hint when the library is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imaging::source::{openslide, Channels, ImageSource};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../imaging/tests/data").join(path)
}

fn require_openslide() {
    if let Err(e) = openslide::resolve_library(None) {
        panic!("{e}: these tests need OpenSlide; run `just setup` (scripts/setup/fetch_openslide.sh)");
    }
}

/// A folder with model.onnx and the fixtures (paths under imaging/tests/data) under their own names.
fn workspace(fixtures: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
    for name in fixtures {
        let path = fixture(name);
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn runner(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn predict(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["predict", "--model", "model.onnx", "--threads", "2", "--quiet"];
    all.extend_from_slice(args);
    runner(dir, &all, &[])
}

fn size(path: &Path) -> (usize, usize) {
    let source = ImageSource::open(path, Channels::Gray).unwrap();
    (source.width(), source.height())
}

#[test]
fn a_level_of_an_aperio_slide_is_predicted_through_openslide_at_its_size() {
    require_openslide();
    let dir = workspace(&["tiff/aperio_like.svs", "openslide/small.svs"]);
    let out = predict(dir.path(), &["--image", "aperio_like.svs", "--level", "1", "--output", "x.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("predicted 48x40: "));
    assert_eq!(size(&dir.path().join("x.png")), (48, 40));

    let out = predict(dir.path(), &["--image", "small.svs", "--output", "s.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(size(&dir.path().join("s.png")), (16, 16));
    let out = predict(dir.path(), &["--image", "small.svs", "--level", "1", "--output", "t.png"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.lines().count() == 1, "{stderr}");
    assert!(stderr.contains("small.svs has no level 1; its levels are 0: 16x16"), "{stderr}");
}

#[test]
fn folder_mode_lists_slides_by_extension() {
    require_openslide();
    let dir = workspace(&["openslide/small.svs", "openslide/boxes_0.dcm", "openslide/boxes_1.dcm"]);
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let out = predict(dir.path(), &["--input-dir", ".", "--pattern", "*[sm]", "--output-dir", "out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["small.png", "boxes_0.png", "boxes_1.png"] {
        assert_eq!(size(&dir.path().join("out").join(name)), (16, 16), "{name}");
    }
}

#[test]
fn info_names_the_reader_vendor_and_levels() {
    require_openslide();
    let dir = workspace(&["tiff/aperio_like.svs", "openslide/boxes.tiff"]);
    let out = runner(dir.path(), &["info", "aperio_like.svs", "--level", "1"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("aperio_like.svs: OpenSlide 4."), "{stdout}");
    assert!(stdout.contains("(aperio)") && stdout.contains("0.2500 x 0.2500"), "{stdout}");
    assert!(stdout.contains(" 0     96x80 ") && stdout.contains("*1     48x40 "), "{stdout}");
    assert!(stdout.contains("tiles 16x16"), "{stdout}");
    assert!(stdout.contains("time: give --model to estimate time"), "{stdout}");

    let out = runner(dir.path(), &["info", "boxes.tiff", "--model", "model.onnx", "--threads", "2"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("boxes.tiff: native TIFF\n"), "{stdout}");
    assert!(stdout.contains(" 3     37x31 "), "{stdout}");
    assert!(stdout.contains("megapixels/s (measured on a 512x512 image)"), "{stdout}");
    assert!(stdout.contains("for the model sessions (measured)"), "{stdout}");

    let out = runner(dir.path(), &["info", "boxes.tiff", "--level", "9"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("its levels are 0: 300x250, 1: 150x125"), "{stderr}");
}

#[test]
fn a_missing_library_gives_one_line_saying_how_to_get_it() {
    let dir = workspace(&["openslide/boxes_0.dcm", "openslide/boxes_1.dcm", "openslide/small.svs"]);
    // Given with the flag: refused at once.
    let out =
        predict(dir.path(), &["--image", "boxes_0.dcm", "--output", "d.png", "--openslide-lib", "nope.so"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.lines().count() == 1, "{stderr}");
    assert!(
        stderr.contains("the OpenSlide library given by --openslide-lib does not exist: nope.so"),
        "{stderr}"
    );
    assert!(stderr.contains("just setup"), "{stderr}");
    // Given by OPENSLIDE_LIB: a DICOM slide says what it is; an SVS the native reader reads is read.
    let env = [("OPENSLIDE_LIB", "/nonexistent/libopenslide.so.1")];
    let args = ["predict", "--model", "model.onnx", "--threads", "2", "--quiet", "--image", "boxes_0.dcm"];
    let out = runner(dir.path(), &[&args[..], &["--output", "d.png"]].concat(), &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.lines().count() == 1, "{stderr}");
    assert!(
        stderr.contains("boxes_0.dcm is probably a DICOM slide, which is read through OpenSlide"),
        "{stderr}"
    );
    assert!(
        stderr.contains("OPENSLIDE_LIB does not exist") && stderr.contains("--openslide-lib"),
        "{stderr}"
    );
    let out = runner(dir.path(), &["info", "small.svs"], &env);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("small.svs: native TIFF"));
}
