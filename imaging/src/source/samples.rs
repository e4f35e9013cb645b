//! Samples as decoded (8 or 16 bits, signed, float) turned into the 8-bit pixels every reader returns, as
//! docs/prediction.md documents: gray repeated to RGB, alpha dropped, colour to gray by luminance.

/// What each pixel is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Three bytes per pixel (the image to predict).
    Rgb,
    /// One byte per pixel (a reference mask).
    Gray,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Gray => 1,
        }
    }
}

/// Samples of one row or chunk as decoded, before conversion.
pub(crate) enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    F32(&'a [f32]),
}

pub(crate) fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 * 255 + 32_767) / 65_535) as u8
}

/// Signed 16-bit: negatives are 0, 0..=32767 is scaled to 0..=255 (rounded).
pub(crate) fn i16_to_u8(v: i16) -> u8 {
    ((v.max(0) as u32 * 255 + 16_383) / 32_767) as u8
}

pub(crate) fn f32_to_u8(v: f32) -> u8 {
    // NaN fails both comparisons and becomes 0.
    if v >= 1.0 {
        255
    } else if v > 0.0 {
        (v * 255.0).round() as u8
    } else {
        0
    }
}

pub(crate) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((2126 * r as u32 + 7152 * g as u32 + 722 * b as u32 + 5000) / 10_000) as u8
}

/// Converts `samples` (pixels of `channels` samples each: 1 gray, 2 gray+alpha, 3 RGB, 4 or more RGBA
/// and extra samples) into `dst` (exactly one output pixel per input pixel).
pub(crate) fn convert(samples: Samples<'_>, channels: usize, out: Channels, dst: &mut [u8]) {
    fn run<T: Copy>(src: &[T], channels: usize, out: Channels, dst: &mut [u8], to8: impl Fn(T) -> u8) {
        let pixels = src.chunks_exact(channels);
        match (out, channels) {
            (Channels::Rgb, 1 | 2) => {
                for (px, d) in pixels.zip(dst.chunks_exact_mut(3)) {
                    d.fill(to8(px[0]));
                }
            }
            (Channels::Rgb, _) => {
                for (px, d) in pixels.zip(dst.chunks_exact_mut(3)) {
                    d.copy_from_slice(&[to8(px[0]), to8(px[1]), to8(px[2])]);
                }
            }
            (Channels::Gray, 1 | 2) => {
                for (px, d) in pixels.zip(dst.iter_mut()) {
                    *d = to8(px[0]);
                }
            }
            (Channels::Gray, _) => {
                for (px, d) in pixels.zip(dst.iter_mut()) {
                    *d = luma(to8(px[0]), to8(px[1]), to8(px[2]));
                }
            }
        }
    }
    match samples {
        Samples::U8(s) => run(s, channels, out, dst, |v| v),
        Samples::U16(s) => run(s, channels, out, dst, u16_to_u8),
        Samples::I16(s) => run(s, channels, out, dst, i16_to_u8),
        Samples::F32(s) => run(s, channels, out, dst, f32_to_u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_conversions_follow_the_docs() {
        assert_eq!([0, 128, 129, 257, 32_896, 65_278, 65_535].map(u16_to_u8), [0, 0, 1, 1, 128, 254, 255]);
        assert_eq!([i16::MIN, -1, 0, 64, 65, 16_384, 32_767].map(i16_to_u8), [0, 0, 0, 0, 1, 128, 255]);
        assert_eq!([f32::NAN, -1.0, 0.0, 0.5, 1.0, 7.0].map(f32_to_u8), [0, 0, 0, 128, 255, 255]);
        let mut rgb = [0u8; 6];
        convert(Samples::U8(&[7, 99, 8, 1]), 2, Channels::Rgb, &mut rgb);
        assert_eq!(rgb, [7, 7, 7, 8, 8, 8], "gray+alpha: alpha dropped, gray repeated");
        let mut gray = [0u8; 2];
        convert(Samples::U8(&[255, 255, 255, 0, 0, 255, 0, 0]), 4, Channels::Gray, &mut gray);
        assert_eq!(gray, [255, 182], "white stays white; green is its luminance");
    }
}
