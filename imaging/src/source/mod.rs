//! Rows of an image file, top to bottom, as 8-bit RGB (images to predict) or 8-bit gray (reference masks),
//! without holding the whole image: PNG row by row, TIFF and BigTIFF one strip or one row of tiles at a
//! time (only the chunks the next rows need). JPEG and interlaced PNG cannot be read by rows and are
//! decoded whole, within [`WHOLE_IMAGE_LIMIT`]. The format is recognised by content, never by extension. A
//! folder is read as an OME-Zarr image (NGFF 0.4 on Zarr v2, 0.5 on Zarr v3), one row of chunks at a time.
//!
//! One file per reader: `png.rs`, `jpeg.rs`, `tiff/` (its own directory walk, levels and tags, its codecs:
//! none, LZW, Deflate, PackBits, JPEG, ZSTD, WebP, with the horizontal and floating-point predictors,
//! chunky or planar), `zarr.rs` (OME-Zarr through the `zarrs` crate; levels and micrometres per pixel from
//! the multiscales metadata), and [`openslide`] for the vendors' slide formats (loaded at run time; a file
//! goes there when OpenSlide names a vendor other than `generic-tiff`, and only when opened by path). This
//! file holds the API, the conversion of samples, and the format sniffing.
//!
//! Conversion, as documented in docs/prediction.md: RGB as is; RGBA and gray+alpha drop the alpha channel
//! (no compositing); gray is repeated to three channels; palette images are expanded; 16-bit samples
//! become v * 255 / 65535 rounded; signed 16-bit samples clamp negatives to 0 and become v * 255 / 32767
//! rounded; float samples (16, 32 or 64 bits) are clamped to [0, 1] and scaled to 255 (rounded; NaN is
//! 0); a TIFF's YCbCr JPEG is converted to RGB as libjpeg does. For masks, colour is turned to gray by
//! luminance (0.2126 R + 0.7152 G + 0.0722 B, rounded).
//!
//! What a file is besides its pixels is kept in [`SourceInfo`]: the levels of a pyramid (OME-TIFF
//! SubIFDs, reduced-resolution pages, Aperio SVS levels, OME-Zarr datasets; [`ImageSource::open_level`]
//! reads any of them), the page count of a multi-page TIFF, the EXIF orientation and the microns per pixel.
//!
//! Every size product is checked and every large buffer is reserved fallibly, so a file whose header
//! claims an absurd size is an error, never a panic or an exhausted machine.

mod jpeg;
pub mod openslide;
mod png;
mod tiff;
mod zarr;

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub use self::jpeg::jpeg_is_complete;
pub use self::zarr::{is_ome_zarr, multiscales_metadata};
pub use crate::exif::Orientation;

/// The widest image read (a band of 256 rows of it is 200 MB as RGB bytes).
pub const MAX_WIDTH: usize = 262_144;
/// The largest decoded size (bytes, 8-bit RGB) of an image that must be decoded whole (JPEG, interlaced
/// PNG), and of one strip or row of tiles of a TIFF.
pub const WHOLE_IMAGE_LIMIT: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {name}: {source}")]
    Open { name: String, source: std::io::Error },
    #[error("{name} is not a readable PNG, JPEG or TIFF image ({reason})")]
    Decode { name: String, reason: String },
    #[error("{name} is {what}, which is not supported; {hint}")]
    Unsupported { name: String, what: String, hint: String },
    #[error("{name} is {width}x{height}: {reason}")]
    TooLarge { name: String, width: u64, height: u64, reason: String },
    #[error("{name} is not a readable OME-Zarr image ({reason})")]
    Zarr { name: String, reason: String },
    #[error("{name} has no level {level}; its levels are {levels}")]
    NoLevel { name: String, level: usize, levels: String },
    #[error("{name}: OpenSlide cannot read it ({reason})")]
    OpenSlide { name: String, reason: String },
    #[error(
        "{name} is probably {what}, which is read through OpenSlide, and {reason}; {}",
        openslide::HOW_TO_GET
    )]
    NeedsOpenSlide { name: String, what: String, reason: String },
}

/// The hint of an unsupported sample layout: what is read.
pub(crate) const READABLE: &str = "images read are gray, gray+alpha, RGB, RGBA or palette, of 8 or 16 bits \
     (unsigned, or signed 16-bit), or float16/32/64; convert it to one of those (e.g. 8-bit RGB)";

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
    /// An OME-Zarr image: a directory, not a file (never returned by [`FileFormat::sniff`]).
    Zarr,
    /// A vendor's slide format read through OpenSlide (never returned by [`FileFormat::sniff`]).
    OpenSlide,
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

/// One resolution level of an image: level 0 is the full resolution; a PNG, a JPEG or a TIFF that is not
/// a pyramid has only that one.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelInfo {
    pub width: usize,
    pub height: usize,
    /// Tile width and height of a tiled TIFF level.
    pub tile: Option<(usize, usize)>,
    /// Rows per strip of a striped TIFF level.
    pub rows_per_strip: Option<usize>,
    /// How the pixels are stored, e.g. "JPEG", "Deflate", "LZW", "uncompressed", "PNG".
    pub compression: String,
    /// What the samples are, e.g. "8-bit RGB", "YCbCr 4:2:0 JPEG", "16-bit gray".
    pub photometric: String,
    /// Level 0's width and height over this level's (1.0 for level 0).
    pub downsample: (f64, f64),
}

/// How the levels of a pyramid are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyramidKind {
    /// Reduced-resolution images in the SubIFDs of the first page (OME-TIFF).
    SubIfds,
    /// Reduced-resolution pages (NewSubFileType 1) after the first.
    Pages,
    /// Aperio SVS: the tiled pages after the first (the thumbnail, label and macro pages are not levels).
    Aperio,
    /// OME-Zarr: the datasets of the multiscales metadata, one array each.
    ZarrDatasets,
    /// The levels OpenSlide reports.
    OpenSlide,
}

/// What a file is, besides its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub format: FileFormat,
    /// Every level, level 0 (full resolution) first.
    pub levels: Vec<LevelInfo>,
    /// How the levels are stored, if there are several.
    pub pyramid: Option<PyramidKind>,
    /// Pages (images of the main chain of a TIFF, counted up to [`MAX_PAGES`]); 1 for PNG and JPEG.
    pub pages: usize,
    /// Pages that are neither levels nor an SVS thumbnail, label or macro image: the other images of a
    /// multi-page stack (channels, planes, frames), which are not read. Only the first page is.
    pub other_pages: usize,
    /// How viewers turn the stored pixels (TIFF tag 274, JPEG EXIF, PNG eXIf).
    pub orientation: Orientation,
    /// Micrometres per pixel of level 0 (x, y): from OME-XML PhysicalSizeX/Y, an Aperio "MPP = " field, or
    /// the TIFF resolution tags in inches or centimetres, in that order; for OME-Zarr, level 0's `scale`
    /// transform when the y and x axes have a length unit.
    pub microns_per_pixel: Option<(f64, f64)>,
    /// The vendor OpenSlide named (e.g. "aperio", "hamamatsu", "dicom") for a file read through it.
    pub vendor: Option<String>,
}

/// The most pages of a TIFF walked.
pub const MAX_PAGES: usize = 10_000;

impl SourceInfo {
    /// The levels as a short list for messages, e.g. "0: 96x80, 1: 48x40".
    pub fn levels_line(&self) -> String {
        self.levels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i}: {}x{}", l.width, l.height))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Anything an image can be read from: a file or bytes in memory.
pub trait Input: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> Input for T {}

/// Samples of one row or chunk as decoded, before conversion.
pub(crate) enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    F32(&'a [f32]),
}

pub(crate) fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 * 255 + 32_767) / 65_535) as u8
}

/// Signed 16-bit: negatives are 0, 0..=32767 is scaled to 0..=255 (rounded).
pub(crate) fn i16_to_u8(v: i16) -> u8 {
    ((v.max(0) as u32 * 255 + 16_383) / 32_767) as u8
}

pub(crate) fn f32_to_u8(v: f32) -> u8 {
    // NaN fails both comparisons and becomes 0.
    if v >= 1.0 {
        255
    } else if v > 0.0 {
        (v * 255.0).round() as u8
    } else {
        0
    }
}

pub(crate) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((2126 * r as u32 + 7152 * g as u32 + 722 * b as u32 + 5000) / 10_000) as u8
}

/// Converts `samples` (pixels of `channels` samples each: 1 gray, 2 gray+alpha, 3 RGB, 4 or more RGBA
/// and extra samples) into `dst` (exactly one output pixel per input pixel).
pub(crate) fn convert(samples: Samples<'_>, channels: usize, out: Channels, dst: &mut [u8]) {
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
        Samples::I16(s) => run(s, channels, out, dst, i16_to_u8),
        Samples::F32(s) => run(s, channels, out, dst, f32_to_u8),
    }
}

/// A zeroed buffer of `len` bytes, or an error naming the size instead of an allocation panic.
pub(crate) fn zeroed(len: usize, name: &str, width: usize, height: usize) -> Result<Vec<u8>, SourceError> {
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
    Png(Box<png::PngRows>),
    OpenSlide(Box<openslide::SlideRows>),
    Tiff(Box<tiff::TiffRows>),
    Zarr(Box<zarr::ZarrRows>),
    /// Decoded whole, already converted; rows are served from here.
    Whole {
        pixels: Vec<u8>,
    },
}

/// What a reader module hands back when it opens a file.
pub(crate) struct Opened {
    width: usize,
    height: usize,
    reader: Reader,
    info: SourceInfo,
}

/// An image read top to bottom.
pub struct ImageSource {
    name: String,
    format: FileFormat,
    width: usize,
    height: usize,
    out: Channels,
    reader: Reader,
    info: SourceInfo,
    level: usize,
    /// The next row [`ImageSource::read_rows`] returns.
    next_row: usize,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImageSource({} {:?} {}x{} level {})",
            self.name, self.format, self.width, self.height, self.level
        )
    }
}

fn open_file(path: &Path) -> Result<(Box<dyn Input>, String), SourceError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| SourceError::Open { name: name.clone(), source })?;
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), name))
}

impl ImageSource {
    /// Opens the file at `path` at full resolution (level 0); only the header is read here.
    pub fn open(path: &Path, out: Channels) -> Result<ImageSource, SourceError> {
        ImageSource::open_level(path, 0, out)
    }

    /// Opens level `level` of the file at `path` (0 is full resolution; see [`ImageSource::levels`]). A
    /// folder at `path` is read as an OME-Zarr image; a vendor's slide (see [`openslide`]) is read through
    /// OpenSlide when the library is found.
    pub fn open_level(path: &Path, level: usize, out: Channels) -> Result<ImageSource, SourceError> {
        if path.is_dir() {
            let name = path.display().to_string();
            let label = name.clone();
            return crate::report::catch_panic(move || {
                let Opened { width, height, reader, info } = zarr::open(path, &name, level)?;
                let format = FileFormat::Zarr;
                Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
            })
            .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)));
        }
        let (mut input, name) = open_file(path)?;
        match route(path, &mut input, &name)? {
            Route::Slide(api, vendor) => {
                let label = name.clone();
                crate::report::catch_panic(move || {
                    let Opened { width, height, reader, info } =
                        openslide::open(api, path, &name, &vendor, level)?;
                    let format = FileFormat::OpenSlide;
                    Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
                })
                .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
            }
            Route::Native(missing) => ImageSource::new_level(input, name.clone(), level, out)
                .map_err(|e| needs_openslide(path, &name, missing, e)),
        }
    }

    /// The levels of the file at `path`, full resolution first (one for a file that is not a pyramid).
    /// Only the structure is read: a level listed here may still be refused when opened.
    pub fn levels(path: &Path) -> Result<Vec<LevelInfo>, SourceError> {
        Ok(ImageSource::probe(path)?.levels)
    }

    /// What the file at `path` is (levels, pages, orientation, microns per pixel), from its headers.
    pub fn probe(path: &Path) -> Result<SourceInfo, SourceError> {
        if path.is_dir() {
            let name = path.display().to_string();
            return crate::report::catch_panic(|| zarr::probe(path, &name))
                .unwrap_or_else(|message| Err(decoder_panicked(&path.display().to_string(), &message)));
        }
        let (mut input, name) = open_file(path)?;
        let label = name.clone();
        match route(path, &mut input, &name)? {
            Route::Slide(api, vendor) => {
                crate::report::catch_panic(move || openslide::probe(api, path, &name, &vendor))
                    .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
            }
            Route::Native(missing) => crate::report::catch_panic(move || probe_input(input, name))
                .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
                .map_err(|e| needs_openslide(path, &label, missing, e)),
        }
    }

    /// Opens level `level` of the file at `path` with the native readers only, even where OpenSlide
    /// would read it.
    pub fn open_native_level(path: &Path, level: usize, out: Channels) -> Result<ImageSource, SourceError> {
        let (input, name) = open_file(path)?;
        ImageSource::new_level(input, name, level, out)
    }

    /// What the file at `path` is, read by the native readers only.
    pub fn probe_native(path: &Path) -> Result<SourceInfo, SourceError> {
        let (input, name) = open_file(path)?;
        let label = name.clone();
        crate::report::catch_panic(move || probe_input(input, name))
            .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
    }

    /// Reads an image held in memory (`name` names it in errors).
    pub fn from_bytes(bytes: &[u8], name: &str, out: Channels) -> Result<ImageSource, SourceError> {
        ImageSource::new(Box::new(Cursor::new(bytes.to_vec())), name.to_string(), out)
    }

    /// Reads an image from `input`, recognised by its first bytes, at level 0.
    pub fn new(input: Box<dyn Input>, name: String, out: Channels) -> Result<ImageSource, SourceError> {
        ImageSource::new_level(input, name, 0, out)
    }

    /// Reads level `level` of an image from `input`. A decoder that panics on a hostile file gives an
    /// error, as everywhere in this module.
    pub fn new_level(
        input: Box<dyn Input>,
        name: String,
        level: usize,
        out: Channels,
    ) -> Result<ImageSource, SourceError> {
        let label = name.clone();
        crate::report::catch_panic(move || ImageSource::open_input(input, name, level, out))
            .unwrap_or_else(|message| Err(decoder_panicked(&label, &message)))
    }

    fn open_input(
        mut input: Box<dyn Input>,
        name: String,
        level: usize,
        out: Channels,
    ) -> Result<ImageSource, SourceError> {
        let format = sniff_input(&mut input, &name)?;
        if format != FileFormat::Tiff && level > 0 {
            return Err(SourceError::NoLevel {
                name,
                level,
                levels: "0 only (it is not a TIFF pyramid)".into(),
            });
        }
        let Opened { width, height, reader, info } = match format {
            FileFormat::Png => png::open(input, &name, out)?,
            FileFormat::Tiff => tiff::open(input, &name, level, out)?,
            FileFormat::Jpeg => jpeg::open(input, &name, out)?,
            FileFormat::Zarr => unreachable!("sniffing never finds a directory"),
            FileFormat::OpenSlide => unreachable!("never sniffed"),
        };
        Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
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

    /// What the file is: its levels, pages, orientation and resolution.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// The level read (0 is full resolution).
    pub fn level(&self) -> usize {
        self.level
    }

    /// How viewers turn the stored pixels. Rows are read as stored, whatever this says.
    pub fn orientation(&self) -> Orientation {
        self.info.orientation
    }

    /// Micrometres per pixel (x, y) of the level read: level 0's scaled by the level's downsample.
    pub fn microns_per_pixel(&self) -> Option<(f64, f64)> {
        let (x, y) = self.info.microns_per_pixel?;
        let (dx, dy) = self.info.levels.get(self.level).map_or((1.0, 1.0), |l| l.downsample);
        Some((x * dx, y * dy))
    }

    /// How many compressed strips or tiles have been read from the file so far (0 for PNG and JPEG): a
    /// band reads only the chunks its rows need.
    pub fn chunks_read(&self) -> u64 {
        match &self.reader {
            Reader::Tiff(tiff) => tiff.chunks_read(),
            Reader::Zarr(zarr) => zarr.chunks_read(),
            _ => 0,
        }
    }

    /// Reads a slide opened through OpenSlide in regions of at most `width` x `rows` pixels (for tests:
    /// the default is [`openslide::CHUNK_WIDTH`] x [`openslide::CHUNK_ROWS`]); no effect on other readers.
    #[doc(hidden)]
    pub fn set_region_chunk(&mut self, width: usize, rows: usize) {
        if let Reader::OpenSlide(slide) = &mut self.reader {
            slide.chunk = (width.max(1), rows.max(1));
        }
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
        if let Reader::OpenSlide(slide) = &mut self.reader {
            slide.read_rows(self.next_row, rows, self.out, &mut out[start..], &self.name)?;
        }
        for (i, dst) in out[start..].chunks_exact_mut(row_bytes).enumerate() {
            let y = self.next_row + i;
            match &mut self.reader {
                Reader::OpenSlide(_) => break,
                Reader::Png(png) => png.read_row(y, self.height, self.out, dst, &self.name)?,
                Reader::Tiff(tiff) => tiff.read_row(y, self.out, dst, &self.name)?,
                Reader::Zarr(zarr) => zarr.read_row(y, self.out, dst, &self.name)?,
                Reader::Whole { pixels } => dst.copy_from_slice(&pixels[y * row_bytes..(y + 1) * row_bytes]),
            }
        }
        self.next_row += rows;
        if self.next_row == self.height {
            if let Reader::Png(png) = &mut self.reader {
                // Reads up to the end of the image data, so a corrupt or missing tail is an error too.
                png.finish(&self.name)?;
            }
        }
        Ok(rows)
    }

    /// Passes over the next `rows` rows (fewer at the end of the image) without returning them: readers
    /// with random access (TIFF, OME-Zarr, OpenSlide, decoded JPEGs) just move on; a PNG, read in order,
    /// decodes them a few at a time.
    pub fn skip_rows(&mut self, rows: usize) -> Result<usize, SourceError> {
        let rows = rows.min(self.height - self.next_row);
        if !matches!(self.reader, Reader::Png(_)) {
            self.next_row += rows;
            return Ok(rows);
        }
        let (mut left, mut scratch) = (rows, Vec::new());
        while left > 0 {
            scratch.clear();
            left -= self.read_rows(left.min(64), &mut scratch)?;
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

/// Where a file opened by path is read.
enum Route {
    /// Through OpenSlide, which named this vendor.
    Slide(&'static openslide::Api, String),
    /// By the native readers; with OpenSlide, which did not recognise it, or why it is not there.
    Native(Result<&'static openslide::Api, openslide::LibraryError>),
}

/// PNG and JPEG go to the native readers; anything else to OpenSlide if it is there and names a vendor
/// other than `generic-tiff`.
fn route(path: &Path, input: &mut Box<dyn Input>, name: &str) -> Result<Route, SourceError> {
    let format = sniff_input(input, name).ok();
    if matches!(format, Some(FileFormat::Png | FileFormat::Jpeg)) {
        return Ok(Route::Native(Err(openslide::LibraryError::NotAsked)));
    }
    Ok(match openslide::library() {
        Ok(api) => match api.detect_vendor(path) {
            Some(vendor) if vendor != "generic-tiff" => Route::Slide(api, vendor),
            _ => Route::Native(Ok(api)),
        },
        Err(missing) => Route::Native(Err(missing)),
    })
}

/// A native reader's error, or, for a file that is probably a vendor's slide, what it probably is: and
/// how to get OpenSlide when it is missing, or that OpenSlide did not recognise it.
fn needs_openslide(
    path: &Path,
    name: &str,
    library: Result<&'static openslide::Api, openslide::LibraryError>,
    error: SourceError,
) -> SourceError {
    if matches!(error, SourceError::Open { .. } | SourceError::NoLevel { .. })
        || matches!(library, Err(openslide::LibraryError::NotAsked))
    {
        return error;
    }
    let mut head = Vec::with_capacity(132);
    if let Ok(file) = File::open(path) {
        let _ = file.take(132).read_to_end(&mut head);
    }
    let missing = match library {
        Ok(api) => {
            return match openslide::probable_vendor(path, &head) {
                Some(what) => SourceError::OpenSlide {
                    name: name.to_string(),
                    reason: format!(
                        "it is probably {what}, but OpenSlide {} does not recognise it, nor do the native readers",
                        api.version()
                    ),
                },
                None => error,
            }
        }
        Err(missing) => missing,
    };
    match openslide::probable_vendor(path, &head) {
        Some(what) => SourceError::NeedsOpenSlide {
            name: name.to_string(),
            what: what.to_string(),
            reason: match missing {
                openslide::LibraryError::NotFound { .. } => "OpenSlide was not found".to_string(),
                other => other.to_string(),
            },
        },
        None => error,
    }
}

/// Recognises the format from the first bytes and rewinds.
fn sniff_input(input: &mut Box<dyn Input>, name: &str) -> Result<FileFormat, SourceError> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(SourceError::Open { name: name.to_string(), source }),
        }
    }
    input.seek(SeekFrom::Start(0)).map_err(|source| SourceError::Open { name: name.to_string(), source })?;
    FileFormat::sniff(&head[..got]).ok_or_else(|| SourceError::Decode {
        name: name.to_string(),
        reason: "the format could not be recognised from its first bytes".into(),
    })
}

fn probe_input(mut input: Box<dyn Input>, name: String) -> Result<SourceInfo, SourceError> {
    match sniff_input(&mut input, &name)? {
        FileFormat::Tiff => tiff::probe(input, &name),
        // A PNG's or JPEG's header is all there is to probe; JPEGs are decoded whole, so only the
        // header is read here.
        FileFormat::Png => Ok(png::open(input, &name, Channels::Gray)?.info),
        FileFormat::Jpeg => jpeg::probe(input, &name),
        FileFormat::Zarr => unreachable!("sniffing never finds a directory"),
        FileFormat::OpenSlide => unreachable!("never sniffed"),
    }
}

/// The info of a file with one level and one page.
fn single_level(
    format: FileFormat,
    width: usize,
    height: usize,
    compression: &str,
    photometric: String,
    orientation: Orientation,
) -> SourceInfo {
    SourceInfo {
        format,
        levels: vec![LevelInfo {
            width,
            height,
            tile: None,
            rows_per_strip: None,
            compression: compression.to_string(),
            photometric,
            downsample: (1.0, 1.0),
        }],
        pyramid: None,
        pages: 1,
        other_pages: 0,
        orientation,
        microns_per_pixel: None,
        vendor: None,
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
    fn sample_conversions_follow_the_docs() {
        assert_eq!([0, 128, 129, 257, 32_896, 65_278, 65_535].map(u16_to_u8), [0, 0, 1, 1, 128, 254, 255]);
        assert_eq!([i16::MIN, -1, 0, 64, 65, 16_384, 32_767].map(i16_to_u8), [0, 0, 0, 0, 1, 128, 255]);
        assert_eq!([f32::NAN, -1.0, 0.0, 0.5, 1.0, 7.0].map(f32_to_u8), [0, 0, 0, 128, 255, 255]);
        let mut rgb = [0u8; 6];
        convert(Samples::U8(&[7, 99, 8, 1]), 2, Channels::Rgb, &mut rgb);
        assert_eq!(rgb, [7, 7, 7, 8, 8, 8], "gray+alpha: alpha dropped, gray repeated");
        let mut gray = [0u8; 2];
        convert(Samples::U8(&[255, 255, 255, 0, 0, 255, 0, 0]), 4, Channels::Gray, &mut gray);
        assert_eq!(gray, [255, 182], "white stays white; green is its luminance");
    }
}
