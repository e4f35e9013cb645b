//! Tiles predicted in parallel by one-thread worker sessions: the result does not depend on the thread
//! count, progress covers every tile, and a failing pass surfaces as an error without hanging.

mod common;

use common::Rng;
use imaging::tiles::{Pass, Rect, Tile, TilePlan};
use runner::predict::{self, run_plan, PredictError, PredictOptions};
use runner::session::error::SessionError;

#[test]
fn the_result_is_bit_identical_for_any_thread_count() {
    let bytes = common::model("net_7");
    let mut rng = Rng::new(31);
    let (height, width) = (301, 519);
    let rgb = rng.image(height, width);
    let options = PredictOptions { tile: 64, probabilities: true, logits: true };
    let mut results = vec![];
    for threads in [1, 2, 3] {
        let mut model = common::session(&bytes, threads);
        let mut tiles = 0;
        let prediction = predict::tiled(&mut model, &rgb, height, width, options, |n| tiles += n).unwrap();
        assert_eq!(tiles, prediction.tiles, "{threads} threads: progress must count every tile");
        assert!(prediction.forward_passes > 3);
        results.push(prediction);
    }
    let bits = |v: &Option<Vec<f32>>| v.as_ref().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for other in &results[1..] {
        assert_eq!(other.classes, results[0].classes);
        assert_eq!(bits(&other.logits), bits(&results[0].logits));
        assert_eq!(bits(&other.probabilities), bits(&results[0].probabilities));
    }
}

#[test]
fn a_failing_pass_is_an_error_not_a_hang() {
    let mut model = common::session(&common::model("net_2"), 2);
    let rgb = Rng::new(5).image(64, 64);
    // Sixteen 4-row strips, one of them 5 rows high: an odd height, which the network cannot return at its
    // input size (2x2 pooling then 2x upsampling), so that pass fails while the others succeed.
    let passes = (0..16)
        .map(|i| {
            let height = if i == 9 { 5 } else { 4 };
            let y = (i * 4).min(64 - height);
            let window = Rect { top: y, left: 0, height, width: 64 };
            Pass { height, width: 64, tiles: vec![Tile { window, keep: window }] }
        })
        .collect();
    // run_plan follows the passes; only streaming reads the bands.
    let plan =
        TilePlan { height: 64, width: 64, padded_height: 64, padded_width: 64, passes, bands: Vec::new() };
    let options = PredictOptions { tile: 64, probabilities: false, logits: false };
    match run_plan(&mut model, &rgb, &plan, options, |_| {}) {
        Err(PredictError::Session(SessionError::Run { height: 5, width: 64, .. })) => {}
        other => panic!("expected a run error on the 5-row pass, got {other:?}"),
    }
    // The model stays usable after a failed prediction.
    let plan = imaging::tiles::plan(64, 64, 32, imaging::tiles::HALO, imaging::tiles::PIXEL_BUDGET).unwrap();
    run_plan(&mut model, &rgb, &plan, options, |_| {}).unwrap();
}
