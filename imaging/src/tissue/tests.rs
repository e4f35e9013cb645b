//! The scope of a prediction against brute force: which pixels are inside, which windows are predicted,
//! and that every pixel inside lies in a predicted window's kept part.

use super::map::{Roi, Scope};
use super::{Mask, TissueMap};
use crate::annotations::raster::rasterise;
use crate::annotations::Polygon;
use crate::rect::Rect;
use crate::tiles::Tiling;

fn random_mask(w: usize, h: usize, seed: u64, one_in: u64) -> Mask {
    let mut state = seed;
    let data = (0..w * h)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33).is_multiple_of(one_in)
        })
        .collect();
    Mask { width: w, height: h, data }
}

/// The scope's pixels, row by row, over an image of `w` x `h`.
fn pixels(scope: &Scope, w: usize, h: usize) -> Vec<u8> {
    scope.rows(0, h, w)
}

#[test]
fn a_stretched_mask_holds_each_pixel_by_its_centre() {
    // 10 image columns over 4 mask columns: 2.5 image pixels each; centres 0.5..9.5, a centre on a
    // boundary (2.5, 7.5) belongs to the mask pixel on its right.
    let map = TissueMap::stretched(Mask::filled(4, 1, false), 10, 1);
    let columns: Vec<usize> = (0..10).map(|x| map.column(x)).collect();
    assert_eq!(columns, [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]);
    // A reduction by 4 of an image of 10: the last mask pixel holds the last two image pixels.
    let map = TissueMap::scaled(Mask::filled(3, 1, false), (4.0, 4.0), 10, 1);
    let columns: Vec<usize> = (0..10).map(|x| map.column(x)).collect();
    assert_eq!(columns, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
}

#[test]
fn touches_and_fraction_equal_the_pixels_inside() {
    for (seed, (mw, mh), (w, h)) in [(1, (7, 5), (45, 31)), (2, (13, 9), (20, 14)), (3, (3, 4), (100, 7))] {
        let map = TissueMap::stretched(random_mask(mw, mh, seed, 5), w, h);
        let scope = Scope { maps: vec![map.clone()], roi: None };
        let inside = pixels(&scope, w, h);
        let count = inside.iter().filter(|&&v| v == 1).count();
        assert!((map.fraction() - count as f64 / (w * h) as f64).abs() < 1e-12);
        for (x, y, rw, rh) in
            [(0, 0, w, h), (3, 2, 5, 4), (10, 5, 1, 1), (w - 3, h - 2, 10, 10), (7, 0, 9, 3)]
        {
            let any = (y..(y + rh).min(h)).any(|yy| (x..(x + rw).min(w)).any(|xx| inside[yy * w + xx] == 1));
            assert_eq!(map.touches(x, y, rw, rh), any, "seed {seed} rect {x},{y} {rw}x{rh}");
        }
    }
}

/// Checks the plan restricted to `scope` on an image of `w` x `h`: every pixel inside is kept by a
/// window of it; with `exact`, every window of it has a pixel inside.
fn check_plan(scope: &Scope, w: usize, h: usize, tile: usize, exact: bool) -> (usize, usize) {
    let full = Tiling::default().plan(h, w, tile).unwrap();
    let plan = scope.plan(&full);
    let inside = pixels(scope, w, h);
    let mut kept = vec![false; w * h];
    for pass in &plan.passes {
        assert!(!pass.tiles.is_empty());
        assert!(pass.pixels() <= Tiling::default().budget);
        for t in &pass.tiles {
            assert_eq!((t.window.height, t.window.width), (pass.height, pass.width));
            let mut any = false;
            for y in t.keep.top..(t.keep.top + t.keep.height).min(h) {
                for x in t.keep.left..(t.keep.left + t.keep.width).min(w) {
                    kept[y * w + x] = true;
                    any |= inside[y * w + x] == 1;
                }
            }
            assert!(!exact || any, "window {t:?} has no pixel inside");
        }
    }
    for (i, &v) in inside.iter().enumerate() {
        assert!(v == 0 || kept[i], "pixel ({}, {}) inside but not predicted", i % w, i / w);
    }
    // Bands keep their rows and order; their passes stay in order and within the band.
    assert_eq!(plan.bands.len(), full.bands.len());
    let mut next = 0;
    for (b, f) in plan.bands.iter().zip(&full.bands) {
        assert_eq!((b.window_y, b.keep_y, b.keep_height), (f.window_y, f.keep_y, f.keep_height));
        assert_eq!(b.passes.start, next);
        next = b.passes.end;
        for p in &plan.passes[b.passes.clone()] {
            assert!(p.tiles.iter().all(|t| t.window.top == b.window_y));
        }
    }
    assert_eq!(next, plan.passes.len());
    (plan.tile_count(), full.tile_count())
}

#[test]
fn the_plan_keeps_exactly_the_windows_touching_the_masks() {
    let (w, h) = (700, 530);
    let sparse = TissueMap::stretched(random_mask(22, 17, 4, 9), w, h);
    let (kept, all) = check_plan(&Scope { maps: vec![sparse.clone()], roi: None }, w, h, 64, true);
    assert!(kept < all, "{kept} of {all}");
    // Two masks: the intersection; windows touching both (a superset of those touching the intersection).
    let user = TissueMap::stretched(random_mask(5, 4, 9, 2), w, h);
    check_plan(&Scope { maps: vec![sparse, user], roi: None }, w, h, 64, false);
    // Empty and full masks.
    let (kept, _) = check_plan(
        &Scope { maps: vec![TissueMap::stretched(Mask::filled(3, 3, false), w, h)], roi: None },
        w,
        h,
        64,
        true,
    );
    assert_eq!(kept, 0);
    let (kept, all) = check_plan(
        &Scope { maps: vec![TissueMap::stretched(Mask::filled(3, 3, true), w, h)], roi: None },
        w,
        h,
        64,
        true,
    );
    assert_eq!(kept, all);
}

#[test]
fn regrouped_passes_are_full_and_fewer() {
    let (w, h) = (1000, 300);
    // Every other column of windows inside: half the windows, in about half the passes.
    let mut mask = Mask::filled(1000 / 50, 1, false);
    for c in (0..mask.width).step_by(2) {
        mask.data[c] = true;
    }
    let scope = Scope { maps: vec![TissueMap::stretched(mask, w, h)], roi: None };
    let full = Tiling::default().plan(h, w, 32).unwrap();
    let plan = scope.plan(&full);
    assert!(plan.tile_count() < full.tile_count());
    assert!(plan.passes.len() < full.passes.len(), "{} passes of {}", plan.passes.len(), full.passes.len());
}

fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon {
    Polygon { outer: vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)], holes: vec![] }
}

#[test]
fn annotated_polygons_bound_the_pixels_by_the_centre_rule() {
    let (w, h) = (300, 200);
    // At a level of downsample 2: the polygons are in level-0 coordinates.
    let thin = Polygon { outer: vec![(10.0, 10.0), (590.0, 380.0), (588.0, 384.0)], holes: vec![] };
    let mut donut = square(100.0, 20.0, 300.0, 200.0);
    donut.holes.push(vec![(150.0, 60.0), (250.0, 60.0), (250.0, 160.0), (150.0, 160.0)]);
    let polygons = vec![thin, donut];
    let roi = Roi::new(polygons.clone(), (2.0, 2.0), w, h);
    let scope = Scope { maps: vec![], roi: Some(roi) };
    let expected = rasterise(&polygons, Rect { left: 0, top: 0, width: w, height: h }, (2.0, 2.0));
    assert_eq!(pixels(&scope, w, h), expected);
    assert!(expected.contains(&1));
    // Rows in two pieces give the same pixels.
    let mut pieces = scope.rows(0, 77, w);
    pieces.extend(scope.rows(77, h - 77, w));
    assert_eq!(pieces, expected);
    check_plan(&scope, w, h, 32, false);
    // With a mask too: the intersection.
    let map = TissueMap::stretched(random_mask(6, 4, 5, 2), w, h);
    let both = Scope { maps: vec![map.clone()], roi: scope.roi.clone() };
    let with_map = pixels(&Scope { maps: vec![map], roi: None }, w, h);
    let and: Vec<u8> = expected.iter().zip(&with_map).map(|(a, b)| a & b).collect();
    assert_eq!(pixels(&both, w, h), and);
    check_plan(&both, w, h, 32, false);
}
