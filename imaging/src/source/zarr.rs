//! OME-Zarr images (a directory): NGFF 0.4 (Zarr v2, `.zattrs` holding `multiscales`) and NGFF 0.5 (Zarr
//! v3, `zarr.json` holding `attributes.ome.multiscales`), read one row of chunks at a time through the
//! `zarrs` crate (codecs blosc, gzip, zstd, crc32c; v3 sharding).
//!
//! The axes come from the multiscales metadata: one `y` and one `x`, at most one channel axis (`c`, or
//! type `channel`) of 1 (gray), 3 (RGB) or 4 (RGBA, alpha dropped) channels, any other axis (`t`, `z`) of
//! size 1, in whatever order the metadata gives. The samples (uint8, uint16, int16, float32) are converted
//! as every other reader converts them. Level N is `datasets[N]`; its `scale` transform gives the
//! downsample and, when the y and x axes have a length unit, the micrometres per pixel.
//!
//! A chunk (or shard) that is absent from the store is the array's fill value, as the Zarr specification
//! says (v2 and v3): zarr-python leaves out chunks that hold only the fill value (`write_empty_chunks`
//! false), so sparse stores are common.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use zarrs::array::{Array, DataType};
use zarrs::filesystem::FilesystemStore;

use super::error::SourceError;
use super::limits::{check_size, zeroed, WHOLE_IMAGE_LIMIT};
use super::reader::{
    Access, Descriptor, FileFormat, LevelInfo, LevelReader, Opened, PyramidKind, SourceInfo,
};
use super::samples::{convert, f32_to_u8, i16_to_u8, u16_to_u8, Channels, Samples};
use crate::exif::Orientation;

pub(crate) const FORMAT: Descriptor = Descriptor {
    id: "ome-zarr",
    name: "OME-Zarr (zarrs)",
    extensions: &[("zarr", "an OME-Zarr image")],
    random_access: true,
    levels: true,
    vendor_container: false,
    access: Access::Folder { open, probe },
};

/// Whether `dir` holds an OME-Zarr image: Zarr v3 `zarr.json` or Zarr v2 `.zattrs` with multiscales.
pub fn looks_like_ome_zarr_store(dir: &Path) -> bool {
    dir.is_dir() && read_multiscales(dir, &dir.display().to_string()).is_ok()
}

fn error(name: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Zarr { name: name.to_string(), reason: one_line(&reason.into()) }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unsupported(name: &str, what: String) -> SourceError {
    SourceError::Unsupported {
        name: name.to_string(),
        what,
        hint: "OME-Zarr images read have axes y and x, at most one channel axis of 1, 3 or 4 channels, any \
               other axis of size 1, and samples of uint8, uint16, int16 or float32"
            .into(),
    }
}

/// The Zarr format (2 or 3) and the first `multiscales` entry of the OME-Zarr image at `dir`, as stored.
pub fn multiscales_metadata(dir: &Path) -> Result<(u8, Value), SourceError> {
    read_multiscales(dir, &dir.display().to_string())
}

/// The zarr version and the first multiscales entry of the image at `dir`.
fn read_multiscales(dir: &Path, name: &str) -> Result<(u8, Value), SourceError> {
    let read_json = |file: &str| -> Result<Option<Value>, SourceError> {
        match std::fs::read(dir.join(file)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| error(name, format!("its {file} is not valid JSON: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SourceError::Open { name: name.to_string(), source }),
        }
    };
    let not_ome = || error(name, "a folder without OME-Zarr multiscales metadata (zarr.json or .zattrs)");
    let (version, multiscales) = if let Some(root) = read_json("zarr.json")? {
        let attributes = &root["attributes"];
        let ms = attributes["ome"]["multiscales"].clone();
        // Some early 0.5 writers kept multiscales at the top of the attributes.
        let ms = if ms.is_null() { attributes["multiscales"].clone() } else { ms };
        (3, ms)
    } else if let Some(attrs) = read_json(".zattrs")? {
        (2, attrs["multiscales"].clone())
    } else {
        return Err(not_ome());
    };
    let list = multiscales.as_array().ok_or_else(not_ome)?;
    let first = list.first().cloned().ok_or_else(|| {
        error(name, "its multiscales metadata lists no images (`multiscales` is an empty list)")
    })?;
    Ok((version, first))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    U8,
    U16,
    I16,
    F32,
}

impl Dtype {
    fn bytes(self) -> u64 {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// One axis of the multiscales metadata.
struct Axis {
    name: String,
    kind: String,
    unit: Option<String>,
}

fn axes_of(multiscale: &Value, name: &str) -> Result<Vec<Axis>, SourceError> {
    let axes = multiscale["axes"]
        .as_array()
        .ok_or_else(|| error(name, "its multiscales metadata has no axes (NGFF 0.4 or later is read)"))?;
    axes.iter()
        .map(|a| match a {
            Value::String(s) => Ok(Axis { name: s.clone(), kind: String::new(), unit: None }),
            Value::Object(o) => Ok(Axis {
                name: o.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                kind: o.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
                unit: o.get("unit").and_then(Value::as_str).map(str::to_string),
            }),
            _ => Err(error(name, "an axis of its multiscales metadata is neither a name nor an object")),
        })
        .collect()
}

/// The `scale` of a list of coordinate transformations, if any.
fn scale_of(transforms: &Value) -> Option<Vec<f64>> {
    transforms.as_array()?.iter().find(|t| t["type"] == "scale")?["scale"]
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

/// Micrometres in one `unit` (the NGFF length units), if it is a length.
fn microns_per_unit(unit: &str) -> Option<f64> {
    Some(match unit {
        "micrometer" => 1.0,
        "nanometer" => 1e-3,
        "picometer" => 1e-6,
        "angstrom" => 1e-4,
        "millimeter" => 1e3,
        "centimeter" => 1e4,
        "decimeter" => 1e5,
        "meter" => 1e6,
        "inch" => 25_400.0,
        "foot" => 304_800.0,
        _ => return None,
    })
}

/// Where each axis is in an array of the image.
#[derive(Debug, Clone, Copy)]
struct Layout {
    ndim: usize,
    y: usize,
    x: usize,
    c: Option<usize>,
}

/// One level's array and what it is.
struct Level {
    array: Array<FilesystemStore>,
    path: String,
    width: usize,
    height: usize,
    channels: usize,
    dtype: Dtype,
    chunk: (usize, usize),
    compression: String,
    scale: Option<Vec<f64>>,
}

fn open_array(
    store: &Arc<FilesystemStore>,
    dir: &Path,
    multiscale: &Value,
    layout: Layout,
    index: usize,
    name: &str,
) -> Result<Level, SourceError> {
    let dataset = &multiscale["datasets"][index];
    let path = dataset["path"]
        .as_str()
        .ok_or_else(|| error(name, format!("dataset {index} of its multiscales metadata has no path")))?
        .to_string();
    if !inside_store(&path) {
        return Err(error(
            name,
            format!(
                "dataset {index}'s path `{path}` leaves the store; NGFF dataset paths are relative paths \
                 inside the image's folder"
            ),
        ));
    }
    let key = path.trim_matches('/');
    check_array_metadata(&dir.join(key), &path, name)?;
    let array = Array::open(store.clone(), &format!("/{key}")).map_err(|e| {
        error(name, format!("its array {path} cannot be opened: {}", open_error(&e.to_string())))
    })?;
    let shape = array.shape().to_vec();
    if shape.contains(&0) {
        return Err(error(name, format!("its array {path} is empty (shape {shape:?})")));
    }
    if shape.len() != layout.ndim {
        return Err(error(
            name,
            format!(
                "its array {path} has {} dimensions but the metadata names {} axes",
                shape.len(),
                layout.ndim
            ),
        ));
    }
    for (axis, &size) in shape.iter().enumerate() {
        if axis != layout.x && axis != layout.y && Some(axis) != layout.c && size != 1 {
            return Err(unsupported(
                name,
                format!("an image whose axis {axis} has size {size} (array {path})"),
            ));
        }
    }
    let channels = layout.c.map_or(1, |c| shape[c]) as usize;
    if ![1, 3, 4].contains(&channels) {
        return Err(unsupported(name, format!("an image of {channels} channels")));
    }
    let dtype = match array.data_type() {
        DataType::UInt8 => Dtype::U8,
        DataType::UInt16 => Dtype::U16,
        DataType::Int16 => Dtype::I16,
        DataType::Float32 => Dtype::F32,
        other => return Err(unsupported(name, format!("an array of {other}"))),
    };
    let (width, height) = check_size(name, shape[layout.x], shape[layout.y])?;
    let zeros = vec![0; layout.ndim];
    let chunk = array.chunk_shape(&zeros).map_err(|e| error(name, format!("array {path}: {e}")))?;
    check_decode_unit(&array, &chunk, dtype, &path, name, (width, height))?;
    let chunk = (chunk[layout.x].get() as usize, chunk[layout.y].get() as usize);
    Ok(Level {
        compression: compression_of(&array),
        array,
        path,
        width,
        height,
        channels,
        dtype,
        chunk,
        scale: scale_of(&dataset["coordinateTransformations"]),
    })
}

/// The most bytes one chunk (or one inner chunk of a shard), decoded, may take: what the store declares
/// is checked against it before anything is read, so a small store cannot ask for gigabytes.
const CHUNK_BUDGET: u64 = 256 << 20;

/// Checks the decoded size of the unit the codecs decode at once (a chunk, or a shard's inner chunk; a
/// shard itself is read inner chunk by inner chunk) against [`CHUNK_BUDGET`].
fn check_decode_unit(
    array: &Array<FilesystemStore>,
    chunk: &[std::num::NonZeroU64],
    dtype: Dtype,
    path: &str,
    name: &str,
    (width, height): (usize, usize),
) -> Result<(), SourceError> {
    let json = serde_json::to_value(array.metadata()).unwrap_or(Value::Null);
    let sharding =
        json["codecs"].as_array().and_then(|c| c.first()).filter(|c| c["name"] == "sharding_indexed");
    let inner: Option<Vec<u64>> = sharding.and_then(|c| {
        c["configuration"]["chunk_shape"].as_array().map(|v| v.iter().filter_map(Value::as_u64).collect())
    });
    let (shape, what): (Vec<u64>, &str) = match inner.clone() {
        Some(inner) => (inner, "inner chunks"),
        None => (chunk.iter().map(|d| d.get()).collect(), "chunks"),
    };
    let bytes = shape.iter().fold(dtype.bytes(), |acc, &d| acc.saturating_mul(d));
    // A shard's index (16 bytes per inner chunk) is read whole.
    if let Some(inner) = inner.as_ref().filter(|inner| inner.len() == chunk.len()) {
        let count =
            chunk.iter().zip(inner).fold(1u64, |acc, (s, &i)| acc.saturating_mul(s.get().div_ceil(i.max(1))));
        let index = count.saturating_mul(16);
        if index > CHUNK_BUDGET {
            return Err(SourceError::TooLarge {
                name: name.to_string(),
                width: width as u64,
                height: height as u64,
                reason: format!(
                    "its array {path} has shards of {count} inner chunks, whose index is {index} bytes, over \
                     the budget of {CHUNK_BUDGET} bytes; rewrite it with smaller shards"
                ),
            });
        }
    }
    if bytes > CHUNK_BUDGET {
        return Err(SourceError::TooLarge {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
            reason: format!(
                "its array {path} has {what} of shape {shape:?}, {bytes} bytes each decoded, over the \
                 budget of {CHUNK_BUDGET} bytes per chunk; rewrite it with smaller chunks (e.g. 1x512x512)"
            ),
        });
    }
    Ok(())
}

/// Whether a dataset path stays inside the store: relative, with no `..` (nor `.`, empty or backslash)
/// component.
fn inside_store(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    !path.is_empty()
        && !path.contains('\\')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// What the array metadata in `dir` holds that this reader does not read, said before `zarrs` would say it
/// in its own terms: chunks in Fortran order (v2 `order: "F"`) or a v3 `transpose` codec.
fn check_array_metadata(dir: &Path, path: &str, name: &str) -> Result<(), SourceError> {
    let read = |file: &str| {
        std::fs::read(dir.join(file)).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let rewrite =
        "rewrite the array with its chunks in C order (zarr-python: `order=\"C\"`, no transpose codec)";
    if let Some(meta) = read(".zarray") {
        if meta["order"] == "F" {
            return Err(error(
                name,
                format!("its array {path} stores its chunks in Fortran order (order \"F\"), which is not read; {rewrite}"),
            ));
        }
    }
    if let Some(meta) = read("zarr.json") {
        fn has_transpose(codecs: &Value) -> bool {
            codecs.as_array().is_some_and(|list| {
                list.iter().any(|c| c["name"] == "transpose" || has_transpose(&c["configuration"]["codecs"]))
            })
        }
        if has_transpose(&meta["codecs"]) {
            return Err(error(
                name,
                format!("its array {path} has a transpose codec (its chunks' axes are permuted), which is not read; {rewrite}"),
            ));
        }
    }
    Ok(())
}

/// A `zarrs` metadata error in words a user can act on: serde's internals (e.g. "data did not match any
/// variant of untagged enum FillValueMetadataV2Type") become what the field is.
fn open_error(text: &str) -> String {
    if text.contains("untagged enum FillValue") || text.to_lowercase().contains("fill value") {
        return "its fill_value does not fit its data type (a number for integer and float arrays, or \"NaN\", \
                \"Infinity\", \"-Infinity\" for floats)"
            .into();
    }
    if let Some(at) = text.find("untagged enum") {
        return format!(
            "its metadata is not valid Zarr array metadata ({})",
            text[..at].trim_end_matches([' ', ':'])
        );
    }
    text.to_string()
}

/// The codecs of an array, e.g. "Zarr v2 blosc" or "Zarr v3 sharding_indexed(bytes, zstd)".
fn compression_of(array: &Array<FilesystemStore>) -> String {
    let json = serde_json::to_value(array.metadata()).unwrap_or(Value::Null);
    fn names(codecs: &Value) -> String {
        codecs
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|codec| {
                        let name = codec["name"].as_str().unwrap_or("?").to_string();
                        match codec["configuration"]["codecs"] {
                            Value::Array(_) => {
                                format!("{name}({})", names(&codec["configuration"]["codecs"]))
                            }
                            _ => name,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }
    if json["zarr_format"] == 2 {
        match json["compressor"]["id"].as_str() {
            Some(id) => format!("Zarr v2 {id}"),
            None => "Zarr v2 uncompressed".into(),
        }
    } else {
        format!("Zarr v3 {}", names(&json["codecs"]))
    }
}

fn photometric(channels: usize, dtype: Dtype) -> String {
    let bits = match dtype {
        Dtype::U8 => "8-bit",
        Dtype::U16 => "16-bit",
        Dtype::I16 => "signed 16-bit",
        Dtype::F32 => "float32",
    };
    let colour = match channels {
        1 => "gray",
        3 => "RGB",
        _ => "RGBA",
    };
    format!("{bits} {colour}")
}

/// Everything read from the metadata: the layout, every level, level 0's micrometres per pixel.
struct Image {
    layout: Layout,
    multiscale: Value,
    store: Arc<FilesystemStore>,
    info: SourceInfo,
}

fn read_image(dir: &Path, name: &str) -> Result<Image, SourceError> {
    let (_version, multiscale) = read_multiscales(dir, name)?;
    let axes = axes_of(&multiscale, name)?;
    let find = |pred: &dyn Fn(&Axis) -> bool| -> Result<Option<usize>, SourceError> {
        let found: Vec<usize> = axes.iter().enumerate().filter(|(_, a)| pred(a)).map(|(i, _)| i).collect();
        match found.as_slice() {
            [] => Ok(None),
            [i] => Ok(Some(*i)),
            _ => Err(unsupported(name, format!("an image with {} axes of one kind", found.len()))),
        }
    };
    let axis_names = axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(",");
    let y = find(&|a| a.name == "y")?;
    let x = find(&|a| a.name == "x")?;
    let c = find(&|a| a.name == "c" || a.kind == "channel")?;
    let (Some(y), Some(x)) = (y, x) else {
        return Err(unsupported(name, format!("an image with axes {axis_names} (no y or no x)")));
    };
    let layout = Layout { ndim: axes.len(), y, x, c };
    let datasets = multiscale["datasets"].as_array().map_or(0, Vec::len);
    if datasets == 0 {
        return Err(error(name, "its multiscales metadata lists no datasets"));
    }
    let store = Arc::new(
        FilesystemStore::new(dir).map_err(|e| error(name, format!("its store cannot be opened: {e}")))?,
    );
    // A scale applying to every level (after each dataset's own).
    let global = scale_of(&multiscale["coordinateTransformations"]);
    let mut levels = Vec::with_capacity(datasets);
    let mut scales = Vec::with_capacity(datasets);
    for index in 0..datasets {
        let level = open_array(&store, dir, &multiscale, layout, index, name)?;
        let scale = level.scale.as_ref().filter(|s| s.len() == layout.ndim).map(|s| {
            let g = |axis: usize| global.as_ref().filter(|g| g.len() == layout.ndim).map_or(1.0, |g| g[axis]);
            (s[x] * g(x), s[y] * g(y))
        });
        scales.push(scale);
        levels.push(LevelInfo {
            width: level.width,
            height: level.height,
            tile: Some(level.chunk),
            rows_per_strip: None,
            compression: level.compression.clone(),
            photometric: photometric(level.channels, level.dtype),
            downsample: (1.0, 1.0),
        });
    }
    let (w0, h0) = (levels[0].width as f64, levels[0].height as f64);
    let s0 = scales[0].filter(|(sx, sy)| *sx > 0.0 && *sy > 0.0);
    for (level, scale) in levels.iter_mut().zip(&scales) {
        level.downsample = match (s0, scale) {
            (Some((x0, y0)), Some((sx, sy))) if *sx > 0.0 && *sy > 0.0 => (sx / x0, sy / y0),
            _ => (w0 / level.width as f64, h0 / level.height as f64),
        };
    }
    let unit = |axis: usize| axes[axis].unit.as_deref().and_then(microns_per_unit);
    let microns_per_pixel = match (s0, unit(x), unit(y)) {
        (Some((sx, sy)), Some(ux), Some(uy)) => Some((sx * ux, sy * uy)),
        _ => None,
    };
    let info = SourceInfo {
        format: FileFormat::of(&FORMAT),
        pyramid: (levels.len() > 1).then_some(PyramidKind::ZarrDatasets),
        pages: 1,
        other_pages: 0,
        orientation: Orientation::Normal,
        microns_per_pixel,
        levels,
        vendor: None,
    };
    Ok(Image { layout, multiscale, store, info })
}

fn probe(dir: &Path, name: &str) -> Result<SourceInfo, SourceError> {
    Ok(read_image(dir, name)?.info)
}

fn open(dir: &Path, name: &str, level: usize) -> Result<Opened, SourceError> {
    let image = read_image(dir, name)?;
    if level >= image.info.levels.len() {
        return Err(SourceError::NoLevel { name: name.to_string(), level, levels: image.info.levels_line() });
    }
    let opened = open_array(&image.store, dir, &image.multiscale, image.layout, level, name)?;
    let (width, height) = (opened.width, opened.height);
    let band_bytes =
        (opened.chunk.1 as u64).saturating_mul(width as u64).saturating_mul(opened.channels as u64);
    if band_bytes > WHOLE_IMAGE_LIMIT {
        return Err(SourceError::TooLarge {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
            reason: format!(
                "one row of its chunks ({} rows) is {band_bytes} bytes, over the limit of {WHOLE_IMAGE_LIMIT}",
                opened.chunk.1
            ),
        });
    }
    let rows =
        ZarrRows { layout: image.layout, level: opened, band: Vec::new(), band_row: None, chunks_read: 0 };
    Ok(Opened { width, height, reader: Box::new(rows), info: image.info })
}

/// One level read one row of chunks at a time.
struct ZarrRows {
    layout: Layout,
    level: Level,
    /// The rows of the chunk row `band_row`, 8-bit, `channels` samples per pixel.
    band: Vec<u8>,
    band_row: Option<u64>,
    chunks_read: u64,
}

impl LevelReader for ZarrRows {
    fn read_rows(
        &mut self,
        first: usize,
        out: Channels,
        dst: &mut [u8],
        name: &str,
    ) -> Result<(), SourceError> {
        for (i, dst) in dst.chunks_exact_mut(self.level.width * out.count()).enumerate() {
            self.read_row(first + i, out, dst, name)?;
        }
        Ok(())
    }

    fn chunks_read(&self) -> u64 {
        self.chunks_read
    }
}

impl ZarrRows {
    fn read_row(&mut self, y: usize, out: Channels, dst: &mut [u8], name: &str) -> Result<(), SourceError> {
        let chunk_h = self.level.chunk.1;
        let row = (y / chunk_h) as u64;
        if self.band_row != Some(row) {
            self.band_row = None;
            self.load(row, name)?;
            self.band_row = Some(row);
        }
        let (width, channels) = (self.level.width, self.level.channels);
        let start = (y - row as usize * chunk_h) * width * channels;
        convert(Samples::U8(&self.band[start..start + width * channels]), channels, out, dst);
        Ok(())
    }

    /// Decodes every chunk of chunk row `row` into `band`.
    fn load(&mut self, row: u64, name: &str) -> Result<(), SourceError> {
        let Layout { ndim, y, x, c } = self.layout;
        let level = &self.level;
        let (width, height, channels) = (level.width, level.height, level.channels);
        let chunk_h = level.chunk.1;
        let rows = chunk_h.min(height - row as usize * chunk_h);
        let len = rows * width * channels;
        if self.band.len() != len {
            self.band = zeroed(len, name, width, height)?;
        }
        let grid = level.array.chunk_grid_shape().clone();
        let c_chunks = c.map_or(1, |c| grid[c]);
        for cc in 0..c_chunks {
            for cx in 0..grid[x] {
                let mut indices = vec![0u64; ndim];
                indices[y] = row;
                indices[x] = cx;
                if let Some(c) = c {
                    indices[c] = cc;
                }
                let key = level.array.chunk_key(&indices);
                let what = || format!("chunk {} of array {} (file {key})", fmt_indices(&indices), level.path);
                // Only the part of the chunk (or shard) inside the array is read: a shard far wider than
                // the image is read inner chunk by inner chunk, not whole.
                let subset = level
                    .array
                    .chunk_subset_bounded(&indices)
                    .map_err(|e| error(name, format!("{}: {e}", what())))?;
                let shape: Vec<usize> = subset.shape().iter().map(|&d| d as usize).collect();
                let origin = subset.start().to_vec();
                let chunk = Chunk {
                    shape: &shape,
                    origin: &origin,
                    layout: self.layout,
                    row,
                    chunk_h,
                    width,
                    channels,
                };
                let corrupt =
                    |e: zarrs::array::ArrayError| error(name, format!("{} cannot be decoded: {e}", what()));
                let array = &level.array;
                match level.dtype {
                    Dtype::U8 => {
                        let v = array.retrieve_array_subset_elements::<u8>(&subset).map_err(corrupt)?;
                        chunk.copy(&v, &mut self.band, |s| s)
                    }
                    Dtype::U16 => {
                        let v = array.retrieve_array_subset_elements::<u16>(&subset).map_err(corrupt)?;
                        chunk.copy(&v, &mut self.band, u16_to_u8)
                    }
                    Dtype::I16 => {
                        let v = array.retrieve_array_subset_elements::<i16>(&subset).map_err(corrupt)?;
                        chunk.copy(&v, &mut self.band, i16_to_u8)
                    }
                    Dtype::F32 => {
                        let v = array.retrieve_array_subset_elements::<f32>(&subset).map_err(corrupt)?;
                        chunk.copy(&v, &mut self.band, f32_to_u8)
                    }
                }
                self.chunks_read += 1;
            }
        }
        Ok(())
    }
}

fn fmt_indices(indices: &[u64]) -> String {
    indices.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Where one decoded chunk goes in the band.
struct Chunk<'a> {
    shape: &'a [usize],
    origin: &'a [u64],
    layout: Layout,
    row: u64,
    chunk_h: usize,
    width: usize,
    channels: usize,
}

impl Chunk<'_> {
    /// Copies the samples of the chunk (C order over its full shape) that lie inside the image into
    /// `band`, converted to 8 bits.
    fn copy<T: Copy>(&self, samples: &[T], band: &mut [u8], to8: impl Fn(T) -> u8) {
        let Layout { ndim, y, x, c } = self.layout;
        let mut strides = vec![1usize; ndim];
        for axis in (0..ndim.saturating_sub(1)).rev() {
            strides[axis] = strides[axis + 1] * self.shape[axis + 1];
        }
        let band_y0 = self.row as usize * self.chunk_h;
        let band_rows = band.len() / (self.width * self.channels);
        let (c_len, c0) = match c {
            Some(c) => (self.shape[c], self.origin[c] as usize),
            None => (1, 0),
        };
        let c_stride = c.map_or(0, |c| strides[c]);
        let x0 = self.origin[x] as usize;
        let y0 = self.origin[y] as usize;
        let xs = self.shape[x].min(self.width.saturating_sub(x0));
        let ys = self.shape[y].min((band_y0 + band_rows).saturating_sub(y0));
        for ci in 0..c_len {
            let channel = c0 + ci;
            if channel >= self.channels {
                break;
            }
            for yi in 0..ys {
                let by = y0 + yi - band_y0;
                let src = ci * c_stride + yi * strides[y];
                let dst = (by * self.width + x0) * self.channels + channel;
                for xi in 0..xs {
                    band[dst + xi * self.channels] = to8(samples[src + xi * strides[x]]);
                }
            }
        }
    }
}
