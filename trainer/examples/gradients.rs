//! Loss and parameter gradients of a checkpoint on one batch, as one JSON line: the trainer's side of
//! `scripts/research/pytorch_gradients.py`, which compares them with PyTorch's for the same weights and
//! batch.
//!
//! `cargo run --release -p trainer --example gradients -- CHECKPOINT PIXELS.f32 LABELS.u32 BATCH SIZE
//! [--reference-ops] [--logits OUT.f32]`: PIXELS holds (BATCH,3,SIZE,SIZE) little-endian f32 RGB in [0,1],
//! LABELS BATCH*SIZE*SIZE little-endian u32 classes (255 unlabelled); any number of classes (the
//! checkpoint's). `--logits` also writes the forward pass's logits (BATCH,C,SIZE,SIZE) as little-endian f32.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use trainer::checkpoint::Checkpoint;
use trainer::ops::Kernels;

fn read_words(path: &str) -> Result<Vec<[u8; 4]>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    Ok(bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        bail!("usage: gradients CHECKPOINT PIXELS.f32 LABELS.u32 BATCH SIZE [--reference-ops] [--logits OUT.f32]");
    }
    let device = Device::Cpu;
    let checkpoint = Checkpoint::load(Path::new(&args[0]), &device)?;
    let (batch, size): (usize, usize) = (args[3].parse()?, args[4].parse()?);
    let pixels: Vec<f32> = read_words(&args[1])?.into_iter().map(f32::from_le_bytes).collect();
    let labels: Vec<u32> = read_words(&args[2])?.into_iter().map(u32::from_le_bytes).collect();
    let x = Tensor::from_vec(pixels, (batch, 3, size, size), &device)?;
    let y = Tensor::from_vec(labels, batch * size * size, &device)?;
    let kernels =
        if args.iter().any(|a| a == "--reference-ops") { Kernels::Reference } else { Kernels::Fast };
    let net = checkpoint.net.with_kernels(kernels);
    let logits = net.forward(&x)?;
    if let Some(at) = args.iter().position(|a| a == "--logits") {
        let path = args.get(at + 1).context("--logits needs a file")?;
        let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).with_context(|| format!("cannot write {path}"))?;
    }
    let loss = trainer::train::segmentation_loss(&logits, &y, net.kernels)?;
    let grads = loss.backward()?;
    let mut out = serde_json::Map::new();
    for ((name, _), var) in net.named_tensors().into_iter().zip(net.vars()) {
        let g = grads.get(var.as_tensor()).context("no gradient")?.flatten_all()?.to_vec1::<f32>()?;
        out.insert(name, g.into());
    }
    println!("{}", serde_json::json!({ "loss": loss.to_scalar::<f32>()?, "gradients": out }));
    Ok(())
}
