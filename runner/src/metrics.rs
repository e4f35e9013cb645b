//! Agreement of a predicted mask with a reference mask: pixel accuracy, foreground IoU and Dice.

use std::fmt;

use serde::Serialize;

/// Confusion counts and the scores derived from them. Serialises to the `--metrics-json` file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    pub pixels: u64,
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
    /// Fraction of pixels whose class matches.
    pub pixel_accuracy: f64,
    /// |P and R| / |P or R| over foreground; 1 when both masks are empty.
    pub foreground_iou: f64,
    /// 2|P and R| / (|P| + |R|) over foreground; 1 when both masks are empty.
    pub dice: f64,
}

/// Confusion counts gathered band by band (a streamed image is never whole in memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Index: predicted * 2 + reference (0 background, 1 foreground).
    counts: [u64; 4],
}

impl Confusion {
    /// Adds class masks (0 background, anything else foreground) of equal length.
    pub fn add(&mut self, predicted: &[u8], reference: &[u8]) {
        assert_eq!(predicted.len(), reference.len(), "masks of different sizes");
        for (&p, &r) in predicted.iter().zip(reference) {
            self.counts[usize::from(p > 0) * 2 + usize::from(r > 0)] += 1;
        }
    }

    pub fn metrics(&self) -> Metrics {
        let [tn, fn_, fp, tp] = self.counts;
        Metrics::from_counts(tp, fp, fn_, tn)
    }
}

impl Metrics {
    /// Compares class masks (0 background, anything else foreground) of equal length.
    pub fn compare(predicted: &[u8], reference: &[u8]) -> Metrics {
        let mut confusion = Confusion::default();
        confusion.add(predicted, reference);
        confusion.metrics()
    }

    /// The scores of confusion counts.
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Metrics {
        let pixels = tp + fp + fn_ + tn;
        let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
        Metrics {
            pixels,
            true_positive: tp,
            false_positive: fp,
            false_negative: fn_,
            true_negative: tn,
            pixel_accuracy: ratio(tp + tn, pixels),
            foreground_iou: ratio(tp, tp + fp + fn_),
            dice: ratio(2 * tp, 2 * tp + fp + fn_),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("metrics serialise") + "\n"
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pixel accuracy {:.4}, foreground IoU {:.4}, Dice {:.4} ({} pixels)",
            self.pixel_accuracy, self.foreground_iou, self.dice, self.pixels
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_counts() {
        // tp 2, fp 1, fn 1, tn 4
        let predicted = [1, 1, 1, 0, 0, 0, 0, 0];
        let reference = [1, 1, 0, 1, 0, 0, 0, 0];
        let m = Metrics::compare(&predicted, &reference);
        assert_eq!((m.true_positive, m.false_positive, m.false_negative, m.true_negative), (2, 1, 1, 4));
        assert!((m.pixel_accuracy - 0.75).abs() < 1e-12);
        assert!((m.foreground_iou - 0.5).abs() < 1e-12);
        assert!((m.dice - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn empty_foreground_on_both_sides_is_perfect() {
        let m = Metrics::compare(&[0, 0], &[0, 0]);
        assert_eq!((m.pixel_accuracy, m.foreground_iou, m.dice), (1.0, 1.0, 1.0));
        let m = Metrics::compare(&[1, 0], &[0, 0]);
        assert_eq!((m.foreground_iou, m.dice), (0.0, 0.0));
    }

    #[test]
    fn json_names_the_scores() {
        let json = Metrics::compare(&[1], &[1]).to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["foreground_iou"], 1.0);
        assert_eq!(v["pixel_accuracy"], 1.0);
        assert_eq!(v["dice"], 1.0);
        assert_eq!(v["pixels"], 1);
    }
}
