//! Many images per run: the images of a folder (recognised by content), one job per image with its
//! reference mask matched by file stem, the share of the list one cluster task predicts (`--shard K/N`),
//! and the table of per-image scores (`metrics.csv`) with its summary.
//!
//! Everything here decides from names and counts; [`find_images`] only lists a folder and reads each
//! file's first bytes. Nothing loads a model.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use imaging::files::{io_reason, same_file, FileError, OutputSet};
use imaging::sink::ImageFormat;

use crate::metrics::MetricsTable;
use crate::outputs::{self, FolderNames, OutputRequest, PlannedOutput};
use crate::pipeline::{self, Destinations, ImageReport, OpenedImage, PipelineError};
use crate::regions::GeoJsonLabel;
use crate::session::Model;
use imaging::source::{looks_like_ome_zarr_store, FileFormat};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    #[error("{flag} {dir}: cannot list it ({reason}); check that the folder exists and is readable")]
    ListFolder { flag: &'static str, dir: PathBuf, reason: String },
    #[error("--pattern {pattern:?} is not a valid glob ({reason}); use e.g. \"*.tif\" or \"slide_??.png\"")]
    Pattern { pattern: String, reason: String },
    #[error(
        "{flag} {dir} holds no PNG, JPEG, TIFF or OME-Zarr images{matching}; check the folder{pattern_hint}"
    )]
    NoImages { flag: &'static str, dir: PathBuf, matching: String, pattern_hint: &'static str },
    #[error("--output-dir {dir}: {output} would be written twice, as the {first_kind} of {first} and as the {second_kind} of {second}; rename one image or predict them in separate runs")]
    OutputCollision {
        dir: PathBuf,
        // Boxed so that the error stays under clippy's `result_large_err` size.
        output: Box<str>,
        first_kind: &'static str,
        first: PathBuf,
        second_kind: &'static str,
        second: PathBuf,
    },
    #[error("--output-dir {dir} holds the input {input} ({flag}); outputs written among the inputs would be read as inputs by the next run or overwrite them, so choose an output folder without inputs")]
    OutputAmongInputs { dir: PathBuf, flag: &'static str, input: PathBuf },
    #[error("{first} and {second} have the same file stem `{stem}`, so their outputs would overwrite each other; rename one or predict them in separate runs")]
    StemCollision { stem: String, first: PathBuf, second: PathBuf },
    #[error("--mask-dir: {first} and {second} are both masks for the images named `{stem}`; keep one")]
    AmbiguousMask { stem: String, first: PathBuf, second: PathBuf },
    #[error("{path} has no file name to name its outputs after; pass an image file")]
    NoStem { path: PathBuf },
    #[error("--shard {text:?}: {reason}")]
    Shard { text: String, reason: String },
}

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
    let slide = imaging::source::has_slide_extension(path);
    match read {
        // A vendor's slide is listed by its extension: OpenSlide reads it (or its prediction says how to
        // get OpenSlide), and a MIRAX index or a DICOM file has no signature of its own.
        Ok(n) => FileFormat::sniff(&head[..n]).is_some() || slide,
        Err(_) => slide || imaging::source::has_image_extension(path),
    }
}

/// The images in `dir` (not inside its subfolders): regular files (links followed) whose content is PNG,
/// JPEG, TIFF or BigTIFF or whose extension is a vendor's slide format ([`imaging::source::has_slide_extension`]), and
/// subfolders that are OME-Zarr images (each one image), whose name matches the glob `pattern` if given,
/// sorted by name. Hidden files (name starting with `.`, such as the temporaries of a run in progress) are
/// skipped. FIFOs and other special files are skipped without being opened. No image at all is an error.
pub fn find_images(
    flag: &'static str,
    dir: &Path,
    pattern: Option<&str>,
) -> Result<Vec<PathBuf>, FolderError> {
    let glob = pattern
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| FolderError::Pattern { pattern: p.to_string(), reason: e.msg.to_string() })
        })
        .transpose()?;
    let list_error =
        |e: std::io::Error| FolderError::ListFolder { flag, dir: dir.to_path_buf(), reason: io_reason(&e) };
    let mut images = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue }; // a glob and a stem need a readable name
        if name.starts_with('.') || glob.as_ref().is_some_and(|g| !g.matches(name)) {
            continue;
        }
        let path = entry.path();
        let listed = match fs::metadata(&path) {
            Ok(m) if m.is_file() => is_image(&path),
            Ok(m) if m.is_dir() => looks_like_ome_zarr_store(&path),
            _ => false,
        };
        if listed {
            images.push(path);
        }
    }
    if images.is_empty() {
        let matching = pattern.map(|p| format!(" matching {p:?}")).unwrap_or_default();
        let pattern_hint = if pattern.is_some() { " and --pattern" } else { "" };
        return Err(FolderError::NoImages { flag, dir: dir.to_path_buf(), matching, pattern_hint });
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

/// The file stem outputs are named after (`a.png` -> `a`, `a.ome.tif` -> `a.ome`; an OME-Zarr folder
/// `a.ome.zarr` or `a.zarr` -> `a`).
fn stem_of(path: &Path) -> Result<String, FolderError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let lower = name.to_ascii_lowercase();
    for suffix in [".ome.zarr", ".zarr"] {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return Ok(name[..name.len() - suffix.len()].to_string());
        }
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FolderError::NoStem { path: path.to_path_buf() })
}

/// Paths by stem; two paths with one stem are returned as `Err((stem, first, second))`.
fn by_stem(paths: Vec<PathBuf>) -> Result<BTreeMap<String, PathBuf>, FolderError> {
    let mut map: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let stem = stem_of(&path)?;
        if let Some(first) = map.get(&stem) {
            return Err(FolderError::StemCollision { stem, first: first.clone(), second: path });
        }
        map.insert(stem, path);
    }
    Ok(map)
}

/// One job per image, in the order given, each with the mask of the same stem from `mask_dir` (an image
/// without one gets `None`). Two images with one stem, or two masks with one stem, are an error naming
/// both, before any work.
pub fn jobs(images: Vec<PathBuf>, mask_dir: Option<&Path>) -> Result<Vec<ImageJob>, FolderError> {
    let masks = match mask_dir {
        Some(dir) => by_stem(find_images("--mask-dir", dir, None)?).map_err(|e| match e {
            FolderError::StemCollision { stem, first, second } => {
                FolderError::AmbiguousMask { stem, first, second }
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
            return Err(FolderError::StemCollision { stem, first: first.clone(), second: image });
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
    type Err = FolderError;

    fn from_str(text: &str) -> Result<Shard, FolderError> {
        let error = |reason: &str| FolderError::Shard { text: text.to_string(), reason: reason.to_string() };
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| error("expected K/N, e.g. 0/4 (shards are numbered from 0)"))?;
        let index: usize = k.trim().parse().map_err(|_| error("K must be a whole number, e.g. 0/4"))?;
        let count: usize = n.trim().parse().map_err(|_| error("N must be a whole number, e.g. 0/4"))?;
        if count == 0 {
            return Err(error("N must be at least 1"));
        }
        if index >= count {
            return Err(FolderError::Shard {
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

/// What folder mode writes for every image, named after the image's stem in `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOutputs {
    pub dir: PathBuf,
    /// The masks' format: `png`, `tif` or `jpg`.
    pub mask_format: ImageFormat,
    pub probabilities: bool,
    pub overlay: bool,
    /// Error maps, for the images that have a reference mask.
    pub errors: bool,
    /// `metrics.csv`, when reference masks are given.
    pub metrics: bool,
    /// `<stem>.geojson`, the foreground as QuPath objects, labelled so.
    pub geojson: Option<GeoJsonLabel>,
    /// `<stem>_objects.csv`, the objects' table (with `geojson`).
    pub objects_csv: bool,
    /// How the reference masks' values become classes.
    pub mask_rule: imaging::masks::LabelRule,
}

/// The table of scores written beside the masks.
pub const METRICS_CSV: &str = "metrics.csv";

impl FolderOutputs {
    /// One image's outputs, named after its stem in the folder.
    pub fn planned(&self, job: &ImageJob) -> Vec<PlannedOutput> {
        let names = FolderNames {
            dir: &self.dir,
            stem: &job.stem,
            mask_format: self.mask_format,
            probabilities: self.probabilities,
            overlay: self.overlay,
            errors: self.errors && job.mask.is_some(),
            geojson: self.geojson.is_some(),
            objects_csv: self.geojson.is_some() && self.objects_csv,
        };
        outputs::plan(OutputRequest::FolderImage(names)).expect("a folder's outputs have fixed formats")
    }

    /// The file names one image's outputs get, with what each is.
    pub fn names(&self, job: &ImageJob) -> Vec<(&'static str, String)> {
        let name = |o: &PlannedOutput| o.path.file_name().map(|n| n.to_string_lossy().into_owned());
        self.planned(job).iter().map(|o| (o.kind.name(), name(o).unwrap_or_default())).collect()
    }

    /// Refuses, before any work, a run in which two outputs would have one name: one image's output named
    /// like another's (`a.png`'s overlay `a_overlay.png` and the mask of an image `a_overlay.tif`), or like
    /// `metrics.csv`. Names are compared ignoring case, as the file systems of macOS and Windows do.
    pub fn check_collisions(&self, jobs: &[ImageJob]) -> Result<(), FolderError> {
        let mut seen: BTreeMap<String, (&'static str, &Path)> = BTreeMap::new();
        let metrics_image = Path::new("the run");
        if self.metrics {
            seen.insert(METRICS_CSV.to_string(), ("score table", metrics_image));
        }
        for job in jobs {
            for (kind, name) in self.names(job) {
                match seen.get(&name.to_lowercase()) {
                    Some(&(first_kind, first)) => {
                        return Err(FolderError::OutputCollision {
                            dir: self.dir.clone(),
                            output: name.into(),
                            first_kind,
                            first: first.to_path_buf(),
                            second_kind: kind,
                            second: job.image.clone(),
                        })
                    }
                    None => {
                        seen.insert(name.to_lowercase(), (kind, &job.image));
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses an output folder that holds any input (an image, a reference mask) or is an input folder:
    /// the next run over the inputs would then find the outputs among them.
    pub fn check_not_among_inputs(
        &self,
        jobs: &[ImageJob],
        input_dirs: &[(&'static str, &Path)],
    ) -> Result<(), FolderError> {
        let among = |flag: &'static str, input: &Path| -> Result<(), FolderError> {
            if same_file(&imaging::files::folder_of(input), &self.dir) || same_file(input, &self.dir) {
                return Err(FolderError::OutputAmongInputs {
                    dir: self.dir.clone(),
                    flag,
                    input: input.to_path_buf(),
                });
            }
            Ok(())
        };
        for &(flag, dir) in input_dirs {
            if same_file(dir, &self.dir) {
                return Err(FolderError::OutputAmongInputs {
                    dir: self.dir.clone(),
                    flag,
                    input: dir.to_path_buf(),
                });
            }
        }
        for job in jobs {
            among("--image", &job.image)?;
            if let Some(mask) = &job.mask {
                among("--mask-dir", mask)?;
            }
        }
        Ok(())
    }

    /// Adds the `planned` outputs of one image to `files` and returns where to write them.
    pub fn add(&self, planned: &[PlannedOutput], files: &mut OutputSet) -> Result<Destinations, FileError> {
        let label = self.geojson.clone().unwrap_or_default();
        outputs::destinations(planned, &label, Default::default(), None, |o| files.add(o.flag, &o.path))
    }
}

/// What a folder run tells as it goes: the CLI draws progress bars and prints a line per image from it;
/// tests record it.
pub trait FolderObserver {
    /// Image `index` of `count` starts; its plan has `tiles` tiles (0 when it could not be opened).
    fn image_started(&mut self, _index: usize, _count: usize, _job: &ImageJob, _tiles: usize) {}
    /// `tiles` more tiles of the current image are done.
    fn tiles_done(&mut self, _tiles: usize) {}
    /// The current image is done (its outputs in place) or failed (none of its outputs written).
    fn image_finished(&mut self, _job: &ImageJob, _result: &Result<ImageReport, PipelineError>) {}
}

/// An observer that ignores everything.
pub struct Silent;

impl FolderObserver for Silent {}

/// What a folder run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderReport {
    /// One row per image predicted (failed images have none).
    pub table: MetricsTable,
    /// The images of this run (this shard's), and how many of them failed.
    pub images: usize,
    pub failures: usize,
    /// `metrics.csv`, when written.
    pub metrics_csv: Option<PathBuf>,
}

/// Predicts every job into `outputs`, image after image, opening the next image on its own thread while
/// one is predicted. An image that fails is reported to `observer` and the run goes on (or stops, with
/// `fail_fast`); each image's outputs are put in place together when it succeeds. `metrics.csv` is written
/// at the end when `outputs.metrics` is set. Every image is predicted at pyramid level `level` (0: full
/// resolution); an image without that level fails with a line listing its levels.
pub fn run(
    model: &mut Model,
    jobs: &[ImageJob],
    outputs: &FolderOutputs,
    tile: usize,
    level: usize,
    fail_fast: bool,
    observer: &mut dyn FolderObserver,
) -> Result<FolderReport, PipelineError> {
    std::fs::create_dir_all(&outputs.dir)
        .map_err(|e| PipelineError::OutputFolder { dir: outputs.dir.clone(), reason: io_reason(&e) })?;
    let mut table = MetricsTable::new();
    let mut failures = 0usize;
    let open = |job: &ImageJob| {
        OpenedImage::open_level(&job.image, "--image", level, job.mask.as_deref(), "--mask-dir")
            .map(|o| o.with_mask_rule(outputs.mask_rule))
    };
    std::thread::scope(|scope| {
        // The next image is opened (a JPEG decoded) on its own thread while this one is predicted.
        let mut next = jobs.first().map(|job| scope.spawn(move || open(job)));
        for (index, job) in jobs.iter().enumerate() {
            let opened = match next.take().map(|handle| handle.join()) {
                Some(Ok(opened)) => opened,
                _ => Err(PipelineError::ReaderPanicked),
            };
            next = jobs.get(index + 1).map(|job| scope.spawn(move || open(job)));
            let result = run_job(model, job, opened, outputs, tile, index, jobs.len(), observer);
            observer.image_finished(job, &result);
            match result {
                Ok(report) => {
                    table.push(job.image.display().to_string(), report.width, report.height, report.metrics)
                }
                Err(_) => {
                    failures += 1;
                    if fail_fast {
                        break;
                    }
                }
            }
        }
        if let Some(handle) = next {
            let _ = handle.join();
        }
    });
    let metrics_csv = if outputs.metrics {
        let csv = outputs.dir.join(METRICS_CSV);
        imaging::files::write_atomic_with("--output-dir", &csv, |written| {
            let file = std::fs::File::create(written).map_err(|e| io_reason(&e))?;
            table.write_csv(std::io::BufWriter::new(file)).map_err(|e| io_reason(&e))
        })?;
        Some(csv)
    } else {
        None
    };
    Ok(FolderReport { table, images: jobs.len(), failures, metrics_csv })
}

/// One image of folder mode: its outputs checked, predicted, and put in place together.
#[allow(clippy::too_many_arguments)]
fn run_job(
    model: &mut Model,
    job: &ImageJob,
    opened: Result<OpenedImage, PipelineError>,
    outputs: &FolderOutputs,
    tile: usize,
    index: usize,
    count: usize,
    observer: &mut dyn FolderObserver,
) -> Result<ImageReport, PipelineError> {
    let mut inputs: Vec<(&str, &Path)> = vec![("--image", job.image.as_path())];
    if let Some(mask) = &job.mask {
        inputs.push(("--mask-dir", mask));
    }
    let mut files = OutputSet::new(&inputs)?;
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => {
            observer.image_started(index, count, job, 0);
            return Err(e);
        }
    };
    if model.classes() > 2 && job.mask.is_some() {
        let (what, classes) = ("--mask-dir (metrics.csv)".into(), model.classes());
        return Err(PipelineError::NotForClasses {
            what,
            classes,
            instead: "score one image at a time with --mask",
        });
    }
    let planned = outputs.planned(job);
    let destinations = outputs.add(&planned, &mut files)?;
    opened.check_outputs(&[(planned[0].path.as_path(), destinations.mask.format)])?;
    let plan = model.tiling.plan(opened.image.height(), opened.image.width(), tile)?;
    observer.image_started(index, count, job, plan.tile_count());
    let report = pipeline::run_image(model, opened, &destinations, None, tile, |n| observer.tiles_done(n))?;
    files.commit()?;
    Ok(report)
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
            FolderError::StemCollision {
                stem: "a".into(),
                first: "d/a.png".into(),
                second: "e/a.tif".into()
            }
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

    fn job(image: &str, mask: bool) -> ImageJob {
        ImageJob {
            image: image.into(),
            stem: stem_of(Path::new(image)).unwrap(),
            mask: mask.then(|| "m/x.png".into()),
        }
    }

    fn outputs(overlay: bool, errors: bool, metrics: bool) -> FolderOutputs {
        FolderOutputs {
            dir: "out".into(),
            mask_format: ImageFormat::Png,
            probabilities: true,
            geojson: None,
            objects_csv: false,
            overlay,
            errors,
            metrics,
            mask_rule: Default::default(),
        }
    }

    #[test]
    fn every_output_name_of_every_image_is_checked_against_every_other() {
        let all = outputs(true, true, true);
        // a.png's overlay and the mask of a_overlay.png.
        let err =
            all.check_collisions(&[job("in/a.png", false), job("in/a_overlay.png", false)]).unwrap_err();
        assert!(
            matches!(&err, FolderError::OutputCollision { output, first_kind: "overlay", second_kind: "mask", .. } if &**output == "a_overlay.png"),
            "{err}"
        );
        assert!(
            err.to_string().contains("in/a.png") && err.to_string().contains("in/a_overlay.png"),
            "{err}"
        );
        // The same pair without --overlay is fine.
        outputs(false, true, true)
            .check_collisions(&[job("in/a.png", false), job("in/a_overlay.png", false)])
            .unwrap();
        // Error maps only for images with a mask.
        let pair = [job("in/b.png", true), job("in/b_errors.tif", false)];
        assert!(outputs(false, true, false).check_collisions(&pair).is_err());
        let pair = [job("in/b.png", false), job("in/b_errors.tif", false)];
        outputs(false, true, false).check_collisions(&pair).unwrap();
        // Probabilities, in either order, and names that differ only in case.
        assert!(all
            .check_collisions(&[job("in/c_probabilities.png", false), job("in/c.png", false)])
            .is_ok());
        let err =
            all.check_collisions(&[job("in/d.png", false), job("in/D_Overlay.jpg", false)]).unwrap_err();
        assert!(matches!(err, FolderError::OutputCollision { .. }), "{err}");
        // An image whose mask would be metrics.csv cannot exist (masks are images), but metrics.png is fine.
        all.check_collisions(&[job("in/metrics.png", false)]).unwrap();
    }

    #[test]
    fn an_output_folder_holding_inputs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = dir.path().join("in");
        std::fs::create_dir(&inputs).unwrap();
        let image = inputs.join("a.png");
        std::fs::write(&image, b"x").unwrap();
        let jobs = [ImageJob { image: image.clone(), stem: "a".into(), mask: None }];
        let mut out = outputs(false, false, false);
        out.dir = inputs.clone();
        let err = out.check_not_among_inputs(&jobs, &[("--input-dir", &inputs)]).unwrap_err();
        assert!(matches!(err, FolderError::OutputAmongInputs { flag: "--input-dir", .. }), "{err}");
        let err = out.check_not_among_inputs(&jobs, &[]).unwrap_err();
        assert!(matches!(err, FolderError::OutputAmongInputs { flag: "--image", .. }), "{err}");
        out.dir = inputs.join(".");
        assert!(out.check_not_among_inputs(&jobs, &[]).is_err(), "another spelling of the same folder");
        out.dir = dir.path().join("out");
        out.check_not_among_inputs(&jobs, &[("--input-dir", &inputs)]).unwrap();
    }
}
