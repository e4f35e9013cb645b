//! Shape measurements of a polygon with holes, as QuPath shows them for an object: area (the outer
//! ring's shoelace area less its holes'), perimeter (the length of every ring, holes included, as
//! shapely's `length` and JTS's), centroid (of the area) and bounding box. In the polygon's units
//! (level-0 pixels here); [`Shape::scaled`] turns them into µm.

use super::{Bounds, Point, Polygon};

/// The measurements of one polygon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Area, holes subtracted.
    pub area: f64,
    /// Length of the outer ring plus the holes'.
    pub perimeter: f64,
    /// The centroid of the area.
    pub centroid: Point,
    /// The bounding box.
    pub bounds: Bounds,
}

/// Signed shoelace area of a ring (closing point optional) and the first moments `(sum x, sum y)` times
/// six times the area, for the centroid.
fn ring_moments(ring: &[Point]) -> (f64, f64, f64) {
    let n = ring.len();
    let (mut a, mut cx, mut cy) = (0.0, 0.0, 0.0);
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    // Relative to the first point: keeps the products small (coordinates of a slide are large).
    let (ox, oy) = ring[0];
    for i in 0..n {
        let (x0, y0) = (ring[i].0 - ox, ring[i].1 - oy);
        let (x1, y1) = (ring[(i + 1) % n].0 - ox, ring[(i + 1) % n].1 - oy);
        let cross = x0 * y1 - x1 * y0;
        a += cross;
        cx += (x0 + x1) * cross;
        cy += (y0 + y1) * cross;
    }
    // Back to absolute coordinates: the moments shift by the origin times the area.
    (a / 2.0, cx + 3.0 * a * ox, cy + 3.0 * a * oy)
}

/// The length of a closed ring (closing point optional).
fn ring_length(ring: &[Point]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            (b.0 - a.0).hypot(b.1 - a.1)
        })
        .sum()
}

impl Shape {
    /// The measurements of `polygon` (rings in either orientation).
    pub fn of(polygon: &Polygon) -> Shape {
        let (mut area, mut mx, mut my) = (0.0, 0.0, 0.0);
        for (i, ring) in std::iter::once(&polygon.outer).chain(&polygon.holes).enumerate() {
            let (a, x, y) = ring_moments(ring);
            // The outer ring adds, holes subtract, whatever their orientation.
            let sign = if (i == 0) == (a >= 0.0) { 1.0 } else { -1.0 };
            area += sign * a;
            mx += sign * x;
            my += sign * y;
        }
        let perimeter = std::iter::once(&polygon.outer).chain(&polygon.holes).map(|r| ring_length(r)).sum();
        let centroid =
            if area != 0.0 { (mx / (6.0 * area), my / (6.0 * area)) } else { (f64::NAN, f64::NAN) };
        Shape { area, perimeter, centroid, bounds: polygon.bounds() }
    }

    /// The area in µm² and the perimeter in µm for a pixel of `microns` (x, y) µm; the perimeter by the
    /// mean side when pixels are not square.
    pub fn scaled(&self, microns: (f64, f64)) -> (f64, f64) {
        (self.area * microns.0 * microns.1, self.perimeter * (microns.0 + microns.1) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_with_a_hole() {
        let mut p =
            Polygon { outer: vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)], holes: vec![] };
        let s = Shape::of(&p);
        assert_eq!((s.area, s.perimeter, s.centroid), (100.0, 40.0, (5.0, 5.0)));
        // A hole in the right half, drawn the same way round as the outer ring.
        p.holes.push(vec![(6.0, 2.0), (8.0, 2.0), (8.0, 8.0), (6.0, 8.0)]);
        let s = Shape::of(&p);
        assert_eq!(s.area, 88.0);
        assert_eq!(s.perimeter, 56.0);
        // Centroid: (100 * 5 - 12 * 7) / 88 in x, 5 in y.
        assert!((s.centroid.0 - (500.0 - 84.0) / 88.0).abs() < 1e-12);
        assert!((s.centroid.1 - 5.0).abs() < 1e-12);
        assert_eq!((s.bounds.min_x, s.bounds.max_x), (0.0, 10.0));
        assert_eq!(s.scaled((0.5, 0.5)), (22.0, 28.0));
    }

    #[test]
    fn far_from_the_origin_and_either_orientation() {
        let ring: Vec<Point> =
            vec![(1e6, 2e6), (1e6 + 3.0, 2e6), (1e6 + 3.0, 2e6 + 1.5), (1e6 + 1.0, 2e6 + 2.5)];
        let a = Shape::of(&Polygon { outer: ring.clone(), holes: vec![] });
        let mut reversed = ring;
        reversed.reverse();
        let b = Shape::of(&Polygon { outer: reversed, holes: vec![] });
        assert!((a.area - b.area).abs() < 1e-9 && a.area > 0.0);
        assert!((a.centroid.0 - b.centroid.0).abs() < 1e-9 && (a.centroid.1 - b.centroid.1).abs() < 1e-9);
        assert!(a.centroid.0 > 1e6 && a.centroid.0 < 1e6 + 3.0);
    }
}
