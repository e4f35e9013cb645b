use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use runner::io::{self, ImageFormat};
use runner::metrics::Metrics;
use runner::predict::{self, PredictOptions};
use runner::session::{ExecutionDevice, Model, ModelOptions};
use runner::tiling;

/// Predicts segmentation masks of whole images with an exported model.onnx, by exact overlapping tiles.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predicts the foreground mask of one image (PNG, JPEG or TIFF; any size).
    Predict(PredictArgs),
}

#[derive(clap::Args)]
struct PredictArgs {
    /// The exported model (`trainer export`).
    #[arg(long, default_value = "models/model.onnx")]
    model: PathBuf,
    /// The image to segment: PNG, JPEG or TIFF; RGB, RGBA (alpha dropped), gray, 8 or 16 bits.
    #[arg(long)]
    image: PathBuf,
    /// Where to write the predicted mask (foreground white), .png or .jpg.
    #[arg(long)]
    output: PathBuf,
    /// A reference mask (pixel > 127 is foreground): prints pixel accuracy, foreground IoU and Dice.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Also write the metrics as JSON here (needs --mask).
    #[arg(long, requires = "mask")]
    metrics_json: Option<PathBuf>,
    /// Also write the foreground probability, float32 (H,W), as a NumPy .npy file.
    #[arg(long)]
    probabilities: Option<PathBuf>,
    /// Also write the input with the foreground tinted, .png or .jpg.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Largest square tile side in pixels, halo included (even, 18 to 256).
    #[arg(long, default_value_t = tiling::DEFAULT_TILE)]
    tile: usize,
    /// Where the network runs: cuda needs a build with `--features cuda` and the onnxruntime-gpu library.
    #[arg(long, value_enum, default_value_t = ExecutionDevice::Cpu)]
    device: ExecutionDevice,
    /// Threads in all [default: all cores]: on the CPU, that many tiles are predicted at once, one thread
    /// each; with --device cuda, ONNX Runtime's intra-op threads.
    #[arg(long)]
    threads: Option<usize>,
    /// The ONNX Runtime library [default: $ORT_DYLIB_PATH, else .ort/lib/libonnxruntime.so.1.31.1 in the repo].
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let Cli { command: Command::Predict(args) } = Cli::parse();
    match run_predict(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes already quoted by the message above them.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn progress_bar(tiles: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(tiles as u64);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tiles [{elapsed_precise}<{eta_precise}]")
            .expect("valid template"),
    );
    bar
}

fn run_predict(args: PredictArgs) -> Result<()> {
    // Cheap checks first, so a typo fails before any work.
    for path in [Some(&args.output), args.overlay.as_ref()].into_iter().flatten() {
        ImageFormat::from_path(path)?;
    }
    tiling::plan(1, 1, args.tile, tiling::HALO, tiling::PIXEL_BUDGET).context("--tile")?;
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }

    let rgb = io::load_rgb(&args.image)?;
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let reference = match &args.mask {
        Some(path) => Some(io::load_mask(path, rgb.width(), rgb.height())?),
        None => None,
    };
    let options = ModelOptions { device: args.device, threads: args.threads, ort_lib: args.ort_lib.clone() };
    let mut model = Model::load(&args.model, &options)?;

    let plan = tiling::plan(height, width, args.tile, tiling::HALO, tiling::PIXEL_BUDGET)?;
    let bar = progress_bar(plan.tile_count(), args.quiet);
    let started = Instant::now();
    let predict_options =
        PredictOptions { tile: args.tile, probabilities: args.probabilities.is_some(), logits: false };
    let prediction =
        predict::run_plan(&mut model, rgb.as_raw(), &plan, predict_options, |n| bar.inc(n as u64))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Write everything first (each file atomically), then report.
    let mut written = vec![args.output.clone()];
    io::write_mask(&args.output, &prediction.classes, width as u32, height as u32)?;
    if let Some(path) = &args.probabilities {
        let probabilities = prediction.probabilities.as_deref().expect("asked for");
        io::write_npy(path, probabilities, height, width)?;
        written.push(path.clone());
    }
    let metrics = reference.as_ref().map(|reference| Metrics::compare(&prediction.classes, reference));
    if let (Some(metrics), Some(path)) = (&metrics, &args.metrics_json) {
        let json = metrics.to_json();
        io::write_atomic(path, |out| out.write_all(json.as_bytes()).map_err(|e| e.to_string()))?;
        written.push(path.clone());
    }
    if let Some(path) = &args.overlay {
        io::write_overlay(path, rgb, &prediction.classes)?;
        written.push(path.clone());
    }

    let peak = peak_memory_bytes().map(|b| format!(", peak memory {} MB", b / 1_000_000)).unwrap_or_default();
    println!(
        "predicted {width}x{height}: {} tiles in {} forward passes, {seconds:.2} s, {:.2} megapixels/s{peak}",
        prediction.tiles,
        prediction.forward_passes,
        (width * height) as f64 / 1e6 / seconds.max(1e-9)
    );
    if let Some(metrics) = &metrics {
        println!("{metrics}");
    }
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The process's peak resident memory (Linux: VmHWM in /proc/self/status), if known.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
