//! The flag rules of `trainer train`, table by table: argument lists in, the request or the error's text
//! out; no file is opened.

use super::super::{Cli, Command};
use super::*;
use clap::Parser;
use imaging::masks::{LabelFormat, LabelRule};

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
    assert_eq!(
        r.mask_reading,
        MaskReading::two_classes(LabelRule { format: LabelFormat::Binary, ignore: None })
    );

    let r = resolve("--image s --annotations s.geojson --level 2 --unannotated background").unwrap();
    let TrainData::Annotated(sources) = &r.data else { panic!("{:?}", r.data) };
    assert_eq!((sources[0].annotations_flag.as_str(), r.annotation_rule.level), ("--annotations", 2));
    assert_eq!(r.annotation_rule.unannotated, Unannotated::Background);

    let r = resolve("--data d --label-format ilastik --no-augment --reference-ops").unwrap();
    assert_eq!(r.data, TrainData::Folder(p("d")));
    let ilastik = LabelRule { format: LabelFormat::Ilastik, ignore: None };
    assert_eq!(r.mask_reading, MaskReading::Gray { rule: ilastik, classes: imaging::classes::MAX_CLASSES });
    assert_eq!((r.config.augment, r.config.kernels), (AugmentPolicy::None, Kernels::Reference));

    let r = resolve("--image a --mask m --ignore-value 128 --quiet --device cuda").unwrap();
    assert_eq!(r.classes.ignore, Some(128));
    assert!(r.quiet && r.device == DeviceKind::Cuda);
}

#[test]
fn class_flags_resolve_to_a_reading_and_agree() {
    let r = resolve("--image a --mask m --label-format index --class-names bg,nuclei,dab").unwrap();
    let index = LabelRule { format: LabelFormat::Index, ignore: None };
    assert_eq!(r.mask_reading, MaskReading::Gray { rule: index, classes: 3 });
    assert_eq!(r.classes.resolve([]).unwrap().names, ["bg", "nuclei", "dab"]);
    let r =
        resolve("--image a --mask m --label-format color --class-colors #000000,#0000ff,#964b00").unwrap();
    assert_eq!(r.mask_reading, MaskReading::Colors { palette: vec![[0, 0, 0], [0, 0, 255], [150, 75, 0]] });
    let r = resolve("--image s --annotations g --class Stroma --class Tumor --class Necrosis").unwrap();
    assert_eq!(r.annotation_rule.classes, ["Stroma", "Tumor", "Necrosis"]);
    for (args, expected) in [
        ("--image a --mask m --classes 3", "--label-format index, ilastik or color"),
        ("--image a --mask m --label-format color", "needs --class-colors"),
        ("--image a --mask m --label-format color --class-colors red,blue", "#rrggbb"),
        ("--image a --mask m --label-format index --classes 4 --class-names a,b,c", "--classes gives 4"),
        ("--image a --mask m --label-format color --class-colors #000000,#ffffff --ignore-value 3", "colour"),
        ("--image s --annotations g --class A --foreground-class B", "cannot be used with"),
    ] {
        match resolve(args) {
            Ok(_) => panic!("`{args}` was accepted"),
            Err(e) => assert!(e.contains(expected), "`{args}`: `{expected}` not in: {e}"),
        }
    }
}
