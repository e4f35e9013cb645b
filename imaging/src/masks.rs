//! The mask convention, one rule for training, validation and the runner's metrics: a mask is read as
//! 8-bit gray (colour turned to gray by luminance, see [`crate::source`]) and a pixel above 127 is
//! foreground (class 1), any other background (class 0). Written masks use 255 and 0.
//!
//! Partial labels leave some pixels unlabelled, read as the class [`UNLABELLED`]: in a binary mask the
//! pixels equal to an ignore value (`--ignore-value V`, checked before the > 127 rule, so V = 128 makes
//! 128 unlabelled while every other value above 127 stays foreground), or, in an ilastik label image
//! ([`LabelFormat::Ilastik`]), the pixels of value 0 (1 is background, 2 foreground).
//!
//! More than two classes: an index mask ([`LabelFormat::Index`]) holds the class indices 0..N-1 themselves
//! (the ignore value unlabelled), and an ilastik label image holds 1..N for classes 0..N-1 (0 unlabelled).
//! Colour masks are mapped by [`crate::classes::classes_from_colors`].

/// Gray values above this are foreground.
pub const FOREGROUND_ABOVE: u8 = 127;

/// The class of an unlabelled pixel, wherever labels are held as classes (0 background, 1 foreground,
/// this value neither): the trainer's label tensors carry it (as u32) and its loss and scores skip it.
pub const UNLABELLED: u8 = 255;

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

/// How the values of a mask file become classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelFormat {
    /// Above 127 is foreground, the rest background; with an ignore value V, pixels equal to V are
    /// unlabelled (checked first).
    #[default]
    Binary,
    /// ilastik's exported label images: 0 unlabelled, 1 background, 2 foreground (with N classes, 1..N are
    /// classes 0..N-1); any other value is an error.
    Ilastik,
    /// Class indices: the value is the class (0..N-1); with an ignore value V, pixels equal to V are
    /// unlabelled; any other value is an error.
    Index,
}

/// The whole rule for one mask: its format and, for [`LabelFormat::Binary`], the ignore value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelRule {
    pub format: LabelFormat,
    /// Pixels of this value are unlabelled (binary masks only).
    pub ignore: Option<u8>,
}

impl LabelRule {
    /// The class of a gray value: 0, 1 or [`UNLABELLED`]; `None` for a value the format has no class for
    /// (ilastik values above 2).
    pub fn class(&self, gray: u8) -> Option<u8> {
        self.class_among(gray, 2)
    }

    /// The class of a gray value for a model of `classes` classes: what [`LabelRule::class`] says for two;
    /// for more, ilastik's 1..=classes and an index mask's 0..classes are classes, binary masks stay two.
    pub fn class_among(&self, gray: u8, classes: usize) -> Option<u8> {
        match self.format {
            LabelFormat::Binary | LabelFormat::Index if self.ignore == Some(gray) => Some(UNLABELLED),
            LabelFormat::Binary => Some(u8::from(is_foreground(gray))),
            LabelFormat::Ilastik if gray == 0 => Some(UNLABELLED),
            LabelFormat::Ilastik => ((gray as usize) <= classes).then(|| gray - 1),
            LabelFormat::Index => ((gray as usize) < classes).then_some(gray),
        }
    }

    /// Whether the rule can leave pixels unlabelled.
    pub fn is_partial(&self) -> bool {
        self.format == LabelFormat::Ilastik || self.ignore.is_some()
    }

    /// The classes of a gray mask; a value without a class (see [`LabelRule::class`]) is returned as the
    /// error.
    pub fn classes(&self, gray: &[u8]) -> Result<Vec<u8>, u8> {
        self.classes_among(gray, 2)
    }

    /// [`LabelRule::classes`] for a model of `classes` classes (see [`LabelRule::class_among`]).
    pub fn classes_among(&self, gray: &[u8], classes: usize) -> Result<Vec<u8>, u8> {
        // One table lookup per pixel: the rule has 256 cases.
        let mut table = [None; 256];
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = self.class_among(v as u8, classes);
        }
        gray.iter().map(|&v| table[v as usize].ok_or(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreground_is_above_127() {
        assert_eq!(classes_from_gray(&[0, 127, 128, 255]), [0, 0, 1, 1]);
        assert_eq!(gray_from_classes(&[0, 1]), [0, 255]);
        assert_eq!(LabelRule::default().classes(&[0, 127, 128, 255]), Ok(vec![0, 0, 1, 1]));
    }

    #[test]
    fn the_ignore_value_is_checked_before_the_threshold() {
        let rule = LabelRule { format: LabelFormat::Binary, ignore: Some(128) };
        assert_eq!(rule.classes(&[0, 127, 128, 129, 255]), Ok(vec![0, 0, UNLABELLED, 1, 1]));
        let low = LabelRule { format: LabelFormat::Binary, ignore: Some(0) };
        assert_eq!(low.classes(&[0, 1, 200]), Ok(vec![UNLABELLED, 0, 1]));
        assert!(rule.is_partial() && !LabelRule::default().is_partial());
    }

    #[test]
    fn ilastik_labels_are_0_unlabelled_1_background_2_foreground() {
        let rule = LabelRule { format: LabelFormat::Ilastik, ignore: None };
        assert_eq!(rule.classes(&[0, 1, 2, 1]), Ok(vec![UNLABELLED, 0, 1, 0]));
        assert_eq!(rule.classes(&[0, 3]), Err(3));
        assert!(rule.is_partial());
    }

    #[test]
    fn more_classes_from_index_masks_and_ilastik_labels() {
        let index = LabelRule { format: LabelFormat::Index, ignore: Some(255) };
        assert_eq!(index.classes_among(&[0, 1, 2, 255], 3), Ok(vec![0, 1, 2, UNLABELLED]));
        assert_eq!(index.classes_among(&[0, 3], 3), Err(3));
        let no_ignore = LabelRule { format: LabelFormat::Index, ignore: None };
        assert_eq!(no_ignore.classes_among(&[255], 16), Err(255));
        let ilastik = LabelRule { format: LabelFormat::Ilastik, ignore: None };
        assert_eq!(ilastik.classes_among(&[0, 1, 2, 3], 3), Ok(vec![UNLABELLED, 0, 1, 2]));
        assert_eq!(ilastik.classes_among(&[4], 3), Err(4));
        // Binary masks are two classes whatever the count.
        assert_eq!(LabelRule::default().classes_among(&[0, 200], 5), Ok(vec![0, 1]));
    }
}
