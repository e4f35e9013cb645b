//! 2x2 max-pooling and 2x nearest upsampling of NCHW f32 on the CPU, as candle custom ops with their own
//! backward: candle's backward of these ops builds several full-size temporaries (max-pool: upsample,
//! compare, average-pool, two products; upsample: a grouped convolution) and costs more than the
//! convolutions around them.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::with_f32;

fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("fast pool: expected a contiguous f32 CPU tensor"),
    }
}

/// Max over each 2x2 window of planes of h x w (even): planes of h/2 x w/2.
pub fn max_pool_forward(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let planes = x.len() / (h * w);
    let mut y = vec![0f32; planes * ho * wo];
    y.par_chunks_mut(wo).enumerate().for_each(|(row, out)| {
        let (plane, yo) = (row / ho, row % ho);
        let top = &x[plane * h * w + 2 * yo * w..][..w];
        let bottom = &x[plane * h * w + (2 * yo + 1) * w..][..w];
        for (xo, v) in out.iter_mut().enumerate() {
            *v = top[2 * xo].max(top[2 * xo + 1]).max(bottom[2 * xo].max(bottom[2 * xo + 1]));
        }
    });
    y
}

/// Gradient of the max-pool input x given its output y and the output's gradient g: each window's gradient
/// goes to its maximum, split equally among the elements that tie for it (torch gives all of it to the
/// first; the sum is the same). With `relu`, x is a ReLU's output and only its positive elements pass a
/// gradient (the ReLU's backward, fused).
pub fn max_pool_backward(x: &[f32], y: &[f32], g: &[f32], h: usize, w: usize, relu: bool) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut grad = vec![0f32; x.len()];
    grad.par_chunks_mut(2 * w).enumerate().for_each(|(row, out)| {
        let (plane, yo) = (row / ho, row % ho);
        let input = &x[plane * h * w + 2 * yo * w..][..2 * w];
        let (y, g) = (&y[row * wo..][..wo], &g[row * wo..][..wo]);
        for xo in 0..wo {
            let idx = [2 * xo, 2 * xo + 1, w + 2 * xo, w + 2 * xo + 1];
            let ties = idx.iter().filter(|&&i| input[i] == y[xo]).count();
            let share = if ties == 1 { g[xo] } else { g[xo] / ties as f32 };
            for i in idx {
                let passes = input[i] == y[xo] && (!relu || input[i] > 0.0);
                out[i] = if passes { share } else { 0.0 };
            }
        }
    });
    grad
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
        let x = cpu_f32(s, l)?;
        let mut y = vec![0f32; n * c * 4 * h * w];
        y.par_chunks_mut(4 * w).enumerate().for_each(|(row, out)| {
            let input = &x[row * w..][..w];
            let (first, second) = out.split_at_mut(2 * w);
            for (pair, &v) in first.chunks_exact_mut(2).zip(input) {
                pair[0] = v;
                pair[1] = v;
            }
            second.copy_from_slice(first);
        });
        Ok((CpuStorage::F32(y), Shape::from((n, c, 2 * h, 2 * w))))
    }

    /// Each input element gets the sum of the gradient over its 2x2 copies.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, _, w) = arg.dims4()?;
        let grad_res = grad_res.contiguous()?;
        let grad = with_f32(&grad_res, |g| {
            let mut grad = vec![0f32; arg.elem_count()];
            grad.par_chunks_mut(w).enumerate().for_each(|(row, out)| {
                let (top, bottom) = g[row * 4 * w..][..4 * w].split_at(2 * w);
                for (xo, v) in out.iter_mut().enumerate() {
                    *v = (top[2 * xo] + top[2 * xo + 1]) + (bottom[2 * xo] + bottom[2 * xo + 1]);
                }
            });
            grad
        })?;
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}
