//! The fast max-pool, upsample and cross-entropy against candle's own ops, and against finite differences.

use candle_core::{DType, Device, Result, Tensor, Var};
use trainer::ops::{self, Kernels};

fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    ops::max_pool2x2(x, Kernels::Fast)
}

fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    ops::segmentation_cross_entropy(logits, labels, Kernels::Fast)
}

mod common;
use common::random;

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let (a, b) = (to_vec(a), to_vec(b));
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f32::max);
    assert!(err < tol, "{what}: differs by {err}");
}

/// (value, gradient wrt x) of sum(f(x) * fixed random weights).
fn value_and_grad(f: impl Fn(&Tensor) -> Result<Tensor>, x: &Var) -> (Tensor, Tensor) {
    let y = f(x.as_tensor()).unwrap();
    let weights = random(y.dims(), 42);
    let grads = (&y * weights).unwrap().sum_all().unwrap().backward().unwrap();
    (y, grads.get(x).unwrap().clone())
}

// Widths of 32 and more run the AVX2 rows of the pool (8 windows a step), 36 with a scalar tail.
const SHAPES: [[usize; 4]; 7] =
    [[1, 1, 2, 2], [3, 2, 6, 10], [1, 32, 16, 14], [2, 1, 4, 2], [1, 3, 30, 2], [2, 3, 6, 32], [1, 2, 4, 36]];

#[test]
fn max_pool_equals_the_reference_including_ties() {
    for shape in SHAPES {
        let x = Var::from_tensor(&random(&shape, 1)).unwrap();
        // Ties, as after a ReLU: many windows of zeros and some of equal positive values.
        let relu_like =
            Var::from_tensor(&(random(&shape, 2).relu().unwrap() * 4.0).unwrap().round().unwrap()).unwrap();
        for x in [&x, &relu_like] {
            let (fast_y, fast_g) = value_and_grad(max_pool2x2, x);
            let (ref_y, ref_g) = value_and_grad(ops::reference_max_pool2x2, x);
            let (candle_y, _) = value_and_grad(|x| x.max_pool2d(2), x);
            assert_eq!(to_vec(&fast_y), to_vec(&candle_y), "max-pool forward against candle's");
            assert_close(&ref_y, &candle_y, 1e-6, "reference max-pool forward against candle's");
            assert_close(&fast_g, &ref_g, 1e-6, "max-pool gradient");
        }
    }
}

/// Each window passes exactly its gradient, to its maxima only, split equally among ties (candle's own
/// max-pool backward passes ties/4 of it to each maximum).
#[test]
fn max_pool_gradient_goes_to_the_maxima_and_sums_to_the_window_gradient() {
    // One window per case: a unique maximum, two tied, four tied.
    let cases: [([f32; 4], [f32; 4]); 3] = [
        ([1.0, 3.0, 2.0, 0.5], [0.0, 1.0, 0.0, 0.0]),
        ([3.0, 3.0, 2.0, 0.5], [0.5, 0.5, 0.0, 0.0]),
        ([2.0, 2.0, 2.0, 2.0], [0.25, 0.25, 0.25, 0.25]),
    ];
    for (values, expected) in cases {
        for f in [max_pool2x2, ops::reference_max_pool2x2] {
            let x = Var::from_tensor(&Tensor::from_vec(values.to_vec(), (1, 1, 2, 2), &Device::Cpu).unwrap())
                .unwrap();
            let grads = f(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(to_vec(grads.get(&x).unwrap()), expected, "{values:?}");
        }
    }
}

#[test]
fn max_pool_gradient_equals_finite_differences() {
    let x = Var::from_tensor(&random(&[2, 3, 4, 6], 5)).unwrap();
    let values = to_vec(x.as_tensor());
    let weights = random(&[2, 3, 2, 3], 42);
    let loss = |v: Vec<f32>| {
        let t = Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
        (t.max_pool2d(2).unwrap() * &weights).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
    };
    for f in [max_pool2x2, ops::reference_max_pool2x2] {
        let (_, grad) = value_and_grad(f, &x);
        let grad = to_vec(&grad);
        for i in 0..values.len() {
            let eps = 1e-3;
            let (mut up, mut down) = (values.clone(), values.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss(up) - loss(down)) / (2.0 * eps);
            assert!((grad[i] - numeric).abs() < 2e-3, "element {i}: {} vs {numeric}", grad[i]);
        }
    }
}

#[test]
fn upsample_equals_candle_and_finite_differences() {
    for shape in SHAPES {
        let x = Var::from_tensor(&random(&shape, 3)).unwrap();
        let (h, w) = (2 * shape[2], 2 * shape[3]);
        let (fast_y, fast_g) = value_and_grad(|x| ops::upsample_nearest2d(x, h, w, Kernels::Fast), &x);
        let (ref_y, ref_g) = value_and_grad(|x| x.upsample_nearest2d(h, w), &x);
        assert_close(&fast_y, &ref_y, 0.0 + 1e-7, "upsample forward");
        assert_close(&fast_g, &ref_g, 1e-6, "upsample gradient");
        // The loss is linear in x: the gradient is the sum of the weights over each 2x2 copy.
        let weights = random(&[shape[0], shape[1], h, w], 42);
        let expected = (weights.avg_pool2d(2).unwrap() * 4.0).unwrap();
        assert_close(&fast_g, &expected, 1e-5, "upsample gradient vs sum of copies");
    }
    // Not exactly 2x: candle's op.
    let x = random(&[1, 2, 3, 4], 4);
    assert_eq!(ops::upsample_nearest2d(&x, 9, 12, Kernels::Fast).unwrap().dims(), &[1, 2, 9, 12]);
}

fn reference_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    let flat = logits.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
    candle_nn::loss::cross_entropy(&flat, labels)
}

#[test]
fn cross_entropy_equals_candle_and_finite_differences() {
    // Two classes run a closed form, others the general softmax; logits up to +-60 test its stability.
    let cases =
        [([1, 2, 4, 4], 1, 3.0), ([3, 2, 5, 7], 2, 3.0), ([2, 4, 3, 9], 3, 3.0), ([1, 2, 64, 64], 4, 3.0)];
    for (shape, seed, scale) in cases.into_iter().chain([([1, 2, 6, 6], 5, 120.0), ([1, 3, 4, 4], 6, 120.0)])
    {
        let logits = Var::from_tensor(&(random(&shape, seed) * scale).unwrap()).unwrap();
        let count = shape[0] * shape[2] * shape[3];
        let labels: Vec<u32> = (0..count).map(|i| ((i * 7 + seed as usize) % shape[1]) as u32).collect();
        let labels = Tensor::from_vec(labels, count, &Device::Cpu).unwrap();
        let fast = cross_entropy(&logits, &labels).unwrap();
        let reference = reference_loss(&logits, &labels).unwrap();
        assert_eq!(fast.dims(), reference.dims());
        let (f, r) = (fast.to_scalar::<f32>().unwrap(), reference.to_scalar::<f32>().unwrap());
        assert!((f - r).abs() < 1e-5 * r.abs().max(1.0), "{shape:?}: loss {f} vs {r}");
        let fast_g = fast.backward().unwrap().get(&logits).unwrap().clone();
        let ref_g = reference.backward().unwrap().get(&logits).unwrap().clone();
        assert_close(&fast_g, &ref_g, 1e-5, "cross-entropy gradient");
        // Finite differences in f64 on a few logits.
        let values = to_vec(logits.as_tensor());
        let g = to_vec(&fast_g);
        for i in (0..values.len()).step_by(values.len() / 5 + 1) {
            let loss_at = |d: f64| {
                let v: Vec<f64> = values
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| x as f64 + if j == i { d } else { 0.0 })
                    .collect();
                let t = Tensor::from_vec(v, &shape, &Device::Cpu).unwrap();
                reference_loss(&t, &labels).unwrap().to_scalar::<f64>().unwrap()
            };
            let numeric = (loss_at(1e-5) - loss_at(-1e-5)) / 2e-5;
            assert!(
                (numeric - g[i] as f64).abs() < 1e-5 + 1e-3 * numeric.abs(),
                "{shape:?} logit {i}: {} vs {numeric}",
                g[i]
            );
        }
    }
}

#[test]
fn cross_entropy_refuses_a_label_out_of_range() {
    let logits = random(&[1, 2, 2, 2], 1);
    let labels = Tensor::from_vec(vec![0u32, 1, 2, 0], 4, &Device::Cpu).unwrap();
    assert!(cross_entropy(&logits, &labels).is_err());
    let labels = labels.to_dtype(DType::U32).unwrap();
    assert!(cross_entropy(&logits, &labels).is_err());
}
