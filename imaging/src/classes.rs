//! The classes of a segmentation: how many, their names and their display colours, one list from the
//! training flags to the checkpoint, every export and the runner's outputs. Pure: values in, values out.
//!
//! Two classes (background, foreground) is the default and the seed's convention; up to [`MAX_CLASSES`]
//! are allowed. Class 0 is the background wherever a class is left out (the runner's GeoJSON) or a
//! false-positive rate is counted.

use std::fmt;

/// The most classes a model may have: label values stay far below [`crate::masks::UNLABELLED`], and a
/// mask of class indices fits 8 bits.
pub const MAX_CLASSES: usize = 16;

/// The fewest: a segmentation decides between at least two classes.
pub const MIN_CLASSES: usize = 2;

/// The names of the two-class default.
pub const TWO_CLASS_NAMES: [&str; 2] = ["background", "foreground"];

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// The default colours, by class index: black background, then colours that stay apart from each other
/// (Tableau's 10, then seven more), as in most label viewers.
pub const DEFAULT_PALETTE: [Rgb; MAX_CLASSES + 1] = [
    [0, 0, 0],
    [255, 255, 255],
    [214, 39, 40],
    [31, 119, 180],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
    [255, 255, 0],
    [0, 255, 255],
    [255, 0, 255],
    [128, 0, 0],
    [0, 0, 128],
];

/// The colours of `n` classes when none are given: two classes are black and white (the seed's masks);
/// more skip white, so that class 1 is red, class 2 blue, and so on.
pub fn default_colors(n: usize) -> Vec<Rgb> {
    if n <= 2 {
        DEFAULT_PALETTE[..n].to_vec()
    } else {
        std::iter::once(DEFAULT_PALETTE[0]).chain(DEFAULT_PALETTE[2..].iter().copied()).take(n).collect()
    }
}

/// The names of `n` classes when none are given: `background, foreground` for two, `background, class1,
/// class2, ...` for more.
pub fn default_names(n: usize) -> Vec<String> {
    if n == 2 {
        TWO_CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..n).map(|i| if i == 0 { "background".to_string() } else { format!("class{i}") }).collect()
    }
}

/// `#rrggbb` (the `#` optional, either case) as a colour.
pub fn parse_color(text: &str) -> Result<Rgb, String> {
    let hex = text.trim().trim_start_matches('#');
    let bad = || format!("`{text}` is not a colour: write it as #rrggbb, e.g. #ff0000 for red");
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// A colour as `#rrggbb`, lower case.
pub fn color_hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Why a class list cannot be used. Each message names the flags.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassError {
    #[error("{count} classes: a model has {MIN_CLASSES} to {MAX_CLASSES} classes; {hint}")]
    Count { count: usize, hint: String },
    #[error("{flag} gives {given} but {other} {count}: give one entry per class, in class-index order")]
    Disagree { flag: &'static str, given: usize, other: String, count: usize },
    #[error("--class-names: {0}")]
    Name(String),
    #[error("--class-colors: {0}")]
    Color(String),
}

/// The classes of one model: a name and a colour per class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassList {
    pub names: Vec<String>,
    pub colors: Vec<Rgb>,
}

impl Default for ClassList {
    /// The two-class default.
    fn default() -> ClassList {
        ClassList::numbered(2)
    }
}

impl ClassList {
    /// `n` classes with the default names and colours.
    pub fn numbered(n: usize) -> ClassList {
        ClassList { names: default_names(n), colors: default_colors(n) }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true for a checked list (at least [`MIN_CLASSES`]).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether this is the two-class default (names and colours): what the seed stored implicitly, so
    /// files that describe it keep their seed layout.
    pub fn is_default_two(&self) -> bool {
        *self == ClassList::numbered(2)
    }

    /// The colours as `#rrggbb,#rrggbb,...`.
    pub fn colors_text(&self) -> String {
        self.colors.iter().map(|&c| color_hex(c)).collect::<Vec<_>>().join(",")
    }

    /// The names joined by commas (names never hold one).
    pub fn names_text(&self) -> String {
        self.names.join(",")
    }

    /// The list from what the flags gave: a count (`--classes`, or the count the labels imply), names
    /// (`--class-names`) and colours (`--class-colors`); any two given must agree, and whatever is not given
    /// takes its default. With nothing given the list is the two-class default.
    pub fn resolve(
        count: Option<usize>,
        names: Option<Vec<String>>,
        colors: Option<Vec<Rgb>>,
    ) -> Result<ClassList, ClassError> {
        let n = count.or(names.as_ref().map(Vec::len)).or(colors.as_ref().map(Vec::len)).unwrap_or(2);
        if !(MIN_CLASSES..=MAX_CLASSES).contains(&n) {
            let hint = match count {
                Some(_) => "change --classes".to_string(),
                None => "give one name (--class-names) or colour (--class-colors) per class".to_string(),
            };
            return Err(ClassError::Count { count: n, hint });
        }
        let other = || match count {
            Some(_) => "--classes is".to_string(),
            None => "--class-names gives".to_string(),
        };
        if let Some(names) = &names {
            if count.is_some() && names.len() != n {
                return Err(ClassError::Disagree {
                    flag: "--class-names",
                    given: names.len(),
                    other: other(),
                    count: n,
                });
            }
        }
        if let Some(colors) = &colors {
            if colors.len() != n {
                return Err(ClassError::Disagree {
                    flag: "--class-colors",
                    given: colors.len(),
                    other: other(),
                    count: n,
                });
            }
        }
        let names = names.unwrap_or_else(|| default_names(n));
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() || name.contains(',') || name.chars().any(char::is_control) {
                return Err(ClassError::Name(format!(
                    "class {i}'s name `{name}` is empty or holds a comma or a control character"
                )));
            }
            if names[..i].contains(name) {
                return Err(ClassError::Name(format!(
                    "`{name}` names two classes: give each class its own name"
                )));
            }
        }
        let colors = colors.unwrap_or_else(|| default_colors(n));
        if let Some(i) = (1..n).find(|&i| colors[..i].contains(&colors[i])) {
            return Err(ClassError::Color(format!(
                "{} is given to two classes: give each class its own colour",
                color_hex(colors[i])
            )));
        }
        Ok(ClassList { names, colors })
    }

    /// Reads back what [`ClassList::names_text`] and [`ClassList::colors_text`] wrote (stored metadata);
    /// the colours may be absent (their defaults).
    pub fn from_text(names: &str, colors: Option<&str>) -> Result<ClassList, String> {
        let names: Vec<String> = names.split(',').map(str::to_string).collect();
        let colors =
            colors.map(|c| c.split(',').map(parse_color).collect::<Result<Vec<_>, _>>()).transpose()?;
        ClassList::resolve(Some(names.len()), Some(names), colors).map_err(|e| e.to_string())
    }
}

impl fmt::Display for ClassList {
    /// `0 background #000000, 1 nuclei #d62728, ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, &color)) in self.names.iter().zip(&self.colors).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{i} {name} {}", color_hex(color))?;
        }
        Ok(())
    }
}

/// Class indices of a colour mask (interleaved RGB) by exact colour: a pixel of `palette[i]` is class i,
/// one of `ignore` (if given) unlabelled ([`crate::masks::UNLABELLED`]); any other colour is returned as
/// the error (a colour mask is drawn with exact colours: an anti-aliased or JPEG mask has others).
pub fn classes_from_colors(rgb: &[u8], palette: &[Rgb], ignore: Option<Rgb>) -> Result<Vec<u8>, Rgb> {
    let mut out = Vec::with_capacity(rgb.len() / 3);
    // Masks are mostly runs of one colour: remember the last match.
    let mut last: Option<(Rgb, u8)> = None;
    for px in rgb.chunks_exact(3) {
        let c = [px[0], px[1], px[2]];
        let class = match last {
            Some((seen, class)) if seen == c => class,
            _ => {
                let class = if ignore == Some(c) {
                    crate::masks::UNLABELLED
                } else {
                    palette.iter().position(|&p| p == c).ok_or(c)? as u8
                };
                last = Some((c, class));
                class
            }
        };
        out.push(class);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masks::UNLABELLED;

    #[test]
    fn colours_parse_and_print_as_hex() {
        assert_eq!(parse_color("#FF8000"), Ok([255, 128, 0]));
        assert_eq!(parse_color("00ff00"), Ok([0, 255, 0]));
        for bad in ["#fff", "#gg0000", "", "#0000000"] {
            assert!(parse_color(bad).unwrap_err().contains("#rrggbb"), "{bad}");
        }
        assert_eq!(color_hex([255, 128, 0]), "#ff8000");
    }

    #[test]
    fn the_default_is_two_classes_and_flags_must_agree() {
        let two = ClassList::resolve(None, None, None).unwrap();
        assert_eq!(two.names, ["background", "foreground"]);
        assert_eq!(two.colors, [[0, 0, 0], [255, 255, 255]]);
        assert!(two.is_default_two());
        let three = ClassList::resolve(Some(3), None, None).unwrap();
        assert_eq!(three.names, ["background", "class1", "class2"]);
        assert_eq!(three.colors, [[0, 0, 0], [214, 39, 40], [31, 119, 180]]);
        assert!(!three.is_default_two());
        let names = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let named = ClassList::resolve(None, names(&["bg", "nuclei", "dab"]), None).unwrap();
        assert_eq!(named.len(), 3);
        let err = ClassList::resolve(Some(4), names(&["a", "b", "c"]), None).unwrap_err().to_string();
        assert!(err.contains("--class-names gives 3 but --classes is 4"), "{err}");
        let err = ClassList::resolve(None, names(&["a", "b"]), Some(vec![[0; 3], [1; 3], [2; 3]]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--class-colors gives 3 but --class-names gives 2"), "{err}");
        for n in [0, 1, 17] {
            assert!(ClassList::resolve(Some(n), None, None).unwrap_err().to_string().contains("2 to 16"));
        }
        assert!(ClassList::resolve(None, names(&["a", "a"]), None).is_err());
        assert!(ClassList::resolve(None, names(&["a", "b,c"]), None).is_err());
        assert!(ClassList::resolve(None, None, Some(vec![[1; 3], [1; 3]])).is_err());
        assert_eq!(ClassList::numbered(16).colors.len(), 16);
        let back = ClassList::from_text(&named.names_text(), Some(&named.colors_text())).unwrap();
        assert_eq!(back, named);
        assert_eq!(named.to_string(), "0 bg #000000, 1 nuclei #d62728, 2 dab #1f77b4");
    }

    #[test]
    fn colour_masks_map_exact_colours_to_classes() {
        let palette = [[0, 0, 0], [255, 0, 0], [0, 0, 255]];
        let rgb = [0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 255, 9, 9, 9];
        assert_eq!(classes_from_colors(&rgb, &palette, Some([9, 9, 9])), Ok(vec![0, 1, 1, 2, UNLABELLED]));
        assert_eq!(classes_from_colors(&rgb, &palette, None), Err([9, 9, 9]));
    }
}
