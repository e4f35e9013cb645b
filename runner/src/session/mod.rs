//! ONNX Runtime sessions of a model: [`library`] finds and loads the shared library and sets up the
//! execution providers; [`graph`] checks the model's input, outputs and tiling; [`worker`] runs forward
//! passes; [`Model`] holds the sessions, one per thread, built as plans need them.

pub mod error;
pub mod graph;
pub mod library;
pub mod worker;

use std::path::{Path, PathBuf};

use imaging::files;
use imaging::tiles::Tiling;
use ort::environment::Environment;
use ort::session::Session;

use error::{flat, SessionError, CORES_MULTIPLE};
use graph::Names;
use library::{environment, execution_providers, resolve_library, ExecutionDevice};
use worker::{BatchOutput, Wanted, Worker};

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

/// A loaded, validated model: on the CPU, up to one single-threaded session per thread, which take the
/// tiles in turn (tiles are independent; one thread per small pass avoids ONNX Runtime's per-operator
/// synchronisation between threads, which a busy machine punishes), and, built when first needed, one
/// session of every thread for the untiled reference pass. Worker sessions beyond the first are built
/// when a plan first needs them, so a small image never pays for sessions it cannot use.
pub struct Model {
    /// How the model must be tiled, as its metadata declares.
    pub tiling: Tiling,
    /// The name of the foreground class, from the model's `classes` metadata.
    pub foreground_class: String,
    /// Every class's name, one per output channel (from the `classes` metadata, or numbered).
    pub class_names: Vec<String>,
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

impl Model {
    /// Reads and loads the model file at `path` (a regular file: a FIFO or device is refused unopened).
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Model, SessionError> {
        if std::fs::metadata(path).is_ok() {
            files::check_input("--model", path)?;
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
        let names = graph::validate(&first, path)?;
        let tiling = graph::tiling(&first, path)?;
        let foreground_class = graph::foreground_class(&first);
        let class_names = graph::class_names(&first, names.classes);
        Ok(Model {
            tiling,
            foreground_class,
            class_names,
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

    /// Workers for a plan of `passes` forward passes: one per worker session, at most `passes` and at most
    /// one per thread; sessions are built on first need and kept for later plans.
    pub fn workers_for(&mut self, wanted: Wanted, passes: usize) -> Result<Vec<Worker<'_>>, SessionError> {
        let needed = passes.clamp(1, self.max_workers);
        while self.workers.len() < needed {
            let index = self.workers.len();
            let session = build_session(&self.env, &self.bytes, self.device, self.worker_threads)
                .map_err(|reason| session_error(&self.path, index, reason))?;
            self.workers.push(session);
        }
        let names = &self.names;
        self.workers[..needed].iter_mut().map(|session| Worker::new(session, names, wanted)).collect()
    }

    /// Worker sessions built so far (each holds the model's weights and its own buffers).
    pub fn worker_sessions(&self) -> usize {
        self.workers.len()
    }

    /// A worker on the session that uses every thread for one image-wide pass (the untiled reference). With
    /// one thread, or on a GPU, that is the first worker.
    pub fn reference_worker(&mut self, wanted: Wanted) -> Result<Worker<'_>, SessionError> {
        if self.threads == 1 || self.device != ExecutionDevice::Cpu {
            return Worker::new(&mut self.workers[0], &self.names, wanted);
        }
        if self.reference.is_none() {
            let session = build_session(&self.env, &self.bytes, self.device, self.threads)
                .map_err(|reason| session_error(&self.path, self.workers.len(), reason))?;
            self.reference = Some(session);
        }
        let session = self.reference.as_mut().expect("built above");
        Worker::new(session, &self.names, wanted)
    }

    /// The model's class count: its outputs' channels (2 to [`graph::MAX_CLASSES`]).
    pub fn classes(&self) -> usize {
        self.names.classes
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
        let out = Worker::new(&mut self.workers[0], &self.names, wanted)?.run(input, batch, height, width)?;
        Ok(BatchOutput {
            logits: out.logits()?.map(<[f32]>::to_vec),
            probabilities: out.probabilities()?.map(<[f32]>::to_vec),
        })
    }
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
