//! The training loop: random crops -> network -> cross-entropy -> Adam, with checkpoints, the loss log and
//! the loss plot written as it goes, so an interrupted or failed run loses nothing.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

use crate::checkpoint::{AdamMoments, Checkpoint, CheckpointError, TrainingSummary};
use crate::data::{self, BudgetError, TrainingImage};
use crate::fsutil::write_atomic;
use crate::model::{Normalization, SegNet};
use crate::plot;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "the loss became {loss} at iteration {iteration}: training stopped. {kept} \
         Lower --lr (now {lr:e}) or check the image and mask"
    )]
    NonFiniteLoss { iteration: usize, loss: f32, lr: f64, kept: String },
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
    /// `--lr` throughout.
    Constant,
    /// From `--lr` down to 0 along half a cosine over `--iterations`: the late, small steps settle the noisy
    /// single-image gradients and give a better final model than a constant rate.
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

/// Cross-entropy of logits (B,2,H,W) against labels (B*H*W) in the same (b, y, x) order.
pub fn segmentation_loss(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    crate::ops::segmentation_cross_entropy(logits, labels)
}

/// Everything `trainer train` takes.
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
    pub out_dir: PathBuf,
    pub resume: Option<PathBuf>,
    /// Names recorded in the checkpoint's summary.
    pub image_name: String,
    pub mask_name: String,
}

/// Where training writes.
pub struct OutputPaths {
    pub checkpoint: PathBuf,
    pub loss_csv: PathBuf,
    pub loss_png: PathBuf,
}

impl OutputPaths {
    pub fn new(dir: &Path) -> OutputPaths {
        OutputPaths {
            checkpoint: dir.join("checkpoint.safetensors"),
            loss_csv: dir.join("loss.csv"),
            loss_png: dir.join("loss.png"),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub summary: TrainingSummary,
    /// (iteration, loss) for every iteration of this output directory's history.
    pub losses: Vec<(usize, f32)>,
    /// Set when the crop was shrunk to fit a small image.
    pub crop_shrunk_from: Option<usize>,
    /// Iterations run by this call (fewer than `summary.iterations` after a resume), and their time.
    pub iterations_run: usize,
    pub seconds: f64,
}

/// Observes training: the CLI draws a progress bar, tests stay silent.
pub trait Progress {
    fn start(&mut self, _first_iteration: usize, _total: usize) {}
    fn step(&mut self, _iteration: usize, _loss: f32, _smoothed: f32) {}
    fn message(&mut self, _text: &str) {}
    fn finish(&mut self) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Smoothing weight of the displayed loss (an exponential moving average, debiased as TensorBoard does).
pub const SMOOTHING: f32 = 0.98;

/// The debiased exponential moving average of `values`.
pub fn smooth(values: &[f32], weight: f32) -> Vec<f32> {
    let mut acc = 0f32;
    let mut norm = 0f32;
    values
        .iter()
        .map(|&v| {
            acc = acc * weight + (1.0 - weight) * v;
            norm = norm * weight + (1.0 - weight);
            acc / norm
        })
        .collect()
}

/// Trains on `image` as `config` says, on `device`.
pub fn train(
    config: &TrainConfig,
    image: &TrainingImage,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<TrainReport, TrainError> {
    data::check_budget(config.batch, config.crop)?;
    let (crop, shrunk) = data::fit_crop(config.crop, image.width, image.height);
    if shrunk {
        progress.message(&format!(
            "note: the image is {}x{}, smaller than --crop {}: training on {crop}x{crop} crops instead",
            image.width, image.height, config.crop
        ));
    }
    let paths = OutputPaths::new(&config.out_dir);
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|e| TrainError::Write { path: config.out_dir.clone(), reason: e.to_string() })?;

    let (net, start, moments, mut losses) = match &config.resume {
        Some(path) => {
            let ck = Checkpoint::load(path, device)?;
            let done = ck.summary.iterations;
            if done >= config.iterations {
                return Err(TrainError::NothingToResume { done, wanted: config.iterations });
            }
            let history = read_loss_csv(&paths.loss_csv).into_iter().filter(|&(i, _)| i <= done).collect();
            (ck.net, done, ck.adam, history)
        }
        None => {
            let norm = Normalization::from_rgb_bytes(&image.rgb);
            (SegNet::random(config.seed, norm, device)?, 0, None, Vec::new())
        }
    };
    let mut adam = Adam::new(&net, config.lr, start, moments)?;
    let mut summary = TrainingSummary {
        iterations: start,
        final_loss: losses.last().map_or(f32::NAN, |&(_, l)| l),
        image: config.image_name.clone(),
        mask: config.mask_name.clone(),
        batch: config.batch,
        crop,
        learning_rate: config.lr,
        seed: config.seed,
    };
    let mut last_saved: Option<usize> = config.resume.as_ref().map(|_| start);
    let save = |net: &SegNet, adam: &Adam, summary: &TrainingSummary, losses: &[(usize, f32)]| {
        let ck = Checkpoint { net: clone_net(net)?, summary: summary.clone(), adam: Some(adam.moments()) };
        ck.save(&paths.checkpoint)?;
        write_logs(&paths, losses)
    };

    let timer = std::time::Instant::now();
    // The displayed smoothed loss continues a resumed history.
    let resumed = smooth(&losses.iter().map(|l| l.1).collect::<Vec<_>>(), SMOOTHING).last().copied();
    let (mut acc, mut norm) = (resumed.unwrap_or(0.0), if resumed.is_some() { 1.0 } else { 0.0 });
    progress.start(start, config.iterations);
    for iteration in start + 1..=config.iterations {
        // Each iteration draws from its own stream, so a resumed run sees the crops an uninterrupted one would.
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            config.seed ^ (iteration as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let crops: Vec<_> = (0..config.batch)
            .map(|_| data::sample_crop(&mut rng, image.width, image.height, crop, config.augment))
            .collect();
        let batch = data::assemble_batch(image, &crops);
        let x = Tensor::from_vec(batch.pixels, (batch.size, 3, crop, crop), device)?;
        let y = Tensor::from_vec(batch.labels, batch.size * crop * crop, device)?;
        adam.lr = config.schedule.rate(config.lr, iteration, config.iterations);
        let loss = segmentation_loss(&net.forward(&x)?, &y)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            progress.finish();
            write_logs(&paths, &losses)?;
            let kept = match last_saved {
                Some(i) => format!(
                    "The last good checkpoint (iteration {i}) is kept in {}.",
                    paths.checkpoint.display()
                ),
                None => "No checkpoint had been written yet.".to_string(),
            };
            return Err(TrainError::NonFiniteLoss { iteration, loss: value, lr: config.lr, kept });
        }
        adam.apply(&loss.backward()?)?;
        losses.push((iteration, value));
        acc = acc * SMOOTHING + (1.0 - SMOOTHING) * value;
        norm = norm * SMOOTHING + (1.0 - SMOOTHING);
        summary.iterations = iteration;
        summary.final_loss = value;
        progress.step(iteration, value, acc / norm);
        if config.checkpoint_every > 0
            && iteration % config.checkpoint_every == 0
            && iteration < config.iterations
        {
            save(&net, &adam, &summary, &losses)?;
            last_saved = Some(iteration);
        }
    }
    save(&net, &adam, &summary, &losses)?;
    progress.finish();
    Ok(TrainReport {
        summary,
        losses,
        crop_shrunk_from: shrunk.then_some(config.crop),
        iterations_run: config.iterations - start,
        seconds: timer.elapsed().as_secs_f64(),
    })
}

/// A copy of the network's current weights (the checkpoint owns its network).
fn clone_net(net: &SegNet) -> Result<SegNet, TrainError> {
    let tensors = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.copy()?)))
        .collect::<Result<_, TrainError>>()?;
    Ok(SegNet::from_tensors(&tensors, net.normalization, &Device::Cpu)?)
}

fn write_logs(paths: &OutputPaths, losses: &[(usize, f32)]) -> Result<(), TrainError> {
    let write_err = |path: &Path, e: String| TrainError::Write { path: path.to_path_buf(), reason: e };
    write_atomic(&paths.loss_csv, loss_csv(losses).as_bytes())
        .map_err(|e| write_err(&paths.loss_csv, e.to_string()))?;
    if !losses.is_empty() {
        let png = plot::loss_plot_png(losses).map_err(|e| write_err(&paths.loss_png, e))?;
        write_atomic(&paths.loss_png, &png).map_err(|e| write_err(&paths.loss_png, e.to_string()))?;
    }
    Ok(())
}

/// `iteration,loss` with one row per iteration.
pub fn loss_csv(losses: &[(usize, f32)]) -> String {
    let mut s = String::from("iteration,loss\n");
    for (i, l) in losses {
        s.push_str(&format!("{i},{l}\n"));
    }
    s
}

/// The rows of an existing loss.csv; unreadable rows (or no file) give nothing.
pub fn read_loss_csv(path: &Path) -> Vec<(usize, f32)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let (i, l) = line.split_once(',')?;
            Some((i.trim().parse().ok()?, l.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ours.apply(&segmentation_loss(&net_a.forward(&x).unwrap(), &y).unwrap().backward().unwrap())
                .unwrap();
            theirs.backward_step(&segmentation_loss(&net_b.forward(&x).unwrap(), &y).unwrap()).unwrap();
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
    fn smoothing_is_debiased() {
        assert_eq!(smooth(&[2.0, 2.0, 2.0], 0.9), vec![2.0, 2.0, 2.0]);
        let s = smooth(&[1.0, 0.0], 0.5);
        assert!((s[1] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn loss_csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.csv");
        let rows = vec![(1, 0.5f32), (2, 0.25)];
        std::fs::write(&path, loss_csv(&rows)).unwrap();
        assert!(loss_csv(&rows).starts_with("iteration,loss\n1,0.5\n"));
        assert_eq!(read_loss_csv(&path), rows);
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
