//! The binary end to end: outputs on success; on each bad input one clear line, a non-zero exit and no
//! output file (partial or temporary) left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A folder with model.onnx, a 70x50 image.png and its 70x50 mask.png.
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
        let (w, h) = (70u32, 50u32);
        let rgb = common::Rng::new(1).image(h as usize, w as usize);
        image::RgbImage::from_raw(w, h, rgb).unwrap().save(dir.path().join("image.png")).unwrap();
        let mask = image::GrayImage::from_fn(w, h, |x, _| image::Luma([if x < 35 { 255 } else { 0 }]));
        mask.save(dir.path().join("mask.png")).unwrap();
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `runner predict` with the model and image of this folder plus `extra` arguments.
    fn predict(&self, extra: &[&str]) -> Output {
        self.predict_with(&["--model", "model.onnx", "--image", "image.png"], extra)
    }

    fn predict_with(&self, base: &[&str], extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .current_dir(self.dir.path())
            .arg("predict")
            .args(base)
            .args(extra)
            .args(["--threads", "2", "--quiet"])
            .output()
            .unwrap()
    }

    /// The file names in the folder (outputs and any leftover temporary files).
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

const INPUTS: [&str; 3] = ["image.png", "mask.png", "model.onnx"];

/// A failed run: non-zero exit, one line on stderr containing `expected`, nothing written.
fn assert_clean_failure(ws: &Workspace, out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail; stderr: {stderr}");
    assert!(stderr.contains(expected), "stderr should say `{expected}`, got: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(ws.files(), INPUTS, "no output or temporary file may be left");
}

#[test]
fn predicts_with_every_output() {
    let ws = Workspace::new();
    let out = ws.predict(&[
        "--output",
        "pred.png",
        "--mask",
        "mask.png",
        "--metrics-json",
        "metrics.json",
        "--probabilities",
        "prob.npy",
        "--overlay",
        "overlay.jpg",
        "--tile",
        "32",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing on stderr: {}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().next().unwrap();
    assert!(summary.starts_with("predicted 70x50: ") && summary.contains("megapixels/s"), "{summary}");
    assert!(stdout.contains("foreground IoU"), "{stdout}");

    let pred = image::open(ws.path("pred.png")).unwrap();
    assert_eq!((pred.width(), pred.height()), (70, 50));
    assert!(pred.to_luma8().pixels().all(|p| p[0] == 0 || p[0] == 255), "mask is black and white");
    let overlay = image::open(ws.path("overlay.jpg")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (70, 50));

    let npy = std::fs::read(ws.path("prob.npy")).unwrap();
    let header = imaging::sink::npy_header(50, 70);
    assert_eq!(&npy[..header.len()], header.as_slice());
    assert_eq!(npy.len(), header.len() + 4 * 70 * 50);
    let probs: Vec<f32> =
        npy[header.len()..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
    // The mask is the probability thresholded at one half.
    let mask = pred.to_luma8();
    for (p, m) in probs.iter().zip(mask.pixels()) {
        if (p - 0.5).abs() > 1e-4 {
            assert_eq!(*p > 0.5, m[0] == 255);
        }
    }

    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["pixels"], 3500);
    for key in ["pixel_accuracy", "foreground_iou", "dice"] {
        let v = metrics[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let mut expected: Vec<String> = INPUTS.iter().map(|s| s.to_string()).collect();
    expected.extend(["metrics.json", "overlay.jpg", "pred.png", "prob.npy"].map(String::from));
    expected.sort();
    assert_eq!(ws.files(), expected, "no temporary files left");
}

#[test]
fn jpeg_output_and_any_image_size() {
    let ws = Workspace::new();
    for (w, h) in [(1u32, 1u32), (3, 300), (257, 9)] {
        let rgb = common::Rng::new(w as u64).image(h as usize, w as usize);
        image::RgbImage::from_raw(w, h, rgb).unwrap().save(ws.path("odd.png")).unwrap();
        let out = ws.predict_with(&["--model", "model.onnx", "--image", "odd.png"], &["--output", "odd.jpg"]);
        assert!(out.status.success(), "{w}x{h}: {}", String::from_utf8_lossy(&out.stderr));
        let pred = image::open(ws.path("odd.jpg")).unwrap();
        assert_eq!((pred.width(), pred.height()), (w, h));
    }
}

#[test]
fn missing_image() {
    let ws = Workspace::new();
    let out = ws.predict_with(&["--model", "model.onnx", "--image", "nope.png"], &["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "--image nope.png: cannot read it");
}

#[test]
fn corrupt_image() {
    let ws = Workspace::new();
    std::fs::write(ws.path("image.png"), b"\x89PNG\r\n\x1a\n this is not really a png").unwrap();
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "image.png is not a readable PNG, JPEG or TIFF image");
}

#[test]
fn model_that_is_not_onnx() {
    let ws = Workspace::new();
    std::fs::write(ws.path("model.onnx"), b"definitely not protobuf \xff\xff\xff").unwrap();
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "model.onnx is not a valid ONNX model");
}

#[test]
fn missing_model() {
    let ws = Workspace::new();
    let out = ws.predict_with(&["--model", "none.onnx", "--image", "image.png"], &["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "--model none.onnx: cannot read it");
}

/// Puts the test model `name` (see tests/data/models) in the workspace as model.onnx.
fn use_model(ws: &Workspace, name: &str) {
    std::fs::write(ws.path("model.onnx"), common::model(name)).unwrap();
}

#[test]
fn model_whose_input_is_not_float() {
    let ws = Workspace::new();
    use_model(&ws, "int64_input");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "model.onnx is not a valid ONNX model");
}

#[test]
fn model_whose_input_is_not_three_channels() {
    let ws = Workspace::new();
    use_model(&ws, "four_channel_input");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "model.onnx is not a valid ONNX model");
}

#[test]
fn valid_onnx_that_does_not_take_an_rgb_float_image() {
    // One-node graphs `logits = Identity(image)`: they load in ONNX Runtime, so only the runner's own
    // checks can refuse them.
    let ws = Workspace::new();
    use_model(&ws, "identity_int64");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "does not fit the runner: input `image`: expected float32 (N,3,H,W)");
    use_model(&ws, "identity_one_channel");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "expected float32 (N,3,H,W), found Float32 [-1, 1, -1, -1]");
    use_model(&ws, "identity_three_dims");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "expected float32 (N,3,H,W)");
    use_model(&ws, "identity_fixed_size");
    let out = ws.predict(&["--output", "pred.png"]);
    assert_clean_failure(&ws, &out, "height and width must be dynamic");
}

#[test]
fn mask_of_another_size() {
    let ws = Workspace::new();
    image::GrayImage::new(71, 50).save(ws.path("mask.png")).unwrap();
    let out = ws.predict(&["--output", "pred.png", "--mask", "mask.png", "--metrics-json", "m.json"]);
    assert_clean_failure(&ws, &out, "mask mask.png is 71x50 but the image is 70x50");
}

#[test]
fn unsupported_output_extension() {
    let ws = Workspace::new();
    let out = ws.predict(&["--output", "pred.bmp"]);
    assert_clean_failure(
        &ws,
        &out,
        "use a file name ending in .png, .tif, .tiff, .ome.tif, .ome.zarr, .jpg or .jpeg",
    );
    let out = ws.predict(&["--output", "pred.png", "--overlay", "over.gif"]);
    assert_clean_failure(&ws, &out, "over.gif: unsupported image format");
}

#[test]
fn invalid_tile() {
    let ws = Workspace::new();
    let out = ws.predict(&["--output", "pred.png", "--tile", "300"]);
    assert_clean_failure(&ws, &out, "must be even and between 18 and 256");
}

#[test]
fn unwritable_output_folder() {
    let ws = Workspace::new();
    let out = ws.predict(&["--output", "no/such/folder/pred.png"]);
    assert_clean_failure(&ws, &out, "the folder no/such/folder does not exist");
}

#[test]
fn cuda_with_the_cpu_library_is_a_clear_error() {
    let ws = Workspace::new();
    let out = ws.predict(&["--output", "pred.png", "--device", "cuda"]);
    #[cfg(not(feature = "cuda"))]
    assert_clean_failure(&ws, &out, "built without CUDA support; rebuild it with");
    #[cfg(feature = "cuda")]
    assert_clean_failure(&ws, &out, "cannot use the CUDA execution provider");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("onnxruntime-gpu") || stderr.contains("fetch_onnxruntime.sh gpu"), "{stderr}");
}

#[test]
fn missing_library_is_a_clear_error() {
    let ws = Workspace::new();
    let out = ws.predict(&["--output", "pred.png", "--ort-lib", "/nowhere/libonnxruntime.so"]);
    assert_clean_failure(&ws, &out, "the ONNX Runtime library given by --ort-lib does not exist");
    assert!(String::from_utf8_lossy(&out.stderr).contains("just setup"));
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(ws.dir.path())
        .env("ORT_DYLIB_PATH", "/nowhere/libonnxruntime.so")
        .args(["predict", "--model", "model.onnx", "--image", "image.png", "--output", "pred.png"])
        .output()
        .unwrap();
    assert_clean_failure(&ws, &out, "given by ORT_DYLIB_PATH does not exist");
    // A file that is not a shared library.
    let out = ws.predict(&["--output", "pred.png", "--ort-lib", "image.png"]);
    assert_clean_failure(&ws, &out, "cannot load ONNX Runtime from image.png");
}

#[test]
fn library_is_found_from_elsewhere_through_the_executable() {
    // Run from a folder outside the repository: the library is found by walking up from the executable.
    let ws = Workspace::new();
    let model = ws.path("model.onnx");
    let image = ws.path("image.png");
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(std::env::temp_dir())
        .env_remove("ORT_DYLIB_PATH")
        .args(["predict", "--quiet", "--output"])
        .arg(ws.path("pred.png"))
        .arg("--model")
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(Path::new(&ws.path("pred.png")).is_file());
}

/// Float32 values of the first IFD of a TIFF (tiled or striped), through the tiff crate.
fn tiff_floats(path: &Path) -> Vec<f32> {
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(path).unwrap()).unwrap();
    match decoder.read_image().unwrap() {
        tiff::decoder::DecodingResult::F32(values) => values,
        _ => panic!("{}: not float32", path.display()),
    }
}

#[test]
fn ome_zarr_outputs_hold_the_plain_outputs_at_level_0() {
    use imaging::source::{Channels, ImageSource};
    let ws = Workspace::new();
    let (w, h) = (1100, 90);
    let rgb = common::Rng::new(7).image(h, w);
    image::RgbImage::from_raw(w as u32, h as u32, rgb).unwrap().save(ws.path("big.png")).unwrap();
    let base = ["--model", "model.onnx", "--image", "big.png", "--tile", "256"];
    for (mask, probabilities, overlay) in
        [("m.ome.zarr", "p.ome.zarr", "o.ome.zarr"), ("m.png", "p.npy", "o.png")]
    {
        // Twice for the stores: the second run replaces the first.
        for _ in 0..2 {
            let out = ws.predict_with(
                &base,
                &["--output", mask, "--probabilities", probabilities, "--overlay", overlay],
            );
            assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    for (store, plain, channels) in
        [("m.ome.zarr", "m.png", Channels::Gray), ("o.ome.zarr", "o.png", Channels::Rgb)]
    {
        let sizes: Vec<_> =
            ImageSource::levels(&ws.path(store)).unwrap().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(1100, 90), (550, 45)], "{store}");
        let read = |name: &str| ImageSource::open(&ws.path(name), channels).unwrap().read_all().unwrap();
        assert!(read(store) == read(plain), "{store}: level 0 differs from {plain}");
    }
    let npy = std::fs::read(ws.path("p.npy")).unwrap();
    let header = imaging::sink::npy_header(h, w).len();
    let plain: Vec<f32> =
        npy[header..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let mut stored = vec![0f32; w * h];
    for cx in 0..3 {
        let bytes = std::fs::read(ws.path(&format!("p.ome.zarr/0/0.{cx}"))).unwrap();
        let chunk = zstd::bulk::decompress(&bytes, 4 * 512 * 512).unwrap();
        for y in 0..h {
            for x in 0..(w - cx * 512).min(512) {
                let b = &chunk[4 * (y * 512 + x)..][..4];
                stored[y * w + cx * 512 + x] = f32::from_le_bytes(b.try_into().unwrap());
            }
        }
    }
    assert!(stored == plain, "probabilities: level 0 differs from the .npy");
    // A regular file at a store's path is refused and left as it was.
    std::fs::write(ws.path("f.ome.zarr"), b"x").unwrap();
    let refused = ws.predict_with(&base, &["--output", "f.ome.zarr"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an OME-Zarr store"));
    assert_eq!(std::fs::read(ws.path("f.ome.zarr")).unwrap(), b"x");
}

#[test]
fn ome_tiff_outputs_hold_the_plain_outputs_at_level_0_and_the_input_pixel_size() {
    use imaging::sink::{ImageFormat, PixelKind, RowSink, SinkOptions};
    use imaging::source::{Channels, ImageSource};
    let ws = Workspace::new();
    // An input above 1024 px wide (two levels), itself an OME-TIFF carrying microns per pixel.
    let (w, h) = (1100, 90);
    let rgb = common::Rng::new(5).image(h, w);
    let options = SinkOptions { microns_per_pixel: Some((0.5, 0.25)), ..SinkOptions::default() };
    let input = ws.path("slide.ome.tif");
    let mut sink = RowSink::image_with(&input, ImageFormat::OmeTiff, PixelKind::Rgb8, w, h, options).unwrap();
    sink.write_pixels(&rgb).unwrap();
    sink.finish().unwrap();
    let mask =
        image::GrayImage::from_fn(w as u32, h as u32, |x, y| image::Luma([if x < y * 3 { 255 } else { 0 }]));
    mask.save(ws.path("slide_mask.png")).unwrap();
    let base =
        ["--model", "model.onnx", "--image", "slide.ome.tif", "--mask", "slide_mask.png", "--tile", "256"];
    for (mask, probabilities, overlay, errors) in
        [("m.ome.tif", "p.ome.tif", "o.ome.tiff", "e.ome.tif"), ("m.png", "p.npy", "o.png", "e.png")]
    {
        let out = ws.predict_with(
            &base,
            &["--output", mask, "--probabilities", probabilities, "--overlay", overlay, "--errors", errors],
        );
        assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    for (ome, plain, channels) in [
        ("m.ome.tif", "m.png", Channels::Gray),
        ("o.ome.tiff", "o.png", Channels::Rgb),
        ("e.ome.tif", "e.png", Channels::Rgb),
    ] {
        let info = ImageSource::probe(&ws.path(ome)).unwrap();
        let sizes: Vec<_> = info.levels.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(1100, 90), (550, 45)], "{ome}");
        assert_eq!(info.microns_per_pixel, Some((0.5, 0.25)), "{ome}: the input's pixel size");
        let read = |name: &str| ImageSource::open(&ws.path(name), channels).unwrap().read_all().unwrap();
        assert!(read(ome) == read(plain), "{ome}: level 0 differs from {plain}");
    }
    let npy = std::fs::read(ws.path("p.npy")).unwrap();
    let header = imaging::sink::npy_header(h, w).len();
    let plain: Vec<f32> =
        npy[header..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(tiff_floats(&ws.path("p.ome.tif")) == plain, "probabilities: level 0 differs from the .npy");
    assert_eq!(ImageSource::levels(&ws.path("p.ome.tif")).unwrap().len(), 2);
}

/// Partial reference masks: --ignore-value and --label-format ilastik score the labelled pixels only, the
/// counts equal those computed here from the written mask, and both codings give the same metrics.
#[test]
fn partial_reference_masks_score_labelled_pixels_only() {
    let ws = Workspace::new();
    let reference = image::open(ws.path("mask.png")).unwrap().into_luma8();
    let unlabelled = |x: u32, y: u32| (x + 2 * y).is_multiple_of(3);
    let coded = |[ignore, background, foreground]: [u8; 3]| {
        image::GrayImage::from_fn(70, 50, |x, y| {
            image::Luma([match (unlabelled(x, y), reference.get_pixel(x, y)[0] > 127) {
                (true, _) => ignore,
                (false, false) => background,
                (false, true) => foreground,
            }])
        })
    };
    coded([128, 0, 255]).save(ws.path("partial.png")).unwrap();
    coded([0, 1, 2]).save(ws.path("ilastik.png")).unwrap();
    let run = |mask: &str, json: &str, flags: &[&str]| {
        let base = ["--output", "pred.png", "--mask", mask, "--metrics-json", json];
        let out = ws.predict(&[&base[..], flags].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = std::fs::read_to_string(ws.path(json)).unwrap();
        (serde_json::from_str::<serde_json::Value>(&text).unwrap(), stdout)
    };
    let (partial, stdout) = run("partial.png", "partial.json", &["--ignore-value", "128"]);
    let (ilastik, _) = run("ilastik.png", "ilastik.json", &["--label-format", "ilastik"]);
    assert_eq!(partial, ilastik);
    let predicted = image::open(ws.path("pred.png")).unwrap().into_luma8();
    let mut counts = [0u64; 4]; // tn, fn, fp, tp
    let mut labelled = 0;
    for (x, y, p) in predicted.enumerate_pixels() {
        if !unlabelled(x, y) {
            labelled += 1;
            counts[usize::from(p[0] > 127) * 2 + usize::from(reference.get_pixel(x, y)[0] > 127)] += 1;
        }
    }
    assert!(labelled > 2000 && labelled < 2500, "{labelled}");
    assert_eq!(partial["pixels"], 3500);
    assert_eq!(partial["labelled_pixels"], labelled);
    let keys = ["true_negative", "false_negative", "false_positive", "true_positive"];
    for (key, count) in keys.iter().zip(counts) {
        assert_eq!(partial[key], count, "{key}");
    }
    assert!(stdout.contains(&format!("over the {labelled} labelled pixels of 3500")), "{stdout}");
    // The 0/128/255 mask as ilastik labels: 128 and 255 are not ilastik values.
    let out = ws.predict(&["--output", "pred2.png", "--mask", "partial.png", "--label-format", "ilastik"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("0 is unlabelled, 1 background, 2 foreground"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!ws.path("pred2.png").exists());
}
