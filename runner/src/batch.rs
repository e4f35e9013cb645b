//! Many images per run: the images of a folder (recognised by content), one job per image with its
//! reference mask matched by file stem, the share of the list one cluster task predicts (`--shard K/N`),
//! and the table of per-image scores (`metrics.csv`) with its summary.
//!
//! Everything here decides from names and counts; [`find_images`] only lists a folder and reads each
//! file's first bytes. Nothing loads a model.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::metrics::Metrics;
use crate::source::FileFormat;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("--input-dir {dir}: cannot list it ({reason}); check that the folder exists and is readable")]
    ListFolder { dir: PathBuf, reason: String },
    #[error("--pattern {pattern:?} is not a valid glob ({reason}); use e.g. \"*.tif\" or \"slide_??.png\"")]
    Pattern { pattern: String, reason: String },
    #[error("{dir} holds no PNG, JPEG or TIFF images{matching}; check the folder (and --pattern)")]
    NoImages { dir: PathBuf, matching: String },
    #[error("{first} and {second} have the same file stem `{stem}`, so their outputs would overwrite each other; rename one or predict them in separate runs")]
    StemCollision { stem: String, first: PathBuf, second: PathBuf },
    #[error("--mask-dir: {first} and {second} are both masks for the images named `{stem}`; keep one")]
    AmbiguousMask { stem: String, first: PathBuf, second: PathBuf },
    #[error("{path} has no file name to name its outputs after; pass an image file")]
    NoStem { path: PathBuf },
    #[error("--shard {text:?}: {reason}")]
    Shard { text: String, reason: String },
}

/// Extensions that mark a file as meant to be an image when its bytes cannot be read.
const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// Whether the regular file at `path` is an image: by its first bytes, or, when it cannot be read, by its
/// extension (it is then listed, and its prediction reports the read error, instead of being skipped
/// silently).
fn is_image(path: &Path) -> bool {
    let mut head = [0u8; 8];
    let read = fs::File::open(path).and_then(|mut f| {
        let mut filled = 0;
        while filled < head.len() {
            match f.read(&mut head[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    });
    match read {
        Ok(n) => FileFormat::sniff(&head[..n]).is_some(),
        Err(_) => path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())),
    }
}

/// The images in `dir` (not its subfolders): regular files (links followed) whose content is PNG, JPEG,
/// TIFF or BigTIFF, whose name matches the glob `pattern` if given, sorted by name. Hidden files (name
/// starting with `.`, such as the temporaries of a run in progress) are skipped. FIFOs and other special
/// files are skipped without being opened. No image at all is an error.
pub fn find_images(dir: &Path, pattern: Option<&str>) -> Result<Vec<PathBuf>, BatchError> {
    let glob = pattern
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| BatchError::Pattern { pattern: p.to_string(), reason: e.msg.to_string() })
        })
        .transpose()?;
    let list_error =
        |e: std::io::Error| BatchError::ListFolder { dir: dir.to_path_buf(), reason: e.to_string() };
    let mut images = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue }; // a glob and a stem need a readable name
        if name.starts_with('.') || glob.as_ref().is_some_and(|g| !g.matches(name)) {
            continue;
        }
        let path = entry.path();
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) && is_image(&path) {
            images.push(path);
        }
    }
    if images.is_empty() {
        let matching = pattern.map(|p| format!(" matching {p:?}")).unwrap_or_default();
        return Err(BatchError::NoImages { dir: dir.to_path_buf(), matching });
    }
    images.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(images)
}

/// One image to predict: its outputs are named after `stem`; `mask` is its reference mask, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    pub image: PathBuf,
    pub stem: String,
    pub mask: Option<PathBuf>,
}

/// The file stem outputs are named after (`a.png` -> `a`, `a.ome.tif` -> `a.ome`).
fn stem_of(path: &Path) -> Result<String, BatchError> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| BatchError::NoStem { path: path.to_path_buf() })
}

/// Paths by stem; two paths with one stem are returned as `Err((stem, first, second))`.
fn by_stem(paths: Vec<PathBuf>) -> Result<BTreeMap<String, PathBuf>, BatchError> {
    let mut map: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let stem = stem_of(&path)?;
        if let Some(first) = map.get(&stem) {
            return Err(BatchError::StemCollision { stem, first: first.clone(), second: path });
        }
        map.insert(stem, path);
    }
    Ok(map)
}

/// One job per image, in the order given, each with the mask of the same stem from `mask_dir` (an image
/// without one gets `None`). Two images with one stem, or two masks with one stem, are an error naming
/// both, before any work.
pub fn jobs(images: Vec<PathBuf>, mask_dir: Option<&Path>) -> Result<Vec<ImageJob>, BatchError> {
    let masks = match mask_dir {
        Some(dir) => by_stem(find_images(dir, None)?).map_err(|e| match e {
            BatchError::StemCollision { stem, first, second } => {
                BatchError::AmbiguousMask { stem, first, second }
            }
            other => other,
        })?,
        None => BTreeMap::new(),
    };
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut jobs = Vec::with_capacity(images.len());
    for image in images {
        let stem = stem_of(&image)?;
        if let Some(first) = seen.get(&stem) {
            return Err(BatchError::StemCollision { stem, first: first.clone(), second: image });
        }
        seen.insert(stem.clone(), image.clone());
        let mask = masks.get(&stem).cloned();
        jobs.push(ImageJob { image, stem, mask });
    }
    Ok(jobs)
}

/// The share `index` of `count` equal shares of a sorted list (`--shard K/N`).
///
/// Numbered from 0, so the indices cluster schedulers hand out can be passed as they are: a Kubernetes
/// Indexed Job's `JOB_COMPLETION_INDEX` runs from 0 to completions - 1, and a Slurm array declared as
/// `--array=0-(N-1)` gives `SLURM_ARRAY_TASK_ID` from 0 (`--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = BatchError;

    fn from_str(text: &str) -> Result<Shard, BatchError> {
        let error = |reason: &str| BatchError::Shard { text: text.to_string(), reason: reason.to_string() };
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| error("expected K/N, e.g. 0/4 (shards are numbered from 0)"))?;
        let index: usize = k.trim().parse().map_err(|_| error("K must be a whole number, e.g. 0/4"))?;
        let count: usize = n.trim().parse().map_err(|_| error("N must be a whole number, e.g. 0/4"))?;
        if count == 0 {
            return Err(error("N must be at least 1"));
        }
        if index >= count {
            return Err(BatchError::Shard {
                text: text.to_string(),
                reason: format!(
                    "K must be below N (shards are numbered from 0: 0/{count} to {}/{count})",
                    count - 1
                ),
            });
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The items of share `shard.index` of `shard.count` contiguous shares of `items`: share k holds items
/// `len*k/N .. len*(k+1)/N`, so shares differ in length by at most one and together hold every item once.
pub fn select_shard<T>(items: Vec<T>, shard: Shard) -> Vec<T> {
    let len = items.len() as u128;
    let bound = |k: usize| (len * k as u128 / shard.count as u128) as usize;
    let (start, end) = (bound(shard.index), bound(shard.index + 1));
    items.into_iter().skip(start).take(end - start).collect()
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub metrics: Option<Metrics>,
}

/// The scores of every image of a run, in the order they were predicted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsTable {
    pub rows: Vec<MetricsRow>,
}

/// The run's scores at a glance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsSummary {
    pub images: usize,
    pub with_mask: usize,
    /// Mean of the per-image IoU over images with a mask.
    pub mean_iou: Option<f64>,
    /// IoU of the summed confusion counts: every pixel weighs the same, whatever its image's size.
    pub pooled_iou: Option<f64>,
}

impl fmt::Display for MetricsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} images, {} with a reference mask", self.images, self.with_mask)?;
        if let (Some(mean), Some(pooled)) = (self.mean_iou, self.pooled_iou) {
            write!(f, ": mean foreground IoU {mean:.4}, pooled foreground IoU {pooled:.4}")?;
        }
        Ok(())
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl MetricsTable {
    pub fn new() -> MetricsTable {
        MetricsTable::default()
    }

    /// Adds an image's row; `metrics` is `None` for an image without a reference mask.
    pub fn push(&mut self, image: impl Into<String>, width: usize, height: usize, metrics: Option<Metrics>) {
        self.rows.push(MetricsRow { image: image.into(), width, height, metrics });
    }

    /// Writes `image,width,height,pixels,accuracy,iou,dice`, one row per image; the score cells of an image
    /// without a mask are empty.
    pub fn write_csv(&self, mut out: impl Write) -> std::io::Result<()> {
        writeln!(out, "image,width,height,pixels,accuracy,iou,dice")?;
        for row in &self.rows {
            let pixels = row.width as u128 * row.height as u128;
            let scores = match &row.metrics {
                Some(m) => format!("{},{},{}", m.pixel_accuracy, m.foreground_iou, m.dice),
                None => ",,".to_string(),
            };
            writeln!(out, "{},{},{},{pixels},{scores}", csv_field(&row.image), row.width, row.height)?;
        }
        out.flush()
    }

    pub fn summary(&self) -> MetricsSummary {
        let scored: Vec<&Metrics> = self.rows.iter().filter_map(|r| r.metrics.as_ref()).collect();
        let mean_iou = (!scored.is_empty())
            .then(|| scored.iter().map(|m| m.foreground_iou).sum::<f64>() / scored.len() as f64);
        let pooled_iou = (!scored.is_empty()).then(|| {
            let (tp, errors) = scored.iter().fold((0u128, 0u128), |(tp, errors), m| {
                (tp + m.true_positive as u128, errors + m.false_positive as u128 + m.false_negative as u128)
            });
            // As for one image: both masks empty everywhere counts as perfect agreement.
            if tp + errors == 0 {
                1.0
            } else {
                tp as f64 / (tp + errors) as f64
            }
        });
        MetricsSummary { images: self.rows.len(), with_mask: scored.len(), mean_iou, pooled_iou }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn jobs_are_named_by_stem_and_collisions_are_errors() {
        let jobs = jobs(paths(&["d/a.png", "d/b.ome.tif"]), None).unwrap();
        assert_eq!(jobs.iter().map(|j| j.stem.as_str()).collect::<Vec<_>>(), ["a", "b.ome"]);
        assert!(jobs.iter().all(|j| j.mask.is_none()));
        let err = super::jobs(paths(&["d/a.png", "d/b.png", "e/a.tif"]), None).unwrap_err();
        assert_eq!(
            err,
            BatchError::StemCollision { stem: "a".into(), first: "d/a.png".into(), second: "e/a.tif".into() }
        );
        assert!(err.to_string().contains("d/a.png") && err.to_string().contains("e/a.tif"));
    }

    #[test]
    fn shard_text() {
        assert_eq!("0/4".parse::<Shard>().unwrap(), Shard { index: 0, count: 4 });
        assert_eq!("3/4".parse::<Shard>().unwrap(), Shard { index: 3, count: 4 });
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
        for bad in ["4/4", "1/0", "a/4", "1", "-1/4", "1/4/2", ""] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.to_string().starts_with("--shard "), "{err}");
        }
        assert!("4/4".parse::<Shard>().unwrap_err().to_string().contains("0/4 to 3/4"));
    }

    #[test]
    fn shards_cover_every_item_exactly_once() {
        for len in 0..=60 {
            for count in 1..=(len + 3) {
                let items: Vec<usize> = (0..len).collect();
                let mut seen = Vec::new();
                let mut sizes = Vec::new();
                for index in 0..count {
                    let share = select_shard(items.clone(), Shard { index, count });
                    sizes.push(share.len());
                    seen.extend(share);
                }
                assert_eq!(seen, items, "len {len}, {count} shards");
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "unequal shares {sizes:?}");
            }
        }
        // No overflow with huge shard counts.
        let items: Vec<u8> = vec![1, 2, 3];
        assert_eq!(select_shard(items, Shard { index: usize::MAX - 1, count: usize::MAX }), vec![3]);
    }

    #[test]
    fn csv_rows_and_summary() {
        let mut table = MetricsTable::new();
        // tp 2, fp 1, fn 1, tn 4: IoU 0.5
        let a = Metrics::compare(&[1, 1, 1, 0, 0, 0, 0, 0], &[1, 1, 0, 1, 0, 0, 0, 0]);
        // tp 6, fp 0, fn 0: IoU 1
        let b = Metrics::compare(&[1, 1, 1, 1, 1, 1], &[1, 1, 1, 1, 1, 1]);
        table.push("a", 4, 2, Some(a));
        table.push("no, mask \"here\"", 3, 5, None);
        table.push("b", 3, 2, Some(b));
        let mut csv = Vec::new();
        table.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "image,width,height,pixels,accuracy,iou,dice");
        assert_eq!(lines[1], format!("a,4,2,8,0.75,0.5,{}", 4.0 / 6.0));
        assert_eq!(lines[2], "\"no, mask \"\"here\"\"\",3,5,15,,,");
        assert_eq!(lines[3], "b,3,2,6,1,1,1");
        assert_eq!(lines.len(), 4);

        let summary = table.summary();
        assert_eq!((summary.images, summary.with_mask), (3, 2));
        assert!((summary.mean_iou.unwrap() - 0.75).abs() < 1e-12);
        // pooled: tp 8 / (8 + 1 + 1)
        assert!((summary.pooled_iou.unwrap() - 0.8).abs() < 1e-12);
        assert!(summary.to_string().contains("mean foreground IoU 0.7500, pooled foreground IoU 0.8000"));

        let mut unscored = MetricsTable::new();
        unscored.push("x", 1, 1, None);
        let s = unscored.summary();
        assert_eq!((s.mean_iou, s.pooled_iou), (None, None));
        assert_eq!(s.to_string(), "1 images, 0 with a reference mask");
    }
}
