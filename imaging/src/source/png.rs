//! PNG, read row by row (interlaced PNGs are decoded whole): 1 to 16 bits, gray, gray+alpha, RGB, RGBA,
//! palette. The orientation comes from an eXIf chunk before the image data.

use super::error::SourceError;
use super::limits::{check_size, check_whole, zeroed};
use super::reader::{Access, DecodedRows, Descriptor, FileFormat, Input, LevelReader, Opened, SourceInfo};
use super::samples::{convert, Channels, Samples};
use crate::exif::Orientation;

pub(crate) const FORMAT: Descriptor = Descriptor {
    id: "png",
    name: "PNG",
    extensions: &[("png", "a PNG image")],
    // Rows come in order (an interlaced PNG is decoded whole, but is read through the same door).
    random_access: false,
    levels: false,
    vendor_container: false,
    access: Access::Stream { sniff: |head| head.starts_with(b"\x89PNG\r\n\x1a\n"), open, probe },
};

/// A non-interlaced PNG read one row at a time.
struct PngRows {
    reader: png::Reader<Box<dyn Input>>,
    width: usize,
    height: usize,
    channels: usize,
    sixteen: bool,
    row16: Vec<u16>,
}

fn decode_error(name: &str, e: &dyn std::fmt::Display) -> SourceError {
    SourceError::Decode { name: name.to_string(), reason: e.to_string() }
}

impl LevelReader for PngRows {
    fn read_rows(
        &mut self,
        first: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError> {
        for (i, dst) in dst.chunks_exact_mut(self.width * out.count()).enumerate() {
            self.read_row(first + i, out, dst, name)?;
        }
        Ok(())
    }

    fn finish(&mut self, name: &str) -> Result<(), SourceError> {
        // Reads up to the end of the image data, so a corrupt or missing tail is an error too.
        self.reader.finish().map_err(|e| decode_error(name, &e))
    }
}

impl PngRows {
    fn read_row(&mut self, y: usize, out: Channels, dst: &mut [u8], name: &str) -> Result<(), SourceError> {
        let height = self.height;
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
}

/// A PNG's header is all there is to probe.
fn probe(input: Box<dyn Input>, name: &str) -> Result<SourceInfo, SourceError> {
    Ok(open(input, name, 0, Channels::Gray)?.info)
}

fn open(input: Box<dyn Input>, name: &str, _level: usize, out: Channels) -> Result<Opened, SourceError> {
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
    let source_info =
        SourceInfo::single_level(FileFormat::of(&FORMAT), width, height, "PNG", what, orientation);
    let channels = color.samples();
    let sixteen = depth == png::BitDepth::Sixteen;
    if !interlaced {
        let rows = PngRows { reader, width, height, channels, sixteen, row16: Vec::new() };
        return Ok(Opened { width, height, reader: Box::new(rows), info: source_info });
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
    let reader = Box::new(DecodedRows { pixels, row_bytes: width * out.count() });
    Ok(Opened { width, height, reader, info: source_info })
}
