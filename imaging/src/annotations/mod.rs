//! Annotations drawn as polygons (QuPath's GeoJSON), in and out, without ever holding a full-size mask.
//!
//! Stages, each a pure function of its inputs (no files here; the binaries read and write them):
//! - [`geojson`]: a QuPath GeoJSON export parsed into [`Annotations`] (polygons with holes, class names),
//!   refusing what cannot be drawn with one line each.
//! - [`raster`]: the centre rule, a window of one level at a time: a level pixel belongs to a polygon when
//!   its centre, in level-0 coordinates, is inside the polygon (see [`raster`] for the exact edge rule).
//! - [`classes`]: classes to training labels (foreground, background, unlabelled) for a window.
//! - [`trace`]: a predicted mask, row by row, back into polygons (one per 8-connected region, with its
//!   holes, with its pixels' scores); [`measure`]: area, perimeter, centroid of a polygon with holes;
//!   [`write`](mod@write): those polygons as GeoJSON that QuPath's "Import objects" reads, with measurements.
//!
//! Coordinates are level-0 pixels with the origin at the top-left corner of the image (QuPath's
//! convention); x grows to the right, y down.

use crate::rect::Rect;

pub mod classes;
pub mod geojson;
pub mod measure;
pub mod raster;
pub mod trace;
pub mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trace_tests;

/// A point in level-0 pixel coordinates (x, y).
pub type Point = (f64, f64);

/// A closed ring of points; the closing point (equal to the first) may be present or not.
pub type Ring = Vec<Point>;

/// A polygon: an outer ring and the holes cut out of it. A point is inside when it is inside the outer
/// ring and inside none of the holes (each ring by the even-odd rule, see [`raster`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// The outer boundary.
    pub outer: Ring,
    /// Holes, each a ring inside the outer one.
    pub holes: Vec<Ring>,
}

impl Polygon {
    /// The bounding box of the outer ring (holes lie inside it).
    pub fn bounds(&self) -> Bounds {
        Bounds::of_points(&self.outer)
    }
}

/// An axis-aligned box in level-0 coordinates, `min` inclusive, `max` the largest coordinate seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Smallest x.
    pub min_x: f64,
    /// Smallest y.
    pub min_y: f64,
    /// Largest x.
    pub max_x: f64,
    /// Largest y.
    pub max_y: f64,
}

impl Bounds {
    /// The box of some points (an empty box, min above max, when there are none).
    pub fn of_points(points: &[Point]) -> Bounds {
        let mut b = Bounds::EMPTY;
        for &(x, y) in points {
            b.min_x = b.min_x.min(x);
            b.min_y = b.min_y.min(y);
            b.max_x = b.max_x.max(x);
            b.max_y = b.max_y.max(y);
        }
        b
    }

    /// The box that holds nothing.
    pub const EMPTY: Bounds = Bounds {
        min_x: f64::INFINITY,
        min_y: f64::INFINITY,
        max_x: f64::NEG_INFINITY,
        max_y: f64::NEG_INFINITY,
    };

    /// The smallest box holding both.
    pub fn union(self, other: Bounds) -> Bounds {
        Bounds {
            min_x: self.min_x.min(other.min_x),
            min_y: self.min_y.min(other.min_y),
            max_x: self.max_x.max(other.max_x),
            max_y: self.max_y.max(other.max_y),
        }
    }

    /// The level pixels whose centres may fall inside the box, at a level whose pixel is `scale` level-0
    /// pixels wide and high (`(2.0, 2.0)` at a level downsampled by 2), clipped to a level of
    /// `level_width` x `level_height`; `None` when no pixel centre is inside.
    pub fn pixels(&self, scale: (f64, f64), level_width: u64, level_height: u64) -> Option<Rect> {
        let (x0, x1) = raster::centre_range(self.min_x, self.max_x, scale.0, level_width)?;
        let (y0, y1) = raster::centre_range(self.min_y, self.max_y, scale.1, level_height)?;
        Some(Rect {
            left: x0 as usize,
            top: y0 as usize,
            width: (x1 - x0) as usize,
            height: (y1 - y0) as usize,
        })
    }
}

/// One feature of the file that has an area: its class and its polygons (one for a Polygon, several for
/// a MultiPolygon or a GeometryCollection of polygons).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// `properties.classification.name` (derived classes `"A: B"`), `None` when unclassified.
    pub class: Option<String>,
    /// `properties.objectType` ("annotation", "detection", "cell", ...), `None` when absent.
    pub object_type: Option<String>,
    /// The polygons, their union is the annotated area.
    pub polygons: Vec<Polygon>,
    /// The box of all the polygons, level 0.
    pub bounds: Bounds,
    /// The feature's position in the file (0-based), for messages.
    pub index: usize,
}

/// Everything of a GeoJSON file that can be drawn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Annotations {
    /// The features with an area, in file order.
    pub items: Vec<Annotation>,
    /// Features without an area (points, lines, a null geometry), which are left out.
    pub skipped: usize,
}

impl Annotations {
    /// The class names used, sorted, each once (`None`, unclassified, first when present).
    pub fn class_names(&self) -> Vec<Option<String>> {
        let mut names: Vec<Option<String>> = self.items.iter().map(|a| a.class.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Checks that every point lies on a slide of `width` x `height` level-0 pixels (coordinates from 0 to
    /// the width and height, both included: a polygon may run along the far edge).
    pub fn check_within(&self, width: u64, height: u64) -> Result<(), AnnotationError> {
        for a in &self.items {
            for p in &a.polygons {
                for &(x, y) in p.outer.iter().chain(p.holes.iter().flatten()) {
                    if !(0.0..=width as f64).contains(&x) || !(0.0..=height as f64).contains(&y) {
                        return Err(AnnotationError::Outside {
                            feature: describe(a.index, a.class.as_deref()),
                            x,
                            y,
                            width,
                            height,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// "feature 3 (class Tumor)" or "feature 3 (unclassified)", for messages.
pub(crate) fn describe(index: usize, class: Option<&str>) -> String {
    match class {
        Some(c) => format!("feature {index} (class \"{c}\")"),
        None => format!("feature {index} (unclassified)"),
    }
}

/// Why annotations are refused: one line each, saying what is wrong and how to fix it. The caller adds the
/// flag and the file name in front.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnotationError {
    /// Not JSON at all.
    #[error("not valid JSON ({0}); export the annotations from QuPath as GeoJSON")]
    Json(String),
    /// JSON, but neither a FeatureCollection, an array of Features nor a Feature.
    #[error("is {found}, not a GeoJSON FeatureCollection; export the annotations from QuPath (File > Export objects as GeoJSON) or give a FeatureCollection of Polygon/MultiPolygon features")]
    NotFeatureCollection {
        /// What the top level is.
        found: String,
    },
    /// A feature or geometry whose structure is wrong.
    #[error("{feature}: {problem}; each feature needs a geometry of type Polygon or MultiPolygon with coordinates [[[x, y], ...], ...]")]
    Malformed {
        /// Which feature.
        feature: String,
        /// What is wrong.
        problem: String,
    },
    /// A ring with fewer than three distinct points.
    #[error("{feature}: ring {ring} of polygon {polygon} has {distinct} distinct point(s); a ring needs at least three to enclose an area (remove the feature or redraw it)")]
    ShortRing {
        /// Which feature.
        feature: String,
        /// Polygon within the feature (0-based).
        polygon: usize,
        /// Ring within the polygon, 0 the outer one.
        ring: usize,
        /// Distinct points it has.
        distinct: usize,
    },
    /// A point outside the slide.
    #[error("{feature} has the point ({x}, {y}), outside the image's {width}x{height} level-0 pixels; were the annotations exported from another image?")]
    Outside {
        /// Which feature.
        feature: String,
        /// The point.
        x: f64,
        /// The point.
        y: f64,
        /// Level-0 width.
        width: u64,
        /// Level-0 height.
        height: u64,
    },
    /// No annotation has any of the foreground classes.
    #[error("no annotation has a foreground class ({wanted}); the file's classes are {found}; pass --foreground-class with one of them")]
    NoForeground {
        /// The classes asked for.
        wanted: String,
        /// The classes present.
        found: String,
    },
    /// Annotations of classes that are neither listed (`--class`) nor ignored (`Ignore*`).
    #[error("annotations have the classes {unknown}, which are not among --class {wanted}: add them with --class (in class-index order), or rename them `Ignore*` in QuPath to leave them out")]
    UnknownClasses { unknown: String, wanted: String },
}
