//! ONNX Runtime, as the runner drives it, computes what candle computes for the trainer: the exported graph
//! is the trained network.

use std::path::Path;

use candle_core::{Device, Tensor};
use runner::session::{Model, ModelOptions};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// ONNX Runtime's logits for the exported graph equal candle's `SegNet::forward` on the same weights.
#[test]
fn onnx_runtime_matches_candle() {
    let net = integration::net(5);
    let options = ModelOptions { threads: Some(2), ..ModelOptions::default() };
    let mut model = Model::from_bytes(&integration::onnx_bytes(&net), Path::new("net_5.onnx"), &options)
        .expect("an ONNX Runtime session (run `just setup` for the library)");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for (batch, height, width) in [(1, 2, 2), (1, 16, 24), (2, 38, 30), (1, 64, 64), (3, 10, 100)] {
        let input: Vec<f32> =
            (0..batch * 3 * height * width).map(|_| (next() % 256) as f32 / 255.0).collect();
        let x = Tensor::from_vec(input.clone(), (batch, 3, height, width), &Device::Cpu).unwrap();
        let expected: Vec<f32> = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let out = model.run(&input, batch, height, width).unwrap();
        let diff = max_abs_diff(out.logits.as_ref().unwrap(), &expected);
        assert!(diff <= 1e-4, "{batch}x{height}x{width}: ORT and candle differ by {diff}");
        // The graph's probabilities are the softmax of its logits.
        let (logits, probs) = (out.logits.unwrap(), out.probabilities.unwrap());
        let plane = height * width;
        for b in 0..batch {
            for p in 0..plane {
                let (l0, l1) = (logits[b * 2 * plane + p], logits[(b * 2 + 1) * plane + p]);
                let p1 = 1.0 / (1.0 + (l0 - l1).exp());
                assert!((probs[(b * 2 + 1) * plane + p] - p1).abs() < 1e-5);
            }
        }
    }
}
