//! The export: the trained network as a self-describing ONNX graph that ONNX Runtime (the runner) and
//! candle-onnx both evaluate to the same logits as [`SegNet::forward`], and the packages built from it.
//!
//! - this module: the ONNX graph and the file;
//! - [`bioimageio`]: the bioimage.io model package; [`triton`]: the Triton model repository entry;
//! - [`name`] and [`license`]: the rules for `--name` (one rule for every format) and `--license` (an SPDX
//!   identifier, from the list in `spdx.rs`);
//! - [`run`]: `trainer export` as one call, from an [`ExportRequest`] (what the CLI parsed) to an
//!   [`ExportReport`]: every check before any file is written.
//!
//! The graph is built from candle-onnx's protobuf types and encoded with prost. It keeps the input
//! normalisation as two ops (Sub, Div) instead of folding it into conv1: conv1 zero-pads in normalised
//! space, so a folded graph would differ on border pixels.

pub mod bioimageio;
pub mod license;
pub mod name;
mod request;
pub mod spdx;
pub mod triton;

pub use request::{run, ExportReport, ExportRequest, PackageOptions, TritonTarget, DEFAULT_OUTPUT};

use std::fmt;
use std::path::{Path, PathBuf};

use imaging::files::FileError;

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

use crate::checkpoint::{Checkpoint, CheckpointError, TrainingSummary};
use crate::model::SegNet;
use imaging::classes::ClassList;
use imaging::tiles::{HALO, PIXEL_BUDGET, RECEPTIVE_RADIUS};

/// ONNX IR version and default-domain opset of the exported file (ONNX Runtime 1.31 and candle-onnx both
/// read this pair).
pub const IR_VERSION: i64 = 8;
pub const OPSET_VERSION: i64 = 17;

/// Names of the graph's input and outputs: the runner binds to these.
pub const INPUT_NAME: &str = "image";
pub const LOGITS_NAME: &str = "logits";
pub const PROBABILITIES_NAME: &str = "probabilities";

/// The symbolic (dynamic) dimensions of the input and outputs.
const DYNAMIC_DIMS: [&str; 3] = ["batch", "height", "width"];

const MEAN_NAME: &str = "normalization.mean";
const STD_NAME: &str = "normalization.std";
const SCALES_NAME: &str = "upsample.scales";

const MODEL_DOC: &str =
    "Foreground/background segmenter. Feed float32 RGB (N,3,H,W) = bytes / 255 with even H \
     and W; read `logits` or `probabilities` (N,2,H,W), class 1 = foreground.";
const GRAPH_DOC: &str =
    "Two-class segmentation FCN: (x - mean) / std -> conv3x3/16 -> ReLU -> conv3x3/32 -> ReLU \
     -> MaxPool 2x2 -> conv3x3/16 -> ReLU -> Resize 2x nearest -> conv5x5/2";

/// Why an export failed. Every message is one line naming the flag or file to change.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("checkpoint {path} does not exist; train a model first (`trainer train`) or pass --checkpoint")]
    MissingCheckpoint { path: PathBuf },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot read weight `{name}` of the network: {reason}")]
    Weight { name: String, reason: String },
    #[error("weight `{name}` is NaN or infinite (training diverged); retrain with a lower learning rate")]
    NonFinite { name: String },
    /// The ONNX file could not be written (or its path is refused): the message names `--output`.
    #[error(transparent)]
    Write(#[from] FileError),
    #[error(transparent)]
    OverwritesCheckpoint(#[from] OverwritesCheckpoint),
    #[error(transparent)]
    Name(#[from] name::NameError),
    #[error(transparent)]
    License(#[from] license::LicenseError),
    #[error(transparent)]
    Package(#[from] bioimageio::PackageError),
    #[error(transparent)]
    Triton(#[from] triton::TritonError),
}

/// An export target that is the checkpoint being exported (the same file, whatever the spelling of its path
/// or the links to it): writing it would destroy the only copy of the trained weights.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{flag} {} is the same file as --checkpoint {}: it is the checkpoint being exported; choose another {flag}",
    .path.display(),
    .checkpoint.display()
)]
pub struct OverwritesCheckpoint {
    /// The flag the target comes from (`--output`, `--bioimageio`, `--triton`).
    pub flag: String,
    pub path: PathBuf,
    pub checkpoint: PathBuf,
}

/// What [`export_checkpoint`] and [`write_onnx`] wrote. Its `Display` is one line for the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxReport {
    pub output: PathBuf,
    pub bytes: usize,
    pub summary: TrainingSummary,
}

impl fmt::Display for OnnxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} ({} bytes; {} iterations, final loss {:.4})",
            self.output.display(),
            self.bytes,
            self.summary.iterations,
            self.summary.final_loss
        )
    }
}

/// Loads `checkpoint` and writes the network's ONNX graph to `output` atomically: on any failure the file
/// previously at `output` (if any) is left as it was.
pub fn export_checkpoint(checkpoint: &Path, output: &Path) -> Result<OnnxReport, ExportError> {
    ensure_not_checkpoint(OUTPUT_FLAG, checkpoint, output)?;
    let loaded = load_checkpoint(checkpoint)?;
    let bytes = to_onnx_bytes(&loaded.net, &loaded.summary)?;
    write_onnx(output, &bytes, loaded.summary)
}

/// The flag that names the ONNX file in messages.
const OUTPUT_FLAG: &str = "--output";

/// Writes encoded ONNX `bytes` to `output` atomically, through symbolic links (see `imaging::files`).
pub fn write_onnx(output: &Path, bytes: &[u8], summary: TrainingSummary) -> Result<OnnxReport, ExportError> {
    imaging::files::write_atomic(OUTPUT_FLAG, output, bytes)?;
    Ok(OnnxReport { output: output.to_path_buf(), bytes: bytes.len(), summary })
}

/// Loads a checkpoint on the CPU, naming a missing file as such (the usual mistake: nothing trained yet).
pub fn load_checkpoint(checkpoint: &Path) -> Result<Checkpoint, ExportError> {
    if std::fs::symlink_metadata(checkpoint).is_err() {
        return Err(ExportError::MissingCheckpoint { path: checkpoint.to_path_buf() });
    }
    Checkpoint::load(checkpoint, &Device::Cpu).map_err(ExportError::Checkpoint)
}

/// Refuses an export target (given as `flag`) that is the checkpoint itself: the same path, or the same
/// file through a symbolic or hard link.
pub fn ensure_not_checkpoint(
    flag: &str,
    checkpoint: &Path,
    target: &Path,
) -> Result<(), OverwritesCheckpoint> {
    if imaging::files::same_file(checkpoint, target) {
        return Err(OverwritesCheckpoint {
            flag: flag.to_string(),
            path: target.to_path_buf(),
            checkpoint: checkpoint.to_path_buf(),
        });
    }
    Ok(())
}

/// The encoded ONNX file (protobuf bytes) for `net`.
pub fn to_onnx_bytes(net: &SegNet, summary: &TrainingSummary) -> Result<Vec<u8>, ExportError> {
    Ok(build_model(net, summary)?.encode_to_vec())
}

/// The ONNX model of `net`: input `image` float32 (N,3,H,W) RGB in \[0, 1\]; outputs `logits` and
/// `probabilities` (softmax over the class axis), both float32 (N,C,H,W) for C classes; N, H and W dynamic.
pub fn build_model(net: &SegNet, summary: &TrainingSummary) -> Result<ModelProto, ExportError> {
    let classes = net.classes();
    let norm = net.normalization;
    let mut initializer = vec![
        f32_tensor(MEAN_NAME, &[1, 3, 1, 1], &norm.mean),
        f32_tensor(STD_NAME, &[1, 3, 1, 1], &norm.std),
        f32_tensor(SCALES_NAME, &[4], &[1.0, 1.0, 2.0, 2.0]),
    ];
    for (name, tensor) in net.named_tensors() {
        let dims: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
        let values = tensor_values(&name, &tensor)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite { name });
        }
        initializer.push(f32_tensor(&name, &dims, &values));
    }

    // Same order of ops as `SegNet::forward`; each node's output is named after the node.
    let mut nodes = vec![
        node("Sub", "normalize/sub", &[INPUT_NAME, MEAN_NAME], vec![]),
        node("Div", "normalize/div", &["normalize/sub", STD_NAME], vec![]),
    ];
    let mut x = "normalize/div".to_string();
    for (i, spec) in net.layers().iter().enumerate() {
        if i == 2 {
            let attrs = vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2])];
            nodes.push(node("MaxPool", "pool", &[&x], attrs));
            x = "pool".into();
        }
        if i == 3 {
            // The only Resize settings equal to candle's upsample_nearest2d (and accepted by candle-onnx);
            // the ONNX defaults differ.
            let attrs = vec![
                string_attr("mode", "nearest"),
                string_attr("coordinate_transformation_mode", "asymmetric"),
                string_attr("nearest_mode", "floor"),
            ];
            nodes.push(node("Resize", "upsample", &[&x, "", SCALES_NAME], attrs));
            x = "upsample".into();
        }
        let p = spec.padding as i64;
        let k = spec.kernel as i64;
        let conv_out = if spec.relu { format!("{}/conv", spec.name) } else { LOGITS_NAME.to_string() };
        let attrs = vec![ints_attr("kernel_shape", &[k, k]), ints_attr("pads", &[p, p, p, p])];
        nodes.push(node("Conv", &conv_out, &[&x, &spec.weight_name(), &spec.bias_name()], attrs));
        x = conv_out;
        if spec.relu {
            let relu_out = format!("{}/relu", spec.name);
            nodes.push(node("Relu", &relu_out, &[&x], vec![]));
            x = relu_out;
        }
    }
    nodes.push(node("Softmax", PROBABILITIES_NAME, &[LOGITS_NAME], vec![int_attr("axis", 1)]));

    // Two classes keep the seed's descriptions, so that their file is the seed's byte for byte.
    let (model_doc, graph_doc) = if classes == 2 {
        (MODEL_DOC.to_string(), GRAPH_DOC.to_string())
    } else {
        (
            format!(
                "{classes}-class segmenter. Feed float32 RGB (N,3,H,W) = bytes / 255 with even H and W; read \
                 `logits` or `probabilities` (N,{classes},H,W), class index = position in the `classes` metadata."
            ),
            GRAPH_DOC.replace("Two-class", &format!("{classes}-class")).replace("conv5x5/2", &format!("conv5x5/{classes}")),
        )
    };
    let graph = GraphProto {
        name: "segnet".into(),
        doc_string: graph_doc,
        node: nodes,
        initializer,
        input: vec![tensor_value_info(INPUT_NAME, 3)],
        output: vec![tensor_value_info(LOGITS_NAME, classes), tensor_value_info(PROBABILITIES_NAME, classes)],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET_VERSION }],
        producer_name: "trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: model_doc,
        graph: Some(graph),
        metadata_props: metadata(net, summary)
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key: key.into(), value })
            .collect(),
        ..Default::default()
    })
}

/// The key/value metadata stored in the model: everything a consumer needs to feed it correctly, and
/// what produced the weights.
pub fn metadata(net: &SegNet, summary: &TrainingSummary) -> Vec<(&'static str, String)> {
    let list = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    let classes = class_list(net, summary);
    let n = classes.len();
    let mut meta = vec![("classes", classes.names_text())];
    // Colours only where they are not the two-class default (whose file stays the seed's).
    if !classes.is_default_two() {
        meta.push(("class_colors", classes.colors_text()));
    }
    meta.extend([
        (
            "input",
            format!(
                "{INPUT_NAME}: float32 RGB (N,3,H,W) scaled to [0,1] (bytes / 255); \
                 normalisation is inside the graph"
            ),
        ),
        (
            "outputs",
            format!(
                "{LOGITS_NAME}: float32 (N,{n},H,W); {PROBABILITIES_NAME}: float32 (N,{n},H,W), \
                 softmax over axis 1; class index = position in `classes`"
            ),
        ),
        ("halo_px", HALO.to_string()),
        ("receptive_radius_px", RECEPTIVE_RADIUS.to_string()),
        ("pixel_budget", PIXEL_BUDGET.to_string()),
        ("even_hw_required", "true".into()),
        ("producer", format!("trainer {}", env!("CARGO_PKG_VERSION"))),
        ("parameter_count", net.parameter_count().to_string()),
        ("normalization_mean", list(&net.normalization.mean)),
        ("normalization_std", list(&net.normalization.std)),
        ("training_iterations", summary.iterations.to_string()),
        ("training_final_loss", summary.final_loss.to_string()),
        ("training_image", summary.image.clone()),
        ("training_mask", summary.mask.clone()),
        ("training_batch", summary.batch.to_string()),
        ("training_crop", summary.crop.to_string()),
        ("training_learning_rate", summary.learning_rate.to_string()),
        ("training_seed", summary.seed.to_string()),
    ]);
    meta
}

/// The classes of an export: the checkpoint's names and colours, or numbered ones where they do not
/// describe the network's outputs (a library caller's summary).
pub fn class_list(net: &SegNet, summary: &TrainingSummary) -> ClassList {
    if summary.classes.len() == net.classes() {
        summary.classes.clone()
    } else {
        ClassList::numbered(net.classes())
    }
}

/// One tensor of a graph's signature: its name and the fixed channel count of its (N, C, H, W) shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSignature {
    pub name: String,
    pub channels: usize,
}

/// The names and channel counts of a graph's input and outputs, in graph order. The package writers
/// (bioimage.io, Triton) describe the model from this, so their descriptions follow the graph by
/// construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub input: TensorSignature,
    pub outputs: Vec<TensorSignature>,
}

/// The signature of a graph built by [`build_model`]: one (N, C, H, W) float input, (N, C, H, W) outputs.
pub fn signature(model: &ModelProto) -> Signature {
    let channels = |info: &ValueInfoProto| -> usize {
        let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return 0;
        };
        match t.shape.as_ref().and_then(|s| s.dim.get(1)).and_then(|d| d.value.as_ref()) {
            Some(tensor_shape_proto::dimension::Value::DimValue(c)) => *c as usize,
            _ => 0,
        }
    };
    let entry = |info: &ValueInfoProto| TensorSignature { name: info.name.clone(), channels: channels(info) };
    let graph = model.graph.as_ref().expect("build_model always sets the graph");
    Signature { input: entry(&graph.input[0]), outputs: graph.output.iter().map(entry).collect() }
}

fn tensor_values(name: &str, tensor: &Tensor) -> Result<Vec<f32>, ExportError> {
    let weight_err =
        |e: candle_core::Error| ExportError::Weight { name: name.to_string(), reason: e.to_string() };
    tensor
        .to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(weight_err)
}

/// A float32 initializer stored as little-endian `raw_data`.
fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float32 (N, channels, H, W) value with N, H and W symbolic.
fn tensor_value_info(name: &str, channels: usize) -> ValueInfoProto {
    let dim_param = |p: &str| tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(p.into())),
        ..Default::default()
    };
    let [batch, height, width] = DYNAMIC_DIMS.map(dim_param);
    let channels = tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(channels as i64)),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim: vec![batch, channels, height, width] }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A node whose single output and node name are both `output`.
fn node(op_type: &str, output: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn string_attr(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Normalization, PARAMETER_COUNT};

    fn net() -> SegNet {
        let norm = Normalization { mean: [0.25, 0.5, 0.75], std: [0.5, 0.25, 0.125] };
        SegNet::random(3, norm, &Device::Cpu).unwrap()
    }

    fn graph(model: &ModelProto) -> &GraphProto {
        model.graph.as_ref().unwrap()
    }

    fn meta(model: &ModelProto, key: &str) -> String {
        let entry = model.metadata_props.iter().find(|e| e.key == key);
        entry.unwrap_or_else(|| panic!("metadata `{key}` is missing")).value.clone()
    }

    fn dims(info: &ValueInfoProto) -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) = &info.r#type.as_ref().unwrap().value else {
            panic!("{} is not a tensor", info.name)
        };
        assert_eq!(t.elem_type, DataType::Float as i32);
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                tensor_shape_proto::dimension::Value::DimValue(v) => v.to_string(),
                tensor_shape_proto::dimension::Value::DimParam(p) => p.clone(),
            })
            .collect()
    }

    #[test]
    fn header_names_the_opset_and_producer() {
        let model = build_model(&net(), &TrainingSummary::example()).unwrap();
        assert_eq!(model.ir_version, 8);
        assert_eq!(model.opset_import.len(), 1);
        assert_eq!((model.opset_import[0].domain.as_str(), model.opset_import[0].version), ("", 17));
        assert_eq!(model.producer_name, "trainer");
        assert_eq!(model.producer_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn ops_follow_the_network_in_order() {
        let model = build_model(&net(), &TrainingSummary::example()).unwrap();
        let ops: Vec<&str> = graph(&model).node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Sub", "Div", "Conv", "Relu", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Resize", "Conv",
                "Softmax"
            ]
        );
        // Every node reads only the graph input, initializers or earlier outputs (topological order).
        let mut known: Vec<String> = graph(&model).initializer.iter().map(|t| t.name.clone()).collect();
        known.push(INPUT_NAME.into());
        known.push(String::new());
        for n in &graph(&model).node {
            for input in &n.input {
                assert!(known.contains(input), "{} reads unknown `{input}`", n.name);
            }
            known.extend(n.output.iter().cloned());
        }
    }

    #[test]
    fn attributes_match_the_candle_ops() {
        let model = build_model(&net(), &TrainingSummary::example()).unwrap();
        let nodes = &graph(&model).node;
        let attr = |n: &NodeProto, name: &str| n.attribute.iter().find(|a| a.name == name).unwrap().clone();
        let convs: Vec<&NodeProto> = nodes.iter().filter(|n| n.op_type == "Conv").collect();
        for (conv, spec) in convs.iter().zip(crate::model::LAYERS) {
            let p = spec.padding as i64;
            assert_eq!(attr(conv, "pads").ints, [p, p, p, p], "{}", spec.name);
            assert_eq!(conv.input[1..], [spec.weight_name(), spec.bias_name()]);
        }
        let pool = nodes.iter().find(|n| n.op_type == "MaxPool").unwrap();
        assert_eq!(attr(pool, "kernel_shape").ints, [2, 2]);
        assert_eq!(attr(pool, "strides").ints, [2, 2]);
        let resize = nodes.iter().find(|n| n.op_type == "Resize").unwrap();
        assert_eq!(resize.input[1..], ["", SCALES_NAME]);
        assert_eq!(attr(resize, "mode").s, b"nearest");
        assert_eq!(attr(resize, "coordinate_transformation_mode").s, b"asymmetric");
        assert_eq!(attr(resize, "nearest_mode").s, b"floor");
        let softmax = nodes.last().unwrap();
        assert_eq!((softmax.input[0].as_str(), attr(softmax, "axis").i), (LOGITS_NAME, 1));
    }

    #[test]
    fn input_and_outputs_have_dynamic_batch_and_size() {
        let model = build_model(&net(), &TrainingSummary::example()).unwrap();
        let g = graph(&model);
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.input[0].name, INPUT_NAME);
        assert_eq!(dims(&g.input[0]), ["batch", "3", "height", "width"]);
        let outputs: Vec<(&str, Vec<String>)> = g.output.iter().map(|o| (o.name.as_str(), dims(o))).collect();
        let nchw = vec!["batch".to_string(), "2".into(), "height".into(), "width".into()];
        assert_eq!(outputs, [(LOGITS_NAME, nchw.clone()), (PROBABILITIES_NAME, nchw)]);
    }

    #[test]
    fn signature_lists_the_input_and_outputs_in_graph_order() {
        let sig = signature(&build_model(&net(), &TrainingSummary::example()).unwrap());
        let entry = |name: &str, channels| TensorSignature { name: name.into(), channels };
        assert_eq!(sig.input, entry(INPUT_NAME, 3));
        assert_eq!(sig.outputs, [entry(LOGITS_NAME, 2), entry(PROBABILITIES_NAME, 2)]);
    }

    #[test]
    fn initializers_hold_the_weights_and_normalization_as_raw_f32() {
        let net = net();
        let model = build_model(&net, &TrainingSummary::example()).unwrap();
        let inits = &graph(&model).initializer;
        let find = |name: &str| inits.iter().find(|t| t.name == name).unwrap();
        let floats = |t: &TensorProto| -> Vec<f32> {
            assert!(t.float_data.is_empty() && t.data_type == DataType::Float as i32);
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
        };
        for (name, tensor) in net.named_tensors() {
            let init = find(&name);
            assert_eq!(init.dims, tensor.dims().iter().map(|&d| d as i64).collect::<Vec<_>>());
            assert_eq!(floats(init), tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{name}");
        }
        assert_eq!(
            (find(MEAN_NAME).dims.clone(), floats(find(MEAN_NAME))),
            (vec![1, 3, 1, 1], vec![0.25, 0.5, 0.75])
        );
        assert_eq!(floats(find(STD_NAME)), [0.5, 0.25, 0.125]);
        assert_eq!(floats(find(SCALES_NAME)), [1.0, 1.0, 2.0, 2.0]);
        let weights: usize = net.named_tensors().iter().map(|(n, _)| floats(find(n)).len()).sum();
        assert_eq!(weights, PARAMETER_COUNT);
    }

    #[test]
    fn metadata_describes_input_classes_tiling_and_training() {
        let model = build_model(&net(), &TrainingSummary::example()).unwrap();
        assert_eq!(meta(&model, "classes"), "background,foreground");
        assert!(meta(&model, "input").contains("[0,1]"));
        assert_eq!(meta(&model, "halo_px"), "8");
        assert_eq!(meta(&model, "receptive_radius_px"), "7");
        assert_eq!(meta(&model, "pixel_budget"), "65536");
        assert_eq!(meta(&model, "even_hw_required"), "true");
        assert_eq!(meta(&model, "producer"), format!("trainer {}", env!("CARGO_PKG_VERSION")));
        assert_eq!(meta(&model, "normalization_mean"), "0.25,0.5,0.75");
        assert_eq!(meta(&model, "normalization_std"), "0.5,0.25,0.125");
        assert_eq!(meta(&model, "training_iterations"), "3000");
        assert_eq!(meta(&model, "training_final_loss"), "0.125");
        assert_eq!(meta(&model, "training_image"), "image.png");
        assert_eq!(meta(&model, "training_mask"), "mask.png");
        assert_eq!(meta(&model, "training_batch"), "4");
        assert_eq!(meta(&model, "training_crop"), "128");
        assert_eq!(meta(&model, "training_learning_rate"), "0.001");
        assert_eq!(meta(&model, "training_seed"), "7");
        let keys: Vec<&str> = model.metadata_props.iter().map(|e| e.key.as_str()).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "duplicate metadata keys: {keys:?}");
    }

    #[test]
    fn more_classes_widen_the_outputs_and_name_and_colour_them() {
        let net = SegNet::random_with_classes(3, 2, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let classes = ClassList::resolve(
            None,
            Some(vec!["background".into(), "nuclei".into(), "dab".into()]),
            Some(vec![[0, 0, 0], [0, 0, 255], [150, 75, 0]]),
        )
        .unwrap();
        let summary = TrainingSummary { classes, ..TrainingSummary::example() };
        let model = build_model(&net, &summary).unwrap();
        let entry = |name: &str, channels| TensorSignature { name: name.into(), channels };
        assert_eq!(signature(&model).outputs, [entry(LOGITS_NAME, 3), entry(PROBABILITIES_NAME, 3)]);
        assert_eq!(meta(&model, "classes"), "background,nuclei,dab");
        assert_eq!(meta(&model, "class_colors"), "#000000,#0000ff,#964b00");
        assert!(meta(&model, "outputs").contains("(N,3,H,W)"));
        assert!(model.doc_string.starts_with("3-class segmenter"));
        assert!(graph(&model).doc_string.ends_with("conv5x5/3"));
        // Two classes: no colours key (the seed's metadata).
        let two = build_model(&super::tests::net(), &TrainingSummary::example()).unwrap();
        assert!(two.metadata_props.iter().all(|e| e.key != "class_colors"));
        assert_eq!(two.doc_string, MODEL_DOC);
    }

    #[test]
    fn bytes_decode_back_to_the_same_model() {
        let (net, summary) = (net(), TrainingSummary::example());
        let bytes = to_onnx_bytes(&net, &summary).unwrap();
        assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), build_model(&net, &summary).unwrap());
        // The weights dominate: about 4 bytes per parameter.
        assert!(
            bytes.len() > 4 * PARAMETER_COUNT && bytes.len() < 4 * PARAMETER_COUNT + 8192,
            "{}",
            bytes.len()
        );
    }

    #[test]
    fn non_finite_weights_are_refused() {
        let net = net();
        let mut tensors: std::collections::HashMap<String, Tensor> =
            net.named_tensors().into_iter().collect();
        let w = tensors["conv2.weight"].clone();
        let bad = w.affine(0.0, f64::NAN).unwrap();
        tensors.insert("conv2.weight".into(), bad);
        let bad_net = SegNet::from_tensors(&tensors, net.normalization, &Device::Cpu).unwrap();
        let err = build_model(&bad_net, &TrainingSummary::example()).unwrap_err();
        assert!(err.to_string().contains("conv2.weight"), "{err}");
    }

    #[test]
    fn report_is_one_line() {
        let report = OnnxReport {
            output: PathBuf::from("models/model.onnx"),
            bytes: 43_210,
            summary: TrainingSummary::example(),
        };
        assert_eq!(
            report.to_string(),
            "wrote models/model.onnx (43210 bytes; 3000 iterations, final loss 0.1250)"
        );
    }
}
