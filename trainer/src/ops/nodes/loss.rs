//! The per-pixel cross-entropy as a candle `CustomOp2`: the forward computes the gradient with the loss
//! (each pixel's softmax once) and keeps it for the backward, which only scales it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::ops::kernels::loss::{scaled, summed_loss_and_gradient};

/// The op; it keeps the gradient its forward computed for its backward.
#[derive(Default)]
pub struct SegmentationCrossEntropy {
    grad: std::sync::Mutex<Option<Vec<f32>>>,
}

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

impl CustomOp2 for SegmentationCrossEntropy {
    fn name(&self) -> &'static str {
        "segmentation-cross-entropy"
    }

    /// The loss, and the gradient of the summed loss kept for the backward.
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
        let (total, grad) = summed_loss_and_gradient(x, labels, classes, plane);
        *self.grad.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))? = Some(grad);
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
        let scale =
            grad_res.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / labels.elem_count() as f32;
        let stored = self.grad.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        let Some(summed) = stored.as_ref() else {
            candle_core::bail!("fast cross-entropy: backward before forward")
        };
        Ok((Some(Tensor::from_vec(scaled(summed, scale), logits.shape(), logits.device())?), None))
    }
}
