//! Seconds per training step (forward, cross-entropy, backward, AdamW) of the fixed network on the CPU,
//! candle's own ops against the fast kernels of `trainer::ops`, side by side in one run.
//!
//! `cargo bench -p trainer --bench train_step [-- --steps N] [-- --only fast|reference]`

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use trainer::model::{Normalization, SegNet};
use trainer::ops;

/// Forward FLOP per output pixel of the network (multiply-adds x 2); a training step counts as 3x.
const FORWARD_FLOP_PER_PIXEL: f64 = 13_984.0;

struct Timing {
    step: Vec<f64>,
    forward: Vec<f64>,
    backward: Vec<f64>,
    losses: Vec<f32>,
}

fn loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    let flat = logits.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
    candle_nn::loss::cross_entropy(&flat, labels)
}

fn run(batch: usize, size: usize, warmup: usize, steps: usize) -> Result<Timing> {
    let dev = Device::Cpu;
    let net = SegNet::random(0, Normalization { mean: [0.5; 3], std: [0.25; 3] }, &dev)?;
    let mut opt =
        AdamW::new(net.vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let x = Tensor::rand(0f32, 1f32, (batch, 3, size, size), &dev)?;
    let labels = Tensor::rand(0f32, 1f32, batch * size * size, &dev)?.ge(0.5)?.to_dtype(DType::U32)?;
    let mut t = Timing { step: vec![], forward: vec![], backward: vec![], losses: vec![] };
    for i in 0..warmup + steps {
        let start = Instant::now();
        let l = loss(&net.forward(&x)?, &labels)?;
        let loss_value = l.to_scalar::<f32>()?;
        let forward = start.elapsed().as_secs_f64();
        let grads = l.backward()?;
        let backward = start.elapsed().as_secs_f64() - forward;
        opt.step(&grads)?;
        let step = start.elapsed().as_secs_f64();
        if i >= warmup {
            t.step.push(step);
            t.forward.push(forward);
            t.backward.push(backward);
        }
        t.losses.push(loss_value);
    }
    Ok(t)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let steps: usize = value("--steps").and_then(|s| s.parse().ok()).unwrap_or(20);
    let only = value("--only");
    let threads = candle_core::utils::get_num_threads();
    println!("train_step: {steps} timed steps after 3 warm-up, {threads} threads");
    println!(
        "{:<10} {:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "ops", "batch", "median", "min", "max", "fwd", "bwd+", "GFLOP/s", "loss[-1]"
    );
    for (batch, size) in [(1, 256), (4, 128)] {
        let mut medians = vec![];
        for (name, reference) in [("reference", true), ("fast", false)] {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            ops::set_reference_ops(reference);
            let t = run(batch, size, 3, steps)?;
            let m = median(&t.step);
            let flop = 3.0 * FORWARD_FLOP_PER_PIXEL * (batch * size * size) as f64;
            println!(
                "{:<10} {:<9} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.1} {:>10.6}",
                name,
                format!("{batch}x{size}^2"),
                m,
                t.step.iter().cloned().fold(f64::INFINITY, f64::min),
                t.step.iter().cloned().fold(0.0, f64::max),
                median(&t.forward),
                median(&t.backward),
                flop / m / 1e9,
                t.losses.last().copied().unwrap_or(f32::NAN),
            );
            medians.push(m);
        }
        if let [reference, fast] = medians[..] {
            println!("{:<10} {:<9} {:>8.2}x faster", "speedup", format!("{batch}x{size}^2"), reference / fast);
        }
    }
    ops::set_reference_ops(false);
    Ok(())
}
