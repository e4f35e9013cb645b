//! The heart of the runner: tiled prediction equals one untiled pass, and ONNX Runtime equals candle.

mod common;

use candle_core::{Device, Tensor};
use common::Rng;
use runner::predict::{predict, predict_untiled, PredictOptions};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Property test: random sizes (tiny, odd, non-square, larger than a tile) and tile sizes; the stitched
/// logits equal the untiled pass of the same session on the whole (even-padded) image.
#[test]
fn tiled_prediction_equals_the_untiled_pass() {
    let mut model = common::session(&common::onnx_bytes(&common::net(11)), 2);
    let mut rng = Rng::new(2026);
    let fixed: [(usize, usize, usize); 10] = [
        (1, 1, 256),
        (1, 2, 18),
        (3, 5, 18),
        (17, 18, 18),
        (64, 64, 32),
        (65, 33, 32),
        (256, 256, 256),
        (259, 31, 64),
        (301, 519, 256),
        (513, 257, 256),
    ];
    let random: Vec<(usize, usize, usize)> = (0..40)
        .map(|_| {
            let tile = 2 * rng.range(9, 64); // 18..=128
            (rng.range(1, 3 * tile), rng.range(1, 3 * tile), tile)
        })
        .collect();
    let (mut cases, mut worst) = (0, 0f32);
    for (height, width, tile) in fixed.into_iter().chain(random) {
        let rgb = rng.image(height, width);
        let options = PredictOptions { tile, probabilities: true, logits: true };
        let tiled = predict(&mut model, &rgb, height, width, options, |_| {}).unwrap();
        let untiled = predict_untiled(&mut model, &rgb, height, width, options).unwrap();
        let diff = max_abs_diff(tiled.logits.as_ref().unwrap(), untiled.logits.as_ref().unwrap());
        assert!(diff <= 1e-4, "{height}x{width} tile {tile}: logits differ by {diff}");
        worst = worst.max(diff);
        // Identical argmax, except where the two logits tie to within the rounding above.
        let logits = untiled.logits.as_ref().unwrap();
        let n = height * width;
        for p in 0..n {
            if tiled.classes[p] != untiled.classes[p] {
                let margin = (logits[p] - logits[n + p]).abs();
                assert!(
                    margin <= 1e-4,
                    "{height}x{width} tile {tile}: pixel {p} changed class (margin {margin})"
                );
            }
        }
        let pdiff =
            max_abs_diff(tiled.probabilities.as_ref().unwrap(), untiled.probabilities.as_ref().unwrap());
        assert!(pdiff <= 1e-5, "{height}x{width} tile {tile}: probabilities differ by {pdiff}");
        assert_eq!(tiled.classes.len(), n);
        if height.max(width) > tile {
            assert!(tiled.tiles > 1, "{height}x{width} tile {tile} should be tiled");
        }
        cases += 1;
    }
    assert_eq!(cases, 50);
    println!("{cases} cases, largest logit difference {worst:e}");
}

/// ONNX Runtime's logits for the exported graph equal candle's `SegNet::forward` on the same weights.
#[test]
fn onnx_runtime_matches_candle() {
    let net = common::net(5);
    let mut model = common::session(&common::onnx_bytes(&net), 2);
    let mut rng = Rng::new(9);
    for (batch, height, width) in [(1, 2, 2), (1, 16, 24), (2, 38, 30), (1, 64, 64), (3, 10, 100)] {
        let input: Vec<f32> =
            (0..batch * 3 * height * width).map(|_| (rng.next() % 256) as f32 / 255.0).collect();
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

/// Negative control: the same check catches a plan whose halo is smaller than the receptive radius, so the
/// property test above would notice a broken plan.
#[test]
fn a_too_small_halo_is_detected() {
    use runner::predict::run_plan;
    use runner::tiling::{Batch, Rect, Tile, TilePlan};
    let mut model = common::session(&common::onnx_bytes(&common::net(11)), 2);
    let rgb = Rng::new(4).image(64, 64);
    let halo = 2;
    let tiles = [
        Tile {
            window: Rect { y: 0, x: 0, height: 32 + halo, width: 64 },
            keep: Rect { y: 0, x: 0, height: 32, width: 64 },
        },
        Tile {
            window: Rect { y: 32 - halo, x: 0, height: 32 + halo, width: 64 },
            keep: Rect { y: 32, x: 0, height: 32, width: 64 },
        },
    ];
    let plan = TilePlan {
        height: 64,
        width: 64,
        padded_height: 64,
        padded_width: 64,
        batches: tiles.iter().map(|&t| Batch { height: 32 + halo, width: 64, tiles: vec![t] }).collect(),
        bands: Vec::new(), // run_plan follows the batches; only streaming reads the bands
    };
    let options = PredictOptions { tile: 64, probabilities: false, logits: true };
    let broken = run_plan(&mut model, &rgb, &plan, options, |_| {}).unwrap();
    let untiled = predict_untiled(&mut model, &rgb, 64, 64, options).unwrap();
    let diff = max_abs_diff(broken.logits.as_ref().unwrap(), untiled.logits.as_ref().unwrap());
    assert!(diff > 1e-3, "a 2-px halo should change the seam, diff {diff}");
}
