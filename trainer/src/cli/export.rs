//! The flags of `trainer export`: their doc comments are the `--help`. The request they make is built in
//! [`super::resolve`].

use std::path::PathBuf;

use crate::export::PackageOptions;

#[derive(clap::Args)]
pub(super) struct ExportArgs {
    /// Checkpoint written by `trainer train`.
    #[arg(long, default_value = "models/checkpoint.safetensors")]
    pub(super) checkpoint: PathBuf,
    /// Where to write the ONNX file (atomically: a failed export leaves an existing file as it was)
    /// [default: models/model.onnx, unless --bioimageio or --triton is given].
    #[arg(long)]
    pub(super) output: Option<PathBuf>,
    /// Also (or instead) write a bioimage.io model package (a .zip for ilastik, deepImageJ, QuPath,
    /// bioimageio.core): rdf.yaml, the ONNX weights, test tensors, a cover and a README. The path must end in
    /// `.zip` (bioimage.io tools know a package by it); any other path is refused.
    #[arg(long, value_name = "PATH.zip")]
    pub(super) bioimageio: Option<PathBuf>,
    /// Also (or instead) write a Triton Inference Server model repository entry: DIR/<name>/config.pbtxt
    /// and DIR/<name>/<version>/model.onnx. Triton serves the highest version by default, so the export
    /// writes the next version after those already in DIR/<name> (1 in a new folder) and prints which.
    #[arg(long, value_name = "DIR")]
    pub(super) triton: Option<PathBuf>,
    /// The Triton version to write instead of the next one; replaces that version if it exists. A version
    /// below one already in DIR/<name> is refused: Triton would not serve it.
    #[arg(long, value_name = "N", requires = "triton", value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) triton_version: Option<u64>,
    #[command(flatten)]
    pub(super) package: PackageArgs,
}

/// How the packages (--bioimageio, --triton) describe the model.
#[derive(clap::Args)]
#[command(next_help_heading = "Package description (--bioimageio, --triton)")]
pub(super) struct PackageArgs {
    /// Model name: the bioimage.io name and the Triton model directory, one rule for both (5 to 64 ASCII
    /// letters, digits, `_`, `-`).
    #[arg(long, default_value = PackageOptions::DEFAULT_NAME)]
    pub(super) name: String,
    /// One-paragraph description [default: the network and its training, from the checkpoint].
    #[arg(long)]
    pub(super) description: Option<String>,
    /// An author of the package (repeat for several).
    #[arg(long = "author", value_name = "NAME", default_value = PackageOptions::DEFAULT_AUTHOR)]
    pub(super) authors: Vec<String>,
    /// SPDX licence identifier of the package, spelled as in the SPDX License List (e.g. MIT, Apache-2.0,
    /// BSD-3-Clause, CC-BY-4.0); bioimage.io requires one, so anything else is refused.
    #[arg(long, default_value = PackageOptions::DEFAULT_LICENSE)]
    pub(super) license: String,
    /// A tag besides the default ones (segmentation, semantic-segmentation, 2d, rgb, onnx); repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub(super) tags: Vec<String>,
    /// Image whose centre crop (at most 128x128) becomes the package's test input; use the training image.
    #[arg(long, default_value = PackageOptions::DEFAULT_TEST_IMAGE)]
    pub(super) test_image: PathBuf,
    /// Scores to report in the package README's Validation section: the JSON of `runner predict --mask MASK
    /// --metrics-json M.json` on the image named by --validation-image.
    #[arg(long, value_name = "M.json")]
    pub(super) validation_metrics: Option<PathBuf>,
    /// The image those scores were measured on [default: --test-image].
    #[arg(long, requires = "validation_metrics")]
    pub(super) validation_image: Option<PathBuf>,
}
