//! Pictures for people, computed row by row so they stream with the prediction:
//! - the overlay: the image with the predicted foreground tinted at about 40% (the tissue under it stays
//!   visible) and the predicted boundary drawn solid (a boundary pixel is a foreground pixel with a
//!   background 4-neighbour; the image border is not a boundary);
//! - the error map: against a reference mask, true positives, false positives and false negatives in three
//!   distinct colours over the dimmed image, true negatives the dimmed image alone.

/// Foreground tint of the overlay (cyan: it stands out on the usual pink and purple stains) and its weight
/// out of 256 (about 40%).
pub const TINT: [u8; 3] = [0, 200, 255];
pub const TINT_WEIGHT: u16 = 102;
/// Colour of the predicted boundary in the overlay (yellow).
pub const BOUNDARY: [u8; 3] = [255, 230, 0];
/// Error map colours: true positive (green), false positive (red), false negative (blue).
pub const TRUE_POSITIVE: [u8; 3] = [0, 200, 70];
pub const FALSE_POSITIVE: [u8; 3] = [240, 30, 30];
pub const FALSE_NEGATIVE: [u8; 3] = [40, 110, 255];
/// Weight of the error colours out of 256, and the brightness of the dimmed image out of 256.
const ERROR_WEIGHT: u16 = 166;
const DIM: u16 = 110;

fn blend(px: &[u8], colour: [u8; 3], weight: u16, out: &mut [u8]) {
    for ((o, &v), c) in out.iter_mut().zip(px).zip(colour) {
        *o = ((v as u16 * (256 - weight) + c as u16 * weight + 128) >> 8) as u8;
    }
}

/// One overlay row: `rgb` and `classes` of the row, with the class rows above and below it if the image
/// has them.
pub fn overlay_row(rgb: &[u8], above: Option<&[u8]>, classes: &[u8], below: Option<&[u8]>, out: &mut [u8]) {
    let width = classes.len();
    for x in 0..width {
        let (px, dst) = (&rgb[3 * x..3 * x + 3], &mut out[3 * x..3 * x + 3]);
        if classes[x] == 0 {
            dst.copy_from_slice(px);
            continue;
        }
        let background = |c: u8| c == 0;
        let boundary = (x > 0 && background(classes[x - 1]))
            || (x + 1 < width && background(classes[x + 1]))
            || above.is_some_and(|row| background(row[x]))
            || below.is_some_and(|row| background(row[x]));
        if boundary {
            dst.copy_from_slice(&BOUNDARY);
        } else {
            blend(px, TINT, TINT_WEIGHT, dst);
        }
    }
}

/// One error-map row from the image row, the predicted and the reference classes; an unlabelled reference
/// pixel ([`imaging::masks::UNLABELLED`]) is neither right nor wrong and is shown dimmed, as a true
/// negative is.
pub fn error_row(rgb: &[u8], predicted: &[u8], reference: &[u8], out: &mut [u8]) {
    for (x, (&p, &r)) in predicted.iter().zip(reference).enumerate() {
        let (px, dst) = (&rgb[3 * x..3 * x + 3], &mut out[3 * x..3 * x + 3]);
        let dimmed = [px[0], px[1], px[2]].map(|v| ((v as u16 * DIM) >> 8) as u8);
        if r == imaging::masks::UNLABELLED {
            dst.copy_from_slice(&dimmed);
            continue;
        }
        match (p > 0, r > 0) {
            (true, true) => blend(&dimmed, TRUE_POSITIVE, ERROR_WEIGHT, dst),
            (true, false) => blend(&dimmed, FALSE_POSITIVE, ERROR_WEIGHT, dst),
            (false, true) => blend(&dimmed, FALSE_NEGATIVE, ERROR_WEIGHT, dst),
            (false, false) => dst.copy_from_slice(&dimmed),
        }
    }
}

/// The overlay of an image that arrives in bands of rows. A row's boundary depends on the row below it,
/// so each band's last row is held until the next band (or [`OverlayRows::finish`]) arrives: one row of
/// context above and below, whatever the band sizes.
#[derive(Debug, Default)]
pub struct OverlayRows {
    width: usize,
    /// Class rows carried over: the held row, preceded by the row above it when there is one.
    classes: Vec<u8>,
    /// Whether `classes` starts with the row above the held row.
    has_above: bool,
    /// The held row's pixels.
    rgb: Vec<u8>,
    out: Vec<u8>,
}

impl OverlayRows {
    pub fn new(width: usize) -> OverlayRows {
        OverlayRows { width, ..OverlayRows::default() }
    }

    /// Takes the next rows (`rgb`, `classes`); returns the finished overlay rows (as many as given, the
    /// first band excepted, which returns one fewer).
    pub fn push(&mut self, rgb: &[u8], classes: &[u8]) -> &[u8] {
        let w = self.width;
        let mut all_classes = std::mem::take(&mut self.classes);
        let above = usize::from(self.has_above);
        all_classes.extend_from_slice(classes);
        let mut all_rgb = std::mem::take(&mut self.rgb);
        all_rgb.extend_from_slice(rgb);
        // Rows of `all_classes`: [above], [held], new rows...; `all_rgb` starts at the held (or first) row.
        let n = all_classes.len() / w;
        let row = |i: usize| &all_classes[i * w..(i + 1) * w];
        self.out.clear();
        self.out.resize((n - above - 1) * 3 * w, 0);
        for i in above..n - 1 {
            let (o, src) = (i - above, &all_rgb[(i - above) * 3 * w..(i - above + 1) * 3 * w]);
            let up = (i > 0).then(|| row(i - 1));
            overlay_row(src, up, row(i), Some(row(i + 1)), &mut self.out[o * 3 * w..(o + 1) * 3 * w]);
        }
        // Hold the last row, with the row above it if any.
        let keep_from = n.saturating_sub(2);
        self.has_above = n >= 2;
        self.classes = all_classes[keep_from * w..].to_vec();
        self.rgb = all_rgb[(n - above - 1) * 3 * w..].to_vec();
        &self.out
    }

    /// The last row.
    pub fn finish(&mut self) -> &[u8] {
        let w = self.width;
        self.out.clear();
        if self.rgb.is_empty() {
            return &self.out;
        }
        self.out.resize(3 * w, 0);
        let (up, held) = if self.has_above {
            (Some(&self.classes[..w]), &self.classes[w..2 * w])
        } else {
            (None, &self.classes[..w])
        };
        overlay_row(&self.rgb, up, held, None, &mut self.out);
        self.rgb.clear();
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay of a whole image in one call.
    fn whole(rgb: &[u8], classes: &[u8], width: usize) -> Vec<u8> {
        let height = classes.len() / width;
        let row = |y: usize| &classes[y * width..(y + 1) * width];
        let mut out = vec![0; rgb.len()];
        for y in 0..height {
            overlay_row(
                &rgb[y * 3 * width..(y + 1) * 3 * width],
                (y > 0).then(|| row(y - 1)),
                row(y),
                (y + 1 < height).then(|| row(y + 1)),
                &mut out[y * 3 * width..(y + 1) * 3 * width],
            );
        }
        out
    }

    #[test]
    fn boundary_is_foreground_next_to_background_and_the_inside_stays_visible() {
        // A 5x5 image, foreground square 3x3 in the middle: its ring is boundary, its centre tinted.
        let width = 5;
        let classes: Vec<u8> =
            (0..25).map(|i| u8::from((1..4).contains(&(i % 5)) && (1..4).contains(&(i / 5)))).collect();
        let rgb = vec![100u8; 75];
        let out = whole(&rgb, &classes, width);
        let px = |x: usize, y: usize| &out[(y * width + x) * 3..(y * width + x) * 3 + 3];
        assert_eq!(px(0, 0), [100, 100, 100], "background untouched");
        assert_eq!(px(1, 1), BOUNDARY);
        assert_eq!(px(3, 2), BOUNDARY);
        let centre = px(2, 2);
        assert_ne!(centre, BOUNDARY);
        assert_ne!(centre, [100, 100, 100]);
        // About 40% tint: the image still shows through (its red is kept at 60%).
        assert_eq!(centre, [60, 140, 162]);
        // Foreground touching the image border is not a boundary there.
        let all = whole(&[100u8; 12], &[1; 4], 2);
        assert!(all.chunks(3).all(|p| p != BOUNDARY));
    }

    #[test]
    fn banded_overlay_equals_the_whole_one_for_any_band_sizes() {
        let (width, height) = (7, 23);
        let mut state = 12345u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let classes: Vec<u8> = (0..width * height).map(|_| (next() % 3 == 0) as u8).collect();
        let rgb: Vec<u8> = (0..width * height * 3).map(|_| next() as u8).collect();
        let expected = whole(&rgb, &classes, width);
        for bands in [vec![23], vec![1; 23], vec![5, 1, 9, 2, 6], vec![2, 21]] {
            let mut overlay = OverlayRows::new(width);
            let (mut got, mut y) = (Vec::new(), 0);
            for rows in bands {
                got.extend_from_slice(overlay.push(
                    &rgb[y * 3 * width..(y + rows) * 3 * width],
                    &classes[y * width..(y + rows) * width],
                ));
                y += rows;
            }
            got.extend_from_slice(overlay.finish());
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn error_map_colours_are_distinct() {
        let mut out = [0u8; 12];
        error_row(&[128; 12], &[1, 1, 0, 0], &[1, 0, 1, 0], &mut out);
        let colours: Vec<&[u8]> = out.chunks(3).collect();
        for i in 0..4 {
            for j in i + 1..4 {
                assert_ne!(colours[i], colours[j], "{i} and {j}");
            }
        }
        assert_eq!(colours[3], [55, 55, 55], "true negatives are the dimmed image");
        assert!(colours[0][1] > colours[0][0], "true positive is green");
        assert!(colours[1][0] > colours[1][2], "false positive is red");
        assert!(colours[2][2] > colours[2][0], "false negative is blue");
    }
}
