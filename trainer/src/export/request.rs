//! `trainer export` as one library call: [`run`] takes what the command line asked for ([`ExportRequest`])
//! and writes the ONNX file, the bioimage.io package and the Triton entry from one checkpoint.
//!
//! Order: every rule that needs no checkpoint (the targets are not the checkpoint, the package path ends in
//! `.zip`, the model name, the licence, the Triton version) is checked first; then everything is built in
//! memory (a bad checkpoint, test image or metrics file fails here); only then is the first file written,
//! each atomically. So a refused export leaves every existing file as it was.

use std::fmt;
use std::path::PathBuf;

use super::bioimageio::{
    self, Description, PackageError, PackageFiles, PackageReport, Validation, ValidationMetrics,
};
use super::license::check_license;
use super::name::check_model_name;
use super::triton::{self, TritonReport};
use super::{ensure_not_checkpoint, load_checkpoint, ExportError, OnnxReport, Signature};
use crate::checkpoint::TrainingSummary;

/// The ONNX file written when no format is asked for (neither an output nor a package).
pub const DEFAULT_OUTPUT: &str = "models/model.onnx";

/// One `trainer export`: the checkpoint and where each format goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub checkpoint: PathBuf,
    /// The ONNX file; [`DEFAULT_OUTPUT`] when this, `bioimageio` and `triton` are all absent.
    pub output: Option<PathBuf>,
    /// The bioimage.io package, a path ending in `.zip`.
    pub bioimageio: Option<PathBuf>,
    pub triton: Option<TritonTarget>,
    /// How the packages describe the model.
    pub package: PackageOptions,
}

/// A Triton model repository and, optionally, the version to write (by default the next one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonTarget {
    pub dir: PathBuf,
    pub version: Option<u64>,
}

/// How the packages (bioimage.io, Triton) describe the model.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageOptions {
    /// The model name of every format ([`check_model_name`]).
    pub name: String,
    /// Default: the network and its training, from the checkpoint.
    pub description: Option<String>,
    pub authors: Vec<String>,
    /// An SPDX licence identifier ([`check_license`]).
    pub license: String,
    /// Tags besides [`bioimageio::DEFAULT_TAGS`].
    pub tags: Vec<String>,
    /// The image whose centre crop becomes the package's test input.
    pub test_image: PathBuf,
    /// `runner predict --metrics-json` output to report in the package README.
    pub validation_metrics: Option<PathBuf>,
    /// The image those metrics were measured on; default `test_image`.
    pub validation_image: Option<PathBuf>,
}

impl PackageOptions {
    pub const DEFAULT_NAME: &'static str = "segmenter";
    pub const DEFAULT_AUTHOR: &'static str = "segmenter contributors";
    pub const DEFAULT_LICENSE: &'static str = "MIT";
    pub const DEFAULT_TEST_IMAGE: &'static str = "data/conifer/image.png";
}

impl Default for PackageOptions {
    /// The command line's defaults.
    fn default() -> PackageOptions {
        PackageOptions {
            name: Self::DEFAULT_NAME.into(),
            description: None,
            authors: vec![Self::DEFAULT_AUTHOR.into()],
            license: Self::DEFAULT_LICENSE.into(),
            tags: Vec::new(),
            test_image: Self::DEFAULT_TEST_IMAGE.into(),
            validation_metrics: None,
            validation_image: None,
        }
    }
}

impl ExportRequest {
    /// A request for the ONNX file alone, with the default package description.
    pub fn onnx(checkpoint: impl Into<PathBuf>, output: impl Into<PathBuf>) -> ExportRequest {
        ExportRequest {
            checkpoint: checkpoint.into(),
            output: Some(output.into()),
            bioimageio: None,
            triton: None,
            package: PackageOptions::default(),
        }
    }

    /// The ONNX file to write: `output`, or [`DEFAULT_OUTPUT`] when no format at all is asked for.
    pub fn onnx_output(&self) -> Option<PathBuf> {
        match (&self.output, &self.bioimageio, &self.triton) {
            (None, None, None) => Some(PathBuf::from(DEFAULT_OUTPUT)),
            (output, ..) => output.clone(),
        }
    }
}

/// What [`run`] wrote. Its `Display` is one line per format written, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub onnx: Option<OnnxReport>,
    pub bioimageio: Option<PackageReport>,
    pub triton: Option<TritonReport>,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = [
            self.onnx.as_ref().map(ToString::to_string),
            self.bioimageio.as_ref().map(ToString::to_string),
            self.triton.as_ref().map(ToString::to_string),
        ]
        .into_iter()
        .flatten()
        .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// `trainer export`: the ONNX file, a bioimage.io package and a Triton repository entry from one
/// checkpoint; see the module docs for the order of checks and writes.
pub fn run(request: &ExportRequest) -> Result<ExportReport, ExportError> {
    let package = &request.package;
    let output = request.onnx_output();
    let triton = match &request.triton {
        Some(target) => Some(triton::Entry::plan(&target.dir, &package.name, target.version)?),
        None => None,
    };
    // Every file the export writes, with the flag it comes from, so a refusal names the flag to change.
    let mut targets: Vec<(&str, PathBuf)> = output.iter().map(|p| ("--output", p.clone())).collect();
    targets.extend(request.bioimageio.iter().map(|p| ("--bioimageio", p.clone())));
    if let Some(entry) = &triton {
        targets.extend([("--triton", entry.config_path()), ("--triton", entry.model_path())]);
    }
    for (flag, target) in &targets {
        ensure_not_checkpoint(flag, &request.checkpoint, target)?;
    }
    if let Some(path) = &request.bioimageio {
        bioimageio::check_package_path(path)?;
        check_model_name(&package.name)?;
        check_license(&package.license)?;
    }

    let checkpoint = load_checkpoint(&request.checkpoint)?;
    let model = super::build_model(&checkpoint.net, &checkpoint.summary)?;
    let signature = super::signature(&model);
    let onnx = prost::Message::encode_to_vec(&model);
    let files = match &request.bioimageio {
        Some(_) => Some(build_bioimageio(package, &checkpoint.summary, &model, &onnx, &signature)?),
        None => None,
    };

    let mut report = ExportReport { onnx: None, bioimageio: None, triton: None };
    if let Some(output) = &output {
        report.onnx = Some(super::write_onnx(output, &onnx, checkpoint.summary.clone())?);
    }
    if let (Some(path), Some(files)) = (&request.bioimageio, &files) {
        report.bioimageio = Some(bioimageio::write_package(path, files, &request.checkpoint)?);
    }
    if let Some(entry) = &triton {
        report.triton = Some(triton::write_repository(entry, &signature, &onnx, &request.checkpoint)?);
    }
    Ok(report)
}

/// The files of the bioimage.io package, in memory.
fn build_bioimageio(
    p: &PackageOptions,
    summary: &TrainingSummary,
    model: &candle_onnx::onnx::ModelProto,
    onnx: &[u8],
    signature: &Signature,
) -> Result<PackageFiles, PackageError> {
    let mut tags: Vec<String> = bioimageio::DEFAULT_TAGS.iter().map(|t| t.to_string()).collect();
    for tag in &p.tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    let description = Description {
        name: p.name.clone(),
        description: p.description.clone().unwrap_or_else(|| bioimageio::default_description(summary)),
        authors: p.authors.clone(),
        license: p.license.clone(),
        tags,
    };
    let test_image = image::open(&p.test_image)
        .map_err(|e| PackageError::TestImage { path: p.test_image.clone(), reason: e.to_string() })?
        .to_rgb8();
    let validation = match &p.validation_metrics {
        Some(metrics) => {
            let image = p.validation_image.as_ref().unwrap_or(&p.test_image);
            let image = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Some(Validation { image, metrics: ValidationMetrics::load(metrics)? })
        }
        None => None,
    };
    bioimageio::build_package(model, onnx, signature, summary, &description, &test_image, validation.as_ref())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::Device;

    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::export::triton::TritonError;
    use crate::model::{Normalization, SegNet};

    /// A checkpoint of a random network and a 40x30 test image in `dir`.
    fn setup(dir: &Path) -> (PathBuf, PathBuf) {
        let checkpoint = dir.join("checkpoint.safetensors");
        let norm = Normalization { mean: [0.45, 0.3, 0.62], std: [0.21, 0.35, 0.12] };
        let net = SegNet::random(3, norm, &Device::Cpu).unwrap();
        Checkpoint { net, summary: TrainingSummary::example(), adam: None, history: Default::default() }
            .save(&checkpoint)
            .unwrap();
        let image = dir.join("image.png");
        image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 251) as u8])
        })
        .save(&image)
        .unwrap();
        (checkpoint, image)
    }

    fn request(checkpoint: &Path, image: &Path) -> ExportRequest {
        let mut request = ExportRequest::onnx(checkpoint, checkpoint.with_file_name("model.onnx"));
        request.package.test_image = image.to_path_buf();
        request
    }

    /// Every file under `dir`, sorted, with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn every_format_is_written_and_reported_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let mut req = request(&checkpoint, &image);
        req.bioimageio = Some(dir.path().join("pkg.zip"));
        req.triton = Some(TritonTarget { dir: dir.path().join("triton"), version: None });
        let report = run(&req).unwrap();
        let onnx = std::fs::read(dir.path().join("model.onnx")).unwrap();
        assert_eq!(report.onnx.as_ref().unwrap().bytes, onnx.len());
        assert!(report.bioimageio.as_ref().unwrap().files.contains(&"rdf.yaml".to_string()));
        assert_eq!(std::fs::read(dir.path().join("triton/segmenter/1/model.onnx")).unwrap(), onnx);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("wrote ") && lines[0].contains("model.onnx"), "{text}");
        assert!(lines[1].starts_with("wrote bioimage.io package "), "{text}");
        assert!(
            lines[2].starts_with("wrote Triton model repository entry ") && lines[2].ends_with("(version 1)")
        );
    }

    #[test]
    fn the_default_output_is_written_only_when_no_format_is_asked_for() {
        let mut req = ExportRequest::onnx("ck.safetensors", "m.onnx");
        req.output = None;
        assert_eq!(req.onnx_output(), Some(PathBuf::from(DEFAULT_OUTPUT)));
        req.triton = Some(TritonTarget { dir: "t".into(), version: None });
        assert_eq!(req.onnx_output(), None);
        req.triton = None;
        req.bioimageio = Some("p.zip".into());
        assert_eq!(req.onnx_output(), None);
    }

    #[test]
    fn a_bioimageio_path_without_zip_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let before = snapshot(dir.path());
        let mut req = request(&checkpoint, &image);
        req.bioimageio = Some(dir.path().join("segmenter.bioimageio"));
        let err = run(&req).unwrap_err();
        assert!(matches!(err, ExportError::Package(PackageError::NotZip { .. })), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("--bioimageio ") && msg.contains("must end in `.zip`"), "{msg}");
        assert!(msg.ends_with("segmenter.bioimageio.zip"), "{msg}");
        assert_eq!(snapshot(dir.path()), before, "the --output beside it was written");
    }

    #[test]
    fn a_licence_that_is_not_spdx_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let before = snapshot(dir.path());
        let mut req = request(&checkpoint, &image);
        req.bioimageio = Some(dir.path().join("pkg.zip"));
        for (license, needle) in
            [("mit", "did you mean MIT?"), ("Proprietary", "is not an SPDX licence identifier")]
        {
            req.package.license = license.into();
            let err = run(&req).unwrap_err();
            assert!(matches!(err, ExportError::License(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        assert_eq!(snapshot(dir.path()), before);
        // The licence is written into the package as given.
        req.package.license = "CC-BY-4.0".into();
        run(&req).unwrap();
    }

    #[test]
    fn one_name_rule_and_message_for_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let before = snapshot(dir.path());
        for name in ["abcd", &"n".repeat(65), "with space", "a+b-c"] {
            let mut messages = Vec::new();
            for format in ["bioimageio", "triton"] {
                let mut req = request(&checkpoint, &image);
                req.package.name = name.to_string();
                match format {
                    "bioimageio" => req.bioimageio = Some(dir.path().join("pkg.zip")),
                    _ => req.triton = Some(TritonTarget { dir: dir.path().join("triton"), version: None }),
                }
                let err = run(&req).unwrap_err();
                let expected = check_model_name(name).unwrap_err();
                match &err {
                    ExportError::Name(e) | ExportError::Triton(TritonError::Name(e)) => {
                        assert_eq!(e, &expected)
                    }
                    other => panic!("{format} {name}: {other:?}"),
                }
                messages.push(err.to_string());
            }
            assert_eq!(messages[0], messages[1], "{name}: the formats disagree");
            assert!(messages[0].starts_with("--name "), "{}", messages[0]);
        }
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn triton_writes_the_next_version_unless_one_is_requested() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let repo = dir.path().join("triton");
        std::fs::create_dir_all(repo.join("segmenter/2")).unwrap();
        std::fs::write(repo.join("segmenter/2/model.onnx"), b"version 2").unwrap();
        let mut req = request(&checkpoint, &image);
        req.output = None;
        req.triton = Some(TritonTarget { dir: repo.clone(), version: None });
        let report = run(&req).unwrap();
        let line = report.to_string();
        assert!(
            line.contains("segmenter/3/model.onnx (version 3;") && line.contains("version 2 kept"),
            "{line}"
        );
        assert_eq!(std::fs::read(repo.join("segmenter/2/model.onnx")).unwrap(), b"version 2");
        assert!(repo.join("segmenter/3/model.onnx").is_file());

        // An older version than one already there is refused, and nothing changes.
        let before = snapshot(dir.path());
        req.triton = Some(TritonTarget { dir: repo.clone(), version: Some(2) });
        let err = run(&req).unwrap_err();
        assert!(matches!(err, ExportError::Triton(TritonError::OlderVersion { .. })), "{err:?}");
        assert!(err.to_string().contains("already has versions 2 and 3"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        req.triton = Some(TritonTarget { dir: repo.clone(), version: Some(10) });
        assert!(run(&req).unwrap().to_string().contains("(version 10;"));
        assert!(repo.join("segmenter/10/model.onnx").is_file());
    }

    #[test]
    fn a_target_that_is_the_checkpoint_is_refused_naming_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, image) = setup(dir.path());
        let before = snapshot(dir.path());
        let other_spelling = dir.path().join(".").join("checkpoint.safetensors");
        let mut req = request(&checkpoint, &image);
        req.output = Some(other_spelling.clone());
        let msg = run(&req).unwrap_err().to_string();
        assert!(msg.starts_with("--output ") && msg.contains("is the same file as --checkpoint"), "{msg}");
        assert!(msg.contains("it is the checkpoint being exported; choose another --output"), "{msg}");
        // Checked before the package path's extension, the more useful message.
        let mut req = request(&checkpoint, &image);
        req.bioimageio = Some(other_spelling);
        let msg = run(&req).unwrap_err().to_string();
        assert!(
            msg.starts_with("--bioimageio ") && msg.contains("is the checkpoint being exported"),
            "{msg}"
        );
        assert_eq!(snapshot(dir.path()), before);
    }
}
