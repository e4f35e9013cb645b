//! The training loop: random crops across the training images -> network -> cross-entropy -> Adam, with a
//! tiled validation every `--val-every` iterations, and checkpoints, logs and the plot written as it goes
//! (see `outputs` for the order that keeps the folder self-consistent), so an interrupted or failed run
//! loses nothing.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand::SeedableRng;

use crate::checkpoint::{Checkpoint, CheckpointError, History, TrainingSummary, ValRecord};
use crate::data::crops::{
    self, BudgetError, ClassPixels, CropSampler, LabelledCounts, SparseLabels, TrainRegion,
};
use crate::data::{TrainingImage, UNLABELLED};
use crate::model::SegNet;
use crate::ops::Kernels;
use crate::optim::{Adam, LrSchedule};
use crate::outputs::{self, loss_csv, read_loss_csv, OutFolderError, OutputPaths, SaveContent};
use crate::plot::{self, smooth, SMOOTHING};
use crate::validate::{self, ValImage};
use imaging::classes::ClassList;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Sparse(#[from] SparseLabels),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    OutFolder(#[from] OutFolderError),
    #[error("--resume {path}: {differences}; --resume continues the same run (same data, same settings, more --iterations); to train on new data or settings from these weights, start a new run with --init-from {path}")]
    ResumeDiffers { path: PathBuf, differences: String },
    #[error("{0}")]
    Config(String),
    #[error(
        "the loss became non-finite ({loss}) at iteration {iteration}: training stopped. {kept} \
         Lower --lr (now {lr:e}) or check the image and mask"
    )]
    NonFiniteLoss { iteration: usize, loss: f32, lr: f64, kept: String },
    #[error(
        "the weights became non-finite by iteration {iteration} ({problem}): training stopped. {kept} \
         Lower --lr (now {lr:e})"
    )]
    NonFiniteWeights { iteration: usize, problem: String, lr: f64, kept: String },
    #[error("--device cuda: this trainer was built without CUDA support; rebuild it with `--features cuda` (needs the CUDA toolkit), or use --device cpu")]
    CudaNotCompiled,
    #[error("--device cuda: no usable CUDA GPU ({0}); use --device cpu")]
    CudaUnavailable(String),
    #[error("--resume: the checkpoint has already done {done} iterations, not fewer than --iterations {wanted}; raise --iterations to train further")]
    NothingToResume { done: usize, wanted: usize },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{0}")]
    Save(String),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

/// The device for `kind`; never falls back to the CPU when CUDA was asked for.
pub fn select_device(kind: DeviceKind) -> Result<Device, TrainError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if !cfg!(feature = "cuda") => Err(TrainError::CudaNotCompiled),
        DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| TrainError::CudaUnavailable(e.to_string())),
    }
}

/// Cross-entropy of logits (B,C,H,W) against labels (B*H*W) in the same (b, y, x) order, on `kernels` (the
/// network's, [`SegNet::kernels`]).
pub fn segmentation_loss(logits: &Tensor, labels: &Tensor, kernels: Kernels) -> candle_core::Result<Tensor> {
    crate::ops::segmentation_cross_entropy(logits, labels, kernels)
}

/// Everything `trainer train` takes besides the images.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub iterations: usize,
    pub batch: usize,
    pub crop: usize,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub seed: u64,
    pub augment: crops::AugmentPolicy,
    pub checkpoint_every: usize,
    /// Validate every K iterations; `None` picks K (see [`auto_val_every`]).
    pub val_every: Option<usize>,
    /// Hold out the bottom fraction of each training image's rows for validation.
    pub val_fraction: Option<f64>,
    pub out_dir: PathBuf,
    /// Continue this run (the same data and settings) from its checkpoint.
    pub resume: Option<PathBuf>,
    /// Start a new run from the weights and normalisation of this checkpoint (fine-tuning).
    pub init_from: Option<PathBuf>,
    /// The input files (flag, path) that no output may overwrite.
    pub inputs: Vec<(String, PathBuf)>,
    /// The kernels of the forward and backward passes, validation included (`--reference-ops`:
    /// [`Kernels::Reference`]).
    pub kernels: Kernels,
    /// The classes the labels hold (two by default), stored in the checkpoint.
    pub classes: ClassList,
}

impl TrainConfig {
    /// Refuses settings that cannot train: every message names the flag.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be a finite number above 0, got {}", self.lr));
        }
        if self.iterations == 0 {
            return bad("--iterations must be at least 1".into());
        }
        if let Some(f) = self.val_fraction {
            if !(f > 0.0 && f < 1.0) {
                return bad(format!("--val-fraction must be above 0 and below 1 (e.g. 0.2), got {f}"));
            }
        }
        if self.val_every == Some(0) {
            return bad("--val-every must be at least 1".into());
        }
        if self.resume.is_some() && self.init_from.is_some() {
            return bad("--resume continues a run and --init-from starts a new one: give one of them".into());
        }
        crops::check_budget(self.batch, self.crop)?;
        Ok(())
    }

    /// The settings that shape the optimisation, as flags: a resumed run must have the same.
    pub fn recipe(&self) -> Vec<(&'static str, String)> {
        let schedule = match self.schedule {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        };
        let augment = match self.augment {
            crops::AugmentPolicy::None => "none",
            crops::AugmentPolicy::Flips => "flips",
            crops::AugmentPolicy::All => "all",
        };
        vec![
            ("--batch", self.batch.to_string()),
            ("--crop", self.crop.to_string()),
            ("--lr", self.lr.to_string()),
            ("--lr-schedule", schedule.to_string()),
            ("--seed", self.seed.to_string()),
            ("--augment", augment.to_string()),
            ("--val-fraction", self.val_fraction.map_or("none".to_string(), |f| f.to_string())),
        ]
    }
}

/// The recipe flags a resumed run may change: the learning rate and its schedule (lowering the rate to
/// continue is common practice); the change is recorded as a new phase of the run.
const ADJUSTABLE: [&str; 2] = ["--lr", "--lr-schedule"];

/// A recipe as stored in a checkpoint: `--batch 4 --crop 128 ...`, then one `| from iteration N: --lr ...`
/// phase for each resume that changed an adjustable setting.
pub fn recipe_text(recipe: &[(&'static str, String)]) -> String {
    recipe.iter().map(|(flag, value)| format!("{flag} {value}")).collect::<Vec<_>>().join(" ")
}

/// The (flag, value) pairs of one phase of a stored recipe.
fn phase_pairs(phase: &str) -> Vec<(String, String)> {
    let body = phase.split_once(": ").map_or(phase, |(_, body)| body);
    body.split(" --")
        .filter_map(|part| part.trim().trim_start_matches("--").split_once(' '))
        .map(|(k, v)| (format!("--{k}"), v.to_string()))
        .collect()
}

/// The value of `flag` in force at the end of a stored recipe (its last phase that sets it).
fn stored_value(stored: &str, flag: &str) -> Option<String> {
    let phases: Vec<&str> = stored.split(" | ").collect();
    phases
        .iter()
        .rev()
        .find_map(|phase| phase_pairs(phase).into_iter().find(|(k, _)| k == flag).map(|(_, v)| v))
}

/// What forbids resuming a checkpoint's run with `recipe` on `data`, in words (empty when nothing does): the
/// data, or a setting other than the adjustable ones. A checkpoint written before runs were fingerprinted
/// records neither, and nothing can be compared.
pub fn resume_differences(
    stored: &TrainingSummary,
    recipe: &[(&'static str, String)],
    data: &str,
) -> Vec<String> {
    let mut differences = Vec::new();
    if !stored.recipe.is_empty() {
        for (flag, value) in recipe.iter().filter(|(flag, _)| !ADJUSTABLE.contains(flag)) {
            match stored_value(&stored.recipe, flag) {
                Some(old) if old == *value => {}
                Some(old) => differences.push(format!("{flag} {value} (the checkpoint's run: {old})")),
                None => differences.push(format!("{flag} {value} (the checkpoint's run did not record it)")),
            }
        }
    }
    if !stored.data.is_empty() && stored.data != data {
        differences.push(format!(
            "the data are not the checkpoint's (now: {data}; the checkpoint's run: {})",
            stored.data
        ));
    }
    differences
}

/// The recipe of a resumed run: the stored one, with a new phase from iteration `start` when an adjustable
/// setting changed.
pub fn resumed_recipe(stored: &str, recipe: &[(&'static str, String)], start: usize) -> String {
    if stored.is_empty() {
        return recipe_text(recipe);
    }
    let changed: Vec<(&'static str, String)> = recipe
        .iter()
        .filter(|(flag, value)| {
            ADJUSTABLE.contains(flag) && stored_value(stored, flag).as_deref() != Some(value)
        })
        .cloned()
        .collect();
    if changed.is_empty() {
        stored.to_string()
    } else {
        format!("{stored} | from iteration {}: {}", start + 1, recipe_text(&changed))
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub summary: TrainingSummary,
    /// Every loss and validation of this output directory's history.
    pub history: History,
    /// The best validation so far (saved as best.safetensors), if any.
    pub best: Option<ValRecord>,
    /// The validation interval used (none without validation data).
    pub val_every: Option<usize>,
    /// Iterations run by this call (fewer than `summary.iterations` after a resume), their time, and the
    /// part of it spent validating.
    pub iterations_run: usize,
    pub seconds: f64,
    pub validation_seconds: f64,
}

/// Observes training: the CLI draws a progress bar, tests stay silent.
pub trait Progress {
    fn start(&mut self, _first_iteration: usize, _total: usize) {}
    fn step(&mut self, _iteration: usize, _loss: f32, _smoothed: f32) {}
    fn validated(&mut self, _record: &ValRecord) {}
    fn message(&mut self, _text: &str) {}
    fn finish(&mut self) {}
}

/// The default validation interval: a multiple of 50 iterations at which one validation costs at most 5% of
/// the training between two validations. One validation passes `val_pixels` input pixels (halos included)
/// forward; a training step passes `step_pixels` forward, backward (about twice the forward) and through
/// Adam, so counting a validation pixel as a whole training-step pixel leaves a margin of about 3.
pub fn auto_val_every(val_pixels: usize, step_pixels: usize) -> usize {
    let steps = (20.0 * val_pixels as f64 / step_pixels.max(1) as f64).ceil() as usize;
    steps.div_ceil(50).max(1) * 50
}

/// Trains on `images` (all rows, or the rows above `--val-fraction`) and validates on `val_images` plus the
/// held-out rows, as `config` says, on `device`.
pub fn train(
    config: &TrainConfig,
    images: &[TrainingImage],
    val_images: &[TrainingImage],
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<TrainReport, TrainError> {
    config.check()?;
    if images.is_empty() {
        return Err(TrainError::Config("no training image: pass --image and --mask, or --data DIR".into()));
    }
    let has = |class: u8| images.iter().any(|i| i.labels.contains(&class));
    let classes = config.classes.len();
    if classes > 2 {
        check_classes_present(&config.classes, images)?;
    } else if !(has(0) && has(1)) {
        let only = if has(1) { "foreground" } else { "background" };
        return Err(TrainError::Config(format!(
            "every training mask is {only} only: training needs both classes among its images (a mask of one \
             class is fine as a negative example beside others)"
        )));
    }
    let paths = OutputPaths::new(&config.out_dir);
    // Created and proved writable before any work, whether the run is new or resumed.
    let created = outputs::prepare(&paths, &config.inputs)?;
    let result = run(config, images, val_images, device, progress, &paths);
    if result.is_err() {
        // A run that saved nothing leaves no folder it made (a folder with files in it stays).
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// [`train`] once its inputs and output folder are checked.
fn run(
    config: &TrainConfig,
    images: &[TrainingImage],
    val_images: &[TrainingImage],
    device: &Device,
    progress: &mut dyn Progress,
    paths: &OutputPaths,
) -> Result<TrainReport, TrainError> {
    let paths = paths.clone();
    let classes = config.classes.len();

    // What training may see, and what is held out.
    let mut regions = Vec::with_capacity(images.len());
    let mut val: Vec<ValImage> =
        val_images.iter().map(|v| ValImage { image: v.clone(), scored_from_row: 0 }).collect();
    for image in images {
        let rows = config.val_fraction.map_or(image.height, |f| crops::holdout_start(image.height, f));
        if rows < 2 {
            return Err(TrainError::Config(format!(
                "--val-fraction {} leaves {rows} training rows of {} ({} rows): lower it",
                config.val_fraction.unwrap_or(0.0),
                image.name,
                image.height
            )));
        }
        if rows < image.height {
            val.push(ValImage::held_out(image, rows));
        }
        regions.push(TrainRegion { width: image.width, rows });
    }
    let smallest = regions.iter().map(|r| r.width.min(r.rows)).min().unwrap_or(0);
    let (crop, shrunk) = crops::fit_crop(config.crop, smallest, smallest);
    if shrunk {
        progress.message(&format!(
            "note: the smallest training image (or its rows above --val-fraction) is {smallest} px on a side, \
             smaller than --crop {}: training on {crop}x{crop} crops instead",
            config.crop
        ));
    }
    // Partial labels: crops are drawn where labels are, counted over the training rows only.
    let counts = images
        .iter()
        .zip(&regions)
        .map(|(image, r)| image.is_partial().then(|| LabelledCounts::new(&image.labels, r.width, r.rows)))
        .collect();
    let mut sampler = CropSampler::with_labels(regions.clone(), counts, crop, config.augment)?;
    if classes > 2 {
        let targets =
            images.iter().zip(&regions).map(|(i, r)| ClassPixels::new(&i.labels, r.width, r.rows, classes));
        sampler = sampler.with_class_targets(targets.collect())?;
    }
    let scored_labels =
        |v: &ValImage| v.image.labels[v.scored_from_row * v.image.width..].iter().any(|&l| l != UNLABELLED);
    if !val.is_empty() && !val.iter().any(scored_labels) {
        return Err(TrainError::Config(
            "every validation pixel (the held-out rows of --val-fraction, or the --val-mask images) is \
             unlabelled: there is nothing to score; label some validation pixels (or all: validation \
             scores best against dense labels)"
                .into(),
        ));
    }
    let step_pixels = config.batch * crop * crop;
    let val_every = (!val.is_empty()).then(|| {
        config
            .val_every
            .unwrap_or_else(|| auto_val_every(val.iter().map(ValImage::input_pixels).sum(), step_pixels))
    });

    let recipe = config.recipe();
    let data = fingerprint(images, val_images);
    let mut initialized_from = String::new();
    let mut stored_recipe: Option<String> = None;
    let (net, start, moments, mut history) = match (&config.resume, &config.init_from) {
        (Some(path), _) => {
            let ck = Checkpoint::load(path, device)?;
            let mut differences = resume_differences(&ck.summary, &recipe, &data);
            if ck.summary.classes != config.classes {
                differences.push(format!(
                    "the classes are {} (the checkpoint's run: {})",
                    config.classes, ck.summary.classes
                ));
            }
            if !differences.is_empty() {
                return Err(TrainError::ResumeDiffers {
                    path: path.clone(),
                    differences: differences.join("; "),
                });
            }
            if ck.summary.recipe.is_empty() {
                progress.message(&format!(
                    "note: {} was written before runs recorded their data and settings: resuming without checking them",
                    path.display()
                ));
            }
            initialized_from = ck.summary.initialized_from.clone();
            stored_recipe = Some(ck.summary.recipe.clone());
            let done = ck.summary.iterations;
            if done >= config.iterations {
                return Err(TrainError::NothingToResume { done, wanted: config.iterations });
            }
            let mut history = ck.history;
            if history.losses.len() != done {
                // A checkpoint of format 1 carries no history: keep what loss.csv holds of it.
                let rows = read_loss_csv(&paths.loss_csv);
                let complete =
                    rows.len() >= done && rows[..done].iter().enumerate().all(|(i, r)| r.0 == i + 1);
                history.losses =
                    if complete { rows[..done].iter().map(|r| r.1).collect() } else { Vec::new() };
            }
            (ck.net, done, ck.adam, history)
        }
        (None, Some(path)) => {
            // A new run: the weights and normalisation of the checkpoint, a fresh optimiser and history.
            let ck = Checkpoint::load(path, device)?;
            if ck.net.classes() != classes {
                return Err(TrainError::Config(format!(
                    "--init-from {}: the checkpoint's network has {} classes, these labels {classes}: \
                     start from a checkpoint of as many classes, or without --init-from",
                    path.display(),
                    ck.net.classes()
                )));
            }
            initialized_from = format!(
                "{} (iteration {} of a run on {})",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                ck.summary.iterations,
                if ck.summary.image.is_empty() { "unrecorded data" } else { ck.summary.image.as_str() }
            );
            (ck.net, 0, None, History::default())
        }
        (None, None) => {
            let pooled: Vec<(&TrainingImage, usize)> =
                images.iter().zip(&regions).map(|(i, r)| (i, r.rows)).collect();
            let norm = crops::normalization_over(&pooled);
            (SegNet::random_with_classes(classes, config.seed, norm, device)?, 0, None, History::default())
        }
    };
    let net = net.with_kernels(config.kernels);
    let mut adam = Adam::new(&net, config.lr, start, moments)?;
    let join = |names: Vec<&str>| names.join(", ");
    let mut summary = TrainingSummary {
        iterations: start,
        final_loss: history.losses.last().copied().unwrap_or(f32::NAN),
        image: join(images.iter().map(|i| i.name.as_str()).collect()),
        mask: join(images.iter().map(|i| i.mask_name.as_str()).collect()),
        batch: config.batch,
        crop,
        learning_rate: config.lr,
        seed: config.seed,
        recipe: match &stored_recipe {
            Some(stored) => resumed_recipe(stored, &recipe, start),
            None => recipe_text(&recipe),
        },
        data,
        initialized_from,
        classes: config.classes.clone(),
    };
    // The iteration of the last checkpoint this run's history is in (a resumed one counts).
    let mut last_saved: Option<usize> = config.resume.as_ref().map(|_| start);
    if config.resume.is_some() {
        restore_best(&paths, &net, &adam, &summary, &history)?;
    }

    let timer = std::time::Instant::now();
    let mut validation_seconds = 0.0;
    // The displayed smoothed loss continues a resumed history.
    let resumed = smooth(&history.losses, SMOOTHING).last().copied();
    let (mut acc, mut norm) = (resumed.unwrap_or(0.0), if resumed.is_some() { 1.0 } else { 0.0 });
    progress.start(start, config.iterations);
    if let Some(last) = history.validation.last() {
        progress.validated(last);
    }
    for iteration in start + 1..=config.iterations {
        // Each iteration draws from its own stream, so a resumed run sees the crops an uninterrupted one would.
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            config.seed ^ (iteration as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let crops: Vec<_> = (0..config.batch).map(|_| sampler.sample(&mut rng)).collect();
        let batch = crops::assemble_batch(images, &crops);
        let x = Tensor::from_vec(batch.pixels, (batch.size, 3, crop, crop), device)?;
        let y = Tensor::from_vec(batch.labels, batch.size * crop * crop, device)?;
        adam.lr = config.schedule.rate(config.lr, iteration, config.iterations);
        let loss = segmentation_loss(&net.forward(&x)?, &y, net.kernels)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            progress.finish();
            let kept = kept_message(&paths, last_saved);
            if last_saved.is_some() {
                // Logs past the checkpoint show the divergence and keep the folder consistent.
                write_logs_only(&paths, &history)?;
            }
            return Err(TrainError::NonFiniteLoss { iteration, loss: value, lr: config.lr, kept });
        }
        adam.apply(&loss.backward()?)?;
        history.losses.push(value);
        acc = acc * SMOOTHING + (1.0 - SMOOTHING) * value;
        norm = norm * SMOOTHING + (1.0 - SMOOTHING);
        summary.iterations = iteration;
        summary.final_loss = value;
        progress.step(iteration, value, acc / norm);

        let last = iteration == config.iterations;
        let validate_now = val_every.is_some_and(|k| iteration % k == 0 || last);
        let mut improved = false;
        if validate_now {
            let t = std::time::Instant::now();
            let record = validate::validate(&net, &val, iteration, device)?;
            validation_seconds += t.elapsed().as_secs_f64();
            improved = history.best().is_none_or(|b| record.iou > b.iou);
            history.validation.push(record);
            progress.validated(&record);
        }
        let checkpoint_now = config.checkpoint_every > 0 && iteration % config.checkpoint_every == 0;
        if checkpoint_now || validate_now || last {
            let first_of_new_run = last_saved.is_none();
            save(&paths, &net, &adam, &summary, &history, improved, first_of_new_run).map_err(
                |e| match e {
                    TrainError::Checkpoint(CheckpointError::BadValue { problem, .. }) => {
                        TrainError::NonFiniteWeights {
                            iteration,
                            problem: problem.to_string(),
                            lr: config.lr,
                            kept: kept_message(&paths, last_saved),
                        }
                    }
                    e => e,
                },
            )?;
            last_saved = Some(iteration);
        }
    }
    progress.finish();
    let best = history.best();
    Ok(TrainReport {
        summary,
        history,
        best,
        val_every,
        iterations_run: config.iterations - start,
        seconds: timer.elapsed().as_secs_f64(),
        validation_seconds,
    })
}

fn kept_message(paths: &OutputPaths, last_saved: Option<usize>) -> String {
    match last_saved {
        Some(i) => {
            format!("The last good checkpoint (iteration {i}) is kept in {}.", paths.checkpoint.display())
        }
        None => "No checkpoint had been written yet; --out is as it was.".to_string(),
    }
}

/// The checkpoint of the network as it is now.
fn checkpoint_of(
    net: &SegNet,
    adam: &Adam,
    summary: &TrainingSummary,
    history: &History,
) -> Result<Checkpoint, TrainError> {
    let ck = Checkpoint {
        net: clone_net(net)?,
        summary: summary.clone(),
        adam: Some(adam.moments()),
        history: history.clone(),
    };
    ck.check_values()
        .map_err(|problem| CheckpointError::BadValue { path: PathBuf::from("checkpoint"), problem })?;
    Ok(ck)
}

/// One save: logs, then the checkpoint, then best.safetensors if `improved` (see `outputs`).
fn save(
    paths: &OutputPaths,
    net: &SegNet,
    adam: &Adam,
    summary: &TrainingSummary,
    history: &History,
    improved: bool,
    first_of_new_run: bool,
) -> Result<(), TrainError> {
    let ck = checkpoint_of(net, adam, summary, history)?;
    let bytes = ck.to_bytes()?;
    let loss_png = plot::training_plot_png(&history.loss_rows(), &history.validation)
        .map_err(|reason| TrainError::Write { path: paths.loss_png.clone(), reason })?;
    let content = SaveContent {
        history,
        loss_png,
        best: improved.then(|| bytes.clone()),
        checkpoint: bytes,
        first_of_new_run,
    };
    for step in outputs::save_steps(paths, content) {
        step.apply().map_err(TrainError::Save)?;
    }
    Ok(())
}

/// loss.csv, val.csv and loss.png alone (after the last checkpoint, when training stops on a bad loss).
fn write_logs_only(paths: &OutputPaths, history: &History) -> Result<(), TrainError> {
    let write_err = |path: &PathBuf, reason: String| TrainError::Write { path: path.clone(), reason };
    let rows = history.loss_rows();
    imaging::files::write_atomic("--out", &paths.loss_csv, loss_csv(&rows).as_bytes())
        .map_err(|e| TrainError::Save(e.to_string()))?;
    let png =
        plot::training_plot_png(&rows, &history.validation).map_err(|e| write_err(&paths.loss_png, e))?;
    imaging::files::write_atomic("--out", &paths.loss_png, &png).map_err(|e| TrainError::Save(e.to_string()))
}

/// On resume: when the checkpoint itself is the best validation of its history but best.safetensors is not
/// that model (a run killed between the two renames), write it now.
fn restore_best(
    paths: &OutputPaths,
    net: &SegNet,
    adam: &Adam,
    summary: &TrainingSummary,
    history: &History,
) -> Result<(), TrainError> {
    let Some(best) = history.best() else { return Ok(()) };
    if best.iteration != summary.iterations {
        return Ok(());
    }
    let on_disk = Checkpoint::load(&paths.best, &Device::Cpu).ok().map(|c| c.summary.iterations);
    if on_disk != Some(best.iteration) {
        let bytes = checkpoint_of(net, adam, summary, history)?.to_bytes()?;
        imaging::files::write_atomic("--out", &paths.best, &bytes)
            .map_err(|e| TrainError::Save(e.to_string()))?;
    }
    Ok(())
}

/// A copy of the network's current weights (the checkpoint owns its network).
fn clone_net(net: &SegNet) -> Result<SegNet, TrainError> {
    let tensors = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.copy()?)))
        .collect::<Result<_, TrainError>>()?;
    Ok(SegNet::from_tensors(&tensors, net.normalization, &Device::Cpu)?.with_kernels(net.kernels))
}

/// With more than two classes, every class must be in some training mask (a class never seen cannot be
/// learned), and no label may be beyond the classes.
fn check_classes_present(classes: &ClassList, images: &[TrainingImage]) -> Result<(), TrainError> {
    let mut seen = [false; 256];
    for image in images {
        for &l in &image.labels {
            seen[l as usize] = true;
        }
    }
    if let Some(beyond) = (classes.len()..UNLABELLED as usize).find(|&v| seen[v]) {
        return Err(TrainError::Config(format!(
            "a training mask holds class {beyond}, beyond the {} classes ({classes}): raise --classes or \
             check the masks",
            classes.len()
        )));
    }
    let missing: Vec<String> =
        (0..classes.len()).filter(|&c| !seen[c]).map(|c| format!("{c} ({})", classes.names[c])).collect();
    if !missing.is_empty() {
        return Err(TrainError::Config(format!(
            "no training mask holds class {}: every class needs training pixels; label some, or lower \
             --classes",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The data of a run in one line: each training and validation image by name, size and a hash of its
/// pixels and labels, so a resume on other data is found whatever the files are called.
pub fn fingerprint(images: &[TrainingImage], val_images: &[TrainingImage]) -> String {
    let describe = |prefix: &str, image: &TrainingImage| {
        format!("{prefix}{} {}x{} {:016x}", image.name, image.width, image.height, image.content_hash())
    };
    images
        .iter()
        .map(|i| describe("", i))
        .chain(val_images.iter().map(|i| describe("validation ", i)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_interval_keeps_validation_cheap() {
        // data/conifer with --val-fraction 0.2: about 146k input pixels per validation, 4 x 128^2 per step.
        assert_eq!(auto_val_every(146_000, 65_536), 50);
        assert_eq!(auto_val_every(1, 65_536), 50);
        // A 4096^2 validation image: 20 x 16.8M / 65k = 5120 steps, rounded up to 5150.
        assert_eq!(auto_val_every(4096 * 4096, 65_536), 5150);
    }

    #[test]
    fn settings_that_cannot_train_are_refused_naming_the_flag() {
        let ok = TrainConfig {
            iterations: 10,
            batch: 4,
            crop: 128,
            lr: 1e-3,
            schedule: LrSchedule::Cosine,
            seed: 0,
            augment: crops::AugmentPolicy::All,
            checkpoint_every: 0,
            val_every: None,
            val_fraction: None,
            out_dir: PathBuf::from("out"),
            resume: None,
            init_from: None,
            inputs: Vec::new(),
            kernels: Kernels::Fast,
            classes: ClassList::default(),
        };
        assert!(ok.check().is_ok());
        let both = TrainConfig { resume: Some("a".into()), init_from: Some("b".into()), ..ok.clone() };
        assert!(both.check().unwrap_err().to_string().contains("give one of them"));
        let err = |c: TrainConfig| c.check().unwrap_err().to_string();
        for lr in [f64::NAN, f64::INFINITY, 0.0, -1e-3] {
            assert!(err(TrainConfig { lr, ..ok.clone() }).starts_with("--lr must be a finite number above 0"));
        }
        assert!(err(TrainConfig { iterations: 0, ..ok.clone() }).contains("--iterations must be at least 1"));
        for f in [0.0, 1.0, f64::NAN] {
            assert!(err(TrainConfig { val_fraction: Some(f), ..ok.clone() }).starts_with("--val-fraction"));
        }
        assert!(err(TrainConfig { val_every: Some(0), ..ok.clone() }).contains("--val-every"));
        assert!(err(TrainConfig { crop: usize::MAX / 2 + 1, ..ok.clone() }).contains("budget"));
    }

    #[test]
    fn a_resume_names_every_setting_and_the_data_that_differ() {
        let recipe = |batch: usize, lr: &str| {
            vec![("--batch", batch.to_string()), ("--lr", lr.to_string()), ("--seed", "0".to_string())]
        };
        let stored = TrainingSummary {
            recipe: recipe_text(&recipe(4, "0.001")),
            data: "image.png 64x48 00000000000000aa".into(),
            ..TrainingSummary::default()
        };
        assert!(resume_differences(&stored, &recipe(4, "0.001"), &stored.data).is_empty());
        let differences = resume_differences(&stored, &recipe(2, "0.01"), "other.png 64x48 00000000000000bb");
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[0].contains("--batch 2 (the checkpoint's run: 4)"), "{differences:?}");
        assert!(differences[1].contains("the data are not the checkpoint's"), "{differences:?}");
        // The learning rate may change: the run records it as a new phase.
        let phased = resumed_recipe(&stored.recipe, &recipe(4, "0.0001"), 3000);
        assert_eq!(phased, "--batch 4 --lr 0.001 --seed 0 | from iteration 3001: --lr 0.0001");
        assert_eq!(resumed_recipe(&phased, &recipe(4, "0.0001"), 4000), phased, "no change, no phase");
        let back = resumed_recipe(&phased, &recipe(4, "0.001"), 5000);
        assert!(back.ends_with(" | from iteration 5001: --lr 0.001"), "{back}");
        let later = TrainingSummary { recipe: phased, ..stored.clone() };
        assert!(resume_differences(&later, &recipe(4, "0.5"), &stored.data).is_empty());
        assert_eq!(resume_differences(&later, &recipe(8, "0.5"), &stored.data).len(), 1);
        // A checkpoint from before runs were fingerprinted: nothing to compare.
        assert!(resume_differences(&TrainingSummary::default(), &recipe(2, "0.1"), "x").is_empty());
    }

    #[test]
    fn cuda_is_refused_clearly_without_the_feature() {
        if cfg!(feature = "cuda") {
            return;
        }
        let err = select_device(DeviceKind::Cuda).unwrap_err().to_string();
        assert!(err.contains("without CUDA support") && err.contains("--features cuda"), "{err}");
    }
}
