//! ONNX Runtime: finding and loading the shared library, the execution provider, threads, and the model
//! session with its input and outputs checked on load.
//!
//! The library is loaded at run time (ort's `load-dynamic`), so the runner builds without it. It is looked
//! up as `--ort-lib PATH`, else `ORT_DYLIB_PATH`, else `.ort/lib/libonnxruntime.so.1.31.1` in the
//! repository (found by walking up from the current folder and from the executable's folder). `ort::init()`
//! would panic on a missing library, so only `ort::init_from` is used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::ExecutionProviderDispatch;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::outputs::{self, OutputError};
use crate::report;

/// The ONNX Runtime release the runner is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The library file inside `.ort/lib/` (CPU) or `.ort/gpu/lib/` (CUDA).
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Where `just setup` (scripts/setup/fetch_onnxruntime.sh) puts the CPU library, relative to the
/// repository.
pub const REPO_LIBRARY_DIR: &str = ".ort/lib";

/// Names the exported graph uses (see trainer::export).
pub const INPUT_NAME: &str = "image";
pub const LOGITS_NAME: &str = "logits";
pub const PROBABILITIES_NAME: &str = "probabilities";

const HOW_TO_GET: &str =
    "run `just setup` (or scripts/setup/fetch_onnxruntime.sh), or pass --ort-lib PATH, or set ORT_DYLIB_PATH";
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
    ModelPath(#[from] OutputError),
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

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutionDevice {
    #[default]
    Cpu,
    Cuda,
}

/// How to build a [`Model`].
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    pub device: ExecutionDevice,
    /// Threads in all; `None` uses every core this process may run on; at most [`CORES_MULTIPLE`] per core.
    /// On the CPU up to that many one-thread sessions (built as plans need them) predict tiles in parallel,
    /// and the untiled reference pass uses one session of that many.
    pub threads: Option<usize>,
    /// The ONNX Runtime library; `None` looks it up (see the module docs).
    pub ort_lib: Option<PathBuf>,
}

/// An ONNX Runtime message on one line: its C++ source locations, signatures and stack lines dropped.
fn flat(error: &impl std::fmt::Display) -> String {
    report::clean(&error.to_string())
}

/// `--threads` may be at most this many per core: one-thread sessions beyond the cores only wait their
/// turn, and each costs its own memory.
pub const CORES_MULTIPLE: usize = 4;

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The thread count to use for `--threads`: every core when not given; 0, or more than
/// [`CORES_MULTIPLE`] per core, is refused.
pub fn check_threads(threads: Option<usize>) -> Result<usize, SessionError> {
    threads_within(threads, cores())
}

fn threads_within(threads: Option<usize>, cores: usize) -> Result<usize, SessionError> {
    let cap = cores.saturating_mul(CORES_MULTIPLE).max(CORES_MULTIPLE);
    match threads {
        None => Ok(cores.max(1)),
        Some(0) => Err(SessionError::NoThreads),
        Some(threads) if threads > cap => Err(SessionError::TooManyThreads { threads, cap, cores }),
        Some(threads) => Ok(threads),
    }
}

/// Whether an ONNX Runtime message reports a failed allocation (which is not a problem of the model file).
fn is_allocation_failure(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    ["bad_alloc", "bad allocation", "failed to allocate", "out of memory", "cannot allocate memory"]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// What a failure to create the session number `index` (0 = the first, which parses the model) means.
fn session_error(path: &Path, index: usize, error: BuildError) -> SessionError {
    let reason = match error {
        BuildError::Setup(error) => return error,
        BuildError::Load(reason) => reason,
    };
    let path = path.to_path_buf();
    if is_allocation_failure(&reason) {
        SessionError::OutOfMemory { path, sessions: index + 1, reason }
    } else if index == 0 {
        SessionError::NotOnnx { path, reason }
    } else {
        // The same bytes already made a valid session: this one failed for another reason than the file.
        SessionError::Worker { path, index, reason }
    }
}

/// Every folder from `start` up to the root.
fn ancestors_of(start: Option<PathBuf>) -> Vec<PathBuf> {
    start.map(|s| s.ancestors().map(Path::to_path_buf).collect()).unwrap_or_default()
}

/// The library to load: `explicit` (`--ort-lib`), else `ORT_DYLIB_PATH`, else the repository's copy.
pub fn resolve_library(explicit: Option<&Path>) -> Result<PathBuf, SessionError> {
    if let Some(path) = explicit {
        return existing(path.to_path_buf(), "--ort-lib");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return existing(PathBuf::from(path), "ORT_DYLIB_PATH");
    }
    let cwd = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    for dir in ancestors_of(cwd.clone()).into_iter().chain(ancestors_of(exe_dir.clone())) {
        let candidate = dir.join(REPO_LIBRARY_DIR).join(LIBRARY_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let searched = [cwd, exe_dir].into_iter().flatten().map(|p| p.display().to_string()).collect::<Vec<_>>();
    Err(SessionError::LibraryNotFound { searched: searched.join(" or ") })
}

fn existing(path: PathBuf, origin: &'static str) -> Result<PathBuf, SessionError> {
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        // A folder, FIFO or device: loading it would fail obscurely, or block.
        Ok(_) => Err(SessionError::LibraryNotFile { origin, path }),
        Err(_) => Err(SessionError::LibraryMissing { origin, path }),
    }
}

/// The process-wide ONNX Runtime environment, with the library it was loaded from. ort allows one
/// environment per process (and one library), so it is created once and kept.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads the library at `library` (once per process) and returns the environment.
pub fn environment(library: &Path) -> Result<Environment, SessionError> {
    let mut current = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let canonical = library.canonicalize().unwrap_or_else(|_| library.to_path_buf());
    if let Some((loaded, env)) = current.as_ref() {
        return if *loaded == canonical {
            Ok(env.clone())
        } else {
            Err(SessionError::OtherLibrary { loaded: loaded.clone(), requested: canonical })
        };
    }
    let builder = ort::init_from(&canonical)
        .map_err(|e| SessionError::LibraryLoad { path: library.to_path_buf(), reason: flat(&e) })?;
    let env = builder.with_name("runner").build().map_err(|e| SessionError::Environment(flat(&e)))?;
    *current = Some((canonical, env.clone()));
    Ok(env)
}

/// The execution providers for `device`, in one place. CUDA fails loudly (`error_on_failure`): otherwise
/// ONNX Runtime would silently run on the CPU.
fn execution_providers(device: ExecutionDevice) -> Result<Vec<ExecutionProviderDispatch>, SessionError> {
    match device {
        ExecutionDevice::Cpu => Ok(Vec::new()),
        #[cfg(feature = "cuda")]
        ExecutionDevice::Cuda => Ok(vec![ort::ep::CUDA::default().build().error_on_failure()]),
        #[cfg(not(feature = "cuda"))]
        ExecutionDevice::Cuda => Err(SessionError::CudaNotBuilt),
    }
}

/// The outputs of one forward pass, each (batch, 2, height, width) row-major.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    pub logits: Option<Vec<f32>>,
    pub probabilities: Option<Vec<f32>>,
}

/// Which outputs a forward pass computes (ONNX Runtime skips the nodes only the others need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub logits: bool,
    pub probabilities: bool,
}

/// The outputs of one forward pass as ONNX Runtime returned them, shapes checked, read in place.
#[derive(Debug)]
pub struct PassOutput {
    logits: Option<DynValue>,
    probabilities: Option<DynValue>,
    batch: usize,
    height: usize,
    width: usize,
}

impl PassOutput {
    /// The logits, (batch, 2, height, width) row-major, if they were computed.
    pub fn logits(&self) -> Result<Option<&[f32]>, SessionError> {
        self.read(&self.logits)
    }

    /// The probabilities, (batch, 2, height, width) row-major, if they were computed.
    pub fn probabilities(&self) -> Result<Option<&[f32]>, SessionError> {
        self.read(&self.probabilities)
    }

    fn read<'a>(&self, value: &'a Option<DynValue>) -> Result<Option<&'a [f32]>, SessionError> {
        let Some(value) = value else { return Ok(None) };
        let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| SessionError::Run {
            batch: self.batch,
            height: self.height,
            width: self.width,
            reason: flat(&e),
        })?;
        Ok(Some(data))
    }
}

/// One session ready to run forward passes that compute only the wanted outputs; used by one thread.
pub struct Pass<'m> {
    session: &'m mut Session,
    names: &'m Names,
    run_options: RunOptions<HasSelectedOutputs>,
    wanted: Wanted,
}

impl Pass<'_> {
    /// One forward pass over `input`, (batch, 3, height, width) row-major RGB in [0, 1].
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<PassOutput, SessionError> {
        let run_error = |reason: String| SessionError::Run { batch, height, width, reason };
        let tensor = TensorRef::from_array_view(([batch, 3, height, width], input))
            .map_err(|e| run_error(flat(&e)))?;
        let mut outputs = self
            .session
            .run_with_options(ort::inputs![self.names.input.as_str() => tensor], &self.run_options)
            .map_err(|e| run_error(flat(&e)))?;
        let expected = [batch as i64, 2, height as i64, width as i64];
        let mut take = |name: &Option<String>, wanted: bool| -> Result<Option<DynValue>, SessionError> {
            let Some(name) = name.as_ref().filter(|_| wanted) else { return Ok(None) };
            let value =
                outputs.remove(name).ok_or_else(|| run_error(format!("output `{name}` is missing")))?;
            let (shape, _) = value.try_extract_tensor::<f32>().map_err(|e| run_error(flat(&e)))?;
            if **shape != expected {
                return Err(run_error(format!(
                    "output `{name}` has shape {:?}, expected {expected:?}",
                    &**shape
                )));
            }
            Ok(Some(value))
        };
        Ok(PassOutput {
            logits: take(&self.names.logits, self.wanted.logits)?,
            probabilities: take(&self.names.probabilities, self.wanted.probabilities)?,
            batch,
            height,
            width,
        })
    }
}

/// The graph's input and output names.
#[derive(Debug)]
struct Names {
    input: String,
    logits: Option<String>,
    probabilities: Option<String>,
}

/// A loaded, validated model: on the CPU, up to one single-threaded session per thread, which take the
/// tiles in turn (tiles are independent; one thread per small pass avoids ONNX Runtime's per-operator
/// synchronisation between threads, which a busy machine punishes), and, built when first needed, one
/// session of every thread for the untiled reference pass. Worker sessions beyond the first are built
/// when a plan first needs them, so a small image never pays for sessions it cannot use.
pub struct Model {
    workers: Vec<Session>,
    /// Worker sessions at most: `threads` on the CPU, one on a GPU.
    max_workers: usize,
    /// Intra-op threads of each worker session.
    worker_threads: usize,
    reference: Option<Session>,
    names: Names,
    /// What the reference session is built from.
    bytes: Vec<u8>,
    path: PathBuf,
    env: Environment,
    threads: usize,
    pub device: ExecutionDevice,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("names", &self.names)
            .field("workers", &self.workers.len())
            .field("threads", &self.threads)
            .field("device", &self.device)
            .finish()
    }
}

/// A readable description of a tensor type, for error messages.
fn describe(ty: &ValueType) -> String {
    match (ty.tensor_type(), ty.tensor_shape()) {
        (Some(t), Some(s)) => format!("{t:?} {:?}", &**s),
        _ => "not a tensor".to_string(),
    }
}

/// Checks a (N, channels, H, W) float tensor type with dynamic H and W; `Err` holds why not.
fn check_nchw(ty: &ValueType, channels: i64) -> Result<(), String> {
    let ok_type = ty.tensor_type() == Some(TensorElementType::Float32);
    let dims: Vec<i64> = ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let ok_shape = dims.len() == 4 && (dims[1] == channels || dims[1] < 0);
    if !ok_type || !ok_shape {
        return Err(format!("expected float32 (N,{channels},H,W), found {}", describe(ty)));
    }
    if dims[2] > 0 || dims[3] > 0 {
        return Err(format!("height and width must be dynamic for tiling, found {}", describe(ty)));
    }
    Ok(())
}

impl Model {
    /// Reads and loads the model file at `path` (a regular file: a FIFO or device is refused unopened).
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Model, SessionError> {
        if std::fs::metadata(path).is_ok() {
            outputs::check_input("--model", path)?;
        }
        let bytes = std::fs::read(path)
            .map_err(|e| SessionError::ModelRead { path: path.to_path_buf(), reason: e.to_string() })?;
        Model::from_bytes(&bytes, path, options)
    }

    /// Loads a model from its bytes; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, options: &ModelOptions) -> Result<Model, SessionError> {
        execution_providers(options.device)?; // a build without CUDA says so before anything else
        let library = resolve_library(options.ort_lib.as_deref())?;
        let env = environment(&library)?;
        let threads = check_threads(options.threads)?;
        // On the CPU, up to `threads` one-thread sessions; a GPU runs one pass at a time, with the CPU
        // threads for any operator left on the CPU.
        let (max_workers, worker_threads) = match options.device {
            ExecutionDevice::Cpu => (threads, 1),
            ExecutionDevice::Cuda => (1, threads),
        };
        let first = build_session(&env, bytes, options.device, worker_threads)
            .map_err(|reason| session_error(path, 0, reason))?;
        let names = validate(&first, path)?;
        Ok(Model {
            workers: vec![first],
            max_workers,
            worker_threads,
            reference: None,
            names,
            bytes: bytes.to_vec(),
            path: path.to_path_buf(),
            env,
            threads,
            device: options.device,
        })
    }

    /// Threads in all: one-thread worker sessions on the CPU, intra-op threads of the one session on a GPU.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// One pass per thread's worker session (building those not built yet), computing the wanted outputs
    /// the model has. Prefer [`Model::worker_passes_for`], which builds no more sessions than a plan uses.
    pub fn worker_passes(&mut self, wanted: Wanted) -> Result<Vec<Pass<'_>>, SessionError> {
        self.worker_passes_for(wanted, usize::MAX)
    }

    /// Passes for a plan of `batches` forward passes: one per worker session, at most `batches` and at most
    /// one per thread; sessions are built on first need and kept for later plans.
    pub fn worker_passes_for(
        &mut self,
        wanted: Wanted,
        batches: usize,
    ) -> Result<Vec<Pass<'_>>, SessionError> {
        let needed = batches.clamp(1, self.max_workers);
        while self.workers.len() < needed {
            let index = self.workers.len();
            let session = build_session(&self.env, &self.bytes, self.device, self.worker_threads)
                .map_err(|reason| session_error(&self.path, index, reason))?;
            self.workers.push(session);
        }
        let names = &self.names;
        self.workers[..needed].iter_mut().map(|session| pass(session, names, wanted)).collect()
    }

    /// Worker sessions built so far (each holds the model's weights and its own buffers).
    pub fn worker_sessions(&self) -> usize {
        self.workers.len()
    }

    /// A pass on the session that uses every thread for one image-wide pass (the untiled reference). With
    /// one thread, or on a GPU, that is the first worker.
    pub fn reference_pass(&mut self, wanted: Wanted) -> Result<Pass<'_>, SessionError> {
        if self.threads == 1 || self.device != ExecutionDevice::Cpu {
            return pass(&mut self.workers[0], &self.names, wanted);
        }
        if self.reference.is_none() {
            let session = build_session(&self.env, &self.bytes, self.device, self.threads)
                .map_err(|reason| session_error(&self.path, self.workers.len(), reason))?;
            self.reference = Some(session);
        }
        let session = self.reference.as_mut().expect("built above");
        pass(session, &self.names, wanted)
    }

    /// Whether the model computes probabilities itself (else the runner takes the softmax of the logits).
    pub fn has_probabilities(&self) -> bool {
        self.names.probabilities.is_some()
    }

    pub fn has_logits(&self) -> bool {
        self.names.logits.is_some()
    }

    /// One forward pass over `input`, (batch, 3, height, width) row-major RGB in [0, 1], on the first worker
    /// session, with every output the model has, copied out.
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<BatchOutput, SessionError> {
        let wanted = Wanted { logits: true, probabilities: true };
        let out = pass(&mut self.workers[0], &self.names, wanted)?.run(input, batch, height, width)?;
        Ok(BatchOutput {
            logits: out.logits()?.map(<[f32]>::to_vec),
            probabilities: out.probabilities()?.map(<[f32]>::to_vec),
        })
    }
}

/// A pass on `session` computing the wanted outputs that the model has.
fn pass<'m>(session: &'m mut Session, names: &'m Names, wanted: Wanted) -> Result<Pass<'m>, SessionError> {
    let wanted = Wanted {
        logits: wanted.logits && names.logits.is_some(),
        probabilities: wanted.probabilities && names.probabilities.is_some(),
    };
    let mut selector = OutputSelector::no_default();
    for (name, want) in [(&names.logits, wanted.logits), (&names.probabilities, wanted.probabilities)] {
        if let (Some(name), true) = (name, want) {
            selector = selector.with(name.as_str());
        }
    }
    let run_options =
        RunOptions::new().map_err(|e| SessionError::Configure(flat(&e)))?.with_outputs(selector);
    Ok(Pass { session, names, run_options, wanted })
}

/// A session of `threads` intra-op threads on `device`. A configuration or provider failure is returned
/// as its error; a failure to load the bytes as the message, which the caller classifies (see
/// [`session_error`]).
fn build_session(
    env: &Environment,
    bytes: &[u8],
    device: ExecutionDevice,
    threads: usize,
) -> Result<Session, BuildError> {
    let providers = execution_providers(device)?;
    let mut builder = Session::builder(env)
        .map_err(|e| SessionError::Configure(flat(&e)))?
        .with_intra_threads(threads)
        .map_err(|e| SessionError::Configure(flat(&e)))?;
    if !providers.is_empty() {
        builder = builder.with_execution_providers(providers).map_err(|e| SessionError::Cuda(flat(&e)))?;
    }
    builder.commit_from_memory(bytes).map_err(|e| BuildError::Load(flat(&e)))
}

/// Why [`build_session`] failed.
enum BuildError {
    /// Before the model was loaded: already a complete error.
    Setup(SessionError),
    /// ONNX Runtime's message on loading the model.
    Load(String),
}

impl From<SessionError> for BuildError {
    fn from(error: SessionError) -> BuildError {
        BuildError::Setup(error)
    }
}

/// Checks the session's input and outputs and returns their names.
fn validate(session: &Session, path: &Path) -> Result<Names, SessionError> {
    let incompatible = |reason: String| SessionError::Incompatible { path: path.to_path_buf(), reason };
    let [input] = session.inputs() else {
        return Err(incompatible(format!("it has {} inputs, expected one image", session.inputs().len())));
    };
    check_nchw(input.dtype(), 3).map_err(|r| incompatible(format!("input `{}`: {r}", input.name())))?;
    let input = input.name().to_string();

    let find = |name: &str| session.outputs().iter().find(|o| o.name() == name);
    let (mut logits, probabilities) = (find(LOGITS_NAME), find(PROBABILITIES_NAME));
    if logits.is_none() && probabilities.is_none() {
        // A model with other output names: its only output is taken as the logits.
        match session.outputs() {
            [only] => logits = Some(only),
            outs => {
                return Err(incompatible(format!(
                    "it has no `{LOGITS_NAME}` or `{PROBABILITIES_NAME}` output among {} outputs",
                    outs.len()
                )))
            }
        }
    }
    for out in logits.iter().chain(probabilities.iter()) {
        check_nchw(out.dtype(), 2).map_err(|r| incompatible(format!("output `{}`: {r}", out.name())))?;
    }
    Ok(Names {
        input,
        logits: logits.map(|o| o.name().to_string()),
        probabilities: probabilities.map(|o| o.name().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_checked_against_the_cores() {
        assert_eq!(threads_within(None, 6).unwrap(), 6);
        assert_eq!(threads_within(Some(24), 6).unwrap(), 24);
        assert!(matches!(threads_within(Some(0), 6), Err(SessionError::NoThreads)));
        let err = threads_within(Some(25), 6).unwrap_err();
        assert!(matches!(err, SessionError::TooManyThreads { threads: 25, cap: 24, cores: 6 }), "{err}");
        assert!(err.to_string().contains("pass at most 24"), "{err}");
        let err = threads_within(Some(usize::MAX), 8).unwrap_err();
        assert!(matches!(err, SessionError::TooManyThreads { .. }));
        // One core still allows a few threads.
        assert_eq!(threads_within(Some(4), 1).unwrap(), 4);
    }

    #[test]
    fn a_failed_allocation_is_not_called_a_bad_model() {
        let path = Path::new("m.onnx");
        let load = |reason: &str| BuildError::Load(reason.to_string());
        let oom = "Failed to allocate memory for requested buffer of size 4096";
        assert!(matches!(session_error(path, 0, load(oom)), SessionError::OutOfMemory { sessions: 1, .. }));
        assert!(matches!(
            session_error(path, 7, load("std::bad_alloc")),
            SessionError::OutOfMemory { sessions: 8, .. }
        ));
        let parse = "Load model from memory failed:Protobuf parsing failed.";
        assert!(matches!(session_error(path, 0, load(parse)), SessionError::NotOnnx { .. }));
        // Later sessions load the bytes the first one accepted: a failure there is not the file's fault.
        let later = session_error(path, 3, load("some other failure"));
        assert!(matches!(later, SessionError::Worker { index: 3, .. }), "{later}");
        assert!(later.to_string().contains("--threads"));
        let setup = session_error(path, 0, BuildError::Setup(SessionError::CudaNotBuilt));
        assert!(matches!(setup, SessionError::CudaNotBuilt));
    }
}
