//! A bioimage.io model package (format 0.5, as read by ilastik, deepImageJ, QuPath, BioEngine and
//! `bioimageio.core`): one zip holding `rdf.yaml`, the ONNX weights, test tensors computed by the exported
//! graph itself, a cover image and a documentation README with a Validation section.
//!
//! The texts (`rdf.yaml`, `README.md`) and the `.npy` encoding are pure functions of values, tested without
//! files; [`build_package`] runs the graph on a crop of an image, and [`write_package`] zips and writes.
//!
//! Every output of the graph is declared, in graph order: bioimage.io's ONNX backend maps outputs by
//! position. Space axes take sizes `{min, step: 2}` (the 2x2 pool needs even sizes) and outputs carry the
//! halo, so consumers that tile by the description (bioimageio.core's `blocksize_parameter`) tile exactly.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_onnx::onnx::ModelProto;
use image::RgbImage;

use imaging::files::FileError;

use super::license::{check_license, LicenseError};
use super::name::{check_model_name, NameError};
use super::{ensure_not_checkpoint, OverwritesCheckpoint, Signature, OPSET_VERSION, PROBABILITIES_NAME};
use crate::checkpoint::TrainingSummary;
use crate::model::parameter_count;
use imaging::classes::{ClassList, Rgb};
use imaging::tiles::{HALO, PIXEL_BUDGET};

/// The model description format written (bioimageio.spec 0.5.12 validates it).
pub const FORMAT_VERSION: &str = "0.5.12";
pub const RDF_FILE: &str = "rdf.yaml";
pub const README_FILE: &str = "README.md";
pub const WEIGHTS_FILE: &str = "model.onnx";
pub const COVER_FILE: &str = "cover.png";
pub const TEST_INPUT_FILE: &str = "test_input.npy";
pub const SAMPLE_INPUT_FILE: &str = "sample_input.png";
/// Side of the test crop (at most): small enough to keep the package small, large enough to hold texture.
pub const TEST_CROP: usize = 128;
/// The smallest input side the description admits: an output block must keep at least 2 px inside the
/// halo on both sides.
pub const MIN_SIZE: usize = 2 * HALO + 2;
/// Input channel names, in the graph's channel order.
pub const INPUT_CHANNELS: [&str; 3] = ["r", "g", "b"];
/// The tags of every package (`--tag` adds more).
pub const DEFAULT_TAGS: [&str; 5] = ["segmentation", "semantic-segmentation", "2d", "rgb", "onnx"];
/// The extension a package path must have: bioimage.io tools open a package as a zip by its `.zip` suffix.
pub const PACKAGE_EXTENSION: &str = "zip";
/// The flag that names the package in messages.
const FLAG: &str = "--bioimageio";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    License(#[from] LicenseError),
    #[error(
        "--bioimageio {}: a bioimage.io package path must end in `.zip`, which is how bioimage.io tools know \
         a package; e.g. --bioimageio {}",
        .path.display(),
        .example.display()
    )]
    NotZip { path: PathBuf, example: PathBuf },
    #[error("cannot read the test image {path}: {reason}; pass the training image with --test-image")]
    TestImage { path: PathBuf, reason: String },
    #[error("the test image is {width}x{height}; it must be at least {MIN_SIZE}x{MIN_SIZE} px")]
    TestImageTooSmall { width: usize, height: usize },
    #[error(
        "cannot read validation metrics {path}: {reason}; write them with `runner predict --mask MASK \
         --metrics-json {path}`"
    )]
    Metrics { path: PathBuf, reason: String },
    #[error("the exported graph failed on the test input: {0}")]
    Evaluate(String),
    #[error(transparent)]
    Checkpoint(#[from] OverwritesCheckpoint),
    #[error("cannot zip the bioimage.io package {path}: {reason}")]
    Zip { path: PathBuf, reason: String },
    /// The zip could not be written (or its path is refused): the message names `--bioimageio`.
    #[error(transparent)]
    Write(#[from] FileError),
}

/// Who made the model and how it may be used: the package's descriptive fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The model name: 5 to 64 letters, digits, `_`, `-` ([`check_model_name`], the rule of every format).
    pub name: String,
    pub description: String,
    pub authors: Vec<String>,
    /// SPDX licence identifier ([`check_license`]).
    pub license: String,
    pub tags: Vec<String>,
}

/// The descriptive fields bioimage.io checks: the name ([`check_model_name`]) and the licence, an SPDX
/// identifier ([`check_license`]).
pub fn check_description(description: &Description) -> Result<(), PackageError> {
    check_model_name(&description.name)?;
    check_license(&description.license)?;
    Ok(())
}

/// Refuses a package path that does not end in `.zip` (bioimage.io tools would not open it as a package).
pub fn check_package_path(path: &Path) -> Result<(), PackageError> {
    if path.extension().is_some_and(|e| e == PACKAGE_EXTENSION) {
        return Ok(());
    }
    let mut example = path.as_os_str().to_owned();
    example.push(".");
    example.push(PACKAGE_EXTENSION);
    Err(PackageError::NotZip { path: path.to_path_buf(), example: example.into() })
}

/// The default description, from what the checkpoint knows about its training.
pub fn default_description(summary: &TrainingSummary) -> String {
    let data = if summary.image.is_empty() {
        String::new()
    } else {
        format!(" on `{}` with the mask `{}`", summary.image, summary.mask)
    };
    let n = summary.classes.len();
    let what = if n == 2 {
        "Two-class (background / foreground)".to_string()
    } else {
        format!("{n}-class ({})", summary.classes.names.join(" / "))
    };
    format!(
        "{what} segmentation of RGB images: a small fully convolutional network \
         ({} parameters) trained for {} iterations{data}. Exact tiling: halo {HALO} px, even sizes.",
        parameter_count(n),
        summary.iterations
    )
}

/// The classes of the package's outputs: the checkpoint's, or numbered ones where they do not match the
/// graph's output channels.
fn output_classes(signature: &Signature, summary: &TrainingSummary) -> ClassList {
    let n = signature.outputs.first().map_or(2, |o| o.channels);
    if summary.classes.len() == n {
        summary.classes.clone()
    } else {
        ClassList::numbered(n)
    }
}

/// What the output channels are, in words: `channel 1 is the foreground` for two classes, `channels 0
/// background, 1 nuclei, ...` for more.
fn channels_text(classes: &ClassList) -> String {
    if classes.len() == 2 {
        return "channel 1 is the foreground".to_string();
    }
    let each: Vec<String> = classes.names.iter().enumerate().map(|(i, n)| format!("{i} {n}")).collect();
    format!("channels {}", each.join(", "))
}

/// The foreground scores measured by `runner predict --mask --metrics-json` (the fields this package
/// reports; the file holds more).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct ValidationMetrics {
    pub pixels: u64,
    pub pixel_accuracy: f64,
    pub foreground_iou: f64,
    pub dice: f64,
}

impl ValidationMetrics {
    pub fn from_json(text: &str) -> Result<ValidationMetrics, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<ValidationMetrics, PackageError> {
        let err = |reason: String| PackageError::Metrics { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        ValidationMetrics::from_json(&text).map_err(err)
    }
}

/// The test tensor file of an output.
pub fn test_output_file(output: &str) -> String {
    format!("test_{output}.npy")
}

/// The sample image of an output, for the outputs that have one (values in [0, 1], shown as gray).
pub fn sample_output_file(output: &str) -> Option<String> {
    (output == PROBABILITIES_NAME).then(|| format!("sample_{output}.png"))
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn quoted_list(items: &[&str]) -> String {
    format!("[{}]", items.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", "))
}

/// The `rdf.yaml` of a package describing the graph whose tensors are `signature`.
pub fn rdf_yaml(description: &Description, signature: &Signature, summary: &TrainingSummary) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "# bioimage.io model description, written by `trainer export --bioimageio`.");
    let _ = writeln!(y, "type: model\nformat_version: {FORMAT_VERSION}");
    let _ = writeln!(y, "name: {}", quoted(&description.name));
    let _ = writeln!(y, "description: {}", quoted(&description.description));
    y.push_str("authors:\n");
    for author in &description.authors {
        let _ = writeln!(y, "  - name: {}", quoted(author));
    }
    let _ = writeln!(y, "license: {}", quoted(&description.license));
    let tags: Vec<&str> = description.tags.iter().map(String::as_str).collect();
    let _ = writeln!(y, "tags: {}", quoted_list(&tags));
    let _ = writeln!(y, "documentation:\n  source: {README_FILE}");
    let _ = writeln!(y, "covers:\n  - source: {COVER_FILE}");

    let space_axes = |y: &mut String, size: &dyn Fn(&str) -> String, halo: bool| {
        for axis in ["y", "x"] {
            let _ = writeln!(y, "      - type: space\n        id: {axis}\n        size: {}", size(axis));
            if halo {
                let _ = writeln!(y, "        halo: {HALO}");
            }
        }
    };
    let input = &signature.input.name;
    y.push_str("inputs:\n");
    let _ = writeln!(y, "  - id: {input}");
    let _ = writeln!(
        y,
        "    description: {}",
        quoted("RGB scaled to [0, 1] (bytes / 255); even height and width; normalised inside the graph")
    );
    y.push_str("    axes:\n      - type: batch\n");
    let _ = writeln!(y, "      - type: channel\n        channel_names: {}", quoted_list(&INPUT_CHANNELS));
    space_axes(&mut y, &|_| format!("{{min: {MIN_SIZE}, step: 2}}"), false);
    let _ = writeln!(y, "    test_tensor:\n      source: {TEST_INPUT_FILE}");
    let _ = writeln!(y, "    sample_tensor:\n      source: {SAMPLE_INPUT_FILE}");
    y.push_str("    data:\n      type: float32\n      range: [0.0, 1.0]\n");

    y.push_str("outputs:\n");
    let classes = output_classes(signature, summary);
    let names: Vec<&str> = classes.names.iter().map(String::as_str).collect();
    for output in &signature.outputs {
        let name = &output.name;
        let probabilities = name == PROBABILITIES_NAME;
        let _ = writeln!(y, "  - id: {name}");
        let what = if probabilities {
            "class probabilities (softmax over channels)"
        } else {
            "class scores (logits)"
        };
        let _ = writeln!(y, "    description: {}", quoted(&format!("{what}; {}", channels_text(&classes))));
        y.push_str("    axes:\n      - type: batch\n");
        let _ = writeln!(y, "      - type: channel\n        channel_names: {}", quoted_list(&names));
        space_axes(&mut y, &|axis| format!("{{tensor_id: {input}, axis_id: {axis}}}"), true);
        let _ = writeln!(y, "    test_tensor:\n      source: {}", test_output_file(name));
        if let Some(sample) = sample_output_file(name) {
            let _ = writeln!(y, "    sample_tensor:\n      source: {sample}");
        }
        y.push_str("    data:\n      type: float32\n");
        if probabilities {
            y.push_str("      range: [0.0, 1.0]\n");
        }
    }
    let _ = writeln!(y, "weights:\n  onnx:\n    source: {WEIGHTS_FILE}\n    opset_version: {OPSET_VERSION}");
    let _ = writeln!(
        y,
        "config:\n  bioimageio:\n    task: segmentation\n    architecture_type: FCN\n    \
         model_parameter_count: {}\n    training:\n      training_batch_size: {}\n      \
         initial_learning_rate: {}\n      loss_function: pixel-wise cross-entropy\n      optimizer: Adam",
        parameter_count(classes.len()),
        summary.batch,
        summary.learning_rate
    );
    y
}

/// Where the validation figures came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// File name of the image the metrics were measured on.
    pub image: String,
    pub metrics: ValidationMetrics,
}

/// The package's `README.md`.
pub fn readme(
    description: &Description,
    signature: &Signature,
    summary: &TrainingSummary,
    validation: Option<&Validation>,
) -> String {
    let outputs = signature.outputs.iter().map(|o| format!("`{}`", o.name)).collect::<Vec<_>>().join(", ");
    let classes = output_classes(signature, summary);
    let mut md = format!(
        "# {name}\n\n{desc}\n\n\
         ## Input and outputs\n\n\
         - input `{input}`: float32 (batch, 3, y, x), RGB scaled to [0, 1] (bytes / 255); the per-channel \
         normalisation is inside the graph. y and x must be even and at least {MIN_SIZE}.\n\
         - outputs {outputs}: float32 (batch, {n}, y, x); {channels}.\n\n\
         ## Tiling\n\n\
         An output pixel depends on input pixels up to 7 px away. Tiles read with a halo of {HALO} px at even \
         origins, keeping each tile's centre, give exactly the result of one pass over the whole image (the \
         2x2 max-pool needs even origins and sizes). The network was designed for at most {PIXEL_BUDGET} input \
         pixels (batch x y x x) per forward pass: tile larger images.\n\n\
         ## Training\n\n\
         {iterations} iterations of Adam (learning rate {lr}, batch {batch} crops of {crop}x{crop} px, seed \
         {seed}), pixel-wise cross-entropy, on `{image}` with the mask `{mask}`; final training loss {loss:.4}.\n\n",
        name = description.name,
        desc = description.description,
        n = classes.len(),
        channels = if classes.len() == 2 {
            "channel 0 background, channel 1 foreground".to_string()
        } else {
            channels_text(&classes)
        },
        input = signature.input.name,
        iterations = summary.iterations,
        lr = summary.learning_rate,
        batch = summary.batch,
        crop = summary.crop,
        seed = summary.seed,
        image = summary.image,
        mask = summary.mask,
        loss = summary.final_loss,
    );
    md.push_str("## Validation\n\n");
    match validation {
        Some(v) => {
            let m = &v.metrics;
            let _ = write!(
                md,
                "Measured on `{image}` ({pixels} pixels) against its reference mask: foreground IoU \
                 **{iou:.4}**, Dice {dice:.4}, pixel accuracy {acc:.4}. Prediction by `runner predict --mask` \
                 (ONNX Runtime, exact overlapping tiles, equal to one whole-image pass; foreground where \
                 logit 1 > logit 0).\n\n",
                image = v.image,
                pixels = m.pixels,
                iou = m.foreground_iou,
                dice = m.dice,
                acc = m.pixel_accuracy,
            );
            if v.image == summary.image {
                md.push_str(
                    "This is the training image: the figure shows how well the model fits its data, not how \
                     it generalises. Validate on images of your own: predict them and compare with reference \
                     masks by the same command.\n\n",
                );
            }
        }
        None => md.push_str(
            "No figures were recorded with this package. To validate, predict an image with a reference \
             mask, e.g. `runner predict --model model.onnx --image IMAGE --mask MASK --output pred.png`, \
             which prints the foreground IoU, Dice and pixel accuracy.\n\n",
        ),
    }
    md.push_str(
        "The test tensors of this package are the exported graph's own outputs on a crop of the training \
         image.\n\n",
    );
    let _ = writeln!(md, "## Licence\n\n{}", description.license);
    md
}

/// A NumPy `.npy` file (format 1.0) of little-endian float32 values in C order.
pub fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), values.len(), "npy data does not match its shape");
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text =
        if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + dict + newline, padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(10 + header_len + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// The test crop of a `width` x `height` image: (x, y, width, height), centred, even origin and sides, at
/// most [`TEST_CROP`] a side.
pub fn test_crop(width: usize, height: usize) -> Result<(usize, usize, usize, usize), PackageError> {
    if width < MIN_SIZE || height < MIN_SIZE {
        return Err(PackageError::TestImageTooSmall { width, height });
    }
    let side = |n: usize| (n - n % 2).min(TEST_CROP);
    let (w, h) = (side(width), side(height));
    let origin = |n: usize, s: usize| {
        let o = (n - s) / 2;
        o - o % 2
    };
    Ok((origin(width, w), origin(height, h), w, h))
}

/// The package's files, in the order they are zipped.
pub type PackageFiles = Vec<(String, Vec<u8>)>;

/// Everything that goes into the package: `onnx` (the encoded `model`) is the weights file; the test
/// tensors are `model`'s outputs (candle-onnx's evaluator) on the test crop of `test_image`.
pub fn build_package(
    model: &ModelProto,
    onnx: &[u8],
    signature: &Signature,
    summary: &TrainingSummary,
    description: &Description,
    test_image: &RgbImage,
    validation: Option<&Validation>,
) -> Result<PackageFiles, PackageError> {
    check_description(description)?;
    let (width, height) = (test_image.width() as usize, test_image.height() as usize);
    let (x0, y0, w, h) = test_crop(width, height)?;
    let crop = image::imageops::crop_imm(test_image, x0 as u32, y0 as u32, w as u32, h as u32).to_image();
    // (1, 3, h, w), channel-major, bytes / 255.
    let mut input = vec![0f32; 3 * h * w];
    for (i, px) in crop.pixels().enumerate() {
        for c in 0..3 {
            input[c * h * w + i] = f32::from(px[c]) / 255.0;
        }
    }
    let eval_err = |e: candle_core::Error| PackageError::Evaluate(e.to_string());
    let tensor = Tensor::from_vec(input.clone(), (1, 3, h, w), &Device::Cpu).map_err(eval_err)?;
    let outputs = candle_onnx::simple_eval(model, HashMap::from([(signature.input.name.clone(), tensor)]))
        .map_err(eval_err)?;

    let mut files: PackageFiles = vec![
        (RDF_FILE.into(), rdf_yaml(description, signature, summary).into_bytes()),
        (README_FILE.into(), readme(description, signature, summary, validation).into_bytes()),
        (WEIGHTS_FILE.into(), onnx.to_vec()),
        (TEST_INPUT_FILE.into(), npy_f32(&[1, 3, h, w], &input)),
        (SAMPLE_INPUT_FILE.into(), png(&crop)?),
    ];
    let classes = output_classes(signature, summary);
    let mut predicted = None;
    for output in &signature.outputs {
        let values = outputs
            .get(&output.name)
            .ok_or_else(|| PackageError::Evaluate(format!("output `{}` is missing", output.name)))?;
        let dims = values.dims().to_vec();
        let values: Vec<f32> = values.flatten_all().and_then(|t| t.to_vec1()).map_err(eval_err)?;
        if dims != [1, output.channels, h, w] {
            return Err(PackageError::Evaluate(format!("output `{}` has shape {dims:?}", output.name)));
        }
        // The class of the largest channel (the first on a tie; with two classes, foreground where channel 1
        // beats channel 0): the same rule for logits and probabilities.
        let plane = h * w;
        predicted.get_or_insert_with(|| {
            (0..plane)
                .map(|i| {
                    (1..output.channels).fold(0, |best, c| {
                        if values[c * plane + i] > values[best * plane + i] {
                            c
                        } else {
                            best
                        }
                    })
                })
                .collect::<Vec<usize>>()
        });
        if let Some(sample) = sample_output_file(&output.name) {
            let gray = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
                let p = values[plane + y as usize * w + x as usize];
                image::Luma([(p.clamp(0.0, 1.0) * 255.0).round() as u8])
            });
            files.push((sample, png(&gray)?));
        }
        files.push((test_output_file(&output.name), npy_f32(&dims, &values)));
    }
    let colors: Vec<Rgb> = predicted
        .unwrap_or_else(|| vec![0; h * w])
        .iter()
        .map(|&c| classes.colors[c.min(classes.len() - 1)])
        .collect();
    files.push((COVER_FILE.into(), png(&cover(&crop, &colors))?));
    Ok(files)
}

/// The cover: the crop beside its predicted mask (each pixel in its class's colour: with two classes,
/// foreground white), both scaled 2x (nearest).
pub fn cover(crop: &RgbImage, colors: &[Rgb]) -> RgbImage {
    let (w, h) = crop.dimensions();
    RgbImage::from_fn(4 * w, 2 * h, |x, y| {
        let (cx, cy) = ((x / 2) % w, y / 2);
        if x < 2 * w {
            *crop.get_pixel(cx, cy)
        } else {
            image::Rgb(colors[(cy * w + cx) as usize])
        }
    })
}

fn png<P, C>(img: &image::ImageBuffer<P, C>) -> Result<Vec<u8>, PackageError>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| PackageError::Evaluate(format!("cannot encode an image: {e}")))?;
    Ok(out.into_inner())
}

/// The zip archive of `files` (deflate; fixed timestamps, so the same files give the same bytes).
pub fn zip_files(files: &PackageFiles) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options).map_err(|e| e.to_string())?;
        zip.write_all(bytes).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// What [`write_package`] wrote. Its `Display` is one line for the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageReport {
    pub path: PathBuf,
    pub bytes: usize,
    pub files: Vec<String>,
}

impl std::fmt::Display for PackageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote bioimage.io package {} ({} bytes: {})",
            self.path.display(),
            self.bytes,
            self.files.join(", ")
        )
    }
}

/// Zips `files` into `path` atomically, through symbolic links (a failure leaves an existing file as it
/// was); refuses a path without `.zip` and one that is `checkpoint`.
pub fn write_package(
    path: &Path,
    files: &PackageFiles,
    checkpoint: &Path,
) -> Result<PackageReport, PackageError> {
    check_package_path(path)?;
    ensure_not_checkpoint(FLAG, checkpoint, path)?;
    let bytes = zip_files(files).map_err(|reason| PackageError::Zip { path: path.to_path_buf(), reason })?;
    imaging::files::write_atomic(FLAG, path, &bytes)?;
    Ok(PackageReport {
        path: path.to_path_buf(),
        bytes: bytes.len(),
        files: files.iter().map(|(name, _)| name.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::TensorSignature;

    fn signature() -> Signature {
        let entry = |name: &str, channels| TensorSignature { name: name.into(), channels };
        Signature { input: entry("image", 3), outputs: vec![entry("logits", 2), entry("probabilities", 2)] }
    }

    fn description() -> Description {
        Description {
            name: "conifer lumens".into(),
            description: "Finds \"lumens\": cells' insides".into(),
            authors: vec!["Ada Lovelace".into(), "Alan Turing".into()],
            license: "MIT".into(),
            tags: vec!["segmentation".into(), "2d".into()],
        }
    }

    /// The lines of the YAML block that starts at the line `start` (exclusive) and ends before the next line
    /// indented as much as `start` or less.
    fn block<'a>(yaml: &'a str, start: &str) -> Vec<&'a str> {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut lines = yaml.lines().skip_while(|l| *l != start);
        assert!(lines.next().is_some(), "`{start}` not found in:\n{yaml}");
        lines.take_while(|l| indent(l) > indent(start)).collect()
    }

    #[test]
    fn rdf_header_quotes_the_descriptive_fields() {
        let yaml = rdf_yaml(&description(), &signature(), &TrainingSummary::example());
        let top: Vec<&str> = yaml.lines().filter(|l| !l.starts_with(' ') && !l.starts_with('#')).collect();
        assert_eq!(
            top[..6],
            [
                "type: model",
                "format_version: 0.5.12",
                "name: \"conifer lumens\"",
                "description: \"Finds \\\"lumens\\\": cells' insides\"",
                "authors:",
                "license: \"MIT\"",
            ]
        );
        assert_eq!(block(&yaml, "authors:"), ["  - name: \"Ada Lovelace\"", "  - name: \"Alan Turing\""]);
        assert!(yaml.contains("\ntags: [\"segmentation\", \"2d\"]\n"), "{yaml}");
        assert!(yaml.contains("\ndocumentation:\n  source: README.md\n"), "{yaml}");
        assert!(yaml.contains("\ncovers:\n  - source: cover.png\n"), "{yaml}");
        assert!(
            yaml.contains("\nweights:\n  onnx:\n    source: model.onnx\n    opset_version: 17\n"),
            "{yaml}"
        );
    }

    #[test]
    fn input_axes_are_batch_rgb_and_even_space() {
        let yaml = rdf_yaml(&description(), &signature(), &TrainingSummary::example());
        let inputs = block(&yaml, "inputs:").join("\n");
        let expected = r#"  - id: image
    description: "RGB scaled to [0, 1] (bytes / 255); even height and width; normalised inside the graph"
    axes:
      - type: batch
      - type: channel
        channel_names: ["r", "g", "b"]
      - type: space
        id: y
        size: {min: 18, step: 2}
      - type: space
        id: x
        size: {min: 18, step: 2}
    test_tensor:
      source: test_input.npy
    sample_tensor:
      source: sample_input.png
    data:
      type: float32
      range: [0.0, 1.0]"#;
        assert_eq!(inputs, expected);
    }

    #[test]
    fn every_output_is_declared_in_graph_order_with_the_halo() {
        let yaml = rdf_yaml(&description(), &signature(), &TrainingSummary::example());
        let outputs = block(&yaml, "outputs:");
        let ids: Vec<&str> = outputs.iter().filter_map(|l| l.strip_prefix("  - id: ")).collect();
        assert_eq!(ids, ["logits", "probabilities"]);
        let text = outputs.join("\n");
        let space = |axis: &str| {
            format!("      - type: space\n        id: {axis}\n        size: {{tensor_id: image, axis_id: {axis}}}\n        halo: 8\n")
        };
        for id in ids {
            let one: String = text.split("  - id: ").find(|s| s.starts_with(id)).unwrap().to_string();
            assert!(one.contains("        channel_names: [\"background\", \"foreground\"]\n"), "{one}");
            assert!(one.contains(&(space("y") + &space("x"))), "{one}");
            assert!(one.contains(&format!("    test_tensor:\n      source: test_{id}.npy\n")), "{one}");
            assert!(one.contains("    data:\n      type: float32"), "{one}");
        }
        assert!(text.contains(
            "source: sample_probabilities.png\n    data:\n      type: float32\n      range: [0.0, 1.0]"
        ));
        // Reordered graph outputs are described in the new order.
        let mut sig = signature();
        sig.outputs.reverse();
        let yaml = rdf_yaml(&description(), &sig, &TrainingSummary::example());
        let ids: Vec<&str> =
            block(&yaml, "outputs:").into_iter().filter_map(|l| l.strip_prefix("  - id: ")).collect();
        assert_eq!(ids, ["probabilities", "logits"]);
    }

    #[test]
    fn names_follow_the_model_name_rule() {
        // The rule itself is tested in `export::name`; spaces, `+` and parentheses, which bioimage.io alone
        // would take, are refused so that one name serves every format.
        let named = |name: &str| Description { name: name.into(), ..description() };
        for good in ["segmenter", "conifer_lumens-v2", "a_b-c-d"] {
            check_description(&named(good)).unwrap();
        }
        for bad in
            ["seg", "slash/name", "dot.name", "quote\"", &"n".repeat(65), "Conifer lumens (v2)", "a_b+c-d"]
        {
            let err = check_description(&named(bad)).unwrap_err();
            assert!(matches!(err, PackageError::Name(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("--name"), "{bad}");
        }
    }

    #[test]
    fn the_licence_must_be_an_spdx_identifier() {
        let licensed = |license: &str| Description {
            name: "conifer-lumens".into(),
            license: license.into(),
            ..description()
        };
        for good in ["MIT", "Apache-2.0", "CC-BY-4.0", "GPL-3.0-or-later"] {
            check_description(&licensed(good)).unwrap();
        }
        let err = check_description(&licensed("mit")).unwrap_err();
        assert!(matches!(err, PackageError::License(_)), "{err:?}");
        assert!(err.to_string().contains("did you mean MIT?"), "{err}");
        let err = check_description(&licensed("my own licence")).unwrap_err().to_string();
        assert!(err.starts_with("--license `my own licence` is not an SPDX licence identifier"), "{err}");
    }

    #[test]
    fn the_package_path_must_end_in_zip() {
        for good in ["pkg.zip", "models/segmenter.bioimageio.zip", "/tmp/a b/p.zip"] {
            check_package_path(Path::new(good)).unwrap();
        }
        for bad in ["pkg", "models/segmenter.bioimageio", "pkg.ZIP", "pkg.zip.tmp", "out/", "archive.tar.gz"]
        {
            let err = check_package_path(Path::new(bad)).unwrap_err();
            assert!(matches!(err, PackageError::NotZip { .. }), "{bad}: {err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("--bioimageio {bad}: ")), "{msg}");
            assert!(msg.contains("must end in `.zip`") && !msg.contains('\n'), "{msg}");
        }
        let msg = check_package_path(Path::new("models/seg")).unwrap_err().to_string();
        assert!(msg.ends_with("e.g. --bioimageio models/seg.zip"), "{msg}");
    }

    #[test]
    fn write_package_refuses_a_path_without_zip_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("package");
        let files: PackageFiles = vec![(RDF_FILE.into(), b"type: model\n".to_vec())];
        let err = write_package(&path, &files, &dir.path().join("checkpoint.safetensors")).unwrap_err();
        assert!(matches!(err, PackageError::NotZip { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let zipped = dir.path().join("package.zip");
        let report = write_package(&zipped, &files, &dir.path().join("checkpoint.safetensors")).unwrap();
        assert_eq!(
            (report.files, std::fs::read(&zipped).unwrap().len()),
            (vec![RDF_FILE.to_string()], report.bytes)
        );
    }

    #[test]
    fn readme_has_a_validation_section_with_the_measured_iou() {
        let metrics = ValidationMetrics {
            pixels: 625_000,
            pixel_accuracy: 0.9583,
            foreground_iou: 0.94019,
            dice: 0.9692,
        };
        let validation = Validation { image: "image.png".into(), metrics };
        let md = readme(&description(), &signature(), &TrainingSummary::example(), Some(&validation));
        let section = md.split("## Validation\n").nth(1).expect("a Validation section");
        assert!(section.contains("foreground IoU **0.9402**"), "{section}");
        assert!(section.contains("`runner predict --mask`"), "{section}");
        assert!(section.contains("This is the training image"), "{section}");
        assert!(md.contains("halo of 8 px"), "{md}");
        let unmeasured = readme(&description(), &signature(), &TrainingSummary::example(), None);
        let section = unmeasured.split("## Validation\n").nth(1).expect("a Validation section");
        assert!(section.contains("No figures were recorded") && !section.contains("IoU **"), "{section}");
    }

    #[test]
    fn metrics_are_read_from_the_runner_json() {
        let json = r#"{"pixels": 625000, "true_positive": 1, "false_positive": 2, "false_negative": 3,
            "true_negative": 4, "pixel_accuracy": 0.95, "foreground_iou": 0.94, "dice": 0.97}"#;
        let m = ValidationMetrics::from_json(json).unwrap();
        assert_eq!((m.pixels, m.foreground_iou, m.dice, m.pixel_accuracy), (625_000, 0.94, 0.97, 0.95));
        let err = ValidationMetrics::from_json("{\"pixels\": 3, \"pixel_accuracy\": 0.9}").unwrap_err();
        assert!(err.contains("missing field `foreground_iou`"), "{err}");
    }

    #[test]
    fn npy_header_is_aligned_and_holds_the_shape() {
        for shape in [vec![1, 3, 128, 128], vec![7], vec![1, 2, 18, 40]] {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let bytes = npy_f32(&shape, &values);
            assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0, "{shape:?}");
            let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            let expected =
                if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
            assert!(
                header.starts_with(&format!(
                    "{{'descr': '<f4', 'fortran_order': False, 'shape': {expected}, }}"
                )),
                "{header}"
            );
            assert!(header.ends_with('\n'));
            let data: Vec<f32> = bytes[10 + header_len..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(data, values);
        }
    }

    #[test]
    fn test_crop_is_centred_even_and_bounded() {
        assert_eq!(test_crop(500, 1250).unwrap(), (186, 560, 128, 128));
        assert_eq!(test_crop(18, 19).unwrap(), (0, 0, 18, 18));
        assert_eq!(test_crop(131, 64).unwrap(), (0, 0, 128, 64));
        for (w, h) in [(20, 1000), (1001, 33), (128, 128), (4097, 3001)] {
            let (x, y, cw, ch) = test_crop(w, h).unwrap();
            assert!(x % 2 == 0 && y % 2 == 0 && cw % 2 == 0 && ch % 2 == 0);
            assert!(x + cw <= w && y + ch <= h && cw <= TEST_CROP && ch <= TEST_CROP && cw >= MIN_SIZE);
        }
        assert!(matches!(
            test_crop(17, 100),
            Err(PackageError::TestImageTooSmall { width: 17, height: 100 })
        ));
    }

    #[test]
    fn cover_is_the_crop_beside_its_mask_at_twice_the_size() {
        let crop = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let fg: Vec<bool> = (0..8).map(|i| i % 3 == 0).collect();
        let colors: Vec<Rgb> = fg.iter().map(|&f| if f { [255; 3] } else { [0; 3] }).collect();
        let cover = cover(&crop, &colors);
        assert_eq!(cover.dimensions(), (16, 4));
        assert_eq!(*cover.get_pixel(5, 3), image::Rgb([2, 1, 9]));
        for (i, &f) in fg.iter().enumerate() {
            let (x, y) = ((i % 4) as u32, (i / 4) as u32);
            let v = if f { 255 } else { 0 };
            assert_eq!(*cover.get_pixel(8 + 2 * x + 1, 2 * y), image::Rgb([v, v, v]), "{i}");
        }
    }
}
