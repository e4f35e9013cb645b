//! An OME-Zarr multiscale image written as rows stream in, in bounded memory: NGFF 0.4 on Zarr v2 (the
//! default, the version most readers take today) or NGFF 0.5 on Zarr v3 ([`NgffVersion`]).
//!
//! The store is a directory: the group's metadata (0.4: `.zgroup`, and `.zattrs` holding `multiscales`;
//! 0.5: `zarr.json` holding `attributes.ome` = `{version: "0.5", multiscales}`), written last, and one
//! array per level, `0`, `1`, ..., the levels of [`crate::pyramid::level_sizes`] (2x reductions, as in the
//! OME-TIFF, down to the first level whose longer side is at most 1024). Each array is chunked 512 x 512
//! (RGB: `c,y,x` with a channel chunk of 3), zstd-compressed (level 3), fill value 0, of uint8 (mask,
//! overlay, error map) or float32 (probabilities, little endian). Zarr v2 arrays have a `.zarray` and chunk
//! files `Y.X` (`C.Y.X`); Zarr v3 arrays a `zarr.json` (regular chunk grid, the `default` chunk key encoding
//! with separator `/`, codecs `bytes` then `zstd`, `dimension_names` the axes) and chunk files `c/Y/X`.
//! Every level keeps only the rows of the chunk row it is filling; when that chunk row is complete its
//! chunks are written, each through a temporary file renamed into place.
//!
//! The format is one layer: [`NgffVersion`] gives the group's files, an array's metadata and a chunk's key;
//! [`StoreLayout`] what a store holds (axes, level sizes, NGFF metadata), so that the same writer serves
//! the outputs and the labels written into an input image ([`super::zarr_labels`]).
//!
//! The whole store is written under a temporary directory beside the target
//! ([`crate::files::temporary_path`]) and put in place by [`OmeZarrWriter::finish`]: a new store is renamed
//! in; an earlier OME-Zarr store at the path is renamed away, the new one in, and the old one removed, so
//! that a failure before then leaves the earlier store as it was. Anything else at the path (a file, a
//! folder that is not an OME-Zarr image) is refused before any work. An empty folder at the path is the
//! temporary folder [`crate::files::OutputSet::add_store`] hands out: the store is written in it and
//! [`OmeZarrWriter::finish`] leaves it there, for the set's commit to put in place with the other outputs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::writer::RowWriter;
use crate::files::{host_name, temporary_path};
use crate::pyramid;
use crate::pyramid::{push_level_row, LevelRows, SampleKind as OmeSamples};

/// The side of a chunk (y and x).
pub const CHUNK: usize = 512;
/// The zstd level of the chunks.
const ZSTD_LEVEL: i32 = 3;

/// Whether the file name ends in `.ome.zarr` (any case).
pub fn has_ome_zarr_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    name.ends_with(".ome.zarr")
}

/// The NGFF version of a store written, which fixes its Zarr version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NgffVersion {
    /// NGFF 0.4 on Zarr v2: `.zgroup`, `.zattrs`, `.zarray`, chunk keys joined by `.`; the version is in each
    /// `multiscales` entry and in `image-label`.
    #[default]
    V04,
    /// NGFF 0.5 on Zarr v3: `zarr.json` for the group (NGFF metadata under `attributes.ome`, the version
    /// there) and for each array; chunk keys `c/...` joined by `/`.
    V05,
}

impl NgffVersion {
    /// The version named `text` ("0.4" or "0.5"), if it is one this writer writes.
    pub fn parse(text: &str) -> Option<NgffVersion> {
        match text {
            "0.4" => Some(NgffVersion::V04),
            "0.5" => Some(NgffVersion::V05),
            _ => None,
        }
    }

    /// The version's name, "0.4" or "0.5".
    pub fn as_str(self) -> &'static str {
        match self {
            NgffVersion::V04 => "0.4",
            NgffVersion::V05 => "0.5",
        }
    }

    /// The NGFF version written into a store of Zarr format `zarr_format` (2 or 3).
    pub fn of_zarr_format(zarr_format: u8) -> Option<NgffVersion> {
        match zarr_format {
            2 => Some(NgffVersion::V04),
            3 => Some(NgffVersion::V05),
            _ => None,
        }
    }

    /// The Zarr format of the version: 2 or 3.
    pub fn zarr_format(self) -> u8 {
        match self {
            NgffVersion::V04 => 2,
            NgffVersion::V05 => 3,
        }
    }

    /// The metadata files (name, content) of a group holding the NGFF metadata `ome` (`multiscales`,
    /// `image-label`, `labels`: given without a version, which this adds where the version puts it) and
    /// the other attributes `other` (kept as they are, e.g. an existing group's).
    pub fn group_files(
        self,
        mut ome: Map<String, Value>,
        other: Map<String, Value>,
    ) -> Vec<(&'static str, String)> {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        match self {
            NgffVersion::V04 => {
                if let Some(Value::Array(entries)) = ome.get_mut("multiscales") {
                    for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                        entry.insert("version".into(), json!("0.4"));
                    }
                }
                if let Some(Value::Object(label)) = ome.get_mut("image-label") {
                    label.insert("version".into(), json!("0.4"));
                }
                let mut attrs = other;
                attrs.extend(ome);
                vec![
                    (".zgroup", pretty(&json!({"zarr_format": 2}))),
                    (".zattrs", pretty(&Value::Object(attrs))),
                ]
            }
            NgffVersion::V05 => {
                let mut namespaced = Map::new();
                namespaced.insert("version".into(), json!("0.5"));
                namespaced.extend(ome);
                let mut attributes = other;
                attributes.insert("ome".into(), Value::Object(namespaced));
                let group = json!({"zarr_format": 3, "node_type": "group", "attributes": attributes});
                vec![("zarr.json", pretty(&group))]
            }
        }
    }

    /// The metadata file (name, content) of an array of `shape` in chunks of `chunks`, of uint8 or (when
    /// `float`) float32 samples, its axes named `names` (Zarr v3's `dimension_names`; v2 has no place for
    /// them).
    pub fn array_file(
        self,
        shape: &[usize],
        chunks: &[usize],
        float: bool,
        names: &[String],
    ) -> (&'static str, String) {
        let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        match self {
            NgffVersion::V04 => {
                let dtype = if float { "<f4" } else { "|u1" };
                let text = format!(
                    "{{\n  \"zarr_format\": 2,\n  \"shape\": [{}],\n  \"chunks\": [{}],\n  \"dtype\": \"{dtype}\",\n  \
                     \"compressor\": {{\"id\": \"zstd\", \"level\": {ZSTD_LEVEL}}},\n  \"fill_value\": 0,\n  \"order\": \
                     \"C\",\n  \"filters\": null,\n  \"dimension_separator\": \".\"\n}}\n",
                    list(shape),
                    list(chunks)
                );
                (".zarray", text)
            }
            NgffVersion::V05 => {
                // The `bytes` codec needs an endianness only for samples of more than one byte.
                let bytes = if float {
                    json!({"name": "bytes", "configuration": {"endian": "little"}})
                } else {
                    json!({"name": "bytes"})
                };
                let array = json!({
                    "zarr_format": 3,
                    "node_type": "array",
                    "shape": shape,
                    "data_type": if float { "float32" } else { "uint8" },
                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                    "fill_value": 0,
                    "codecs": [bytes, {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": false}}],
                    "attributes": {},
                    "dimension_names": names,
                });
                ("zarr.json", serde_json::to_string_pretty(&array).unwrap_or_default() + "\n")
            }
        }
    }

    /// The key (a path relative to the array) of the chunk at grid `indices`.
    pub fn chunk_key(self, indices: &[usize]) -> String {
        let joined = |sep: &str| indices.iter().map(usize::to_string).collect::<Vec<_>>().join(sep);
        match self {
            NgffVersion::V04 => joined("."),
            NgffVersion::V05 => format!("c/{}", joined("/")),
        }
    }
}

/// Where the axes of a store's arrays are: their names in array order, and which are y, x and the
/// channels; every other axis has size 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayAxes {
    /// The axis names, in array order.
    pub names: Vec<String>,
    /// The index of the y axis.
    pub y: usize,
    /// The index of the x axis.
    pub x: usize,
    /// The index of the channel axis, if the samples have more than one channel.
    pub c: Option<usize>,
}

impl ArrayAxes {
    /// The axes of an output: `y,x` (one channel) or `c,y,x`.
    pub fn output(channels: usize) -> ArrayAxes {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect();
        if channels == 1 {
            ArrayAxes { names: names(&["y", "x"]), y: 0, x: 1, c: None }
        } else {
            ArrayAxes { names: names(&["c", "y", "x"]), y: 1, x: 2, c: Some(0) }
        }
    }

    /// The shape of a level of `width` x `height` with `channels` samples a pixel.
    pub fn shape(&self, width: usize, height: usize, channels: usize) -> Vec<usize> {
        self.sized(height, width, channels)
    }

    /// The shape of a chunk.
    pub fn chunk_shape(&self, channels: usize) -> Vec<usize> {
        self.sized(CHUNK, CHUNK, channels)
    }

    /// The grid indices of chunk (`row`, `col`) of the y and x axes (0 on every other axis).
    pub fn chunk_indices(&self, row: usize, col: usize) -> Vec<usize> {
        self.sized(row, col, 0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i == self.y || i == self.x { v } else { 0 })
            .collect()
    }

    fn sized(&self, y: usize, x: usize, channels: usize) -> Vec<usize> {
        (0..self.names.len())
            .map(|i| match i {
                i if i == self.y => y,
                i if i == self.x => x,
                i if Some(i) == self.c => channels,
                _ => 1,
            })
            .collect()
    }

    /// Whether a chunk in C order over this layout is channel planes of rows of pixels (the only layout the
    /// writer fills): the channel axis, if any, before y, and y before x.
    fn planar(&self) -> bool {
        self.y < self.x && self.c.is_none_or(|c| c < self.y)
    }
}

/// What a store holds besides its pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    /// The NGFF (and so Zarr) version.
    pub version: NgffVersion,
    /// The axes of every level's array.
    pub axes: ArrayAxes,
    /// (width, height) of each level, full resolution first; each level after the first is the one above
    /// reduced by 2, its sizes rounded up or down.
    pub levels: Vec<(usize, usize)>,
    /// The group's NGFF metadata (`multiscales`, `image-label`), without a version
    /// ([`NgffVersion::group_files`] adds it).
    pub ome: Map<String, Value>,
    /// Whether 8-bit mask pixels (0 or 255) are stored as label values (0 or 1: a pixel of at least 128 is
    /// 1), as an NGFF label image wants integers naming classes.
    pub label_values: bool,
    /// The first level of the cascade: rows given to [`OmeZarrWriter::write_pixels`] go to this level and
    /// are reduced into the levels below it; the levels above it are written row by row by the caller
    /// ([`OmeZarrWriter::write_level_row`]), e.g. a label predicted at a coarser level, upsampled.
    pub cascade_from: usize,
}

impl StoreLayout {
    /// The layout of an output of `width` x `height`: the levels of [`pyramid::level_sizes`], axes `y,x` or
    /// `c,y,x`, and [`multiscales`] metadata.
    pub fn output(
        version: NgffVersion,
        width: usize,
        height: usize,
        samples: OmeSamples,
        microns_per_pixel: Option<(f64, f64)>,
    ) -> StoreLayout {
        let levels = pyramid::level_sizes(width, height);
        let mut ome = Map::new();
        ome.insert("multiscales".into(), json!([multiscales(levels.len(), samples, microns_per_pixel)]));
        let axes = ArrayAxes::output(samples.channels());
        StoreLayout { version, axes, levels, ome, label_values: false, cascade_from: 0 }
    }
}

/// The `.zarray` of one level of `width` x `height` of an NGFF 0.4 output.
pub fn zarray(width: usize, height: usize, samples: OmeSamples) -> String {
    let channels = samples.channels();
    let axes = ArrayAxes::output(channels);
    let float = matches!(samples, OmeSamples::F32);
    NgffVersion::V04
        .array_file(&axes.shape(width, height, channels), &axes.chunk_shape(channels), float, &axes.names)
        .1
}

/// The `multiscales` entry (without its version) of an output with `levels` levels: axes `y,x` (gray) or
/// `c,y,x` (RGB), each level's scale the microns per pixel times 2^level when known, else 2^level.
pub fn multiscales(levels: usize, samples: OmeSamples, microns_per_pixel: Option<(f64, f64)>) -> Value {
    let known = microns_per_pixel.filter(|&(x, y)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite());
    let space = |name: &str| match known {
        Some(_) => json!({"name": name, "type": "space", "unit": "micrometer"}),
        None => json!({"name": name, "type": "space"}),
    };
    let rgb = samples.channels() > 1;
    let mut axes = Vec::new();
    if rgb {
        axes.push(json!({"name": "c", "type": "channel"}));
    }
    axes.push(space("y"));
    axes.push(space("x"));
    let (mx, my) = known.unwrap_or((1.0, 1.0));
    let datasets: Vec<Value> = (0..levels)
        .map(|level| {
            let factor = f64::from(1u32 << level.min(31));
            let mut scale = vec![my * factor, mx * factor];
            if rgb {
                scale.insert(0, 1.0);
            }
            json!({
                "path": level.to_string(),
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            })
        })
        .collect();
    json!({
        "name": "image",
        "axes": axes,
        "datasets": datasets,
        "type": "2x2 reduction (mean; mask: foreground from half of the block)",
        "metadata": {"writer": format!("imaging {}", env!("CARGO_PKG_VERSION"))},
    })
}

/// The `.zattrs` of an NGFF 0.4 output with `levels` levels ([`multiscales`]).
pub fn zattrs(levels: usize, samples: OmeSamples, microns_per_pixel: Option<(f64, f64)>) -> String {
    let mut ome = Map::new();
    ome.insert("multiscales".into(), json!([multiscales(levels, samples, microns_per_pixel)]));
    let files = NgffVersion::V04.group_files(ome, Map::new());
    files.into_iter().find(|(name, _)| *name == ".zattrs").map(|(_, text)| text).unwrap_or_default()
}

/// The `.zgroup` of a store.
pub const ZGROUP: &str = "{\n  \"zarr_format\": 2\n}\n";

/// The key (file name) of the chunk in chunk row `chunk_row` and chunk column `cx` of a level with
/// `channels` channels.
pub fn chunk_key(channels: usize, chunk_row: usize, cx: usize) -> String {
    NgffVersion::V04.chunk_key(&ArrayAxes::output(channels).chunk_indices(chunk_row, cx))
}

/// Compresses the chunks of one chunk row: `band` holds up to [`CHUNK`] rows of `width` pixels as they
/// are stored in rows (interleaved when RGB); each chunk, padded with 0 to whole chunks (planar when RGB),
/// goes to `put(cx, compressed)`. With `label_values`, 8-bit mask values become label values (0 and 1).
/// `scratch` is reused between calls.
pub(super) fn encode_chunk_row(
    samples: OmeSamples,
    width: usize,
    band: &[u8],
    label_values: bool,
    scratch: &mut Vec<u8>,
    mut put: impl FnMut(usize, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let channels = samples.channels();
    let sample = samples.pixel_bytes() / channels;
    let pixel = sample * channels;
    let row_bytes = width * pixel;
    let rows = band.len() / row_bytes;
    let plane = CHUNK * CHUNK * sample;
    for (cx, x0) in (0..width).step_by(CHUNK).enumerate() {
        let used = (width - x0).min(CHUNK);
        scratch.clear();
        scratch.resize(channels * plane, 0);
        for y in 0..rows {
            let src = &band[y * row_bytes + x0 * pixel..][..used * pixel];
            if channels == 1 {
                scratch[y * CHUNK * sample..][..used * sample].copy_from_slice(src);
            } else {
                // Planar: channel c of pixel x at c * plane + (y * CHUNK + x) * sample.
                for (x, px) in src.chunks_exact(pixel).enumerate() {
                    for (c, s) in px.chunks_exact(sample).enumerate() {
                        scratch[c * plane + (y * CHUNK + x) * sample..][..sample].copy_from_slice(s);
                    }
                }
            }
        }
        if label_values {
            for v in scratch.iter_mut() {
                *v = u8::from(*v >= 128);
            }
        }
        let compressed = zstd::bulk::compress(scratch, ZSTD_LEVEL).map_err(|e| e.to_string())?;
        put(cx, &compressed)?;
    }
    Ok(())
}

/// One level being filled, with the index of its chunk row.
struct Level {
    fill: LevelRows,
    /// The index of the chunk row being filled.
    chunk_row: usize,
}

impl AsMut<LevelRows> for Level {
    fn as_mut(&mut self) -> &mut LevelRows {
        &mut self.fill
    }
}

/// An OME-Zarr store being written; see the module docs.
pub struct OmeZarrWriter {
    /// The path the store ends at.
    target: PathBuf,
    /// The temporary directory it is written in.
    dir: PathBuf,
    /// Whether an earlier store is at `target` (to be swapped out at the end).
    replaces: bool,
    /// Whether [`OmeZarrWriter::finish`] puts the store in place (false: written in a folder handed out by
    /// an output set, which puts it in place at its commit).
    publishes: bool,
    samples: OmeSamples,
    version: NgffVersion,
    axes: ArrayAxes,
    ome: Map<String, Value>,
    label_values: bool,
    /// See [`StoreLayout::cascade_from`].
    cascade_from: usize,
    levels: Vec<Level>,
    finished: bool,
    /// Scratch buffer: a chunk.
    chunk: Vec<u8>,
}

impl OmeZarrWriter {
    /// Starts an NGFF 0.4 store for a `width` x `height` image at `target` ([`OmeZarrWriter::create_with`]).
    pub fn create(
        target: &Path,
        width: usize,
        height: usize,
        samples: OmeSamples,
        microns_per_pixel: Option<(f64, f64)>,
    ) -> Result<OmeZarrWriter, String> {
        let layout = StoreLayout::output(NgffVersion::V04, width, height, samples, microns_per_pixel);
        OmeZarrWriter::create_with(target, samples, layout)
    }

    /// Starts a store of `layout` at `target`: refuses a path that holds anything but an OME-Zarr store,
    /// then creates the temporary directory with every level's array metadata.
    pub fn create_with(
        target: &Path,
        samples: OmeSamples,
        layout: StoreLayout,
    ) -> Result<OmeZarrWriter, String> {
        let StoreLayout { version, axes, levels, ome, label_values, cascade_from } = layout;
        let (width, height) = levels.first().copied().unwrap_or((0, 0));
        if width == 0 || height == 0 {
            return Err(format!("an OME-Zarr image cannot be {width}x{height}"));
        }
        if cascade_from >= levels.len() {
            return Err(format!(
                "a cascade from level {cascade_from} of {} levels (a bug in the writer's caller)",
                levels.len()
            ));
        }
        if !axes.planar() || axes.y.max(axes.x) >= axes.names.len() {
            return Err(format!(
                "cannot write an array of axes {} (a bug in the writer's caller)",
                axes.names.join(",")
            ));
        }
        let handed = fs::symlink_metadata(target).is_ok_and(|m| m.is_dir())
            && fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_none());
        let replaces = match fs::symlink_metadata(target) {
            Err(_) => false,
            Ok(_) if handed => false,
            Ok(m) if m.is_dir() && crate::source::looks_like_ome_zarr_store(target) => true,
            Ok(m) if m.is_dir() => {
                return Err("a folder that is not an OME-Zarr store is there; refusing to replace it".into())
            }
            Ok(_) => {
                return Err("something that is not an OME-Zarr store is there; refusing to replace it".into())
            }
        };
        let dir = if handed {
            target.to_path_buf()
        } else {
            temporary_path(target, host_name(), std::process::id())
        };
        if !handed {
            if dir.exists() {
                // Our own leftover (this process id, this host): a previous store of this run that failed.
                fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
            }
            fs::create_dir(&dir).map_err(|e| format!("{e}; {}", crate::files::create_hint(&e)))?;
        }
        let writer = OmeZarrWriter {
            target: target.to_path_buf(),
            dir,
            replaces,
            publishes: !handed,
            samples,
            version,
            axes,
            ome,
            label_values,
            cascade_from,
            levels: levels
                .iter()
                .map(|&(width, height)| Level { fill: LevelRows::new(width, height), chunk_row: 0 })
                .collect(),
            finished: false,
            chunk: Vec::new(),
        };
        let channels = samples.channels();
        let float = matches!(samples, OmeSamples::F32);
        for (i, &(width, height)) in levels.iter().enumerate() {
            let folder = writer.dir.join(i.to_string());
            fs::create_dir(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
            let shape = writer.axes.shape(width, height, channels);
            let chunks = writer.axes.chunk_shape(channels);
            let (name, text) = version.array_file(&shape, &chunks, float, &writer.axes.names);
            write_file(&folder.join(name), text.as_bytes())?;
        }
        Ok(writer)
    }

    /// The sizes of the levels, full resolution first.
    pub fn level_sizes(&self) -> Vec<(usize, usize)> {
        self.levels.iter().map(|l| (l.fill.width, l.fill.height)).collect()
    }

    /// Writes whole rows of 8-bit pixels (interleaved when RGB) of the cascade's first level
    /// ([`StoreLayout::cascade_from`]).
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        if matches!(self.samples, OmeSamples::F32) {
            return Err("8-bit rows sent to a float output (a bug in the runner)".into());
        }
        let row_bytes = self.levels[self.cascade_from].fill.width * self.samples.pixel_bytes();
        if !rows.len().is_multiple_of(row_bytes) {
            return Err("a partial row (a bug in the runner)".into());
        }
        for row in rows.chunks_exact(row_bytes) {
            self.push_row(row.to_vec())?;
        }
        Ok(())
    }

    /// Writes whole rows of float32 values.
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        if !matches!(self.samples, OmeSamples::F32) {
            return Err("float rows sent to an 8-bit output (a bug in the runner)".into());
        }
        let width = self.levels[self.cascade_from].fill.width;
        if !rows.len().is_multiple_of(width) {
            return Err("a partial row (a bug in the runner)".into());
        }
        for row in rows.chunks_exact(width) {
            self.push_row(row.iter().flat_map(|v| v.to_le_bytes()).collect())?;
        }
        Ok(())
    }

    /// Writes the next row of 8-bit pixels of level `level`, one above the cascade's first level
    /// ([`StoreLayout::cascade_from`]); it goes to that level only.
    pub fn write_level_row(&mut self, level: usize, row: &[u8]) -> Result<(), String> {
        if matches!(self.samples, OmeSamples::F32) || level >= self.cascade_from {
            return Err(format!("a row sent to level {level} directly (a bug in the writer's caller)"));
        }
        if row.len() != self.levels[level].fill.width * self.samples.pixel_bytes() {
            return Err("a partial row (a bug in the writer's caller)".into());
        }
        let mut levels = std::mem::take(&mut self.levels);
        let pushed = push_level_row(&mut levels[level..=level], self.samples, CHUNK, row.to_vec(), |_, l| {
            self.write_chunk_row(level, l)
        });
        self.levels = levels;
        pushed
    }

    /// Adds one row to the cascade's first level, and the rows it completes to the levels below.
    fn push_row(&mut self, row: Vec<u8>) -> Result<(), String> {
        let mut levels = std::mem::take(&mut self.levels);
        let first = self.cascade_from;
        let pushed = push_level_row(&mut levels[first..], self.samples, CHUNK, row, |i, level| {
            self.write_chunk_row(first + i, level)
        });
        self.levels = levels;
        pushed
    }

    /// Compresses and writes the chunks of level `i`'s band (padded with 0 to whole chunks), then empties
    /// the band.
    fn write_chunk_row(&mut self, i: usize, level: &mut Level) -> Result<(), String> {
        let Level { fill: LevelRows { width, band, .. }, chunk_row } = level;
        let (version, axes, dir, label_values) = (self.version, &self.axes, &self.dir, self.label_values);
        encode_chunk_row(self.samples, *width, band, label_values, &mut self.chunk, |cx, compressed| {
            let path = dir.join(i.to_string()).join(version.chunk_key(&axes.chunk_indices(*chunk_row, cx)));
            if let Some(parent) = path.parent().filter(|_| version == NgffVersion::V05) {
                fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            write_file(&path, compressed)
        })?;
        band.clear();
        *chunk_row += 1;
        Ok(())
    }

    /// Writes the group's metadata (every row must have been written) and puts the store in place.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(LevelRows { rows, height, .. }) =
            self.levels.iter().map(|l| &l.fill).find(|l| l.rows != l.height)
        {
            return Err(format!("only {rows} of {height} rows were written"));
        }
        for (name, text) in self.version.group_files(self.ome.clone(), Map::new()) {
            write_file(&self.dir.join(name), text.as_bytes())?;
        }
        if !self.publishes {
            self.finished = true;
            Ok(())
        } else if self.replaces {
            let old = temporary_path(&self.target, &format!("{}-old", host_name()), std::process::id());
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
            }
            fs::rename(&self.target, &old).map_err(|e| format!("cannot move the earlier store away: {e}"))?;
            if let Err(e) = fs::rename(&self.dir, &self.target) {
                // Put the earlier store back.
                let _ = fs::rename(&old, &self.target);
                return Err(format!("cannot put the store in place: {e}"));
            }
            self.finished = true;
            fs::remove_dir_all(&old)
                .map_err(|e| format!("cannot remove the earlier store {}: {e}", old.display()))
        } else {
            fs::rename(&self.dir, &self.target).map_err(|e| format!("cannot put the store in place: {e}"))?;
            self.finished = true;
            Ok(())
        }
    }
}

impl RowWriter for OmeZarrWriter {
    fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        OmeZarrWriter::write_pixels(self, rows)
    }

    fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        OmeZarrWriter::write_values(self, rows)
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        OmeZarrWriter::finish(*self)
    }
}

impl Drop for OmeZarrWriter {
    /// An unfinished store removes its temporary directory; the target is never touched.
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes `bytes` as `path` through a temporary file renamed into place.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temporary = temporary_path(path, host_name(), std::process::id());
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temporary);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyramid::Reduction;
    use crate::source::{Channels, ImageSource};

    /// Every level of `pixels` (`width` x `height`, `channels` 8-bit samples), reduced in memory.
    fn pyramid_u8(
        pixels: &[u8],
        width: usize,
        height: usize,
        channels: usize,
        rule: Reduction,
    ) -> Vec<Vec<u8>> {
        let mut levels = vec![pixels.to_vec()];
        let sizes = pyramid::level_sizes(width, height);
        for &(w, h) in &sizes[..sizes.len() - 1] {
            let above = levels.last().unwrap();
            let row = w * channels;
            let mut next = Vec::new();
            let mut out = Vec::new();
            for y in (0..h).step_by(2) {
                let top = &above[y * row..][..row];
                let bottom = (y + 1 < h).then(|| &above[(y + 1) * row..][..row]);
                pyramid::reduce_rows_u8(top, bottom, w, channels, rule, &mut out);
                next.extend_from_slice(&out);
            }
            levels.push(next);
        }
        levels
    }

    fn write_u8(path: &Path, pixels: &[u8], width: usize, height: usize, samples: OmeSamples, band: usize) {
        let mut writer = OmeZarrWriter::create(path, width, height, samples, Some((0.25, 0.25))).unwrap();
        let row = width * samples.pixel_bytes();
        for rows in pixels.chunks(band * row) {
            writer.write_pixels(rows).unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn odd_sizes_give_the_pyramid_levels_and_their_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ome.zarr");
        let (width, height) = (1100, 700);
        let mask: Vec<u8> = (0..width * height).map(|i| if (i * 7919) % 13 < 6 { 255 } else { 0 }).collect();
        let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
        write_u8(&path, &mask, width, height, samples, 37);
        let levels = ImageSource::levels(&path).unwrap();
        let sizes: Vec<(usize, usize)> = levels.iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(1100, 700), (550, 350)]);
        let mut chunks: Vec<String> = fs::read_dir(path.join("0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        chunks.sort();
        assert_eq!(chunks, [".zarray", "0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]);
        let chunks = fs::read_dir(path.join("1")).unwrap().count();
        assert_eq!(chunks, 1 + 2);
        let zarray: serde_json::Value =
            serde_json::from_slice(&fs::read(path.join("1/.zarray")).unwrap()).unwrap();
        assert_eq!(zarray["shape"], serde_json::json!([350, 550]));
        assert_eq!(zarray["chunks"], serde_json::json!([512, 512]));
        assert_eq!(zarray["dtype"], "|u1");
        let attrs: serde_json::Value =
            serde_json::from_slice(&fs::read(path.join(".zattrs")).unwrap()).unwrap();
        let m = &attrs["multiscales"][0];
        assert_eq!(m["version"], "0.4");
        assert_eq!(m["axes"][1]["unit"], "micrometer");
        assert_eq!(m["datasets"][1]["path"], "1");
        assert_eq!(m["datasets"][1]["coordinateTransformations"][0]["scale"], serde_json::json!([0.5, 0.5]));
        // No temporary is left beside the store or in it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_streamed_store_reads_back_as_the_in_memory_pyramid() {
        let dir = tempfile::tempdir().unwrap();
        for (channels, rule, out) in
            [(1, Reduction::Mask, Channels::Gray), (3, Reduction::Mean, Channels::Rgb)]
        {
            let path = dir.path().join(format!("s{channels}.ome.zarr"));
            let (width, height) = (2301, 1537);
            let pixels: Vec<u8> = (0..width * height * channels)
                .map(|i| match rule {
                    Reduction::Mask => (((i / width) / 3 + (i % width) / 5) % 2 * 255) as u8,
                    Reduction::Mean => (i * 31 % 251) as u8,
                })
                .collect();
            write_u8(&path, &pixels, width, height, OmeSamples::U8 { channels, rule }, 100);
            if let Some(keep) = std::env::var_os("IMAGING_KEEP_OME_ZARR") {
                // For scripts/checks/check_ome_zarr.py: the store and its level 0 as a PNG.
                let keep = Path::new(&keep);
                write_u8(
                    &keep.join(format!("s{channels}.ome.zarr")),
                    &pixels,
                    width,
                    height,
                    OmeSamples::U8 { channels, rule },
                    100,
                );
                let samples = OmeSamples::U8 { channels, rule };
                let layout =
                    StoreLayout::output(NgffVersion::V05, width, height, samples, Some((0.25, 0.25)));
                let mut writer = OmeZarrWriter::create_with(
                    &keep.join(format!("s{channels}-0.5.ome.zarr")),
                    samples,
                    layout,
                )
                .unwrap();
                writer.write_pixels(&pixels).unwrap();
                writer.finish().unwrap();
                let color =
                    if channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
                image::save_buffer(
                    keep.join(format!("s{channels}.png")),
                    &pixels,
                    width as u32,
                    height as u32,
                    color,
                )
                .unwrap();
            }
            let expected = pyramid_u8(&pixels, width, height, channels, rule);
            assert_eq!(expected.len(), 3);
            for (level, want) in expected.iter().enumerate() {
                let mut source = ImageSource::open_level(&path, level, out).unwrap();
                assert_eq!(
                    source.microns_per_pixel(),
                    Some((0.25 * 2f64.powi(level as i32), 0.25 * 2f64.powi(level as i32)))
                );
                assert!(source.read_all().unwrap() == *want, "{channels} channels, level {level}");
            }
        }
    }

    #[test]
    fn probabilities_are_float32() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.ome.zarr");
        let (width, height) = (1030, 3);
        let values: Vec<f32> = (0..width * height).map(|i| i as f32 / 7.0).collect();
        let mut writer = OmeZarrWriter::create(&path, width, height, OmeSamples::F32, None).unwrap();
        writer.write_values(&values[..width]).unwrap();
        writer.write_values(&values[width..]).unwrap();
        writer.finish().unwrap();
        if let Some(keep) = std::env::var_os("IMAGING_KEEP_OME_ZARR") {
            let keep = Path::new(&keep);
            let mut writer =
                OmeZarrWriter::create(&keep.join("p.ome.zarr"), width, height, OmeSamples::F32, None)
                    .unwrap();
            writer.write_values(&values).unwrap();
            writer.finish().unwrap();
            let layout = StoreLayout::output(NgffVersion::V05, width, height, OmeSamples::F32, None);
            let mut writer =
                OmeZarrWriter::create_with(&keep.join("p-0.5.ome.zarr"), OmeSamples::F32, layout).unwrap();
            writer.write_values(&values).unwrap();
            writer.finish().unwrap();
            let mut npy = crate::sink::npy::npy_header(height, width);
            npy.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            fs::write(keep.join("p.npy"), npy).unwrap();
        }
        let zarray: serde_json::Value =
            serde_json::from_slice(&fs::read(path.join("0/.zarray")).unwrap()).unwrap();
        assert_eq!(zarray["dtype"], "<f4");
        let chunk =
            zstd::bulk::decompress(&fs::read(path.join("0/0.2")).unwrap(), 4 * CHUNK * CHUNK).unwrap();
        let floats: Vec<f32> =
            chunk.chunks_exact(4).map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]])).collect();
        for y in 0..height {
            assert_eq!(floats[y * CHUNK..][..6], values[y * width + 1024..][..6]);
        }
        let chunk =
            zstd::bulk::decompress(&fs::read(path.join("1/0.0")).unwrap(), 4 * CHUNK * CHUNK).unwrap();
        let first = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let want = ((values[0] + values[1]) + (values[width] + values[width + 1])) / 4.0;
        assert!((first - want).abs() < 1e-4, "{first} {want}");
        let attrs: serde_json::Value =
            serde_json::from_slice(&fs::read(path.join(".zattrs")).unwrap()).unwrap();
        let scale = &attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"];
        assert_eq!(*scale, serde_json::json!([2.0, 2.0]));
        assert!(attrs["multiscales"][0]["axes"][0].get("unit").is_none());
    }

    #[test]
    fn a_failure_mid_write_leaves_the_earlier_store_and_foreign_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ome.zarr");
        let (width, height) = (600, 1200);
        let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
        let first = vec![255u8; width * height];
        write_u8(&path, &first, width, height, samples, 64);
        // A second store, abandoned half way (a failed prediction), then one finished with rows missing.
        let mut writer = OmeZarrWriter::create(&path, width, height, samples, None).unwrap();
        writer.write_pixels(&vec![0u8; width * 700]).unwrap();
        drop(writer);
        let mut writer = OmeZarrWriter::create(&path, width, height, samples, None).unwrap();
        writer.write_pixels(&vec![0u8; width * 700]).unwrap();
        assert!(writer.finish().unwrap_err().contains("only 700 of 1200 rows"));
        let mut source = ImageSource::open(&path, Channels::Gray).unwrap();
        assert!(source.read_all().unwrap() == first);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
        // A finished second store replaces the first.
        let second = vec![0u8; width * height];
        write_u8(&path, &second, width, height, samples, 1200);
        let mut source = ImageSource::open(&path, Channels::Gray).unwrap();
        assert!(source.read_all().unwrap() == second);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
        // A regular file and a foreign folder are refused.
        let file = dir.path().join("f.ome.zarr");
        fs::write(&file, b"x").unwrap();
        let err = OmeZarrWriter::create(&file, 4, 4, samples, None).err().unwrap();
        assert!(err.contains("refusing to replace it"), "{err}");
        let folder = dir.path().join("d.ome.zarr");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("notes.txt"), b"x").unwrap();
        let err = OmeZarrWriter::create(&folder, 4, 4, samples, None).err().unwrap();
        assert!(err.contains("not an OME-Zarr store"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"x");
        assert!(folder.join("notes.txt").exists());
        assert!(has_ome_zarr_name(Path::new("a/B.OME.ZARR")) && !has_ome_zarr_name(Path::new("b.zarr")));
    }

    #[test]
    fn the_format_layer_gives_each_version_its_files_and_keys() {
        assert_eq!(NgffVersion::parse("0.5"), Some(NgffVersion::V05));
        assert_eq!(NgffVersion::parse("0.6"), None);
        assert_eq!(NgffVersion::of_zarr_format(3), Some(NgffVersion::V05));
        assert_eq!(NgffVersion::V04.chunk_key(&[0, 2, 3]), "0.2.3");
        assert_eq!(NgffVersion::V05.chunk_key(&[0, 2, 3]), "c/0/2/3");
        let axes = ArrayAxes::output(3);
        assert_eq!(axes.chunk_indices(4, 5), [0, 4, 5]);
        assert_eq!(axes.shape(7, 9, 3), [3, 9, 7]);
        // A label's axes t,c,z,y,x: every axis but y and x of size 1.
        let names = ["t", "c", "z", "y", "x"].map(String::from).to_vec();
        let label = ArrayAxes { names, y: 3, x: 4, c: None };
        assert_eq!(label.shape(97, 75, 1), [1, 1, 1, 75, 97]);
        assert_eq!(label.chunk_shape(1), [1, 1, 1, CHUNK, CHUNK]);
        assert_eq!(label.chunk_indices(1, 2), [0, 0, 0, 1, 2]);
        let mut ome = Map::new();
        ome.insert("multiscales".into(), json!([{"name": "a"}]));
        ome.insert("image-label".into(), json!({}));
        let v2 = NgffVersion::V04.group_files(ome.clone(), Map::new());
        let attrs: Value = serde_json::from_str(&v2[1].1).unwrap();
        assert_eq!((v2[0].0, v2[1].0), (".zgroup", ".zattrs"));
        assert_eq!(attrs["multiscales"][0]["version"], "0.4");
        assert_eq!(attrs["image-label"]["version"], "0.4");
        let v3 = NgffVersion::V05.group_files(ome, Map::new());
        let group: Value = serde_json::from_str(&v3[0].1).unwrap();
        assert_eq!(v3.len(), 1);
        assert_eq!(group["attributes"]["ome"]["version"], "0.5");
        assert!(group["attributes"]["ome"]["multiscales"][0].get("version").is_none());
        let (name, text) = NgffVersion::V05.array_file(&[3, 9, 7], &[3, 512, 512], false, &axes.names);
        let array: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(name, "zarr.json");
        assert_eq!(array["codecs"][0], json!({"name": "bytes"}));
        assert_eq!(array["codecs"][1]["configuration"], json!({"level": 3, "checksum": false}));
        assert_eq!(array["dimension_names"], json!(["c", "y", "x"]));
    }
}
