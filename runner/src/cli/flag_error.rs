//! What `runner predict`'s flags can get wrong together, one message each: the errors of the resolve step.

use std::path::PathBuf;

use imaging::tiles::TilingError;

/// A combination of flags that cannot run; each message names the flags and how to fix them.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("--tile {tile}: {reason}")]
    Tile { tile: usize, reason: TilingError },
    #[error("--threads must be at least 1")]
    NoThreads,
    #[error("give --output (one --image) or --output-dir (--input-dir, or several --image), not both")]
    BothModes,
    #[error("give --output (one --image) or --output-dir (--input-dir, or several --image)")]
    NoMode,
    #[error("{flag} is for {mode}; it does not apply {here}")]
    OtherMode { flag: &'static str, mode: &'static str, here: &'static str },
    #[error("--output needs the --image to predict")]
    NoImage,
    #[error("--output is for one --image (got {0}); use --output-dir for several")]
    SeveralImages(usize),
    #[error(
        "{flag} needs a path for one image (e.g. {flag} {example}); without a path it is for --output-dir"
    )]
    PathNeeded { flag: &'static str, example: &'static str },
    #[error("with --output-dir, {flag} takes no path (its files are named after each image: {name}); got {}", path.display())]
    PathGiven { flag: &'static str, name: &'static str, path: PathBuf },
    #[error(
        "--ignore-value applies to binary masks; an ilastik label image marks unlabelled pixels with 0 \
         already: drop --ignore-value"
    )]
    IgnoreValueWithIlastik,
    #[error(
        "--ngff {0} sets the version of .ome.zarr outputs, and none is given: name an output NAME.ome.zarr \
         (e.g. --output mask.ome.zarr)"
    )]
    NgffWithoutStore(&'static str),
    #[error("--errors needs a reference mask: add --mask")]
    ErrorsWithoutMask,
    #[error("--metrics-json needs a reference mask to score against: add --mask")]
    MetricsWithoutMask,
    #[error("{flag} is refused with --shard: {why}")]
    NotInShare { flag: &'static str, why: &'static str },
    #[error("--pattern filters --input-dir: add --input-dir")]
    PatternWithoutInputDir,
    #[error("--errors needs reference masks: add --mask-dir")]
    ErrorsWithoutMaskDir,
    #[error("no images: give --input-dir or --image")]
    NoImages,
    #[error("--tissue takes one mask file (and `auto`); got two")]
    TwoTissueMasks,
    #[error("--tissue-threshold, --tissue-level and --tissue-output are for --tissue auto: add it")]
    TissueSettingsWithoutAuto,
}
