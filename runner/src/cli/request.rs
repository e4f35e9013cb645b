//! What `runner predict`'s flags resolve into ([`super::resolve`]): one image, one image's share, or a
//! folder run, with the settings every mode shares.

use std::path::PathBuf;

use crate::folder::{FolderOutputs, Shard};
use crate::session::ModelOptions;
use crate::single::SingleRequest;

/// One `runner predict`, resolved.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub mode: Mode,
    pub model_options: ModelOptions,
    pub openslide_lib: Option<PathBuf>,
    pub quiet: bool,
}

/// What `runner predict` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// One image into its outputs (`--image`, `--output`).
    Single(SingleRequest),
    /// Share K of N of one image's rows into OME-Zarr stores (`--image`, `--output`, `--shard`).
    Share(SingleRequest, Shard),
    /// Many images into a folder (`--output-dir`).
    Folder(FolderRequest),
}

/// A folder run: the images of `--input-dir` (those matching `--pattern`) and the `--image`s, each with
/// its reference mask from `--mask-dir`, into `outputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderRequest {
    pub model: PathBuf,
    pub input_dir: Option<PathBuf>,
    pub pattern: Option<String>,
    pub images: Vec<PathBuf>,
    pub mask_dir: Option<PathBuf>,
    pub outputs: FolderOutputs,
    pub shard: Option<Shard>,
    pub tile: usize,
    pub level: usize,
    pub fail_fast: bool,
}
