//! Prediction half of the segmenter: runs an exported model.onnx through ONNX Runtime over whole images of
//! any size, by exact overlapping tiles within a fixed pixel budget per forward pass, streaming images
//! larger than memory band by band.
//!
//! Stages: image rows from `imaging::source` -> [`predict`] (the tile plan from `imaging::tiles`, forward
//! passes on [`session`] workers) -> [`render`] (overlay, error map) and [`metrics`] -> rows to files
//! through `imaging::sink`, and [`regions`] (the foreground as GeoJSON polygons). [`pipeline`] runs one image through them; [`single`], [`slide_shard`] and [`folder`]
//! are the ways the CLI runs it (one image, one image's share, or many into a folder), each writing the
//! outputs [`outputs`] plans; [`info`] is `runner info`.

/// What `--version` prints after the name: the package version and the commit built from (see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GIT_COMMIT"), ")");

pub mod cli;
pub mod folder;
pub mod info;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod predict;
pub mod regions;
pub mod render;
pub mod session;
pub mod single;
pub mod slide_shard;
pub mod tissue;
