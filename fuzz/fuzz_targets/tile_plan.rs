//! The tile plan over random image sizes and tiling parameters: a plan is an error or satisfies every
//! invariant exact tiling rests on (windows inside the even-padded image with even origins and sides, at
//! most `budget` input pixels per forward pass, kept centres inside their windows and a halo away from
//! every inner window side, covering the image exactly once); it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use imaging::tiles::{plan, HALO, PIXEL_BUDGET};

/// Little-endian integers taken from the front of the input (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> u64 {
        let mut value = 0u64;
        for i in 0..n {
            let byte = self.0.get(i).copied().unwrap_or(0);
            value |= u64::from(byte) << (8 * i);
        }
        self.0 = self.0.get(n..).unwrap_or(&[]);
        value
    }
}

/// Image sides up to this: the coverage check holds a byte per pixel.
const MAX_SIDE: u64 = 3000;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let mode = bytes.take(1);
    let height = (bytes.take(2) % (MAX_SIDE + 1)) as usize;
    let width = (bytes.take(2) % (MAX_SIDE + 1)) as usize;
    let (tile, halo, budget) = match mode % 3 {
        // What the CLI can ask: --tile within the default budget and halo.
        0 => ((bytes.take(2) % 300) as usize, HALO, PIXEL_BUDGET),
        // Other even halos and budgets, with a tile that fits them.
        1 => {
            let halo = 8 + 2 * (bytes.take(1) % 8) as usize;
            let budget = (bytes.take(3) % (4 * PIXEL_BUDGET as u64)) as usize;
            let tile = (bytes.take(2) % 600) as usize;
            (tile, halo, budget)
        }
        // Anything at all: must be an error or a valid plan, never a panic.
        _ => (bytes.take(8) as usize, bytes.take(8) as usize, bytes.take(8) as usize),
    };
    let Ok(p) = plan(height, width, tile, halo, budget) else { return };
    check(&p, tile, halo, budget);
});

fn check(p: &imaging::tiles::TilePlan, tile: usize, halo: usize, budget: usize) {
    let (ph, pw) = (p.padded_height, p.padded_width);
    assert_eq!((ph, pw), (p.height + p.height % 2, p.width + p.width % 2));
    let mut cover = vec![0u8; ph * pw];
    for batch in &p.passes {
        assert!(!batch.tiles.is_empty(), "an empty forward pass");
        assert!(batch.pixels() <= budget, "a pass of {} pixels over the budget {budget}", batch.pixels());
        for t in &batch.tiles {
            let (w, k) = (t.window, t.keep);
            assert_eq!((w.height, w.width), (batch.height, batch.width), "one window size per pass");
            assert!(w.y % 2 == 0 && w.x % 2 == 0, "odd origin {w:?}");
            assert!(w.height % 2 == 0 && w.width % 2 == 0, "odd window {w:?}");
            assert!(w.height <= tile && w.width <= tile, "{w:?} larger than the tile {tile}");
            assert!(w.y + w.height <= ph && w.x + w.width <= pw, "{w:?} outside {ph}x{pw}");
            assert!(k.height > 0 && k.width > 0, "empty keep {k:?}");
            assert!(k.y >= w.y && k.x >= w.x, "{k:?} outside {w:?}");
            assert!(k.y + k.height <= w.y + w.height && k.x + k.width <= w.x + w.width, "{k:?} outside {w:?}");
            if w.y > 0 {
                assert!(k.y - w.y >= halo, "{k:?} within the halo of {w:?}");
            }
            if w.x > 0 {
                assert!(k.x - w.x >= halo, "{k:?} within the halo of {w:?}");
            }
            if w.y + w.height < ph {
                assert!(w.y + w.height - (k.y + k.height) >= halo, "{k:?} within the halo of {w:?}");
            }
            if w.x + w.width < pw {
                assert!(w.x + w.width - (k.x + k.width) >= halo, "{k:?} within the halo of {w:?}");
            }
            for y in k.y..k.y + k.height {
                for c in &mut cover[y * pw + k.x..y * pw + k.x + k.width] {
                    *c = c.saturating_add(1);
                }
            }
        }
    }
    assert!(cover.iter().all(|&c| c == 1), "{}x{} not covered exactly once", p.height, p.width);

    // Bands: rows of windows, top to bottom, whose forward passes are consecutive and hold only their own
    // windows, and whose kept rows cover the padded height exactly once.
    let mut next_batch = 0;
    let mut next_row = 0;
    for band in &p.bands {
        assert_eq!(band.passes.start, next_batch, "bands' passes are not consecutive");
        assert!(band.passes.end > band.passes.start, "a band without passes");
        assert_eq!(band.keep_y, next_row, "bands' kept rows are not consecutive");
        assert!(band.window_y % 2 == 0 && band.window_y <= band.keep_y, "band {band:?}");
        assert!(band.keep_y + band.keep_height <= band.window_y + band.window_height, "band {band:?}");
        for batch in &p.passes[band.passes.clone()] {
            for t in &batch.tiles {
                assert_eq!((t.window.y, t.window.height), (band.window_y, band.window_height), "{band:?}");
                assert_eq!((t.keep.y, t.keep.height), (band.keep_y, band.keep_height), "{band:?}");
            }
        }
        next_batch = band.passes.end;
        next_row = band.keep_y + band.keep_height;
    }
    assert_eq!(next_batch, p.passes.len(), "passes outside every band");
    assert_eq!(next_row, ph, "bands do not reach the bottom");
}
