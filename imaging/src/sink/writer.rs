//! The sink boundary: what every output format's writer implements ([`RowWriter`]: rows in, then
//! finish), and the file every writer of one file writes through, whose last flush is checked.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::pyramid::{Reduction, SampleKind};

/// One output being written, top to bottom: every format of `sink/` implements this, and
/// [`super::RowSink`] holds one.
pub trait RowWriter: Send {
    /// Writes whole rows of 8-bit pixels (mask, overlay, error map).
    fn write_pixels(&mut self, _rows: &[u8]) -> Result<(), String> {
        Err("8-bit rows sent to a float output (a bug in the runner)".into())
    }

    /// Writes whole rows of float32 values (probabilities).
    fn write_values(&mut self, _rows: &[f32]) -> Result<(), String> {
        Err("float rows sent to an 8-bit output (a bug in the runner)".into())
    }

    /// Ends the output (every row has been written) and flushes it, every error checked.
    fn finish(self: Box<Self>) -> Result<(), String>;
}

/// Creates the file at `path` (the temporary an output set handed out), buffered.
pub(crate) fn create(path: &Path) -> Result<BufWriter<File>, String> {
    let file = File::create(path).map_err(|e| format!("{e}; {}", crate::files::create_hint(&e)))?;
    Ok(BufWriter::with_capacity(1 << 16, file))
}

/// A buffered file handed to an encoder that writes its last bytes when it is dropped and ignores the
/// errors (the `png` crate's IEND chunk): the file and the first error stay here, so that
/// [`CheckedFile::close`] reports a full disk instead of a success.
#[derive(Clone)]
pub(crate) struct CheckedFile(Arc<Mutex<(BufWriter<File>, Option<std::io::Error>)>>);

impl CheckedFile {
    pub(crate) fn new(file: BufWriter<File>) -> CheckedFile {
        CheckedFile(Arc::new(Mutex::new((file, None))))
    }

    /// The first error of any write, else the final flush's.
    pub(crate) fn close(self) -> Result<(), String> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.1.take() {
            return Err(e.to_string());
        }
        state.0.flush().map_err(|e| e.to_string())
    }

    fn record<T>(&self, f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<T>) -> std::io::Result<T> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut state.0);
        if let Err(e) = &result {
            state.1.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        }
        result
    }
}

impl Write for CheckedFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.record(|file| file.write(bytes))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.record(|file| file.flush())
    }
}

/// What one pixel of an image output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelKind {
    Gray8,
    Rgb8,
}

impl PixelKind {
    pub(crate) fn bytes(self) -> usize {
        self.samples().pixel_bytes()
    }

    /// The samples of an output of these pixels: a gray image is a mask (reduced by the mask rule), an
    /// RGB image a picture (reduced by the mean).
    pub fn samples(self) -> SampleKind {
        match self {
            PixelKind::Gray8 => SampleKind::U8 { channels: 1, rule: Reduction::Mask },
            PixelKind::Rgb8 => SampleKind::U8 { channels: 3, rule: Reduction::Mean },
        }
    }
}
