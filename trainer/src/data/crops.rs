//! Crops: held-out rows, the pixel budget, and augmented random crops drawn across several images in
//! proportion to their area, assembled into batches. Pure: values in, values out.

use rand::Rng;

use imaging::tiles::PIXEL_BUDGET;

use super::TrainingImage;
use crate::model::Normalization;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BudgetError {
    #[error(
        "batch {batch} x crop {crop}x{crop} = {pixels} input pixels per step, over the budget of {budget}: \
         the target GPU cannot hold the network for more than a 256x256 input; lower --batch or --crop \
         (for example 1 x 256 or 4 x 128)"
    )]
    OverBudget { batch: usize, crop: usize, pixels: String, budget: usize },
    #[error("--crop must be an even number of at least 2 (the network pools by 2), got {0}")]
    OddCrop(usize),
    #[error("--batch must be at least 1")]
    EmptyBatch,
}

/// Checks a batch x crop x crop request against the pixel budget and the network's even-size rule. The
/// product is computed with checked arithmetic: a huge --batch or --crop is refused, never wrapped.
pub fn check_budget(batch: usize, crop: usize) -> Result<(), BudgetError> {
    if batch == 0 {
        return Err(BudgetError::EmptyBatch);
    }
    if crop < 2 || !crop.is_multiple_of(2) {
        return Err(BudgetError::OddCrop(crop));
    }
    let pixels = batch.checked_mul(crop).and_then(|p| p.checked_mul(crop));
    match pixels {
        Some(p) if p <= PIXEL_BUDGET => Ok(()),
        Some(p) => Err(BudgetError::OverBudget { batch, crop, pixels: p.to_string(), budget: PIXEL_BUDGET }),
        None => Err(BudgetError::OverBudget {
            batch,
            crop,
            pixels: "more than 2^64".into(),
            budget: PIXEL_BUDGET,
        }),
    }
}

/// The crop actually used when the smallest training region is `width` x `height`: the requested one, or,
/// when that region is smaller, the largest even size that fits (the second value says so).
pub fn fit_crop(crop: usize, width: usize, height: usize) -> (usize, bool) {
    let fits = width.min(height) / 2 * 2;
    if crop <= fits {
        (crop, false)
    } else {
        (fits, true)
    }
}

/// The rows of a `height`-row image held out by `--val-fraction`: the bottom `ceil(fraction x height)`,
/// rounded up to even so that the training rows keep an even count. Returns the first held-out row.
pub fn holdout_start(height: usize, fraction: f64) -> usize {
    let held = (fraction * height as f64).ceil() as usize;
    let held = (held + held % 2).min(height);
    height - held
}

/// Per-channel mean and standard deviation over the training rows of all images, with the formula of
/// [`Normalization::from_rgb_bytes`] (one image gives exactly its result).
pub fn normalization_over(regions: &[(&TrainingImage, usize)]) -> Normalization {
    Normalization::from_rgb_parts(regions.iter().map(|(image, rows)| &image.rgb[..rows * image.width * 3]))
}

/// Which random augmentations training applies to its crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AugmentPolicy {
    /// Random horizontal and vertical flips and quarter turns.
    All,
    /// Random flips only: keeps the orientation of structures (e.g. vertical rays in wood).
    Flips,
    /// The crops as they are (the CLI's default: see the README's defaults study).
    #[default]
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
    /// Index of the image in the training set.
    pub image: usize,
    pub top: usize,
    pub left: usize,
    pub size: usize,
    pub augmentation: Augmentation,
}

/// The part of one image that training crops may touch: its full width and its first `rows` rows (the rows
/// below are held out for validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainRegion {
    pub width: usize,
    pub rows: usize,
}

/// Draws crops across several images: an image with probability proportional to its training area (so every
/// training pixel is about equally likely to be seen, whatever image it is in), then a position uniformly
/// inside that image's training rows.
#[derive(Debug, Clone)]
pub struct CropSampler {
    regions: Vec<TrainRegion>,
    /// Running totals of the regions' areas.
    cumulative: Vec<u64>,
    size: usize,
    policy: AugmentPolicy,
}

impl CropSampler {
    /// `size` must fit every region (see [`fit_crop`]).
    pub fn new(regions: Vec<TrainRegion>, size: usize, policy: AugmentPolicy) -> CropSampler {
        assert!(regions.iter().all(|r| r.width >= size && r.rows >= size), "the crop fits every region");
        let mut total = 0u64;
        let cumulative = regions
            .iter()
            .map(|r| {
                total += r.width as u64 * r.rows as u64;
                total
            })
            .collect();
        CropSampler { regions, cumulative, size, policy }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> CropSpec {
        // With one image no draw is spent on choosing it: single-image runs keep their crop sequence.
        let image = if self.regions.len() == 1 {
            0
        } else {
            let at = rng.random_range(0..*self.cumulative.last().expect("at least one region"));
            self.cumulative.partition_point(|&c| c <= at)
        };
        let region = self.regions[image];
        let top = rng.random_range(0..=region.rows - self.size);
        let left = rng.random_range(0..=region.width - self.size);
        let augmentation = Augmentation::random(rng, self.policy);
        CropSpec { image, top, left, size: self.size, augmentation }
    }
}

/// A batch ready for the network: RGB in [0, 1] as (B,3,S,S) and labels as (B,S,S), both row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub crop: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Copies the crops out of the images, applying each crop's augmentation.
pub fn assemble_batch(images: &[TrainingImage], crops: &[CropSpec]) -> Batch {
    let s = crops.first().map_or(0, |c| c.size);
    let plane = s * s;
    let mut pixels = vec![0f32; crops.len() * 3 * plane];
    let mut labels = vec![0u32; crops.len() * plane];
    for (b, crop) in crops.iter().enumerate() {
        assert_eq!(crop.size, s, "all crops of a batch have one size");
        let image = &images[crop.image];
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
    fn crops_never_touch_held_out_rows_and_spread_by_area() {
        // Two images, the bottom quarter of each held out: no crop may reach a held-out row.
        let (a, b) = ((40, 100), (80, 30));
        let (start_a, start_b) = (holdout_start(a.1, 0.25), holdout_start(b.1, 0.25));
        assert_eq!((start_a, start_b), (74, 22));
        let regions =
            vec![TrainRegion { width: a.0, rows: start_a }, TrainRegion { width: b.0, rows: start_b }];
        let sampler = CropSampler::new(regions, 16, AugmentPolicy::All);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut per_image = [0usize; 2];
        let mut lowest = [0usize; 2];
        for _ in 0..20_000 {
            let c = sampler.sample(&mut rng);
            let (w, rows) = if c.image == 0 { (a.0, start_a) } else { (b.0, start_b) };
            assert!(c.top + c.size <= rows, "crop {c:?} enters the held-out rows from {rows}");
            assert!(c.left + c.size <= w);
            per_image[c.image] += 1;
            lowest[c.image] = lowest[c.image].max(c.top + c.size);
        }
        // Every training row is reachable: the lowest crop ends exactly at the held-out boundary.
        assert_eq!(lowest, [start_a, start_b]);
        // Areas 40*74 = 2960 and 80*22 = 1760: the first image gets 2960/4720 = 62.7% of the crops.
        let share = per_image[0] as f64 / 20_000.0;
        assert!((share - 0.627).abs() < 0.02, "share {share}");
    }

    #[test]
    fn holdout_rows_are_even_and_bounded() {
        assert_eq!(holdout_start(1250, 0.2), 1000);
        assert_eq!(holdout_start(101, 0.1), 89); // ceil(10.1) = 11, rounded up to 12
        assert_eq!(holdout_start(10, 1.0), 0);
        assert_eq!(holdout_start(10, 0.0), 10);
    }

    #[test]
    fn normalization_pools_all_training_rows() {
        let img = |name: &str, v: u8, h: usize| TrainingImage {
            name: name.into(),
            mask_name: String::new(),
            width: 2,
            height: h,
            rgb: vec![v; 2 * h * 3],
            labels: vec![0; 2 * h],
        };
        let (a, b) = (img("a", 0, 2), img("b", 255, 4));
        // One image alone gives what Normalization::from_rgb_bytes gives.
        assert_eq!(normalization_over(&[(&a, 2)]), Normalization::from_rgb_bytes(&a.rgb));
        // 4 pixels of 0 and 4 (of 8: two rows held out) of 1: mean 0.5, std 0.5.
        let n = normalization_over(&[(&a, 2), (&b, 2)]);
        assert_eq!(n.mean, [0.5; 3]);
        assert!((n.std[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn budget_is_enforced_with_a_reason() {
        assert!(check_budget(1, 256).is_ok());
        assert!(check_budget(4, 128).is_ok());
        let err = check_budget(2, 256).unwrap_err();
        assert_eq!(
            err,
            BudgetError::OverBudget { batch: 2, crop: 256, pixels: "131072".into(), budget: 65_536 }
        );
        assert!(err.to_string().contains("65536") && err.to_string().contains("256x256"));
        assert_eq!(check_budget(1, 127), Err(BudgetError::OddCrop(127)));
        assert_eq!(check_budget(0, 64), Err(BudgetError::EmptyBatch));
        // Products that would wrap around are refused, not wrapped into a small number.
        let huge_crop = 1usize << 32;
        assert!(matches!(check_budget(1, huge_crop), Err(BudgetError::OverBudget { .. })));
        assert!(matches!(check_budget(usize::MAX, 2), Err(BudgetError::OverBudget { .. })));
        assert!(check_budget(usize::MAX / 2, 2).unwrap_err().to_string().contains("more than 2^64"));
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
        let image =
            TrainingImage { name: "a".into(), mask_name: "m".into(), width: w, height: h, rgb, labels };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let sampler = CropSampler::new(vec![TrainRegion { width: w, rows: h }], 4, AugmentPolicy::All);
        for _ in 0..50 {
            let c = sampler.sample(&mut rng);
            assert!(c.top + 4 <= h && c.left + 4 <= w && c.image == 0);
        }
        let crop = CropSpec { image: 0, top: 1, left: 2, size: 2, augmentation: Augmentation::default() };
        let batch = assemble_batch(std::slice::from_ref(&image), &[crop, crop]);
        assert_eq!(batch.pixels.len(), 2 * 3 * 4);
        let src = w + 2; // pixel (1, 2)
        assert_eq!(batch.pixels[0], image.rgb[src * 3] as f32 / 255.0);
        assert_eq!(batch.pixels[4], image.rgb[src * 3 + 1] as f32 / 255.0); // green plane
        assert_eq!(batch.labels[..4], [1, 0, 0, 1]); // (1,2)=9 (1,3)=10 (2,2)=16 (2,3)=17
    }
}
