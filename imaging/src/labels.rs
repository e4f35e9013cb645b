//! The mask convention, one rule for training, validation and the runner's metrics: a mask is read as
//! 8-bit gray (colour turned to gray by luminance, see [`crate::source`]) and a pixel above 127 is
//! foreground (class 1), any other background (class 0). Written masks use 255 and 0.

/// Gray values above this are foreground.
pub const FOREGROUND_ABOVE: u8 = 127;

/// Whether a gray mask value is foreground.
pub fn is_foreground(gray: u8) -> bool {
    gray > FOREGROUND_ABOVE
}

/// Class indices (1 = foreground) of a gray mask.
pub fn classes_from_gray(gray: &[u8]) -> Vec<u8> {
    gray.iter().map(|&v| u8::from(is_foreground(v))).collect()
}

/// The gray mask image of class indices: foreground white, background black.
pub fn gray_from_classes(classes: &[u8]) -> Vec<u8> {
    classes.iter().map(|&c| if c > 0 { 255 } else { 0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_is_above_127() {
        assert_eq!(classes_from_gray(&[0, 127, 128, 255]), [0, 0, 1, 1]);
        assert_eq!(gray_from_classes(&[0, 1]), [0, 255]);
    }
}
