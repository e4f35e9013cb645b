//! The `trainer train` command end to end on small synthetic data: outputs, determinism, resume, and a clear
//! one-line error with a non-zero exit for each bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trainer::checkpoint::Checkpoint;
use trainer::train::read_loss_csv;

/// A W x H image with a bright disk (foreground in the mask) on a darker textured background.
fn write_pair(dir: &Path, w: u32, h: u32) -> (PathBuf, PathBuf) {
    let (cx, cy, r) = (w as f32 / 2.0, h as f32 / 2.0, w.min(h) as f32 / 3.0);
    let inside = |x: u32, y: u32| (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13) % 40) as u8;
        if inside(x, y) {
            image::Rgb([200 + t / 2, 180 + t, 150])
        } else {
            image::Rgb([40 + t, 60, 30 + t])
        }
    });
    let mask = image::GrayImage::from_fn(w, h, |x, y| image::Luma([if inside(x, y) { 255 } else { 0 }]));
    let (ip, mp) = (dir.join("image.png"), dir.join("mask.png"));
    img.save(&ip).unwrap();
    mask.save(&mp).unwrap();
    (ip, mp)
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().unwrap()
}

fn train(image: &Path, mask: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--quiet",
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    trainer(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with exactly one line on stderr, no panic.
fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

#[test]
fn trains_writes_outputs_and_the_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 64, 48);
    let out = dir.path().join("out");
    let o = train(&img, &mask, &out, &["--iterations", "80", "--batch", "4", "--crop", "32", "--lr", "0.01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let losses = read_loss_csv(&out.join("loss.csv"));
    assert_eq!(losses.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=80).collect::<Vec<_>>());
    let mean = |s: &[(usize, f32)]| s.iter().map(|l| l.1).sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&losses[..8]), mean(&losses[72..]));
    assert!(last < first / 2.0, "loss did not fall enough: first {first}, last {last}");
    let png = image::open(out.join("loss.png")).unwrap();
    assert!(png.width() >= 800 && png.height() >= 500);
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(ck.summary.iterations, 80);
    assert_eq!(ck.summary.image, "image.png");
    assert!(ck.adam.is_some());
    assert!((ck.summary.final_loss - losses[79].1).abs() < 1e-7);
}

#[test]
fn same_seed_same_curve_and_resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    // A constant rate, so that a run stopped at 3 and a run of 6 share their schedule (with the cosine
    // schedule the rate at an iteration depends on --iterations: resume with the interrupted run's value).
    let common = ["--batch", "2", "--crop", "16", "--checkpoint-every", "3", "--lr-schedule", "constant"];
    let run = |name: &str, iterations: &str, seed: &str, resume: Option<&Path>| {
        let out = dir.path().join(name);
        let mut extra = vec!["--iterations", iterations, "--seed", seed];
        extra.extend_from_slice(&common);
        let resume_str;
        if let Some(r) = resume {
            resume_str = r.to_str().unwrap().to_string();
            extra.extend_from_slice(&["--resume", &resume_str]);
        }
        let o = train(&img, &mask, &out, &extra);
        assert!(o.status.success(), "{}", stderr(&o));
        read_loss_csv(&out.join("loss.csv"))
    };
    let a = run("a", "6", "11", None);
    let b = run("b", "6", "11", None);
    let c = run("c", "6", "12", None);
    assert_eq!(a, b, "same seed, same curve");
    assert_ne!(a, c, "another seed, another curve");
    // Stop at 3, then resume to 6 in the same directory: the curve is the uninterrupted one.
    run("d", "3", "11", None);
    let d_ck = dir.path().join("d").join("checkpoint.safetensors");
    let d = run("d", "6", "11", Some(&d_ck));
    assert_eq!(a, d, "resume continues the same optimisation");
}

#[test]
fn small_images_shrink_the_crop_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 23, 30);
    let out = dir.path().join("out");
    let o = train(&img, &mask, &out, &["--iterations", "2", "--batch", "1", "--crop", "64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("training on 22x22 crops instead"), "{}", stderr(&o));
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(ck.summary.crop, 22);
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let it = ["--iterations", "2", "--crop", "16"];

    let missing = dir.path().join("nope.png");
    assert_clean_failure(&train(&missing, &mask, &out, &it), &["cannot read image", "nope.png"]);

    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    assert_clean_failure(&train(&corrupt, &mask, &out, &it), &["cannot read image", "corrupt.png"]);

    let (_, small_mask) = write_pair(&dir.path().join("small").tap_mkdir(), 20, 36);
    assert_clean_failure(&train(&img, &small_mask, &out, &it), &["mask is 20x36", "image is 40x36"]);

    let gray = dir.path().join("gray.png");
    image::GrayImage::from_fn(40, 36, |x, _| image::Luma([(x * 6) as u8])).save(&gray).unwrap();
    assert_clean_failure(&train(&img, &gray, &out, &it), &["exactly two values", "found 40", "0, 6, 12"]);

    assert_clean_failure(
        &train(&img, &mask, &out, &["--batch", "2", "--crop", "256"]),
        &["131072", "budget of 65536"],
    );
    assert_clean_failure(&train(&img, &mask, &out, &["--crop", "15"]), &["even"]);
    if !cfg!(feature = "cuda") {
        assert_clean_failure(
            &train(&img, &mask, &out, &["--iterations", "1", "--device", "cuda"]),
            &["without CUDA support"],
        );
    }
    assert!(!out.join("checkpoint.safetensors").exists(), "no output from failed runs");
}

#[test]
fn a_diverging_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let o = train(
        &img,
        &mask,
        &out,
        &["--iterations", "50", "--batch", "2", "--crop", "16", "--lr", "1e38", "--checkpoint-every", "1"],
    );
    assert_clean_failure(&o, &["the loss became", "last good checkpoint (iteration", "Lower --lr"]);
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert!(ck.summary.final_loss.is_finite());
    assert!(ck.summary.iterations >= 1 && ck.summary.iterations < 50);
    let losses = read_loss_csv(&out.join("loss.csv"));
    assert!(losses.iter().all(|l| l.1.is_finite()));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
