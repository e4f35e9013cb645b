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
/// (at most 400 x 512 floats, 800 kB, for conv4) stays in the core's L2 cache.
const BAND_PIXELS: usize = 512;

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
pub(crate) struct SharedMut(pub(crate) *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    pub(crate) fn get(self) -> *mut f32 {
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
/// (n, o, h_out, w_out), contiguous. The direct kernels where [`super::direct_kernels`], else im2col + gemm.
pub fn conv_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    if super::direct_kernels() {
        super::direct::conv_forward(g, x, weight, bias, relu)
    } else {
        conv_forward_im2col(g, x, weight, bias, relu)
    }
}

/// [`conv_forward`] by im2col + gemm on any CPU.
pub fn conv_forward_im2col(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(weight.len(), g.o * g.patch());
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    // Every element is written exactly once below (gemm with read_dst false), so skip zeroing.
    let len = g.n * g.o * out_pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let shared = SharedMut(out.as_mut_ptr());
    g.bands().into_par_iter().for_each(|(img, y0, y1)| {
        let pixels = (y1 - y0) * w_out;
        with_columns(patch * pixels, |columns| {
            im2col(g, &x[img * g.c * g.h * g.w..][..g.c * g.h * g.w], y0, y1, columns);
            // SAFETY: bands write disjoint (channel, row range) blocks of `out`, which outlives the loop;
            // the strides describe (o x pixels) with rows out_pixels apart, inside the image's block.
            unsafe {
                let dst = shared.get().add(img * g.o * out_pixels + y0 * w_out);
                matmul(
                    g.o,
                    pixels,
                    patch,
                    (dst, out_pixels as isize),
                    (weight.as_ptr(), 1, patch as isize),
                    (columns.as_ptr(), 1, pixels as isize),
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
    // SAFETY: the bands cover every (image, channel, pixel) of the output, each written by its gemm.
    unsafe { out.set_len(len) };
    out
}

/// Gradients of the kernel (o, c, k, k) and bias (o) given the input x and the gradient of the
/// pre-activation output (n, o, h_out, w_out).
pub fn conv_weight_grad(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    let grad_bias = bias_grad(g, grad_out);
    let grad_weight = if super::direct_kernels() && super::direct::weight_grad_covers(g) {
        super::direct::conv_weight_grad(g, x, grad_out)
    } else {
        conv_weight_grad_im2col(g, x, grad_out)
    };
    (grad_weight, grad_bias)
}

/// Gradient of the bias (o): the output gradient summed over images and pixels, per channel.
fn bias_grad(g: &ConvGeometry, grad_out: &[f32]) -> Vec<f32> {
    let out_pixels = g.out_pixels();
    assert_eq!(grad_out.len(), g.n * g.o * out_pixels);
    (0..g.o)
        .into_par_iter()
        .map(|oi| (0..g.n).map(|img| sum_f32(&grad_out[(img * g.o + oi) * out_pixels..][..out_pixels])).sum())
        .collect()
}

/// The kernel's gradient (o, c, k, k) of [`conv_weight_grad`] by im2col + gemm on any CPU.
pub fn conv_weight_grad_im2col(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    // Either side of the product can be unrolled into patches; unroll the one with fewer rows.
    if g.o * g.k * g.k + g.c < g.c * g.k * g.k + g.o {
        weight_grad_unrolling_gradient(g, x, grad_out)
    } else {
        weight_grad_unrolling_input(g, x, grad_out)
    }
}

/// The sum of `values` in a fixed order (32 running sums, then the remainder): vectorised, where a plain
/// `iter().sum()` adds one element at a time at the adder's latency (for conv2's bias gradient, 2M adds in a
/// chain, measured at 5% of a one-thread training step).
pub(crate) fn sum_f32(values: &[f32]) -> f32 {
    const RUNNING: usize = 32;
    let mut acc = [0f32; RUNNING];
    let chunks = values.chunks_exact(RUNNING);
    let rest = chunks.remainder();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, &v)| *a += v);
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Sums per-band (rows x cols) partial products in band order: deterministic whatever the thread count.
fn sum_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    for part in partials {
        total.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    total
}

/// dW (o x c*k*k) = sum over bands of grad (o x pixels) * im2col(x)^T (pixels x c*k*k).
fn weight_grad_unrolling_input(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let (out_pixels, w_out, patch) = (g.out_pixels(), g.w_out(), g.patch());
    let partials = g
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
                    matmul(
                        g.o,
                        patch,
                        pixels,
                        (grad_weight.as_mut_ptr(), patch as isize),
                        (grad.as_ptr(), 1, out_pixels as isize),
                        (columns.as_ptr(), pixels as isize, 1),
                    );
                }
            });
            grad_weight
        })
        .collect();
    sum_in_order(partials, g.o * patch)
}

/// The same product arranged over input pixels: dW[o][c][ky][kx] = sum over input pixels p of
/// grad_pad[o][p + pad - (ky, kx)] * x[c][p], where the first factor is the im2col of the output gradient
/// in the input-gradient geometry (kernel offsets flipped). Cheaper when o*k*k < c*k*k (conv3, conv4).
fn weight_grad_unrolling_gradient(g: &ConvGeometry, x: &[f32], grad_out: &[f32]) -> Vec<f32> {
    let t = g.input_gradient();
    let (rows, plane, k) = (t.patch(), g.h * g.w, g.k);
    let partials = t
        .bands()
        .into_par_iter()
        .map(|(img, y0, y1)| {
            let pixels = (y1 - y0) * g.w;
            // flipped[(o, k-1-ky, k-1-kx)][c]
            let mut flipped = vec![0f32; rows * g.c];
            with_columns(rows * pixels, |columns| {
                im2col(&t, &grad_out[img * t.c * t.h * t.w..][..t.c * t.h * t.w], y0, y1, columns);
                // SAFETY: columns is (rows x pixels) row-major; x's band read as (pixels x c) has rows 1
                // and columns `plane` apart, inside the image; flipped is (rows x c) row-major.
                unsafe {
                    matmul(
                        rows,
                        g.c,
                        pixels,
                        (flipped.as_mut_ptr(), g.c as isize),
                        (columns.as_ptr(), 1, pixels as isize),
                        (x.as_ptr().add(img * g.c * plane + y0 * g.w), plane as isize, 1),
                    );
                }
            });
            flipped
        })
        .collect();
    let flipped = sum_in_order(partials, rows * g.c);
    let mut grad_weight = vec![0f32; g.o * g.patch()];
    for oi in 0..g.o {
        for ci in 0..g.c {
            for ky in 0..k {
                for kx in 0..k {
                    grad_weight[((oi * g.c + ci) * k + ky) * k + kx] =
                        flipped[((oi * k + (k - 1 - ky)) * k + (k - 1 - kx)) * g.c + ci];
                }
            }
        }
    }
    grad_weight
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
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
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
            candle_core::Error::Msg(format!(
                "fast conv2d: unsupported shapes {x:?} * {w:?} pad {}",
                self.padding
            ))
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
                    gr.par_iter()
                        .zip(r)
                        .with_min_len(1 << 14)
                        .map(|(&gr, &r)| if r > 0.0 { gr } else { 0.0 })
                        .collect()
                })
            } else {
                Ok(gr.to_vec())
            }
        })??;
        conv_backward(&g, x, w, b, &grad_out)
    }
}

/// Gradients of (x, w, b) given the gradient of the pre-activation output; none for an x that needs none.
fn conv_backward(
    g: &ConvGeometry,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    grad_out: &[f32],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (grad_w, grad_b) = with_f32(x, |x| conv_weight_grad(g, x, grad_out))?;
    let grad_x = x.track_op().then(|| with_f32(w, |w| conv_input_grad(g, w, grad_out))).transpose()?;
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
    activation: std::sync::Mutex<Option<Vec<f32>>>,
}

impl Conv2dReluMaxPool {
    pub fn new(padding: usize) -> Conv2dReluMaxPool {
        Conv2dReluMaxPool { padding, activation: std::sync::Mutex::new(None) }
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
        let g = Conv2dBiasRelu { padding: self.padding, relu: true }.geometry(l1.dims(), l2.dims())?;
        if l3.dims() != [g.o] || g.h_out() % 2 != 0 || g.w_out() % 2 != 0 {
            candle_core::bail!(
                "fast conv2d+pool: bias {:?} or odd output size for {:?}",
                l3.dims(),
                l1.dims()
            );
        }
        let y = conv_forward(&g, cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, Some(cpu_f32(s3, l3)?), true);
        let pooled = super::pool::max_pool_forward(&y, g.h_out(), g.w_out());
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
        let g = Conv2dBiasRelu { padding: self.padding, relu: true }.geometry(x.dims(), w.dims())?;
        let grad_res = grad_res.contiguous()?;
        let activation =
            self.activation.lock().map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        let Some(y) = activation.as_ref() else {
            candle_core::bail!("fast conv2d+pool: backward before forward")
        };
        let grad_out = with_f32(res, |pooled| {
            with_f32(&grad_res, |gr| {
                super::pool::max_pool_backward(y, pooled, gr, g.h_out(), g.w_out(), true)
            })
        })??;
        conv_backward(&g, x, w, b, &grad_out)
    }
}

/// `conv2d(upsample_nearest2d(x, 2h, 2w), w, padding) + b` as one autograd node: the direct kernels read
/// the upsampled input from x (n, c, h, w) band by band, so the full-size tensor, its gradient and the
/// separate upsampling passes never exist. Only where [`super::direct_kernels`] and the kernel size suits
/// the direct weight gradient (see [`super::upsample_conv2d`]).
pub struct Upsample2xConv2d {
    pub padding: usize,
}

impl Upsample2xConv2d {
    /// The geometry of the convolution of the upsampled input.
    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        let &[n, c, h, wd] = x else { candle_core::bail!("upsample+conv2d: x must be 4-d, got {x:?}") };
        ConvGeometry::new(&[n, c, 2 * h, 2 * wd], w, self.padding)
            .filter(super::direct::weight_grad_covers)
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
        if l3.dims() != [g.o] || !super::direct_kernels() {
            candle_core::bail!("upsample+conv2d: bias {:?}, or no direct kernels on this CPU", l3.dims());
        }
        let (x, w, b) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        let y = super::direct::conv_forward_upsampled2x(&g, x, w, Some(b), false);
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
            let grad_w = with_f32(x, |x| super::direct::conv_weight_grad_upsampled2x(&g, x, grad_out))?;
            // The gradient of the upsampled input, summed over each element's 2x2 copies.
            let grad_x = x
                .track_op()
                .then(|| with_f32(w, |w| conv_input_grad(&g, w, grad_out)))
                .transpose()?
                .map(|upsampled| super::pool::upsample2x_backward(&upsampled, g.w / 2));
            Ok((grad_x, grad_w, bias_grad(&g, grad_out)))
        })??;
        gradient_tensors((x, grad_x), (w, grad_w), (b, grad_b))
    }
}

/// dst = lhs x rhs for an (m x k) by (k x n) product on one thread (the callers parallelise over bands).
/// Each operand is (pointer, column stride, row stride) in elements; dst is (pointer, row stride) with
/// adjacent columns, and is overwritten, not accumulated into.
///
/// # Safety
/// Every element the strides address must lie inside its allocation, and dst must not overlap the inputs.
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    (dst, dst_rs): (*mut f32, isize),
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
) {
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        0.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}
