//! The convolution nodes: stride-1 convolution + bias (+ ReLU) as candle `CustomOp3`s with their own
//! backward, alone, fused with the 2x2 max-pool after it, or reading a 2x nearest upsampling of its input.
//! Each node carries the [`ConvKernels`] it runs, chosen by the caller. Gradients come back only for the
//! inputs that need them: the network's image needs none, so its input gradient is never computed.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use crate::ops::cpu::{available, bias_grad, storage_f32, with_f32, ConvGeometry};
use crate::ops::kernels::conv::{relu_backward, ConvKernels};
use crate::ops::kernels::{direct, pool};

/// The geometry of a convolution node's x and w, or an error naming the shapes.
fn geometry(x: &[usize], w: &[usize], padding: usize) -> Result<ConvGeometry> {
    ConvGeometry::new(x, w, padding).ok_or_else(|| {
        candle_core::Error::Msg(format!("fast conv2d: unsupported shapes {x:?} * {w:?} pad {padding}"))
    })
}

fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    storage_f32(s, l, "fast conv2d")
}

/// `relu?(conv2d(x, w, padding) + b)` as one autograd node: (x, w, b) -> y.
pub struct Conv2dBiasRelu {
    pub padding: usize,
    pub relu: bool,
    pub kernels: ConvKernels,
}

impl CustomOp3 for Conv2dBiasRelu {
    fn name(&self) -> &'static str {
        "conv2d-bias-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = geometry(l1.dims(), l2.dims(), self.padding)?;
        if l3.dims() != [g.o] {
            candle_core::bail!("fast conv2d: bias has shape {:?}, expected [{}]", l3.dims(), g.o);
        }
        let (x, w, b) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        let y = self.kernels.forward(&g, x, w, Some(b), self.relu);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.h_out(), g.w_out()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = geometry(x.dims(), w.dims(), self.padding)?;
        let grad_res = grad_res.contiguous()?;
        // Gradient of the pre-activation: ReLU passes it where the output is positive.
        let grad_out = with_f32(&grad_res, |gr| {
            if self.relu {
                with_f32(res, |r| relu_backward(gr, r))
            } else {
                Ok(gr.to_vec())
            }
        })??;
        conv_backward(self.kernels, &g, x, w, b, &grad_out)
    }
}

/// Gradients of (x, w, b) given the gradient of the pre-activation output; none for an x that needs none.
fn conv_backward(
    kernels: ConvKernels,
    g: &ConvGeometry,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    grad_out: &[f32],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (grad_w, grad_b) = with_f32(x, |x| kernels.weight_grad(g, x, grad_out))?;
    let grad_x = x.track_op().then(|| with_f32(w, |w| kernels.input_grad(g, w, grad_out))).transpose()?;
    gradient_tensors((x, grad_x), (w, grad_w), (b, grad_b))
}

/// The gradients of a (x, w, b) node as tensors shaped like their inputs, none for an input that needs none.
fn gradient_tensors(
    (x, grad_x): (&Tensor, Option<Vec<f32>>),
    (w, grad_w): (&Tensor, Vec<f32>),
    (b, grad_b): (&Tensor, Vec<f32>),
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let grad_x = grad_x.map(|gx| Tensor::from_vec(gx, x.shape(), x.device())).transpose()?;
    let grad_w = w.track_op().then(|| Tensor::from_vec(grad_w, w.shape(), w.device())).transpose()?;
    let grad_b = b.track_op().then(|| Tensor::from_vec(grad_b, b.shape(), b.device())).transpose()?;
    Ok((grad_x, grad_w, grad_b))
}

/// `max_pool2x2(relu(conv2d(x, w, padding) + b))` as one autograd node: the full-resolution activation
/// never becomes a candle tensor (no gradient buffer, no separate ReLU and pool passes); the op keeps it
/// for its backward.
pub struct Conv2dReluMaxPool {
    pub padding: usize,
    pub kernels: ConvKernels,
    activation: std::sync::Mutex<Option<Vec<f32>>>,
}

impl Conv2dReluMaxPool {
    pub fn new(padding: usize, kernels: ConvKernels) -> Conv2dReluMaxPool {
        Conv2dReluMaxPool { padding, kernels, activation: std::sync::Mutex::new(None) }
    }
}

impl CustomOp3 for Conv2dReluMaxPool {
    fn name(&self) -> &'static str {
        "conv2d-bias-relu-maxpool"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = geometry(l1.dims(), l2.dims(), self.padding)?;
        if l3.dims() != [g.o] || g.h_out() % 2 != 0 || g.w_out() % 2 != 0 {
            candle_core::bail!(
                "fast conv2d+pool: bias {:?} or odd output size for {:?}",
                l3.dims(),
                l1.dims()
            );
        }
        let (x, w, b) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        let y = self.kernels.forward(&g, x, w, Some(b), true);
        let pooled = pool::max_pool_forward(&y, g.h_out(), g.w_out());
        *self.activation.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))? = Some(y);
        Ok((CpuStorage::F32(pooled), Shape::from((g.n, g.o, g.h_out() / 2, g.w_out() / 2))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = geometry(x.dims(), w.dims(), self.padding)?;
        let grad_res = grad_res.contiguous()?;
        let activation =
            self.activation.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        let Some(y) = activation.as_ref() else {
            candle_core::bail!("fast conv2d+pool: backward before forward")
        };
        let grad_out = with_f32(res, |pooled| {
            with_f32(&grad_res, |gr| pool::max_pool_backward(y, pooled, gr, g.h_out(), g.w_out(), true))
        })??;
        conv_backward(self.kernels, &g, x, w, b, &grad_out)
    }
}

/// `conv2d(upsample_nearest2d(x, 2h, 2w), w, padding) + b` as one autograd node: the direct kernels read
/// the upsampled input from x (n, c, h, w) band by band, so the full-size tensor, its gradient and the
/// separate upsampling passes never exist. Only with [`ConvKernels::Direct`] (so where the CPU has AVX2
/// and FMA) and a kernel size the direct weight gradient covers: it has no im2col version.
pub struct Upsample2xConv2d {
    pub padding: usize,
}

impl Upsample2xConv2d {
    /// The geometry of the convolution of the upsampled input.
    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        let &[n, c, h, wd] = x else { candle_core::bail!("upsample+conv2d: x must be 4-d, got {x:?}") };
        ConvGeometry::new(&[n, c, 2 * h, 2 * wd], w, self.padding)
            .filter(direct::weight_grad_covers)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "upsample+conv2d: unsupported shapes {x:?} * {w:?} pad {}",
                    self.padding
                ))
            })
    }
}

impl CustomOp3 for Upsample2xConv2d {
    fn name(&self) -> &'static str {
        "upsample2x-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1.dims(), l2.dims())?;
        if l3.dims() != [g.o] || !available() {
            candle_core::bail!("upsample+conv2d: bias {:?}, or no direct kernels on this CPU", l3.dims());
        }
        let (x, w, b) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        let y = direct::conv_forward_upsampled2x(&g, x, w, Some(b), false);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.h_out(), g.w_out()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.dims(), w.dims())?;
        let grad_res = grad_res.contiguous()?;
        let (grad_x, grad_w, grad_b) = with_f32(&grad_res, |grad_out| -> Result<_> {
            let grad_w = with_f32(x, |x| direct::conv_weight_grad_upsampled2x(&g, x, grad_out))?;
            // The gradient of the upsampled input, summed over each element's 2x2 copies.
            let grad_x = x
                .track_op()
                .then(|| with_f32(w, |w| ConvKernels::Direct.input_grad(&g, w, grad_out)))
                .transpose()?
                .map(|upsampled| pool::upsample2x_backward(&upsampled, g.w / 2));
            Ok((grad_x, grad_w, bias_grad(&g, grad_out)))
        })??;
        gradient_tensors((x, grad_x), (w, grad_w), (b, grad_b))
    }
}
