//! `--geojson`: the predicted foreground as QuPath objects, built as the bands stream. Each band's rows go
//! through the tracer of `imaging::annotations::trace`; every region it completes is written at once as a
//! Feature (its rings through the midpoints of the pixel edges, in level-0 pixel coordinates), so memory
//! holds the width's worth of tracing state and the regions still open, never the mask.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use imaging::annotations::trace::Tracer;
use imaging::annotations::write::{FeatureStyle, FeatureWriter};
use imaging::files::{io_reason, FileError};

/// How the regions are labelled in QuPath.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GeoJsonLabel {
    /// `classification.name`; `None`: the model's foreground class name (its `classes` metadata).
    pub class: Option<String>,
    /// Write detections (lighter in QuPath, not editable) instead of annotations.
    pub detections: bool,
}

/// Where the GeoJSON goes: `file` (e.g. a temporary), `path` as given (for messages), and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoJsonDestination {
    pub file: PathBuf,
    pub path: PathBuf,
    pub label: GeoJsonLabel,
}

/// The colour QuPath shows the regions in: the overlay's tint.
pub const COLOR: [u8; 3] = crate::render::TINT;

/// The tracer and the writer of one image.
pub struct RegionWriter {
    tracer: Tracer,
    writer: FeatureWriter<BufWriter<File>>,
    /// Level-0 pixels per pixel of the level predicted.
    scale: (f64, f64),
    path: PathBuf,
}

impl RegionWriter {
    /// Starts the file of `destination` for a mask `width` pixels wide, at a level of downsample `scale`;
    /// `model_class` names the regions unless the destination names them.
    pub fn create(
        destination: &GeoJsonDestination,
        width: usize,
        scale: (f64, f64),
        model_class: &str,
    ) -> Result<RegionWriter, FileError> {
        let path = destination.path.clone();
        let error = |e: std::io::Error| write_error(&path, &e);
        let file = File::create(&destination.file).map_err(error)?;
        let style = FeatureStyle {
            object_type: if destination.label.detections { "detection" } else { "annotation" }.into(),
            class: destination.label.class.clone().unwrap_or_else(|| model_class.to_owned()),
            color: COLOR,
        };
        let writer = FeatureWriter::new(BufWriter::new(file), &style).map_err(error)?;
        Ok(RegionWriter { tracer: Tracer::new(width), writer, scale, path })
    }

    /// The next rows of the mask (class per pixel, 1 foreground); writes the regions they complete.
    pub fn push(&mut self, classes: &[u8]) -> Result<(), FileError> {
        for region in self.tracer.push_rows(classes) {
            self.writer.write(&region.smoothed(self.scale)).map_err(|e| write_error(&self.path, &e))?;
        }
        Ok(())
    }

    /// Writes the regions still open and ends the file; returns the number of regions written.
    pub fn finish(mut self) -> Result<usize, FileError> {
        for region in self.tracer.finish() {
            self.writer.write(&region.smoothed(self.scale)).map_err(|e| write_error(&self.path, &e))?;
        }
        let count = self.writer.features();
        let file = self.writer.finish().map_err(|e| write_error(&self.path, &e))?;
        file.into_inner().map_err(|e| write_error(&self.path, e.error()))?;
        Ok(count)
    }
}

fn write_error(path: &std::path::Path, e: &std::io::Error) -> FileError {
    FileError::Write { flag: "--geojson".into(), path: path.to_path_buf(), reason: io_reason(e) }
}
