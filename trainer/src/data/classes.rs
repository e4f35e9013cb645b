//! The classes of a run, from the flags (`--label-format`, `--classes`, `--class-names`, `--class-colors`,
//! `--class`) and from what the masks hold: how masks are read ([`ClassFlags::reading`]) and, once they
//! are, the run's [`ClassList`] ([`ClassFlags::resolve`]). Pure: values in, values out.
//!
//! The number of classes is, in this order: `--classes`; the count of `--class-names`, `--class-colors` or
//! `--class` (which must agree with each other and with `--classes`); for index and ilastik masks, one
//! more than the largest class any mask holds; two.

use imaging::classes::{ClassError, ClassList, Rgb, MAX_CLASSES};
use imaging::masks::{LabelFormat, LabelRule};

use super::load::{inferred_classes, MaskReading};

/// `--label-format`: how mask files hold their classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskFormat {
    /// Above 127 class 1, the rest class 0 (two classes).
    #[default]
    Binary,
    /// ilastik's label images: 0 unlabelled, 1..N the classes 0..N-1.
    Ilastik,
    /// Class indices 0..N-1.
    Index,
    /// Colours, the i-th of `--class-colors` being class i.
    Color,
}

/// What the flags say about the classes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassFlags {
    pub format: MaskFormat,
    /// `--ignore-value`: mask pixels of this value are unlabelled (binary and index masks).
    pub ignore: Option<u8>,
    /// `--classes N`.
    pub count: Option<usize>,
    /// `--class-names a,b,c`.
    pub names: Option<Vec<String>>,
    /// `--class-colors #rrggbb,...`.
    pub colors: Option<Vec<Rgb>>,
    /// `--class NAME` repeated: the QuPath classes of GeoJSON annotations, in class-index order.
    pub annotation_classes: Vec<String>,
}

/// Why the class flags cannot be used; each message names the flags.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassFlagError {
    #[error("{first} gives {a} classes but {second} {b}: give the same number of classes to both")]
    Disagree { first: &'static str, a: usize, second: &'static str, b: usize },
    #[error("--label-format color needs --class-colors (one #rrggbb per class, in class-index order)")]
    NoPalette,
    #[error("--label-format binary reads two classes (> 127 or not) but {flag} gives {count}: use --label-format index, ilastik or color for more")]
    BinaryIsTwo { flag: &'static str, count: usize },
    #[error(
        "--ignore-value applies to binary and index masks; {0} masks mark unlabelled pixels their own way"
    )]
    Ignore(&'static str),
    #[error(transparent)]
    Classes(#[from] ClassError),
}

impl ClassFlags {
    /// The count the flags give, with the flag that gives it; `Err` when two of them disagree.
    pub fn declared(&self) -> Result<Option<(&'static str, usize)>, ClassFlagError> {
        let given = [
            ("--classes", self.count),
            ("--class-names", self.names.as_ref().map(Vec::len)),
            ("--class-colors", self.colors.as_ref().map(Vec::len)),
            ("--class", (!self.annotation_classes.is_empty()).then_some(self.annotation_classes.len())),
        ];
        let mut found: Option<(&'static str, usize)> = None;
        for (flag, count) in given {
            let Some(count) = count else { continue };
            match found {
                Some((first, a)) if a != count => {
                    return Err(ClassFlagError::Disagree { first, a, second: flag, b: count })
                }
                Some(_) => {}
                None => found = Some((flag, count)),
            }
        }
        Ok(found)
    }

    /// How the mask files are read. `masks`: whether any mask file is read (a binary mask with more than
    /// two classes is refused only then; GeoJSON annotations bring their own classes).
    pub fn reading(&self, masks: bool) -> Result<MaskReading, ClassFlagError> {
        let declared = self.declared()?;
        let own_unlabelled = matches!(self.format, MaskFormat::Color | MaskFormat::Ilastik);
        if own_unlabelled && self.ignore.is_some() {
            let what = if self.format == MaskFormat::Color { "colour" } else { "ilastik" };
            return Err(ClassFlagError::Ignore(what));
        }
        let gray = |format| LabelRule { format, ignore: self.ignore };
        Ok(match self.format {
            MaskFormat::Color => {
                MaskReading::Colors { palette: self.colors.clone().ok_or(ClassFlagError::NoPalette)? }
            }
            MaskFormat::Binary => {
                if let Some((flag, count)) = declared.filter(|&(_, n)| n != 2 && masks) {
                    return Err(ClassFlagError::BinaryIsTwo { flag, count });
                }
                MaskReading::two_classes(gray(LabelFormat::Binary))
            }
            MaskFormat::Index | MaskFormat::Ilastik => {
                let format =
                    if self.format == MaskFormat::Index { LabelFormat::Index } else { LabelFormat::Ilastik };
                let classes = declared.map_or(MAX_CLASSES, |(_, n)| n.min(MAX_CLASSES));
                MaskReading::Gray { rule: gray(format), classes }
            }
        })
    }

    /// The run's classes once the masks are read into `labels` (every training and validation image's).
    pub fn resolve<'a>(
        &self,
        labels: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<ClassList, ClassFlagError> {
        let declared = self.declared()?.map(|(_, n)| n);
        let count = match (declared, self.format) {
            (Some(n), _) => n,
            (None, MaskFormat::Index | MaskFormat::Ilastik) => inferred_classes(labels),
            (None, _) => 2,
        };
        let names = self
            .names
            .clone()
            .or_else(|| (!self.annotation_classes.is_empty()).then(|| self.annotation_classes.clone()));
        Ok(ClassList::resolve(Some(count), names, self.colors.clone())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imaging::masks::UNLABELLED;

    fn names(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_default_reads_binary_masks_as_two_classes() {
        let flags = ClassFlags::default();
        assert_eq!(flags.reading(true).unwrap(), MaskReading::two_classes(LabelRule::default()));
        assert_eq!(flags.resolve([&[0u8, 1][..]]).unwrap(), ClassList::default());
        let named = ClassFlags { names: names(&["bg", "lumen"]), ..ClassFlags::default() };
        assert_eq!(named.resolve([]).unwrap().names, ["bg", "lumen"]);
        let err = ClassFlags { count: Some(3), ..ClassFlags::default() }.reading(true).unwrap_err();
        assert!(err.to_string().contains("--label-format index, ilastik or color"), "{err}");
    }

    #[test]
    fn index_masks_give_their_count_unless_flags_do() {
        let index = ClassFlags { format: MaskFormat::Index, ignore: Some(255), ..ClassFlags::default() };
        let MaskReading::Gray { classes, .. } = index.reading(true).unwrap() else { panic!() };
        assert_eq!(classes, MAX_CLASSES);
        let list = index.resolve([&[0u8, 1, UNLABELLED][..], &[2, 0][..]]).unwrap();
        assert_eq!(list, ClassList::numbered(3));
        let named = ClassFlags { names: names(&["bg", "nuclei", "dab"]), ..index.clone() };
        let MaskReading::Gray { classes, .. } = named.reading(true).unwrap() else { panic!() };
        assert_eq!(classes, 3);
        let err = ClassFlags { count: Some(4), ..named }.resolve([]).unwrap_err().to_string();
        assert!(err.contains("--classes gives 4 classes but --class-names 3"), "{err}");
    }

    #[test]
    fn colour_masks_need_a_palette_and_annotations_name_the_classes() {
        let colour = ClassFlags { format: MaskFormat::Color, ..ClassFlags::default() };
        assert_eq!(colour.reading(true).unwrap_err(), ClassFlagError::NoPalette);
        let palette = vec![[0, 0, 0], [0, 0, 255], [150, 75, 0]];
        let colour = ClassFlags { colors: Some(palette.clone()), ..colour };
        assert_eq!(colour.reading(true).unwrap(), MaskReading::Colors { palette: palette.clone() });
        assert_eq!(colour.resolve([]).unwrap().colors, palette);
        let geojson = ClassFlags {
            annotation_classes: names(&["Stroma", "Tumor", "Necrosis"]).unwrap(),
            ..ClassFlags::default()
        };
        assert!(geojson.reading(false).is_ok(), "binary masks are not read: the annotations bring classes");
        assert_eq!(geojson.resolve([]).unwrap().names, ["Stroma", "Tumor", "Necrosis"]);
        let ilastik = ClassFlags { format: MaskFormat::Ilastik, ignore: Some(0), ..ClassFlags::default() };
        assert!(ilastik.reading(true).unwrap_err().to_string().contains("ilastik"));
    }
}
