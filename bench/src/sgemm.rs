//! The yardstick: f32 matrix-product peak through the `gemm` crate, the one candle's CPU backend calls.

use gemm::Parallelism;

use crate::stats::{self, Stats};

/// GFLOP/s of `reps` square products of side `n` on `threads` threads.
pub fn peak(n: usize, threads: usize, reps: usize) -> Stats {
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut c = vec![0f32; n * n];
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    let s = n as isize;
    let seconds = stats::time::<()>(1, reps, || {
        // SAFETY: a, b and c are n x n row-major buffers that live across the call; c is not aliased.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                s,
                false,
                a.as_ptr(),
                1,
                s,
                b.as_ptr(),
                1,
                s,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            )
        };
        Ok(())
    })
    .expect("gemm cannot fail");
    std::hint::black_box(&c);
    let flop = 2.0 * (n as f64).powi(3);
    Stats::of(&seconds).map(|t| flop / t / 1e9)
}
