//! The tracer against the mask it traced: rasterised back by the centre rule, counted against an
//! independent flood fill, split into bands anywhere.

use super::geojson::parse;
use super::raster::rasterise;
use super::tests::Lcg;
use super::trace::{TracedRegion, Tracer};
use super::write::{FeatureStyle, FeatureWriter};
use crate::rect::Rect;

/// Traces `mask` pushed in bands of the given heights (cycled), checking the memory bound as it goes.
fn trace(mask: &[u8], w: usize, bands: &[usize]) -> Vec<TracedRegion> {
    let h = mask.len() / w;
    let mut tracer = Tracer::new(w);
    let mut out = Vec::new();
    let (mut y, mut i) = (0, 0);
    while y < h {
        let rows = bands[i % bands.len()].min(h - y);
        out.extend(tracer.push_rows(&mask[y * w..(y + rows) * w]));
        assert!(tracer.open_fragments() <= 2 * (w + 1), "open fragments bounded by the width");
        y += rows;
        i += 1;
    }
    out.extend(tracer.finish());
    assert_eq!(tracer.open_fragments(), 0);
    out
}

/// Labels of connected components by flood fill: 8-connected when `diagonal`, else 4-connected.
fn components(mask: &[u8], w: usize, value: u8, diagonal: bool) -> (Vec<usize>, usize) {
    let h = mask.len() / w;
    let mut label = vec![usize::MAX; mask.len()];
    let mut n = 0;
    for start in 0..mask.len() {
        if mask[start] != value || label[start] != usize::MAX {
            continue;
        }
        let mut stack = vec![start];
        label[start] = n;
        while let Some(p) = stack.pop() {
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)] {
                if !diagonal && dx != 0 && dy != 0 {
                    continue;
                }
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let q = (ny * w as i64 + nx) as usize;
                if mask[q] == value && label[q] == usize::MAX {
                    label[q] = n;
                    stack.push(q);
                }
            }
        }
        n += 1;
    }
    (label, n)
}

/// Background components (4-connected) that do not touch the border: the holes.
fn enclosed_background(mask: &[u8], w: usize) -> usize {
    let h = mask.len() / w;
    let (label, n) = components(mask, w, 0, false);
    let mut touches = vec![false; n];
    for (p, &l) in label.iter().enumerate() {
        if l != usize::MAX && (p % w == 0 || p % w == w - 1 || p / w == 0 || p / w == h - 1) {
            touches[l] = true;
        }
    }
    touches.iter().filter(|&&t| !t).count()
}

/// Checks every property of a tracing of `mask`; returns the regions.
fn check(mask: &[u8], w: usize, bands: &[usize]) -> Vec<TracedRegion> {
    let h = mask.len() / w;
    let regions = trace(mask, w, bands);
    let whole = Rect { left: 0, top: 0, width: w, height: h };
    let (label, count) = components(mask, w, 1, true);
    assert_eq!(regions.len(), count, "one region per 8-connected component");
    assert_eq!(regions.iter().map(|r| r.holes.len()).sum::<usize>(), enclosed_background(mask, w), "holes");
    let mut seen = vec![false; count];
    for r in &regions {
        for polygon in [r.edges((1.0, 1.0)), r.smoothed((1.0, 1.0))] {
            let pixels = rasterise([&polygon], whole, (1.0, 1.0));
            // Exactly one component's pixels.
            let first = pixels.iter().position(|&v| v == 1).expect("a region has pixels");
            let l = label[first];
            for (p, &v) in pixels.iter().enumerate() {
                assert_eq!(v == 1, label[p] == l, "region of component {l} at pixel {p}");
            }
            seen[l] = true;
        }
    }
    assert!(seen.iter().all(|&s| s));
    // All together, both forms.
    let edges: Vec<_> = regions.iter().map(|r| r.edges((1.0, 1.0))).collect();
    let smooth: Vec<_> = regions.iter().map(|r| r.smoothed((1.0, 1.0))).collect();
    assert_eq!(rasterise(&edges, whole, (1.0, 1.0)), mask);
    assert_eq!(rasterise(&smooth, whole, (1.0, 1.0)), mask);
    assert_eq!(
        regions.iter().map(|r| r.area()).sum::<i64>() as usize,
        mask.iter().filter(|&&v| v == 1).count()
    );
    regions
}

/// A ring rotated to start at its smallest point.
fn canonical(ring: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let start = ring.iter().enumerate().min_by_key(|&(_, p)| p).unwrap().0;
    let mut r = ring.to_vec();
    r.rotate_left(start);
    r
}

fn from_rows(rows: &[&str]) -> (Vec<u8>, usize) {
    (rows.iter().flat_map(|r| r.bytes().map(|b| u8::from(b == b'#'))).collect(), rows[0].len())
}

fn blobs(rng: &mut Lcg, w: usize, h: usize, noise: bool) -> Vec<u8> {
    let mut mask = vec![0u8; w * h];
    for _ in 0..(w * h / 300).max(3) {
        let (cx, cy) = (rng.unit() * w as f64, rng.unit() * h as f64);
        let r = 1.0 + rng.unit() * 9.0;
        let ring = rng.next().is_multiple_of(3);
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
                if d < r && !(ring && d < r * 0.5) {
                    mask[y * w + x] = 1;
                }
            }
        }
    }
    // Noise: single pixels, diagonal touches, holes of one pixel.
    for _ in 0..if noise { w * h / 40 } else { 0 } {
        let p = (rng.next() as usize) % (w * h);
        mask[p] ^= 1;
    }
    mask
}

#[test]
fn hand_shapes() {
    // A ring with a hole, a diagonal pair, a one-pixel region, pixels on every border.
    let (mask, w) = from_rows(&[
        ".....#....#",
        ".###......#",
        ".#.#..#....",
        ".###...#..#",
        "..........#",
        "#...#.#...#",
    ]);
    let regions = check(&mask, w, &[1]);
    assert_eq!(regions.len(), 8);
    let ring = regions.iter().find(|r| !r.holes.is_empty()).unwrap();
    // Clockwise on screen around the region, anticlockwise around the hole.
    assert_eq!(canonical(&ring.outer), [(1, 1), (4, 1), (4, 4), (1, 4)]);
    assert_eq!(canonical(&ring.holes[0]), [(2, 2), (2, 3), (3, 3), (3, 2)]);
    assert_eq!(ring.holes.len(), 1);
    assert_eq!(ring.area(), 8);
    let pair = regions.iter().find(|r| r.outer.contains(&(7, 3))).unwrap();
    // The two diagonal pixels, one ring through their shared corner twice.
    assert_eq!(pair.outer.len(), 8);
    assert_eq!(pair.area(), 2);
    let one = regions.iter().find(|r| r.outer.contains(&(5, 0))).unwrap();
    assert_eq!(canonical(&one.outer), [(5, 0), (6, 0), (6, 1), (5, 1)]);
    // The smoothed single pixel is the diamond through its edge midpoints, here at a level downsampled by 2.
    let mut diamond = one.smoothed((2.0, 2.0)).outer;
    let first = diamond.iter().position(|&p| p == (11.0, 0.0)).unwrap();
    diamond.rotate_left(first);
    assert_eq!(diamond, [(11.0, 0.0), (12.0, 1.0), (11.0, 2.0), (10.0, 1.0)]);
}

#[test]
fn checkerboards_and_full_images() {
    // Every grid point a saddle: one 8-connected region whose enclosed background pixels are holes.
    let (w, h) = (9, 7);
    let board: Vec<u8> = (0..w * h).map(|p| u8::from((p % w + p / w) % 2 == 0)).collect();
    let regions = check(&board, w, &[2, 3]);
    assert_eq!(regions.len(), 1);
    let inverse: Vec<u8> = board.iter().map(|&v| 1 - v).collect();
    check(&inverse, w, &[1]);
    check(&[1; 20], 5, &[4]);
    check(&[0; 20], 5, &[4]);
    check(&[1], 1, &[1]);
}

#[test]
fn random_blobs_in_any_bands() {
    let mut rng = Lcg(3);
    for case in 0..12 {
        let (w, h) = (20 + (rng.next() % 60) as usize, 10 + (rng.next() % 70) as usize);
        let mask = blobs(&mut rng, w, h, true);
        let bands: Vec<usize> = (0..5).map(|_| 1 + (rng.next() % 17) as usize).collect();
        let a = check(&mask, w, &bands);
        let b = trace(&mask, w, &[h]);
        let key = |r: &TracedRegion| (r.outer.iter().min().copied(), r.area());
        let (mut ka, mut kb): (Vec<_>, Vec<_>) = (a.iter().map(key).collect(), b.iter().map(key).collect());
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb, "case {case}: the bands do not change the regions");
    }
}

#[test]
fn regions_leave_as_soon_as_they_are_complete() {
    // Two blobs one above the other: the first is handed out before the second's rows arrive.
    let (mask, w) = from_rows(&[".##.", ".##.", "....", "#..#", "####"]);
    let mut tracer = Tracer::new(w);
    assert!(tracer.push_rows(&mask[..2 * w]).is_empty());
    let first = tracer.push_rows(&mask[2 * w..3 * w]);
    assert_eq!(first.len(), 1);
    assert_eq!(canonical(&first[0].outer), [(1, 0), (3, 0), (3, 2), (1, 2)]);
    assert!(tracer.push_rows(&mask[3 * w..]).is_empty());
    assert_eq!(tracer.open_regions(), 1);
    let last = tracer.finish();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].area(), 6);
}

#[test]
fn written_geojson_reads_back_as_the_mask_at_level_0() {
    let mut rng = Lcg(5);
    let (w, h) = (64, 48);
    let mask = blobs(&mut rng, w, h, false);
    let regions = trace(&mask, w, &[16]);
    let style = FeatureStyle {
        object_type: "annotation".into(),
        class: "foreground \"lumen\"".into(),
        color: [0, 200, 255],
    };
    // The mask of level 1 of a slide downsampled by 4: coordinates in level-0 pixels.
    let scale = (4.0, 4.0);
    let mut writer = FeatureWriter::new(Vec::new(), &style).unwrap();
    for r in &regions {
        writer.write(&r.smoothed(scale)).unwrap();
    }
    assert_eq!(writer.features(), regions.len());
    let bytes = writer.finish().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["type"], "FeatureCollection");
    let f = &json["features"][0];
    assert_eq!(f["properties"]["objectType"], "annotation");
    assert_eq!(f["properties"]["classification"]["name"], "foreground \"lumen\"");
    assert_eq!(f["properties"]["classification"]["color"], serde_json::json!([0, 200, 255]));
    let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
    assert_eq!(ring.first(), ring.last(), "closed rings");
    let annotations = parse(&text).unwrap();
    assert_eq!(annotations.items.len(), regions.len());
    annotations.check_within(4 * w as u64, 4 * h as u64).unwrap();
    let polygons: Vec<_> = annotations.items.iter().flat_map(|a| a.polygons.iter()).collect();
    let level = Rect { left: 0, top: 0, width: w, height: h };
    assert_eq!(rasterise(polygons.iter().copied(), level, scale), mask);
    // At level 0 the same polygons cover 4x4 pixels per mask pixel, but for the cut corners.
    let full = Rect { left: 0, top: 0, width: 4 * w, height: 4 * h };
    let big = rasterise(polygons.iter().copied(), full, (1.0, 1.0));
    let upsampled: Vec<u8> =
        (0..16 * w * h).map(|p| mask[(p / (4 * w) / 4) * w + (p % (4 * w)) / 4]).collect();
    let inter = big.iter().zip(&upsampled).filter(|&(&a, &b)| a == 1 && b == 1).count();
    let union = big.iter().zip(&upsampled).filter(|&(&a, &b)| a == 1 || b == 1).count();
    assert!(inter as f64 / union as f64 > 0.9, "IoU at level 0 {}", inter as f64 / union as f64);
}

#[test]
fn scores_are_summed_per_region_across_bands() {
    let mut rng = Lcg(9);
    for case in 0..6 {
        let (w, h) = (40 + case * 7, 33 + case * 5);
        let mask = blobs(&mut rng, w, h, case % 2 == 0);
        let scores: Vec<f32> = (0..w * h).map(|_| (rng.next() % 1000) as f32 / 999.0).collect();
        let (label, n) = components(&mask, w, 1, true);
        let mut expected = vec![(0u64, 0f64, f32::NEG_INFINITY); n];
        for (p, &l) in label.iter().enumerate() {
            if l != usize::MAX {
                let e = &mut expected[l];
                e.0 += 1;
                e.1 += scores[p] as f64;
                e.2 = e.2.max(scores[p]);
            }
        }
        // Pushed in bands of varying height; each region's pixel count is its area.
        let mut tracer = Tracer::new(w);
        let mut regions = Vec::new();
        let mut y = 0;
        while y < h {
            let rows = (1 + (rng.next() % 9) as usize).min(h - y);
            regions.extend(
                tracer.push_scored(&mask[y * w..(y + rows) * w], Some(&scores[y * w..(y + rows) * w])),
            );
            y += rows;
        }
        regions.extend(tracer.finish());
        assert_eq!(regions.len(), n);
        let mut got: Vec<(u64, i64, f32)> = regions
            .iter()
            .map(|r| (r.scores.pixels, (r.scores.sum * 1e6).round() as i64, r.scores.max))
            .collect();
        let mut want: Vec<(u64, i64, f32)> =
            expected.iter().map(|e| (e.0, (e.1 * 1e6).round() as i64, e.2)).collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got, want, "case {case}");
        for r in &regions {
            assert_eq!(r.scores.pixels as i64, r.area());
        }
    }
}

#[test]
fn objects_carry_their_name_and_measurements() {
    let style = FeatureStyle { object_type: "annotation".into(), class: "lumen".into(), color: [1, 2, 3] };
    let mut writer = FeatureWriter::new(Vec::new(), &style).unwrap();
    let square =
        super::Polygon { outer: vec![(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)], holes: vec![] };
    let measurements = [("Area px^2", 4.0), ("Probability mean", 0.75), ("Area µm^2", f64::NAN)];
    let object =
        super::write::ObjectProperties { object_type: "detection", name: "7", measurements: &measurements };
    writer.write_object(&square, &object).unwrap();
    writer.write(&square).unwrap();
    let text = String::from_utf8(writer.finish().unwrap()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = &json["features"][0]["properties"];
    assert_eq!(p["objectType"], "detection");
    assert_eq!(p["name"], "7");
    assert_eq!(p["classification"], serde_json::json!({"name": "lumen", "color": [1, 2, 3]}));
    let m = p["measurements"].as_object().unwrap();
    assert_eq!(m.len(), 2, "the NaN is left out: {m:?}");
    assert_eq!((m["Area px^2"].as_f64(), m["Probability mean"].as_f64()), (Some(4.0), Some(0.75)));
    assert_eq!(json["features"][1]["properties"]["objectType"], "annotation");
    assert_eq!(parse(&text).unwrap().items.len(), 2);
}
