//! 2x2 max-pooling and 2x nearest upsampling of f32 planes (NCHW), forward and backward, each pass once
//! over the data (candle's backward of these ops builds several full-size temporaries). The max-pool rows
//! run 8 windows at a time with AVX2 where the CPU has it.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::ops::cpu::available;

/// Max over each 2x2 window of planes of h x w (even): planes of h/2 x w/2.
pub fn max_pool_forward(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let planes = x.len() / (h * w);
    let mut y: Vec<f32> = Vec::with_capacity(planes * ho * wo);
    y.spare_capacity_mut().par_chunks_mut(wo).enumerate().for_each(|(row, out)| {
        let (plane, yo) = (row / ho, row % ho);
        let (top, bottom) = x[plane * h * w + 2 * yo * w..][..2 * w].split_at(w);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: available() checked AVX2; the slices have the lengths the kernel reads and writes.
            done = unsafe { avx::max_pool_row(top, bottom, out) };
        }
        for (xo, v) in out.iter_mut().enumerate().skip(done) {
            v.write(top[2 * xo].max(top[2 * xo + 1]).max(bottom[2 * xo].max(bottom[2 * xo + 1])));
        }
    });
    // SAFETY: the rows cover the whole buffer and every element is written above.
    unsafe { y.set_len(planes * ho * wo) };
    y
}

/// Gradient of the max-pool input x given its output y and the output's gradient g: each window's gradient
/// goes to its maximum, split equally among the elements that tie for it (torch gives all of it to the
/// first; the sum is the same). With `relu`, x is a ReLU's output and only its positive elements pass a
/// gradient (the ReLU's backward, fused).
pub fn max_pool_backward(x: &[f32], y: &[f32], g: &[f32], h: usize, w: usize, relu: bool) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut grad: Vec<f32> = Vec::with_capacity(x.len());
    grad.spare_capacity_mut().par_chunks_mut(2 * w).enumerate().for_each(|(row, out)| {
        let (plane, yo) = (row / ho, row % ho);
        let (top, bottom) = x[plane * h * w + 2 * yo * w..][..2 * w].split_at(w);
        let (out_top, out_bottom) = out.split_at_mut(w);
        let (y, g) = (&y[row * wo..][..wo], &g[row * wo..][..wo]);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: available() checked AVX2; the slices have the lengths the kernel reads and writes.
            done = unsafe { avx::max_pool_backward_row(top, bottom, y, g, relu, out_top, out_bottom) };
        }
        for xo in done..wo {
            let (m, i) = (y[xo], 2 * xo);
            let window = [top[i], top[i + 1], bottom[i], bottom[i + 1]];
            let ties = window.iter().filter(|&&v| v == m).count();
            // A NaN window (no element equals its maximum) passes nothing.
            let share = g[xo] / ties.max(1) as f32;
            let pass = window.map(|v| if v == m && (!relu || v > 0.0) { share } else { 0.0 });
            out_top[i].write(pass[0]);
            out_top[i + 1].write(pass[1]);
            out_bottom[i].write(pass[2]);
            out_bottom[i + 1].write(pass[3]);
        }
    });
    // SAFETY: the row pairs cover the whole buffer and every element of each is written above.
    unsafe { grad.set_len(x.len()) };
    grad
}

/// AVX2 rows of the pool, 8 windows (16 input columns) per step: the window's maximum and gradient are
/// spread to the pair layout of the input rows (a lane permute) instead of de-interleaving the input.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Each pair of lanes (2i, 2i + 1) gets lane i of the half `HIGH` of v: (v0 v0 v1 v1 v2 v2 v3 v3).
    #[target_feature(enable = "avx2")]
    fn spread<const HIGH: bool>(v: __m256) -> __m256 {
        let idx = if HIGH {
            _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7)
        } else {
            _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
        };
        _mm256_permutevar8x32_ps(v, idx)
    }

    /// v + v with the lanes of each pair swapped: both lanes of a pair hold the pair's sum.
    #[target_feature(enable = "avx2")]
    fn pair_sum(v: __m256) -> __m256 {
        _mm256_add_ps(v, _mm256_permute_ps(v, 0b10_11_00_01))
    }

    /// out[xo] = max of window xo for the first 8 * (out.len() / 8) windows; returns how many.
    ///
    /// # Safety
    /// AVX2 available; top and bottom hold at least 2 * out.len() elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_pool_row(top: &[f32], bottom: &[f32], out: &mut [MaybeUninit<f32>]) -> usize {
        let blocks = out.len() / 8;
        assert!(top.len() >= 16 * blocks && bottom.len() >= 16 * blocks);
        for b in 0..blocks {
            let (t, d) = (top.as_ptr().add(16 * b), bottom.as_ptr().add(16 * b));
            let m0 = _mm256_max_ps(_mm256_loadu_ps(t), _mm256_loadu_ps(d));
            let m1 = _mm256_max_ps(_mm256_loadu_ps(t.add(8)), _mm256_loadu_ps(d.add(8)));
            let m0 = _mm256_max_ps(m0, _mm256_permute_ps(m0, 0b10_11_00_01));
            let m1 = _mm256_max_ps(m1, _mm256_permute_ps(m1, 0b10_11_00_01));
            // Even lanes of m0 and m1: windows (0 1 4 5 | 2 3 6 7), then 64-bit lanes reordered.
            let mixed = _mm256_shuffle_ps(m0, m1, 0b10_00_10_00);
            let ordered = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), 0b11_01_10_00));
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * b).cast(), ordered);
        }
        8 * blocks
    }

    /// The backward of [`super::max_pool_backward`] for the first 8 * (y.len() / 8) windows of a row pair;
    /// returns how many.
    ///
    /// # Safety
    /// AVX2 available; g is as long as y; top, bottom, out_top and out_bottom hold at least 2 * y.len().
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_pool_backward_row(
        top: &[f32],
        bottom: &[f32],
        y: &[f32],
        g: &[f32],
        relu: bool,
        out_top: &mut [MaybeUninit<f32>],
        out_bottom: &mut [MaybeUninit<f32>],
    ) -> usize {
        let blocks = y.len() / 8;
        let n = 16 * blocks;
        assert!(g.len() >= 8 * blocks && top.len() >= n && bottom.len() >= n);
        assert!(out_top.len() >= n && out_bottom.len() >= n);
        let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
        for b in 0..blocks {
            let (yv, gv) = (_mm256_loadu_ps(y.as_ptr().add(8 * b)), _mm256_loadu_ps(g.as_ptr().add(8 * b)));
            for (half, m, gg) in
                [(0, spread::<false>(yv), spread::<false>(gv)), (8, spread::<true>(yv), spread::<true>(gv))]
            {
                let at = 16 * b + half;
                let t = _mm256_loadu_ps(top.as_ptr().add(at));
                let d = _mm256_loadu_ps(bottom.as_ptr().add(at));
                let (hit_t, hit_d) = (_mm256_cmp_ps(t, m, _CMP_EQ_OQ), _mm256_cmp_ps(d, m, _CMP_EQ_OQ));
                let ties = pair_sum(_mm256_add_ps(_mm256_and_ps(hit_t, one), _mm256_and_ps(hit_d, one)));
                // A NaN window (no element equals its maximum) passes nothing: max(ties, 1).
                let share = _mm256_div_ps(gg, _mm256_max_ps(ties, one));
                let (pass_t, pass_d) = if relu {
                    (
                        _mm256_and_ps(hit_t, _mm256_cmp_ps(t, zero, _CMP_GT_OQ)),
                        _mm256_and_ps(hit_d, _mm256_cmp_ps(d, zero, _CMP_GT_OQ)),
                    )
                } else {
                    (hit_t, hit_d)
                };
                _mm256_storeu_ps(out_top.as_mut_ptr().add(at).cast(), _mm256_and_ps(pass_t, share));
                _mm256_storeu_ps(out_bottom.as_mut_ptr().add(at).cast(), _mm256_and_ps(pass_d, share));
            }
        }
        8 * blocks
    }
}

/// 2x nearest upsampling of planes of h x w, given as rows of w: planes of 2h x 2w (each row twice, each
/// element twice in its row).
pub fn upsample2x_forward(x: &[f32], w: usize) -> Vec<f32> {
    let mut y = vec![0f32; 4 * x.len()];
    y.par_chunks_mut(4 * w).enumerate().for_each(|(row, out)| {
        let input = &x[row * w..][..w];
        let (first, second) = out.split_at_mut(2 * w);
        for (pair, &v) in first.chunks_exact_mut(2).zip(input) {
            pair[0] = v;
            pair[1] = v;
        }
        second.copy_from_slice(first);
    });
    y
}

/// Gradient of the input (planes of h x w) of a 2x nearest upsampling given the gradient g of its output
/// (planes of 2h x 2w): each input element gets the sum of the gradient over its 2x2 copies.
pub fn upsample2x_backward(g: &[f32], w: usize) -> Vec<f32> {
    let mut grad = vec![0f32; g.len() / 4];
    grad.par_chunks_mut(w).enumerate().for_each(|(row, out)| {
        let (top, bottom) = g[row * 4 * w..][..4 * w].split_at(2 * w);
        for (xo, v) in out.iter_mut().enumerate() {
            *v = (top[2 * xo] + top[2 * xo + 1]) + (bottom[2 * xo] + bottom[2 * xo + 1]);
        }
    });
    grad
}
