//! The progress bar of `trainer train`.

use crate::checkpoint::ValRecord;
use crate::train::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar: iteration, current and smoothed loss, last validation IoU, iterations per second.
pub(super) struct Bar {
    bar: Option<ProgressBar>,
    last_val: Option<ValRecord>,
}

impl Bar {
    /// A bar over `iterations`, or none (`--quiet`): messages then go to standard error.
    pub(super) fn new(iterations: usize, quiet: bool) -> Bar {
        let bar = (!quiet).then(|| {
            ProgressBar::new(iterations as u64).with_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} it | {msg} | {per_sec} | eta {eta}",
                )
                .expect("valid template"),
            )
        });
        Bar { bar, last_val: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, first: usize, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(first as u64);
            bar.reset_eta();
        }
    }
    fn step(&mut self, iteration: usize, loss: f32, smoothed: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(iteration as u64);
            let val = match self.last_val {
                Some(v) => format!(" | val {} @{}", v.score_text(), v.iteration),
                None => String::new(),
            };
            bar.set_message(format!("loss {loss:.4} (smoothed {smoothed:.4}){val}"));
        }
    }
    fn validated(&mut self, record: &ValRecord) {
        self.last_val = Some(*record);
    }
    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
