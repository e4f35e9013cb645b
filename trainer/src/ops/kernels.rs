//! The CPU kernels: f32 slices in, f32 slices out, no candle types. Each builds on [`super::cpu`] alone,
//! except [`conv`], which picks between [`direct`] and [`im2col`].

pub mod conv;
pub mod direct;
pub mod im2col;
pub mod loss;
pub mod pool;
