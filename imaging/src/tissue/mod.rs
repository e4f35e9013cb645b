//! Where to predict: a mask of the slide on a coarse grid, from the tissue seen in a low-resolution view
//! (`--tissue auto`), a user's mask image (`--tissue FILE`) or QuPath annotations (`--roi`), and which
//! windows of a tile plan touch it. Pure functions of pixels and polygons; the runner reads the files.
//!
//! Stages:
//! - [`detect`]: an RGB view to a tissue mask by the saturation rule (Otsu's threshold, bounded), cleaned
//!   and grown by the halo ([`morph`] holds the connected components, hole filling and dilation).
//! - [`map`]: a mask laid over the image ([`TissueMap`]): the image pixels it holds, row by row, which
//!   windows of a plan touch it; a [`Scope`]: maps and annotated polygons intersected.
//!
//! The grid: a mask whose pixel is `(sx, sy)` image pixels holds image pixel `(x, y)` in its column
//! `floor((x + 0.5) / sx)` and row `floor((y + 0.5) / sy)` (the nearest-neighbour rule; a mask stretched
//! over the image has `sx = W / w`, `sy = H / h`).

pub mod detect;
pub mod map;
pub mod morph;

pub use map::{Scope, TissueMap};

/// A binary mask, row by row: `true` where to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` values, row by row.
    pub data: Vec<bool>,
}

impl Mask {
    /// A mask of `width` x `height`, every pixel `value`.
    pub fn filled(width: usize, height: usize, value: bool) -> Mask {
        Mask { width, height, data: vec![value; width * height] }
    }

    /// The mask of gray values (one byte per pixel) by the mask convention: above 127 is set.
    pub fn from_gray(width: usize, height: usize, gray: &[u8]) -> Mask {
        assert_eq!(gray.len(), width * height, "one byte per pixel");
        Mask { width, height, data: gray.iter().map(|&v| v > 127).collect() }
    }

    /// The value at column `x`, row `y`.
    pub fn get(&self, x: usize, y: usize) -> bool {
        self.data[y * self.width + x]
    }

    /// Pixels set.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }

    /// The share of pixels set (0 for an empty mask).
    pub fn fraction(&self) -> f64 {
        if self.data.is_empty() {
            0.0
        } else {
            self.count() as f64 / self.data.len() as f64
        }
    }

    /// 255 where set, 0 elsewhere: the mask as an 8-bit image (`--tissue-output`).
    pub fn to_gray(&self) -> Vec<u8> {
        self.data.iter().map(|&v| if v { 255 } else { 0 }).collect()
    }
}

#[cfg(test)]
mod tests;
