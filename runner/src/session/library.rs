//! Finding and loading the ONNX Runtime shared library, and the execution providers, in one place.
//!
//! The library is loaded at run time (ort's `load-dynamic`), so the runner builds without it. It is looked
//! up as `--ort-lib PATH`, else `ORT_DYLIB_PATH`, else `.ort/lib/libonnxruntime.so.1.31.1` in the
//! repository (found by walking up from the current folder and from the executable's folder), else the
//! `onnxruntime` wheel's copy in the Python environment the runner is installed in (the `segmenter-runner`
//! wheel depends on it; see [`imaging::site_packages`]). `ort::init()` would panic on a missing library, so
//! only `ort::init_from` is used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::ExecutionProviderDispatch;

use super::error::{flat, SessionError, LIBRARY_FILE, REPO_LIBRARY_DIR};

/// The folder of the library inside the `onnxruntime` (and `onnxruntime-gpu`) wheel, in site-packages.
const WHEEL_DIR: &str = "onnxruntime/capi";

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutionDevice {
    #[default]
    Cpu,
    Cuda,
}

/// Every folder from `start` up to the root.
fn ancestors_of(start: Option<PathBuf>) -> Vec<PathBuf> {
    start.map(|s| s.ancestors().map(Path::to_path_buf).collect()).unwrap_or_default()
}

/// The library to load: `explicit` (`--ort-lib`), else `ORT_DYLIB_PATH`, else the repository's copy, else
/// the wheel's.
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
    if let Some(wheel) = imaging::site_packages::find(&format!("{WHEEL_DIR}/{LIBRARY_FILE}")) {
        return Ok(wheel);
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
pub(crate) fn execution_providers(
    device: ExecutionDevice,
) -> Result<Vec<ExecutionProviderDispatch>, SessionError> {
    match device {
        ExecutionDevice::Cpu => Ok(Vec::new()),
        #[cfg(feature = "cuda")]
        ExecutionDevice::Cuda => Ok(vec![ort::ep::CUDA::default().build().error_on_failure()]),
        #[cfg(not(feature = "cuda"))]
        ExecutionDevice::Cuda => Err(SessionError::CudaNotBuilt),
    }
}
