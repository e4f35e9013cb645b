//! Seconds per training step (forward, cross-entropy, backward, Adam) with trainer's own optimiser and loss,
//! the fast kernels of `trainer::ops` against candle's reference ops, and PyTorch's time for the same network
//! through scripts/research/pytorch_step.py when torch is importable; the peak memory of a process that only
//! trains; and the CPU time other processes took meanwhile, so that a loaded run does not claim a ratio.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use trainer::model::{Normalization, SegNet};
use trainer::ops::Kernels;
use trainer::optim::Adam;
use trainer::train::segmentation_loss;

use crate::stats::{self, Stats};

/// Forward FLOP per output pixel of the network (multiply-adds x 2); a training step counts as 3x.
pub const FORWARD_FLOP_PER_PIXEL: f64 = 13_984.0;

/// FLOP of one training step over `pixels` input pixels.
pub fn step_flop(pixels: usize) -> f64 {
    3.0 * FORWARD_FLOP_PER_PIXEL * pixels as f64
}

/// A network, its optimiser and one fixed batch, kept across timed blocks so that interleaved blocks time
/// the same steady state.
pub struct CandleStep {
    net: SegNet,
    adam: Adam,
    x: Tensor,
    labels: Tensor,
}

impl CandleStep {
    /// Training at `batch` x `size`^2 on the CPU with `kernels` (im2col: the convolutions before the direct
    /// ones).
    pub fn new(batch: usize, size: usize, kernels: Kernels) -> Result<CandleStep> {
        let dev = Device::Cpu;
        let net =
            SegNet::random(0, Normalization { mean: [0.5; 3], std: [0.25; 3] }, &dev)?.with_kernels(kernels);
        let adam = Adam::new(&net, 1e-3, 0, None)?;
        let x = Tensor::rand(0f32, 1f32, (batch, 3, size, size), &dev)?;
        let labels = Tensor::rand(0f32, 1f32, batch * size * size, &dev)?.ge(0.5)?.to_dtype(DType::U32)?;
        Ok(CandleStep { net, adam, x, labels })
    }

    /// Seconds of each of `reps` steps after `warmup` untimed ones.
    pub fn time(&mut self, warmup: usize, reps: usize) -> Result<Vec<f64>> {
        let seconds = stats::time(warmup, reps, || -> candle_core::Result<()> {
            let loss = segmentation_loss(&self.net.forward(&self.x)?, &self.labels, self.net.kernels)?;
            let grads = loss.backward()?;
            self.adam.apply(&grads)?;
            // Force the update to finish, as the next step would.
            loss.to_scalar::<f32>().map(drop)
        });
        Ok(seconds?)
    }
}

/// Environment variable that turns the bench executable into a process that only trains (see
/// [`step_peak_memory`]): "BATCHxSIZE".
pub const STEP_ENV: &str = "SEGMENTER_BENCH_TRAIN_STEP";

/// This process's peak resident bytes (VmHWM: its own address space's high-water mark, which unlike
/// ru_maxrss does not inherit the spawning parent's through vfork + exec).
pub fn own_peak_resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

/// The child side of [`step_peak_memory`]: trains `spec` ("BATCHxSIZE") with the fast ops for a few steps
/// and prints `vmhwm_bytes N`.
pub fn step_memory_child(spec: &str) -> Result<()> {
    let (batch, size) = spec.split_once('x').context("expected BATCHxSIZE")?;
    let mut step = CandleStep::new(batch.parse()?, size.parse()?, Kernels::Fast)?;
    step.time(0, 5)?;
    println!("vmhwm_bytes {}", own_peak_resident_bytes().context("no VmHWM in /proc/self/status")?);
    Ok(())
}

/// Peak resident bytes of a fresh process (this executable) that only runs training steps with the fast
/// ops at `batch` x `size`^2: the training step's memory without what the bench held before.
pub fn step_peak_memory(batch: usize, size: usize) -> Result<f64> {
    let out = Command::new(std::env::current_exe()?).env(STEP_ENV, format!("{batch}x{size}")).output()?;
    if !out.status.success() {
        bail!("the training-step child failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("vmhwm_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .context("the training-step child printed no vmhwm_bytes")
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

/// One run of scripts/research/pytorch_step.py: seconds per timed step and the process's peak resident bytes.
pub struct PytorchRun {
    pub seconds: Vec<f64>,
    pub peak_bytes: Option<f64>,
}

/// PyTorch's seconds per step from scripts/research/pytorch_step.py (one JSON line on stdout).
pub fn pytorch_step(
    python: &str,
    batch: usize,
    size: usize,
    threads: usize,
    warmup: usize,
    reps: usize,
) -> Result<PytorchRun> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/research/pytorch_step.py");
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
    Ok(PytorchRun {
        seconds: times.iter().filter_map(serde_json::Value::as_f64).collect(),
        peak_bytes: json["peak_resident_bytes"].as_f64(),
    })
}

/// CPU time that other processes used while a measurement ran, from /proc/stat's busy time minus this
/// process's and its waited-for children's (PyTorch's) own CPU time.
pub struct OtherLoad {
    wall: Instant,
    busy: f64,
    own: f64,
}

/// Busy CPU seconds of the whole machine since boot (every core; idle and iowait excluded).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let (idle, iowait) = (*fields.get(3)?, *fields.get(4)?);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    Some((fields.iter().take(8).sum::<f64>() - idle - iowait) / ticks)
}

/// CPU seconds of this process and of its children that have been waited for.
fn own_and_children_seconds() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    stats::cpu_seconds() + tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl OtherLoad {
    pub fn start() -> OtherLoad {
        OtherLoad {
            wall: Instant::now(),
            busy: machine_busy_seconds().unwrap_or(0.0),
            own: own_and_children_seconds(),
        }
    }

    /// Cores' worth of CPU other processes used since [`OtherLoad::start`] (0 = the machine was ours).
    pub fn cores(&self) -> Option<f64> {
        let busy = machine_busy_seconds()? - self.busy;
        let own = own_and_children_seconds() - self.own;
        Some(((busy - own) / self.wall.elapsed().as_secs_f64()).max(0.0))
    }
}

/// Other processes' CPU (in cores) above which a run claims no ratio to PyTorch: both sides slow down
/// under load, PyTorch (spin-waiting OpenMP threads) far more than ours.
pub const QUIET_CORES: f64 = 0.3;

/// One training row of the report.
#[derive(Debug, Clone)]
pub struct TrainRow {
    pub what: String,
    pub batch: usize,
    pub size: usize,
    pub seconds: Stats,
    pub peak_bytes: Option<f64>,
}

impl TrainRow {
    pub fn gflops(&self) -> Stats {
        let flop = step_flop(self.batch * self.size * self.size);
        self.seconds.map(|t| flop / t / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_load_is_measured_and_excludes_our_own_work() {
        let load = OtherLoad::start();
        // Busy ourselves for a while: our own CPU must not count as other load.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_secs_f64() < 0.3 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let cores = load.cores().expect("/proc/stat is readable on Linux");
        let available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        // /proc/stat counts in clock ticks (10 ms): allow a little rounding beyond the machine's cores.
        assert!((0.0..=available + 0.2).contains(&cores), "{cores} cores of other load");
    }

    #[test]
    fn own_peak_memory_is_read() {
        let before = own_peak_resident_bytes().expect("VmHWM on Linux");
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = own_peak_resident_bytes().unwrap();
        assert!(after >= before && after >= (64 << 20) as f64, "{before} -> {after}");
    }
}
