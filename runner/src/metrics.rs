//! Agreement of a predicted mask with a reference mask: pixel accuracy, foreground IoU and Dice.

use std::fmt;
use std::io::Write;

use imaging::masks::UNLABELLED;
use serde::Serialize;

/// Confusion counts and the scores derived from them, over the labelled pixels of the reference (partial
/// labels leave others unlabelled). Serialises to the `--metrics-json` file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Pixels compared: labelled and unlabelled.
    pub pixels: u64,
    /// Pixels scored: those the reference labels (all of them for a binary mask without --ignore-value).
    pub labelled_pixels: u64,
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
    /// Reference pixels that are [`UNLABELLED`]: not scored.
    unlabelled: u64,
}

impl Confusion {
    /// Adds class masks (0 background, [`UNLABELLED`] not scored, anything else foreground) of equal length.
    pub fn add(&mut self, predicted: &[u8], reference: &[u8]) {
        assert_eq!(predicted.len(), reference.len(), "masks of different sizes");
        for (&p, &r) in predicted.iter().zip(reference) {
            if r == UNLABELLED {
                self.unlabelled += 1;
            } else {
                self.counts[usize::from(p > 0) * 2 + usize::from(r > 0)] += 1;
            }
        }
    }

    pub fn metrics(&self) -> Metrics {
        let [tn, fn_, fp, tp] = self.counts;
        let scored = Metrics::from_counts(tp, fp, fn_, tn);
        Metrics { pixels: scored.pixels + self.unlabelled, ..scored }
    }
}

impl Metrics {
    /// Compares class masks (0 background, anything else foreground) of equal length.
    pub fn compare(predicted: &[u8], reference: &[u8]) -> Metrics {
        let mut confusion = Confusion::default();
        confusion.add(predicted, reference);
        confusion.metrics()
    }

    /// The scores of confusion counts (every pixel labelled).
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Metrics {
        let pixels = tp + fp + fn_ + tn;
        let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
        Metrics {
            pixels,
            labelled_pixels: pixels,
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
            "pixel accuracy {:.4}, foreground IoU {:.4}, Dice {:.4} ",
            self.pixel_accuracy, self.foreground_iou, self.dice
        )?;
        if self.labelled_pixels == self.pixels {
            write!(f, "({} pixels)", self.pixels)
        } else {
            write!(f, "(over the {} labelled pixels of {})", self.labelled_pixels, self.pixels)
        }
    }
}

/// Confusion counts of C classes gathered band by band, for a model of more than two classes; rows are
/// the reference's class, columns the prediction's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassConfusion {
    classes: usize,
    /// Index: reference * classes + predicted.
    counts: Vec<u64>,
    /// Reference pixels that are [`UNLABELLED`]: not scored.
    unlabelled: u64,
}

/// One class's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    pub name: String,
    /// |P and R| / |P or R| for this class; 1 when neither mask has it.
    pub iou: f64,
    /// 2|P and R| / (|P| + |R|); 1 when neither mask has it.
    pub dice: f64,
}

/// The scores of C classes: each class's IoU and Dice, their means, and the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub pixels: u64,
    pub labelled_pixels: u64,
    pub pixel_accuracy: f64,
    /// Means over the classes, each class weighing the same.
    pub mean_iou: f64,
    pub mean_dice: f64,
    pub classes: Vec<ClassScore>,
    /// `confusion[r][p]`: labelled pixels of reference class r predicted as class p.
    pub confusion: Vec<Vec<u64>>,
}

impl ClassConfusion {
    pub fn new(classes: usize) -> ClassConfusion {
        ClassConfusion { classes, counts: vec![0; classes * classes], unlabelled: 0 }
    }

    /// Adds class-index masks of equal length; reference pixels [`UNLABELLED`] are not scored. Every
    /// predicted and reference class must be below the class count (the reference's are checked where it
    /// is read).
    pub fn add(&mut self, predicted: &[u8], reference: &[u8]) {
        assert_eq!(predicted.len(), reference.len(), "masks of different sizes");
        let c = self.classes;
        for (&p, &r) in predicted.iter().zip(reference) {
            if r == UNLABELLED {
                self.unlabelled += 1;
            } else {
                self.counts[usize::from(r) * c + usize::from(p)] += 1;
            }
        }
    }

    /// The scores, with the classes named by `names` (one per class).
    pub fn metrics(&self, names: &[String]) -> ClassMetrics {
        let c = self.classes;
        assert_eq!(names.len(), c, "one name per class");
        let at = |r: usize, p: usize| self.counts[r * c + p];
        let labelled: u64 = self.counts.iter().sum();
        let correct: u64 = (0..c).map(|k| at(k, k)).sum();
        let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
        let classes: Vec<ClassScore> = (0..c)
            .map(|k| {
                let tp = at(k, k);
                let reference: u64 = (0..c).map(|p| at(k, p)).sum();
                let predicted: u64 = (0..c).map(|r| at(r, k)).sum();
                ClassScore {
                    name: names[k].clone(),
                    iou: ratio(tp, reference + predicted - tp),
                    dice: ratio(2 * tp, reference + predicted),
                }
            })
            .collect();
        let mean = |f: fn(&ClassScore) -> f64| classes.iter().map(f).sum::<f64>() / c as f64;
        ClassMetrics {
            pixels: labelled + self.unlabelled,
            labelled_pixels: labelled,
            pixel_accuracy: ratio(correct, labelled),
            mean_iou: mean(|s| s.iou),
            mean_dice: mean(|s| s.dice),
            confusion: (0..c).map(|r| (0..c).map(|p| at(r, p)).collect()).collect(),
            classes,
        }
    }
}

impl ClassMetrics {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("metrics serialise") + "\n"
    }
}

impl fmt::Display for ClassMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pixel accuracy {:.4}, mean IoU {:.4}, mean Dice {:.4}; IoU",
            self.pixel_accuracy, self.mean_iou, self.mean_dice
        )?;
        for score in &self.classes {
            write!(f, " {} {:.4}", score.name, score.iou)?;
        }
        if self.labelled_pixels == self.pixels {
            write!(f, " ({} pixels)", self.pixels)
        } else {
            write!(f, " (over the {} labelled pixels of {})", self.labelled_pixels, self.pixels)
        }
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub metrics: Option<Metrics>,
}

/// The scores of every image of a run, in the order they were predicted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsTable {
    pub rows: Vec<MetricsRow>,
}

/// The run's scores at a glance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsSummary {
    pub images: usize,
    pub with_mask: usize,
    /// Mean of the per-image IoU over images with a mask.
    pub mean_iou: Option<f64>,
    /// IoU of the summed confusion counts: every pixel weighs the same, whatever its image's size.
    pub pooled_iou: Option<f64>,
}

impl fmt::Display for MetricsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} images, {} with a reference mask", self.images, self.with_mask)?;
        if let (Some(mean), Some(pooled)) = (self.mean_iou, self.pooled_iou) {
            write!(f, ": mean foreground IoU {mean:.4}, pooled foreground IoU {pooled:.4}")?;
        }
        Ok(())
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl MetricsTable {
    pub fn new() -> MetricsTable {
        MetricsTable::default()
    }

    /// Adds an image's row; `metrics` is `None` for an image without a reference mask.
    pub fn push(&mut self, image: impl Into<String>, width: usize, height: usize, metrics: Option<Metrics>) {
        self.rows.push(MetricsRow { image: image.into(), width, height, metrics });
    }

    /// Writes `image,width,height,pixels,labelled_pixels,accuracy,iou,dice`, one row per image (the scores
    /// are over the labelled pixels); the cells of an image without a mask after `pixels` are empty.
    pub fn write_csv(&self, mut out: impl Write) -> std::io::Result<()> {
        writeln!(out, "image,width,height,pixels,labelled_pixels,accuracy,iou,dice")?;
        for row in &self.rows {
            let pixels = row.width as u128 * row.height as u128;
            let scores = match &row.metrics {
                Some(m) => {
                    format!("{},{},{},{}", m.labelled_pixels, m.pixel_accuracy, m.foreground_iou, m.dice)
                }
                None => ",,,".to_string(),
            };
            writeln!(out, "{},{},{},{pixels},{scores}", csv_field(&row.image), row.width, row.height)?;
        }
        out.flush()
    }

    pub fn summary(&self) -> MetricsSummary {
        let scored: Vec<&Metrics> = self.rows.iter().filter_map(|r| r.metrics.as_ref()).collect();
        let mean_iou = (!scored.is_empty())
            .then(|| scored.iter().map(|m| m.foreground_iou).sum::<f64>() / scored.len() as f64);
        let pooled_iou = (!scored.is_empty()).then(|| {
            let (tp, errors) = scored.iter().fold((0u128, 0u128), |(tp, errors), m| {
                (tp + m.true_positive as u128, errors + m.false_positive as u128 + m.false_negative as u128)
            });
            // As for one image: both masks empty everywhere counts as perfect agreement.
            if tp + errors == 0 {
                1.0
            } else {
                tp as f64 / (tp + errors) as f64
            }
        });
        MetricsSummary { images: self.rows.len(), with_mask: scored.len(), mean_iou, pooled_iou }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_scores_count_each_class_against_all_others() {
        let names: Vec<String> = ["bg", "a", "b"].map(String::from).to_vec();
        let mut confusion = ClassConfusion::new(3);
        // Reference 0 0 1 1 2 2 (and one unlabelled); predicted 0 1 1 1 2 0 (and 2).
        confusion.add(&[0, 1, 1, 1, 2, 0, 2], &[0, 0, 1, 1, 2, 2, UNLABELLED]);
        let m = confusion.metrics(&names);
        assert_eq!((m.pixels, m.labelled_pixels), (7, 6));
        assert_eq!(m.confusion, [vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
        assert_eq!(m.pixel_accuracy, 4.0 / 6.0);
        // bg: tp 1, reference 2, predicted 2 -> IoU 1/3, Dice 1/2; a: 2/3, 4/5; b: 1/2, 2/3.
        let scores: Vec<(f64, f64)> = m.classes.iter().map(|s| (s.iou, s.dice)).collect();
        assert_eq!(scores, [(1.0 / 3.0, 0.5), (2.0 / 3.0, 0.8), (0.5, 2.0 / 3.0)]);
        assert_eq!(m.mean_iou, (1.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0);
        assert_eq!(m.classes[1].name, "a");
        // A class in neither mask scores 1, as the two-class foreground does.
        let mut absent = ClassConfusion::new(3);
        absent.add(&[0, 1], &[0, 1]);
        assert_eq!(absent.metrics(&names).classes[2].iou, 1.0);
    }

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

    /// Unlabelled reference pixels are counted, not scored: the scores are those of the labelled ones.
    #[test]
    fn unlabelled_pixels_are_not_scored() {
        let predicted = [1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1];
        let reference = [1, 1, 0, 1, 0, 0, 0, 0, UNLABELLED, UNLABELLED, UNLABELLED];
        let m = Metrics::compare(&predicted, &reference);
        let dense = Metrics::compare(&predicted[..8], &reference[..8]);
        assert_eq!((m.pixels, m.labelled_pixels), (11, 8));
        assert_eq!(Metrics { pixels: 8, ..m }, dense);
        assert!(m.to_string().ends_with("(over the 8 labelled pixels of 11)"), "{m}");
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!((v["labelled_pixels"].as_u64(), v["pixels"].as_u64()), (Some(8), Some(11)));
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

    #[test]
    fn csv_rows_and_summary() {
        let mut table = MetricsTable::new();
        // tp 2, fp 1, fn 1, tn 4: IoU 0.5
        let a = Metrics::compare(&[1, 1, 1, 0, 0, 0, 0, 0], &[1, 1, 0, 1, 0, 0, 0, 0]);
        // tp 6, fp 0, fn 0: IoU 1
        let b = Metrics::compare(&[1, 1, 1, 1, 1, 1], &[1, 1, 1, 1, 1, 1]);
        table.push("a", 4, 2, Some(a));
        table.push("no, mask \"here\"", 3, 5, None);
        table.push("b", 3, 2, Some(b));
        let mut csv = Vec::new();
        table.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "image,width,height,pixels,labelled_pixels,accuracy,iou,dice");
        assert_eq!(lines[1], format!("a,4,2,8,8,0.75,0.5,{}", 4.0 / 6.0));
        assert_eq!(lines[2], "\"no, mask \"\"here\"\"\",3,5,15,,,,");
        assert_eq!(lines[3], "b,3,2,6,6,1,1,1");
        assert_eq!(lines.len(), 4);

        let summary = table.summary();
        assert_eq!((summary.images, summary.with_mask), (3, 2));
        assert!((summary.mean_iou.unwrap() - 0.75).abs() < 1e-12);
        // pooled: tp 8 / (8 + 1 + 1)
        assert!((summary.pooled_iou.unwrap() - 0.8).abs() < 1e-12);
        assert!(summary.to_string().contains("mean foreground IoU 0.7500, pooled foreground IoU 0.8000"));

        let mut unscored = MetricsTable::new();
        unscored.push("x", 1, 1, None);
        let s = unscored.summary();
        assert_eq!((s.mean_iou, s.pooled_iou), (None, None));
        assert_eq!(s.to_string(), "1 images, 0 with a reference mask");
    }
}
