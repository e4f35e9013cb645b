//! `trainer`: fit the segmentation network on one image and its mask, and export it to ONNX.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use trainer::data::AugmentPolicy;
use trainer::train::{self, DeviceKind, LrSchedule, Progress, TrainConfig};

/// Train the two-class segmentation network on one RGB image and its binary mask (candle), and export it as
/// a self-contained ONNX file for the runner.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit the network on random crops of IMAGE and MASK; writes checkpoint.safetensors, loss.csv and
    /// loss.png into --out.
    Train(TrainArgs),
    /// Write a checkpoint as a self-describing ONNX file (opset 17): input `image` float32 (N,3,H,W) RGB in
    /// [0,1], outputs `logits` and `probabilities` (N,2,H,W); the input normalisation is inside the graph.
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Checkpoint written by `trainer train`.
    #[arg(long, default_value = "models/checkpoint.safetensors")]
    checkpoint: PathBuf,
    /// Where to write the ONNX file (atomically: a failed export leaves an existing file as it was).
    #[arg(long, default_value = "models/model.onnx")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// RGB training image (PNG, JPEG, TIFF, ...; gray or RGBA are converted to RGB).
    #[arg(long)]
    image: PathBuf,
    /// Mask of the same size: pixels > 127 are foreground (class 1), all others background (class 0). It must
    /// hold exactly two values, one on each side of 127 (e.g. 0 and 255); use PNG, not JPEG.
    #[arg(long)]
    mask: PathBuf,
    /// Training iterations (optimizer steps) in total, counting those of a resumed checkpoint.
    #[arg(long, default_value_t = 3000)]
    iterations: usize,
    /// Crops per step. batch x crop x crop may not exceed 65,536 pixels (the target GPU's limit).
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Side of the square random crops, even. Shrunk (with a note) to the largest even size that fits a
    /// smaller image.
    #[arg(long, default_value_t = 128)]
    crop: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning-rate schedule: `cosine` decays --lr to 0 over --iterations, `constant` keeps it.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    lr_schedule: LrSchedule,
    /// Seed of the weight initialisation and of the crops: the same seed on the same machine gives the same
    /// loss curve.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Random augmentation of the crops: `all` (flips and 90-degree rotations), `flips` (keeps the
    /// orientation of oriented structures), `none`.
    #[arg(long, value_enum, default_value_t = AugmentPolicy::All)]
    augment: AugmentPolicy,
    /// Turn off augmentation (the same as `--augment none`).
    #[arg(long, conflicts_with = "augment")]
    no_augment: bool,
    /// Write a checkpoint every K iterations (and always at the end); 0 writes only at the end.
    #[arg(long, default_value_t = 250, value_name = "K")]
    checkpoint_every: usize,
    /// Output directory for checkpoint.safetensors, loss.csv and loss.png.
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Where to train. `cuda` needs a build with `--features cuda` and a GPU; it never falls back to the CPU.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Continue from this checkpoint (weights, optimizer state and iteration count) up to --iterations.
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Use candle's own ops instead of the fused CPU kernels (about 10x slower): for checking that both
    /// train the same model.
    #[arg(long)]
    reference_ops: bool,
}

/// The progress bar: iteration, current and smoothed loss, iterations per second.
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, first: usize, total: usize) {
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
            bar.set_position(first as u64);
            bar.reset_eta();
        }
    }
    fn step(&mut self, iteration: usize, loss: f32, smoothed: f32) {
        if let Some(bar) = &self.0 {
            bar.set_position(iteration as u64);
            bar.set_message(format!("loss {loss:.4} (smoothed {smoothed:.4})"));
        }
    }
    fn message(&mut self, text: &str) {
        match &self.0 {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let device = train::select_device(args.device)?;
    trainer::ops::set_reference_ops(args.reference_ops);
    let image = trainer::data::load_training_image(&args.image, &args.mask)?;
    let name = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let config = TrainConfig {
        iterations: args.iterations,
        batch: args.batch,
        crop: args.crop,
        lr: args.lr,
        schedule: args.lr_schedule,
        seed: args.seed,
        augment: if args.no_augment { AugmentPolicy::None } else { args.augment },
        checkpoint_every: args.checkpoint_every,
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        image_name: name(&args.image),
        mask_name: name(&args.mask),
    };
    let bar = (!args.quiet).then(|| {
        ProgressBar::new(args.iterations as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} it | {msg} | {per_sec} | eta {eta}",
            )
            .expect("valid template"),
        )
    });
    let report = train::train(&config, &image, &device, &mut Bar(bar))?;
    let s = &report.summary;
    println!(
        "trained {} iterations of {} x {}^2 crops in {:.1} s ({:.3} s/it); final loss {:.4}; wrote {}",
        s.iterations,
        s.batch,
        s.crop,
        report.seconds,
        report.seconds / report.iterations_run.max(1) as f64,
        s.final_loss,
        ["checkpoint.safetensors", "loss.csv", "loss.png"]
            .map(|f| args.out.join(f).display().to_string())
            .join(", ")
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => run_train(args).context("training failed"),
        Command::Export(args) => trainer::export::export_checkpoint(&args.checkpoint, &args.output)
            .map(|report| println!("{report}"))
            .context("export failed"),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
