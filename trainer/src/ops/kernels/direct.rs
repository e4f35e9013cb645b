//! Direct convolution kernels for x86-64 with AVX2 and FMA: no im2col matrix and no gemm packing. Each band
//! of output rows copies its input rows once into a zero-bordered buffer (so the kernels have no edge
//! cases; the copy can also upsample the input 2x, so that conv4 never needs the upsampled tensor), then
//! register-blocked microkernels accumulate in AVX registers:
//!
//! - forward (also the input gradient, a forward pass with the flipped kernel): 4 output channels x 24
//!   pixels per block, 12 accumulators started from the bias; per kernel tap 3 input loads and 4 weight
//!   broadcasts feed 12 FMAs; the ReLU is applied as the block is stored into the output.
//! - weight gradient: for one input channel and kernel row, 4 output channels x the k taps of the row
//!   (k = 3; 2 x 5 for k = 5) accumulate over every pixel of the band; per 8 pixels k input loads and one
//!   gradient load per output channel feed 4k FMAs.
//!
//! Bands are summed in a fixed order, so results do not depend on the thread count. Where the CPU lacks
//! AVX2/FMA (or for kernel sizes the weight-gradient microkernel does not cover) the caller keeps im2col +
//! gemm (`super::conv::ConvKernels` chooses).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::ops::cpu::{available, sum_in_order, ConvGeometry, SharedMut};

/// Output pixels per band: enough rows that the bordered copy's extra k - 1 rows are cheap, while the
/// band's input rows (at most 32 channels x 10 rows x 1 kB at 256 wide) stay in the core's 512 kB L2.
const BAND_PIXELS: usize = 2048;
/// f32 lanes of an AVX register.
const LANES: usize = 8;
/// Pixels per forward block: 3 registers (the microkernel's 3 accumulators per channel).
const STRIP: usize = 3 * LANES;

thread_local! {
    static BORDERED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`conv_weight_grad`] covers this kernel size (its microkernel holds one kernel row of taps).
pub fn weight_grad_covers(g: &ConvGeometry) -> bool {
    g.k == 3 || g.k == 5
}

/// A band's input rows with zero borders: (c, rows, width) with `rows` = band rows + k - 1 starting at input
/// row y0 - pad, and `width` >= the columns any block reads, input column 0 at `pad`.
struct Bordered {
    rows: usize,
    width: usize,
}

impl Bordered {
    fn new(g: &ConvGeometry, band_rows: usize, out_width: usize) -> Bordered {
        Bordered { rows: band_rows + g.k - 1, width: out_width + g.k - 1 }
    }
    fn len(&self, g: &ConvGeometry) -> usize {
        g.c * self.rows * self.width
    }
    /// Fills `buf` from image `img` of the input for output rows starting at y0. Only the border is
    /// zeroed: the rows are copied over the rest.
    fn fill(&self, g: &ConvGeometry, input: Input, img: usize, y0: usize, buf: &mut [f32]) {
        for ci in 0..g.c {
            for r in 0..self.rows {
                let dst = &mut buf[(ci * self.rows + r) * self.width..][..self.width];
                let yi = (y0 + r).wrapping_sub(g.pad);
                if yi >= g.h {
                    dst.fill(0.0);
                    continue;
                }
                let (left, rest) = dst.split_at_mut(g.pad);
                let (row, right) = rest.split_at_mut(g.w);
                left.fill(0.0);
                right.fill(0.0);
                match input {
                    Input::Plain(x) => row.copy_from_slice(&x[((img * g.c + ci) * g.h + yi) * g.w..][..g.w]),
                    Input::Upsampled2x(x) => {
                        let (h, w) = (g.h / 2, g.w / 2);
                        let src = &x[((img * g.c + ci) * h + yi / 2) * w..][..w];
                        for (pair, &v) in row.chunks_exact_mut(2).zip(src) {
                            pair.fill(v);
                        }
                    }
                }
            }
        }
    }
}

/// What a convolution reads: x (n, c, h, w) itself, or the 2x nearest upsampling of x (n, c, h/2, w/2)
/// (the geometry's h and w are then the upsampled, even, sizes), read from x as each band is copied so
/// that the upsampled tensor never exists.
#[derive(Clone, Copy)]
enum Input<'a> {
    Plain(&'a [f32]),
    Upsampled2x(&'a [f32]),
}

impl Input<'_> {
    fn check(&self, g: &ConvGeometry) {
        match self {
            Input::Plain(x) => assert_eq!(x.len(), g.n * g.c * g.h * g.w),
            Input::Upsampled2x(x) => {
                assert!(g.h.is_multiple_of(2) && g.w.is_multiple_of(2), "an upsampled input has even sizes");
                assert_eq!(x.len(), g.n * g.c * g.h * g.w / 4);
            }
        }
    }
}

fn with_buffers<R>(bordered: usize, scratch: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    BORDERED.with(|b| {
        SCRATCH.with(|s| {
            let (mut b, mut s) = (b.borrow_mut(), s.borrow_mut());
            if b.len() < bordered {
                b.resize(bordered, 0.0);
            }
            if s.len() < scratch {
                s.resize(scratch, 0.0);
            }
            f(&mut b[..bordered], &mut s[..scratch])
        })
    })
}

/// Output channels in blocks of 4, then 2, then 1: (first channel, block size).
fn channel_blocks(o: usize) -> Vec<(usize, usize)> {
    let mut blocks = vec![];
    let mut start = 0;
    for size in [4, 2, 1] {
        while o - start >= size {
            blocks.push((start, size));
            start += size;
        }
    }
    blocks
}

/// The weights (o, c, k, k) reordered per channel block as (c, ky, kx, block channel), the order in which
/// the forward microkernel broadcasts them.
fn pack_weights(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let taps = g.c * g.k * g.k;
    let mut packed = Vec::with_capacity(weight.len());
    for (o0, ob) in channel_blocks(g.o) {
        for tap in 0..taps {
            packed.extend((o0..o0 + ob).map(|oi| weight[oi * taps + tap]));
        }
    }
    packed
}

/// `relu?(conv(x, weight) + bias)`, the same contract as the im2col kernel's `conv_forward`. Call only when
/// [`available`]. The microkernel starts from the bias and applies the ReLU before it stores, straight into
/// the output for whole strips; only a row's last, partial strip goes through a scratch row.
pub fn conv_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    forward(g, Input::Plain(x), weight, bias, relu)
}

/// [`conv_forward`] of the 2x nearest upsampling of x (n, c, h/2, w/2), where g describes the convolution
/// of the upsampled (n, c, h, w) input; the upsampled tensor is never built.
pub fn conv_forward_upsampled2x(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    forward(g, Input::Upsampled2x(x), weight, bias, relu)
}

fn forward(g: &ConvGeometry, x: Input, weight: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    assert!(available(), "direct convolution needs AVX2 and FMA");
    x.check(g);
    assert_eq!(weight.len(), g.o * g.c * g.k * g.k);
    let (h_out, w_out) = (g.h_out(), g.w_out());
    let out_pixels = h_out * w_out;
    let strips = w_out.div_ceil(STRIP);
    let whole_strips = w_out / STRIP;
    let padded_out = strips * STRIP;
    let packed = pack_weights(g, weight);
    let bias = bias.map_or_else(|| vec![0.0; g.o], <[f32]>::to_vec);
    assert_eq!(bias.len(), g.o);
    let blocks = channel_blocks(g.o);
    let len = g.n * g.o * out_pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let shared = SharedMut(out.as_mut_ptr());
    let block_len = g.c * g.k * g.k;
    g.bands(BAND_PIXELS).into_par_iter().for_each(|(img, y0, y1)| {
        let layout = Bordered::new(g, y1 - y0, padded_out);
        with_buffers(layout.len(g), g.o * STRIP, |bordered, partial| {
            layout.fill(g, x, img, y0, bordered);
            for r in 0..y1 - y0 {
                // Output row y0 + r of channel 0 of image img; channels are out_pixels apart.
                let row = (img * g.o * out_pixels + (y0 + r) * w_out) as isize;
                for s in 0..strips {
                    let input = &bordered[r * layout.width + s * STRIP..];
                    for &(o0, ob) in &blocks {
                        let w = &packed[o0 * block_len..][..ob * block_len];
                        let (dst, dst_stride) = if s < whole_strips {
                            // SAFETY: inside the output: channel o0 + ob - 1 < o, column s * STRIP + STRIP
                            // <= w_out; bands write disjoint rows.
                            (unsafe { shared.get().offset(row).add(o0 * out_pixels + s * STRIP) }, out_pixels)
                        } else {
                            (partial[o0 * STRIP..].as_mut_ptr(), STRIP)
                        };
                        // SAFETY: available() checked AVX2 and FMA; the block reads c planes of k rows of
                        // STRIP + k - 1 columns from `input` (inside the bordered buffer: r + k - 1 < rows,
                        // s * STRIP + STRIP + k - 1 <= width) and writes ob rows, dst_stride apart, of
                        // STRIP floats at `dst` (inside the output or `partial`, as above).
                        unsafe {
                            forward_block(
                                ob,
                                input,
                                layout.rows * layout.width,
                                layout.width,
                                g.c,
                                g.k,
                                w,
                                &bias[o0..o0 + ob],
                                relu,
                                dst,
                                dst_stride,
                            )
                        };
                    }
                }
                let done = whole_strips * STRIP;
                if done < w_out {
                    for oi in 0..g.o {
                        // SAFETY: the rest of row y0 + r of channel oi, inside the output as above.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                shared.get().offset(row).add(oi * out_pixels + done),
                                w_out - done,
                            )
                        };
                        dst.copy_from_slice(&partial[oi * STRIP..][..w_out - done]);
                    }
                }
            }
        })
    });
    // SAFETY: the bands cover every (image, channel, row) of the output, each row written above.
    unsafe { out.set_len(len) };
    out
}

/// Dispatches one forward block of `ob` (4, 2 or 1) output channels.
///
/// # Safety
/// AVX2 and FMA available; `input` covers what the block reads, and `out` points at ob rows of STRIP
/// writable floats, `out_stride` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_block(
    ob: usize,
    input: &[f32],
    c_stride: usize,
    row_stride: usize,
    c: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    relu: bool,
    out: *mut f32,
    out_stride: usize,
) {
    debug_assert!(input.len() >= (c - 1) * c_stride + (k - 1) * row_stride + STRIP + k - 1);
    debug_assert!(w.len() == ob * c * k * k && bias.len() == ob);
    #[cfg(target_arch = "x86_64")]
    {
        let (i, wp, b) = (input.as_ptr(), w.as_ptr(), bias.as_ptr());
        match ob {
            4 => avx::forward4(i, c_stride, row_stride, c, k, wp, b, relu, out, out_stride),
            2 => avx::forward::<2>(i, c_stride, row_stride, c, k, wp, b, relu, out, out_stride),
            _ => avx::forward::<1>(i, c_stride, row_stride, c, k, wp, b, relu, out, out_stride),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ob, input, c_stride, row_stride, c, k, w, bias, relu, out, out_stride);
        unreachable!("direct kernels need x86-64")
    }
}

/// Gradient of the kernel (o, c, k, k) given x (n, c, h, w) and the gradient of the pre-activation output
/// (n, o, h_out, w_out). Call only when [`available`] and [`weight_grad_covers`].
pub fn conv_weight_grad(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    weight_grad(g, Input::Plain(x), grad_out)
}

/// [`conv_weight_grad`] for the 2x nearest upsampling of x (n, c, h/2, w/2), as in
/// [`conv_forward_upsampled2x`].
pub fn conv_weight_grad_upsampled2x(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    weight_grad(g, Input::Upsampled2x(x), grad_out)
}

fn weight_grad(g: &ConvGeometry, x: Input, grad_out: &[f32]) -> Vec<f32> {
    assert!(available() && weight_grad_covers(g), "direct weight gradient: needs AVX2, FMA and k 3 or 5");
    x.check(g);
    let (h_out, w_out, k) = (g.h_out(), g.w_out(), g.k);
    let out_pixels = h_out * w_out;
    assert_eq!(grad_out.len(), g.n * g.o * out_pixels);
    // Pixels in whole registers; the gradient copy is zero beyond w_out, so those lanes add nothing.
    let padded_out = w_out.div_ceil(LANES) * LANES;
    let blocks: Vec<(usize, usize)> = if k == 3 {
        channel_blocks(g.o)
    } else {
        // k = 5: 2 channels x 5 taps = 10 accumulators.
        (0..g.o).step_by(2).map(|o0| (o0, (g.o - o0).min(2))).collect()
    };
    let taps = g.c * k * k;
    let partials: Vec<Vec<f32>> = g
        .bands(BAND_PIXELS)
        .into_par_iter()
        .map(|(img, y0, y1)| {
            let rows = y1 - y0;
            let layout = Bordered::new(g, rows, padded_out);
            let mut partial = vec![0f32; g.o * taps];
            // Rows of whole registers are read in place; others are copied with zeros after them.
            let in_place = w_out == padded_out;
            let scratch = if in_place { 0 } else { g.o * rows * padded_out };
            with_buffers(layout.len(g), scratch, |bordered, copy| {
                layout.fill(g, x, img, y0, bordered);
                let image_grad = &grad_out[img * g.o * out_pixels..][..g.o * out_pixels];
                let (grad, gy_stride) = if in_place {
                    (&image_grad[y0 * w_out..], out_pixels)
                } else {
                    copy.fill(0.0);
                    for oi in 0..g.o {
                        for r in 0..rows {
                            let src = &image_grad[oi * out_pixels + (y0 + r) * w_out..][..w_out];
                            copy[(oi * rows + r) * padded_out..][..w_out].copy_from_slice(src);
                        }
                    }
                    (&copy[..], rows * padded_out)
                };
                let mut sums = [0f32; 4 * 5];
                for &(o0, ob) in &blocks {
                    for ci in 0..g.c {
                        for ky in 0..k {
                            let input = &bordered[(ci * layout.rows + ky) * layout.width..];
                            let gy = &grad[o0 * gy_stride..];
                            // SAFETY: AVX2 and FMA checked above; the block reads `rows` rows of
                            // padded_out + k - 1 columns of `input` (inside the bordered plane: ky + rows
                            // <= layout.rows) and ob planes, gy_stride apart, of rows x padded_out of `gy`.
                            unsafe {
                                weight_grad_block(
                                    ob,
                                    k,
                                    input,
                                    layout.width,
                                    gy,
                                    gy_stride,
                                    padded_out,
                                    rows,
                                    &mut sums,
                                )
                            };
                            for (j, oi) in (o0..o0 + ob).enumerate() {
                                let dst = &mut partial[oi * taps + (ci * k + ky) * k..][..k];
                                dst.copy_from_slice(&sums[j * k..][..k]);
                            }
                        }
                    }
                }
            });
            partial
        })
        .collect();
    sum_in_order(partials, g.o * taps)
}

/// Dispatches one weight-gradient block: `sums[j * k + kx]` = sum over the band of
/// gy[j][r][p] * input[r][p + kx], for j < ob.
///
/// # Safety
/// AVX2 and FMA available; the slices cover what the block reads (see the call site).
#[allow(clippy::too_many_arguments)]
unsafe fn weight_grad_block(
    ob: usize,
    k: usize,
    input: &[f32],
    row_stride: usize,
    gy: &[f32],
    gy_stride: usize,
    width: usize,
    rows: usize,
    sums: &mut [f32; 20],
) {
    debug_assert!(input.len() >= (rows - 1) * row_stride + width + k - 1);
    debug_assert!(gy.len() >= (ob - 1) * gy_stride + rows * width);
    #[cfg(target_arch = "x86_64")]
    {
        let (i, gp, s) = (input.as_ptr(), gy.as_ptr(), sums.as_mut_ptr());
        match (k, ob) {
            (3, 4) => avx::weight_grad::<4, 3>(i, row_stride, gp, gy_stride, width, rows, s),
            (3, 2) => avx::weight_grad::<2, 3>(i, row_stride, gp, gy_stride, width, rows, s),
            (3, _) => avx::weight_grad::<1, 3>(i, row_stride, gp, gy_stride, width, rows, s),
            (_, 2) => avx::weight_grad::<2, 5>(i, row_stride, gp, gy_stride, width, rows, s),
            _ => avx::weight_grad::<1, 5>(i, row_stride, gp, gy_stride, width, rows, s),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ob, k, input, row_stride, gy, gy_stride, width, rows, sums);
        unreachable!("direct kernels need x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::LANES;

    /// out[j][0..STRIP] = relu?(bias[j] + sum over (ci, ky, kx) of w[(ci, ky, kx)][j] *
    /// input[ci][ky][kx..kx + STRIP]).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward<const OB: usize>(
        input: *const f32,
        c_stride: usize,
        row_stride: usize,
        c: usize,
        k: usize,
        w: *const f32,
        bias: *const f32,
        relu: bool,
        out: *mut f32,
        out_stride: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 3]; OB];
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm256_broadcast_ss(&*bias.add(j)); 3];
        }
        let mut wp = w;
        for ci in 0..c {
            let plane = input.add(ci * c_stride);
            for ky in 0..k {
                let row = plane.add(ky * row_stride);
                for kx in 0..k {
                    let p = row.add(kx);
                    let x0 = _mm256_loadu_ps(p);
                    let x1 = _mm256_loadu_ps(p.add(LANES));
                    let x2 = _mm256_loadu_ps(p.add(2 * LANES));
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let wv = _mm256_broadcast_ss(&*wp.add(j));
                        acc[0] = _mm256_fmadd_ps(wv, x0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(wv, x1, acc[1]);
                        acc[2] = _mm256_fmadd_ps(wv, x2, acc[2]);
                    }
                    wp = wp.add(OB);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            store(acc, relu, out.add(j * out_stride));
        }
    }

    /// Stores a block row of 3 registers, through a ReLU if asked.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(row: &[__m256; 3], relu: bool, out: *mut f32) {
        for (v, &a) in row.iter().enumerate() {
            let a = if relu { _mm256_max_ps(a, _mm256_setzero_ps()) } else { a };
            _mm256_storeu_ps(out.add(v * LANES), a);
        }
    }

    /// [`forward`] for 4 channels with its 12 accumulators as named locals: the compiler keeps the generic
    /// version's accumulator array in memory, loading and storing it around the FMAs.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward4(
        input: *const f32,
        c_stride: usize,
        row_stride: usize,
        c: usize,
        k: usize,
        w: *const f32,
        bias: *const f32,
        relu: bool,
        out: *mut f32,
        out_stride: usize,
    ) {
        let (b0, b1) = (_mm256_broadcast_ss(&*bias), _mm256_broadcast_ss(&*bias.add(1)));
        let (b2, b3) = (_mm256_broadcast_ss(&*bias.add(2)), _mm256_broadcast_ss(&*bias.add(3)));
        let (mut a00, mut a01, mut a02, mut a10, mut a11, mut a12) = (b0, b0, b0, b1, b1, b1);
        let (mut a20, mut a21, mut a22, mut a30, mut a31, mut a32) = (b2, b2, b2, b3, b3, b3);
        let mut wp = w;
        for ci in 0..c {
            let plane = input.add(ci * c_stride);
            for ky in 0..k {
                let row = plane.add(ky * row_stride);
                for kx in 0..k {
                    let p = row.add(kx);
                    let x0 = _mm256_loadu_ps(p);
                    let x1 = _mm256_loadu_ps(p.add(LANES));
                    let x2 = _mm256_loadu_ps(p.add(2 * LANES));
                    let w0 = _mm256_broadcast_ss(&*wp);
                    a00 = _mm256_fmadd_ps(w0, x0, a00);
                    a01 = _mm256_fmadd_ps(w0, x1, a01);
                    a02 = _mm256_fmadd_ps(w0, x2, a02);
                    let w1 = _mm256_broadcast_ss(&*wp.add(1));
                    a10 = _mm256_fmadd_ps(w1, x0, a10);
                    a11 = _mm256_fmadd_ps(w1, x1, a11);
                    a12 = _mm256_fmadd_ps(w1, x2, a12);
                    let w2 = _mm256_broadcast_ss(&*wp.add(2));
                    a20 = _mm256_fmadd_ps(w2, x0, a20);
                    a21 = _mm256_fmadd_ps(w2, x1, a21);
                    a22 = _mm256_fmadd_ps(w2, x2, a22);
                    let w3 = _mm256_broadcast_ss(&*wp.add(3));
                    a30 = _mm256_fmadd_ps(w3, x0, a30);
                    a31 = _mm256_fmadd_ps(w3, x1, a31);
                    a32 = _mm256_fmadd_ps(w3, x2, a32);
                    wp = wp.add(4);
                }
            }
        }
        for (j, row) in
            [[a00, a01, a02], [a10, a11, a12], [a20, a21, a22], [a30, a31, a32]].iter().enumerate()
        {
            store(row, relu, out.add(j * out_stride));
        }
    }

    /// sums[j * K + kx] = sum over r < rows, p < width (a multiple of LANES) of
    /// gy[j * gy_stride + r * width + p] * input[r * row_stride + p + kx].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weight_grad<const OB: usize, const K: usize>(
        input: *const f32,
        row_stride: usize,
        gy: *const f32,
        gy_stride: usize,
        width: usize,
        rows: usize,
        sums: *mut f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); K]; OB];
        for r in 0..rows {
            let row = input.add(r * row_stride);
            let grad = gy.add(r * width);
            for p in (0..width).step_by(LANES) {
                let mut xs = [_mm256_setzero_ps(); K];
                for (kx, x) in xs.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(row.add(p + kx));
                }
                for (j, acc) in acc.iter_mut().enumerate() {
                    let gv = _mm256_loadu_ps(grad.add(j * gy_stride + p));
                    for (a, &x) in acc.iter_mut().zip(&xs) {
                        *a = _mm256_fmadd_ps(gv, x, *a);
                    }
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            for (kx, &a) in acc.iter().enumerate() {
                *sums.add(j * K + kx) = horizontal_sum(a);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let quad = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
    }
}
