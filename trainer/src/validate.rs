//! Validation during training: the exact tiled forward pass over whole validation images (the runner's
//! tiling rule, reimplemented here because the trainer must not depend on the runner) and the scores of its
//! predictions. The tile plan and the scores are pure; only [`validate`] runs the network.
//!
//! Why tiled equals untiled: every kept pixel lies at least [`HALO`] (>= the receptive radius, 7) pixels
//! inside its window unless the window reaches the image edge, where the network's own zero padding sees
//! what a whole-image pass sees; window origins are even, so the 2x2 pool grid lines up.

use candle_core::{Device, Tensor};

use crate::checkpoint::ValRecord;
use crate::data::TrainingImage;
use crate::model::{SegNet, HALO, PIXEL_BUDGET};

/// Largest window side: 256 x 256 is the whole pixel budget.
pub const TILE: usize = 256;

/// One window fed to the network and the part of its output that is kept, in (padded) image coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub y: usize,
    pub x: usize,
    pub height: usize,
    pub width: usize,
    pub keep_y: usize,
    pub keep_x: usize,
    pub keep_height: usize,
    pub keep_width: usize,
}

/// (window start, window length, keep start, keep length) along one axis of even `length`.
fn segments(length: usize, tile: usize, halo: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut keep = 0;
    loop {
        let start = keep - keep.min(halo);
        if start + tile >= length {
            // The last window reaches the edge, shorter if need be, rather than shifted back.
            out.push((start, length - start, keep, length - keep));
            return out;
        }
        let keep_end = start + tile - halo;
        out.push((start, tile, keep, keep_end - keep));
        keep = keep_end;
    }
}

/// Forward passes for an image of `height` x `width` (each rounded up to even) with square windows of
/// side at most `tile` (even, > 2 x halo): windows of one size are batched, at most `budget` input pixels a
/// pass.
pub fn plan(height: usize, width: usize, tile: usize, budget: usize) -> Vec<Vec<Tile>> {
    assert!(tile % 2 == 0 && tile > 2 * HALO && tile * tile <= budget, "a valid tile size");
    let (ph, pw) = (height + height % 2, width + width % 2);
    let mut groups: Vec<Vec<Tile>> = Vec::new();
    for &(y, h, keep_y, keep_height) in &segments(ph, tile, HALO) {
        for &(x, w, keep_x, keep_width) in &segments(pw, tile, HALO) {
            let t = Tile { y, x, height: h, width: w, keep_y, keep_x, keep_height, keep_width };
            match groups.iter_mut().find(|g| (g[0].height, g[0].width) == (h, w)) {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
    }
    groups
        .into_iter()
        .flat_map(|g| {
            let per_pass = budget / (g[0].height * g[0].width);
            g.chunks(per_pass).map(<[Tile]>::to_vec).collect::<Vec<_>>()
        })
        .collect()
}

/// Runs the network over `image` pass by pass as [`plan`] says (zeros pad an odd size at the bottom/right,
/// as in the runner) and calls `visit(row, col, background logit, foreground logit)` once for every pixel of
/// the image.
pub fn tiled_logits(
    net: &SegNet,
    image: &TrainingImage,
    tile: usize,
    device: &Device,
    mut visit: impl FnMut(usize, usize, f32, f32),
) -> candle_core::Result<()> {
    let (iw, ih) = (image.width, image.height);
    for pass in plan(ih, iw, tile, PIXEL_BUDGET) {
        let (h, w) = (pass[0].height, pass[0].width);
        let plane = h * w;
        let mut input = vec![0f32; pass.len() * 3 * plane];
        for (b, t) in pass.iter().enumerate() {
            for row in 0..h.min(ih.saturating_sub(t.y)) {
                for col in 0..w.min(iw.saturating_sub(t.x)) {
                    let src = ((t.y + row) * iw + t.x + col) * 3;
                    for ch in 0..3 {
                        input[(b * 3 + ch) * plane + row * w + col] = image.rgb[src + ch] as f32 / 255.0;
                    }
                }
            }
        }
        let x = Tensor::from_vec(input, (pass.len(), 3, h, w), device)?;
        let logits: Vec<f32> = net.forward(&x)?.flatten_all()?.to_vec1()?;
        for (b, t) in pass.iter().enumerate() {
            for y in t.keep_y..(t.keep_y + t.keep_height).min(ih) {
                for x in t.keep_x..(t.keep_x + t.keep_width).min(iw) {
                    let at = (y - t.y) * w + (x - t.x);
                    visit(y, x, logits[b * 2 * plane + at], logits[(b * 2 + 1) * plane + at]);
                }
            }
        }
    }
    Ok(())
}

/// Counts over validation pixels, added up across images.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
    /// Sum of the pixels' cross-entropy.
    pub loss_sum: f64,
}

impl Scores {
    /// Adds one pixel with its logits and true label.
    pub fn add(&mut self, background: f32, foreground: f32, label: u8) {
        let (l0, l1) = (background as f64, foreground as f64);
        let top = l0.max(l1);
        let log_sum = top + ((l0 - top).exp() + (l1 - top).exp()).ln();
        self.loss_sum += log_sum - if label == 1 { l1 } else { l0 };
        // Foreground where its probability is above one half, as the runner's mask.
        match (l1 > l0, label == 1) {
            (true, true) => self.true_positive += 1,
            (true, false) => self.false_positive += 1,
            (false, true) => self.false_negative += 1,
            (false, false) => self.true_negative += 1,
        }
    }

    pub fn pixels(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// The record of these scores at `iteration`. An empty foreground on both sides counts as perfect.
    pub fn record(&self, iteration: usize) -> ValRecord {
        let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
        let (tp, fp, fn_) = (self.true_positive, self.false_positive, self.false_negative);
        ValRecord {
            iteration,
            loss: self.loss_sum / self.pixels().max(1) as f64,
            iou: ratio(tp, tp + fp + fn_),
            dice: ratio(2 * tp, 2 * tp + fp + fn_),
            accuracy: ratio(tp + self.true_negative, self.pixels()),
        }
    }
}

/// One validation image: the pixels the network sees and the first row that is scored (rows above it are
/// context only: with `--val-fraction` they are the 8 training rows just above the held-out ones, so the
/// held-out predictions see what a whole-image prediction would).
#[derive(Debug, Clone)]
pub struct ValImage {
    pub image: TrainingImage,
    pub scored_from_row: usize,
}

impl ValImage {
    /// The held-out rows `start..` of `image`, with up to [`HALO`] rows above them as context (an even
    /// number, so that the pool grid of the held-out rows is that of the whole image).
    pub fn held_out(image: &TrainingImage, start: usize) -> ValImage {
        let top = start.saturating_sub(HALO) / 2 * 2;
        ValImage { image: image.rows(top, image.height), scored_from_row: start - top }
    }

    /// Input pixels of its forward passes, halos included (what validation costs).
    pub fn input_pixels(&self) -> usize {
        plan(self.image.height, self.image.width, TILE, PIXEL_BUDGET)
            .iter()
            .flat_map(|pass| pass.iter().map(|t| t.height * t.width))
            .sum()
    }
}

/// Predicts every validation image by the exact tiled pass and scores the scored rows.
pub fn validate(
    net: &SegNet,
    images: &[ValImage],
    iteration: usize,
    device: &Device,
) -> candle_core::Result<ValRecord> {
    let mut scores = Scores::default();
    for v in images {
        let w = v.image.width;
        tiled_logits(net, &v.image, TILE, device, |y, x, l0, l1| {
            if y >= v.scored_from_row {
                scores.add(l0, l1, v.image.labels[y * w + x]);
            }
        })?;
    }
    Ok(scores.record(iteration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Normalization;

    #[test]
    fn plans_cover_every_pixel_once_within_the_budget() {
        for (h, w) in [(1, 1), (17, 300), (256, 256), (257, 513), (500, 250), (33, 34)] {
            for tile in [18, 32, 100, 256] {
                let (ph, pw) = (h + h % 2, w + w % 2);
                let mut cover = vec![0u8; ph * pw];
                for pass in plan(h, w, tile, PIXEL_BUDGET) {
                    assert!(pass.len() * pass[0].height * pass[0].width <= PIXEL_BUDGET);
                    for t in pass {
                        assert!(t.y % 2 == 0 && t.x % 2 == 0 && t.height % 2 == 0 && t.width % 2 == 0);
                        assert!(t.height <= tile && t.width <= tile);
                        assert!(t.y + t.height <= ph && t.x + t.width <= pw);
                        // The kept part is a halo away from every window side that is not the image edge.
                        assert!(t.y == 0 || t.keep_y >= t.y + HALO);
                        assert!(t.x == 0 || t.keep_x >= t.x + HALO);
                        assert!(t.y + t.height == ph || t.y + t.height >= t.keep_y + t.keep_height + HALO);
                        assert!(t.x + t.width == pw || t.x + t.width >= t.keep_x + t.keep_width + HALO);
                        for y in t.keep_y..t.keep_y + t.keep_height {
                            for x in t.keep_x..t.keep_x + t.keep_width {
                                cover[y * pw + x] += 1;
                            }
                        }
                    }
                }
                assert!(cover.iter().all(|&c| c == 1), "{h}x{w} tile {tile}");
            }
        }
    }

    fn textured(w: usize, h: usize) -> TrainingImage {
        let rgb = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        let labels = (0..w * h).map(|i| u8::from((i / w + i % w) % 5 < 2)).collect();
        TrainingImage { name: "t".into(), mask_name: "m".into(), width: w, height: h, rgb, labels }
    }

    #[test]
    fn tiled_logits_equal_one_whole_image_pass() {
        let dev = Device::Cpu;
        let norm = Normalization { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
        let net = SegNet::random(4, norm, &dev).unwrap();
        // Odd sizes: the whole-image reference pads to even with zeros, as the tiled pass does.
        let (w, h) = (75, 61);
        let image = textured(w, h);
        let (pw, ph) = (w + 1, h + 1);
        let mut padded = vec![0f32; 3 * ph * pw];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    padded[c * ph * pw + y * pw + x] = image.rgb[(y * w + x) * 3 + c] as f32 / 255.0;
                }
            }
        }
        let whole = net.forward(&Tensor::from_vec(padded, (1, 3, ph, pw), &dev).unwrap()).unwrap();
        let whole: Vec<f32> = whole.flatten_all().unwrap().to_vec1().unwrap();
        let mut seen = vec![false; w * h];
        let mut worst = 0f32;
        tiled_logits(&net, &image, 32, &dev, |y, x, l0, l1| {
            assert!(!seen[y * w + x]);
            seen[y * w + x] = true;
            worst = worst.max((l0 - whole[y * pw + x]).abs()).max((l1 - whole[ph * pw + y * pw + x]).abs());
        })
        .unwrap();
        assert!(seen.iter().all(|&s| s));
        assert!(worst <= 1e-4, "tiled differs from untiled by {worst}");
    }

    #[test]
    fn scores_count_pixels_like_the_runner() {
        let mut s = Scores::default();
        // tp 2, fp 1, fn 1, tn 4 (foreground logit above background = predicted foreground)
        for (l0, l1, label) in [(0., 1., 1), (0., 2., 1), (0., 1., 0), (1., 0., 1)] {
            s.add(l0, l1, label);
        }
        for _ in 0..4 {
            s.add(3.0, -3.0, 0);
        }
        let r = s.record(9);
        assert_eq!(r.iteration, 9);
        assert!((r.iou - 0.5).abs() < 1e-12 && (r.dice - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.accuracy - 0.75).abs() < 1e-12);
        // Cross-entropy of logits (0, 0) is ln 2 whatever the label.
        let mut even = Scores::default();
        even.add(0.0, 0.0, 1);
        assert!((even.record(1).loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(Scores::default().record(1).iou, 1.0);
    }

    #[test]
    fn held_out_rows_keep_an_even_context_of_a_halo() {
        let image = textured(10, 40);
        let v = ValImage::held_out(&image, 30);
        assert_eq!((v.image.height, v.scored_from_row), (18, 8));
        assert_eq!(v.image.rgb[..30], image.rgb[22 * 30..23 * 30]);
        let v = ValImage::held_out(&image, 5);
        assert_eq!((v.image.height, v.scored_from_row), (40, 5));
    }
}
