//! The checkpoint: one safetensors file holding the weights, the input normalisation, the optimiser state
//! (so `--resume` continues exactly), the loss and validation history (so `--resume` rebuilds loss.csv and
//! val.csv from the checkpoint itself, never from files of another run) and a training summary in its
//! metadata. Every value is checked to be finite when written and when read. Always written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::model::{Normalization, SegNet};
use imaging::classes::{ClassList, MAX_CLASSES};

/// Bumped when the layout of the file changes.
pub const FORMAT_VERSION: &str = "2";
const MEAN: &str = "normalization.mean";
/// One training loss per iteration, from iteration 1 (f32).
const LOSS_HISTORY: &str = "history.loss";
/// One row per validation: iteration, loss, IoU, Dice, accuracy, false-positive rate, labelled pixels (f64,
/// so iterations are exact; NaN for an IoU or Dice that is undefined; checkpoints before the false-positive
/// rate have 5 columns), then, with more than two classes, each class's IoU and then each class's Dice.
const VAL_HISTORY: &str = "history.validation";
/// Metadata keys of the classes, written only when they are not the two-class default (so a two-class
/// checkpoint is the seed's, byte for byte, and one without them is read as two classes).
const CLASS_NAMES_KEY: &str = "class_names";
const CLASS_COLORS_KEY: &str = "class_colors";
const STD: &str = "normalization.std";
const ADAM_M: &str = "adam.m.";
const ADAM_V: &str = "adam.v.";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is not a valid checkpoint ({reason}); pass a checkpoint.safetensors written by `trainer train`")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path} holds a bad value: {problem}; it cannot be used (train again, or resume from an earlier checkpoint)")]
    BadValue { path: PathBuf, problem: BadTensor },
}

/// A tensor whose values a checkpoint must not hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tensor `{tensor}` holds {found} at index {index}")]
pub struct BadTensor {
    pub tensor: String,
    pub index: usize,
    /// What was found, e.g. `NaN`, `inf`, `0 (a standard deviation must be > 0)`.
    pub found: String,
}

/// One validation of the model during training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValRecord {
    pub iteration: usize,
    /// Mean cross-entropy over the validation pixels.
    pub loss: f64,
    /// Foreground intersection over union, Dice, and pixel accuracy over all validation pixels. IoU and Dice
    /// are NaN (undefined) when no validation pixel is foreground in the reference masks.
    pub iou: f64,
    pub dice: f64,
    pub accuracy: f64,
    /// Background pixels predicted foreground, over all background pixels (0 when there are none): the
    /// score of negative validation images.
    pub false_positive_rate: f64,
    /// Validation pixels scored: those labelled in the validation masks (partial labels leave others
    /// unlabelled); `None` in a record from before it was kept.
    pub labelled: Option<u64>,
    /// With more than two classes: each class's IoU and Dice, of which `iou` and `dice` are the means.
    pub per_class: PerClass,
}

/// The IoU and Dice of each class of a validation with more than two classes (none with two: the record's
/// IoU is the foreground's). NaN where a class is in neither the reference nor the prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerClass {
    len: usize,
    iou: [f64; MAX_CLASSES],
    dice: [f64; MAX_CLASSES],
}

impl PerClass {
    /// No per-class scores (two classes). Unused entries stay 0, so that equal scores compare equal.
    pub const NONE: PerClass = PerClass { len: 0, iou: [0.0; MAX_CLASSES], dice: [0.0; MAX_CLASSES] };

    /// The scores of `iou.len()` classes (at most [`imaging::classes::MAX_CLASSES`]).
    pub fn new(iou: &[f64], dice: &[f64]) -> PerClass {
        assert!(iou.len() == dice.len() && iou.len() <= MAX_CLASSES, "one IoU and one Dice per class");
        let mut p = PerClass { len: iou.len(), ..PerClass::NONE };
        p.iou[..iou.len()].copy_from_slice(iou);
        p.dice[..dice.len()].copy_from_slice(dice);
        p
    }

    pub fn iou(&self) -> &[f64] {
        &self.iou[..self.len]
    }

    pub fn dice(&self) -> &[f64] {
        &self.dice[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ValRecord {
    /// What validation ranks models by, higher is better: the IoU, or, where the validation masks hold no
    /// foreground (IoU undefined), the specificity (1 - false-positive rate).
    pub fn score(&self) -> f64 {
        if self.iou.is_nan() {
            1.0 - self.false_positive_rate
        } else {
            self.iou
        }
    }

    /// The name and value of [`ValRecord::score`], for people: `IoU 0.9412` or `specificity 0.9987`.
    pub fn score_text(&self) -> String {
        if self.iou.is_nan() {
            format!("specificity {:.4} (no foreground to score IoU)", self.score())
        } else if !self.per_class.is_empty() {
            format!("mean IoU {:.4}", self.iou)
        } else {
            format!("IoU {:.4}", self.iou)
        }
    }
}

/// What a run has done so far: the loss of every iteration (index 0 = iteration 1) and every validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub losses: Vec<f32>,
    pub validation: Vec<ValRecord>,
}

impl History {
    /// The validation with the best score (see [`ValRecord::score`]; the first one on a tie).
    pub fn best(&self) -> Option<ValRecord> {
        self.validation.iter().copied().fold(None, |best, r| match best {
            Some(b) if b.score() >= r.score() => Some(b),
            _ => Some(r),
        })
    }

    /// (iteration, loss) rows.
    pub fn loss_rows(&self) -> Vec<(usize, f32)> {
        self.losses.iter().enumerate().map(|(i, &l)| (i + 1, l)).collect()
    }
}

/// What produced a set of weights: stored in the checkpoint metadata and carried into the ONNX metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingSummary {
    /// Iterations completed.
    pub iterations: usize,
    /// Loss of the last completed iteration (NaN when none ran).
    pub final_loss: f32,
    /// File names (not full paths) of the training image and mask.
    pub image: String,
    pub mask: String,
    pub batch: usize,
    pub crop: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// The settings that shape the optimisation, as flags (`--batch 4 --crop 128 ...`); empty in a checkpoint
    /// written before they were recorded.
    pub recipe: String,
    /// The run's data: each image's name, size and content hash (see `train::fingerprint`); empty when not
    /// recorded.
    pub data: String,
    /// The checkpoint a new run started from (`--init-from`), if any.
    pub initialized_from: String,
    /// The classes' names and colours, one per output channel of the network.
    pub classes: ClassList,
}

impl TrainingSummary {
    /// A fixed summary for the tests of the modules that write it into their files.
    #[cfg(test)]
    pub(crate) fn example() -> TrainingSummary {
        TrainingSummary {
            iterations: 3000,
            final_loss: 0.125,
            image: "image.png".into(),
            mask: "mask.png".into(),
            batch: 4,
            crop: 128,
            learning_rate: 1e-3,
            seed: 7,
            recipe: "--batch 4 --crop 128".into(),
            data: "image.png 64x48 0123456789abcdef".into(),
            initialized_from: String::new(),
            classes: ClassList::default(),
        }
    }

    fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("producer".to_string(), format!("trainer {}", env!("CARGO_PKG_VERSION"))),
            ("iterations".to_string(), self.iterations.to_string()),
            ("final_loss".to_string(), self.final_loss.to_string()),
            ("image".to_string(), self.image.clone()),
            ("mask".to_string(), self.mask.clone()),
            ("batch".to_string(), self.batch.to_string()),
            ("crop".to_string(), self.crop.to_string()),
            ("learning_rate".to_string(), self.learning_rate.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("recipe".to_string(), self.recipe.clone()),
            ("data_fingerprint".to_string(), self.data.clone()),
            ("initialized_from".to_string(), self.initialized_from.clone()),
        ])
    }

    fn from_metadata(meta: &HashMap<String, String>) -> Result<TrainingSummary, String> {
        fn field<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str) -> Result<T, String> {
            meta.get(key)
                .ok_or_else(|| format!("metadata `{key}` is missing"))?
                .parse()
                .map_err(|_| format!("metadata `{key}` is not a valid number"))
        }
        Ok(TrainingSummary {
            iterations: field(meta, "iterations")?,
            final_loss: field(meta, "final_loss")?,
            image: meta.get("image").cloned().unwrap_or_default(),
            mask: meta.get("mask").cloned().unwrap_or_default(),
            batch: field(meta, "batch")?,
            crop: field(meta, "crop")?,
            learning_rate: field(meta, "learning_rate")?,
            seed: field(meta, "seed")?,
            recipe: meta.get("recipe").cloned().unwrap_or_default(),
            data: meta.get("data_fingerprint").cloned().unwrap_or_default(),
            initialized_from: meta.get("initialized_from").cloned().unwrap_or_default(),
            classes: match meta.get(CLASS_NAMES_KEY) {
                Some(names) => ClassList::from_text(names, meta.get(CLASS_COLORS_KEY).map(String::as_str))
                    .map_err(|e| format!("metadata `{CLASS_NAMES_KEY}`/`{CLASS_COLORS_KEY}`: {e}"))?,
                None => ClassList::default(),
            },
        })
    }
}

/// `bytes` (safetensors) with the header's `__metadata__` object written in key order. safetensors takes the
/// metadata as a `HashMap` and writes it in hash order, which differs from process to process; the same
/// training must write the same bytes. The sorted object has the same entries, so the same length: nothing else moves.
fn metadata_in_key_order(mut bytes: Vec<u8>, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    const PREFIX: &[u8] = b"{\"__metadata__\":";
    let start = 8 + PREFIX.len();
    if bytes.get(8..start) != Some(PREFIX) {
        return Err("safetensors did not write the metadata first in the header".into());
    }
    let mut objects =
        serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<HashMap<String, String>>();
    let written = objects.next().and_then(Result::ok);
    let end = start + objects.byte_offset();
    let sorted = serde_json::to_vec(metadata).map_err(|e| e.to_string())?;
    if written.is_none_or(|w| w.len() != metadata.len()) || sorted.len() != end - start {
        return Err("the safetensors header's metadata is not the metadata given".into());
    }
    bytes[start..end].copy_from_slice(&sorted);
    Ok(bytes)
}

/// Adam's first and second moments, one pair per trainable tensor, by name.
pub type AdamMoments = HashMap<String, (Tensor, Tensor)>;

/// Everything a checkpoint holds.
pub struct Checkpoint {
    pub net: SegNet,
    pub summary: TrainingSummary,
    /// Absent in a checkpoint written without optimiser state.
    pub adam: Option<AdamMoments>,
    /// Empty in a checkpoint of format 1 (before the history was stored).
    pub history: History,
}

/// The first value of `values` that is not finite (or, with `positive`, not > 0).
fn first_bad(name: &str, values: impl IntoIterator<Item = f64>, positive: bool) -> Result<(), BadTensor> {
    for (index, v) in values.into_iter().enumerate() {
        let found = if v.is_nan() {
            "NaN".to_string()
        } else if v.is_infinite() {
            format!("{v}")
        } else if positive && v <= 0.0 {
            format!("{v} (a standard deviation must be > 0)")
        } else {
            continue;
        };
        return Err(BadTensor { tensor: name.to_string(), index, found });
    }
    Ok(())
}

fn tensor_values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1()
}

impl Checkpoint {
    /// Checks every value: weights and Adam moments finite (second moments >= 0), normalisation mean finite
    /// and std finite and > 0, the history finite. Names the first bad tensor.
    pub fn check_values(&self) -> Result<(), BadTensor> {
        let unreadable = |name: &str, e: candle_core::Error| BadTensor {
            tensor: name.to_string(),
            index: 0,
            found: format!("unreadable values ({e})"),
        };
        for (name, t) in self.net.named_tensors() {
            first_bad(&name, tensor_values(&t).map_err(|e| unreadable(&name, e))?, false)?;
        }
        let norm = self.net.normalization;
        first_bad(MEAN, norm.mean.map(f64::from), false)?;
        first_bad(STD, norm.std.map(f64::from), true)?;
        if let Some(adam) = &self.adam {
            let mut names: Vec<&String> = adam.keys().collect();
            names.sort();
            for name in names {
                let (m, v) = &adam[name];
                let (mn, vn) = (format!("{ADAM_M}{name}"), format!("{ADAM_V}{name}"));
                first_bad(&mn, tensor_values(m).map_err(|e| unreadable(&mn, e))?, false)?;
                let v = tensor_values(v).map_err(|e| unreadable(&vn, e))?;
                first_bad(&vn, v.iter().copied(), false)?;
                if let Some(index) = v.iter().position(|&x| x < 0.0) {
                    let found = format!("{} (a second moment must be >= 0)", v[index]);
                    return Err(BadTensor { tensor: vn, index, found });
                }
            }
        }
        first_bad(LOSS_HISTORY, self.history.losses.iter().map(|&l| f64::from(l)), false)?;
        // IoU and Dice may be NaN (undefined without foreground), and so may the false-positive rate of a
        // record from before it was kept: not bad values.
        let rows = self.history.validation.iter().flat_map(|r| {
            [r.loss, r.iou, r.dice, r.accuracy, r.false_positive_rate]
                .into_iter()
                .enumerate()
                .map(|(i, v)| if matches!(i, 1 | 2 | 4) && v.is_nan() { 0.0 } else { v })
        });
        first_bad(VAL_HISTORY, rows, false)?;
        let per_class = self.history.validation.iter().flat_map(|r| {
            r.per_class.iou().iter().chain(r.per_class.dice()).map(|&v| if v.is_nan() { 0.0 } else { v })
        });
        first_bad(VAL_HISTORY, per_class, false)
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> candle_core::Result<Vec<u8>> {
        let dev = Device::Cpu;
        let norm = self.net.normalization;
        let mut tensors: Vec<(String, Tensor)> = self
            .net
            .named_tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(&dev)?)))
            .collect::<candle_core::Result<_>>()?;
        tensors.push((MEAN.to_string(), Tensor::new(&norm.mean, &dev)?));
        tensors.push((STD.to_string(), Tensor::new(&norm.std, &dev)?));
        if let Some(adam) = &self.adam {
            for (name, (m, v)) in adam {
                tensors.push((format!("{ADAM_M}{name}"), m.to_device(&dev)?));
                tensors.push((format!("{ADAM_V}{name}"), v.to_device(&dev)?));
            }
        }
        tensors.push((LOSS_HISTORY.to_string(), Tensor::new(self.history.losses.as_slice(), &dev)?));
        // Every record of a run has the same classes; more than two add their per-class columns.
        let per_class = self.history.validation.iter().map(|r| r.per_class.len()).max().unwrap_or(0);
        let val: Vec<f64> = self
            .history
            .validation
            .iter()
            .flat_map(|r| {
                let labelled = r.labelled.map_or(f64::NAN, |n| n as f64);
                let padded = |v: &[f64]| {
                    (0..per_class).map(|i| v.get(i).copied().unwrap_or(f64::NAN)).collect::<Vec<_>>()
                };
                [r.iteration as f64, r.loss, r.iou, r.dice, r.accuracy, r.false_positive_rate, labelled]
                    .into_iter()
                    .chain(padded(r.per_class.iou()))
                    .chain(padded(r.per_class.dice()))
            })
            .collect();
        tensors.push((
            VAL_HISTORY.to_string(),
            Tensor::from_vec(val, (self.history.validation.len(), 7 + 2 * per_class), &dev)?,
        ));
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let mut metadata = self.summary.to_metadata();
        if let Some(best) = self.history.best() {
            metadata.insert("best_iteration".into(), best.iteration.to_string());
            metadata.insert("best_val_iou".into(), best.iou.to_string());
        }
        if !self.summary.classes.is_default_two() {
            metadata.insert(CLASS_NAMES_KEY.into(), self.summary.classes.names_text());
            metadata.insert(CLASS_COLORS_KEY.into(), self.summary.classes.colors_text());
        }
        let bytes = safetensors::serialize(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(metadata.clone().into_iter().collect()),
        )
        .map_err(candle_core::Error::wrap)?;
        metadata_in_key_order(bytes, &metadata).map_err(candle_core::Error::Msg)
    }

    /// Parses safetensors bytes; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
        let invalid = |reason: String| CheckpointError::Invalid { path: path.to_path_buf(), reason };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| invalid(format!("unreadable: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let summary = TrainingSummary::from_metadata(&meta).map_err(invalid)?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| invalid(format!("unreadable: {e}")))?;
        let vec3 = |name: &str| -> Result<[f32; 3], CheckpointError> {
            let t = tensors.get(name).ok_or_else(|| invalid(format!("tensor `{name}` is missing")))?;
            let v: Vec<f32> = t.to_vec1().map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            v.try_into().map_err(|_| invalid(format!("tensor `{name}` must hold 3 values")))
        };
        let normalization = Normalization { mean: vec3(MEAN)?, std: vec3(STD)? };
        let net =
            SegNet::from_tensors(&tensors, normalization, device).map_err(|e| invalid(e.to_string()))?;
        if net.classes() != summary.classes.len() {
            return Err(invalid(format!(
                "the network has {} classes but the metadata names {} ({})",
                net.classes(),
                summary.classes.len(),
                summary.classes.names_text()
            )));
        }
        let mut adam = AdamMoments::new();
        for (name, _) in net.named_tensors() {
            let (m, v) = (tensors.get(&format!("{ADAM_M}{name}")), tensors.get(&format!("{ADAM_V}{name}")));
            if let (Some(m), Some(v)) = (m, v) {
                let to = |t: &Tensor| t.to_device(device).map_err(|e| invalid(e.to_string()));
                adam.insert(name, (to(m)?, to(v)?));
            }
        }
        let adam = (adam.len() == net.named_tensors().len()).then_some(adam);
        let history = read_history(&tensors, summary.iterations).map_err(invalid)?;
        let ck = Checkpoint { net, summary, adam, history };
        ck.check_values()
            .map_err(|problem| CheckpointError::BadValue { path: path.to_path_buf(), problem })?;
        Ok(ck)
    }

    pub fn load(path: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|e| CheckpointError::Read {
            path: path.to_path_buf(),
            reason: imaging::files::io_reason(&e),
        })?;
        Checkpoint::from_bytes(&bytes, path, device)
    }

    /// Writes atomically: a failure leaves any previous file at `path` as it was. Refuses to write a
    /// checkpoint holding a non-finite value.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        self.check_values()
            .map_err(|problem| CheckpointError::BadValue { path: path.to_path_buf(), problem })?;
        let write_err = |reason: String| CheckpointError::Write { path: path.to_path_buf(), reason };
        let bytes = self.to_bytes().map_err(|e| write_err(e.to_string()))?;
        imaging::files::write_atomic("the checkpoint", path, &bytes).map_err(|e| write_err(e.to_string()))
    }
}

/// The stored history; absent tensors (format 1) give an empty history. A loss history that is not empty must
/// cover exactly the checkpoint's iterations.
fn read_history(tensors: &HashMap<String, Tensor>, iterations: usize) -> Result<History, String> {
    let mut history = History::default();
    if let Some(t) = tensors.get(LOSS_HISTORY) {
        history.losses = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec1())
            .map_err(|e| format!("tensor `{LOSS_HISTORY}`: {e}"))?;
        // Empty: a checkpoint made without a loss history (by a library caller); the CLI always records one.
        if !history.losses.is_empty() && history.losses.len() != iterations {
            return Err(format!(
                "tensor `{LOSS_HISTORY}` holds {} losses for {iterations} iterations",
                history.losses.len()
            ));
        }
    }
    if let Some(t) = tensors.get(VAL_HISTORY) {
        let rows: Vec<Vec<f64>> = t
            .to_dtype(candle_core::DType::F64)
            .and_then(|t| t.to_vec2())
            .map_err(|e| format!("tensor `{VAL_HISTORY}`: {e}"))?;
        for row in rows {
            let extra = row.len().saturating_sub(7);
            let per_class = if extra > 0 && extra.is_multiple_of(2) && extra / 2 <= MAX_CLASSES {
                PerClass::new(&row[7..7 + extra / 2], &row[7 + extra / 2..])
            } else {
                PerClass::NONE
            };
            let (iteration, loss, iou, dice, accuracy, false_positive_rate, labelled) = match row[..] {
                [i, l, iou, d, a, f, n, ..] if extra == 2 * per_class.len() => (i, l, iou, d, a, f, n),
                [i, l, iou, d, a, f] => (i, l, iou, d, a, f, f64::NAN),
                [i, l, iou, d, a] => (i, l, iou, d, a, f64::NAN, f64::NAN),
                _ => {
                    return Err(format!(
                        "tensor `{VAL_HISTORY}` must have 5 to 7 columns, or 7 and two per class"
                    ))
                }
            };
            let labelled = (labelled >= 0.0 && labelled.fract() == 0.0).then_some(labelled as u64);
            if !(iteration >= 1.0 && iteration <= iterations as f64 && iteration.fract() == 0.0) {
                return Err(format!("tensor `{VAL_HISTORY}` names iteration {iteration} of {iterations}"));
            }
            history.validation.push(ValRecord {
                iteration: iteration as usize,
                loss,
                iou,
                dice,
                accuracy,
                false_positive_rate,
                labelled,
                per_class,
            });
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TrainingSummary {
        TrainingSummary {
            iterations: 12,
            final_loss: 0.25,
            image: "image.png".into(),
            mask: "mask.png".into(),
            batch: 4,
            crop: 128,
            learning_rate: 1e-3,
            seed: 3,
            recipe: "--batch 4 --crop 128 --lr 0.001".into(),
            data: "image.png 8x8 0000000000000001".into(),
            initialized_from: "other.safetensors (iteration 5 of a run on a.png)".into(),
            classes: ClassList::default(),
        }
    }

    #[test]
    fn round_trip_keeps_weights_normalization_and_summary() {
        let norm = Normalization { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] };
        let net = SegNet::random(5, norm, &Device::Cpu).unwrap();
        let history = History {
            losses: (0..12).map(|i| 1.0 / (i + 1) as f32).collect(),
            validation: vec![ValRecord {
                iteration: 6,
                loss: 0.5,
                iou: 0.75,
                dice: 0.8,
                accuracy: 0.9,
                false_positive_rate: 0.05,
                labelled: Some(1234),
                per_class: PerClass::NONE,
            }],
        };
        let ck = Checkpoint { net, summary: summary(), adam: None, history: history.clone() };
        let bytes = ck.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes, Path::new("x"), &Device::Cpu).unwrap();
        assert_eq!(back.summary, summary());
        assert_eq!(back.history, history);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!((meta["best_iteration"].as_str(), meta["best_val_iou"].as_str()), ("6", "0.75"));
        // A history that does not cover the checkpoint's iterations is refused; an absent one is allowed.
        let net = SegNet::random(5, norm, &Device::Cpu).unwrap();
        let losses = vec![0.5; 3];
        let short = Checkpoint {
            net,
            summary: summary(),
            adam: None,
            history: History { losses, validation: Vec::new() },
        };
        let err =
            Checkpoint::from_bytes(&short.to_bytes().unwrap(), Path::new("x"), &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("holds 3 losses for 12 iterations"), "{err}");
        let none = Checkpoint { history: History::default(), ..short };
        assert!(Checkpoint::from_bytes(&none.to_bytes().unwrap(), Path::new("x"), &Device::Cpu).is_ok());
        assert_eq!(back.net.normalization, norm);
        assert!(back.adam.is_none());
        for ((n1, t1), (n2, t2)) in ck.net.named_tensors().iter().zip(back.net.named_tensors()) {
            assert_eq!(n1, &n2);
            assert_eq!(
                t1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                t2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn more_classes_keep_their_names_colours_and_per_class_scores() {
        let net = SegNet::random_with_classes(3, 5, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let classes = ClassList::resolve(
            None,
            Some(vec!["background".into(), "nuclei".into(), "dab".into()]),
            Some(vec![[0, 0, 0], [0, 0, 255], [150, 75, 0]]),
        )
        .unwrap();
        let record = ValRecord {
            iteration: 6,
            loss: 0.5,
            iou: 0.5,
            dice: 0.6,
            accuracy: 0.9,
            false_positive_rate: 0.05,
            labelled: Some(10),
            per_class: PerClass::new(&[0.25, 0.5, 0.75], &[0.4, 0.6, 0.8]),
        };
        let history = History { losses: vec![0.5; 12], validation: vec![record] };
        let named = TrainingSummary { classes: classes.clone(), ..summary() };
        let ck = Checkpoint { net, summary: named, adam: None, history: history.clone() };
        let bytes = ck.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes, Path::new("x"), &Device::Cpu).unwrap();
        assert_eq!((back.net.classes(), &back.summary.classes), (3, &classes));
        assert_eq!(back.history, history);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(meta[CLASS_COLORS_KEY], "#000000,#0000ff,#964b00");
        // Two classes write no class keys (the seed's checkpoint) and a checkpoint without them is two-class.
        let two = with(SegNet::random(5, Normalization::IDENTITY, &Device::Cpu).unwrap(), None);
        let (_, header) = safetensors::SafeTensors::read_metadata(&two.to_bytes().unwrap()).unwrap();
        assert!(!header.metadata().clone().unwrap().contains_key(CLASS_NAMES_KEY));
        // Names that do not match the network's width are refused.
        let wrong = Checkpoint {
            net: SegNet::random(5, Normalization::IDENTITY, &Device::Cpu).unwrap(),
            summary: TrainingSummary { classes, ..summary() },
            adam: None,
            history: History::default(),
        };
        let err =
            Checkpoint::from_bytes(&wrong.to_bytes().unwrap(), Path::new("x"), &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("the network has 2 classes but the metadata names 3"), "{err}");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = Checkpoint::from_bytes(b"not a checkpoint", Path::new("bad.safetensors"), &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.safetensors is not a valid checkpoint"), "{err}");
    }

    #[test]
    fn metadata_is_written_in_key_order() {
        let net = SegNet::random(5, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let ck = Checkpoint { net, summary: summary(), adam: None, history: History::default() };
        let bytes = ck.to_bytes().unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        let keys: Vec<String> = summary().to_metadata().into_keys().collect();
        assert!(keys.len() > 10);
        let positions: Vec<usize> =
            keys.iter().map(|k| header.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k}"))).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{header}");
        // Written again (a new hash map, so another hash order inside safetensors): the same bytes.
        assert_eq!(ck.to_bytes().unwrap(), bytes);
        let back = Checkpoint::from_bytes(&bytes, Path::new("x"), &Device::Cpu).unwrap();
        assert_eq!(back.summary, summary());
    }

    #[test]
    fn wrong_shape_is_a_clear_error() {
        let net = SegNet::random(5, Normalization::IDENTITY, &Device::Cpu).unwrap();
        let mut tensors: Vec<(String, Tensor)> = net.named_tensors();
        tensors[0].1 = Tensor::zeros((16, 3, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        tensors.push((MEAN.into(), Tensor::new(&[0f32; 3], &Device::Cpu).unwrap()));
        tensors.push((STD.into(), Tensor::new(&[1f32; 3], &Device::Cpu).unwrap()));
        let bytes = safetensors::serialize(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(summary().to_metadata().into_iter().collect()),
        )
        .unwrap();
        let err = Checkpoint::from_bytes(&bytes, Path::new("w.safetensors"), &Device::Cpu).err().unwrap();
        assert!(
            err.to_string().contains("conv1.weight") && err.to_string().contains("[16, 3, 5, 5]"),
            "{err}"
        );
    }

    fn with(net: SegNet, adam: Option<AdamMoments>) -> Checkpoint {
        let history = History { losses: vec![0.5; 12], validation: Vec::new() };
        Checkpoint { net, summary: summary(), adam, history }
    }

    fn bad_value(ck: &Checkpoint) -> String {
        // Writing refuses it, and so does reading a file that holds it (written past the check).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let err = ck.save(&path).unwrap_err().to_string();
        assert!(!path.exists(), "a checkpoint with a bad value was written");
        std::fs::write(&path, ck.to_bytes().unwrap()).unwrap();
        let read = Checkpoint::load(&path, &Device::Cpu).err().unwrap().to_string();
        assert_eq!(err, read);
        read
    }

    #[test]
    fn non_finite_values_are_refused_on_write_and_read_naming_the_tensor() {
        let dev = Device::Cpu;
        let good = || SegNet::random(1, Normalization::IDENTITY, &dev).unwrap();
        assert!(with(good(), None).check_values().is_ok());

        let mut tensors: HashMap<String, Tensor> = good().named_tensors().into_iter().collect();
        let mut w = tensors["conv3.bias"].to_vec1::<f32>().unwrap();
        w[5] = f32::NAN;
        tensors.insert("conv3.bias".into(), Tensor::new(w.as_slice(), &dev).unwrap());
        let nan_net = SegNet::from_tensors(&tensors, Normalization::IDENTITY, &dev).unwrap();
        let err = bad_value(&with(nan_net, None));
        assert!(err.contains("tensor `conv3.bias` holds NaN at index 5"), "{err}");

        let zero_std = Normalization { mean: [0.0; 3], std: [1.0, 0.0, 1.0] };
        let err = bad_value(&with(SegNet::random(1, zero_std, &dev).unwrap(), None));
        assert!(
            err.contains("`normalization.std` holds 0 (a standard deviation must be > 0) at index 1"),
            "{err}"
        );
        let nan_mean = Normalization { mean: [0.0, 0.0, f32::NAN], std: [1.0; 3] };
        let err = bad_value(&with(SegNet::random(1, nan_mean, &dev).unwrap(), None));
        assert!(err.contains("`normalization.mean` holds NaN at index 2"), "{err}");

        let net = good();
        let mut adam: AdamMoments = net
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, (t.zeros_like().unwrap(), t.zeros_like().unwrap())))
            .collect();
        let v = adam["conv1.weight"].1.affine(0.0, f64::INFINITY).unwrap();
        adam.get_mut("conv1.weight").unwrap().1 = v;
        let err = bad_value(&with(net, Some(adam)));
        assert!(err.contains("`adam.v.conv1.weight` holds inf at index 0"), "{err}");

        let mut ck = with(good(), None);
        ck.history.losses[3] = f32::INFINITY;
        assert!(bad_value(&ck).contains("`history.loss` holds inf at index 3"));
    }
}
