//! Crops: held-out rows, the pixel budget, and augmented random crops drawn across several images in
//! proportion to their area, assembled into batches. Pure: values in, values out.

use rand::Rng;

use imaging::tiles::PIXEL_BUDGET;

use super::{TrainingImage, UNLABELLED};
use crate::model::Normalization;

/// Random positions tried for a crop with enough labelled pixels before the sampler scans for the next one.
pub const CROP_TRIES: usize = 64;

/// The fewest labelled pixels a `size` x `size` crop needs to be drawn: 1/512 of it (32 of a 128^2 crop),
/// at least 1. Sparse strokes train: a 128^2 crop crossed by one stroke has hundreds.
pub fn min_labelled(size: usize) -> u32 {
    (size * size / 512).max(1) as u32
}

/// The labels of partial masks are too sparse for the crop size.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "the labels are too sparse for --crop {size}: no {size}x{size} crop of the training rows of any image holds \
     {min} labelled pixels (1/512 of a crop); label more pixels (or the pixels of one area more densely), or \
     lower --crop"
)]
pub struct SparseLabels {
    pub size: usize,
    pub min: u32,
}

/// Labelled pixels of one training region as an integral image: the count in any rectangle in O(1).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledCounts {
    width: usize,
    /// (rows + 1) x (width + 1): the labelled pixels above and left of each corner.
    sums: Vec<u32>,
}

impl LabelledCounts {
    /// The counts of the first `rows` rows of `width`-wide labels (labelled: not [`UNLABELLED`]).
    pub fn new(labels: &[u8], width: usize, rows: usize) -> LabelledCounts {
        let stride = width + 1;
        let mut sums = vec![0u32; (rows + 1) * stride];
        for y in 0..rows {
            let mut row_sum = 0u32;
            for x in 0..width {
                row_sum += u32::from(labels[y * width + x] != UNLABELLED);
                sums[(y + 1) * stride + x + 1] = sums[y * stride + x + 1] + row_sum;
            }
        }
        LabelledCounts { width, sums }
    }

    /// Labelled pixels in the `size` x `size` square at (top, left).
    pub fn count(&self, top: usize, left: usize, size: usize) -> u32 {
        let s = self.width + 1;
        let at = |y: usize, x: usize| self.sums[y * s + x];
        (at(top + size, left + size) + at(top, left)) - (at(top, left + size) + at(top + size, left))
    }
}

/// Pixels of each class kept per region for drawing class-targeted crops: at most this many per class,
/// spread evenly in raster order, so that a large image costs a bounded list.
pub const CLASS_PIXELS_KEPT: usize = 65_536;

/// Where each class is in one training region, for crops drawn so that rare classes appear (more than two
/// classes): per class, up to [`CLASS_PIXELS_KEPT`] of its pixels as (row, column), every k-th in raster
/// order when it has more.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassPixels {
    /// Indexed by class; empty for a class absent from the region.
    pixels: Vec<Vec<(u32, u32)>>,
}

impl ClassPixels {
    /// The class pixels of the first `rows` rows of `width`-wide labels with `classes` classes
    /// ([`UNLABELLED`] pixels belong to none).
    pub fn new(labels: &[u8], width: usize, rows: usize, classes: usize) -> ClassPixels {
        let labels = &labels[..width * rows];
        let mut counts = vec![0usize; classes];
        for &l in labels {
            if (l as usize) < classes {
                counts[l as usize] += 1;
            }
        }
        let step: Vec<usize> = counts.iter().map(|&n| n.div_ceil(CLASS_PIXELS_KEPT).max(1)).collect();
        let mut seen = vec![0usize; classes];
        let mut pixels: Vec<Vec<(u32, u32)>> =
            counts.iter().map(|&n| Vec::with_capacity(n.min(CLASS_PIXELS_KEPT))).collect();
        for (i, &l) in labels.iter().enumerate() {
            let c = l as usize;
            if c < classes {
                if seen[c].is_multiple_of(step[c]) {
                    pixels[c].push(((i / width) as u32, (i % width) as u32));
                }
                seen[c] += 1;
            }
        }
        ClassPixels { pixels }
    }

    /// The classes with pixels in the region.
    pub fn present(&self) -> Vec<usize> {
        (0..self.pixels.len()).filter(|&c| !self.pixels[c].is_empty()).collect()
    }
}

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
/// inside that image's training rows. With partial labels, crops are drawn where labels are: a position
/// whose crop holds fewer than [`min_labelled`] labelled pixels is redrawn (at most [`CROP_TRIES`] times,
/// then the next usable position in raster order is taken), and an image with no usable position is never
/// chosen.
///
/// With more than two classes ([`CropSampler::with_class_targets`]) crops are drawn so that rare classes
/// appear: after the image, a class is drawn uniformly among the classes present in its training rows, then
/// one of that class's pixels uniformly (see [`ClassPixels`]), then the crop uniformly among the positions
/// whose crop contains that pixel. Every class is then the target of about as many crops as any other,
/// however few pixels it has.
#[derive(Debug, Clone)]
pub struct CropSampler {
    regions: Vec<TrainRegion>,
    /// Running totals of the regions' areas (0 for a region without a usable crop).
    cumulative: Vec<u64>,
    /// Per region: its labelled-pixel counts where some pixels are unlabelled, `None` where all are labelled.
    labelled: Vec<Option<LabelledCounts>>,
    size: usize,
    policy: AugmentPolicy,
    /// Per region, where each class is: crops are drawn class by class (more than two classes).
    targets: Option<Vec<ClassPixels>>,
}

impl CropSampler {
    /// `size` must fit every region (see [`fit_crop`]); every pixel is labelled.
    pub fn new(regions: Vec<TrainRegion>, size: usize, policy: AugmentPolicy) -> CropSampler {
        let labelled = vec![None; regions.len()];
        CropSampler::with_labels(regions, labelled, size, policy).expect("dense labels have usable crops")
    }

    /// A sampler over regions of which some are partially labelled (`labelled[i]` holds the counts of region
    /// i's rows); refused when no crop of any region holds [`min_labelled`] labelled pixels.
    pub fn with_labels(
        regions: Vec<TrainRegion>,
        labelled: Vec<Option<LabelledCounts>>,
        size: usize,
        policy: AugmentPolicy,
    ) -> Result<CropSampler, SparseLabels> {
        assert!(regions.iter().all(|r| r.width >= size && r.rows >= size), "the crop fits every region");
        assert_eq!(regions.len(), labelled.len(), "one entry of counts per region");
        let min = min_labelled(size);
        let mut total = 0u64;
        let cumulative = regions
            .iter()
            .zip(&labelled)
            .map(|(r, counts)| {
                let usable = counts.as_ref().is_none_or(|c| {
                    (0..=r.rows - size)
                        .any(|top| (0..=r.width - size).any(|left| c.count(top, left, size) >= min))
                });
                if usable {
                    total += r.width as u64 * r.rows as u64;
                }
                total
            })
            .collect();
        if total == 0 {
            return Err(SparseLabels { size, min });
        }
        Ok(CropSampler { regions, cumulative, labelled, size, policy, targets: None })
    }

    /// The sampler drawing class-targeted crops (see the type's documentation): `targets[i]` holds the class
    /// pixels of region i's training rows. A region without any class pixel is never chosen.
    pub fn with_class_targets(self, targets: Vec<ClassPixels>) -> Result<CropSampler, SparseLabels> {
        assert_eq!(targets.len(), self.regions.len(), "one entry of class pixels per region");
        let mut total = 0u64;
        let cumulative = self
            .regions
            .iter()
            .zip(&targets)
            .map(|(r, t)| {
                if !t.present().is_empty() {
                    total += r.width as u64 * r.rows as u64;
                }
                total
            })
            .collect();
        if total == 0 {
            return Err(SparseLabels { size: self.size, min: 1 });
        }
        Ok(CropSampler { cumulative, targets: Some(targets), ..self })
    }

    /// The top-left corner of a crop of region `image` containing a pixel of a class drawn uniformly among
    /// those present.
    fn targeted_position(&self, image: usize, targets: &ClassPixels, rng: &mut impl Rng) -> (usize, usize) {
        let (region, size) = (self.regions[image], self.size);
        let present = targets.present();
        let class = present[rng.random_range(0..present.len())];
        let pixels = &targets.pixels[class];
        let (row, col) = pixels[rng.random_range(0..pixels.len())];
        // Positions whose crop holds (row, col): top in row+1-size..=row, within the region.
        let span = |at: usize, extent: usize| (at + 1).saturating_sub(size)..=at.min(extent - size);
        (
            rng.random_range(span(row as usize, region.rows)),
            rng.random_range(span(col as usize, region.width)),
        )
    }

    /// The top-left corner of a crop of region `image` with enough labelled pixels: uniform among the
    /// positions when all pixels are labelled (one draw each for top and left), redrawn where too few are.
    fn position(&self, image: usize, rng: &mut impl Rng) -> (usize, usize) {
        let (region, size) = (self.regions[image], self.size);
        let mut draw =
            || (rng.random_range(0..=region.rows - size), rng.random_range(0..=region.width - size));
        let Some(counts) = &self.labelled[image] else { return draw() };
        let min = min_labelled(size);
        let mut at = draw();
        for _ in 1..CROP_TRIES {
            if counts.count(at.0, at.1, size) >= min {
                return at;
            }
            at = draw();
        }
        // Labels in a small part of the region: the next usable position after the last draw, wrapping
        // around (one exists: the region was chosen because it has one).
        let columns = region.width - size + 1;
        let positions = (region.rows - size + 1) * columns;
        let start = at.0 * columns + at.1;
        (0..positions)
            .map(|i| ((start + i) % positions / columns, (start + i) % columns))
            .find(|&(top, left)| counts.count(top, left, size) >= min)
            .expect("a chosen region has a usable crop")
    }

    pub fn sample(&self, rng: &mut impl Rng) -> CropSpec {
        // With one image no draw is spent on choosing it: single-image runs keep their crop sequence.
        let image = if self.regions.len() == 1 {
            0
        } else {
            let at = rng.random_range(0..*self.cumulative.last().expect("at least one region"));
            self.cumulative.partition_point(|&c| c <= at)
        };
        let (top, left) = match &self.targets {
            Some(targets) => self.targeted_position(image, &targets[image], rng),
            None => self.position(image, rng),
        };
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
    fn class_targeted_crops_show_a_rare_class_as_often_as_the_others() {
        // 64 x 64, class 0 everywhere but a 2 x 2 square of class 2 and a band of class 1; rows 48.. held out.
        let (w, rows) = (64, 48);
        let mut labels = vec![0u8; w * 64];
        for y in 0..64 {
            for x in 40..64 {
                labels[y * w + x] = 1;
            }
        }
        for (y, x) in [(10, 10), (10, 11), (11, 10), (11, 11)] {
            labels[y * w + x] = 2;
        }
        labels[60 * w + 5] = 2; // held out: never a target
        labels[0] = UNLABELLED;
        let targets = ClassPixels::new(&labels, w, rows, 3);
        assert_eq!(targets.present(), [0, 1, 2]);
        assert_eq!(targets.pixels[2], [(10, 10), (10, 11), (11, 10), (11, 11)]);
        let region = TrainRegion { width: w, rows };
        let sampler = CropSampler::new(vec![region], 16, AugmentPolicy::None)
            .with_class_targets(vec![targets])
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut with_rare = 0;
        for _ in 0..3000 {
            let c = sampler.sample(&mut rng);
            assert!(c.top + 16 <= rows && c.left + 16 <= w, "{c:?}");
            with_rare +=
                usize::from((c.top..c.top + 16).contains(&10) && (c.left..c.left + 16).contains(&10));
        }
        // A third of the crops target class 2 (plus a few that catch it by chance); uniform crops: ~5%.
        assert!((950..1300).contains(&with_rare), "{with_rare}");
        // Kept pixels are bounded and spread evenly.
        let many = ClassPixels::new(&vec![1u8; 300 * 300], 300, 300, 3);
        assert!(many.pixels[1].len() <= CLASS_PIXELS_KEPT && many.pixels[1].len() > CLASS_PIXELS_KEPT / 2);
        let nothing = ClassPixels::new(&[UNLABELLED; 16], 4, 4, 3);
        let lone = CropSampler::new(vec![TrainRegion { width: 4, rows: 4 }], 2, AugmentPolicy::None);
        assert!(lone.with_class_targets(vec![nothing]).is_err());
    }

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

    /// Labelled pixels of a square counted one by one: the reference for the integral image.
    fn counted(labels: &[u8], width: usize, top: usize, left: usize, size: usize) -> u32 {
        (top..top + size)
            .flat_map(|y| (left..left + size).map(move |x| y * width + x))
            .filter(|&i| labels[i] != UNLABELLED)
            .count() as u32
    }

    #[test]
    fn labelled_counts_equal_counting_pixel_by_pixel() {
        let (w, rows) = (23, 17);
        let labels: Vec<u8> =
            (0..w * 20).map(|i| if (i * 7919) % 13 < 4 { (i % 2) as u8 } else { UNLABELLED }).collect();
        let counts = LabelledCounts::new(&labels, w, rows);
        for size in [1, 2, 5, 16] {
            for top in 0..=rows - size {
                for left in 0..=w - size {
                    assert_eq!(counts.count(top, left, size), counted(&labels, w, top, left, size));
                }
            }
        }
        assert_eq!(min_labelled(128), 32);
        assert_eq!(min_labelled(8), 1);
    }

    /// Strokes: one diagonal line of labels on a 300 x 200 region (about 0.5% of the pixels). Every crop has
    /// enough labels; crops reach the whole stroke; a region of no labels and a too-sparse one are refused.
    #[test]
    fn partial_labels_draw_crops_where_labels_are() {
        let (w, h, size) = (300, 200, 64);
        let mut labels = vec![UNLABELLED; w * h];
        for y in 0..h {
            labels[y * w + y] = (y % 2) as u8;
        }
        let region = TrainRegion { width: w, rows: h };
        let counts = LabelledCounts::new(&labels, w, h);
        let sampler =
            CropSampler::with_labels(vec![region], vec![Some(counts.clone())], size, AugmentPolicy::None)
                .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut covered = vec![false; h];
        for _ in 0..2000 {
            let c = sampler.sample(&mut rng);
            let n = counted(&labels, w, c.top, c.left, size);
            assert!(n >= min_labelled(size), "crop {c:?} holds {n} labelled pixels");
            for (y, seen) in covered.iter_mut().enumerate().skip(c.top).take(size) {
                *seen |= (c.left..c.left + size).contains(&y);
            }
        }
        assert!(covered.iter().all(|&c| c), "every labelled pixel is reachable");
        // A second image with no labels is never chosen; one with dense labels is, by area.
        let empty = vec![UNLABELLED; w * h];
        let dense = TrainRegion { width: 100, rows: 100 };
        let sampler = CropSampler::with_labels(
            vec![region, region, dense],
            vec![Some(counts), Some(LabelledCounts::new(&empty, w, h)), None],
            size,
            AugmentPolicy::None,
        )
        .unwrap();
        let mut per_image = [0; 3];
        for _ in 0..4000 {
            per_image[sampler.sample(&mut rng).image] += 1;
        }
        assert_eq!(per_image[1], 0);
        // Areas 60,000 and 10,000: 1/7 of the crops from the dense image.
        assert!((per_image[2] as f64 / 4000.0 - 1.0 / 7.0).abs() < 0.02, "{per_image:?}");
        // 31 labelled pixels in a 128 x 128 region: below 32, refused with the threshold named.
        let mut sparse = vec![UNLABELLED; 128 * 128];
        sparse[..31].fill(1);
        let region = TrainRegion { width: 128, rows: 128 };
        let err = CropSampler::with_labels(
            vec![region],
            vec![Some(LabelledCounts::new(&sparse, 128, 128))],
            128,
            AugmentPolicy::None,
        )
        .unwrap_err();
        assert_eq!(err, SparseLabels { size: 128, min: 32 });
        assert!(err.to_string().contains("no 128x128 crop") && err.to_string().contains("lower --crop"));
        // 50 labelled pixels in a 128^2 crop train.
        sparse[..50].fill(0);
        let counts = LabelledCounts::new(&sparse, 128, 128);
        assert!(CropSampler::with_labels(vec![region], vec![Some(counts)], 128, AugmentPolicy::None).is_ok());
    }

    /// A small labelled patch in a large region: random tries mostly miss, and the raster scan after them
    /// still returns usable crops, spread over the positions that hold enough labels.
    #[test]
    fn a_small_labelled_patch_is_found_after_the_tries() {
        let (w, h, size) = (1000, 1000, 16);
        let mut labels = vec![UNLABELLED; w * h];
        for y in 500..510 {
            labels[y * w + 700..y * w + 710].fill(1);
        }
        let counts = LabelledCounts::new(&labels, w, h);
        let region = TrainRegion { width: w, rows: h };
        let sampler =
            CropSampler::with_labels(vec![region], vec![Some(counts)], size, AugmentPolicy::None).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut tops = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = sampler.sample(&mut rng);
            assert!(counted(&labels, w, c.top, c.left, size) >= min_labelled(size), "{c:?}");
            tops.insert(c.top);
        }
        assert!(tops.len() > 5, "crops spread over the usable positions: {tops:?}");
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
