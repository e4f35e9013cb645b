//! The levels of a pyramidal output and the 2x2 reductions from one level to the next, as pure functions
//! of rows (no files); [`SampleKind`], what every writer's samples are; and the cascade every pyramid
//! writer (OME-TIFF, OME-Zarr, the shards, the label) fills its levels with ([`LevelRows`],
//! [`push_level_row`]), which hands each level's full band to the writer.
//!
//! - Level sizes: each level is ceil(w/2) x ceil(h/2) of the one above, down to the first level whose longer
//!   side is at most [`SMALLEST_SIDE`].
//! - A 2x2 block at the right or bottom edge of an odd-sized level has only the pixels that exist (2 or 1):
//!   each rule below uses those.
//! - [`Reduction::Mean`] (probabilities, overlay, error map; RGB per channel): the mean of the block; 8-bit
//!   values are rounded half up, `(sum + n/2) / n`; float32 values are summed in f32 and divided by n.
//! - [`Reduction::Mask`] (the mask, 0 or 255): a block is foreground (255) when at least half of its pixels
//!   are (2 of 4, 1 of 2, 1 of 1): ties go to foreground, so that structures one pixel thin stay visible at
//!   every level instead of vanishing as a strict majority would make them; an isolated single pixel (1 of
//!   4) is dropped, so that the lower levels do not swell as the max would make them. A pixel is foreground
//!   when its value is at least 128.

/// Levels stop at the first one whose longer side is at most this.
pub const SMALLEST_SIDE: usize = 1024;

/// How a 2x2 block becomes one pixel of the next level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The mean of the block's pixels, per channel (8-bit: rounded half up).
    Mean,
    /// Foreground (255) when at least half of the block's pixels are foreground (>= 128), else 0.
    Mask,
}

/// The sizes (width, height) of every level, full resolution first.
pub fn level_sizes(width: usize, height: usize) -> Vec<(usize, usize)> {
    let mut sizes = vec![(width, height)];
    let (mut w, mut h) = (width, height);
    while w.max(h) > SMALLEST_SIDE {
        (w, h) = (w.div_ceil(2), h.div_ceil(2));
        sizes.push((w, h));
    }
    sizes
}

/// One row of the next level from two rows (`bottom` is `None` for the last row of an odd height) of
/// `width` pixels of `channels` 8-bit samples; `out` gets ceil(width/2) pixels.
pub fn reduce_rows_u8(
    top: &[u8],
    bottom: Option<&[u8]>,
    width: usize,
    channels: usize,
    rule: Reduction,
    out: &mut Vec<u8>,
) {
    out.clear();
    for x in (0..width).step_by(2) {
        let xs = if x + 1 < width { 2 } else { 1 };
        for c in 0..channels {
            let (mut sum, mut n, mut on) = (0u32, 0u32, 0u32);
            for row in std::iter::once(top).chain(bottom) {
                for dx in 0..xs {
                    let v = row[(x + dx) * channels + c];
                    sum += u32::from(v);
                    on += u32::from(v >= 128);
                    n += 1;
                }
            }
            out.push(match rule {
                Reduction::Mean => ((sum + n / 2) / n) as u8,
                Reduction::Mask => {
                    if 2 * on >= n {
                        255
                    } else {
                        0
                    }
                }
            });
        }
    }
}

/// One row of the next level from two rows of `width` float32 values (`bottom` is `None` for the last row
/// of an odd height): the mean of each block's values; `out` gets ceil(width/2) values.
pub fn reduce_rows_f32(top: &[f32], bottom: Option<&[f32]>, width: usize, out: &mut Vec<f32>) {
    out.clear();
    for x in (0..width).step_by(2) {
        let xs = if x + 1 < width { 2 } else { 1 };
        let (mut sum, mut n) = (0f32, 0u32);
        for row in std::iter::once(top).chain(bottom) {
            for v in &row[x..x + xs] {
                sum += v;
                n += 1;
            }
        }
        out.push(sum / n as f32);
    }
}

/// What the samples of an output are, and how a 2x2 block of them becomes one sample of the next
/// level: one type for every writer (striped TIFF, OME-TIFF, OME-Zarr, the label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// 8-bit samples, 1 (gray) or 3 (RGB) a pixel, reduced by `rule`.
    U8 { channels: usize, rule: Reduction },
    /// One float32 sample a pixel, reduced by the mean.
    F32,
}

impl SampleKind {
    pub fn channels(self) -> usize {
        match self {
            SampleKind::U8 { channels, .. } => channels,
            SampleKind::F32 => 1,
        }
    }

    pub fn pixel_bytes(self) -> usize {
        match self {
            SampleKind::U8 { channels, .. } => channels,
            SampleKind::F32 => 4,
        }
    }
}

/// What every streamed pyramid writer keeps of one level: its size, the rows received, the band of rows
/// being filled (one row of tiles or chunks), and a row waiting for the row below it.
pub struct LevelRows {
    pub width: usize,
    pub height: usize,
    /// Rows received so far.
    pub rows: usize,
    /// The rows of the tile or chunk row being filled, as stored.
    pub band: Vec<u8>,
    /// A row waiting for the row below it, to be reduced into the next level.
    pending: Option<Vec<u8>>,
}

impl LevelRows {
    pub fn new(width: usize, height: usize) -> LevelRows {
        LevelRows { width, height, rows: 0, band: Vec::new(), pending: None }
    }
}

/// Adds `row` to the first of `levels` and the rows it completes to the levels below (every two rows of a
/// level reduce to one row of the next). A level's band goes to `flush(i, level)` when it holds `band_rows`
/// rows or the level's last row; `flush` writes it out and empties it.
///
/// A level below the first may be the reduction rounded down (floor(w/2) x floor(h/2), as some OME-Zarr
/// images are that labels must match): the reduced rows are cut to its width and a row past its height
/// is dropped.
pub fn push_level_row<L: AsMut<LevelRows>>(
    levels: &mut [L],
    samples: SampleKind,
    band_rows: usize,
    mut row: Vec<u8>,
    mut flush: impl FnMut(usize, &mut L) -> Result<(), String>,
) -> Result<(), String> {
    let count = levels.len();
    for (i, level) in levels.iter_mut().enumerate() {
        let fill = level.as_mut();
        if fill.rows == fill.height {
            if i > 0 {
                return Ok(());
            }
            return Err("more rows than the image has (a bug in the runner)".into());
        }
        row.truncate(fill.width * samples.pixel_bytes());
        fill.band.extend_from_slice(&row);
        fill.rows += 1;
        let last = fill.rows == fill.height;
        if last || fill.band.len() == band_rows * fill.width * samples.pixel_bytes() {
            flush(i, level)?;
        }
        if i + 1 == count {
            break;
        }
        let fill = level.as_mut();
        let (top, bottom) = match fill.pending.take() {
            None if !last => {
                fill.pending = Some(row);
                return Ok(());
            }
            Some(top) => (top, Some(row)),
            None => (row, None),
        };
        row = reduce(samples, fill.width, &top, bottom.as_deref());
    }
    Ok(())
}

/// One row of the next level from `top` and `bottom` (rows of `width` pixels, bytes as stored).
pub fn reduce(samples: SampleKind, width: usize, top: &[u8], bottom: Option<&[u8]>) -> Vec<u8> {
    match samples {
        SampleKind::U8 { channels, rule } => {
            let mut out = Vec::with_capacity(width.div_ceil(2) * channels);
            reduce_rows_u8(top, bottom, width, channels, rule, &mut out);
            out
        }
        SampleKind::F32 => {
            let floats = |b: &[u8]| -> Vec<f32> {
                b.chunks_exact(4).map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]])).collect()
            };
            let mut out = Vec::with_capacity(width.div_ceil(2));
            reduce_rows_f32(&floats(top), bottom.map(floats).as_deref(), width, &mut out);
            out.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_halve_rounding_up_until_the_longer_side_fits() {
        assert_eq!(level_sizes(3000, 2000), vec![(3000, 2000), (1500, 1000), (750, 500)]);
        assert_eq!(level_sizes(1024, 7), vec![(1024, 7)]);
        assert_eq!(level_sizes(1025, 3), vec![(1025, 3), (513, 2)]);
        assert_eq!(level_sizes(4097, 1), vec![(4097, 1), (2049, 1), (1025, 1), (513, 1)]);
        assert_eq!(level_sizes(5, 2049), vec![(5, 2049), (3, 1025), (2, 513)]);
    }

    #[test]
    fn the_mean_rounds_half_up_and_uses_the_pixels_of_odd_edges() {
        let mut out = Vec::new();
        // 3 pixels wide, RGB: one full block and an edge column.
        let top = [0, 10, 255, 1, 11, 254, 7, 8, 9];
        let bottom = [0, 10, 255, 2, 10, 255, 9, 8, 200];
        reduce_rows_u8(&top, Some(&bottom), 3, 3, Reduction::Mean, &mut out);
        // (0+1+0+2)/4 = 0.75 -> 1; (10+11+10+10)/4 = 10.25 -> 10; (255+254+255+255)/4 = 254.75 -> 255;
        // the edge: (7+9)/2 = 8, 8, (9+200)/2 = 104.5 -> 105.
        assert_eq!(out, [1, 10, 255, 8, 8, 105]);
        // The last row of an odd height: one row.
        reduce_rows_u8(&top, None, 3, 3, Reduction::Mean, &mut out);
        assert_eq!(out, [1, 11, 255, 7, 8, 9]);
        // The corner of an odd image: one pixel.
        reduce_rows_u8(&[3], None, 1, 1, Reduction::Mean, &mut out);
        assert_eq!(out, [3]);
    }

    #[test]
    fn a_mask_block_is_foreground_from_half_of_its_pixels() {
        let mut out = Vec::new();
        let f = 255;
        // Blocks with 0, 1, 2 and 4 foreground pixels, then an edge column with 1 of 2.
        let top = [0, 0, f, 0, f, 0, f, f, f];
        let bottom = [0, 0, 0, 0, f, 0, f, f, 0];
        reduce_rows_u8(&top, Some(&bottom), 9, 1, Reduction::Mask, &mut out);
        assert_eq!(out, [0, 0, f, f, f]);
        // A diagonal line one pixel thin stays: each block holds 2 of its pixels.
        reduce_rows_u8(&[f, 0, f, 0], Some(&[0, f, 0, f]), 4, 1, Reduction::Mask, &mut out);
        assert_eq!(out, [f, f]);
        // The last row of an odd height: 1 of 2 is foreground, 0 of 1 is not.
        reduce_rows_u8(&[0, f, 0], None, 3, 1, Reduction::Mask, &mut out);
        assert_eq!(out, [f, 0]);
    }

    #[test]
    fn float_means_use_the_values_that_exist() {
        let mut out = Vec::new();
        reduce_rows_f32(&[0.0, 1.0, 0.5], Some(&[0.5, 0.5, 0.25]), 3, &mut out);
        assert_eq!(out, [0.5, 0.375]);
        reduce_rows_f32(&[0.0, 1.0, 0.5], None, 3, &mut out);
        assert_eq!(out, [0.5, 0.5]);
    }
}
