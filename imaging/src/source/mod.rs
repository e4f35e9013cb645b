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
//! goes there when OpenSlide names a vendor other than `generic-tiff`, and only when opened by path).
//!
//! The boundary is `reader.rs`: each reader implements [`LevelReader`] and declares a [`Descriptor`] (its
//! name, how it is recognised, its extensions, whether it reads rows in any order), listed in [`FORMATS`].
//! This file opens a path once, keeps its first bytes, asks the descriptors, and serves rows; it never
//! names a reader's types. The rest is shared by the readers: `error.rs`,
//! `limits.rs` (sizes checked before allocating), `samples.rs` (the conversion of samples).
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

mod error;
mod jpeg;
mod limits;
pub mod openslide;
mod png;
mod reader;
mod samples;
mod tiff;
mod zarr;

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub use self::error::SourceError;
pub use self::jpeg::jpeg_is_complete;
pub use self::limits::{MAX_WIDTH, WHOLE_IMAGE_LIMIT};
pub use self::reader::{
    Access, Descriptor, FileFormat, Input, LevelInfo, LevelReader, Opened, PyramidKind, SourceInfo,
    HEAD_BYTES, MAX_PAGES,
};
pub use self::samples::Channels;
pub use self::zarr::{is_ome_zarr, multiscales_metadata};
pub use crate::exif::Orientation;
use error::decoder_panicked;

/// Every format read, in the order they are asked: a new format is one file and one entry here.
pub const FORMATS: [&Descriptor; 5] =
    [&png::FORMAT, &jpeg::FORMAT, &tiff::FORMAT, &zarr::FORMAT, &openslide::FORMAT];

// The formats by name, as the API has always offered them.
#[allow(non_upper_case_globals)]
impl FileFormat {
    pub const Png: FileFormat = FileFormat::of(&png::FORMAT);
    pub const Jpeg: FileFormat = FileFormat::of(&jpeg::FORMAT);
    pub const Tiff: FileFormat = FileFormat::of(&tiff::FORMAT);
    /// An OME-Zarr image: a directory, not a file (never returned by [`FileFormat::sniff`]).
    pub const Zarr: FileFormat = FileFormat::of(&zarr::FORMAT);
    /// A vendor's slide format read through OpenSlide (never returned by [`FileFormat::sniff`]).
    pub const OpenSlide: FileFormat = FileFormat::of(&openslide::FORMAT);
}

impl FileFormat {
    /// The format whose signature `head` (the first bytes of a file) starts with, if any.
    pub fn sniff(head: &[u8]) -> Option<FileFormat> {
        FORMATS.iter().find_map(|d| match d.access {
            Access::Stream { sniff, .. } if sniff(head) => Some(FileFormat::of(d)),
            _ => None,
        })
    }

    /// The format a file name's extension names (case-insensitive), if any.
    pub fn by_extension(path: &Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        FORMATS.iter().find(|d| d.extensions.iter().any(|(e, _)| *e == ext)).map(|d| FileFormat::of(d))
    }
}

/// Whether `path`'s extension is that of a format recognised by name rather than content (a vendor's
/// slide: a MIRAX index or a DICOM file has no signature of its own).
pub fn has_slide_extension(path: &Path) -> bool {
    FileFormat::by_extension(path).is_some_and(|f| matches!(f.descriptor().access, Access::Library))
}

/// Whether `path`'s extension is that of an image file read natively (PNG, JPEG, TIFF).
pub fn has_image_extension(path: &Path) -> bool {
    FileFormat::by_extension(path).is_some_and(|f| matches!(f.descriptor().access, Access::Stream { .. }))
}

/// An image read top to bottom.
pub struct ImageSource {
    name: String,
    format: FileFormat,
    width: usize,
    height: usize,
    out: Channels,
    reader: Box<dyn LevelReader>,
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

/// A file opened, with its first bytes (up to [`HEAD_BYTES`]) and the format they name.
struct Sniffed {
    input: Box<dyn Input>,
    name: String,
    head: Vec<u8>,
    format: Option<FileFormat>,
}

impl Sniffed {
    fn open(path: &Path) -> Result<Sniffed, SourceError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| SourceError::Open { name: name.clone(), source })?;
        Sniffed::read(Box::new(BufReader::with_capacity(1 << 16, file)), name)
    }

    /// Reads the first bytes of `input` and rewinds.
    fn read(mut input: Box<dyn Input>, name: String) -> Result<Sniffed, SourceError> {
        let mut head = vec![0u8; HEAD_BYTES];
        let mut got = 0;
        while got < head.len() {
            match input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(SourceError::Open { name, source }),
            }
        }
        head.truncate(got);
        input.seek(SeekFrom::Start(0)).map_err(|source| SourceError::Open { name: name.clone(), source })?;
        let format = FileFormat::sniff(&head);
        Ok(Sniffed { input, name, head, format })
    }

    /// The format, or the error of a file no format recognises.
    fn format(&self) -> Result<FileFormat, SourceError> {
        self.format.ok_or_else(|| SourceError::Decode {
            name: self.name.clone(),
            reason: "the format could not be recognised from its first bytes".into(),
        })
    }

    /// Opens level `level` with the native reader of its format.
    fn open_level(self, level: usize, out: Channels) -> Result<ImageSource, SourceError> {
        let format = self.format()?;
        let descriptor = format.descriptor();
        let Access::Stream { open, .. } = descriptor.access else {
            unreachable!("sniffed formats are streams")
        };
        let name = self.name;
        if !descriptor.levels && level > 0 {
            return Err(SourceError::NoLevel {
                name,
                level,
                levels: "0 only (it is not a TIFF pyramid)".into(),
            });
        }
        let (input, label) = (self.input, name.clone());
        guarded(&label, move || {
            let Opened { width, height, reader, info } = open(input, &name, level, out)?;
            Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
        })
    }

    /// What the file is, from its headers, read by the native reader of its format.
    fn probe(self) -> Result<SourceInfo, SourceError> {
        let Access::Stream { probe, .. } = self.format()?.descriptor().access else {
            unreachable!("sniffed formats are streams")
        };
        let (input, name) = (self.input, self.name);
        guarded(&name, || probe(input, &name))
    }
}

/// Runs a reader, turning a panic of its decoder on a hostile file into an error.
fn guarded<T>(name: &str, f: impl FnOnce() -> Result<T, SourceError>) -> Result<T, SourceError> {
    crate::report::catch_panic(f).unwrap_or_else(|message| Err(decoder_panicked(name, &message)))
}

/// The folder format's opener and prober (the first folder format listed).
fn folder_format() -> (FileFormat, reader::OpenFolder, reader::ProbeFolder) {
    FORMATS
        .iter()
        .find_map(|d| match d.access {
            Access::Folder { open, probe } => Some((FileFormat::of(d), open, probe)),
            _ => None,
        })
        .expect("a folder format is listed")
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
            let (format, open, _) = folder_format();
            return guarded(&name.clone(), move || {
                let Opened { width, height, reader, info } = open(path, &name, level)?;
                Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
            });
        }
        let sniffed = Sniffed::open(path)?;
        match route(path, &sniffed) {
            Route::Slide(api, vendor) => {
                let name = sniffed.name;
                let format = FileFormat::OpenSlide;
                guarded(&name.clone(), move || {
                    let Opened { width, height, reader, info } =
                        openslide::open(api, path, &name, &vendor, level)?;
                    Ok(ImageSource { name, format, width, height, out, reader, info, level, next_row: 0 })
                })
            }
            Route::Native(missing) => {
                let (name, head) = (sniffed.name.clone(), sniffed.head.clone());
                sniffed.open_level(level, out).map_err(|e| needs_openslide(path, &name, &head, missing, e))
            }
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
            let (_, _, probe) = folder_format();
            return guarded(&name, || probe(path, &name));
        }
        let sniffed = Sniffed::open(path)?;
        match route(path, &sniffed) {
            Route::Slide(api, vendor) => {
                let name = sniffed.name;
                guarded(&name, || openslide::probe(api, path, &name, &vendor))
            }
            Route::Native(missing) => {
                let (name, head) = (sniffed.name.clone(), sniffed.head.clone());
                sniffed.probe().map_err(|e| needs_openslide(path, &name, &head, missing, e))
            }
        }
    }

    /// Opens level `level` of the file at `path` with the native readers only, even where OpenSlide
    /// would read it.
    pub fn open_native_level(path: &Path, level: usize, out: Channels) -> Result<ImageSource, SourceError> {
        Sniffed::open(path)?.open_level(level, out)
    }

    /// What the file at `path` is, read by the native readers only.
    pub fn probe_native(path: &Path) -> Result<SourceInfo, SourceError> {
        Sniffed::open(path)?.probe()
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
        Sniffed::read(input, name)?.open_level(level, out)
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
        self.reader.chunks_read()
    }

    /// Reads a slide opened through OpenSlide in regions of at most `width` x `rows` pixels (for tests:
    /// the default is [`openslide::CHUNK_WIDTH`] x [`openslide::CHUNK_ROWS`]); no effect on other readers.
    #[doc(hidden)]
    pub fn set_region_chunk(&mut self, width: usize, rows: usize) {
        self.reader.set_region_chunk(width, rows);
    }

    /// Appends the next `rows` rows (fewer at the end of the image) to `out`, converted.
    pub fn read_rows(&mut self, rows: usize, out: &mut Vec<u8>) -> Result<usize, SourceError> {
        let name = self.name.clone();
        guarded(&name, || self.read_rows_unguarded(rows, out))
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
        if rows > 0 {
            self.reader.read_rows(self.next_row, self.out, &mut out[start..], &self.name)?;
        }
        self.next_row += rows;
        if self.next_row == self.height {
            self.reader.finish(&self.name)?;
        }
        Ok(rows)
    }

    /// Passes over the next `rows` rows (fewer at the end of the image) without returning them: formats
    /// with random access (TIFF, OME-Zarr, OpenSlide, JPEG) just move on; a PNG, read in order, decodes
    /// them a few at a time.
    pub fn skip_rows(&mut self, rows: usize) -> Result<usize, SourceError> {
        let rows = rows.min(self.height - self.next_row);
        if self.format.descriptor().random_access {
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

/// A file whose format cannot hold a vendor's slide (PNG, JPEG) goes to the native readers; anything
/// else to OpenSlide if it is there and names a vendor other than `generic-tiff`.
fn route(path: &Path, sniffed: &Sniffed) -> Route {
    if sniffed.format.is_some_and(|f| !f.descriptor().vendor_container) {
        return Route::Native(Err(openslide::LibraryError::NotAsked));
    }
    match openslide::library() {
        Ok(api) => match api.detect_vendor(path) {
            Some(vendor) if vendor != "generic-tiff" => Route::Slide(api, vendor),
            _ => Route::Native(Ok(api)),
        },
        Err(missing) => Route::Native(Err(missing)),
    }
}

/// A native reader's error, or, for a file that is probably a vendor's slide (by its extension or the
/// first bytes `head`), what it probably is: and how to get OpenSlide when it is missing, or that
/// OpenSlide did not recognise it.
fn needs_openslide(
    path: &Path,
    name: &str,
    head: &[u8],
    library: Result<&'static openslide::Api, openslide::LibraryError>,
    error: SourceError,
) -> SourceError {
    if matches!(error, SourceError::Open { .. } | SourceError::NoLevel { .. })
        || matches!(library, Err(openslide::LibraryError::NotAsked))
    {
        return error;
    }
    let Some(what) = openslide::probable_vendor(path, head) else { return error };
    match library {
        Ok(api) => SourceError::OpenSlide {
            name: name.to_string(),
            reason: format!(
                "it is probably {what}, but OpenSlide {} does not recognise it, nor do the native readers",
                api.version()
            ),
        },
        Err(missing) => SourceError::NeedsOpenSlide {
            name: name.to_string(),
            what: what.to_string(),
            reason: match missing {
                openslide::LibraryError::NotFound { .. } => "OpenSlide was not found".to_string(),
                other => other.to_string(),
            },
        },
    }
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
    fn extensions_come_from_the_descriptors() {
        for slide in ["a.svs", "b.NDPI", "c.mrxs", "d.scn", "e.bif", "f.vms", "g.vmu", "h.dcm", "i.svslide"] {
            assert!(has_slide_extension(Path::new(slide)), "{slide}");
            assert!(!has_image_extension(Path::new(slide)), "{slide}");
        }
        for image in ["a.png", "b.JPG", "c.jpeg", "d.tif", "e.tiff"] {
            assert!(has_image_extension(Path::new(image)), "{image}");
            assert!(!has_slide_extension(Path::new(image)), "{image}");
        }
        assert!(!has_image_extension(Path::new("a.txt")) && !has_slide_extension(Path::new("noext")));
        let ids: Vec<&str> = FORMATS.iter().map(|d| d.id).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique, "one descriptor per format");
    }
}
