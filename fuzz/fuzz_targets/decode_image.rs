//! Image bytes through the runner's reader as the runner uses it: `ImageSource` recognises the format and
//! reads the header, then the rows are read band by band (prediction streams images this way, as RGB; a
//! reference mask is read as gray, whole, once its size has been checked against the image). Any input must
//! give rows or an error: never a panic, a hang, or memory beyond the fuzzer's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use imaging::source::{Channels, ImageSource};

/// Rows per band, as a band of tiles reads them.
const BAND_ROWS: usize = 64;
/// Masks are read whole after the size check; images of up to this many pixels stand for them here.
const WHOLE_PIXELS: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let channels = if selector & 1 == 0 { Channels::Rgb } else { Channels::Gray };
    let Ok(mut source) = ImageSource::from_bytes(bytes, "fuzz input", channels) else { return };
    let (width, height) = (source.width(), source.height());
    if selector & 2 != 0 && width.saturating_mul(height) <= WHOLE_PIXELS {
        if let Ok(pixels) = source.read_all() {
            assert_eq!(pixels.len(), width * height * channels.count());
        }
        return;
    }
    let mut band = Vec::new();
    let mut rows = 0;
    while rows < height {
        band.clear();
        match source.read_rows(BAND_ROWS, &mut band) {
            Ok(read) => {
                assert!(read > 0 && read <= BAND_ROWS, "read {read} rows");
                assert_eq!(band.len(), read * width * channels.count());
                rows += read;
            }
            Err(_) => return,
        }
    }
});
