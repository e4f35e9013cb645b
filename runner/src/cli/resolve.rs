//! The one step from `runner predict`'s parsed flags to a request: one image, one image's share, or a
//! folder run. Every rule about which flags go together is here, checked before any file is opened (clap
//! declares only that --geojson-class and --geojson-detections need --geojson). Pure: parsed arguments
//! in, a request or a [`FlagError`] out, so the rules are tested without files (`resolve/tests.rs`).

use std::path::{Path, PathBuf};

use imaging::masks::{LabelFormat, LabelRule};
use imaging::sink::ome_zarr::{has_ome_zarr_name, NgffVersion};
use imaging::tiles;

use crate::folder::FolderOutputs;
use crate::regions::{GeoJsonLabel, ObjectKind};
use crate::session::ModelOptions;
use crate::single::SingleRequest;
use crate::tissue::TissueRequest;

pub use super::flag_error::FlagError;
use super::predict::{LabelFormatArg, MaskFormat, NgffArg, ObjectsArg, PredictArgs};
use super::request::{FolderRequest, Mode, PredictRequest};

/// `--tile` fits the network's pixel budget (also for `runner info`).
pub fn check_tile(tile: usize) -> Result<(), FlagError> {
    match tiles::plan(2, 2, tile, tiles::HALO, tiles::PIXEL_BUDGET) {
        Ok(_) => Ok(()),
        Err(reason) => Err(FlagError::Tile { tile, reason }),
    }
}

/// The request of `runner predict`'s flags.
pub(super) fn predict(args: &PredictArgs) -> Result<PredictRequest, FlagError> {
    check_tile(args.tile)?;
    if args.threads == Some(0) {
        return Err(FlagError::NoThreads);
    }
    let mode = match (&args.output, &args.output_dir) {
        (Some(output), None) => single(args, output)?,
        (None, Some(dir)) => Mode::Folder(folder(args, dir)?),
        (Some(_), Some(_)) => return Err(FlagError::BothModes),
        (None, None) => return Err(FlagError::NoMode),
    };
    Ok(PredictRequest {
        mode,
        model_options: ModelOptions {
            device: args.device,
            threads: args.threads,
            ort_lib: args.ort_lib.clone(),
        },
        openslide_lib: args.openslide_lib.clone(),
        quiet: args.quiet,
    })
}

/// The first flag given of `flags`, refused as belonging to `mode`.
fn refuse(flags: &[(&'static str, bool)], mode: &'static str, here: &'static str) -> Result<(), FlagError> {
    match flags.iter().find(|(_, given)| *given) {
        Some(&(flag, _)) => Err(FlagError::OtherMode { flag, mode, here }),
        None => Ok(()),
    }
}

/// An optional output flag for one image: it needs a path.
fn single_output(flag: &'static str, value: &Option<Option<PathBuf>>) -> Result<Option<PathBuf>, FlagError> {
    match value {
        None => Ok(None),
        Some(Some(path)) => Ok(Some(path.clone())),
        Some(None) => Err(FlagError::PathNeeded { flag, example: example_for(flag) }),
    }
}

/// An optional output flag of folder mode: it takes no path.
fn folder_output(flag: &'static str, value: &Option<Option<PathBuf>>) -> Result<bool, FlagError> {
    match value {
        None => Ok(false),
        Some(None) => Ok(true),
        Some(Some(path)) => {
            Err(FlagError::PathGiven { flag, name: folder_name_for(flag), path: path.clone() })
        }
    }
}

/// An example path for an output flag's error messages, with an extension the flag accepts.
fn example_for(flag: &str) -> &'static str {
    match flag {
        "--probabilities" => "out/probabilities.npy",
        "--overlay" => "out/overlay.png",
        "--geojson" => "out/regions.geojson",
        "--objects-csv" => "out/objects.csv",
        _ => "out/errors.png",
    }
}

/// The file name folder mode gives an output flag's files.
fn folder_name_for(flag: &str) -> &'static str {
    match flag {
        "--probabilities" => "OUT/<stem>_probabilities.npy",
        "--overlay" => "OUT/<stem>_overlay.png",
        "--geojson" => "OUT/<stem>.geojson",
        "--objects-csv" => "OUT/<stem>_objects.csv",
        _ => "OUT/<stem>_errors.png",
    }
}

/// The reference masks' rule of --label-format and --ignore-value.
fn mask_rule(args: &PredictArgs) -> Result<LabelRule, FlagError> {
    let format = match args.label_format {
        LabelFormatArg::Binary => LabelFormat::Binary,
        LabelFormatArg::Ilastik if args.ignore_value.is_some() => {
            return Err(FlagError::IgnoreValueWithIlastik)
        }
        LabelFormatArg::Ilastik => LabelFormat::Ilastik,
        LabelFormatArg::Index => LabelFormat::Index,
    };
    Ok(LabelRule { format, ignore: args.ignore_value })
}

fn geojson_label(args: &PredictArgs) -> GeoJsonLabel {
    let objects = match (args.geojson_detections, args.geojson_objects) {
        (true, _) | (_, Some(ObjectsArg::Detection)) => ObjectKind::Detection,
        (_, Some(ObjectsArg::Annotation)) => ObjectKind::Annotation,
        (_, Some(ObjectsArg::Auto) | None) => ObjectKind::Auto,
    };
    GeoJsonLabel { class: args.geojson_class.clone(), objects, min_area: args.min_object_area }
}

/// What `--tissue`, `--roi` ask for.
fn tissue_request(args: &PredictArgs) -> Result<TissueRequest, FlagError> {
    let mut request = TissueRequest::default();
    for value in &args.tissue {
        if value == "auto" {
            request.auto = true;
        } else if request.mask.replace(PathBuf::from(value)).is_some() {
            return Err(FlagError::TwoTissueMasks);
        }
    }
    if (args.tissue_threshold.is_some() || args.tissue_level.is_some() || args.tissue_output.is_some())
        && !request.auto
    {
        return Err(FlagError::TissueSettingsWithoutAuto);
    }
    request.threshold = args.tissue_threshold;
    request.level = args.tissue_level;
    request.output = args.tissue_output.clone().map(|p| (p.clone(), p));
    request.roi = args.roi.clone();
    request.roi_class = args.roi_class.clone();
    Ok(request)
}

/// One image (`--output`), whole or a share of it (`--shard`).
fn single(args: &PredictArgs, output: &Path) -> Result<Mode, FlagError> {
    refuse(
        &[
            ("--input-dir", args.input_dir.is_some()),
            ("--pattern", args.pattern.is_some()),
            ("--mask-dir", args.mask_dir.is_some()),
            ("--mask-format", args.mask_format.is_some()),
            ("--fail-fast", args.fail_fast),
        ],
        "folder mode (--output-dir)",
        "to one image with --output",
    )?;
    let image = match args.image.as_slice() {
        [image] => image.clone(),
        [] => return Err(FlagError::NoImage),
        several => return Err(FlagError::SeveralImages(several.len())),
    };
    let request = SingleRequest {
        model: args.model.clone(),
        image,
        output: output.to_path_buf(),
        mask: args.mask.clone(),
        metrics_json: args.metrics_json.clone(),
        probabilities: single_output("--probabilities", &args.probabilities)?,
        overlay: single_output("--overlay", &args.overlay)?,
        errors: single_output("--errors", &args.errors)?,
        geojson: single_output("--geojson", &args.geojson)?,
        geojson_label: geojson_label(args),
        objects_csv: single_output("--objects-csv", &args.objects_csv)?,
        tile: args.tile,
        level: args.level,
        mask_rule: mask_rule(args)?,
        ngff: args.ngff.map(NgffArg::version).unwrap_or_default(),
        labels: args.labels.clone(),
        tissue: tissue_request(args)?,
    };
    if let Some(shard) = args.shard {
        check_share(&request)?;
        return Ok(Mode::Share(request, shard));
    }
    if let Some(ngff) = args.ngff {
        let outputs = [Some(&request.output), request.probabilities.as_ref(), request.overlay.as_ref()];
        let outputs = outputs.into_iter().chain([request.errors.as_ref()]).flatten();
        if !outputs.into_iter().any(|p| has_ome_zarr_name(p)) {
            return Err(FlagError::NgffWithoutStore(ngff.version().as_str()));
        }
    }
    if request.errors.is_some() && request.mask.is_none() {
        return Err(FlagError::ErrorsWithoutMask);
    }
    if request.metrics_json.is_some() && request.mask.is_none() {
        return Err(FlagError::MetricsWithoutMask);
    }
    Ok(Mode::Single(request))
}

/// What a share cannot do: it holds only its own rows of the image.
fn check_share(request: &SingleRequest) -> Result<(), FlagError> {
    let refused = [
        (
            "--mask",
            request.mask.is_some(),
            "metrics need the whole image; score the finalized store in a run without --shard",
        ),
        ("--metrics-json", request.metrics_json.is_some(), "metrics need the whole image"),
        ("--errors", request.errors.is_some(), "the error map needs --mask"),
        (
            "--ngff",
            request.ngff != NgffVersion::V04,
            "shares write NGFF 0.4 stores (Zarr v2); drop --ngff 0.5",
        ),
        (
            "--labels",
            request.labels.is_some(),
            "a label image is written whole; add --labels to a run without --shard",
        ),
        (
            "--geojson",
            request.geojson.is_some(),
            "its objects need the whole image; ask for them in a run without --shard",
        ),
        (
            "--tissue",
            request.tissue.auto || request.tissue.mask.is_some(),
            "not yet: shares do not take a tissue mask; predict the slide in one run",
        ),
        ("--roi", request.tissue.roi.is_some(), "not yet: predict the slide in one run"),
    ];
    match refused.into_iter().find(|(_, given, _)| *given) {
        Some((flag, _, why)) => Err(FlagError::NotInShare { flag, why }),
        None => Ok(()),
    }
}

/// Folder mode (`--output-dir`).
fn folder(args: &PredictArgs, dir: &Path) -> Result<FolderRequest, FlagError> {
    refuse(
        &[
            ("--output", args.output.is_some()),
            ("--mask", args.mask.is_some()),
            ("--metrics-json", args.metrics_json.is_some()),
            ("--ngff", args.ngff.is_some()),
            ("--labels", args.labels.is_some()),
            ("--tissue", !args.tissue.is_empty()),
            ("--roi", args.roi.is_some()),
        ],
        "one image (--image with --output)",
        "to folder mode (--output-dir)",
    )?;
    if args.pattern.is_some() && args.input_dir.is_none() {
        return Err(FlagError::PatternWithoutInputDir);
    }
    let outputs = FolderOutputs {
        dir: dir.to_path_buf(),
        mask_format: args.mask_format.unwrap_or(MaskFormat::Png).image_format(),
        probabilities: folder_output("--probabilities", &args.probabilities)?,
        overlay: folder_output("--overlay", &args.overlay)?,
        errors: folder_output("--errors", &args.errors)?,
        metrics: args.mask_dir.is_some(),
        geojson: folder_output("--geojson", &args.geojson)?.then(|| geojson_label(args)),
        objects_csv: folder_output("--objects-csv", &args.objects_csv)?,
        mask_rule: mask_rule(args)?,
    };
    if outputs.errors && args.mask_dir.is_none() {
        return Err(FlagError::ErrorsWithoutMaskDir);
    }
    if args.input_dir.is_none() && args.image.is_empty() {
        return Err(FlagError::NoImages);
    }
    Ok(FolderRequest {
        model: args.model.clone(),
        input_dir: args.input_dir.clone(),
        pattern: args.pattern.clone(),
        images: args.image.clone(),
        mask_dir: args.mask_dir.clone(),
        outputs,
        shard: args.shard,
        tile: args.tile,
        level: args.level,
        fail_fast: args.fail_fast,
    })
}

#[cfg(test)]
mod tests;
