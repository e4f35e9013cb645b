//! Prediction half of the segmenter: runs an exported model.onnx through ONNX Runtime over whole images of
//! any size, by exact overlapping tiles within a fixed pixel budget per forward pass, streaming images
//! larger than memory band by band.
//!
//! Stages: `source` (rows from image files) -> `predict` (tile plan from `tiling`, forward passes from
//! `session`) -> `render` (overlay, error map) and `metrics` -> `sink` (rows to files); `pipeline` runs one
//! image through them; `io` is the whole-image convenience layer.

pub mod batch;
pub mod io;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod predict;
pub mod render;
pub mod report;
pub mod session;
pub mod sink;
pub mod source;
pub mod tiling;
