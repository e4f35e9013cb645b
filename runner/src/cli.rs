//! The `runner` command line: the arguments (their doc comments are the `--help`), which flags belong to
//! which mode, progress bars, and the lines printed. Everything else is library code the tests call.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use imaging::labels::{LabelFormat, LabelRule};
use imaging::report::{self, Stdout};
use imaging::sink::ome_zarr::{is_ome_zarr_path, NgffVersion};
use imaging::sink::ImageFormat;
use imaging::tiles;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::folder::{self, FolderObserver, FolderOutputs, ImageJob, Shard};
use crate::pipeline::{ImageReport, PipelineError};
use crate::regions::{GeoJsonLabel, MinArea, ObjectKind};
use crate::session::library::ExecutionDevice;
use crate::session::{Model, ModelOptions};
use crate::single::{self, Progress, SingleRequest};
use crate::tissue::TissueRequest;

/// Predicts segmentation masks of whole images with an exported model.onnx, by exact overlapping tiles.
/// Images of any size are streamed band by band, so memory depends on the image width, not its height.
#[derive(Parser)]
#[command(name = "runner", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predicts the foreground mask of one image (--image, --output) or of many (--input-dir or several
    /// --image, with --output-dir). PNG, JPEG, TIFF/BigTIFF or OME-Zarr, recognised by content, and the vendors'
    /// slide formats through OpenSlide (SVS, NDPI, MIRAX, DICOM, ...); any size.
    Predict(Box<PredictArgs>),
    /// Says what an image is (reader, levels, tiles, compression, colour, microns per pixel) and what
    /// predicting a level would take here (memory; time, measured with --model).
    Info(InfoArgs),
    /// Finishes OME-Zarr stores predicted in shares (`predict --image SLIDE --output OUT.ome.zarr --shard
    /// K/N`, one process per share): once every share is done, writes the lower levels and the metadata, so
    /// that each store is the one a single run writes. While a share is missing it names it and changes
    /// nothing; a store already finished is left as it is.
    Finalize(FinalizeArgs),
}

#[derive(clap::Args)]
struct FinalizeArgs {
    /// The stores: the --output, --probabilities and --overlay of the shares.
    #[arg(required = true)]
    stores: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// The image or slide to describe.
    image: PathBuf,
    /// The level whose prediction is estimated (0 is full resolution).
    #[arg(long, default_value_t = 0)]
    level: usize,
    /// A model to measure the time and memory of a prediction with (on a synthetic 512x512 image).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Largest square tile side in pixels, halo included, as for `runner predict`.
    #[arg(long, default_value_t = tiles::DEFAULT_TILE)]
    tile: usize,
    /// Threads, as for `runner predict` [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// The ONNX Runtime library (with --model), as for `runner predict`.
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// The OpenSlide library, as for `runner predict`.
    #[arg(long)]
    openslide_lib: Option<PathBuf>,
}

/// Format of the masks written with --output-dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MaskFormat {
    Png,
    Tif,
    Jpg,
    /// A pyramidal OME-TIFF, <stem>.ome.tif.
    #[value(name = "ome.tif")]
    OmeTif,
}

impl MaskFormat {
    fn image_format(self) -> ImageFormat {
        match self {
            MaskFormat::Png => ImageFormat::Png,
            MaskFormat::Tif => ImageFormat::Tiff,
            MaskFormat::Jpg => ImageFormat::Jpeg,
            MaskFormat::OmeTif => ImageFormat::OmeTiff,
        }
    }
}

/// An NGFF version of the OME-Zarr outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NgffArg {
    /// NGFF 0.4, Zarr v2.
    #[value(name = "0.4")]
    V04,
    /// NGFF 0.5, Zarr v3.
    #[value(name = "0.5")]
    V05,
}

impl NgffArg {
    fn version(self) -> NgffVersion {
        match self {
            NgffArg::V04 => NgffVersion::V04,
            NgffArg::V05 => NgffVersion::V05,
        }
    }
}

#[derive(clap::Args)]
struct PredictArgs {
    /// The exported model (`trainer export`).
    #[arg(long, default_value = "models/model.onnx")]
    model: PathBuf,
    /// An image to segment: PNG, JPEG or TIFF/BigTIFF (tiled or striped; JPEG, LZW, Deflate, ZSTD, WebP or
    /// PackBits; pyramids and slides: see --level), or an OME-Zarr folder (NGFF 0.4/0.5); RGB, RGBA (alpha
    /// dropped), gray, 8 or 16 bits, or float.
    /// Give it several times (with --output-dir) to predict several images.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Folder mode: predict every PNG, JPEG and TIFF image and every OME-Zarr folder in this folder
    /// (recognised by content), and the vendors' slides (by extension: .svs .ndpi .mrxs .scn .bif .vms .vmu
    /// .dcm .svslide) into --output-dir.
    #[arg(long)]
    input_dir: Option<PathBuf>,
    /// Folder mode, with --input-dir: only the file names matching this glob, e.g. "*.tif".
    #[arg(long)]
    pattern: Option<String>,
    /// Where to write the predicted mask of the one --image (foreground white): .png, .tif/.tiff, .jpg, a
    /// pyramidal .ome.tif, or an OME-Zarr .ome.zarr (see --ngff).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Folder mode: the folder for the outputs of many images: <stem>.<mask-format>, and with the flags
    /// below <stem>_probabilities.npy, <stem>_overlay.png, <stem>_errors.png; metrics.csv with --mask-dir.
    /// Created if missing; it must hold no input.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Folder mode: format of the masks [default: png].
    #[arg(long, value_enum)]
    mask_format: Option<MaskFormat>,
    /// A reference mask of the one --image (pixel > 127 is foreground): prints pixel accuracy, foreground
    /// IoU and Dice, over the labelled pixels (see --ignore-value, --label-format).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Reference mask pixels equal to V are unlabelled: not scored, and counted as such (labelled_pixels
    /// in --metrics-json and metrics.csv). Checked before the > 127 rule: with V = 128, 128 is unlabelled
    /// and every other value above 127 foreground.
    #[arg(long, value_name = "V")]
    ignore_value: Option<u8>,
    /// How reference mask values become labels: `binary` (> 127 foreground, the rest background,
    /// --ignore-value unlabelled) or `ilastik` (ilastik's exported label images: 0 unlabelled, 1 background,
    /// 2 foreground).
    #[arg(long, value_enum, default_value_t = LabelFormatArg::Binary)]
    label_format: LabelFormatArg,
    /// Folder mode: folder of reference masks, matched to images by file stem; writes OUT/metrics.csv and
    /// prints the mean and pooled IoU. Images without a mask are predicted anyway.
    #[arg(long)]
    mask_dir: Option<PathBuf>,
    /// Also write the metrics as JSON here (one image, with --mask).
    #[arg(long)]
    metrics_json: Option<PathBuf>,
    /// Also write the foreground probability, float32 (H,W): a .npy file or a float32 .tif. With
    /// --output-dir, give the flag without a path (OUT/<stem>_probabilities.npy).
    #[arg(long, num_args = 0..=1)]
    probabilities: Option<Option<PathBuf>>,
    /// Also write the input with the predicted foreground tinted and its boundary drawn: .png, .tif or
    /// .jpg. With --output-dir, give the flag without a path (OUT/<stem>_overlay.png).
    #[arg(long, num_args = 0..=1)]
    overlay: Option<Option<PathBuf>>,
    /// Also write an error map against the reference mask (true positives green, false positives red,
    /// false negatives blue, over the dimmed image): .png, .tif or .jpg. With --output-dir, give the flag
    /// without a path (OUT/<stem>_errors.png; images without a mask get none).
    #[arg(long, num_args = 0..=1)]
    errors: Option<Option<PathBuf>>,
    /// Also write the predicted foreground as QuPath objects: a GeoJSON FeatureCollection, one Polygon
    /// (with its holes) per 8-connected region, in level-0 pixel coordinates (also with --level), for
    /// QuPath's File > Import objects. With --output-dir, give the flag without a path (OUT/<stem>.geojson).
    #[arg(long, num_args = 0..=1)]
    geojson: Option<Option<PathBuf>>,
    /// The class name of the --geojson objects [default: the model's foreground class name].
    #[arg(long, requires = "geojson")]
    geojson_class: Option<String>,
    /// Write the --geojson objects as detections (lighter in QuPath, for many objects) instead of annotations;
    /// the same as --geojson-objects detection.
    #[arg(long, requires = "geojson", conflicts_with = "geojson_objects")]
    geojson_detections: bool,
    /// The QuPath object type of the --geojson objects: annotation (editable, meant to be few), detection
    /// (lighter, for many), or auto: annotations when there are at most 1000 objects, detections beyond.
    #[arg(long, value_enum, requires = "geojson", default_value = "auto")]
    geojson_objects: ObjectsArg,
    /// Also write the --geojson objects' measurements as a table, one row per object (id, class, centroid,
    /// area, perimeter, in level-0 pixels and µm when the pixel size is known, mean and max foreground
    /// probability, bounding box): a .csv file. With --output-dir, give the flag without a path
    /// (OUT/<stem>_objects.csv).
    #[arg(long, num_args = 0..=1, requires = "geojson")]
    objects_csv: Option<Option<PathBuf>>,
    /// Leave out of --geojson (and --objects-csv) the regions smaller than this: level-0 pixels (200 or
    /// 200px) or square microns (50um2, through the image's pixel size).
    #[arg(long, requires = "geojson", value_parser = parse_min_area)]
    min_object_area: Option<MinArea>,
    /// Predict only where there is tissue: `auto` finds it in a low-resolution level (HSV saturation above
    /// Otsu's threshold, kept within 20..30 of 255; specks dropped, small holes filled, grown by the halo),
    /// or give a mask image (PNG/TIFF, any size, stretched over the image; > 127 is tissue). Windows that
    /// touch no tissue are neither read nor computed; inside the mask the output equals a full pass,
    /// outside it is background with probability 0. Give twice to intersect `auto` with a mask.
    #[arg(long, value_name = "auto|FILE")]
    tissue: Vec<String>,
    /// The saturation (0-255) above which `--tissue auto` calls a pixel tissue [default: Otsu's, bounded].
    #[arg(long, requires = "tissue")]
    tissue_threshold: Option<u8>,
    /// The pyramid level `--tissue auto` reads [default: the coarsest at most 32 times coarser than the
    /// level predicted; a single-level image is reduced by 32 while read].
    #[arg(long, requires = "tissue")]
    tissue_level: Option<usize>,
    /// Write the mask `--tissue auto` found (255 tissue, 0 glass; one pixel per pixel of the level it was
    /// computed at, whose downsample is printed): .png or .tif.
    #[arg(long, requires = "tissue")]
    tissue_output: Option<PathBuf>,
    /// Predict only inside these QuPath annotations (GeoJSON, level-0 coordinates; the centre rule), with
    /// --tissue: inside both.
    #[arg(long)]
    roi: Option<PathBuf>,
    /// With --roi, only the annotations of this class.
    #[arg(long, requires = "roi")]
    roi_class: Option<String>,
    /// Predict only share K of N (numbered from 0), for cluster job arrays: e.g. --shard
    /// $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Folder mode: share K of the sorted images. One
    /// --image: share K of the image's rows (whole 512-row chunks), into .ome.zarr outputs that every
    /// share writes at once; then `runner finalize` them (no --mask, --metrics-json or --errors).
    #[arg(long)]
    shard: Option<Shard>,
    /// Folder mode: stop at the first image that fails (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
    /// The resolution level of a pyramid to predict (OME-TIFF SubIFDs, reduced-resolution pages, Aperio
    /// SVS levels, OME-Zarr datasets, OpenSlide's levels): 0 is full resolution (`runner info` lists them). The outputs have the level's size; a reference mask (--mask,
    /// --mask-dir) is read at its own level 0 and must have that size.
    #[arg(long, default_value_t = 0)]
    level: usize,
    /// The NGFF version of the .ome.zarr outputs: 0.4 (Zarr v2, the version most readers take today) or
    /// 0.5 (Zarr v3) [default: 0.4].
    #[arg(long, value_enum)]
    ngff: Option<NgffArg>,
    /// When --image is an OME-Zarr image (NGFF 0.4 or 0.5): also write the mask into it as the label image
    /// labels/NAME (values 0 and 1, with colours), in the image's own Zarr version, with every level of the
    /// image (those above --level the prediction upsampled by nearest neighbour, those below it reduced), so
    /// that viewers (napari-ome-zarr) lay it over the image. Nothing else in the
    /// image is touched but the labels list, which keeps the labels already there; an earlier labels/NAME
    /// is replaced.
    #[arg(long, value_name = "NAME")]
    labels: Option<String>,
    /// Largest square tile side in pixels, halo included (even, 18 to 256 for this network's budget).
    #[arg(long, default_value_t = tiles::DEFAULT_TILE)]
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
    /// The OpenSlide library, for the vendors' slide formats [default: $OPENSLIDE_LIB, else
    /// .openslide/lib/libopenslide.so.1 in the repo, put there by `just setup`]. Without it, files the
    /// native readers read are read natively.
    #[arg(long)]
    openslide_lib: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Parses the arguments and runs; every error is one line on standard error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them; a usage error is one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", report::usage_line(&e.render().to_string(), &report::invoked_command("runner")));
            return ExitCode::from(2);
        }
    };
    let mut out = Stdout::new();
    let result = match cli.command {
        Command::Predict(args) => run_predict(*args, &mut out),
        Command::Info(args) => run_info(args, &mut out),
        Command::Finalize(args) => run_finalize(args, &mut out),
    };
    match result {
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

/// An example path for an output flag's error messages, with an extension the flag accepts.
fn example_for(flag: &str) -> &'static str {
    match flag {
        "--probabilities" => "out/probabilities.npy",
        "--overlay" => "out/overlay.png",
        "--geojson" => "out/regions.geojson",
        "--objects-csv" => "out/objects.csv",
        _ => "out/errors.png",
    }
}

/// The file name folder mode gives an output flag's files.
fn folder_name_for(flag: &str) -> &'static str {
    match flag {
        "--probabilities" => "OUT/<stem>_probabilities.npy",
        "--overlay" => "OUT/<stem>_overlay.png",
        "--geojson" => "OUT/<stem>.geojson",
        "--objects-csv" => "OUT/<stem>_objects.csv",
        _ => "OUT/<stem>_errors.png",
    }
}

/// How --geojson labels its objects.
fn geojson_label(args: &PredictArgs) -> GeoJsonLabel {
    let objects = match (args.geojson_detections, args.geojson_objects) {
        (true, _) | (_, ObjectsArg::Detection) => ObjectKind::Detection,
        (_, ObjectsArg::Annotation) => ObjectKind::Annotation,
        (_, ObjectsArg::Auto) => ObjectKind::Auto,
    };
    GeoJsonLabel { class: args.geojson_class.clone(), objects, min_area: args.min_object_area }
}

/// What `--tissue`, `--roi` ask for.
fn tissue_request(args: &PredictArgs) -> anyhow::Result<TissueRequest> {
    let mut request = TissueRequest::default();
    for value in &args.tissue {
        if value == "auto" {
            request.auto = true;
        } else if request.mask.replace(PathBuf::from(value)).is_some() {
            anyhow::bail!("--tissue takes one mask file (and `auto`); got two");
        }
    }
    if (args.tissue_threshold.is_some() || args.tissue_level.is_some() || args.tissue_output.is_some())
        && !request.auto
    {
        anyhow::bail!("--tissue-threshold, --tissue-level and --tissue-output are for --tissue auto: add it");
    }
    request.threshold = args.tissue_threshold;
    request.level = args.tissue_level;
    request.output = args.tissue_output.clone().map(|p| (p.clone(), p));
    request.roi = args.roi.clone();
    request.roi_class = args.roi_class.clone();
    Ok(request)
}

/// `--geojson-objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ObjectsArg {
    Auto,
    Annotation,
    Detection,
}

fn parse_min_area(text: &str) -> Result<MinArea, String> {
    MinArea::parse(text)
}

/// A path given to an optional output flag: required for one image.
fn single_output(flag: &str, value: &Option<Option<PathBuf>>) -> anyhow::Result<Option<PathBuf>> {
    match value {
        None => Ok(None),
        Some(Some(path)) => Ok(Some(path.clone())),
        Some(None) => anyhow::bail!(
            "{flag} needs a path for one image (e.g. {flag} {}); without a path it is for --output-dir",
            example_for(flag)
        ),
    }
}

/// The per-image output flags of folder mode: each takes no path there.
fn folder_flag(flag: &str, value: &Option<Option<PathBuf>>) -> anyhow::Result<bool> {
    match value {
        None => Ok(false),
        Some(None) => Ok(true),
        Some(Some(path)) => anyhow::bail!(
            "with --output-dir, {flag} takes no path (its files are named after each image: {}); got {}",
            folder_name_for(flag),
            path.display()
        ),
    }
}

/// Refuses the flags of the other mode, naming the mode they belong to.
fn refuse(flags: &[(&str, bool)], mode: &str, here: &str) -> anyhow::Result<()> {
    if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
        anyhow::bail!("{flag} is for {mode}; it does not apply {here}");
    }
    Ok(())
}

/// Makes `--openslide-lib` the library of this process; a library given but missing or not loadable is
/// an error at once, not a silent fallback to the native readers.
fn use_openslide_lib(path: &Option<PathBuf>) -> anyhow::Result<()> {
    use imaging::source::openslide;
    if let Some(path) = path {
        openslide::set_library(Some(path.clone()));
        openslide::library().map_err(|e| anyhow::anyhow!("{e}; {}", openslide::HOW_TO_GET))?;
    }
    Ok(())
}

fn run_info(args: InfoArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    tiles::plan(2, 2, args.tile, tiles::HALO, tiles::PIXEL_BUDGET)
        .map_err(|e| anyhow::anyhow!("--tile {}: {e}", args.tile))?;
    use_openslide_lib(&args.openslide_lib)?;
    let options =
        ModelOptions { device: ExecutionDevice::Cpu, threads: args.threads, ort_lib: args.ort_lib.clone() };
    let model = args.model.as_deref().map(|m| (m, &options));
    out.line(crate::info::describe(&args.image, args.level, args.tile, model)?)?;
    Ok(ExitCode::SUCCESS)
}

fn run_predict(args: PredictArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    // Cheap checks first, so a typo fails before any work.
    tiles::plan(2, 2, args.tile, tiles::HALO, tiles::PIXEL_BUDGET)
        .map_err(|e| anyhow::anyhow!("--tile {}: {e}", args.tile))?;
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    use_openslide_lib(&args.openslide_lib)?;
    match (&args.output, &args.output_dir) {
        (Some(_), None) => run_single(args, out),
        (None, Some(_)) => run_folder(args, out),
        (Some(_), Some(_)) => anyhow::bail!(
            "give --output (one --image) or --output-dir (--input-dir, or several --image), not both"
        ),
        (None, None) => {
            anyhow::bail!("give --output (one --image) or --output-dir (--input-dir, or several --image)")
        }
    }
}

/// `--label-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LabelFormatArg {
    /// Above 127 foreground, the rest background (--ignore-value: unlabelled).
    Binary,
    /// 0 unlabelled, 1 background, 2 foreground.
    Ilastik,
}

/// The reference masks' rule of --label-format and --ignore-value.
fn label_rule(args: &PredictArgs) -> anyhow::Result<LabelRule> {
    let format = match args.label_format {
        LabelFormatArg::Binary => LabelFormat::Binary,
        LabelFormatArg::Ilastik if args.ignore_value.is_some() => anyhow::bail!(
            "--ignore-value applies to binary masks; an ilastik label image marks unlabelled pixels with 0 \
             already: drop --ignore-value"
        ),
        LabelFormatArg::Ilastik => LabelFormat::Ilastik,
    };
    Ok(LabelRule { format, ignore: args.ignore_value })
}

fn model_options(args: &PredictArgs) -> ModelOptions {
    ModelOptions { device: args.device, threads: args.threads, ort_lib: args.ort_lib.clone() }
}

fn run_single(args: PredictArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    refuse(
        &[
            ("--input-dir", args.input_dir.is_some()),
            ("--pattern", args.pattern.is_some()),
            ("--mask-dir", args.mask_dir.is_some()),
            ("--mask-format", args.mask_format.is_some()),
            ("--fail-fast", args.fail_fast),
        ],
        "folder mode (--output-dir)",
        "to one image with --output",
    )?;
    let [image] = args.image.as_slice() else {
        if args.image.is_empty() {
            anyhow::bail!("--output needs the --image to predict");
        }
        anyhow::bail!("--output is for one --image (got {}); use --output-dir for several", args.image.len());
    };
    let request = SingleRequest {
        model: args.model.clone(),
        image: image.clone(),
        output: args.output.clone().expect("single mode has --output"),
        mask: args.mask.clone(),
        metrics_json: args.metrics_json.clone(),
        probabilities: single_output("--probabilities", &args.probabilities)?,
        overlay: single_output("--overlay", &args.overlay)?,
        errors: single_output("--errors", &args.errors)?,
        geojson: single_output("--geojson", &args.geojson)?,
        geojson_label: geojson_label(&args),
        objects_csv: single_output("--objects-csv", &args.objects_csv)?,
        tile: args.tile,
        level: args.level,
        mask_rule: label_rule(&args)?,
        ngff: args.ngff.map(NgffArg::version).unwrap_or_default(),
        labels: args.labels.clone(),
        tissue: tissue_request(&args)?,
    };
    if request.tissue.limits() && args.shard.is_some() {
        anyhow::bail!("--tissue and --roi do not apply with --shard yet: predict the slide in one run");
    }
    if let Some(shard) = args.shard {
        return run_share(&args, &request, shard, out);
    }
    if let Some(ngff) = args.ngff {
        let outputs = [Some(&request.output), request.probabilities.as_ref(), request.overlay.as_ref()];
        let outputs = outputs.into_iter().chain([request.errors.as_ref()]).flatten();
        if !outputs.into_iter().any(|p| is_ome_zarr_path(p)) {
            anyhow::bail!(
                "--ngff {} sets the version of .ome.zarr outputs, and none is given: name an output \
                 NAME.ome.zarr (e.g. --output mask.ome.zarr)",
                ngff.version().as_str()
            );
        }
    }
    if request.errors.is_some() && request.mask.is_none() {
        anyhow::bail!("--errors needs a reference mask: add --mask");
    }
    if request.metrics_json.is_some() && request.mask.is_none() {
        anyhow::bail!("--metrics-json needs a reference mask to score against: add --mask");
    }
    let bar = tile_bar(0);
    if hidden(args.quiet) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let report = single::predict_single(&request, &model_options(&args), |progress| match progress {
        Progress::Planned { tiles } => bar.set_length(tiles as u64),
        Progress::TilesDone { tiles } => bar.inc(tiles as u64),
    })?;
    bar.finish_and_clear();

    let (width, height) = (report.image.width, report.image.height);
    let peak = peak_memory_bytes().map(|b| format!(", peak memory {} MB", b / 1_000_000)).unwrap_or_default();
    out.line(format_args!(
        "predicted {width}x{height}: {} tiles in {} forward passes, {:.2} s, {:.2} megapixels/s{peak}",
        report.image.tiles,
        report.image.forward_passes,
        report.seconds,
        (width * height) as f64 / 1e6 / report.seconds.max(1e-9)
    ))?;
    if let Some(t) = &report.tissue {
        let from = match t.level {
            Some(level) => format!("level {level}"),
            None => "a streamed reduction".to_owned(),
        };
        out.line(format_args!(
            "tissue: {:.1} % of the image (from {from}, downsample {:.2} x {:.2}, saturation threshold {})",
            100.0 * t.fraction,
            t.downsample.0,
            t.downsample.1,
            t.threshold
        ))?;
    }
    if request.tissue.limits() {
        out.line(format_args!(
            "windows predicted: {} of {} ({:.1} %)",
            report.image.tiles,
            report.full_tiles,
            100.0 * report.image.tiles as f64 / report.full_tiles.max(1) as f64
        ))?;
    }
    if let Some(note) = pages_note(&report.image) {
        eprintln!("note: {}: {note}", image.display());
    }
    if let Some(metrics) = report.metrics() {
        out.line(metrics)?;
    }
    if let Some(regions) = report.image.regions {
        out.line(format_args!("{regions} foreground regions as GeoJSON objects"))?;
    }
    for path in &report.written {
        out.line(format_args!("wrote {}", path.display()))?;
    }
    if let Some(note) = &report.labels_note {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One image's share: its rows into the OME-Zarr stores.
fn run_share(
    args: &PredictArgs,
    request: &SingleRequest,
    shard: Shard,
    out: &mut Stdout,
) -> anyhow::Result<ExitCode> {
    let bar = tile_bar(0);
    if hidden(args.quiet) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let report =
        crate::slide_shard::predict_share(request, shard, &model_options(args), |progress| match progress {
            Progress::Planned { tiles } => bar.set_length(tiles as u64),
            Progress::TilesDone { tiles } => bar.inc(tiles as u64),
        })?;
    bar.finish_and_clear();
    let (width, height, rows) = (report.width, report.height, &report.rows);
    if rows.is_empty() {
        out.line(format_args!(
            "share {shard} of {width}x{height}: no rows (more shares than 512-row chunk rows); marked done"
        ))?;
    } else {
        out.line(format_args!(
            "share {shard} of {width}x{height}: rows {}..{}, {} tiles in {} forward passes, {:.2} s",
            rows.start, rows.end, report.tiles, report.forward_passes, report.seconds
        ))?;
    }
    for store in &report.stores {
        out.line(format_args!("wrote share {shard} of {}", store.display()))?;
    }
    let stores: Vec<String> = report.stores.iter().map(|s| s.display().to_string()).collect();
    out.line(format_args!("when every share is done: runner finalize {}", stores.join(" ")))?;
    Ok(ExitCode::SUCCESS)
}

fn run_finalize(args: FinalizeArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    let done = crate::slide_shard::finalize(&args.stores)?;
    for (store, finalized) in args.stores.iter().zip(done) {
        match finalized {
            imaging::sink::ome_zarr_shards::Finalized::Levels(levels) => {
                out.line(format_args!("finalized {}: {levels} levels", store.display()))?
            }
            imaging::sink::ome_zarr_shards::Finalized::AlreadyFinal => {
                out.line(format_args!("{} is already final; nothing to do", store.display()))?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress bars and one line per image, for folder mode.
struct FolderBars<'a> {
    bars: MultiProgress,
    images: ProgressBar,
    tiles: Option<ProgressBar>,
    out: &'a mut Stdout,
    scored: bool,
    /// A failed write to standard output, returned after the run.
    stdout_error: Option<imaging::report::StdoutError>,
}

impl FolderObserver for FolderBars<'_> {
    fn image_started(&mut self, _index: usize, _count: usize, job: &ImageJob, tiles: usize) {
        self.images.set_message(job.image.display().to_string());
        self.tiles = Some(self.bars.add(tile_bar(tiles as u64)));
    }

    fn tiles_done(&mut self, tiles: usize) {
        if let Some(bar) = &self.tiles {
            bar.inc(tiles as u64);
        }
    }

    fn image_finished(&mut self, job: &ImageJob, result: &Result<ImageReport, PipelineError>) {
        if let Some(bar) = self.tiles.take() {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        self.images.inc(1);
        let (out, scored) = (&mut *self.out, self.scored);
        let line = self.bars.suspend(|| match result {
            Ok(report) => {
                let scores = match &report.metrics {
                    Some(m) => format!(" IoU {:.4}, Dice {:.4}", m.foreground_iou, m.dice),
                    None if scored => " no reference mask".into(),
                    None => String::new(),
                };
                if let Some(note) = pages_note(report) {
                    eprintln!("note: {}: {note}", job.image.display());
                }
                out.line(format_args!("{}: {}x{}{scores}", job.image.display(), report.width, report.height))
            }
            Err(e) => {
                eprintln!("error: {}: {}", job.image.display(), report::clean(&e.to_string()));
                Ok(())
            }
        });
        if let Err(e) = line {
            self.stdout_error.get_or_insert(e);
        }
    }
}

fn run_folder(args: PredictArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    refuse(
        &[
            ("--output", args.output.is_some()),
            ("--mask", args.mask.is_some()),
            ("--metrics-json", args.metrics_json.is_some()),
            ("--ngff", args.ngff.is_some()),
            ("--labels", args.labels.is_some()),
            ("--tissue", !args.tissue.is_empty()),
            ("--roi", args.roi.is_some()),
        ],
        "one image (--image with --output)",
        "to folder mode (--output-dir)",
    )?;
    if args.pattern.is_some() && args.input_dir.is_none() {
        anyhow::bail!("--pattern filters --input-dir: add --input-dir");
    }
    let dir = args.output_dir.clone().expect("folder mode has --output-dir");
    let outputs = FolderOutputs {
        dir: dir.clone(),
        mask_format: args.mask_format.unwrap_or(MaskFormat::Png).image_format(),
        probabilities: folder_flag("--probabilities", &args.probabilities)?,
        overlay: folder_flag("--overlay", &args.overlay)?,
        errors: folder_flag("--errors", &args.errors)?,
        metrics: args.mask_dir.is_some(),
        geojson: folder_flag("--geojson", &args.geojson)?.then(|| geojson_label(&args)),
        objects_csv: folder_flag("--objects-csv", &args.objects_csv)?,
        mask_rule: label_rule(&args)?,
    };
    if outputs.errors && args.mask_dir.is_none() {
        anyhow::bail!("--errors needs reference masks: add --mask-dir");
    }
    let mut images = match &args.input_dir {
        Some(input_dir) => folder::find_images("--input-dir", input_dir, args.pattern.as_deref())?,
        None => Vec::new(),
    };
    images.extend(args.image.iter().cloned());
    if images.is_empty() {
        anyhow::bail!("no images: give --input-dir or --image");
    }
    let all_jobs = folder::jobs(images, args.mask_dir.as_deref())?;
    // Checked over every image, not only this shard's: shards write into one folder.
    outputs.check_collisions(&all_jobs)?;
    let mut input_dirs: Vec<(&'static str, &Path)> = Vec::new();
    input_dirs.extend(args.input_dir.as_deref().map(|d| ("--input-dir", d)));
    input_dirs.extend(args.mask_dir.as_deref().map(|d| ("--mask-dir", d)));
    outputs.check_not_among_inputs(&all_jobs, &input_dirs)?;
    let jobs = match args.shard {
        Some(shard) => folder::select_shard(all_jobs, shard),
        None => all_jobs,
    };
    let mut model = Model::load(&args.model, &model_options(&args))?;

    let bars = MultiProgress::new();
    if hidden(args.quiet) {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    let images = bars.add(ProgressBar::new(jobs.len() as u64));
    images.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {msg}").expect("valid template"),
    );
    let started = std::time::Instant::now();
    let mut observer =
        FolderBars { bars, images, tiles: None, out, scored: args.mask_dir.is_some(), stdout_error: None };
    let report = folder::predict_folder(
        &mut model,
        &jobs,
        &outputs,
        args.tile,
        args.level,
        args.fail_fast,
        &mut observer,
    )?;
    observer.images.finish_and_clear();
    if let Some(e) = observer.stdout_error.take() {
        return Err(e.into());
    }
    if let Some(csv) = &report.metrics_csv {
        out.line(report.table.summary())?;
        out.line(format_args!("wrote {}", csv.display()))?;
    }
    out.line(format_args!(
        "predicted {} of {} images in {:.1} s into {}",
        report.table.rows.len(),
        report.images,
        started.elapsed().as_secs_f64(),
        dir.display()
    ))?;
    if report.failures > 0 {
        eprintln!("error: {} of {} images failed (see the lines above)", report.failures, report.images);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What to say of an input with pages that were not predicted (a multi-page TIFF that is not a pyramid).
fn pages_note(report: &ImageReport) -> Option<String> {
    (report.other_pages > 0).then(|| {
        format!(
            "a multi-page TIFF of {} pages that is not a pyramid of its first page: only page 1 was predicted",
            report.pages
        )
    })
}

/// The process's peak resident memory (Linux: VmHWM in /proc/self/status), if known.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
