//! A very large image through the binary: 8192 x 8192 works, with every output, in well under 1 GB of
//! peak memory (the runner reports its peak resident memory in its summary line).

mod common;

use std::process::Command;

#[test]
fn an_8192_square_image_fits_in_well_under_a_gigabyte() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), common::model("net_3")).unwrap();
    let side = 8192u32;
    // A cheap pattern (rings and stripes); TIFF keeps writing it fast.
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let r = ((x / 97 + y / 89) % 2 * 200) as u8;
        image::Rgb([r, (x % 256) as u8, (y % 256) as u8])
    });
    img.save(dir.path().join("big.tif")).unwrap();
    drop(img);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir.path())
        .args(["predict", "--quiet", "--model", "model.onnx", "--image", "big.tif", "--output", "big.png"])
        .args(["--probabilities", "big.npy", "--overlay", "overlay.jpg"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    let summary = stdout.lines().next().unwrap();
    assert!(summary.starts_with("predicted 8192x8192: 1225 tiles"), "{summary}");
    let peak_mb: u64 = summary
        .split("peak memory ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {summary}"));
    assert!(peak_mb < 1000, "peak memory {peak_mb} MB");
    let (w, h) = image::image_dimensions(dir.path().join("big.png")).unwrap();
    assert_eq!((w, h), (side, side));
    let npy = std::fs::metadata(dir.path().join("big.npy")).unwrap().len();
    assert_eq!(npy, 128 + 4 * (side as u64) * (side as u64));
}
