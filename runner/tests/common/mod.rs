//! Shared by the integration tests: models built through the trainer library, a tiny seeded RNG, and the
//! ONNX Runtime library found the way the CLI finds it (tests fail, never skip, when it is missing).
#![allow(dead_code)]

use std::path::Path;

use candle_core::Device;
use runner::session::{Model, ModelOptions};
use trainer::checkpoint::TrainingSummary;
use trainer::model::{Normalization, SegNet};

/// Input normalisation of the test networks: not the identity, so the graph's Sub/Div are exercised.
pub const NORMALIZATION: Normalization = Normalization { mean: [0.45, 0.5, 0.4], std: [0.25, 0.2, 0.3] };

pub fn net(seed: u64) -> SegNet {
    SegNet::random(seed, NORMALIZATION, &Device::Cpu).expect("random network")
}

/// The ONNX bytes of a random network.
pub fn onnx_bytes(net: &SegNet) -> Vec<u8> {
    trainer::export::to_onnx_bytes(net, &TrainingSummary::default()).expect("export")
}

/// Loads ONNX bytes in a session, with the library looked up as the CLI does.
pub fn session(bytes: &[u8], threads: usize) -> Model {
    let options = ModelOptions { threads: Some(threads), ..ModelOptions::default() };
    Model::from_bytes(bytes, Path::new("test.onnx"), &options).unwrap_or_else(|e| {
        panic!("cannot create an ONNX Runtime session: {e}\n(the runner tests need the library: run `just setup`)")
    })
}

/// xorshift64*: small, seeded, good enough for test images and sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    /// Smooth-ish random RGB bytes (blobs plus noise), so that both classes appear.
    pub fn image(&mut self, height: usize, width: usize) -> Vec<u8> {
        let (cy, cx) = (self.range(0, height) as f32, self.range(0, width) as f32);
        let radius = (height.max(width) as f32 / 3.0).max(1.0);
        let mut rgb = Vec::with_capacity(height * width * 3);
        for y in 0..height {
            for x in 0..width {
                let d = ((y as f32 - cy).hypot(x as f32 - cx) / radius).min(1.0);
                for c in 0..3 {
                    let base = 255.0 * (1.0 - d) * (0.5 + 0.25 * c as f32);
                    let noise = (self.next() % 64) as f32;
                    rgb.push((base * 0.75 + noise).min(255.0) as u8);
                }
            }
        }
        rgb
    }
}
