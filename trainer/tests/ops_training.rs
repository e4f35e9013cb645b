//! A few training steps of the whole network with the fast CPU ops give the same loss curve and weights
//! as with candle's own ops. The kernels are a value the network holds (`SegNet::with_kernels`) and the
//! loss takes, so both runs share this process with nothing process-wide to flip.

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use trainer::model::{Normalization, SegNet};
use trainer::ops::{self, Kernels};

/// Losses of `steps` AdamW steps from the same seed and batch with `kernels`, and the final weights.
fn train(kernels: Kernels, steps: usize, x: &Tensor, labels: &Tensor) -> (Vec<f32>, Vec<Vec<f32>>) {
    train_classes(2, kernels, steps, x, labels)
}

/// [`train`] of a network of `classes` classes.
fn train_classes(
    classes: usize,
    kernels: Kernels,
    steps: usize,
    x: &Tensor,
    labels: &Tensor,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let dev = Device::Cpu;
    let norm = Normalization { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
    let net = SegNet::random_with_classes(classes, 11, norm, &dev).unwrap().with_kernels(kernels);
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

/// Three classes, a fifth of the pixels unlabelled: the fused kernels (direct and im2col convolutions, the
/// general loss kernel) train as candle's own ops do.
#[test]
fn three_classes_with_unlabelled_pixels_train_alike_on_every_kernel() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let (n, h, w) = (2, 26, 30);
    let pixels: Vec<f32> = (0..n * 3 * h * w).map(|_| rng.random_range(0.0..1.0)).collect();
    // The brightest channel is the class; every fifth pixel unlabelled.
    let labels: Vec<u32> = (0..n * h * w)
        .map(|i| {
            let (b, p) = (i / (h * w), i % (h * w));
            let v = |c: usize| pixels[(b * 3 + c) * h * w + p];
            let class = (0..3).fold(0, |best, c| if v(c) > v(best) { c } else { best }) as u32;
            if i % 5 == 0 {
                ops::IGNORE_LABEL
            } else {
                class
            }
        })
        .collect();
    let x = Tensor::from_vec(pixels, (n, 3, h, w), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(labels, n * h * w, &Device::Cpu).unwrap();
    let steps = 15;
    let (ref_losses, ref_weights) = train_classes(3, Kernels::Reference, steps, &x, &labels);
    assert!(ref_losses[steps - 1] < ref_losses[0] - 0.01, "the loss should fall: {ref_losses:?}");
    for kernels in [Kernels::Fast, Kernels::Im2col] {
        let (losses, weights) = train_classes(3, kernels, steps, &x, &labels);
        for (i, (f, r)) in losses.iter().zip(&ref_losses).enumerate() {
            assert!(
                (f - r).abs() < 1e-4 * r.abs().max(1.0),
                "{kernels:?} step {i}: loss {f} vs {r} (candle)"
            );
        }
        assert_eq!(weights[6].len(), 3 * 16 * 25, "conv4 has three output channels");
        for (layer, (f, r)) in weights.iter().zip(&ref_weights).enumerate() {
            let err = f.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-3, "{kernels:?} tensor {layer}: weights differ by {err} after {steps} steps");
        }
    }
}
