//! Image/mask pairs from files: which files of a `--data` folder pair up (matched by stem; repeated flags
//! are paired by the command line's resolve step), reading them through the shared readers, and checking
//! that they fit together.

use std::path::{Path, PathBuf};

use imaging::classes::{self, color_hex, Rgb};
use imaging::files::{self, InputFileError};
use imaging::masks::{LabelFormat, LabelRule};
use imaging::source::{Channels, ImageSource, Orientation};

use super::TrainingImage;

/// The largest image the trainer decodes, in pixels (10,000 x 10,000): training holds every image in memory,
/// so a bigger one (or a small file whose header claims one, a decompression bomb) is refused up front.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{what} {path}: cannot read it: {reason}")]
    Unreadable { what: String, path: PathBuf, reason: String },
    #[error("{what} {path}: {reason}")]
    NotAFile { what: String, path: PathBuf, reason: InputFileError },
    #[error(
        "{what} {path}: the image is {width}x{height} = {pixels} pixels, over the trainer's limit of \
         {limit} pixels; split it into smaller images"
    )]
    TooLarge { what: String, path: PathBuf, width: u64, height: u64, pixels: u64, limit: u64 },
    #[error(
        "{what} {path}: the mask is {mask_w}x{mask_h} but the image is {image_w}x{image_h} (width x height): \
         they must be the same size, pixel for pixel"
    )]
    SizeMismatch { what: String, path: PathBuf, image_w: usize, image_h: usize, mask_w: usize, mask_h: usize },
    #[error("{what} {path}: {source}")]
    Mask { what: String, path: PathBuf, source: MaskError },
    #[error(
        "{what} {path}: the image has {image} but the mask {mask}: training pairs the \
         stored pixels, which would not match the pair you see; save both with the same orientation"
    )]
    Orientation { what: String, path: PathBuf, image: String, mask: String },
    #[error("{what} {path}: the image is {width}x{height}: training needs at least 2x2 pixels")]
    TooSmall { what: String, path: PathBuf, width: usize, height: usize },
    #[error("--data {dir}: {reason}")]
    Folder { dir: PathBuf, reason: String },
}

/// What is wrong with a mask's values.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error(
        "the mask must hold exactly two values (e.g. 0 = background, 255 = foreground), found {count}: {listed}{hint}"
    )]
    NotTwoValued { count: usize, listed: String, hint: &'static str },
    #[error(
        "the mask holds only {values}: pixels > 127 are foreground, so both values are one single class; \
         save the foreground as 255 and the background as 0"
    )]
    OneSided { values: String },
    #[error(
        "the mask holds the value {value}, which an ilastik label image (--label-format ilastik) does not: \
         0 is unlabelled, 1 background, 2 foreground; export the labels from ilastik as they are, or use \
         --label-format binary for a 0/255 mask"
    )]
    NotIlastik { value: u8 },
    #[error(
        "the mask holds the value {value}, which is not a class of {format} with {classes} classes ({allowed}); \
         raise --classes, or mark unlabelled pixels with --ignore-value"
    )]
    NotAClass { value: u8, format: &'static str, classes: usize, allowed: String },
    #[error(
        "the mask holds the colour {color}, which is not among --class-colors {palette}: a colour mask must be \
         drawn with exactly those colours (no anti-aliasing; PNG, not JPEG)"
    )]
    UnknownColor { color: String, palette: String },
}

/// How mask files become labels for a model of some number of classes.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskReading {
    /// A gray mask read by a rule (binary, ilastik or index) for `classes` classes; [`imaging::classes::MAX_CLASSES`] to read
    /// index and ilastik masks before their number of classes is known (see [`inferred_classes`]).
    Gray { rule: LabelRule, classes: usize },
    /// A colour mask (`--label-format color`): the pixels of the i-th colour are class i.
    Colors { palette: Vec<Rgb> },
}

impl MaskReading {
    /// Two classes by `rule`: the seed's reading.
    pub fn two_classes(rule: LabelRule) -> MaskReading {
        MaskReading::Gray { rule, classes: 2 }
    }
}

/// The number of classes index or ilastik masks imply: one more than the largest class in any of them (at
/// least 2).
pub fn inferred_classes<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut top = 0u8;
    for l in labels {
        top = l.iter().filter(|&&v| v != imaging::masks::UNLABELLED).fold(top, |t, &v| t.max(v));
    }
    (top as usize + 1).max(2)
}

/// An image file and its mask file, with the flags they came from (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSource {
    pub image: PathBuf,
    pub mask: PathBuf,
    /// e.g. `--image` / `--mask`, `--val-image #2` / `--val-mask #2`, `--data image` / `--data mask`.
    pub image_flag: String,
    pub mask_flag: String,
}

impl PairSource {
    /// The pairs of `--data DIR`: every file of DIR/images with the file of DIR/masks of the same stem.
    pub fn from_folder(dir: &Path) -> Result<Vec<PairSource>, DataError> {
        let folder_err = |reason: String| DataError::Folder { dir: dir.to_path_buf(), reason };
        let list = |sub: &str| -> Result<Vec<PathBuf>, DataError> {
            let path = dir.join(sub);
            let entries = std::fs::read_dir(&path).map_err(|e| {
                folder_err(format!(
                    "cannot list {}: {}; --data expects DIR/images/ and DIR/masks/",
                    path.display(),
                    files::io_reason(&e)
                ))
            })?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| folder_err(files::io_reason(&e)))?;
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with('.') {
                    files.push(entry.path());
                }
            }
            files.sort();
            Ok(files)
        };
        let pairs = match_by_stem(&list("images")?, &list("masks")?).map_err(folder_err)?;
        Ok(pairs
            .into_iter()
            .map(|(image, mask)| PairSource {
                image,
                mask,
                image_flag: "--data image".into(),
                mask_flag: "--data mask".into(),
            })
            .collect())
    }
}

/// Pairs images with masks of the same file stem (`a.jpg` with `a.png`); every image needs exactly one mask
/// and every mask one image.
pub fn match_by_stem(images: &[PathBuf], masks: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut pairs = Vec::new();
    for image in images {
        let matching: Vec<&PathBuf> = masks.iter().filter(|m| stem(m) == stem(image)).collect();
        match matching.as_slice() {
            [mask] => pairs.push((image.clone(), (*mask).clone())),
            [] => {
                return Err(format!(
                    "no mask in masks/ for images/{} (masks are matched by file stem)",
                    name_of(image)
                ))
            }
            _ => return Err(format!("several masks in masks/ have the stem of images/{}", name_of(image))),
        }
    }
    if let Some(orphan) = masks.iter().find(|m| !images.iter().any(|i| stem(i) == stem(m))) {
        return Err(format!("masks/{} has no image of the same stem in images/", name_of(orphan)));
    }
    if pairs.is_empty() {
        return Err("images/ holds no files".into());
    }
    Ok(pairs)
}

/// The file name of `path`, for messages and summaries.
pub(crate) fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Reads an image file through the shared readers (format recognised by content, converted as
/// `imaging::source` documents), refusing what would hang (not a regular file), exhaust memory (over
/// [`MAX_IMAGE_PIXELS`]) or silently invent pixels (a truncated file). Returns width, height and pixels.
pub fn read_image(path: &Path, what: &str, channels: Channels) -> Result<ReadImage, DataError> {
    let unreadable =
        |reason: String| DataError::Unreadable { what: what.to_string(), path: path.to_path_buf(), reason };
    files::regular_file_size(path).map_err(|reason| DataError::NotAFile {
        what: what.to_string(),
        path: path.to_path_buf(),
        reason,
    })?;
    let mut source = ImageSource::open(path, channels).map_err(|e| unreadable(e.to_string()))?;
    let (width, height) = (source.width(), source.height());
    let pixels = width as u64 * height as u64;
    if pixels > MAX_IMAGE_PIXELS {
        return Err(DataError::TooLarge {
            what: what.to_string(),
            path: path.to_path_buf(),
            width: width as u64,
            height: height as u64,
            pixels,
            limit: MAX_IMAGE_PIXELS,
        });
    }
    let orientation = source.orientation();
    let pixels = source.read_all().map_err(|e| unreadable(e.to_string()))?;
    Ok(ReadImage { width, height, pixels, orientation })
}

/// An image file's stored pixels and the EXIF orientation a viewer shows them in.
pub struct ReadImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
    pub orientation: Orientation,
}

/// Loads an image (converted to 8-bit RGB) and its mask (converted to 8-bit gray, read by `rule`: pixels
/// above 127 are foreground unless the rule says otherwise) and checks that they fit together. Errors name
/// the flag and file.
pub fn load_pair(source: &PairSource, rule: LabelRule) -> Result<TrainingImage, DataError> {
    load_pair_reading(source, &MaskReading::two_classes(rule))
}

/// [`load_pair`] with the mask read as `reading` says (more than two classes, colour masks).
pub fn load_pair_reading(source: &PairSource, reading: &MaskReading) -> Result<TrainingImage, DataError> {
    let (ip, mp) = (&source.image, &source.mask);
    let image = read_image(ip, &source.image_flag, Channels::Rgb)?;
    let channels = if matches!(reading, MaskReading::Colors { .. }) { Channels::Rgb } else { Channels::Gray };
    let mask = read_image(mp, &source.mask_flag, channels)?;
    // Training pairs stored pixels; a viewer shows each file turned by its own orientation tag, so two
    // different tags mean the pair the person sees is not the pair training would use.
    if image.orientation != mask.orientation {
        return Err(DataError::Orientation {
            what: source.mask_flag.clone(),
            path: mp.clone(),
            image: image.orientation.to_string(),
            mask: mask.orientation.to_string(),
        });
    }
    let (width, height, rgb) = (image.width, image.height, image.pixels);
    let (mask_w, mask_h, gray) = (mask.width, mask.height, mask.pixels);
    if (width, height) != (mask_w, mask_h) {
        return Err(DataError::SizeMismatch {
            what: source.mask_flag.clone(),
            path: mp.clone(),
            image_w: width,
            image_h: height,
            mask_w,
            mask_h,
        });
    }
    if width < 2 || height < 2 {
        return Err(DataError::TooSmall { what: source.image_flag.clone(), path: ip.clone(), width, height });
    }
    let labels = labels_by(&gray, reading).map_err(|source_err| DataError::Mask {
        what: source.mask_flag.clone(),
        path: mp.clone(),
        source: source_err,
    })?;
    Ok(TrainingImage { name: name_of(ip), mask_name: name_of(mp), width, height, rgb, labels })
}

/// Turns mask bytes (gray, or RGB for colour masks) into labels as `reading` says: two classes by
/// [`labels_from_mask`], index and ilastik masks of more classes by [`LabelRule::classes_among`], colour
/// masks by [`classes::classes_from_colors`].
pub fn labels_by(mask: &[u8], reading: &MaskReading) -> Result<Vec<u8>, MaskError> {
    match reading {
        MaskReading::Gray { rule, classes: 2 } if rule.format != LabelFormat::Index => {
            labels_from_mask(mask, *rule)
        }
        &MaskReading::Gray { rule, classes } => rule.classes_among(mask, classes).map_err(|value| {
            // A value no class count can hold (a 0/255 mask read as ilastik's): say what ilastik writes.
            if rule.format == LabelFormat::Ilastik && usize::from(value) > imaging::classes::MAX_CLASSES {
                return MaskError::NotIlastik { value };
            }
            let (format, allowed) = match rule.format {
                LabelFormat::Ilastik => ("an ilastik label image", format!("0 unlabelled, 1..={classes}")),
                _ => ("an index mask", format!("0..={}", classes - 1)),
            };
            MaskError::NotAClass { value, format, classes, allowed }
        }),
        MaskReading::Colors { palette } => {
            classes::classes_from_colors(mask, palette, None).map_err(|c| MaskError::UnknownColor {
                color: color_hex(c),
                palette: palette.iter().map(|&p| color_hex(p)).collect::<Vec<_>>().join(","),
            })
        }
    }
}

/// Turns mask bytes into labels by `rule` (0, 1, or [`imaging::masks::UNLABELLED`] for the pixels the rule
/// leaves unlabelled). A binary mask is refused when its labelled values are more than two (JPEG noise) or
/// fall on one side of 127 (such as 0 and 1: one class, surely a mistake); the ignore value is not counted
/// among them. An ilastik label image is refused when it holds a value above 2. A mask of one class is
/// accepted: an image with no foreground is a legitimate negative example (whether a whole training set
/// holds both classes is checked by training).
pub fn labels_from_mask(mask: &[u8], rule: LabelRule) -> Result<Vec<u8>, MaskError> {
    if rule.format == LabelFormat::Ilastik {
        return rule.classes(mask).map_err(|value| MaskError::NotIlastik { value });
    }
    let mut seen = [false; 256];
    for &v in mask {
        seen[v as usize] = true;
    }
    let values: Vec<u8> = (0..=255u8).filter(|&v| seen[v as usize] && rule.ignore != Some(v)).collect();
    if values.len() > 2 {
        let shown: Vec<String> = values.iter().take(8).map(u8::to_string).collect();
        let listed = if values.len() > 8 { format!("{}, ...", shown.join(", ")) } else { shown.join(", ") };
        return Err(MaskError::NotTwoValued {
            count: values.len(),
            listed,
            hint: " (a JPEG mask carries compression noise: save masks as PNG)",
        });
    }
    if let [a, b] = values[..] {
        if imaging::masks::is_foreground(a) == imaging::masks::is_foreground(b) {
            return Err(MaskError::OneSided { values: format!("{a} and {b}") });
        }
    }
    Ok(rule.classes(mask).expect("a binary rule has a class for every value"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imaging::masks::UNLABELLED;

    #[test]
    fn stems_pair_images_with_masks() {
        let p = |s: &str| PathBuf::from(s);
        let pairs = match_by_stem(&[p("i/a.jpg"), p("i/b.png")], &[p("m/b.png"), p("m/a.png")]).unwrap();
        assert_eq!(pairs, vec![(p("i/a.jpg"), p("m/a.png")), (p("i/b.png"), p("m/b.png"))]);
        let err = match_by_stem(&[p("i/a.jpg")], &[p("m/c.png")]).unwrap_err();
        assert!(err.contains("no mask in masks/ for images/a.jpg"), "{err}");
        let err = match_by_stem(&[p("i/a.jpg")], &[p("m/a.png"), p("m/z.png")]).unwrap_err();
        assert!(err.contains("masks/z.png has no image"), "{err}");
        let err = match_by_stem(&[p("i/a.jpg")], &[p("m/a.png"), p("m/a.tif")]).unwrap_err();
        assert!(err.contains("several masks"), "{err}");
        assert!(match_by_stem(&[], &[]).unwrap_err().contains("no files"));
    }

    #[test]
    fn partial_masks_leave_the_ignore_value_or_ilastik_zero_unlabelled() {
        let ignore = |v| LabelRule { format: LabelFormat::Binary, ignore: Some(v) };
        // 128 unlabelled, checked before the > 127 rule; it does not count as a third value.
        assert_eq!(labels_from_mask(&[0, 128, 255], ignore(128)).unwrap(), vec![0, UNLABELLED, 1]);
        assert_eq!(labels_from_mask(&[128, 128], ignore(128)).unwrap(), vec![UNLABELLED; 2]);
        let err = labels_from_mask(&[0, 128, 200, 255], ignore(128)).unwrap_err().to_string();
        assert!(err.contains("found 3: 0, 200, 255"), "{err}");
        let err = labels_from_mask(&[0, 1, 128], ignore(128)).unwrap_err().to_string();
        assert!(err.contains("only 0 and 1"), "{err}");
        let ilastik = LabelRule { format: LabelFormat::Ilastik, ignore: None };
        assert_eq!(labels_from_mask(&[0, 1, 2, 2], ilastik).unwrap(), vec![UNLABELLED, 0, 1, 1]);
        let err = labels_from_mask(&[0, 1, 255], ilastik).unwrap_err().to_string();
        assert!(err.contains("the value 255") && err.contains("0 is unlabelled, 1 background"), "{err}");
    }

    #[test]
    fn index_ilastik_and_colour_masks_of_more_classes() {
        let index = MaskReading::Gray {
            rule: LabelRule { format: LabelFormat::Index, ignore: Some(255) },
            classes: 3,
        };
        assert_eq!(labels_by(&[0, 1, 2, 255], &index).unwrap(), [0, 1, 2, UNLABELLED]);
        let err = labels_by(&[0, 3], &index).unwrap_err().to_string();
        assert!(err.contains("the value 3") && err.contains("3 classes (0..=2)"), "{err}");
        let ilastik =
            MaskReading::Gray { rule: LabelRule { format: LabelFormat::Ilastik, ignore: None }, classes: 3 };
        assert_eq!(labels_by(&[0, 1, 3], &ilastik).unwrap(), [UNLABELLED, 0, 2]);
        assert!(labels_by(&[4], &ilastik).unwrap_err().to_string().contains("ilastik"));
        // Two-class index masks are read by index too (0 and 1), not by the > 127 rule.
        let two =
            MaskReading::Gray { rule: LabelRule { format: LabelFormat::Index, ignore: None }, classes: 2 };
        assert_eq!(labels_by(&[0, 1], &two).unwrap(), [0, 1]);
        assert!(labels_by(&[255], &two).is_err());
        let colors = MaskReading::Colors { palette: vec![[0, 0, 0], [255, 0, 0], [0, 0, 255]] };
        assert_eq!(labels_by(&[0, 0, 0, 0, 0, 255, 255, 0, 0], &colors).unwrap(), [0, 2, 1]);
        let err = labels_by(&[1, 2, 3], &colors).unwrap_err().to_string();
        assert!(err.contains("#010203") && err.contains("#000000,#ff0000,#0000ff"), "{err}");
        assert_eq!(inferred_classes([&[0u8, 2, UNLABELLED][..], &[1, 4][..]]), 5);
        assert_eq!(inferred_classes([&[0u8, 0][..]]), 2);
    }

    #[test]
    fn masks_must_be_two_valued_on_both_sides_of_127_or_one_valued() {
        let labels_from_mask = |m: &[u8]| labels_from_mask(m, LabelRule::default());
        assert_eq!(labels_from_mask(&[0, 255, 255, 0]).unwrap(), vec![0, 1, 1, 0]);
        assert_eq!(labels_from_mask(&[3, 200]).unwrap(), vec![0, 1]);
        let err = labels_from_mask(&[0, 1, 2, 255]).unwrap_err().to_string();
        assert!(err.contains("found 4: 0, 1, 2, 255"), "{err}");
        let err = labels_from_mask(&[0, 1, 0]).unwrap_err().to_string();
        assert!(err.contains("only 0 and 1") && err.contains("single class"), "{err}");
        // One value: an image of one class (a negative example) is legitimate.
        assert_eq!(labels_from_mask(&[255, 255]).unwrap(), vec![1, 1]);
        assert_eq!(labels_from_mask(&[0, 0, 0]).unwrap(), vec![0, 0, 0]);
        let err = labels_from_mask(&[200, 255]).unwrap_err().to_string();
        assert!(err.contains("only 200 and 255"), "{err}");
    }
}
