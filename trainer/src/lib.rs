//! Training half of the segmenter: fits the fixed network on one image and its mask with candle, plots the
//! loss, and exports the weights as a portable ONNX graph.

pub mod bioimageio;
pub mod checkpoint;
pub mod data;
pub mod export;
pub mod fsutil;
pub mod model;
pub mod ops;
pub mod plot;
pub mod train;
pub mod triton;
