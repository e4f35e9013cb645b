//! One image file directory made into a validated description: [`Page`] (what the directory's tags say
//! the image is and where its chunks are) and [`Layout`] (how its chunks decode and what their samples
//! become), refusing, with the reason and what to do, any layout that is not read.

use super::codecs::{self, Codec};
use super::ifd::*;
use crate::source::error::{SourceError, READABLE};
use crate::source::reader::LevelInfo;
use crate::source::samples::u16_to_u8;

/// The longest image description read from the first page (OME-XML of a large plate runs to megabytes);
/// other pages' descriptions are read up to 64 KiB (enough to tell a label from a level).
pub(super) const MAX_DESCRIPTION: u64 = 16 << 20;
pub(super) const MAX_OTHER_DESCRIPTION: u64 = 64 << 10;
/// The most SubIFDs read.
pub(super) const MAX_SUB_IFDS: u64 = 64;

/// One image directory, parsed: what the image is and where its chunks are.
#[derive(Debug, Clone)]
pub(super) struct Page {
    pub(super) width: u64,
    pub(super) height: u64,
    pub(super) bits: Vec<u64>,
    pub(super) samples: u64,
    pub(super) formats: Vec<u64>,
    pub(super) photometric: Option<u64>,
    pub(super) compression: u64,
    pub(super) predictor: u64,
    pub(super) planar: u64,
    pub(super) fill_order: u64,
    pub(super) tiled: bool,
    pub(super) chunk_width: u64,
    pub(super) chunk_height: u64,
    pub(super) offsets: Option<Entry>,
    pub(super) counts: Option<Entry>,
    pub(super) subsampling: (u64, u64),
    pub(super) subfile: u64,
    pub(super) extra_samples: u64,
    pub(super) colormap: Option<Entry>,
    pub(super) jpeg_tables: Option<Entry>,
    pub(super) orientation: Option<u64>,
    pub(super) resolution: (Option<f64>, Option<f64>, u64),
    pub(super) sub_ifds: Option<Entry>,
    pub(super) description: Option<String>,
}

impl Page {
    pub(super) fn parse(file: &mut TiffInput, ifd: &Ifd, max_description: u64) -> Result<Page, String> {
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

    pub(super) fn is_label_or_macro(&self) -> bool {
        self.description.as_deref().is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("label") || d.contains("macro")
        })
    }

    /// Whether this page can be the level below one of `width` x `height`.
    pub(super) fn smaller_than(&self, width: u64, height: u64) -> bool {
        self.width > 0
            && self.height > 0
            && self.width <= width
            && self.height <= height
            && (self.width < width || self.height < height)
    }

    /// What the samples are, in words, e.g. "8-bit RGB" or "YCbCr 4:2:0 JPEG".
    pub(super) fn describe(&self) -> String {
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

    pub(super) fn level_info(&self, width0: u64, height0: u64) -> LevelInfo {
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

/// What the samples of a chunk are, once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    U8,
    U16,
    I16,
    F16,
    F32,
    F64,
}

impl Kind {
    pub(super) fn bytes(self) -> usize {
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
pub(super) enum Photometric {
    Gray,
    /// Gray where 0 is white (photometric 0): inverted.
    GrayInverted,
    /// RGB, or YCbCr JPEG (converted to RGB as it is decoded).
    Rgb,
    /// Indices into a colour map of 8-bit RGB.
    Palette(Vec<[u8; 3]>),
}

/// How the chunks of a page decode and what their samples become: the page, checked.
pub(super) struct Layout {
    pub codec: Codec,
    pub kind: Kind,
    pub samples: usize,
    /// One plane per sample (PlanarConfiguration 2) with more than one sample.
    pub planar: bool,
    /// Planes read of a planar (separate) image: 1 for gray or palette, 3 for RGB; 0 for chunky images.
    pub planes: usize,
    pub photometric: Photometric,
    /// YCbCr (photometric 6), converted to RGB as its JPEG chunks decode.
    pub ycbcr: bool,
    pub predictor: u64,
}

impl Page {
    /// The layout of this page's chunks, or why it is not read (`file` is read for a colour map).
    pub(super) fn layout(&self, file: &mut TiffInput, name: &str) -> Result<Layout, SourceError> {
        let page = self;
        let decode = |reason: String| SourceError::Decode { name: name.to_string(), reason };
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
                let level = |v: u64| if eight { v as u8 } else { u16_to_u8(v as u16) };
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
        Ok(Layout {
            codec,
            kind,
            samples,
            planar,
            planes,
            photometric,
            ycbcr: photometric_code == 6 || codec == Codec::Jpeg2000 { ycbcr: true },
            predictor,
        })
    }
}
