//! Slides and scanner TIFFs through the binary: `--level N` predicts a pyramid level (outputs of its size;
//! a level that does not exist is one line listing the levels; a reference mask must have the level's
//! size), the outputs carry the input's EXIF orientation, and a multi-page stack says that only its first
//! page was predicted. The inputs are imaging's fixtures (imaging/tests/data/tiff, made by tifffile).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imaging::source::{Channels, ImageSource, Orientation};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../imaging/tests/data/tiff").join(name)
}

/// A folder with model.onnx and the fixture `name` as its own file name.
fn workspace(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
    std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    dir
}

fn predict(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .args(["predict", "--model", "model.onnx", "--threads", "2", "--quiet"])
        .args(args)
        .output()
        .unwrap()
}

fn size(path: &Path) -> (usize, usize) {
    let source = ImageSource::open(path, Channels::Gray).unwrap();
    (source.width(), source.height())
}

#[test]
fn a_level_of_a_pyramid_is_predicted_at_its_size() {
    let dir = workspace("ome_pyramid.ome.tif");
    let out = predict(dir.path(), &["--image", "ome_pyramid.ome.tif", "--output", "l1.tif", "--level", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("predicted 48x40: "));
    assert_eq!(size(&dir.path().join("l1.tif")), (48, 40));

    // The reference mask is read at its own level 0 and must have the level's size.
    image::GrayImage::new(48, 40).save(dir.path().join("mask48.png")).unwrap();
    let args =
        ["--image", "ome_pyramid.ome.tif", "--output", "m.png", "--level", "1", "--mask", "mask48.png"];
    let out = predict(dir.path(), &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("foreground IoU"));
    image::GrayImage::new(96, 80).save(dir.path().join("mask96.png")).unwrap();
    let args =
        ["--image", "ome_pyramid.ome.tif", "--output", "n.png", "--level", "1", "--mask", "mask96.png"];
    let out = predict(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is 96x80 but the image is 48x40 (ome_pyramid.ome.tif, level 1)"), "{stderr}");
    assert!(!dir.path().join("n.png").exists());
}

#[test]
fn a_level_that_does_not_exist_is_one_line_listing_the_levels() {
    let dir = workspace("pages_pyramid.tif");
    let out = predict(dir.path(), &["--image", "pages_pyramid.tif", "--output", "p.png", "--level", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("has no level 3; its levels are 0: 96x80, 1: 48x40, 2: 24x20"), "{stderr}");
    assert!(!dir.path().join("p.png").exists());
    // Folder mode: the image fails with the same line, and the run says so.
    let out = predict(dir.path(), &["--image", "pages_pyramid.tif", "--output-dir", "out", "--level", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("its levels are 0: 96x80"));
}

#[test]
fn outputs_carry_the_orientation_of_the_input() {
    let dir = workspace("orientation6.tif");
    let args = [
        "--image",
        "orientation6.tif",
        "--output",
        "mask.png",
        "--overlay",
        "overlay.jpg",
        "--probabilities",
        "p.tif",
    ];
    let out = predict(dir.path(), &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["mask.png", "overlay.jpg", "p.tif"] {
        let source = ImageSource::open(&dir.path().join(name), Channels::Gray).unwrap();
        assert_eq!(source.orientation(), Orientation::Rotate90, "{name}");
        assert_eq!((source.width(), source.height()), (96, 80), "{name}: stored orientation");
    }
}

#[test]
fn a_multi_page_stack_says_only_its_first_page_was_predicted() {
    let dir = workspace("stack_pages.tif");
    let out = predict(dir.path(), &["--image", "stack_pages.tif", "--output", "s.png"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("note: stack_pages.tif: a multi-page TIFF of 3 pages"), "{stderr}");
    assert!(stderr.contains("only page 1 was predicted"), "{stderr}");
    assert_eq!(size(&dir.path().join("s.png")), (96, 80));
    // A pyramid's pages are levels: nothing to say.
    let dir = workspace("aperio_like.svs");
    let out = predict(dir.path(), &["--image", "aperio_like.svs", "--output", "a.png"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
