//! The flags of `runner predict`: their doc comments are the `--help`. Which of them go together is decided
//! in [`super::resolve`], the one place for those rules (clap declares only `requires` on the GeoJSON
//! flags).

use std::path::PathBuf;

use clap::ValueEnum;
use imaging::sink::ome_zarr::NgffVersion;
use imaging::sink::ImageFormat;
use imaging::tiles;

use crate::folder::Shard;
use crate::regions::MinArea;
use crate::session::library::ExecutionDevice;

/// Format of the masks written with --output-dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum MaskFormat {
    Png,
    Tif,
    Jpg,
    /// A pyramidal OME-TIFF, <stem>.ome.tif.
    #[value(name = "ome.tif")]
    OmeTif,
}

impl MaskFormat {
    pub(super) fn image_format(self) -> ImageFormat {
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
pub(super) enum NgffArg {
    /// NGFF 0.4, Zarr v2.
    #[value(name = "0.4")]
    V04,
    /// NGFF 0.5, Zarr v3.
    #[value(name = "0.5")]
    V05,
}

impl NgffArg {
    pub(super) fn version(self) -> NgffVersion {
        match self {
            NgffArg::V04 => NgffVersion::V04,
            NgffArg::V05 => NgffVersion::V05,
        }
    }
}

#[derive(clap::Args)]
pub(super) struct PredictArgs {
    /// The exported model (`trainer export`).
    #[arg(long, default_value = "models/model.onnx")]
    pub(super) model: PathBuf,
    /// An image to segment: PNG, JPEG or TIFF/BigTIFF (tiled or striped; JPEG, LZW, Deflate, ZSTD, WebP or
    /// PackBits; pyramids and slides: see --level), or an OME-Zarr folder (NGFF 0.4/0.5); RGB, RGBA (alpha
    /// dropped), gray, 8 or 16 bits, or float.
    /// Give it several times (with --output-dir) to predict several images.
    #[arg(long)]
    pub(super) image: Vec<PathBuf>,
    /// Folder mode: predict every PNG, JPEG and TIFF image and every OME-Zarr folder in this folder
    /// (recognised by content), and the vendors' slides (by extension: .svs .ndpi .mrxs .scn .bif .vms .vmu
    /// .dcm .svslide) into --output-dir.
    #[arg(long)]
    pub(super) input_dir: Option<PathBuf>,
    /// Folder mode, with --input-dir: only the file names matching this glob, e.g. "*.tif".
    #[arg(long)]
    pub(super) pattern: Option<String>,
    /// Where to write the predicted mask of the one --image (foreground white): .png, .tif/.tiff, .jpg, a
    /// pyramidal .ome.tif, or an OME-Zarr .ome.zarr (see --ngff).
    #[arg(long)]
    pub(super) output: Option<PathBuf>,
    /// Folder mode: the folder for the outputs of many images: <stem>.<mask-format>, and with the flags
    /// below <stem>_probabilities.npy, <stem>_overlay.png, <stem>_errors.png; metrics.csv with --mask-dir.
    /// Created if missing; it must hold no input.
    #[arg(long)]
    pub(super) output_dir: Option<PathBuf>,
    /// Folder mode: format of the masks [default: png].
    #[arg(long, value_enum)]
    pub(super) mask_format: Option<MaskFormat>,
    /// A reference mask of the one --image (pixel > 127 is foreground): prints pixel accuracy, foreground
    /// IoU and Dice, over the labelled pixels (see --ignore-value, --label-format).
    #[arg(long)]
    pub(super) mask: Option<PathBuf>,
    /// Reference mask pixels equal to V are unlabelled: not scored, and counted as such (labelled_pixels
    /// in --metrics-json and metrics.csv). Checked before the > 127 rule: with V = 128, 128 is unlabelled
    /// and every other value above 127 foreground.
    #[arg(long, value_name = "V")]
    pub(super) ignore_value: Option<u8>,
    /// How reference mask values become labels: `binary` (> 127 foreground, the rest background,
    /// --ignore-value unlabelled) or `ilastik` (ilastik's exported label images: 0 unlabelled, 1 background,
    /// 2 foreground; with C classes 1..C are classes 0..C-1) or `index` (class indices 0..C-1, for a model
    /// of C classes; --ignore-value unlabelled).
    #[arg(long, value_enum, default_value_t = LabelFormatArg::Binary)]
    pub(super) label_format: LabelFormatArg,
    /// Folder mode: folder of reference masks, matched to images by file stem; writes OUT/metrics.csv and
    /// prints the mean and pooled IoU. Images without a mask are predicted anyway.
    #[arg(long)]
    pub(super) mask_dir: Option<PathBuf>,
    /// Also write the metrics as JSON here (one image, with --mask).
    #[arg(long)]
    pub(super) metrics_json: Option<PathBuf>,
    /// Also write the foreground probability, float32 (H,W): a .npy file or a float32 .tif. With
    /// --output-dir, give the flag without a path (OUT/<stem>_probabilities.npy).
    #[arg(long, num_args = 0..=1)]
    pub(super) probabilities: Option<Option<PathBuf>>,
    /// Also write the input with the predicted foreground tinted and its boundary drawn: .png, .tif or
    /// .jpg. With --output-dir, give the flag without a path (OUT/<stem>_overlay.png).
    #[arg(long, num_args = 0..=1)]
    pub(super) overlay: Option<Option<PathBuf>>,
    /// Also write an error map against the reference mask (true positives green, false positives red,
    /// false negatives blue, over the dimmed image): .png, .tif or .jpg. With --output-dir, give the flag
    /// without a path (OUT/<stem>_errors.png; images without a mask get none).
    #[arg(long, num_args = 0..=1)]
    pub(super) errors: Option<Option<PathBuf>>,
    /// Also write the predicted foreground as QuPath objects: a GeoJSON FeatureCollection, one Polygon
    /// (with its holes) per 8-connected region, in level-0 pixel coordinates (also with --level), for
    /// QuPath's File > Import objects. With --output-dir, give the flag without a path (OUT/<stem>.geojson).
    #[arg(long, num_args = 0..=1)]
    pub(super) geojson: Option<Option<PathBuf>>,
    /// The class name of the --geojson objects [default: the model's foreground class name].
    #[arg(long, requires = "geojson")]
    pub(super) geojson_class: Option<String>,
    /// Write the --geojson objects as detections (lighter in QuPath, for many objects) instead of annotations;
    /// the same as --geojson-objects detection.
    #[arg(long, requires = "geojson", conflicts_with = "geojson_objects")]
    pub(super) geojson_detections: bool,
    /// The QuPath object type of the --geojson objects: annotation (editable, meant to be few), detection
    /// (lighter, for many), or auto: annotations when there are at most 1000 objects, detections beyond
    /// [default: auto].
    #[arg(long, value_enum, requires = "geojson")]
    pub(super) geojson_objects: Option<ObjectsArg>,
    /// Also write the --geojson objects' measurements as a table, one row per object (id, class, centroid,
    /// area, perimeter, in level-0 pixels and µm when the pixel size is known, mean and max foreground
    /// probability, bounding box): a .csv file. With --output-dir, give the flag without a path
    /// (OUT/<stem>_objects.csv).
    #[arg(long, num_args = 0..=1, requires = "geojson")]
    pub(super) objects_csv: Option<Option<PathBuf>>,
    /// Leave out of --geojson (and --objects-csv) the regions smaller than this: level-0 pixels (200 or
    /// 200px) or square microns (50um2, through the image's pixel size).
    #[arg(long, requires = "geojson", value_parser = MinArea::parse)]
    pub(super) min_object_area: Option<MinArea>,
    /// Predict only where there is tissue: `auto` finds it in a low-resolution level (HSV saturation above
    /// Otsu's threshold, kept within 20..30 of 255; specks dropped, small holes filled, grown by the halo),
    /// or give a mask image (PNG/TIFF, any size, stretched over the image; > 127 is tissue). Windows that
    /// touch no tissue are neither read nor computed; inside the mask the output equals a full pass,
    /// outside it is background with probability 0. Give twice to intersect `auto` with a mask.
    #[arg(long, value_name = "auto|FILE")]
    pub(super) tissue: Vec<String>,
    /// The saturation (0-255) above which `--tissue auto` calls a pixel tissue [default: Otsu's, bounded].
    #[arg(long, requires = "tissue")]
    pub(super) tissue_threshold: Option<u8>,
    /// The pyramid level `--tissue auto` reads [default: the coarsest at most 32 times coarser than the
    /// level predicted; a single-level image is reduced by 32 while read].
    #[arg(long, requires = "tissue")]
    pub(super) tissue_level: Option<usize>,
    /// Write the mask `--tissue auto` found (255 tissue, 0 glass; one pixel per pixel of the level it was
    /// computed at, whose downsample is printed): .png or .tif.
    #[arg(long, requires = "tissue")]
    pub(super) tissue_output: Option<PathBuf>,
    /// Predict only inside these QuPath annotations (GeoJSON, level-0 coordinates; the centre rule), with
    /// --tissue: inside both.
    #[arg(long)]
    pub(super) roi: Option<PathBuf>,
    /// With --roi, only the annotations of this class.
    #[arg(long, requires = "roi")]
    pub(super) roi_class: Option<String>,
    /// Predict only share K of N (numbered from 0), for cluster job arrays: e.g. --shard
    /// $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Folder mode: share K of the sorted images. One
    /// --image: share K of the image's rows (whole 512-row chunks), into .ome.zarr outputs that every
    /// share writes at once; then `runner finalize` them (no --mask, --metrics-json or --errors).
    #[arg(long)]
    pub(super) shard: Option<Shard>,
    /// Folder mode: stop at the first image that fails (default: report it and go on).
    #[arg(long)]
    pub(super) fail_fast: bool,
    /// The resolution level of a pyramid to predict (OME-TIFF SubIFDs, reduced-resolution pages, Aperio
    /// SVS levels, OME-Zarr datasets, OpenSlide's levels): 0 is full resolution (`runner info` lists them). The outputs have the level's size; a reference mask (--mask,
    /// --mask-dir) is read at its own level 0 and must have that size.
    #[arg(long, default_value_t = 0)]
    pub(super) level: usize,
    /// The NGFF version of the .ome.zarr outputs: 0.4 (Zarr v2, the version most readers take today) or
    /// 0.5 (Zarr v3) [default: 0.4].
    #[arg(long, value_enum)]
    pub(super) ngff: Option<NgffArg>,
    /// When --image is an OME-Zarr image (NGFF 0.4 or 0.5): also write the mask into it as the label image
    /// labels/NAME (values 0 and 1, with colours), in the image's own Zarr version, with every level of the
    /// image (those above --level the prediction upsampled by nearest neighbour, those below it reduced), so
    /// that viewers (napari-ome-zarr) lay it over the image. Nothing else in the
    /// image is touched but the labels list, which keeps the labels already there; an earlier labels/NAME
    /// is replaced.
    #[arg(long, value_name = "NAME")]
    pub(super) labels: Option<String>,
    /// Largest square tile side in pixels, halo included (even, 18 to 256 for this network's budget).
    #[arg(long, default_value_t = tiles::DEFAULT_TILE)]
    pub(super) tile: usize,
    /// Where the network runs: cuda needs a build with `--features cuda` and the onnxruntime-gpu library.
    #[arg(long, value_enum, default_value_t = ExecutionDevice::Cpu)]
    pub(super) device: ExecutionDevice,
    /// Threads in all [default: all cores]: on the CPU, that many tiles are predicted at once, one thread
    /// each; with --device cuda, ONNX Runtime's intra-op threads.
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// The ONNX Runtime library [default: $ORT_DYLIB_PATH, else .ort/lib/libonnxruntime.so.1.31.1 in the repo].
    #[arg(long)]
    pub(super) ort_lib: Option<PathBuf>,
    /// The OpenSlide library, for the vendors' slide formats [default: $OPENSLIDE_LIB, else
    /// .openslide/lib/libopenslide.so.1 in the repo, put there by `just setup`]. Without it, files the
    /// native readers read are read natively.
    #[arg(long)]
    pub(super) openslide_lib: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub(super) quiet: bool,
}

/// `--geojson-objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ObjectsArg {
    /// Annotations up to 1000 objects, detections beyond.
    Auto,
    Annotation,
    Detection,
}

/// `--label-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum LabelFormatArg {
    /// Above 127 foreground, the rest background (--ignore-value: unlabelled).
    Binary,
    /// 0 unlabelled, 1 background, 2 foreground.
    Ilastik,
    /// Class indices 0..C-1.
    Index,
}
