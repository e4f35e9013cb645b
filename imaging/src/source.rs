//! Rows of an image file, top to bottom, as 8-bit RGB (images to predict) or 8-bit gray (reference masks),
//! without holding the whole image: PNG row by row, TIFF and BigTIFF one strip or one row of tiles at a
//! time (only the chunks the next rows need). JPEG and interlaced PNG cannot be read by rows and are
//! decoded whole, within [`WHOLE_IMAGE_LIMIT`]. The format is recognised by content, never by extension.
//!
//! Conversion, as documented in the README: RGB as is; RGBA and gray+alpha drop the alpha channel (no
//! compositing); gray is repeated to three channels; palette PNGs are expanded; 16-bit samples become
//! v * 255 / 65535 rounded; float32 gray TIFFs are clamped to [0, 1] and scaled to 255 (rounded; NaN is
//! 0). For masks, colour is turned to gray by luminance (0.2126 R + 0.7152 G + 0.0722 B, rounded).
//!
//! Every size product is checked and every large buffer is reserved fallibly, so a file whose header
//! claims an absurd size is an error, never a panic or an exhausted machine.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// The widest image read (a band of 256 rows of it is 200 MB as RGB bytes).
pub const MAX_WIDTH: usize = 262_144;
/// The largest decoded size (bytes, 8-bit RGB) of an image that must be decoded whole (JPEG, interlaced
/// PNG).
pub const WHOLE_IMAGE_LIMIT: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {name}: {source}")]
    Open { name: String, source: std::io::Error },
    #[error("{name} is not a readable PNG, JPEG or TIFF image ({reason})")]
    Decode { name: String, reason: String },
    #[error("{name} is {what}, which is not supported; convert it to 8- or 16-bit gray, RGB or RGBA")]
    Unsupported { name: String, what: String },
    #[error("{name} is {width}x{height}: {reason}")]
    TooLarge { name: String, width: u64, height: u64, reason: String },
}

/// What each pixel is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Three bytes per pixel (the image to predict).
    Rgb,
    /// One byte per pixel (a reference mask).
    Gray,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Gray => 1,
        }
    }
}

/// The file formats read, recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Png,
    Jpeg,
    Tiff,
}

impl FileFormat {
    /// The format whose signature `head` (the first bytes of a file) starts with, if any.
    pub fn sniff(head: &[u8]) -> Option<FileFormat> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileFormat::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(FileFormat::Jpeg)
        } else if [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"].iter().any(|m| head.starts_with(*m)) {
            Some(FileFormat::Tiff)
        } else {
            None
        }
    }
}

/// Anything an image can be read from: a file or bytes in memory.
pub trait Input: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> Input for T {}

/// Samples of one row or chunk as decoded, before conversion.
enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    F32(&'a [f32]),
}

fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 * 255 + 32_767) / 65_535) as u8
}

fn f32_to_u8(v: f32) -> u8 {
    // NaN fails both comparisons and becomes 0.
    if v >= 1.0 {
        255
    } else if v > 0.0 {
        (v * 255.0).round() as u8
    } else {
        0
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((2126 * r as u32 + 7152 * g as u32 + 722 * b as u32 + 5000) / 10_000) as u8
}

/// Converts `samples` (pixels of `channels` samples each: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) into `dst`
/// (exactly one output pixel per input pixel).
fn convert(samples: Samples<'_>, channels: usize, out: Channels, dst: &mut [u8]) {
    fn run<T: Copy>(src: &[T], channels: usize, out: Channels, dst: &mut [u8], to8: impl Fn(T) -> u8) {
        let pixels = src.chunks_exact(channels);
        match (out, channels) {
            (Channels::Rgb, 1 | 2) => {
                for (px, d) in pixels.zip(dst.chunks_exact_mut(3)) {
                    d.fill(to8(px[0]));
                }
            }
            (Channels::Rgb, _) => {
                for (px, d) in pixels.zip(dst.chunks_exact_mut(3)) {
                    d.copy_from_slice(&[to8(px[0]), to8(px[1]), to8(px[2])]);
                }
            }
            (Channels::Gray, 1 | 2) => {
                for (px, d) in pixels.zip(dst.iter_mut()) {
                    *d = to8(px[0]);
                }
            }
            (Channels::Gray, _) => {
                for (px, d) in pixels.zip(dst.iter_mut()) {
                    *d = luma(to8(px[0]), to8(px[1]), to8(px[2]));
                }
            }
        }
    }
    match samples {
        Samples::U8(s) => run(s, channels, out, dst, |v| v),
        Samples::U16(s) => run(s, channels, out, dst, u16_to_u8),
        Samples::F32(s) => run(s, channels, out, dst, f32_to_u8),
    }
}

/// A zeroed buffer of `len` bytes, or an error naming the size instead of an allocation panic.
fn zeroed(len: usize, name: &str, width: usize, height: usize) -> Result<Vec<u8>, SourceError> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| SourceError::TooLarge {
        name: name.to_string(),
        width: width as u64,
        height: height as u64,
        reason: format!("{len} bytes do not fit in memory"),
    })?;
    buffer.resize(len, 0);
    Ok(buffer)
}

enum Reader {
    Png {
        reader: Box<png::Reader<Box<dyn Input>>>,
        channels: usize,
        sixteen: bool,
        row16: Vec<u16>,
    },
    Tiff(Box<TiffRows>),
    /// Decoded whole, already converted; rows are served from here.
    Whole {
        pixels: Vec<u8>,
    },
}

/// A TIFF read one chunk row (a strip, or a row of tiles) at a time.
struct TiffRows {
    decoder: tiff::decoder::Decoder<Box<dyn Input>>,
    channels: usize,
    tiled: bool,
    chunk_width: usize,
    chunk_height: usize,
    /// Converted rows of the current chunk row, and the image row they start at.
    rows: Vec<u8>,
    rows_y: usize,
    rows_count: usize,
}

/// An image read top to bottom.
pub struct ImageSource {
    name: String,
    format: FileFormat,
    width: usize,
    height: usize,
    out: Channels,
    reader: Reader,
    /// The next row [`ImageSource::read_rows`] returns.
    next_row: usize,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageSource({} {:?} {}x{})", self.name, self.format, self.width, self.height)
    }
}

impl ImageSource {
    /// Opens the file at `path`; only the header is read here.
    pub fn open(path: &Path, out: Channels) -> Result<ImageSource, SourceError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| SourceError::Open { name: name.clone(), source })?;
        ImageSource::new(Box::new(BufReader::with_capacity(1 << 16, file)), name, out)
    }

    /// Reads an image held in memory (`name` names it in errors).
    pub fn from_bytes(bytes: &[u8], name: &str, out: Channels) -> Result<ImageSource, SourceError> {
        ImageSource::new(Box::new(Cursor::new(bytes.to_vec())), name.to_string(), out)
    }

    /// Reads an image from `input`, recognised by its first bytes. A decoder that panics on a hostile file
    /// gives an error, as everywhere in this module.
    pub fn new(input: Box<dyn Input>, name: String, out: Channels) -> Result<ImageSource, SourceError> {
        let label = name.clone();
        crate::report::catch_panic(move || ImageSource::open_input(input, name, out))
            .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
    }

    fn open_input(
        mut input: Box<dyn Input>,
        name: String,
        out: Channels,
    ) -> Result<ImageSource, SourceError> {
        let decode = |reason: String| SourceError::Decode { name: name.clone(), reason };
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            match input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(SourceError::Open { name, source }),
            }
        }
        input.seek(SeekFrom::Start(0)).map_err(|source| SourceError::Open { name: name.clone(), source })?;
        let format = FileFormat::sniff(&head[..got])
            .ok_or_else(|| decode("the format could not be recognised from its first bytes".into()))?;
        let (width, height, reader) = match format {
            FileFormat::Png => open_png(input, &name, out)?,
            FileFormat::Tiff => open_tiff(input, &name, out)?,
            FileFormat::Jpeg => open_jpeg(input, &name, out)?,
        };
        Ok(ImageSource { name, format, width, height, out, reader, next_row: 0 })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn format(&self) -> FileFormat {
        self.format
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per output pixel (3 for RGB, 1 for gray).
    pub fn channels(&self) -> Channels {
        self.out
    }

    /// Appends the next `rows` rows (fewer at the end of the image) to `out`, converted.
    pub fn read_rows(&mut self, rows: usize, out: &mut Vec<u8>) -> Result<usize, SourceError> {
        let name = self.name.clone();
        crate::report::catch_panic(|| self.read_rows_unguarded(rows, out))
            .unwrap_or_else(|message| Err(decoder_panicked(&name, &message)))
    }

    fn read_rows_unguarded(&mut self, rows: usize, out: &mut Vec<u8>) -> Result<usize, SourceError> {
        let rows = rows.min(self.height - self.next_row);
        let row_bytes = self.width * self.out.count();
        let start = out.len();
        out.try_reserve(rows * row_bytes).map_err(|_| SourceError::TooLarge {
            name: self.name.clone(),
            width: self.width as u64,
            height: self.height as u64,
            reason: format!("{rows} rows of {row_bytes} bytes do not fit in memory"),
        })?;
        out.resize(start + rows * row_bytes, 0);
        let name = &self.name;
        let decode =
            |e: &dyn std::fmt::Display| SourceError::Decode { name: name.clone(), reason: e.to_string() };
        for (i, dst) in out[start..].chunks_exact_mut(row_bytes).enumerate() {
            let y = self.next_row + i;
            match &mut self.reader {
                Reader::Png { reader, channels, sixteen, row16 } => {
                    let row = reader.next_row().map_err(|e| decode(&e))?.ok_or_else(|| {
                        decode(&format!("the image data ends at row {y} of {}", self.height))
                    })?;
                    let data = row.data();
                    if *sixteen {
                        row16.clear();
                        row16.extend(data.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])));
                        convert(Samples::U16(row16), *channels, self.out, dst);
                    } else {
                        convert(Samples::U8(data), *channels, self.out, dst);
                    }
                }
                Reader::Tiff(tiff) => {
                    if y >= tiff.rows_y + tiff.rows_count {
                        tiff.load_chunk_row(y, self.width, self.height, self.out, name)?;
                    }
                    let offset = (y - tiff.rows_y) * row_bytes;
                    dst.copy_from_slice(&tiff.rows[offset..offset + row_bytes]);
                }
                Reader::Whole { pixels } => dst.copy_from_slice(&pixels[y * row_bytes..(y + 1) * row_bytes]),
            }
        }
        self.next_row += rows;
        if self.next_row == self.height {
            if let Reader::Png { reader, .. } = &mut self.reader {
                // Reads up to the end of the image data, so a corrupt or missing tail is an error too.
                reader.finish().map_err(|e| decode(&e))?;
            }
        }
        Ok(rows)
    }

    /// Reads every remaining row.
    pub fn read_all(&mut self) -> Result<Vec<u8>, SourceError> {
        let len = (self.height - self.next_row)
            .checked_mul(self.width * self.out.count())
            .ok_or_else(|| self.too_large("its size overflows"))?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| self.too_large(&format!("{len} bytes do not fit in memory")))?;
        self.read_rows(self.height - self.next_row, &mut out)?;
        Ok(out)
    }

    fn too_large(&self, reason: &str) -> SourceError {
        SourceError::TooLarge {
            name: self.name.clone(),
            width: self.width as u64,
            height: self.height as u64,
            reason: reason.to_string(),
        }
    }
}

fn decoder_panicked(name: &str, message: &str) -> SourceError {
    SourceError::Decode { name: name.to_string(), reason: format!("its decoder failed on it ({message})") }
}

/// Checks the header's size before anything is allocated for it.
fn check_size(name: &str, width: u64, height: u64) -> Result<(usize, usize), SourceError> {
    let too_large = |reason: String| SourceError::TooLarge { name: name.to_string(), width, height, reason };
    if width == 0 || height == 0 {
        return Err(SourceError::Decode {
            name: name.to_string(),
            reason: format!("the image is {width}x{height}"),
        });
    }
    if width > MAX_WIDTH as u64 {
        return Err(too_large(format!("wider than the limit of {MAX_WIDTH} pixels")));
    }
    let height = usize::try_from(height).map_err(|_| too_large("too tall for this machine".into()))?;
    Ok((width as usize, height))
}

/// Checks that an image that must be decoded whole stays within [`WHOLE_IMAGE_LIMIT`].
fn check_whole(name: &str, width: usize, height: usize, what: &str) -> Result<(), SourceError> {
    let bytes = (width as u64).saturating_mul(height as u64).saturating_mul(3);
    if bytes > WHOLE_IMAGE_LIMIT {
        return Err(SourceError::TooLarge {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
            reason: format!(
                "{what} is decoded whole, and its {bytes} bytes exceed the limit of {WHOLE_IMAGE_LIMIT} bytes; \
                 convert it to a (non-interlaced) PNG or a TIFF, which are read by rows"
            ),
        });
    }
    Ok(())
}

fn open_png(input: Box<dyn Input>, name: &str, out: Channels) -> Result<(usize, usize, Reader), SourceError> {
    let decode =
        |e: png::DecodingError| SourceError::Decode { name: name.to_string(), reason: e.to_string() };
    let mut decoder = png::Decoder::new_with_limits(input, png::Limits { bytes: 64 << 20 });
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(decode)?;
    let info = reader.info();
    let (width, height) = check_size(name, info.width as u64, info.height as u64)?;
    let interlaced = info.interlaced;
    let (color, depth) = reader.output_color_type();
    let channels = color.samples();
    let sixteen = depth == png::BitDepth::Sixteen;
    if !interlaced {
        let reader = Reader::Png { reader: Box::new(reader), channels, sixteen, row16: Vec::new() };
        return Ok((width, height, reader));
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
    Ok((width, height, Reader::Whole { pixels }))
}

fn open_tiff(
    input: Box<dyn Input>,
    name: &str,
    _out: Channels,
) -> Result<(usize, usize, Reader), SourceError> {
    use tiff::decoder::ChunkType;
    use tiff::tags::{PlanarConfiguration, Tag};
    let decode = |e: tiff::TiffError| SourceError::Decode { name: name.to_string(), reason: e.to_string() };
    let unsupported = |what: String| SourceError::Unsupported { name: name.to_string(), what };
    let mut decoder = tiff::decoder::Decoder::new(input).map_err(decode)?;
    let (w, h) = decoder.dimensions().map_err(decode)?;
    let (width, height) = check_size(name, w as u64, h as u64)?;
    let color = decoder.colortype().map_err(decode)?;
    let channels = match color {
        tiff::ColorType::Gray(8 | 16 | 32) => 1,
        tiff::ColorType::GrayA(8 | 16) => 2,
        tiff::ColorType::RGB(8 | 16) => 3,
        tiff::ColorType::RGBA(8 | 16) => 4,
        other => return Err(unsupported(format!("a {other:?} TIFF"))),
    };
    let planar = decoder.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).map_err(decode)?;
    if channels > 1 && planar == Some(PlanarConfiguration::Planar.to_u16()) {
        return Err(unsupported("a planar (one plane per channel) TIFF".into()));
    }
    let (chunk_width, chunk_height) = decoder.chunk_dimensions();
    let tiled = decoder.get_chunk_type() == ChunkType::Tile;
    let rows = TiffRows {
        decoder,
        channels,
        tiled,
        chunk_width: chunk_width as usize,
        chunk_height: (chunk_height as usize).clamp(1, height),
        rows: Vec::new(),
        rows_y: 0,
        rows_count: 0,
    };
    Ok((width, height, Reader::Tiff(Box::new(rows))))
}

impl TiffRows {
    /// Decodes the strip or row of tiles that holds image row `y`, converted, into `self.rows`.
    fn load_chunk_row(
        &mut self,
        y: usize,
        width: usize,
        height: usize,
        out: Channels,
        name: &str,
    ) -> Result<(), SourceError> {
        let decode =
            |e: tiff::TiffError| SourceError::Decode { name: name.to_string(), reason: e.to_string() };
        let chunk_row = y / self.chunk_height;
        let first = chunk_row * self.chunk_height;
        let count = self.chunk_height.min(height - first);
        let row_bytes = width * out.count();
        self.rows.clear();
        self.rows.try_reserve(count * row_bytes).map_err(|_| SourceError::TooLarge {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
            reason: format!("a chunk of {count} rows does not fit in memory"),
        })?;
        self.rows.resize(count * row_bytes, 0);
        let across = if self.tiled { width.div_ceil(self.chunk_width) } else { 1 };
        for tx in 0..across {
            let index = u32::try_from(chunk_row * across + tx).map_err(|_| SourceError::Decode {
                name: name.to_string(),
                reason: "too many chunks".into(),
            })?;
            let chunk = self.decoder.read_chunk(index).map_err(decode)?;
            let (cw, ch) = self.decoder.chunk_data_dimensions(index);
            let (cw, ch) = (cw as usize, ch as usize);
            let x0 = tx * self.chunk_width;
            if ch < count || x0 + cw > width || (!self.tiled && cw != width) {
                return Err(SourceError::Decode {
                    name: name.to_string(),
                    reason: format!("chunk {index} is {cw}x{ch}, which does not match the image layout"),
                });
            }
            let step = cw * self.channels;
            for r in 0..count {
                let dst =
                    &mut self.rows[r * row_bytes + x0 * out.count()..r * row_bytes + (x0 + cw) * out.count()];
                let samples = match &chunk {
                    tiff::decoder::DecodingResult::U8(v) => Samples::U8(slice(v, r * step, step, name)?),
                    tiff::decoder::DecodingResult::U16(v) => Samples::U16(slice(v, r * step, step, name)?),
                    tiff::decoder::DecodingResult::F32(v) => Samples::F32(slice(v, r * step, step, name)?),
                    _ => {
                        return Err(SourceError::Unsupported {
                            name: name.to_string(),
                            what: "a TIFF with integer samples of 32 or 64 bits, or 64-bit floats".into(),
                        })
                    }
                };
                convert(samples, self.channels, out, dst);
            }
        }
        self.rows_y = first;
        self.rows_count = count;
        Ok(())
    }
}

/// `len` items of a decoded chunk from `start`, or an error if the chunk is short (a corrupt file).
fn slice<'a, T>(data: &'a [T], start: usize, len: usize, name: &str) -> Result<&'a [T], SourceError> {
    data.get(start..start + len).ok_or_else(|| SourceError::Decode {
        name: name.to_string(),
        reason: "a chunk holds fewer samples than its size needs".into(),
    })
}

/// True when a JPEG stream is whole. Its marker segments are walked from the start, each skipped by its
/// length, so the markers of an embedded EXIF thumbnail (inside APP1) are never mistaken for the image's;
/// every scan's entropy-coded data (where 0xFF is always followed by 0x00, a fill 0xFF or a restart
/// marker) must end in a marker, and the walk must reach the end-of-image marker after at least one scan.
/// A camera JPEG cut inside its main scan fails, whatever its thumbnail holds.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let (mut i, mut scans) = (2, 0usize);
    loop {
        if bytes.get(i) != Some(&0xFF) {
            return false;
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1; // fill bytes before a marker
        }
        let Some(&marker) = bytes.get(i) else { return false };
        i += 1;
        match marker {
            0xD9 => return scans > 0,
            0x00 => return false,
            0x01 | 0xD0..=0xD7 => {} // markers without a length
            _ => {
                let Some(length) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return false;
                };
                if length < 2 || i + length > bytes.len() {
                    return false;
                }
                i += length;
                if marker == 0xDA {
                    scans += 1;
                    loop {
                        let Some(at) = bytes[i..].iter().position(|&b| b == 0xFF) else { return false };
                        i += at;
                        match bytes.get(i + 1) {
                            None => return false,
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

fn open_jpeg(
    mut input: Box<dyn Input>,
    name: &str,
    out: Channels,
) -> Result<(usize, usize, Reader), SourceError> {
    let decode = |reason: String| SourceError::Decode { name: name.to_string(), reason };
    let (w, h) = image::ImageReader::with_format(&mut input, image::ImageFormat::Jpeg)
        .into_dimensions()
        .map_err(|e| decode(e.to_string()))?;
    let (width, height) = check_size(name, w as u64, h as u64)?;
    check_whole(name, width, height, "a JPEG")?;
    input.seek(SeekFrom::Start(0)).map_err(|source| SourceError::Open { name: name.to_string(), source })?;
    let mut bytes = Vec::new();
    // A JPEG larger than its decoded size is not a sane file.
    input
        .take(WHOLE_IMAGE_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::Open { name: name.to_string(), source })?;
    if !jpeg_is_complete(&bytes) {
        return Err(decode("the JPEG is truncated: its data ends without an end-of-image marker".into()));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(&bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * WHOLE_IMAGE_LIMIT);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| decode(e.to_string()))?;
    drop(bytes);
    let mut pixels = zeroed(width * height * out.count(), name, width, height)?;
    match image {
        image::DynamicImage::ImageLuma8(gray) => convert(Samples::U8(gray.as_raw()), 1, out, &mut pixels),
        other => convert(Samples::U8(other.into_rgb8().as_raw()), 3, out, &mut pixels),
    }
    Ok((width, height, Reader::Whole { pixels }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_signature() {
        assert_eq!(FileFormat::sniff(b"\x89PNG\r\n\x1a\n...."), Some(FileFormat::Png));
        assert_eq!(FileFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(FileFormat::Jpeg));
        assert_eq!(FileFormat::sniff(b"II*\0...."), Some(FileFormat::Tiff));
        assert_eq!(FileFormat::sniff(b"MM\0+...."), Some(FileFormat::Tiff), "big-endian BigTIFF");
        assert_eq!(FileFormat::sniff(b"II+\0...."), Some(FileFormat::Tiff), "BigTIFF");
        assert_eq!(FileFormat::sniff(b"GIF89a"), None);
        assert_eq!(FileFormat::sniff(b""), None);
        assert_eq!(FileFormat::sniff(b"MM\0*\0\0\0\x08"), Some(FileFormat::Tiff), "big-endian TIFF");
        for other in [&b"\x89PN"[..], b"BM\0\0", b"II*", b"hello world"] {
            assert_eq!(FileFormat::sniff(other), None, "{other:?}");
        }
    }

    #[test]
    fn sample_conversions_follow_the_readme() {
        assert_eq!([0, 128, 129, 257, 32_896, 65_278, 65_535].map(u16_to_u8), [0, 0, 1, 1, 128, 254, 255]);
        assert_eq!([f32::NAN, -1.0, 0.0, 0.5, 1.0, 7.0].map(f32_to_u8), [0, 0, 0, 128, 255, 255]);
        let mut rgb = [0u8; 6];
        convert(Samples::U8(&[7, 99, 8, 1]), 2, Channels::Rgb, &mut rgb);
        assert_eq!(rgb, [7, 7, 7, 8, 8, 8], "gray+alpha: alpha dropped, gray repeated");
        let mut gray = [0u8; 2];
        convert(Samples::U8(&[255, 255, 255, 0, 0, 255, 0, 0]), 4, Channels::Gray, &mut gray);
        assert_eq!(gray, [255, 182], "white stays white; green is its luminance");
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_incomplete() {
        let scan = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34];
        assert!(!jpeg_is_complete(&scan));
        assert!(jpeg_is_complete(&[&scan[..], &[0xFF, 0xD9]].concat()));
        assert!(jpeg_is_complete(&[&scan[..], &[0xFF, 0xD9, 0, 0]].concat()), "trailing bytes are allowed");
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]), "no scan at all");
        assert!(!jpeg_is_complete(&scan[..5]), "cut inside the scan header");
    }

    /// A JPEG of `side` x `side` noise (so its scan is long), encoded by the `image` crate.
    fn noise_jpeg(side: u32, seed: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..side * side * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) as u8)
            .collect();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode(&pixels, side, side, image::ExtendedColorType::Rgb8)
            .unwrap();
        bytes
    }

    #[test]
    fn a_camera_jpeg_cut_in_its_main_scan_is_incomplete_whatever_its_thumbnail() {
        // A camera JPEG: SOI, an APP1 EXIF segment holding a whole thumbnail JPEG (with its own scan and
        // end marker), then the main image's segments.
        let thumbnail = noise_jpeg(16, 1);
        let main = noise_jpeg(96, 2);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&thumbnail);
        let mut camera = vec![0xFF, 0xD8, 0xFF, 0xE1];
        camera.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
        camera.extend_from_slice(&app1);
        camera.extend_from_slice(&main[2..]);
        assert!(jpeg_is_complete(&camera));
        assert!(image::load_from_memory(&camera).is_ok(), "a valid JPEG to a decoder");
        for cut in [camera.len() - 2, camera.len() - 100, camera.len() / 2 + thumbnail.len() / 2] {
            assert!(!jpeg_is_complete(&camera[..cut]), "cut at {cut} of {}", camera.len());
        }
        let source = ImageSource::from_bytes(&camera[..camera.len() - 50], "cut.jpg", Channels::Rgb);
        let err = source.unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
