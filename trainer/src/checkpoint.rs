//! The checkpoint: one safetensors file holding the weights, the input normalisation, the optimiser state
//! (so `--resume` continues exactly) and a training summary in its metadata. Always written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::model::{Normalization, SegNet};

/// Bumped when the layout of the file changes.
pub const FORMAT_VERSION: &str = "1";
const MEAN: &str = "normalization.mean";
const STD: &str = "normalization.std";
const ADAM_M: &str = "adam.m.";
const ADAM_V: &str = "adam.v.";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid checkpoint ({reason}); pass a checkpoint.safetensors written by `trainer train`")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: PathBuf, reason: String },
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
}

impl TrainingSummary {
    fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
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
        })
    }
}

/// Adam's first and second moments, one pair per trainable tensor, by name.
pub type AdamMoments = HashMap<String, (Tensor, Tensor)>;

/// Everything a checkpoint holds.
pub struct Checkpoint {
    pub net: SegNet,
    pub summary: TrainingSummary,
    /// Absent in a checkpoint written without optimiser state.
    pub adam: Option<AdamMoments>,
}

impl Checkpoint {
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
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(self.summary.to_metadata()))
            .map_err(candle_core::Error::wrap)
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
        let mut adam = AdamMoments::new();
        for (name, _) in net.named_tensors() {
            let (m, v) = (tensors.get(&format!("{ADAM_M}{name}")), tensors.get(&format!("{ADAM_V}{name}")));
            if let (Some(m), Some(v)) = (m, v) {
                let to = |t: &Tensor| t.to_device(device).map_err(|e| invalid(e.to_string()));
                adam.insert(name, (to(m)?, to(v)?));
            }
        }
        let adam = (adam.len() == net.named_tensors().len()).then_some(adam);
        Ok(Checkpoint { net, summary, adam })
    }

    pub fn load(path: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
        let bytes = std::fs::read(path)
            .map_err(|source| CheckpointError::Read { path: path.to_path_buf(), source })?;
        Checkpoint::from_bytes(&bytes, path, device)
    }

    /// Writes atomically: a failure leaves any previous file at `path` as it was.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let write_err = |reason: String| CheckpointError::Write { path: path.to_path_buf(), reason };
        let bytes = self.to_bytes().map_err(|e| write_err(e.to_string()))?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|e| write_err(e.to_string()))
    }
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
        }
    }

    #[test]
    fn round_trip_keeps_weights_normalization_and_summary() {
        let norm = Normalization { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] };
        let net = SegNet::random(5, norm, &Device::Cpu).unwrap();
        let ck = Checkpoint { net, summary: summary(), adam: None };
        let back = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("x"), &Device::Cpu).unwrap();
        assert_eq!(back.summary, summary());
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
    fn garbage_is_a_clear_error() {
        let err = Checkpoint::from_bytes(b"not a checkpoint", Path::new("bad.safetensors"), &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.safetensors is not a valid checkpoint"), "{err}");
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
            Some(summary().to_metadata()),
        )
        .unwrap();
        let err = Checkpoint::from_bytes(&bytes, Path::new("w.safetensors"), &Device::Cpu).err().unwrap();
        assert!(
            err.to_string().contains("conv1.weight") && err.to_string().contains("[16, 3, 5, 5]"),
            "{err}"
        );
    }
}
