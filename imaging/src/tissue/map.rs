//! Masks laid over the image predicted, and the scope of a prediction: where the probabilities are
//! computed (the windows that touch the scope) and which pixels keep them (the pixels inside it).
//!
//! A [`TissueMap`] is a mask on its own grid: image pixel `(x, y)` (of the level predicted) belongs to mask
//! column `min(floor((x + 0.5) / sx), w - 1)` and row `min(floor((y + 0.5) / sy), h - 1)`, `(sx, sy)` the
//! image pixels per mask pixel. A [`Scope`] is the intersection of maps (auto, a user's mask) and of
//! annotated polygons (`--roi`, by the centre rule of `annotations::raster` at the level predicted): a
//! pixel is inside when it is inside all of them. A window of the tile plan is predicted when its kept
//! part has a pixel inside every map and inside the polygons' cells (a superset of the windows with a
//! pixel inside the scope), so every pixel of the scope gets exactly the full pass's value.

use crate::annotations::raster::{self, Scratch};
use crate::annotations::Polygon;
use crate::rect::Rect;
use crate::tiles::{Band, Pass, Tile, TilePlan};

use super::{morph, Mask};

/// A mask over an image of `image_width` x `image_height` pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMap {
    /// The mask.
    pub mask: Mask,
    /// Image pixels per mask pixel, (x, y).
    pub scale: (f64, f64),
    /// The image's width.
    pub image_width: usize,
    /// The image's height.
    pub image_height: usize,
}

impl TissueMap {
    /// A mask stretched over the whole image (a pyramid level, or a user's mask of any size).
    pub fn stretched(mask: Mask, image_width: usize, image_height: usize) -> TissueMap {
        let scale =
            (image_width as f64 / mask.width.max(1) as f64, image_height as f64 / mask.height.max(1) as f64);
        TissueMap { mask, scale, image_width, image_height }
    }

    /// A mask whose pixel is `scale` image pixels (a reduction by a whole factor; may overhang the image).
    pub fn scaled(mask: Mask, scale: (f64, f64), image_width: usize, image_height: usize) -> TissueMap {
        TissueMap { mask, scale, image_width, image_height }
    }

    /// The mask column of image column `x`.
    pub fn column(&self, x: usize) -> usize {
        index(x, self.scale.0, self.mask.width)
    }

    /// The mask row of image row `y`.
    pub fn row(&self, y: usize) -> usize {
        index(y, self.scale.1, self.mask.height)
    }

    /// Whether any pixel of the image rectangle at (`x`, `y`) of `width` x `height` (clipped to the image)
    /// is inside the mask.
    pub fn touches(&self, x: usize, y: usize, width: usize, height: usize) -> bool {
        let (x1, y1) = ((x + width).min(self.image_width), (y + height).min(self.image_height));
        if x >= x1 || y >= y1 || self.mask.data.is_empty() {
            return false;
        }
        let (c0, c1) = (self.column(x), self.column(x1 - 1));
        let (r0, r1) = (self.row(y), self.row(y1 - 1));
        (r0..=r1).any(|r| self.mask.data[r * self.mask.width + c0..=r * self.mask.width + c1].contains(&true))
    }

    /// The image pixels of row `y` inside the mask: `out[x]` cleared where outside (left as is inside).
    pub fn clear_outside(&self, y: usize, out: &mut [u8]) {
        let r = self.row(y);
        let row = &self.mask.data[r * self.mask.width..(r + 1) * self.mask.width];
        for (x, v) in out.iter_mut().enumerate() {
            if !row[self.column(x)] {
                *v = 0;
            }
        }
    }

    /// The share of the image's pixels inside the mask.
    pub fn fraction(&self) -> f64 {
        let cols = column_counts(self, self.image_width, true);
        let rows = column_counts(self, self.image_height, false);
        let mut inside = 0u64;
        for (r, &nr) in rows.iter().enumerate() {
            for (c, &nc) in cols.iter().enumerate() {
                if self.mask.get(c, r) {
                    inside += nr * nc;
                }
            }
        }
        inside as f64 / (self.image_width as f64 * self.image_height as f64).max(1.0)
    }
}

/// The mask index of image index `i` along an axis of `scale` image pixels per mask pixel.
fn index(i: usize, scale: f64, len: usize) -> usize {
    (((i as f64 + 0.5) / scale).floor() as usize).min(len.saturating_sub(1))
}

/// Image pixels per mask column (`columns`) or row.
fn column_counts(map: &TissueMap, image_len: usize, columns: bool) -> Vec<u64> {
    let len = if columns { map.mask.width } else { map.mask.height };
    let mut counts = vec![0u64; len];
    for i in 0..image_len {
        let j = if columns { map.column(i) } else { map.row(i) };
        counts[j] += 1;
    }
    counts
}

/// Annotated polygons that bound the prediction (`--roi`), in level-0 coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    /// The polygons.
    pub polygons: Vec<Polygon>,
    /// Level-0 pixels per image pixel (the downsample of the level predicted).
    pub level_scale: (f64, f64),
    /// The polygons' cells on a coarse grid: every cell a polygon touches (interior, edges and vertices),
    /// grown by one, so windows are chosen without drawing each one.
    pub cells: TissueMap,
}

/// Image pixels per cell of [`Roi::cells`] (at most).
const ROI_CELL: usize = 16;

impl Roi {
    /// The polygons over an image of `width` x `height` of a level of `level_scale`.
    pub fn new(polygons: Vec<Polygon>, level_scale: (f64, f64), width: usize, height: usize) -> Roi {
        let (cw, ch) = (width.div_ceil(ROI_CELL).max(1), height.div_ceil(ROI_CELL).max(1));
        let cell = ROI_CELL as f64;
        let scale0 = (cell * level_scale.0, cell * level_scale.1);
        let window = Rect { left: 0, top: 0, width: cw, height: ch };
        let mut data = raster::rasterise(&polygons, window, scale0);
        // Cells crossed by an edge: sampled at a quarter of a cell, which with the growth below reaches
        // every cell an edge passes through.
        for p in &polygons {
            for ring in std::iter::once(&p.outer).chain(&p.holes) {
                for (i, &(x0, y0)) in ring.iter().enumerate() {
                    let (x1, y1) = ring[(i + 1) % ring.len()];
                    let steps =
                        (((x1 - x0).abs() / scale0.0).max((y1 - y0).abs() / scale0.1) * 4.0).ceil() as usize;
                    for s in 0..=steps {
                        let t = s as f64 / steps.max(1) as f64;
                        let (x, y) = ((x0 + t * (x1 - x0)) / scale0.0, (y0 + t * (y1 - y0)) / scale0.1);
                        let (c, r) =
                            (x.floor().clamp(0.0, cw as f64 - 1.0), y.floor().clamp(0.0, ch as f64 - 1.0));
                        data[r as usize * cw + c as usize] = 1;
                    }
                }
            }
        }
        let mut mask = Mask { width: cw, height: ch, data: data.iter().map(|&v| v != 0).collect() };
        morph::dilate(&mut mask, 1);
        Roi { polygons, level_scale, cells: TissueMap::scaled(mask, (cell, cell), width, height) }
    }

    /// Clears the pixels of image rows `y..y + rows` (`width` per row in `out`) outside the polygons.
    pub fn clear_outside(&self, y: usize, rows: usize, out: &mut [u8]) {
        let width = self.cells.image_width;
        let window = Rect { left: 0, top: y, width, height: rows };
        let mut inside = vec![0u8; width * rows];
        let mut scratch = Scratch::default();
        for p in &self.polygons {
            raster::paint(p, window, self.level_scale, &mut scratch, &mut inside, 1);
        }
        for (v, &i) in out.iter_mut().zip(&inside) {
            if i == 0 {
                *v = 0;
            }
        }
    }
}

/// Where a prediction is computed and kept: the intersection of every map and of the polygons.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    /// Masks over the image (auto, a user's).
    pub maps: Vec<TissueMap>,
    /// Annotated polygons.
    pub roi: Option<Roi>,
}

impl Scope {
    /// Whether the image rectangle at (`x`, `y`) of `width` x `height` may hold a pixel of the scope
    /// (true for every rectangle that does).
    pub fn touches(&self, x: usize, y: usize, width: usize, height: usize) -> bool {
        self.maps.iter().all(|m| m.touches(x, y, width, height))
            && self.roi.as_ref().is_none_or(|r| r.cells.touches(x, y, width, height))
    }

    /// 1 for the pixels of image rows `y..y + rows` (`width` each) inside the scope, 0 elsewhere.
    pub fn rows(&self, y: usize, rows: usize, width: usize) -> Vec<u8> {
        let mut out = vec![1u8; width * rows];
        for (i, row) in out.chunks_exact_mut(width.max(1)).enumerate() {
            for m in &self.maps {
                m.clear_outside(y + i, row);
            }
        }
        if let Some(roi) = &self.roi {
            roi.clear_outside(y, rows, &mut out);
        }
        out
    }

    /// The plan with only the windows whose kept part touches the scope; bands keep their rows (a band
    /// may be left with no passes: nothing of it is read or computed).
    pub fn plan(&self, plan: &TilePlan) -> TilePlan {
        // A pass of each window size holds at most what the plan's fullest pass of that size holds (the
        // pixel budget), so the windows left are regrouped into as few passes as the budget allows.
        let mut per_pass: Vec<((usize, usize), usize)> = Vec::new();
        for pass in &plan.passes {
            match per_pass.iter_mut().find(|(size, _)| *size == (pass.height, pass.width)) {
                Some((_, n)) => *n = (*n).max(pass.tiles.len()),
                None => per_pass.push(((pass.height, pass.width), pass.tiles.len())),
            }
        }
        let mut passes = Vec::new();
        let mut bands = Vec::with_capacity(plan.bands.len());
        for band in &plan.bands {
            let first = passes.len();
            let mut groups: Vec<((usize, usize), Vec<Tile>)> = Vec::new();
            for pass in &plan.passes[band.passes.clone()] {
                for t in pass
                    .tiles
                    .iter()
                    .filter(|t| self.touches(t.keep.left, t.keep.top, t.keep.width, t.keep.height))
                {
                    let size = (pass.height, pass.width);
                    match groups.iter_mut().find(|(s, _)| *s == size) {
                        Some((_, tiles)) => tiles.push(*t),
                        None => groups.push((size, vec![*t])),
                    }
                }
            }
            for ((height, width), tiles) in groups {
                let n = per_pass.iter().find(|(s, _)| *s == (height, width)).map_or(1, |(_, n)| *n);
                for chunk in tiles.chunks(n.max(1)) {
                    passes.push(Pass { height, width, tiles: chunk.to_vec() });
                }
            }
            bands.push(Band { passes: first..passes.len(), ..band.clone() });
        }
        TilePlan { passes, bands, ..plan.clone() }
    }
}
