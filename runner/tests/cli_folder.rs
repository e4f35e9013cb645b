//! Folder mode end to end: `runner predict --input-dir DIR --output-dir OUT` with masks (metrics.csv),
//! stem collisions, a corrupt image among good ones, --fail-fast, and shards covering every image once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imaging::sink::{ImageFormat, PixelKind, RowSink};

/// A folder with model.onnx, images/ and masks/.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::create_dir(dir.path().join("masks")).unwrap();
        Folder { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes image `name` (format by extension; .tif as BigTIFF by the runner's writer) of `w` x `h`.
    fn image(&self, name: &str, w: u32, h: u32, seed: u64) {
        let rgb = common::Rng::new(seed).image(h as usize, w as usize);
        let path = self.path(&format!("images/{name}"));
        if name.ends_with(".tif") {
            let mut sink =
                RowSink::image(&path, ImageFormat::Tiff, PixelKind::Rgb8, w as usize, h as usize, true)
                    .unwrap();
            sink.write_pixels(&rgb).unwrap();
            sink.finish().unwrap();
        } else {
            image::RgbImage::from_raw(w, h, rgb).unwrap().save(path).unwrap();
        }
    }

    fn mask(&self, name: &str, w: u32, h: u32) {
        let mask =
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([if (x + y) % 3 == 0 { 255 } else { 0 }]));
        mask.save(self.path(&format!("masks/{name}"))).unwrap();
    }

    fn predict(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .current_dir(self.dir.path())
            .args(["predict", "--model", "model.onnx", "--threads", "2", "--quiet"])
            .args(args)
            .output()
            .unwrap()
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(sub)) else { return Vec::new() };
        let mut names: Vec<String> =
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_folder_with_masks_gives_every_output_and_metrics_csv() {
    let f = Folder::new();
    f.image("a.png", 70, 50, 1);
    f.image("b.tif", 40, 300, 2); // BigTIFF, several bands with 64-px tiles
    f.image("c.jpg", 33, 21, 3);
    f.image("d.png", 20, 20, 4);
    f.mask("a.png", 70, 50);
    f.mask("b.png", 40, 300);
    f.mask("c.png", 33, 21);
    std::fs::write(f.path("images/notes.txt"), "not an image").unwrap();
    let out = f.predict(&[
        "--input-dir",
        "images",
        "--mask-dir",
        "masks",
        "--output-dir",
        "out",
        "--overlay",
        "--errors",
        "--probabilities",
        "--tile",
        "64",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        f.files("out"),
        [
            "a.png",
            "a_errors.png",
            "a_overlay.png",
            "a_probabilities.npy",
            "b.png",
            "b_errors.png",
            "b_overlay.png",
            "b_probabilities.npy",
            "c.png",
            "c_errors.png",
            "c_overlay.png",
            "c_probabilities.npy",
            "d.png",
            "d_overlay.png",
            "d_probabilities.npy",
            "metrics.csv",
        ]
    );
    let csv = std::fs::read_to_string(f.path("out/metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "image,width,height,pixels,labelled_pixels,accuracy,iou,dice");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[2].starts_with("images/b.tif,40,300,12000,"), "{csv}");
    assert!(
        lines[4].starts_with("images/d.png,20,20,400,,,"),
        "the image without a mask has no scores: {csv}"
    );
    // Each mask has its image's size, and the scores agree with the written mask.
    let mask = image::open(f.path("out/b.png")).unwrap().into_luma8();
    assert_eq!(mask.dimensions(), (40, 300));
    let reference = image::open(f.path("masks/b.png")).unwrap().into_luma8();
    let m = runner::metrics::Metrics::compare(
        &imaging::masks::classes_from_gray(mask.as_raw()),
        &imaging::masks::classes_from_gray(reference.as_raw()),
    );
    let fields: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(fields[4], "12000", "every pixel of a binary mask is labelled: {csv}");
    assert_eq!(fields[6].parse::<f64>().unwrap(), m.foreground_iou, "{csv}");
    assert!(stdout.contains("4 images, 3 with a reference mask: mean foreground IoU"), "{stdout}");
    assert!(stdout.contains("pooled foreground IoU"), "{stdout}");
    assert!(stdout.contains("d.png: 20x20 no reference mask"), "{stdout}");
}

#[test]
fn colliding_stems_are_an_error_before_any_work() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    f.image("a.tif", 20, 20, 2);
    let out = f.predict(&["--input-dir", "images", "--output-dir", "out"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("have the same file stem `a`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(f.files("out").is_empty(), "nothing written: {:?}", f.files("out"));
}

#[test]
fn a_corrupt_image_is_reported_and_the_others_are_predicted() {
    let f = Folder::new();
    f.image("a.png", 30, 20, 1);
    f.image("c.png", 30, 20, 3);
    // A PNG cut in half: recognised as an image, fails while decoding.
    let mut bytes = Vec::new();
    image::RgbImage::from_raw(64, 64, common::Rng::new(9).image(64, 64))
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(f.path("images/b.png"), &bytes[..bytes.len() / 2]).unwrap();
    let out = f.predict(&["--input-dir", "images", "--output-dir", "out"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(f.files("out"), ["a.png", "c.png"], "no partial b.png: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("error: images/b.png: ") && lines[0].contains("not a readable"), "{stderr}");
    assert_eq!(lines[1], "error: 1 of 3 images failed (see the lines above)");
    // --fail-fast stops at it: c is not predicted.
    let out = f.predict(&["--input-dir", "images", "--output-dir", "out2", "--fail-fast"]);
    assert!(!out.status.success());
    assert_eq!(f.files("out2"), ["a.png"]);
}

#[test]
fn shards_together_predict_every_image_once() {
    let f = Folder::new();
    let names: Vec<String> = (0..7).map(|i| format!("img{i}.png")).collect();
    for (i, name) in names.iter().enumerate() {
        f.image(name, 18, 12, i as u64);
    }
    let mut all = Vec::new();
    for k in 0..3 {
        let dir = format!("shard{k}");
        let out = f.predict(&["--input-dir", "images", "--output-dir", &dir, "--shard", &format!("{k}/3")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let files = f.files(&dir);
        assert!((2..=3).contains(&files.len()), "shard {k}: {files:?}");
        all.extend(files);
    }
    all.sort();
    assert_eq!(all, names, "every image exactly once");
    let out = f.predict(&["--input-dir", "images", "--output-dir", "x", "--shard", "3/3"]);
    assert!(text(&out.stderr).contains("K must be below N"), "{}", text(&out.stderr));
}

#[test]
fn several_images_and_flag_misuse() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    f.image("b.png", 20, 20, 2);
    let out = f.predict(&[
        "--image",
        "images/a.png",
        "--image",
        "images/b.png",
        "--output-dir",
        "out",
        "--mask-format",
        "tif",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(f.files("out"), ["a.tif", "b.tif"]);
    let tif = std::fs::read(f.path("out/a.tif")).unwrap();
    assert_eq!(&tif[..4], b"II*\0");
    // A pyramidal OME-TIFF mask: <stem>.ome.tif.
    let out = f.predict(&["--image", "images/a.png", "--output-dir", "ome", "--mask-format", "ome.tif"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(f.files("ome"), ["a.ome.tif"]);
    let info = imaging::source::ImageSource::probe(&f.path("ome/a.ome.tif")).unwrap();
    assert_eq!((info.levels[0].width, info.levels[0].height), (20, 20));
    // A path after a per-image flag in folder mode, or none in single mode, is a clear error.
    let out = f.predict(&["--input-dir", "images", "--output-dir", "out", "--overlay", "x.png"]);
    assert!(
        text(&out.stderr).contains("with --output-dir, --overlay takes no path"),
        "{}",
        text(&out.stderr)
    );
    let out = f.predict(&["--image", "images/a.png", "--output", "m.png", "--overlay"]);
    assert!(text(&out.stderr).contains("--overlay needs a path for one image"), "{}", text(&out.stderr));
    let out = f.predict(&["--image", "images/a.png", "--output", "m.png", "--errors", "e.png"]);
    assert!(text(&out.stderr).contains("--errors needs a reference mask"), "{}", text(&out.stderr));
    assert!(!Path::new(&f.path("m.png")).exists());
}

/// One clear line and a non-zero exit, nothing written.
fn assert_refused(f: &Folder, o: &Output, needles: &[&str]) {
    let err = text(&o.stderr);
    assert!(!o.status.success(), "expected a failure: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert!(f.files("out").is_empty(), "outputs were written: {:?}", f.files("out"));
}

/// Issue 22, item 2: every output name of every image is checked against every other before any work.
#[test]
fn one_image_output_named_like_another_images_output_is_refused_before_any_work() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    f.image("a_overlay.png", 20, 20, 2);
    let o = f.predict(&["--input-dir", "images", "--output-dir", "out", "--overlay"]);
    assert_refused(&f, &o, &["a_overlay.png would be written twice", "images/a.png", "images/a_overlay.png"]);
    // Without --overlay there is no collision.
    let o = f.predict(&["--input-dir", "images", "--output-dir", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(f.files("out"), ["a.png", "a_overlay.png"]);
}

/// Issue 22, item 3: the output folder may not be an input folder, nor hold an input.
#[test]
fn an_output_folder_among_the_inputs_is_refused() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    f.mask("a.png", 20, 20);
    for (args, flag) in [
        (&["--input-dir", "images", "--output-dir", "images"][..], "--input-dir"),
        (&["--input-dir", "images", "--output-dir", "./images/."][..], "--input-dir"),
        (&["--input-dir", "images", "--mask-dir", "masks", "--output-dir", "masks"][..], "--mask-dir"),
        (&["--image", "images/a.png", "--output-dir", "images"][..], "--image"),
    ] {
        let o = f.predict(args);
        let err = text(&o.stderr);
        assert!(
            !o.status.success() && err.contains("outputs written among the inputs") && err.contains(flag),
            "{args:?}: {err}"
        );
        assert_eq!(f.files("images"), ["a.png"], "{args:?}");
        assert_eq!(f.files("masks"), ["a.png"], "{args:?}");
    }
}

/// Issue 22, items 9 and 10: flags of the other mode are refused by name, and each message names the flag
/// at fault with a hint that works.
#[test]
fn flags_of_the_other_mode_are_refused_and_messages_name_the_right_flag() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    let single = ["--image", "images/a.png", "--output", "out/a.png"];
    std::fs::create_dir(f.path("out")).unwrap();
    for (extra, flag) in [
        (&["--mask-dir", "masks"][..], "--mask-dir"),
        (&["--mask-format", "tif"][..], "--mask-format"),
        (&["--fail-fast"][..], "--fail-fast"),
        (&["--input-dir", "images"][..], "--input-dir"),
    ] {
        let o = f.predict(&[&single[..], extra].concat());
        assert_refused(&f, &o, &[&format!("{flag} is for folder mode (--output-dir)")]);
    }
    // --shard with one image splits its rows, into OME-Zarr stores only.
    let o = f.predict(&[&single[..], &["--shard", "0/2"]].concat());
    assert_refused(
        &f,
        &o,
        &["--output out/a.png: one image in shares (--shard K/N) writes only OME-Zarr stores"],
    );
    let folder = ["--input-dir", "images", "--output-dir", "out"];
    for (extra, flag) in
        [(&["--metrics-json", "m.json"][..], "--metrics-json"), (&["--mask", "masks/a.png"][..], "--mask")]
    {
        let o = f.predict(&[&folder[..], extra].concat());
        assert_refused(&f, &o, &[&format!("{flag} is for one image")]);
    }
    // A missing --mask-dir is named as such, not as --input-dir.
    let o = f.predict(&[&folder[..], &["--mask-dir", "no-such-masks"]].concat());
    assert_refused(&f, &o, &["--mask-dir no-such-masks: cannot list it"]);
    // The hints give paths that are accepted.
    let o = f.predict(&[&single[..], &["--probabilities"]].concat());
    assert_refused(&f, &o, &["--probabilities needs a path", "--probabilities out/probabilities.npy"]);
    let o = f.predict(&[&folder[..], &["--probabilities", "p.png"]].concat());
    assert_refused(&f, &o, &["OUT/<stem>_probabilities.npy"]);
    // A bad --mask names the flag.
    let o = f.predict(&[&single[..], &["--mask", "missing.png"]].concat());
    assert_refused(&f, &o, &["--mask", "missing.png"]);
    // clap's own usage errors are one line too.
    let o = f.predict(&[&single[..], &["--tile", "many"]].concat());
    assert_refused(&f, &o, &["--tile", "many", "see `runner predict --help`"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 22, item 1: --metrics-json /dev/stdout prints the metrics and leaves the device alone.
#[cfg(unix)]
#[test]
fn metrics_to_standard_output_are_written_through_never_replaced() {
    let f = Folder::new();
    f.image("a.png", 20, 20, 1);
    f.mask("a.png", 20, 20);
    std::os::unix::fs::symlink("/dev/stdout", f.path("stdout-link")).unwrap();
    for target in ["/dev/stdout", "stdout-link"] {
        let o = f.predict(&[
            "--image",
            "images/a.png",
            "--output",
            "mask.png",
            "--mask",
            "masks/a.png",
            "--metrics-json",
            target,
        ]);
        assert!(o.status.success(), "{target}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("\"foreground_iou\""), "{target}: {}", text(&o.stdout));
    }
    assert!(std::fs::symlink_metadata(f.path("stdout-link")).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type().is_symlink());
}
