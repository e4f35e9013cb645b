//! What the trainer and the runner share, so that they agree by construction and never depend on each
//! other: no candle, no ONNX Runtime.
//!
//! - [`tiles`]: the exact tile plan (halo, pixel budget, even origins), a pure function of sizes.
//! - [`source`]: image files read as rows, top to bottom, in bounded memory; [`sink`]: rows written to image
//!   and array files.
//! - [`rect`]: the one rectangle of pixels (tiles, areas, annotation boxes).
//! - [`areas`]: rectangular areas of a large image read in one pass (training from annotated areas).
//! - [`pyramid`]: the levels of pyramidal outputs and the 2x2 reductions between them.
//! - [`masks`]: the mask convention (what a mask's pixel values mean); [`classes`]: the classes' count,
//!   names and colours; [`whole`]: whole images in and out.
//! - [`exif`]: the EXIF orientation, read from inputs and written into outputs.
//! - [`files`]: every output written atomically, through links, never over an input.
//! - [`report`]: every error on one line, panics of decoders caught as errors.
//! - [`tissue`]: where to predict: tissue found in a low-resolution view, users' masks, annotated regions.
//! - [`site_packages`]: shared libraries from the Python wheels installed beside the executable.
//! - [`annotations`]: QuPath GeoJSON polygons to labels (the centre rule, per window) and predicted masks
//!   back to polygons.

pub mod annotations;
pub mod areas;
pub mod classes;
pub mod exif;
pub mod files;
pub mod masks;
pub mod pyramid;
pub mod rect;
pub mod report;
pub mod sink;
pub mod site_packages;
pub mod source;
pub mod tiles;
pub mod tissue;
pub mod whole;
