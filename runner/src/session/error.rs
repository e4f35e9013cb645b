//! What can go wrong with ONNX Runtime, each as one line saying what to do.

use std::path::PathBuf;

use imaging::files::FileError;
use imaging::report;

/// The ONNX Runtime release the runner is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The library file inside `.ort/lib/` (CPU) or `.ort/gpu/lib/` (CUDA).
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Where `just setup` (scripts/setup/fetch_onnxruntime.sh) puts the CPU library, relative to the
/// repository.
pub const REPO_LIBRARY_DIR: &str = ".ort/lib";

const HOW_TO_GET: &str =
    "run `just setup` (or scripts/setup/fetch_onnxruntime.sh), or pass --ort-lib PATH, or set ORT_DYLIB_PATH, \
     or `pip install onnxruntime==1.31.1` into the Python environment the runner is installed in";
const HOW_TO_GET_GPU: &str =
    "fetch the GPU build with `scripts/setup/fetch_onnxruntime.sh gpu` and pass --ort-lib \
     .ort/gpu/lib/libonnxruntime.so.1.31.1 (it needs CUDA 13 and cuDNN 9), or use --device cpu";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("ONNX Runtime {ORT_VERSION} not found (no {REPO_LIBRARY_DIR}/{LIBRARY_FILE} above {searched}); {HOW_TO_GET}")]
    LibraryNotFound { searched: String },
    #[error("the ONNX Runtime library given by {origin} does not exist: {path}; {HOW_TO_GET}")]
    LibraryMissing { origin: &'static str, path: PathBuf },
    #[error("the ONNX Runtime library given by {origin} is not a regular file: {path}; {HOW_TO_GET}")]
    LibraryNotFile { origin: &'static str, path: PathBuf },
    #[error("cannot load ONNX Runtime from {path}: {reason}; {HOW_TO_GET}")]
    LibraryLoad { path: PathBuf, reason: String },
    #[error("ONNX Runtime is already loaded from {loaded} in this process; cannot also load {requested}")]
    OtherLibrary { loaded: PathBuf, requested: PathBuf },
    #[error("cannot start ONNX Runtime: {0}")]
    Environment(String),
    #[error("--device cuda: this runner was built without CUDA support; rebuild it with `cargo build --release -p runner --features cuda` and {HOW_TO_GET_GPU}")]
    CudaNotBuilt,
    #[error("--device cuda: cannot use the CUDA execution provider ({0}); {HOW_TO_GET_GPU}")]
    Cuda(String),
    #[error(
        "--model: cannot read model {path} ({reason}); export one with `trainer export` (or `just export`)"
    )]
    ModelRead { path: PathBuf, reason: String },
    #[error(transparent)]
    ModelPath(#[from] FileError),
    #[error(
        "--model {path} is not a valid ONNX model ({reason}); pass a model.onnx written by `trainer export`"
    )]
    NotOnnx { path: PathBuf, reason: String },
    #[error(
        "--model {path} does not fit the runner: {reason}; pass a model.onnx written by `trainer export`"
    )]
    Incompatible { path: PathBuf, reason: String },
    #[error("--threads must be at least 1")]
    NoThreads,
    #[error("--threads {threads} is more than {cap} ({CORES_MULTIPLE} per core on the {cores} cores this process may use), which only costs memory; pass at most {cap}, or leave it out to use every core")]
    TooManyThreads { threads: usize, cap: usize, cores: usize },
    #[error("ONNX Runtime ran out of memory loading --model {path} into {sessions} session(s) ({reason}); pass a smaller --threads, or free memory")]
    OutOfMemory { path: PathBuf, sessions: usize, reason: String },
    #[error(
        "cannot start ONNX Runtime session {index} for --model {path} ({reason}); pass a smaller --threads"
    )]
    Worker { path: PathBuf, index: usize, reason: String },
    #[error("cannot configure the ONNX Runtime session: {0}")]
    Configure(String),
    #[error("ONNX Runtime failed on a {batch}x3x{height}x{width} input: {reason}")]
    Run { batch: usize, height: usize, width: usize, reason: String },
}

/// `--threads` may be at most this many per core: one-thread sessions beyond the cores only wait their
/// turn, and each costs its own memory.
pub const CORES_MULTIPLE: usize = 4;

/// An ONNX Runtime message on one line: its C++ source locations, signatures and stack lines dropped.
pub(crate) fn flat(error: &impl std::fmt::Display) -> String {
    report::clean(&error.to_string())
}
