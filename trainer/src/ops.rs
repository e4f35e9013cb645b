//! The network's ops: convolution with bias and optional ReLU (fused with the max-pool after conv2), 2x
//! nearest upsampling (fused with conv4 where the direct kernels run) and the per-pixel cross-entropy.
//!
//! On the CPU in f32 each runs as one candle autograd node with its own kernels, forward and backward
//! ([`conv`]: the [`direct`] AVX2 kernels, else im2col + gemm; [`pool`]; [`loss`]), giving the same numbers
//! as candle's ops within float rounding, 20-30x faster per training step. On any other device or dtype, and after
//! `set_reference_ops(true)`, each function is candle's own ops, so the CUDA build is untouched.

pub mod conv;
pub mod direct;
pub mod loss;
pub mod pool;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Result, Tensor};

fn cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

static REFERENCE_OPS: AtomicBool = AtomicBool::new(false);

/// Forces candle's own ops in [`conv2d`] (true) instead of the fast CPU kernels, process-wide: for benches
/// and tests that compare the two.
pub fn set_reference_ops(reference: bool) {
    REFERENCE_OPS.store(reference, Ordering::Relaxed);
}

/// Whether [`set_reference_ops`] forced candle's own ops.
pub fn reference_ops() -> bool {
    REFERENCE_OPS.load(Ordering::Relaxed)
}

static IM2COL_ONLY: AtomicBool = AtomicBool::new(false);

/// Forces im2col + gemm (true) instead of the [`direct`] kernels, process-wide: for benches and tests that
/// compare the two on a CPU that has AVX2 and FMA.
pub fn set_im2col_only(im2col: bool) {
    IM2COL_ONLY.store(im2col, Ordering::Relaxed);
}

/// Whether the [`direct`] kernels run: the CPU has AVX2 and FMA and [`set_im2col_only`] did not force
/// im2col + gemm.
pub fn direct_kernels() -> bool {
    !IM2COL_ONLY.load(Ordering::Relaxed) && direct::available()
}

/// Makes glibc's malloc keep freed memory for reuse (once per process). Each training step allocates and
/// frees tens of MB of activations and gradients; by default glibc serves blocks over its mmap threshold
/// with fresh pages and hands freed heap back to the kernel, so every step page-faults all of it again,
/// which measured at half the step time of the fast kernels. The process keeps its peak heap instead.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; 32 MiB is glibc's largest mmap threshold.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// `relu?(conv2d(x, w, padding) + b)` for x (N,C,H,W), w (O,C,K,K), b (O), stride 1.
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize, relu: bool) -> Result<Tensor> {
    if reference_ops() {
        reference_conv2d(x, w, b, padding, relu)
    } else {
        fast_conv2d(x, w, b, padding, relu)
    }
}

/// The fast kernels where they apply (CPU, f32, shapes [`conv::ConvGeometry`] covers), else
/// [`reference_conv2d`].
pub fn fast_conv2d(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize, relu: bool) -> Result<Tensor> {
    let on_cpu_f32 = [x, w, b].into_iter().all(cpu_f32);
    if !on_cpu_f32 || conv::ConvGeometry::new(x.dims(), w.dims(), padding).is_none() {
        return reference_conv2d(x, w, b, padding, relu);
    }
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, conv::Conv2dBiasRelu { padding, relu })
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
/// CPU (its output must have even height and width), candle's ops elsewhere.
pub fn conv2d_relu_maxpool2x2(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize) -> Result<Tensor> {
    let fits = conv::ConvGeometry::new(x.dims(), w.dims(), padding)
        .is_some_and(|g| g.h_out() % 2 == 0 && g.w_out() % 2 == 0);
    if reference_ops() || ![x, w, b].into_iter().all(cpu_f32) || !fits {
        return max_pool2x2(&conv2d(x, w, b, padding, true)?);
    }
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, conv::Conv2dReluMaxPool::new(padding))
}

/// 2x2 max-pooling, stride 2, of (N,C,H,W) with even H and W, with a fast CPU kernel forward and backward
/// where it applies, else [`reference_max_pool2x2`]. The gradient of each window goes to its maximum (split
/// equally when several elements tie for it), as for `torch.nn.functional.max_pool2d`.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if reference_ops() || !cpu_f32(x) || h % 2 != 0 || w % 2 != 0 {
        return reference_max_pool2x2(x);
    }
    x.contiguous()?.apply_op1(pool::MaxPool2x2)
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
pub fn upsample_nearest2d(x: &Tensor, target_h: usize, target_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if reference_ops() || !cpu_f32(x) || target_h != 2 * h || target_w != 2 * w {
        return x.upsample_nearest2d(target_h, target_w);
    }
    x.contiguous()?.apply_op1(pool::Upsample2x)
}

/// `conv2d(upsample_nearest2d(x, target_h, target_w), w, padding) + b` (no ReLU): on the CPU with the
/// [`direct`] kernels and a target of exactly twice x's size, one node that never builds the upsampled
/// tensor ([`conv::Upsample2xConv2d`]); elsewhere the two ops one after the other.
pub fn upsample_conv2d(
    x: &Tensor,
    target_h: usize,
    target_w: usize,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let fits = conv::ConvGeometry::new(&[n, c, target_h, target_w], w.dims(), padding)
        .is_some_and(|g| direct::weight_grad_covers(&g));
    let doubled = target_h == 2 * h && target_w == 2 * wd;
    if reference_ops() || !direct_kernels() || ![x, w, b].into_iter().all(cpu_f32) || !doubled || !fits {
        return conv2d(&upsample_nearest2d(x, target_h, target_w)?, w, b, padding, false);
    }
    keep_freed_memory();
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, conv::Upsample2xConv2d { padding })
}

/// Mean cross-entropy of logits (B,C,H,W) against u32 labels (B*H*W) in (b, y, x) order: the same value
/// and gradient as `candle_nn::loss::cross_entropy` of the logits permuted to (B*H*W, C), computed in
/// place on the CPU.
pub fn segmentation_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    if reference_ops() || !cpu_f32(logits) || labels.dtype() != DType::U32 || labels.dims() != [b * h * w] {
        let flat = logits.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
        return candle_nn::loss::cross_entropy(&flat, labels);
    }
    logits.contiguous()?.apply_op2(&labels.contiguous()?, loss::SegmentationCrossEntropy::default())
}
