//! One image into its output files: every input and output checked before any work, the prediction
//! streamed, and the outputs put in place together.

use std::path::{Path, PathBuf};
use std::time::Instant;

use imaging::files::OutputSet;
use imaging::sink::ome_zarr::NgffVersion;
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::sink::ImageFormat;

use crate::metrics::{ClassMetrics, Metrics};
use crate::outputs::{self, GivenPaths, OutputFormat, OutputKind, OutputRequest, PlanError};
use crate::pipeline::{self, ImageReport, OpenedImage, PipelineError};
use crate::regions::GeoJsonLabel;
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
    pub mask_rule: imaging::masks::LabelRule,
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
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--labels: {0}")]
    Labels(String),
    #[error(transparent)]
    Tissue(#[from] TissueError),
}

impl SingleRequest {
    /// The output paths as given.
    pub fn given_paths(&self) -> GivenPaths<'_> {
        GivenPaths {
            output: &self.output,
            probabilities: self.probabilities.as_deref(),
            overlay: self.overlay.as_deref(),
            errors: self.errors.as_deref(),
            geojson: self.geojson.as_deref(),
            objects_csv: self.objects_csv.as_deref(),
            metrics_json: self.metrics_json.as_deref(),
        }
    }
}

/// Checks every input and output of `request` (formats, paths, sizes), loads the model, predicts the image
/// band by band into temporaries and puts every output in place together; `progress` gets the tile count
/// once the plan is made, then the tiles completed.
pub fn run(
    request: &SingleRequest,
    model_options: &ModelOptions,
    mut progress: impl FnMut(Progress),
) -> Result<SingleReport, SingleError> {
    let planned = outputs::plan(OutputRequest::OneImage(request.given_paths()))?;

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
    let finals: Vec<(&Path, ImageFormat)> = planned
        .iter()
        .filter_map(|o| match o.format {
            OutputFormat::Image(format) => Some((o.path.as_path(), format)),
            _ => None,
        })
        .collect();
    opened.check_outputs(&finals)?;
    let labels = match &request.labels {
        Some(name) => {
            let mut plan =
                LabelsPlan::new(&request.image, name, request.level).map_err(SingleError::Labels)?;
            plan.register(&mut files, "--labels").map_err(PipelineError::from)?;
            Some(plan)
        }
        None => None,
    };
    let destinations =
        outputs::destinations(&planned, &request.geojson_label, request.ngff, labels.clone(), |o| {
            let file = if imaging::sink::ome_zarr::has_ome_zarr_name(&o.path) {
                files.add_store(o.flag, &o.path)
            } else {
                files.add(o.flag, &o.path)
            };
            file.map_err(PipelineError::from)
        })?;
    let metrics_json = match planned.iter().find(|o| o.kind == OutputKind::MetricsJson) {
        Some(o) => Some(files.add(o.flag, &o.path).map_err(PipelineError::from)?),
        None => None,
    };
    let mut tissue = request.tissue.clone();
    if let Some((_, path)) = &request.tissue.output {
        tissue.output =
            Some((files.add("--tissue-output", path).map_err(PipelineError::from)?, path.clone()));
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
    let report = pipeline::run_image(&mut model, opened, &destinations, scope, request.tile, |tiles| {
        progress(Progress::TilesDone { tiles })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let json = report.metrics.as_ref().map(Metrics::to_json);
    let json = json.or_else(|| report.class_metrics.as_ref().map(ClassMetrics::to_json));
    if let (Some(json), Some(path)) = (json, &metrics_json) {
        std::fs::write(path, json).map_err(|e| {
            PipelineError::File(imaging::files::FileError::Write {
                flag: "--metrics-json".into(),
                path: request.metrics_json.clone().unwrap_or_default(),
                reason: imaging::files::io_reason(&e),
            })
        })?;
    }
    let mut written = files.commit().map_err(PipelineError::from)?;
    // The label's parts (its store, the group's files) are reported as the one label.
    written.retain(|path| labels.as_ref().is_none_or(|plan| !path.starts_with(plan.group())));
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
