//! The `trainer train` command end to end on small synthetic data: outputs, determinism, resume, several
//! pairs, validation, and a clear one-line error with a non-zero exit for each bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use trainer::checkpoint::Checkpoint;
use trainer::outputs::{read_loss_csv, read_val_csv};

/// A W x H image with a bright disk (foreground in the mask) on a darker textured background.
fn write_pair(dir: &Path, w: u32, h: u32) -> (PathBuf, PathBuf) {
    write_named_pair(dir, w, h, 0, "image.png", "mask.png")
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
    assert_clean_failure(&train(&missing, &mask, &out, &it), &["--image", "nope.png", "No such file"]);

    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    assert_clean_failure(&train(&corrupt, &mask, &out, &it), &["--image", "cannot read it", "corrupt.png"]);

    let (_, small_mask) = write_pair(&dir.path().join("small").tap_mkdir(), 20, 36);
    assert_clean_failure(
        &train(&img, &small_mask, &out, &it),
        &["--mask", "mask is 20x36", "image is 40x36"],
    );

    let gray = dir.path().join("gray.png");
    image::GrayImage::from_fn(40, 36, |x, _| image::Luma([(x * 6) as u8])).save(&gray).unwrap();
    assert_clean_failure(
        &train(&img, &gray, &out, &it),
        &["--mask", "exactly two values", "found 40", "0, 6, 12"],
    );

    // A huge --batch or --crop is refused with the reason: the product never wraps into a small number.
    for (batch, crop) in
        [("4294967296", "4294967296"), ("18446744073709551615", "2"), ("1", "9223372036854775808")]
    {
        assert_clean_failure(
            &train(&img, &mask, &out, &["--batch", batch, "--crop", crop]),
            &["budget of 65536"],
        );
    }
    // Settings that cannot train are refused before any work, naming the flag.
    for lr in ["--lr=NaN", "--lr=inf", "--lr=0", "--lr=-0.001"] {
        assert_clean_failure(&train(&img, &mask, &out, &[lr]), &["--lr must be a finite number above 0"]);
    }
    assert_clean_failure(
        &train(&img, &mask, &out, &["--iterations", "0"]),
        &["--iterations must be at least 1"],
    );
    assert_clean_failure(&train(&img, &mask, &out, &["--val-fraction", "1.5"]), &["--val-fraction must be"]);

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
    assert!(!out.exists(), "no output from failed runs");
}

/// The trainer started with piped stdout and stderr.
fn spawn_trainer(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the trainer with a deadline: an input that blocks (a FIFO) must fail, not hang the test.
fn trainer_within(args: &[&str], seconds: u64) -> Output {
    let mut child = spawn_trainer(args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("trainer {args:?} still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// CRC-32 (PNG's) of `bytes`, to forge a PNG header.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn hostile_inputs_fail_cleanly_without_hanging_or_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |image: &Path, mask: &Path| {
        let args = [
            "train",
            "--quiet",
            "--iterations",
            "1",
            "--crop",
            "16",
            "--out",
            &s(&out),
            "--image",
            &s(image),
        ];
        trainer_within(&[&args[..], &["--mask", &s(mask)]].concat(), 60)
    };

    // A truncated JPEG (the decoder would fill the missing part in) is an error, not training data.
    let jpeg = dir.path().join("cut.jpg");
    image::open(&img).unwrap().save(&jpeg).unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert_clean_failure(&run(&jpeg, &mask), &["--image", "cut.jpg", "truncated"]);

    // A FIFO would block a reader forever: refused without opening it.
    let fifo = dir.path().join("fifo.png");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    assert_clean_failure(&run(&img, &fifo), &["--mask", "fifo.png", "not a regular file"]);
    assert_clean_failure(&run(dir.path(), &mask), &["--image", "not a regular file"]);

    // A 69-byte PNG whose header claims 200,000 x 200,000 pixels: refused from the header, with the limit.
    let mut png = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&200_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&200_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, &png).unwrap();
    assert_clean_failure(
        &run(&bomb, &mask),
        &["--image", "bomb.png", "200000x200000", "limit of 100000000 pixels"],
    );
    assert!(!out.exists());
}

#[test]
fn outputs_never_overwrite_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let before = std::fs::read(&img).unwrap();
    // --out whose loss.png is the training image (a hard link to it).
    let out = dir.path().join("out").tap_mkdir();
    std::fs::hard_link(&img, out.join("loss.png")).unwrap();
    let o = train(&img, &mask, &out, &["--iterations", "2", "--crop", "16"]);
    assert_clean_failure(&o, &["loss.png is the same file as --image"]);
    // --out = the folder of the inputs, whose mask is named loss.csv.
    let csv_mask = dir.path().join("loss.csv");
    std::fs::copy(&mask, &csv_mask).unwrap();
    let o = train(&img, &csv_mask, dir.path(), &["--iterations", "2", "--crop", "16"]);
    assert_clean_failure(&o, &["loss.csv is the same file as --mask"]);
    assert_eq!(std::fs::read(&img).unwrap(), before);

    // export --output onto its own --checkpoint (the same path, or a link to it) is refused.
    let run = dir.path().join("run");
    assert!(train(&img, &mask, &run, &["--iterations", "2", "--crop", "16"]).status.success());
    let ck = run.join("checkpoint.safetensors");
    let ck_bytes = std::fs::read(&ck).unwrap();
    let link = dir.path().join("link.onnx");
    std::os::unix::fs::symlink(&ck, &link).unwrap();
    for output in [ck.clone(), run.join(".").join("checkpoint.safetensors"), link] {
        let o =
            trainer(&["export", "--checkpoint", ck.to_str().unwrap(), "--output", output.to_str().unwrap()]);
        assert_clean_failure(&o, &["--output", "is the same file as --checkpoint"]);
    }
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    assert!(train(&img, &mask, &out, &["--iterations", "2", "--crop", "16"]).status.success());
    let ck = out.join("checkpoint.safetensors");
    let onnx = dir.path().join("m.onnx");
    let export = ["export", "--checkpoint", ck.to_str().unwrap(), "--output", onnx.to_str().unwrap()];
    // A full stdout: one line on stderr, exit 1.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_trainer")).args(export).stdout(full).output().unwrap();
    assert_clean_failure(&o, &["cannot write to standard output", "No space left"]);
    // A closed pipe (`| head -0`): a quiet exit, for the result line and for --help alike.
    for args in [&export[..], &["train", "--help"][..]] {
        let mut child = spawn_trainer(args);
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
    // An argument clap refuses: one line too.
    let o = trainer(&["train", "--image", "a", "--mask", "b", "--iterations", "many"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--iterations") && err.contains("many"), "{err}");
}

#[test]
fn a_failed_run_leaves_an_earlier_run_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let common = ["--batch", "2", "--crop", "16", "--val-fraction", "0.25"];
    let o = train(&img, &mask, &out, &[&["--iterations", "4"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let snapshot = |dir: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&out);
    assert_eq!(before.len(), 5, "checkpoint, best, loss.csv, loss.png, val.csv");
    // A new run whose loss diverges before its first checkpoint: the earlier run is untouched.
    let o = train(
        &img,
        &mask,
        &out,
        &[&["--iterations", "50", "--lr", "1e38", "--checkpoint-every", "0"][..], &common[..4]].concat(),
    );
    // The loss or the weights become non-finite, whichever is seen first.
    assert_clean_failure(&o, &["non-finite", "No checkpoint had been written yet", "Lower --lr"]);
    assert_eq!(snapshot(&out), before);
    // A new run with a bad input: untouched too.
    let o = train(&img, &dir.path().join("none.png"), &out, &["--iterations", "3"]);
    assert_clean_failure(&o, &["--mask"]);
    assert_eq!(snapshot(&out), before);
    // A new run without validation that succeeds replaces the whole run: no val.csv or best model of the
    // earlier run stays beside it.
    let o = train(&img, &mask, &out, &["--iterations", "3", "--batch", "2", "--crop", "16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = snapshot(&out).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["checkpoint.safetensors", "loss.csv", "loss.png"]);
}

#[test]
fn resume_rebuilds_the_logs_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let common = ["--batch", "2", "--crop", "16", "--checkpoint-every", "3", "--lr-schedule", "constant"];
    let o = train(&img, &mask, &out, &[&["--iterations", "6"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let full = read_loss_csv(&out.join("loss.csv"));
    // As if a kill had come between the checkpoint's rename and loss.csv's, in an older version: the log
    // is behind the checkpoint. Resuming rebuilds it from the checkpoint's own history, with no gap.
    std::fs::write(out.join("loss.csv"), "iteration,loss\n1,0.5\n").unwrap();
    let ck = out.join("checkpoint.safetensors");
    let o = train(
        &img,
        &mask,
        &out,
        &[&["--iterations", "9", "--resume", ck.to_str().unwrap()][..], &common].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = read_loss_csv(&out.join("loss.csv"));
    assert_eq!(resumed.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    assert_eq!(resumed[..6], full[..]);
    let ck = Checkpoint::load(&ck, &candle_core::Device::Cpu).unwrap();
    assert_eq!(ck.history.loss_rows(), resumed);
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out");
    let common = ["--batch", "2", "--crop", "16", "--checkpoint-every", "1"];
    assert!(train(&img, &mask, &out, &[&["--iterations", "3"][..], &common].concat()).status.success());
    // Resumed with an absurd rate: the weights (or the loss) become non-finite at once.
    let ck = out.join("checkpoint.safetensors");
    let resume = ["--iterations", "50", "--lr", "1e38", "--resume", ck.to_str().unwrap()];
    let o = train(&img, &mask, &out, &[&resume[..], &common].concat());
    assert_clean_failure(&o, &["non-finite", "last good checkpoint (iteration", "Lower --lr"]);
    let ck = Checkpoint::load(&ck, &candle_core::Device::Cpu).unwrap();
    assert!((3..50).contains(&ck.summary.iterations));
    assert!(ck.check_values().is_ok(), "a checkpoint holds a non-finite value");
    let losses = read_loss_csv(&out.join("loss.csv"));
    assert!(losses.len() >= ck.summary.iterations && losses.iter().all(|l| l.1.is_finite()));
    // A fresh run that diverges before its first checkpoint writes nothing.
    let fresh = dir.path().join("fresh");
    let o = train(&img, &mask, &fresh, &[&["--iterations", "50", "--lr", "1e38"][..], &common].concat());
    assert_clean_failure(&o, &["non-finite", "No checkpoint had been written yet"]);
    assert!(!fresh.exists());
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

/// The pair of `write_pair` saved as `name` (its extension picks the format) and `mask_name`, with the disk
/// shifted right by `shift` px so that pairs differ.
fn write_named_pair(
    dir: &Path,
    w: u32,
    h: u32,
    shift: u32,
    name: &str,
    mask_name: &str,
) -> (PathBuf, PathBuf) {
    let (cx, cy, r) = (w as f32 / 2.0 + shift as f32, h as f32 / 2.0, w.min(h) as f32 / 3.0);
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
    let (ip, mp) = (dir.join(name), dir.join(mask_name));
    img.save(&ip).unwrap();
    mask.save(&mp).unwrap();
    (ip, mp)
}

fn trainer_ok(args: &[&str]) -> Output {
    let o = trainer(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

#[test]
fn several_pairs_by_flags_or_folder_train_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (images, masks) = (data.join("images").tap_mkdir(), data.join("masks").tap_mkdir());
    // Mixed sizes and formats: a PNG and a (lossy, complete) JPEG.
    let (a, am) = write_named_pair(dir.path(), 40, 36, 0, "a.png", "a_mask.png");
    let (b, bm) = write_named_pair(dir.path(), 64, 30, 5, "b.jpg", "b_mask.png");
    let moved = [
        (a, images.join("a.png")),
        (b, images.join("b.jpg")),
        (am, masks.join("a.png")),
        (bm, masks.join("b.png")),
    ];
    for (from, to) in &moved {
        std::fs::rename(from, to).unwrap();
    }
    let [a, b, am, bm] = moved.map(|(_, to)| to);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let common =
        ["train", "--quiet", "--iterations", "6", "--batch", "2", "--crop", "16", "--val-fraction", "0.25"];
    let by_flags = dir.path().join("flags");
    let pairs = ["--image", &s(&a), "--mask", &s(&am), "--image", &s(&b), "--mask", &s(&bm)];
    let o = trainer_ok(&[&common[..], &pairs, &["--out", &s(&by_flags)]].concat());
    assert!(String::from_utf8_lossy(&o.stdout).contains("on 2 image(s)"));
    let by_folder = dir.path().join("folder");
    trainer_ok(&[&common[..], &["--data", &s(&data), "--out", &s(&by_folder)]].concat());
    // Sorted by stem, the folder gives the pairs of the flags in the same order: the same run.
    let curve = |d: &Path| read_loss_csv(&d.join("loss.csv"));
    assert_eq!(curve(&by_flags), curve(&by_folder));
    assert_eq!(read_val_csv(&by_flags.join("val.csv")), read_val_csv(&by_folder.join("val.csv")));
    let ck = Checkpoint::load(&by_folder.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!((ck.summary.image.as_str(), ck.summary.mask.as_str()), ("a.png, b.jpg", "a.png, b.png"));
    // Another order of the pairs is another run (crops are drawn by image index).
    let swapped = dir.path().join("swapped");
    let pairs = ["--image", &s(&b), "--mask", &s(&bm), "--image", &s(&a), "--mask", &s(&am)];
    trainer_ok(&[&common[..], &pairs, &["--out", &s(&swapped)]].concat());
    assert_ne!(curve(&by_flags), curve(&swapped));

    // Each bad pair is named: its flag (with its position) and its file.
    let out = s(&dir.path().join("bad"));
    let (_, wrong) = write_named_pair(dir.path(), 20, 20, 0, "w.png", "w_mask.png");
    let pairs = ["--image", &s(&a), "--mask", &s(&am), "--image", &s(&b), "--mask", &s(&wrong)];
    let o = trainer(&[&common[..], &pairs, &["--out", &out]].concat());
    assert_clean_failure(&o, &["--mask #2", "w_mask.png", "mask is 20x20", "image is 64x30"]);
    let o = trainer(
        &[&common[..], &["--image", &s(&a), "--image", &s(&b), "--mask", &s(&am), "--out", &out]].concat(),
    );
    assert_clean_failure(&o, &["2 --image but 1 --mask"]);
    std::fs::copy(&wrong, masks.join("b.png")).unwrap();
    let o = trainer(&[&common[..], &["--data", &s(&data), "--out", &out]].concat());
    assert_clean_failure(&o, &["--data mask", "b.png", "mask is 20x20"]);
    std::fs::remove_file(masks.join("b.png")).unwrap();
    let o = trainer(&[&common[..], &["--data", &s(&data), "--out", &out]].concat());
    assert_clean_failure(&o, &["--data", "no mask in masks/ for images/b.jpg"]);
    let o = trainer(&[&common[..], &["--data", &s(&dir.path().join("nothing")), "--out", &out]].concat());
    assert_clean_failure(&o, &["--data", "cannot list", "images"]);
}

#[test]
fn validation_logs_val_csv_and_keeps_the_best_model() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 48, 40);
    let (vi, vm) = write_named_pair(dir.path(), 50, 34, 3, "val.png", "val_mask.png");
    let out = dir.path().join("out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "train",
        "--quiet",
        "--image",
        &s(&img),
        "--mask",
        &s(&mask),
        "--val-image",
        &s(&vi),
        "--val-mask",
        &s(&vm),
        "--iterations",
        "40",
        "--batch",
        "2",
        "--crop",
        "16",
        "--lr",
        "0.01",
        "--val-every",
        "5",
        "--out",
        &s(&out),
    ];
    let o = trainer_ok(&args);
    let val = read_val_csv(&out.join("val.csv"));
    assert_eq!(val.iter().map(|r| r.iteration).collect::<Vec<_>>(), (5..=40).step_by(5).collect::<Vec<_>>());
    assert!(val.iter().all(|r| (0.0..=1.0).contains(&r.iou) && r.dice >= r.iou && r.loss > 0.0));
    assert!(std::fs::read_to_string(out.join("val.csv"))
        .unwrap()
        .starts_with("iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels\n"));
    // best.safetensors is the argmax of val.csv (the first of equal ones), with its iteration and IoU.
    let best_row = val.iter().fold(val[0], |b, r| if r.iou > b.iou { *r } else { b });
    let best = Checkpoint::load(&out.join("best.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(best.summary.iterations, best_row.iteration);
    assert_eq!(best.history.validation.last(), Some(&best_row));
    let bytes = std::fs::read(out.join("best.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["best_iteration"], best_row.iteration.to_string());
    assert_eq!(meta["best_val_iou"], best_row.iou.to_string());
    // checkpoint.safetensors stays the last.
    let last = Checkpoint::load(&out.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(last.summary.iterations, 40);
    // The closing line names the best iteration and IoU; loss.png has the second panel.
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        line.contains(&format!(
            "best validation IoU {:.4} at iteration {}",
            best_row.iou, best_row.iteration
        )),
        "{line}"
    );
    assert!(image::open(out.join("loss.png")).unwrap().height() > 600);
    // The best model exports like any checkpoint.
    let onnx = dir.path().join("best.onnx");
    trainer_ok(&["export", "--checkpoint", &s(&out.join("best.safetensors")), "--output", &s(&onnx)]);
    assert!(std::fs::metadata(&onnx).unwrap().len() > 40_000);

    // A bad validation pair is named.
    let bad = s(&dir.path().join("bad"));
    let wrong = ["--val-image", &s(&vi), "--val-mask", &s(&mask)];
    let o = trainer(&[&args[..6], &wrong, &["--out", &bad]].concat());
    assert_clean_failure(&o, &["--val-mask", "mask.png", "mask is 48x40", "image is 50x34"]);
    let o = trainer(&[&args[..6], &["--val-image", &s(&vi), "--out", &bad]].concat());
    assert_clean_failure(&o, &["1 --val-image but 0 --val-mask"]);
    let o = trainer(
        &[&args[..6], &["--val-image", &s(&vi), "--val-mask", &s(&dir.path().join("no.png")), "--out", &bad]]
            .concat(),
    );
    assert_clean_failure(&o, &["--val-mask", "no.png"]);
}

#[test]
fn resume_with_validation_continues_the_same_curves() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 44);
    let common = [
        "--batch",
        "2",
        "--crop",
        "16",
        "--lr",
        "0.01",
        "--lr-schedule",
        "constant",
        "--val-fraction",
        "0.25",
        "--val-every",
        "3",
        "--checkpoint-every",
        "3",
    ];
    let run = |name: &str, iterations: &str, resume: bool| {
        let out = dir.path().join(name);
        let ck = out.join("checkpoint.safetensors");
        let resume_args = ["--resume", ck.to_str().unwrap()];
        let extra = [&["--iterations", iterations][..], &common, if resume { &resume_args[..] } else { &[] }]
            .concat();
        let o = train(&img, &mask, &out, &extra);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let whole = run("whole", "12", false);
    run("parts", "6", false);
    let parts = run("parts", "12", true);
    for file in ["loss.csv", "val.csv"] {
        let (a, b) = (
            std::fs::read_to_string(whole.join(file)).unwrap(),
            std::fs::read_to_string(parts.join(file)).unwrap(),
        );
        assert_eq!(a, b, "{file} differs after resume");
    }
    assert_eq!(read_val_csv(&whole.join("val.csv")).len(), 4);
    let best = |d: &Path| Checkpoint::load(&d.join("best.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(best(&whole).summary.iterations, best(&parts).summary.iterations);
    assert_eq!(best(&whole).history, best(&parts).history);
}

/// Issue 22, items 4 and 6: the output folder is made the same way for a new and a resumed run, and a run
/// that could not write its results fails before its first step, not after training.
#[test]
fn the_out_folder_is_ready_before_the_first_step_whether_new_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let quick = ["--iterations", "2", "--batch", "2", "--crop", "16", "--checkpoint-every", "0"];
    let first = dir.path().join("first");
    assert!(train(&img, &mask, &first, &quick).status.success());
    // Resumed into a new, nested folder: created like a fresh run's.
    let nested = dir.path().join("a/b/resumed");
    let ck = first.join("checkpoint.safetensors");
    let more = ["--iterations", "4", "--batch", "2", "--crop", "16", "--resume", ck.to_str().unwrap()];
    let o = train(&img, &mask, &nested, &more);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(nested.join("best.safetensors").exists() || nested.join("checkpoint.safetensors").exists());
    // --out where a file is: refused before any training step (the run would take a long time).
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let started = std::time::Instant::now();
    let o = train(&img, &mask, &blocked.join("run"), &["--iterations", "100000", "--crop", "16"]);
    assert_clean_failure(&o, &["--out", "cannot create it"]);
    assert!(started.elapsed().as_secs() < 60, "the failure came after training");
    // An output that is a folder.
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("loss.csv")).unwrap();
    assert_clean_failure(
        &train(&img, &mask, &run, &["--iterations", "100000", "--crop", "16"]),
        &["loss.csv is a folder"],
    );
}

/// Issue 22, item 5: --resume continues the same run only; a checkpoint of other data or settings is
/// refused naming what differs, and --init-from starts a new run from its weights.
#[test]
fn a_resume_on_other_data_or_settings_is_refused_and_init_from_starts_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let other = dir.path().join("other").tap_mkdir();
    let (other_img, other_mask) = write_named_pair(&other, 40, 36, 5, "image.png", "mask.png");
    let out = dir.path().join("out");
    let base = ["--batch", "2", "--crop", "16", "--checkpoint-every", "0"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    assert!(train(&img, &mask, &out, &with(&base, &["--iterations", "2"])).status.success());
    let ck = out.join("checkpoint.safetensors");
    let ck_arg = ck.to_str().unwrap();
    let before = std::fs::read(&ck).unwrap();
    // Other data under the same file names.
    let o = train(&other_img, &other_mask, &out, &with(&base, &["--iterations", "4", "--resume", ck_arg]));
    assert_clean_failure(&o, &["--resume", "the data are not the checkpoint's", "--init-from"]);
    // Other settings: each is named with both values.
    let o = trainer(&[
        "train",
        "--quiet",
        "--image",
        img.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        "4",
        "--crop",
        "16",
        "--seed",
        "9",
        "--iterations",
        "4",
        "--resume",
        ck_arg,
    ]);
    assert_clean_failure(&o, &["--batch 4 (the checkpoint's run: 2)", "--seed 9 (the checkpoint's run: 0)"]);
    assert_eq!(std::fs::read(&ck).unwrap(), before, "a refused resume changes nothing");
    // The same run resumes, and may lower its learning rate: the summary records the new phase.
    let o =
        train(&img, &mask, &out, &with(&base, &["--iterations", "4", "--lr", "0.0005", "--resume", ck_arg]));
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = Checkpoint::load(&ck, &candle_core::Device::Cpu).unwrap();
    assert!(
        resumed.summary.recipe.ends_with("| from iteration 3: --lr 0.0005"),
        "{}",
        resumed.summary.recipe
    );
    // A new run from those weights on the other data: its own history from iteration 1, its origin recorded.
    let tuned = dir.path().join("tuned");
    let o =
        train(&other_img, &other_mask, &tuned, &with(&base, &["--iterations", "3", "--init-from", ck_arg]));
    assert!(o.status.success(), "{}", stderr(&o));
    let tuned_ck =
        Checkpoint::load(&tuned.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(tuned_ck.summary.iterations, 3);
    assert_eq!(read_loss_csv(&tuned.join("loss.csv")).len(), 3);
    assert!(
        tuned_ck.summary.initialized_from.contains("checkpoint.safetensors (iteration 4"),
        "{}",
        tuned_ck.summary.initialized_from
    );
    assert!(tuned_ck.summary.data.contains("image.png 40x36"), "{}", tuned_ck.summary.data);
}

/// Issue 22, item 12: a validation image whose mask is all background is a legitimate negative example:
/// scored by its false-positive rate, not refused. A training set of one class only is refused.
#[test]
fn a_negative_validation_image_is_scored_by_its_false_positive_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let negative = dir.path().join("negative.png");
    image::GrayImage::new(40, 36).save(&negative).unwrap();
    let out = dir.path().join("out");
    let o = train(
        &img,
        &mask,
        &out,
        &[
            "--iterations",
            "4",
            "--batch",
            "2",
            "--crop",
            "16",
            "--val-every",
            "2",
            "--val-image",
            img.to_str().unwrap(),
            "--val-mask",
            negative.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_val_csv(&out.join("val.csv"));
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r.iou.is_nan() && r.dice.is_nan(), "IoU is undefined without foreground: {r:?}");
        assert!((0.0..=1.0).contains(&r.false_positive_rate), "{r:?}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("best validation specificity"), "{stdout}");
    // Training on negative images only: nothing to learn.
    let o = train(&img, &negative, &dir.path().join("none"), &["--iterations", "2", "--crop", "16"]);
    assert_clean_failure(&o, &["every training mask is background only"]);
}

/// Issue 22, item 1: outputs that are symbolic links are written through (the link stays, its target gets
/// the file), for the run folder's files as for every other output.
#[cfg(unix)]
#[test]
fn outputs_through_symbolic_links_are_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    let out = dir.path().join("out").tap_mkdir();
    let real = dir.path().join("real").tap_mkdir();
    std::os::unix::fs::symlink("../real/loss.png", out.join("loss.png")).unwrap();
    std::os::unix::fs::symlink(real.join("curve.csv"), out.join("loss.csv")).unwrap();
    let o = train(&img, &mask, &out, &["--iterations", "2", "--batch", "2", "--crop", "16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (link, target) in [("loss.png", "loss.png"), ("loss.csv", "curve.csv")] {
        assert!(
            std::fs::symlink_metadata(out.join(link)).unwrap().file_type().is_symlink(),
            "{link} replaced"
        );
        assert!(real.join(target).metadata().unwrap().len() > 0, "{target} not written");
    }
    // An exported model through a link.
    let model = dir.path().join("model.onnx");
    std::os::unix::fs::symlink(real.join("model.onnx"), &model).unwrap();
    let ck = out.join("checkpoint.safetensors");
    trainer_ok(&["export", "--checkpoint", ck.to_str().unwrap(), "--output", model.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&model).unwrap().file_type().is_symlink());
    assert!(real.join("model.onnx").metadata().unwrap().len() > 10_000);
}

/// Issue 22, item 8: an image and a mask that a viewer shows turned differently (EXIF orientation) are
/// refused: training pairs stored pixels, which would not be the pair the person sees.
#[test]
fn an_image_and_mask_of_different_orientations_are_refused() {
    use imaging::sink::{ImageFormat, PixelKind, RowSink, SinkOptions};
    use imaging::source::Orientation;
    let dir = tempfile::tempdir().unwrap();
    let (img, mask) = write_pair(dir.path(), 40, 36);
    // The same pixels, tagged as turned 90 degrees clockwise.
    let rotated = |from: &Path, name: &str, pixel: PixelKind, gray: bool| -> PathBuf {
        let decoded = image::open(from).unwrap();
        let bytes = if gray { decoded.to_luma8().into_raw() } else { decoded.to_rgb8().into_raw() };
        let path = dir.path().join(name);
        let options = SinkOptions { orientation: Orientation::Rotate90, ..SinkOptions::default() };
        let mut sink = RowSink::image_with(&path, ImageFormat::Png, pixel, 40, 36, options).unwrap();
        sink.write_pixels(&bytes).unwrap();
        sink.finish().unwrap();
        path
    };
    let img6 = rotated(&img, "image6.png", PixelKind::Rgb8, false);
    let mask6 = rotated(&mask, "mask6.png", PixelKind::Gray8, true);
    let quick = ["--iterations", "2", "--batch", "2", "--crop", "16"];
    let o = train(&img6, &mask, &dir.path().join("a"), &quick);
    assert_clean_failure(&o, &["--mask", "EXIF orientation 6", "EXIF orientation 1", "same orientation"]);
    let o = train(&img6, &mask6, &dir.path().join("b"), &quick);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn trains_from_qupath_annotations_and_refuses_bad_ones_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _mask) = write_pair(dir.path(), 96, 80);
    let geojson = dir.path().join("annotations.geojson");
    let square = |l: f64, t: f64, s: f64| {
        serde_json::json!([[[l, t], [l + s, t], [l + s, t + s], [l, t + s], [l, t]]])
    };
    let feature = |class: &str, coordinates: serde_json::Value| {
        serde_json::json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coordinates},
            "properties": {"objectType": "annotation", "classification": {"name": class}}})
    };
    let write = |features: Vec<serde_json::Value>| {
        let collection = serde_json::json!({"type": "FeatureCollection", "features": features});
        std::fs::write(&geojson, serde_json::to_vec(&collection).unwrap()).unwrap();
    };
    write(vec![feature("Stroma", square(2.0, 2.0, 75.0)), feature("Tumor", square(30.0, 25.0, 30.0))]);
    let out = dir.path().join("out");
    let args = |extra: &[&str]| {
        let mut args = vec!["train", "--quiet", "--image", img.to_str().unwrap(), "--annotations"];
        args.push(geojson.to_str().unwrap());
        args.extend_from_slice(&["--out", out.to_str().unwrap(), "--iterations", "5", "--crop", "32"]);
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        trainer(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run(&["--foreground-class", "Tumor"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("checkpoint.safetensors").is_file());
    // No annotation of the foreground class: the line lists the classes there are.
    assert_clean_failure(&run(&["--foreground-class", "Tumour"]), &["--annotations", "Tumor", "Stroma"]);
    // Three classes by --class, in class-index order; Ignore* and unclassified annotations label nothing.
    write(vec![
        feature("Stroma", square(2.0, 2.0, 75.0)),
        feature("Tumor", square(30.0, 25.0, 30.0)),
        feature("Necrosis", square(5.0, 5.0, 20.0)),
        feature("Ignore*", square(60.0, 60.0, 10.0)),
    ]);
    let o = run(&["--class", "Stroma", "--class", "Tumor", "--class", "Necrosis"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(
        (ck.net.classes(), ck.summary.classes.names.join(",")),
        (3, "Stroma,Tumor,Necrosis".to_string())
    );
    // An annotation class that is neither listed nor ignored is named.
    assert_clean_failure(
        &run(&["--class", "Stroma", "--class", "Tumor"]),
        &["--annotations", "Necrosis", "--class"],
    );
    write(vec![feature("Stroma", square(2.0, 2.0, 75.0)), feature("Tumor", square(30.0, 25.0, 30.0))]);
    // A point outside the image.
    write(vec![feature("Tumor", square(80.0, 70.0, 30.0))]);
    assert_clean_failure(&run(&["--foreground-class", "Tumor"]), &["--annotations", "outside"]);
    // Not a FeatureCollection.
    std::fs::write(&geojson, b"{\"type\": \"Point\", \"coordinates\": [1, 2]}").unwrap();
    assert_clean_failure(&run(&["--foreground-class", "Tumor"]), &["--annotations", "FeatureCollection"]);
    // A ring of two distinct points.
    write(vec![feature("Tumor", serde_json::json!([[[1.0, 1.0], [5.0, 5.0], [1.0, 1.0]]]))]);
    assert_clean_failure(&run(&["--foreground-class", "Tumor"]), &["--annotations", "distinct"]);
    // Coordinates that are not numbers.
    write(vec![feature("Tumor", serde_json::json!([[["a", 1.0], [5.0, 5.0], [1.0, 9.0], ["a", 1.0]]]))]);
    assert_clean_failure(&run(&["--foreground-class", "Tumor"]), &["--annotations"]);
}

/// Three classes from an index mask and from the same classes as a colour mask: the same run (same labels,
/// same crops), the names and colours in the checkpoint, per-class columns in val.csv; a mask value
/// beyond the classes and an unknown colour are one-line errors.
#[test]
fn three_classes_from_index_and_colour_masks() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (48u32, 40u32);
    let class = |x: u32, y: u32| -> u8 {
        if x < 16 {
            0
        } else if (x + y) % 9 < 3 {
            2
        } else {
            1
        }
    };
    let palette = [[0u8, 0, 0], [0, 0, 255], [150, 75, 0]];
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13) % 30) as u8;
        image::Rgb([[40, 200, 120][class(x, y) as usize] + t, 90, [30, 60, 220][class(x, y) as usize]])
    });
    let index = image::GrayImage::from_fn(w, h, |x, y| image::Luma([class(x, y)]));
    let colour = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(palette[class(x, y) as usize]));
    let (ip, xp, cp) =
        (dir.path().join("i.png"), dir.path().join("index.png"), dir.path().join("colour.png"));
    img.save(&ip).unwrap();
    index.save(&xp).unwrap();
    colour.save(&cp).unwrap();
    let names = ["--class-names", "background,a,b", "--class-colors", "#000000,#0000ff,#964b00"];
    let common = ["--iterations", "6", "--crop", "32", "--val-fraction", "0.25", "--val-every", "3"];
    let by_index = dir.path().join("by_index");
    let mut args = vec!["--label-format", "index"];
    args.extend(names.iter().chain(&common));
    let o = train(&ip, &xp, &by_index, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("mean IoU"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ck = Checkpoint::load(&by_index.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!((ck.net.classes(), ck.summary.classes.names.join(",")), (3, "background,a,b".to_string()));
    assert_eq!(ck.summary.classes.colors, palette);
    let val = std::fs::read_to_string(by_index.join("val.csv")).unwrap();
    assert!(val.starts_with("iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels,iou_0,iou_1,iou_2,dice_0,dice_1,dice_2\n"), "{val}");
    assert_eq!(read_val_csv(&by_index.join("val.csv"))[0].per_class.len(), 3);

    let by_colour = dir.path().join("by_colour");
    let mut args = vec!["--label-format", "color"];
    args.extend(names.iter().chain(&common));
    let o = train(&ip, &cp, &by_colour, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_loss_csv(&by_index.join("loss.csv")), read_loss_csv(&by_colour.join("loss.csv")));

    // The count inferred from the index mask: three classes, default names.
    let inferred = dir.path().join("inferred");
    let o = train(&ip, &xp, &inferred, &["--label-format", "index", "--iterations", "2", "--crop", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = Checkpoint::load(&inferred.join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(ck.summary.classes.names, ["background", "class1", "class2"]);

    let o = train(&ip, &xp, &dir.path().join("two"), &["--label-format", "index", "--classes", "2"]);
    assert_clean_failure(&o, &["--mask", "the value 2", "raise --classes"]);
    let o = train(
        &ip,
        &cp,
        &dir.path().join("bad"),
        &["--label-format", "color", "--class-colors", "#000000,#0000ff"],
    );
    assert_clean_failure(&o, &["#964b00", "--class-colors"]);
}
