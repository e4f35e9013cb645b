//! The binary with a three-class model on the real three-class case (data/ihc): the mask holds class
//! indices, the `.npy` every class's probability, (height, width, 3); the outputs it cannot yet write for
//! more than two classes are refused in one line, naming the flag, with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ihc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/ihc").join(name)
}

/// Runs `runner predict` in `dir` with the three-class model and the IHC image plus `extra`.
fn predict(dir: &Path, extra: &[&str]) -> Output {
    std::fs::write(dir.join("model.onnx"), common::model("net3_5")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .arg("predict")
        .args(["--model", "model.onnx", "--image"])
        .arg(ihc("image.png"))
        .args(extra)
        .args(["--threads", "2", "--quiet", "--tile", "128"])
        .output()
        .unwrap()
}

/// The shape and float32 values of a little-endian C-order `.npy`.
fn read_npy(path: &Path) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4', 'fortran_order': False"), "{header}");
    let shape = header.split("'shape': ").nth(1).unwrap().split(')').next().unwrap().to_string() + ")";
    let values =
        bytes[10 + len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (shape, values)
}

#[test]
fn a_three_class_model_writes_class_indices_and_every_class_s_probability() {
    let dir = tempfile::tempdir().unwrap();
    let out = predict(dir.path(), &["--output", "mask.png", "--probabilities", "p.npy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mask = image::open(dir.path().join("mask.png")).unwrap();
    assert!(matches!(mask, image::DynamicImage::ImageLuma8(_)), "an 8-bit gray mask");
    let mask = mask.into_luma8();
    let (width, height) = (mask.width() as usize, mask.height() as usize);
    let (shape, probabilities) = read_npy(&dir.path().join("p.npy"));
    assert_eq!(shape, format!("({height}, {width}, 3)"));
    assert_eq!(probabilities.len(), height * width * 3);
    let mut counts = [0usize; 3];
    for (pixel, (&class, p)) in mask.as_raw().iter().zip(probabilities.chunks_exact(3)).enumerate() {
        let sum: f32 = p.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "pixel {pixel}: probabilities sum to {sum}");
        // The class is the argmax of the logits; softmax keeps their order, up to rounding at near ties.
        let argmax = (1..3).fold(0, |best, c| if p[c] > p[best] { c } else { best });
        if usize::from(class) != argmax {
            let margin = p[argmax] - p[usize::from(class)];
            assert!(margin <= 1e-6, "pixel {pixel}: class {class}, probabilities {p:?}");
        }
        counts[usize::from(class)] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), width * height);
    assert!(counts.iter().filter(|&&c| c > 0).count() >= 2, "one class only: {counts:?}");

    // The same as a TIFF: the same indices.
    let out = predict(dir.path(), &["--output", "mask.tif"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(image::open(dir.path().join("mask.tif")).unwrap().into_luma8().as_raw(), mask.as_raw());
}

/// Per-class metrics against the three-class reference (`data/ihc/mask3.png`, class indices) equal an
/// independent count of the written mask against it.
#[test]
fn a_three_class_model_is_scored_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let mask3 = ihc("mask3.png");
    let args = ["--output", "mask.png", "--mask", mask3.to_str().unwrap(), "--label-format", "index"];
    let out = predict(dir.path(), &[&args[..], &["--metrics-json", "m.json"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let predicted = image::open(dir.path().join("mask.png")).unwrap().into_luma8().into_raw();
    let reference = image::open(&mask3).unwrap().into_luma8().into_raw();
    let mut confusion = [[0u64; 3]; 3];
    for (&p, &r) in predicted.iter().zip(&reference) {
        confusion[usize::from(r)][usize::from(p)] += 1;
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    let written: Vec<Vec<u64>> = serde_json::from_value(json["confusion"].clone()).unwrap();
    assert_eq!(written, confusion.map(|row| row.to_vec()).to_vec());
    let mut ious = Vec::new();
    for k in 0..3 {
        let tp = confusion[k][k];
        let reference: u64 = confusion[k].iter().sum();
        let predicted: u64 = (0..3).map(|r| confusion[r][k]).sum();
        let union = reference + predicted - tp;
        let iou = if union == 0 { 1.0 } else { tp as f64 / union as f64 };
        let dice =
            if reference + predicted == 0 { 1.0 } else { 2.0 * tp as f64 / (reference + predicted) as f64 };
        let class = &json["classes"][k];
        assert_eq!(class["iou"].as_f64().unwrap(), iou, "class {k}");
        assert_eq!(class["dice"].as_f64().unwrap(), dice, "class {k}");
        ious.push(iou);
    }
    assert_eq!(json["classes"][1]["name"], "class1");
    assert_eq!(json["mean_iou"].as_f64().unwrap(), ious.iter().sum::<f64>() / 3.0);
    let correct: u64 = (0..3).map(|k| confusion[k][k]).sum();
    assert_eq!(json["pixel_accuracy"].as_f64().unwrap(), correct as f64 / reference.len() as f64);
    assert!(stdout.contains("mean IoU"), "{stdout}");

    // A reference value beyond the classes is a clear error, and nothing is written.
    let mut bad = reference.clone();
    bad[0] = 3;
    image::GrayImage::from_raw(512, 512, bad).unwrap().save(dir.path().join("bad.png")).unwrap();
    let out = predict(dir.path(), &["--output", "m2.png", "--mask", "bad.png", "--label-format", "index"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the reference mask holds the value 3, which is no class of this 3-class model"),
        "{stderr}"
    );
    assert!(!dir.path().join("m2.png").exists());
}

#[test]
fn outputs_not_yet_written_for_three_classes_are_refused_naming_the_flag() {
    let cases: [(&[&str], &str); 6] = [
        (&["--shard", "1/2", "--output", "m.ome.zarr"], "--shard with a 3-class model is not supported yet"),
        (&["--overlay", "o.png"], "--overlay with a 3-class model is not supported yet"),
        (&["--geojson", "r.geojson"], "--geojson with a 3-class model is not supported yet"),
        (&["--probabilities", "p.tif"], "--probabilities other than .npy with a 3-class model"),
        (&["--output", "m.ome.tif"], "a mask in OME-TIFF with a 3-class model is not supported yet"),
        (&["--output", "m.jpg"], "a mask in JPEG with a 3-class model is not supported yet"),
    ];
    for (extra, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<&str> = extra.to_vec();
        if !args.contains(&"--output") {
            args.extend(["--output", "m.png"]);
        }
        let out = predict(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{extra:?}: {stderr}");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        left.sort();
        assert_eq!(left, ["model.onnx"], "{extra:?} left files behind");
    }
}
