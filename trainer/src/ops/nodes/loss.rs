//! The per-pixel cross-entropy as a candle `CustomOp2`: the forward computes the gradient with the loss
//! (each pixel's softmax once) and keeps it for the backward, which only scales it. The mean is over the
//! labelled pixels (labels other than [`IGNORE`]); with none labelled the loss and its gradient are 0.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::ops::kernels::loss::{labelled, scaled, summed_loss_and_gradient, IGNORE};

/// The op; it keeps the gradient its forward computed, and the count of labelled pixels, for its backward.
#[derive(Default)]
pub struct SegmentationCrossEntropy {
    grad: std::sync::Mutex<Option<(Vec<f32>, usize)>>,
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
        if let Some(bad) = labels.iter().find(|&&t| t as usize >= classes && t != IGNORE) {
            candle_core::bail!("fast cross-entropy: label {bad} is not below the {classes} classes");
        }
        let (total, grad) = summed_loss_and_gradient(x, labels, classes, plane);
        let count = labelled(labels);
        *self.grad.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))? = Some((grad, count));
        let loss = (total / count.max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    /// d loss / d logit = (softmax - one-hot) / labelled pixels, times the incoming scalar gradient (0 for
    /// an unlabelled pixel).
    fn bwd(
        &self,
        logits: &Tensor,
        _labels: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let stored = self.grad.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        let Some((summed, count)) = stored.as_ref() else {
            candle_core::bail!("fast cross-entropy: backward before forward")
        };
        let scale = grad_res.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / (*count).max(1) as f32;
        Ok((Some(Tensor::from_vec(scaled(summed, scale), logits.shape(), logits.device())?), None))
    }
}
