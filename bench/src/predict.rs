//! Prediction of one large image: the runner's tiled prediction against one untiled ONNX Runtime pass, and
//! a breakdown of the tiled time (copy-in, session runs, stitching) with prototype session settings, so the
//! cost above the halo's own is located by measurement.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use imaging::tiles::{self, Rect, TilePlan};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::TensorRef;
use runner::predict::{self, PredictOptions};
use runner::session::{Model, ModelOptions};

use crate::stats::{self, Stats};

/// A deterministic photo-like RGB image: smooth colour fields plus pixel noise (so PNG and JPEG sizes and
/// decode times are those of a photograph, not of a flat test card).
pub fn synthetic_rgb(height: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(height * width * 3);
    let mut state: u32 = 0x9E37_79B9;
    for y in 0..height {
        for x in 0..width {
            let (fy, fx) = (y as f32 / 97.0, x as f32 / 131.0);
            let base = [
                (fy.sin() + fx.cos()) * 50.0 + 120.0,
                (fx + fy).sin() * 60.0 + 110.0,
                (fy * 0.7).cos() * 40.0 + 90.0,
            ];
            for b in base {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state >> 27) as f32 - 16.0;
                out.push((b + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// The runner's model with `threads` intra-op threads.
pub fn runner_model(bytes: &[u8], threads: usize) -> Result<Model> {
    let options = ModelOptions { threads: Some(threads), ..Default::default() };
    Ok(Model::from_bytes(bytes, Path::new("bench model"), &options)?)
}

/// Seconds of the runner's untiled reference pass (a) and of its tiled prediction (b), interleaved so that
/// machine noise hits both alike, and the CPU-time ratio b/a per repetition.
pub fn runner_untiled_and_tiled(
    model: &mut Model,
    rgb: &[u8],
    side: usize,
    reps: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let options = PredictOptions::default();
    let (mut untiled, mut tiled, mut cpu_ratio) = (vec![], vec![], vec![]);
    for i in 0..=reps {
        let (start, cpu) = (Instant::now(), stats::cpu_seconds());
        let a = predict::untiled(model, rgb, side, side, options)?;
        let (ta, ca) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
        let (start, cpu) = (Instant::now(), stats::cpu_seconds());
        let b = predict::tiled(model, rgb, side, side, options, |_| {})?;
        let (tb, cb) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
        if i == 0 {
            // Warm-up, and the exactness the ratio relies on.
            let differ = a.classes.iter().zip(&b.classes).filter(|(x, y)| x != y).count();
            anyhow::ensure!(differ == 0, "tiled and untiled classes differ at {differ} pixels");
            continue;
        }
        untiled.push(ta);
        tiled.push(tb);
        cpu_ratio.push(cb / ca);
    }
    Ok((untiled, tiled, cpu_ratio))
}

/// Window pixels the tile plan feeds the network, over the image's pixels: the unavoidable halo cost.
pub fn halo_factor(plan: &TilePlan) -> f64 {
    let windows: usize = plan.tiles().map(|t| t.window.area()).sum();
    windows as f64 / (plan.height * plan.width) as f64
}

/// ONNX Runtime session settings tried by the breakdown.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub name: &'static str,
    pub threads: usize,
    /// `None`: ONNX Runtime's default (all optimisations), as the runner uses.
    pub level: Option<GraphOptimizationLevel>,
    pub memory_pattern: bool,
    /// Whether the intra-op threads spin between ops and runs (ONNX Runtime's default: yes).
    pub spinning: bool,
    /// Ask only for `logits` (skips the Softmax node's output); else both outputs, as the runner does.
    pub logits_only: bool,
}

impl SessionConfig {
    /// What the runner's session.rs configures today.
    pub fn runner(threads: usize) -> SessionConfig {
        SessionConfig {
            name: "as runner",
            threads,
            level: None,
            memory_pattern: true,
            spinning: true,
            logits_only: false,
        }
    }
}

fn ort_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("ONNX Runtime: {e}")
}

fn session(bytes: &[u8], config: &SessionConfig) -> Result<Session> {
    let library = runner::session::library::resolve_library(None)?;
    let env = runner::session::library::environment(&library)?;
    let mut builder =
        Session::builder(&env).map_err(ort_err)?.with_intra_threads(config.threads).map_err(ort_err)?;
    if let Some(level) = config.level {
        builder = builder.with_optimization_level(level).map_err(ort_err)?;
    }
    if !config.memory_pattern {
        builder = builder.with_memory_pattern(false).map_err(ort_err)?;
    }
    if !config.spinning {
        builder = builder.with_intra_op_spinning(false).map_err(ort_err)?;
    }
    builder.commit_from_memory(bytes).map_err(ort_err)
}

/// One forward pass; returns a value of the logits so that nothing is optimised away. Output tensors are
/// read in place (no copy), unlike the runner's `to_vec`.
fn pass(
    session: &mut Session,
    logits_only: Option<&RunOptions<HasSelectedOutputs>>,
    input: &[f32],
    shape: [usize; 4],
) -> Result<f32> {
    let tensor = TensorRef::from_array_view((shape, input)).map_err(ort_err)?;
    let outputs = match logits_only {
        Some(options) => {
            session.run_with_options(ort::inputs!["image" => tensor], options).map_err(ort_err)?
        }
        None => session.run(ort::inputs!["image" => tensor]).map_err(ort_err)?,
    };
    let logits = outputs.get("logits").context("no logits output")?;
    let (_, data) = logits.try_extract_tensor::<f32>().map_err(ort_err)?;
    Ok(data[data.len() / 2])
}

/// The same copy-in as the runner (bytes to [0, 1] planes, zeros beyond the image).
fn fill_window(dst: &mut [f32], rgb: &[u8], height: usize, width: usize, window: Rect) {
    let (h, w) = (window.height, window.width);
    let plane = h * w;
    let inside = width.saturating_sub(window.left).min(w);
    dst.fill(0.0);
    for r in 0..h.min(height.saturating_sub(window.top)) {
        let y = window.top + r;
        let src = &rgb[(y * width + window.left) * 3..(y * width + window.left + inside) * 3];
        for (col, px) in src.chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + r * w + col] = px[c] as f32 / 255.0;
            }
        }
    }
}

/// Per-batch inputs of the whole plan, filled once.
fn fill_plan(plan: &TilePlan, rgb: &[u8]) -> Vec<Vec<f32>> {
    plan.passes
        .iter()
        .map(|b| {
            let n = 3 * b.height * b.width;
            let mut input = vec![0f32; b.tiles.len() * n];
            for (i, t) in b.tiles.iter().enumerate() {
                fill_window(&mut input[i * n..(i + 1) * n], rgb, plan.height, plan.width, t.window);
            }
            input
        })
        .collect()
}

/// One row of the breakdown: session-only seconds of the untiled pass and of all tiled passes.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub config: SessionConfig,
    pub untiled: Stats,
    pub tiled: Stats,
    /// Tiled over untiled, per repetition (the pair runs back to back, so load hits both alike).
    pub ratio: Stats,
    /// The same ratio in CPU seconds of the process (robust to other load; counts spinning as work).
    pub cpu_ratio: Stats,
}

/// Session-only times (inputs prepared beforehand, outputs read in place) for each configuration.
pub fn session_breakdown(
    bytes: &[u8],
    rgb: &[u8],
    side: usize,
    configs: &[SessionConfig],
    reps: usize,
) -> Result<Vec<SessionRow>> {
    let plan = tiles::plan(side, side, tiles::DEFAULT_TILE, tiles::HALO, tiles::PIXEL_BUDGET)?;
    let tiled_inputs = fill_plan(&plan, rgb);
    let whole = Rect { top: 0, left: 0, height: side, width: side };
    let mut untiled_input = vec![0f32; 3 * side * side];
    fill_window(&mut untiled_input, rgb, side, side, whole);
    let mut rows = vec![];
    for config in configs {
        let mut s = session(bytes, config)?;
        let selected =
            RunOptions::new().map_err(ort_err)?.with_outputs(OutputSelector::no_default().with("logits"));
        let options = config.logits_only.then_some(&selected);
        let (mut untiled, mut tiled, mut cpu_ratio) = (vec![], vec![], vec![]);
        for i in 0..=reps {
            let (start, cpu) = (Instant::now(), stats::cpu_seconds());
            std::hint::black_box(pass(&mut s, options, &untiled_input, [1, 3, side, side])?);
            let (ta, ca) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
            let (start, cpu) = (Instant::now(), stats::cpu_seconds());
            for (b, input) in plan.passes.iter().zip(&tiled_inputs) {
                std::hint::black_box(pass(&mut s, options, input, [b.tiles.len(), 3, b.height, b.width])?);
            }
            let (tb, cb) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
            if i > 0 {
                untiled.push(ta);
                tiled.push(tb);
                cpu_ratio.push(cb / ca);
            }
        }
        let ratio: Vec<f64> = tiled.iter().zip(&untiled).map(|(b, a)| b / a).collect();
        rows.push(SessionRow {
            config: *config,
            untiled: Stats::of(&untiled),
            tiled: Stats::of(&tiled),
            ratio: Stats::of(&ratio),
            cpu_ratio: Stats::of(&cpu_ratio),
        });
    }
    Ok(rows)
}

/// Seconds of the runner's copy-in alone (every window of the plan) and of a stitch alone (keep each tile's
/// centre as classes), single-threaded as in the runner.
pub fn copy_and_stitch(rgb: &[u8], side: usize, reps: usize) -> Result<(Stats, Stats)> {
    let plan = tiles::plan(side, side, tiles::DEFAULT_TILE, tiles::HALO, tiles::PIXEL_BUDGET)?;
    let copy = stats::time::<()>(1, reps, || {
        std::hint::black_box(fill_plan(&plan, rgb));
        Ok(())
    })
    .expect("infallible");
    // Stand-in logits of the largest pass, reused for every tile: the stitch reads them the runner's way.
    let max = plan.max_pass_pixels();
    let logits: Vec<f32> = (0..2 * max).map(|i| (i % 7) as f32).collect();
    let mut classes = vec![0u8; side * side];
    let stitch = stats::time::<()>(1, reps, || {
        for b in &plan.passes {
            let hw = b.height * b.width;
            for (i, t) in b.tiles.iter().enumerate() {
                let (l0, l1) =
                    (&logits[2 * i * hw..(2 * i + 1) * hw], &logits[(2 * i + 1) * hw..(2 * i + 2) * hw]);
                for y in t.keep.top..t.keep.top + t.keep.height {
                    let row = (y - t.window.top) * b.width - t.window.left;
                    for x in t.keep.left..t.keep.left + t.keep.width {
                        classes[y * side + x] = u8::from(l1[row + x] > l0[row + x]);
                    }
                }
            }
        }
        std::hint::black_box(&classes);
        Ok(())
    })
    .expect("infallible");
    Ok((Stats::of(&copy), Stats::of(&stitch)))
}

/// Seconds to decode a PNG and a JPEG of the image with the runner's loader, and to encode the class mask
/// as the runner's JPEG (quality 95, in memory) and to write it with `imaging::whole::write_mask` (file, fsync).
pub struct Codec {
    pub png_decode: Stats,
    pub jpeg_decode: Stats,
    pub mask_jpeg_encode: Stats,
    pub mask_jpeg_write: Stats,
    pub png_bytes: usize,
    pub jpeg_bytes: usize,
}

pub fn codec(rgb: &[u8], side: usize, reps: usize, scratch: &Path) -> Result<Codec> {
    use image::ImageEncoder;
    let s = side as u32;
    let mut png = vec![];
    image::codecs::png::PngEncoder::new(&mut png).write_image(rgb, s, s, image::ExtendedColorType::Rgb8)?;
    let mut jpeg = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(
        rgb,
        s,
        s,
        image::ExtendedColorType::Rgb8,
    )?;
    let decode = |bytes: &[u8]| -> Result<Stats> {
        Ok(Stats::of(&stats::time(1, reps, || imaging::whole::decode_rgb(bytes).map(drop))?))
    };
    let classes: Vec<u8> = rgb.chunks_exact(3).map(|p| u8::from(p[1] > 110)).collect();
    let encode = stats::time(1, reps, || -> Result<()> {
        let gray: Vec<u8> = classes.iter().map(|&c| if c > 0 { 255 } else { 0 }).collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).write_image(
            &gray,
            s,
            s,
            image::ExtendedColorType::L8,
        )?;
        std::hint::black_box(out);
        Ok(())
    })?;
    let path = scratch.join("mask.jpg");
    let write = stats::time(1, reps, || imaging::whole::write_mask(&path, &classes, s as usize, s as usize))?;
    Ok(Codec {
        png_decode: decode(&png)?,
        jpeg_decode: decode(&jpeg)?,
        mask_jpeg_encode: Stats::of(&encode),
        mask_jpeg_write: Stats::of(&write),
        png_bytes: png.len(),
        jpeg_bytes: jpeg.len(),
    })
}

/// Session seconds per megapixel of one pass of `batch` x `side`^2, for several pass shapes, plus the fixed
/// cost of one run (a 1x3x16x16 pass): whether small passes, not the halo, cost the extra time.
pub fn pass_efficiency(bytes: &[u8], config: &SessionConfig, reps: usize) -> Result<Vec<(String, Stats)>> {
    let mut s = session(bytes, config)?;
    let selected =
        RunOptions::new().map_err(ort_err)?.with_outputs(OutputSelector::no_default().with("logits"));
    let options = config.logits_only.then_some(&selected);
    let mut out = vec![];
    for (batch, side) in [(1, 16), (16, 64), (4, 128), (1, 256), (1, 512), (1, 1024), (1, 2048)] {
        let input: Vec<f32> = (0..batch * 3 * side * side).map(|i| (i % 251) as f32 / 251.0).collect();
        // Enough passes for about 4 megapixels per timing (at least one).
        let passes = (4 << 20) / (batch * side * side).max(1);
        let passes = passes.clamp(1, 1000);
        let seconds = stats::time(1, reps, || -> Result<()> {
            for _ in 0..passes {
                std::hint::black_box(pass(&mut s, options, &input, [batch, 3, side, side])?);
            }
            Ok(())
        })?;
        let per = if side == 16 {
            // Milliseconds per run: the fixed cost.
            Stats::of(&seconds).map(|t| t / passes as f64 * 1e3)
        } else {
            Stats::of(&seconds).map(|t| t / (passes * batch * side * side) as f64 * 1e6)
        };
        out.push((format!("{batch} x {side}^2"), per));
    }
    Ok(out)
}

/// Prototype: `workers` sessions of one intra-op thread each, taking the tile passes in turn (tiles are
/// independent, so parallelism across tiles needs no synchronisation inside a pass), against the untiled
/// pass of one `workers`-thread session as the runner configures it.
pub fn parallel_tiles(
    bytes: &[u8],
    rgb: &[u8],
    side: usize,
    workers: usize,
    reps: usize,
) -> Result<SessionRow> {
    let plan = tiles::plan(side, side, tiles::DEFAULT_TILE, tiles::HALO, tiles::PIXEL_BUDGET)?;
    let tiled_inputs = fill_plan(&plan, rgb);
    let whole = Rect { top: 0, left: 0, height: side, width: side };
    let mut untiled_input = vec![0f32; 3 * side * side];
    fill_window(&mut untiled_input, rgb, side, side, whole);
    let reference = SessionConfig::runner(workers);
    let mut untiled_session = session(bytes, &reference)?;
    let single = SessionConfig { name: "", threads: 1, logits_only: true, ..reference };
    let mut sessions = (0..workers).map(|_| session(bytes, &single)).collect::<Result<Vec<_>>>()?;
    let (mut untiled, mut tiled, mut cpu_ratio) = (vec![], vec![], vec![]);
    for i in 0..=reps {
        let (start, cpu) = (Instant::now(), stats::cpu_seconds());
        std::hint::black_box(pass(&mut untiled_session, None, &untiled_input, [1, 3, side, side])?);
        let (ta, ca) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
        let (start, cpu) = (Instant::now(), stats::cpu_seconds());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = sessions
                .iter_mut()
                .map(|s| {
                    let (next, plan, inputs) = (&next, &plan, &tiled_inputs);
                    scope.spawn(move || -> Result<()> {
                        let selected = RunOptions::new()
                            .map_err(ort_err)?
                            .with_outputs(OutputSelector::no_default().with("logits"));
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(b) = plan.passes.get(k) else { return Ok(()) };
                            let shape = [b.tiles.len(), 3, b.height, b.width];
                            std::hint::black_box(pass(s, Some(&selected), &inputs[k], shape)?);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow!("a tile worker panicked"))??;
            }
            Ok(())
        })?;
        let (tb, cb) = (start.elapsed().as_secs_f64(), stats::cpu_seconds() - cpu);
        if i > 0 {
            untiled.push(ta);
            tiled.push(tb);
            cpu_ratio.push(cb / ca);
        }
    }
    let ratio: Vec<f64> = tiled.iter().zip(&untiled).map(|(b, a)| b / a).collect();
    Ok(SessionRow {
        config: SessionConfig {
            name: "tiles across 1-thread sessions (untiled: as runner)",
            threads: workers,
            ..single
        },
        untiled: Stats::of(&untiled),
        tiled: Stats::of(&tiled),
        ratio: Stats::of(&ratio),
        cpu_ratio: Stats::of(&cpu_ratio),
    })
}
