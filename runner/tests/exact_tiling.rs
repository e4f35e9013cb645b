//! The heart of the runner: tiled prediction equals one untiled pass (that ONNX Runtime equals candle is
//! checked by the integration crate).

mod common;

use common::Rng;
use runner::predict::{self, PredictOptions};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Property test: random sizes (tiny, odd, non-square, larger than a tile) and tile sizes; the stitched
/// logits equal the untiled pass of the same session on the whole (even-padded) image.
#[test]
fn tiled_prediction_equals_the_untiled_pass() {
    let mut model = common::session(&common::model("net_11"), 2);
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
        let tiled = predict::tiled(&mut model, &rgb, height, width, options, |_| {}).unwrap();
        let untiled = predict::untiled(&mut model, &rgb, height, width, options).unwrap();
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

/// Negative control: the same check catches a plan whose halo is smaller than the receptive radius, so the
/// property test above would notice a broken plan.
#[test]
fn a_too_small_halo_is_detected() {
    use imaging::tiles::{Pass, Rect, Tile, TilePlan};
    use runner::predict::run_plan;
    let mut model = common::session(&common::model("net_11"), 2);
    let rgb = Rng::new(4).image(64, 64);
    let halo = 2;
    let tiles = [
        Tile {
            window: Rect { top: 0, left: 0, height: 32 + halo, width: 64 },
            keep: Rect { top: 0, left: 0, height: 32, width: 64 },
        },
        Tile {
            window: Rect { top: 32 - halo, left: 0, height: 32 + halo, width: 64 },
            keep: Rect { top: 32, left: 0, height: 32, width: 64 },
        },
    ];
    let plan = TilePlan {
        height: 64,
        width: 64,
        padded_height: 64,
        padded_width: 64,
        passes: tiles.iter().map(|&t| Pass { height: 32 + halo, width: 64, tiles: vec![t] }).collect(),
        bands: Vec::new(), // run_plan follows the batches; only streaming reads the bands
    };
    let options = PredictOptions { tile: 64, probabilities: false, logits: true };
    let broken = run_plan(&mut model, &rgb, &plan, options, |_| {}).unwrap();
    let untiled = predict::untiled(&mut model, &rgb, 64, 64, options).unwrap();
    let diff = max_abs_diff(broken.logits.as_ref().unwrap(), untiled.logits.as_ref().unwrap());
    assert!(diff > 1e-3, "a 2-px halo should change the seam, diff {diff}");
}

/// The same property for a three-class model: every class's logits and probabilities stitched from tiles
/// equal the untiled pass; the classes are the argmax of the logits (the first class on ties), and the
/// probabilities (height, width, 3) sum to 1 per pixel.
#[test]
fn tiled_prediction_equals_the_untiled_pass_for_three_classes() {
    let mut model = common::session(&common::model("net3_5"), 2);
    assert_eq!(model.classes(), 3);
    assert_eq!(model.class_names, ["background", "class1", "class2"]);
    let mut rng = Rng::new(31);
    let fixed: [(usize, usize, usize); 4] = [(1, 1, 256), (3, 5, 18), (65, 33, 32), (259, 131, 64)];
    let random: Vec<(usize, usize, usize)> = (0..12)
        .map(|_| {
            let tile = 2 * rng.range(9, 64);
            (rng.range(1, 3 * tile), rng.range(1, 3 * tile), tile)
        })
        .collect();
    let mut seen = [0usize; 3];
    for (height, width, tile) in fixed.into_iter().chain(random) {
        let rgb = rng.image(height, width);
        let options = PredictOptions { tile, probabilities: true, logits: true };
        let tiled = predict::tiled(&mut model, &rgb, height, width, options, |_| {}).unwrap();
        let untiled = predict::untiled(&mut model, &rgb, height, width, options).unwrap();
        let n = height * width;
        let (logits, probabilities) =
            (untiled.logits.as_ref().unwrap(), untiled.probabilities.as_ref().unwrap());
        assert_eq!((tiled.class_count, logits.len(), probabilities.len()), (3, 3 * n, 3 * n));
        let diff = max_abs_diff(tiled.logits.as_ref().unwrap(), logits);
        assert!(diff <= 1e-4, "{height}x{width} tile {tile}: logits differ by {diff}");
        let pdiff = max_abs_diff(tiled.probabilities.as_ref().unwrap(), probabilities);
        assert!(pdiff <= 1e-5, "{height}x{width} tile {tile}: probabilities differ by {pdiff}");
        for p in 0..n {
            let l = [logits[p], logits[n + p], logits[2 * n + p]];
            let argmax = (1..3).fold(0, |best, c| if l[c] > l[best] { c } else { best });
            assert_eq!(usize::from(untiled.classes[p]), argmax, "{height}x{width}: pixel {p}");
            if tiled.classes[p] != untiled.classes[p] {
                let margin = (l[usize::from(tiled.classes[p])] - l[argmax]).abs();
                assert!(
                    margin <= 1e-4,
                    "{height}x{width} tile {tile}: pixel {p} changed class (margin {margin})"
                );
            }
            let sum: f32 = probabilities[3 * p..3 * p + 3].iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{height}x{width}: pixel {p} sums to {sum}");
            seen[argmax] += 1;
        }
    }
    // A test of three classes that saw only one would not test the argmax.
    assert!(seen.iter().filter(|&&count| count > 0).count() >= 2, "classes seen: {seen:?}");
    println!("classes predicted: {seen:?}");
}
