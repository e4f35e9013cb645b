//! Seconds per training step (forward, cross-entropy, backward, Adam) with trainer's own optimiser and loss,
//! the fast kernels of `trainer::ops` against candle's reference ops, and PyTorch's time for the same network
//! through scripts/pytorch_step.py when torch is importable.

use std::process::Command;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use trainer::model::{Normalization, SegNet};
use trainer::train::{segmentation_loss, Adam};

use crate::stats::{self, Stats};

/// Forward FLOP per output pixel of the network (multiply-adds x 2); a training step counts as 3x.
pub const FORWARD_FLOP_PER_PIXEL: f64 = 13_984.0;

/// FLOP of one training step over `pixels` input pixels.
pub fn step_flop(pixels: usize) -> f64 {
    3.0 * FORWARD_FLOP_PER_PIXEL * pixels as f64
}

/// Seconds per step at `batch` x `size`^2 on the CPU, with candle's reference ops or the fast ones.
pub fn candle_step(
    batch: usize,
    size: usize,
    reference: bool,
    warmup: usize,
    reps: usize,
) -> Result<Vec<f64>> {
    let dev = Device::Cpu;
    trainer::ops::set_reference_ops(reference);
    let net = SegNet::random(0, Normalization { mean: [0.5; 3], std: [0.25; 3] }, &dev)?;
    let mut adam = Adam::new(&net, 1e-3, 0, None)?;
    let x = Tensor::rand(0f32, 1f32, (batch, 3, size, size), &dev)?;
    let labels = Tensor::rand(0f32, 1f32, batch * size * size, &dev)?.ge(0.5)?.to_dtype(DType::U32)?;
    let seconds = stats::time(warmup, reps, || -> candle_core::Result<()> {
        let loss = segmentation_loss(&net.forward(&x)?, &labels)?;
        let grads = loss.backward()?;
        adam.apply(&grads)?;
        // Force the update to finish, as the next step would.
        loss.to_scalar::<f32>().map(drop)
    });
    trainer::ops::set_reference_ops(false);
    Ok(seconds?)
}

/// The Python interpreter for the PyTorch comparison: $BENCH_PYTHON, else python3.
pub fn python() -> String {
    std::env::var("BENCH_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// torch's version if `python` can import it.
pub fn torch_version(python: &str) -> Option<String> {
    let out = Command::new(python).args(["-c", "import torch; print(torch.__version__)"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// PyTorch's seconds per step from scripts/pytorch_step.py (one JSON line on stdout).
pub fn pytorch_step(
    python: &str,
    batch: usize,
    size: usize,
    threads: usize,
    warmup: usize,
    reps: usize,
) -> Result<Vec<f64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pytorch_step.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--batch", &batch.to_string(), "--size", &size.to_string()])
        .args(["--threads", &threads.to_string(), "--warmup", &warmup.to_string()])
        .args(["--steps", &reps.to_string()])
        .output()
        .with_context(|| format!("cannot run {python} {script}"))?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("pytorch_step.py printed nothing")?;
    let json: serde_json::Value = serde_json::from_str(line).context("pytorch_step.py output is not JSON")?;
    let times = json["seconds"].as_array().context("pytorch_step.py output has no `seconds`")?;
    Ok(times.iter().filter_map(serde_json::Value::as_f64).collect())
}

/// One training row of the report.
#[derive(Debug, Clone)]
pub struct TrainRow {
    pub what: String,
    pub batch: usize,
    pub size: usize,
    pub seconds: Stats,
}

impl TrainRow {
    pub fn gflops(&self) -> Stats {
        let flop = step_flop(self.batch * self.size * self.size);
        self.seconds.map(|t| flop / t / 1e9)
    }
}
