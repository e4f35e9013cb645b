//! The fixed network: conv1 3x3/16 -> ReLU -> conv2 3x3/32 -> ReLU -> MaxPool 2x2 -> conv3 3x3/16 -> ReLU
//! -> Upsample 2x (nearest) -> conv4 5x5/C -> logits (N,C,H,W): C classes, 2 by default (10,514 parameters;
//! each further class adds conv4's 401).
//!
//! The network owns its input normalisation, so that training, the checkpoint and the ONNX export share one
//! definition of it: the forward pass takes RGB scaled to [0, 1].

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};

use crate::ops::{self, Kernels};
use imaging::classes::{MAX_CLASSES, MIN_CLASSES};

/// One convolution of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub name: &'static str,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub padding: usize,
    pub relu: bool,
}

impl ConvSpec {
    pub fn weight_shape(&self) -> (usize, usize, usize, usize) {
        (self.out_channels, self.in_channels, self.kernel, self.kernel)
    }
    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.name)
    }
    pub fn bias_name(&self) -> String {
        format!("{}.bias", self.name)
    }
    pub const fn parameter_count(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel + self.out_channels
    }
}

/// The four convolutions of a network of `classes` classes, in order: only conv4's width depends on it.
/// Max-pooling follows conv2, nearest upsampling follows conv3.
pub const fn layers(classes: usize) -> [ConvSpec; 4] {
    [
        ConvSpec { name: "conv1", in_channels: 3, out_channels: 16, kernel: 3, padding: 1, relu: true },
        ConvSpec { name: "conv2", in_channels: 16, out_channels: 32, kernel: 3, padding: 1, relu: true },
        ConvSpec { name: "conv3", in_channels: 32, out_channels: 16, kernel: 3, padding: 1, relu: true },
        ConvSpec {
            name: "conv4",
            in_channels: 16,
            out_channels: classes,
            kernel: 5,
            padding: 2,
            relu: false,
        },
    ]
}

/// The layers of the two-class network.
pub const LAYERS: [ConvSpec; 4] = layers(2);

/// Parameters of the two-class network.
pub const PARAMETER_COUNT: usize = parameter_count(2);

/// Parameters of the network of `classes` classes.
pub const fn parameter_count(classes: usize) -> usize {
    let l = layers(classes);
    l[0].parameter_count() + l[1].parameter_count() + l[2].parameter_count() + l[3].parameter_count()
}

/// Per-channel input normalisation, `(x - mean) / std` on RGB in [0, 1]. Computed once from the training
/// image and stored in the checkpoint; the ONNX graph applies the same two ops, so consumers only divide
/// bytes by 255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    pub const IDENTITY: Normalization = Normalization { mean: [0.0; 3], std: [1.0; 3] };

    /// Mean and standard deviation of each channel of interleaved RGB bytes. A flat channel gets std 1
    /// rather than a division by zero.
    pub fn from_rgb_bytes(rgb: &[u8]) -> Normalization {
        Normalization::from_rgb_parts([rgb])
    }

    /// [`Normalization::from_rgb_bytes`] over several buffers of interleaved RGB bytes taken together (the
    /// training rows of several images), without concatenating them.
    pub fn from_rgb_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Normalization {
        let mut n = 0f64;
        let mut sum = [0f64; 3];
        let mut sum_sq = [0f64; 3];
        for rgb in parts {
            for px in rgb.chunks_exact(3) {
                for c in 0..3 {
                    let v = px[c] as f64 / 255.0;
                    sum[c] += v;
                    sum_sq[c] += v * v;
                }
            }
            n += (rgb.len() / 3) as f64;
        }
        let n = n.max(1.0);
        let mut mean = [0f32; 3];
        let mut std = [1f32; 3];
        for c in 0..3 {
            let m = sum[c] / n;
            let var = (sum_sq[c] / n - m * m).max(0.0);
            mean[c] = m as f32;
            std[c] = if var.sqrt() < 1e-6 { 1.0 } else { var.sqrt() as f32 };
        }
        Normalization { mean, std }
    }

    /// Applies the normalisation to an (N,3,H,W) tensor.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let mean = Tensor::from_slice(&self.mean, (1, 3, 1, 1), dev)?.to_dtype(x.dtype())?;
        let std = Tensor::from_slice(&self.std, (1, 3, 1, 1), dev)?.to_dtype(x.dtype())?;
        x.broadcast_sub(&mean)?.broadcast_div(&std)
    }
}

/// The segmentation network: weights as trainable variables plus the fixed input normalisation, and the
/// kernels its forward pass runs.
pub struct SegNet {
    /// One (weight, bias) pair per entry of [`layers`].
    params: Vec<(Var, Var)>,
    /// Output channels of conv4: the classes.
    classes: usize,
    pub normalization: Normalization,
    /// [`Kernels::Fast`] unless set otherwise ([`SegNet::with_kernels`]); the loss of a training step
    /// should use the same.
    pub kernels: Kernels,
}

impl SegNet {
    /// A freshly initialised network, deterministic in `seed`. Like PyTorch's default for Conv2d: weights
    /// and biases uniform in +-1/sqrt(fan_in).
    pub fn random(seed: u64, normalization: Normalization, device: &Device) -> Result<SegNet> {
        SegNet::random_with_classes(2, seed, normalization, device)
    }

    /// [`SegNet::random`] with `classes` output channels: the same draws in the same order, so two classes
    /// give exactly [`SegNet::random`]'s network.
    pub fn random_with_classes(
        classes: usize,
        seed: u64,
        normalization: Normalization,
        device: &Device,
    ) -> Result<SegNet> {
        check_classes(classes)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(4);
        for spec in layers(classes) {
            let fan_in = spec.in_channels * spec.kernel * spec.kernel;
            let bound = 1.0 / (fan_in as f32).sqrt();
            let (o, i, kh, kw) = spec.weight_shape();
            let w: Vec<f32> = (0..o * i * kh * kw).map(|_| rng.random_range(-bound..bound)).collect();
            let b: Vec<f32> = (0..o).map(|_| rng.random_range(-bound..bound)).collect();
            params.push((
                Var::from_tensor(&Tensor::from_vec(w, spec.weight_shape(), device)?)?,
                Var::from_tensor(&Tensor::from_vec(b, o, device)?)?,
            ));
        }
        Ok(SegNet { params, classes, normalization, kernels: Kernels::Fast })
    }

    /// Builds the network from named tensors (as stored in a checkpoint), checking every shape; the number
    /// of classes is conv4's output channels.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        normalization: Normalization,
        device: &Device,
    ) -> Result<SegNet> {
        let conv4 = LAYERS[3].bias_name();
        let classes = match tensors.get(&conv4).map(Tensor::dims) {
            Some(&[c]) => c,
            Some(dims) => candle_core::bail!("tensor `{conv4}` has shape {dims:?}, expected [classes]"),
            None => candle_core::bail!("tensor `{conv4}` is missing"),
        };
        check_classes(classes)?;
        let mut params = Vec::with_capacity(4);
        for spec in layers(classes) {
            let get = |name: String, dims: &[usize]| -> Result<Var> {
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))?;
                if t.dims() != dims {
                    candle_core::bail!("tensor `{name}` has shape {:?}, expected {:?}", t.dims(), dims);
                }
                Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)
            };
            let (o, i, kh, kw) = spec.weight_shape();
            params.push((get(spec.weight_name(), &[o, i, kh, kw])?, get(spec.bias_name(), &[o])?));
        }
        Ok(SegNet { params, classes, normalization, kernels: Kernels::Fast })
    }

    /// The number of classes: conv4's output channels.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Its four convolutions.
    pub fn layers(&self) -> [ConvSpec; 4] {
        layers(self.classes)
    }

    /// The same network running `kernels`.
    pub fn with_kernels(self, kernels: Kernels) -> SegNet {
        SegNet { kernels, ..self }
    }

    /// The trainable variables, in [`layers`] order: weight then bias of each layer.
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }

    /// Named weights, as written to the checkpoint and the ONNX initializers.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.layers()
            .into_iter()
            .zip(&self.params)
            .flat_map(|(spec, (w, b))| {
                [(spec.weight_name(), w.as_tensor().clone()), (spec.bias_name(), b.as_tensor().clone())]
            })
            .collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|(w, b)| w.elem_count() + b.elem_count()).sum()
    }

    /// Logits (N,C,H,W) for RGB input (N,3,H,W) in [0, 1]. H and W must be even (the 2x2 pool).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 || h % 2 != 0 || w % 2 != 0 {
            candle_core::bail!("the network takes (N,3,H,W) with even H and W, got {:?}", x.dims());
        }
        let x = self.normalization.apply(x)?;
        let x = self.conv(0, &x)?;
        // conv2 + ReLU + 2x2 max-pool as one node: the CPU kernel never materialises the full-size output.
        let (w2, b2) = &self.params[1];
        let x =
            ops::conv2d_relu_maxpool2x2(&x, w2.as_tensor(), b2.as_tensor(), LAYERS[1].padding, self.kernels)?;
        let x = self.conv(2, &x)?;
        // The upsampling and conv4 as one node: the CPU kernel reads the upsampled input band by band.
        let (w4, b4) = &self.params[3];
        ops::upsample_conv2d(&x, h, w, w4.as_tensor(), b4.as_tensor(), LAYERS[3].padding, self.kernels)
    }

    fn conv(&self, layer: usize, x: &Tensor) -> Result<Tensor> {
        let spec = self.layers()[layer];
        let (w, b) = &self.params[layer];
        ops::conv2d(x, w.as_tensor(), b.as_tensor(), spec.padding, spec.relu, self.kernels)
    }
}

/// Refuses a class count outside 2..=16.
fn check_classes(classes: usize) -> Result<()> {
    if !(MIN_CLASSES..=MAX_CLASSES).contains(&classes) {
        candle_core::bail!("the network has {MIN_CLASSES} to {MAX_CLASSES} classes, not {classes}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_shapes_and_parameter_count() {
        let net = SegNet::random(0, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let shapes: Vec<(String, Vec<usize>)> =
            net.named_tensors().into_iter().map(|(n, t)| (n, t.dims().to_vec())).collect();
        let expected: Vec<(String, Vec<usize>)> = [
            ("conv1.weight", vec![16, 3, 3, 3]),
            ("conv1.bias", vec![16]),
            ("conv2.weight", vec![32, 16, 3, 3]),
            ("conv2.bias", vec![32]),
            ("conv3.weight", vec![16, 32, 3, 3]),
            ("conv3.bias", vec![16]),
            ("conv4.weight", vec![2, 16, 5, 5]),
            ("conv4.bias", vec![2]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(shapes, expected);
        assert_eq!(net.parameter_count(), 10_514);
        assert_eq!(LAYERS.iter().map(ConvSpec::parameter_count).sum::<usize>(), PARAMETER_COUNT);
    }

    #[test]
    fn output_is_two_logits_per_pixel_for_even_sizes() {
        let net = SegNet::random(1, Normalization::IDENTITY, &Device::Cpu).unwrap();
        for (n, h, w) in [(1, 2, 2), (2, 6, 10), (1, 32, 18), (3, 64, 64)] {
            let x = Tensor::rand(0f32, 1f32, (n, 3, h, w), &Device::Cpu).unwrap();
            assert_eq!(net.forward(&x).unwrap().dims(), &[n, 2, h, w]);
        }
    }

    #[test]
    fn more_classes_widen_conv4_only_and_two_draw_the_seed_network() {
        let dev = Device::Cpu;
        let two = SegNet::random_with_classes(2, 5, Normalization::IDENTITY, &dev).unwrap();
        let seed = SegNet::random(5, Normalization::IDENTITY, &dev).unwrap();
        let values = |n: &SegNet| -> Vec<Vec<f32>> {
            n.named_tensors().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect()
        };
        assert_eq!(values(&two), values(&seed));
        let three = SegNet::random_with_classes(3, 5, Normalization::IDENTITY, &dev).unwrap();
        assert_eq!(three.classes(), 3);
        assert_eq!(three.parameter_count(), PARAMETER_COUNT + 401);
        assert_eq!(parameter_count(3), PARAMETER_COUNT + 401);
        assert_eq!(values(&three)[..6], values(&seed)[..6], "conv1..conv3 draw the same");
        let x = Tensor::rand(0f32, 1f32, (2, 3, 8, 12), &dev).unwrap();
        assert_eq!(three.forward(&x).unwrap().dims(), &[2, 3, 8, 12]);
        let tensors: HashMap<String, Tensor> = three.named_tensors().into_iter().collect();
        assert_eq!(SegNet::from_tensors(&tensors, Normalization::IDENTITY, &dev).unwrap().classes(), 3);
        assert!(SegNet::random_with_classes(1, 5, Normalization::IDENTITY, &dev).is_err());
        assert!(SegNet::random_with_classes(17, 5, Normalization::IDENTITY, &dev).is_err());
    }

    #[test]
    fn odd_sizes_are_refused() {
        let net = SegNet::random(1, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let x = Tensor::zeros((1, 3, 7, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&x).is_err());
    }

    #[test]
    fn random_init_is_deterministic_in_the_seed() {
        let a = SegNet::random(7, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let b = SegNet::random(7, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let c = SegNet::random(8, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let first = |n: &SegNet| n.named_tensors()[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(first(&a), first(&b));
        assert_ne!(first(&a), first(&c));
    }

    #[test]
    fn normalization_statistics() {
        let rgb = [0u8, 255, 10, 255, 255, 10];
        let n = Normalization::from_rgb_bytes(&rgb);
        assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
        assert!((n.mean[1] - 1.0).abs() < 1e-6 && n.std[1] == 1.0, "flat channel keeps std 1");
    }
}
