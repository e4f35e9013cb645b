//! Whole-image prediction: follows the tile plan with one thread per worker session, each assembling its
//! forward passes' input in one reused buffer, and keeps only each window's centre. The result is held as one
//! class byte per pixel, plus a float32 foreground probability per pixel only when asked for, so memory stays
//! small for large images.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::session::{Model, Pass, PassOutput, SessionError, Wanted};
use crate::tiling::{self, Batch, Rect, Tile, TilePlan, TilingError};

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Tiling(#[from] TilingError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the image holds {got} bytes, expected {expected} for {width}x{height} RGB")]
    ImageSize { got: usize, expected: usize, width: usize, height: usize },
    #[error("logits were asked for but the model has no `logits` output")]
    NoLogits,
    #[error("a prediction thread panicked (a bug in the runner); rerun with --threads 1 and report it")]
    WorkerPanicked,
}

/// What to compute besides the class mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    /// Largest square window side (even, at most 256 for the 65,536-pixel budget).
    pub tile: usize,
    /// Keep the foreground probability of every pixel (4 bytes per pixel).
    pub probabilities: bool,
    /// Keep both logits of every pixel (8 bytes per pixel): for checking exactness on small images.
    pub logits: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { tile: tiling::DEFAULT_TILE, probabilities: false, logits: false }
    }
}

/// The prediction for one image, at the image's size (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub height: usize,
    pub width: usize,
    /// Class per pixel: 1 foreground, 0 background (argmax over the two classes).
    pub classes: Vec<u8>,
    /// Foreground probability per pixel, if asked for.
    pub probabilities: Option<Vec<f32>>,
    /// Logits (2, height, width), class-major, if asked for.
    pub logits: Option<Vec<f32>>,
    pub tiles: usize,
    pub forward_passes: usize,
}

/// Predicts an RGB image (`rgb`: height x width x 3 bytes) by tiles within the pixel budget. `progress` is
/// called after each forward pass with the number of tiles it completed.
pub fn predict(
    model: &mut Model,
    rgb: &[u8],
    height: usize,
    width: usize,
    options: PredictOptions,
    progress: impl FnMut(usize),
) -> Result<Prediction, PredictError> {
    let plan = tiling::plan(height, width, options.tile, tiling::HALO, tiling::PIXEL_BUDGET)?;
    run_plan(model, rgb, &plan, options, progress)
}

/// The untiled reference: one forward pass over the whole image padded to even size with zeros at the
/// bottom and right. It ignores the pixel budget, so it is only for checking the tiling on small images.
pub fn predict_untiled(
    model: &mut Model,
    rgb: &[u8],
    height: usize,
    width: usize,
    options: PredictOptions,
) -> Result<Prediction, PredictError> {
    let (padded_height, padded_width) = (height + height % 2, width + width % 2);
    let whole = Rect { y: 0, x: 0, height: padded_height, width: padded_width };
    let plan = TilePlan {
        height,
        width,
        padded_height,
        padded_width,
        batches: vec![Batch {
            height: padded_height,
            width: padded_width,
            tiles: vec![Tile { window: whole, keep: whole }],
        }],
    };
    check_request(model, rgb, &plan, options)?;
    let pass = model.reference_pass(wanted(model, options))?;
    run_passes(vec![pass], rgb, &plan, options, |_| {})
}

/// Byte to [0, 1], as a table: the same value on every path.
fn unit_table() -> [f32; 256] {
    std::array::from_fn(|v| v as f32 / 255.0)
}

/// Runs every batch of `plan` and stitches the kept centres. The model's worker sessions take the batches in
/// turn, each on its own thread with its own input buffer; this thread stitches each finished batch (kept
/// rectangles are disjoint, so the order does not matter and the result is the same for any thread count)
/// and calls `progress` with the tiles it completed.
pub fn run_plan(
    model: &mut Model,
    rgb: &[u8],
    plan: &TilePlan,
    options: PredictOptions,
    progress: impl FnMut(usize),
) -> Result<Prediction, PredictError> {
    check_request(model, rgb, plan, options)?;
    let passes = model.worker_passes(wanted(model, options))?;
    run_passes(passes, rgb, plan, options, progress)
}

/// The outputs to compute: the logits decide the class when the model has them; the model's own
/// probabilities are used when asked for, or to decide the class when it has no logits.
fn wanted(model: &Model, options: PredictOptions) -> Wanted {
    Wanted { logits: true, probabilities: options.probabilities || !model.has_logits() }
}

fn check_request(
    model: &Model,
    rgb: &[u8],
    plan: &TilePlan,
    options: PredictOptions,
) -> Result<(), PredictError> {
    let (height, width) = (plan.height, plan.width);
    if rgb.len() != height * width * 3 {
        return Err(PredictError::ImageSize { got: rgb.len(), expected: height * width * 3, width, height });
    }
    if options.logits && !model.has_logits() {
        return Err(PredictError::NoLogits);
    }
    Ok(())
}

/// The stitched result, filled batch by batch.
struct Stitched {
    classes: Vec<u8>,
    probabilities: Option<Vec<f32>>,
    logits: Option<Vec<f32>>,
}

/// Follows `plan` with one thread per pass; see [`run_plan`].
fn run_passes(
    passes: Vec<Pass<'_>>,
    rgb: &[u8],
    plan: &TilePlan,
    options: PredictOptions,
    mut progress: impl FnMut(usize),
) -> Result<Prediction, PredictError> {
    let pixels = plan.height * plan.width;
    let mut out = Stitched {
        classes: vec![0u8; pixels],
        probabilities: options.probabilities.then(|| vec![0f32; pixels]),
        logits: options.logits.then(|| vec![0f32; 2 * pixels]),
    };
    let unit = unit_table();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // A few finished batches may wait for stitching; more would only hold memory.
    let (sender, receiver) =
        mpsc::sync_channel::<Result<(usize, PassOutput), SessionError>>(2 * passes.len());
    let mut first_error: Option<PredictError> = None;
    std::thread::scope(|scope| {
        let workers: Vec<_> = passes
            .into_iter()
            .take(plan.batches.len()) // no idle threads for small plans
            .map(|mut pass| {
                let (sender, next, stop, unit) = (sender.clone(), &next, &stop, &unit);
                scope.spawn(move || {
                    let mut input: Vec<f32> = Vec::with_capacity(3 * plan.max_batch_pixels());
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = plan.batches.get(index) else { break };
                        fill_batch(&mut input, batch, rgb, plan, unit);
                        let result = pass.run(&input, batch.tiles.len(), batch.height, batch.width);
                        let failed = result.is_err();
                        if failed {
                            stop.store(true, Ordering::Relaxed);
                        }
                        // The receiver outlives every worker; a send can only fail if it is gone.
                        if sender.send(result.map(|o| (index, o))).is_err() || failed {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(sender);
        // Ends when every worker has finished and dropped its sender.
        for message in &receiver {
            if first_error.is_some() {
                continue; // drain, so that no worker waits on a full channel
            }
            let stitched = message.map_err(PredictError::from).and_then(|(index, output)| {
                let batch = &plan.batches[index];
                stitch_batch(&mut out, &output, batch, plan)?;
                Ok(batch.tiles.len())
            });
            match stitched {
                Ok(tiles) => progress(tiles),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error = Some(e);
                }
            }
        }
        for worker in workers {
            if worker.join().is_err() && first_error.is_none() {
                first_error = Some(PredictError::WorkerPanicked);
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Prediction {
        height: plan.height,
        width: plan.width,
        classes: out.classes,
        probabilities: out.probabilities,
        logits: out.logits,
        tiles: plan.tile_count(),
        forward_passes: plan.batches.len(),
    })
}

/// Fills `input` with the (tiles, 3, h, w) windows of one batch.
fn fill_batch(input: &mut Vec<f32>, batch: &Batch, rgb: &[u8], plan: &TilePlan, unit: &[f32; 256]) {
    let (h, w) = (batch.height, batch.width);
    input.clear();
    input.resize(batch.tiles.len() * 3 * h * w, 0.0);
    for (tile, dst) in batch.tiles.iter().zip(input.chunks_exact_mut(3 * h * w)) {
        fill_window(dst, rgb, plan.height, plan.width, tile.window, unit);
    }
}

/// Copies the kept centre of every tile of one finished batch into the result.
fn stitch_batch(
    out: &mut Stitched,
    output: &PassOutput,
    batch: &Batch,
    plan: &TilePlan,
) -> Result<(), SessionError> {
    let (height, width, pixels) = (plan.height, plan.width, plan.height * plan.width);
    let (h, w) = (batch.height, batch.width);
    let (logits_out, probabilities_out) = (output.logits()?, output.probabilities()?);
    for (i, tile) in batch.tiles.iter().enumerate() {
        let (l0, l1) = (plane(logits_out, i, 0, h * w), plane(logits_out, i, 1, h * w));
        let (p0, p1) = (plane(probabilities_out, i, 0, h * w), plane(probabilities_out, i, 1, h * w));
        let (win, keep) = (tile.window, tile.keep);
        // Kept rows and columns inside the real (unpadded) image.
        for y in keep.y..(keep.y + keep.height).min(height) {
            for x in keep.x..(keep.x + keep.width).min(width) {
                let local = (y - win.y) * w + (x - win.x);
                let dst = y * width + x;
                let foreground = match (l0, l1, p0, p1) {
                    (Some(a), Some(b), _, _) => b[local] > a[local],
                    (_, _, Some(a), Some(b)) => b[local] > a[local],
                    _ => unreachable!("a validated model has logits or probabilities"),
                };
                out.classes[dst] = u8::from(foreground);
                if let Some(probs) = out.probabilities.as_mut() {
                    probs[dst] = match (p1, l0, l1) {
                        (Some(p), _, _) => p[local],
                        (None, Some(a), Some(b)) => 1.0 / (1.0 + (a[local] - b[local]).exp()),
                        _ => unreachable!("a validated model has logits or probabilities"),
                    };
                }
                if let (Some(all), Some(a), Some(b)) = (out.logits.as_mut(), l0, l1) {
                    all[dst] = a[local];
                    all[pixels + dst] = b[local];
                }
            }
        }
    }
    Ok(())
}

/// Class `class` of tile `tile` in a (batch, 2, h, w) output whose planes hold `plane` values.
fn plane(data: Option<&[f32]>, tile: usize, class: usize, plane: usize) -> Option<&[f32]> {
    data.map(|d| &d[(tile * 2 + class) * plane..(tile * 2 + class + 1) * plane])
}

/// Writes one window of the image as (3, h, w) planes into `dst`; pixels beyond the image (the even padding)
/// are zero.
fn fill_window(dst: &mut [f32], rgb: &[u8], height: usize, width: usize, window: Rect, unit: &[f32; 256]) {
    let (h, w) = (window.height, window.width);
    let plane = h * w;
    let inside = width.saturating_sub(window.x).min(w);
    for r in 0..h {
        let y = window.y + r;
        let row = r * w;
        if y >= height {
            for c in 0..3 {
                dst[c * plane + row..c * plane + row + w].fill(0.0);
            }
            continue;
        }
        let src = &rgb[(y * width + window.x) * 3..(y * width + window.x + inside) * 3];
        for (col, px) in src.chunks_exact(3).enumerate() {
            dst[row + col] = unit[px[0] as usize];
            dst[plane + row + col] = unit[px[1] as usize];
            dst[2 * plane + row + col] = unit[px[2] as usize];
        }
        for c in 0..3 {
            dst[c * plane + row + inside..c * plane + row + w].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_planar_and_zero_beyond_the_image() {
        // A 3x3 image whose bytes count up; a 4x4 window from the origin covers it plus the even padding.
        let rgb: Vec<u8> = (0..27).collect();
        let mut dst = vec![f32::NAN; 3 * 16];
        fill_window(&mut dst, &rgb, 3, 3, Rect { y: 0, x: 0, height: 4, width: 4 }, &unit_table());
        let at = |c: usize, y: usize, x: usize| dst[c * 16 + y * 4 + x] * 255.0;
        assert_eq!(at(0, 0, 0), 0.0);
        assert_eq!(at(1, 0, 0), 1.0);
        assert_eq!(at(2, 2, 2), 26.0);
        assert_eq!(at(0, 1, 2), 15.0);
        assert!((0..3).all(|c| (0..4).all(|i| at(c, 3, i) == 0.0 && at(c, i, 3) == 0.0)));
        // A window starting inside the image.
        let mut dst = vec![f32::NAN; 3 * 4];
        fill_window(&mut dst, &rgb, 3, 3, Rect { y: 2, x: 2, height: 2, width: 2 }, &unit_table());
        assert_eq!(
            dst.iter().map(|v| (v * 255.0).round() as u8).collect::<Vec<_>>(),
            [24, 0, 0, 0, 25, 0, 0, 0, 26, 0, 0, 0]
        );
    }
}
