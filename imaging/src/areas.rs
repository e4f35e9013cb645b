//! Rectangular areas of a large image, read in one pass: what training from a few annotated areas of a
//! slide needs, in memory that grows with the areas' size and not with the slide's.
//!
//! [`merge`] is pure: it pads and clips rectangles and joins those that overlap, so that no pixel is read
//! or held twice. [`read_areas`] streams the image top to bottom in bands, skips the rows that no area
//! covers (readers with random access decode nothing there) and copies each area's part of a band.

use crate::source::{ImageSource, SourceError};

pub use crate::rect::Rect;

/// Pads each rectangle by `pad`, clips it to the image, drops the empty ones, and replaces every group of
/// overlapping rectangles by their union, until no two overlap. Sorted by top, then left.
pub fn merge(rects: &[Rect], pad: usize, width: usize, height: usize) -> Vec<Rect> {
    let mut merged: Vec<Rect> =
        rects.iter().map(|r| r.padded(pad, width, height)).filter(|r| r.area() > 0).collect();
    // A union can overlap rectangles that neither part did, so repeat until nothing changes; each pass that
    // changes something removes a rectangle, so this ends.
    loop {
        let mut changed = false;
        let mut out: Vec<Rect> = Vec::with_capacity(merged.len());
        for rect in merged {
            match out.iter().position(|o| o.overlaps(&rect)) {
                Some(i) => {
                    out[i] = out[i].union(&rect);
                    changed = true;
                }
                None => out.push(rect),
            }
        }
        merged = out;
        if !changed {
            break;
        }
    }
    merged.sort_by_key(|r| (r.top, r.left));
    merged
}

/// Reads each of `rects` (inside the image; they may overlap) from `source`, which must be at its first
/// row: the pixels of each, row-major, with the source's channels. One pass, `band_rows` rows at a time;
/// rows outside every rectangle are skipped.
pub fn read_areas(
    source: &mut ImageSource,
    rects: &[Rect],
    band_rows: usize,
) -> Result<Vec<Vec<u8>>, SourceError> {
    let (width, height) = (source.width(), source.height());
    let channels = source.channels().count();
    for rect in rects {
        assert!(rect.right() <= width && rect.bottom() <= height, "area {rect:?} outside {width}x{height}");
    }
    let mut out: Vec<Vec<u8>> = rects.iter().map(|r| Vec::with_capacity(r.area() * channels)).collect();
    let end = rects.iter().map(Rect::bottom).max().unwrap_or(0);
    let band_rows = band_rows.max(1);
    let row_bytes = width * channels;
    let mut band = Vec::new();
    let mut y = 0;
    while y < end {
        // The first row at or after y that some rectangle covers.
        let next = rects.iter().filter(|r| r.bottom() > y).map(|r| r.top.max(y)).min().unwrap_or(end);
        if next > y {
            y += source.skip_rows(next - y)?;
            continue;
        }
        // Read up to the next row where the set of covering rectangles may change, at most a band.
        let mut stop = (y + band_rows).min(end);
        for r in rects {
            if r.top > y {
                stop = stop.min(r.top.max(y + 1));
            }
        }
        band.clear();
        let rows = source.read_rows(stop - y, &mut band)?;
        for (rect, pixels) in rects.iter().zip(out.iter_mut()) {
            let (from, to) = (rect.top.max(y), rect.bottom().min(y + rows));
            for row in from..to {
                let start = (row - y) * row_bytes + rect.left * channels;
                pixels.extend_from_slice(&band[start..start + rect.width * channels]);
            }
        }
        y += rows;
        if rows == 0 {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Channels;

    fn rect(left: usize, top: usize, width: usize, height: usize) -> Rect {
        Rect { left, top, width, height }
    }

    #[test]
    fn padding_clips_to_the_image_and_drops_what_lies_outside() {
        assert_eq!(rect(2, 3, 4, 5).padded(3, 100, 100), rect(0, 0, 9, 11));
        assert_eq!(rect(95, 90, 10, 10).padded(2, 100, 100), rect(93, 88, 7, 12));
        assert_eq!(rect(120, 10, 5, 5).padded(2, 100, 100).area(), 0);
    }

    #[test]
    fn overlapping_rectangles_merge_transitively_and_apart_ones_stay() {
        // a overlaps b, and their union overlaps c, which overlaps neither alone.
        let a = rect(0, 0, 10, 10);
        let b = rect(8, 8, 10, 10);
        let c = rect(17, 0, 5, 5);
        let far = rect(50, 50, 5, 5);
        let merged = merge(&[a, far, c, b], 0, 100, 100);
        assert_eq!(merged, vec![rect(0, 0, 22, 18), far]);
        // Touching edges do not overlap.
        assert_eq!(merge(&[rect(0, 0, 5, 5), rect(5, 0, 5, 5)], 0, 100, 100).len(), 2);
        // Padding makes them overlap.
        assert_eq!(merge(&[rect(0, 0, 5, 5), rect(6, 0, 5, 5)], 1, 100, 100), vec![rect(0, 0, 12, 6)]);
        // Whatever the order, no two results overlap and every input is covered.
        let many: Vec<Rect> =
            (0..40).map(|i| rect((i * 37) % 90, (i * 53) % 90, 3 + i % 7, 2 + i % 5)).collect();
        let merged = merge(&many, 1, 100, 100);
        for (i, m) in merged.iter().enumerate() {
            assert!(merged[i + 1..].iter().all(|o| !o.overlaps(m)));
        }
        for r in &many {
            let p = r.padded(1, 100, 100);
            assert!(merged.iter().any(|m| m.union(&p) == *m), "{p:?} not covered");
        }
    }

    #[test]
    fn areas_read_in_one_pass_equal_crops_of_the_whole_image() {
        let (w, h) = (37usize, 61usize);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, w as u32, h as u32);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.write_header().unwrap().write_image_data(&gray).unwrap();
        }
        let rects = [rect(3, 5, 10, 4), rect(0, 7, 37, 2), rect(30, 40, 7, 21), rect(5, 50, 1, 1)];
        for band in [1, 3, 64] {
            let mut source = ImageSource::from_bytes(&png, "test.png", Channels::Gray).unwrap();
            let areas = read_areas(&mut source, &rects, band).unwrap();
            for (r, pixels) in rects.iter().zip(&areas) {
                let expected: Vec<u8> = (r.top..r.bottom())
                    .flat_map(|y| gray[y * w + r.left..y * w + r.right()].to_vec())
                    .collect();
                assert_eq!(pixels, &expected, "{r:?} with bands of {band}");
            }
        }
    }
}
