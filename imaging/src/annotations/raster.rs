//! Polygons to pixels by the centre rule, one window of one level at a time (never a full-size mask).
//!
//! The rule. A level pixel (x, y) at a level whose pixel is `scale = (sx, sy)` level-0 pixels wide and high
//! has its centre at level-0 `((x + 0.5) * sx, (y + 0.5) * sy)`; the pixel belongs to a polygon when that
//! centre is inside the polygon. A point is inside a polygon when it is inside its outer ring and inside
//! none of its holes; inside a ring is the even-odd rule (an odd number of the ring's edges cross the
//! horizontal ray from the point to the left, the point included), which for the simple rings QuPath draws
//! is the ring's interior, and for rings that repeat a point or touch themselves at a vertex (traced
//! contours) is the same. Self-overlapping rings, which QuPath does not write, get the even-odd reading.
//!
//! Points on an edge: an edge counts for the rows whose centre y satisfies `min(y0, y1) <= y < max(y0, y1)`
//! (horizontal edges never count), and a crossing at x counts for the centres with `x <= centre x`. So a
//! centre on a left or top edge is inside and one on a right or bottom edge is outside: an axis-aligned
//! rectangle from `a` to `b` holds exactly the centres `c` with `a <= c < b`, and two polygons that share an
//! edge never both hold a pixel. The square from (0.5, 0.5) to (2.5, 2.5) holds pixels 0 and 1 of each axis.
//!
//! Cost: the edges of a polygon whose box meets the window are kept once per window; then each row takes
//! O(edges) plus sorting its crossings.

use super::{Bounds, Polygon};
use crate::rect::Rect;

/// The level-0 coordinate of the centre of level pixel `i` along an axis of scale `s`.
pub fn centre(i: u64, s: f64) -> f64 {
    (i as f64 + 0.5) * s
}

/// The smallest pixel index in `0..=limit` whose centre is at or after `v` (`limit` when none).
fn first_at_or_after(v: f64, s: f64, limit: u64) -> u64 {
    let guess = (v / s - 0.5).ceil();
    let mut i = if guess.is_nan() || guess <= 0.0 {
        0
    } else if guess >= limit as f64 {
        limit
    } else {
        guess as u64
    };
    // The division may round either way: settle on the exact rule.
    while i < limit && centre(i, s) < v {
        i += 1;
    }
    while i > 0 && centre(i - 1, s) >= v {
        i -= 1;
    }
    i
}

/// The pixel indices `i0..i1` (within `0..limit`) whose centres `c` satisfy `min <= c < max`; `None` when
/// there are none.
pub(crate) fn centre_range(min: f64, max: f64, s: f64, limit: u64) -> Option<(u64, u64)> {
    let i0 = first_at_or_after(min, s, limit);
    let i1 = first_at_or_after(max, s, limit);
    (i0 < i1).then_some((i0, i1))
}

/// An edge kept for a window.
#[derive(Clone, Copy)]
struct Edge {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Edge {
    /// Where the edge crosses the horizontal line at `y`, if it counts for it.
    fn crossing(&self, y: f64) -> Option<f64> {
        ((self.y0 <= y) != (self.y1 <= y))
            .then(|| self.x0 + (y - self.y0) * (self.x1 - self.x0) / (self.y1 - self.y0))
    }
}

/// The edges of a ring that can cross a row centre between `y_min` and `y_max` (level 0).
fn ring_edges(ring: &[(f64, f64)], y_min: f64, y_max: f64, out: &mut Vec<Edge>) {
    out.clear();
    for (i, &(x0, y0)) in ring.iter().enumerate() {
        let (x1, y1) = ring[(i + 1) % ring.len()];
        if y0 == y1 || y0.max(y1) < y_min || y0.min(y1) > y_max {
            continue;
        }
        out.push(Edge { x0, y0, x1, y1 });
    }
}

/// The pixel ranges (window columns) of one row inside a ring: crossings paired left to right.
fn ring_spans(edges: &[Edge], y: f64, window: Rect, sx: f64, xs: &mut Vec<f64>, out: &mut Vec<(u64, u64)>) {
    xs.clear();
    xs.extend(edges.iter().filter_map(|e| e.crossing(y)));
    xs.sort_unstable_by(f64::total_cmp);
    let (left, right) = (window.left as u64, window.right() as u64);
    for pair in xs.chunks_exact(2) {
        let a = first_at_or_after(pair[0], sx, right).max(left);
        let b = first_at_or_after(pair[1], sx, right).max(left);
        if a < b {
            out.push((a - left, b - left));
        }
    }
}

/// Reusable buffers of [`spans`].
#[derive(Default)]
pub struct Scratch {
    outer: Vec<Edge>,
    holes: Vec<Vec<Edge>>,
    xs: Vec<f64>,
    inside: Vec<(u64, u64)>,
    cut: Vec<(u64, u64)>,
    left: Vec<(u64, u64)>,
}

/// Calls `f(row, start, end)` for every run of pixels of `window` (row and columns relative to it,
/// `start..end`) inside `polygon` by the centre rule at a level of pixel size `scale` (level-0 pixels).
/// Runs of one row are disjoint and in order.
pub fn spans(
    polygon: &Polygon,
    window: Rect,
    scale: (f64, f64),
    scratch: &mut Scratch,
    mut f: impl FnMut(u64, u64, u64),
) {
    let (sx, sy) = scale;
    let b: Bounds = polygon.bounds();
    let (top, left) = (window.top as u64, window.left as u64);
    let Some((r0, r1)) = centre_range(b.min_y, b.max_y, sy, window.bottom() as u64) else { return };
    let Some((c0, c1)) = centre_range(b.min_x, b.max_x, sx, window.right() as u64) else { return };
    let (r0, r1) = (r0.max(top), r1);
    if r0 >= r1 || c1 <= left || c0 >= c1 {
        return;
    }
    let (y_min, y_max) = (centre(r0, sy), centre(r1 - 1, sy));
    ring_edges(&polygon.outer, y_min, y_max, &mut scratch.outer);
    scratch.holes.resize_with(polygon.holes.len(), Vec::new);
    for (hole, edges) in polygon.holes.iter().zip(scratch.holes.iter_mut()) {
        ring_edges(hole, y_min, y_max, edges);
    }
    for row in r0..r1 {
        let y = centre(row, sy);
        scratch.inside.clear();
        ring_spans(&scratch.outer, y, window, sx, &mut scratch.xs, &mut scratch.inside);
        if scratch.inside.is_empty() {
            continue;
        }
        scratch.cut.clear();
        for edges in &scratch.holes {
            ring_spans(edges, y, window, sx, &mut scratch.xs, &mut scratch.cut);
        }
        let wrow = row - top;
        if scratch.cut.is_empty() {
            for &(a, b) in &scratch.inside {
                f(wrow, a, b);
            }
            continue;
        }
        subtract(&scratch.inside, &mut scratch.cut, &mut scratch.left);
        for &(a, b) in &scratch.left {
            f(wrow, a, b);
        }
    }
}

/// `out` = the sorted disjoint ranges `keep` less the union of `cut` (any order, may overlap).
fn subtract(keep: &[(u64, u64)], cut: &mut [(u64, u64)], out: &mut Vec<(u64, u64)>) {
    out.clear();
    cut.sort_unstable();
    for &(a, b) in keep {
        let mut start = a;
        for &(c, d) in cut.iter() {
            if d <= start {
                continue;
            }
            if c >= b {
                break;
            }
            if c > start {
                out.push((start, c));
            }
            start = start.max(d);
            if start >= b {
                break;
            }
        }
        if start < b {
            out.push((start, b));
        }
    }
}

/// Sets `value` in `out` (the window's pixels, row by row, `window.width` per row) for every pixel of
/// `window` inside `polygon`.
pub fn paint(
    polygon: &Polygon,
    window: Rect,
    scale: (f64, f64),
    scratch: &mut Scratch,
    out: &mut [u8],
    value: u8,
) {
    let w = window.width;
    spans(polygon, window, scale, scratch, |row, a, b| {
        let start = row as usize * w;
        out[start + a as usize..start + b as usize].fill(value);
    });
}

/// The window's pixels inside any of `polygons` (1) or not (0), row by row.
pub fn rasterise<'a>(
    polygons: impl IntoIterator<Item = &'a Polygon>,
    window: Rect,
    scale: (f64, f64),
) -> Vec<u8> {
    let mut out = vec![0u8; window.area()];
    let mut scratch = Scratch::default();
    for p in polygons {
        paint(p, window, scale, &mut scratch, &mut out, 1);
    }
    out
}
