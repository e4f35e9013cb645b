//! Binary morphology on a [`Mask`]: connected components, specks dropped, holes filled, growth by a
//! square. Foreground is 8-connected and background 4-connected (as in the tracer of
//! `annotations::trace`), so every hole is enclosed by one region.

use super::Mask;

/// Visits the connected components of the pixels equal to `value` (8-connected when `value` is true,
/// 4-connected otherwise); `f` gets each component's pixel indices and whether it touches the mask's
/// border. One `u32` label per pixel is the working memory.
fn components(mask: &Mask, value: bool, mut f: impl FnMut(&[usize], bool)) {
    let (w, h) = (mask.width, mask.height);
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    let mut members = Vec::new();
    let eight = value;
    for start in 0..w * h {
        if seen[start] || mask.data[start] != value {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        members.clear();
        let mut border = false;
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = (i % w, i / w);
            border |= x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    if (dx == 0 && dy == 0) || (!eight && dx != 0 && dy != 0) {
                        continue;
                    }
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !seen[j] && mask.data[j] == value {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        f(&members, border);
    }
}

/// Clears the foreground regions of fewer than `min_pixels` pixels (specks).
pub fn drop_specks(mask: &mut Mask, min_pixels: usize) {
    if min_pixels <= 1 {
        return;
    }
    let mut clear = Vec::new();
    components(mask, true, |members, _| {
        if members.len() < min_pixels {
            clear.extend_from_slice(members);
        }
    });
    for i in clear {
        mask.data[i] = false;
    }
}

/// Sets the holes (background enclosed by foreground, not touching the border) of at most `max_pixels`
/// pixels.
pub fn fill_holes(mask: &mut Mask, max_pixels: usize) {
    let mut fill = Vec::new();
    components(mask, false, |members, border| {
        if !border && members.len() <= max_pixels {
            fill.extend_from_slice(members);
        }
    });
    for i in fill {
        mask.data[i] = true;
    }
}

/// Grows the foreground by `radius` pixels in every direction (a square of side `2 * radius + 1`):
/// a running count along rows, then along columns.
pub fn dilate(mask: &mut Mask, radius: usize) {
    if radius == 0 || mask.data.is_empty() {
        return;
    }
    let (w, h) = (mask.width, mask.height);
    let grow_line = |line: &mut dyn FnMut(usize) -> bool, set: &mut dyn FnMut(usize, bool), n: usize| {
        // Count of set pixels in the window [i - radius, i + radius], slid along the line.
        let mut count = 0usize;
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(line(i));
        }
        for v in values.iter().take(radius.min(n)) {
            count += *v as usize;
        }
        for i in 0..n {
            if i + radius < n {
                count += values[i + radius] as usize;
            }
            if i > radius {
                count -= values[i - radius - 1] as usize;
            }
            set(i, count > 0);
        }
    };
    let mut out = mask.data.clone();
    for y in 0..h {
        let row = &mask.data[y * w..(y + 1) * w];
        let target = &mut out[y * w..(y + 1) * w];
        grow_line(&mut |i| row[i], &mut |i, v| target[i] = v, w);
    }
    let rows = out.clone();
    for x in 0..w {
        grow_line(&mut |i| rows[i * w + x], &mut |i, v| out[i * w + x] = v, h);
    }
    mask.data = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Mask {
        let (w, h) = (rows[0].len(), rows.len());
        Mask { width: w, height: h, data: rows.iter().flat_map(|r| r.bytes().map(|b| b == b'#')).collect() }
    }

    fn show(m: &Mask) -> Vec<String> {
        m.data.chunks(m.width).map(|r| r.iter().map(|&v| if v { '#' } else { '.' }).collect()).collect()
    }

    #[test]
    fn specks_below_the_size_go_and_diagonal_pixels_are_one_region() {
        let mut m = mask(&["#....", "....#", "...#.", ".....", "##..."]);
        drop_specks(&mut m, 2);
        assert_eq!(show(&m), [".....", "....#", "...#.", ".....", "##..."]);
        drop_specks(&mut m, 3);
        assert_eq!(show(&m), [".....", ".....", ".....", ".....", "....."]);
    }

    #[test]
    fn small_enclosed_holes_are_filled_and_open_background_is_not() {
        let mut m = mask(&["#####.", "#..#..", "#####.", "#.#...", "###..."]);
        // Holes: the two-pixel one in row 1, the one-pixel one in row 3; the right column touches the border.
        let mut small = m.clone();
        fill_holes(&mut small, 1);
        assert_eq!(show(&small), ["#####.", "#..#..", "#####.", "###...", "###..."]);
        fill_holes(&mut m, 2);
        assert_eq!(show(&m), ["#####.", "####..", "#####.", "###...", "###..."]);
    }

    #[test]
    fn a_hole_touching_only_diagonally_is_enclosed() {
        // Background is 4-connected: the centre pixel does not leak out through the diagonal gaps.
        let mut m = mask(&[".#.", "#.#", ".#."]);
        fill_holes(&mut m, 1);
        assert_eq!(show(&m), [".#.", "###", ".#."]);
    }

    #[test]
    fn dilation_grows_by_a_square_and_stops_at_the_border() {
        let mut m = mask(&[".......", ".......", "...#...", ".......", "#......"]);
        dilate(&mut m, 1);
        assert_eq!(show(&m), [".......", "..###..", "..###..", "#####..", "##....."]);
        let mut one = mask(&["#...", "...."]);
        dilate(&mut one, 5);
        assert_eq!(show(&one), ["####", "####"]);
    }

    #[test]
    fn dilation_equals_the_direct_definition() {
        let mut state = 7u64;
        for radius in 0..4 {
            let mut m = Mask::filled(23, 17, false);
            for v in m.data.iter_mut() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *v = (state >> 59) == 0;
            }
            let mut grown = m.clone();
            dilate(&mut grown, radius);
            for y in 0..m.height {
                for x in 0..m.width {
                    let r = radius as i64;
                    let expected = (-r..=r).any(|dy| {
                        (-r..=r).any(|dx| {
                            let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                            nx >= 0
                                && ny >= 0
                                && nx < m.width as i64
                                && ny < m.height as i64
                                && m.get(nx as usize, ny as usize)
                        })
                    });
                    assert_eq!(grown.get(x, y), expected, "({x}, {y}) radius {radius}");
                }
            }
        }
    }
}
