//! One OME-Zarr image written by many processes, on many machines, with no locks: each process ("share")
//! writes the level-0 chunks of its own rows straight into the store, and [`finalize`] then builds the
//! lower levels and the metadata, so that the store is the tree one [`super::ome_zarr::OmeZarrWriter`]
//! writes, file for file.
//!
//! - Share `k` of `n` holds the chunk rows `C*k/n .. C*(k+1)/n` of the `C` chunk rows of level 0
//!   ([`share_rows`]): whole chunks, so no two shares ever write the same file. A share may be empty.
//! - Every share writes the same plan ([`SharePlan`], `.segmenter-shares/plan.json`): a store holding
//!   another plan is refused, so shares of two different runs never mix. When its chunks are written a
//!   share writes its done marker (`.segmenter-shares/done-K`, holding the plan).
//! - Every file is written through a temporary named after this host and process, renamed into place: a
//!   share killed and rerun rewrites its own chunks whole. A share removes only the temporaries of its own
//!   chunks left by processes of its own host that are gone: on shared storage another node's processes
//!   cannot be seen, so another host's temporaries are never touched by a share.
//! - Until [`finalize`] the store has no `.zgroup` or `.zattrs`: readers do not take it for an image.
//!   [`finalize`] refuses while a share is not done (naming them) and changes nothing then.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::ome_zarr::{chunk_key, encode_chunk_row, write_file, zarray, zattrs, CHUNK, ZGROUP};
use crate::files::{host_name, process_running, temporary_owner};
use crate::pyramid::{self, Reduction};
use crate::pyramid::{push_level_row, LevelRows, SampleKind as OmeSamples};

/// The folder of a store that holds the plan and the done markers until [`finalize`].
pub use crate::files::SHARES_DIR;
/// The NGFF version of the stores written in shares (Zarr v2).
pub const NGFF_VERSION: &str = "0.4";

/// What can go wrong writing or finalizing a store in shares; each one line naming the store.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The path holds something that is not a store of shares.
    #[error("{store}: {reason}")]
    NotShares { store: PathBuf, reason: String },
    /// The store was started by a run with other parameters.
    #[error("{store} holds the shares of another prediction (its {field} is {theirs}, this run's {ours}); remove the store, or run every share with the same parameters")]
    PlanMismatch { store: PathBuf, field: String, theirs: String, ours: String },
    /// Some shares have not written their done marker.
    #[error("{store}: {} not done; run {} with the same parameters, then finalize again", missing_list(.missing, *.count), run_list(.missing, *.count))]
    Missing { store: PathBuf, missing: Vec<usize>, count: usize },
    /// Reading or writing a file failed.
    #[error("{store}: {reason}")]
    Io { store: PathBuf, reason: String },
}

fn missing_list(missing: &[usize], count: usize) -> String {
    let names: Vec<String> = missing.iter().map(|k| format!("{k}/{count}")).collect();
    match names.as_slice() {
        [one] => format!("share {one} is"),
        [rest @ .., last] => format!("shares {} and {last} are", rest.join(", ")),
        [] => "every share is".into(),
    }
}

fn run_list(missing: &[usize], count: usize) -> String {
    let names: Vec<String> = missing.iter().map(|k| format!("--shard {k}/{count}")).collect();
    match names.as_slice() {
        [rest @ .., last] if !rest.is_empty() => format!("them with {} and {last}", rest.join(", ")),
        _ => format!("it with {}", names.join("")),
    }
}

/// The rows of level 0 that share `index` of `count` writes: whole chunk rows (the last one may be
/// partial), contiguous, the shares in order covering `0..height` once. Empty when there are more shares
/// than chunk rows.
pub fn share_rows(height: usize, index: usize, count: usize) -> Range<usize> {
    let chunk_rows = height.div_ceil(CHUNK) as u128;
    let bound = |k: usize| (chunk_rows * k as u128 / count.max(1) as u128) as usize;
    (bound(index) * CHUNK).min(height)..(bound(index + 1) * CHUNK).min(height)
}

/// What every share of one store must agree on: the prediction (image, level, model) and the store
/// (size, samples, pixel size, format, share count).
#[derive(Debug, Clone, PartialEq)]
pub struct SharePlan {
    /// The input, as an absolute path.
    pub image: String,
    /// The input's size in bytes (0 for a folder).
    pub image_bytes: u64,
    /// The level of the input predicted.
    pub level: usize,
    /// A fingerprint of the model file.
    pub model: String,
    /// How many shares write the store.
    pub shares: usize,
    /// Level 0's width and height.
    pub width: usize,
    pub height: usize,
    /// What a pixel holds.
    pub samples: OmeSamples,
    /// The pixel size, when known.
    pub microns_per_pixel: Option<(f64, f64)>,
    /// The NGFF version written ([`NGFF_VERSION`]).
    pub ngff: String,
}

impl SharePlan {
    /// The plan as the JSON object stored in the plan file.
    fn json(&self) -> serde_json::Value {
        let samples = match self.samples {
            OmeSamples::U8 { channels, rule } => serde_json::json!({
                "type": "uint8",
                "channels": channels,
                "reduction": match rule { Reduction::Mean => "mean", Reduction::Mask => "mask" },
            }),
            OmeSamples::F32 => serde_json::json!({"type": "float32", "channels": 1, "reduction": "mean"}),
        };
        serde_json::json!({
            "image": self.image,
            "image bytes": self.image_bytes,
            "level": self.level,
            "model": self.model,
            "shares": self.shares,
            "size": format!("{}x{}", self.width, self.height),
            "samples": samples,
            "microns per pixel": self.microns_per_pixel.map(|(x, y)| vec![x, y]),
            "ngff": self.ngff,
        })
    }

    /// The text of the plan file.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.json()).unwrap_or_default() + "\n"
    }

    /// Reads a plan file's text back.
    fn parse(text: &str) -> Option<SharePlan> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let (width, height) = v["size"].as_str()?.split_once('x')?;
        let samples = &v["samples"];
        let samples = match samples["type"].as_str()? {
            "float32" => OmeSamples::F32,
            "uint8" => OmeSamples::U8 {
                channels: samples["channels"].as_u64()? as usize,
                rule: match samples["reduction"].as_str()? {
                    "mask" => Reduction::Mask,
                    _ => Reduction::Mean,
                },
            },
            _ => return None,
        };
        let mpp = &v["microns per pixel"];
        Some(SharePlan {
            image: v["image"].as_str()?.to_string(),
            image_bytes: v["image bytes"].as_u64()?,
            level: v["level"].as_u64()? as usize,
            model: v["model"].as_str()?.to_string(),
            shares: v["shares"].as_u64()? as usize,
            width: width.parse().ok()?,
            height: height.parse().ok()?,
            samples,
            microns_per_pixel: match mpp.as_array() {
                Some(xy) => Some((xy.first()?.as_f64()?, xy.get(1)?.as_f64()?)),
                None => None,
            },
            ngff: v["ngff"].as_str()?.to_string(),
        })
    }

    /// The first field in which `self` and `other` differ, with both values.
    fn difference(&self, other: &SharePlan) -> Option<(String, String, String)> {
        let (ours, theirs) = (self.json(), other.json());
        let (ours, theirs) = (ours.as_object()?, theirs.as_object()?);
        ours.iter().find_map(|(key, value)| {
            let there = theirs.get(key).cloned().unwrap_or(serde_json::Value::Null);
            (there != *value).then(|| (key.clone(), there.to_string(), value.to_string()))
        })
    }
}

fn io(store: &Path) -> impl Fn(String) -> ShareError + '_ {
    move |reason| ShareError::Io { store: store.to_path_buf(), reason }
}

fn plan_path(store: &Path) -> PathBuf {
    store.join(SHARES_DIR).join("plan.json")
}

fn marker_path(store: &Path, index: usize) -> PathBuf {
    store.join(SHARES_DIR).join(format!("done-{index}"))
}

/// The chunk row of a level-0 chunk key (`Y.X`, or `0.Y.X` with channels).
fn key_chunk_row(key: &str, channels: usize) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let y = if channels == 1 { parts.first()? } else { parts.get(1)? };
    (parts.len() == if channels == 1 { 2 } else { 3 }).then_some(())?;
    y.parse().ok()
}

/// A temporary's owner and the file it is the temporary of: (`name`, host, pid).
fn temporary_of(file_name: &str) -> Option<(&str, &str, u32)> {
    let (name, _) = file_name.strip_prefix('.')?.rsplit_once(".segmenter-")?;
    let (host, pid) = temporary_owner(file_name, name)?;
    Some((name, host, pid))
}

/// The level-0 chunks of one share, being written; see the module docs.
pub struct ShareWriter {
    store: PathBuf,
    plan: SharePlan,
    index: usize,
    /// The rows this share writes, and the next one expected.
    rows: Range<usize>,
    next_row: usize,
    /// The rows of the chunk row being filled, as stored, and its index.
    band: Vec<u8>,
    chunk_row: usize,
    scratch: Vec<u8>,
}

impl ShareWriter {
    /// Opens share `index` of the store at `store`: creates the store if missing, writes the plan or checks
    /// the one there, removes this share's done marker and the temporaries of this share's chunks left by
    /// gone processes of this host.
    pub fn create(store: &Path, plan: &SharePlan, index: usize) -> Result<ShareWriter, ShareError> {
        let refuse =
            |reason: &str| ShareError::NotShares { store: store.to_path_buf(), reason: reason.into() };
        if plan.ngff != NGFF_VERSION {
            return Err(refuse(&format!(
                "NGFF {} cannot be written in shares; use {NGFF_VERSION}",
                plan.ngff
            )));
        }
        if index >= plan.shares || plan.width == 0 || plan.height == 0 {
            return Err(refuse(&format!(
                "share {index} of {} of a {}x{} image",
                plan.shares, plan.width, plan.height
            )));
        }
        match fs::symlink_metadata(store) {
            Err(_) => {}
            Ok(m) if !m.is_dir() => {
                return Err(refuse(
                    "something that is not an OME-Zarr store is there; refusing to replace it",
                ))
            }
            Ok(_) if store.join(SHARES_DIR).is_dir() => {}
            Ok(_) if store.join(".zattrs").exists() || store.join(".zgroup").exists() => {
                return Err(refuse(
                    "a finished OME-Zarr image is there; remove it to predict it again in shares",
                ))
            }
            Ok(_) => {
                let foreign = fs::read_dir(store)
                    .map_err(|e| io(store)(e.to_string()))?
                    .flatten()
                    .any(|e| e.file_name() != "0");
                if foreign {
                    return Err(refuse(
                        "a folder that is not an OME-Zarr store is there; refusing to replace it",
                    ));
                }
            }
        }
        let shares = store.join(SHARES_DIR);
        fs::create_dir_all(&shares)
            .map_err(|e| io(store)(format!("cannot create {}: {e}", shares.display())))?;
        fs::create_dir_all(store.join("0")).map_err(|e| io(store)(format!("cannot create level 0: {e}")))?;
        check_or_write_plan(store, plan)?;
        let marker = marker_path(store, index);
        if marker.exists() {
            fs::remove_file(&marker)
                .map_err(|e| io(store)(format!("cannot remove {}: {e}", marker.display())))?;
        }
        write_file(&store.join("0/.zarray"), zarray(plan.width, plan.height, plan.samples).as_bytes())
            .map_err(io(store))?;
        let rows = share_rows(plan.height, index, plan.shares);
        let writer = ShareWriter {
            store: store.to_path_buf(),
            plan: plan.clone(),
            index,
            next_row: rows.start,
            chunk_row: rows.start / CHUNK,
            rows,
            band: Vec::new(),
            scratch: Vec::new(),
        };
        writer.remove_own_stale_temporaries();
        Ok(writer)
    }

    /// The rows of level 0 this share writes.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// Removes the temporaries of this share's chunks whose writer was a process of this host that is gone.
    fn remove_own_stale_temporaries(&self) {
        let own_rows = self.rows.start / CHUNK..self.rows.end.div_ceil(CHUNK);
        let channels = self.plan.samples.channels();
        let Ok(entries) = fs::read_dir(self.store.join("0")) else { return };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some((key, host, pid)) = file_name.to_str().and_then(temporary_of) else { continue };
            let ours = key_chunk_row(key, channels).is_some_and(|row| own_rows.contains(&row));
            if ours && host == host_name() && (pid == std::process::id() || !process_running(pid)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes the next whole rows of 8-bit pixels (interleaved when RGB) of this share's rows.
    pub fn write_pixels(&mut self, rows: &[u8]) -> Result<(), ShareError> {
        if matches!(self.plan.samples, OmeSamples::F32) {
            return Err(io(&self.store)("8-bit rows sent to a float output (a bug in the runner)".into()));
        }
        self.push(rows)
    }

    /// Writes the next whole rows of float32 values of this share's rows.
    pub fn write_values(&mut self, rows: &[f32]) -> Result<(), ShareError> {
        if !matches!(self.plan.samples, OmeSamples::F32) {
            return Err(io(&self.store)("float rows sent to an 8-bit output (a bug in the runner)".into()));
        }
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(&bytes)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ShareError> {
        let row_bytes = self.plan.width * self.plan.samples.pixel_bytes();
        let count = bytes.len() / row_bytes;
        if !bytes.len().is_multiple_of(row_bytes) || self.next_row + count > self.rows.end {
            return Err(io(&self.store)("rows outside the share (a bug in the runner)".into()));
        }
        for row in bytes.chunks_exact(row_bytes) {
            self.band.extend_from_slice(row);
            self.next_row += 1;
            if self.band.len() == CHUNK * row_bytes || self.next_row == self.rows.end {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the chunks of the chunk row being filled.
    fn flush(&mut self) -> Result<(), ShareError> {
        let (channels, chunk_row) = (self.plan.samples.channels(), self.chunk_row);
        let folder = self.store.join("0");
        encode_chunk_row(
            self.plan.samples,
            self.plan.width,
            &self.band,
            false,
            &mut self.scratch,
            |cx, bytes| write_file(&folder.join(chunk_key(channels, chunk_row, cx)), bytes),
        )
        .map_err(io(&self.store))?;
        self.band.clear();
        self.chunk_row += 1;
        Ok(())
    }

    /// Checks that every row of the share was written and writes its done marker.
    pub fn finish(self) -> Result<(), ShareError> {
        if self.next_row != self.rows.end {
            let (done, rows) = (self.next_row - self.rows.start, self.rows.len());
            return Err(io(&self.store)(format!("only {done} of the share's {rows} rows were written")));
        }
        write_file(&marker_path(&self.store, self.index), self.plan.text().as_bytes())
            .map_err(io(&self.store))
    }
}

/// Writes `plan` as the store's plan, or checks it against the one there.
fn check_or_write_plan(store: &Path, plan: &SharePlan) -> Result<(), ShareError> {
    let path = plan_path(store);
    if !path.exists() {
        write_file(&path, plan.text().as_bytes()).map_err(io(store))?;
    }
    // Read back even after writing: a share of another run may have written its plan at the same time.
    check_plan(store, plan)
}

/// Reads the store's plan.
fn read_plan(store: &Path) -> Result<SharePlan, ShareError> {
    let path = plan_path(store);
    let text =
        fs::read_to_string(&path).map_err(|e| io(store)(format!("cannot read {}: {e}", path.display())))?;
    SharePlan::parse(&text).ok_or_else(|| ShareError::NotShares {
        store: store.to_path_buf(),
        reason: format!(
            "{} is not a plan of shares; remove the store and run the shares again",
            path.display()
        ),
    })
}

fn check_plan(store: &Path, plan: &SharePlan) -> Result<(), ShareError> {
    let there = read_plan(store)?;
    match plan.difference(&there) {
        None => Ok(()),
        Some((field, theirs, ours)) => {
            Err(ShareError::PlanMismatch { store: store.to_path_buf(), field, theirs, ours })
        }
    }
}

/// What [`finalize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalized {
    /// The levels and the metadata were written: this many levels.
    Levels(usize),
    /// The store had been finalized before; nothing was changed.
    AlreadyFinal,
}

/// Checks, without changing anything, that `store` can be finalized: every share done under the store's
/// plan (or the store already final).
pub fn check_finalize(store: &Path) -> Result<Option<SharePlan>, ShareError> {
    if fs::symlink_metadata(store).is_err() {
        return Err(ShareError::NotShares {
            store: store.to_path_buf(),
            reason:
                "it does not exist; give the --output store the shares wrote (predict it with --shard K/N \
                     first)"
                    .into(),
        });
    }
    if !store.join(SHARES_DIR).is_dir() {
        if store.join(".zattrs").is_file() && store.join(".zgroup").is_file() {
            return Ok(None);
        }
        return Err(ShareError::NotShares {
            store: store.to_path_buf(),
            reason: "not an OME-Zarr store written in shares (no .segmenter-shares folder); predict it with --shard K/N first".into(),
        });
    }
    let plan = read_plan(store)?;
    let text = plan.text();
    let missing: Vec<usize> = (0..plan.shares)
        .filter(|&k| fs::read_to_string(marker_path(store, k)).map_or(true, |done| done != text))
        .collect();
    if !missing.is_empty() {
        return Err(ShareError::Missing { store: store.to_path_buf(), missing, count: plan.shares });
    }
    Ok(Some(plan))
}

/// One level below level 0 being filled, with the index of its chunk row.
struct Level {
    fill: LevelRows,
    chunk_row: usize,
}

impl AsMut<LevelRows> for Level {
    fn as_mut(&mut self) -> &mut LevelRows {
        &mut self.fill
    }
}

/// Finalizes `store` once every share is done ([`check_finalize`]): reads level 0 one chunk row at a time,
/// writes the lower levels through the same reductions as a single run, then `.zgroup` and `.zattrs`, and
/// removes the plan and the markers (and temporaries left by killed shares: every share is done, so no
/// writer is left). Finalizing a final store changes nothing.
pub fn finalize(store: &Path) -> Result<Finalized, ShareError> {
    let Some(plan) = check_finalize(store)? else { return Ok(Finalized::AlreadyFinal) };
    match plan.ngff.as_str() {
        NGFF_VERSION => {}
        other => {
            return Err(ShareError::NotShares {
                store: store.to_path_buf(),
                reason: format!("NGFF {other} cannot be finalized by this version"),
            })
        }
    }
    let err = io(store);
    let (samples, width, height) = (plan.samples, plan.width, plan.height);
    let channels = samples.channels();
    let sizes = pyramid::level_sizes(width, height);
    for (i, &(w, h)) in sizes.iter().enumerate().skip(1) {
        let folder = store.join(i.to_string());
        fs::create_dir_all(&folder).map_err(|e| err(format!("cannot create {}: {e}", folder.display())))?;
        write_file(&folder.join(".zarray"), zarray(w, h, samples).as_bytes()).map_err(&err)?;
    }
    let mut levels: Vec<Level> =
        sizes.iter().map(|&(w, h)| Level { fill: LevelRows::new(w, h), chunk_row: 0 }).collect();
    let sample = samples.pixel_bytes() / channels;
    let pixel = samples.pixel_bytes();
    let plane = CHUNK * CHUNK * sample;
    let mut scratch = Vec::new();
    let mut rows = Vec::new();
    for chunk_row in 0..height.div_ceil(CHUNK) {
        let count = CHUNK.min(height - chunk_row * CHUNK);
        rows.clear();
        rows.resize(count * width * pixel, 0);
        for (cx, x0) in (0..width).step_by(CHUNK).enumerate() {
            let path = store.join("0").join(chunk_key(channels, chunk_row, cx));
            let bytes = fs::read(&path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            let chunk = zstd::bulk::decompress(&bytes, channels * plane)
                .ok()
                .filter(|c| c.len() == channels * plane)
                .ok_or_else(|| {
                    err(format!(
                        "{} is not a chunk of this store; run its share again (--shard {}/{})",
                        path.display(),
                        shard_of(chunk_row, &plan),
                        plan.shares
                    ))
                })?;
            let used = (width - x0).min(CHUNK);
            for y in 0..count {
                let dst = &mut rows[(y * width + x0) * pixel..][..used * pixel];
                if channels == 1 {
                    dst.copy_from_slice(&chunk[y * CHUNK * sample..][..used * sample]);
                } else {
                    for (x, px) in dst.chunks_exact_mut(pixel).enumerate() {
                        for (c, s) in px.chunks_exact_mut(sample).enumerate() {
                            s.copy_from_slice(&chunk[c * plane + (y * CHUNK + x) * sample..][..sample]);
                        }
                    }
                }
            }
        }
        for row in rows.chunks_exact(width * pixel) {
            push_level_row(&mut levels, samples, CHUNK, row.to_vec(), |i, level| {
                let Level { fill: LevelRows { width, band, .. }, chunk_row } = level;
                if i > 0 {
                    let folder = store.join(i.to_string());
                    encode_chunk_row(samples, *width, band, false, &mut scratch, |cx, bytes| {
                        write_file(&folder.join(chunk_key(channels, *chunk_row, cx)), bytes)
                    })?;
                }
                band.clear();
                *chunk_row += 1;
                Ok(())
            })
            .map_err(&err)?;
        }
    }
    write_file(&store.join(".zgroup"), ZGROUP.as_bytes()).map_err(&err)?;
    write_file(&store.join(".zattrs"), zattrs(sizes.len(), samples, plan.microns_per_pixel).as_bytes())
        .map_err(&err)?;
    // The metadata is in place: from here the store is the image, and a repeated finalize finds it final.
    fs::remove_dir_all(store.join(SHARES_DIR))
        .map_err(|e| err(format!("cannot remove {SHARES_DIR}: {e}")))?;
    remove_temporaries(&store.join("0"));
    Ok(Finalized::Levels(sizes.len()))
}

/// The share that writes level 0's chunk row `chunk_row`.
fn shard_of(chunk_row: usize, plan: &SharePlan) -> usize {
    (0..plan.shares)
        .find(|&k| share_rows(plan.height, k, plan.shares).contains(&(chunk_row * CHUNK)))
        .unwrap_or(0)
}

/// Removes every temporary in `folder` (best effort).
fn remove_temporaries(folder: &Path) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().and_then(temporary_of).is_some() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalize_on_a_missing_path_says_it_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_finalize(&dir.path().join("nothing.ome.zarr")).unwrap_err().to_string();
        assert!(err.contains("it does not exist") && !err.contains("no .segmenter-shares"), "{err}");
    }

    #[test]
    fn shares_are_whole_chunk_rows_that_cover_the_image_once() {
        assert_eq!(share_rows(1500, 0, 2), 0..512);
        assert_eq!(share_rows(1500, 1, 2), 512..1500);
        assert_eq!(share_rows(1500, 0, 1), 0..1500);
        // More shares than chunk rows: some are empty.
        assert_eq!(share_rows(700, 0, 4), 0..0);
        assert_eq!(share_rows(700, 1, 4), 0..512);
        assert_eq!(share_rows(700, 3, 4), 512..700);
        for height in [1, 511, 512, 513, 1024, 1800, 5000, 70_001] {
            for count in 1..12 {
                let mut next = 0;
                for k in 0..count {
                    let rows = share_rows(height, k, count);
                    assert_eq!(rows.start, next, "{height} {k}/{count}");
                    assert!(rows.start.is_multiple_of(CHUNK) || rows.is_empty());
                    assert!(rows.end.is_multiple_of(CHUNK) || rows.end == height);
                    let chunks = rows.end.div_ceil(CHUNK) - rows.start / CHUNK;
                    // Shares differ by at most one chunk row.
                    assert!(chunks.abs_diff(height.div_ceil(CHUNK) / count) <= 1, "{height} {k}/{count}");
                    next = rows.end;
                }
                assert_eq!(next, height);
            }
        }
    }

    #[test]
    fn the_plan_reads_back_and_names_what_differs() {
        let plan = SharePlan {
            image: "/data/slide.svs".into(),
            image_bytes: 12345,
            level: 1,
            model: "fnv 0123456789abcdef".into(),
            shares: 4,
            width: 1500,
            height: 1800,
            samples: OmeSamples::U8 { channels: 3, rule: Reduction::Mean },
            microns_per_pixel: Some((0.25, 0.5)),
            ngff: NGFF_VERSION.into(),
        };
        assert_eq!(SharePlan::parse(&plan.text()), Some(plan.clone()));
        let other = SharePlan { shares: 3, microns_per_pixel: None, ..plan.clone() };
        assert_eq!(SharePlan::parse(&other.text()), Some(other.clone()));
        let (field, theirs, ours) = plan.difference(&other).unwrap();
        assert_eq!((field.as_str(), theirs.as_str(), ours.as_str()), ("shares", "3", "4"));
        let other = SharePlan { microns_per_pixel: None, ..plan.clone() };
        let (field, theirs, ours) = plan.difference(&other).unwrap();
        assert_eq!(
            (field.as_str(), theirs.as_str(), ours.as_str()),
            ("microns per pixel", "null", "[0.25,0.5]")
        );
        assert_eq!(plan.difference(&plan.clone()), None);
    }

    #[test]
    fn missing_shares_are_named_with_the_flags_that_run_them() {
        let e = ShareError::Missing { store: "o.ome.zarr".into(), missing: vec![1, 3], count: 4 };
        assert_eq!(
            e.to_string(),
            "o.ome.zarr: shares 1/4 and 3/4 are not done; run them with --shard 1/4 and --shard 3/4 with the \
             same parameters, then finalize again"
        );
        let e = ShareError::Missing { store: "o.ome.zarr".into(), missing: vec![0, 1, 2], count: 3 };
        assert!(e.to_string().contains("shares 0/3, 1/3 and 2/3 are not done; run them with --shard 0/3, --shard 1/3 and --shard 2/3"), "{e}");
        let e = ShareError::Missing { store: "o.ome.zarr".into(), missing: vec![2], count: 3 };
        assert!(e.to_string().contains("share 2/3 is not done; run it with --shard 2/3 with"), "{e}");
    }

    #[test]
    fn temporaries_name_their_chunk_and_owner() {
        let name = ".3.1.segmenter-node-7-4242.tmp";
        assert_eq!(temporary_of(name), Some(("3.1", "node-7", 4242)));
        assert_eq!(key_chunk_row("3.1", 1), Some(3));
        assert_eq!(key_chunk_row("0.5.2", 3), Some(5));
        assert_eq!(key_chunk_row("0.5.2", 1), None);
        assert_eq!(temporary_of("3.1"), None);
    }
}
