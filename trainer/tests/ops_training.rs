//! A few training steps of the whole network with the fast CPU ops give the same loss curve and weights
//! as with candle's own ops. The kernels are a value the network holds (`SegNet::with_kernels`) and the
//! loss takes, so both runs share this process with nothing process-wide to flip.

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use trainer::model::{Normalization, SegNet};
use trainer::ops::{self, Kernels};

/// Losses of `steps` AdamW steps from the same seed and batch with `kernels`, and the final weights.
fn train(kernels: Kernels, steps: usize, x: &Tensor, labels: &Tensor) -> (Vec<f32>, Vec<Vec<f32>>) {
    let dev = Device::Cpu;
    let norm = Normalization { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
    let net = SegNet::random(11, norm, &dev).unwrap().with_kernels(kernels);
    let mut opt =
        AdamW::new(net.vars(), ParamsAdamW { lr: 3e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
    let mut losses = vec![];
    for _ in 0..steps {
        let loss = ops::segmentation_cross_entropy(&net.forward(x).unwrap(), labels, kernels).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        opt.backward_step(&loss).unwrap();
    }
    let weights = net.vars().iter().map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    (losses, weights)
}

#[test]
fn fast_ops_train_like_candle_ops() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (n, h, w) = (3, 22, 34);
    let pixels: Vec<f32> = (0..n * 3 * h * w).map(|_| rng.random_range(0.0..1.0)).collect();
    let x = Tensor::from_vec(pixels, (n, 3, h, w), &Device::Cpu).unwrap();
    // A learnable target: foreground where the red channel is brighter than the blue one.
    let (r, b) = (x.narrow(1, 0, 1).unwrap(), x.narrow(1, 2, 1).unwrap());
    let labels = r.gt(&b).unwrap().to_dtype(DType::U32).unwrap().flatten_all().unwrap();
    let steps = 20;
    let (fast_losses, fast_weights) = train(Kernels::Fast, steps, &x, &labels);
    let (ref_losses, ref_weights) = train(Kernels::Reference, steps, &x, &labels);
    for (i, (f, r)) in fast_losses.iter().zip(&ref_losses).enumerate() {
        assert!((f - r).abs() < 1e-4 * r.abs().max(1.0), "step {i}: loss {f} (fast) vs {r} (candle)");
    }
    assert!(fast_losses[steps - 1] < fast_losses[0] - 0.01, "the loss should fall: {fast_losses:?}");
    for (layer, (f, r)) in fast_weights.iter().zip(&ref_weights).enumerate() {
        let err = f.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "tensor {layer}: weights differ by {err} after {steps} steps");
    }
}
