//! One image file through the model into its output files, streamed: source -> predict (band by band)
//! -> sinks (mask, probabilities, overlay, error map) and confusion counts against a reference mask. The
//! caller decides where the files go (temporary paths, committed together afterwards) and in which format.

use std::path::{Path, PathBuf};

use crate::metrics::{ClassConfusion, ClassMetrics, Confusion, Metrics};
use crate::predict::{self, BandOutput, Limit, PredictError, PredictOptions};
use crate::regions::{GeoJsonDestination, RegionError, RegionWriter};
use crate::render::{error_row, OverlayRows};
use crate::session::Model;
use imaging::files::FileError;
use imaging::masks::{gray_from_classes, LabelRule, UNLABELLED};
use imaging::sink::ome_zarr::NgffVersion;
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::sink::{ImageFormat, PixelKind, ProbabilityFormat, RowSink, SinkError, SinkOptions};
use imaging::source::{Channels, ImageSource, SourceError};
use imaging::tiles::TilingError;
use imaging::tissue::Scope;
use imaging::whole::IoError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(
        "the reference mask holds the value {0}, which an ilastik label image (--label-format ilastik) does \
         not: 0 is unlabelled, 1 background, 2 foreground; pass the label image as ilastik exports it, or \
         --label-format binary for a 0/255 mask"
    )]
    MaskValue(u8),
    #[error(
        "the reference mask holds the value {value}, which is no class of this {classes}-class model; pass \
         --label-format index for class indices below {classes}, or ilastik for 1 to {classes} with 0 unlabelled"
    )]
    MaskClass { value: u8, classes: usize },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Objects(#[from] RegionError),
    #[error(transparent)]
    Tiling(#[from] TilingError),
    #[error("{flag}: {source}")]
    Input { flag: &'static str, source: SourceError },
    #[error("{flag} {path} is {mask_width}x{mask_height} but the image is {width}x{height} ({image}{}); pass the mask of this image{}",
        if *level > 0 { format!(", level {level}") } else { String::new() },
        if *level > 0 { format!(" at level {level}'s size (masks are read at their own level 0)") } else { String::new() })]
    MaskSize {
        flag: &'static str,
        path: PathBuf,
        mask_width: usize,
        mask_height: usize,
        image: PathBuf,
        width: usize,
        height: usize,
        /// The level of the image predicted (0: full resolution).
        level: usize,
    },
    #[error("--output-dir {dir}: cannot create it ({reason}); choose a folder that can be created")]
    OutputFolder { dir: PathBuf, reason: String },
    #[error("the reader of the next image failed unexpectedly")]
    ReaderPanicked,
    #[error("{what} with a {classes}-class model is not supported yet; {instead}")]
    NotForClasses { what: String, classes: usize, instead: &'static str },
}

/// Refuses, before any work, the outputs the runner cannot yet write for a model of more than two classes
/// (their colours, reductions or classifications are two-class ones): such a model writes its class
/// indices as an 8-bit PNG or TIFF mask and its probabilities as a (height, width, C) `.npy`.
pub fn check_classes(classes: usize, destinations: &Destinations) -> Result<(), PipelineError> {
    if classes <= 2 {
        return Ok(());
    }
    let refuse =
        |what: &str, instead| Err(PipelineError::NotForClasses { what: what.into(), classes, instead });
    const MASK: &str = "write the mask as .png or .tif";
    if !matches!(destinations.mask.format, ImageFormat::Png | ImageFormat::Tiff) {
        let format = match destinations.mask.format {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::OmeTiff => "OME-TIFF",
            _ => "OME-Zarr",
        };
        let what = format!("a mask in {format}");
        return refuse(&what, MASK);
    }
    if destinations.probabilities.as_ref().is_some_and(|d| d.format != ProbabilityFormat::Npy) {
        return refuse("--probabilities other than .npy", "write them as a .npy file");
    }
    let others: [(&str, bool); 4] = [
        ("--overlay", destinations.overlay.is_some()),
        ("--errors", destinations.errors.is_some()),
        ("--geojson", destinations.geojson.is_some()),
        ("--labels", destinations.labels.is_some()),
    ];
    if let Some((flag, _)) = others.iter().find(|(_, asked)| *asked) {
        return refuse(flag, "drop it, and read the class mask instead");
    }
    Ok(())
}

impl From<SourceError> for PipelineError {
    fn from(e: SourceError) -> Self {
        PipelineError::Predict(e.into())
    }
}

impl From<SinkError> for PipelineError {
    fn from(e: SinkError) -> Self {
        PipelineError::Predict(e.into())
    }
}

/// Where one output goes: the file to write (e.g. a temporary) and the format, taken from the final path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination<F> {
    pub file: PathBuf,
    pub format: F,
}

impl<F> Destination<F> {
    pub fn new(file: PathBuf, format: F) -> Self {
        Destination { file, format }
    }
}

/// The outputs of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub mask: Destination<ImageFormat>,
    pub probabilities: Option<Destination<ProbabilityFormat>>,
    pub overlay: Option<Destination<ImageFormat>>,
    pub errors: Option<Destination<ImageFormat>>,
    /// The foreground as QuPath objects (GeoJSON).
    pub geojson: Option<GeoJsonDestination>,
    /// The NGFF version of the OME-Zarr outputs.
    pub ngff: NgffVersion,
    /// The mask also written into the input OME-Zarr image as a label (`--labels`).
    pub labels: Option<LabelsPlan>,
}

/// An image opened for prediction (header read; JPEGs decoded), with its reference mask if any.
#[derive(Debug)]
pub struct OpenedImage {
    pub image: ImageSource,
    pub mask: Option<ImageSource>,
    /// How the mask's values become classes (unlabelled pixels are not scored).
    pub mask_rule: LabelRule,
}

impl OpenedImage {
    /// Opens `image` and `mask` (given as `image_flag` and `mask_flag`, which errors name) and checks that
    /// their sizes match.
    pub fn open(
        image: &Path,
        image_flag: &'static str,
        mask: Option<&Path>,
        mask_flag: &'static str,
    ) -> Result<OpenedImage, PipelineError> {
        OpenedImage::open_level(image, image_flag, 0, mask, mask_flag)
    }

    /// Opens level `level` of `image` (0 is full resolution; a level that does not exist is an error
    /// listing the levels) and `mask` at level 0 of its own file, whose size must be the level's.
    pub fn open_level(
        image: &Path,
        image_flag: &'static str,
        level: usize,
        mask: Option<&Path>,
        mask_flag: &'static str,
    ) -> Result<OpenedImage, PipelineError> {
        let source = ImageSource::open_level(image, level, Channels::Rgb)
            .map_err(|source| PipelineError::Input { flag: image_flag, source })?;
        let mask = match mask {
            Some(path) => {
                let mask = ImageSource::open(path, Channels::Gray)
                    .map_err(|source| PipelineError::Input { flag: mask_flag, source })?;
                if (mask.width(), mask.height()) != (source.width(), source.height()) {
                    return Err(PipelineError::MaskSize {
                        flag: mask_flag,
                        path: path.to_path_buf(),
                        mask_width: mask.width(),
                        mask_height: mask.height(),
                        image: image.to_path_buf(),
                        width: source.width(),
                        height: source.height(),
                        level,
                    });
                }
                Some(mask)
            }
            None => None,
        };
        Ok(OpenedImage { image: source, mask, mask_rule: LabelRule::default() })
    }

    /// The same, with the mask read by `rule` (`--label-format`, `--ignore-value`).
    pub fn with_mask_rule(self, rule: LabelRule) -> OpenedImage {
        OpenedImage { mask_rule: rule, ..self }
    }

    /// Refuses, before any work, outputs whose format cannot hold this image (JPEG above 65,535 px).
    pub fn check_outputs(&self, finals: &[(&Path, ImageFormat)]) -> Result<(), PipelineError> {
        for &(path, format) in finals {
            format.check_size(path, self.image.width(), self.image.height())?;
        }
        Ok(())
    }
}

/// What one image's prediction did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageReport {
    pub width: usize,
    pub height: usize,
    /// The level predicted (0: full resolution).
    pub level: usize,
    /// Pages of the input (1 but for a multi-page TIFF), and how many of them are another image of a stack
    /// (channels, planes, frames: not levels, thumbnails or labels), which are not predicted.
    pub pages: usize,
    pub other_pages: usize,
    pub tiles: usize,
    pub forward_passes: usize,
    pub metrics: Option<Metrics>,
    /// Per-class scores against the reference, for a model of more than two classes (`metrics` is then
    /// `None`).
    pub class_metrics: Option<ClassMetrics>,
    /// Regions written to the GeoJSON output, if any.
    pub regions: Option<usize>,
}

/// Predicts `opened` with `model`, writing every destination; `progress` gets the tiles completed. With a
/// `scope` (`--tissue`, `--roi`), only the windows touching it are read and computed, and the pixels
/// outside it are background with probability 0 (see [`predict::streamed_scoped`]).
pub fn run_image(
    model: &mut Model,
    opened: OpenedImage,
    destinations: &Destinations,
    scope: Option<&Scope>,
    tile: usize,
    progress: impl FnMut(usize),
) -> Result<ImageReport, PipelineError> {
    let OpenedImage { image: mut source, mask: mut reference, mask_rule } = opened;
    let classes = model.classes();
    check_classes(classes, destinations)?;
    let (width, height) = (source.width(), source.height());
    let (level, pages, other_pages) = (source.level(), source.info().pages, source.info().other_pages);
    // The outputs are turned like the input in viewers; the prediction runs on the stored pixels.
    // An OME-TIFF output carries the input's (this level's) microns per pixel.
    let options = SinkOptions {
        force_bigtiff: false,
        orientation: source.orientation(),
        microns_per_pixel: source.microns_per_pixel(),
        ngff: destinations.ngff,
    };
    let image_sink = |d: &Destination<ImageFormat>, kind| {
        RowSink::image_with(&d.file, d.format, kind, width, height, options)
    };
    let mut mask_sink = image_sink(&destinations.mask, PixelKind::Gray8)?;
    let mut probability_sink = match &destinations.probabilities {
        Some(d) if classes > 2 => Some(RowSink::npy_channels(&d.file, width, height, classes)?),
        Some(d) => Some(RowSink::probabilities_with(&d.file, d.format, width, height, options)?),
        None => None,
    };
    let mut overlay_sink =
        destinations.overlay.as_ref().map(|d| image_sink(d, PixelKind::Rgb8)).transpose()?;
    let mut errors_sink = destinations.errors.as_ref().map(|d| image_sink(d, PixelKind::Rgb8)).transpose()?;
    let scale = source.info().levels.get(level).map_or((1.0, 1.0), |l| l.downsample);
    let mut regions = match &destinations.geojson {
        Some(d) => {
            let microns = source.info().microns_per_pixel;
            Some(RegionWriter::create(d, width, scale, microns, &model.foreground_class)?)
        }
        None => None,
    };
    let labels_error = |plan: &LabelsPlan, reason: String| SinkError::Write { path: plan.target(), reason };
    let mut labels = match &destinations.labels {
        Some(plan) => Some(plan.start().map_err(|reason| labels_error(plan, reason))?),
        None => None,
    };
    let mut overlay = OverlayRows::new(width);
    let mut confusion = Confusion::default();
    let mut class_confusion = ClassConfusion::new(classes);
    let mut bad_value = None;
    let (mut reference_rows, mut pixels) = (Vec::new(), Vec::new());
    // The objects' measurements take the foreground probability.
    let probabilities = probability_sink.is_some() || regions.is_some();
    let options = PredictOptions { tile, probabilities, logits: false };
    // An overlay or an error map shows every row's pixels, so those rows are read even where nothing is
    // computed.
    let read_all_rows = overlay_sink.is_some() || errors_sink.is_some();
    let limit = scope.map(|scope| Limit { scope, read_all_rows });
    let rows = 0..source.height();
    let summary = predict::streamed_scoped(
        model,
        &mut source,
        rows,
        options,
        limit,
        progress,
        |band: &BandOutput<'_>| {
            // Two classes: 0 and 255, as the seed wrote them; more: the class indices.
            let gray = if classes > 2 { band.classes.to_vec() } else { gray_from_classes(band.classes) };
            mask_sink.write_pixels(&gray)?;
            if let (Some(writer), Some(plan)) = (labels.as_mut(), &destinations.labels) {
                writer.write_mask(&gray).map_err(|reason| labels_error(plan, reason))?;
            }
            if let (Some(sink), Some(values)) = (probability_sink.as_mut(), band.probabilities) {
                sink.write_values(values)?;
            }
            if let Some(sink) = overlay_sink.as_mut() {
                sink.write_pixels(overlay.push(band.rgb, band.classes))?;
            }
            if let Some(regions) = regions.as_mut() {
                regions.push(band.classes, band.probabilities)?;
            }
            if let Some(mask) = reference.as_mut() {
                reference_rows.clear();
                mask.read_rows(band.rows, &mut reference_rows)?;
                // A value the rule has no class for ends the image after this pass (the error is the
                // pipeline's, not the prediction's); its pixels are not scored meanwhile.
                let read = if classes > 2 {
                    mask_rule.classes_among(&reference_rows, classes)
                } else {
                    mask_rule.classes(&reference_rows)
                };
                let reference_classes = read.unwrap_or_else(|value| {
                    bad_value.get_or_insert(value);
                    vec![UNLABELLED; reference_rows.len()]
                });
                if classes > 2 {
                    class_confusion.add(band.classes, &reference_classes);
                } else {
                    confusion.add(band.classes, &reference_classes);
                }
                if let Some(sink) = errors_sink.as_mut() {
                    pixels.resize(band.rgb.len(), 0);
                    for ((rgb, predicted), (reference, out)) in
                        band.rgb.chunks_exact(3 * width).zip(band.classes.chunks_exact(width)).zip(
                            reference_classes.chunks_exact(width).zip(pixels.chunks_exact_mut(3 * width)),
                        )
                    {
                        error_row(rgb, predicted, reference, out);
                    }
                    sink.write_pixels(&pixels)?;
                }
            }
            Ok(())
        },
    )?;
    if let Some(value) = bad_value {
        if classes > 2 {
            return Err(PipelineError::MaskClass { value, classes });
        }
        return Err(PipelineError::MaskValue(value));
    }
    mask_sink.finish()?;
    if let Some(sink) = probability_sink {
        sink.finish()?;
    }
    if let Some(mut sink) = overlay_sink {
        sink.write_pixels(overlay.finish())?;
        sink.finish()?;
    }
    if let Some(sink) = errors_sink {
        sink.finish()?;
    }
    let regions = regions.map(RegionWriter::finish).transpose()?;
    if let (Some(writer), Some(plan)) = (labels, &destinations.labels) {
        writer.finish().map_err(|reason| labels_error(plan, reason))?;
    }
    Ok(ImageReport {
        width,
        height,
        level,
        pages,
        other_pages,
        tiles: summary.tiles,
        forward_passes: summary.forward_passes,
        metrics: (reference.is_some() && classes == 2).then(|| confusion.metrics()),
        class_metrics: (reference.is_some() && classes > 2)
            .then(|| class_confusion.metrics(&model.class_names)),
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destinations(mask: &str) -> Destinations {
        let mask = PathBuf::from(mask);
        let format = ImageFormat::from_path(&mask).unwrap();
        Destinations {
            mask: Destination::new(mask, format),
            probabilities: None,
            overlay: None,
            errors: None,
            geojson: None,
            ngff: NgffVersion::V04,
            labels: None,
        }
    }

    #[test]
    fn more_than_two_classes_refuse_what_cannot_be_written_yet() {
        let npy = Some(Destination::new("p.npy".into(), ProbabilityFormat::Npy));
        let ok = Destinations { probabilities: npy, ..destinations("m.png") };
        assert!(check_classes(3, &ok).is_ok());
        assert!(check_classes(16, &destinations("m.tif")).is_ok());
        let err = |d: &Destinations| check_classes(3, d).unwrap_err().to_string();
        let overlay = Some(Destination::new("o.png".into(), ImageFormat::Png));
        let with_overlay = Destinations { overlay, ..destinations("m.png") };
        assert!(err(&with_overlay).starts_with("--overlay with a 3-class model is not supported yet"));
        assert!(err(&destinations("m.ome.tif")).starts_with("a mask in OME-TIFF with a 3-class"));
        let tiff = Some(Destination::new("p.tif".into(), ProbabilityFormat::Tiff));
        let with_tiff = Destinations { probabilities: tiff, ..destinations("m.png") };
        assert!(err(&with_tiff).starts_with("--probabilities other than .npy with a 3-class"));
        // Two classes: everything, as before.
        assert!(check_classes(2, &with_overlay).is_ok());
    }
}
