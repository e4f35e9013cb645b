//! Stride-1 convolution + bias (+ ReLU) in f32, NCHW, by im2col + gemm, on any CPU: im2col of a band of
//! output rows into a per-thread buffer that stays in cache, then one single-threaded `gemm` call; bands run
//! in parallel on rayon's pool (the one candle uses). The direct kernels replace these where the CPU has
//! AVX2 and FMA (see `super::conv::ConvKernels`).
//!
//! The weight gradient is the same im2col band times the output gradient, summed over bands in a fixed order
//! (deterministic whatever the thread count). The input gradient is a forward convolution (see
//! `super::conv`).

use std::cell::RefCell;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::ops::cpu::{sum_in_order, ConvGeometry, SharedMut};

/// Output pixels per band: big enough for an efficient gemm, small enough that the band's im2col buffer
/// (at most 400 x 512 floats, 800 kB, for conv4) stays in the core's L2 cache.
const BAND_PIXELS: usize = 512;

thread_local! {
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Columns (patch, pixels of the band) of output rows y0..y1 of one image (c, h, w).
fn im2col(g: &ConvGeometry, image: &[f32], y0: usize, y1: usize, columns: &mut [f32]) {
    let (w_out, k, pad) = (g.w_out(), g.k, g.pad);
    let pixels = (y1 - y0) * w_out;
    for ci in 0..g.c {
        let plane = &image[ci * g.h * g.w..][..g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut columns[((ci * k + ky) * k + kx) * pixels..][..pixels];
                // Output columns xo read input column xo + kx - pad: valid for xo in [lo, hi).
                let lo = pad.saturating_sub(kx).min(w_out);
                let hi = (g.w + pad).saturating_sub(kx).min(w_out).max(lo);
                for yo in y0..y1 {
                    let dst = &mut row[(yo - y0) * w_out..][..w_out];
                    let yi = (yo + ky).wrapping_sub(pad);
                    if yi >= g.h {
                        dst.fill(0.0);
                        continue;
                    }
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if hi > lo {
                        let xi = lo + kx - pad;
                        dst[lo..hi].copy_from_slice(&plane[yi * g.w + xi..][..hi - lo]);
                    }
                }
            }
        }
    }
}

/// Runs `f` with this thread's im2col buffer of at least `len` floats.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|cell| {
        let mut columns = cell.borrow_mut();
        if columns.len() < len {
            columns.resize(len, 0.0);
        }
        f(&mut columns[..len])
    })
}

/// `relu?(conv(x, weight) + bias)`: x (n, c, h, w), weight (o, c, k, k), bias (o) or none; returns
/// (n, o, h_out, w_out), contiguous.
pub fn conv_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(weight.len(), g.o * g.patch());
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    // Every element is written exactly once below (gemm with read_dst false), so skip zeroing.
    let len = g.n * g.o * out_pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let shared = SharedMut(out.as_mut_ptr());
    g.bands(BAND_PIXELS).into_par_iter().for_each(|(img, y0, y1)| {
        let pixels = (y1 - y0) * w_out;
        with_columns(patch * pixels, |columns| {
            im2col(g, &x[img * g.c * g.h * g.w..][..g.c * g.h * g.w], y0, y1, columns);
            // SAFETY: bands write disjoint (channel, row range) blocks of `out`, which outlives the loop;
            // the strides describe (o x pixels) with rows out_pixels apart, inside the image's block.
            unsafe {
                let dst = shared.get().add(img * g.o * out_pixels + y0 * w_out);
                matmul(
                    g.o,
                    pixels,
                    patch,
                    (dst, out_pixels as isize),
                    (weight.as_ptr(), 1, patch as isize),
                    (columns.as_ptr(), 1, pixels as isize),
                );
                for oi in 0..g.o {
                    let row = std::slice::from_raw_parts_mut(dst.add(oi * out_pixels), pixels);
                    let b = bias.map_or(0.0, |b| b[oi]);
                    if relu {
                        row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                    } else if b != 0.0 {
                        row.iter_mut().for_each(|v| *v += b);
                    }
                }
            }
        })
    });
    // SAFETY: the bands cover every (image, channel, pixel) of the output, each written by its gemm.
    unsafe { out.set_len(len) };
    out
}

/// Gradient of the kernel (o, c, k, k) given x (n, c, h, w) and the gradient of the pre-activation output
/// (n, o, h_out, w_out).
pub fn conv_weight_grad(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    // Either side of the product can be unrolled into patches; unroll the one with fewer rows.
    if g.o * g.k * g.k + g.c < g.c * g.k * g.k + g.o {
        weight_grad_unrolling_gradient(g, x, grad_out)
    } else {
        weight_grad_unrolling_input(g, x, grad_out)
    }
}

/// dW (o x c*k*k) = sum over bands of grad (o x pixels) * im2col(x)^T (pixels x c*k*k).
fn weight_grad_unrolling_input(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    let partials = g
        .bands(BAND_PIXELS)
        .into_par_iter()
        .map(|(img, y0, y1)| {
            let pixels = (y1 - y0) * w_out;
            let grad = &grad_out[img * g.o * out_pixels + y0 * w_out..];
            let mut grad_weight = vec![0f32; g.o * patch];
            with_columns(patch * pixels, |columns| {
                im2col(g, &x[img * g.c * g.h * g.w..][..g.c * g.h * g.w], y0, y1, columns);
                // SAFETY: grad holds (o x pixels) with rows out_pixels apart (the last row ends inside
                // grad_out); columns^T is (pixels x patch); grad_weight is (o x patch), row-major.
                unsafe {
                    matmul(
                        g.o,
                        patch,
                        pixels,
                        (grad_weight.as_mut_ptr(), patch as isize),
                        (grad.as_ptr(), 1, out_pixels as isize),
                        (columns.as_ptr(), pixels as isize, 1),
                    );
                }
            });
            grad_weight
        })
        .collect();
    sum_in_order(partials, g.o * patch)
}

/// The same product arranged over input pixels: dW[o][c][ky][kx] = sum over input pixels p of
/// grad_pad[o][p + pad - (ky, kx)] * x[c][p], where the first factor is the im2col of the output gradient
/// in the input-gradient geometry (kernel offsets flipped). Cheaper when o*k*k < c*k*k (conv3, conv4).
fn weight_grad_unrolling_gradient(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let t = g.input_gradient();
    let (rows, plane, k) = (t.patch(), g.h * g.w, g.k);
    let partials = t
        .bands(BAND_PIXELS)
        .into_par_iter()
        .map(|(img, y0, y1)| {
            let pixels = (y1 - y0) * g.w;
            // flipped[(o, k-1-ky, k-1-kx)][c]
            let mut flipped = vec![0f32; rows * g.c];
            with_columns(rows * pixels, |columns| {
                im2col(&t, &grad_out[img * t.c * t.h * t.w..][..t.c * t.h * t.w], y0, y1, columns);
                // SAFETY: columns is (rows x pixels) row-major; x's band read as (pixels x c) has rows 1
                // and columns `plane` apart, inside the image; flipped is (rows x c) row-major.
                unsafe {
                    matmul(
                        rows,
                        g.c,
                        pixels,
                        (flipped.as_mut_ptr(), g.c as isize),
                        (columns.as_ptr(), 1, pixels as isize),
                        (x.as_ptr().add(img * g.c * plane + y0 * g.w), plane as isize, 1),
                    );
                }
            });
            flipped
        })
        .collect();
    let flipped = sum_in_order(partials, rows * g.c);
    let mut grad_weight = vec![0f32; g.o * g.patch()];
    for oi in 0..g.o {
        for ci in 0..g.c {
            for ky in 0..k {
                for kx in 0..k {
                    grad_weight[((oi * g.c + ci) * k + ky) * k + kx] =
                        flipped[((oi * k + (k - 1 - ky)) * k + (k - 1 - kx)) * g.c + ci];
                }
            }
        }
    }
    grad_weight
}

/// dst = lhs x rhs for an (m x k) by (k x n) product on one thread (the callers parallelise over bands).
/// Each operand is (pointer, column stride, row stride) in elements; dst is (pointer, row stride) with
/// adjacent columns, and is overwritten, not accumulated into.
///
/// # Safety
/// Every element the strides address must lie inside its allocation, and dst must not overlap the inputs.
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    (dst, dst_rs): (*mut f32, isize),
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
) {
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        0.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}
