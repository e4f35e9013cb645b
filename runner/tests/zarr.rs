//! OME-Zarr images (folders) through the binary: `--image slide.ome.zarr` at level 0 and `--level 1` (outputs
//! of the level's size), folder mode listing an OME-Zarr folder as one image named after its stem (with
//! `--pattern` and `--shard`), and other folders still refused as `--image`. The inputs are imaging's
//! fixtures (imaging/tests/data/zarr, made by zarr-python).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imaging::source::{Channels, ImageSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../imaging/tests/data/zarr").join(name)
}

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

/// A folder with model.onnx and the fixture folders `names` (as `sub/<name>`).
fn workspace(sub: &str, names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
    for name in names {
        copy_dir(&fixture(name), &dir.path().join(sub).join(name));
    }
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

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_ome_zarr_image_is_predicted_at_level_0_and_1() {
    let dir = workspace("in", &["v04_cyx_u8.ome.zarr"]);
    let image = "in/v04_cyx_u8.ome.zarr";
    let out = predict(dir.path(), &["--image", image, "--output", "l0.png", "--overlay", "o.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("predicted 97x75: "));
    assert_eq!(size(&dir.path().join("l0.png")), (97, 75));
    assert_eq!(size(&dir.path().join("o.png")), (97, 75));

    let out = predict(dir.path(), &["--image", image, "--output", "l1.tif", "--level", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(size(&dir.path().join("l1.tif")), (49, 38));

    let out = predict(dir.path(), &["--image", image, "--output", "l5.png", "--level", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("has no level 5; its levels are 0: 97x75, 1: 49x38, 2: 25x19"), "{stderr}");
    assert!(!dir.path().join("l5.png").exists());
}

#[test]
fn other_folders_are_still_refused_as_an_image() {
    let dir = workspace("in", &["plain_group.zarr"]);
    for folder in ["in", "in/plain_group.zarr"] {
        let out = predict(dir.path(), &["--image", folder, "--output", "x.png"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("is a folder, not a regular file"), "{folder}: {stderr}");
    }
}

#[test]
fn folder_mode_lists_an_ome_zarr_folder_as_one_image() {
    let dir =
        workspace("images", &["v04_cyx_u8.ome.zarr", "v05_cyx_u16_sharded.ome.zarr", "plain_group.zarr"]);
    image::RgbImage::new(20, 10).save(dir.path().join("images/a.png")).unwrap();
    let out = predict(dir.path(), &["--input-dir", "images", "--output-dir", "out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&dir.path().join("out")), ["a.png", "v04_cyx_u8.png", "v05_cyx_u16_sharded.png"]);
    assert_eq!(size(&dir.path().join("out/v05_cyx_u16_sharded.png")), (97, 75));

    let out = predict(dir.path(), &["--input-dir", "images", "--output-dir", "p", "--pattern", "v04*"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&dir.path().join("p")), ["v04_cyx_u8.png"]);

    let out = predict(
        dir.path(),
        &["--input-dir", "images", "--output-dir", "s", "--shard", "2/3", "--level", "1"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&dir.path().join("s")), ["v05_cyx_u16_sharded.png"]);
    assert_eq!(size(&dir.path().join("s/v05_cyx_u16_sharded.png")), (49, 38));
}

fn read_gray(path: &Path) -> Vec<u8> {
    ImageSource::open(path, Channels::Gray).unwrap().read_all().unwrap()
}

fn one_line_error(out: &Output, wants: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for want in wants {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
}

#[test]
fn ngff_05_outputs_and_labels_written_into_v2_and_v3_inputs() {
    let names = ["v04_cyx_u8.ome.zarr", "v05_cyx_u16_sharded.ome.zarr"];
    let dir = workspace("in", &names);
    for name in names {
        let image = format!("in/{name}");
        let output = format!("{name}.mask.ome.zarr");
        let args = ["--image", &image, "--output", &output, "--ngff", "0.5", "--labels", "seg"];
        let out = predict(dir.path(), &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("wrote {image}/labels/seg")), "{stdout}");
        let store = dir.path().join(&output);
        let group: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join("zarr.json")).unwrap()).unwrap();
        assert_eq!(group["attributes"]["ome"]["version"], "0.5");
        // The label holds the mask as 0/1, in the input's own Zarr version.
        let mask = read_gray(&store);
        assert!(mask.contains(&255) && mask.contains(&0), "a mask of both classes");
        let label = dir.path().join(&image).join("labels/seg");
        let ones: Vec<u8> = mask.iter().map(|&v| u8::from(v == 255)).collect();
        assert!(read_gray(&label) == ones, "{name}");
        let v3 = name.starts_with("v05");
        assert_eq!(label.join("zarr.json").exists(), v3);
        assert_eq!(label.join(".zattrs").exists(), !v3);
    }
    // One clear line each: --ngff without an .ome.zarr output, --labels on an image that is not OME-Zarr,
    // a label name with a separator, --labels in folder mode.
    std::fs::copy(fixture("v04_cyx_u8.png"), dir.path().join("i.png")).unwrap();
    let out = predict(dir.path(), &["--image", "i.png", "--output", "m.png", "--ngff", "0.5"]);
    one_line_error(&out, &["--ngff 0.5", ".ome.zarr"]);
    let out = predict(dir.path(), &["--image", "i.png", "--output", "m.png", "--labels", "seg"]);
    one_line_error(&out, &["--labels", "not an OME-Zarr image"]);
    let image = "in/v04_cyx_u8.ome.zarr";
    let out = predict(dir.path(), &["--image", image, "--output", "m.png", "--labels", "a/b"]);
    one_line_error(&out, &["--labels", "not a label name"]);
    let out = predict(dir.path(), &["--image", image, "--output-dir", "o", "--labels", "seg"]);
    one_line_error(&out, &["--labels is for one image"]);
    assert!(!dir.path().join("m.png").exists());
}

#[test]
fn labels_predicted_at_a_coarser_level_have_every_image_level() {
    let names = ["v04_cyx_u8.ome.zarr", "v05_cyx_u16_sharded.ome.zarr"];
    for (name, level) in [(names[0], 1), (names[0], 2), (names[1], 1)] {
        let dir = workspace("in", &[name]);
        let image = format!("in/{name}");
        let level_arg = level.to_string();
        let args = ["--image", &image, "--output", "m.png", "--level", &level_arg, "--labels", "seg"];
        let out = predict(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("note"), "no note: the label is complete: {stderr}");
        let image = dir.path().join(&image);
        let label = image.join("labels/seg");
        let sizes = |p: &Path| -> Vec<(usize, usize)> {
            ImageSource::levels(p).unwrap().iter().map(|l| (l.width, l.height)).collect()
        };
        let image_sizes = sizes(&image);
        assert_eq!(sizes(&label), image_sizes, "{name} --level {level}: the image's levels and shapes");
        // Level N is the mask; level 0 takes, for each pixel, the mask pixel holding its centre (these
        // fixtures' levels are 2x apart in scale: 2^N full-resolution pixels a predicted pixel).
        let mask: Vec<u8> =
            read_gray(&dir.path().join("m.png")).iter().map(|&v| u8::from(v == 255)).collect();
        let read = |l: usize| ImageSource::open_level(&label, l, Channels::Gray).unwrap().read_all().unwrap();
        assert!(read(level) == mask, "{name} --level {level}: level {level} is the prediction");
        let ((w, h), (pw, ph)) = (image_sizes[0], image_sizes[level]);
        let step = 1usize << level;
        let mut want = Vec::new();
        for y in 0..h {
            for x in 0..w {
                want.push(mask[(y / step).min(ph - 1) * pw + (x / step).min(pw - 1)]);
            }
        }
        assert!(read(0) == want, "{name} --level {level}: level 0 upsampled");
    }
}
