#![cfg(target_arch = "x86_64")]
//! The direct AVX2 convolution kernels against im2col + gemm (itself tested against candle's ops in
//! ops_conv.rs), forward, weight gradient and input gradient, on the network's layer shapes and odd ones:
//! channel counts that leave 2- and 1-channel blocks, widths that are not a multiple of a block, zero
//! padding, bands that end mid-image.

use trainer::ops::cpu::{self, ConvGeometry};
use trainer::ops::kernels::conv::ConvKernels;
use trainer::ops::kernels::{direct, im2col};
use trainer::ops::Kernels;

mod common;
use common::values;

/// (batch, in channels, height, width, out channels, kernel, padding)
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 12] = [
    // The network's four layers at small sizes.
    (2, 3, 20, 26, 16, 3, 1),
    (1, 16, 34, 30, 32, 3, 1),
    (3, 32, 9, 14, 16, 3, 1),
    (1, 16, 22, 18, 2, 5, 2),
    // Odd shapes: 7 = 4 + 2 + 1 output channels, 5 = 4 + 1, widths 1, 25, 47, tall thin, no padding.
    (2, 5, 11, 25, 7, 3, 1),
    (1, 3, 13, 47, 5, 5, 2),
    (1, 2, 40, 1, 3, 3, 1),
    (2, 4, 6, 9, 3, 3, 0),
    (1, 6, 7, 8, 1, 5, 1),
    (1, 1, 3, 3, 1, 3, 2),
    // Several bands per image (2048 output pixels each), the last one partial.
    (1, 4, 70, 61, 6, 3, 1),
    (1, 2, 3, 1500, 3, 1, 0),
];

/// Largest difference relative to the largest magnitude of `expected`.
fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    let scale = expected.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    actual.iter().zip(expected).map(|(a, e)| (a - e).abs() / scale).fold(0.0, f32::max)
}

struct Case {
    geometry: ConvGeometry,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    grad_out: Vec<f32>,
}

fn case(shape: (usize, usize, usize, usize, usize, usize, usize)) -> Case {
    let (n, c, h, w, o, k, pad) = shape;
    let geometry = ConvGeometry::new(&[n, c, h, w], &[o, c, k, k], pad).expect("a supported shape");
    Case {
        x: values(n * c * h * w, 1),
        weight: values(o * c * k * k, 2).iter().map(|v| v * 0.3).collect(),
        bias: values(o, 3),
        grad_out: values(n * o * geometry.h_out() * geometry.w_out(), 4),
        geometry,
    }
}

#[test]
fn this_machine_runs_the_direct_kernels() {
    // The project's machines are x86-64 with AVX2 and FMA; without them every test below would compare
    // im2col with itself.
    assert!(cpu::available(), "this CPU lacks AVX2/FMA: the direct kernels are not exercised");
    assert_eq!(Kernels::Fast.conv(), Some(ConvKernels::Direct), "the fast kernels are the direct ones");
    assert_eq!(Kernels::Im2col.conv(), Some(ConvKernels::Im2col));
    assert_eq!(Kernels::Reference.conv(), None);
}

/// The convolution kernels [`Kernels::Fast`] runs on this machine.
fn fast() -> ConvKernels {
    Kernels::Fast.conv().expect("fast kernels")
}

#[test]
fn forward_equals_im2col() {
    for shape in SHAPES {
        let t = case(shape);
        for (bias, relu) in [(None, false), (Some(&t.bias[..]), false), (Some(&t.bias[..]), true)] {
            let direct = direct::conv_forward(&t.geometry, &t.x, &t.weight, bias, relu);
            let im2col = im2col::conv_forward(&t.geometry, &t.x, &t.weight, bias, relu);
            let err = relative_error(&direct, &im2col);
            assert!(err < 1e-5, "{shape:?} bias {} relu {relu}: forward differs by {err}", bias.is_some());
            assert_eq!(fast().forward(&t.geometry, &t.x, &t.weight, bias, relu), direct, "dispatch");
            let chosen = ConvKernels::Im2col.forward(&t.geometry, &t.x, &t.weight, bias, relu);
            assert_eq!(chosen, im2col, "dispatch to im2col");
        }
    }
}

#[test]
fn weight_gradient_equals_im2col() {
    for shape in SHAPES {
        let t = case(shape);
        let im2col = im2col::conv_weight_grad(&t.geometry, &t.x, &t.grad_out);
        let (dispatched, _) = fast().weight_grad(&t.geometry, &t.x, &t.grad_out);
        assert_eq!(ConvKernels::Im2col.weight_grad(&t.geometry, &t.x, &t.grad_out).0, im2col, "{shape:?}");
        if direct::weight_grad_covers(&t.geometry) {
            let direct = direct::conv_weight_grad(&t.geometry, &t.x, &t.grad_out);
            let err = relative_error(&direct, &im2col);
            assert!(err < 1e-5, "{shape:?}: weight gradient differs by {err}");
            assert_eq!(dispatched, direct, "{shape:?}: dispatch");
        } else {
            assert_eq!(dispatched, im2col, "{shape:?}: kernel sizes other than 3 and 5 keep im2col");
        }
    }
}

#[test]
fn input_gradient_equals_im2col() {
    // The input gradient is a forward pass of the output gradient with the flipped kernel: compare it
    // with the same computation built from the definition (not from input_grad), for both kernels.
    for (shape, kernels) in SHAPES.into_iter().flat_map(|s| [(s, fast()), (s, ConvKernels::Im2col)]) {
        let t = case(shape);
        let g = t.geometry;
        let actual = kernels.input_grad(&g, &t.weight, &t.grad_out);
        let mut expected = vec![0f32; g.n * g.c * g.h * g.w];
        let (h_out, w_out, k) = (g.h_out(), g.w_out(), g.k);
        for img in 0..g.n {
            for oi in 0..g.o {
                for yo in 0..h_out {
                    for xo in 0..w_out {
                        let gy = t.grad_out[((img * g.o + oi) * h_out + yo) * w_out + xo];
                        for ci in 0..g.c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (yi, xi) =
                                        ((yo + ky).wrapping_sub(g.pad), (xo + kx).wrapping_sub(g.pad));
                                    if yi < g.h && xi < g.w {
                                        let w = t.weight[((oi * g.c + ci) * k + ky) * k + kx];
                                        expected[((img * g.c + ci) * g.h + yi) * g.w + xi] += w * gy;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let err = relative_error(&actual, &expected);
        assert!(err < 1e-5, "{shape:?} {kernels:?}: input gradient differs from its definition by {err}");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let t = case(SHAPES[10]);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            (
                direct::conv_forward(&t.geometry, &t.x, &t.weight, Some(&t.bias), true),
                direct::conv_weight_grad(&t.geometry, &t.x, &t.grad_out),
            )
        })
    };
    assert_eq!(run(1), run(3));
}
