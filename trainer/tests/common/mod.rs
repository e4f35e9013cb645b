//! Fixtures shared by the trainer's integration tests (each test binary uses the part it needs).
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use trainer::checkpoint::TrainingSummary;
use trainer::model::Normalization;

/// A normalisation far from the identity, so that leaving it out of a graph (or folding it wrongly) shows.
pub const NORM: Normalization = Normalization { mean: [0.45, 0.3, 0.62], std: [0.21, 0.35, 0.12] };

/// The summary stored with the tests' checkpoints.
pub fn summary() -> TrainingSummary {
    TrainingSummary {
        iterations: 5,
        final_loss: 0.5,
        image: "image.png".into(),
        mask: "mask.png".into(),
        batch: 2,
        crop: 64,
        learning_rate: 1e-3,
        seed: 11,
        ..TrainingSummary::default()
    }
}

/// `count` deterministic values in [-1, 1) from a small LCG, independent of candle's generator.
pub fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A CPU tensor of `shape` filled with [`values`].
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(values(shape.iter().product(), seed), shape, &Device::Cpu).unwrap()
}
