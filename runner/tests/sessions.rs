//! Worker sessions are built only as a plan needs them, `--threads` is bounded, and loading errors are one
//! line naming the flag.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use runner::session::error::{SessionError, CORES_MULTIPLE};
use runner::session::worker::Wanted;
use runner::session::{check_threads, Model, ModelOptions};

const WANTED: Wanted = Wanted { logits: true, probabilities: false };

#[test]
fn worker_sessions_are_built_only_for_the_batches_of_a_plan() {
    let bytes = common::model("net_5");
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = (cores * CORES_MULTIPLE).min(8);
    let mut model = common::session(&bytes, threads);
    assert_eq!(model.worker_sessions(), 1, "sessions were built before any plan needed them");
    assert_eq!(model.workers_for(WANTED, 1).unwrap().len(), 1);
    assert_eq!(model.worker_sessions(), 1);
    assert_eq!(model.workers_for(WANTED, 3).unwrap().len(), 3.min(threads));
    assert_eq!(model.worker_sessions(), 3.min(threads));
    // Never more than one per thread, whatever the plan.
    assert_eq!(model.workers_for(WANTED, 1000).unwrap().len(), threads);
    assert_eq!(model.worker_sessions(), threads);
    // Sessions are kept: a smaller plan reuses them.
    assert_eq!(model.workers_for(WANTED, 2).unwrap().len(), 2.min(threads));
    assert_eq!(model.worker_sessions(), threads);

    // The passes work: one 1x3x16x16 pass on each.
    let input = vec![0.5f32; 3 * 16 * 16];
    for mut pass in model.workers_for(WANTED, 2).unwrap() {
        let out = pass.run(&input, 1, 16, 16).unwrap();
        assert_eq!(out.logits().unwrap().unwrap().len(), 2 * 16 * 16);
    }
}

#[test]
fn too_many_threads_are_refused_before_any_session_is_built() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let cap = cores * CORES_MULTIPLE;
    assert_eq!(check_threads(Some(cap)).unwrap(), cap);
    let bytes = common::model("net_5");
    for threads in [cap + 1, 1 << 20, usize::MAX] {
        let options = ModelOptions { threads: Some(threads), ..ModelOptions::default() };
        let err = Model::from_bytes(&bytes, Path::new("model.onnx"), &options).unwrap_err();
        assert!(matches!(err, SessionError::TooManyThreads { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("--threads {threads} is more than {cap}")), "{err}");
    }
    let options = ModelOptions { threads: Some(0), ..ModelOptions::default() };
    let err = Model::from_bytes(&bytes, Path::new("model.onnx"), &options).unwrap_err();
    assert!(matches!(err, SessionError::NoThreads), "{err}");
}

#[test]
fn a_file_that_is_not_onnx_is_one_line_naming_the_flag() {
    let options = ModelOptions { threads: Some(1), ..ModelOptions::default() };
    for bytes in [&b"definitely not protobuf \xff\xff\xff"[..], b"", &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
        let err = Model::from_bytes(bytes, Path::new("dir/model.onnx"), &options).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SessionError::NotOnnx { .. }), "{message}");
        assert!(message.starts_with("--model dir/model.onnx is not a valid ONNX model ("), "{message}");
        assert!(!message.contains('\n'), "{message}");
        for cpp in [".cc:", ".h:", "onnxruntime::", "Stacktrace"] {
            assert!(!message.contains(cpp), "C++ detail `{cpp}` in: {message}");
        }
    }
}

#[test]
fn a_fifo_model_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.onnx");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let options = ModelOptions { threads: Some(1), ..ModelOptions::default() };
        sender.send(Model::load(&fifo, &options).map(|_| ()).unwrap_err().to_string())
    });
    let message = receiver.recv_timeout(Duration::from_secs(10)).expect("blocked reading the FIFO");
    assert!(message.starts_with("--model ") && message.contains("FIFO"), "{message}");

    let options = ModelOptions { threads: Some(1), ..ModelOptions::default() };
    let message = Model::load(dir.path(), &options).unwrap_err().to_string();
    assert!(message.contains("is a folder"), "{message}");
    let message = Model::load(&dir.path().join("none.onnx"), &options).unwrap_err().to_string();
    assert!(message.starts_with("--model: cannot read model "), "{message}");
    assert!(message.contains("trainer export"), "{message}");
}

#[test]
fn an_ort_lib_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = runner::session::library::resolve_library(Some(dir.path())).unwrap_err();
    assert!(matches!(err, SessionError::LibraryNotFile { origin: "--ort-lib", .. }), "{err}");
    let err = runner::session::library::resolve_library(Some(&dir.path().join("none.so"))).unwrap_err();
    assert!(matches!(err, SessionError::LibraryMissing { origin: "--ort-lib", .. }), "{err}");
}
