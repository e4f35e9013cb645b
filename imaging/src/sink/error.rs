//! What can go wrong writing an output, one line each.

use std::path::PathBuf;

use super::jpeg::JPEG_MAX_SIDE;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: unsupported {what} format; use a file name ending in {allowed}")]
    Format { path: PathBuf, what: &'static str, allowed: &'static str },
    #[error(
        "{path}: a JPEG cannot be {width}x{height} (at most {JPEG_MAX_SIDE} px a side); use .png or .tif"
    )]
    JpegTooLarge { path: PathBuf, width: usize, height: usize },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}
