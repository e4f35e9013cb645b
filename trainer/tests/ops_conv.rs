//! The fast CPU convolution against candle's own ops: forward, gradients, finite differences, odd shapes.
//! The kernels are a value passed to each op, so the fast ones (direct where the CPU has AVX2 and FMA), im2col
//! and candle's run side by side here.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use trainer::ops::{self, Kernels};

mod common;
use common::random;

/// (batch, in channels, height, width, out channels, kernel, padding)
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 10] = [
    (1, 3, 8, 8, 16, 3, 1),
    (3, 2, 7, 5, 4, 3, 1),
    (2, 1, 9, 6, 3, 5, 2),
    (1, 16, 12, 10, 2, 5, 2),
    (1, 2, 6, 7, 3, 3, 0),
    (2, 3, 5, 9, 2, 5, 1),
    (1, 4, 70, 40, 5, 3, 1),
    // Rows of whole 24-pixel strips only (the direct forward's block width), channel blocks of 4 and 2.
    (1, 3, 5, 48, 6, 3, 1),
    (1, 2, 3, 1500, 3, 3, 1),
    (3, 5, 1, 1, 2, 1, 0),
];

type ConvFn = fn(&Tensor, &Tensor, &Tensor, usize, bool) -> Result<Tensor>;

fn fast_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> Result<Tensor> {
    ops::conv2d(x, w, b, pad, relu, Kernels::Fast)
}

fn im2col_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> Result<Tensor> {
    ops::conv2d(x, w, b, pad, relu, Kernels::Im2col)
}

/// The CPU nodes' convolutions with each choice of kernels.
const FAST: [(&str, ConvFn); 2] = [("fast", fast_conv2d), ("im2col", im2col_conv2d)];

/// Sum of conv(x, w, b) weighted by fixed random values, so every output element gets its own gradient.
fn weighted_loss(f: ConvFn, x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> Tensor {
    let y = f(x, w, b, pad, relu).unwrap();
    let weights = random(y.dims(), 99);
    (y * weights).unwrap().sum_all().unwrap()
}

fn max_relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f32::max)
}

fn inputs(shape: (usize, usize, usize, usize, usize, usize, usize)) -> (Var, Var, Var, usize) {
    let (n, c, h, w, o, k, pad) = shape;
    (
        Var::from_tensor(&random(&[n, c, h, w], 1)).unwrap(),
        Var::from_tensor(&(random(&[o, c, k, k], 2) * 0.3).unwrap()).unwrap(),
        Var::from_tensor(&(random(&[o], 3) * 0.1).unwrap()).unwrap(),
        pad,
    )
}

fn grads(f: ConvFn, x: &Var, w: &Var, b: &Var, pad: usize, relu: bool) -> GradStore {
    weighted_loss(f, x.as_tensor(), w.as_tensor(), b.as_tensor(), pad, relu).backward().unwrap()
}

#[test]
fn forward_equals_candle() {
    for shape in SHAPES {
        let (x, w, b, pad) = inputs(shape);
        for ((kernels, conv), relu) in FAST.into_iter().flat_map(|f| [(f, false), (f, true)]) {
            let fast = conv(&x, &w, &b, pad, relu).unwrap();
            let reference = ops::reference_conv2d(&x, &w, &b, pad, relu).unwrap();
            let err = max_relative_error(&fast, &reference);
            assert!(err < 1e-5, "{shape:?} {kernels} relu {relu}: forward differs by {err}");
        }
    }
}

#[test]
fn gradients_equal_candle() {
    for shape in SHAPES {
        let (x, w, b, pad) = inputs(shape);
        for ((kernels, conv), relu) in FAST.into_iter().flat_map(|f| [(f, false), (f, true)]) {
            let fast = grads(conv, &x, &w, &b, pad, relu);
            let reference = grads(ops::reference_conv2d, &x, &w, &b, pad, relu);
            for (name, var) in [("x", &x), ("w", &w), ("b", &b)] {
                let err = max_relative_error(fast.get(var).unwrap(), reference.get(var).unwrap());
                assert!(err < 1e-4, "{shape:?} {kernels} relu {relu}: gradient of {name} differs by {err}");
            }
        }
    }
}

/// The loss of [`weighted_loss`] computed in f64 with candle's ops, for finite differences.
fn f64_loss(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> f64 {
    use candle_core::DType::F64;
    let (x, w, b) = (x.to_dtype(F64).unwrap(), w.to_dtype(F64).unwrap(), b.to_dtype(F64).unwrap());
    let y = ops::reference_conv2d(&x, &w, &b, pad, relu).unwrap();
    let weights = random(y.dims(), 99).to_dtype(F64).unwrap();
    (y * weights).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn gradients_equal_finite_differences() {
    for shape in [SHAPES[1], SHAPES[2], SHAPES[5]] {
        let (x, w, b, pad) = inputs(shape);
        for relu in [false, true] {
            let analytic = grads(fast_conv2d, &x, &w, &b, pad, relu);
            for (name, var) in [("x", &x), ("w", &w), ("b", &b)] {
                let grad = analytic.get(var).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let values = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let step = (values.len() / 7).max(1);
                for i in (0..values.len()).step_by(step) {
                    let loss_at = |delta: f32| {
                        let mut v = values.clone();
                        v[i] += delta;
                        let t = Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap();
                        let (xs, ws, bs) = match name {
                            "x" => (t, w.as_tensor().clone(), b.as_tensor().clone()),
                            "w" => (x.as_tensor().clone(), t, b.as_tensor().clone()),
                            _ => (x.as_tensor().clone(), w.as_tensor().clone(), t),
                        };
                        f64_loss(&xs, &ws, &bs, pad, relu)
                    };
                    // In f64 a tiny step is exact enough and almost never straddles a ReLU kink.
                    let eps = 1e-4f32;
                    let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
                    let diff = (numeric - grad[i] as f64).abs();
                    assert!(
                        diff < 1e-3 * (1.0 + numeric.abs()),
                        "{shape:?} relu {relu}: d loss / d {name}[{i}] is {} analytically, {numeric} numerically",
                        grad[i]
                    );
                }
            }
        }
    }
}

#[test]
fn no_gradient_for_an_input_that_needs_none() {
    let (x, w, b, pad) = inputs(SHAPES[0]);
    let image = x.as_tensor().detach();
    let grads = weighted_loss(fast_conv2d, &image, &w, &b, pad, true).backward().unwrap();
    assert!(grads.get(&image).is_none());
    let reference = grads_of_constant_input(&image, &w, &b, pad);
    for var in [&w, &b] {
        let err = max_relative_error(grads.get(var).unwrap(), reference.get(var).unwrap());
        assert!(err < 1e-4, "weight gradients differ by {err}");
    }
}

fn grads_of_constant_input(image: &Tensor, w: &Var, b: &Var, pad: usize) -> GradStore {
    weighted_loss(ops::reference_conv2d, image, w, b, pad, true).backward().unwrap()
}

#[test]
fn non_contiguous_input_is_accepted() {
    let (x, w, b, pad) = inputs(SHAPES[1]);
    let transposed = x.as_tensor().transpose(2, 3).unwrap();
    let fast = fast_conv2d(&transposed, &w, &b, pad, true).unwrap();
    let reference = ops::reference_conv2d(&transposed, &w, &b, pad, true).unwrap();
    assert!(max_relative_error(&fast, &reference) < 1e-5);
}

fn reference_conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, _relu: bool) -> Result<Tensor> {
    ops::reference_max_pool2x2(&ops::reference_conv2d(x, w, b, pad, true)?)
}

fn fast_conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, _relu: bool) -> Result<Tensor> {
    ops::conv2d_relu_maxpool2x2(x, w, b, pad, Kernels::Fast)
}

fn im2col_conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, _relu: bool) -> Result<Tensor> {
    ops::conv2d_relu_maxpool2x2(x, w, b, pad, Kernels::Im2col)
}

/// A fused node's output (within 1e-5) and the gradients of its x, w and b (within 1e-4) equal those of the
/// same computation from candle's ops.
fn assert_node_equals_reference(
    fast: ConvFn,
    reference: ConvFn,
    (x, w, b, pad): (&Var, &Var, &Var, usize),
    shape: impl std::fmt::Debug,
) {
    let err = max_relative_error(&fast(x, w, b, pad, true).unwrap(), &reference(x, w, b, pad, true).unwrap());
    assert!(err < 1e-5, "{shape:?}: forward differs by {err}");
    let (fast, reference) = (grads(fast, x, w, b, pad, true), grads(reference, x, w, b, pad, true));
    for (name, var) in [("x", x), ("w", w), ("b", b)] {
        let err = max_relative_error(fast.get(var).unwrap(), reference.get(var).unwrap());
        assert!(err < 1e-4, "{shape:?}: gradient of {name} differs by {err}");
    }
}

#[test]
fn fused_conv_relu_pool_equals_the_reference() {
    let shapes = [
        (1, 3, 8, 8, 16, 3, 1),
        (3, 2, 6, 10, 4, 3, 1),
        (2, 1, 10, 6, 3, 5, 2),
        (1, 16, 12, 10, 32, 3, 1),
        (1, 2, 8, 8, 3, 3, 0),
        (1, 4, 66, 40, 5, 3, 1),
    ];
    for shape in shapes {
        let (x, w, b, pad) = inputs(shape);
        // A negative bias makes many windows all zero after the ReLU: ties, as in the network.
        let b = Var::from_tensor(&(b.as_tensor() - 0.3).unwrap()).unwrap();
        for fast in [fast_conv_relu_pool, im2col_conv_relu_pool] {
            assert_node_equals_reference(fast, reference_conv_relu_pool, (&x, &w, &b, pad), shape);
        }
    }
    // An odd output falls back to the reference pool (which floors, like candle's).
    let (x, w, b, pad) = inputs((1, 2, 7, 6, 3, 3, 1));
    assert_eq!(ops::conv2d_relu_maxpool2x2(&x, &w, &b, pad, Kernels::Fast).unwrap().dims(), &[1, 3, 3, 3]);
}

fn reference_upsample_conv(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, _relu: bool) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    ops::reference_conv2d(&x.upsample_nearest2d(2 * h, 2 * wd)?, w, b, pad, false)
}

fn fast_upsample_conv(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, _relu: bool) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    ops::upsample_conv2d(x, 2 * h, 2 * wd, w, b, pad, Kernels::Fast)
}

/// conv4's node: the convolution of the 2x upsampled input, read band by band without building it.
#[test]
fn fused_upsample_conv_equals_the_reference() {
    // (batch, in channels, height, width of the input before upsampling, out channels, kernel, padding)
    let shapes = [
        (1, 16, 8, 12, 2, 5, 2),
        (2, 3, 5, 7, 4, 3, 1),
        (1, 2, 6, 12, 3, 5, 2),
        (1, 4, 3, 20, 6, 3, 0),
        // Not covered by the direct weight gradient (1x1): the two ops one after the other.
        (1, 2, 4, 4, 3, 1, 0),
    ];
    for shape in shapes {
        let (x, w, b, pad) = inputs(shape);
        assert_node_equals_reference(fast_upsample_conv, reference_upsample_conv, (&x, &w, &b, pad), shape);
    }
    // A target other than twice the size: the two ops, as candle computes them.
    let (x, w, b, pad) = inputs((1, 2, 4, 5, 3, 3, 1));
    let fast = ops::upsample_conv2d(&x, 9, 11, &w, &b, pad, Kernels::Fast).unwrap();
    let reference = ops::reference_conv2d(&x.upsample_nearest2d(9, 11).unwrap(), &w, &b, pad, false).unwrap();
    assert!(max_relative_error(&fast, &reference) < 1e-5);
}
