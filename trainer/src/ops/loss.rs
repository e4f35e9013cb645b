//! Mean cross-entropy of per-pixel logits (n, classes, h, w) against labels (n*h*w) in (image, y, x) order,
//! read in place: no permute/reshape copy, no log-softmax and gather temporaries.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::with_f32;

/// Pixels per parallel chunk.
const CHUNK: usize = 4096;

pub struct SegmentationCrossEntropy;

fn logits_and_labels<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [f32], &'a [u32], usize, usize)> {
    let (n, classes, h, w) = l1.shape().dims4()?;
    match (s1, l1.contiguous_offsets(), s2, l2.contiguous_offsets()) {
        (CpuStorage::F32(x), Some((a, b)), CpuStorage::U32(t), Some((c, d))) if d - c == n * h * w => {
            Ok((&x[a..b], &t[c..d], classes, h * w))
        }
        _ => candle_core::bail!(
            "fast cross-entropy: expected contiguous f32 logits (n,c,h,w) and n*h*w u32 labels, got {:?} and {:?}",
            l1.dims(),
            l2.dims()
        ),
    }
}

/// (max, ln sum exp(logit - max)) of one pixel's `classes` logits, `stride` apart from `base`.
fn log_softmax_at(x: &[f32], base: usize, stride: usize, classes: usize) -> (f32, f32) {
    let max = (0..classes).map(|c| x[base + c * stride]).fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = (0..classes).map(|c| (x[base + c * stride] - max).exp()).sum();
    (max, sum.ln())
}

impl CustomOp2 for SegmentationCrossEntropy {
    fn name(&self) -> &'static str {
        "segmentation-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, labels, classes, plane) = logits_and_labels(s1, l1, s2, l2)?;
        if let Some(bad) = labels.iter().find(|&&t| t as usize >= classes) {
            candle_core::bail!("fast cross-entropy: label {bad} is not below the {classes} classes");
        }
        let total: f64 = labels
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(chunk, labels)| {
                let mut sum = 0f64;
                for (i, &t) in labels.iter().enumerate() {
                    let p = chunk * CHUNK + i;
                    let base = (p / plane) * classes * plane + p % plane;
                    let (max, log_sum) = log_softmax_at(x, base, plane, classes);
                    sum += (max + log_sum - x[base + t as usize * plane]) as f64;
                }
                sum
            })
            .collect::<Vec<f64>>()
            .into_iter()
            .sum();
        let loss = (total / labels.len().max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    /// d loss / d logit = (softmax - one-hot) / pixels, times the incoming scalar gradient.
    fn bwd(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, classes, h, w) = logits.dims4()?;
        let plane = h * w;
        let scale =
            grad_res.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / labels.elem_count() as f32;
        let labels = labels.to_vec1::<u32>()?;
        let grad = with_f32(logits, |x| {
            let mut grad = vec![0f32; x.len()];
            let shared = SharedMut(grad.as_mut_ptr());
            labels.par_chunks(CHUNK).enumerate().for_each(|(chunk, labels)| {
                for (i, &t) in labels.iter().enumerate() {
                    let p = chunk * CHUNK + i;
                    let base = (p / plane) * classes * plane + p % plane;
                    let (max, log_sum) = log_softmax_at(x, base, plane, classes);
                    for c in 0..classes {
                        let softmax = (x[base + c * plane] - max - log_sum).exp();
                        let target = if c == t as usize { 1.0 } else { 0.0 };
                        // SAFETY: each pixel's class entries belong to one pixel, hence to one chunk.
                        unsafe { *shared.get().add(base + c * plane) = (softmax - target) * scale };
                    }
                }
            });
            grad
        })?;
        Ok((Some(Tensor::from_vec(grad, logits.shape(), logits.device())?), None))
    }
}

use super::conv::SharedMut;
