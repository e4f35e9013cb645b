//! The training loop: random crops across the training images -> network -> cross-entropy -> Adam, with a
//! tiled validation every `--val-every` iterations, and checkpoints, logs and the plot written as it goes
//! (see `outputs` for the order that keeps the folder self-consistent), so an interrupted or failed run
//! loses nothing.

use std::path::PathBuf;

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

use crate::checkpoint::{AdamMoments, Checkpoint, CheckpointError, History, TrainingSummary, ValRecord};
use crate::data::{self, BudgetError, CropSampler, TrainRegion, TrainingImage};
use crate::model::SegNet;
use crate::ops::Kernels;
use crate::outputs::{self, OutputIsInput, OutputPaths, SaveContent};
pub use crate::outputs::{loss_csv, read_loss_csv, read_val_csv};
use crate::plot::{self, smooth, SMOOTHING};
use crate::validate::{self, ValImage};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    OutputIsInput(#[from] OutputIsInput),
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

/// Adam (Kingma & Ba) with bias correction and no weight decay, like `torch.optim.Adam`. Its moments go
/// into the checkpoint so that `--resume` continues the same optimisation.
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken so far.
    pub step: usize,
    vars: Vec<(String, Var)>,
    moments: Vec<(Tensor, Tensor)>,
}

impl Adam {
    pub fn new(
        net: &SegNet,
        lr: f64,
        step: usize,
        moments: Option<AdamMoments>,
    ) -> candle_core::Result<Adam> {
        let names = net.named_tensors().into_iter().map(|(n, _)| n);
        let vars: Vec<(String, Var)> = names.zip(net.vars()).collect();
        let moments = vars
            .iter()
            .map(|(name, var)| match moments.as_ref().and_then(|m| m.get(name)) {
                Some((m, v)) => Ok((m.clone(), v.clone())),
                None => Ok((var.zeros_like()?, var.zeros_like()?)),
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, step, vars, moments })
    }

    pub fn apply(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let step_size = self.lr / (1.0 - self.beta1.powi(t));
        let v_correction = (1.0 - self.beta2.powi(t)).sqrt();
        for ((_, var), (m, v)) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            *m = ((&*m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / v_correction)? + self.eps)?;
            var.set(&var.as_tensor().sub(&((&*m / denom)? * step_size)?)?)?;
        }
        Ok(())
    }

    pub fn moments(&self) -> AdamMoments {
        self.vars
            .iter()
            .zip(&self.moments)
            .map(|((n, _), (m, v))| (n.clone(), (m.clone(), v.clone())))
            .collect()
    }
}

/// How the learning rate changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrSchedule {
    /// `--lr` throughout (the CLI's default: the best held-out IoU in the README's study).
    Constant,
    /// From `--lr` down to 0 along half a cosine over `--iterations`: the late, small steps fit the training
    /// crops more closely, which helped on data/ihc with augmentation and cost held-out IoU on data/conifer.
    Cosine,
}

impl LrSchedule {
    /// The learning rate of (1-based) `iteration` out of `total`.
    pub fn rate(self, base: f64, iteration: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let progress = (iteration.saturating_sub(1)) as f64 / total.max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Cross-entropy of logits (B,2,H,W) against labels (B*H*W) in the same (b, y, x) order, on `kernels` (the
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
    pub augment: data::AugmentPolicy,
    pub checkpoint_every: usize,
    /// Validate every K iterations; `None` picks K (see [`auto_val_every`]).
    pub val_every: Option<usize>,
    /// Hold out the bottom fraction of each training image's rows for validation.
    pub val_fraction: Option<f64>,
    pub out_dir: PathBuf,
    pub resume: Option<PathBuf>,
    /// The input files (flag, path) that no output may overwrite.
    pub inputs: Vec<(String, PathBuf)>,
    /// The kernels of the forward and backward passes, validation included (`--reference-ops`:
    /// [`Kernels::Reference`]).
    pub kernels: Kernels,
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
        data::check_budget(self.batch, self.crop)?;
        Ok(())
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
    /// Set when the crop was shrunk to fit a small image.
    pub crop_shrunk_from: Option<usize>,
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

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

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
    let paths = OutputPaths::new(&config.out_dir);
    outputs::check_outputs_are_not_inputs(&paths, &config.inputs)?;

    // What training may see, and what is held out.
    let mut regions = Vec::with_capacity(images.len());
    let mut val: Vec<ValImage> =
        val_images.iter().map(|v| ValImage { image: v.clone(), scored_from_row: 0 }).collect();
    for image in images {
        let rows = config.val_fraction.map_or(image.height, |f| data::holdout_start(image.height, f));
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
    let (crop, shrunk) = data::fit_crop(config.crop, smallest, smallest);
    if shrunk {
        progress.message(&format!(
            "note: the smallest training image (or its rows above --val-fraction) is {smallest} px on a side, \
             smaller than --crop {}: training on {crop}x{crop} crops instead",
            config.crop
        ));
    }
    let sampler = CropSampler::new(regions.clone(), crop, config.augment);
    let step_pixels = config.batch * crop * crop;
    let val_every = (!val.is_empty()).then(|| {
        config
            .val_every
            .unwrap_or_else(|| auto_val_every(val.iter().map(ValImage::input_pixels).sum(), step_pixels))
    });

    let (net, start, moments, mut history) = match &config.resume {
        Some(path) => {
            let ck = Checkpoint::load(path, device)?;
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
        None => {
            let pooled: Vec<(&TrainingImage, usize)> =
                images.iter().zip(&regions).map(|(i, r)| (i, r.rows)).collect();
            let norm = data::normalization_over(&pooled);
            (SegNet::random(config.seed, norm, device)?, 0, None, History::default())
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
        let batch = data::assemble_batch(images, &crops);
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
        crop_shrunk_from: shrunk.then_some(config.crop),
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
    create_out_dir(paths)?;
    for step in outputs::save_steps(paths, content) {
        step.apply().map_err(|e| TrainError::Write {
            path: step.path().to_path_buf(),
            reason: crate::fsutil::io_reason(&e),
        })?;
    }
    Ok(())
}

fn create_out_dir(paths: &OutputPaths) -> Result<(), TrainError> {
    std::fs::create_dir_all(&paths.dir).map_err(|e| TrainError::Write {
        path: paths.dir.clone(),
        reason: format!("{}; --out must be a folder that can be created", crate::fsutil::io_reason(&e)),
    })
}

/// loss.csv, val.csv and loss.png alone (after the last checkpoint, when training stops on a bad loss).
fn write_logs_only(paths: &OutputPaths, history: &History) -> Result<(), TrainError> {
    let write_err = |path: &PathBuf, reason: String| TrainError::Write { path: path.clone(), reason };
    let rows = history.loss_rows();
    crate::fsutil::write_atomic(&paths.loss_csv, loss_csv(&rows).as_bytes())
        .map_err(|e| write_err(&paths.loss_csv, crate::fsutil::io_reason(&e)))?;
    let png =
        plot::training_plot_png(&rows, &history.validation).map_err(|e| write_err(&paths.loss_png, e))?;
    crate::fsutil::write_atomic(&paths.loss_png, &png)
        .map_err(|e| write_err(&paths.loss_png, crate::fsutil::io_reason(&e)))
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
        crate::fsutil::write_atomic(&paths.best, &bytes).map_err(|e| TrainError::Write {
            path: paths.best.clone(),
            reason: crate::fsutil::io_reason(&e),
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Normalization;

    #[test]
    fn adam_matches_candle_adamw_without_decay() {
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let net_a = SegNet::random(3, Normalization::IDENTITY, &dev).unwrap();
        let net_b = SegNet::random(3, Normalization::IDENTITY, &dev).unwrap();
        let mut ours = Adam::new(&net_a, 1e-2, 0, None).unwrap();
        let params = candle_nn::ParamsAdamW { lr: 1e-2, weight_decay: 0.0, ..Default::default() };
        let mut theirs = candle_nn::AdamW::new(net_b.vars(), params).unwrap();
        // A fixed input: the test must not depend on an unseeded generator.
        let pixels: Vec<f32> = (0..3 * 64).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let x = Tensor::from_vec(pixels, (1, 3, 8, 8), &dev).unwrap();
        let y = Tensor::new([0u32, 1].repeat(32).as_slice(), &dev).unwrap();
        for _ in 0..3 {
            let loss = |net: &SegNet| segmentation_loss(&net.forward(&x).unwrap(), &y, net.kernels).unwrap();
            ours.apply(&loss(&net_a).backward().unwrap()).unwrap();
            theirs.backward_step(&loss(&net_b)).unwrap();
        }
        for ((_, a), (_, b)) in net_a.named_tensors().iter().zip(net_b.named_tensors()) {
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            // Each step moves a weight by up to lr = 1e-2; float-order differences between the two
            // implementations stay far below 1% of that.
            assert!(d < 1e-4, "difference {d}");
        }
    }

    #[test]
    fn cosine_schedule_decays_from_the_base_rate_to_near_zero() {
        let s = LrSchedule::Cosine;
        assert_eq!(s.rate(1e-3, 1, 100), 1e-3);
        assert!((s.rate(1e-3, 51, 100) - 0.5e-3).abs() < 1e-12);
        assert!(s.rate(1e-3, 100, 100) < 1e-6 && s.rate(1e-3, 100, 100) > 0.0);
        assert_eq!(LrSchedule::Constant.rate(1e-3, 100, 100), 1e-3);
    }

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
            augment: data::AugmentPolicy::All,
            checkpoint_every: 0,
            val_every: None,
            val_fraction: None,
            out_dir: PathBuf::from("out"),
            resume: None,
            inputs: Vec::new(),
            kernels: Kernels::Fast,
        };
        assert!(ok.check().is_ok());
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
    fn cuda_is_refused_clearly_without_the_feature() {
        if cfg!(feature = "cuda") {
            return;
        }
        let err = select_device(DeviceKind::Cuda).unwrap_err().to_string();
        assert!(err.contains("without CUDA support") && err.contains("--features cuda"), "{err}");
    }
}
