//! Prediction half of the segmenter: runs an exported model.onnx through ONNX Runtime over whole images of
//! any size, by exact overlapping tiles within a fixed pixel budget per forward pass.

pub mod batch;
pub mod io;
pub mod metrics;
pub mod outputs;
pub mod predict;
pub mod report;
pub mod session;
pub mod tiling;
