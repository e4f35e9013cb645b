//! The convolution's three passes (forward, weight gradient, input gradient) on the kernels a
//! [`ConvKernels`] value names: the [`direct`] AVX2 kernels or [`im2col`] + gemm. The value is passed down
//! from the caller, so two choices can run side by side in one process (tests, benches).
//!
//! The input gradient is a forward convolution of the output gradient with the flipped, transposed kernel.

use rayon::prelude::*;

use super::{direct, im2col};
use crate::ops::cpu::{self, ConvGeometry};

/// Which kernels run a convolution on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernels {
    /// The [`direct`] kernels, for the forward pass and, for the kernel sizes it covers
    /// ([`direct::weight_grad_covers`]), the weight gradient (im2col for others). Only where
    /// [`cpu::available`]: the kernels assert it.
    Direct,
    /// [`im2col`] + gemm for every pass, on any CPU.
    Im2col,
}

impl ConvKernels {
    /// The fastest kernels this CPU runs: direct where it has AVX2 and FMA, else im2col.
    pub fn best() -> ConvKernels {
        if cpu::available() {
            ConvKernels::Direct
        } else {
            ConvKernels::Im2col
        }
    }

    /// `relu?(conv(x, weight) + bias)`: x (n, c, h, w), weight (o, c, k, k), bias (o) or none; returns
    /// (n, o, h_out, w_out), contiguous.
    pub fn forward(
        self,
        g: &ConvGeometry,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
    ) -> Vec<f32> {
        match self {
            ConvKernels::Direct => direct::conv_forward(g, x, weight, bias, relu),
            ConvKernels::Im2col => im2col::conv_forward(g, x, weight, bias, relu),
        }
    }

    /// Gradients of the kernel (o, c, k, k) and bias (o) given the input x and the gradient of the
    /// pre-activation output (n, o, h_out, w_out).
    pub fn weight_grad(self, g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
        assert_eq!(x.len(), g.n * g.c * g.h * g.w);
        let grad_bias = cpu::bias_grad(g, grad_out);
        let grad_weight = if self == ConvKernels::Direct && direct::weight_grad_covers(g) {
            direct::conv_weight_grad(g, x, grad_out)
        } else {
            im2col::conv_weight_grad(g, x, grad_out)
        };
        (grad_weight, grad_bias)
    }

    /// Gradient of the input (n, c, h, w) given the kernel and the gradient of the pre-activation output.
    pub fn input_grad(self, g: &ConvGeometry, weight: &[f32], grad_out: &[f32]) -> Vec<f32> {
        self.forward(&g.input_gradient(), grad_out, &flip_kernel(g, weight), None, false)
    }
}

/// The kernel (o, c, k, k) flipped and transposed: flipped[ci][oi][ky][kx] = weight[oi][ci][k-1-ky][k-1-kx].
fn flip_kernel(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let k = g.k;
    let mut flipped = vec![0f32; weight.len()];
    for oi in 0..g.o {
        for ci in 0..g.c {
            for ky in 0..k {
                for kx in 0..k {
                    flipped[((ci * g.o + oi) * k + ky) * k + kx] =
                        weight[((oi * g.c + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
    flipped
}

/// The backward of a ReLU: the gradient `grad` of its output where the output `out` is positive, else 0.
pub fn relu_backward(grad: &[f32], out: &[f32]) -> Vec<f32> {
    grad.par_iter().zip(out).with_min_len(1 << 14).map(|(&gr, &r)| if r > 0.0 { gr } else { 0.0 }).collect()
}
