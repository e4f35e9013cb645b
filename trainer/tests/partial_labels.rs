//! `trainer train` on partial labels end to end: --ignore-value and --label-format ilastik read the same
//! labels and train the same model, validation counts the labelled pixels only, and labels too sparse for
//! the crop, unscorable validation and bad label images fail with one clear line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trainer::outputs::{read_loss_csv, read_val_csv};

const W: u32 = 64;
const H: u32 = 64;

fn inside(x: u32, y: u32) -> bool {
    (x as f32 - 32.0).powi(2) + (y as f32 - 30.0).powi(2) < 20.0 * 20.0
}

/// Whether a pixel is labelled in the stroke mask: every fourth row, and a cross through the disk.
fn labelled(x: u32, y: u32) -> bool {
    y.is_multiple_of(4) || x == 32 || x == 33
}

/// The image (a bright disk on a textured background) and, for each (ignore, background, foreground)
/// coding, a mask of the stroke labels.
fn write_data(dir: &Path, codings: &[(&str, [u8; 3])]) -> (PathBuf, Vec<PathBuf>) {
    let img = image::RgbImage::from_fn(W, H, |x, y| {
        let t = ((x * 7 + y * 13) % 40) as u8;
        if inside(x, y) {
            image::Rgb([200 + t / 2, 180 + t, 150])
        } else {
            image::Rgb([40 + t, 60, 30 + t])
        }
    });
    let image_path = dir.join("image.png");
    img.save(&image_path).unwrap();
    let masks = codings
        .iter()
        .map(|(name, [ignore, background, foreground])| {
            let mask = image::GrayImage::from_fn(W, H, |x, y| {
                image::Luma([match (labelled(x, y), inside(x, y)) {
                    (false, _) => *ignore,
                    (true, false) => *background,
                    (true, true) => *foreground,
                }])
            });
            let path = dir.join(name);
            mask.save(&path).unwrap();
            path
        })
        .collect();
    (image_path, masks)
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn ignore_value_and_ilastik_labels_train_the_same_model_scored_on_labelled_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (image, masks) = write_data(dir.path(), &[("binary.png", [128, 0, 255]), ("ilastik.png", [0, 1, 2])]);
    let run = |mask: &Path, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let (i, m, o) = (s(&image), s(mask), s(&out));
        let args = [
            &["train", "--quiet", "--image", &i, "--mask", &m, "--out", &o][..],
            &["--iterations", "30", "--batch", "2", "--crop", "16", "--lr", "0.01", "--val-fraction", "0.25"],
            &["--val-every", "10"],
            extra,
        ]
        .concat();
        let o = trainer(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        out
    };
    let binary = run(&masks[0], "binary", &["--ignore-value", "128"]);
    let ilastik = run(&masks[1], "ilastik", &["--label-format", "ilastik"]);
    let losses = read_loss_csv(&binary.join("loss.csv"));
    assert_eq!(losses.len(), 30);
    assert!(losses.iter().all(|(_, l)| l.is_finite() && *l > 0.0));
    assert_eq!(losses, read_loss_csv(&ilastik.join("loss.csv")), "the same labels train the same model");
    // The held-out rows are 48..64 (0.25 of 64); the labelled pixels among them, counted from the rule.
    let want = (48..H).flat_map(|y| (0..W).map(move |x| (x, y))).filter(|&(x, y)| labelled(x, y)).count();
    let val = read_val_csv(&binary.join("val.csv"));
    assert_eq!(val.len(), 3);
    assert!(val.iter().all(|r| r.labelled == Some(want as u64)), "{val:?} vs {want}");
    assert_eq!(val, read_val_csv(&ilastik.join("val.csv")));

    // Without --ignore-value the mask holds three values: refused, naming them.
    let o = trainer(&[
        "train",
        "--image",
        &s(&image),
        "--mask",
        &s(&masks[0]),
        "--out",
        &s(&dir.path().join("x")),
    ]);
    assert_clean_failure(&o, &["found 3: 0, 128, 255"]);
    // The binary mask read as an ilastik label image: 128 and 255 are not ilastik labels.
    let o = trainer(&[
        "train",
        "--image",
        &s(&image),
        "--mask",
        &s(&masks[0]),
        "--label-format",
        "ilastik",
        "--out",
        &s(&dir.path().join("x")),
    ]);
    assert_clean_failure(&o, &["--mask", "binary.png", "the value 128", "0 is unlabelled, 1 background"]);
    let o = trainer(&[
        "train",
        "--image",
        &s(&image),
        "--mask",
        &s(&masks[1]),
        "--label-format",
        "ilastik",
        "--ignore-value",
        "0",
    ]);
    assert_clean_failure(&o, &["--ignore-value applies to binary masks"]);
    assert!(!dir.path().join("x").exists());
}

#[test]
fn labels_too_sparse_for_the_crop_or_no_labelled_validation_pixel_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = write_data(dir.path(), &[]);
    // Seven labelled pixels (3 background, 4 foreground): a 64^2 crop needs 8.
    let sparse = image::GrayImage::from_fn(W, H, |x, y| {
        image::Luma([match (x, y) {
            (0..=2, 0) => 0,
            (30..=33, 30) => 255,
            _ => 128,
        }])
    });
    let mask = dir.path().join("sparse.png");
    sparse.save(&mask).unwrap();
    let out = dir.path().join("out");
    let base = ["train", "--quiet", "--image", &s(&image), "--mask", &s(&mask), "--out", &s(&out)];
    let o = trainer(&[&base[..], &["--ignore-value", "128", "--crop", "64", "--batch", "1"]].concat());
    assert_clean_failure(
        &o,
        &["too sparse for --crop 64", "no 64x64 crop", "8 labelled pixels", "lower --crop"],
    );
    // With 8x8 crops (1 labelled pixel needed) it trains.
    let ok = [&base[..], &["--ignore-value", "128", "--crop", "8", "--iterations", "3"]].concat();
    let o = trainer(&ok);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every held-out pixel unlabelled: nothing to score.
    let fresh = s(&dir.path().join("fresh"));
    let o = trainer(&[&ok[..], &["--val-fraction", "0.5", "--out", &fresh]].concat());
    assert_clean_failure(&o, &["every validation pixel", "unlabelled"]);
}
