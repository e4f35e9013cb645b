//! The exported ONNX graph, evaluated by candle-onnx, equals the candle forward pass; a bad checkpoint gives
//! a clear error and never replaces an existing model file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prost::Message;
use trainer::checkpoint::{Checkpoint, TrainingSummary};
use trainer::export::{self, ExportError};
use trainer::model::SegNet;

mod common;
use common::{summary, NORM};

/// Max |candle forward - candle-onnx evaluation of the exported bytes| for logits and probabilities.
fn max_diffs(net: &SegNet, onnx_bytes: &[u8], shape: (usize, usize, usize, usize)) -> (f32, f32) {
    let model = candle_onnx::onnx::ModelProto::decode(onnx_bytes).unwrap();
    let image = Tensor::rand(0f32, 1f32, shape, &Device::Cpu).unwrap();
    let expected = net.forward(&image).unwrap();
    let expected_probs = candle_nn::ops::softmax(&expected, 1).unwrap();
    let outputs =
        candle_onnx::simple_eval(&model, HashMap::from([(export::INPUT_NAME.to_string(), image)])).unwrap();
    let logits = &outputs[export::LOGITS_NAME];
    let probs = &outputs[export::PROBABILITIES_NAME];
    assert_eq!(logits.dims(), expected.dims());
    assert_eq!(probs.dims(), expected.dims());
    let diff = |a: &Tensor, b: &Tensor| {
        a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    };
    (diff(logits, &expected), diff(probs, &expected_probs))
}

#[test]
fn candle_onnx_evaluation_equals_the_candle_forward_pass() {
    for (seed, shape) in [(1, (2, 3, 16, 16)), (2, (1, 3, 24, 40)), (3, (1, 3, 2, 2)), (4, (1, 3, 256, 256))]
    {
        let net = SegNet::random(seed, NORM, &Device::Cpu).unwrap();
        let bytes = export::to_onnx_bytes(&net, &summary()).unwrap();
        let (logits, probs) = max_diffs(&net, &bytes, shape);
        eprintln!("{shape:?}: max abs diff logits {logits:e}, probabilities {probs:e}");
        assert!(logits <= 1e-5, "{shape:?}: logits differ by {logits}");
        assert!(probs <= 1e-5, "{shape:?}: probabilities differ by {probs}");
    }
}

#[test]
fn the_graph_works_for_the_default_summary() {
    // The runner's tests call exactly this.
    let net = SegNet::random(9, NORM, &Device::Cpu).unwrap();
    let bytes = export::to_onnx_bytes(&net, &TrainingSummary::default()).unwrap();
    let (logits, _) = max_diffs(&net, &bytes, (1, 3, 8, 12));
    assert!(logits <= 1e-5, "logits differ by {logits}");
}

#[test]
fn export_checkpoint_writes_the_checkpoint_network() {
    let dir = tempfile::tempdir().unwrap();
    let (ck_path, onnx_path) = (dir.path().join("checkpoint.safetensors"), dir.path().join("model.onnx"));
    let net = SegNet::random(5, NORM, &Device::Cpu).unwrap();
    Checkpoint { net, summary: summary(), adam: None, history: Default::default() }.save(&ck_path).unwrap();
    let report = export::export_checkpoint(&ck_path, &onnx_path).unwrap();
    let written = std::fs::read(&onnx_path).unwrap();
    assert_eq!(report.bytes, written.len());
    assert_eq!(report.output, onnx_path);
    assert_eq!(report.summary, summary());
    assert!(report.to_string().starts_with(&format!("wrote {}", onnx_path.display())), "{report}");
    // The file holds the checkpoint's weights: it evaluates like the network loaded from the checkpoint.
    let loaded = Checkpoint::load(&ck_path, &Device::Cpu).unwrap().net;
    let (logits, _) = max_diffs(&loaded, &written, (2, 3, 10, 6));
    assert!(logits <= 1e-5, "logits differ by {logits}");
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn export_error(checkpoint: &Path, output: &Path) -> ExportError {
    export::export_checkpoint(checkpoint, output).expect_err("the export should fail")
}

#[test]
fn a_missing_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.safetensors");
    let err = export_error(&missing, &dir.path().join("model.onnx"));
    assert!(matches!(err, ExportError::MissingCheckpoint { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nowhere.safetensors") && msg.contains("does not exist"), "{msg}");
    assert!(!dir.path().join("model.onnx").exists());
}

#[test]
fn a_corrupt_checkpoint_is_a_clear_error_and_keeps_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let (ck_path, onnx_path) = (dir.path().join("checkpoint.safetensors"), dir.path().join("model.onnx"));
    std::fs::write(&ck_path, b"definitely not safetensors").unwrap();
    let previous = b"the previous model".to_vec();
    std::fs::write(&onnx_path, &previous).unwrap();
    let msg = export_error(&ck_path, &onnx_path).to_string();
    assert!(msg.contains("checkpoint.safetensors is not a valid checkpoint"), "{msg}");
    assert_eq!(std::fs::read(&onnx_path).unwrap(), previous, "a failed export replaced the model");
}

#[test]
fn a_wrong_shaped_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good.safetensors"), dir.path().join("bad.safetensors"));
    let net = SegNet::random(6, NORM, &Device::Cpu).unwrap();
    Checkpoint { net, summary: summary(), adam: None, history: Default::default() }.save(&good).unwrap();
    // Same file with conv3.weight given a 5x5 kernel instead of 3x3, metadata kept.
    let bytes = std::fs::read(&good).unwrap();
    let metadata = safetensors::SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    tensors.insert(
        "conv3.weight".into(),
        Tensor::zeros((16, 32, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    std::fs::write(
        &bad,
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata).unwrap(),
    )
    .unwrap();
    let msg = export_error(&bad, &dir.path().join("model.onnx")).to_string();
    assert!(msg.contains("bad.safetensors") && msg.contains("conv3.weight"), "{msg}");
    assert!(msg.contains("[16, 32, 5, 5]") && msg.contains("[16, 32, 3, 3]"), "{msg}");
}

#[test]
fn an_unwritable_output_names_the_path_and_keeps_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let ck_path = dir.path().join("checkpoint.safetensors");
    let net = SegNet::random(7, NORM, &Device::Cpu).unwrap();
    Checkpoint { net, summary: summary(), adam: None, history: Default::default() }.save(&ck_path).unwrap();
    let output = dir.path().join("no_such_folder").join("model.onnx");
    let err = export_error(&ck_path, &output);
    assert!(matches!(err, ExportError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_folder"), "{err}");
}
