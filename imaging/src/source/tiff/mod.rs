//! TIFF and BigTIFF, read natively: the directory chain is walked here (pages, SubIFDs, pyramid levels,
//! the tags that say what the image is, where it is and how it is turned), and one strip or one row of
//! tiles is decoded at a time, reading only the chunks (and the few offsets) the next rows need. Chunks
//! are decoded in `codecs.rs` (none, LZW, Deflate, PackBits, ZSTD, WebP, predictors) and `jpeg.rs` (JPEG,
//! with JPEGTables and libjpeg's YCbCr conversion).
//!
//! Levels: the reduced-resolution SubIFDs of the first page (OME-TIFF); else, in an Aperio SVS, the tiled
//! pages after the first (the striped thumbnail, label and macro pages are not levels); else the pages
//! marked reduced-resolution (NewSubFileType bit 0) that are not label or macro images. Each level must be
//! smaller than the one before. Any other page (a stack of channels, planes or frames) is counted in
//! `other_pages` and not read: only the first page is.

mod codecs;
mod ifd;
mod jpeg;
mod jpeg2000;

use self::codecs::Codec;
use self::ifd::{Entry, Ifd, TiffInput};
use super::{
    check_size, convert, Channels, FileFormat, Input, LevelInfo, Opened, Orientation, PyramidKind, Reader,
    Samples, SourceError, SourceInfo, MAX_PAGES, READABLE, WHOLE_IMAGE_LIMIT,
};

// Tags read.
const NEW_SUBFILE_TYPE: u16 = 254;
const IMAGE_WIDTH: u16 = 256;
const IMAGE_LENGTH: u16 = 257;
const BITS_PER_SAMPLE: u16 = 258;
const COMPRESSION: u16 = 259;
const PHOTOMETRIC: u16 = 262;
const FILL_ORDER: u16 = 266;
const IMAGE_DESCRIPTION: u16 = 270;
const STRIP_OFFSETS: u16 = 273;
const ORIENTATION: u16 = 274;
const SAMPLES_PER_PIXEL: u16 = 277;
const ROWS_PER_STRIP: u16 = 278;
const STRIP_BYTE_COUNTS: u16 = 279;
const X_RESOLUTION: u16 = 282;
const Y_RESOLUTION: u16 = 283;
const PLANAR_CONFIGURATION: u16 = 284;
const RESOLUTION_UNIT: u16 = 296;
const PREDICTOR: u16 = 317;
const COLOR_MAP: u16 = 320;
const TILE_WIDTH: u16 = 322;
const TILE_LENGTH: u16 = 323;
const TILE_OFFSETS: u16 = 324;
const TILE_BYTE_COUNTS: u16 = 325;
const SUB_IFDS: u16 = 330;
const EXTRA_SAMPLES: u16 = 338;
const SAMPLE_FORMAT: u16 = 339;
const JPEG_TABLES: u16 = 347;
const YCBCR_SUBSAMPLING: u16 = 530;

/// The longest image description read from the first page (OME-XML of a large plate runs to megabytes);
/// other pages' descriptions are read up to 64 KiB (enough to tell a label from a level).
const MAX_DESCRIPTION: u64 = 16 << 20;
const MAX_OTHER_DESCRIPTION: u64 = 64 << 10;
/// The most SubIFDs read.
const MAX_SUB_IFDS: u64 = 64;

/// One image directory, parsed: what the image is and where its chunks are.
#[derive(Debug, Clone)]
struct Page {
    width: u64,
    height: u64,
    bits: Vec<u64>,
    samples: u64,
    formats: Vec<u64>,
    photometric: Option<u64>,
    compression: u64,
    predictor: u64,
    planar: u64,
    fill_order: u64,
    tiled: bool,
    chunk_width: u64,
    chunk_height: u64,
    offsets: Option<Entry>,
    counts: Option<Entry>,
    subsampling: (u64, u64),
    subfile: u64,
    extra_samples: u64,
    colormap: Option<Entry>,
    jpeg_tables: Option<Entry>,
    orientation: Option<u64>,
    resolution: (Option<f64>, Option<f64>, u64),
    sub_ifds: Option<Entry>,
    description: Option<String>,
}

impl Page {
    fn parse(file: &mut TiffInput, ifd: &Ifd, max_description: u64) -> Result<Page, String> {
        let e = |tag: u16| ifd.entries.get(&tag).copied();
        let mut first = |tag: u16, default: u64| -> Result<u64, String> {
            match e(tag) {
                Some(entry) if entry.count > 0 => Ok(file.uints(&entry, 0, 1, tag)?[0]),
                _ => Ok(default),
            }
        };
        let width = first(IMAGE_WIDTH, 0)?;
        let height = first(IMAGE_LENGTH, 0)?;
        let samples = first(SAMPLES_PER_PIXEL, 1)?;
        let compression = first(COMPRESSION, 1)?;
        let predictor = first(PREDICTOR, 1)?;
        let planar = first(PLANAR_CONFIGURATION, 1)?;
        let fill_order = first(FILL_ORDER, 1)?;
        let subfile = first(NEW_SUBFILE_TYPE, 0)?;
        let tiled = e(TILE_WIDTH).is_some() || e(TILE_OFFSETS).is_some();
        let (chunk_width, chunk_height) = if tiled {
            (first(TILE_WIDTH, 0)?, first(TILE_LENGTH, 0)?)
        } else {
            (width, first(ROWS_PER_STRIP, u64::from(u32::MAX))?.min(height))
        };
        let photometric = match e(PHOTOMETRIC) {
            Some(entry) if entry.count > 0 => Some(file.uints(&entry, 0, 1, PHOTOMETRIC)?[0]),
            _ => None,
        };
        let orientation = match e(ORIENTATION) {
            Some(entry) if entry.count > 0 => file.uints(&entry, 0, 1, ORIENTATION).ok().map(|v| v[0]),
            _ => None,
        };
        let list = |file: &mut TiffInput, tag: u16, default: u64| -> Result<Vec<u64>, String> {
            match e(tag) {
                Some(entry) if entry.count > 0 => file.uint_list(&entry, 1024, tag),
                _ => Ok(vec![default]),
            }
        };
        let bits = list(file, BITS_PER_SAMPLE, 1)?;
        let formats = list(file, SAMPLE_FORMAT, 1)?;
        let subsampling = match e(YCBCR_SUBSAMPLING) {
            Some(entry) if entry.count >= 2 => {
                let v = file.uints(&entry, 0, 2, YCBCR_SUBSAMPLING)?;
                (v[0], v[1])
            }
            _ => (2, 2),
        };
        let mut rational = |tag: u16| match e(tag) {
            Some(entry) => file.rational(&entry, tag).ok().flatten(),
            None => None,
        };
        let resolution = (rational(X_RESOLUTION), rational(Y_RESOLUTION), 0);
        let unit = match e(RESOLUTION_UNIT) {
            Some(entry) if entry.count > 0 => {
                file.uints(&entry, 0, 1, RESOLUTION_UNIT).map(|v| v[0]).unwrap_or(2)
            }
            _ => 2,
        };
        let description = match e(IMAGE_DESCRIPTION) {
            Some(entry) => file.bytes(&entry, max_description, IMAGE_DESCRIPTION).ok().flatten().map(|b| {
                let text = String::from_utf8_lossy(&b).into_owned();
                text.trim_end_matches('\0').to_string()
            }),
            None => None,
        };
        Ok(Page {
            width,
            height,
            bits,
            samples,
            formats,
            photometric,
            compression,
            predictor,
            planar,
            fill_order,
            tiled,
            chunk_width,
            chunk_height,
            offsets: e(if tiled { TILE_OFFSETS } else { STRIP_OFFSETS }),
            counts: e(if tiled { TILE_BYTE_COUNTS } else { STRIP_BYTE_COUNTS }),
            subsampling,
            subfile,
            extra_samples: e(EXTRA_SAMPLES).map_or(0, |entry| entry.count),
            colormap: e(COLOR_MAP),
            jpeg_tables: e(JPEG_TABLES),
            orientation,
            resolution: (resolution.0, resolution.1, unit),
            sub_ifds: e(SUB_IFDS),
            description,
        })
    }

    fn is_label_or_macro(&self) -> bool {
        self.description.as_deref().is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("label") || d.contains("macro")
        })
    }

    /// Whether this page can be the level below one of `width` x `height`.
    fn smaller_than(&self, width: u64, height: u64) -> bool {
        self.width > 0
            && self.height > 0
            && self.width <= width
            && self.height <= height
            && (self.width < width || self.height < height)
    }

    /// What the samples are, in words, e.g. "8-bit RGB" or "YCbCr 4:2:0 JPEG".
    fn describe(&self) -> String {
        let bits = self.bits.first().copied().unwrap_or(1);
        let format = self.formats.first().copied().unwrap_or(1);
        let depth = match (format, bits) {
            (3, b) => format!("float{b}"),
            (2, b) => format!("signed {b}-bit"),
            (_, b) => format!("{b}-bit"),
        };
        let extra =
            if self.extra_samples > 0 || self.samples > 3 || self.samples == 2 { "+alpha" } else { "" };
        match self.photometric {
            Some(6) if self.compression == 7 => {
                let sub = match self.subsampling {
                    (1, 1) => "4:4:4",
                    (2, 1) => "4:2:2",
                    (2, 2) => "4:2:0",
                    (4, 1) => "4:1:1",
                    _ => "subsampled",
                };
                format!("YCbCr {sub} JPEG")
            }
            Some(0) => format!("{depth} gray{extra} (white is zero)"),
            Some(1) => format!("{depth} gray{extra}"),
            Some(2) => format!("{depth} RGB{extra}"),
            Some(3) => format!("{depth} palette"),
            Some(4) => "a transparency mask".into(),
            Some(5) => format!("{depth} CMYK (separated)"),
            Some(6) => format!("{depth} YCbCr"),
            Some(8..=10) => format!("{depth} CIE L*a*b*"),
            Some(32844 | 32845) => "LogLuv".into(),
            Some(32803) => "a colour filter array (raw sensor data)".into(),
            Some(other) => format!("{depth}, photometric interpretation {other}"),
            None => format!("{depth}, {} samples per pixel, no photometric interpretation", self.samples),
        }
    }

    fn level_info(&self, width0: u64, height0: u64) -> LevelInfo {
        LevelInfo {
            width: self.width as usize,
            height: self.height as usize,
            tile: self.tiled.then_some((self.chunk_width as usize, self.chunk_height as usize)),
            rows_per_strip: (!self.tiled).then_some(self.chunk_height as usize),
            compression: match self.compression {
                1 => "uncompressed".to_string(),
                c => codecs::name(c as u16).to_string(),
            },
            photometric: self.describe(),
            downsample: (
                width0 as f64 / self.width.max(1) as f64,
                height0 as f64 / self.height.max(1) as f64,
            ),
        }
    }
}

/// The structure of a TIFF: its levels (pages), and what the file is.
struct Structure {
    file: TiffInput,
    levels: Vec<Page>,
    info: SourceInfo,
}

fn decode_error(name: &str, reason: String) -> SourceError {
    SourceError::Decode { name: name.to_string(), reason }
}

impl Structure {
    fn read(input: Box<dyn Input>, name: &str) -> Result<Structure, SourceError> {
        let decode = |reason: String| decode_error(name, reason);
        let (mut file, first) = TiffInput::open(input).map_err(decode)?;
        let ifd0 = file.read_ifd(first).map_err(decode)?;
        let page0 = Page::parse(&mut file, &ifd0, MAX_DESCRIPTION).map_err(decode)?;
        // The main chain: only its directories are read (a few hundred bytes a page), up to MAX_PAGES; a
        // chain that loops or breaks after the first page ends there.
        let mut chain = vec![ifd0.clone()];
        let mut seen = std::collections::HashSet::from([first]);
        let mut next = ifd0.next;
        while next != 0 && chain.len() < MAX_PAGES && seen.insert(next) {
            match file.read_ifd(next) {
                Ok(ifd) => {
                    next = ifd.next;
                    chain.push(ifd);
                }
                Err(_) => break,
            }
        }
        let pages = chain.len();
        let (w0, h0) = (page0.width, page0.height);
        let mut levels = vec![page0.clone()];
        let mut pyramid = None;
        if let Some(entry) = page0.sub_ifds {
            let offsets = file.uint_list(&entry, MAX_SUB_IFDS, SUB_IFDS).map_err(decode)?;
            for offset in offsets {
                // A SubIFD that cannot be read is not a level (level 0 stays readable).
                let Ok(ifd) = file.read_ifd(offset) else { continue };
                let Ok(page) = Page::parse(&mut file, &ifd, MAX_OTHER_DESCRIPTION) else { continue };
                let last = levels.last().expect("level 0");
                if page.smaller_than(last.width, last.height) {
                    levels.push(page);
                }
            }
            if levels.len() > 1 {
                pyramid = Some(PyramidKind::SubIfds);
            }
        }
        let aperio = page0.description.as_deref().is_some_and(|d| d.starts_with("Aperio"));
        let mut other_pages = 0;
        for ifd in &chain[1..] {
            let Ok(page) = Page::parse(&mut file, ifd, MAX_OTHER_DESCRIPTION) else {
                other_pages += 1; // unreadable, so never read
                continue;
            };
            let last = levels.last().expect("level 0");
            let level = pyramid != Some(PyramidKind::SubIfds)
                && !page.is_label_or_macro()
                && page.smaller_than(last.width, last.height)
                && if aperio { page.tiled } else { page.subfile & 1 == 1 && page.subfile & 4 == 0 };
            if level {
                levels.push(page);
                pyramid = Some(if aperio { PyramidKind::Aperio } else { PyramidKind::Pages });
            } else if !(page.is_label_or_macro() || page.subfile & 1 == 1 || aperio) {
                // Not a thumbnail, label, macro or mask image: another image of a stack.
                other_pages += 1;
            }
        }
        let info = SourceInfo {
            format: FileFormat::Tiff,
            levels: levels.iter().map(|p| p.level_info(w0, h0)).collect(),
            pyramid,
            pages,
            other_pages,
            orientation: page0
                .orientation
                .and_then(|o| u16::try_from(o).ok())
                .and_then(Orientation::from_tag)
                .unwrap_or_default(),
            microns_per_pixel: microns_per_pixel(&page0),
            vendor: None,
        };
        Ok(Structure { file, levels, info })
    }
}

/// Micrometres per pixel of a first page: OME-XML PhysicalSizeX/Y (with their units, µm by default), an
/// Aperio "MPP = " field, or the resolution tags in inches (2, the default) or centimetres (3).
fn microns_per_pixel(page: &Page) -> Option<(f64, f64)> {
    let description = page.description.as_deref().unwrap_or("");
    if description.contains("<OME") {
        if let Some(mpp) = ome_physical_size(description) {
            return Some(mpp);
        }
    }
    if description.starts_with("Aperio") {
        let mpp = description.split('|').find_map(|field| {
            let (key, value) = field.split_once('=')?;
            (key.trim() == "MPP").then(|| value.trim().parse::<f64>().ok()).flatten()
        });
        if let Some(mpp) = mpp.filter(|v| v.is_finite() && *v > 0.0) {
            return Some((mpp, mpp));
        }
    }
    let (x, y, unit) = page.resolution;
    let per_unit = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    let (x, y) = (x?, y.or(Some(x?))?);
    (x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0).then(|| (per_unit / x, per_unit / y))
}

/// PhysicalSizeX and PhysicalSizeY (in µm) of the first Pixels element of OME-XML.
fn ome_physical_size(xml: &str) -> Option<(f64, f64)> {
    let start = xml.find("<Pixels ").or_else(|| xml.find(":Pixels "))?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let size = |axis: &str| -> Option<f64> {
        let value: f64 = xml_attribute(element, &format!("PhysicalSize{axis}"))?.trim().parse().ok()?;
        let unit = xml_attribute(element, &format!("PhysicalSize{axis}Unit")).unwrap_or_else(|| "µm".into());
        let scale = match unit.trim() {
            "µm" | "μm" | "um" | "micron" => 1.0,
            "nm" => 1e-3,
            "pm" => 1e-6,
            "Å" => 1e-4,
            "mm" => 1e3,
            "cm" => 1e4,
            "m" => 1e6,
            _ => return None,
        };
        let microns = value * scale;
        (microns.is_finite() && microns > 0.0).then_some(microns)
    };
    let x = size("X")?;
    Some((x, size("Y").unwrap_or(x)))
}

/// The value of attribute `name` in an XML start tag.
fn xml_attribute(element: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = element[from..].find(name) {
        let at = from + at;
        from = at + name.len();
        if !element[..at].ends_with(char::is_whitespace) {
            continue;
        }
        let rest = element[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let rest = rest.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        return Some(value[..value.find(quote)?].to_string());
    }
    None
}

pub(super) fn probe(input: Box<dyn Input>, name: &str) -> Result<SourceInfo, SourceError> {
    Ok(Structure::read(input, name)?.info)
}

pub(super) fn open(
    input: Box<dyn Input>,
    name: &str,
    level: usize,
    out: Channels,
) -> Result<Opened, SourceError> {
    let Structure { file, mut levels, info } = Structure::read(input, name)?;
    if level >= levels.len() {
        return Err(SourceError::NoLevel { name: name.to_string(), level, levels: info.levels_line() });
    }
    let page = levels.swap_remove(level);
    let rows = TiffRows::new(file, page, name, out)?;
    Ok(Opened { width: rows.width, height: rows.height, reader: Reader::Tiff(Box::new(rows)), info })
}

/// What the samples of a chunk are, once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U8,
    U16,
    I16,
    F16,
    F32,
    F64,
}

impl Kind {
    fn bytes(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::U16 | Kind::I16 | Kind::F16 => 2,
            Kind::F32 => 4,
            Kind::F64 => 8,
        }
    }
}

/// How samples become colours.
#[derive(Debug, Clone)]
enum Photometric {
    Gray,
    /// Gray where 0 is white (photometric 0): inverted.
    GrayInverted,
    /// RGB, or YCbCr JPEG (converted to RGB as it is decoded).
    Rgb,
    /// Indices into a colour map of 8-bit RGB.
    Palette(Vec<[u8; 3]>),
}

/// Decoded samples of a chunk.
enum Typed {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    F32(Vec<f32>),
}

/// A decoded chunk: `rows` rows of `stride` pixels of `spp` samples.
struct Decoded {
    data: Typed,
    spp: usize,
    stride: usize,
    rows: usize,
}

/// A TIFF level read one chunk row (a strip, or a row of tiles) at a time.
pub(super) struct TiffRows {
    file: TiffInput,
    width: usize,
    height: usize,
    tiled: bool,
    chunk_width: usize,
    chunk_height: usize,
    /// Chunks across a row of tiles (1 for strips), and in one plane.
    across: usize,
    per_plane: u64,
    /// Planes read of a planar (separate) image: 1 for gray or palette, 3 for RGB; 0 for chunky images.
    planes: usize,
    codec: Codec,
    kind: Kind,
    /// Samples per pixel in a chunk (1 in a plane of a planar image).
    spp: usize,
    photometric: Photometric,
    ycbcr: bool,
    predictor: u64,
    reverse_bits: bool,
    jpeg_tables: Option<Vec<u8>>,
    offsets: Entry,
    counts: Entry,
    out: Channels,
    /// Converted rows of the current chunk row, and the image row they start at.
    rows: Vec<u8>,
    rows_y: usize,
    rows_count: usize,
    raw: Vec<u8>,
    bytes: Vec<u8>,
    scratch: Vec<u8>,
    pixel_row: Vec<u8>,
    chunks_read: u64,
}

impl TiffRows {
    fn new(mut file: TiffInput, page: Page, name: &str, out: Channels) -> Result<TiffRows, SourceError> {
        let decode = |reason: String| decode_error(name, reason);
        let (width, height) = check_size(name, page.width, page.height)?;
        let what = page.describe();
        let unsupported = |what: String, hint: &str| SourceError::Unsupported {
            name: name.to_string(),
            what,
            hint: hint.to_string(),
        };
        let codec = Codec::from_tag(u16::try_from(page.compression).unwrap_or(u16::MAX))
            .map_err(|(what, hint)| unsupported(what, &hint))?;
        let bits = page.bits[0];
        if page.bits.iter().any(|&b| b != bits) {
            return Err(unsupported(
                format!("a TIFF with samples of different sizes ({:?} bits)", page.bits),
                READABLE,
            ));
        }
        let format = page.formats[0];
        let kind = match (format, bits) {
            (1 | 4, 8) => Kind::U8,
            (1 | 4, 16) => Kind::U16,
            (2, 16) => Kind::I16,
            (3, 16) => Kind::F16,
            (3, 32) => Kind::F32,
            (3, 64) => Kind::F64,
            (1 | 4, 1 | 2 | 4) => {
                return Err(unsupported(format!("a {bits}-bit TIFF (samples packed in bytes)"), READABLE))
            }
            (1 | 4, b) => {
                return Err(unsupported(format!("a TIFF of unsigned {b}-bit integer samples"), READABLE))
            }
            (2, b) => return Err(unsupported(format!("a TIFF of signed {b}-bit integer samples"), READABLE)),
            (3, b) => return Err(unsupported(format!("a TIFF of {b}-bit float samples"), READABLE)),
            (f, _) => return Err(unsupported(format!("a TIFF with sample format {f} ({what})"), READABLE)),
        };
        let samples = page.samples as usize;
        let photometric_code = page.photometric.unwrap_or(if samples >= 3 { 2 } else { 1 });
        let a_tiff = format!("a {what} TIFF");
        let photometric = match (photometric_code, samples) {
            (0 | 1, 1 | 2) => {
                if photometric_code == 0 && !matches!(kind, Kind::U8 | Kind::U16) {
                    return Err(unsupported(a_tiff, READABLE));
                }
                if photometric_code == 0 {
                    Photometric::GrayInverted
                } else {
                    Photometric::Gray
                }
            }
            (0 | 1, n) => {
                return Err(unsupported(
                    format!("a gray TIFF of {n} samples per pixel (a multichannel image)"),
                    "save the channel to predict as a gray image, or three channels as RGB",
                ))
            }
            (2, 3 | 4) => Photometric::Rgb,
            (2, n) => {
                return Err(unsupported(
                    format!("an RGB TIFF of {n} samples per pixel"),
                    "keep red, green, blue and at most one alpha channel",
                ))
            }
            (6, 3) if matches!(codec, Codec::Jpeg | Codec::Jpeg2000 { .. }) => Photometric::Rgb,
            (6, _) => {
                return Err(unsupported(
                    format!("a {what} TIFF that is not JPEG-compressed"),
                    "YCbCr is read in JPEG-compressed TIFFs only; convert it to RGB",
                ))
            }
            (3, 1) if kind == Kind::U8 || kind == Kind::U16 => {
                let entry = page.colormap.ok_or_else(|| decode("a palette TIFF has no colour map".into()))?;
                let entries = 1u64 << bits;
                let map = file.uint_list(&entry, 3 * entries, COLOR_MAP).map_err(decode)?;
                if map.len() as u64 != 3 * entries {
                    return Err(decode(format!(
                        "its colour map holds {} values, not {}",
                        map.len(),
                        3 * entries
                    )));
                }
                // Some writers put 8-bit values in the 16-bit map; libtiff's tools take such a map as 8-bit.
                let eight = map.iter().all(|&v| v < 256);
                let level = |v: u64| if eight { v as u8 } else { super::u16_to_u8(v as u16) };
                let n = entries as usize;
                Photometric::Palette(
                    (0..n).map(|i| [level(map[i]), level(map[n + i]), level(map[2 * n + i])]).collect(),
                )
            }
            _ => return Err(unsupported(a_tiff, READABLE)),
        };
        if samples == 0 {
            return Err(decode("it has 0 samples per pixel".into()));
        }
        let planar = page.planar == 2 && samples > 1;
        let planes = if !planar {
            0
        } else if matches!(photometric, Photometric::Rgb) {
            3
        } else {
            1
        };
        // Bio-Formats writes planar JPEG TIFFs tagged YCbCr whose tiles are one-component JPEGs, and reads
        // their planes as red, green and blue; so are they read here.
        if planar && (codec == Codec::WebP || (photometric_code == 6 && codec != Codec::Jpeg)) {
            return Err(unsupported(format!("a planar (one plane per channel) {what} TIFF"), READABLE));
        }
        match (codec, kind) {
            (Codec::Jpeg | Codec::WebP | Codec::Jpeg2000 { .. }, Kind::U8) => {}
            (Codec::Jpeg | Codec::WebP | Codec::Jpeg2000 { .. }, _) => {
                return Err(unsupported(
                    format!("a {} TIFF of {what}", codecs::name(page.compression as u16)),
                    READABLE,
                ))
            }
            _ => {}
        }
        let predictor = match (codec, page.predictor, kind) {
            (Codec::Jpeg | Codec::WebP | Codec::Jpeg2000 { .. }, _, _) | (_, 1, _) => 1,
            (_, 2, Kind::U8 | Kind::U16 | Kind::I16) => 2,
            (_, 3, Kind::F16 | Kind::F32 | Kind::F64) => 3,
            (_, p, _) => return Err(unsupported(
                format!("a TIFF of {what} with predictor {p}"),
                "predictor 2 is read for integer samples and 3 for floats; re-save it without a predictor",
            )),
        };
        let (chunk_width, chunk_height) = (page.chunk_width as usize, page.chunk_height as usize);
        if chunk_width == 0
            || chunk_height == 0
            || chunk_width > super::MAX_WIDTH
            || (!page.tiled && chunk_width != width)
        {
            return Err(decode(format!("its chunks are {chunk_width}x{chunk_height}")));
        }
        let across = if page.tiled { width.div_ceil(chunk_width) } else { 1 };
        let down = height.div_ceil(chunk_height) as u64;
        let per_plane = down * across as u64;
        let total = per_plane * if planar { samples as u64 } else { 1 };
        let (offsets, counts) = match (page.offsets, page.counts) {
            (Some(o), Some(c)) => (o, c),
            _ => {
                return Err(decode(format!(
                    "it has no {} offsets or byte counts",
                    if page.tiled { "tile" } else { "strip" }
                )))
            }
        };
        if offsets.count < total || counts.count < total {
            return Err(decode(format!(
                "it lists {} chunk offsets and {} byte counts where its layout needs {total}",
                offsets.count, counts.count
            )));
        }
        // One row of chunks is decoded at a time: it must fit the limit of a whole decoded image.
        let row_bytes = ((across * chunk_width) as u64)
            .saturating_mul(chunk_height as u64)
            .saturating_mul(samples as u64)
            .saturating_mul(kind.bytes() as u64);
        if row_bytes > WHOLE_IMAGE_LIMIT {
            return Err(SourceError::TooLarge {
                name: name.to_string(),
                width: width as u64,
                height: height as u64,
                reason: format!(
                    "its {} are {chunk_width}x{chunk_height}, and one row of them is {row_bytes} bytes decoded, \
                     beyond the limit of {WHOLE_IMAGE_LIMIT}; re-save it tiled (e.g. 512x512 tiles)",
                    if page.tiled { "tiles" } else { "strips" }
                ),
            });
        }
        let jpeg_tables = match (codec, page.jpeg_tables) {
            (Codec::Jpeg, Some(entry)) => file.bytes(&entry, 1 << 20, JPEG_TABLES).map_err(decode)?,
            _ => None,
        };
        Ok(TiffRows {
            file,
            width,
            height,
            tiled: page.tiled,
            chunk_width,
            chunk_height,
            across,
            per_plane,
            planes,
            codec,
            kind,
            spp: if planar { 1 } else { samples },
            ycbcr: photometric_code == 6 || codec == Codec::Jpeg2000 { ycbcr: true },
            photometric,
            predictor,
            reverse_bits: page.fill_order == 2 && matches!(codec, Codec::None | Codec::Lzw | Codec::PackBits),
            jpeg_tables,
            offsets,
            counts,
            out,
            rows: Vec::new(),
            rows_y: 0,
            rows_count: 0,
            raw: Vec::new(),
            bytes: Vec::new(),
            scratch: Vec::new(),
            pixel_row: Vec::new(),
            chunks_read: 0,
        })
    }

    pub(super) fn chunks_read(&self) -> u64 {
        self.chunks_read
    }

    /// Copies row `y`, converted, into `dst`, decoding its chunk row first if it is not the current one.
    pub(super) fn read_row(
        &mut self,
        y: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError> {
        debug_assert_eq!(out, self.out);
        if y < self.rows_y || y >= self.rows_y + self.rows_count {
            self.load_chunk_row(y / self.chunk_height).map_err(|reason| decode_error(name, reason))?;
        }
        let row_bytes = self.width * self.out.count();
        let offset = (y - self.rows_y) * row_bytes;
        dst.copy_from_slice(&self.rows[offset..offset + row_bytes]);
        Ok(())
    }

    /// Decodes chunk row `chunk_row` into `self.rows`, converted.
    fn load_chunk_row(&mut self, chunk_row: usize) -> Result<(), String> {
        let first = chunk_row * self.chunk_height;
        let count = self.chunk_height.min(self.height - first);
        let oc = self.out.count();
        let row_bytes = self.width * oc;
        self.rows_count = 0;
        self.rows.clear();
        self.rows
            .try_reserve(count * row_bytes)
            .map_err(|_| format!("a chunk of {count} rows does not fit in memory"))?;
        self.rows.resize(count * row_bytes, 0);
        // Strips hold only the image's rows; tiles are whole, past the image's edges too.
        let chunk_rows = if self.tiled { self.chunk_height } else { count };
        let planes = self.planes.max(1);
        let mut locations = Vec::with_capacity(planes);
        for plane in 0..planes {
            let start = plane as u64 * self.per_plane + (chunk_row * self.across) as u64;
            let n = self.across as u64;
            let offsets = self.file.uints(
                &self.offsets,
                start,
                n,
                if self.tiled { TILE_OFFSETS } else { STRIP_OFFSETS },
            )?;
            let counts = self.file.uints(
                &self.counts,
                start,
                n,
                if self.tiled { TILE_BYTE_COUNTS } else { STRIP_BYTE_COUNTS },
            )?;
            locations.push((start, offsets, counts));
        }
        for tx in 0..self.across {
            let x0 = tx * self.chunk_width;
            let width = self.chunk_width.min(self.width - x0);
            let decoded = if self.planes == 0 {
                let (start, offsets, counts) = &locations[0];
                self.decode_chunk(start + tx as u64, offsets[tx], counts[tx], chunk_rows, count, width)?
            } else {
                let mut planes = Vec::with_capacity(self.planes);
                for (start, offsets, counts) in &locations {
                    planes.push(self.decode_chunk(
                        start + tx as u64,
                        offsets[tx],
                        counts[tx],
                        chunk_rows,
                        count,
                        width,
                    )?);
                }
                interleave(planes)?
            };
            for r in 0..count {
                let dst = &mut self.rows[r * row_bytes + x0 * oc..r * row_bytes + (x0 + width) * oc];
                convert_row(&decoded, r, width, &self.photometric, self.out, dst, &mut self.pixel_row);
            }
        }
        self.rows_y = first;
        self.rows_count = count;
        Ok(())
    }

    /// Reads and decodes chunk `index` (`len` bytes at `offset`), which holds `chunk_rows` rows of which
    /// the first `need_rows` are used, and pixels up to `need_width`.
    fn decode_chunk(
        &mut self,
        index: u64,
        offset: u64,
        len: u64,
        chunk_rows: usize,
        need_rows: usize,
        need_width: usize,
    ) -> Result<Decoded, String> {
        if len == 0 {
            return Err(format!(
                "chunk {index} is empty (a sparse file, or one whose writing was cut short)"
            ));
        }
        self.file.read_chunk(offset, len, &mut self.raw, index)?;
        self.chunks_read += 1;
        let max_pixels = self.chunk_width * self.chunk_height.max(chunk_rows);
        let at = |reason: String| format!("chunk {index}: {reason}");
        let check = |stride: usize, rows: usize| -> Result<(), String> {
            if stride < need_width || rows < need_rows {
                return Err(format!(
                    "chunk {index} decodes to {stride}x{rows} pixels, where its place in the image needs {need_width}x{need_rows}"
                ));
            }
            Ok(())
        };
        match self.codec {
            Codec::Jpeg => {
                let chunk = jpeg::decode(
                    self.jpeg_tables.as_deref(),
                    &self.raw,
                    self.ycbcr,
                    max_pixels,
                    &mut self.scratch,
                )
                .map_err(at)?;
                check(chunk.width, chunk.height)?;
                if self.planes == 0
                    && chunk.components != self.spp.min(3)
                    && !(self.spp == 4 && chunk.components == 3)
                {
                    return Err(at(format!(
                        "it has {} JPEG components for {} samples per pixel",
                        chunk.components, self.spp
                    )));
                }
                Ok(Decoded {
                    data: Typed::U8(chunk.pixels),
                    spp: chunk.components,
                    stride: chunk.width,
                    rows: chunk.height,
                })
            }
            Codec::Jpeg2000 { .. } => {
                let chunk = jpeg2000::decode(&self.raw, self.ycbcr, max_pixels).map_err(at)?;
                check(chunk.width, chunk.height)?;
                let want = if self.planes == 0 { self.spp } else { 1 };
                if chunk.components != want && !(want == 4 && chunk.components == 3) {
                    return Err(at(format!(
                        "it has {} JPEG 2000 components for {want} samples per pixel",
                        chunk.components
                    )));
                }
                Ok(Decoded {
                    data: Typed::U8(chunk.pixels),
                    spp: chunk.components,
                    stride: chunk.width,
                    rows: chunk.height,
                })
            }
            Codec::WebP => {
                let (pixels, w, h, spp) = codecs::webp(&self.raw, max_pixels).map_err(at)?;
                check(w, h)?;
                Ok(Decoded { data: Typed::U8(pixels), spp, stride: w, rows: h })
            }
            codec => {
                if self.reverse_bits {
                    self.raw.iter_mut().for_each(|b| *b = b.reverse_bits());
                }
                let stride = self.chunk_width;
                let values_per_row = stride * self.spp;
                let row_bytes = values_per_row * self.kind.bytes();
                let got = codecs::decompress(codec, &self.raw, row_bytes * chunk_rows, &mut self.bytes)
                    .map_err(at)?;
                let rows = got / row_bytes;
                if rows < need_rows {
                    return Err(format!(
                        "chunk {index} decodes to {got} bytes, fewer than the {} its {need_rows} rows need",
                        row_bytes * need_rows
                    ));
                }
                let bytes = &mut self.bytes[..rows * row_bytes];
                let little = self.file.little;
                let data = match self.kind {
                    Kind::U8 => {
                        let mut v = bytes.to_vec();
                        if self.predictor == 2 {
                            codecs::undo_horizontal(&mut v, values_per_row, self.spp, u8::wrapping_add);
                        }
                        Typed::U8(v)
                    }
                    Kind::U16 | Kind::I16 => {
                        let mut v: Vec<u16> = bytes
                            .chunks_exact(2)
                            .map(|b| {
                                if little {
                                    u16::from_le_bytes([b[0], b[1]])
                                } else {
                                    u16::from_be_bytes([b[0], b[1]])
                                }
                            })
                            .collect();
                        if self.predictor == 2 {
                            codecs::undo_horizontal(&mut v, values_per_row, self.spp, u16::wrapping_add);
                        }
                        if self.kind == Kind::I16 {
                            Typed::I16(v.into_iter().map(|x| x as i16).collect())
                        } else {
                            Typed::U16(v)
                        }
                    }
                    Kind::F16 | Kind::F32 | Kind::F64 => {
                        let size = self.kind.bytes();
                        // Floating-point prediction leaves each value's bytes big-endian.
                        let big = if self.predictor == 3 {
                            for row in bytes.chunks_exact_mut(row_bytes) {
                                codecs::undo_floating_point(row, values_per_row, size, &mut self.scratch);
                            }
                            true
                        } else {
                            !little
                        };
                        let value = |b: &[u8]| -> f32 {
                            match size {
                                2 => {
                                    let v = [b[0], b[1]];
                                    codecs::f16_to_f32(if big {
                                        u16::from_be_bytes(v)
                                    } else {
                                        u16::from_le_bytes(v)
                                    })
                                }
                                4 => {
                                    let v = [b[0], b[1], b[2], b[3]];
                                    if big {
                                        f32::from_be_bytes(v)
                                    } else {
                                        f32::from_le_bytes(v)
                                    }
                                }
                                _ => {
                                    let v: [u8; 8] = b.try_into().expect("8 bytes");
                                    (if big { f64::from_be_bytes(v) } else { f64::from_le_bytes(v) }) as f32
                                }
                            }
                        };
                        Typed::F32(bytes.chunks_exact(size).map(value).collect())
                    }
                };
                Ok(Decoded { data, spp: self.spp, stride, rows })
            }
        }
    }
}

/// The planes of a planar chunk (one sample per pixel each) as one chunk of interleaved samples.
fn interleave(planes: Vec<Decoded>) -> Result<Decoded, String> {
    fn weave<T: Copy>(planes: &[&[T]], len: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(len * planes.len());
        for i in 0..len {
            out.extend(planes.iter().map(|p| p[i]));
        }
        out
    }
    let stride = planes.iter().map(|p| p.stride).min().unwrap_or(0);
    let rows = planes.iter().map(|p| p.rows).min().unwrap_or(0);
    if planes.iter().any(|p| p.stride != stride || p.spp != 1) {
        return Err("the planes of a planar image decode to chunks of different sizes".into());
    }
    let len = stride * rows;
    let n = planes.len();
    macro_rules! weave_as {
        ($variant:ident) => {{
            let slices: Option<Vec<_>> = planes
                .iter()
                .map(|p| match &p.data {
                    Typed::$variant(v) => Some(&v[..len]),
                    _ => None,
                })
                .collect();
            Typed::$variant(weave(&slices.ok_or("the planes of a planar image differ in kind")?, len))
        }};
    }
    let data = match planes[0].data {
        Typed::U8(_) => weave_as!(U8),
        Typed::U16(_) => weave_as!(U16),
        Typed::I16(_) => weave_as!(I16),
        Typed::F32(_) => weave_as!(F32),
    };
    Ok(Decoded { data, spp: n, stride, rows })
}

/// Converts row `r` of a decoded chunk, its first `width` pixels, into `dst`.
fn convert_row(
    decoded: &Decoded,
    r: usize,
    width: usize,
    photometric: &Photometric,
    out: Channels,
    dst: &mut [u8],
    scratch: &mut Vec<u8>,
) {
    let spp = decoded.spp;
    let range = r * decoded.stride * spp..(r * decoded.stride + width) * spp;
    match (photometric, &decoded.data) {
        (Photometric::Palette(map), data) => {
            scratch.clear();
            let index = |i: usize| match data {
                Typed::U8(v) => v[i] as usize,
                Typed::U16(v) => v[i] as usize,
                _ => 0,
            };
            for i in range.step_by(spp) {
                scratch.extend_from_slice(map.get(index(i)).unwrap_or(&[0, 0, 0]));
            }
            convert(Samples::U8(scratch), 3, out, dst);
        }
        (Photometric::GrayInverted, Typed::U8(v)) => {
            scratch.clear();
            scratch.extend(v[range].iter().map(|x| 255 - x));
            convert(Samples::U8(scratch), spp, out, dst);
        }
        (Photometric::GrayInverted, Typed::U16(v)) => {
            let inverted: Vec<u16> = v[range].iter().map(|x| 65_535 - x).collect();
            convert(Samples::U16(&inverted), spp, out, dst);
        }
        (_, Typed::U8(v)) => convert(Samples::U8(&v[range]), spp, out, dst),
        (_, Typed::U16(v)) => convert(Samples::U16(&v[range]), spp, out, dst),
        (_, Typed::I16(v)) => convert(Samples::I16(&v[range]), spp, out, dst),
        (_, Typed::F32(v)) => convert(Samples::F32(&v[range]), spp, out, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ome_and_aperio_and_resolution_tags_give_microns_per_pixel() {
        let xml = r#"<?xml version="1.0"?><OME xmlns="x"><Image ID="Image:0"><Pixels DimensionOrder="XYCZT"
            ID="Pixels:0" PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY='0.5' SizeX="96">"#;
        assert_eq!(ome_physical_size(xml), Some((0.25, 0.5)));
        assert_eq!(ome_physical_size(r#"<OME><Pixels SizeX="3"></Pixels></OME>"#), None);
        assert_eq!(ome_physical_size(r#"<OME><Pixels PhysicalSizeX="1" PhysicalSizeXUnit="pixel">"#), None);
        assert_eq!(
            xml_attribute(r#"<Pixels APhysicalSizeX="9" PhysicalSizeX = "2""#, "PhysicalSizeX"),
            Some("2".into())
        );
        let mut page = Page {
            width: 10,
            height: 10,
            bits: vec![8],
            samples: 1,
            formats: vec![1],
            photometric: Some(1),
            compression: 1,
            predictor: 1,
            planar: 1,
            fill_order: 1,
            tiled: false,
            chunk_width: 10,
            chunk_height: 10,
            offsets: None,
            counts: None,
            subsampling: (2, 2),
            subfile: 0,
            extra_samples: 0,
            colormap: None,
            jpeg_tables: None,
            orientation: None,
            resolution: (Some(40_000.0), Some(20_000.0), 3),
            sub_ifds: None,
            description: Some(
                "Aperio Image Library v12\r\n96x80 (32x32) JPEG/RGB|AppMag = 40|MPP = 0.4990|X = 1".into(),
            ),
        };
        assert_eq!(microns_per_pixel(&page), Some((0.499, 0.499)));
        page.description = None;
        assert_eq!(microns_per_pixel(&page), Some((0.25, 0.5)), "centimetres");
        page.resolution = (Some(254.0), None, 2);
        assert_eq!(microns_per_pixel(&page), Some((100.0, 100.0)), "inches, y as x");
        page.resolution = (Some(1.0), Some(1.0), 1);
        assert_eq!(microns_per_pixel(&page), None, "no unit");
    }
}
