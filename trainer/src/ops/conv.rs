//! Stride-1 convolution + bias (+ ReLU) on the CPU in f32, NCHW, as a candle `CustomOp3` with its own
//! backward. Every kernel is im2col of a band of output rows into a per-thread buffer that stays in cache,
//! then one single-threaded `gemm` call; bands run in parallel on rayon's pool (the one candle uses).
//!
//! Backward: the weight gradient is the same im2col band times the output gradient, summed over bands in a
//! fixed order (deterministic whatever the thread count); the input gradient is a forward convolution of the
//! output gradient with the flipped, transposed kernel, skipped when the input needs none (the image).

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Output pixels per band: big enough for an efficient gemm, small enough that the band's im2col buffer
/// (at most 400 x 2048 floats, 3.2 MB, for conv4) stays near the core.
const BAND_PIXELS: usize = 2048;

thread_local! {
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Shapes of one stride-1 convolution of x (n, c, h, w) by a kernel (o, c, k, k) with zero padding `pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub pad: usize,
}

impl ConvGeometry {
    /// None when the output would be empty or the input gradient would need negative padding
    /// (pad > k - 1): the fast kernels do not cover those cases.
    pub fn new(x: &[usize], kernel: &[usize], pad: usize) -> Option<ConvGeometry> {
        let (&[n, c, h, w], &[o, c2, k, k2]) = (x, kernel) else { return None };
        let fits = c == c2 && k == k2 && k >= 1 && pad < k && h + 2 * pad >= k && w + 2 * pad >= k;
        (fits && n * c * o > 0).then_some(ConvGeometry { n, c, h, w, o, k, pad })
    }
    pub fn h_out(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    pub fn w_out(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    fn out_pixels(&self) -> usize {
        self.h_out() * self.w_out()
    }
    /// Rows of the im2col matrix: one per (input channel, ky, kx).
    fn patch(&self) -> usize {
        self.c * self.k * self.k
    }
    /// The geometry whose forward pass is this one's input gradient: the output gradient convolved with
    /// the flipped kernel, transposed to (c, o, k, k), padded by k - 1 - pad.
    fn input_gradient(&self) -> ConvGeometry {
        ConvGeometry {
            n: self.n,
            c: self.o,
            h: self.h_out(),
            w: self.w_out(),
            o: self.c,
            k: self.k,
            pad: self.k - 1 - self.pad,
        }
    }
    /// (image, first output row, end output row) of every band, in a fixed order.
    fn bands(&self) -> Vec<(usize, usize, usize)> {
        let (h_out, w_out) = (self.h_out(), self.w_out());
        let rows = (BAND_PIXELS / w_out.max(1)).clamp(1, h_out.max(1));
        (0..self.n)
            .flat_map(|img| (0..h_out).step_by(rows).map(move |y0| (img, y0, (y0 + rows).min(h_out))))
            .collect()
    }
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint part.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Columns (patch, pixels of the band) of output rows y0..y1 of one image (c, h, w).
fn im2col(g: &ConvGeometry, image: &[f32], y0: usize, y1: usize, columns: &mut [f32]) {
    let (w_out, k, pad) = (g.w_out(), g.k, g.pad);
    let pixels = (y1 - y0) * w_out;
    for ci in 0..g.c {
        let plane = &image[ci * g.h * g.w..][..g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut columns[((ci * k + ky) * k + kx) * pixels..][..pixels];
                // Output columns xo read input column xo + kx - pad: valid for xo in [lo, hi).
                let lo = pad.saturating_sub(kx).min(w_out);
                let hi = (g.w + pad).saturating_sub(kx).min(w_out).max(lo);
                for yo in y0..y1 {
                    let dst = &mut row[(yo - y0) * w_out..][..w_out];
                    let yi = (yo + ky).wrapping_sub(pad);
                    if yi >= g.h {
                        dst.fill(0.0);
                        continue;
                    }
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if hi > lo {
                        let xi = lo + kx - pad;
                        dst[lo..hi].copy_from_slice(&plane[yi * g.w + xi..][..hi - lo]);
                    }
                }
            }
        }
    }
}

/// Runs `f` with this thread's im2col buffer of at least `len` floats.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|cell| {
        let mut columns = cell.borrow_mut();
        if columns.len() < len {
            columns.resize(len, 0.0);
        }
        f(&mut columns[..len])
    })
}

/// `relu?(conv(x, weight) + bias)`: x (n, c, h, w), weight (o, c, k, k), bias (o) or none; returns
/// (n, o, h_out, w_out), contiguous.
pub fn conv_forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(weight.len(), g.o * g.patch());
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    let mut out = vec![0f32; g.n * g.o * out_pixels];
    let shared = SharedMut(out.as_mut_ptr());
    g.bands().into_par_iter().for_each(|(img, y0, y1)| {
        let pixels = (y1 - y0) * w_out;
        with_columns(patch * pixels, |columns| {
            im2col(g, &x[img * g.c * g.h * g.w..][..g.c * g.h * g.w], y0, y1, columns);
            // SAFETY: bands write disjoint (channel, row range) blocks of `out`, which outlives the loop;
            // the strides describe (o x pixels) with rows out_pixels apart, inside the image's block.
            unsafe {
                let dst = shared.get().add(img * g.o * out_pixels + y0 * w_out);
                gemm(
                    g.o,
                    pixels,
                    patch,
                    dst,
                    1,
                    out_pixels as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    patch as isize,
                    columns.as_ptr(),
                    1,
                    pixels as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                for oi in 0..g.o {
                    let row = std::slice::from_raw_parts_mut(dst.add(oi * out_pixels), pixels);
                    let b = bias.map_or(0.0, |b| b[oi]);
                    if relu {
                        row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                    } else if b != 0.0 {
                        row.iter_mut().for_each(|v| *v += b);
                    }
                }
            }
        })
    });
    out
}

/// Gradients of the kernel (o, c, k, k) and bias (o) given the input x and the gradient of the
/// pre-activation output (n, o, h_out, w_out).
pub fn conv_weight_grad(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(grad_out.len(), g.n * g.o * g.out_pixels());
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = g
        .bands()
        .into_par_iter()
        .map(|(img, y0, y1)| {
            let pixels = (y1 - y0) * w_out;
            let grad = &grad_out[img * g.o * out_pixels + y0 * w_out..];
            let mut grad_weight = vec![0f32; g.o * patch];
            with_columns(patch * pixels, |columns| {
                im2col(g, &x[img * g.c * g.h * g.w..][..g.c * g.h * g.w], y0, y1, columns);
                // SAFETY: grad holds (o x pixels) with rows out_pixels apart (the last row ends inside
                // grad_out); columns^T is (pixels x patch); grad_weight is (o x patch), row-major.
                unsafe {
                    gemm(
                        g.o,
                        patch,
                        pixels,
                        grad_weight.as_mut_ptr(),
                        1,
                        patch as isize,
                        false,
                        grad.as_ptr(),
                        1,
                        out_pixels as isize,
                        columns.as_ptr(),
                        pixels as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            });
            let grad_bias = (0..g.o).map(|oi| grad[oi * out_pixels..][..pixels].iter().sum()).collect();
            (grad_weight, grad_bias)
        })
        .collect();
    let mut grad_weight = vec![0f32; g.o * patch];
    let mut grad_bias = vec![0f32; g.o];
    for (gw, gb) in partials {
        grad_weight.iter_mut().zip(gw).for_each(|(a, b)| *a += b);
        grad_bias.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
    }
    (grad_weight, grad_bias)
}

/// Gradient of the input (n, c, h, w) given the kernel and the gradient of the pre-activation output.
pub fn conv_input_grad(g: &ConvGeometry, weight: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let k = g.k;
    // flipped[ci][oi][ky][kx] = weight[oi][ci][k-1-ky][k-1-kx]
    let mut flipped = vec![0f32; weight.len()];
    for oi in 0..g.o {
        for ci in 0..g.c {
            for ky in 0..k {
                for kx in 0..k {
                    flipped[((ci * g.o + oi) * k + ky) * k + kx] =
                        weight[((oi * g.c + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
    conv_forward(&g.input_gradient(), grad_out, &flipped, None, false)
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Ok(f(&data[start..end])),
        _ => candle_core::bail!("fast conv2d: expected a contiguous f32 CPU tensor"),
    }
}

fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("fast conv2d: expected contiguous f32 CPU tensors"),
    }
}

/// `relu?(conv2d(x, w, padding) + b)` as one autograd node: (x, w, b) -> y.
pub struct Conv2dBiasRelu {
    pub padding: usize,
    pub relu: bool,
}

impl Conv2dBiasRelu {
    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        ConvGeometry::new(x, w, self.padding).ok_or_else(|| {
            candle_core::Error::Msg(format!("fast conv2d: unsupported shapes {x:?} * {w:?} pad {}", self.padding))
        })
    }
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
        let g = self.geometry(l1.dims(), l2.dims())?;
        if l3.dims() != [g.o] {
            candle_core::bail!("fast conv2d: bias has shape {:?}, expected [{}]", l3.dims(), g.o);
        }
        let y = conv_forward(&g, cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, Some(cpu_f32(s3, l3)?), self.relu);
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
        let g = self.geometry(x.dims(), w.dims())?;
        let grad_res = grad_res.contiguous()?;
        // Gradient of the pre-activation: ReLU passes it where the output is positive.
        let grad_out = with_f32(&grad_res, |gr| {
            if self.relu {
                with_f32(res, |r| {
                    let mut grad = vec![0f32; gr.len()];
                    grad.par_chunks_mut(1 << 14)
                        .zip(gr.par_chunks(1 << 14).zip(r.par_chunks(1 << 14)))
                        .for_each(|(d, (gr, r))| {
                            for ((d, &gr), &r) in d.iter_mut().zip(gr).zip(r) {
                                *d = if r > 0.0 { gr } else { 0.0 };
                            }
                        });
                    grad
                })
            } else {
                Ok(gr.to_vec())
            }
        })??;
        let (grad_w, grad_b) = with_f32(x, |x| conv_weight_grad(&g, x, &grad_out))?;
        let grad_x = if x.track_op() {
            let gx = with_f32(w, |w| conv_input_grad(&g, w, &grad_out))?;
            Some(Tensor::from_vec(gx, x.shape(), x.device())?)
        } else {
            None
        };
        let grad_w = w.track_op().then(|| Tensor::from_vec(grad_w, w.shape(), w.device())).transpose()?;
        let grad_b = b.track_op().then(|| Tensor::from_vec(grad_b, b.shape(), b.device())).transpose()?;
        Ok((grad_x, grad_w, grad_b))
    }
}
