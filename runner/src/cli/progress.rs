//! What `runner predict` shows as it goes: the tile bar, folder mode's bars and its line per image, and
//! the note on pages not predicted.

use std::io::IsTerminal;

use imaging::report::{self, Stdout, StdoutError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::folder::{FolderObserver, ImageJob};
use crate::pipeline::{ImageReport, PipelineError};
use crate::single::Progress;

fn hidden(quiet: bool) -> bool {
    quiet || !std::io::stderr().is_terminal()
}

fn tile_bar(tiles: u64) -> ProgressBar {
    let bar = ProgressBar::new(tiles);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tiles [{elapsed_precise}<{eta_precise}]")
            .expect("valid template"),
    );
    bar
}

/// The tile bar of one image, hidden with --quiet or when standard error is not a terminal.
pub(super) fn image_bar(quiet: bool) -> ProgressBar {
    let bar = tile_bar(0);
    if hidden(quiet) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Moves `bar` on by what a prediction tells.
pub(super) fn show(bar: &ProgressBar, progress: Progress) {
    match progress {
        Progress::Planned { tiles } => bar.set_length(tiles as u64),
        Progress::TilesDone { tiles } => bar.inc(tiles as u64),
    }
}

/// Progress bars and one line per image, for folder mode.
pub(super) struct FolderBars<'a> {
    bars: MultiProgress,
    images: ProgressBar,
    tiles: Option<ProgressBar>,
    out: &'a mut Stdout,
    scored: bool,
    /// A failed write to standard output, returned after the run.
    stdout_error: Option<StdoutError>,
}

impl<'a> FolderBars<'a> {
    /// The bars of a run over `images` images; `scored`: a line without scores says the image had no mask.
    pub(super) fn new(images: usize, quiet: bool, out: &'a mut Stdout, scored: bool) -> FolderBars<'a> {
        let bars = MultiProgress::new();
        if hidden(quiet) {
            bars.set_draw_target(ProgressDrawTarget::hidden());
        }
        let images = bars.add(ProgressBar::new(images as u64));
        images.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images {msg}").expect("valid template"),
        );
        FolderBars { bars, images, tiles: None, out, scored, stdout_error: None }
    }

    /// Clears the bars; returns the first failed write to standard output of the run, if any.
    pub(super) fn finish(mut self) -> Result<(), StdoutError> {
        self.images.finish_and_clear();
        self.stdout_error.take().map_or(Ok(()), Err)
    }
}

impl FolderObserver for FolderBars<'_> {
    fn image_started(&mut self, _index: usize, _count: usize, job: &ImageJob, tiles: usize) {
        self.images.set_message(job.image.display().to_string());
        self.tiles = Some(self.bars.add(tile_bar(tiles as u64)));
    }

    fn tiles_done(&mut self, tiles: usize) {
        if let Some(bar) = &self.tiles {
            bar.inc(tiles as u64);
        }
    }

    fn image_finished(&mut self, job: &ImageJob, result: &Result<ImageReport, PipelineError>) {
        if let Some(bar) = self.tiles.take() {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        self.images.inc(1);
        let (out, scored) = (&mut *self.out, self.scored);
        let line = self.bars.suspend(|| match result {
            Ok(report) => {
                let scores = match &report.metrics {
                    Some(m) => format!(" IoU {:.4}, Dice {:.4}", m.foreground_iou, m.dice),
                    None if scored => " no reference mask".into(),
                    None => String::new(),
                };
                if let Some(note) = pages_note(report) {
                    eprintln!("note: {}: {note}", job.image.display());
                }
                out.line(format_args!("{}: {}x{}{scores}", job.image.display(), report.width, report.height))
            }
            Err(e) => {
                eprintln!("error: {}: {}", job.image.display(), report::clean(&e.to_string()));
                Ok(())
            }
        });
        if let Err(e) = line {
            self.stdout_error.get_or_insert(e);
        }
    }
}

/// What to say of an input with pages that were not predicted (a multi-page TIFF that is not a pyramid).
pub(super) fn pages_note(report: &ImageReport) -> Option<String> {
    (report.other_pages > 0).then(|| {
        format!(
            "a multi-page TIFF of {} pages that is not a pyramid of its first page: only page 1 was predicted",
            report.pages
        )
    })
}
