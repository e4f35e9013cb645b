//! Checkpoint bytes through the trainer's loader: any input must load or be refused with an error, never
//! panic.
#![no_main]

use std::path::Path;

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use trainer::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let _ = Checkpoint::from_bytes(data, Path::new("fuzz.safetensors"), &Device::Cpu);
});
