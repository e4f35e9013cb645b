//! The flags of `trainer train`: their doc comments are the `--help`. The pairs clap refuses on its own
//! (`conflicts_with`, `requires`) are declared here; every other rule about which flags go together is in
//! [`super::resolve`].

use std::path::PathBuf;

use crate::data::crops::AugmentPolicy;
use crate::optim::LrSchedule;
use crate::train::DeviceKind;

#[derive(clap::Args)]
pub(super) struct TrainArgs {
    /// RGB training image (PNG, JPEG, TIFF, ...; gray or RGBA are converted to RGB). Repeat for several
    /// images, each with its --mask, paired in order.
    #[arg(long, value_name = "IMAGE", required_unless_present = "data", conflicts_with = "data")]
    pub(super) image: Vec<PathBuf>,
    /// Mask of the same size as its --image: pixels > 127 are foreground (class 1), all others background
    /// (class 0). It must hold exactly two values, one on each side of 127 (e.g. 0 and 255), besides
    /// --ignore-value; use PNG, not JPEG. See --label-format for ilastik's label images.
    #[arg(long, value_name = "MASK", required_unless_present_any = ["data", "annotations"], conflicts_with = "data")]
    pub(super) mask: Vec<PathBuf>,
    /// QuPath annotations of the --image of the same position, in place of --mask: a GeoJSON
    /// FeatureCollection (File > Export objects as GeoJSON) of Polygon/MultiPolygon features in level-0 pixel
    /// coordinates. Only the annotated areas are read (at --level), so the image may be a whole slide in any
    /// format the runner reads. A pixel whose centre lies inside an annotation of a --foreground-class is
    /// foreground, inside only other annotations background (foreground wins where they overlap), in none
    /// unlabelled (see --unannotated).
    #[arg(long, value_name = "FILE.geojson", conflicts_with_all = ["mask", "data"])]
    pub(super) annotations: Vec<PathBuf>,
    /// A class name (`properties.classification.name`, exact) whose annotations are foreground; repeat for
    /// several. Annotations of every other class, and unclassified ones, are background.
    #[arg(long, value_name = "NAME", requires = "annotations")]
    pub(super) foreground_class: Vec<String>,
    /// More than two classes from --annotations: the QuPath class of class 0, then of class 1, ... (exact
    /// names, repeat in class-index order; they are the class names unless --class-names says otherwise).
    /// Unclassified annotations and classes named `Ignore*` label nothing; where classes overlap the later
    /// one wins.
    #[arg(
        long = "class",
        value_name = "NAME",
        requires = "annotations",
        conflicts_with = "foreground_class"
    )]
    pub(super) class: Vec<String>,
    /// The number of classes (2 to 16). Default: the count of --class-names, --class-colors or --class, or
    /// for index and ilastik masks one more than the largest class a mask holds, or 2.
    #[arg(long, value_name = "N")]
    pub(super) classes: Option<usize>,
    /// The classes' names in class-index order, comma-separated (e.g. `background,nuclei,dab`): stored in the
    /// checkpoint and every export. Default: `background,foreground` for two, `background,class1,...`.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub(super) class_names: Option<Vec<String>>,
    /// The classes' colours in class-index order, `#rrggbb` comma-separated: what --label-format color
    /// reads, and the colours stored with the model for overlays. Default: black, then distinct colours.
    #[arg(long, value_name = "#RRGGBB,...", value_delimiter = ',')]
    pub(super) class_colors: Option<Vec<String>>,
    /// What a pixel in no annotation is: `unlabelled` (the loss skips it) or `background`.
    #[arg(long, value_enum, default_value_t = UnannotatedArg::Unlabelled, requires = "annotations")]
    pub(super) unannotated: UnannotatedArg,
    /// The resolution level of the --image read with --annotations (0 is full resolution; `runner info`
    /// lists a slide's levels). Annotation coordinates stay level-0 pixels, as QuPath writes them; predict
    /// with `runner predict --level` at the same level.
    #[arg(long, default_value_t = 0, requires = "annotations")]
    pub(super) level: usize,
    /// Train on every image of DIR/images/ with the mask of the same file stem in DIR/masks/ (instead of
    /// --image/--mask). Crops are drawn across all images in proportion to their area.
    #[arg(long, value_name = "DIR")]
    pub(super) data: Option<PathBuf>,
    /// Validation image, predicted whole (exact tiles) every --val-every iterations; repeat for several,
    /// each with its --val-mask.
    #[arg(long, value_name = "IMAGE")]
    pub(super) val_image: Vec<PathBuf>,
    /// Mask of the --val-image of the same position.
    #[arg(long, value_name = "MASK")]
    pub(super) val_mask: Vec<PathBuf>,
    /// Mask pixels equal to V are unlabelled (partial labels): the loss skips them, no crop is drawn where
    /// too few pixels are labelled, and validation does not score them. Checked before the > 127 rule: with
    /// V = 128, 128 is unlabelled and every other value above 127 foreground. Applies to every mask,
    /// validation masks included.
    #[arg(long, value_name = "V")]
    pub(super) ignore_value: Option<u8>,
    /// How mask values become labels: `binary` (> 127 foreground, the rest background, --ignore-value
    /// unlabelled), `ilastik` (ilastik's exported label images: 0 unlabelled, 1 background, 2 foreground;
    /// 1..N for N classes), `index` (the values are the classes 0..N-1, --ignore-value unlabelled) or
    /// `color` (RGB masks, the i-th of --class-colors is class i). Applies to every mask, validation masks
    /// included.
    #[arg(long, value_enum, default_value_t = LabelFormatArg::Binary)]
    pub(super) label_format: LabelFormatArg,
    /// Hold out the bottom F of each training image's rows for validation (e.g. 0.2): no training crop
    /// touches them.
    #[arg(long, value_name = "F", conflicts_with_all = ["val_image", "val_mask"])]
    pub(super) val_fraction: Option<f64>,
    /// Validate (and save) every K iterations, and at the end. Default: a multiple of 50 that keeps
    /// validation under 5% of the training time.
    #[arg(long, value_name = "K")]
    pub(super) val_every: Option<usize>,
    /// Training iterations (optimizer steps) in total, counting those of a resumed checkpoint.
    #[arg(long, default_value_t = 3000)]
    pub(super) iterations: usize,
    /// Crops per step. batch x crop x crop may not exceed 65,536 pixels (the target GPU's limit).
    #[arg(long, default_value_t = 4)]
    pub(super) batch: usize,
    /// Side of the square random crops, even. Shrunk (with a note) to the largest even size that fits a
    /// smaller image.
    #[arg(long, default_value_t = 128)]
    pub(super) crop: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(super) lr: f64,
    /// Learning-rate schedule: `constant` keeps --lr, `cosine` decays it to 0 over --iterations. The default
    /// gave the best held-out IoU in the README's study.
    #[arg(long, value_enum, default_value_t = LrSchedule::Constant)]
    pub(super) lr_schedule: LrSchedule,
    /// Seed of the weight initialisation and of the crops: the same seed on the same machine gives the same
    /// loss curve.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Random augmentation of the crops: `none`, `flips` (keeps the orientation of oriented structures),
    /// `all` (flips and 90-degree rotations). The default gave the best held-out IoU in the README's study;
    /// try `all` on isotropic data with few images, and compare on held-out data (--val-fraction).
    #[arg(long, value_enum, default_value_t = AugmentPolicy::None)]
    pub(super) augment: AugmentPolicy,
    /// Turn off augmentation (the same as `--augment none`, the default).
    #[arg(long, conflicts_with = "augment")]
    pub(super) no_augment: bool,
    /// Write a checkpoint every K iterations (and always at the end); 0 writes only at the end.
    #[arg(long, default_value_t = 250, value_name = "K")]
    pub(super) checkpoint_every: usize,
    /// Output directory for checkpoint.safetensors (the last), loss.csv, loss.png, and with validation
    /// val.csv and best.safetensors (the best validation IoU). Nothing is written before the first
    /// checkpoint, so a run that fails early leaves an earlier run's files as they were.
    #[arg(long, default_value = "models")]
    pub(super) out: PathBuf,
    /// Where to train. `cuda` needs a build with `--features cuda` and a GPU; it never falls back to the CPU.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub(super) device: DeviceKind,
    /// Continue the run of this checkpoint (weights, optimizer state, history and iteration count) up to
    /// --iterations. Only the same run: a checkpoint whose data or settings (--batch, --crop, --lr,
    /// --lr-schedule, --seed, --augment, --val-fraction) differ is refused, naming what differs.
    #[arg(long, value_name = "CHECKPOINT")]
    pub(super) resume: Option<PathBuf>,
    /// Start a new run from the weights and input normalisation of this checkpoint (fine-tuning on new data
    /// or settings): a fresh optimizer, history and best model; the summary records where it started.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    pub(super) init_from: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub(super) quiet: bool,
    /// Use candle's own ops instead of the fused CPU kernels (much slower): for checking that both train the
    /// same model.
    #[arg(long)]
    pub(super) reference_ops: bool,
}

/// `--unannotated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum UnannotatedArg {
    /// Left out of the loss and of validation scores.
    Unlabelled,
    /// Background.
    Background,
}

/// `--label-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum LabelFormatArg {
    /// Above 127 foreground, the rest background (--ignore-value: unlabelled).
    Binary,
    /// 0 unlabelled, 1 background, 2 foreground (1..N: classes 0..N-1).
    Ilastik,
    /// Class indices 0..N-1 (--ignore-value: unlabelled).
    Index,
    /// Colours, the i-th of --class-colors being class i.
    Color,
}
