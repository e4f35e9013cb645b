//! Convolution with bias and optional ReLU: the one op the network spends its time in.
//!
//! On the CPU in f32 it runs as one fused autograd node with im2col + gemm kernels ([`conv`]), forward and
//! backward, about 10x faster than candle's conv2d + broadcast_add + relu; on any other device or dtype it
//! is candle's own ops, so the CUDA build is untouched.

pub mod conv;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Result, Tensor};

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
    let on_cpu_f32 = [x, w, b].iter().all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32);
    if !on_cpu_f32 || conv::ConvGeometry::new(x.dims(), w.dims(), padding).is_none() {
        return reference_conv2d(x, w, b, padding, relu);
    }
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
