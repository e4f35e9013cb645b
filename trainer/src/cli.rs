//! The `trainer` command line: the arguments (their doc comments are the `--help`), the progress bar and
//! the closing line; training and export are library calls ([`crate::train::train`],
//! [`crate::export::run`]) that the tests make directly.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::checkpoint::ValRecord;
use crate::data::annotated::{self, AnnotationRule};
use crate::data::crops::AugmentPolicy;
use crate::data::load::{self, PairSource};
use crate::data::TrainingImage;
use crate::export::{ExportRequest, PackageOptions, TritonTarget};
use crate::ops::Kernels;
use crate::optim::LrSchedule;
use crate::train::{self, DeviceKind, Progress, TrainConfig};
use anyhow::Context;
use clap::{Parser, Subcommand};
use imaging::annotations::labels::Unannotated;
use imaging::labels::{LabelFormat, LabelRule};
use imaging::report::{self, Stdout};
use indicatif::{ProgressBar, ProgressStyle};

/// Train the two-class segmentation network on RGB images and their binary masks (candle), and export it as
/// a self-contained ONNX file for the runner.
#[derive(Parser)]
#[command(name = "trainer", version = crate::VERSION, about, args_override_self = true)]
pub struct Cli {
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
    /// bioimageio.core): rdf.yaml, the ONNX weights, test tensors, a cover and a README. The path must end in
    /// `.zip` (bioimage.io tools know a package by it); any other path is refused.
    #[arg(long, value_name = "PATH.zip")]
    bioimageio: Option<PathBuf>,
    /// Also (or instead) write a Triton Inference Server model repository entry: DIR/<name>/config.pbtxt
    /// and DIR/<name>/<version>/model.onnx. Triton serves the highest version by default, so the export
    /// writes the next version after those already in DIR/<name> (1 in a new folder) and prints which.
    #[arg(long, value_name = "DIR")]
    triton: Option<PathBuf>,
    /// The Triton version to write instead of the next one; replaces that version if it exists. A version
    /// below one already in DIR/<name> is refused: Triton would not serve it.
    #[arg(long, value_name = "N", requires = "triton", value_parser = clap::value_parser!(u64).range(1..))]
    triton_version: Option<u64>,
    #[command(flatten)]
    package: PackageArgs,
}

/// How the packages (--bioimageio, --triton) describe the model.
#[derive(clap::Args)]
#[command(next_help_heading = "Package description (--bioimageio, --triton)")]
struct PackageArgs {
    /// Model name: the bioimage.io name and the Triton model directory, one rule for both (5 to 64 ASCII
    /// letters, digits, `_`, `-`).
    #[arg(long, default_value = PackageOptions::DEFAULT_NAME)]
    name: String,
    /// One-paragraph description [default: the network and its training, from the checkpoint].
    #[arg(long)]
    description: Option<String>,
    /// An author of the package (repeat for several).
    #[arg(long = "author", value_name = "NAME", default_value = PackageOptions::DEFAULT_AUTHOR)]
    authors: Vec<String>,
    /// SPDX licence identifier of the package, spelled as in the SPDX License List (e.g. MIT, Apache-2.0,
    /// BSD-3-Clause, CC-BY-4.0); bioimage.io requires one, so anything else is refused.
    #[arg(long, default_value = PackageOptions::DEFAULT_LICENSE)]
    license: String,
    /// A tag besides the default ones (segmentation, semantic-segmentation, 2d, rgb, onnx); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Image whose centre crop (at most 128x128) becomes the package's test input; use the training image.
    #[arg(long, default_value = PackageOptions::DEFAULT_TEST_IMAGE)]
    test_image: PathBuf,
    /// Scores to report in the package README's Validation section: the JSON of `runner predict --mask MASK
    /// --metrics-json M.json` on the image named by --validation-image.
    #[arg(long, value_name = "M.json")]
    validation_metrics: Option<PathBuf>,
    /// The image those scores were measured on [default: --test-image].
    #[arg(long, requires = "validation_metrics")]
    validation_image: Option<PathBuf>,
}

impl From<ExportArgs> for ExportRequest {
    fn from(args: ExportArgs) -> ExportRequest {
        let p = args.package;
        ExportRequest {
            checkpoint: args.checkpoint,
            output: args.output,
            bioimageio: args.bioimageio,
            triton: args.triton.map(|dir| TritonTarget { dir, version: args.triton_version }),
            package: PackageOptions {
                name: p.name,
                description: p.description,
                authors: p.authors,
                license: p.license,
                tags: p.tags,
                test_image: p.test_image,
                validation_metrics: p.validation_metrics,
                validation_image: p.validation_image,
            },
        }
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    /// RGB training image (PNG, JPEG, TIFF, ...; gray or RGBA are converted to RGB). Repeat for several
    /// images, each with its --mask, paired in order.
    #[arg(long, value_name = "IMAGE", required_unless_present = "data", conflicts_with = "data")]
    image: Vec<PathBuf>,
    /// Mask of the same size as its --image: pixels > 127 are foreground (class 1), all others background
    /// (class 0). It must hold exactly two values, one on each side of 127 (e.g. 0 and 255), besides
    /// --ignore-value; use PNG, not JPEG. See --label-format for ilastik's label images.
    #[arg(long, value_name = "MASK", required_unless_present_any = ["data", "annotations"], conflicts_with = "data")]
    mask: Vec<PathBuf>,
    /// QuPath annotations of the --image of the same position, in place of --mask: a GeoJSON
    /// FeatureCollection (File > Export objects as GeoJSON) of Polygon/MultiPolygon features in level-0 pixel
    /// coordinates. Only the annotated areas are read (at --level), so the image may be a whole slide in any
    /// format the runner reads. A pixel whose centre lies inside an annotation of a --foreground-class is
    /// foreground, inside only other annotations background (foreground wins where they overlap), in none
    /// unlabelled (see --unannotated).
    #[arg(long, value_name = "FILE.geojson", conflicts_with_all = ["mask", "data"])]
    annotations: Vec<PathBuf>,
    /// A class name (`properties.classification.name`, exact) whose annotations are foreground; repeat for
    /// several. Annotations of every other class, and unclassified ones, are background.
    #[arg(long, value_name = "NAME", requires = "annotations")]
    foreground_class: Vec<String>,
    /// What a pixel in no annotation is: `unlabelled` (the loss skips it) or `background`.
    #[arg(long, value_enum, default_value_t = UnannotatedArg::Unlabelled, requires = "annotations")]
    unannotated: UnannotatedArg,
    /// The resolution level of the --image read with --annotations (0 is full resolution; `runner info`
    /// lists a slide's levels). Annotation coordinates stay level-0 pixels, as QuPath writes them; predict
    /// with `runner predict --level` at the same level.
    #[arg(long, default_value_t = 0, requires = "annotations")]
    level: usize,
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
    /// Mask pixels equal to V are unlabelled (partial labels): the loss skips them, no crop is drawn where
    /// too few pixels are labelled, and validation does not score them. Checked before the > 127 rule: with
    /// V = 128, 128 is unlabelled and every other value above 127 foreground. Applies to every mask,
    /// validation masks included.
    #[arg(long, value_name = "V")]
    ignore_value: Option<u8>,
    /// How mask values become labels: `binary` (> 127 foreground, the rest background, --ignore-value
    /// unlabelled) or `ilastik` (ilastik's exported label images: 0 unlabelled, 1 background, 2
    /// foreground). Applies to every mask, validation masks included.
    #[arg(long, value_enum, default_value_t = LabelFormatArg::Binary)]
    label_format: LabelFormatArg,
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

/// `--unannotated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum UnannotatedArg {
    /// Left out of the loss and of validation scores.
    Unlabelled,
    /// Background.
    Background,
}

/// `--label-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LabelFormatArg {
    /// Above 127 foreground, the rest background (--ignore-value: unlabelled).
    Binary,
    /// 0 unlabelled, 1 background, 2 foreground.
    Ilastik,
}

impl TrainArgs {
    /// The mask rule of --label-format and --ignore-value.
    fn label_rule(&self) -> anyhow::Result<LabelRule> {
        let format = match self.label_format {
            LabelFormatArg::Binary => LabelFormat::Binary,
            LabelFormatArg::Ilastik if self.ignore_value.is_some() => anyhow::bail!(
                "--ignore-value applies to binary masks; an ilastik label image marks unlabelled pixels \
                 with 0 already: drop --ignore-value"
            ),
            LabelFormatArg::Ilastik => LabelFormat::Ilastik,
        };
        Ok(LabelRule { format, ignore: self.ignore_value })
    }
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
fn load_pairs(sources: &[PairSource], rule: LabelRule) -> Result<Vec<TrainingImage>, load::DataError> {
    sources.iter().map(|s| load::load_pair(s, rule)).collect()
}

fn run_train(args: TrainArgs) -> anyhow::Result<String> {
    let device = train::select_device(args.device)?;
    let annotated_sources = annotated::AnnotatedSource::from_flags(&args.image, &args.annotations)?;
    let train_sources = match &args.data {
        Some(dir) => PairSource::from_folder(dir)?,
        None if !annotated_sources.is_empty() => Vec::new(),
        None => PairSource::from_flags(&args.image, &args.mask, "--image", "--mask")?,
    };
    let val_sources = PairSource::from_flags(&args.val_image, &args.val_mask, "--val-image", "--val-mask")?;
    let inputs = train_sources
        .iter()
        .chain(&val_sources)
        .flat_map(|p| [(p.image_flag.clone(), p.image.clone()), (p.mask_flag.clone(), p.mask.clone())])
        .chain(annotated_sources.iter().flat_map(|a| {
            [(a.image_flag.clone(), a.image.clone()), (a.annotations_flag.clone(), a.annotations.clone())]
        }))
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
    let rule = args.label_rule()?;
    crate::outputs::check_outputs_are_not_inputs(
        &crate::outputs::OutputPaths::new(&args.out),
        &config.inputs,
    )?;
    let mut images = load_pairs(&train_sources, rule)?;
    let annotation_rule = AnnotationRule {
        foreground_classes: args.foreground_class.clone(),
        unannotated: match args.unannotated {
            UnannotatedArg::Unlabelled => Unannotated::Unlabelled,
            UnannotatedArg::Background => Unannotated::Background,
        },
        level: args.level,
    };
    for source in &annotated_sources {
        images.extend(annotated::load_annotated(source, &annotation_rule, args.crop)?);
    }
    let val_images = load_pairs(&val_sources, rule)?;
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

/// Parses the arguments and runs; every error is one line on standard error, a closed standard output is a
/// quiet end.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them (into a closed pipe too); a usage error is one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", report::usage_line(&e.render().to_string(), &report::invoked_command("trainer")));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(args) => run_train(*args).context("training failed"),
        Command::Export(args) => {
            crate::export::run(&ExportRequest::from(*args)).map(|r| r.to_string()).context("export failed")
        }
    };
    match result.and_then(|line| Ok(Stdout::new().line(line)?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if report::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
