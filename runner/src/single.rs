//! One image into its output files: every input and output checked before any work, the prediction
//! streamed, and the outputs put in place together.

use std::path::{Path, PathBuf};
use std::time::Instant;

use imaging::files::OutputSet;
use imaging::sink::ome_zarr::NgffVersion;
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::sink::{ImageFormat, ProbabilityFormat};

use crate::metrics::Metrics;
use crate::pipeline::{self, Destination, Destinations, ImageReport, OpenedImage, PipelineError};
use crate::regions::{GeoJsonDestination, GeoJsonLabel};
use crate::session::{Model, ModelOptions};
use crate::tissue::{AutoTissue, TissueError, TissueRequest};

/// What to predict and where each output goes (formats from the paths' extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleRequest {
    pub model: PathBuf,
    pub image: PathBuf,
    pub output: PathBuf,
    pub mask: Option<PathBuf>,
    pub metrics_json: Option<PathBuf>,
    pub probabilities: Option<PathBuf>,
    pub overlay: Option<PathBuf>,
    pub errors: Option<PathBuf>,
    /// The foreground as QuPath objects (GeoJSON), and how they are labelled.
    pub geojson: Option<PathBuf>,
    pub geojson_label: GeoJsonLabel,
    /// The objects' table (`--objects-csv`, with `geojson`).
    pub objects_csv: Option<PathBuf>,
    pub tile: usize,
    /// The level of a pyramid to predict (0: full resolution).
    pub level: usize,
    /// How the --mask's values become classes.
    pub mask_rule: imaging::labels::LabelRule,
    /// The NGFF version of the OME-Zarr outputs.
    pub ngff: NgffVersion,
    /// `--labels NAME`: also write the mask into the OME-Zarr input as `labels/NAME`.
    pub labels: Option<String>,
    /// `--tissue`, `--roi`: where to predict (everywhere by default). `output`'s first path is replaced
    /// by the temporary written.
    pub tissue: TissueRequest,
}

/// What a single-image prediction did.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleReport {
    pub image: ImageReport,
    pub seconds: f64,
    /// The outputs written, as given, in the order of the request's fields (the label last).
    pub written: Vec<PathBuf>,
    /// What the label (`--labels`) leaves out of the image's levels, if anything.
    pub labels_note: Option<String>,
    /// What `--tissue auto` found, and the windows of the full plan (to compare with those predicted).
    pub tissue: Option<AutoTissue>,
    pub full_tiles: usize,
}

impl SingleReport {
    pub fn metrics(&self) -> Option<&Metrics> {
        self.image.metrics.as_ref()
    }
}

/// Why a single-image prediction did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Session(#[from] crate::session::error::SessionError),
    #[error("{flag}: {source}")]
    Format { flag: &'static str, source: imaging::sink::SinkError },
    #[error("--geojson {0}: give a .geojson (or .json) file name, e.g. out/regions.geojson, or .geojson.gz to write it gzipped")]
    GeoJsonName(PathBuf),
    #[error("--labels: {0}")]
    Labels(String),
    #[error(transparent)]
    Tissue(#[from] TissueError),
}

fn format_of<F>(
    flag: &'static str,
    path: Option<&Path>,
    parse: impl Fn(&Path) -> Result<F, imaging::sink::SinkError>,
) -> Result<Option<F>, SingleError> {
    path.map(|p| parse(p).map_err(|source| SingleError::Format { flag, source })).transpose()
}

/// Checks every input and output of `request` (formats, paths, sizes), loads the model, predicts the image
/// band by band into temporaries and puts every output in place together; `progress` gets the tile count
/// once the plan is made, then the tiles completed.
pub fn predict_single(
    request: &SingleRequest,
    model_options: &ModelOptions,
    mut progress: impl FnMut(Progress),
) -> Result<SingleReport, SingleError> {
    let mask_format = format_of("--output", Some(&request.output), ImageFormat::from_path)?.expect("given");
    let probability_format =
        format_of("--probabilities", request.probabilities.as_deref(), ProbabilityFormat::from_path)?;
    let overlay_format = format_of("--overlay", request.overlay.as_deref(), ImageFormat::from_path)?;
    let errors_format = format_of("--errors", request.errors.as_deref(), ImageFormat::from_path)?;
    if let Some(path) = &request.geojson {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if !name.ends_with(".geojson") && !name.ends_with(".json") {
            return Err(SingleError::GeoJsonName(path.clone()));
        }
    }

    let mut inputs: Vec<(&str, &Path)> = vec![("--image", &request.image), ("--model", &request.model)];
    if let Some(mask) = &request.mask {
        inputs.push(("--mask", mask));
    }
    if let Some(path) = &request.tissue.mask {
        inputs.push(("--tissue", path));
    }
    if let Some(path) = &request.tissue.roi {
        inputs.push(("--roi", path));
    }
    let mut files = OutputSet::new(&inputs).map_err(PipelineError::from)?;
    let opened =
        OpenedImage::open_level(&request.image, "--image", request.level, request.mask.as_deref(), "--mask")?
            .with_mask_rule(request.mask_rule);
    let mut finals = vec![(request.output.as_path(), mask_format)];
    finals.extend(request.overlay.as_deref().zip(overlay_format));
    finals.extend(request.errors.as_deref().zip(errors_format));
    opened.check_outputs(&finals)?;
    let labels = match &request.labels {
        Some(name) => {
            Some(LabelsPlan::new(&request.image, name, request.level).map_err(SingleError::Labels)?)
        }
        None => None,
    };
    let mut add = |flag: &str, path: &Path| {
        if imaging::sink::ome_zarr::is_ome_zarr_path(path) {
            files.add_store(flag, path).map_err(PipelineError::from)
        } else {
            files.add(flag, path).map_err(PipelineError::from)
        }
    };
    let destinations = Destinations {
        mask: Destination::new(add("--output", &request.output)?, mask_format),
        probabilities: match (&request.probabilities, probability_format) {
            (Some(p), Some(f)) => Some(Destination::new(add("--probabilities", p)?, f)),
            _ => None,
        },
        overlay: match (&request.overlay, overlay_format) {
            (Some(p), Some(f)) => Some(Destination::new(add("--overlay", p)?, f)),
            _ => None,
        },
        errors: match (&request.errors, errors_format) {
            (Some(p), Some(f)) => Some(Destination::new(add("--errors", p)?, f)),
            _ => None,
        },
        geojson: match &request.geojson {
            Some(p) => Some(GeoJsonDestination {
                file: add("--geojson", p)?,
                path: p.clone(),
                label: request.geojson_label.clone(),
                csv: match &request.objects_csv {
                    Some(csv) => Some((add("--objects-csv", csv)?, csv.clone())),
                    None => None,
                },
            }),
            None => None,
        },
        ngff: request.ngff,
        labels: labels.clone(),
    };
    let metrics_json = match &request.metrics_json {
        Some(path) => Some(add("--metrics-json", path)?),
        None => None,
    };
    let mut tissue = request.tissue.clone();
    if let Some((_, path)) = &request.tissue.output {
        tissue.output = Some((add("--tissue-output", path)?, path.clone()));
    }

    let mut model = Model::load(&request.model, model_options)?;
    let (width, height) = (opened.image.width(), opened.image.height());
    let plan = model.tiling.plan(height, width, request.tile).map_err(PipelineError::from)?;
    let started = Instant::now();
    let limited = match tissue.limits() {
        true => Some(crate::tissue::limit(
            &request.image,
            request.level,
            width,
            height,
            model.tiling.halo,
            &tissue,
        )?),
        false => None,
    };
    let scope = limited.as_ref().map(|l| &l.scope);
    let tiles = scope.map_or(plan.tile_count(), |s| s.plan(&plan).tile_count());
    progress(Progress::Planned { tiles });
    let report = pipeline::predict_image(&mut model, opened, &destinations, scope, request.tile, |tiles| {
        progress(Progress::TilesDone { tiles })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if let (Some(metrics), Some(path)) = (&report.metrics, &metrics_json) {
        std::fs::write(path, metrics.to_json()).map_err(|e| {
            PipelineError::File(imaging::files::FileError::Write {
                flag: "--metrics-json".into(),
                path: request.metrics_json.clone().unwrap_or_default(),
                reason: imaging::files::io_reason(&e),
            })
        })?;
    }
    let mut written = files.commit().map_err(PipelineError::from)?;
    written.extend(labels.as_ref().map(LabelsPlan::target));
    let labels_note = labels.as_ref().and_then(LabelsPlan::note);
    let tissue = limited.and_then(|l| l.auto);
    Ok(SingleReport { image: report, seconds, written, labels_note, tissue, full_tiles: plan.tile_count() })
}

/// What a prediction tells as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The plan is made: this many tiles to predict.
    Planned { tiles: usize },
    /// This many more tiles are done.
    TilesDone { tiles: usize },
}
