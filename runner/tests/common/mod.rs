//! Shared by the integration tests: the test models (random networks exported by the trainer, and graphs
//! the runner must refuse, kept as files in tests/data/models and made by the `integration` crate), a
//! tiny seeded RNG, and the ONNX Runtime library found the way the CLI finds it (tests fail, never skip,
//! when it is missing).
#![allow(dead_code)]

use std::path::Path;

use runner::session::{Model, ModelOptions};

/// The bytes of the test model `name` (e.g. `net_3`, a random network of seed 3, or `nan_weights`).
pub fn model(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models").join(format!("{name}.onnx"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
