//! `--tissue auto`: tissue in a low-resolution RGB view of a bright-field slide (H&E, IHC).
//!
//! The rule. Stained tissue is coloured and glass is grey-white, so the measure is the HSV saturation
//! `255 * (max - min) / max` of each pixel (0 for nearly black pixels, `max < DARK`, which are outside the
//! scanned area or debris, never stain). A 3x3 median takes out single-pixel noise of the scanner and of
//! JPEG blocks. The threshold is Otsu's on the saturation histogram, kept within
//! [`MIN_THRESHOLD`]..=[`MAX_THRESHOLD`]: the floor keeps the noise of a nearly empty slide (where Otsu
//! splits the glass' own noise) out, the ceiling keeps pale tissue in when dark staining pulls Otsu's
//! threshold up; `--tissue-threshold` replaces it. Tissue is saturation above the threshold. Then the mask
//! is cleaned: specks smaller than [`MIN_TISSUE_AREA`] image pixels dropped, holes of at most
//! [`MAX_HOLE_AREA`] image pixels filled, and it is grown by the halo (rounded up to whole mask pixels, at
//! least one) so that every window whose pixels touch tissue is predicted, and the low-resolution edge
//! (where a mask pixel is part glass) is covered.

use super::morph;
use super::Mask;

/// Pixels darker than this in every channel are not tissue (no reliable hue).
pub const DARK: u8 = 24;
/// The lowest automatic saturation threshold (of 255).
pub const MIN_THRESHOLD: u8 = 20;
/// The highest automatic saturation threshold (of 255).
pub const MAX_THRESHOLD: u8 = 30;
/// Tissue regions smaller than this many image pixels (a quarter of a 256 x 256 window) are specks.
pub const MIN_TISSUE_AREA: f64 = 128.0 * 128.0;
/// Holes in tissue of at most this many image pixels (one 256 x 256 window) are filled.
pub const MAX_HOLE_AREA: f64 = 256.0 * 256.0;
/// The mask's pixel should be at most this many image pixels wide when a level is chosen for it.
pub const TARGET_DOWNSAMPLE: f64 = 32.0;

/// How tissue is told from glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TissueRule {
    /// Saturation threshold (0-255; tissue is above it); `None`: Otsu's, bounded (see the module).
    pub threshold: Option<u8>,
}

/// A detected tissue mask and how it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The cleaned, grown mask, one pixel per pixel of the view.
    pub mask: Mask,
    /// The threshold used.
    pub threshold: u8,
    /// Otsu's threshold of the view (what `auto` started from).
    pub otsu: u8,
    /// The share of the view above the threshold before cleaning and growth.
    pub raw_fraction: f64,
}

/// The HSV saturation of each RGB pixel (0-255), 0 for pixels darker than [`DARK`].
pub fn saturation(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            let max = p[0].max(p[1]).max(p[2]);
            let min = p[0].min(p[1]).min(p[2]);
            if max < DARK {
                0
            } else {
                ((max - min) as u32 * 255 / max as u32) as u8
            }
        })
        .collect()
}

/// The 3x3 median of each pixel, the border replicated.
pub fn median3(values: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; values.len()];
    let mut window = [0u8; 9];
    for y in 0..height {
        for x in 0..width {
            let mut n = 0;
            for dy in [-1i64, 0, 1] {
                for dx in [-1i64, 0, 1] {
                    let ny = (y as i64 + dy).clamp(0, height as i64 - 1) as usize;
                    let nx = (x as i64 + dx).clamp(0, width as i64 - 1) as usize;
                    window[n] = values[ny * width + nx];
                    n += 1;
                }
            }
            window.sort_unstable();
            out[y * width + x] = window[4];
        }
    }
    out
}

/// Otsu's threshold of 8-bit values: the `t` that maximises the between-class variance of `<= t` and
/// `> t` (the smallest such `t`); 0 when all values are equal.
pub fn otsu(values: &[u8]) -> u8 {
    let mut histogram = [0u64; 256];
    for &v in values {
        histogram[v as usize] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = histogram.iter().enumerate().map(|(v, &n)| v as f64 * n as f64).sum();
    let (mut below, mut sum_below) = (0f64, 0f64);
    let (mut best, mut best_t) = (-1f64, 0u8);
    for (t, &n) in histogram.iter().enumerate().take(255) {
        below += n as f64;
        sum_below += t as f64 * n as f64;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let (m0, m1) = (sum_below / below, (sum_all - sum_below) / above);
        let between = below * above * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t
}

/// Tissue in an RGB view of `width` x `height` whose pixel is `scale` image pixels (of the level
/// predicted) wide and high; `halo`: the tile plan's halo in image pixels. See the module for the rule.
pub fn detect(
    rgb: &[u8],
    width: usize,
    height: usize,
    scale: (f64, f64),
    halo: usize,
    rule: TissueRule,
) -> Detection {
    assert_eq!(rgb.len(), width * height * 3, "RGB, three bytes per pixel");
    let smooth = median3(&saturation(rgb), width, height);
    let found = otsu(&smooth);
    let threshold = rule.threshold.unwrap_or(found.clamp(MIN_THRESHOLD, MAX_THRESHOLD));
    let mut mask = Mask { width, height, data: smooth.iter().map(|&s| s > threshold).collect() };
    let raw_fraction = mask.fraction();
    let pixel_area = scale.0 * scale.1;
    morph::drop_specks(&mut mask, (MIN_TISSUE_AREA / pixel_area).ceil() as usize);
    morph::fill_holes(&mut mask, (MAX_HOLE_AREA / pixel_area).floor() as usize);
    morph::dilate(&mut mask, grow_radius(halo, scale));
    Detection { mask, threshold, otsu: found, raw_fraction }
}

/// The halo in mask pixels, rounded up, at least one (the mask's own pixel edge).
pub fn grow_radius(halo: usize, scale: (f64, f64)) -> usize {
    let finest = scale.0.min(scale.1).max(f64::MIN_POSITIVE);
    ((halo as f64 / finest).ceil() as usize).max(1)
}

/// The level to detect tissue at: of the levels' downsamples relative to the level predicted (1 for
/// itself, in order), the coarsest at most [`TARGET_DOWNSAMPLE`]; the level predicted when none is
/// coarser.
pub fn choose_level(downsamples: &[f64], predicted: usize) -> usize {
    let base = downsamples.get(predicted).copied().unwrap_or(1.0);
    let mut best = predicted;
    for (i, &d) in downsamples.iter().enumerate() {
        let relative = d / base;
        if (1.0..=TARGET_DOWNSAMPLE).contains(&relative) && relative > downsamples[best] / base {
            best = i;
        }
    }
    best
}

/// A view reduced from full-resolution rows by averaging `factor` x `factor` blocks (edge blocks over
/// the pixels they have), for images without a suitable pyramid level: rows in, in any chunks; the view's
/// rows out when their blocks are complete. Holds one row of sums.
pub struct BoxReducer {
    width: usize,
    factor: usize,
    sums: Vec<u64>,
    rows_in_block: usize,
    out: Vec<u8>,
}

impl BoxReducer {
    /// A reducer of RGB rows `width` pixels wide by `factor` (at least 1).
    pub fn new(width: usize, factor: usize) -> BoxReducer {
        let factor = factor.max(1);
        BoxReducer {
            width,
            factor,
            sums: vec![0; width.div_ceil(factor) * 3],
            rows_in_block: 0,
            out: Vec::new(),
        }
    }

    /// The view's width.
    pub fn view_width(&self) -> usize {
        self.width.div_ceil(self.factor)
    }

    /// Adds full-resolution RGB rows.
    pub fn push(&mut self, rgb: &[u8]) {
        for row in rgb.chunks_exact(self.width * 3) {
            for (x, p) in row.chunks_exact(3).enumerate() {
                let o = (x / self.factor) * 3;
                for (sum, &v) in self.sums[o..o + 3].iter_mut().zip(p) {
                    *sum += v as u64;
                }
            }
            self.rows_in_block += 1;
            if self.rows_in_block == self.factor {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let (w, f) = (self.width, self.factor);
        for (i, s) in self.sums.iter_mut().enumerate() {
            let column = i / 3;
            let cols = (w - column * f).min(f) as u64;
            let n = cols * self.rows_in_block as u64;
            self.out.push(((*s + n / 2) / n) as u8);
            *s = 0;
        }
        self.rows_in_block = 0;
    }

    /// Ends the image (a partial last block counts) and returns the view, RGB row by row.
    pub fn finish(mut self) -> Vec<u8> {
        if self.rows_in_block > 0 {
            self.emit();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_of_grey_colour_and_black() {
        assert_eq!(saturation(&[240, 240, 240, 255, 0, 0, 200, 100, 150, 10, 0, 5]), [0, 255, 127, 0]);
    }

    #[test]
    fn otsu_splits_two_modes_between_them() {
        let mut values = vec![5u8; 700];
        values.extend(vec![120u8; 300]);
        let t = otsu(&values);
        assert!((5..120).contains(&t), "{t}");
        assert_eq!(otsu(&[7; 50]), 0);
    }

    #[test]
    fn the_median_takes_out_single_pixels() {
        let mut v = vec![10u8; 25];
        v[12] = 200;
        v[0] = 0;
        assert_eq!(median3(&v, 5, 5), vec![10u8; 25]);
    }

    #[test]
    fn the_level_is_the_coarsest_within_the_target() {
        assert_eq!(choose_level(&[1.0, 4.0, 16.0, 64.0], 0), 2);
        assert_eq!(choose_level(&[1.0, 4.0, 16.0, 64.0], 1), 3);
        assert_eq!(choose_level(&[1.0], 0), 0);
        assert_eq!(choose_level(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 0), 5);
    }

    #[test]
    fn the_halo_grows_by_whole_mask_pixels_rounded_up() {
        assert_eq!(grow_radius(8, (32.0, 32.0)), 1);
        assert_eq!(grow_radius(8, (4.0, 4.0)), 2);
        assert_eq!(grow_radius(8, (3.0, 5.0)), 3);
        assert_eq!(grow_radius(8, (1.0, 1.0)), 8);
    }

    #[test]
    fn the_reducer_averages_blocks_and_partial_edges() {
        // 5 x 3 pixels, factor 2: blocks of 2x2, 1x2 at the right, 2x1 and 1x1 at the bottom.
        let mut rgb = Vec::new();
        for y in 0..3u8 {
            for x in 0..5u8 {
                rgb.extend([10 * x + y, 0, 255]);
            }
        }
        let mut r = BoxReducer::new(5, 2);
        assert_eq!(r.view_width(), 3);
        r.push(&rgb[..15 * 2]);
        r.push(&rgb[15 * 2..]);
        let view = r.finish();
        let red: Vec<u8> = view.chunks(3).map(|p| p[0]).collect();
        // (0+10+1+11)/4 = 5.5 -> 6, (20+30+21+31)/4 = 25.5 -> 26, (40+41)/2 = 40.5 -> 41; then row 2.
        assert_eq!(red, [6, 26, 41, 7, 27, 42]);
        assert!(view.chunks(3).all(|p| p[1] == 0 && p[2] == 255));
    }

    /// A view of glass (off-white with noise) and two stained islands, one with a small hole, plus specks.
    fn slide_view(w: usize, h: usize, seed: u64) -> (Vec<u8>, Vec<bool>) {
        let mut state = seed;
        let mut noise = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % 13) as i32 - 6
        };
        let mut rgb = Vec::with_capacity(w * h * 3);
        let mut truth = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64, y as f64);
                let island1 = (fx - 20.0).powi(2) / 144.0 + (fy - 20.0).powi(2) / 100.0 <= 1.0;
                let hole = (fx - 20.0).powi(2) + (fy - 20.0).powi(2) <= 2.0;
                let island2 = (40..56).contains(&x) && (30..44).contains(&y);
                let tissue = (island1 && !hole) || island2;
                truth.push(tissue);
                let base: [i32; 3] = if tissue {
                    if (x + y) % 3 == 0 {
                        [120, 60, 150]
                    } else {
                        [220, 150, 200]
                    }
                } else if x == 60 && y == 5 {
                    [150, 90, 160] // a lone stained speck
                } else {
                    [238, 236, 240]
                };
                for c in base {
                    rgb.push((c + noise()).clamp(0, 255) as u8);
                }
            }
        }
        (rgb, truth)
    }

    #[test]
    fn islands_on_noisy_glass_are_found_whole_and_specks_dropped() {
        let (w, h) = (64, 48);
        let (rgb, truth) = slide_view(w, h, 3);
        let d = detect(&rgb, w, h, (32.0, 32.0), 8, TissueRule::default());
        assert!((MIN_THRESHOLD..=MAX_THRESHOLD).contains(&d.threshold));
        for (i, &t) in truth.iter().enumerate() {
            assert!(!t || d.mask.data[i], "tissue pixel {i} missed");
        }
        // The small hole is filled, the lone speck dropped, glass away from the islands is background.
        assert!(d.mask.get(20, 20));
        assert!(!d.mask.get(60, 5));
        assert!(!d.mask.get(2, 45) && !d.mask.get(62, 2));
        // Grown by one mask pixel (the halo, 8 image pixels, is under one mask pixel of 32).
        assert!(d.mask.get(39, 37) && !d.mask.get(37, 37));
    }

    #[test]
    fn a_slide_of_glass_only_gives_an_empty_mask() {
        let (w, h) = (64, 48);
        let mut state = 11u64;
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (236 + ((state >> 33) % 9) as i32 - 4) as u8
            })
            .collect();
        let d = detect(&rgb, w, h, (32.0, 32.0), 8, TissueRule::default());
        assert_eq!(d.threshold, MIN_THRESHOLD);
        assert_eq!(d.mask.count(), 0);
    }

    #[test]
    fn a_given_threshold_replaces_otsu() {
        let (rgb, _) = slide_view(64, 48, 5);
        let d = detect(&rgb, 64, 48, (32.0, 32.0), 8, TissueRule { threshold: Some(250) });
        assert_eq!(d.threshold, 250);
        assert_eq!(d.mask.count(), 0);
    }
}
