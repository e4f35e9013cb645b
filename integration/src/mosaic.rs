//! Synthetic whole slides for the tests: a tiled TIFF whose every tile is one and the same tile of pixels,
//! stored once (every tile offset points at it), so that a slide of 100,000 x 100,000 pixels is a file of
//! about a megabyte, written at once, and its content is known everywhere: pixel (x, y) of a level is its
//! tile's pixel (x mod side, y mod side).

use std::path::Path;

/// One level of a mosaic: its tile (`side` x `side` interleaved RGB bytes) and its size.
pub struct MosaicLevel<'a> {
    pub tile: &'a [u8],
    pub side: usize,
    pub width: usize,
    pub height: usize,
}

impl MosaicLevel<'_> {
    /// The RGB bytes of pixel (x, y).
    pub fn pixel(&self, x: usize, y: usize) -> &[u8] {
        let at = ((y % self.side) * self.side + x % self.side) * 3;
        &self.tile[at..at + 3]
    }
}

/// Writes the levels (full resolution first) as a classic little-endian TIFF: one page per level, tiled by
/// the level's `side` (a multiple of 16), uncompressed; pages after the first are marked reduced-resolution
/// (NewSubfileType 1), as pyramidal TIFFs hold their lower levels.
pub fn write_tile_mosaic(path: &Path, levels: &[MosaicLevel<'_>]) -> std::io::Result<()> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    let mut out: Vec<u8> = b"II*\0\0\0\0\0".to_vec();
    let mut link_at = 4; // where the offset of the next IFD goes
    for (index, level) in levels.iter().enumerate() {
        let side = level.side;
        assert!(side > 0 && side.is_multiple_of(16), "TIFF tiles are multiples of 16");
        assert_eq!(level.tile.len(), side * side * 3, "an RGB tile of side x side");
        let tiles = level.width.div_ceil(side) * level.height.div_ceil(side);
        let offset = |out: &Vec<u8>| u32::try_from(out.len()).expect("a mosaic under 4 GiB");
        let tile_at = offset(&out);
        out.extend_from_slice(level.tile);
        let bits_at = offset(&out);
        for _ in 0..3 {
            out.extend_from_slice(&8u16.to_le_bytes());
        }
        let offsets_at = offset(&out);
        for _ in 0..tiles {
            out.extend_from_slice(&tile_at.to_le_bytes());
        }
        let counts_at = offset(&out);
        for _ in 0..tiles {
            out.extend_from_slice(&(level.tile.len() as u32).to_le_bytes());
        }
        if !out.len().is_multiple_of(2) {
            out.push(0); // IFDs start on a word boundary
        }
        let ifd_at = offset(&out);
        out[link_at..link_at + 4].copy_from_slice(&ifd_at.to_le_bytes());
        let entries: [(u16, u16, u32, u32); 12] = [
            (254, LONG, 1, u32::from(index > 0)),
            (256, LONG, 1, level.width as u32),
            (257, LONG, 1, level.height as u32),
            (258, SHORT, 3, bits_at),
            (259, SHORT, 1, 1),
            (262, SHORT, 1, 2),
            (277, SHORT, 1, 3),
            (284, SHORT, 1, 1),
            (322, LONG, 1, side as u32),
            (323, LONG, 1, side as u32),
            (324, LONG, tiles as u32, if tiles == 1 { tile_at } else { offsets_at }),
            (325, LONG, tiles as u32, if tiles == 1 { level.tile.len() as u32 } else { counts_at }),
        ];
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, kind, count, value) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes()); // a single SHORT sits in the first two bytes
        }
        link_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    std::fs::write(path, out)
}

/// A `side` x `side` tile cut from the top-left of a `width` x `height` image (`channels` bytes per pixel),
/// mirrored at the right and bottom edges where the image is smaller than the tile.
pub fn tile_from(pixels: &[u8], width: usize, height: usize, channels: usize, side: usize) -> Vec<u8> {
    let mirror = |i: usize, n: usize| {
        let j = i % (2 * n);
        if j < n {
            j
        } else {
            2 * n - 1 - j
        }
    };
    let mut tile = Vec::with_capacity(side * side * channels);
    for y in 0..side {
        let sy = mirror(y, height);
        for x in 0..side {
            let at = (sy * width + mirror(x, width)) * channels;
            tile.extend_from_slice(&pixels[at..at + channels]);
        }
    }
    tile
}

/// The 2x2 mean (rounded) of an RGB tile: the tile of the next level down.
pub fn halve_tile(tile: &[u8], side: usize) -> Vec<u8> {
    let half = side / 2;
    let mut out = Vec::with_capacity(half * half * 3);
    for y in 0..half {
        for x in 0..half {
            for c in 0..3 {
                let at = |dy: usize, dx: usize| u32::from(tile[((2 * y + dy) * side + 2 * x + dx) * 3 + c]);
                out.push(((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) / 4) as u8);
            }
        }
    }
    out
}
