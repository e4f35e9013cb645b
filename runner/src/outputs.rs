//! One image's outputs, planned from what was asked: each file with the flag that asked for it, what it
//! is and the format it is written in. [`plan`] is the one place that turns a request into outputs, for
//! the three ways the runner writes an image: one image (paths as given, formats by extension), one
//! image's share (the given paths as OME-Zarr stores) and an image of a folder (files named after it).
//! Pure: names in, a plan out; whether the flags go together is the command line's resolve step.

use std::path::{Path, PathBuf};

use imaging::pyramid::Reduction;
use imaging::sink::ome_tiff::OmeSamples;
use imaging::sink::ome_zarr::{has_ome_zarr_name, NgffVersion};
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::sink::{ImageFormat, ProbabilityFormat, SinkError};

use crate::pipeline::{Destination, Destinations};
use crate::regions::{GeoJsonDestination, GeoJsonLabel};

/// Why an output has no format.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{flag}: {source}")]
    Format { flag: &'static str, source: SinkError },
    #[error("--geojson {0}: give a .geojson (or .json) file name, e.g. out/regions.geojson, or .geojson.gz to write it gzipped")]
    GeoJsonName(PathBuf),
    #[error("{flag} {path}: one image in shares (--shard K/N) writes only OME-Zarr stores, which every share writes into at once; name it <name>.ome.zarr, or drop --shard")]
    NotStore { flag: &'static str, path: PathBuf },
}

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Mask,
    Probabilities,
    Overlay,
    Errors,
    GeoJson,
    /// `--objects-csv`: the GeoJSON objects' table.
    ObjectsCsv,
    MetricsJson,
}

impl OutputKind {
    /// How errors name it.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Mask => "mask",
            OutputKind::Probabilities => "probabilities",
            OutputKind::Overlay => "overlay",
            OutputKind::Errors => "error map",
            OutputKind::GeoJson => "GeoJSON",
            OutputKind::ObjectsCsv => "objects table",
            OutputKind::MetricsJson => "metrics",
        }
    }
}

/// How an output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Image(ImageFormat),
    Probabilities(ProbabilityFormat),
    /// A store that every share of the image writes into.
    Store(OmeSamples),
    GeoJson,
    Csv,
    Json,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOutput {
    pub kind: OutputKind,
    /// The flag that asked for it, for errors.
    pub flag: &'static str,
    pub path: PathBuf,
    pub format: OutputFormat,
}

/// Paths given one by one (`--output`, `--probabilities PATH`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenPaths<'a> {
    pub output: &'a Path,
    pub probabilities: Option<&'a Path>,
    pub overlay: Option<&'a Path>,
    pub errors: Option<&'a Path>,
    pub geojson: Option<&'a Path>,
    pub objects_csv: Option<&'a Path>,
    pub metrics_json: Option<&'a Path>,
}

/// The outputs of one image of a folder run, named after its stem in `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderNames<'a> {
    pub dir: &'a Path,
    pub stem: &'a str,
    pub mask_format: ImageFormat,
    pub probabilities: bool,
    pub overlay: bool,
    /// An error map: only for an image with a reference mask.
    pub errors: bool,
    pub geojson: bool,
    /// `<stem>_objects.csv` (with `geojson`).
    pub objects_csv: bool,
}

/// What to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRequest<'a> {
    /// One image: every format by its path's extension.
    OneImage(GivenPaths<'a>),
    /// One image's share: the mask, probabilities and overlay as OME-Zarr stores (a share writes no other
    /// output).
    Share(GivenPaths<'a>),
    /// One image of a folder run.
    FolderImage(FolderNames<'a>),
}

/// The outputs of `request`, the mask first, then the probabilities, overlay, error map, GeoJSON and
/// metrics, those asked for.
pub fn plan(request: OutputRequest<'_>) -> Result<Vec<PlannedOutput>, PlanError> {
    let output =
        |kind, flag, path: &Path, format| PlannedOutput { kind, flag, path: path.to_path_buf(), format };
    let mut planned = Vec::new();
    match request {
        OutputRequest::OneImage(given) => {
            let image = |flag, path: &Path| {
                ImageFormat::from_path(path)
                    .map(OutputFormat::Image)
                    .map_err(|source| PlanError::Format { flag, source })
            };
            planned.push(output(
                OutputKind::Mask,
                "--output",
                given.output,
                image("--output", given.output)?,
            ));
            if let Some(path) = given.probabilities {
                let format = ProbabilityFormat::from_path(path)
                    .map_err(|source| PlanError::Format { flag: "--probabilities", source })?;
                planned.push(output(
                    OutputKind::Probabilities,
                    "--probabilities",
                    path,
                    OutputFormat::Probabilities(format),
                ));
            }
            if let Some(path) = given.overlay {
                planned.push(output(OutputKind::Overlay, "--overlay", path, image("--overlay", path)?));
            }
            if let Some(path) = given.errors {
                planned.push(output(OutputKind::Errors, "--errors", path, image("--errors", path)?));
            }
            if let Some(path) = given.geojson {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
                let name = name.strip_suffix(".gz").unwrap_or(&name);
                if !name.ends_with(".geojson") && !name.ends_with(".json") {
                    return Err(PlanError::GeoJsonName(path.to_path_buf()));
                }
                planned.push(output(OutputKind::GeoJson, "--geojson", path, OutputFormat::GeoJson));
                if let Some(csv) = given.objects_csv {
                    planned.push(output(OutputKind::ObjectsCsv, "--objects-csv", csv, OutputFormat::Csv));
                }
            }
            if let Some(path) = given.metrics_json {
                planned.push(output(OutputKind::MetricsJson, "--metrics-json", path, OutputFormat::Json));
            }
        }
        OutputRequest::Share(given) => {
            let stores = [
                (
                    OutputKind::Mask,
                    "--output",
                    Some(given.output),
                    OmeSamples::U8 { channels: 1, rule: Reduction::Mask },
                ),
                (OutputKind::Probabilities, "--probabilities", given.probabilities, OmeSamples::F32),
                (
                    OutputKind::Overlay,
                    "--overlay",
                    given.overlay,
                    OmeSamples::U8 { channels: 3, rule: Reduction::Mean },
                ),
            ];
            for (kind, flag, path, samples) in stores {
                let Some(path) = path else { continue };
                if !has_ome_zarr_name(path) {
                    return Err(PlanError::NotStore { flag, path: path.to_path_buf() });
                }
                planned.push(output(kind, flag, path, OutputFormat::Store(samples)));
            }
        }
        OutputRequest::FolderImage(names) => {
            let path =
                |suffix: &str, extension: &str| names.dir.join(format!("{}{suffix}.{extension}", names.stem));
            let flag = "--output-dir";
            let mask = path("", names.mask_format.extension());
            planned.push(output(OutputKind::Mask, flag, &mask, OutputFormat::Image(names.mask_format)));
            if names.probabilities {
                let format = OutputFormat::Probabilities(ProbabilityFormat::Npy);
                planned.push(output(OutputKind::Probabilities, flag, &path("_probabilities", "npy"), format));
            }
            let png = OutputFormat::Image(ImageFormat::Png);
            if names.overlay {
                planned.push(output(OutputKind::Overlay, flag, &path("_overlay", "png"), png));
            }
            if names.errors {
                planned.push(output(OutputKind::Errors, flag, &path("_errors", "png"), png));
            }
            if names.geojson {
                planned.push(output(OutputKind::GeoJson, flag, &path("", "geojson"), OutputFormat::GeoJson));
                if names.objects_csv {
                    planned.push(output(
                        OutputKind::ObjectsCsv,
                        flag,
                        &path("_objects", "csv"),
                        OutputFormat::Csv,
                    ));
                }
            }
        }
    }
    Ok(planned)
}

/// The pipeline's destinations of `planned` (a one-image or folder plan: its first output is the mask),
/// each file the one `add` gives for it (a temporary beside the final path), in the plan's order; the
/// metrics file is not the pipeline's and is left out.
pub fn destinations<E>(
    planned: &[PlannedOutput],
    geojson_label: &GeoJsonLabel,
    ngff: NgffVersion,
    labels: Option<LabelsPlan>,
    mut add: impl FnMut(&PlannedOutput) -> Result<PathBuf, E>,
) -> Result<Destinations, E> {
    let (mut mask, mut probabilities, mut overlay, mut errors, mut geojson) = (None, None, None, None, None);
    for output in planned {
        match (output.kind, output.format) {
            (OutputKind::MetricsJson, _) | (_, OutputFormat::Store(_)) => continue,
            (OutputKind::Mask, OutputFormat::Image(f)) => mask = Some(Destination::new(add(output)?, f)),
            (OutputKind::Probabilities, OutputFormat::Probabilities(f)) => {
                probabilities = Some(Destination::new(add(output)?, f))
            }
            (OutputKind::Overlay, OutputFormat::Image(f)) => {
                overlay = Some(Destination::new(add(output)?, f))
            }
            (OutputKind::Errors, OutputFormat::Image(f)) => errors = Some(Destination::new(add(output)?, f)),
            (OutputKind::GeoJson, _) => {
                geojson = Some(GeoJsonDestination {
                    file: add(output)?,
                    path: output.path.clone(),
                    label: geojson_label.clone(),
                    csv: None,
                })
            }
            (OutputKind::ObjectsCsv, _) => {
                let file = add(output)?;
                if let Some(g) = geojson.as_mut() {
                    g.csv = Some((file, output.path.clone()));
                }
            }
            (kind, format) => unreachable!("the plan gives no {kind:?} as {format:?}"),
        }
    }
    Ok(Destinations {
        mask: mask.expect("a one-image or folder plan has the mask"),
        probabilities,
        overlay,
        errors,
        geojson,
        ngff,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(output: &str) -> GivenPaths<'_> {
        GivenPaths {
            output: Path::new(output),
            probabilities: None,
            overlay: None,
            errors: None,
            geojson: None,
            objects_csv: None,
            metrics_json: None,
        }
    }

    fn described(planned: &[PlannedOutput]) -> Vec<(&'static str, &'static str, String)> {
        planned.iter().map(|o| (o.kind.name(), o.flag, o.path.display().to_string())).collect()
    }

    #[test]
    fn one_image_takes_each_format_from_its_path() {
        let paths = GivenPaths {
            probabilities: Some(Path::new("p.tif")),
            overlay: Some(Path::new("o.jpg")),
            errors: Some(Path::new("e.png")),
            geojson: Some(Path::new("r.geojson")),
            metrics_json: Some(Path::new("m.json")),
            ..given("m.ome.zarr")
        };
        let planned = plan(OutputRequest::OneImage(paths)).unwrap();
        assert_eq!(
            planned.iter().map(|o| o.format).collect::<Vec<_>>(),
            [
                OutputFormat::Image(ImageFormat::from_path(Path::new("m.ome.zarr")).unwrap()),
                OutputFormat::Probabilities(ProbabilityFormat::from_path(Path::new("p.tif")).unwrap()),
                OutputFormat::Image(ImageFormat::Jpeg),
                OutputFormat::Image(ImageFormat::Png),
                OutputFormat::GeoJson,
                OutputFormat::Json,
            ]
        );
        let err =
            plan(OutputRequest::OneImage(GivenPaths { geojson: Some(Path::new("r.txt")), ..given("m.png") }));
        assert!(err.unwrap_err().to_string().contains("--geojson r.txt: give a .geojson"));
        let err = plan(OutputRequest::OneImage(given("m.bmp"))).unwrap_err().to_string();
        assert!(err.starts_with("--output: "), "{err}");
    }

    #[test]
    fn a_share_writes_stores_only() {
        let paths = GivenPaths { overlay: Some(Path::new("o.ome.zarr")), ..given("m.ome.zarr") };
        let planned = plan(OutputRequest::Share(paths)).unwrap();
        assert_eq!(
            described(&planned),
            [("mask", "--output", "m.ome.zarr".into()), ("overlay", "--overlay", "o.ome.zarr".into())]
        );
        assert_eq!(
            planned[1].format,
            OutputFormat::Store(OmeSamples::U8 { channels: 3, rule: Reduction::Mean })
        );
        let paths = GivenPaths { probabilities: Some(Path::new("p.npy")), ..given("m.ome.zarr") };
        let err = plan(OutputRequest::Share(paths)).unwrap_err().to_string();
        assert!(err.starts_with("--probabilities p.npy: one image in shares"), "{err}");
    }

    #[test]
    fn a_folder_image_is_named_after_its_stem() {
        let names = FolderNames {
            dir: Path::new("out"),
            stem: "a",
            mask_format: ImageFormat::Tiff,
            probabilities: true,
            overlay: true,
            errors: false,
            geojson: true,
            objects_csv: false,
        };
        let planned = plan(OutputRequest::FolderImage(names)).unwrap();
        assert_eq!(
            described(&planned),
            [
                ("mask", "--output-dir", "out/a.tif".into()),
                ("probabilities", "--output-dir", "out/a_probabilities.npy".into()),
                ("overlay", "--output-dir", "out/a_overlay.png".into()),
                ("GeoJSON", "--output-dir", "out/a.geojson".into()),
            ]
        );
        let destinations = destinations(&planned, &GeoJsonLabel::default(), NgffVersion::V04, None, |o| {
            Ok::<_, ()>(o.path.with_extension("tmp"))
        })
        .unwrap();
        assert_eq!(destinations.mask, Destination::new("out/a.tmp".into(), ImageFormat::Tiff));
        assert_eq!(destinations.geojson.unwrap().path, PathBuf::from("out/a.geojson"));
        assert!(destinations.errors.is_none());
    }
}
