//! Whole-image prediction: follows the tile plan with one thread per worker session, each assembling its
//! forward passes' input in one reused buffer, and keeps only each window's centre. The result is held as one
//! class byte per pixel, plus float32 probabilities only when asked for (the foreground's for a two-class
//! model, every class's for more), so memory stays small for large images.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::session::error::SessionError;
use crate::session::worker::{PassOutput, Wanted, Worker};
use crate::session::Model;
use imaging::sink::SinkError;
use imaging::source::{Channels, ImageSource, SourceError};
use imaging::tiles::{self, Pass, Rect, Tile, TilePlan, TilingError};
use imaging::tissue::Scope;

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
    #[error("the model's {output} are not finite ({value}) in the tile at x {x}, y {y} ({width}x{height} window); the model is broken (NaN weights, or a zero std in its normalisation): export it again from a good checkpoint", x = window.left, y = window.top, width = window.width, height = window.height)]
    NonFinite { output: &'static str, value: f32, window: Rect },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An output written beside the sinks (the GeoJSON regions).
    #[error(transparent)]
    File(#[from] imaging::files::FileError),
    #[error("the image reader thread panicked (a bug in the runner); report it")]
    ReaderPanicked,
    /// The band consumer stopped with an error of its own, which its caller holds and reports instead.
    #[error("writing the outputs stopped")]
    ConsumerStopped,
}

/// What to compute besides the class mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    /// Largest square window side (even, at most 256 for the 65,536-pixel budget).
    pub tile: usize,
    /// Keep the probabilities of every pixel: the foreground's for two classes (4 bytes per pixel), every
    /// class's for C > 2 (4C bytes per pixel).
    pub probabilities: bool,
    /// Keep every class's logit of every pixel (4C bytes per pixel): for checking exactness on small images.
    pub logits: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { tile: tiles::DEFAULT_TILE, probabilities: false, logits: false }
    }
}

/// The prediction for one image, at the image's size (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub height: usize,
    pub width: usize,
    /// Class per pixel: the argmax over the classes, the first on ties (two classes: 1 foreground, 0
    /// background).
    pub classes: Vec<u8>,
    /// The model's class count C.
    pub class_count: usize,
    /// If asked for: the foreground probability per pixel for two classes; for C > 2 every class's,
    /// (height, width, C), pixel-major.
    pub probabilities: Option<Vec<f32>>,
    /// Logits (C, height, width), class-major, if asked for.
    pub logits: Option<Vec<f32>>,
    pub tiles: usize,
    pub forward_passes: usize,
}

/// Predicts an RGB image (`rgb`: height x width x 3 bytes) by tiles within the pixel budget. `progress` is
/// called after each forward pass with the number of tiles it completed.
pub fn tiled(
    model: &mut Model,
    rgb: &[u8],
    height: usize,
    width: usize,
    options: PredictOptions,
    progress: impl FnMut(usize),
) -> Result<Prediction, PredictError> {
    let plan = model.tiling.plan(height, width, options.tile)?;
    run_plan(model, rgb, &plan, options, progress)
}

/// The untiled reference: one forward pass over the whole image padded to even size with zeros at the
/// bottom and right. It ignores the pixel budget, so it is only for checking the tiling on small images.
pub fn untiled(
    model: &mut Model,
    rgb: &[u8],
    height: usize,
    width: usize,
    options: PredictOptions,
) -> Result<Prediction, PredictError> {
    let (padded_height, padded_width) = (height + height % 2, width + width % 2);
    let whole = Rect { top: 0, left: 0, height: padded_height, width: padded_width };
    let plan = TilePlan {
        height,
        width,
        padded_height,
        padded_width,
        passes: vec![Pass {
            height: padded_height,
            width: padded_width,
            tiles: vec![Tile { window: whole, keep: whole }],
        }],
        bands: vec![tiles::Band {
            window_y: 0,
            window_height: padded_height,
            keep_y: 0,
            keep_height: padded_height,
            passes: 0..1,
        }],
    };
    check_request(model, rgb, &plan, options)?;
    let classes = model.classes();
    let worker = model.reference_worker(wanted(model, options))?;
    run_whole(&mut [worker], classes, rgb, &plan, options, |_| {})
}

/// Byte to [0, 1], as a table: the same value on every path.
fn unit_table() -> [f32; 256] {
    std::array::from_fn(|v| v as f32 / 255.0)
}

/// Runs every pass of `plan` and stitches the kept centres. The model's worker sessions take the passes in
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
    let classes = model.classes();
    let mut workers = model.workers_for(wanted(model, options), plan.passes.len())?;
    run_whole(&mut workers, classes, rgb, plan, options, progress)
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

/// Rows `first_row..` of the RGB image being predicted, held in memory (all of it, or one band).
#[derive(Clone, Copy)]
struct RowsView<'a> {
    rgb: &'a [u8],
    first_row: usize,
}

/// The stitched result for rows `first_row..first_row + rows` of the image, filled batch by batch.
struct Stitched {
    first_row: usize,
    rows: usize,
    /// The model's class count C.
    class_count: usize,
    classes: Vec<u8>,
    probabilities: Option<Vec<f32>>,
    logits: Option<Vec<f32>>,
}

impl Stitched {
    fn new(
        first_row: usize,
        rows: usize,
        width: usize,
        class_count: usize,
        options: PredictOptions,
    ) -> Stitched {
        let mut out = Stitched {
            first_row,
            rows: 0,
            class_count,
            classes: Vec::new(),
            probabilities: options.probabilities.then(Vec::new),
            logits: options.logits.then(Vec::new),
        };
        out.resize(rows, width);
        out
    }

    /// Probability values per pixel: the foreground's alone for two classes, every class's for more.
    fn probability_values(&self) -> usize {
        if self.class_count == 2 {
            1
        } else {
            self.class_count
        }
    }

    /// Holds `rows` rows of `width` pixels.
    fn resize(&mut self, rows: usize, width: usize) {
        let pixels = rows * width;
        self.rows = rows;
        self.classes.resize(pixels, 0);
        let (values, classes) = (self.probability_values(), self.class_count);
        if let Some(p) = self.probabilities.as_mut() {
            p.resize(values * pixels, 0.0);
        }
        if let Some(l) = self.logits.as_mut() {
            l.resize(classes * pixels, 0.0);
        }
    }
}

/// Predicts the whole image held in `rgb` with every batch of `plan`.
fn run_whole(
    workers: &mut [Worker<'_>],
    class_count: usize,
    rgb: &[u8],
    plan: &TilePlan,
    options: PredictOptions,
    mut progress: impl FnMut(usize),
) -> Result<Prediction, PredictError> {
    let mut out = Stitched::new(0, plan.height, plan.width, class_count, options);
    let view = RowsView { rgb, first_row: 0 };
    run_passes(workers, view, plan, &plan.passes, &mut out, &mut progress)?;
    Ok(Prediction {
        height: plan.height,
        width: plan.width,
        classes: out.classes,
        class_count,
        probabilities: out.probabilities,
        logits: out.logits,
        tiles: plan.tile_count(),
        forward_passes: plan.passes.len(),
    })
}

/// Runs `passes` (of `plan`) with one thread per worker and stitches their kept centres into `out`. The
/// workers take the passes in turn, each on its own thread with its own input buffer; this thread stitches
/// each finished batch (kept rectangles are disjoint, so the order does not matter and the result is the
/// same for any thread count) and calls `progress` with the tiles it completed.
fn run_passes(
    workers: &mut [Worker<'_>],
    view: RowsView<'_>,
    plan: &TilePlan,
    passes: &[Pass],
    out: &mut Stitched,
    progress: &mut impl FnMut(usize),
) -> Result<(), PredictError> {
    let unit = unit_table();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // A few finished batches may wait for stitching; more would only hold memory.
    let (sender, receiver) =
        mpsc::sync_channel::<Result<(usize, PassOutput), SessionError>>(2 * workers.len());
    let mut first_error: Option<PredictError> = None;
    let max_pixels = passes.iter().map(Pass::pixels).max().unwrap_or(0);
    std::thread::scope(|scope| {
        let threads: Vec<_> = workers
            .iter_mut()
            .take(passes.len()) // no idle threads for small plans
            .map(|worker| {
                let (sender, next, stop, unit) = (sender.clone(), &next, &stop, &unit);
                scope.spawn(move || {
                    let mut input: Vec<f32> = Vec::with_capacity(3 * max_pixels);
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = passes.get(index) else { break };
                        fill_batch(&mut input, batch, view, plan, unit);
                        let result = worker.run(&input, batch.tiles.len(), batch.height, batch.width);
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
                let batch = &passes[index];
                stitch_batch(out, &output, batch, plan)?;
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
        for thread in threads {
            if thread.join().is_err() && first_error.is_none() {
                first_error = Some(PredictError::WorkerPanicked);
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One band of a streamed prediction: rows `y..y + rows` of the image, with their input pixels.
#[derive(Debug, Clone, Copy)]
pub struct BandOutput<'a> {
    pub y: usize,
    pub rows: usize,
    pub width: usize,
    /// The input rows, RGB.
    pub rgb: &'a [u8],
    /// Class per pixel (the index of its class; two classes: 1 foreground).
    pub classes: &'a [u8],
    /// If asked for: the foreground probability per pixel for two classes; every class's, pixel-major
    /// (rows, width, C), for C > 2.
    pub probabilities: Option<&'a [f32]>,
}

/// What a streamed prediction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    pub height: usize,
    pub width: usize,
    pub tiles: usize,
    pub forward_passes: usize,
}

/// Predicts the image read from `source` (opened with [`Channels::Rgb`]) band by band: a reader thread
/// decodes the next band's rows while the worker sessions predict this one, and `on_band` receives each
/// band's kept rows, top to bottom. Memory depends on the image width and the tile size, not its height.
/// The bands are the whole-image plan's rows of windows, so the result equals [`tiled`] on the same
/// image, byte for byte.
pub fn streamed(
    model: &mut Model,
    source: &mut ImageSource,
    options: PredictOptions,
    progress: impl FnMut(usize),
    on_band: impl FnMut(&BandOutput<'_>) -> Result<(), PredictError>,
) -> Result<StreamSummary, PredictError> {
    let height = source.height();
    streamed_rows(model, source, 0..height, options, progress, on_band)
}

/// The bands of `plan` whose kept rows meet `rows`.
pub fn bands_for_rows(plan: &TilePlan, rows: std::ops::Range<usize>) -> &[tiles::Band] {
    let meets = |b: &tiles::Band| b.keep_y < rows.end && b.keep_y + b.keep_height > rows.start;
    let first = plan.bands.iter().position(meets).unwrap_or(plan.bands.len());
    let count = plan.bands[first..].iter().take_while(|b| meets(b)).count();
    &plan.bands[first..first + count]
}

/// [`streamed`] of only the bands of the whole-image plan whose kept rows meet `rows` (the source
/// at its first row): the rows above the first band's windows are skipped, not predicted, and `on_band`
/// gets those bands' kept rows, which cover `rows` and may reach beyond them. The values are those of
/// the whole image's prediction, since the bands are the whole-image plan's; `tiles` and
/// `forward_passes` count these bands'.
pub fn streamed_rows(
    model: &mut Model,
    source: &mut ImageSource,
    rows: std::ops::Range<usize>,
    options: PredictOptions,
    progress: impl FnMut(usize),
    on_band: impl FnMut(&BandOutput<'_>) -> Result<(), PredictError>,
) -> Result<StreamSummary, PredictError> {
    streamed_scoped(model, source, rows, options, None, progress, on_band)
}

/// Where a prediction is limited to (`--tissue`, `--roi`).
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    /// The pixels inside; the windows touching it are predicted, the others never computed.
    pub scope: &'a Scope,
    /// Read the rows of bands with no window predicted too (an overlay or error map shows them);
    /// otherwise they are skipped, not read.
    pub read_all_rows: bool,
}

/// [`streamed_rows`] limited to a scope: only the windows whose kept part touches `limit.scope`
/// are read and computed; every pixel inside the scope gets the full pass's class and probability, every
/// pixel outside it background (0) and probability 0 (`rgb` is empty for a band that was not read).
pub fn streamed_scoped(
    model: &mut Model,
    source: &mut ImageSource,
    rows: std::ops::Range<usize>,
    options: PredictOptions,
    limit: Option<Limit<'_>>,
    mut progress: impl FnMut(usize),
    mut on_band: impl FnMut(&BandOutput<'_>) -> Result<(), PredictError>,
) -> Result<StreamSummary, PredictError> {
    assert_eq!(source.channels(), Channels::Rgb, "streamed reads RGB");
    let (height, width) = (source.height(), source.width());
    let plan = model.tiling.plan(height, width, options.tile)?;
    let plan = match limit {
        Some(l) => l.scope.plan(&plan),
        None => plan,
    };
    let read_all_rows = limit.is_none_or(|l| l.read_all_rows);
    if options.logits && !model.has_logits() {
        return Err(PredictError::NoLogits);
    }
    let bands = bands_for_rows(&plan, rows);
    let passes = bands.first().zip(bands.last()).map_or(0..0, |(a, b)| a.passes.start..b.passes.end);
    let tile_count: usize = plan.passes[passes.clone()].iter().map(|p| p.tiles.len()).sum();
    let class_count = model.classes();
    let mut workers = model.workers_for(wanted(model, options), passes.len())?;
    let row_bytes = width * 3;
    let first_y = bands.first().map_or(0, |b| b.window_y);
    source.skip_rows(first_y)?;
    let (sender, receiver) = mpsc::sync_channel::<Result<Vec<u8>, SourceError>>(1);
    let plan = &plan;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            // The rows held start at image row `held_y`; consecutive bands overlap by their halos.
            let (mut held, mut held_y) = (Vec::<u8>::new(), first_y);
            for band in bands {
                if band.passes.is_empty() && !read_all_rows {
                    // Nothing of this band is computed: its rows are not read.
                    if sender.send(Ok(Vec::new())).is_err() {
                        return;
                    }
                    continue;
                }
                let end = (band.window_y + band.window_height).min(height);
                let next = held_y + held.len() / row_bytes;
                if band.window_y > next {
                    held.clear();
                    if let Err(e) = source.skip_rows(band.window_y - next) {
                        let _ = sender.send(Err(e));
                        return;
                    }
                } else {
                    held.drain(..(band.window_y - held_y) * row_bytes);
                }
                held_y = band.window_y;
                let have = held.len() / row_bytes;
                let read = source.read_rows(end - held_y - have, &mut held).map(|_| held.clone());
                let failed = read.is_err();
                if sender.send(read).is_err() || failed {
                    return;
                }
            }
        });
        let result: Result<(), PredictError> = (|| {
            let mut out = Stitched::new(0, 0, width, class_count, options);
            for (band, message) in bands.iter().zip(&receiver) {
                let rgb = message?;
                let first_kept = band.keep_y;
                let rows = (band.keep_y + band.keep_height).min(height).saturating_sub(first_kept);
                out.first_row = first_kept;
                out.resize(rows, width);
                if limit.is_some() {
                    // Windows left out write nothing: what a band before left must not show through.
                    out.classes.fill(0);
                    if let Some(p) = out.probabilities.as_mut() {
                        p.fill(0.0);
                    }
                    if let Some(l) = out.logits.as_mut() {
                        l.fill(0.0);
                    }
                }
                let passes = &plan.passes[band.passes.clone()];
                if !passes.is_empty() {
                    let view = RowsView { rgb: &rgb, first_row: band.window_y };
                    run_passes(&mut workers, view, plan, passes, &mut out, &mut progress)?;
                }
                if let Some(l) = limit {
                    // Row by row: the scope's pixels of one row at a time, not the band's.
                    for r in 0..rows {
                        let inside = l.scope.rows(first_kept + r, 1, width);
                        for (x, _) in inside.iter().enumerate().filter(|(_, &v)| v == 0) {
                            let i = r * width + x;
                            out.classes[i] = 0;
                            let (values, plane) = (out.probability_values(), rows * width);
                            if let Some(p) = out.probabilities.as_mut() {
                                p[i * values..(i + 1) * values].fill(0.0);
                            }
                            if let Some(lg) = out.logits.as_mut() {
                                for c in 0..class_count {
                                    lg[c * plane + i] = 0.0;
                                }
                            }
                        }
                    }
                }
                let kept = (first_kept - band.window_y) * row_bytes;
                on_band(&BandOutput {
                    y: first_kept,
                    rows,
                    width,
                    rgb: if rgb.is_empty() { &[] } else { &rgb[kept..kept + rows * row_bytes] },
                    classes: &out.classes,
                    probabilities: out.probabilities.as_deref(),
                })?;
            }
            Ok(())
        })();
        drop(receiver); // a reader waiting on a full channel after an error sees it closed
        let joined = reader.join();
        result?;
        joined.map_err(|_| PredictError::ReaderPanicked)
    })?;
    Ok(StreamSummary { height, width, tiles: tile_count, forward_passes: passes.len() })
}

/// Fills `input` with the (tiles, 3, h, w) windows of one batch.
fn fill_batch(input: &mut Vec<f32>, batch: &Pass, view: RowsView<'_>, plan: &TilePlan, unit: &[f32; 256]) {
    let (h, w) = (batch.height, batch.width);
    input.clear();
    input.resize(batch.tiles.len() * 3 * h * w, 0.0);
    for (tile, dst) in batch.tiles.iter().zip(input.chunks_exact_mut(3 * h * w)) {
        fill_window(dst, view, plan.height, plan.width, tile.window, unit);
    }
}

/// Copies the kept centre of every tile of one finished batch into the result.
fn stitch_batch(
    out: &mut Stitched,
    output: &PassOutput,
    batch: &Pass,
    plan: &TilePlan,
) -> Result<(), PredictError> {
    let (height, width) = (plan.height, plan.width);
    let pixels = out.rows * width;
    let (h, w) = (batch.height, batch.width);
    let c = out.class_count;
    let values = out.probability_values();
    let (logits_out, probabilities_out) = (output.logits()?, output.probabilities()?);
    let mut scratch = vec![0f32; c];
    for (i, tile) in batch.tiles.iter().enumerate() {
        let l = planes(logits_out, i, c, h * w);
        let p = planes(probabilities_out, i, c, h * w);
        let (win, keep) = (tile.window, tile.keep);
        // A broken model (NaN weights, zero std) gives NaN or infinite outputs, which argmax would silently
        // turn into background.
        for (name, planes) in [("logits", &l), ("probabilities", &p)] {
            for data in planes.iter().flatten() {
                if let Some(&value) = data.iter().find(|v| !v.is_finite()) {
                    return Err(PredictError::NonFinite { output: name, value, window: win });
                }
            }
        }
        // The class is decided by the logits when the model has them, else by its probabilities.
        let decide = l.as_deref().or(p.as_deref()).expect("a validated model has logits or probabilities");
        // Kept rows and columns inside the real (unpadded) image, and inside the rows `out` holds.
        debug_assert!(keep.top >= out.first_row);
        for y in keep.top..(keep.top + keep.height).min(height).min(out.first_row + out.rows) {
            for x in keep.left..(keep.left + keep.width).min(width) {
                let local = (y - win.top) * w + (x - win.left);
                let dst = (y - out.first_row) * width + x;
                // Argmax, the first class on ties (for two classes: foreground when b > a).
                let mut best = 0;
                for class in 1..c {
                    if decide[class][local] > decide[best][local] {
                        best = class;
                    }
                }
                out.classes[dst] = best as u8;
                if let Some(probs) = out.probabilities.as_mut() {
                    let cell = &mut probs[dst * values..(dst + 1) * values];
                    match (&p, &l) {
                        (Some(p), _) if c == 2 => cell[0] = p[1][local],
                        (Some(p), _) => cell.iter_mut().zip(p).for_each(|(v, p)| *v = p[local]),
                        (None, Some(l)) if c == 2 => {
                            cell[0] = 1.0 / (1.0 + (l[0][local] - l[1][local]).exp());
                        }
                        (None, Some(l)) => {
                            scratch.iter_mut().zip(l).for_each(|(v, l)| *v = l[local]);
                            softmax(&mut scratch);
                            cell.copy_from_slice(&scratch);
                        }
                        (None, None) => unreachable!("a validated model has logits or probabilities"),
                    }
                }
                if let (Some(all), Some(l)) = (out.logits.as_mut(), &l) {
                    for (class, plane) in l.iter().enumerate() {
                        all[class * pixels + dst] = plane[local];
                    }
                }
            }
        }
    }
    Ok(())
}

/// Softmax in place, shifted by the largest value so that no exponential overflows.
fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// The `classes` planes of tile `tile` in a (batch, classes, h, w) output whose planes hold `plane` values.
fn planes(data: Option<&[f32]>, tile: usize, classes: usize, plane: usize) -> Option<Vec<&[f32]>> {
    data.map(|d| (0..classes).map(|class| &d[(tile * classes + class) * plane..][..plane]).collect())
}

/// Writes one window of the image as (3, h, w) planes into `dst`; pixels beyond the image (the even padding)
/// are zero.
fn fill_window(
    dst: &mut [f32],
    view: RowsView<'_>,
    height: usize,
    width: usize,
    window: Rect,
    unit: &[f32; 256],
) {
    let (h, w) = (window.height, window.width);
    let plane = h * w;
    let inside = width.saturating_sub(window.left).min(w);
    for r in 0..h {
        let y = window.top + r;
        let row = r * w;
        if y >= height {
            for c in 0..3 {
                dst[c * plane + row..c * plane + row + w].fill(0.0);
            }
            continue;
        }
        let src_row = (y - view.first_row) * width;
        let src = &view.rgb[(src_row + window.left) * 3..(src_row + window.left + inside) * 3];
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
        fill_window(
            &mut dst,
            RowsView { rgb: &rgb, first_row: 0 },
            3,
            3,
            Rect { top: 0, left: 0, height: 4, width: 4 },
            &unit_table(),
        );
        let at = |c: usize, y: usize, x: usize| dst[c * 16 + y * 4 + x] * 255.0;
        assert_eq!(at(0, 0, 0), 0.0);
        assert_eq!(at(1, 0, 0), 1.0);
        assert_eq!(at(2, 2, 2), 26.0);
        assert_eq!(at(0, 1, 2), 15.0);
        assert!((0..3).all(|c| (0..4).all(|i| at(c, 3, i) == 0.0 && at(c, i, 3) == 0.0)));
        // A window starting inside the image.
        let mut dst = vec![f32::NAN; 3 * 4];
        fill_window(
            &mut dst,
            RowsView { rgb: &rgb, first_row: 0 },
            3,
            3,
            Rect { top: 2, left: 2, height: 2, width: 2 },
            &unit_table(),
        );
        assert_eq!(
            dst.iter().map(|v| (v * 255.0).round() as u8).collect::<Vec<_>>(),
            [24, 0, 0, 0, 25, 0, 0, 0, 26, 0, 0, 0]
        );
    }
}
