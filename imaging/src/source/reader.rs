//! The reader boundary: what every input format implements ([`LevelReader`]: the rows of one level) and
//! what it declares ([`Descriptor`]: its name, how it is recognised, its extensions, whether its rows can
//! be read in any order), and what it tells of a file besides its pixels ([`SourceInfo`]: levels, pages,
//! orientation, pixel size). `source/mod.rs` holds the list of descriptors and asks them; it never names
//! a format's types.

use std::io::{BufRead, Seek};
use std::path::Path;

use super::error::SourceError;
use super::samples::Channels;
use crate::exif::Orientation;

/// Anything an image can be read from: a file or bytes in memory.
pub trait Input: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> Input for T {}

/// One level of an image being read: every input format implements this.
pub trait LevelReader: Send {
    /// Writes rows `first..` (as many as `dst` holds, each the level's width of `out` pixels), converted,
    /// into `dst`. A reader without random access is asked for its rows in order.
    fn read_rows(
        &mut self,
        first: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError>;

    /// Called once the last row has been read: a reader that must check its file's tail does so here.
    fn finish(&mut self, _name: &str) -> Result<(), SourceError> {
        Ok(())
    }

    /// How many compressed chunks (strips, tiles, Zarr chunks) have been read from the file so far.
    fn chunks_read(&self) -> u64 {
        0
    }

    /// For tests: the largest region read in one call, where the reader reads regions.
    fn set_region_chunk(&mut self, _width: usize, _rows: usize) {}
}

/// What a format hands back when it opens one level.
pub struct Opened {
    pub width: usize,
    pub height: usize,
    pub reader: Box<dyn LevelReader>,
    /// What the whole file is (every level).
    pub info: SourceInfo,
}

/// Opens level `level` of a file read from a stream, converting to `out`.
pub type OpenStream = fn(Box<dyn Input>, &str, usize, Channels) -> Result<Opened, SourceError>;
/// What a file read from a stream is, from its headers.
pub type ProbeStream = fn(Box<dyn Input>, &str) -> Result<SourceInfo, SourceError>;
/// Opens level `level` of a folder.
pub type OpenFolder = fn(&Path, &str, usize) -> Result<Opened, SourceError>;
/// What a folder is.
pub type ProbeFolder = fn(&Path, &str) -> Result<SourceInfo, SourceError>;

/// How a format's images are found and opened.
#[derive(Clone, Copy)]
pub enum Access {
    /// A file recognised by its first bytes (`sniff` is given up to [`HEAD_BYTES`] of them), read from
    /// any [`Input`].
    Stream { sniff: fn(&[u8]) -> bool, open: OpenStream, probe: ProbeStream },
    /// A folder (every folder given as an image is read by the first format of this kind).
    Folder { open: OpenFolder, probe: ProbeFolder },
    /// A file that a library loaded at run time recognises by its path (OpenSlide): `source/mod.rs`
    /// routes to it before the stream formats.
    Library,
}

/// The first bytes of a file kept for recognising it (a DICOM preamble's "DICM" ends at byte 132).
pub const HEAD_BYTES: usize = 132;

/// What a format declares: one per file format, listed in `source/mod.rs`.
pub struct Descriptor {
    /// A short identifier, e.g. "tiff".
    pub id: &'static str,
    /// The reader's name as `runner info` prints it, e.g. "native TIFF".
    pub name: &'static str,
    /// The file name extensions that mark a file as this format (lower case, without the dot), with what
    /// a file so named probably is, for messages.
    pub extensions: &'static [(&'static str, &'static str)],
    /// Whether rows can be read in any order (a band skipped costs nothing).
    pub random_access: bool,
    /// Whether a file may hold levels other than 0.
    pub levels: bool,
    /// Whether a vendor's slide may be a file of this format (OpenSlide is asked first for these).
    pub vendor_container: bool,
    pub access: Access,
}

/// A file format read: a handle on its [`Descriptor`].
#[derive(Clone, Copy)]
pub struct FileFormat(&'static Descriptor);

impl FileFormat {
    pub const fn of(descriptor: &'static Descriptor) -> FileFormat {
        FileFormat(descriptor)
    }

    pub fn descriptor(self) -> &'static Descriptor {
        self.0
    }

    /// The reader's name, e.g. "native TIFF".
    pub fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for FileFormat {
    fn eq(&self, other: &FileFormat) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for FileFormat {}

impl std::fmt::Debug for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.id)
    }
}

/// A level decoded whole (JPEG, interlaced PNG), already converted: rows are served from memory.
pub(crate) struct DecodedRows {
    pub pixels: Vec<u8>,
    /// Bytes per converted row.
    pub row_bytes: usize,
}

impl LevelReader for DecodedRows {
    fn read_rows(
        &mut self,
        first: usize,
        _out: Channels,
        dst: &mut [u8],
        _name: &str,
    ) -> Result<(), SourceError> {
        let start = first * self.row_bytes;
        dst.copy_from_slice(&self.pixels[start..start + dst.len()]);
        Ok(())
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

    /// The info of a file with one level and one page.
    pub(crate) fn single_level(
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
}
