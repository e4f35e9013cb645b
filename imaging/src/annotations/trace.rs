//! A mask, row by row, into polygons: one per connected region of foreground, its outer ring and its holes,
//! in bounded memory (the state is O(width) plus the regions still open).
//!
//! Connectivity: foreground regions are 8-connected (pixels that touch at a corner are one region), so
//! background is 4-connected and every hole is a 4-connected piece of background enclosed by one region.
//! Each region gives one [`TracedRegion`]: the ring between it and the background around it (the outer
//! ring) and one ring per hole. Islands inside a hole are regions of their own.
//!
//! How: the boundary between foreground and background is a set of unit edges on the pixel grid, directed
//! with the foreground on the right when y grows downwards (clockwise on screen for a region, so outer
//! rings have a positive shoelace sum in (x, y) numbers and holes a negative one). Line by line (the grid
//! line between row y - 1 and row y), the edges meeting at each grid point are joined into fragments; a
//! fragment that meets itself is a closed ring. Where two regions touch at a corner (a saddle: two
//! diagonal foreground pixels), the path turns to keep the two pixels in one region, which is the
//! 8-connectivity above. Regions are labelled with a union-find over the runs of two rows; a region that no
//! pixel of the current row continues is complete and handed out, with all its rings.
//!
//! The rings go along pixel edges (integer corners, straight runs merged), so rasterising them by the
//! centre rule of [`super::raster`] gives back exactly the mask. [`TracedRegion::smoothed`] turns them into
//! rings through the midpoints of those edges (corners cut by half-pixel diagonals, staircases merged into
//! slopes), which rasterise exactly to the same pixels too.

use std::collections::VecDeque;

use super::{Point, Polygon};

const NONE: u32 = u32::MAX;

/// A point of the pixel grid (a pixel corner), level coordinates.
pub type Corner = (i64, i64);

/// One connected region of foreground: its outer ring and its holes, along pixel edges.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedRegion {
    /// The ring around the region (positive shoelace sum), closing point not repeated.
    pub outer: Vec<Corner>,
    /// The rings around its holes (negative shoelace sums).
    pub holes: Vec<Vec<Corner>>,
    /// Its pixels' scores (the foreground probability), when rows came with them.
    pub scores: Scores,
}

/// The scores of a region's pixels, accumulated as its rows are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// Pixels scored.
    pub pixels: u64,
    /// Their sum.
    pub sum: f64,
    /// Their largest (`f32::NEG_INFINITY` when none).
    pub max: f32,
}

impl Scores {
    fn add(&mut self, values: &[f32]) {
        if self.pixels == 0 {
            self.max = f32::NEG_INFINITY;
        }
        self.pixels += values.len() as u64;
        self.sum += values.iter().map(|&v| v as f64).sum::<f64>();
        self.max = values.iter().copied().fold(self.max, f32::max);
    }

    fn merge(&mut self, other: Scores) {
        if other.pixels == 0 {
            return;
        }
        if self.pixels == 0 {
            *self = other;
            return;
        }
        self.pixels += other.pixels;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// The mean score, `None` when no pixel was scored.
    pub fn mean(&self) -> Option<f64> {
        (self.pixels > 0).then(|| self.sum / self.pixels as f64)
    }
}

impl TracedRegion {
    /// The region along pixel edges, scaled to level 0 by `scale` (the level's downsample).
    pub fn edges(&self, scale: (f64, f64)) -> Polygon {
        let ring = |r: &[Corner]| r.iter().map(|&(x, y)| (x as f64 * scale.0, y as f64 * scale.1)).collect();
        Polygon { outer: ring(&self.outer), holes: self.holes.iter().map(|h| ring(h)).collect() }
    }

    /// The region through the midpoints of its boundary edges (at most half a pixel from the pixel edges,
    /// straight and 45-degree runs merged), scaled to level 0 by `scale`. It covers the same pixel centres.
    pub fn smoothed(&self, scale: (f64, f64)) -> Polygon {
        let ring = |r: &[Corner]| {
            midpoints(r).into_iter().map(|(x, y)| (x * scale.0, y * scale.1)).collect::<Vec<Point>>()
        };
        Polygon { outer: ring(&self.outer), holes: self.holes.iter().map(|h| ring(h)).collect() }
    }

    /// Pixels of the region (the shoelace area of the outer ring less the holes').
    pub fn area(&self) -> i64 {
        twice_area(&self.outer) / 2 + self.holes.iter().map(|h| twice_area(h) / 2).sum::<i64>()
    }
}

/// Twice the signed area of a ring (shoelace).
fn twice_area(ring: &[Corner]) -> i64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum()
}

/// A ring of axis-aligned runs to the ring through the midpoints of its unit edges, collinear points
/// merged.
fn midpoints(ring: &[Corner]) -> Vec<Point> {
    let n = ring.len();
    let mut out: Vec<Point> = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        let (dx, dy) = ((b.0 - a.0).signum() as f64, (b.1 - a.1).signum() as f64);
        let start = (a.0 as f64 + 0.5 * dx, a.1 as f64 + 0.5 * dy);
        let end = (b.0 as f64 - 0.5 * dx, b.1 as f64 - 0.5 * dy);
        push_merged(&mut out, start);
        push_merged(&mut out, end);
    }
    // Merge across the closing point.
    while out.len() > 3 {
        let n = out.len();
        if out[n - 1] == out[0] || collinear(out[n - 2], out[n - 1], out[0]) {
            out.pop();
        } else if collinear(out[n - 1], out[0], out[1]) {
            out.remove(0);
        } else {
            break;
        }
    }
    out
}

/// Half-integers make this exact.
fn collinear(a: Point, b: Point, c: Point) -> bool {
    (b.0 - a.0) * (c.1 - b.1) == (b.1 - a.1) * (c.0 - b.0)
}

fn push_merged(out: &mut Vec<Point>, p: Point) {
    if out.last() == Some(&p) {
        return;
    }
    if out.len() >= 2 && collinear(out[out.len() - 2], out[out.len() - 1], p) {
        out.pop();
    }
    out.push(p);
}

/// Where a fragment's open end is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The head of a downward edge ending on grid line `line` at `x`.
    Down { line: usize, x: usize },
    /// The tail of an upward edge starting on grid line `line` at `x`.
    Up { line: usize, x: usize },
    /// The horizontal edge being followed along the current line.
    Horizontal,
    /// Not registered (being joined at the current point).
    Here,
}

/// A path of boundary edges, corners only; the first point is its tail, the last its head.
#[derive(Debug, Default)]
struct Fragment {
    points: VecDeque<Corner>,
    head: Option<Slot>,
    tail: Option<Slot>,
}

fn axis_collinear(a: Corner, b: Corner, c: Corner) -> bool {
    (a.0 == b.0 && b.0 == c.0) || (a.1 == b.1 && b.1 == c.1)
}

impl Fragment {
    fn push_head(&mut self, p: Corner) {
        let n = self.points.len();
        if n >= 1 && self.points[n - 1] == p {
            return;
        }
        if n >= 2 && axis_collinear(self.points[n - 2], self.points[n - 1], p) {
            self.points[n - 1] = p;
        } else {
            self.points.push_back(p);
        }
    }

    fn push_tail(&mut self, p: Corner) {
        if self.points.front() == Some(&p) {
            return;
        }
        if self.points.len() >= 2 && axis_collinear(self.points[1], self.points[0], p) {
            self.points[0] = p;
        } else {
            self.points.push_front(p);
        }
    }
}

/// A region being traced: the rings closed so far and its pixels' scores.
#[derive(Debug, Default)]
struct Region {
    rings: Vec<Vec<Corner>>,
    scores: Scores,
}

/// The streaming tracer: rows in, completed regions out. See the module documentation.
#[derive(Debug)]
pub struct Tracer {
    width: usize,
    /// Rows pushed so far; the next grid line to process is `rows`.
    rows: usize,
    prev: Vec<bool>,
    cur: Vec<bool>,
    /// The current row's scores, when rows come with them.
    cur_scores: Option<Vec<f32>>,
    prev_region: Vec<u32>,
    cur_region: Vec<u32>,
    regions: Vec<Region>,
    parent: Vec<u32>,
    stamp: Vec<usize>,
    free_regions: Vec<u32>,
    merged: Vec<u32>,
    fragments: Vec<Fragment>,
    free_fragments: Vec<u32>,
    /// Heads of downward edges and tails of upward edges, by line parity, then x (0..=width).
    down: [Vec<u32>; 2],
    up: [Vec<u32>; 2],
    horizontal: u32,
    done: Vec<TracedRegion>,
    finished: bool,
}

impl Tracer {
    /// A tracer for rows of `width` pixels.
    pub fn new(width: usize) -> Tracer {
        Tracer {
            width,
            rows: 0,
            prev: vec![false; width],
            cur: vec![false; width],
            cur_scores: None,
            prev_region: vec![NONE; width],
            cur_region: vec![NONE; width],
            regions: Vec::new(),
            parent: Vec::new(),
            stamp: Vec::new(),
            free_regions: Vec::new(),
            merged: Vec::new(),
            fragments: Vec::new(),
            free_fragments: Vec::new(),
            down: [vec![NONE; width + 1], vec![NONE; width + 1]],
            up: [vec![NONE; width + 1], vec![NONE; width + 1]],
            horizontal: NONE,
            done: Vec::new(),
            finished: false,
        }
    }

    /// Adds the next rows (`width` pixels each, non-zero is foreground) and returns the regions they
    /// complete.
    pub fn push_rows(&mut self, classes: &[u8]) -> Vec<TracedRegion> {
        self.push_scored(classes, None)
    }

    /// Adds the next rows with a score per pixel (`scores`, as many as `classes`), summed per region into
    /// [`TracedRegion::scores`]; returns the regions they complete.
    pub fn push_scored(&mut self, classes: &[u8], scores: Option<&[f32]>) -> Vec<TracedRegion> {
        assert!(!self.finished, "rows pushed after finish");
        let w = self.width.max(1);
        assert_eq!(classes.len() % w, 0, "whole rows");
        if let Some(s) = scores {
            assert_eq!(s.len(), classes.len(), "one score per pixel");
        }
        for (i, row) in classes.chunks_exact(w).enumerate() {
            for (c, &v) in self.cur.iter_mut().zip(row) {
                *c = v != 0;
            }
            match scores {
                Some(s) => {
                    let row = self.cur_scores.get_or_insert_with(Vec::new);
                    row.clear();
                    row.extend_from_slice(&s[i * w..(i + 1) * w]);
                }
                None => self.cur_scores = None,
            }
            self.line();
        }
        std::mem::take(&mut self.done)
    }

    /// Ends the mask (the rows below are background) and returns the regions still open.
    pub fn finish(&mut self) -> Vec<TracedRegion> {
        if !self.finished {
            self.cur.fill(false);
            self.line();
            self.finished = true;
        }
        std::mem::take(&mut self.done)
    }

    /// Regions open now (for tests of the memory bound).
    pub fn open_regions(&self) -> usize {
        self.parent
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p == i as u32 && !self.free_regions.contains(&p))
            .count()
    }

    /// Fragments open now (at most about 2 * width).
    pub fn open_fragments(&self) -> usize {
        self.fragments.len() - self.free_fragments.len()
    }

    fn find(&mut self, mut r: u32) -> u32 {
        while self.parent[r as usize] != r {
            let up = self.parent[self.parent[r as usize] as usize];
            self.parent[r as usize] = up;
            r = up;
        }
        r
    }

    fn new_region(&mut self) -> u32 {
        if let Some(r) = self.free_regions.pop() {
            self.parent[r as usize] = r;
            self.regions[r as usize].scores = Scores::default();
            return r;
        }
        self.regions.push(Region::default());
        self.parent.push(self.regions.len() as u32 - 1);
        self.stamp.push(usize::MAX);
        self.regions.len() as u32 - 1
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return a;
        }
        let (keep, gone) = if self.regions[a as usize].rings.len() >= self.regions[b as usize].rings.len() {
            (a, b)
        } else {
            (b, a)
        };
        let rings = std::mem::take(&mut self.regions[gone as usize].rings);
        self.regions[keep as usize].rings.extend(rings);
        let scores = std::mem::take(&mut self.regions[gone as usize].scores);
        self.regions[keep as usize].scores.merge(scores);
        self.parent[gone as usize] = keep;
        self.merged.push(gone);
        keep
    }

    /// Labels the runs of `cur` from those of `prev` (8-connectivity).
    fn label(&mut self) {
        let w = self.width;
        let mut x = 0;
        while x < w {
            if !self.cur[x] {
                self.cur_region[x] = NONE;
                x += 1;
                continue;
            }
            let start = x;
            while x < w && self.cur[x] {
                x += 1;
            }
            let mut region = NONE;
            for px in start.saturating_sub(1)..(x + 1).min(w) {
                let r = self.prev_region[px];
                if r != NONE {
                    region = if region == NONE { self.find(r) } else { self.union(region, r) };
                }
            }
            if region == NONE {
                region = self.new_region();
            }
            self.cur_region[start..x].fill(region);
            if let Some(scores) = &self.cur_scores {
                self.regions[region as usize].scores.add(&scores[start..x]);
            }
        }
    }

    fn new_fragment(&mut self, points: &[Corner]) -> u32 {
        let f = Fragment { points: points.iter().copied().collect(), head: None, tail: None };
        if let Some(i) = self.free_fragments.pop() {
            self.fragments[i as usize] = f;
            i
        } else {
            self.fragments.push(f);
            self.fragments.len() as u32 - 1
        }
    }

    fn register(&mut self, id: u32, slot: Slot, head: bool) {
        match slot {
            Slot::Down { line, x } => self.down[line & 1][x] = id,
            Slot::Up { line, x } => self.up[line & 1][x] = id,
            Slot::Horizontal => self.horizontal = id,
            Slot::Here => {}
        }
        let f = &mut self.fragments[id as usize];
        if head {
            f.head = Some(slot);
        } else {
            f.tail = Some(slot);
        }
    }

    /// Joins fragment `a` (head at `v`) to fragment `b` (tail at `v`); a fragment joined to itself is a
    /// closed ring of the region around `v`.
    fn join(&mut self, a: u32, b: u32, v: Corner) {
        if a == b {
            let f = std::mem::take(&mut self.fragments[a as usize]);
            self.free_fragments.push(a);
            let mut ring: Vec<Corner> = f.points.into();
            ring.pop(); // the closing point, equal to the first
            while ring.len() > 3 {
                let n = ring.len();
                if axis_collinear(ring[n - 2], ring[n - 1], ring[0]) {
                    ring.pop();
                } else if axis_collinear(ring[n - 1], ring[0], ring[1]) {
                    ring.remove(0);
                } else {
                    break;
                }
            }
            let region = self.region_at(v);
            self.regions[region as usize].rings.push(ring);
            return;
        }
        let (la, lb) = (self.fragments[a as usize].points.len(), self.fragments[b as usize].points.len());
        if la >= lb {
            let moved = std::mem::take(&mut self.fragments[b as usize]);
            for p in moved.points {
                self.fragments[a as usize].push_head(p);
            }
            self.free_fragments.push(b);
            self.register(a, moved.head.unwrap_or(Slot::Here), true);
        } else {
            let moved = std::mem::take(&mut self.fragments[a as usize]);
            for &p in moved.points.iter().rev() {
                self.fragments[b as usize].push_tail(p);
            }
            self.free_fragments.push(a);
            self.register(b, moved.tail.unwrap_or(Slot::Here), false);
        }
    }

    /// The region of the foreground pixels around grid point `v` on the current line (all of them
    /// touch, so they are one region).
    fn region_at(&mut self, (x, _): Corner) -> u32 {
        let x = x as usize;
        let candidates = [
            (x > 0).then(|| self.prev_region[x - 1]),
            (x < self.width).then(|| self.prev_region[x]),
            (x > 0).then(|| self.cur_region[x - 1]),
            (x < self.width).then(|| self.cur_region[x]),
        ];
        let r = candidates
            .into_iter()
            .flatten()
            .find(|&r| r != NONE)
            .expect("a boundary point touches foreground");
        self.find(r)
    }

    /// Grid line `self.rows` between `prev` (the row above) and `cur` (the row below).
    fn line(&mut self) {
        self.label();
        let (y, w) = (self.rows, self.width);
        let yi = y as i64;
        let next = (y + 1) & 1;
        self.down[next].fill(NONE);
        self.up[next].fill(NONE);
        self.horizontal = NONE;
        for x in 0..=w {
            let xi = x as i64;
            let nw = x > 0 && self.prev[x - 1];
            let ne = x < w && self.prev[x];
            let sw = x > 0 && self.cur[x - 1];
            let se = x < w && self.cur[x];
            if nw == ne && sw == se {
                // Nothing here, or a horizontal edge passing straight on.
                continue;
            }
            if nw == sw && ne == se {
                // A vertical edge passing straight on: move its open end down one line.
                if nw {
                    let f = self.down[y & 1][x];
                    self.fragments[f as usize].push_head((xi, yi + 1));
                    self.register(f, Slot::Down { line: y + 1, x }, true);
                } else {
                    let f = self.up[y & 1][x];
                    self.fragments[f as usize].push_tail((xi, yi + 1));
                    self.register(f, Slot::Up { line: y + 1, x }, false);
                }
                continue;
            }
            let v = (xi, yi);
            // The edges meeting here: in (head here) and out (tail here).
            let above_in = (nw && !ne).then(|| self.down[y & 1][x]);
            let above_out = (!nw && ne).then(|| self.up[y & 1][x]);
            let (mut left_in, mut left_out) = (None, None);
            if nw != sw {
                let f = self.horizontal;
                if sw {
                    self.fragments[f as usize].push_head(v);
                    left_in = Some(f);
                } else {
                    self.fragments[f as usize].push_tail(v);
                    left_out = Some(f);
                }
                self.register(f, Slot::Here, sw);
            }
            let (mut below_in, mut below_out) = (None, None);
            if sw != se {
                if sw {
                    let f = self.new_fragment(&[v, (xi, yi + 1)]);
                    self.register(f, Slot::Down { line: y + 1, x }, true);
                    below_out = Some(f);
                } else {
                    let f = self.new_fragment(&[(xi, yi + 1), v]);
                    self.register(f, Slot::Up { line: y + 1, x }, false);
                    below_in = Some(f);
                }
            }
            let (mut right_in, mut right_out) = (None, None);
            if ne != se {
                let f = self.new_fragment(&[v]);
                if se {
                    // Rightward: its head is found at a later point.
                    self.register(f, Slot::Horizontal, true);
                    right_out = Some(f);
                } else {
                    self.register(f, Slot::Horizontal, false);
                    right_in = Some(f);
                }
                self.horizontal = f;
            }
            if nw && se && !ne && !sw {
                // Saddle, the diagonal pixels NW and SE kept together: above -> right, below -> left.
                self.join(above_in.unwrap(), right_out.unwrap(), v);
                // The first join kept `above_in` (longer than the one-point `right_out`), so these ids
                // still name open fragments.
                self.join(below_in.unwrap(), left_out.unwrap(), v);
            } else if ne && sw && !nw && !se {
                // Saddle, NE and SW together: right -> below, left -> above.
                self.join(right_in.unwrap(), below_out.unwrap(), v);
                // The first join kept `below_out` (longer than the one-point `right_in`).
                self.join(left_in.unwrap(), above_out.unwrap(), v);
            } else {
                let a = [above_in, left_in, below_in, right_in].into_iter().flatten().next();
                let b = [above_out, left_out, below_out, right_out].into_iter().flatten().next();
                self.join(a.expect("one edge in"), b.expect("one edge out"), v);
            }
        }
        self.complete();
        std::mem::swap(&mut self.prev, &mut self.cur);
        std::mem::swap(&mut self.prev_region, &mut self.cur_region);
        self.rows += 1;
    }

    /// Hands out the regions of the row above that the current row does not continue.
    fn complete(&mut self) {
        let y = self.rows;
        for x in 0..self.width {
            if self.cur_region[x] != NONE {
                let r = self.find(self.cur_region[x]);
                self.cur_region[x] = r;
                self.stamp[r as usize] = y;
            }
        }
        for x in 0..self.width {
            let r = self.prev_region[x];
            if r == NONE {
                continue;
            }
            let r = self.find(r);
            if self.stamp[r as usize] == y {
                continue;
            }
            self.stamp[r as usize] = y;
            let rings = std::mem::take(&mut self.regions[r as usize].rings);
            let scores = std::mem::take(&mut self.regions[r as usize].scores);
            self.done.push(region_of(rings, scores));
            self.free_regions.push(r);
        }
        // Merged-away labels are referenced only by the row above, which is done with.
        for gone in std::mem::take(&mut self.merged) {
            self.free_regions.push(gone);
        }
    }
}

/// The rings of one region: the one with a positive area is the outer ring.
fn region_of(rings: Vec<Vec<Corner>>, scores: Scores) -> TracedRegion {
    let mut outer = Vec::new();
    let mut holes = Vec::new();
    for ring in rings {
        if twice_area(&ring) > 0 && outer.is_empty() {
            outer = ring;
        } else {
            holes.push(ring);
        }
    }
    TracedRegion { outer, holes, scores }
}
