//! The flag rules of `runner predict`, table by table: argument lists in, the request or the error's text
//! out; no file is opened.

use std::path::PathBuf;

use clap::Parser;
use imaging::masks::{LabelFormat, LabelRule};
use imaging::sink::ome_zarr::NgffVersion;
use imaging::sink::ImageFormat;

use super::super::request::{Mode, PredictRequest};
use super::super::{Cli, Command};
use super::*;
use crate::folder::Shard;

/// The request of `runner predict ARGS`, or the error's text (clap's or the resolve step's).
fn resolve(args: &str) -> Result<PredictRequest, String> {
    let cli = Cli::try_parse_from(["runner", "predict"].into_iter().chain(args.split_whitespace()))
        .map_err(|e| e.to_string())?;
    match cli.command {
        Command::Predict(args) => predict(&args).map_err(|e| e.to_string()),
        _ => unreachable!("parsed as predict"),
    }
}

fn refused(cases: &[(&str, &str)]) {
    for &(args, expected) in cases {
        match resolve(args) {
            Ok(request) => panic!("`{args}` was accepted: {:?}", request.mode),
            Err(e) => assert!(e.contains(expected), "`{args}`: `{expected}` not in: {e}"),
        }
    }
}

#[test]
fn every_mode_refuses_what_does_not_go_together() {
    refused(&[
        ("--image a --output m.png --tile 7", "--tile 7: "),
        ("--image a --output m.png --threads 0", "--threads must be at least 1"),
        (
            "--image a --output m.png --output-dir d",
            "give --output (one --image) or --output-dir (--input-dir, or several --image), not both",
        ),
        ("--image a", "give --output (one --image) or --output-dir (--input-dir, or several --image)"),
        ("--image a --output m.png --label-format ilastik --ignore-value 0", "drop --ignore-value"),
        ("--output-dir d --image a --label-format ilastik --ignore-value 3", "drop --ignore-value"),
        // clap's own: the GeoJSON labels need --geojson.
        ("--image a --output m.png --geojson-class Tumor", "--geojson"),
    ]);
}

#[test]
fn one_image_refuses_folder_flags_and_unscored_outputs() {
    let one = "--image a.png --output m.png";
    let cases: Vec<(String, &str)> = [
        (
            "--input-dir d",
            "--input-dir is for folder mode (--output-dir); it does not apply to one image with --output",
        ),
        ("--pattern *.png", "--pattern is for folder mode"),
        ("--mask-dir d", "--mask-dir is for folder mode"),
        ("--mask-format tif", "--mask-format is for folder mode"),
        ("--fail-fast", "--fail-fast is for folder mode"),
        ("--image b.png", "--output is for one --image (got 2); use --output-dir for several"),
        ("--overlay", "--overlay needs a path for one image (e.g. --overlay out/overlay.png)"),
        (
            "--probabilities",
            "--probabilities needs a path for one image (e.g. --probabilities out/probabilities.npy)",
        ),
        ("--errors --mask r.png", "--errors needs a path for one image (e.g. --errors out/errors.png)"),
        ("--geojson", "--geojson needs a path for one image (e.g. --geojson out/regions.geojson)"),
        (
            "--geojson r.geojson --objects-csv",
            "--objects-csv needs a path for one image (e.g. --objects-csv out/objects.csv)",
        ),
        ("--tissue a.png --tissue b.png", "--tissue takes one mask file (and `auto`); got two"),
        (
            "--tissue m.png --tissue-threshold 25",
            "--tissue-threshold, --tissue-level and --tissue-output are for --tissue auto",
        ),
        ("--ngff 0.5", "--ngff 0.5 sets the version of .ome.zarr outputs, and none is given"),
        ("--errors e.png", "--errors needs a reference mask: add --mask"),
        ("--metrics-json m.json", "--metrics-json needs a reference mask to score against: add --mask"),
    ]
    .into_iter()
    .map(|(extra, expected)| (format!("{one} {extra}"), expected))
    .collect();
    refused(&cases.iter().map(|(a, e)| (a.as_str(), *e)).collect::<Vec<_>>());
    refused(&[("--output m.png", "--output needs the --image to predict")]);
}

#[test]
fn a_share_refuses_what_needs_the_whole_image() {
    let share = "--image a.png --output m.ome.zarr --shard 0/2";
    let cases: Vec<(String, &str)> = [
        (
            "--mask r.png",
            "--mask is refused with --shard: metrics need the whole image; score the finalized store",
        ),
        ("--metrics-json m.json", "--metrics-json is refused with --shard"),
        ("--errors e.ome.zarr", "--errors is refused with --shard: the error map needs --mask"),
        (
            "--ngff 0.5",
            "--ngff is refused with --shard: shares write NGFF 0.4 stores (Zarr v2); drop --ngff 0.5",
        ),
        ("--labels pred", "--labels is refused with --shard"),
        ("--geojson r.geojson", "--geojson is refused with --shard"),
        ("--tissue auto", "--tissue is refused with --shard"),
        ("--roi a.geojson", "--roi is refused with --shard"),
        ("--input-dir d", "--input-dir is for folder mode"),
    ]
    .into_iter()
    .map(|(extra, expected)| (format!("{share} {extra}"), expected))
    .collect();
    refused(&cases.iter().map(|(a, e)| (a.as_str(), *e)).collect::<Vec<_>>());
}

#[test]
fn folder_mode_refuses_one_image_flags_and_paths() {
    let folder = "--input-dir in --output-dir out";
    let cases: Vec<(String, &str)> = [
        ("--mask r.png", "--mask is for one image (--image with --output); it does not apply to folder mode (--output-dir)"),
        ("--metrics-json m.json", "--metrics-json is for one image"),
        ("--ngff 0.5", "--ngff is for one image"),
        ("--labels pred", "--labels is for one image"),
        ("--tissue auto", "--tissue is for one image"),
        ("--roi a.geojson", "--roi is for one image"),
        ("--overlay o.png", "with --output-dir, --overlay takes no path (its files are named after each image: OUT/<stem>_overlay.png); got o.png"),
        ("--geojson r.geojson", "with --output-dir, --geojson takes no path (its files are named after each image: OUT/<stem>.geojson)"),
        ("--errors", "--errors needs reference masks: add --mask-dir"),
    ]
    .into_iter()
    .map(|(extra, expected)| (format!("{folder} {extra}"), expected))
    .collect();
    refused(&cases.iter().map(|(a, e)| (a.as_str(), *e)).collect::<Vec<_>>());
    refused(&[
        ("--output-dir out --pattern *.png --image a.png", "--pattern filters --input-dir: add --input-dir"),
        ("--output-dir out", "no images: give --input-dir or --image"),
    ]);
}

#[test]
fn accepted_flags_make_their_request() {
    let p = PathBuf::from;
    let r = resolve("--image a.png --output m.ome.zarr --mask r.png --errors e.png --ngff 0.5 --level 1")
        .unwrap();
    let Mode::Single(single) = &r.mode else { panic!("{:?}", r.mode) };
    assert_eq!(
        (single.image.clone(), single.errors.clone(), single.level),
        (p("a.png"), Some(p("e.png")), 1)
    );
    assert_eq!(single.ngff, NgffVersion::V05);

    let r = resolve("--image a.png --output m.ome.zarr --overlay o.ome.zarr --shard 1/3 --ngff 0.4 --quiet")
        .unwrap();
    let Mode::Share(single, shard) = &r.mode else { panic!("{:?}", r.mode) };
    assert_eq!((single.overlay.clone(), *shard), (Some(p("o.ome.zarr")), Shard { index: 1, count: 3 }));
    assert!(r.quiet);

    let r = resolve(
        "--input-dir in --pattern *.tif --image x.png --output-dir out --mask-dir masks --errors --overlay \
         --geojson --geojson-detections --mask-format ome.tif --label-format ilastik --shard 0/2 --fail-fast \
         --threads 3",
    )
    .unwrap();
    let Mode::Folder(folder) = &r.mode else { panic!("{:?}", r.mode) };
    assert_eq!((folder.images.clone(), folder.pattern.as_deref()), (vec![p("x.png")], Some("*.tif")));
    let outputs = &folder.outputs;
    assert_eq!((outputs.mask_format, outputs.errors, outputs.overlay), (ImageFormat::OmeTiff, true, true));
    assert!(outputs.metrics && !outputs.probabilities && folder.fail_fast);
    assert!(outputs
        .geojson
        .as_ref()
        .is_some_and(|label| label.objects == crate::regions::ObjectKind::Detection));
    assert_eq!(outputs.mask_rule, LabelRule { format: LabelFormat::Ilastik, ignore: None });
    assert_eq!((folder.shard, r.model_options.threads), (Some(Shard { index: 0, count: 2 }), Some(3)));

    // Several --image with --output-dir need no --input-dir.
    let r = resolve("--image a.png --image b.png --output-dir out --mask-format jpg").unwrap();
    let Mode::Folder(folder) = &r.mode else { panic!("{:?}", r.mode) };
    assert_eq!((folder.images.len(), folder.outputs.mask_format), (2, ImageFormat::Jpeg));
}
