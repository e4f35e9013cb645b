//! Training data from a slide and its QuPath annotations: only the annotated areas are read, at the chosen
//! resolution level, so a slide of any size trains in memory that grows with the annotated area.
//!
//! The annotations' boxes (at the level) are grown to at least one crop, padded with some context and
//! merged where they overlap ([`imaging::areas::merge`]); each merged area is read in one pass over the
//! slide ([`imaging::areas::read_areas`]) and becomes one [`TrainingImage`] whose labels are the
//! annotations rasterised by the centre rule ([`imaging::annotations::classes::Labeller`]): foreground,
//! background or [`super::UNLABELLED`].

use std::path::PathBuf;

use imaging::annotations::classes::{Labeller, Unannotated};
use imaging::annotations::{geojson, AnnotationError};
use imaging::areas::{self, Rect};
use imaging::files;
use imaging::source::{Channels, ImageSource};

use super::load::name_of;
use super::TrainingImage;

/// The most level pixels the annotated areas of all slides may hold together (4 bytes each in memory: RGB
/// and a label), so that training stays within about a gigabyte.
pub const MAX_ANNOTATED_PIXELS: u64 = 150_000_000;

/// Context read around each annotation: pixels the network sees at a crop's edge, unlabelled unless an
/// annotation covers them.
pub const CONTEXT_PX: usize = 16;

/// The largest GeoJSON file read, in bytes.
pub const MAX_GEOJSON_BYTES: u64 = 1 << 30;

/// A slide and the annotations to train on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedSource {
    pub image: PathBuf,
    pub annotations: PathBuf,
    /// The flags they came from, for errors: `--image #2`, `--annotations #2`.
    pub image_flag: String,
    pub annotations_flag: String,
}

/// How annotations become labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationRule {
    /// Exact class names that are foreground (`--foreground-class`); every other class is background.
    pub foreground_classes: Vec<String>,
    /// More than two classes (`--class NAME` repeated): the QuPath class of each class index, in order
    /// (see [`Labeller::with_classes`]); empty for the two-class form of `foreground_classes`.
    pub classes: Vec<String>,
    /// What a pixel in no annotation is.
    pub unannotated: Unannotated,
    /// The pyramid level read (0 is full resolution).
    pub level: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AnnotatedError {
    #[error("{flag} {path}: {reason}")]
    Slide { flag: String, path: PathBuf, reason: String },
    #[error("{flag} {path}: {source}")]
    Annotations { flag: String, path: PathBuf, source: AnnotationError },
    #[error(
        "{flag} {path}: the annotated areas hold {pixels} pixels at level {level}, over the limit of {limit} \
         that keeps training within about a gigabyte; train at a lower resolution (--level {next}) or \
         annotate smaller areas"
    )]
    TooLarge { flag: String, path: PathBuf, pixels: u64, level: usize, next: usize, limit: u64 },
}

/// The areas to read at a level of `width` x `height`: each annotation box grown to at least `min_side`
/// (centred on it, clipped to the level), padded by [`CONTEXT_PX`], merged where they overlap. Pure.
pub fn training_areas(boxes: &[Rect], min_side: usize, width: usize, height: usize) -> Vec<Rect> {
    let grown: Vec<Rect> = boxes
        .iter()
        .map(|r| {
            let grow = |start: usize, len: usize, limit: usize| {
                let len2 = len.max(min_side).min(limit);
                let start2 = start.saturating_sub((len2 - len.min(len2)) / 2).min(limit - len2);
                (start2, len2)
            };
            let (left, w) = grow(r.left, r.width, width);
            let (top, h) = grow(r.top, r.height, height);
            Rect { left, top, width: w, height: h }
        })
        .collect();
    areas::merge(&grown, CONTEXT_PX, width, height)
}

/// Reads the annotated areas of one slide as training images, named after the slide and the area.
pub fn load_annotated(
    source: &AnnotatedSource,
    rule: &AnnotationRule,
    crop: usize,
) -> Result<Vec<TrainingImage>, AnnotatedError> {
    let slide_error = |reason: String| AnnotatedError::Slide {
        flag: source.image_flag.clone(),
        path: source.image.clone(),
        reason,
    };
    let annotation_error = |e: AnnotationError| AnnotatedError::Annotations {
        flag: source.annotations_flag.clone(),
        path: source.annotations.clone(),
        source: e,
    };
    files::check_input(&source.annotations_flag, &source.annotations)
        .map_err(|e| slide_error(format!("{e}")))?;
    let size = files::regular_file_size(&source.annotations).map_err(|e| AnnotatedError::Slide {
        flag: source.annotations_flag.clone(),
        path: source.annotations.clone(),
        reason: e.to_string(),
    })?;
    if size > MAX_GEOJSON_BYTES {
        return Err(AnnotatedError::Slide {
            flag: source.annotations_flag.clone(),
            path: source.annotations.clone(),
            reason: format!("the file is {size} bytes, over the limit of {MAX_GEOJSON_BYTES}"),
        });
    }
    let text = std::fs::read_to_string(&source.annotations).map_err(|e| AnnotatedError::Slide {
        flag: source.annotations_flag.clone(),
        path: source.annotations.clone(),
        reason: format!("cannot read it: {}", files::io_reason(&e)),
    })?;
    let annotations = geojson::parse(&text).map_err(annotation_error)?;

    let mut slide = ImageSource::open_level(&source.image, rule.level, Channels::Rgb)
        .map_err(|e| slide_error(e.to_string()))?;
    let levels = &slide.info().levels;
    let full = levels.first().map_or((slide.width(), slide.height()), |l| (l.width, l.height));
    let scale = levels.get(rule.level).map_or((1.0, 1.0), |l| l.downsample);
    annotations.check_within(full.0 as u64, full.1 as u64).map_err(annotation_error)?;
    let labeller = if rule.classes.is_empty() {
        Labeller::new(&annotations, &rule.foreground_classes, rule.unannotated)
    } else {
        Labeller::with_classes(&annotations, &rule.classes, rule.unannotated)
    }
    .map_err(annotation_error)?;

    let (width, height) = (slide.width(), slide.height());
    // Only annotated areas are read, also when unannotated pixels count as background: the annotations say
    // where to look, and a slide is mostly what nobody needs to train on.
    let areas = training_areas(&labeller.boxes(scale, width as u64, height as u64), crop, width, height);
    let pixels: u64 = areas.iter().map(|a| a.area() as u64).sum();
    if pixels > MAX_ANNOTATED_PIXELS {
        return Err(AnnotatedError::TooLarge {
            flag: source.annotations_flag.clone(),
            path: source.annotations.clone(),
            pixels,
            level: rule.level,
            next: rule.level + 1,
            limit: MAX_ANNOTATED_PIXELS,
        });
    }
    let rgb = areas::read_areas(&mut slide, &areas, 64).map_err(|e| slide_error(e.to_string()))?;
    let slide_name = name_of(&source.image);
    let annotations_name = name_of(&source.annotations);
    Ok(areas
        .iter()
        .zip(rgb)
        .map(|(area, rgb)| {
            let mut labels = vec![0u8; area.area()];
            // Unannotated pixels come as imaging's UNLABELLED, the trainer's own.
            labeller.fill(*area, scale, &mut labels);
            TrainingImage {
                name: format!(
                    "{slide_name} level {} area {}x{} at ({}, {})",
                    rule.level, area.width, area.height, area.left, area.top
                ),
                mask_name: annotations_name.clone(),
                width: area.width,
                height: area.height,
                rgb,
                labels,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel_box(left: usize, top: usize, width: usize, height: usize) -> Rect {
        Rect { left, top, width, height }
    }

    #[test]
    fn small_annotations_grow_to_a_crop_and_near_ones_merge() {
        // A 10x10 box grows to 64x64 centred on it, padded by the context.
        let areas = training_areas(&[pixel_box(100, 100, 10, 10)], 64, 1000, 1000);
        let c = CONTEXT_PX;
        assert_eq!(areas, vec![Rect { left: 73 - c, top: 73 - c, width: 64 + 2 * c, height: 64 + 2 * c }]);
        // At the image's corner the grown box stays inside.
        let areas = training_areas(&[pixel_box(0, 995, 5, 5)], 64, 1000, 1000);
        assert_eq!(areas, vec![Rect { left: 0, top: 936 - c, width: 64 + c, height: 64 + c }]);
        // Two boxes whose context overlaps read as one area.
        let areas = training_areas(&[pixel_box(0, 0, 100, 100), pixel_box(120, 0, 100, 100)], 64, 1000, 1000);
        assert_eq!(areas.len(), 1);
        // An image smaller than the crop gives the whole image.
        let areas = training_areas(&[pixel_box(3, 3, 4, 4)], 64, 40, 30);
        assert_eq!(areas, vec![Rect { left: 0, top: 0, width: 40, height: 30 }]);
    }
}
