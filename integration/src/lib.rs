//! The ONNX models the runner's tests load from `runner/tests/data/models/`: random networks exported by
//! the trainer, and graphs edited into shapes the runner must refuse. They are files so that the runner
//! builds and tests without the trainer; `tests/runner_models.rs` checks that the committed files are what
//! this code makes today, and `cargo run -p integration --example write_runner_models` rewrites them.

pub mod mosaic;

use candle_core::Device;
use candle_onnx::onnx::{
    tensor_proto::DataType,
    tensor_shape_proto::{dimension::Value as Dim, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use prost::Message;
use trainer::checkpoint::TrainingSummary;
use trainer::model::{Normalization, SegNet};

/// Input normalisation of the test networks: not the identity, so the graph's Sub/Div are exercised.
pub const NORMALIZATION: Normalization = Normalization { mean: [0.45, 0.5, 0.4], std: [0.25, 0.2, 0.3] };

/// The seeds of the random networks the runner's tests use.
pub const SEEDS: [u64; 6] = [2, 3, 4, 5, 7, 11];

/// Where the runner's tests find the models, relative to the workspace root.
pub const MODELS_DIR: &str = "runner/tests/data/models";

pub fn net(seed: u64) -> SegNet {
    SegNet::random(seed, NORMALIZATION, &Device::Cpu).expect("random network")
}

/// The ONNX bytes of a network, as `trainer export` writes them.
pub fn onnx_bytes(net: &SegNet) -> Vec<u8> {
    trainer::export::to_onnx_bytes(net, &TrainingSummary::default()).expect("export")
}

/// The seed of the three-class random network (`net3_5.onnx`), whose classes are numbered
/// (`background,class1,class2`).
pub const THREE_CLASS_SEED: u64 = 5;

/// A random network with `classes` output channels.
pub fn net_with_classes(classes: usize, seed: u64) -> SegNet {
    SegNet::random_with_classes(classes, seed, NORMALIZATION, &Device::Cpu).expect("random network")
}

/// `net_3.onnx` with its input's type changed by `edit`.
fn with_input(edit: impl FnOnce(&mut type_proto::Tensor)) -> Vec<u8> {
    let mut model = ModelProto::decode(onnx_bytes(&net(3)).as_slice()).expect("own export decodes");
    let input = &mut model.graph.as_mut().expect("a graph").input[0];
    match input.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        Some(type_proto::Value::TensorType(tensor)) => edit(tensor),
        _ => panic!("the exported input is a tensor"),
    }
    model.encode_to_vec()
}

/// `net_2.onnx` with every convolution weight NaN: its logits are NaN everywhere.
fn nan_weights() -> Vec<u8> {
    let mut model = ModelProto::decode(onnx_bytes(&net(2)).as_slice()).expect("own export decodes");
    for tensor in &mut model.graph.as_mut().expect("a graph").initializer {
        if tensor.dims.len() == 4 {
            tensor.float_data.iter_mut().for_each(|v| *v = f32::NAN);
            tensor.raw_data = tensor.raw_data.chunks(4).flat_map(|_| f32::NAN.to_le_bytes()).collect();
        }
    }
    model.encode_to_vec()
}

/// A valid one-node graph `logits = Identity(image)` with the given input element type and dims (0 for a
/// dynamic dimension): it loads in ONNX Runtime, so only the runner's own checks can refuse it.
fn identity(elem_type: DataType, dims: &[i64]) -> Vec<u8> {
    let value_info = |name: &str| ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| Dimension {
                            value: Some(if d > 0 {
                                Dim::DimValue(d)
                            } else {
                                Dim::DimParam(format!("d{i}"))
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            name: "identity".into(),
            node: vec![NodeProto {
                op_type: "Identity".into(),
                input: vec!["image".into()],
                output: vec!["logits".into()],
                ..Default::default()
            }],
            input: vec![value_info("image")],
            output: vec![value_info("logits")],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// Every model file of the runner's tests: (file name, bytes).
pub fn runner_test_models() -> Vec<(String, Vec<u8>)> {
    let mut models: Vec<(String, Vec<u8>)> =
        SEEDS.iter().map(|&seed| (format!("net_{seed}.onnx"), onnx_bytes(&net(seed)))).collect();
    models
        .push((format!("net3_{THREE_CLASS_SEED}.onnx"), onnx_bytes(&net_with_classes(3, THREE_CLASS_SEED))));
    models.push(("nan_weights.onnx".into(), nan_weights()));
    models.push(("int64_input.onnx".into(), with_input(|t| t.elem_type = DataType::Int64 as i32)));
    models.push((
        "four_channel_input.onnx".into(),
        with_input(|t| t.shape.as_mut().expect("a shape").dim[1].value = Some(Dim::DimValue(4))),
    ));
    models.push(("identity_int64.onnx".into(), identity(DataType::Int64, &[0, 3, 0, 0])));
    models.push(("identity_one_channel.onnx".into(), identity(DataType::Float, &[0, 1, 0, 0])));
    models.push(("identity_three_dims.onnx".into(), identity(DataType::Float, &[0, 3, 0])));
    models.push(("identity_fixed_size.onnx".into(), identity(DataType::Float, &[1, 3, 256, 256])));
    models
}
