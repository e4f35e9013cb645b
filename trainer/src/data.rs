//! Training data: loading and validating an image and its mask, and sampling augmented random crops that
//! respect the pixel budget. Loading does I/O; everything else is pure and works on values.

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::model::PIXEL_BUDGET;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {what} {path}: {reason}")]
    Unreadable { what: &'static str, path: PathBuf, reason: String },
    #[error(
        "the mask is {mask_w}x{mask_h} but the image is {image_w}x{image_h} (width x height): \
         they must be the same size, pixel for pixel"
    )]
    SizeMismatch { image_w: u32, image_h: u32, mask_w: u32, mask_h: u32 },
    #[error(
        "the mask must hold exactly two values (e.g. 0 = background, 255 = foreground), found {count}: {listed}{hint}"
    )]
    NotTwoValued { count: usize, listed: String, hint: &'static str },
    #[error(
        "the mask holds only {values}: pixels > 127 are foreground, so it has a single class and there is \
         nothing to learn; save the foreground as 255 and the background as 0"
    )]
    SingleClass { values: String },
    #[error("the image is {width}x{height}: training needs at least 2x2 pixels")]
    TooSmall { width: u32, height: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BudgetError {
    #[error(
        "batch {batch} x crop {crop}x{crop} = {pixels} input pixels per step, over the budget of {budget}: \
         the target GPU cannot hold the network for more than a 256x256 input; lower --batch or --crop \
         (for example 1 x 256 or 4 x 128)"
    )]
    OverBudget { batch: usize, crop: usize, pixels: usize, budget: usize },
    #[error("--crop must be an even number of at least 2 (the network pools by 2), got {0}")]
    OddCrop(usize),
    #[error("--batch must be at least 1")]
    EmptyBatch,
}

/// One RGB image and its per-pixel labels (0 background, 1 foreground).
#[derive(Debug, Clone)]
pub struct TrainingImage {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB bytes, row-major.
    pub rgb: Vec<u8>,
    /// One label per pixel, row-major.
    pub labels: Vec<u8>,
}

impl TrainingImage {
    pub fn foreground_fraction(&self) -> f64 {
        self.labels.iter().map(|&l| l as usize).sum::<usize>() as f64 / self.labels.len().max(1) as f64
    }
}

/// Loads an image (any format the `image` crate reads; converted to 8-bit RGB) and its mask (converted to
/// 8-bit gray; pixels > 127 are foreground) and checks that they fit together.
pub fn load_training_image(image: &Path, mask: &Path) -> Result<TrainingImage, DataError> {
    let open = |what: &'static str, path: &Path| {
        image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| e.to_string())
            .and_then(|r| r.decode().map_err(|e| e.to_string()))
            .map_err(|reason| DataError::Unreadable { what, path: path.to_path_buf(), reason })
    };
    let img = open("image", image)?.to_rgb8();
    let msk = open("mask", mask)?.to_luma8();
    if img.dimensions() != msk.dimensions() {
        return Err(DataError::SizeMismatch {
            image_w: img.width(),
            image_h: img.height(),
            mask_w: msk.width(),
            mask_h: msk.height(),
        });
    }
    if img.width() < 2 || img.height() < 2 {
        return Err(DataError::TooSmall { width: img.width(), height: img.height() });
    }
    let labels = labels_from_mask(msk.as_raw())?;
    Ok(TrainingImage {
        width: img.width() as usize,
        height: img.height() as usize,
        rgb: img.into_raw(),
        labels,
    })
}

/// Turns mask bytes into labels (> 127 is foreground), refusing masks that are not two-valued or that hold a
/// single class.
pub fn labels_from_mask(mask: &[u8]) -> Result<Vec<u8>, DataError> {
    let mut seen = [false; 256];
    for &v in mask {
        seen[v as usize] = true;
    }
    let values: Vec<u8> = (0..=255u8).filter(|&v| seen[v as usize]).collect();
    if values.len() > 2 {
        let shown: Vec<String> = values.iter().take(8).map(u8::to_string).collect();
        let listed = if values.len() > 8 { format!("{}, ...", shown.join(", ")) } else { shown.join(", ") };
        return Err(DataError::NotTwoValued {
            count: values.len(),
            listed,
            hint: " (a JPEG mask carries compression noise: save masks as PNG)",
        });
    }
    let has_fg = values.iter().any(|&v| v > 127);
    let has_bg = values.iter().any(|&v| v <= 127);
    if !(has_fg && has_bg) {
        let values = values.iter().map(u8::to_string).collect::<Vec<_>>().join(" and ");
        return Err(DataError::SingleClass { values });
    }
    Ok(mask.iter().map(|&v| u8::from(v > 127)).collect())
}

/// Checks a batch x crop x crop request against the pixel budget and the network's even-size rule.
pub fn check_budget(batch: usize, crop: usize) -> Result<(), BudgetError> {
    if batch == 0 {
        return Err(BudgetError::EmptyBatch);
    }
    if crop < 2 || crop % 2 != 0 {
        return Err(BudgetError::OddCrop(crop));
    }
    let pixels = batch * crop * crop;
    if pixels > PIXEL_BUDGET {
        return Err(BudgetError::OverBudget { batch, crop, pixels, budget: PIXEL_BUDGET });
    }
    Ok(())
}

/// The crop actually used on a `width` x `height` image: the requested one, or, when the image is smaller,
/// the largest even size that fits (the second value says so).
pub fn fit_crop(crop: usize, width: usize, height: usize) -> (usize, bool) {
    let fits = width.min(height) / 2 * 2;
    if crop <= fits {
        (crop, false)
    } else {
        (fits, true)
    }
}

/// Which random augmentations training applies to its crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AugmentPolicy {
    /// Random horizontal and vertical flips and quarter turns.
    #[default]
    All,
    /// Random flips only: keeps the orientation of structures (e.g. vertical rays in wood).
    Flips,
    /// The crops as they are.
    None,
}

/// Flips and a rotation by a multiple of 90 degrees, applied to a square crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augmentation {
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    /// Quarter turns, 0..4.
    pub quarter_turns: u8,
}

impl Augmentation {
    pub fn random(rng: &mut impl Rng, policy: AugmentPolicy) -> Augmentation {
        match policy {
            AugmentPolicy::None => Augmentation::default(),
            AugmentPolicy::Flips => {
                Augmentation { flip_horizontal: rng.random(), flip_vertical: rng.random(), quarter_turns: 0 }
            }
            AugmentPolicy::All => Augmentation {
                flip_horizontal: rng.random(),
                flip_vertical: rng.random(),
                quarter_turns: rng.random_range(0..4),
            },
        }
    }

    /// The source pixel (row, col) in an n x n crop that lands at (row, col) of the augmented crop.
    pub fn source(&self, row: usize, col: usize, n: usize) -> (usize, usize) {
        let (mut r, mut c) = (row, col);
        for _ in 0..self.quarter_turns {
            (r, c) = (c, n - 1 - r);
        }
        if self.flip_vertical {
            r = n - 1 - r;
        }
        if self.flip_horizontal {
            c = n - 1 - c;
        }
        (r, c)
    }
}

/// Where a crop is taken and how it is augmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSpec {
    pub top: usize,
    pub left: usize,
    pub size: usize,
    pub augmentation: Augmentation,
}

/// Draws one crop position uniformly over the image, with a random augmentation as `policy` allows.
pub fn sample_crop(
    rng: &mut impl Rng,
    width: usize,
    height: usize,
    size: usize,
    policy: AugmentPolicy,
) -> CropSpec {
    let top = rng.random_range(0..=height - size);
    let left = rng.random_range(0..=width - size);
    let augmentation = Augmentation::random(rng, policy);
    CropSpec { top, left, size, augmentation }
}

/// A batch ready for the network: RGB in [0, 1] as (B,3,S,S) and labels as (B,S,S), both row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub crop: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Copies the crops out of the image, applying each crop's augmentation.
pub fn assemble_batch(image: &TrainingImage, crops: &[CropSpec]) -> Batch {
    let s = crops.first().map_or(0, |c| c.size);
    let plane = s * s;
    let mut pixels = vec![0f32; crops.len() * 3 * plane];
    let mut labels = vec![0u32; crops.len() * plane];
    for (b, crop) in crops.iter().enumerate() {
        assert_eq!(crop.size, s, "all crops of a batch have one size");
        for row in 0..s {
            for col in 0..s {
                let (r, c) = crop.augmentation.source(row, col, s);
                let src = (crop.top + r) * image.width + crop.left + c;
                let dst = row * s + col;
                for ch in 0..3 {
                    pixels[(b * 3 + ch) * plane + dst] = image.rgb[src * 3 + ch] as f32 / 255.0;
                }
                labels[b * plane + dst] = image.labels[src] as u32;
            }
        }
    }
    Batch { size: crops.len(), crop: s, pixels, labels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn masks_must_be_two_valued_with_both_classes() {
        assert_eq!(labels_from_mask(&[0, 255, 255, 0]).unwrap(), vec![0, 1, 1, 0]);
        assert_eq!(labels_from_mask(&[3, 200]).unwrap(), vec![0, 1]);
        let err = labels_from_mask(&[0, 1, 2, 255]).unwrap_err().to_string();
        assert!(err.contains("found 4: 0, 1, 2, 255"), "{err}");
        let err = labels_from_mask(&[0, 1, 0]).unwrap_err().to_string();
        assert!(err.contains("only 0 and 1") && err.contains("single class"), "{err}");
        let err = labels_from_mask(&[255, 255]).unwrap_err().to_string();
        assert!(err.contains("only 255"), "{err}");
    }

    #[test]
    fn budget_is_enforced_with_a_reason() {
        assert!(check_budget(1, 256).is_ok());
        assert!(check_budget(4, 128).is_ok());
        let err = check_budget(2, 256).unwrap_err();
        assert_eq!(err, BudgetError::OverBudget { batch: 2, crop: 256, pixels: 131_072, budget: 65_536 });
        assert!(err.to_string().contains("65536") && err.to_string().contains("256x256"));
        assert_eq!(check_budget(1, 127), Err(BudgetError::OddCrop(127)));
        assert_eq!(check_budget(0, 64), Err(BudgetError::EmptyBatch));
    }

    #[test]
    fn crop_shrinks_to_the_largest_even_size_that_fits() {
        assert_eq!(fit_crop(128, 500, 1250), (128, false));
        assert_eq!(fit_crop(256, 101, 300), (100, true));
        assert_eq!(fit_crop(64, 64, 64), (64, false));
    }

    #[test]
    fn augmentations_are_permutations_and_compose_as_expected() {
        let n = 5;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for _ in 0..20 {
            let aug = Augmentation::random(&mut rng, AugmentPolicy::All);
            assert_eq!(Augmentation::random(&mut rng, AugmentPolicy::Flips).quarter_turns, 0);
            assert_eq!(Augmentation::random(&mut rng, AugmentPolicy::None), Augmentation::default());
            let mut hit = vec![false; n * n];
            for r in 0..n {
                for c in 0..n {
                    let (sr, sc) = aug.source(r, c, n);
                    assert!(!hit[sr * n + sc]);
                    hit[sr * n + sc] = true;
                }
            }
        }
        let turn = Augmentation { quarter_turns: 1, ..Default::default() };
        // One quarter turn: the top row of the output comes from the left column of the source.
        assert_eq!(turn.source(0, 0, n), (0, 4));
        assert_eq!(turn.source(0, 4, n), (4, 4));
        assert_eq!(Augmentation::default().source(1, 2, n), (1, 2));
        let flip = Augmentation { flip_horizontal: true, ..Default::default() };
        assert_eq!(flip.source(1, 0, n), (1, 4));
    }

    #[test]
    fn crops_stay_inside_the_image_and_batches_carry_pixels_and_labels() {
        let (w, h) = (7, 5);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        let labels: Vec<u8> = (0..w * h).map(|i| (i % 2) as u8).collect();
        let image = TrainingImage { width: w, height: h, rgb, labels };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let c = sample_crop(&mut rng, w, h, 4, AugmentPolicy::All);
            assert!(c.top + 4 <= h && c.left + 4 <= w);
        }
        let crop = CropSpec { top: 1, left: 2, size: 2, augmentation: Augmentation::default() };
        let batch = assemble_batch(&image, &[crop, crop]);
        assert_eq!(batch.pixels.len(), 2 * 3 * 4);
        let src = w + 2; // pixel (1, 2)
        assert_eq!(batch.pixels[0], image.rgb[src * 3] as f32 / 255.0);
        assert_eq!(batch.pixels[4], image.rgb[src * 3 + 1] as f32 / 255.0); // green plane
        assert_eq!(batch.labels[..4], [1, 0, 0, 1]); // (1,2)=9 (1,3)=10 (2,2)=16 (2,3)=17
    }
}
