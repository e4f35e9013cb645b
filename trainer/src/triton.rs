//! A Triton Inference Server model repository entry for the exported graph: `DIR/<name>/config.pbtxt`
//! beside `DIR/<name>/1/model.onnx`.
//!
//! The configuration text is a pure function of the model name and the graph's signature, so it names the
//! graph's tensors by construction. The writer stages both files before renaming either, so a failed export
//! leaves an existing entry as it was.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::export::{ensure_not_checkpoint, ExportError, Signature};
use imaging::tiles::{HALO, PIXEL_BUDGET};

/// The configuration file Triton reads in each model directory.
pub const CONFIG_FILE: &str = "config.pbtxt";
/// The file name Triton's ONNX Runtime backend loads from a version directory by default.
pub const MODEL_FILE: &str = "model.onnx";
/// The one version written (Triton serves the highest numbered version directory by default).
pub const VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum TritonError {
    #[error(
        "model name `{name}` cannot name a Triton model directory: use 1 to 64 letters, digits, `_` or `-` \
         (e.g. --name segmenter)"
    )]
    InvalidName { name: String },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("cannot write the Triton repository entry {path}: {source}; check that the folder is writable")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Triton model names become directory names and URL path segments: keep them to a portable set.
pub fn check_model_name(name: &str) -> Result<(), TritonError> {
    let valid = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(TritonError::InvalidName { name: name.to_string() })
    }
}

/// The `config.pbtxt` text (protobuf text format of Triton's `ModelConfig`) serving the ONNX graph whose
/// tensors are `signature` under the model name `name`.
///
/// `max_batch_size: 0` with the batch in the dims: a client sends whole (N,3,H,W) requests that it keeps
/// within the pixel budget; Triton's own batching would concatenate requests past it.
pub fn config_pbtxt(name: &str, signature: &Signature) -> String {
    let tensor = |out: &mut String, name: &str, channels: usize| {
        let _ = write!(
            out,
            "  {{\n    name: \"{name}\"\n    data_type: TYPE_FP32\n    dims: [ -1, {channels}, -1, -1 ]\n  }}"
        );
    };
    let mut text = format!(
        "# Triton Inference Server model `{name}`: the two-class segmenter exported by `trainer export --triton`\n\
         # (trainer {version}). Input `{input}`: float32 RGB (N,3,H,W) scaled to [0,1] (bytes / 255), H and W even;\n\
         # the normalisation is inside the graph. Outputs (N,2,H,W): class 0 background, class 1 foreground.\n\
         #\n\
         # Memory budget: each request must stay within {budget} input pixels (N x H x W), e.g. one 256x256 tile\n\
         # or four 128x128 tiles; Triton does not check this. Predict larger images by overlapping tiles read with\n\
         # an {halo}-px halo at even origins, keeping each tile's centre, as `runner predict` does: the result then\n\
         # equals one pass over the whole image. max_batch_size is 0 (the batch is part of the dims) so that\n\
         # Triton never batches requests together past the budget.\n",
        version = env!("CARGO_PKG_VERSION"),
        input = signature.input.name,
        budget = PIXEL_BUDGET,
        halo = HALO,
    );
    let _ = writeln!(text, "name: \"{name}\"");
    text.push_str("platform: \"onnxruntime_onnx\"\nmax_batch_size: 0\ninput [\n");
    tensor(&mut text, &signature.input.name, signature.input.channels);
    text.push_str("\n]\noutput [\n");
    for (i, output) in signature.outputs.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        tensor(&mut text, &output.name, output.channels);
    }
    text.push_str("\n]\n");
    text
}

/// What [`write_repository`] wrote. Its `Display` is one line for the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonReport {
    pub config: PathBuf,
    pub model: PathBuf,
}

impl std::fmt::Display for TritonReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote Triton model repository entry {} and {}",
            self.config.display(),
            self.model.display()
        )
    }
}

/// Writes `dir/<name>/config.pbtxt` and `dir/<name>/1/model.onnx` (the encoded graph `onnx`, whose tensors
/// are `signature`). Other files in `dir/<name>` (other versions) are left alone. Both files are staged
/// beside their targets before either is renamed into place; on failure the staged files, and the model
/// directory if this call created it, are removed. Refuses to overwrite `checkpoint`.
pub fn write_repository(
    dir: &Path,
    name: &str,
    signature: &Signature,
    onnx: &[u8],
    checkpoint: &Path,
) -> Result<TritonReport, TritonError> {
    check_model_name(name)?;
    let model_dir = dir.join(name);
    let config = model_dir.join(CONFIG_FILE);
    let model = model_dir.join(VERSION).join(MODEL_FILE);
    for target in [&config, &model] {
        ensure_not_checkpoint(checkpoint, target)?;
    }
    let created_model_dir = !model_dir.exists();
    let text = config_pbtxt(name, signature);
    let result = write_pair([(&config, text.as_bytes()), (&model, onnx)]);
    if result.is_err() && created_model_dir {
        let _ = std::fs::remove_dir_all(&model_dir);
    }
    result.map_err(|(path, source)| TritonError::Write { path, source })?;
    Ok(TritonReport { config, model })
}

/// Writes two files so that a failure leaves both old files in place: each is written to a temporary file
/// beside its target (creating folders as needed), and only when both are written are they renamed.
fn write_pair(files: [(&Path, &[u8]); 2]) -> Result<(), (PathBuf, std::io::Error)> {
    let staged: Vec<PathBuf> = files.iter().map(|(path, _)| staging_path(path)).collect();
    let stage = |path: &Path, tmp: &Path, bytes: &[u8]| -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    let mut result = Ok(());
    for ((path, bytes), tmp) in files.iter().zip(&staged) {
        if let Err(e) = stage(path, tmp, bytes) {
            result = Err((path.to_path_buf(), e));
            break;
        }
    }
    if result.is_ok() {
        for ((path, _), tmp) in files.iter().zip(&staged) {
            if let Err(e) = std::fs::rename(tmp, path) {
                result = Err((path.to_path_buf(), e));
                break;
            }
        }
    }
    for tmp in &staged {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::TensorSignature;

    fn signature() -> Signature {
        let entry = |name: &str, channels| TensorSignature { name: name.into(), channels };
        Signature { input: entry("image", 3), outputs: vec![entry("logits", 2), entry("probabilities", 2)] }
    }

    /// The config without its comment lines.
    fn fields(text: &str) -> String {
        text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn config_serves_the_graph_with_full_dynamic_dims() {
        let text = config_pbtxt("conifer-lumens", &signature());
        let expected = r#"name: "conifer-lumens"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [
  {
    name: "image"
    data_type: TYPE_FP32
    dims: [ -1, 3, -1, -1 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ -1, 2, -1, -1 ]
  },
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ -1, 2, -1, -1 ]
  }
]"#;
        assert_eq!(fields(&text), expected);
    }

    #[test]
    fn config_names_whatever_tensors_the_signature_has() {
        let mut sig = signature();
        sig.input.name = "rgb".into();
        sig.outputs.truncate(1);
        sig.outputs[0] = TensorSignature { name: "scores".into(), channels: 5 };
        let text = fields(&config_pbtxt("other", &sig));
        assert!(
            text.contains("name: \"rgb\"\n    data_type: TYPE_FP32\n    dims: [ -1, 3, -1, -1 ]"),
            "{text}"
        );
        assert!(
            text.contains("name: \"scores\"\n    data_type: TYPE_FP32\n    dims: [ -1, 5, -1, -1 ]"),
            "{text}"
        );
        assert!(!text.contains("logits") && !text.contains("probabilities"), "{text}");
    }

    #[test]
    fn config_comment_states_the_pixel_budget_and_halo() {
        let text = config_pbtxt("segmenter", &signature());
        let comment: String = text.lines().filter(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
        assert!(comment.contains("within 65536 input pixels (N x H x W)"), "{comment}");
        assert!(comment.contains("8-px halo"), "{comment}");
        assert!(text.lines().all(|l| l.is_empty() || l.starts_with('#') || !l.contains('#')), "{text}");
    }

    #[test]
    fn model_names_are_checked() {
        for good in ["segmenter", "conifer_lumens-v2", "a"] {
            check_model_name(good).unwrap();
        }
        for bad in ["", "../up", "with space", "dot.ted", "x/y", &"n".repeat(65)] {
            let err = check_model_name(bad).unwrap_err();
            assert!(err.to_string().contains("--name"), "{err}");
        }
    }
}
