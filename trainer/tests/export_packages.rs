//! `trainer export --bioimageio/--triton` end to end: the package holds the declared files with test tensors
//! of the declared shapes computed by the exported graph, the Triton entry serves the same graph, and a
//! failed export (bad flag, missing test image, unwritable target, the checkpoint as a target) leaves every
//! existing file as it was.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use prost::Message;
use trainer::checkpoint::Checkpoint;
use trainer::model::SegNet;

mod common;
use common::{summary, NORM};

/// A checkpoint of a random network and a 150x90 test image in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let checkpoint = dir.join("checkpoint.safetensors");
    let net = SegNet::random(3, NORM, &Device::Cpu).unwrap();
    Checkpoint { net, summary: summary(), adam: None, history: Default::default() }
        .save(&checkpoint)
        .unwrap();
    let image = dir.join("image.png");
    image::RgbImage::from_fn(150, 90, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    })
    .save(&image)
    .unwrap();
    (checkpoint, image)
}

fn export(args: &[&str]) -> Output {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(&all).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unzip(path: &Path) -> HashMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let name = file.name().unwrap().to_string();
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Shape and values of a float32 .npy file.
fn read_npy(bytes: &[u8]) -> (Vec<usize>, Vec<f32>) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse().unwrap()).collect();
    let values =
        bytes[10 + len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (shape, values)
}

#[test]
fn export_writes_the_onnx_file_the_package_and_the_triton_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let (onnx, package, triton) =
        (dir.path().join("m.onnx"), dir.path().join("pkg.zip"), dir.path().join("triton"));
    let o = export(&[
        "--checkpoint",
        s(&checkpoint),
        "--output",
        s(&onnx),
        "--bioimageio",
        s(&package),
        "--triton",
        s(&triton),
        "--test-image",
        s(&image),
        "--name",
        "tiny-model",
        "--author",
        "Ada",
        "--author",
        "Alan",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 3, "one line per output: {stdout}");
    let onnx_bytes = std::fs::read(&onnx).unwrap();

    let files = unzip(&package);
    let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "cover.png",
            "model.onnx",
            "rdf.yaml",
            "sample_input.png",
            "sample_probabilities.png",
            "test_input.npy",
            "test_logits.npy",
            "test_probabilities.npy",
        ]
    );
    assert_eq!(files["model.onnx"], onnx_bytes, "the package holds the same graph as --output");
    let rdf = String::from_utf8(files["rdf.yaml"].clone()).unwrap();
    assert!(
        rdf.contains("name: \"tiny-model\"\n") && rdf.contains("  - name: \"Ada\"\n  - name: \"Alan\"\n")
    );
    assert!(rdf.contains("trained for 5 iterations on `image.png` with the mask `mask.png`"), "{rdf}");
    assert!(String::from_utf8_lossy(&files["README.md"]).contains("## Validation"));

    // The test input is the 128x90 centre crop (even sides, even origin 10, 0), bytes / 255; the test outputs
    // are the exported graph's own outputs on it.
    let (shape, input) = read_npy(&files["test_input.npy"]);
    assert_eq!(shape, [1, 3, 90, 128]);
    let rgb = image::open(&image).unwrap().to_rgb8();
    assert_eq!(input[5 * 128 + 7], f32::from(rgb.get_pixel(10 + 7, 5)[0]) / 255.0);
    assert_eq!(input[2 * 90 * 128 + 89 * 128 + 127], f32::from(rgb.get_pixel(10 + 127, 89)[2]) / 255.0);
    let model = candle_onnx::onnx::ModelProto::decode(onnx_bytes.as_slice()).unwrap();
    let x = Tensor::from_vec(input, (1, 3, 90, 128), &Device::Cpu).unwrap();
    let expected = candle_onnx::simple_eval(&model, HashMap::from([("image".to_string(), x)])).unwrap();
    for name in ["logits", "probabilities"] {
        let (shape, values) = read_npy(&files[&format!("test_{name}.npy")]);
        assert_eq!(shape, [1, 2, 90, 128], "{name}");
        let want: Vec<f32> = expected[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(values, want, "{name}");
    }
    let cover = image::load_from_memory(&files["cover.png"]).unwrap();
    assert_eq!((cover.width(), cover.height()), (512, 180), "crop | prediction, 2x");

    let config = std::fs::read_to_string(triton.join("tiny-model/config.pbtxt")).unwrap();
    assert!(
        config.contains("name: \"tiny-model\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 0\n"),
        "{config}"
    );
    assert_eq!(std::fs::read(triton.join("tiny-model/1/model.onnx")).unwrap(), onnx_bytes);
    let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| s(p).ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn packages_alone_do_not_write_the_default_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let triton = dir.path().join("t");
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(dir.path())
        .args(["export", "--checkpoint", s(&checkpoint), "--triton", s(&triton), "--test-image", s(&image)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(triton.join("segmenter/config.pbtxt").is_file());
    assert!(!dir.path().join("models").exists(), "--output was not asked for");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

#[test]
fn a_failed_export_leaves_existing_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let (onnx, package, triton) =
        (dir.path().join("m.onnx"), dir.path().join("pkg.zip"), dir.path().join("triton"));
    std::fs::write(&onnx, b"old onnx").unwrap();
    std::fs::write(&package, b"old zip").unwrap();
    std::fs::create_dir_all(triton.join("segmenter/2")).unwrap();
    std::fs::write(triton.join("segmenter/config.pbtxt"), b"old config").unwrap();
    std::fs::write(triton.join("segmenter/2/model.onnx"), b"version 2").unwrap();
    let bad_metrics = dir.path().join("metrics.json");
    std::fs::write(&bad_metrics, b"{\"pixels\": 3}").unwrap();
    let before = snapshot(dir.path());

    let all = |extra: &[&str]| -> Output {
        let mut args = vec![
            "--checkpoint",
            s(&checkpoint),
            "--output",
            s(&onnx),
            "--bioimageio",
            s(&package),
            "--triton",
            s(&triton),
        ];
        args.extend_from_slice(extra);
        export(&args)
    };
    let missing = dir.path().join("missing.png");
    assert_clean_failure(&all(&["--test-image", s(&missing)]), "missing.png");
    assert_clean_failure(
        &all(&["--test-image", s(&image), "--validation-metrics", s(&bad_metrics)]),
        "missing field",
    );
    assert_clean_failure(&all(&["--test-image", s(&image), "--name", "no/slash"]), "--name");
    assert_clean_failure(&all(&["--test-image", s(&image), "--name", "seg"]), "--name");
    assert_eq!(snapshot(dir.path()), before, "a failed export changed files");

    // The checkpoint as a target, under another spelling of its path.
    let other_spelling = dir.path().join(".").join("checkpoint.safetensors");
    for flag in ["--output", "--bioimageio"] {
        // With --bioimageio refused, the --output given beside it is not written either.
        let o = export(&[
            "--checkpoint",
            s(&checkpoint),
            flag,
            s(&other_spelling),
            "--test-image",
            s(&image),
            if flag == "--output" { "--triton" } else { "--output" },
            if flag == "--output" { s(&triton) } else { s(&onnx) },
        ]);
        assert_clean_failure(&o, "is the checkpoint being exported");
    }
    assert_eq!(snapshot(dir.path()), before, "the checkpoint was overwritten");
}

#[test]
fn a_triton_entry_that_cannot_be_written_keeps_its_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let triton = dir.path().join("triton");
    std::fs::create_dir_all(triton.join("segmenter")).unwrap();
    std::fs::write(triton.join("segmenter/config.pbtxt"), b"old config").unwrap();
    // A file where the version directory must go: the model file cannot be staged (even as root).
    std::fs::write(triton.join("segmenter/1"), b"not a directory").unwrap();
    let before = snapshot(dir.path());
    let o = export(&["--checkpoint", s(&checkpoint), "--triton", s(&triton)]);
    assert_clean_failure(&o, "cannot write the Triton repository entry");
    assert_eq!(snapshot(dir.path()), before, "config.pbtxt replaced although the model could not be written");

    // A fresh entry that fails is removed whole.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("segmenter"), b"a file where the model directory goes").unwrap();
    let o = export(&["--checkpoint", s(&checkpoint), "--triton", s(&fresh)]);
    assert_clean_failure(&o, "cannot write the Triton repository entry");
    assert_eq!(std::fs::read(fresh.join("segmenter")).unwrap(), b"a file where the model directory goes");
}

#[test]
fn a_package_path_without_zip_is_refused_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let before = snapshot(dir.path());
    let package = dir.path().join("segmenter.bioimageio");
    let onnx = dir.path().join("m.onnx");
    let o = export(&[
        "--checkpoint",
        s(&checkpoint),
        "--output",
        s(&onnx),
        "--bioimageio",
        s(&package),
        "--test-image",
        s(&image),
    ]);
    assert_clean_failure(&o, "must end in `.zip`");
    assert!(stderr(&o).contains(&format!("--bioimageio {}", s(&package))), "{}", stderr(&o));
    assert_eq!(snapshot(dir.path()), before, "a refused export wrote files");
    // The help says so.
    let help = Command::new(env!("CARGO_BIN_EXE_trainer")).args(["export", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("The path must end in `.zip`"), "{help}");
}

#[test]
fn a_licence_must_be_an_spdx_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let before = snapshot(dir.path());
    let package = dir.path().join("pkg.zip");
    let with_license = |license: &str| {
        export(&[
            "--checkpoint",
            s(&checkpoint),
            "--bioimageio",
            s(&package),
            "--test-image",
            s(&image),
            "--license",
            license,
        ])
    };
    assert_clean_failure(
        &with_license("mit"),
        "--license `mit` is not spelled as an SPDX licence identifier: did you mean MIT?",
    );
    assert_clean_failure(&with_license("GPLv3"), "--license `GPLv3` is not an SPDX licence identifier");
    assert_eq!(snapshot(dir.path()), before, "a refused export wrote files");
    let o = with_license("Apache-2.0");
    assert!(o.status.success(), "{}", stderr(&o));
    let rdf = String::from_utf8(unzip(&package)["rdf.yaml"].clone()).unwrap();
    assert!(rdf.contains("\nlicense: \"Apache-2.0\"\n"), "{rdf}");
}

#[test]
fn a_four_character_name_is_refused_for_triton_as_for_bioimageio() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, image) = setup(dir.path());
    let triton = dir.path().join("triton");
    let mut messages = Vec::new();
    for (flag, target) in
        [("--triton", s(&triton).to_string()), ("--bioimageio", format!("{}/p.zip", s(dir.path())))]
    {
        let o = export(&[
            "--checkpoint",
            s(&checkpoint),
            flag,
            &target,
            "--test-image",
            s(&image),
            "--name",
            "abcd",
        ]);
        assert_clean_failure(&o, "--name `abcd` is not a valid model name (4 characters, fewer than 5)");
        messages.push(stderr(&o));
    }
    assert_eq!(messages[0], messages[1], "one rule, one message");
    assert!(!triton.exists() && !dir.path().join("p.zip").exists());
}

#[test]
fn triton_writes_the_next_version_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let triton = dir.path().join("triton");
    std::fs::create_dir_all(triton.join("segmenter/1")).unwrap();
    std::fs::write(triton.join("segmenter/1/model.onnx"), b"version 1").unwrap();
    let o = export(&["--checkpoint", s(&checkpoint), "--triton", s(&triton)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("segmenter/2/model.onnx (version 2; Triton serves it, the highest; version 1 kept)"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(triton.join("segmenter/1/model.onnx")).unwrap(), b"version 1");
    assert!(triton.join("segmenter/2/model.onnx").is_file());

    // A version below the highest is refused; the highest is replaced on request.
    let before = snapshot(dir.path());
    let o = export(&["--checkpoint", s(&checkpoint), "--triton", s(&triton), "--triton-version", "1"]);
    assert_clean_failure(&o, "--triton-version 1: ");
    assert!(stderr(&o).contains("already has versions 1 and 2"), "{}", stderr(&o));
    assert_eq!(snapshot(dir.path()), before);
    let o = export(&["--checkpoint", s(&checkpoint), "--triton", s(&triton), "--triton-version", "2"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(version 2, replaced;"), "{}", stderr(&o));
    // Version 0 (ignored by Triton) and a version without --triton are usage errors.
    for args in [&["--triton", s(&triton), "--triton-version", "0"][..], &["--triton-version", "3"][..]] {
        let mut all = vec!["--checkpoint", s(&checkpoint)];
        all.extend_from_slice(args);
        let o = export(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    }
}
