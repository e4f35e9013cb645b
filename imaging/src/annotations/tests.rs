//! Tests of parsing, the centre rule and labels, against hand values and an independent point test.

use super::classes::{Labeller, Unannotated, BACKGROUND, FOREGROUND, UNLABELLED};
use super::geojson::parse;
use super::raster::rasterise;
use super::*;

/// A small deterministic generator (no dependency).
pub(crate) struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Ring {
    vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
}

fn window(width: u64, height: u64) -> Rect {
    Rect { left: 0, top: 0, width: width as usize, height: height as usize }
}

/// Winding number of a ring around a point, by signed crossings of the upward/downward edges: a
/// different computation from the even-odd scanline, equal to it for simple rings.
fn winding(ring: &[Point], (px, py): Point) -> i32 {
    let mut w = 0;
    for i in 0..ring.len() {
        let (x0, y0) = ring[i];
        let (x1, y1) = ring[(i + 1) % ring.len()];
        let side = (x1 - x0) * (py - y0) - (px - x0) * (y1 - y0);
        if y0 <= py && y1 > py && side > 0.0 {
            w += 1;
        } else if y1 <= py && y0 > py && side < 0.0 {
            w -= 1;
        }
    }
    w
}

fn reference(polygons: &[Polygon], window: Rect, scale: (f64, f64)) -> Vec<u8> {
    let mut out = Vec::new();
    for y in window.top..window.top + window.height {
        for x in window.left..window.left + window.width {
            let c = ((x as f64 + 0.5) * scale.0, (y as f64 + 0.5) * scale.1);
            let inside = polygons
                .iter()
                .any(|p| winding(&p.outer, c) != 0 && p.holes.iter().all(|h| winding(h, c) == 0));
            out.push(u8::from(inside));
        }
    }
    out
}

fn mask(rows: &[&str]) -> Vec<u8> {
    rows.iter().flat_map(|r| r.bytes().map(|b| u8::from(b == b'#'))).collect()
}

/// A star-shaped (hence simple) ring around a centre, radii at random in [r_min, r_max].
fn star(rng: &mut Lcg, cx: f64, cy: f64, r_min: f64, r_max: f64, n: usize) -> Ring {
    (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * (i as f64 + 0.8 * rng.unit()) / n as f64;
            let r = r_min + (r_max - r_min) * rng.unit();
            (cx + r * a.cos(), cy + r * a.sin())
        })
        .collect()
}

fn random_polygons(rng: &mut Lcg, count: usize, w: f64, h: f64) -> Vec<Polygon> {
    (0..count)
        .map(|_| {
            let (cx, cy) = (w * rng.unit(), h * rng.unit());
            let r = 3.0 + 12.0 * rng.unit();
            let n = 5 + (rng.next() % 20) as usize;
            let outer = star(rng, cx, cy, r * 0.6, r, n);
            // A hole well inside the outer ring's smallest radius.
            let holes = if rng.next().is_multiple_of(2) {
                vec![star(rng, cx, cy, r * 0.1, r * 0.4, 6)]
            } else {
                vec![]
            };
            Polygon { outer, holes }
        })
        .collect()
}

#[test]
fn half_pixel_square_holds_the_centres_from_its_left_and_top_edges() {
    // Centres at 0.5 and 1.5 are on or after the left edge 0.5 and before the right edge 2.5; the centre
    // at 2.5 lies on the right (bottom) edge and is outside.
    let p = Polygon { outer: square(0.5, 0.5, 2.5, 2.5), holes: vec![] };
    assert_eq!(rasterise([&p], window(4, 4), (1.0, 1.0)), mask(&["##..", "##..", "....", "...."]));
    // Integer corners: pixels 1..3.
    let p = Polygon { outer: square(1.0, 1.0, 3.0, 3.0), holes: vec![] };
    assert_eq!(rasterise([&p], window(4, 4), (1.0, 1.0)), mask(&["....", ".##.", ".##.", "...."]));
    // Two squares sharing the edge x = 2: every pixel once.
    let a = Polygon { outer: square(0.0, 0.0, 2.0, 4.0), holes: vec![] };
    let b = Polygon { outer: square(2.0, 0.0, 4.0, 4.0), holes: vec![] };
    let (ma, mb) = (rasterise([&a], window(4, 4), (1.0, 1.0)), rasterise([&b], window(4, 4), (1.0, 1.0)));
    assert!(ma.iter().zip(&mb).all(|(x, y)| x + y == 1));
    // Clockwise or counter-clockwise makes no difference.
    let mut reversed = square(0.5, 0.5, 2.5, 2.5);
    reversed.reverse();
    let p = Polygon { outer: reversed, holes: vec![] };
    assert_eq!(rasterise([&p], window(4, 4), (1.0, 1.0)), mask(&["##..", "##..", "....", "...."]));
}

#[test]
fn holes_are_cut_out() {
    let p = Polygon {
        outer: square(0.0, 0.0, 6.0, 5.0),
        holes: vec![square(1.0, 1.0, 3.0, 3.0), square(2.0, 2.0, 5.0, 4.0)],
    };
    let expected = mask(&["######", "#..###", "#....#", "##...#", "######"]);
    assert_eq!(rasterise([&p], window(6, 5), (1.0, 1.0)), expected);
    assert_eq!(reference(&[p], window(6, 5), (1.0, 1.0)), expected);
}

#[test]
fn a_ring_touching_itself_and_repeating_points_is_both_squares() {
    // Two squares meeting at the vertex (4, 4), traced as one ring that passes (4, 4) twice, with a
    // repeated point.
    let ring = vec![
        (0.0, 0.0),
        (4.0, 0.0),
        (4.0, 4.0),
        (8.0, 4.0),
        (8.0, 8.0),
        (8.0, 8.0),
        (4.0, 8.0),
        (4.0, 4.0),
        (0.0, 4.0),
        (0.0, 0.0),
    ];
    let p = Polygon { outer: ring, holes: vec![] };
    let got = rasterise([&p], window(8, 8), (1.0, 1.0));
    let expected: Vec<u8> = (0..64).map(|i| u8::from((i % 8 < 4) == (i / 8 < 4))).collect();
    assert_eq!(got, expected);
}

#[test]
fn windows_equal_the_whole_image_and_the_reference() {
    let mut rng = Lcg(7);
    let (w, h) = (57u64, 43u64);
    let polygons = random_polygons(&mut rng, 12, w as f64, h as f64);
    let whole = rasterise(&polygons, window(w, h), (1.0, 1.0));
    assert_eq!(whole, reference(&polygons, window(w, h), (1.0, 1.0)));
    assert!(whole.iter().filter(|&&v| v == 1).count() > 300, "the test draws something");
    for _ in 0..40 {
        let left = rng.next() % w;
        let top = rng.next() % h;
        let (width, height) = (1 + rng.next() % (w - left), 1 + rng.next() % (h - top));
        let win =
            Rect { left: left as usize, top: top as usize, width: width as usize, height: height as usize };
        let part = rasterise(&polygons, win, (1.0, 1.0));
        for r in 0..win.height {
            for c in 0..win.width {
                let whole_at = whole[(win.top + r) * w as usize + win.left + c];
                assert_eq!(part[r * win.width + c], whole_at, "window {win:?} at {r},{c}");
            }
        }
    }
}

#[test]
fn levels_scale_the_centres() {
    // At a level downsampled by 2, level pixel i has its centre at level-0 2i + 1.
    let p = Polygon { outer: square(0.0, 0.0, 7.0, 8.0), holes: vec![] };
    // Columns: centres 1, 3, 5 are < 7, 7 is not; rows: centres 1, 3, 5, 7 are < 8.
    assert_eq!(
        rasterise([&p], window(5, 5), (2.0, 2.0)),
        mask(&["###..", "###..", "###..", "###..", "....."])
    );
    let mut rng = Lcg(11);
    let polygons = random_polygons(&mut rng, 10, 120.0, 90.0);
    for scale in [(2.0, 2.0), (4.0, 4.0), (3.0, 2.5), (1.5, 1.5)] {
        let win = window((120.0 / scale.0) as u64, (90.0 / scale.1) as u64);
        assert_eq!(rasterise(&polygons, win, scale), reference(&polygons, win, scale), "scale {scale:?}");
        let part = Rect { left: 3, top: 5, width: win.width - 7, height: win.height - 9 };
        assert_eq!(rasterise(&polygons, part, scale), reference(&polygons, part, scale), "scale {scale:?}");
    }
}

const QUPATH: &str = r#"{
  "type": "FeatureCollection",
  "features": [
    {"type": "Feature", "id": "2f0c", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]]},
     "properties": {"objectType": "annotation", "isLocked": false, "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
    {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[[[20, 0], [22, 0], [22, 2], [20, 2], [20, 0]]], [[[30, 0], [31, 0], [31, 1], [30, 0]]]]},
     "properties": {"objectType": "detection"}},
    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {"objectType": "annotation"}},
    {"type": "Feature", "geometry": {"type": "GeometryCollection", "geometries": [{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, {"type": "Polygon", "coordinates": [[[40, 0], [41, 0], [41, 1, 0], [40, 1]]]}]},
     "properties": {"object_type": "annotation", "classification": {"names": ["Tumor", "Positive"], "colorRGB": -3670016}}}
  ]
}"#;

#[test]
fn qupath_export_parses() {
    let a = parse(QUPATH).unwrap();
    assert_eq!(a.skipped, 1);
    assert_eq!(a.items.len(), 3);
    assert_eq!(a.items[0].class.as_deref(), Some("Tumor"));
    assert_eq!(a.items[0].object_type.as_deref(), Some("annotation"));
    assert_eq!(a.items[0].polygons[0].holes.len(), 1);
    assert_eq!(a.items[0].bounds, Bounds { min_x: 0.0, min_y: 0.0, max_x: 10.0, max_y: 10.0 });
    assert_eq!(a.items[1].class, None);
    assert_eq!(a.items[1].polygons.len(), 2);
    assert_eq!(a.items[1].index, 1);
    assert_eq!(a.items[2].class.as_deref(), Some("Tumor: Positive"));
    assert_eq!(a.items[2].object_type.as_deref(), Some("annotation"));
    assert_eq!(a.items[2].polygons[0].outer[2], (41.0, 1.0));
    assert_eq!(a.items[2].index, 3);
    assert_eq!(a.class_names(), [None, Some("Tumor".to_owned()), Some("Tumor: Positive".to_owned())]);
    // Older exports: an array of features, or one feature.
    let v: serde_json::Value = serde_json::from_str(QUPATH).unwrap();
    let array = serde_json::to_string(&v["features"]).unwrap();
    assert_eq!(parse(&array).unwrap(), a);
    let one = parse(&serde_json::to_string(&v["features"][0]).unwrap()).unwrap();
    assert_eq!(one.items, a.items[..1]);
    // Drawn: the square less its hole.
    let m = rasterise(&a.items[0].polygons, window(10, 10), (1.0, 1.0));
    assert_eq!(m.iter().filter(|&&v| v == 1).count(), 96);
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn bad_files_get_one_clear_line() {
    assert!(error("{\"type\": \"Polygon\", \"coordinates\": []}")
        .starts_with("is a GeoJSON \"Polygon\", not a GeoJSON FeatureCollection"));
    assert!(error("42").starts_with("is a JSON number, not a GeoJSON FeatureCollection"));
    assert!(error("{\"features\": []}").starts_with("is an object without a \"type\""));
    assert!(error("{\"type\": \"FeatureCollection\"}").contains("without a \"features\" array"));
    assert!(error("[1").starts_with("not valid JSON"));
    let feature = |geometry: &str| {
        format!("{{\"type\": \"FeatureCollection\", \"features\": [{{\"type\": \"Feature\", \"geometry\": {geometry}, \"properties\": {{\"classification\": {{\"name\": \"Tumor\"}}}}}}]}}")
    };
    let e = error(&feature(r#"{"type": "Polygon", "coordinates": [[[0, 0], ["1", 0], [1, 1]]]}"#));
    assert!(
        e.starts_with(
            "feature 0 (class \"Tumor\"): its Polygon has the coordinate \"1\", which is not a number"
        ),
        "{e}"
    );
    let e = error(&feature(r#"{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 0], [0, 0]]]}"#));
    assert!(e.starts_with("feature 0 (class \"Tumor\"): ring 0 of polygon 0 has 2 distinct point(s)"), "{e}");
    let e = error(&feature(
        r#"{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1]]], [[[0, 0], [4, 0], [4, 4]], [[1, 1], [1, 1]]]]}"#,
    ));
    assert!(e.contains("ring 1 of polygon 1 has 1 distinct point(s)"), "{e}");
    let e = error(&feature(r#"{"type": "Polygon", "coordinates": [[[0], [1, 0], [1, 1]]]}"#));
    assert!(e.contains("a position with 1 number(s)"), "{e}");
    let e = error(&feature(r#"{"type": "Polygon", "coordinates": [[0, 0], [1, 0], [1, 1]]}"#));
    assert!(e.contains("hold a JSON number where a position [x, y] should be"), "{e}");
    let e = error(&feature(r#"{"type": "Circle", "coordinates": []}"#));
    assert!(e.contains("\"Circle\" is not a GeoJSON geometry"), "{e}");
    let e = error(r#"[{"type": "Polygon"}]"#);
    assert!(e.starts_with("feature 0 (unclassified): has no \"type\": \"Feature\""), "{e}");
    for e in [error("{}"), error(&feature("{\"type\": \"Polygon\", \"coordinates\": [[[0, 0], [1, 0]]]}"))] {
        assert!(!e.contains('\n'));
    }
    // A ring that repeats a point and touches itself is accepted.
    let ok = feature(
        r#"{"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [4, 4], [8, 4], [8, 8], [4, 8], [4, 4], [0, 4], [0, 0]]]}"#,
    );
    assert_eq!(parse(&ok).unwrap().items.len(), 1);
}

#[test]
fn points_outside_the_slide_are_named() {
    let a = parse(QUPATH).unwrap();
    assert!(a.check_within(41, 10).is_ok());
    let e = a.check_within(40, 10).unwrap_err().to_string();
    assert_eq!(e, "feature 3 (class \"Tumor: Positive\") has the point (41, 0), outside the image's 40x10 level-0 pixels; were the annotations exported from another image?");
}

#[test]
fn labels_foreground_wins_and_unannotated_follows_the_flag() {
    let text = r#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [7, 1], [7, 5], [1, 5], [1, 1]]]}, "properties": {"classification": {"name": "Stroma"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[3, 2], [5, 2], [5, 4], [3, 4], [3, 2]]]}, "properties": {"classification": {"name": "Tumor"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[6, 0], [8, 0], [8, 2], [6, 2], [6, 0]]]}, "properties": {}}]}"#;
    let a = parse(text).unwrap();
    let labeller = Labeller::new(&a, &["Tumor".to_owned()], Unannotated::Unlabelled).unwrap();
    let mut out = vec![9u8; 8 * 6];
    labeller.fill(window(8, 6), (1.0, 1.0), &mut out);
    let (u, b, f) = (UNLABELLED, BACKGROUND, FOREGROUND);
    #[rustfmt::skip]
    let expected = [
        u, u, u, u, u, u, b, b,
        u, b, b, b, b, b, b, b,
        u, b, b, f, f, b, b, u,
        u, b, b, f, f, b, b, u,
        u, b, b, b, b, b, b, u,
        u, u, u, u, u, u, u, u,
    ];
    assert_eq!(out, expected);
    // A window of it.
    let mut part = vec![9u8; 3 * 2];
    labeller.fill(Rect { left: 2, top: 2, width: 3, height: 2 }, (1.0, 1.0), &mut part);
    assert_eq!(part, [b, f, f, b, f, f]);
    let labeller = Labeller::new(&a, &["Tumor".to_owned()], Unannotated::Background).unwrap();
    labeller.fill(window(8, 6), (1.0, 1.0), &mut out);
    assert_eq!(out, expected.map(|v| if v == u { b } else { v }));
    // Boxes at level 0 and at a level downsampled by 2 (centres 1, 3, 5, ...).
    assert_eq!(
        labeller.boxes((1.0, 1.0), 8, 6),
        [
            Rect { left: 3, top: 2, width: 2, height: 2 },
            Rect { left: 1, top: 1, width: 6, height: 4 },
            Rect { left: 6, top: 0, width: 2, height: 2 }
        ]
    );
    assert_eq!(labeller.boxes((2.0, 2.0), 4, 3)[0], Rect { left: 1, top: 1, width: 1, height: 1 });
    let e = Labeller::new(&a, &["Tumour".to_owned()], Unannotated::Unlabelled).unwrap_err().to_string();
    assert_eq!(e, "no annotation has a foreground class (\"Tumour\"); the file's classes are unclassified, \"Stroma\", \"Tumor\"; pass --foreground-class with one of them");
}

#[test]
fn several_classes_label_by_index_and_ignore_unclassified_and_ignore_star() {
    let text = r#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [7, 1], [7, 5], [1, 5], [1, 1]]]}, "properties": {"classification": {"name": "Stroma"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[3, 2], [5, 2], [5, 4], [3, 4], [3, 2]]]}, "properties": {"classification": {"name": "Tumor"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 4], [2, 4], [2, 6], [0, 6], [0, 4]]]}, "properties": {"classification": {"name": "Necrosis"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[5, 3], [8, 3], [8, 6], [5, 6], [5, 3]]]}, "properties": {"classification": {"name": "Ignore*"}}},
      {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[6, 0], [8, 0], [8, 2], [6, 2], [6, 0]]]}, "properties": {}}]}"#;
    let a = parse(text).unwrap();
    let classes: Vec<String> = ["Stroma", "Tumor", "Necrosis"].map(String::from).to_vec();
    let labeller = Labeller::with_classes(&a, &classes, Unannotated::Unlabelled).unwrap();
    let mut out = vec![9u8; 8 * 6];
    labeller.fill(window(8, 6), (1.0, 1.0), &mut out);
    let u = UNLABELLED;
    #[rustfmt::skip]
    let expected = [
        u, u, u, u, u, u, u, u,
        u, 0, 0, 0, 0, 0, 0, u,
        u, 0, 0, 1, 1, 0, 0, u,
        u, 0, 0, 1, 1, 0, 0, u,
        2, 2, 0, 0, 0, 0, 0, u,
        2, 2, u, u, u, u, u, u,
    ];
    assert_eq!(out, expected);
    // A class neither listed nor ignored is refused, naming it; none of the listed classes is refused.
    let two: Vec<String> = ["Stroma", "Tumor"].map(String::from).to_vec();
    let e = Labeller::with_classes(&a, &two, Unannotated::Unlabelled).unwrap_err().to_string();
    assert!(e.contains("\"Necrosis\"") && e.contains("--class"), "{e}");
    let none: Vec<String> = ["Stroma", "Tumor", "Necrosis", "Other"].map(String::from).to_vec();
    assert!(Labeller::with_classes(&a, &none, Unannotated::Unlabelled).is_ok());
}

#[test]
fn labels_of_many_annotations_equal_one_rasterisation_per_class() {
    // Many small annotations over a large level-0 area, read at level 1 in windows: the box prefilter must
    // not change a label.
    let mut rng = Lcg(19);
    let mut features = Vec::new();
    for i in 0..60 {
        let (x, y) = (rng.unit() * 380.0, rng.unit() * 280.0);
        let s = 4.0 + rng.unit() * 30.0;
        let class = if i % 3 == 0 { "\"Tumor\"" } else { "\"Stroma\"" };
        features.push(format!(
            r#"{{"type": "Feature", "geometry": {{"type": "Polygon", "coordinates": [[[{x}, {y}], [{}, {y}], [{}, {}], [{x}, {}]]]}}, "properties": {{"classification": {{"name": {class}}}}}}}"#,
            x + s,
            x + s * 0.7,
            y + s,
            y + s * 0.8
        ));
    }
    let text = format!(r#"{{"type": "FeatureCollection", "features": [{}]}}"#, features.join(","));
    let a = parse(&text).unwrap();
    let labeller = Labeller::new(&a, &["Tumor".to_owned()], Unannotated::Unlabelled).unwrap();
    let scale = (2.0, 2.0);
    let polygons = |class: &str| -> Vec<Polygon> {
        a.items
            .iter()
            .filter(|x| x.class.as_deref() == Some(class))
            .flat_map(|x| x.polygons.clone())
            .collect()
    };
    let (fg, bg) = (polygons("Tumor"), polygons("Stroma"));
    for _ in 0..20 {
        let win = Rect {
            left: (rng.next() % 150) as usize,
            top: (rng.next() % 100) as usize,
            width: (1 + rng.next() % 50) as usize,
            height: (1 + rng.next() % 50) as usize,
        };
        let mut out = vec![0u8; win.area()];
        labeller.fill(win, scale, &mut out);
        let (f, b) = (rasterise(&fg, win, scale), rasterise(&bg, win, scale));
        let expected: Vec<u8> = f
            .iter()
            .zip(&b)
            .map(|(&f, &b)| {
                if f == 1 {
                    FOREGROUND
                } else if b == 1 {
                    BACKGROUND
                } else {
                    UNLABELLED
                }
            })
            .collect();
        assert_eq!(out, expected, "window {win:?}");
    }
}
