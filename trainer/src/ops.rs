//! The network's ops: convolution with bias and optional ReLU (fused with the max-pool after conv2), 2x
//! nearest upsampling (fused with conv4 where the direct kernels run) and the per-pixel cross-entropy.
//!
//! Each function takes the [`Kernels`] to run. With the fast ones, on the CPU in f32, each op is one candle
//! autograd node ([`nodes`]) with its own forward and backward on the CPU kernels ([`kernels`]: the direct
//! AVX2 convolutions where the CPU has them, else im2col + gemm; the pool, upsampling and loss), giving the
//! same numbers as candle's ops within float rounding, and much faster. On any other device or dtype, and
//! with [`Kernels::Reference`], each function is candle's own ops, so the CUDA build is untouched.
//!
//! Layers, modelled on candle's `cpu/` (kernels) apart from `cpu_backend/` (ops): [`cpu`] (shared helpers)
//! <- [`kernels`] (slices only) <- [`nodes`] (candle custom ops) <- this module (the choice of node).

pub mod cpu;
pub mod kernels;
pub mod nodes;

use candle_core::{DType, Device, Result, Tensor};

use cpu::keep_freed_memory;
use cpu::ConvGeometry;
use kernels::conv::ConvKernels;
use kernels::direct;
use nodes::conv::{Conv2dBiasRelu, Conv2dReluMaxPool, Upsample2xConv2d};
use nodes::loss::SegmentationCrossEntropy;
use nodes::pool::{MaxPool2x2, Upsample2x};

/// Which kernels the ops run. A value, not a process-wide setting: the network holds one
/// ([`crate::model::SegNet::with_kernels`]), so runs with different kernels can share a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fused CPU nodes, with the direct AVX2/FMA convolutions where the CPU has them, else im2col +
    /// gemm (what the trainer runs).
    #[default]
    Fast,
    /// The fused CPU nodes with every convolution through im2col + gemm: for comparing the two convolutions
    /// on a CPU that has AVX2 and FMA.
    Im2col,
    /// candle's own ops everywhere: much slower; the reference the others are tested against.
    Reference,
}

impl Kernels {
    /// The convolution kernels of the CPU nodes; none for [`Kernels::Reference`].
    pub fn conv(self) -> Option<ConvKernels> {
        match self {
            Kernels::Fast => Some(ConvKernels::best()),
            Kernels::Im2col => Some(ConvKernels::Im2col),
            Kernels::Reference => None,
        }
    }

    /// Whether the CPU nodes run at all (every choice but [`Kernels::Reference`]).
    fn fast(self) -> bool {
        self != Kernels::Reference
    }
}

fn cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// `relu?(conv2d(x, w, padding) + b)` for x (N,C,H,W), w (O,C,K,K), b (O), stride 1: the CPU node where it
/// applies (fast kernels, CPU, f32, shapes [`ConvGeometry`] covers), else [`reference_conv2d`].
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    relu: bool,
    kernels: Kernels,
) -> Result<Tensor> {
    let Some(kernels) = kernels.conv() else { return reference_conv2d(x, w, b, padding, relu) };
    let on_cpu_f32 = [x, w, b].into_iter().all(cpu_f32);
    if !on_cpu_f32 || ConvGeometry::new(x.dims(), w.dims(), padding).is_none() {
        return reference_conv2d(x, w, b, padding, relu);
    }
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Conv2dBiasRelu { padding, relu, kernels })
}

/// The same op built from candle's own ops: the reference the fast kernels are tested against.
pub fn reference_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize, relu: bool) -> Result<Tensor> {
    let y = x.conv2d(w, padding, 1, 1, 1)?;
    let y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// `max_pool2d(relu(conv2d(x, w, padding) + b), 2)`: conv2 and the pool after it as one fused node on the
/// CPU with the fast kernels (its output must have even height and width), else [`conv2d`] then
/// [`max_pool2x2`].
pub fn conv2d_relu_maxpool2x2(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    kernels: Kernels,
) -> Result<Tensor> {
    let fits = ConvGeometry::new(x.dims(), w.dims(), padding)
        .is_some_and(|g| g.h_out() % 2 == 0 && g.w_out() % 2 == 0);
    let conv = kernels.conv().filter(|_| [x, w, b].into_iter().all(cpu_f32) && fits);
    let Some(conv) = conv else { return max_pool2x2(&conv2d(x, w, b, padding, true, kernels)?, kernels) };
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Conv2dReluMaxPool::new(padding, conv))
}

/// 2x2 max-pooling, stride 2, of (N,C,H,W) with even H and W, with a fast CPU kernel forward and backward
/// where it applies, else [`reference_max_pool2x2`]. The gradient of each window goes to its maximum (split
/// equally when several elements tie for it), as for `torch.nn.functional.max_pool2d`.
pub fn max_pool2x2(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if !kernels.fast() || !cpu_f32(x) || h % 2 != 0 || w % 2 != 0 {
        return reference_max_pool2x2(x);
    }
    x.contiguous()?.apply_op1(MaxPool2x2)
}

/// The max-pool of [`max_pool2x2`] from candle's own ops, on any device. Not `x.max_pool2d(2)` alone: candle
/// 0.11's backward of it gives each maximum of a window the window's gradient times (ties / 4), so a 1/4 of
/// the gradient where the maximum is unique and 4 times it where four equal values tie (flat image regions),
/// which skews training towards flat regions (measured: conv2's bias gradient off by factors from 1 to 4
/// by channel against PyTorch on a conifer batch). Here the value is the same maximum, computed as the mean
/// of the window weighted by a constant (detached) mask of its maxima scaled by 4 / ties, so that the
/// gradient is the window's gradient split equally among them.
pub fn reference_max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    // An odd last row or column belongs to no window (the pool floors).
    let (h, w) = (h / 2 * 2, w / 2 * 2);
    let x = &x.narrow(2, 0, h)?.narrow(3, 0, w)?;
    let max = x.max_pool2d(2)?.upsample_nearest2d(h, w)?;
    let is_max = x.eq(&max)?.to_dtype(x.dtype())?;
    // ties / 4 for every element of a window.
    let quarter_ties = is_max.avg_pool2d(2)?.upsample_nearest2d(h, w)?;
    let weights = (is_max / quarter_ties)?.detach();
    (x * weights)?.avg_pool2d(2)
}

/// Nearest-neighbour upsampling of (N,C,H,W) to (N,C,target_h,target_w): `x.upsample_nearest2d`, with a
/// fast CPU kernel, forward and backward, when the target is exactly twice the input.
pub fn upsample_nearest2d(x: &Tensor, target_h: usize, target_w: usize, kernels: Kernels) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if !kernels.fast() || !cpu_f32(x) || target_h != 2 * h || target_w != 2 * w {
        return x.upsample_nearest2d(target_h, target_w);
    }
    x.contiguous()?.apply_op1(Upsample2x)
}

/// `conv2d(upsample_nearest2d(x, target_h, target_w), w, padding) + b` (no ReLU): on the CPU with the
/// [`direct`] kernels and a target of exactly twice x's size, one node that never builds the upsampled
/// tensor ([`Upsample2xConv2d`]); elsewhere the two ops one after the other.
pub fn upsample_conv2d(
    x: &Tensor,
    target_h: usize,
    target_w: usize,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    kernels: Kernels,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let fits = ConvGeometry::new(&[n, c, target_h, target_w], w.dims(), padding)
        .is_some_and(|g| direct::weight_grad_covers(&g));
    let doubled = target_h == 2 * h && target_w == 2 * wd;
    let direct = kernels.conv() == Some(ConvKernels::Direct);
    if !direct || ![x, w, b].into_iter().all(cpu_f32) || !doubled || !fits {
        return conv2d(&upsample_nearest2d(x, target_h, target_w, kernels)?, w, b, padding, false, kernels);
    }
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Upsample2xConv2d { padding })
}

/// The label of an unlabelled pixel in the label tensors: the loss skips it (PyTorch's `ignore_index`).
pub use kernels::loss::IGNORE as IGNORE_LABEL;

/// Mean cross-entropy of logits (B,C,H,W) against u32 labels (B*H*W) in (b, y, x) order, over the pixels
/// whose label is not [`IGNORE_LABEL`] (0, with a zero gradient, when none is labelled): with every pixel
/// labelled, the same value and gradient as `candle_nn::loss::cross_entropy` of the logits permuted to
/// (B*H*W, C), computed in place on the CPU with the fast kernels. Elsewhere [`reference_cross_entropy`].
pub fn segmentation_cross_entropy(logits: &Tensor, labels: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let (b, _, h, w) = logits.dims4()?;
    let fits = cpu_f32(logits) && labels.dtype() == DType::U32 && labels.dims() == [b * h * w];
    if !kernels.fast() || !fits {
        return reference_cross_entropy(logits, labels);
    }
    logits.contiguous()?.apply_op2(&labels.contiguous()?, SegmentationCrossEntropy::default())
}

/// The loss of [`segmentation_cross_entropy`] from candle's own ops, on any device: exactly
/// `candle_nn::loss::cross_entropy` when every pixel is labelled; otherwise the log-softmax picked at the
/// labels (an unlabelled pixel picks class 0 and is then multiplied by 0), summed and divided by the count
/// of labelled pixels.
pub fn reference_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    let flat = logits.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
    let ignored = labels.eq(IGNORE_LABEL)?;
    let count = b * h * w - ignored.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize;
    if count == b * h * w {
        return candle_nn::loss::cross_entropy(&flat, labels);
    }
    let keep = ignored.where_cond(
        &labels.zeros_like()?.to_dtype(flat.dtype())?,
        &labels.ones_like()?.to_dtype(flat.dtype())?,
    )?;
    let safe = ignored.where_cond(&labels.zeros_like()?, labels)?;
    let picked = candle_nn::ops::log_softmax(&flat, 1)?.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?;
    (picked * keep)?.sum_all()?.affine(-1.0 / count.max(1) as f64, 0.0)
}
