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

/// A float32 `.npy` written by the runner: (height, width, values).
fn read_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<usize> =
        shape[..shape.find(')').unwrap()].split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let values = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (dims[0], dims[1], values)
}

/// Shoelace area (holes subtracted) and perimeter (holes included) of GeoJSON polygon coordinates,
/// computed here apart from the runner's own.
fn area_and_perimeter(rings: &serde_json::Value) -> (f64, f64) {
    let (mut area, mut perimeter) = (0.0, 0.0);
    for (i, ring) in rings.as_array().unwrap().iter().enumerate() {
        let pts: Vec<(f64, f64)> = ring
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let mut twice = 0.0;
        for pair in pts.windows(2) {
            twice += pair[0].0 * pair[1].1 - pair[1].0 * pair[0].1;
            perimeter += ((pair[1].0 - pair[0].0).powi(2) + (pair[1].1 - pair[0].1).powi(2)).sqrt();
        }
        area += if i == 0 { twice.abs() / 2.0 } else { -twice.abs() / 2.0 };
    }
    (area, perimeter)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn objects_carry_measurements_equal_to_an_independent_computation() {
    let dir = workspace();
    let (w, h) = (173, 141);
    conifer(dir.path(), "a.png", 40, 30, w as u32, h as u32);
    let args = [
        "--image",
        "a.png",
        "--output",
        "a_mask.png",
        "--probabilities",
        "p.npy",
        "--geojson",
        "a.geojson.gz",
        "--objects-csv",
        "a.csv",
        "--tile",
        "32",
    ];
    let stdout = ok(&predict(dir.path(), &args));
    assert!(stdout.contains("wrote a.geojson.gz") && stdout.contains("wrote a.csv"), "{stdout}");
    // Gzipped: read back through a decoder.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("a.geojson.gz")).unwrap()),
        &mut text,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let features = json["features"].as_array().unwrap();
    assert!(features.len() > 3);
    let (ph, pw, probabilities) = read_npy(&dir.path().join("p.npy"));
    assert_eq!((ph, pw), (h, w));
    let annotations = parse(&text).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("a.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), features.len(), "one row per feature");
    let column = |row: &[&str], name: &str| -> f64 {
        row[header.iter().position(|h| *h == name).unwrap()].parse().unwrap()
    };
    let window = Rect { left: 0, top: 0, width: w, height: h };
    for ((f, annotation), row) in features.iter().zip(&annotations.items).zip(&rows) {
        let p = &f["properties"];
        // Few objects: annotations, by the auto rule.
        assert_eq!(p["objectType"], "annotation");
        assert_eq!(p["name"].as_str().unwrap(), row[0]);
        let m = &p["measurements"];
        let (area, perimeter) = area_and_perimeter(&f["geometry"]["coordinates"]);
        assert!(close(m["Area px^2"].as_f64().unwrap(), area), "{m} vs {area}");
        assert!(close(m["Perimeter px"].as_f64().unwrap(), perimeter), "{m} vs {perimeter}");
        // A PNG records no pixel size: no µm measurements, empty µm columns.
        assert!(m.get("Area µm^2").is_none() && row[6].is_empty());
        // The region's pixels (its polygon rasterised by the centre rule) and their probabilities.
        let inside = rasterise(&annotation.polygons, window, (1.0, 1.0));
        let values: Vec<f32> =
            inside.iter().zip(&probabilities).filter(|(&i, _)| i == 1).map(|(_, &p)| p).collect();
        assert!(!values.is_empty());
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        assert!(close(m["Probability mean"].as_f64().unwrap(), mean));
        assert_eq!(m["Probability max"].as_f64().unwrap(), max);
        assert!(mean > 0.5, "foreground pixels have a foreground probability above one half");
        assert!(close(column(row, "area_px"), area) && close(column(row, "probability_mean"), mean));
        assert_eq!(column(row, "probability_max"), max);
        let b = annotation.bounds;
        assert_eq!(
            [column(row, "min_x"), column(row, "min_y"), column(row, "max_x"), column(row, "max_y")],
            [b.min_x, b.min_y, b.max_x, b.max_y]
        );
        let (cx, cy) = (column(row, "centroid_x"), column(row, "centroid_y"));
        assert!(cx >= b.min_x && cx <= b.max_x && cy >= b.min_y && cy <= b.max_y);
    }

    // --min-object-area leaves out the smaller regions, from both files.
    let areas: Vec<f64> = rows.iter().map(|r| column(r, "area_px")).collect();
    let mut sorted = areas.clone();
    sorted.sort_by(f64::total_cmp);
    let cut = sorted[sorted.len() / 2];
    let args = [
        "--image",
        "a.png",
        "--output",
        "b.png",
        "--geojson",
        "b.geojson",
        "--objects-csv",
        "b.csv",
        "--tile",
        "32",
        "--min-object-area",
        &format!("{cut}px"),
        "--geojson-objects",
        "detection",
    ];
    ok(&predict(dir.path(), &args));
    let kept = std::fs::read_to_string(dir.path().join("b.csv")).unwrap().lines().count() - 1;
    assert_eq!(kept, areas.iter().filter(|&&a| a >= cut).count());
    let text = std::fs::read_to_string(dir.path().join("b.geojson")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["features"].as_array().unwrap().len(), kept);
    assert!(json["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["properties"]["objectType"] == "detection"));
    // Square microns need a pixel size, which a PNG has not.
    let out = predict(
        dir.path(),
        &["--image", "a.png", "--output", "c.png", "--geojson", "c.geojson", "--min-object-area", "5um2"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--min-object-area 5 µm² needs the image's pixel size"), "{stderr}");
}
