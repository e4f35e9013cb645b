//! Training data: [`load`] reads and checks image/mask pairs from files; [`crops`] splits off held-out rows
//! and samples augmented random crops across all images within the pixel budget (pure, on values).

pub mod crops;
pub mod load;

/// One RGB image and its per-pixel labels (0 background, 1 foreground).
#[derive(Debug, Clone)]
pub struct TrainingImage {
    /// How errors and the summary name it: the image's and the mask's file names.
    pub name: String,
    pub mask_name: String,
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB bytes, row-major.
    pub rgb: Vec<u8>,
    /// One label per pixel, row-major.
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
