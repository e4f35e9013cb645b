//! Throughput of tiled prediction against one untiled pass (which ignores the pixel budget), on random
//! weights: the cost of exact tiling is the recomputed halo, about (256/240)^2 = 1.14x for 256 tiles.
//! Run: `cargo bench -p runner --bench predict` (needs the ONNX Runtime library, as the tests do).

use std::path::Path;
use std::time::Instant;

use runner::predict::{self, PredictOptions};
use runner::session::{Model, ModelOptions};

fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    // A random network exported by the trainer (see tests/data/models): speed does not depend on weights.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/net_2.onnx");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let threads = std::env::var("BENCH_THREADS").ok().and_then(|t| t.parse().ok());
    let options = ModelOptions { threads, ..ModelOptions::default() };
    let mut model = Model::from_bytes(&bytes, Path::new("bench.onnx"), &options)
        .unwrap_or_else(|e| panic!("{e} (the benchmark needs the library: run `just setup`)"));
    for side in [1024usize, 2048] {
        let rgb: Vec<u8> = (0..side * side * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let mp = (side * side) as f64 / 1e6;
        // Warm-up: the first run of a shape allocates.
        predict::tiled(&mut model, &rgb, side, side, PredictOptions::default(), |_| {}).unwrap();
        for tile in [256, 128] {
            let opts = PredictOptions { tile, ..PredictOptions::default() };
            let s = median_seconds(3, || {
                predict::tiled(&mut model, &rgb, side, side, opts, |_| {}).unwrap();
            });
            println!("tiled {side}x{side}, tile {tile}: {s:.3} s, {:.2} megapixels/s", mp / s);
        }
        if side <= 1024 {
            predict::untiled(&mut model, &rgb, side, side, PredictOptions::default()).unwrap();
            let s = median_seconds(3, || {
                predict::untiled(&mut model, &rgb, side, side, PredictOptions::default()).unwrap();
            });
            println!("untiled {side}x{side} (one pass, over budget): {s:.3} s, {:.2} megapixels/s", mp / s);
        }
    }
}
