//! Training from QuPath annotations on whole slides: the annotated areas read at a level with their labels,
//! and a 100,000 x 100,000 slide with 20 annotations trained in bounded memory.

use std::path::{Path, PathBuf};

use imaging::annotations::classes::Unannotated;
use imaging::source::{Channels, ImageSource};
use integration::mosaic::{halve_tile, tile_from, write_tile_mosaic, MosaicLevel};
use trainer::data::annotated::{load_annotated, AnnotatedSource, AnnotationRule};
use trainer::data::{TrainingImage, UNLABELLED};

fn conifer(file: &str, channels: Channels) -> (Vec<u8>, usize, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/conifer").join(file);
    let mut source = ImageSource::open(&path, channels).expect("the conifer data");
    let (w, h) = (source.width(), source.height());
    (source.read_all().expect("decodes"), w, h)
}

/// A GeoJSON Feature of one polygon (outer ring and holes) of `class` (None: unclassified).
fn feature(class: Option<&str>, rings: &[Vec<(f64, f64)>]) -> serde_json::Value {
    let coordinates: Vec<Vec<[f64; 2]>> =
        rings.iter().map(|ring| ring.iter().chain(ring.first()).map(|&(x, y)| [x, y]).collect()).collect();
    let mut properties = serde_json::json!({"objectType": "annotation"});
    if let Some(class) = class {
        properties["classification"] = serde_json::json!({"name": class, "color": [200, 0, 0]});
    }
    serde_json::json!({
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": coordinates},
        "properties": properties,
    })
}

fn square(left: f64, top: f64, side: f64) -> Vec<(f64, f64)> {
    vec![(left, top), (left + side, top), (left + side, top + side), (left, top + side)]
}

fn write_geojson(path: &Path, features: Vec<serde_json::Value>) {
    let collection = serde_json::json!({"type": "FeatureCollection", "features": features});
    std::fs::write(path, serde_json::to_vec(&collection).unwrap()).unwrap();
}

fn source(image: &Path, annotations: &Path) -> AnnotatedSource {
    AnnotatedSource {
        image: image.to_path_buf(),
        annotations: annotations.to_path_buf(),
        image_flag: "--image".into(),
        annotations_flag: "--annotations".into(),
    }
}

fn rule(level: usize) -> AnnotationRule {
    AnnotationRule {
        foreground_classes: vec!["Tumor".into()],
        classes: Vec::new(),
        unannotated: Unannotated::Unlabelled,
        level,
    }
}

/// The level pixel at the top-left of a loaded area: its name ends in "WxH at (L, T)".
fn origin(image: &TrainingImage) -> (usize, usize) {
    let at = image.name.rsplit_once(" at (").expect("the area's position").1.trim_end_matches(')');
    let (l, t) = at.split_once(", ").expect("L, T");
    (l.parse().unwrap(), t.parse().unwrap())
}

/// The area of `images` holding level pixel (x, y), and the position inside it.
fn locate(images: &[TrainingImage], x: usize, y: usize) -> Option<(&TrainingImage, usize, usize)> {
    images.iter().find_map(|image| {
        let (l, t) = origin(image);
        (x >= l && y >= t && x < l + image.width && y < t + image.height).then(|| (image, x - l, y - t))
    })
}

fn label_at(images: &[TrainingImage], x: usize, y: usize) -> Option<u8> {
    locate(images, x, y).map(|(image, cx, cy)| image.labels[cy * image.width + cx])
}

#[test]
fn annotated_areas_are_read_at_their_level_with_labels_by_the_centre_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (rgb, w, h) = conifer("image.png", Channels::Rgb);
    let side = 256;
    let tile0 = tile_from(&rgb, w, h, 3, side);
    let tile1 = halve_tile(&tile0, side);
    let levels = [
        MosaicLevel { tile: &tile0, side, width: 3000, height: 2000 },
        MosaicLevel { tile: &tile1, side: side / 2, width: 1500, height: 1000 },
    ];
    let slide = dir.path().join("slide.tif");
    write_tile_mosaic(&slide, &levels).unwrap();
    let geojson = dir.path().join("annotations.geojson");
    write_geojson(
        &geojson,
        vec![
            // A background region with a tumour drawn inside, a hole in the tumour.
            feature(Some("Stroma"), &[square(100.0, 100.0, 600.0)]),
            feature(Some("Tumor"), &[square(200.0, 200.0, 200.0), square(250.0, 250.0, 40.0)]),
            // A lone small tumour, and an unclassified (background) polygon far away.
            feature(Some("Tumor"), &[square(2500.0, 1500.0, 20.0)]),
            feature(None, &[vec![(2000.0, 200.0), (2300.0, 200.0), (2150.0, 500.0)]]),
        ],
    );

    let images = load_annotated(&source(&slide, &geojson), &rule(0), 64).unwrap();
    assert_eq!(
        images.len(),
        3,
        "three separate areas: {:?}",
        images.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    let read: usize = images.iter().map(|i| i.width * i.height).sum();
    assert!(read < 3000 * 2000 / 5, "only the annotated areas are read: {read} pixels");
    // Every pixel read is the slide's.
    for image in &images {
        for (y, x) in [(0, 0), (image.height - 1, image.width - 1), (image.height / 2, image.width / 3)] {
            let (l, t) = origin(image);
            assert_eq!(
                &image.rgb[(y * image.width + x) * 3..][..3],
                levels[0].pixel(l + x, t + y),
                "{}",
                image.name
            );
        }
    }
    // Centres inside: a square from 100 to 700 holds pixels 100..=699.
    assert_eq!(label_at(&images, 100, 100), Some(0));
    assert_eq!(label_at(&images, 699, 699), Some(0));
    assert_eq!(label_at(&images, 99, 300), Some(UNLABELLED));
    assert_eq!(label_at(&images, 700, 300), Some(UNLABELLED));
    // Foreground wins over the background region; the hole is background (inside Stroma only).
    assert_eq!(label_at(&images, 200, 200), Some(1));
    assert_eq!(label_at(&images, 399, 399), Some(1));
    assert_eq!(label_at(&images, 250, 250), Some(0));
    assert_eq!(label_at(&images, 289, 289), Some(0));
    assert_eq!(label_at(&images, 290, 290), Some(1));
    assert_eq!(label_at(&images, 2500, 1500), Some(1));
    assert_eq!(label_at(&images, 2519, 1519), Some(1));
    assert_eq!(label_at(&images, 2520, 1510), Some(UNLABELLED));
    assert_eq!(label_at(&images, 2150, 300), Some(0));

    // Level 1: pixel x covers level-0 x in [2x, 2x + 2), its centre is 2x + 1.
    let images = load_annotated(&source(&slide, &geojson), &rule(1), 32).unwrap();
    for image in &images {
        let (l, t) = origin(image);
        assert_eq!(&image.rgb[..3], levels[1].pixel(l, t), "{}", image.name);
    }
    assert_eq!(label_at(&images, 50, 50), Some(0));
    assert_eq!(label_at(&images, 349, 349), Some(0));
    assert_eq!(label_at(&images, 49, 200), Some(UNLABELLED));
    assert_eq!(label_at(&images, 350, 200), Some(UNLABELLED));
    assert_eq!(label_at(&images, 100, 100), Some(1));
    assert_eq!(label_at(&images, 125, 125), Some(0));
    assert_eq!(label_at(&images, 145, 145), Some(1));
    assert_eq!(label_at(&images, 1250, 750), Some(1));
    assert_eq!(label_at(&images, 1259, 759), Some(1));
    assert_eq!(label_at(&images, 1260, 755), Some(UNLABELLED));
}

#[test]
fn bad_annotations_are_refused_in_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let tile = vec![128u8; 16 * 16 * 3];
    let slide = dir.path().join("slide.tif");
    write_tile_mosaic(&slide, &[MosaicLevel { tile: &tile, side: 16, width: 400, height: 300 }]).unwrap();
    let geojson = dir.path().join("a.geojson");
    let error = |features: serde_json::Value| {
        std::fs::write(&geojson, serde_json::to_vec(&features).unwrap()).unwrap();
        let e = load_annotated(&source(&slide, &geojson), &rule(0), 64).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.starts_with("--annotations "), "names the flag: {e}");
        e
    };
    let e = error(serde_json::json!({"type": "Feature", "geometry": null}));
    assert!(e.contains("--foreground-class") || e.contains("FeatureCollection"), "{e}");
    let e = error(
        serde_json::json!({"type": "FeatureCollection", "features": [feature(Some("Stroma"), &[square(1.0, 1.0, 50.0)])]}),
    );
    assert!(e.contains("--foreground-class") && e.contains("Stroma"), "says which classes there are: {e}");
    let e = error(
        serde_json::json!({"type": "FeatureCollection", "features": [feature(Some("Tumor"), &[square(390.0, 10.0, 50.0)])]}),
    );
    assert!(e.contains("outside"), "{e}");
    let e = error(serde_json::json!([1, 2]));
    assert!(!e.is_empty());
}

/// The peak resident memory of this process so far, in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

const CHILD: &str = "SEGMENTER_SLIDE_TRAINING_CHILD";

/// Run alone in a child process (see the test below), so that its peak memory is its own.
#[test]
#[ignore = "run by a_whole_slide_with_20_annotations_trains_in_bounded_memory in a child process"]
fn whole_slide_training_child() {
    let Some(dir) = std::env::var_os(CHILD).map(PathBuf::from) else { return };
    let (rgb, w, h) = conifer("image.png", Channels::Rgb);
    let (mask, ..) = conifer("mask.png", Channels::Gray);
    let side = 512;
    let tile = tile_from(&rgb, w, h, 3, side);
    let tile_mask = tile_from(&mask, w, h, 1, side);
    let size = 100_000;
    let slide = dir.join("slide.tif");
    write_tile_mosaic(&slide, &[MosaicLevel { tile: &tile, side, width: size, height: size }]).unwrap();
    // 20 areas spread over the slide: a 512 x 512 "Stroma" square on a tile, and the tile's foreground
    // pixels inside it as "Tumor" squares of one pixel row each (a run of foreground pixels).
    let mut features = Vec::new();
    for i in 0..20usize {
        let (tx, ty) = ((i * 37) % 190 + 2, (i * 71) % 190 + 2);
        let (left, top) = ((tx * side) as f64, (ty * side) as f64);
        features.push(feature(Some("Stroma"), &[square(left, top, side as f64)]));
        for y in (0..side).step_by(8) {
            let mut x = 0;
            while x < side {
                if tile_mask[y * side + x] > 127 {
                    let start = x;
                    while x < side && tile_mask[y * side + x] > 127 {
                        x += 1;
                    }
                    let ring = vec![
                        (left + start as f64, top + y as f64),
                        (left + x as f64, top + y as f64),
                        (left + x as f64, top + y as f64 + 1.0),
                        (left + start as f64, top + y as f64 + 1.0),
                    ];
                    features.push(feature(Some("Tumor"), &[ring]));
                }
                x += 1;
            }
        }
    }
    let geojson = dir.join("annotations.geojson");
    write_geojson(&geojson, features);
    let images = load_annotated(&source(&slide, &geojson), &rule(0), 128).unwrap();
    assert_eq!(images.len(), 20);
    let config = trainer::train::TrainConfig {
        iterations: 20,
        batch: 4,
        crop: 128,
        lr: 1e-3,
        schedule: trainer::optim::LrSchedule::Constant,
        seed: 0,
        augment: trainer::data::crops::AugmentPolicy::None,
        checkpoint_every: 0,
        val_every: None,
        val_fraction: None,
        out_dir: dir.join("run"),
        resume: None,
        init_from: None,
        inputs: Vec::new(),
        kernels: trainer::ops::Kernels::Fast,
        classes: imaging::classes::ClassList::default(),
    };
    struct Silent;
    impl trainer::train::Progress for Silent {}
    trainer::train::train(&config, &images, &[], &candle_core::Device::Cpu, &mut Silent).unwrap();
    println!("PEAK_BYTES={}", peak_memory());
}

#[test]
fn a_whole_slide_with_20_annotations_trains_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["whole_slide_training_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let peak: u64 = stdout
        .lines()
        .find_map(|l| l.split("PEAK_BYTES=").nth(1))
        .unwrap_or_else(|| panic!("no peak in {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(peak < 1 << 30, "a 100,000 x 100,000 slide trained with a peak of {} MiB", peak >> 20);
    println!("peak {} MiB", peak >> 20);
}

/// Section 4 of the annotations issue, end to end: a mosaic slide of the conifer image, QuPath annotations
/// made from its mask over three tiles, training from them, the whole slide predicted to GeoJSON, and that
/// GeoJSON rasterised back against the slide's true mask.
#[test]
fn a_slide_trained_from_annotations_predicts_back_to_qupath_objects() {
    use imaging::annotations::classes::Labeller;
    use imaging::annotations::geojson;
    use imaging::annotations::trace::Tracer;
    use imaging::rect::Rect;

    let dir = tempfile::tempdir().unwrap();
    let (rgb, w, h) = conifer("image.png", Channels::Rgb);
    let (mask, ..) = conifer("mask.png", Channels::Gray);
    let side = 512;
    let tile = tile_from(&rgb, w, h, 3, side);
    let tile_classes: Vec<u8> = tile_from(&mask, w, h, 1, side).iter().map(|&v| u8::from(v > 127)).collect();
    let (width, height) = (2048, 1536);
    let slide = dir.path().join("slide.tif");
    write_tile_mosaic(&slide, &[MosaicLevel { tile: &tile, side, width, height }]).unwrap();

    // The tile's foreground as polygons along pixel edges, with their holes.
    let mut tracer = Tracer::new(side);
    let mut traced = tracer.push_rows(&tile_classes);
    traced.extend(tracer.finish());
    let mut features = Vec::new();
    for (tx, ty) in [(0usize, 0usize), (2, 0), (1, 2)] {
        let (left, top) = ((tx * side) as f64, (ty * side) as f64);
        features.push(feature(Some("Stroma"), &[square(left, top, side as f64)]));
        for region in &traced {
            let polygon = region.edges((1.0, 1.0));
            let shift =
                |ring: &Vec<(f64, f64)>| ring.iter().map(|&(x, y)| (x + left, y + top)).collect::<Vec<_>>();
            let mut rings = vec![shift(&polygon.outer)];
            rings.extend(polygon.holes.iter().map(shift));
            features.push(feature(Some("Tumor"), &rings));
        }
    }
    let annotations = dir.path().join("annotations.geojson");
    write_geojson(&annotations, features);

    let images = load_annotated(&source(&slide, &annotations), &rule(0), 128).unwrap();
    assert_eq!(images.len(), 3);
    let run = dir.path().join("run");
    let config = trainer::train::TrainConfig {
        iterations: 600,
        batch: 4,
        crop: 128,
        lr: 1e-3,
        schedule: trainer::optim::LrSchedule::Constant,
        seed: 0,
        augment: trainer::data::crops::AugmentPolicy::None,
        checkpoint_every: 0,
        val_every: None,
        val_fraction: None,
        out_dir: run.clone(),
        resume: None,
        init_from: None,
        inputs: Vec::new(),
        kernels: trainer::ops::Kernels::Fast,
        classes: imaging::classes::ClassList::default(),
    };
    struct Silent;
    impl trainer::train::Progress for Silent {}
    trainer::train::train(&config, &images, &[], &candle_core::Device::Cpu, &mut Silent).unwrap();
    let model = dir.path().join("model.onnx");
    trainer::export::run(&trainer::export::ExportRequest {
        checkpoint: run.join("checkpoint.safetensors"),
        output: Some(model.clone()),
        bioimageio: None,
        triton: None,
        package: Default::default(),
    })
    .unwrap();

    let predicted_geojson = dir.path().join("predicted.geojson");
    let predicted_mask = dir.path().join("predicted.png");
    let request = runner::single::SingleRequest {
        model,
        image: slide.clone(),
        output: predicted_mask.clone(),
        mask: None,
        metrics_json: None,
        probabilities: None,
        overlay: None,
        errors: None,
        geojson: Some(predicted_geojson.clone()),
        geojson_label: Default::default(),
        objects_csv: None,
        tissue: Default::default(),
        tile: imaging::tiles::DEFAULT_TILE,
        level: 0,
        mask_rule: Default::default(),
        ngff: Default::default(),
        labels: None,
    };
    let options = runner::session::ModelOptions { threads: Some(2), ..Default::default() };
    runner::single::run(&request, &options, |_| {}).unwrap();

    // The written objects, rasterised by the centre rule over the whole slide.
    let objects = geojson::parse(&std::fs::read_to_string(&predicted_geojson).unwrap()).unwrap();
    let classes: Vec<String> = objects.class_names().into_iter().flatten().collect();
    assert!(!classes.is_empty(), "the objects carry the model's class name");
    let labeller = Labeller::new(&objects, &classes, Unannotated::Background).unwrap();
    let mut from_objects = vec![0u8; width * height];
    labeller.fill(Rect { left: 0, top: 0, width, height }, (1.0, 1.0), &mut from_objects);
    let truth: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (y, x)))
        .map(|(y, x)| tile_classes[(y % side) * side + x % side])
        .collect();
    let (predicted, ..) = {
        let mut s = ImageSource::open(&predicted_mask, Channels::Gray).unwrap();
        (s.read_all().unwrap().iter().map(|&v| u8::from(v > 127)).collect::<Vec<u8>>(), 0)
    };
    let iou = |a: &[u8], b: &[u8]| {
        let both = a.iter().zip(b).filter(|(x, y)| **x == 1 && **y == 1).count() as f64;
        let either = a.iter().zip(b).filter(|(x, y)| **x == 1 || **y == 1).count() as f64;
        both / either
    };
    let round_trip = iou(&from_objects, &predicted);
    let against_truth = iou(&from_objects, &truth);
    println!("objects vs predicted mask IoU {round_trip:.4}, vs the true mask {against_truth:.4}");
    assert!(round_trip >= 0.99, "the GeoJSON rasterises back to the predicted mask: IoU {round_trip}");
    assert!(against_truth >= 0.85, "trained from three annotated tiles, the slide's IoU is {against_truth}");
}
