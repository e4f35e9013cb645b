//! The one rectangle of pixels: a tile's window and kept centre, an annotated area, an annotation's box.

/// A rectangle of pixels: columns `left..left + width`, rows `top..top + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// First column.
    pub left: usize,
    /// First row.
    pub top: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Rect {
    /// The column after the last.
    pub fn right(&self) -> usize {
        self.left + self.width
    }

    /// The row after the last.
    pub fn bottom(&self) -> usize {
        self.top + self.height
    }

    /// The number of pixels.
    pub fn area(&self) -> usize {
        self.width * self.height
    }

    /// Whether the two share at least one pixel.
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.left < other.right()
            && other.left < self.right()
            && self.top < other.bottom()
            && other.top < self.bottom()
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        let (left, top) = (self.left.min(other.left), self.top.min(other.top));
        let (right, bottom) = (self.right().max(other.right()), self.bottom().max(other.bottom()));
        Rect { left, top, width: right - left, height: bottom - top }
    }

    /// Grown by `pad` pixels on every side, then clipped to a `width` x `height` image (empty when it lies
    /// wholly outside).
    pub fn padded(&self, pad: usize, width: usize, height: usize) -> Rect {
        let left = self.left.saturating_sub(pad).min(width);
        let top = self.top.saturating_sub(pad).min(height);
        let right = self.right().saturating_add(pad).min(width);
        let bottom = self.bottom().saturating_add(pad).min(height);
        Rect { left, top, width: right.saturating_sub(left), height: bottom.saturating_sub(top) }
    }
}
