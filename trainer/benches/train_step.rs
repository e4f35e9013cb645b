//! Seconds per training step (forward, cross-entropy, backward, AdamW) of the fixed network on the CPU,
//! candle's own ops against the fast kernels of `trainer::ops`, side by side in one run.
//!
//! `cargo bench -p trainer --bench train_step [-- --steps N] [--only fast|reference] [--breakdown]
//! [--profile] [--op OP] [--im2col]` (`--breakdown`: seconds per op at 1 x 256^2 instead of whole steps,
//! only the ops whose names start with OP if given; `--profile`: every op (or only OP) once, under its own
//! function name, for callgrind: scripts/research/profile_ops.sh; `--im2col`: im2col + gemm instead of the
//! direct kernels).

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use trainer::model::{Normalization, SegNet, LAYERS};
use trainer::ops::{self, Kernels};

/// Forward FLOP per output pixel of the network (multiply-adds x 2); a training step counts as 3x.
const FORWARD_FLOP_PER_PIXEL: f64 = 13_984.0;

struct Timing {
    step: Vec<f64>,
    forward: Vec<f64>,
    backward: Vec<f64>,
    losses: Vec<f32>,
}

/// Cross-entropy as train.rs computes it (permute + candle_nn) on the reference path, fused on the fast one.
fn loss(logits: &Tensor, labels: &Tensor, kernels: Kernels) -> Result<Tensor> {
    ops::segmentation_cross_entropy(logits, labels, kernels)
}

fn run(batch: usize, size: usize, warmup: usize, steps: usize, kernels: Kernels) -> Result<Timing> {
    let dev = Device::Cpu;
    let net =
        SegNet::random(0, Normalization { mean: [0.5; 3], std: [0.25; 3] }, &dev)?.with_kernels(kernels);
    let mut opt = AdamW::new(net.vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let x = Tensor::rand(0f32, 1f32, (batch, 3, size, size), &dev)?;
    let labels = Tensor::rand(0f32, 1f32, batch * size * size, &dev)?.ge(0.5)?.to_dtype(DType::U32)?;
    let mut t = Timing { step: vec![], forward: vec![], backward: vec![], losses: vec![] };
    for i in 0..warmup + steps {
        let start = Instant::now();
        let l = loss(&net.forward(&x)?, &labels, kernels)?;
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

/// Median seconds of `f` over `reps` calls after one warm-up call.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = vec![];
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        v.push(start.elapsed().as_secs_f64());
    }
    Ok(median(&v))
}

type Timed<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// Every op of a training step at batch 1 x 256^2, by name, each as a closure that runs it once: the fast
/// kernels of each convolution (forward, weight gradient, input gradient) and the other ops of the step,
/// on `kernels` (Fast or Im2col).
fn with_ops<R>(kernels: Kernels, f: impl FnOnce(Vec<(String, Timed)>) -> Result<R>) -> Result<R> {
    use trainer::ops::cpu::ConvGeometry;
    let conv = kernels.conv().expect("the fast kernels");
    // As in a training step: freed activations are reused, not page-faulted in again on each call.
    ops::cpu::keep_freed_memory();
    let dev = Device::Cpu;
    let vec = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    struct Layer {
        geo: ConvGeometry,
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        gy: Vec<f32>,
        relu: bool,
    }
    let layers: Vec<(&str, Layer)> = LAYERS
        .iter()
        .zip([256, 256, 128, 256])
        .map(|(spec, size)| {
            let geo = ConvGeometry::new(
                &[1, spec.in_channels, size, size],
                &[spec.out_channels, spec.in_channels, spec.kernel, spec.kernel],
                spec.padding,
            )
            .expect("network shapes are supported");
            let layer = Layer {
                geo,
                x: vec(spec.in_channels * size * size),
                w: vec(spec.parameter_count() - spec.out_channels),
                b: vec(spec.out_channels),
                gy: vec(spec.out_channels * size * size),
                relu: spec.relu,
            };
            (spec.name, layer)
        })
        .collect();
    let x32 = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1f32, (1, 32, 256, 256), &dev)?)?;
    // A ReLU output (a quarter zeros) and its pooling, for the pool's backward kernel.
    let pool_x: Vec<f32> = vec(32 * 256 * 256).into_iter().map(|v| v.max(-0.25) + 0.25).collect();
    let pool_y = ops::kernels::pool::max_pool_forward(&pool_x, 256, 256);
    let pool_g = vec(pool_y.len());
    let x16 = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1f32, (1, 16, 128, 128), &dev)?)?;
    let up = ops::upsample_nearest2d(&x16, 256, 256, kernels)?;
    let logits = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1f32, (1, 2, 256, 256), &dev)?)?;
    let labels = Tensor::zeros(256 * 256, DType::U32, &dev)?;
    let image = Tensor::rand(0f32, 1f32, (1, 3, 256, 256), &dev)?;
    let norm = Normalization { mean: [0.5; 3], std: [0.25; 3] };
    let net = SegNet::random(0, norm, &dev)?.with_kernels(kernels);
    let mut opt = AdamW::new(net.vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let mut grads = None;
    let step_net = SegNet::random(0, norm, &dev)?.with_kernels(kernels);
    let mut step_opt =
        AdamW::new(step_net.vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let mut list: Vec<(String, Timed)> = vec![];
    for (name, l) in &layers {
        list.push((
            format!("{name}.forward"),
            Box::new(move || {
                conv.forward(&l.geo, &l.x, &l.w, Some(&l.b), l.relu);
                Ok(())
            }),
        ));
        list.push((
            format!("{name}.grad_w"),
            Box::new(move || {
                conv.weight_grad(&l.geo, &l.x, &l.gy);
                Ok(())
            }),
        ));
        // conv1's input is the image: the network never needs its gradient.
        if *name != "conv1" {
            list.push((
                format!("{name}.grad_x"),
                Box::new(move || {
                    conv.input_grad(&l.geo, &l.w, &l.gy);
                    Ok(())
                }),
            ));
        }
    }
    let extra: [(&str, Timed); 9] = [
        ("normalize", Box::new(|| norm.apply(&image).map(drop))),
        ("maxpool.forward", Box::new(|| ops::max_pool2x2(&x32, kernels).map(drop))),
        // The kernel conv2's fused node runs (ReLU mask included), without candle's backward pass around it.
        (
            "maxpool.backward",
            Box::new(|| {
                ops::kernels::pool::max_pool_backward(&pool_x, &pool_y, &pool_g, 256, 256, true);
                Ok(())
            }),
        ),
        ("upsample.forward", Box::new(|| ops::upsample_nearest2d(&x16, 256, 256, kernels).map(drop))),
        ("upsample.backward", Box::new(|| up.sum_all()?.backward().map(drop))),
        ("loss.forward", Box::new(|| loss(&logits, &labels, kernels).map(drop))),
        ("loss.forward+backward", Box::new(|| loss(&logits, &labels, kernels)?.backward().map(drop))),
        (
            "adamw",
            Box::new(|| {
                // The gradients of one step, computed on the first (warm-up) call.
                if grads.is_none() {
                    grads = Some(loss(&net.forward(&image)?, &labels, kernels)?.backward()?);
                }
                opt.step(grads.as_ref().expect("set above"))
            }),
        ),
        (
            "step",
            Box::new(|| {
                let grads = loss(&step_net.forward(&image)?, &labels, kernels)?.backward()?;
                step_opt.step(&grads)
            }),
        ),
    ];
    list.extend(extra.into_iter().map(|(n, f)| (n.to_string(), f)));
    f(list)
}

/// Per-op seconds at batch 1 x 256^2 (medians of `reps` after one warm-up call).
fn breakdown(kernels: Kernels, reps: usize, only: Option<&str>) -> Result<()> {
    with_ops(kernels, |list| {
        println!("{:<22} {:>10}", "op (1 x 256^2)", "s median");
        for (name, mut f) in list.into_iter().filter(|(name, _)| only.is_none_or(|o| name.starts_with(o))) {
            println!("{name:<22} {:>10.5}", time(reps, &mut f)?);
        }
        Ok(())
    })
}

/// One distinctly named, never-inlined function per op index, so that callgrind reports each op's
/// instructions inclusively under its own name (`op_marker_NN`); the constant keeps the bodies distinct
/// (identical functions would be merged).
macro_rules! op_markers {
    ($($name:ident = $i:literal),*) => {
        $(
            #[inline(never)]
            fn $name(f: &mut Timed) -> Result<()> {
                std::hint::black_box($i);
                f()
            }
        )*
        fn run_marked(i: usize, f: &mut Timed) -> Result<()> {
            match i {
                $($i => $name(f),)*
                _ => f(),
            }
        }
    };
}
op_markers!(
    op_marker_00 = 0,
    op_marker_01 = 1,
    op_marker_02 = 2,
    op_marker_03 = 3,
    op_marker_04 = 4,
    op_marker_05 = 5,
    op_marker_06 = 6,
    op_marker_07 = 7,
    op_marker_08 = 8,
    op_marker_09 = 9,
    op_marker_10 = 10,
    op_marker_11 = 11,
    op_marker_12 = 12,
    op_marker_13 = 13,
    op_marker_14 = 14,
    op_marker_15 = 15,
    op_marker_16 = 16,
    op_marker_17 = 17,
    op_marker_18 = 18,
    op_marker_19 = 19,
    op_marker_20 = 20,
    op_marker_21 = 21,
    op_marker_22 = 22,
    op_marker_23 = 23
);

/// For `valgrind --tool=callgrind`: runs every op once under its marker function (no warm-up: counts do
/// not need one, and under valgrind it would double the run), all on one rayon worker so that the work done in parallel loops is counted under the marker
/// (callgrind attributes costs per thread's call stack). Prints `op_marker_NN NAME` for each op.
fn profile(kernels: Kernels, only: Option<&str>) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    pool.install(|| {
        with_ops(kernels, |mut list| {
            if let Some(only) = only {
                list.retain(|(name, _)| name == only);
            }
            // AdamW's first call computes the gradients it applies: make that call before counting.
            for (_, f) in list.iter_mut().filter(|(name, _)| name == "adamw") {
                f()?;
            }
            for (i, (name, f)) in list.iter_mut().enumerate() {
                println!("op_marker_{i:02} {name}");
                run_marked(i, f)?;
            }
            Ok(())
        })
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let steps: usize = value("--steps").and_then(|s| s.parse().ok()).unwrap_or(20);
    let only = value("--only");
    let threads = candle_core::utils::get_num_threads();
    // The kernels before the direct ones, for before/after comparisons in one build.
    let fast = if args.iter().any(|a| a == "--im2col") { Kernels::Im2col } else { Kernels::Fast };
    if args.iter().any(|a| a == "--breakdown") {
        return breakdown(fast, steps, value("--op").as_deref());
    }
    if args.iter().any(|a| a == "--profile") {
        return profile(fast, value("--op").as_deref());
    }
    println!("train_step: {steps} timed steps after 3 warm-up, {threads} threads");
    println!(
        "{:<10} {:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "ops", "batch", "median", "min", "max", "fwd", "bwd", "GFLOP/s", "loss[-1]"
    );
    for (batch, size) in [(1, 256), (4, 128)] {
        let mut medians = vec![];
        for (name, kernels) in [("reference", Kernels::Reference), ("fast", fast)] {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let t = run(batch, size, 3, steps, kernels)?;
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
            println!(
                "{:<10} {:<9} {:>8.2}x faster",
                "speedup",
                format!("{batch}x{size}^2"),
                reference / fast
            );
        }
    }
    Ok(())
}
