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
    /// Also as a bioimage.io package (--bioimageio) and a Triton model repository entry (--triton).
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Checkpoint written by `trainer train`.
    #[arg(long, default_value = "models/checkpoint.safetensors")]
    checkpoint: PathBuf,
    /// Where to write the ONNX file (atomically: a failed export leaves an existing file as it was)
    /// [default: models/model.onnx, unless --bioimageio or --triton is given].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also (or instead) write a bioimage.io model package (a .zip for ilastik, deepImageJ, QuPath,
    /// bioimageio.core): rdf.yaml, the ONNX weights, test tensors, a cover and a README.
    #[arg(long, value_name = "PATH.zip")]
    bioimageio: Option<PathBuf>,
    /// Also (or instead) write a Triton Inference Server model repository entry: DIR/<name>/config.pbtxt
    /// and DIR/<name>/1/model.onnx.
    #[arg(long, value_name = "DIR")]
    triton: Option<PathBuf>,
    #[command(flatten)]
    package: PackageArgs,
}

/// How the packages (--bioimageio, --triton) describe the model.
#[derive(clap::Args)]
#[command(next_help_heading = "Package description (--bioimageio, --triton)")]
struct PackageArgs {
    /// Model name: the bioimage.io name and the Triton model directory (5 to 64 letters, digits, `_`, `-`).
    #[arg(long, default_value = "segmenter")]
    name: String,
    /// One-paragraph description [default: the network and its training, from the checkpoint].
    #[arg(long)]
    description: Option<String>,
    /// An author of the package (repeat for several).
    #[arg(long = "author", value_name = "NAME", default_value = "segmenter contributors")]
    authors: Vec<String>,
    /// SPDX licence identifier of the package.
    #[arg(long, default_value = "MIT")]
    license: String,
    /// A tag besides the default ones (segmentation, semantic-segmentation, 2d, rgb, onnx); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Image whose centre crop (at most 128x128) becomes the package's test input; use the training image.
    #[arg(long, default_value = "data/conifer/image.png")]
    test_image: PathBuf,
    /// Scores to report in the package README's Validation section: the JSON of `runner predict --mask MASK
    /// --metrics-json M.json` on the image named by --validation-image.
    #[arg(long, value_name = "M.json")]
    validation_metrics: Option<PathBuf>,
    /// The image those scores were measured on [default: --test-image].
    #[arg(long, requires = "validation_metrics")]
    validation_image: Option<PathBuf>,
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
        Command::Export(args) => run_export(args).context("export failed"),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The default tags of a bioimage.io package.
const DEFAULT_TAGS: [&str; 5] = ["segmentation", "semantic-segmentation", "2d", "rgb", "onnx"];

/// The files of the bioimage.io package, in memory.
fn build_bioimageio(
    p: &PackageArgs,
    summary: &trainer::checkpoint::TrainingSummary,
    model: &candle_onnx::onnx::ModelProto,
    onnx: &[u8],
    signature: &trainer::export::Signature,
) -> anyhow::Result<trainer::bioimageio::PackageFiles> {
    use trainer::bioimageio::{self, Description, PackageError, Validation, ValidationMetrics};
    let mut tags: Vec<String> = DEFAULT_TAGS.iter().map(|t| t.to_string()).collect();
    tags.extend(p.tags.iter().filter(|t| !tags.contains(t)).cloned().collect::<Vec<_>>());
    let description = Description {
        name: p.name.clone(),
        description: p.description.clone().unwrap_or_else(|| bioimageio::default_description(summary)),
        authors: p.authors.clone(),
        license: p.license.clone(),
        tags,
    };
    let test_image = image::open(&p.test_image)
        .map_err(|e| PackageError::TestImage { path: p.test_image.clone(), reason: e.to_string() })?
        .to_rgb8();
    let validation = match &p.validation_metrics {
        Some(metrics) => {
            let image = p.validation_image.as_ref().unwrap_or(&p.test_image);
            let image = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Some(Validation { image, metrics: ValidationMetrics::load(metrics)? })
        }
        None => None,
    };
    let files = bioimageio::build_package(
        model,
        onnx,
        signature,
        summary,
        &description,
        &test_image,
        validation.as_ref(),
    )?;
    Ok(files)
}

/// `trainer export`: the ONNX file, a bioimage.io package and a Triton repository entry from one checkpoint.
fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    use trainer::{bioimageio, export, triton};
    let output = match (&args.output, &args.bioimageio, &args.triton) {
        (None, None, None) => Some(PathBuf::from("models/model.onnx")),
        (output, ..) => output.clone(),
    };
    // Check names before any file is written, so that a bad flag leaves everything as it was.
    if args.triton.is_some() {
        triton::check_model_name(&args.package.name)?;
    }
    if args.bioimageio.is_some() {
        bioimageio::check_name(&args.package.name)?;
    }
    let mut targets: Vec<PathBuf> = output.iter().chain(&args.bioimageio).cloned().collect();
    if let Some(dir) = &args.triton {
        let entry = dir.join(&args.package.name);
        targets
            .extend([entry.join(triton::CONFIG_FILE), entry.join(triton::VERSION).join(triton::MODEL_FILE)]);
    }
    for target in &targets {
        export::ensure_not_checkpoint(&args.checkpoint, target)?;
    }
    let checkpoint = export::load_checkpoint(&args.checkpoint)?;
    let model = export::build_model(&checkpoint.net, &checkpoint.summary)?;
    let signature = export::signature(&model);
    let onnx = prost::Message::encode_to_vec(&model);
    // Everything is built in memory before the first file is written: a bad test image or metrics file
    // leaves every existing output as it was.
    let package = match &args.bioimageio {
        Some(_) => Some(build_bioimageio(&args.package, &checkpoint.summary, &model, &onnx, &signature)?),
        None => None,
    };
    if let Some(output) = &output {
        println!("{}", export::write_onnx(output, &onnx, checkpoint.summary.clone())?);
    }
    if let (Some(path), Some(files)) = (&args.bioimageio, &package) {
        println!("{}", bioimageio::write_package(path, files, &args.checkpoint)?);
    }
    if let Some(dir) = &args.triton {
        println!(
            "{}",
            triton::write_repository(dir, &args.package.name, &signature, &onnx, &args.checkpoint)?
        );
    }
    Ok(())
}
