//! An OME-Zarr (NGFF 0.4, Zarr v2) multiscale image written as rows stream in, in bounded memory.
//!
//! The store is a directory: `.zgroup`, `.zattrs` (the `multiscales` metadata, written last) and one array
//! per level, `0`, `1`, ..., the levels of [`crate::pyramid::level_sizes`] (2x reductions, as in the
//! OME-TIFF, down to the first level whose longer side is at most 1024). Each array is chunked 512 x 512
//! (RGB: `c,y,x` with a channel chunk of 3), zstd-compressed, fill value 0, dtype `|u1` (mask, overlay,
//! error map) or `<f4` (probabilities). Every level keeps only the rows of the chunk row it is filling;
//! when that chunk row is complete its chunks are written, each through a temporary file renamed into
//! place.
//!
//! The whole store is written under a temporary directory beside the target
//! ([`crate::files::temporary_path`]) and put in place by [`OmeZarrWriter::finish`]: a new store is renamed
//! in; an earlier OME-Zarr store at the path is renamed away, the new one in, and the old one removed, so
//! that a failure before then leaves the earlier store as it was. Anything else at the path (a file, a
//! folder that is not an OME-Zarr image) is refused before any work.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ome_tiff::{push_level_row, LevelRows, OmeSamples};
use crate::files::{host_name, temporary_path};
use crate::pyramid;

/// The side of a chunk (y and x).
pub const CHUNK: usize = 512;
/// The zstd level of the chunks.
const ZSTD_LEVEL: i32 = 3;

/// Whether the file name ends in `.ome.zarr` (any case).
pub fn is_ome_zarr_path(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    name.ends_with(".ome.zarr")
}

/// The `.zarray` of one level of `width` x `height`.
pub fn zarray(width: usize, height: usize, samples: OmeSamples) -> String {
    let (shape, chunks) = match samples.channels() {
        1 => (format!("[{height}, {width}]"), format!("[{CHUNK}, {CHUNK}]")),
        c => (format!("[{c}, {height}, {width}]"), format!("[{c}, {CHUNK}, {CHUNK}]")),
    };
    let dtype = match samples {
        OmeSamples::U8 { .. } => "|u1",
        OmeSamples::F32 => "<f4",
    };
    format!(
        "{{\n  \"zarr_format\": 2,\n  \"shape\": {shape},\n  \"chunks\": {chunks},\n  \"dtype\": \"{dtype}\",\n  \
         \"compressor\": {{\"id\": \"zstd\", \"level\": {ZSTD_LEVEL}}},\n  \"fill_value\": 0,\n  \"order\": \
         \"C\",\n  \"filters\": null,\n  \"dimension_separator\": \".\"\n}}\n"
    )
}

/// The `.zattrs` of a store with `levels` levels: NGFF 0.4 `multiscales`, axes `y,x` (gray) or `c,y,x`
/// (RGB), each level's scale the microns per pixel times 2^level when known, else 2^level.
pub fn zattrs(levels: usize, samples: OmeSamples, microns_per_pixel: Option<(f64, f64)>) -> String {
    let known = microns_per_pixel.filter(|&(x, y)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite());
    let space = |name: &str| match known {
        Some(_) => serde_json::json!({"name": name, "type": "space", "unit": "micrometer"}),
        None => serde_json::json!({"name": name, "type": "space"}),
    };
    let rgb = samples.channels() > 1;
    let mut axes = Vec::new();
    if rgb {
        axes.push(serde_json::json!({"name": "c", "type": "channel"}));
    }
    axes.push(space("y"));
    axes.push(space("x"));
    let (mx, my) = known.unwrap_or((1.0, 1.0));
    let datasets: Vec<serde_json::Value> = (0..levels)
        .map(|level| {
            let factor = f64::from(1u32 << level.min(31));
            let mut scale = vec![my * factor, mx * factor];
            if rgb {
                scale.insert(0, 1.0);
            }
            serde_json::json!({
                "path": level.to_string(),
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            })
        })
        .collect();
    let attrs = serde_json::json!({
        "multiscales": [{
            "version": "0.4",
            "name": "image",
            "axes": axes,
            "datasets": datasets,
            "type": "2x2 reduction (mean; mask: foreground from half of the block)",
            "metadata": {"writer": format!("imaging {}", env!("CARGO_PKG_VERSION"))},
        }]
    });
    serde_json::to_string_pretty(&attrs).unwrap_or_default() + "\n"
}

/// The `.zgroup` of a store.
pub const ZGROUP: &str = "{\n  \"zarr_format\": 2\n}\n";

/// The key (file name) of the chunk in chunk row `chunk_row` and chunk column `cx` of a level with
/// `channels` channels.
pub fn chunk_key(channels: usize, chunk_row: usize, cx: usize) -> String {
    if channels == 1 {
        format!("{chunk_row}.{cx}")
    } else {
        format!("0.{chunk_row}.{cx}")
    }
}

/// Compresses the chunks of one chunk row: `band` holds up to [`CHUNK`] rows of `width` pixels as they
/// are stored in rows (interleaved when RGB); each chunk, padded with 0 to whole chunks (planar when RGB),
/// goes to `put(cx, compressed)`. `scratch` is reused between calls.
pub(super) fn encode_chunk_row(
    samples: OmeSamples,
    width: usize,
    band: &[u8],
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
    samples: OmeSamples,
    microns_per_pixel: Option<(f64, f64)>,
    levels: Vec<Level>,
    finished: bool,
    /// Scratch buffer: a chunk.
    chunk: Vec<u8>,
}

impl OmeZarrWriter {
    /// Starts a store for a `width` x `height` image at `target`: refuses a path that holds anything but an
    /// OME-Zarr store, then creates the temporary directory with `.zgroup` and every level's `.zarray`.
    pub fn create(
        target: &Path,
        width: usize,
        height: usize,
        samples: OmeSamples,
        microns_per_pixel: Option<(f64, f64)>,
    ) -> Result<OmeZarrWriter, String> {
        if width == 0 || height == 0 {
            return Err(format!("an OME-Zarr image cannot be {width}x{height}"));
        }
        let replaces = match fs::symlink_metadata(target) {
            Err(_) => false,
            Ok(m) if m.is_dir() && crate::source::is_ome_zarr(target) => true,
            Ok(m) if m.is_dir() => {
                return Err("a folder that is not an OME-Zarr store is there; refusing to replace it".into())
            }
            Ok(_) => {
                return Err("something that is not an OME-Zarr store is there; refusing to replace it".into())
            }
        };
        let dir = temporary_path(target, host_name(), std::process::id());
        if dir.exists() {
            // Our own leftover (this process id, this host): a previous store of this run that failed.
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        fs::create_dir(&dir).map_err(|e| format!("{e}; check that its folder exists and is writable"))?;
        let levels: Vec<Level> = pyramid::level_sizes(width, height)
            .into_iter()
            .map(|(width, height)| Level { fill: LevelRows::new(width, height), chunk_row: 0 })
            .collect();
        let writer = OmeZarrWriter {
            target: target.to_path_buf(),
            dir,
            replaces,
            samples,
            microns_per_pixel,
            levels,
            finished: false,
            chunk: Vec::new(),
        };
        write_file(&writer.dir.join(".zgroup"), ZGROUP.as_bytes())?;
        for (i, level) in writer.levels.iter().enumerate() {
            let folder = writer.dir.join(i.to_string());
            fs::create_dir(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
            write_file(
                &folder.join(".zarray"),
                zarray(level.fill.width, level.fill.height, samples).as_bytes(),
            )?;
        }
        Ok(writer)
    }

    /// The sizes of the levels, full resolution first.
    pub fn level_sizes(&self) -> Vec<(usize, usize)> {
        self.levels.iter().map(|l| (l.fill.width, l.fill.height)).collect()
    }

    /// Writes whole rows of 8-bit pixels (interleaved when RGB).
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), String> {
        if matches!(self.samples, OmeSamples::F32) {
            return Err("8-bit rows sent to a float output (a bug in the runner)".into());
        }
        let row_bytes = self.levels[0].fill.width * self.samples.pixel_bytes();
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
        let width = self.levels[0].fill.width;
        if !rows.len().is_multiple_of(width) {
            return Err("a partial row (a bug in the runner)".into());
        }
        for row in rows.chunks_exact(width) {
            self.push_row(row.iter().flat_map(|v| v.to_le_bytes()).collect())?;
        }
        Ok(())
    }

    /// Adds one row to level 0, and the rows it completes to the levels below.
    fn push_row(&mut self, row: Vec<u8>) -> Result<(), String> {
        let mut levels = std::mem::take(&mut self.levels);
        let pushed =
            push_level_row(&mut levels, self.samples, CHUNK, row, |i, level| self.write_chunk_row(i, level));
        self.levels = levels;
        pushed
    }

    /// Compresses and writes the chunks of level `i`'s band (padded with 0 to whole chunks), then empties
    /// the band.
    fn write_chunk_row(&mut self, i: usize, level: &mut Level) -> Result<(), String> {
        let channels = self.samples.channels();
        let Level { fill: LevelRows { width, band, .. }, chunk_row } = level;
        let folder = self.dir.join(i.to_string());
        encode_chunk_row(self.samples, *width, band, &mut self.chunk, |cx, compressed| {
            write_file(&folder.join(chunk_key(channels, *chunk_row, cx)), compressed)
        })?;
        band.clear();
        *chunk_row += 1;
        Ok(())
    }

    /// Writes `.zattrs` (every row must have been written) and puts the store in place.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(LevelRows { rows, height, .. }) =
            self.levels.iter().map(|l| &l.fill).find(|l| l.rows != l.height)
        {
            return Err(format!("only {rows} of {height} rows were written"));
        }
        let attrs = zattrs(self.levels.len(), self.samples, self.microns_per_pixel);
        write_file(&self.dir.join(".zattrs"), attrs.as_bytes())?;
        if self.replaces {
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
            let mut npy = super::super::npy_header(height, width);
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
        assert!(is_ome_zarr_path(Path::new("a/B.OME.ZARR")) && !is_ome_zarr_path(Path::new("b.zarr")));
    }
}
