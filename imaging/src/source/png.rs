//! PNG, read row by row (interlaced PNGs are decoded whole): 1 to 16 bits, gray, gray+alpha, RGB, RGBA,
//! palette. The orientation comes from an eXIf chunk before the image data.

use super::{
    check_size, check_whole, convert, single_level, zeroed, Channels, FileFormat, Input, Opened, Orientation,
    Reader, Samples, SourceError,
};

/// A non-interlaced PNG read one row at a time.
pub(super) struct PngRows {
    reader: png::Reader<Box<dyn Input>>,
    channels: usize,
    sixteen: bool,
    row16: Vec<u16>,
}

fn decode_error(name: &str, e: &dyn std::fmt::Display) -> SourceError {
    SourceError::Decode { name: name.to_string(), reason: e.to_string() }
}

impl PngRows {
    pub(super) fn read_row(
        &mut self,
        y: usize,
        height: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError> {
        let row = self
            .reader
            .next_row()
            .map_err(|e| decode_error(name, &e))?
            .ok_or_else(|| decode_error(name, &format!("the image data ends at row {y} of {height}")))?;
        let data = row.data();
        if self.sixteen {
            self.row16.clear();
            self.row16.extend(data.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])));
            convert(Samples::U16(&self.row16), self.channels, out, dst);
        } else {
            convert(Samples::U8(data), self.channels, out, dst);
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, name: &str) -> Result<(), SourceError> {
        self.reader.finish().map_err(|e| decode_error(name, &e))
    }
}

pub(super) fn open(input: Box<dyn Input>, name: &str, out: Channels) -> Result<Opened, SourceError> {
    let decode = |e: png::DecodingError| decode_error(name, &e);
    let mut decoder = png::Decoder::new_with_limits(input, png::Limits { bytes: 64 << 20 });
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(decode)?;
    let info = reader.info();
    let (width, height) = check_size(name, info.width as u64, info.height as u64)?;
    let orientation =
        info.exif_metadata.as_deref().and_then(Orientation::from_exif).unwrap_or(Orientation::Normal);
    let interlaced = info.interlaced;
    let (color, depth) = reader.output_color_type();
    let what =
        format!("{}-bit {:?}{}", depth as u8, info.color_type, if interlaced { ", interlaced" } else { "" });
    let source_info = single_level(FileFormat::Png, width, height, "PNG", what, orientation);
    let channels = color.samples();
    let sixteen = depth == png::BitDepth::Sixteen;
    if !interlaced {
        let rows = PngRows { reader, channels, sixteen, row16: Vec::new() };
        return Ok(Opened { width, height, reader: Reader::Png(Box::new(rows)), info: source_info });
    }
    // Adam7 rows arrive in passes: decode the whole frame, then convert it.
    check_whole(name, width, height, "an interlaced PNG")?;
    let size = reader.output_buffer_size().ok_or_else(|| SourceError::TooLarge {
        name: name.to_string(),
        width: width as u64,
        height: height as u64,
        reason: "its size overflows".into(),
    })?;
    let mut frame = zeroed(size, name, width, height)?;
    let frame_info = reader.next_frame(&mut frame).map_err(decode)?;
    reader.finish().map_err(decode)?;
    let mut pixels = zeroed(width * height * out.count(), name, width, height)?;
    let line = frame_info.line_size;
    for (y, dst) in pixels.chunks_exact_mut(width * out.count()).enumerate() {
        let row = &frame[y * line..(y + 1) * line];
        if sixteen {
            let row16: Vec<u16> = row.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
            convert(Samples::U16(&row16), channels, out, dst);
        } else {
            convert(Samples::U8(row), channels, out, dst);
        }
    }
    Ok(Opened { width, height, reader: Reader::Whole { pixels }, info: source_info })
}
