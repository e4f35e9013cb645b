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
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

/// The ONNX Runtime release the runner is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The library file inside `.ort/lib/` (CPU) or `.ort/gpu/lib/` (CUDA).
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Where `just setup` (scripts/fetch_onnxruntime.sh) puts the CPU library, relative to the repository.
pub const REPO_LIBRARY_DIR: &str = ".ort/lib";

/// Names the exported graph uses (see trainer::export).
pub const INPUT_NAME: &str = "image";
pub const LOGITS_NAME: &str = "logits";
pub const PROBABILITIES_NAME: &str = "probabilities";

const HOW_TO_GET: &str =
    "run `just setup` (or scripts/fetch_onnxruntime.sh), or pass --ort-lib PATH, or set ORT_DYLIB_PATH";
const HOW_TO_GET_GPU: &str =
    "fetch the GPU build with `scripts/fetch_onnxruntime.sh gpu` and pass --ort-lib \
     .ort/gpu/lib/libonnxruntime.so.1.31.1 (it needs CUDA 13 and cuDNN 9), or use --device cpu";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("ONNX Runtime {ORT_VERSION} not found (no {REPO_LIBRARY_DIR}/{LIBRARY_FILE} above {searched}); {HOW_TO_GET}")]
    LibraryNotFound { searched: String },
    #[error("the ONNX Runtime library given by {origin} does not exist: {path}; {HOW_TO_GET}")]
    LibraryMissing { origin: &'static str, path: PathBuf },
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
    #[error("cannot read model {path}: {source}; export one with `trainer export` (or `just export`)")]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid ONNX model ({reason}); pass a model.onnx written by `trainer export`")]
    NotOnnx { path: PathBuf, reason: String },
    #[error("model {path} does not fit the runner: {reason}; pass a model.onnx written by `trainer export`")]
    Incompatible { path: PathBuf, reason: String },
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
    /// Intra-op threads; `None` uses every core this process may run on.
    pub threads: Option<usize>,
    /// The ONNX Runtime library; `None` looks it up (see the module docs).
    pub ort_lib: Option<PathBuf>,
}

/// An ONNX Runtime message on one line (some end in or contain newlines).
fn flat(error: &impl std::fmt::Display) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
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
    if path.is_file() {
        Ok(path)
    } else {
        Err(SessionError::LibraryMissing { origin, path })
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

/// A loaded, validated model.
pub struct Model {
    session: Session,
    input: String,
    logits: Option<String>,
    probabilities: Option<String>,
    pub device: ExecutionDevice,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("input", &self.input)
            .field("logits", &self.logits)
            .field("probabilities", &self.probabilities)
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
    /// Reads and loads the model file at `path`.
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Model, SessionError> {
        let bytes = std::fs::read(path)
            .map_err(|source| SessionError::ModelRead { path: path.to_path_buf(), source })?;
        Model::from_bytes(&bytes, path, options)
    }

    /// Loads a model from its bytes; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, options: &ModelOptions) -> Result<Model, SessionError> {
        let providers = execution_providers(options.device)?;
        let library = resolve_library(options.ort_lib.as_deref())?;
        let env = environment(&library)?;
        let configure = |e: ort::Error| SessionError::Configure(flat(&e));
        let threads = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .max(1);
        let mut builder = Session::builder(&env)
            .map_err(configure)?
            .with_intra_threads(threads)
            .map_err(|e| SessionError::Configure(flat(&e)))?;
        if !providers.is_empty() {
            builder =
                builder.with_execution_providers(providers).map_err(|e| SessionError::Cuda(flat(&e)))?;
        }
        let session = builder
            .commit_from_memory(bytes)
            .map_err(|e| SessionError::NotOnnx { path: path.to_path_buf(), reason: flat(&e) })?;

        let incompatible = |reason: String| SessionError::Incompatible { path: path.to_path_buf(), reason };
        let [input] = session.inputs() else {
            return Err(incompatible(format!(
                "it has {} inputs, expected one image",
                session.inputs().len()
            )));
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
        let logits = logits.map(|o| o.name().to_string());
        let probabilities = probabilities.map(|o| o.name().to_string());
        Ok(Model { session, input, logits, probabilities, device: options.device })
    }

    /// Whether the model computes probabilities itself (else the runner takes the softmax of the logits).
    pub fn has_probabilities(&self) -> bool {
        self.probabilities.is_some()
    }

    pub fn has_logits(&self) -> bool {
        self.logits.is_some()
    }

    /// One forward pass over `input`, (batch, 3, height, width) row-major RGB in [0, 1].
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<BatchOutput, SessionError> {
        let run_error = |reason: String| SessionError::Run { batch, height, width, reason };
        let tensor = TensorRef::from_array_view(([batch, 3, height, width], input))
            .map_err(|e| run_error(flat(&e)))?;
        let outputs =
            self.session.run(ort::inputs![self.input.as_str() => tensor]).map_err(|e| run_error(flat(&e)))?;
        let expected = [batch as i64, 2, height as i64, width as i64];
        let extract = |name: &Option<String>| -> Result<Option<Vec<f32>>, SessionError> {
            let Some(name) = name else { return Ok(None) };
            let value = outputs.get(name).ok_or_else(|| run_error(format!("output `{name}` is missing")))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| run_error(flat(&e)))?;
            if **shape != expected {
                return Err(run_error(format!(
                    "output `{name}` has shape {:?}, expected {expected:?}",
                    &**shape
                )));
            }
            Ok(Some(data.to_vec()))
        };
        Ok(BatchOutput { logits: extract(&self.logits)?, probabilities: extract(&self.probabilities)? })
    }
}
