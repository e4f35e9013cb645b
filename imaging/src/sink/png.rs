//! PNG outputs, written row by row through the `png` crate's streaming encoder (fast compression), with
//! an eXIf chunk holding the orientation when it is not the stored one.

use std::path::Path;

use super::writer::{create, CheckedFile, PixelKind, RowWriter};
use crate::exif::Orientation;

struct PngWriter {
    stream: png::StreamWriter<'static, CheckedFile>,
    file: CheckedFile,
}

/// Starts a `width` x `height` PNG of `pixel` at `path`.
pub(super) fn start(
    path: &Path,
    pixel: PixelKind,
    (width, height): (u32, u32),
    orientation: Orientation,
) -> Result<Box<dyn RowWriter>, String> {
    let file = CheckedFile::new(create(path)?);
    let mut encoder = png::Encoder::new(file.clone(), width, height);
    encoder.set_color(match pixel {
        PixelKind::Gray8 => png::ColorType::Grayscale,
        PixelKind::Rgb8 => png::ColorType::Rgb,
    });
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    if orientation != Orientation::Normal {
        writer.write_chunk(png::chunk::eXIf, &orientation.exif()).map_err(|e| e.to_string())?;
    }
    let stream = writer.into_stream_writer_with_size(1 << 16).map_err(|e| e.to_string())?;
    Ok(Box::new(PngWriter { stream, file }))
}

impl RowWriter for PngWriter {
    fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        std::io::Write::write_all(&mut self.stream, rows).map_err(|e| e.to_string())
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        let PngWriter { stream, file } = *self;
        // The encoder writes the IEND chunk as it is dropped, ignoring errors: the file has them.
        stream.finish().map_err(|e| e.to_string())?;
        file.close()
    }
}
