//! Prediction at scale: peak memory of the whole runner process on images larger than memory (a BigTIFF
//! made by tifffile, tiled 512 and Deflate, from a tile generator; an 8192^2 PNG with probabilities; one
//! width at three heights, which must be flat), streamed throughput against the in-memory path, and a
//! folder of small images in one run against one run per image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::memory;
use crate::predict;
use crate::stats::{self, Stats};
use crate::table::Table;

/// A Python with tifffile and imagecodecs (JPEG tiles): `.venv` at the repository root, created and filled
/// from PyPI when missing.
fn tifffile_python() -> Result<PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let python = root.join(".venv/bin/python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import tifffile, numpy, imagecodecs"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Ok(python);
    }
    eprintln!("bench: installing tifffile, imagecodecs and numpy into .venv (PyPI) to write the BigTIFF test images");
    let venv = Command::new("python3").args(["-m", "venv"]).arg(root.join(".venv")).status()?;
    let pip = Command::new(root.join(".venv/bin/pip"))
        .args(["install", "-q", "tifffile", "imagecodecs", "numpy"])
        .status()?;
    if !venv.success() || !pip.success() || !has(&python) {
        bail!(
            "cannot install tifffile into .venv; install it (pip install tifffile imagecodecs numpy) or pass --big-tiff"
        );
    }
    Ok(python)
}

/// Writes the `width` x `height` RGB BigTIFF (tiled 512; `codec` "deflate", or "jpeg": YCbCr 4:2:0) with
/// bench/make_big_tiff.py; returns the seconds it took.
pub fn make_big_tiff(path: &Path, width: usize, height: usize, codec: &str) -> Result<f64> {
    let python = tifffile_python()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/make_big_tiff.py");
    let start = Instant::now();
    let status = Command::new(python)
        .arg(script)
        .arg(path)
        .arg(width.to_string())
        .arg(height.to_string())
        .arg(codec)
        .status()?;
    if !status.success() {
        bail!("make_big_tiff.py failed");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Writes a `width` x `height` PNG band by band (the bench never holds the image either).
fn write_png_rows(path: &Path, width: usize, height: usize) -> Result<()> {
    use imaging::sink::{ImageFormat, PixelKind, RowSink};
    let mut sink = RowSink::image(path, ImageFormat::Png, PixelKind::Rgb8, width, height, false)?;
    let band = 512;
    for y in (0..height).step_by(band) {
        let rows = band.min(height - y);
        // The synthetic pattern of the predict section, shifted per band so that bands differ.
        let rgb = predict::synthetic_rgb(rows, width);
        let shifted: Vec<u8> = rgb.iter().map(|&v| v.wrapping_add((y / band) as u8)).collect();
        sink.write_pixels(&shifted)?;
    }
    sink.finish()?;
    Ok(())
}

pub struct StreamOptions<'a> {
    pub runner: &'a Path,
    pub model: &'a Path,
    pub scratch: &'a Path,
    pub threads: usize,
    pub reps: usize,
    pub big_tiff: Option<&'a Path>,
    pub big_size: (usize, usize),
    pub probabilities_side: usize,
    pub sweep_width: usize,
    pub sweep_heights: &'a [usize],
}

/// The stream section's tables.
pub fn section(o: &StreamOptions<'_>) -> Result<Vec<Table>> {
    let mut t = Table::new(
        "Prediction at scale: peak memory of `runner predict` (whole process), streamed band by band",
        &["input", "outputs", "peak resident GB", "wall s", "MP/s", "target"],
    );
    let gb = |b: f64| format!("{:.3}", b / 1e9);
    let run = |image: &Path, output: &Path, extra: &[&str]| {
        memory::predict_peak_rss(o.runner, o.model, image, output, o.threads, extra)
    };

    // 1. The BigTIFF.
    let (w, h) = o.big_size;
    let generated = o.scratch.join("big.tif");
    let big = match o.big_tiff {
        Some(path) => path.to_path_buf(),
        None => {
            let s = make_big_tiff(&generated, w, h, "deflate")?;
            t.note(format!("the {w}x{h} BigTIFF was written by tifffile from a tile generator in {s:.0} s"));
            generated.clone()
        }
    };
    let mask = o.scratch.join("big_mask.tif");
    let (rss, secs) = run(&big, &mask, &[])?;
    let mpx = (w * h) as f64 / 1e6;
    t.row(vec![
        format!(
            "{w}x{h} RGB BigTIFF, tiled 512, Deflate ({:.2} GB on disk)",
            std::fs::metadata(&big)?.len() as f64 / 1e9
        ),
        "mask .tif (striped Deflate)".into(),
        gb(rss),
        format!("{secs:.0}"),
        format!("{:.2}", mpx / secs),
        "<= 1.0 GB".into(),
    ]);
    let _ = std::fs::remove_file(&mask);
    let _ = std::fs::remove_file(&generated);

    // 2. An 8192^2 PNG with probabilities.
    let side = o.probabilities_side;
    let png = o.scratch.join("square.png");
    write_png_rows(&png, side, side)?;
    let (mask, probabilities) = (o.scratch.join("square_mask.png"), o.scratch.join("square_p.npy"));
    let (rss, secs) =
        run(&png, &mask, &["--probabilities", probabilities.to_str().context("scratch path")?])?;
    t.row(vec![
        format!("{side}x{side} RGB PNG"),
        "mask .png + probabilities .npy".into(),
        gb(rss),
        format!("{secs:.0}"),
        format!("{:.2}", (side * side) as f64 / 1e6 / secs),
        "< 0.3 GB".into(),
    ]);
    for p in [&png, &mask, &probabilities] {
        let _ = std::fs::remove_file(p);
    }

    // 3. One width, three heights: memory must not grow with the height.
    let mut sweep = Vec::new();
    for &height in o.sweep_heights {
        let png = o.scratch.join(format!("sweep{height}.png"));
        write_png_rows(&png, o.sweep_width, height)?;
        let mask = o.scratch.join("sweep_mask.png");
        let (rss, secs) = run(&png, &mask, &[])?;
        t.row(vec![
            format!("{}x{height} RGB PNG", o.sweep_width),
            "mask .png".into(),
            gb(rss),
            format!("{secs:.0}"),
            format!("{:.2}", (o.sweep_width * height) as f64 / 1e6 / secs),
            "flat in height".into(),
        ]);
        sweep.push(rss);
        let _ = std::fs::remove_file(&png);
        let _ = std::fs::remove_file(&mask);
    }
    if let (Some(lo), Some(hi)) =
        (sweep.iter().cloned().reduce(f64::min), sweep.iter().cloned().reduce(f64::max))
    {
        t.note(format!(
            "peak memory over heights {:?} at width {}: {:.3} to {:.3} GB (max/min {:.2})",
            o.sweep_heights,
            o.sweep_width,
            lo / 1e9,
            hi / 1e9,
            hi / lo
        ));
    }
    t.note("MP/s here include decoding and encoding; the in-memory path's figure is in the prediction table above.");
    Ok(vec![t, folder_table(o)?])
}

/// A dozen small images: one folder run against one run per image.
fn folder_table(o: &StreamOptions<'_>) -> Result<Table> {
    let dir = o.scratch.join("folder");
    let out = o.scratch.join("folder_out");
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&out)?;
    let (count, side) = (12, 512);
    for i in 0..count {
        write_png_rows(&dir.join(format!("img{i:02}.png")), side, side + 2 * i)?;
    }
    let runner = |args: &[&str]| -> Result<()> {
        let status = Command::new(o.runner)
            .args(["predict", "--model"])
            .arg(o.model)
            .args(["--threads", &o.threads.to_string(), "--quiet"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("runner predict {args:?} failed");
        }
        Ok(())
    };
    let dir_s = dir.to_str().context("scratch path")?.to_string();
    let out_s = out.to_str().context("scratch path")?.to_string();
    let reps = o.reps.clamp(1, 3);
    let folder = stats::time(0, reps, || runner(&["--input-dir", &dir_s, "--output-dir", &out_s]))?;
    let singles = stats::time(0, reps, || {
        for i in 0..count {
            let image = dir.join(format!("img{i:02}.png"));
            let mask = out.join(format!("single{i:02}.png"));
            runner(&[
                "--image",
                image.to_str().unwrap_or_default(),
                "--output",
                mask.to_str().unwrap_or_default(),
            ])?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let ratios: Vec<f64> = folder.iter().zip(&singles).map(|(f, s)| f / s).collect();
    let mut t = Table::new(
        &format!("Folder throughput: {count} images of about {side}x{side}"),
        &["run", "s median (min-max)"],
    );
    t.row(vec!["one `--input-dir` run".into(), Stats::of(&folder).show(2)]);
    t.row(vec![format!("{count} single-image runs"), Stats::of(&singles).show(2)]);
    t.note(format!("folder / single runs (per repetition): {} (target <= 0.8)", Stats::of(&ratios).show(3)));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
    Ok(t)
}
