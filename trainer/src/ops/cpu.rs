//! What the CPU kernels and their candle nodes share: the convolution's shapes ([`ConvGeometry`]), the CPU
//! feature probe, a pointer that parallel tasks may write through, fixed-order sums, access to the f32
//! elements of a CPU tensor, and the allocator setting of the training process. It imports no other ops
//! module, so that the kernels and the nodes can all build on it.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Whether this CPU has AVX2 and FMA: the direct convolutions need both; the max-pool rows and the
/// cross-entropy's two-class rows use them where present.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
    pub fn out_pixels(&self) -> usize {
        self.h_out() * self.w_out()
    }
    /// Rows of the im2col matrix: one per (input channel, ky, kx).
    pub fn patch(&self) -> usize {
        self.c * self.k * self.k
    }
    /// The geometry whose forward pass is this one's input gradient: the output gradient convolved with
    /// the flipped kernel, transposed to (c, o, k, k), padded by k - 1 - pad.
    pub fn input_gradient(&self) -> ConvGeometry {
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
    /// (image, first output row, end output row) of every band of about `band_pixels` output pixels (whole
    /// rows, at least one), in a fixed order.
    pub fn bands(&self, band_pixels: usize) -> Vec<(usize, usize, usize)> {
        let (h_out, w_out) = (self.h_out(), self.w_out());
        let rows = (band_pixels / w_out.max(1)).clamp(1, h_out.max(1));
        (0..self.n)
            .flat_map(|img| (0..h_out).step_by(rows).map(move |y0| (img, y0, (y0 + rows).min(h_out))))
            .collect()
    }
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint part.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);
// SAFETY: the pointer is only a handle: every task that writes through it writes a disjoint range of the
// buffer, which outlives the rayon scope the tasks run in.
unsafe impl Send for SharedMut {}
// SAFETY: as for Send; shared references only copy the pointer, never write through it concurrently to one
// element.
unsafe impl Sync for SharedMut {}
impl SharedMut {
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// The sum of `values` in a fixed order (32 running sums, then the remainder): vectorised, where a plain
/// `iter().sum()` adds one element at a time at the adder's latency, a long dependency chain for the bias
/// gradient of a large layer.
pub fn sum_f32(values: &[f32]) -> f32 {
    const RUNNING: usize = 32;
    let mut acc = [0f32; RUNNING];
    let chunks = values.chunks_exact(RUNNING);
    let rest = chunks.remainder();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, &v)| *a += v);
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Sums per-band partial results of `len` elements in band order: deterministic whatever the thread count.
pub fn sum_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    for part in partials {
        total.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    total
}

/// Gradient of the bias (o): the output gradient summed over images and pixels, per channel.
pub fn bias_grad(g: &ConvGeometry, grad_out: &[f32]) -> Vec<f32> {
    let out_pixels = g.out_pixels();
    assert_eq!(grad_out.len(), g.n * g.o * out_pixels);
    (0..g.o)
        .into_par_iter()
        .map(|oi| (0..g.n).map(|img| sum_f32(&grad_out[(img * g.o + oi) * out_pixels..][..out_pixels])).sum())
        .collect()
}

/// Runs `f` on the f32 elements of a contiguous CPU tensor.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Ok(f(&data[start..end])),
        _ => candle_core::bail!("fast CPU op: expected a contiguous f32 CPU tensor"),
    }
}

/// The f32 elements of a contiguous CPU storage, as a custom op's forward receives it; `op` names the op in
/// the error.
pub fn storage_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op}: expected contiguous f32 CPU tensors"),
    }
}

/// Makes glibc's malloc keep freed memory for reuse (once per process). Each training step allocates and
/// frees tens of MB of activations and gradients; by default glibc serves blocks over its mmap threshold
/// with fresh pages and hands freed heap back to the kernel, so every step would page-fault all of it
/// again. The process keeps its peak heap instead. Elsewhere than Linux with glibc, it does nothing.
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
