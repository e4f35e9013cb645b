//! The candle autograd nodes (`CustomOp`s) of the CPU kernels: each node's forward and backward call the
//! [`super::kernels`] on its tensors' f32 storage.

pub mod conv;
pub mod loss;
pub mod pool;
