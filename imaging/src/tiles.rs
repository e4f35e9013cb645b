//! The tile plan: which windows of the image go through the network, which part of each window's output is
//! kept, and how windows are grouped into forward passes within the pixel budget. A pure function of the
//! image size and the tiling parameters, so it is tested without a model.
//!
//! Why the stitched result equals one untiled pass: every kept pixel lies at least `halo` (>= the network's
//! receptive radius, 7) pixels inside its window, except where the window reaches the image edge, where the
//! network's own zero padding sees exactly what the untiled pass sees. Window origins are even, so the 2x2
//! max-pool grid of every window lines up with the untiled one.

use std::fmt;

/// Input pixels one forward pass may take (batch x height x width, halo included).
pub const PIXEL_BUDGET: usize = 65_536;
/// Pixels read around each kept tile centre: the receptive radius (7) rounded up to keep origins even.
pub const HALO: usize = 8;
/// The smallest halo that keeps tiling exact: how far an output pixel's value can depend on input pixels in
/// the fixed network (conv1 +1, conv2 +1, the pool/upsample pair and conv3 up to +3 at full resolution,
/// conv4 +2).
pub const RECEPTIVE_RADIUS: usize = 7;
/// Largest image side a plan is made for: keeps every coordinate sum far from overflow (a header may claim
/// any size; the readers refuse what they cannot stream long before this).
pub const MAX_SIDE: usize = 1 << 31;
/// Default and largest square window side (256 x 256 = the pixel budget).
pub const DEFAULT_TILE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilingError {
    #[error("tile size {tile} is invalid: it must be even and between {min} and {max} (the pixel budget {budget} = {max}x{max})")]
    Tile { tile: usize, min: usize, max: usize, budget: usize },
    #[error("halo {halo} is invalid: it must be even and at least the receptive radius {RECEPTIVE_RADIUS}")]
    Halo { halo: usize },
    #[error("the image is empty ({height}x{width})")]
    EmptyImage { height: usize, width: usize },
    #[error("the image is {height}x{width}, over the largest side this runner plans for ({MAX_SIDE} px)")]
    TooLarge { height: usize, width: usize },
    #[error(
        "the model's metadata `{key}` is `{value}`: {reason}; export the model again with `trainer export`"
    )]
    Metadata { key: &'static str, value: String, reason: String },
}

/// How a model must be tiled: the halo read around each kept centre and the input pixels a forward pass may
/// take. The trainer writes both into the exported model's metadata (`halo_px`, `pixel_budget`, with the
/// network's `receptive_radius_px`), and the runner plans with what the model declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub halo: usize,
    pub budget: usize,
}

impl Default for Tiling {
    fn default() -> Tiling {
        Tiling { halo: HALO, budget: PIXEL_BUDGET }
    }
}

impl Tiling {
    /// The tiling a model declares, read through `get` (metadata key -> value), checked against its receptive
    /// field and the memory rule: the halo must be even and at least the receptive radius (the model's
    /// declared one and this network's), the budget at most [`PIXEL_BUDGET`] and large enough for one window
    /// with its halo. A model that declares none of the three keys (exported by another tool) is tiled
    /// with the defaults.
    pub fn from_metadata(get: impl Fn(&str) -> Option<String>) -> Result<Tiling, TilingError> {
        let keys = ["halo_px", "pixel_budget", "receptive_radius_px"];
        let values = keys.map(&get);
        if values.iter().all(Option::is_none) {
            return Ok(Tiling::default());
        }
        let parse = |index: usize| -> Result<usize, TilingError> {
            let key = keys[index];
            let Some(value) = &values[index] else {
                return Err(TilingError::Metadata {
                    key,
                    value: String::new(),
                    reason: "it is missing".into(),
                });
            };
            value.trim().parse::<usize>().map_err(|_| TilingError::Metadata {
                key,
                value: value.clone(),
                reason: "not a whole number".into(),
            })
        };
        let (halo, budget, radius) = (parse(0)?, parse(1)?, parse(2)?);
        let bad = |key: &'static str, value: usize, reason: String| TilingError::Metadata {
            key,
            value: value.to_string(),
            reason,
        };
        if radius < RECEPTIVE_RADIUS {
            return Err(bad(
                "receptive_radius_px",
                radius,
                format!("this network's receptive radius is {RECEPTIVE_RADIUS}"),
            ));
        }
        if halo < radius || halo % 2 != 0 {
            return Err(bad(
                "halo_px",
                halo,
                format!("the halo must be even and at least the receptive radius {radius}, or tiles differ from one pass"),
            ));
        }
        let smallest = (2 * halo + 2).saturating_mul(2 * halo + 2);
        if budget > PIXEL_BUDGET || budget < smallest {
            return Err(bad(
                "pixel_budget",
                budget,
                format!("it must be between {smallest} (one window with its halo) and {PIXEL_BUDGET} (the memory rule)"),
            ));
        }
        Ok(Tiling { halo, budget })
    }

    /// The plan for an image of `height` x `width` with windows of side at most `tile`.
    pub fn plan(&self, height: usize, width: usize, tile: usize) -> Result<TilePlan, TilingError> {
        plan(height, width, tile, self.halo, self.budget)
    }

    /// The largest window side this tiling allows.
    pub fn max_tile(&self) -> usize {
        max_tile(self.budget)
    }
}

/// Windows and kept centres are rectangles in pixel coordinates of the even-padded image.
pub use crate::rect::Rect;

/// One window fed to the network and the part of its output that is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// The input window (what the network sees).
    pub window: Rect,
    /// The kept centre, in image coordinates; always inside `window`.
    pub keep: Rect,
}

/// Tiles of one window size that go through the network together: batch x height x width <= budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub height: usize,
    pub width: usize,
    pub tiles: Vec<Tile>,
}

impl Pass {
    /// Input pixels of this forward pass.
    pub fn pixels(&self) -> usize {
        self.tiles.len() * self.height * self.width
    }
}

/// One row of windows: the image rows its windows read and the rows it keeps, and its forward passes
/// (a range of [`TilePlan::passes`]). Streaming prediction reads and predicts one band at a time; because
/// the whole-image plan is made of these bands, the streamed result is the in-memory one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    /// Rows read by every window of the band (of the even-padded image).
    pub window_y: usize,
    pub window_height: usize,
    /// Rows whose outputs the band keeps (of the even-padded image).
    pub keep_y: usize,
    pub keep_height: usize,
    /// Its forward passes, as indices into `TilePlan::passes`.
    pub passes: std::ops::Range<usize>,
}

/// The whole plan for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TilePlan {
    /// The image size.
    pub height: usize,
    pub width: usize,
    /// The size the network works at: height and width rounded up to even (zeros at bottom/right).
    pub padded_height: usize,
    pub padded_width: usize,
    /// Forward passes, band after band (a pass never mixes windows of two bands).
    pub passes: Vec<Pass>,
    /// The rows of windows, top to bottom.
    pub bands: Vec<Band>,
}

impl TilePlan {
    pub fn tile_count(&self) -> usize {
        self.passes.iter().map(|b| b.tiles.len()).sum()
    }

    pub fn tiles(&self) -> impl Iterator<Item = &Tile> {
        self.passes.iter().flat_map(|b| b.tiles.iter())
    }

    /// The largest forward pass, in input pixels (sizes the reused input buffer).
    pub fn max_pass_pixels(&self) -> usize {
        self.passes.iter().map(Pass::pixels).max().unwrap_or(0)
    }
}

impl fmt::Display for TilePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tiles in {} forward passes", self.tile_count(), self.passes.len())
    }
}

/// One axis of the plan: (window start, window length, keep start, keep length) along a padded length.
/// `length`, `tile` and `halo` are even, so every window start is even.
fn segments(length: usize, tile: usize, halo: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut keep_start: usize = 0;
    loop {
        let start = keep_start.saturating_sub(halo);
        if start + tile >= length {
            // The last window reaches the edge and may be shorter than `tile`: no recomputed overlap.
            out.push((start, length - start, keep_start, length - keep_start));
            return out;
        }
        let keep_end = start + tile - halo;
        out.push((start, tile, keep_start, keep_end - keep_start));
        keep_start = keep_end;
    }
}

fn round_up_even(n: usize) -> usize {
    n + n % 2
}

/// The tile plan for an image of `height` x `width` with square windows of side at most `tile`, read with
/// `halo` pixels around each kept centre, and at most `budget` input pixels per forward pass.
pub fn plan(
    height: usize,
    width: usize,
    tile: usize,
    halo: usize,
    budget: usize,
) -> Result<TilePlan, TilingError> {
    if height == 0 || width == 0 {
        return Err(TilingError::EmptyImage { height, width });
    }
    if height > MAX_SIDE || width > MAX_SIDE {
        return Err(TilingError::TooLarge { height, width });
    }
    if halo < RECEPTIVE_RADIUS || !halo.is_multiple_of(2) {
        return Err(TilingError::Halo { halo });
    }
    let max = max_tile(budget);
    // Checked: a halo near usize::MAX would wrap to a tiny minimum and let a wrong plan through.
    let min = halo.checked_mul(2).and_then(|v| v.checked_add(2)).ok_or(TilingError::Halo { halo })?;
    if !tile.is_multiple_of(2) || tile < min || tile > max {
        return Err(TilingError::Tile { tile, min, max, budget });
    }
    let (padded_height, padded_width) = (round_up_even(height), round_up_even(width));
    let rows = segments(padded_height, tile, halo);
    let cols = segments(padded_width, tile, halo);

    // Within each band (row of windows), group tiles by window size, in the order sizes first appear, then
    // cut each group into passes. Passes never span bands, so a band can be predicted on its own.
    let mut passes = Vec::new();
    let mut bands = Vec::with_capacity(rows.len());
    for &(wy, wh, ky, kh) in &rows {
        let mut groups: Vec<((usize, usize), Vec<Tile>)> = Vec::new();
        for &(wx, ww, kx, kw) in &cols {
            let tile = Tile {
                window: Rect { top: wy, left: wx, height: wh, width: ww },
                keep: Rect { top: ky, left: kx, height: kh, width: kw },
            };
            match groups.iter_mut().find(|(size, _)| *size == (wh, ww)) {
                Some((_, tiles)) => tiles.push(tile),
                None => groups.push(((wh, ww), vec![tile])),
            }
        }
        let first = passes.len();
        for ((h, w), tiles) in groups {
            let per_batch = (budget / (h * w)).max(1);
            for chunk in tiles.chunks(per_batch) {
                passes.push(Pass { height: h, width: w, tiles: chunk.to_vec() });
            }
        }
        bands.push(Band {
            window_y: wy,
            window_height: wh,
            keep_y: ky,
            keep_height: kh,
            passes: first..passes.len(),
        });
    }
    Ok(TilePlan { height, width, padded_height, padded_width, passes, bands })
}

/// The largest even square side within `budget`.
pub fn max_tile(budget: usize) -> usize {
    let side = (budget as f64).sqrt() as usize;
    side - side % 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every invariant of a plan; returns the plan for further checks.
    fn checked(height: usize, width: usize, tile: usize) -> TilePlan {
        let p = plan(height, width, tile, HALO, PIXEL_BUDGET).unwrap();
        assert_eq!((p.padded_height, p.padded_width), (height + height % 2, width + width % 2));
        let mut cover = vec![0u8; p.padded_height * p.padded_width];
        for pass in &p.passes {
            assert!(!pass.tiles.is_empty());
            assert!(pass.pixels() <= PIXEL_BUDGET, "{height}x{width} tile {tile}: pass of {}", pass.pixels());
            for t in &pass.tiles {
                let (w, k) = (t.window, t.keep);
                assert_eq!((w.height, w.width), (pass.height, pass.width), "one window size per pass");
                assert!(w.top % 2 == 0 && w.left % 2 == 0, "odd origin {w:?}");
                assert!(w.height % 2 == 0 && w.width % 2 == 0, "odd window {w:?}");
                assert!(w.height <= tile && w.width <= tile);
                assert!(
                    w.top + w.height <= p.padded_height && w.left + w.width <= p.padded_width,
                    "{w:?} outside"
                );
                assert!(k.height > 0 && k.width > 0);
                // The kept centre is inside the window, at least a halo from every window side that is not
                // the image edge.
                assert!(k.top >= w.top && k.left >= w.left);
                assert!(k.top + k.height <= w.top + w.height && k.left + k.width <= w.left + w.width);
                if w.top > 0 {
                    assert!(k.top - w.top >= HALO);
                }
                if w.left > 0 {
                    assert!(k.left - w.left >= HALO);
                }
                if w.top + w.height < p.padded_height {
                    assert!(w.top + w.height - (k.top + k.height) >= HALO);
                }
                if w.left + w.width < p.padded_width {
                    assert!(w.left + w.width - (k.left + k.width) >= HALO);
                }
                for y in k.top..k.top + k.height {
                    for x in k.left..k.left + k.width {
                        cover[y * p.padded_width + x] += 1;
                    }
                }
            }
        }
        assert!(cover.iter().all(|&c| c == 1), "{height}x{width} tile {tile}: not covered exactly once");
        // Bands: top to bottom, kept rows contiguous, every pass in exactly one band, and a band's windows
        // all read its rows and keep its rows.
        let (mut next_keep, mut next_pass) = (0, 0);
        for band in &p.bands {
            assert_eq!((band.keep_y, band.passes.start), (next_keep, next_pass));
            assert!(band.window_y <= band.keep_y && band.window_height <= tile);
            for pass in &p.passes[band.passes.clone()] {
                for t in &pass.tiles {
                    assert_eq!((t.window.top, t.window.height), (band.window_y, band.window_height));
                    assert_eq!((t.keep.top, t.keep.height), (band.keep_y, band.keep_height));
                }
            }
            (next_keep, next_pass) = (band.keep_y + band.keep_height, band.passes.end);
        }
        assert_eq!((next_keep, next_pass), (p.padded_height, p.passes.len()));
        p
    }

    #[test]
    fn every_pixel_is_covered_once_within_budget_for_many_sizes() {
        let sizes =
            [1, 2, 3, 7, 17, 18, 19, 20, 33, 64, 239, 240, 241, 248, 255, 256, 257, 258, 259, 300, 497, 513];
        for &h in &sizes {
            for &w in &sizes {
                for tile in [18, 32, 64, 100, 256] {
                    checked(h, w, tile);
                }
            }
        }
    }

    #[test]
    fn absurd_sizes_are_errors_not_overflows() {
        // Found by the tile_plan fuzz target: 2 * halo + 2 wrapped for a huge halo.
        let huge = usize::MAX - 1;
        assert_eq!(plan(10, 10, 256, huge, PIXEL_BUDGET), Err(TilingError::Halo { halo: huge }));
        assert!(matches!(plan(usize::MAX, 10, 256, HALO, PIXEL_BUDGET), Err(TilingError::TooLarge { .. })));
        assert!(matches!(plan(10, MAX_SIDE + 1, 256, HALO, PIXEL_BUDGET), Err(TilingError::TooLarge { .. })));
    }

    #[test]
    fn small_images_are_one_window() {
        for (h, w) in [(1, 1), (5, 3), (256, 256), (255, 17)] {
            let p = checked(h, w, 256);
            assert_eq!(p.tile_count(), 1);
            let t = p.passes[0].tiles[0];
            assert_eq!(t.window, Rect { top: 0, left: 0, height: h + h % 2, width: w + w % 2 });
            assert_eq!(t.keep, t.window);
        }
    }

    #[test]
    fn last_window_is_shorter_rather_than_shifted_back() {
        // 300 = one full window keeping [0, 248), then a 60-px window from 240 keeping [248, 300).
        let p = checked(300, 256, 256);
        let windows: Vec<(Rect, Rect)> = p.tiles().map(|t| (t.window, t.keep)).collect();
        assert_eq!(
            windows,
            [
                (
                    Rect { top: 0, left: 0, height: 256, width: 256 },
                    Rect { top: 0, left: 0, height: 248, width: 256 }
                ),
                (
                    Rect { top: 240, left: 0, height: 60, width: 256 },
                    Rect { top: 248, left: 0, height: 52, width: 256 }
                ),
            ]
        );
    }

    #[test]
    fn windows_of_one_size_share_forward_passes() {
        // 1000x1000 with 256 windows: 4x4 full windows, 4+4 edge windows, one corner; the small edge windows
        // share passes.
        let p = checked(1000, 1000, 256);
        assert_eq!(p.tile_count(), 25);
        let full: Vec<&Pass> = p.passes.iter().filter(|b| (b.height, b.width) == (256, 256)).collect();
        assert_eq!(full.len(), 16, "a full window fills the budget alone");
        assert!(p.passes.len() < 25, "smaller windows are batched: {} passes", p.passes.len());
        // With 64-px windows, 16 windows fit one pass.
        let p = checked(1000, 1000, 64);
        assert!(p.passes.iter().any(|b| b.tiles.len() == 16));
    }

    #[test]
    fn a_very_large_image_is_planned_quickly_and_within_budget() {
        let p = checked(8192, 8192, 256);
        assert_eq!(p.tile_count(), 35 * 35);
        assert!(p.max_pass_pixels() <= PIXEL_BUDGET);
    }

    #[test]
    fn a_model_declares_its_tiling_and_it_is_checked() {
        fn declared(pairs: &[(&str, &str)]) -> Result<Tiling, TilingError> {
            Tiling::from_metadata(|key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
        }
        let ours = [("halo_px", "8"), ("pixel_budget", "65536"), ("receptive_radius_px", "7")];
        assert_eq!(declared(&ours), Ok(Tiling { halo: 8, budget: 65_536 }));
        assert_eq!(declared(&[]), Ok(Tiling::default()), "no tiling metadata: the defaults");
        let wider = [("halo_px", "12"), ("pixel_budget", "16384"), ("receptive_radius_px", "7")];
        assert_eq!(declared(&wider), Ok(Tiling { halo: 12, budget: 16_384 }));
        assert_eq!(declared(&wider).unwrap().max_tile(), 128);
        for (bad, key) in [
            (&[("halo_px", "6"), ("pixel_budget", "65536"), ("receptive_radius_px", "7")][..], "halo_px"),
            (&[("halo_px", "9"), ("pixel_budget", "65536"), ("receptive_radius_px", "7")], "halo_px"),
            (&[("halo_px", "8"), ("pixel_budget", "65536"), ("receptive_radius_px", "9")], "halo_px"),
            (
                &[("halo_px", "8"), ("pixel_budget", "65536"), ("receptive_radius_px", "3")],
                "receptive_radius_px",
            ),
            (&[("halo_px", "8"), ("pixel_budget", "262144"), ("receptive_radius_px", "7")], "pixel_budget"),
            (&[("halo_px", "8"), ("pixel_budget", "100"), ("receptive_radius_px", "7")], "pixel_budget"),
            (&[("halo_px", "8"), ("pixel_budget", "lots"), ("receptive_radius_px", "7")], "pixel_budget"),
            (&[("halo_px", "8"), ("receptive_radius_px", "7")], "pixel_budget"),
        ] {
            let err = declared(bad).unwrap_err();
            assert!(matches!(&err, TilingError::Metadata { key: k, .. } if *k == key), "{bad:?}: {err}");
        }
    }

    #[test]
    fn invalid_parameters_are_clear_errors() {
        let err = plan(10, 10, 257, HALO, PIXEL_BUDGET).unwrap_err();
        assert!(err.to_string().contains("must be even and between 18 and 256"), "{err}");
        assert!(plan(10, 10, 512, HALO, PIXEL_BUDGET).is_err());
        assert!(plan(10, 10, 16, HALO, PIXEL_BUDGET).is_err());
        assert!(plan(10, 10, 256, 6, PIXEL_BUDGET).is_err());
        assert!(plan(10, 10, 256, 9, PIXEL_BUDGET).is_err());
        assert_eq!(
            plan(0, 10, 256, HALO, PIXEL_BUDGET),
            Err(TilingError::EmptyImage { height: 0, width: 10 })
        );
        assert_eq!(max_tile(PIXEL_BUDGET), 256);
        assert_eq!(max_tile(1000), 30);
    }
}
