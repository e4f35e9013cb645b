//! Mean cross-entropy of per-pixel logits (n, classes, h, w) against labels (n*h*w) in (image, y, x) order,
//! read in place: no permute/reshape copy, no log-softmax and gather temporaries. One pass computes the
//! loss and its gradient together; two classes (the network's) run a closed form, 8 pixels at a time with
//! AVX2. Pixels labelled [`IGNORE`] (unlabelled) add nothing to the loss and get a zero gradient, as with
//! PyTorch's `ignore_index`; the caller divides by the count of the others.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::ops::cpu::available;
use crate::ops::cpu::SharedMut;

/// Pixels per parallel chunk.
const CHUNK: usize = 4096;

/// The label of an unlabelled pixel: [`imaging::masks::UNLABELLED`] as u32.
pub const IGNORE: u32 = imaging::masks::UNLABELLED as u32;

/// Summed loss of a run of pixels of one image with two classes, whose class-0 and class-1 logits are x0 and
/// x1, writing d loss / d logit to g0 and g1. In closed form: with z = x_other - x_label the loss is
/// softplus(z) = max(z, 0) + ln(1 + e^-|z|) and the gradient sigmoid(z) for the other class, its negative for
/// the label; stable for any z. Eight pixels at a time with AVX2 where the CPU has it ([`exp_neg`] and
/// [`ln_1p_unit`] are plain arithmetic for that), the rest one by one.
fn two_class_run(x0: &[f32], x1: &[f32], labels: &[u32], g0: &mut [f32], g1: &mut [f32]) -> f64 {
    let n = labels.len();
    let (x0, x1, g0, g1) = (&x0[..n], &x1[..n], &mut g0[..n], &mut g1[..n]);
    let mut sum = 0f64;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: available() checked AVX2 and FMA; all five slices hold n elements.
        (done, sum) = unsafe { avx::two_class_run(x0, x1, labels, g0, g1) };
    }
    for i in done..n {
        if labels[i] == IGNORE {
            (g0[i], g1[i]) = (0.0, 0.0);
            continue;
        }
        let (loss, grad1) = two_class_pixel(x0[i], x1[i], labels[i]);
        (g0[i], g1[i]) = (-grad1, grad1);
        sum += loss as f64;
    }
    sum
}

/// (loss, d loss / d logit of class 1) of one pixel of [`two_class_run`].
fn two_class_pixel(x0: f32, x1: f32, label: u32) -> (f32, f32) {
    let label_is_1 = label == 1;
    let z = if label_is_1 { x0 - x1 } else { x1 - x0 };
    let e = exp_neg(z.abs());
    let r = 1.0 / (1.0 + e);
    let other = if z >= 0.0 { r } else { e * r };
    // A NaN logit makes the loss NaN (the trainer stops on a non-finite loss), not 0.
    let loss = if z.is_nan() { f32::NAN } else { z.max(0.0) + ln_1p_unit(e) };
    (loss, if label_is_1 { -other } else { other })
}

/// e^-a for a >= 0 within a few ulp (0 for a > 87, where it would leave the normal range): 2^-n e^-r with
/// n = round(a / ln 2) and |r| <= ln 2 / 2, e^-r by its Taylor series to r^7 (error below 1e-8).
fn exp_neg(a: f32) -> f32 {
    // Adding 1.5 * 2^23 and taking it away again rounds to the nearest integer (for |v| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in two parts so that n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let a = a.min(87.0);
    let n = (a * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (n * LN2_HI - a) + n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    poly * f32::from_bits(((127 - n as i32) as u32) << 23)
}

/// ln(1 + e) for 0 <= e <= 1 as 2 atanh(s), s = e / (2 + e) <= 1/3, by its series to s^13 (error below
/// 1e-8), accurate for small e too.
fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    2.0 * s * series
}

/// Summed loss of a run of pixels of one image, any number of classes, the logits of class c at
/// `x[c * plane..]` and the gradient written likewise: ln sum exp(x) - x_label and softmax - one-hot.
fn any_classes_run(x: &[f32], plane: usize, classes: usize, labels: &[u32], grad: &mut [f32]) -> f64 {
    let mut sum = 0f64;
    for (i, &t) in labels.iter().enumerate() {
        if t == IGNORE {
            // The gradient is zero already.
            continue;
        }
        let max = (0..classes).map(|c| x[c * plane + i]).fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for c in 0..classes {
            let e = (x[c * plane + i] - max).exp();
            grad[c * plane + i] = e;
            total += e;
        }
        for c in 0..classes {
            grad[c * plane + i] = grad[c * plane + i] / total - if c == t as usize { 1.0 } else { 0.0 };
        }
        sum += (max + total.ln() - x[t as usize * plane + i]) as f64;
    }
    sum
}

/// The summed loss of every labelled pixel and its gradient (n, classes, h, w): x holds the logits (n,
/// classes, h, w) with `plane` = h * w, labels the n * h * w classes, each below `classes` or [`IGNORE`].
/// Runs of pixels are summed in a fixed order, so the result does not depend on the thread count.
pub fn summed_loss_and_gradient(x: &[f32], labels: &[u32], classes: usize, plane: usize) -> (f64, Vec<f32>) {
    debug_assert!(labels.iter().all(|&t| (t as usize) < classes || t == IGNORE));
    let images = labels.len() / plane.max(1);
    // Runs of at most CHUNK pixels inside one image, in a fixed order: (image, first pixel, end).
    let runs: Vec<(usize, usize, usize)> = (0..images)
        .flat_map(|image| (0..plane).step_by(CHUNK).map(move |q| (image, q, (q + CHUNK).min(plane))))
        .collect();
    let mut grad = vec![0f32; x.len()];
    let shared = SharedMut(grad.as_mut_ptr());
    let total: f64 = runs
        .into_par_iter()
        .map(|(image, q0, q1)| {
            let at = image * classes * plane + q0;
            let labels = &labels[image * plane + q0..image * plane + q1];
            // SAFETY: runs cover disjoint pixels, so disjoint (class, pixel) entries of the gradient;
            // the slice from `at` ends inside this image's classes x plane block.
            let grad = unsafe {
                std::slice::from_raw_parts_mut(shared.get().add(at), (classes - 1) * plane + q1 - q0)
            };
            let x = &x[at..at + (classes - 1) * plane + q1 - q0];
            if classes != 2 {
                return any_classes_run(x, plane, classes, labels, grad);
            }
            let (g0, g1) = grad.split_at_mut(plane);
            two_class_run(x, &x[plane..], labels, g0, g1)
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum();
    (total, grad)
}

/// How many labels are not [`IGNORE`]: what the summed loss is divided by.
pub fn labelled(labels: &[u32]) -> usize {
    labels.iter().filter(|&&t| t != IGNORE).count()
}

/// `summed` times `scale`, in parallel: the gradient of the mean loss from that of the summed loss.
pub fn scaled(summed: &[f32], scale: f32) -> Vec<f32> {
    summed.par_iter().with_min_len(CHUNK).map(|&g| g * scale).collect()
}

/// [`two_class_pixel`], 8 pixels per instruction: the same formulas ([`exp_neg`], [`ln_1p_unit`]) with fused
/// multiply-adds.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// (pixels done: a multiple of 8, their summed loss).
    ///
    /// # Safety
    /// AVX2 and FMA available; the five slices hold labels.len() elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn two_class_run(
        x0: &[f32],
        x1: &[f32],
        labels: &[u32],
        g0: &mut [f32],
        g1: &mut [f32],
    ) -> (usize, f64) {
        let done = labels.len() / 8 * 8;
        assert!(x0.len() >= done && x1.len() >= done && g0.len() >= done && g1.len() >= done);
        let set = _mm256_set1_ps;
        let (sign, zero, one) = (set(-0.0), _mm256_setzero_ps(), set(1.0));
        let mut sums = zero;
        for i in (0..done).step_by(8) {
            let (a, b) = (_mm256_loadu_ps(x0.as_ptr().add(i)), _mm256_loadu_ps(x1.as_ptr().add(i)));
            let label = _mm256_loadu_si256(labels.as_ptr().add(i).cast());
            let is_1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(label, _mm256_set1_epi32(1)));
            // All bits set where the pixel is unlabelled: its loss and gradient are cleared below.
            let ignored =
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(label, _mm256_set1_epi32(super::IGNORE as i32)));
            // z = x_other - x_label: x1 - x0, sign flipped where the label is 1.
            let z = _mm256_xor_ps(_mm256_sub_ps(b, a), _mm256_and_ps(is_1, sign));
            // exp_neg(|z|)
            let abs = _mm256_min_ps(_mm256_andnot_ps(sign, z), set(87.0));
            let round = set(12_582_912.0);
            let n = _mm256_sub_ps(_mm256_fmadd_ps(abs, set(std::f32::consts::LOG2_E), round), round);
            let r = _mm256_fmadd_ps(n, set(1.428_606_8e-6), _mm256_fmsub_ps(n, set(0.693_145_75), abs));
            let mut poly = set(1.0 / 5040.0);
            for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 1.0 / 2.0, 1.0, 1.0] {
                poly = _mm256_fmadd_ps(poly, r, set(c));
            }
            let exponent = _mm256_sub_epi32(_mm256_set1_epi32(127), _mm256_cvtps_epi32(n));
            let e = _mm256_mul_ps(poly, _mm256_castsi256_ps(_mm256_slli_epi32(exponent, 23)));
            // sigmoid(z)
            let inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
            let other = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, _mm256_cmp_ps(z, zero, _CMP_GE_OQ));
            let grad1 = _mm256_xor_ps(other, _mm256_and_ps(is_1, sign));
            _mm256_storeu_ps(g1.as_mut_ptr().add(i), _mm256_andnot_ps(ignored, grad1));
            _mm256_storeu_ps(g0.as_mut_ptr().add(i), _mm256_andnot_ps(ignored, _mm256_xor_ps(grad1, sign)));
            // max(z, 0) + ln_1p_unit(e), NaN where z is NaN
            let s = _mm256_div_ps(e, _mm256_add_ps(set(2.0), e));
            let s2 = _mm256_mul_ps(s, s);
            let mut series = set(1.0 / 13.0);
            for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
                series = _mm256_fmadd_ps(series, s2, set(c));
            }
            let ln = _mm256_mul_ps(_mm256_add_ps(s, s), series);
            let loss = _mm256_add_ps(_mm256_max_ps(z, zero), ln);
            let loss = _mm256_blendv_ps(loss, set(f32::NAN), _mm256_cmp_ps(z, z, _CMP_UNORD_Q));
            sums = _mm256_add_ps(sums, _mm256_andnot_ps(ignored, loss));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
        (done, lanes.iter().map(|&v| v as f64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_and_ln_1p_unit_are_accurate() {
        for i in 0..=100_000 {
            let a = i as f32 * 87.0 / 100_000.0;
            let (got, want) = (exp_neg(a) as f64, (-(a as f64)).exp());
            assert!((got - want).abs() <= 4e-7 * want, "exp_neg({a}) = {got}, not {want}");
            let e = i as f32 / 100_000.0;
            let (got, want) = (ln_1p_unit(e) as f64, (e as f64).ln_1p());
            assert!((got - want).abs() <= 4e-7 * want + 1e-30, "ln_1p_unit({e}) = {got}, not {want}");
        }
        assert_eq!(exp_neg(1000.0), exp_neg(87.0));
        assert_eq!(ln_1p_unit(0.0), 0.0);
    }

    /// The AVX2 rows (8 pixels) and the one-by-one tail give the same numbers within rounding.
    #[test]
    fn two_class_rows_equal_the_pixel_formula() {
        let n = 37;
        let x0: Vec<f32> = (0..n).map(|i| (i as f32 * 1.7).sin() * 30.0).collect();
        let x1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.9).cos() * 30.0).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i % 3 == 0) as u32).collect();
        let (mut g0, mut g1) = (vec![0f32; n], vec![0f32; n]);
        let sum = two_class_run(&x0, &x1, &labels, &mut g0, &mut g1);
        let mut expected = 0f64;
        for i in 0..n {
            let (loss, grad1) = two_class_pixel(x0[i], x1[i], labels[i]);
            expected += loss as f64;
            assert!((g1[i] - grad1).abs() <= 1e-6 && g0[i] == -g1[i], "pixel {i}");
        }
        assert!((sum - expected).abs() <= 1e-5 * expected, "{sum} vs {expected}");
        // Unlabelled pixels, in the AVX2 rows and the tail: no loss, zero gradient, the rest unchanged.
        let mut partial = labels.clone();
        for i in [0, 5, 9, n - 2] {
            partial[i] = IGNORE;
        }
        let (mut p0, mut p1) = (vec![1f32; n], vec![1f32; n]);
        let partial_sum = two_class_run(&x0, &x1, &partial, &mut p0, &mut p1);
        let mut kept = 0f64;
        for i in 0..n {
            if partial[i] == IGNORE {
                assert_eq!((p0[i].to_bits(), p1[i].to_bits()), (0, 0), "pixel {i}");
            } else {
                kept += two_class_pixel(x0[i], x1[i], labels[i]).0 as f64;
                assert_eq!((p0[i], p1[i]), (g0[i], g1[i]), "pixel {i}");
            }
        }
        assert!((partial_sum - kept).abs() <= 1e-5 * kept, "{partial_sum} vs {kept}");
        assert_eq!(labelled(&partial), n - 4);
        let mut nan = x0.clone();
        for i in [3, n - 1] {
            nan[i] = f32::NAN;
            assert!(two_class_run(&nan, &x1, &labels, &mut g0, &mut g1).is_nan(), "NaN at {i}");
            nan[i] = x0[i];
        }
    }
}
