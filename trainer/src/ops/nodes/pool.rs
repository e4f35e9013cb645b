//! 2x2 max-pooling and 2x nearest upsampling as candle `CustomOp1`s with their own backward: candle's
//! backward of these ops builds several full-size temporaries (max-pool: upsample, compare, average-pool,
//! two products; upsample: a grouped convolution) and costs more than the convolutions around them.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::ops::cpu::{storage_f32, with_f32};
use crate::ops::kernels::pool::{
    max_pool_backward, max_pool_forward, upsample2x_backward, upsample2x_forward,
};

fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    storage_f32(s, l, "fast pool")
}

/// Max over each 2x2 window, stride 2: (n, c, h, w) with even h, w -> (n, c, h/2, w/2).
pub struct MaxPool2x2;

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        if h % 2 != 0 || w % 2 != 0 {
            candle_core::bail!("fast max-pool: needs even height and width, got {:?}", l.dims());
        }
        let y = max_pool_forward(cpu_f32(s, l)?, h, w);
        let (ho, wo) = (h / 2, w / 2);
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }

    /// Each window's gradient to its maximum (see [`max_pool_backward`]).
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let grad_res = grad_res.contiguous()?;
        let grad = with_f32(arg, |x| {
            with_f32(res, |y| with_f32(&grad_res, |g| max_pool_backward(x, y, g, h, w, false)))
        })???;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// Nearest-neighbour upsampling by 2: (n, c, h, w) -> (n, c, 2h, 2w).
pub struct Upsample2x;

impl CustomOp1 for Upsample2x {
    fn name(&self) -> &'static str {
        "upsample-nearest-2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let y = upsample2x_forward(cpu_f32(s, l)?, w);
        Ok((CpuStorage::F32(y), Shape::from((n, c, 2 * h, 2 * w))))
    }

    /// See [`upsample2x_backward`].
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, _, w) = arg.dims4()?;
        let grad_res = grad_res.contiguous()?;
        let grad = with_f32(&grad_res, |g| upsample2x_backward(g, w))?;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}
