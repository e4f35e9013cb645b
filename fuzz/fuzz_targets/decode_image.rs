//! Image bytes through the runner's decoder: any input must give an image or an error, never a panic, a
//! hang or an allocation beyond the fuzzer's memory limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rgb) = runner::io::decode_rgb(data) {
        assert_eq!(rgb.as_raw().len(), rgb.width() as usize * rgb.height() as usize * 3);
    }
});
