//! The runs of `runner predict`'s resolved requests (one image, one image's share, a folder) and the lines
//! each prints.

use std::path::Path;
use std::process::ExitCode;

use imaging::report::Stdout;

use crate::folder;
use crate::session::{Model, ModelOptions};
use crate::single::{self, SingleRequest};

use super::progress::{image_bar, pages_note, show, FolderBars};
use super::request::FolderRequest;
use crate::folder::Shard;

pub(super) fn run_single(
    request: &SingleRequest,
    options: &ModelOptions,
    quiet: bool,
    out: &mut Stdout,
) -> anyhow::Result<ExitCode> {
    let bar = image_bar(quiet);
    let report = single::run(request, options, |progress| show(&bar, progress))?;
    bar.finish_and_clear();

    let (width, height) = (report.image.width, report.image.height);
    let peak = peak_memory_bytes().map(|b| format!(", peak memory {} MB", b / 1_000_000)).unwrap_or_default();
    out.line(format_args!(
        "predicted {width}x{height}: {} tiles in {} forward passes, {:.2} s, {:.2} megapixels/s{peak}",
        report.image.tiles,
        report.image.forward_passes,
        report.seconds,
        (width * height) as f64 / 1e6 / report.seconds.max(1e-9)
    ))?;
    if let Some(t) = &report.tissue {
        let from = match t.level {
            Some(level) => format!("level {level}"),
            None => "a streamed reduction".to_owned(),
        };
        out.line(format_args!(
            "tissue: {:.1} % of the image (from {from}, downsample {:.2} x {:.2}, saturation threshold {})",
            100.0 * t.fraction,
            t.downsample.0,
            t.downsample.1,
            t.threshold
        ))?;
    }
    if request.tissue.limits() {
        out.line(format_args!(
            "windows predicted: {} of {} ({:.1} %)",
            report.image.tiles,
            report.full_tiles,
            100.0 * report.image.tiles as f64 / report.full_tiles.max(1) as f64
        ))?;
    }
    if let Some(note) = pages_note(&report.image) {
        eprintln!("note: {}: {note}", request.image.display());
    }
    if let Some(metrics) = report.metrics() {
        out.line(metrics)?;
    }
    if let Some(metrics) = &report.image.class_metrics {
        out.line(metrics)?;
    }
    if let Some(regions) = report.image.regions {
        out.line(format_args!("{regions} foreground regions as GeoJSON objects"))?;
    }
    for path in &report.written {
        out.line(format_args!("wrote {}", path.display()))?;
    }
    if let Some(note) = &report.labels_note {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One image's share: its rows into the OME-Zarr stores.
pub(super) fn run_share(
    request: &SingleRequest,
    shard: Shard,
    options: &ModelOptions,
    quiet: bool,
    out: &mut Stdout,
) -> anyhow::Result<ExitCode> {
    let bar = image_bar(quiet);
    let report = crate::slide_shard::run(request, shard, options, |progress| show(&bar, progress))?;
    bar.finish_and_clear();
    let (width, height, rows) = (report.width, report.height, &report.rows);
    if rows.is_empty() {
        out.line(format_args!(
            "share {shard} of {width}x{height}: no rows (more shares than 512-row chunk rows); marked done"
        ))?;
    } else {
        out.line(format_args!(
            "share {shard} of {width}x{height}: rows {}..{}, {} tiles in {} forward passes, {:.2} s",
            rows.start, rows.end, report.tiles, report.forward_passes, report.seconds
        ))?;
    }
    for store in &report.stores {
        out.line(format_args!("wrote share {shard} of {}", store.display()))?;
    }
    let stores: Vec<String> = report.stores.iter().map(|s| s.display().to_string()).collect();
    out.line(format_args!("when every share is done: runner finalize {}", stores.join(" ")))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn run_folder(
    request: &FolderRequest,
    options: &ModelOptions,
    quiet: bool,
    out: &mut Stdout,
) -> anyhow::Result<ExitCode> {
    let outputs = &request.outputs;
    let mut images = match &request.input_dir {
        Some(input_dir) => folder::find_images("--input-dir", input_dir, request.pattern.as_deref())?,
        None => Vec::new(),
    };
    images.extend(request.images.iter().cloned());
    let all_jobs = folder::jobs(images, request.mask_dir.as_deref())?;
    // Checked over every image, not only this shard's: shards write into one folder.
    outputs.check_collisions(&all_jobs)?;
    let mut input_dirs: Vec<(&'static str, &Path)> = Vec::new();
    input_dirs.extend(request.input_dir.as_deref().map(|d| ("--input-dir", d)));
    input_dirs.extend(request.mask_dir.as_deref().map(|d| ("--mask-dir", d)));
    outputs.check_not_among_inputs(&all_jobs, &input_dirs)?;
    let jobs = match request.shard {
        Some(shard) => folder::select_shard(all_jobs, shard),
        None => all_jobs,
    };
    let mut model = Model::load(&request.model, options)?;

    let mut observer = FolderBars::new(jobs.len(), quiet, out, request.mask_dir.is_some());
    let started = std::time::Instant::now();
    let report = folder::run(
        &mut model,
        &jobs,
        outputs,
        request.tile,
        request.level,
        request.fail_fast,
        &mut observer,
    )?;
    observer.finish()?;
    if let Some(csv) = &report.metrics_csv {
        out.line(report.table.summary())?;
        out.line(format_args!("wrote {}", csv.display()))?;
    }
    out.line(format_args!(
        "predicted {} of {} images in {:.1} s into {}",
        report.table.rows.len(),
        report.images,
        started.elapsed().as_secs_f64(),
        outputs.dir.display()
    ))?;
    if report.failures > 0 {
        eprintln!("error: {} of {} images failed (see the lines above)", report.failures, report.images);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The process's peak resident memory (Linux: VmHWM in /proc/self/status), if known.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
