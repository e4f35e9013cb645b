//! One slide over many workers: share K of N predicts its own chunk rows of the slide into OME-Zarr stores
//! that every share writes at once (`imaging::sink::ome_zarr_shards`), and [`finalize`] makes each store the
//! image a single run writes. A share reads the rows its windows need above and below its range (the
//! whole-image tile plan's bands), so its values are the single run's.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use imaging::masks::gray_from_classes;
use imaging::sink::ome_tiff::OmeSamples;
use imaging::sink::ome_zarr_shards::{
    self, check_finalize, share_rows, Finalized, ShareError, SharePlan, ShareWriter, NGFF_VERSION,
};

use crate::folder::Shard;
use crate::outputs::{self, OutputFormat, OutputRequest, PlanError};
use crate::pipeline::{OpenedImage, PipelineError};
use crate::predict::{self, BandOutput, PredictError, PredictOptions};
use crate::render::OverlayRows;
use crate::session::{Model, ModelOptions};
use crate::single::{Progress, SingleRequest};

/// Why a share or a finalize did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SlideShardError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Session(#[from] crate::session::error::SessionError),
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{flag} {path} is also {other}; give each output its own path")]
    SamePath { flag: &'static str, path: PathBuf, other: String },
    #[error("--model {path}: cannot read it ({reason})")]
    Model { path: PathBuf, reason: String },
}

/// What one share did.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareReport {
    pub width: usize,
    pub height: usize,
    /// The rows this share wrote (empty when there are more shares than chunk rows).
    pub rows: Range<usize>,
    pub tiles: usize,
    pub forward_passes: usize,
    pub seconds: f64,
    /// The stores written into, in the order of the request's fields.
    pub stores: Vec<PathBuf>,
}

/// A file's fingerprint (FNV-1a, 64 bits) with its size.
fn fingerprint(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{} bytes, fnv1a64 {hash:016x}", bytes.len())
}

/// The absolute path of `path` (its folder resolved), for the plan: shares started from other working
/// folders name the same input alike.
fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| {
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::canonicalize(folder).map(|f| f.join(&name)).unwrap_or_else(|_| path.to_path_buf())
    })
}

/// The outputs of `request` as (flag, store, samples), none the input or another output. A share writes
/// the mask, probabilities and overlay; the command line refuses the rest with --shard.
fn stores(request: &SingleRequest) -> Result<Vec<(&'static str, PathBuf, OmeSamples)>, SlideShardError> {
    let mut stores = Vec::new();
    for output in outputs::plan(OutputRequest::Share(request.given_paths()))? {
        if let OutputFormat::Store(samples) = output.format {
            stores.push((output.flag, output.path, samples));
        }
    }
    let mut seen: Vec<(String, PathBuf)> = vec![
        (format!("--image {}", request.image.display()), absolute(&request.image)),
        (format!("--model {}", request.model.display()), absolute(&request.model)),
    ];
    for (flag, path, _) in &stores {
        let resolved = absolute(path);
        if let Some((other, _)) = seen.iter().find(|(_, p)| *p == resolved) {
            return Err(SlideShardError::SamePath { flag, path: path.clone(), other: other.clone() });
        }
        seen.push((format!("{flag} {}", path.display()), resolved));
    }
    Ok(stores)
}

/// Rows `y..y + count` cut to `keep`: the range of rows inside, as offsets from `y`.
fn inside(y: usize, count: usize, keep: &Range<usize>) -> Range<usize> {
    let start = y.max(keep.start).min(y + count);
    let end = (y + count).min(keep.end).max(start);
    start - y..end - y
}

/// Predicts share `shard` of the one image of `request` into its OME-Zarr stores: every input and output
/// checked and every store's plan written or checked before any work; `progress` as for
/// [`crate::single::run`]. A share writes the mask, probabilities and overlay; the command line
/// refuses the rest of a request with --shard (`--mask`, `--metrics-json`, `--errors`, `--geojson`,
/// `--labels`, `--ngff 0.5`).
pub fn run(
    request: &SingleRequest,
    shard: Shard,
    model_options: &ModelOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ShareReport, SlideShardError> {
    let outputs = stores(request)?;
    let opened = OpenedImage::open_level(&request.image, "--image", request.level, None, "--mask")?;
    let mut source = opened.image;
    let (width, height) = (source.width(), source.height());
    let model_bytes = fs::read(&request.model).map_err(|e| SlideShardError::Model {
        path: request.model.clone(),
        reason: imaging::files::io_reason(&e),
    })?;
    let image_bytes = fs::metadata(&request.image).map(|m| if m.is_dir() { 0 } else { m.len() }).unwrap_or(0);
    let plan_of = |samples| SharePlan {
        image: absolute(&request.image).display().to_string(),
        image_bytes,
        level: request.level,
        model: fingerprint(&model_bytes),
        shares: shard.count,
        width,
        height,
        samples,
        microns_per_pixel: source.microns_per_pixel(),
        ngff: NGFF_VERSION.into(),
    };
    // A model of more than two classes is refused before any store is made.
    let mut model = Model::load(&request.model, model_options)?;
    if model.classes() > 2 {
        return Err(PipelineError::NotForClasses {
            what: "--shard".into(),
            classes: model.classes(),
            instead: "predict the image in one process",
        }
        .into());
    }
    let mut writers = Vec::new();
    for (_, store, samples) in &outputs {
        writers.push(ShareWriter::create(store, &plan_of(*samples), shard.index)?);
    }
    let rows = share_rows(height, shard.index, shard.count);
    let started = Instant::now();
    let (mut tiles, mut forward_passes) = (0, 0);
    if !rows.is_empty() {
        // The overlay's boundary needs the class of the rows just above and below the share.
        let predicted = rows.start.saturating_sub(1)..(rows.end + 1).min(height);
        let plan = model.tiling.plan(height, width, request.tile).map_err(PipelineError::from)?;
        let bands = predict::bands_for_rows(&plan, predicted.clone());
        progress(Progress::Planned {
            tiles: bands
                .iter()
                .map(|b| plan.passes[b.passes.clone()].iter().map(|p| p.tiles.len()).sum::<usize>())
                .sum(),
        });
        let options = PredictOptions {
            tile: request.tile,
            probabilities: request.probabilities.is_some(),
            logits: false,
        };
        let mut overlay = request.overlay.as_ref().map(|_| (OverlayRows::new(width), None::<usize>));
        let mut writers_iter = writers.iter_mut();
        let mask = writers_iter.next().expect("the mask store");
        let mut probabilities = request.probabilities.as_ref().and_then(|_| writers_iter.next());
        let mut overlay_writer = request.overlay.as_ref().and_then(|_| writers_iter.next());
        let mut write_error = None;
        let summary = predict::streamed_rows(
            &mut model,
            &mut source,
            predicted,
            options,
            |t| progress(Progress::TilesDone { tiles: t }),
            |band: &BandOutput<'_>| {
                let written = (|| -> Result<(), ShareError> {
                    let mine = inside(band.y, band.rows, &rows);
                    let pixels = mine.start * width..mine.end * width;
                    mask.write_pixels(&gray_from_classes(&band.classes[pixels.clone()]))?;
                    if let (Some(writer), Some(values)) = (probabilities.as_mut(), band.probabilities) {
                        writer.write_values(&values[pixels])?;
                    }
                    if let (Some((rows_of, first)), Some(writer)) =
                        (overlay.as_mut(), overlay_writer.as_mut())
                    {
                        // The overlay's rows lag one behind: they start at the first band's first row.
                        let next = *first.get_or_insert(band.y);
                        let out = rows_of.push(band.rgb, band.classes);
                        let count = out.len() / (3 * width);
                        let mine = inside(next, count, &rows);
                        writer.write_pixels(&out[mine.start * 3 * width..mine.end * 3 * width])?;
                        *first = Some(next + count);
                    }
                    Ok(())
                })();
                written.map_err(|e| {
                    write_error = Some(e);
                    PredictError::ConsumerStopped
                })
            },
        );
        if let Some(e) = write_error {
            return Err(e.into());
        }
        let summary = summary.map_err(PipelineError::from)?;
        if let (Some((rows_of, Some(next))), Some(writer)) = (overlay.as_mut(), overlay_writer.as_mut()) {
            let out = rows_of.finish();
            let mine = inside(*next, out.len() / (3 * width), &rows);
            writer.write_pixels(&out[mine.start * 3 * width..mine.end * 3 * width])?;
        }
        (tiles, forward_passes) = (summary.tiles, summary.forward_passes);
    }
    for writer in writers {
        writer.finish()?;
    }
    Ok(ShareReport {
        width,
        height,
        rows,
        tiles,
        forward_passes,
        seconds: started.elapsed().as_secs_f64(),
        stores: outputs.into_iter().map(|(_, path, _)| path).collect(),
    })
}

/// Finalizes every store of `stores` (see `imaging::sink::ome_zarr_shards::finalize`); when a share of any
/// of them is not done, says which and changes none of them.
pub fn finalize(stores: &[PathBuf]) -> Result<Vec<Finalized>, SlideShardError> {
    for store in stores {
        check_finalize(store)?;
    }
    Ok(stores.iter().map(|store| ome_zarr_shards::finalize(store)).collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_to_the_share() {
        assert_eq!(inside(0, 100, &(0..512)), 0..100);
        assert_eq!(inside(500, 100, &(0..512)), 0..12);
        assert_eq!(inside(500, 100, &(512..1024)), 12..100);
        assert!(inside(1100, 100, &(512..1024)).is_empty());
        assert!(inside(0, 100, &(512..1024)).is_empty());
    }

    #[test]
    fn fingerprints_differ_by_content() {
        assert_eq!(fingerprint(b""), "0 bytes, fnv1a64 cbf29ce484222325");
        assert_ne!(fingerprint(b"ab"), fingerprint(b"ba"));
    }
}
