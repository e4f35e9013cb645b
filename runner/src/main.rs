use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use runner::batch::{self, ImageJob, MetricsTable, Shard};
use runner::outputs::OutputSet;
use runner::pipeline::{self, Destination, Destinations, ImageReport, OpenedImage};
use runner::report::{self, Stdout};
use runner::session::{ExecutionDevice, Model, ModelOptions};
use runner::sink::{ImageFormat, ProbabilityFormat};
use runner::tiling;

/// Predicts segmentation masks of whole images with an exported model.onnx, by exact overlapping tiles.
/// Images of any size are streamed band by band, so memory depends on the image width, not its height.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predicts the foreground mask of one image (--image, --output) or of many (--input-dir or several
    /// --image, with --output-dir). PNG, JPEG or TIFF/BigTIFF, recognised by content; any size.
    Predict(PredictArgs),
}

/// Format of the masks written with --output-dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MaskFormat {
    Png,
    Tif,
    Jpg,
}

impl MaskFormat {
    fn extension(self) -> &'static str {
        match self {
            MaskFormat::Png => "png",
            MaskFormat::Tif => "tif",
            MaskFormat::Jpg => "jpg",
        }
    }
}

#[derive(clap::Args)]
struct PredictArgs {
    /// The exported model (`trainer export`).
    #[arg(long, default_value = "models/model.onnx")]
    model: PathBuf,
    /// An image to segment: PNG, JPEG or TIFF/BigTIFF; RGB, RGBA (alpha dropped), gray, 8 or 16 bits, or
    /// float32 gray TIFF. Give it several times (with --output-dir) to predict several images.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Predict every PNG, JPEG and TIFF image in this folder (recognised by content) into --output-dir.
    #[arg(long, requires = "output_dir")]
    input_dir: Option<PathBuf>,
    /// With --input-dir: only the file names matching this glob, e.g. "*.tif".
    #[arg(long, requires = "input_dir")]
    pattern: Option<String>,
    /// Where to write the predicted mask of the one --image (foreground white): .png, .tif/.tiff or .jpg.
    #[arg(long, conflicts_with = "output_dir")]
    output: Option<PathBuf>,
    /// Folder for the outputs of many images: <stem>.<mask-format>, and with the flags below
    /// <stem>_probabilities.npy, <stem>_overlay.png, <stem>_errors.png; metrics.csv with --mask-dir.
    /// Created if missing.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// With --output-dir: format of the masks.
    #[arg(long, value_enum, default_value_t = MaskFormat::Png, requires = "output_dir")]
    mask_format: MaskFormat,
    /// A reference mask of the one --image (pixel > 127 is foreground): prints pixel accuracy, foreground
    /// IoU and Dice.
    #[arg(long, conflicts_with = "output_dir")]
    mask: Option<PathBuf>,
    /// With --output-dir: folder of reference masks, matched to images by file stem; writes
    /// OUT/metrics.csv and prints the mean and pooled IoU. Images without a mask are predicted anyway.
    #[arg(long, requires = "output_dir")]
    mask_dir: Option<PathBuf>,
    /// Also write the metrics as JSON here (needs --mask).
    #[arg(long, requires = "mask")]
    metrics_json: Option<PathBuf>,
    /// Also write the foreground probability, float32 (H,W): a .npy file or a float32 .tif. With
    /// --output-dir, give the flag without a path.
    #[arg(long, num_args = 0..=1)]
    probabilities: Option<Option<PathBuf>>,
    /// Also write the input with the predicted foreground tinted and its boundary drawn: .png, .tif or
    /// .jpg. With --output-dir, give the flag without a path.
    #[arg(long, num_args = 0..=1)]
    overlay: Option<Option<PathBuf>>,
    /// Also write an error map against the reference mask (true positives green, false positives red,
    /// false negatives blue, over the dimmed image): .png, .tif or .jpg. With --output-dir, give the flag
    /// without a path (images without a mask get none).
    #[arg(long, num_args = 0..=1)]
    errors: Option<Option<PathBuf>>,
    /// With --output-dir: predict only share K of N of the sorted images (numbered from 0), for cluster job
    /// arrays: e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.
    #[arg(long, requires = "output_dir")]
    shard: Option<Shard>,
    /// With --output-dir: stop at the first image that fails (default: report it and go on).
    #[arg(long, requires = "output_dir")]
    fail_fast: bool,
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
    let mut out = Stdout::new();
    match run_predict(args, &mut out) {
        Ok(ExitCode::SUCCESS) => ExitCode::SUCCESS,
        Ok(code) => code,
        Err(e) if report::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn hidden(quiet: bool) -> bool {
    quiet || !std::io::stderr().is_terminal()
}

fn tile_bar(tiles: u64) -> ProgressBar {
    let bar = ProgressBar::new(tiles);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tiles [{elapsed_precise}<{eta_precise}]")
            .expect("valid template"),
    );
    bar
}

/// A path given to an optional output flag: required for one image, refused with --output-dir.
fn single_output(flag: &str, value: &Option<Option<PathBuf>>) -> Result<Option<PathBuf>> {
    match value {
        None => Ok(None),
        Some(Some(path)) => Ok(Some(path.clone())),
        Some(None) => bail!("{flag} needs a path for one image (e.g. {flag} out/x.png); without a path it is for --output-dir"),
    }
}

fn run_predict(args: PredictArgs, out: &mut Stdout) -> Result<ExitCode> {
    // Cheap checks first, so a typo fails before any work.
    tiling::plan(1, 1, args.tile, tiling::HALO, tiling::PIXEL_BUDGET).context("--tile")?;
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    match (&args.output, &args.output_dir) {
        (Some(_), None) => run_single(args, out),
        (None, Some(_)) => run_folder(args, out),
        _ => bail!("give --output (one --image) or --output-dir (--input-dir, or several --image)"),
    }
}

fn model_options(args: &PredictArgs) -> ModelOptions {
    ModelOptions { device: args.device, threads: args.threads, ort_lib: args.ort_lib.clone() }
}

fn run_single(args: PredictArgs, out: &mut Stdout) -> Result<ExitCode> {
    let [image] = args.image.as_slice() else {
        bail!("--output is for one --image (got {}); use --output-dir for several", args.image.len());
    };
    let output = args.output.clone().expect("single mode has --output");
    let probabilities = single_output("--probabilities", &args.probabilities)?;
    let overlay = single_output("--overlay", &args.overlay)?;
    let errors = single_output("--errors", &args.errors)?;
    if errors.is_some() && args.mask.is_none() {
        bail!("--errors needs a reference mask: add --mask");
    }
    let mask_format = ImageFormat::from_path(&output).context("--output")?;
    let probability_format =
        probabilities.as_deref().map(ProbabilityFormat::from_path).transpose().context("--probabilities")?;
    let overlay_format = overlay.as_deref().map(ImageFormat::from_path).transpose().context("--overlay")?;
    let errors_format = errors.as_deref().map(ImageFormat::from_path).transpose().context("--errors")?;

    let mut inputs: Vec<(&str, &Path)> =
        vec![("--image", image.as_path()), ("--model", args.model.as_path())];
    if let Some(mask) = &args.mask {
        inputs.push(("--mask", mask));
    }
    let mut files = OutputSet::new(&inputs)?;
    let opened = OpenedImage::open(image, args.mask.as_deref())?;
    let mut finals = vec![(output.as_path(), mask_format)];
    finals.extend(overlay.as_deref().zip(overlay_format));
    finals.extend(errors.as_deref().zip(errors_format));
    opened.check_outputs(&finals)?;
    let destinations = Destinations {
        mask: Destination::new(files.add("--output", &output)?, mask_format),
        probabilities: match (&probabilities, probability_format) {
            (Some(p), Some(f)) => Some(Destination::new(files.add("--probabilities", p)?, f)),
            _ => None,
        },
        overlay: match (&overlay, overlay_format) {
            (Some(p), Some(f)) => Some(Destination::new(files.add("--overlay", p)?, f)),
            _ => None,
        },
        errors: match (&errors, errors_format) {
            (Some(p), Some(f)) => Some(Destination::new(files.add("--errors", p)?, f)),
            _ => None,
        },
    };
    let metrics_json = match &args.metrics_json {
        Some(path) => Some(files.add("--metrics-json", path)?),
        None => None,
    };

    let mut model = Model::load(&args.model, &model_options(&args))?;
    let (width, height) = (opened.image.width(), opened.image.height());
    let plan = tiling::plan(height, width, args.tile, tiling::HALO, tiling::PIXEL_BUDGET)?;
    let bar = tile_bar(plan.tile_count() as u64);
    if hidden(args.quiet) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let report =
        pipeline::predict_image(&mut model, opened, &destinations, args.tile, |n| bar.inc(n as u64))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let (Some(metrics), Some(path)) = (&report.metrics, &metrics_json) {
        std::fs::write(path, metrics.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let written = files.commit()?;

    let peak = peak_memory_bytes().map(|b| format!(", peak memory {} MB", b / 1_000_000)).unwrap_or_default();
    out.line(format_args!(
        "predicted {width}x{height}: {} tiles in {} forward passes, {seconds:.2} s, {:.2} megapixels/s{peak}",
        report.tiles,
        report.forward_passes,
        (width * height) as f64 / 1e6 / seconds.max(1e-9)
    ))?;
    if let Some(metrics) = &report.metrics {
        out.line(metrics)?;
    }
    for path in &written {
        out.line(format_args!("wrote {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-image output flags of folder mode: each takes no path there.
fn folder_flag(flag: &str, value: &Option<Option<PathBuf>>) -> Result<bool> {
    match value {
        None => Ok(false),
        Some(None) => Ok(true),
        Some(Some(path)) => bail!(
            "with --output-dir, {flag} takes no path (outputs are named after each image, e.g. OUT/<stem>_{}.png); got {}",
            flag.trim_start_matches("--"),
            path.display()
        ),
    }
}

/// What folder mode writes for every image.
struct FolderOutputs {
    dir: PathBuf,
    mask: MaskFormat,
    probabilities: bool,
    overlay: bool,
    errors: bool,
}

impl FolderOutputs {
    /// Adds one image's outputs to `files` and returns where to write them.
    fn add(&self, job: &ImageJob, files: &mut OutputSet) -> Result<Destinations> {
        let path = |suffix: &str, ext: &str| self.dir.join(format!("{}{suffix}.{ext}", job.stem));
        let mask_path = path("", self.mask.extension());
        let mask =
            Destination::new(files.add("--output-dir", &mask_path)?, ImageFormat::from_path(&mask_path)?);
        let mut image_output = |wanted: bool, suffix: &str| -> Result<Option<Destination<ImageFormat>>> {
            if !wanted {
                return Ok(None);
            }
            let p = path(suffix, "png");
            Ok(Some(Destination::new(files.add("--output-dir", &p)?, ImageFormat::Png)))
        };
        let overlay = image_output(self.overlay, "_overlay")?;
        let errors = image_output(self.errors && job.mask.is_some(), "_errors")?;
        let probabilities = if self.probabilities {
            let p = path("_probabilities", "npy");
            Some(Destination::new(files.add("--output-dir", &p)?, ProbabilityFormat::Npy))
        } else {
            None
        };
        Ok(Destinations { mask, probabilities, overlay, errors })
    }
}

fn run_folder(args: PredictArgs, out: &mut Stdout) -> Result<ExitCode> {
    let dir = args.output_dir.clone().expect("folder mode has --output-dir");
    let outputs = FolderOutputs {
        dir: dir.clone(),
        mask: args.mask_format,
        probabilities: folder_flag("--probabilities", &args.probabilities)?,
        overlay: folder_flag("--overlay", &args.overlay)?,
        errors: folder_flag("--errors", &args.errors)?,
    };
    if outputs.errors && args.mask_dir.is_none() {
        bail!("--errors needs reference masks: add --mask-dir");
    }
    let mut images = match &args.input_dir {
        Some(input_dir) => batch::find_images(input_dir, args.pattern.as_deref())?,
        None => Vec::new(),
    };
    images.extend(args.image.iter().cloned());
    if images.is_empty() {
        bail!("no images: give --input-dir or --image");
    }
    let mut jobs = batch::jobs(images, args.mask_dir.as_deref())?;
    if let Some(shard) = args.shard {
        jobs = batch::select_shard(jobs, shard);
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--output-dir {}: cannot create it", dir.display()))?;
    let mut model = Model::load(&args.model, &model_options(&args))?;

    let bars = MultiProgress::new();
    if hidden(args.quiet) {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    let images_bar = bars.add(ProgressBar::new(jobs.len() as u64));
    images_bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {msg}").expect("valid template"),
    );
    let mut table = MetricsTable::new();
    let mut failures = 0usize;
    let started = Instant::now();
    let open = |job: &ImageJob| OpenedImage::open(&job.image, job.mask.as_deref());
    std::thread::scope(|scope| -> Result<()> {
        // The next image is opened (a JPEG decoded) on its own thread while this one is predicted.
        let mut next = jobs.first().map(|job| scope.spawn(move || open(job)));
        for (i, job) in jobs.iter().enumerate() {
            let opened = next
                .take()
                .expect("opened before")
                .join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))?;
            next = jobs.get(i + 1).map(|job| scope.spawn(move || open(job)));
            images_bar.set_message(job.image.display().to_string());
            let tiles = bars.add(tile_bar(0));
            let result = predict_job(&mut model, job, opened, &outputs, args.tile, &tiles);
            tiles.finish_and_clear();
            bars.remove(&tiles);
            images_bar.inc(1);
            match result {
                Ok(report) => {
                    table.push(job.image.display().to_string(), report.width, report.height, report.metrics);
                    let scores = match &report.metrics {
                        Some(m) => format!("IoU {:.4}, Dice {:.4}", m.foreground_iou, m.dice),
                        None if args.mask_dir.is_some() => "no reference mask".into(),
                        None => String::new(),
                    };
                    bars.suspend(|| {
                        out.line(format_args!(
                            "{}: {}x{} {scores}",
                            job.image.display(),
                            report.width,
                            report.height
                        ))
                    })?;
                }
                Err(e) => {
                    failures += 1;
                    bars.suspend(|| eprintln!("error: {}: {}", job.image.display(), report::error_line(&e)));
                    if args.fail_fast {
                        break;
                    }
                }
            }
        }
        if let Some(handle) = next {
            let _ = handle.join();
        }
        Ok(())
    })?;
    images_bar.finish_and_clear();

    if args.mask_dir.is_some() {
        let csv = dir.join("metrics.csv");
        let mut files = OutputSet::new(&[])?;
        let tmp = files.add("--output-dir", &csv)?;
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", csv.display()))?;
        table
            .write_csv(std::io::BufWriter::new(file))
            .with_context(|| format!("cannot write {}", csv.display()))?;
        files.commit()?;
        out.line(table.summary())?;
        out.line(format_args!("wrote {}", csv.display()))?;
    }
    let predicted = table.rows.len();
    out.line(format_args!(
        "predicted {predicted} of {} images in {:.1} s into {}",
        jobs.len(),
        started.elapsed().as_secs_f64(),
        dir.display()
    ))?;
    if failures > 0 {
        eprintln!("error: {failures} of {} images failed (see the lines above)", jobs.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One image of folder mode: its outputs checked, predicted, and put in place together.
fn predict_job(
    model: &mut Model,
    job: &ImageJob,
    opened: Result<OpenedImage, pipeline::PipelineError>,
    outputs: &FolderOutputs,
    tile: usize,
    bar: &ProgressBar,
) -> Result<ImageReport> {
    let mut inputs: Vec<(&str, &Path)> = vec![("--image", job.image.as_path())];
    if let Some(mask) = &job.mask {
        inputs.push(("--mask-dir", mask));
    }
    let mut files = OutputSet::new(&inputs)?;
    let opened = opened?;
    let destinations = outputs.add(job, &mut files)?;
    let mask_path = outputs.dir.join(format!("{}.{}", job.stem, outputs.mask.extension()));
    opened.check_outputs(&[(mask_path.as_path(), destinations.mask.format)])?;
    let plan =
        tiling::plan(opened.image.height(), opened.image.width(), tile, tiling::HALO, tiling::PIXEL_BUDGET)?;
    bar.set_length(plan.tile_count() as u64);
    let report = pipeline::predict_image(model, opened, &destinations, tile, |n| bar.inc(n as u64))?;
    files.commit()?;
    Ok(report)
}

/// The process's peak resident memory (Linux: VmHWM in /proc/self/status), if known.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
