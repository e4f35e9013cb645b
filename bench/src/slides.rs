//! Slides at scale: a JPEG-tiled (YCbCr 4:2:0) BigTIFF of about 200 megapixels against the same image
//! Deflate-tiled, and the Deflate slide's mask written as a pyramidal OME-TIFF and as OME-Zarr against a plain
//! striped TIFF. Every run is the whole `runner predict` process (wall time, CPU time, peak resident memory);
//! the four runs of a round go one after the other and rounds repeat, so each ratio is taken within a round.
//! The slides are written once by bench/make_big_tiff.py into a cache folder and kept for later runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::memory::{self, RunMeasure};
use crate::stats::Stats;
use crate::stream;
use crate::table::Table;

/// What the section needs.
pub struct SlidesOptions<'a> {
    /// The runner binary measured.
    pub runner: &'a Path,
    /// The model it predicts with.
    pub model: &'a Path,
    /// Where the outputs go (each removed after its run).
    pub scratch: &'a Path,
    /// Where the slides are kept between bench runs.
    pub cache: &'a Path,
    /// `runner --threads`.
    pub threads: usize,
    /// Rounds of the four runs.
    pub rounds: usize,
    /// Side of the square slides.
    pub side: usize,
}

/// One kind of run: the input's codec and the mask's extension.
#[derive(Clone, Copy)]
struct RunKind {
    codec: &'static str,
    output: &'static str,
}

const DEFLATE_TIF: RunKind = RunKind { codec: "deflate", output: "tif" };
const JPEG_TIF: RunKind = RunKind { codec: "jpeg", output: "tif" };
const DEFLATE_OME_TIF: RunKind = RunKind { codec: "deflate", output: "ome.tif" };
const DEFLATE_OME_ZARR: RunKind = RunKind { codec: "deflate", output: "ome.zarr" };
const KINDS: [RunKind; 4] = [DEFLATE_TIF, JPEG_TIF, DEFLATE_OME_TIF, DEFLATE_OME_ZARR];

/// A short fingerprint of the generator script, so that a changed script writes new slides.
fn generator_tag() -> String {
    // FNV-1a, 32 bits: enough to tell versions of one file apart.
    let hash = include_bytes!("../make_big_tiff.py")
        .iter()
        .fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// The cached `side` x `side` slide of `codec`, written when missing (through a temporary name, so a killed
/// run never leaves a partial slide to be reused); the seconds it took to write, when it was written now.
fn cached_slide(cache: &Path, side: usize, codec: &str) -> Result<(PathBuf, Option<f64>)> {
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let path = cache.join(format!("slide-{side}x{side}-{codec}-{}.tif", generator_tag()));
    if path.is_file() {
        return Ok((path, None));
    }
    let tmp = cache.join(format!(".slide-{side}-{codec}.{}.tmp", std::process::id()));
    let seconds = stream::make_big_tiff(&tmp, side, side, codec)?;
    std::fs::rename(&tmp, &path)?;
    Ok((path, Some(seconds)))
}

/// One figure of a run: wall seconds, CPU seconds or peak GB.
type Measure = fn(&RunMeasure) -> f64;

fn remove(path: &Path) {
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

/// The section's two tables.
pub fn section(o: &SlidesOptions<'_>) -> Result<Vec<Table>> {
    let side = o.side;
    let mpx = (side * side) as f64 / 1e6;
    let mut generated = vec![];
    let mut slide = |codec| -> Result<PathBuf> {
        let (path, seconds) = cached_slide(o.cache, side, codec)?;
        if let Some(s) = seconds {
            generated.push(format!("{codec} in {s:.0} s"));
        }
        Ok(path)
    };
    let (deflate, jpeg) = (slide("deflate")?, slide("jpeg")?);
    let load_before = crate::load_average();
    let mut runs: Vec<Vec<RunMeasure>> = vec![vec![]; KINDS.len()];
    for _ in 0..o.rounds {
        for (i, kind) in KINDS.iter().enumerate() {
            let input = if kind.codec == "jpeg" { &jpeg } else { &deflate };
            let output = o.scratch.join(format!("slide_mask.{}", kind.output));
            remove(&output);
            runs[i].push(memory::predict_measured(o.runner, o.model, input, &output, o.threads, &[])?);
            remove(&output);
        }
    }
    let load_after = crate::load_average();
    let stats = |i: usize, f: Measure| Stats::of(&runs[i].iter().map(f).collect::<Vec<_>>());
    let ratio = |a: usize, b: usize, f: Measure| {
        Stats::of(&runs[a].iter().zip(&runs[b]).map(|(x, y)| f(x) / f(y)).collect::<Vec<_>>())
    };
    let (wall, cpu, rss): (Measure, Measure, Measure) = (|m| m.wall, |m| m.cpu, |m| m.rss / 1e9);
    let size_gb = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e9).unwrap_or(f64::NAN);
    let common = format!(
        "{} rounds of the four runs in turn (Deflate -> .tif, JPEG -> .tif, Deflate -> .ome.tif, Deflate -> \
         .ome.zarr); medians (min-max); ratios per round. Load average {load_before} before, {load_after} after; \
         runner --threads {}.",
        o.rounds, o.threads
    );

    let mut a = Table::new(
        &format!("Slide inputs: a {side}x{side} RGB BigTIFF ({mpx:.0} MP), JPEG against Deflate tiles, mask into a striped TIFF"),
        &["input (tiled 512)", "on disk GB", "peak resident GB", "wall s", "MP/s", "CPU s", "target"],
    );
    for (i, what, path) in [(0, "Deflate, RGB", &deflate), (1, "JPEG q90, YCbCr 4:2:0", &jpeg)] {
        a.row(vec![
            what.into(),
            format!("{:.2}", size_gb(path)),
            stats(i, rss).show(3),
            stats(i, wall).show(1),
            format!("{:.2}", mpx / stats(i, wall).median),
            stats(i, cpu).show(1),
            "<= 1.0 GB".into(),
        ]);
    }
    a.note(format!(
        "JPEG throughput / Deflate throughput (Deflate wall / JPEG wall, per round): {} (target >= 0.90); in CPU \
         seconds: {}",
        ratio(0, 1, wall).show(3),
        ratio(0, 1, cpu).show(3)
    ));
    a.note(common.clone());
    if !generated.is_empty() {
        a.note(format!(
            "slides written by bench/make_big_tiff.py (tifffile + imagecodecs): {}",
            generated.join(", ")
        ));
    }

    let mut b = Table::new(
        &format!(
            "Slide outputs: the Deflate slide's mask ({side}x{side}) as a pyramidal OME-TIFF and as OME-Zarr"
        ),
        &[
            "mask output",
            "peak resident GB",
            "wall s",
            "CPU s",
            "wall / striped TIFF",
            "CPU / striped TIFF",
            "target",
        ],
    );
    for (i, what) in [
        (0, "mask.tif (striped, Deflate)"),
        (2, "mask.ome.tif (tiled 512, Deflate, SubIFD levels)"),
        (3, "mask.ome.zarr (NGFF 0.4, chunks 512, zstd)"),
    ] {
        let (vs_wall, vs_cpu) = if i == 0 {
            ("1".into(), "1".into())
        } else {
            (ratio(i, 0, wall).show(3), ratio(i, 0, cpu).show(3))
        };
        b.row(vec![
            what.into(),
            stats(i, rss).show(3),
            stats(i, wall).show(1),
            stats(i, cpu).show(1),
            vs_wall,
            vs_cpu,
            if i == 0 { "<= 1.0 GB".into() } else { "<= 1.0 GB, <= 1.10 x striped".into() },
        ]);
    }
    b.note(common);
    Ok(vec![a, b])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_slide_is_reused_and_named_after_its_size_codec_and_script() {
        let cache = std::env::temp_dir().join(format!("segmenter-bench-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&cache).unwrap();
        let tag = generator_tag();
        assert_eq!(tag.len(), 8);
        let kept = cache.join(format!("slide-64x64-jpeg-{tag}.tif"));
        std::fs::write(&kept, b"kept").unwrap();
        // Found in the cache: not written again (no Python is run), not touched.
        let (path, written) = cached_slide(&cache, 64, "jpeg").unwrap();
        assert_eq!((path, written), (kept.clone(), None));
        assert_eq!(std::fs::read(&kept).unwrap(), b"kept");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
