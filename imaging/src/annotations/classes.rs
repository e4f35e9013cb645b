//! Annotations to training labels, one window at a time.
//!
//! Every feature with an area takes part, whatever its `objectType`. A pixel inside an annotation of a
//! foreground class (`--foreground-class`, repeatable) is foreground; inside only annotations of other
//! classes, or unclassified ones, it is background; where they overlap, foreground wins (QuPath's usual
//! layout: a region annotated as background, or unclassified, with the objects of interest drawn inside).
//! A pixel in no annotation is unlabelled, or background when [`Unannotated::Background`] is chosen.
//!
//! More than two classes ([`Labeller::with_classes`], `--class NAME` repeated in class-index order): a pixel
//! inside an annotation of the i-th class is class i; where annotations of several classes overlap the
//! later class wins (so objects drawn inside a region annotated as class 0 keep their class). As in QuPath's
//! pixel classifier, unclassified annotations and those of a class whose name starts with `Ignore` label
//! nothing: their pixels stay unlabelled unless another annotation covers them.

use super::raster::{paint, Scratch};
use super::{Annotation, AnnotationError, Annotations};
use crate::rect::Rect;

/// Label of a background pixel.
pub const BACKGROUND: u8 = 0;
/// Label of a foreground pixel.
pub const FOREGROUND: u8 = 1;
/// Label of a pixel no annotation covers, when those are unlabelled: the one unlabelled class of
/// [`crate::masks`], which the trainer's loss and scores skip.
pub use crate::masks::UNLABELLED;

/// What a pixel outside every annotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unannotated {
    /// Left out of the loss ([`UNLABELLED`]).
    Unlabelled,
    /// Background ([`BACKGROUND`]).
    Background,
}

/// Annotations split by the label they give, ready to fill windows of labels.
#[derive(Debug, Clone)]
pub struct Labeller {
    /// The annotations of each label, painted in this order (a later one wins where they overlap).
    layers: Vec<(Vec<Annotation>, u8)>,
    unannotated: Unannotated,
}

/// Whether QuPath leaves annotations of this class out of training (`Ignore*`).
pub fn is_ignored_class(name: &str) -> bool {
    name.starts_with("Ignore")
}

impl Labeller {
    /// Splits `annotations` by class: those whose class is one of `foreground_classes` (exact names) are
    /// foreground, all others (unclassified included) background. Refused when no annotation has a
    /// foreground class.
    pub fn new(
        annotations: &Annotations,
        foreground_classes: &[String],
        unannotated: Unannotated,
    ) -> Result<Labeller, AnnotationError> {
        let (foreground, background): (Vec<Annotation>, Vec<Annotation>) = annotations
            .items
            .iter()
            .cloned()
            .partition(|a| a.class.as_ref().is_some_and(|c| foreground_classes.contains(c)));
        if foreground.is_empty() {
            let found: Vec<String> = annotations
                .class_names()
                .into_iter()
                .map(|c| c.map_or("unclassified".to_owned(), |c| format!("\"{c}\"")))
                .collect();
            let wanted: Vec<String> = foreground_classes.iter().map(|c| format!("\"{c}\"")).collect();
            return Err(AnnotationError::NoForeground {
                wanted: if wanted.is_empty() { "none given".into() } else { wanted.join(", ") },
                found: if found.is_empty() {
                    "none (no feature with an area)".into()
                } else {
                    found.join(", ")
                },
            });
        }
        Ok(Labeller { layers: vec![(background, BACKGROUND), (foreground, FOREGROUND)], unannotated })
    }

    /// Labels of several classes: an annotation whose class is `classes[i]` labels class i; unclassified
    /// and `Ignore*` annotations label nothing. Refused when an annotation has a class that is neither
    /// listed nor ignored (a misspelt `--class` would otherwise drop its annotations silently), or when no
    /// annotation has a listed class.
    pub fn with_classes(
        annotations: &Annotations,
        classes: &[String],
        unannotated: Unannotated,
    ) -> Result<Labeller, AnnotationError> {
        let mut layers: Vec<(Vec<Annotation>, u8)> =
            (0..classes.len()).map(|i| (Vec::new(), i as u8)).collect();
        let mut unknown: Vec<String> = Vec::new();
        for a in &annotations.items {
            let Some(class) = &a.class else { continue };
            match classes.iter().position(|c| c == class) {
                Some(i) => layers[i].0.push(a.clone()),
                None if is_ignored_class(class) => {}
                None if !unknown.contains(class) => unknown.push(class.clone()),
                None => {}
            }
        }
        let quoted =
            |names: &[String]| names.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        if !unknown.is_empty() {
            return Err(AnnotationError::UnknownClasses {
                unknown: quoted(&unknown),
                wanted: quoted(classes),
            });
        }
        if layers.iter().all(|(a, _)| a.is_empty()) {
            let found: Vec<String> = annotations
                .class_names()
                .into_iter()
                .map(|c| c.map_or("unclassified".to_owned(), |c| format!("\"{c}\"")))
                .collect();
            return Err(AnnotationError::NoForeground {
                wanted: quoted(classes),
                found: if found.is_empty() {
                    "none (no feature with an area)".into()
                } else {
                    found.join(", ")
                },
            });
        }
        Ok(Labeller { layers, unannotated })
    }

    /// Fills `out` (`window.width * window.height` labels, row by row) with the labels of `window` at a
    /// level of pixel size `scale` (level-0 pixels per level pixel, e.g. the level's downsample).
    pub fn fill(&self, window: Rect, scale: (f64, f64), out: &mut [u8]) {
        assert_eq!(out.len(), window.area(), "label buffer of the window's size");
        out.fill(match self.unannotated {
            Unannotated::Unlabelled => UNLABELLED,
            Unannotated::Background => BACKGROUND,
        });
        let mut scratch = Scratch::default();
        let (right, bottom) = (window.right() as u64, window.bottom() as u64);
        for (annotations, value) in &self.layers {
            let value = *value;
            for a in annotations {
                // The box first: a slide may hold thousands of annotations, few of them in one crop.
                let Some(b) = a.bounds.pixels(scale, right, bottom) else { continue };
                if b.left + b.width <= window.left || b.top + b.height <= window.top {
                    continue;
                }
                for p in &a.polygons {
                    paint(p, window, scale, &mut scratch, out, value);
                }
            }
        }
    }

    /// The annotated areas at a level of `level_width` x `level_height` pixels and pixel size `scale`: the
    /// box of every annotation that holds a pixel centre (the last label's first: with two classes the
    /// foreground ones), for drawing crops where labels are.
    pub fn boxes(&self, scale: (f64, f64), level_width: u64, level_height: u64) -> Vec<Rect> {
        self.layers
            .iter()
            .rev()
            .flat_map(|(annotations, _)| annotations)
            .filter_map(|a| a.bounds.pixels(scale, level_width, level_height))
            .collect()
    }
}
