//! Validation during training: the exact tiled forward pass over whole validation images (the runner's
//! tile plan, shared through `imaging::tiles`) and the scores of its predictions. The scores are pure; only
//! [`validate`] runs the network.
//!
//! Why tiled equals untiled: every kept pixel lies at least `HALO` (>= the receptive radius, 7) pixels
//! inside its window unless the window reaches the image edge, where the network's own zero padding sees
//! what a whole-image pass sees; window origins are even, so the 2x2 pool grid lines up.

use candle_core::{Device, Tensor};
use imaging::tiles::{self, HALO, PIXEL_BUDGET};

use crate::checkpoint::{PerClass, ValRecord};
use crate::data::{TrainingImage, UNLABELLED};
use crate::model::SegNet;

/// Largest window side: 256 x 256 is the whole pixel budget.
pub const TILE: usize = tiles::DEFAULT_TILE;

/// The plan of an image of `height` x `width` with windows of side at most `tile`.
fn plan(height: usize, width: usize, tile: usize) -> tiles::TilePlan {
    tiles::plan(height, width, tile, HALO, PIXEL_BUDGET)
        .expect("a valid tile size for an image of at least 1x1")
}

/// Runs the network over `image` pass by pass as the tile plan says (zeros pad an odd size at the bottom/right,
/// as in the runner) and calls `visit(row, col, logits)` once for every pixel of the image, with the pixel's
/// logits of every class in class order.
pub fn tiled_logits(
    net: &SegNet,
    image: &TrainingImage,
    tile: usize,
    device: &Device,
    mut visit: impl FnMut(usize, usize, &[f32]),
) -> candle_core::Result<()> {
    let (iw, ih) = (image.width, image.height);
    let classes = net.classes();
    let mut pixel = vec![0f32; classes];
    for pass in &plan(ih, iw, tile).passes {
        let (h, w, count) = (pass.height, pass.width, pass.tiles.len());
        let plane = h * w;
        let mut input = vec![0f32; count * 3 * plane];
        for (b, t) in pass.tiles.iter().map(|t| t.window).enumerate() {
            for row in 0..h.min(ih.saturating_sub(t.top)) {
                for col in 0..w.min(iw.saturating_sub(t.left)) {
                    let src = ((t.top + row) * iw + t.left + col) * 3;
                    for ch in 0..3 {
                        input[(b * 3 + ch) * plane + row * w + col] = image.rgb[src + ch] as f32 / 255.0;
                    }
                }
            }
        }
        let x = Tensor::from_vec(input, (count, 3, h, w), device)?;
        let logits: Vec<f32> = net.forward(&x)?.flatten_all()?.to_vec1()?;
        for (b, tile) in pass.tiles.iter().enumerate() {
            let (t, k) = (tile.window, tile.keep);
            for y in k.top..(k.top + k.height).min(ih) {
                for x in k.left..(k.left + k.width).min(iw) {
                    let at = (y - t.top) * w + (x - t.left);
                    for (c, v) in pixel.iter_mut().enumerate() {
                        *v = logits[(b * classes + c) * plane + at];
                    }
                    visit(y, x, &pixel);
                }
            }
        }
    }
    Ok(())
}

/// Counts over the labelled validation pixels, added up across images (unlabelled pixels are not scored).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
    /// Sum of the pixels' cross-entropy.
    pub loss_sum: f64,
    /// Pixels skipped as unlabelled.
    pub unlabelled: u64,
}

impl Scores {
    /// Adds one pixel with its logits and true label; an [`UNLABELLED`] pixel is only counted as such.
    pub fn add(&mut self, background: f32, foreground: f32, label: u8) {
        if label == UNLABELLED {
            self.unlabelled += 1;
            return;
        }
        let (l0, l1) = (background as f64, foreground as f64);
        let top = l0.max(l1);
        let log_sum = top + ((l0 - top).exp() + (l1 - top).exp()).ln();
        self.loss_sum += log_sum - if label == 1 { l1 } else { l0 };
        // Foreground where its probability is above one half, as the runner's mask.
        match (l1 > l0, label == 1) {
            (true, true) => self.true_positive += 1,
            (true, false) => self.false_positive += 1,
            (false, true) => self.false_negative += 1,
            (false, false) => self.true_negative += 1,
        }
    }

    /// The labelled pixels scored.
    pub fn pixels(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// The record of these scores at `iteration`. Without foreground in the reference (negative validation
    /// images only) IoU and Dice are undefined (NaN) and the false-positive rate is what scores the model.
    pub fn record(&self, iteration: usize) -> ValRecord {
        let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
        let (tp, fp, fn_, tn) =
            (self.true_positive, self.false_positive, self.false_negative, self.true_negative);
        let has_foreground = tp + fn_ > 0;
        let defined = |v: f64| if has_foreground { v } else { f64::NAN };
        ValRecord {
            iteration,
            loss: self.loss_sum / self.pixels().max(1) as f64,
            iou: defined(ratio(tp, tp + fp + fn_)),
            dice: defined(ratio(2 * tp, 2 * tp + fp + fn_)),
            accuracy: ratio(tp + tn, self.pixels()),
            false_positive_rate: if fp + tn == 0 { 0.0 } else { fp as f64 / (fp + tn) as f64 },
            labelled: Some(self.pixels()),
            per_class: PerClass::NONE,
        }
    }
}

/// The counts of a validation with any number of classes: the confusion matrix over the labelled pixels
/// (row: the reference class, column: the predicted one, the class of the largest logit, the first on a
/// tie) and the summed cross-entropy. Two classes are scored by [`Scores`], whose record is the seed's.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    classes: usize,
    /// classes x classes counts, reference-major.
    pub confusion: Vec<u64>,
    pub loss_sum: f64,
    pub unlabelled: u64,
}

impl ClassScores {
    pub fn new(classes: usize) -> ClassScores {
        ClassScores { classes, confusion: vec![0; classes * classes], loss_sum: 0.0, unlabelled: 0 }
    }

    /// Adds one pixel with its logits (one per class) and true label; an [`UNLABELLED`] pixel is only
    /// counted as such.
    pub fn add(&mut self, logits: &[f32], label: u8) {
        if label == UNLABELLED {
            self.unlabelled += 1;
            return;
        }
        let mut predicted = 0;
        for (c, &l) in logits.iter().enumerate() {
            if l > logits[predicted] {
                predicted = c;
            }
        }
        let top = logits[predicted] as f64;
        let log_sum = top + logits.iter().map(|&l| (l as f64 - top).exp()).sum::<f64>().ln();
        self.loss_sum += log_sum - logits[label as usize] as f64;
        self.confusion[label as usize * self.classes + predicted] += 1;
    }

    /// The labelled pixels scored.
    pub fn pixels(&self) -> u64 {
        self.confusion.iter().sum()
    }

    /// Each class's IoU and Dice (NaN for a class in neither the reference nor the prediction), their means
    /// over the classes where they are defined (the record's `iou` and `dice`), the accuracy, and the
    /// false-positive rate of class 0 (background pixels predicted as any other class).
    pub fn record(&self, iteration: usize) -> ValRecord {
        let n = self.classes;
        let at = |r: usize, p: usize| self.confusion[r * n + p];
        let (mut iou, mut dice) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        for c in 0..n {
            let tp = at(c, c);
            let reference: u64 = (0..n).map(|p| at(c, p)).sum();
            let predicted: u64 = (0..n).map(|r| at(r, c)).sum();
            let union = reference + predicted - tp;
            if union > 0 {
                iou[c] = tp as f64 / union as f64;
                dice[c] = 2.0 * tp as f64 / (reference + predicted) as f64;
            }
        }
        let mean = |v: &[f64]| {
            let defined: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            if defined.is_empty() {
                f64::NAN
            } else {
                defined.iter().sum::<f64>() / defined.len() as f64
            }
        };
        let pixels = self.pixels();
        let background: u64 = (0..n).map(|p| at(0, p)).sum();
        ValRecord {
            iteration,
            loss: self.loss_sum / pixels.max(1) as f64,
            iou: mean(&iou),
            dice: mean(&dice),
            accuracy: if pixels == 0 {
                1.0
            } else {
                (0..n).map(|c| at(c, c)).sum::<u64>() as f64 / pixels as f64
            },
            false_positive_rate: if background == 0 {
                0.0
            } else {
                (background - at(0, 0)) as f64 / background as f64
            },
            labelled: Some(pixels),
            per_class: PerClass::new(&iou, &dice),
        }
    }
}

/// One validation image: the pixels the network sees and the first row that is scored (rows above it are
/// context only: with `--val-fraction` they are the 8 training rows just above the held-out ones, so the
/// held-out predictions see what a whole-image prediction would).
#[derive(Debug, Clone)]
pub struct ValImage {
    pub image: TrainingImage,
    pub scored_from_row: usize,
}

impl ValImage {
    /// The held-out rows `start..` of `image`, with up to [`HALO`] rows above them as context (an even
    /// number, so that the pool grid of the held-out rows is that of the whole image).
    pub fn held_out(image: &TrainingImage, start: usize) -> ValImage {
        let top = start.saturating_sub(HALO) / 2 * 2;
        ValImage { image: image.rows(top, image.height), scored_from_row: start - top }
    }

    /// Input pixels of its forward passes, halos included (what validation costs).
    pub fn input_pixels(&self) -> usize {
        plan(self.image.height, self.image.width, TILE).passes.iter().map(tiles::Pass::pixels).sum()
    }
}

/// Predicts every validation image by the exact tiled pass and scores the scored rows: [`Scores`] for two
/// classes, [`ClassScores`] for more.
pub fn validate(
    net: &SegNet,
    images: &[ValImage],
    iteration: usize,
    device: &Device,
) -> candle_core::Result<ValRecord> {
    if net.classes() != 2 {
        let mut scores = ClassScores::new(net.classes());
        for v in images {
            let w = v.image.width;
            tiled_logits(net, &v.image, TILE, device, |y, x, logits| {
                if y >= v.scored_from_row {
                    scores.add(logits, v.image.labels[y * w + x]);
                }
            })?;
        }
        return Ok(scores.record(iteration));
    }
    let mut scores = Scores::default();
    for v in images {
        let w = v.image.width;
        tiled_logits(net, &v.image, TILE, device, |y, x, logits| {
            if y >= v.scored_from_row {
                scores.add(logits[0], logits[1], v.image.labels[y * w + x]);
            }
        })?;
    }
    Ok(scores.record(iteration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Normalization;

    fn textured(w: usize, h: usize) -> TrainingImage {
        let rgb = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        let labels = (0..w * h).map(|i| u8::from((i / w + i % w) % 5 < 2)).collect();
        TrainingImage { name: "t".into(), mask_name: "m".into(), width: w, height: h, rgb, labels }
    }

    #[test]
    fn tiled_logits_equal_one_whole_image_pass() {
        let dev = Device::Cpu;
        let norm = Normalization { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
        let net = SegNet::random(4, norm, &dev).unwrap();
        // Odd sizes: the whole-image reference pads to even with zeros, as the tiled pass does.
        let (w, h) = (75, 61);
        let image = textured(w, h);
        let (pw, ph) = (w + 1, h + 1);
        let mut padded = vec![0f32; 3 * ph * pw];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    padded[c * ph * pw + y * pw + x] = image.rgb[(y * w + x) * 3 + c] as f32 / 255.0;
                }
            }
        }
        let whole = net.forward(&Tensor::from_vec(padded, (1, 3, ph, pw), &dev).unwrap()).unwrap();
        let whole: Vec<f32> = whole.flatten_all().unwrap().to_vec1().unwrap();
        let mut seen = vec![false; w * h];
        let mut worst = 0f32;
        tiled_logits(&net, &image, 32, &dev, |y, x, l| {
            let (l0, l1) = (l[0], l[1]);
            assert!(!seen[y * w + x]);
            seen[y * w + x] = true;
            worst = worst.max((l0 - whole[y * pw + x]).abs()).max((l1 - whole[ph * pw + y * pw + x]).abs());
        })
        .unwrap();
        assert!(seen.iter().all(|&s| s));
        assert!(worst <= 1e-4, "tiled differs from untiled by {worst}");
    }

    #[test]
    fn scores_count_pixels_like_the_runner() {
        let mut s = Scores::default();
        // tp 2, fp 1, fn 1, tn 4 (foreground logit above background = predicted foreground)
        for (l0, l1, label) in [(0., 1., 1), (0., 2., 1), (0., 1., 0), (1., 0., 1)] {
            s.add(l0, l1, label);
        }
        for _ in 0..4 {
            s.add(3.0, -3.0, 0);
        }
        let r = s.record(9);
        assert_eq!(r.iteration, 9);
        assert!((r.iou - 0.5).abs() < 1e-12 && (r.dice - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        assert!((r.false_positive_rate - 0.2).abs() < 1e-12, "fp 1 of 5 background pixels");
        // Cross-entropy of logits (0, 0) is ln 2 whatever the label.
        let mut even = Scores::default();
        even.add(0.0, 0.0, 1);
        assert!((even.record(1).loss - std::f64::consts::LN_2).abs() < 1e-12);
        // No foreground in the reference (negative images): IoU and Dice are undefined, and the
        // false-positive rate scores the model.
        let mut negative = Scores::default();
        for (l0, l1) in [(0.0, 1.0), (1.0, 0.0), (1.0, 0.0), (1.0, 0.0)] {
            negative.add(l0, l1, 0);
        }
        let r = negative.record(3);
        assert!(r.iou.is_nan() && r.dice.is_nan());
        assert_eq!((r.false_positive_rate, r.accuracy), (0.25, 0.75));
        assert_eq!(r.score(), 0.75);
        assert!(r.score_text().starts_with("specificity 0.7500"), "{}", r.score_text());
        // Unlabelled pixels change nothing but their own count, however wrong the prediction.
        let mut partial = s;
        for _ in 0..3 {
            partial.add(-5.0, 5.0, UNLABELLED);
        }
        assert_eq!(partial.unlabelled, 3);
        let (p, full) = (partial.record(9), s.record(9));
        assert_eq!((p.iou, p.loss, p.accuracy, p.labelled), (full.iou, full.loss, full.accuracy, Some(8)));
    }

    #[test]
    fn class_scores_give_each_class_its_iou_and_their_mean() {
        let mut s = ClassScores::new(3);
        // reference 0 -> predicted 0, 0 -> 1, 1 -> 1, 2 -> 2, 2 -> 2, 2 -> 0 (ties go to the first class)
        for (logits, label) in [
            ([2.0, 0.0, 0.0], 0),
            ([0.0, 2.0, 0.0], 0),
            ([0.0, 1.0, 1.0], 1),
            ([0.0, 0.0, 3.0], 2),
            ([0.0, 0.0, 3.0], 2),
            ([1.0, 1.0, 1.0], 2),
        ] {
            s.add(&logits, label);
        }
        s.add(&[9.0, 0.0, 0.0], UNLABELLED);
        assert_eq!(s.confusion, [1, 1, 0, 0, 1, 0, 1, 0, 2]);
        let r = s.record(4);
        // IoU: class 0 1/(2+2-1) = 1/3, class 1 1/(1+2-1) = 1/2, class 2 2/(3+2-2) = 2/3.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(r.per_class.iou()[0], 1.0 / 3.0) && close(r.per_class.iou()[1], 0.5));
        assert!(close(r.per_class.iou()[2], 2.0 / 3.0) && close(r.iou, 0.5));
        assert!(close(r.per_class.dice()[2], 0.8) && close(r.accuracy, 4.0 / 6.0));
        assert!(close(r.false_positive_rate, 0.5) && r.labelled == Some(6) && s.unlabelled == 1);
        assert!(r.score_text().starts_with("mean IoU 0.5000"), "{}", r.score_text());
        // A class in neither reference nor prediction is undefined and left out of the mean.
        let mut absent = ClassScores::new(3);
        absent.add(&[1.0, 0.0, 0.0], 0);
        absent.add(&[0.0, 1.0, 0.0], 1);
        let r = absent.record(1);
        assert!(r.per_class.iou()[2].is_nan() && close(r.iou, 1.0));
        // Cross-entropy of equal logits is ln 3.
        let mut even = ClassScores::new(3);
        even.add(&[0.5, 0.5, 0.5], 2);
        assert!(close(even.record(1).loss, 3f64.ln()));
    }

    #[test]
    fn held_out_rows_keep_an_even_context_of_a_halo() {
        let image = textured(10, 40);
        let v = ValImage::held_out(&image, 30);
        assert_eq!((v.image.height, v.scored_from_row), (18, 8));
        assert_eq!(v.image.rgb[..30], image.rgb[22 * 30..23 * 30]);
        let v = ValImage::held_out(&image, 5);
        assert_eq!((v.image.height, v.scored_from_row), (40, 5));
    }
}
