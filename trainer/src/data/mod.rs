//! Training data: [`load`] reads and checks image/mask pairs from files; [`annotated`] reads the annotated
//! areas of a slide with their QuPath annotations as labels; [`crops`] splits off held-out rows and samples
//! augmented random crops across all images within the pixel budget (pure, on values).

pub mod annotated;
pub mod classes;
pub mod crops;
pub mod load;

/// The label of a pixel no annotator labelled, in [`TrainingImage::labels`] and, as u32, in the batches'
/// label tensors: one representation from the mask (or any other label source) to the loss, which skips it
/// as PyTorch's `ignore_index` does, and to validation, which does not score it. It is
/// [`imaging::masks::UNLABELLED`], shared with the runner's metrics.
pub const UNLABELLED: u8 = imaging::masks::UNLABELLED;

/// One RGB image and its per-pixel labels (0 background, 1 foreground, [`UNLABELLED`] neither).
#[derive(Debug, Clone)]
pub struct TrainingImage {
    /// How errors and the summary name it: the image's and the mask's file names.
    pub name: String,
    pub mask_name: String,
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB bytes, row-major.
    pub rgb: Vec<u8>,
    /// One label per pixel, row-major: 0, 1 or [`UNLABELLED`].
    pub labels: Vec<u8>,
}

impl TrainingImage {
    /// A 64-bit FNV-1a hash of the pixels and labels: equal images hash equal, whatever their file names.
    pub fn content_hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in self.rgb.iter().chain(&self.labels) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }

    /// Whether some pixel is unlabelled.
    pub fn is_partial(&self) -> bool {
        self.labels.contains(&UNLABELLED)
    }

    /// Rows `top..bottom` as an image of their own.
    pub fn rows(&self, top: usize, bottom: usize) -> TrainingImage {
        let w = self.width;
        TrainingImage {
            name: self.name.clone(),
            mask_name: self.mask_name.clone(),
            width: w,
            height: bottom - top,
            rgb: self.rgb[top * w * 3..bottom * w * 3].to_vec(),
            labels: self.labels[top * w..bottom * w].to_vec(),
        }
    }
}
