//! Training half of the segmenter: fits the fixed network on image/mask pairs with candle, validates it on
//! held-out data, plots the loss and the validation IoU, and exports the weights as a portable ONNX graph.

/// What `--version` prints after the name: the package version and the commit built from (see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GIT_COMMIT"), ")");

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod export;
pub mod model;
pub mod ops;
pub mod optim;
pub mod outputs;
pub mod plot;
pub mod train;
pub mod validate;
