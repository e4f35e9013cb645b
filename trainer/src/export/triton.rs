//! A Triton Inference Server model repository entry for the exported graph: `DIR/<name>/config.pbtxt`
//! beside `DIR/<name>/<version>/model.onnx`.
//!
//! The configuration text is a pure function of the model name and the graph's signature, so it names the
//! graph's tensors by construction. The writer stages both files before renaming either, so a failed export
//! leaves an existing entry as it was.
//!
//! Versions: Triton's default version policy serves only the highest numbered version folder. An export
//! therefore writes the next version after those already in the model folder ([`Entry::plan`]), and an
//! explicitly requested version that is below an existing one is refused: it would never be served.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::name::{check_model_name, NameError};
use super::{ensure_not_checkpoint, OverwritesCheckpoint, Signature};
use imaging::tiles::{HALO, PIXEL_BUDGET};

/// The configuration file Triton reads in each model directory.
pub const CONFIG_FILE: &str = "config.pbtxt";
/// The file name Triton's ONNX Runtime backend loads from a version directory by default.
pub const MODEL_FILE: &str = "model.onnx";
/// The version a new model folder gets (Triton ignores version folders named 0 or with a leading zero).
pub const FIRST_VERSION: u64 = 1;
/// The flag that names the repository in messages.
const FLAG: &str = "--triton";

#[derive(Debug, thiserror::Error)]
pub enum TritonError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(
        "--triton-version {requested}: {} already has {}, and Triton's default version policy serves \
         only the highest version, so version {requested} would never be served; pass a version of at least \
         {highest}, or leave --triton-version out to write version {next}",
        .model_dir.display(),
        versions(.existing),
        highest = .existing.last().copied().unwrap_or(0),
        next = .existing.last().copied().unwrap_or(0) + 1
    )]
    OlderVersion { requested: u64, model_dir: PathBuf, existing: Vec<u64> },
    #[error("--triton-version 0: Triton ignores a version folder named 0; pass 1 or more")]
    ZeroVersion,
    #[error(
        "cannot list the versions in the Triton model folder {path}: {source}; check that it is readable"
    )]
    List { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Checkpoint(#[from] OverwritesCheckpoint),
    #[error("cannot write the Triton repository entry {path}: {source}; check that the folder is writable")]
    Write { path: PathBuf, source: std::io::Error },
}

/// "1", "1 and 2", "1, 2 and 3".
fn list(versions: &[u64]) -> String {
    let text: Vec<String> = versions.iter().map(u64::to_string).collect();
    match text.split_last() {
        None => "none".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// "version 1", "versions 1 and 2".
fn versions(versions: &[u64]) -> String {
    let noun = if versions.len() == 1 { "version" } else { "versions" };
    format!("{noun} {}", list(versions))
}

/// The version folders of `model_dir`, ascending: sub-folders named by a positive number without leading
/// zeros (what Triton loads). Files and other names are not versions. A model folder that does not exist,
/// or a file in its place, has none.
pub fn existing_versions(model_dir: &Path) -> Result<Vec<u64>, TritonError> {
    let entries = match std::fs::read_dir(model_dir) {
        Ok(entries) => entries,
        Err(_) if !model_dir.is_dir() => return Ok(Vec::new()),
        Err(source) => return Err(TritonError::List { path: model_dir.to_path_buf(), source }),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| TritonError::List { path: model_dir.to_path_buf(), source })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let numeric = !name.is_empty() && !name.starts_with('0') && name.bytes().all(|b| b.is_ascii_digit());
        if numeric && entry.path().is_dir() {
            if let Ok(version) = name.parse::<u64>() {
                versions.push(version);
            }
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

/// Where one export goes in a model repository: the model folder and the version written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `DIR/<name>`.
    pub model_dir: PathBuf,
    pub name: String,
    /// The version folder written.
    pub version: u64,
    /// The version folders already there before the export, ascending.
    pub existing: Vec<u64>,
}

impl Entry {
    /// Checks `name` ([`check_model_name`]) and picks the version: `requested`, unless an existing version
    /// is higher (refused: Triton would serve that one); by default the one after the highest existing
    /// version, or [`FIRST_VERSION`].
    pub fn plan(dir: &Path, name: &str, requested: Option<u64>) -> Result<Entry, TritonError> {
        check_model_name(name)?;
        if requested == Some(0) {
            return Err(TritonError::ZeroVersion);
        }
        let model_dir = dir.join(name);
        let existing = existing_versions(&model_dir)?;
        let highest = existing.last().copied();
        let version = match (requested, highest) {
            (Some(requested), Some(highest)) if requested < highest => {
                return Err(TritonError::OlderVersion { requested, model_dir, existing });
            }
            (Some(requested), _) => requested,
            (None, Some(highest)) => highest + 1,
            (None, None) => FIRST_VERSION,
        };
        Ok(Entry { model_dir, name: name.to_string(), version, existing })
    }

    /// `DIR/<name>/config.pbtxt`.
    pub fn config_path(&self) -> PathBuf {
        self.model_dir.join(CONFIG_FILE)
    }

    /// `DIR/<name>/<version>/model.onnx`.
    pub fn model_path(&self) -> PathBuf {
        self.model_dir.join(self.version.to_string()).join(MODEL_FILE)
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
        "# Triton Inference Server model `{name}`: the {kind} segmenter exported by `trainer export --triton`\n\
         # (trainer {version}). Input `{input}`: float32 RGB (N,3,H,W) scaled to [0,1] (bytes / 255), H and W even;\n\
         # the normalisation is inside the graph. Outputs {outputs}.\n\
         #\n\
         # Memory budget: each request must stay within {budget} input pixels (N x H x W), e.g. one 256x256 tile\n\
         # or four 128x128 tiles; Triton does not check this. Predict larger images by overlapping tiles read with\n\
         # an {halo}-px halo at even origins, keeping each tile's centre, as `runner predict` does: the result then\n\
         # equals one pass over the whole image. max_batch_size is 0 (the batch is part of the dims) so that\n\
         # Triton never batches requests together past the budget.\n",
        version = env!("CARGO_PKG_VERSION"),
        input = signature.input.name,
        kind = match signature.outputs.first().map_or(2, |o| o.channels) {
            2 => "two-class".to_string(),
            n => format!("{n}-class"),
        },
        outputs = match signature.outputs.first().map_or(2, |o| o.channels) {
            2 => "(N,2,H,W): class 0 background, class 1 foreground".to_string(),
            n => format!("(N,{n},H,W): class i is the i-th name of the model's `classes` metadata"),
        },
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

/// What [`write_repository`] wrote. Its `Display` is one line for the CLI, saying which version was written.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonReport {
    pub config: PathBuf,
    pub model: PathBuf,
    pub version: u64,
    /// The version folders that were there before, ascending (the written one included if it was replaced).
    pub existing: Vec<u64>,
}

impl std::fmt::Display for TritonReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote Triton model repository entry {} and {} (version {}",
            self.config.display(),
            self.model.display(),
            self.version
        )?;
        let others: Vec<u64> = self.existing.iter().copied().filter(|&v| v != self.version).collect();
        if self.existing.contains(&self.version) {
            write!(f, ", replaced")?;
        }
        if !others.is_empty() {
            write!(f, "; Triton serves it, the highest; {} kept", versions(&others))?;
        }
        write!(f, ")")
    }
}

/// Writes `<model_dir>/config.pbtxt` and `<model_dir>/<version>/model.onnx` of `entry` (the encoded graph
/// `onnx`, whose tensors are `signature`). Other files in the model folder (other versions) are left alone.
/// Both files are staged beside their targets before either is renamed into place; on failure the staged
/// files, and the model directory if this call created it, are removed. Refuses to overwrite `checkpoint`.
pub fn write_repository(
    entry: &Entry,
    signature: &Signature,
    onnx: &[u8],
    checkpoint: &Path,
) -> Result<TritonReport, TritonError> {
    check_model_name(&entry.name)?;
    let (config, model) = (entry.config_path(), entry.model_path());
    for target in [&config, &model] {
        ensure_not_checkpoint(FLAG, checkpoint, target)?;
    }
    let created_model_dir = !entry.model_dir.exists();
    let text = config_pbtxt(&entry.name, signature);
    let result = write_pair([(&config, text.as_bytes()), (&model, onnx)]);
    if result.is_err() && created_model_dir {
        let _ = std::fs::remove_dir_all(&entry.model_dir);
    }
    result.map_err(|(path, source)| TritonError::Write { path, source })?;
    Ok(TritonReport { config, model, version: entry.version, existing: entry.existing.clone() })
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
        // The rule itself is tested in `export::name`: here, that the entry applies it (a 4-character name,
        // which Triton alone would take, is refused like a bioimage.io name).
        let dir = tempfile::tempdir().unwrap();
        for good in ["segmenter", "conifer_lumens-v2", "abcde"] {
            Entry::plan(dir.path(), good, None).unwrap();
        }
        for bad in ["", "a", "abcd", "../up", "with space", "dot.ted", "x/y", &"n".repeat(65)] {
            let err = Entry::plan(dir.path(), bad, None).unwrap_err();
            assert!(matches!(err, TritonError::Name(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("--name"), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A model folder holding `versions` (folders with a model file) and some entries that are not versions.
    fn model_folder(versions: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("segmenter");
        for v in versions {
            std::fs::create_dir_all(model_dir.join(v)).unwrap();
            std::fs::write(model_dir.join(v).join(MODEL_FILE), v.as_bytes()).unwrap();
        }
        std::fs::write(model_dir.join(CONFIG_FILE), b"old config").unwrap();
        dir
    }

    #[test]
    fn versions_are_positive_numbered_folders() {
        let dir = model_folder(&["3", "1", "12", "0", "007", "v2", "latest"]);
        std::fs::write(dir.path().join("segmenter/40"), b"a file, not a version").unwrap();
        assert_eq!(existing_versions(&dir.path().join("segmenter")).unwrap(), [1, 3, 12]);
        assert_eq!(existing_versions(&dir.path().join("missing")).unwrap(), Vec::<u64>::new());
        assert_eq!(existing_versions(&dir.path().join("segmenter/40")).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn the_next_version_is_written_by_default() {
        let fresh = tempfile::tempdir().unwrap();
        let entry = Entry::plan(fresh.path(), "segmenter", None).unwrap();
        assert_eq!((entry.version, entry.existing.clone()), (1, vec![]));
        assert_eq!(entry.model_path(), fresh.path().join("segmenter/1/model.onnx"));

        let dir = model_folder(&["1", "2"]);
        let entry = Entry::plan(dir.path(), "segmenter", None).unwrap();
        assert_eq!((entry.version, entry.existing.clone()), (3, vec![1, 2]));
        assert_eq!(entry.config_path(), dir.path().join("segmenter/config.pbtxt"));
        assert_eq!(entry.model_path(), dir.path().join("segmenter/3/model.onnx"));
        let report = write_repository(&entry, &signature(), b"graph", &dir.path().join("ck")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("segmenter/3/model.onnx")).unwrap(), b"graph");
        for v in ["1", "2"] {
            let path = dir.path().join("segmenter").join(v).join(MODEL_FILE);
            assert_eq!(std::fs::read(path).unwrap(), v.as_bytes(), "version {v} was touched");
        }
        let line = report.to_string();
        assert!(
            line.ends_with(
                "/segmenter/3/model.onnx (version 3; Triton serves it, the highest; versions 1 and 2 kept)"
            ),
            "{line}"
        );
        // The next export goes one further.
        assert_eq!(Entry::plan(dir.path(), "segmenter", None).unwrap().version, 4);
    }

    #[test]
    fn a_requested_version_below_an_existing_one_is_refused() {
        let dir = model_folder(&["2", "5"]);
        for requested in [1, 2, 4] {
            let err = Entry::plan(dir.path(), "segmenter", Some(requested)).unwrap_err();
            assert!(matches!(err, TritonError::OlderVersion { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("--triton-version {requested}: ")), "{msg}");
            assert!(
                msg.contains("already has versions 2 and 5") && msg.contains("serves only the highest"),
                "{msg}"
            );
            assert!(
                msg.ends_with(
                    "pass a version of at least 5, or leave --triton-version out to write version 6"
                ),
                "{msg}"
            );
        }
        // The highest one is replaced, a higher one added.
        let entry = Entry::plan(dir.path(), "segmenter", Some(5)).unwrap();
        assert_eq!(entry.version, 5);
        let line =
            write_repository(&entry, &signature(), b"new", &dir.path().join("ck")).unwrap().to_string();
        assert!(
            line.ends_with("(version 5, replaced; Triton serves it, the highest; version 2 kept)"),
            "{line}"
        );
        assert_eq!(std::fs::read(dir.path().join("segmenter/5/model.onnx")).unwrap(), b"new");
        assert_eq!(Entry::plan(dir.path(), "segmenter", Some(9)).unwrap().version, 9);
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(Entry::plan(fresh.path(), "segmenter", Some(7)).unwrap().version, 7);
        assert!(matches!(Entry::plan(fresh.path(), "segmenter", Some(0)), Err(TritonError::ZeroVersion)));
    }
}
