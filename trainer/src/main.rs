//! `trainer`: fit the segmentation network on image/mask pairs, and export it to ONNX.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use trainer::checkpoint::ValRecord;
use trainer::data::crops::AugmentPolicy;
use trainer::data::load::{self, PairSource};
use trainer::data::TrainingImage;
use trainer::ops::Kernels;
use trainer::optim::LrSchedule;
use trainer::train::{self, DeviceKind, Progress, TrainConfig};

/// Train the two-class segmentation network on RGB images and their binary masks (candle), and export it as
/// a self-contained ONNX file for the runner.
#[derive(Parser)]
#[command(version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit the network on random crops of the images and masks, validating on held-out data; writes
    /// checkpoint.safetensors, loss.csv and loss.png (with validation also val.csv and best.safetensors) into
    /// --out.
    Train(Box<TrainArgs>),
    /// Write a checkpoint as a self-describing ONNX file (opset 17): input `image` float32 (N,3,H,W) RGB in
    /// [0,1], outputs `logits` and `probabilities` (N,2,H,W); the input normalisation is inside the graph.
    /// Also as a bioimage.io package (--bioimageio) and a Triton model repository entry (--triton).
    Export(Box<ExportArgs>),
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
    /// RGB training image (PNG, JPEG, TIFF, ...; gray or RGBA are converted to RGB). Repeat for several
    /// images, each with its --mask, paired in order.
    #[arg(long, value_name = "IMAGE", required_unless_present = "data", conflicts_with = "data")]
    image: Vec<PathBuf>,
    /// Mask of the same size as its --image: pixels > 127 are foreground (class 1), all others background
    /// (class 0). It must hold exactly two values, one on each side of 127 (e.g. 0 and 255); use PNG, not JPEG.
    #[arg(long, value_name = "MASK", required_unless_present = "data", conflicts_with = "data")]
    mask: Vec<PathBuf>,
    /// Train on every image of DIR/images/ with the mask of the same file stem in DIR/masks/ (instead of
    /// --image/--mask). Crops are drawn across all images in proportion to their area.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Validation image, predicted whole (exact tiles) every --val-every iterations; repeat for several,
    /// each with its --val-mask.
    #[arg(long, value_name = "IMAGE")]
    val_image: Vec<PathBuf>,
    /// Mask of the --val-image of the same position.
    #[arg(long, value_name = "MASK")]
    val_mask: Vec<PathBuf>,
    /// Hold out the bottom F of each training image's rows for validation (e.g. 0.2): no training crop
    /// touches them.
    #[arg(long, value_name = "F", conflicts_with_all = ["val_image", "val_mask"])]
    val_fraction: Option<f64>,
    /// Validate (and save) every K iterations, and at the end. Default: a multiple of 50 that keeps
    /// validation under 5% of the training time.
    #[arg(long, value_name = "K")]
    val_every: Option<usize>,
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
    /// Learning-rate schedule: `constant` keeps --lr, `cosine` decays it to 0 over --iterations. The default
    /// gave the best held-out IoU in the README's study.
    #[arg(long, value_enum, default_value_t = LrSchedule::Constant)]
    lr_schedule: LrSchedule,
    /// Seed of the weight initialisation and of the crops: the same seed on the same machine gives the same
    /// loss curve.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Random augmentation of the crops: `none`, `flips` (keeps the orientation of oriented structures),
    /// `all` (flips and 90-degree rotations). The default gave the best held-out IoU in the README's study;
    /// try `all` on isotropic data with few images, and compare on held-out data (--val-fraction).
    #[arg(long, value_enum, default_value_t = AugmentPolicy::None)]
    augment: AugmentPolicy,
    /// Turn off augmentation (the same as `--augment none`, the default).
    #[arg(long, conflicts_with = "augment")]
    no_augment: bool,
    /// Write a checkpoint every K iterations (and always at the end); 0 writes only at the end.
    #[arg(long, default_value_t = 250, value_name = "K")]
    checkpoint_every: usize,
    /// Output directory for checkpoint.safetensors (the last), loss.csv, loss.png, and with validation
    /// val.csv and best.safetensors (the best validation IoU). Nothing is written before the first
    /// checkpoint, so a run that fails early leaves an earlier run's files as they were.
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Where to train. `cuda` needs a build with `--features cuda` and a GPU; it never falls back to the CPU.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
    /// Continue the run of this checkpoint (weights, optimizer state, history and iteration count) up to
    /// --iterations. Only the same run: a checkpoint whose data or settings (--batch, --crop, --lr,
    /// --lr-schedule, --seed, --augment, --val-fraction) differ is refused, naming what differs.
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,
    /// Start a new run from the weights and input normalisation of this checkpoint (fine-tuning on new data
    /// or settings): a fresh optimizer, history and best model; the summary records where it started.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Use candle's own ops instead of the fused CPU kernels (much slower): for checking that both train the
    /// same model.
    #[arg(long)]
    reference_ops: bool,
}

/// The progress bar: iteration, current and smoothed loss, last validation IoU, iterations per second.
struct Bar {
    bar: Option<ProgressBar>,
    last_val: Option<ValRecord>,
}

impl Progress for Bar {
    fn start(&mut self, first: usize, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(first as u64);
            bar.reset_eta();
        }
    }
    fn step(&mut self, iteration: usize, loss: f32, smoothed: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(iteration as u64);
            let val = match self.last_val {
                Some(v) => format!(" | val {} @{}", v.score_text(), v.iteration),
                None => String::new(),
            };
            bar.set_message(format!("loss {loss:.4} (smoothed {smoothed:.4}){val}"));
        }
    }
    fn validated(&mut self, record: &ValRecord) {
        self.last_val = Some(*record);
    }
    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Loads every pair, naming the flag and file of the first bad one.
fn load_pairs(sources: &[PairSource]) -> Result<Vec<TrainingImage>, load::DataError> {
    sources.iter().map(load::load_pair).collect()
}

fn run_train(args: TrainArgs) -> anyhow::Result<String> {
    let device = train::select_device(args.device)?;
    let train_sources = match &args.data {
        Some(dir) => PairSource::from_folder(dir)?,
        None => PairSource::from_flags(&args.image, &args.mask, "--image", "--mask")?,
    };
    let val_sources = PairSource::from_flags(&args.val_image, &args.val_mask, "--val-image", "--val-mask")?;
    let inputs = train_sources
        .iter()
        .chain(&val_sources)
        .flat_map(|p| [(p.image_flag.clone(), p.image.clone()), (p.mask_flag.clone(), p.mask.clone())])
        .collect();
    let config = TrainConfig {
        iterations: args.iterations,
        batch: args.batch,
        crop: args.crop,
        lr: args.lr,
        schedule: args.lr_schedule,
        seed: args.seed,
        augment: if args.no_augment { AugmentPolicy::None } else { args.augment },
        checkpoint_every: args.checkpoint_every,
        val_every: args.val_every,
        val_fraction: args.val_fraction,
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        init_from: args.init_from.clone(),
        inputs,
        kernels: if args.reference_ops { Kernels::Reference } else { Kernels::Fast },
    };
    // Settings and output paths are checked before any image is decoded.
    config.check()?;
    trainer::outputs::check_outputs_are_not_inputs(
        &trainer::outputs::OutputPaths::new(&args.out),
        &config.inputs,
    )?;
    let images = load_pairs(&train_sources)?;
    let val_images = load_pairs(&val_sources)?;
    let bar = (!args.quiet).then(|| {
        ProgressBar::new(args.iterations as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} it | {msg} | {per_sec} | eta {eta}",
            )
            .expect("valid template"),
        )
    });
    let report = train::train(&config, &images, &val_images, &device, &mut Bar { bar, last_val: None })?;
    let s = &report.summary;
    let mut files = vec!["checkpoint.safetensors", "loss.csv", "loss.png"];
    let validation = match report.best {
        Some(best) => {
            files.extend(["val.csv", "best.safetensors"]);
            format!(
                "; best validation {} at iteration {} (best.safetensors), validating every {} iterations took \
                 {:.1}% of the time",
                best.score_text(),
                best.iteration,
                report.val_every.unwrap_or(0),
                100.0 * report.validation_seconds / report.seconds.max(1e-9)
            )
        }
        None => String::new(),
    };
    Ok(format!(
        "trained {} iterations of {} x {}^2 crops on {} image(s) in {:.1} s ({:.3} s/it); final loss {:.4}{validation}; \
         wrote {}",
        s.iterations,
        s.batch,
        s.crop,
        images.len(),
        report.seconds,
        report.seconds / report.iterations_run.max(1) as f64,
        s.final_loss,
        files.iter().map(|f| args.out.join(f).display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Prints the closing line. A closed stdout (`trainer ... | head -0`) is a quiet exit, any other stdout error
/// one line on stderr: never a panic.
fn print_result(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("cannot write to stdout: {}", imaging::files::io_reason(&e))),
        Ok(()) => Ok(()),
    }
}

/// Errors are one line: causes joined by ": ", any line break inside a cause flattened.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // --help into a closed pipe is no error.
                let _ = e.print();
                std::process::exit(0);
            }
            // clap's first line says what is wrong; its usage lines would break the one-line promise.
            let text = e.to_string();
            eprintln!(
                "{} (see --help)",
                text.lines().next().unwrap_or("error: invalid arguments").trim_end()
            );
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Train(args) => run_train(*args).context("training failed"),
        Command::Export(args) => run_export(*args).context("export failed"),
    };
    let outcome = result.map_err(|e| imaging::report::error_line(&e)).and_then(|line| print_result(&line));
    if let Err(e) = outcome {
        eprintln!("error: {}", one_line(&e));
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
fn run_export(args: ExportArgs) -> anyhow::Result<String> {
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
    // Every file the export writes, with the flag it comes from, so a refusal names the flag to change.
    let mut targets: Vec<(&str, PathBuf)> = output.iter().map(|p| ("--output", p.clone())).collect();
    targets.extend(args.bioimageio.iter().map(|p| ("--bioimageio", p.clone())));
    if let Some(dir) = &args.triton {
        let entry = dir.join(&args.package.name);
        for file in [entry.join(triton::CONFIG_FILE), entry.join(triton::VERSION).join(triton::MODEL_FILE)] {
            targets.push(("--triton", file));
        }
    }
    for (flag, target) in &targets {
        if export::ensure_not_checkpoint(&args.checkpoint, target).is_err() {
            anyhow::bail!(
                "{flag} {} is the same file as --checkpoint {}: it is the checkpoint being exported; choose \
                 another {flag}",
                target.display(),
                args.checkpoint.display()
            );
        }
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
    let mut written = Vec::new();
    if let Some(output) = &output {
        written.push(export::write_onnx(output, &onnx, checkpoint.summary.clone())?.to_string());
    }
    if let (Some(path), Some(files)) = (&args.bioimageio, &package) {
        written.push(bioimageio::write_package(path, files, &args.checkpoint)?.to_string());
    }
    if let Some(dir) = &args.triton {
        written.push(
            triton::write_repository(dir, &args.package.name, &signature, &onnx, &args.checkpoint)?
                .to_string(),
        );
    }
    Ok(written.join("\n"))
}
