//! The one step from parsed flags to a request: every rule about which flags go together that clap does not
//! declare on the arguments themselves (`conflicts_with`, `requires`) is here, checked before any file is
//! opened. Pure: parsed arguments in, a request or a [`FlagError`] out, so the rules are tested without
//! files (`resolve/tests.rs`).

use std::path::PathBuf;

use crate::data::annotated::{AnnotatedSource, AnnotationRule};
use crate::data::classes::{ClassFlagError, ClassFlags, MaskFormat};
use crate::data::crops::AugmentPolicy;
use crate::data::load::{MaskReading, PairSource};
use crate::export::{ExportRequest, PackageOptions, TritonTarget};
use crate::ops::Kernels;
use crate::train::{DeviceKind, TrainConfig, TrainError};
use imaging::annotations::classes::Unannotated;
use imaging::classes::{parse_color, ClassList};

use super::export::ExportArgs;
use super::train::{LabelFormatArg, TrainArgs, UnannotatedArg};

/// A combination of flags that cannot run; each message names the flags and how to fix them.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("{images} {image_flag} but {others} {other_flag}: give one {other_flag} per {image_flag}, in the same order")]
    Unpaired { image_flag: &'static str, images: usize, other_flag: &'static str, others: usize },
    #[error(
        "--ignore-value applies to binary masks; an ilastik label image marks unlabelled pixels with 0 \
         already: drop --ignore-value"
    )]
    IgnoreValueWithIlastik,
    #[error("--class-colors: {0}")]
    Color(String),
    #[error(transparent)]
    Classes(#[from] ClassFlagError),
    /// A setting out of range ([`TrainConfig::check`]).
    #[error(transparent)]
    Settings(#[from] TrainError),
}

/// Where the training pairs come from: exactly one of these.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainData {
    /// `--data DIR`, listed when the run starts.
    Folder(PathBuf),
    /// Repeated `--image`/`--mask`.
    Pairs(Vec<PairSource>),
    /// Repeated `--image`/`--annotations`.
    Annotated(Vec<AnnotatedSource>),
}

/// One `trainer train`, resolved.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The settings, checked; `inputs` is filled when the run has listed every input file.
    pub config: TrainConfig,
    pub data: TrainData,
    /// `--val-image`/`--val-mask`.
    pub val: Vec<PairSource>,
    /// How mask files become labels (training and validation masks).
    pub mask_reading: MaskReading,
    /// What the flags say about the classes: the run's [`ClassList`] once the masks are read
    /// ([`ClassFlags::resolve`]).
    pub classes: ClassFlags,
    /// How annotations become labels (with [`TrainData::Annotated`]).
    pub annotation_rule: AnnotationRule,
    pub device: DeviceKind,
    pub quiet: bool,
}

/// The request of `trainer train`'s flags.
pub(super) fn train(args: &TrainArgs) -> Result<TrainRequest, FlagError> {
    let data = match &args.data {
        Some(dir) => TrainData::Folder(dir.clone()),
        None if !args.annotations.is_empty() => TrainData::Annotated(
            pairs(&args.image, &args.annotations, "--image", "--annotations")?
                .into_iter()
                .map(|(image, annotations, image_flag, annotations_flag)| AnnotatedSource {
                    image,
                    annotations,
                    image_flag,
                    annotations_flag,
                })
                .collect(),
        ),
        None => TrainData::Pairs(mask_pairs(&args.image, &args.mask, "--image", "--mask")?),
    };
    let val = mask_pairs(&args.val_image, &args.val_mask, "--val-image", "--val-mask")?;
    let config = TrainConfig {
        iterations: args.iterations,
        batch: args.batch,
        crop: args.crop,
        lr: args.lr,
        schedule: args.lr_schedule,
        seed: args.seed,
        augment: if args.no_augment { AugmentPolicy::None } else { args.augment },
        checkpoint_every: args.checkpoint_every,
        val_every: args.val_every,
        val_fraction: args.val_fraction,
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        init_from: args.init_from.clone(),
        inputs: Vec::new(),
        kernels: if args.reference_ops { Kernels::Reference } else { Kernels::Fast },
        classes: ClassList::default(),
    };
    config.check()?;
    let classes = class_flags(args)?;
    let reads_masks = !matches!(data, TrainData::Annotated(_)) || !val.is_empty();
    let mask_reading = classes.reading(reads_masks)?;
    let annotation_rule = AnnotationRule {
        foreground_classes: args.foreground_class.clone(),
        classes: args.class.clone(),
        unannotated: match args.unannotated {
            UnannotatedArg::Unlabelled => Unannotated::Unlabelled,
            UnannotatedArg::Background => Unannotated::Background,
        },
        level: args.level,
    };
    Ok(TrainRequest {
        config,
        data,
        val,
        mask_reading,
        classes,
        annotation_rule,
        device: args.device,
        quiet: args.quiet,
    })
}

/// The class flags: --label-format, --ignore-value, --classes, --class-names, --class-colors, --class.
fn class_flags(args: &TrainArgs) -> Result<ClassFlags, FlagError> {
    let format = match args.label_format {
        LabelFormatArg::Binary => MaskFormat::Binary,
        LabelFormatArg::Ilastik if args.ignore_value.is_some() => {
            return Err(FlagError::IgnoreValueWithIlastik)
        }
        LabelFormatArg::Ilastik => MaskFormat::Ilastik,
        LabelFormatArg::Index => MaskFormat::Index,
        LabelFormatArg::Color => MaskFormat::Color,
    };
    let colors = args
        .class_colors
        .as_ref()
        .map(|c| c.iter().map(|c| parse_color(c)).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(FlagError::Color)?;
    Ok(ClassFlags {
        format,
        ignore: args.ignore_value,
        count: args.classes,
        names: args.class_names.clone(),
        colors,
        annotation_classes: args.class.clone(),
    })
}

/// The image/mask pairs of two repeated flags.
fn mask_pairs(
    images: &[PathBuf],
    masks: &[PathBuf],
    image_flag: &'static str,
    mask_flag: &'static str,
) -> Result<Vec<PairSource>, FlagError> {
    Ok(pairs(images, masks, image_flag, mask_flag)?
        .into_iter()
        .map(|(image, mask, image_flag, mask_flag)| PairSource { image, mask, image_flag, mask_flag })
        .collect())
}

/// Pairs two repeated flags in order, each path with its flag for errors (`--mask #2` when there are
/// several).
fn pairs(
    images: &[PathBuf],
    others: &[PathBuf],
    image_flag: &'static str,
    other_flag: &'static str,
) -> Result<Vec<(PathBuf, PathBuf, String, String)>, FlagError> {
    if images.len() != others.len() {
        return Err(FlagError::Unpaired {
            image_flag,
            images: images.len(),
            other_flag,
            others: others.len(),
        });
    }
    let several = images.len() > 1;
    Ok(images
        .iter()
        .zip(others)
        .enumerate()
        .map(|(i, (image, other))| {
            let n = if several { format!(" #{}", i + 1) } else { String::new() };
            (image.clone(), other.clone(), format!("{image_flag}{n}"), format!("{other_flag}{n}"))
        })
        .collect())
}

/// The request of `trainer export`'s flags. Which files an export writes when some are not given (the
/// default --output) is the library's rule ([`ExportRequest::onnx_output`]), so that library callers get
/// the same.
pub(super) fn export(args: ExportArgs) -> ExportRequest {
    let p = args.package;
    ExportRequest {
        checkpoint: args.checkpoint,
        output: args.output,
        bioimageio: args.bioimageio,
        triton: args.triton.map(|dir| TritonTarget { dir, version: args.triton_version }),
        package: PackageOptions {
            name: p.name,
            description: p.description,
            authors: p.authors,
            license: p.license,
            tags: p.tags,
            test_image: p.test_image,
            validation_metrics: p.validation_metrics,
            validation_image: p.validation_image,
        },
    }
}

#[cfg(test)]
mod tests;
