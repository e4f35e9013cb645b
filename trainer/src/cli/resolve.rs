//! The one step from parsed flags to a request: every rule about which flags go together that clap does not
//! declare on the arguments themselves (`conflicts_with`, `requires`) is here, checked before any file is
//! opened. Pure: parsed arguments in, a request or a [`FlagError`] out, so the rules are tested without
//! files.

use std::path::PathBuf;

use crate::data::annotated::{AnnotatedSource, AnnotationRule};
use crate::data::crops::AugmentPolicy;
use crate::data::load::PairSource;
use crate::export::{ExportRequest, PackageOptions, TritonTarget};
use crate::ops::Kernels;
use crate::train::{DeviceKind, TrainConfig, TrainError};
use imaging::annotations::labels::Unannotated;
use imaging::labels::{LabelFormat, LabelRule};

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
    /// How mask values become labels (training and validation masks).
    pub mask_rule: LabelRule,
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
    };
    config.check()?;
    let mask_rule = mask_rule(args.label_format, args.ignore_value)?;
    let annotation_rule = AnnotationRule {
        foreground_classes: args.foreground_class.clone(),
        unannotated: match args.unannotated {
            UnannotatedArg::Unlabelled => Unannotated::Unlabelled,
            UnannotatedArg::Background => Unannotated::Background,
        },
        level: args.level,
    };
    Ok(TrainRequest { config, data, val, mask_rule, annotation_rule, device: args.device, quiet: args.quiet })
}

/// The mask rule of --label-format and --ignore-value.
fn mask_rule(format: LabelFormatArg, ignore: Option<u8>) -> Result<LabelRule, FlagError> {
    let format = match format {
        LabelFormatArg::Binary => LabelFormat::Binary,
        LabelFormatArg::Ilastik if ignore.is_some() => return Err(FlagError::IgnoreValueWithIlastik),
        LabelFormatArg::Ilastik => LabelFormat::Ilastik,
    };
    Ok(LabelRule { format, ignore })
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
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    /// The request of `trainer train ARGS`, or the error's text (clap's or the resolve step's).
    fn resolve(args: &str) -> Result<TrainRequest, String> {
        let cli = Cli::try_parse_from(["trainer", "train"].into_iter().chain(args.split_whitespace()))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Train(args) => train(&args).map_err(|e| e.to_string()),
            Command::Export(_) => unreachable!("parsed as train"),
        }
    }

    #[test]
    fn refused_combinations_name_the_flags() {
        let cases = [
            (
                "--image a --image b --mask ma",
                "2 --image but 1 --mask: give one --mask per --image, in the same order",
            ),
            ("--image a --annotations x --annotations y", "1 --image but 2 --annotations"),
            ("--image a --mask m --val-image v", "1 --val-image but 0 --val-mask"),
            ("--data d --val-mask v", "0 --val-image but 1 --val-mask"),
            ("--image a --mask m --label-format ilastik --ignore-value 0", "drop --ignore-value"),
            ("--image a --mask m --lr 0", "--lr must be a finite number above 0"),
            ("--image a --mask m --iterations 0", "--iterations must be at least 1"),
            ("--image a --mask m --val-fraction 1", "--val-fraction must be above 0 and below 1"),
            ("--image a --mask m --val-every 0", "--val-every must be at least 1"),
            ("--image a --mask m --batch 8 --crop 128", "budget of 65536"),
            // Declared on the arguments, refused by clap.
            ("--image a --mask m --data d", "cannot be used with"),
            ("--image a --mask m --annotations x", "cannot be used with"),
            ("--image a --mask m --resume c --init-from d", "cannot be used with"),
            ("--image a --mask m --val-fraction 0.2 --val-image v --val-mask w", "cannot be used with"),
            ("--mask m", "--image"),
            ("--image a --mask m --augment all --no-augment", "cannot be used with"),
        ];
        for (args, expected) in cases {
            match resolve(args) {
                Ok(_) => panic!("`{args}` was accepted"),
                Err(e) => assert!(e.contains(expected), "`{args}`: `{expected}` not in: {e}"),
            }
        }
    }

    #[test]
    fn accepted_combinations_make_their_request() {
        let p = PathBuf::from;
        let r = resolve("--image a --mask ma --image b --mask mb --val-image v --val-mask vm").unwrap();
        let TrainData::Pairs(pairs) = &r.data else { panic!("{:?}", r.data) };
        assert_eq!((pairs[1].image.clone(), pairs[1].mask_flag.as_str()), (p("b"), "--mask #2"));
        assert_eq!((r.val[0].image_flag.as_str(), r.val[0].mask.clone()), ("--val-image", p("vm")));
        assert_eq!(r.mask_rule, LabelRule { format: LabelFormat::Binary, ignore: None });

        let r = resolve("--image s --annotations s.geojson --level 2 --unannotated background").unwrap();
        let TrainData::Annotated(sources) = &r.data else { panic!("{:?}", r.data) };
        assert_eq!((sources[0].annotations_flag.as_str(), r.annotation_rule.level), ("--annotations", 2));
        assert_eq!(r.annotation_rule.unannotated, Unannotated::Background);

        let r = resolve("--data d --label-format ilastik --no-augment --reference-ops").unwrap();
        assert_eq!(r.data, TrainData::Folder(p("d")));
        assert_eq!(r.mask_rule, LabelRule { format: LabelFormat::Ilastik, ignore: None });
        assert_eq!((r.config.augment, r.config.kernels), (AugmentPolicy::None, Kernels::Reference));

        let r = resolve("--image a --mask m --ignore-value 128 --quiet --device cuda").unwrap();
        assert_eq!(r.mask_rule.ignore, Some(128));
        assert!(r.quiet && r.device == DeviceKind::Cuda);
    }
}
