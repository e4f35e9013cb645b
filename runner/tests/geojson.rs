//! `--geojson`: the predicted foreground as QuPath objects, read back with the GeoJSON reader of
//! `imaging::annotations` and rasterised by its centre rule: exactly the predicted mask, at level 0 and at a
//! pyramid level (coordinates in level-0 pixels), with small tiles so that regions cross band boundaries;
//! folder mode names the file after the image; bad uses are one line.

use std::path::Path;
use std::process::{Command, Output};

use imaging::annotations::geojson::parse;
use imaging::annotations::raster::rasterise;
use imaging::masks::classes_from_gray;
use imaging::rect::Rect;
use imaging::sink::{ImageFormat, PixelKind, RowSink};
use imaging::source::{Channels, ImageSource};

fn predict(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .args(["predict", "--model", "model.onnx", "--threads", "2", "--quiet"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn classes(path: &Path) -> (Vec<u8>, usize, usize) {
    let mut source = ImageSource::open(path, Channels::Gray).unwrap();
    let (w, h) = (source.width(), source.height());
    let mut rows = Vec::new();
    source.read_rows(h, &mut rows).unwrap();
    (classes_from_gray(&rows), w, h)
}

/// The GeoJSON file rasterised at a level of `scale` and size `w` x `h`; checks the QuPath properties.
fn read_back(path: &Path, w: usize, h: usize, scale: (f64, f64), class: &str) -> (Vec<u8>, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let annotations = parse(&text).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for f in json["features"].as_array().unwrap() {
        assert_eq!(f["properties"]["classification"]["name"], class);
        assert_eq!(f["geometry"]["type"], "Polygon");
    }
    annotations.check_within((w as f64 * scale.0) as u64, (h as f64 * scale.1) as u64).unwrap();
    let polygons: Vec<_> = annotations.items.iter().flat_map(|a| a.polygons.iter()).collect();
    let window = Rect { left: 0, top: 0, width: w, height: h };
    (rasterise(polygons, window, scale), annotations.items.len())
}

/// A folder with the committed trained model (data/conifer's lumens), whose predictions have many
/// regions with holes and diagonal contacts.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("models/model.onnx"), dir.path().join("model.onnx")).unwrap();
    dir
}

/// A crop of data/conifer/image.png saved as `name`.
fn conifer(dir: &Path, name: &str, left: u32, top: u32, w: u32, h: u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let image = image::open(root.join("data/conifer/image.png")).unwrap().to_rgb8();
    image::imageops::crop_imm(&image, left, top, w, h).to_image().save(dir.join(name)).unwrap();
}

fn foreground(mask: &[u8]) -> usize {
    mask.iter().filter(|&&c| c == 1).count()
}

#[test]
fn the_geojson_rasterises_back_to_the_predicted_mask() {
    let dir = workspace();
    let (w, h) = (173, 141);
    conifer(dir.path(), "a.png", 40, 30, w as u32, h as u32);
    // Tiles of 32 pixels: bands of a few rows, so regions cross many band boundaries.
    let stdout = ok(&predict(
        dir.path(),
        &["--image", "a.png", "--output", "a_mask.png", "--geojson", "a.geojson", "--tile", "32"],
    ));
    assert!(stdout.contains("wrote a.geojson"), "{stdout}");
    let (mask, _, _) = classes(&dir.path().join("a_mask.png"));
    let fg = foreground(&mask);
    assert!(fg > w * h / 10 && fg < w * h * 9 / 10, "both classes predicted ({fg})");
    let (back, features) = read_back(&dir.path().join("a.geojson"), w, h, (1.0, 1.0), "foreground");
    assert!(stdout.contains(&format!("{features} foreground regions")), "{stdout}");
    assert!(features > 1);
    assert_eq!(back, mask, "rasterised GeoJSON == predicted mask");

    // The class and the object type can be named.
    let args = [
        "--image",
        "a.png",
        "--output",
        "b.png",
        "--geojson",
        "b.json",
        "--geojson-class",
        "Tumor",
        "--geojson-detections",
    ];
    ok(&predict(dir.path(), &args));
    let text = std::fs::read_to_string(dir.path().join("b.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["features"][0]["properties"]["classification"]["name"], "Tumor");
    assert_eq!(json["features"][0]["properties"]["objectType"], "detection");
}

#[test]
fn a_level_is_written_in_level_0_coordinates() {
    // A pyramidal OME-TIFF of a conifer crop enlarged 4 times: level 1 (downsample 2) is the crop at twice
    // its resolution.
    let dir = workspace();
    conifer(dir.path(), "crop.png", 100, 300, 280, 260);
    let crop = image::open(dir.path().join("crop.png")).unwrap().to_rgb8();
    let big = image::imageops::resize(&crop, 1120, 1040, image::imageops::FilterType::Nearest);
    let mut sink = RowSink::image(
        &dir.path().join("p.ome.tif"),
        ImageFormat::OmeTiff,
        PixelKind::Rgb8,
        1120,
        1040,
        false,
    )
    .unwrap();
    sink.write_pixels(big.as_raw()).unwrap();
    sink.finish().unwrap();
    let levels = ImageSource::levels(&dir.path().join("p.ome.tif")).unwrap();
    assert_eq!(levels[1].downsample, (2.0, 2.0));
    let args = [
        "--image",
        "p.ome.tif",
        "--output",
        "l1.png",
        "--level",
        "1",
        "--geojson",
        "l1.geojson",
        "--tile",
        "64",
    ];
    ok(&predict(dir.path(), &args));
    let (mask, w, h) = classes(&dir.path().join("l1.png"));
    assert_eq!((w, h), (560, 520));
    let fg = foreground(&mask);
    assert!(fg > w * h / 10 && fg < w * h * 9 / 10, "both classes predicted ({fg})");
    let (back, _) = read_back(&dir.path().join("l1.geojson"), w, h, levels[1].downsample, "foreground");
    assert_eq!(back, mask);
}

#[test]
fn folder_mode_names_the_file_after_the_image() {
    let dir = workspace();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    conifer(&dir.path().join("in"), "x.png", 0, 0, 60, 50);
    conifer(&dir.path().join("in"), "y.png", 100, 200, 70, 40);
    ok(&predict(dir.path(), &["--input-dir", "in", "--output-dir", "out", "--geojson"]));
    for name in ["x", "y"] {
        let (mask, w, h) = classes(&dir.path().join(format!("out/{name}.png")));
        let (back, _) =
            read_back(&dir.path().join(format!("out/{name}.geojson")), w, h, (1.0, 1.0), "foreground");
        assert!(foreground(&mask) > 100);
        assert_eq!(back, mask);
    }
}

#[test]
fn bad_uses_are_one_line() {
    let dir = workspace();
    conifer(dir.path(), "a.png", 0, 0, 40, 30);
    let cases: [(&[&str], &str); 4] = [
        (&["--image", "a.png", "--output", "m.png", "--geojson"], "--geojson needs a path for one image"),
        (
            &["--image", "a.png", "--output", "m.png", "--geojson", "r.png"],
            "--geojson r.png: give a .geojson",
        ),
        (
            &["--image", "a.png", "--output-dir", "out", "--geojson", "r.geojson"],
            "with --output-dir, --geojson takes no path",
        ),
        (&["--image", "a.png", "--output", "m.png", "--geojson-class", "T"], "--geojson"),
    ];
    for (args, expected) in cases {
        let out = predict(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("m.png").exists());
}
