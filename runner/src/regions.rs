//! `--geojson`: the predicted foreground as QuPath objects, built as the bands stream. Each band's rows go
//! through the tracer of `imaging::annotations::trace` with their foreground probabilities; every region
//! it completes is measured and written at once as a Feature (its rings through the midpoints of the pixel
//! edges, in level-0 pixel coordinates), so memory holds the width's worth of tracing state and the
//! regions still open, never the mask.
//!
//! Each object carries `measurements` (QuPath's measurement table): `Area px^2` and `Perimeter px` of the
//! polygon written (level-0 pixels; holes subtracted from the area and added to the perimeter), `Area µm^2`
//! and `Perimeter µm` when the image records its pixel size, and `Probability mean` and `Probability max`,
//! the foreground probability over the region's pixels at the level predicted. `--objects-csv` writes the
//! same figures, one row per object, in the order of the features; `--min-object-area` leaves out the
//! regions smaller than it (from both files). A name ending in `.gz` is written gzipped.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use imaging::annotations::measure::Shape;
use imaging::annotations::trace::{Scores, TracedRegion, Tracer};
use imaging::annotations::write::{FeatureStyle, FeatureWriter, ObjectProperties};
use imaging::annotations::Polygon;
use imaging::files::{io_reason, FileError};

/// Which QuPath object type the regions become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectKind {
    /// Annotations for at most [`AUTO_ANNOTATIONS`] objects, detections beyond.
    #[default]
    Auto,
    /// Annotations (editable in QuPath, meant to be few).
    Annotation,
    /// Detections (lighter in QuPath, for many objects).
    Detection,
}

/// With [`ObjectKind::Auto`], this many objects or fewer are written as annotations, more as detections
/// (QuPath's advice: annotations are few and editable, large numbers of objects are detections).
pub const AUTO_ANNOTATIONS: usize = 1000;

/// `--min-object-area`: the smallest region written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinArea {
    /// Level-0 pixels (the GeoJSON's coordinate unit).
    Pixels(f64),
    /// µm², through the image's pixel size.
    SquareMicrons(f64),
}

// Parsed values are finite.
impl Eq for MinArea {}

impl MinArea {
    /// `200`, `200px` (level-0 pixels) or `50um2`, `50µm²`, `50µm^2` (square microns).
    pub fn parse(text: &str) -> Result<MinArea, String> {
        let t = text.trim();
        let (number, microns) = ["um2", "µm²", "µm^2", "um^2", "μm²", "μm2", "µm2"]
            .iter()
            .find_map(|s| t.strip_suffix(s).map(|n| (n, true)))
            .or_else(|| t.strip_suffix("px").map(|n| (n, false)))
            .unwrap_or((t, false));
        let value: f64 = number.trim().parse().map_err(|_| {
            format!("`{text}` is not an area; give pixels (e.g. 200 or 200px) or square microns (e.g. 50um2)")
        })?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("`{text}` must be a finite area of at least 0"));
        }
        Ok(if microns { MinArea::SquareMicrons(value) } else { MinArea::Pixels(value) })
    }
}

/// How the regions are labelled in QuPath and which are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GeoJsonLabel {
    /// `classification.name`; `None`: the model's foreground class name (its `classes` metadata).
    pub class: Option<String>,
    /// The object type.
    pub objects: ObjectKind,
    /// Regions smaller than this are left out.
    pub min_area: Option<MinArea>,
}

/// Where the GeoJSON goes: `file` (e.g. a temporary), `path` as given (for messages), its labels, and the
/// objects' table (`--objects-csv`: the file written and the path as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoJsonDestination {
    pub file: PathBuf,
    pub path: PathBuf,
    pub label: GeoJsonLabel,
    pub csv: Option<(PathBuf, PathBuf)>,
}

/// Whether a file name asks for gzip (`.gz`).
pub fn is_gzip_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The colour QuPath shows the regions in: the overlay's tint.
pub const COLOR: [u8; 3] = crate::render::TINT;

/// A file written plain or gzipped.
enum Output {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(w) => w.write(buf),
            Output::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Gzip(w) => w.flush(),
        }
    }
}

impl Output {
    fn create(file: &Path, gzip: bool) -> io::Result<Output> {
        let out = BufWriter::new(File::create(file)?);
        Ok(if gzip {
            Output::Gzip(Box::new(GzEncoder::new(out, flate2::Compression::default())))
        } else {
            Output::Plain(out)
        })
    }

    fn close(self) -> io::Result<()> {
        let buffered = match self {
            Output::Plain(w) => w,
            Output::Gzip(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))?;
        Ok(())
    }
}

/// One region ready to write.
struct Object {
    polygon: Polygon,
    shape: Shape,
    scores: Scores,
}

/// The tracer and the writers of one image.
pub struct RegionWriter {
    tracer: Tracer,
    writer: FeatureWriter<Output>,
    csv: Option<(BufWriter<File>, PathBuf)>,
    class: String,
    /// Level-0 pixels per pixel of the level predicted.
    scale: (f64, f64),
    /// Level-0 µm per pixel, when known.
    microns: Option<(f64, f64)>,
    /// The smallest area written, level-0 pixels.
    min_area: f64,
    objects: ObjectKind,
    /// With [`ObjectKind::Auto`], the objects held until their type is known.
    pending: Vec<Object>,
    written: usize,
    path: PathBuf,
}

/// Why the objects cannot be written as asked.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("--min-object-area {0} µm² needs the image's pixel size, which the image does not record; give the area in level-0 pixels instead (e.g. --min-object-area 200px)")]
    NoPixelSize(f64),
}

impl RegionWriter {
    /// Starts the files of `destination` for a mask `width` pixels wide, at a level of downsample `scale`
    /// of an image of level-0 pixel size `microns` (µm, if known); `model_class`
    /// names the regions unless the destination names them.
    pub fn create(
        destination: &GeoJsonDestination,
        width: usize,
        scale: (f64, f64),
        microns: Option<(f64, f64)>,
        model_class: &str,
    ) -> Result<RegionWriter, RegionError> {
        let path = destination.path.clone();
        let min_area = match destination.label.min_area {
            None => 0.0,
            Some(MinArea::Pixels(a)) => a,
            Some(MinArea::SquareMicrons(a)) => match microns {
                Some((mx, my)) => a / (mx * my),
                None => return Err(RegionError::NoPixelSize(a)),
            },
        };
        let error = |e: std::io::Error| write_error("--geojson", &path, &e);
        let file = Output::create(&destination.file, is_gzip_name(&destination.path)).map_err(error)?;
        let class = destination.label.class.clone().unwrap_or_else(|| model_class.to_owned());
        let style = FeatureStyle { object_type: "annotation".into(), class: class.clone(), color: COLOR };
        let writer = FeatureWriter::new(file, &style).map_err(error)?;
        let csv = match &destination.csv {
            Some((file, path)) => {
                let e = |e: std::io::Error| write_error("--objects-csv", path, &e);
                let mut out = BufWriter::new(File::create(file).map_err(e)?);
                out.write_all(CSV_HEADER.as_bytes()).map_err(e)?;
                Some((out, path.clone()))
            }
            None => None,
        };
        Ok(RegionWriter {
            tracer: Tracer::new(width),
            writer,
            csv,
            class,
            scale,
            microns,
            min_area,
            objects: destination.label.objects,
            pending: Vec::new(),
            written: 0,
            path,
        })
    }

    /// The next rows of the mask (class per pixel, 1 foreground) and their foreground probabilities;
    /// writes the regions they complete.
    pub fn push(&mut self, classes: &[u8], probabilities: Option<&[f32]>) -> Result<(), FileError> {
        for region in self.tracer.push_scored(classes, probabilities) {
            self.add(&region)?;
        }
        Ok(())
    }

    fn add(&mut self, region: &TracedRegion) -> Result<(), FileError> {
        let polygon = region.smoothed(self.scale);
        let shape = Shape::of(&polygon);
        if shape.area < self.min_area {
            return Ok(());
        }
        let object = Object { polygon, shape, scores: region.scores };
        match self.objects {
            ObjectKind::Auto => {
                self.pending.push(object);
                if self.pending.len() > AUTO_ANNOTATIONS {
                    self.objects = ObjectKind::Detection;
                    for o in std::mem::take(&mut self.pending) {
                        self.write(&o, "detection")?;
                    }
                }
                Ok(())
            }
            ObjectKind::Annotation => self.write(&object, "annotation"),
            ObjectKind::Detection => self.write(&object, "detection"),
        }
    }

    fn write(&mut self, object: &Object, object_type: &str) -> Result<(), FileError> {
        self.written += 1;
        let id = self.written;
        let s = &object.shape;
        let mean = object.scores.mean().unwrap_or(f64::NAN);
        let max = if object.scores.pixels > 0 { object.scores.max as f64 } else { f64::NAN };
        let (area_um, perimeter_um) = self.microns.map_or((f64::NAN, f64::NAN), |m| s.scaled(m));
        let measurements = [
            ("Area px^2", s.area),
            ("Perimeter px", s.perimeter),
            ("Area µm^2", area_um),
            ("Perimeter µm", perimeter_um),
            ("Probability mean", mean),
            ("Probability max", max),
        ];
        let name = id.to_string();
        let properties = ObjectProperties { object_type, name: &name, measurements: &measurements };
        self.writer
            .write_object(&object.polygon, &properties)
            .map_err(|e| write_error("--geojson", &self.path, &e))?;
        if let Some((out, path)) = self.csv.as_mut() {
            let b = s.bounds;
            let row = format!(
                "{id},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_text(&self.class),
                csv_number(s.centroid.0),
                csv_number(s.centroid.1),
                csv_number(s.area),
                csv_number(s.perimeter),
                csv_number(area_um),
                csv_number(perimeter_um),
                csv_number(mean),
                csv_number(max),
                csv_number(b.min_x),
                csv_number(b.min_y),
                csv_number(b.max_x),
                csv_number(b.max_y),
            );
            out.write_all(row.as_bytes()).map_err(|e| write_error("--objects-csv", path, &e))?;
        }
        Ok(())
    }

    /// Writes the regions still open and ends the files; returns the number of objects written.
    pub fn finish(mut self) -> Result<usize, FileError> {
        for region in self.tracer.finish() {
            self.add(&region)?;
        }
        for o in std::mem::take(&mut self.pending) {
            self.write(&o, "annotation")?;
        }
        let path = self.path.clone();
        let file = self.writer.finish().map_err(|e| write_error("--geojson", &path, &e))?;
        file.close().map_err(|e| write_error("--geojson", &path, &e))?;
        if let Some((out, path)) = self.csv {
            let e = |e: std::io::Error| write_error("--objects-csv", &path, &e);
            out.into_inner().map_err(|err| e(io::Error::new(err.error().kind(), err.error().to_string())))?;
        }
        Ok(self.written)
    }
}

/// The objects' table: one row per object, in the order of the GeoJSON's features (`id` is the feature's
/// `name`); level-0 pixels, µm when the pixel size is known (empty otherwise).
pub const CSV_HEADER: &str = "id,class,centroid_x,centroid_y,area_px,perimeter_px,area_um2,perimeter_um,\
probability_mean,probability_max,min_x,min_y,max_x,max_y\n";

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_text(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A number in full precision, empty when not finite (pandas reads it as NaN).
fn csv_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn write_error(flag: &str, path: &Path, e: &std::io::Error) -> FileError {
    FileError::Write { flag: flag.into(), path: path.to_path_buf(), reason: io_reason(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_parse_with_their_units() {
        assert_eq!(MinArea::parse("200"), Ok(MinArea::Pixels(200.0)));
        assert_eq!(MinArea::parse("12.5px"), Ok(MinArea::Pixels(12.5)));
        assert_eq!(MinArea::parse("50um2"), Ok(MinArea::SquareMicrons(50.0)));
        assert_eq!(MinArea::parse("50 µm²"), Ok(MinArea::SquareMicrons(50.0)));
        assert_eq!(MinArea::parse("50µm^2"), Ok(MinArea::SquareMicrons(50.0)));
        assert!(MinArea::parse("-1").is_err());
        assert!(MinArea::parse("big").unwrap_err().contains("200px"));
        assert!(MinArea::parse("inf").is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_text("tumour"), "tumour");
        assert_eq!(csv_text("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(csv_number(f64::NAN), "");
        assert_eq!(csv_number(2.5), "2.5");
    }
}
