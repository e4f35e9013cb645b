//! `runner predict --labels NAME`: the predicted mask written into the input OME-Zarr image as the NGFF
//! label image `labels/NAME`, so that viewers (napari-ome-zarr, QuPath) lay it over the image.
//!
//! - The label is a multiscale image in the input's own Zarr version (v2: NGFF 0.4, v3: NGFF 0.5) with
//!   `image-label` metadata: label value 0 (background, transparent) and 1 (foreground, cyan), their
//!   `properties` (`class`), and `source.image` = `../../`. Its arrays are uint8 (0 or 1) with the image's
//!   axes, every axis but y and x of size 1 (the spec: each dimension the image's, or 1).
//! - Label level j is image level j, with its sizes; its datasets carry the image level's own
//!   `coordinateTransformations` (and the image's multiscale-wide ones), so a viewer places each label
//!   level over the image level it matches. The level predicted, `first` (`--level`), is the prediction.
//! - The levels above it (finer, when `first` > 0) are the prediction upsampled by nearest neighbour, as
//!   the NGFF spec asks a label for as many levels as its image: each pixel takes the predicted pixel whose
//!   area holds its centre ([`NearestMap`], from the levels' scales), which handles sizes rounded up or
//!   down. Their rows are made from each predicted row as it arrives and written straight to their levels
//!   ([`OmeZarrWriter::write_level_row`]), so no full-resolution mask is held.
//! - The levels below it are the level above reduced by 2 with the mask rule of the OME-TIFF and OME-Zarr
//!   outputs ([`crate::pyramid::Reduction::Mask`]: a 2x2 block is foreground when at least half of its
//!   pixels are), with the image level's sizes: where the image rounded the half up, the reduction is
//!   taken as it is; where it rounded down, the reduction's last column or row is dropped. An image level
//!   that is neither (not a 2x reduction of the one above) ends the label's levels: what would follow
//!   cannot be written exactly, and a label with fewer levels than its image is refused by validators
//!   (ome-zarr-models, for NGFF 0.5); [`LabelsPlan::note`] says so.
//! - Published with the other outputs: [`LabelsPlan::register`] adds the label to the run's
//!   [`OutputSet`], so that nothing in the input store changes before the set's commit. Into an existing
//!   `labels/` group: the label store `labels/NAME` (an earlier `labels/NAME` image is replaced, as any
//!   output is) and the group's listing (`labels/.zattrs`, or `labels/zarr.json`), rewritten with `NAME`
//!   added and every label it listed kept. A new `labels/` group is one output: its files and the label
//!   built in a temporary folder, renamed to `labels/` at the commit. Nothing else in the store is touched
//!   (`labels/.zgroup` is written only when it is missing). A plan not registered (a library caller)
//!   puts the label in place itself when it finishes, as any store writer does.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::ome_zarr::{write_file, ArrayAxes, NgffVersion, OmeZarrWriter, StoreLayout};
use crate::files::{FileError, OutputSet};
use crate::pyramid::Reduction;
use crate::pyramid::SampleKind as OmeSamples;
use crate::source::{looks_like_ome_zarr_store, multiscales_metadata, ImageSource};

/// The longest label name, in bytes: a folder name on common file systems.
const MAX_NAME_BYTES: usize = 255;

/// Refuses a label name that is not one plain folder name: empty, with a path separator, whitespace or a
/// control character, starting with `.` (`..`, and the writers' temporaries start with `.`), or longer
/// than a folder name can be.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.contains(['/', '\\']) {
        Some("it holds a path separator")
    } else if name.chars().any(char::is_whitespace) {
        Some("it holds whitespace")
    } else if name.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "{name:?} is not a label name ({why}): give one folder name for labels/NAME, without '/', '\\', \
             whitespace or control characters, not starting with '.', at most {MAX_NAME_BYTES} bytes (e.g. \
             --labels segmenter)"
        )),
        None => Ok(()),
    }
}

/// Whether `below` is `above` halved, rounded up or down.
fn halves(above: usize, below: usize) -> bool {
    below == above / 2 || below == above.div_ceil(2)
}

/// The sizes (width, height) of the label's levels: the image's levels `image` from `first` on, as long as
/// each is a 2x reduction of the one above (sizes rounded up or down); and the index of the image level
/// that ended them, if one did.
pub fn label_levels(image: &[(usize, usize)], first: usize) -> (Vec<(usize, usize)>, Option<usize>) {
    let mut levels: Vec<(usize, usize)> = image.get(first).copied().into_iter().collect();
    for (i, &(w, h)) in image.iter().enumerate().skip(first + 1) {
        let &(aw, ah) = levels.last().expect("one level");
        if !(halves(aw, w) && halves(ah, h)) {
            return (levels, Some(i));
        }
        levels.push((w, h));
    }
    (levels, None)
}

/// The scale of axis `axis` in a dataset's `coordinateTransformations`, if it has a usable one.
fn axis_scale(dataset: &Value, axis: usize) -> Option<f64> {
    let transforms = dataset["coordinateTransformations"].as_array()?;
    let scale = transforms.iter().find(|t| t["type"] == "scale")?;
    scale["scale"][axis].as_f64().filter(|s| s.is_finite() && *s > 0.0)
}

/// For each of the `n` pixels along an axis of a finer level, the pixel of the `m` pixels of the predicted
/// level whose area holds its centre: pixel i spans [i, i+1) x `ratio` predicted pixels (the finer level's
/// scale over the predicted level's), so its centre is in predicted pixel floor((i + 0.5) x `ratio`),
/// clamped to the predicted level (a size rounded up puts the last centres past it).
pub fn nearest_indices(n: usize, m: usize, ratio: f64) -> Vec<usize> {
    let last = m.saturating_sub(1);
    (0..n).map(|i| (((i as f64 + 0.5) * ratio).floor().max(0.0) as usize).min(last)).collect()
}

/// Where the pixels of a label level above the predicted one come from: for each of its columns and rows,
/// the predicted column and row whose area holds its centre ([`nearest_indices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearestMap {
    /// The predicted column of each column.
    pub cols: Vec<usize>,
    /// The predicted row of each row.
    pub rows: Vec<usize>,
}

impl NearestMap {
    /// The map of level `level` (sizes `sizes[level]`) onto the predicted level `first` of an image of
    /// `multiscale` (its datasets' scales on axes `y` and `x`). The ratio of two levels' scales gives the
    /// ratio of their pixels; where a level has no usable scale, the ratio of the sizes does. Levels'
    /// translations are left out on purpose: images whose levels are block reductions either have none or
    /// shift each level by half a pixel less half a full-resolution pixel (to centre it on its block), and
    /// in both the block that holds a pixel's centre follows from the scales alone.
    pub fn new(
        multiscale: &Value,
        sizes: &[(usize, usize)],
        level: usize,
        first: usize,
        (y, x): (usize, usize),
    ) -> NearestMap {
        let datasets = &multiscale["datasets"];
        let ratio = |axis: usize, n: usize, m: usize| match (
            axis_scale(&datasets[level], axis),
            axis_scale(&datasets[first], axis),
        ) {
            (Some(fine), Some(coarse)) => fine / coarse,
            _ => m as f64 / n as f64,
        };
        let ((w, h), (pw, ph)) = (sizes[level], sizes[first]);
        NearestMap {
            cols: nearest_indices(w, pw, ratio(x, w, pw)),
            rows: nearest_indices(h, ph, ratio(y, h, ph)),
        }
    }
}

/// The `image-label` metadata (without its version): 0 transparent, 1 cyan.
pub fn image_label() -> Value {
    json!({
        "colors": [
            {"label-value": 0, "rgba": [0, 0, 0, 0]},
            {"label-value": 1, "rgba": [0, 255, 255, 255]},
        ],
        "properties": [
            {"label-value": 0, "class": "background"},
            {"label-value": 1, "class": "foreground", "writer": format!("segmenter runner {}", env!("CARGO_PKG_VERSION"))},
        ],
        "source": {"image": "../../"},
    })
}

/// The `labels` list of a labels group whose list was `existing`, with `name` added (at the end) unless it
/// is there; every entry listed before is kept, in its order.
pub fn labels_list(existing: Option<&Value>, name: &str) -> Vec<Value> {
    let mut list: Vec<Value> = existing.and_then(Value::as_array).cloned().unwrap_or_default();
    if !list.iter().any(|v| v.as_str() == Some(name)) {
        list.push(json!(name));
    }
    list
}

/// The names of the axes of a `multiscales` entry (objects with a `name`, or NGFF 0.3's strings).
fn axis_names(multiscale: &Value) -> Option<Vec<String>> {
    multiscale["axes"]
        .as_array()?
        .iter()
        .map(|a| a.as_str().or_else(|| a["name"].as_str()).map(str::to_string))
        .collect()
}

/// The `multiscales` entry of the label (without a version): the image's axes, and for label level j the
/// path `j` and the image level j's transforms.
fn label_multiscales(image: &Value, name: &str, first: usize, levels: usize) -> Value {
    let datasets: Vec<Value> = (0..levels)
        .map(|j| {
            let mut dataset = json!({"path": j.to_string()});
            let transforms = &image["datasets"][j]["coordinateTransformations"];
            if !transforms.is_null() {
                dataset["coordinateTransformations"] = transforms.clone();
            }
            dataset
        })
        .collect();
    let mut entry = json!({
        "name": name,
        "axes": image["axes"].clone(),
        "datasets": datasets,
        "type": "predicted level; nearest neighbour above it, 2x2 reduction below (mask: foreground from half of the block)",
        "metadata": {"writer": format!("imaging {}", env!("CARGO_PKG_VERSION")), "predicted level": first},
    });
    if !image["coordinateTransformations"].is_null() {
        entry["coordinateTransformations"] = image["coordinateTransformations"].clone();
    }
    entry
}

/// The file of a group's metadata in `version`: `.zattrs` (Zarr v2) or `zarr.json` (v3).
fn group_file(version: NgffVersion) -> &'static str {
    match version {
        NgffVersion::V04 => ".zattrs",
        NgffVersion::V05 => "zarr.json",
    }
}

/// Reads a JSON object from `path`: `None` when there is no file.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>, String> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(format!("{} is not a JSON object; repair or remove it", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Where and how a label is written, checked before any work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelsPlan {
    /// The image's store.
    pub image: PathBuf,
    /// The label's name (its folder in `labels/`).
    pub name: String,
    /// The label store's layout (version, axes, levels, metadata).
    pub layout: StoreLayout,
    /// The image level predicted (label level `first`; the label's levels above it are the prediction
    /// upsampled, those below it reduced).
    pub first: usize,
    /// For each label level above `first`, where its pixels come from in the prediction.
    pub finer: Vec<NearestMap>,
    /// How many levels the image has.
    pub image_levels: usize,
    /// The image level that ended the label's levels (not a 2x reduction), if one did.
    pub stopped_at: Option<usize>,
    /// Where the label is written when it is registered with an output set ([`LabelsPlan::register`]).
    pub registered: Option<LabelsPaths>,
}

/// Where a registered label is written: paths an output set handed out, put in place at its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelsPaths {
    /// Where the label store is written.
    pub store: PathBuf,
    /// Where each of the `labels` group's files (`.zgroup`, `.zattrs`, `zarr.json`) is written, by name;
    /// a file not listed (an existing `.zgroup`) is left as it is.
    pub group_files: Vec<(String, PathBuf)>,
}

impl LabelsPlan {
    /// Plans the label `name` of the prediction of level `first` of the OME-Zarr image `image`: refuses a
    /// bad name, an image that is not an OME-Zarr image, one whose x axis comes before y, a `labels`
    /// group whose metadata is not a JSON object, and a `labels/NAME` that is not an OME-Zarr image.
    pub fn new(image: &Path, name: &str, first: usize) -> Result<LabelsPlan, String> {
        check_name(name)?;
        let not_zarr = || {
            format!(
                "{} is not an OME-Zarr image; --labels writes the mask into an OME-Zarr --image (write an \
                 output NAME.ome.zarr instead)",
                image.display()
            )
        };
        let (format, multiscale) = multiscales_metadata(image).map_err(|_| not_zarr())?;
        let version = NgffVersion::of_zarr_format(format).ok_or_else(not_zarr)?;
        let sizes: Vec<(usize, usize)> = ImageSource::levels(image)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|l| (l.width, l.height))
            .collect();
        if first >= sizes.len() {
            return Err(format!("{} has no level {first}", image.display()));
        }
        let names = axis_names(&multiscale).ok_or_else(not_zarr)?;
        let find = |n: &str| names.iter().position(|a| a == n);
        let (Some(y), Some(x)) = (find("y"), find("x")) else {
            return Err(format!("{} has no axes named y and x", image.display()));
        };
        if x < y {
            return Err(format!(
                "{} stores x before y (axes {}); labels are written for images stored y before x",
                image.display(),
                names.join(",")
            ));
        }
        let (reduced, stopped_at) = label_levels(&sizes, first);
        let finer = (0..first).map(|j| NearestMap::new(&multiscale, &sizes, j, first, (y, x))).collect();
        let mut levels = sizes[..first].to_vec();
        levels.extend(reduced);
        let mut ome = Map::new();
        ome.insert("multiscales".into(), json!([label_multiscales(&multiscale, name, first, levels.len())]));
        ome.insert("image-label".into(), image_label());
        let plan = LabelsPlan {
            image: image.to_path_buf(),
            name: name.to_string(),
            layout: StoreLayout {
                version,
                axes: ArrayAxes { names, y, x, c: None },
                levels,
                ome,
                label_values: true,
                cascade_from: first,
            },
            first,
            finer,
            image_levels: sizes.len(),
            stopped_at,
            registered: None,
        };
        let group = plan.group();
        match fs::symlink_metadata(&group) {
            Ok(m) if !m.is_dir() => {
                return Err(format!(
                    "{} is not a folder; a labels group cannot be written there",
                    group.display()
                ))
            }
            Ok(_) => {
                read_object(&group.join(group_file(version)))?;
            }
            Err(_) => {}
        }
        let target = plan.target();
        if fs::symlink_metadata(&target).is_ok() && !(target.is_dir() && looks_like_ome_zarr_store(&target)) {
            return Err(format!(
                "{} exists and is not an OME-Zarr image; refusing to replace it (choose another --labels name)",
                target.display()
            ));
        }
        Ok(plan)
    }

    /// The `labels` group of the image.
    pub fn group(&self) -> PathBuf {
        self.image.join("labels")
    }

    /// Where the label ends: `labels/NAME` in the image.
    pub fn target(&self) -> PathBuf {
        self.group().join(&self.name)
    }

    /// What the label leaves out of the image's levels, if anything (a line for the user).
    pub fn note(&self) -> Option<String> {
        let stop = self.stopped_at?;
        Some(format!(
            "labels/{} has {stop} of the image's {} levels: image level {stop} is not a 2x reduction of level \
             {}, so it and the levels below are not labelled; the NGFF spec asks a label for all of them, so \
             validators (ome-zarr-models for NGFF 0.5) refuse the image, while napari still overlays it",
            self.name,
            self.image_levels,
            stop - 1
        ))
    }

    /// Registers the label with `files` (as `flag`), so that it goes in place with the other outputs at
    /// the set's commit; see the module docs.
    pub fn register(&mut self, files: &mut OutputSet, flag: &str) -> Result<(), FileError> {
        let group = self.group();
        let names: &[&str] = match self.layout.version {
            NgffVersion::V04 => &[".zgroup", ".zattrs"],
            NgffVersion::V05 => &["zarr.json"],
        };
        let paths = if fs::symlink_metadata(&group).is_ok() {
            let store = files.add_store(flag, &self.target())?;
            let mut group_files = Vec::new();
            for &name in names {
                if name == ".zgroup" && group.join(name).exists() {
                    continue;
                }
                group_files.push((name.to_string(), files.add(flag, &group.join(name))?));
            }
            LabelsPaths { store, group_files }
        } else {
            let folder = files.add_store(flag, &group)?;
            let group_files = names.iter().map(|&name| (name.to_string(), folder.join(name))).collect();
            LabelsPaths { store: folder.join(&self.name), group_files }
        };
        self.registered = Some(paths);
        Ok(())
    }

    /// Starts writing the label: when it is not registered, creates `labels/` if it is missing (removed
    /// again if the label is not finished) and the label's temporary store inside it.
    pub fn start(&self) -> Result<LabelsWriter, String> {
        let group = self.group();
        let created = self.registered.is_none() && !group.exists();
        if created {
            fs::create_dir(&group).map_err(|e| format!("cannot create {}: {e}", group.display()))?;
        }
        let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
        let finer = self.finer.iter().map(|map| (map.clone(), 0)).collect();
        let mut labels = LabelsWriter {
            writer: None,
            plan: self.clone(),
            created,
            done: false,
            finer,
            predicted: 0,
            row: Vec::new(),
        };
        let store = self.registered.as_ref().map_or_else(|| self.target(), |paths| paths.store.clone());
        labels.writer = Some(OmeZarrWriter::create_with(&store, samples, self.layout.clone())?);
        Ok(labels)
    }
}

/// A label being written; see the module docs.
pub struct LabelsWriter {
    writer: Option<OmeZarrWriter>,
    plan: LabelsPlan,
    /// Whether `labels/` was created for this label.
    created: bool,
    done: bool,
    /// For each label level above the predicted one, its map and the next row to write.
    finer: Vec<(NearestMap, usize)>,
    /// How many predicted rows were written.
    predicted: usize,
    /// Scratch buffer: an upsampled row.
    row: Vec<u8>,
}

impl LabelsWriter {
    /// Writes whole rows of the mask (0 or 255; stored as 0 or 1) of the predicted level, and the rows of
    /// the levels above it whose centres fall in them.
    pub fn write_mask(&mut self, rows: &[u8]) -> Result<(), String> {
        let writer = self.writer.as_mut().ok_or("the label was finished (a bug in the runner)")?;
        let width = self.plan.layout.levels[self.plan.first].0;
        if !rows.len().is_multiple_of(width) {
            return Err("a partial row (a bug in the runner)".into());
        }
        for predicted in rows.chunks_exact(width) {
            for (level, (map, next)) in self.finer.iter_mut().enumerate() {
                while map.rows.get(*next).is_some_and(|&k| k <= self.predicted) {
                    self.row.clear();
                    self.row.extend(map.cols.iter().map(|&c| predicted[c]));
                    writer.write_level_row(level, &self.row)?;
                    *next += 1;
                }
            }
            writer.write_pixels(predicted)?;
            self.predicted += 1;
        }
        Ok(())
    }

    /// Puts the label in place (every row must have been written), then lists it in the `labels` group.
    pub fn finish(mut self) -> Result<(), String> {
        let writer = self.writer.take().ok_or("the label was finished (a bug in the runner)")?;
        writer.finish()?;
        self.done = true;
        let version = self.plan.layout.version;
        let group = self.plan.group();
        let listing = group.join(group_file(version));
        let mut attrs = read_object(&listing)?.unwrap_or_default();
        let mut ome = match version {
            NgffVersion::V04 => Map::new(),
            NgffVersion::V05 => match attrs.get_mut("attributes").and_then(|a| a.as_object_mut()) {
                Some(attributes) => {
                    let mut ome = match attributes.remove("ome") {
                        Some(Value::Object(ome)) => ome,
                        _ => Map::new(),
                    };
                    ome.remove("version");
                    ome
                }
                None => Map::new(),
            },
        };
        let other = match version {
            NgffVersion::V04 => {
                let list = labels_list(attrs.get("labels"), &self.plan.name);
                attrs.remove("labels");
                ome.insert("labels".into(), Value::Array(list));
                attrs
            }
            NgffVersion::V05 => {
                let list = labels_list(ome.get("labels"), &self.plan.name);
                ome.insert("labels".into(), Value::Array(list));
                match attrs.remove("attributes") {
                    Some(Value::Object(attributes)) => attributes,
                    _ => Map::new(),
                }
            }
        };
        for (name, text) in version.group_files(ome, other) {
            match &self.plan.registered {
                Some(paths) => {
                    // Written where the output set said; put in place at its commit.
                    if let Some((_, path)) = paths.group_files.iter().find(|(n, _)| n == name) {
                        write_file(path, text.as_bytes())?;
                    }
                }
                // An existing `.zgroup` is left as it is.
                None if name == ".zgroup" && group.join(name).exists() => {}
                None => write_file(&group.join(name), text.as_bytes())?,
            }
        }
        Ok(())
    }
}

impl Drop for LabelsWriter {
    /// An unfinished label removes its temporary store, and `labels/` when it was created for it.
    fn drop(&mut self) {
        drop(self.writer.take());
        if !self.done && self.created {
            let _ = fs::remove_dir(self.plan.group());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_folder_name() {
        let longest = "x".repeat(255);
        for good in ["segmenter", "cells_v2", "a.b", "é", "a-b", longest.as_str()] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let too_long = "x".repeat(256);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "/abs", "a\\b", "nul\0", " ", "cells v2", "a\nb", "\t",
            "\u{7f}", &too_long,
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains("is not a label name (") && !err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn label_levels_take_halvings_rounded_either_way_and_stop_at_anything_else() {
        // Rounded up (97 -> 49), down (49 -> 24), and up again (75 -> 38 -> 19).
        let image = [(97, 75), (49, 38), (24, 19), (12, 9)];
        assert_eq!(label_levels(&image, 0), (image.to_vec(), None));
        assert_eq!(label_levels(&image, 2), (vec![(24, 19), (12, 9)], None));
        assert_eq!(label_levels(&image, 3), (vec![(12, 9)], None));
        // A 4x step, a level of the same size, a level larger than the one above: each ends the label.
        assert_eq!(label_levels(&[(100, 80), (50, 40), (12, 10)], 0), (vec![(100, 80), (50, 40)], Some(2)));
        assert_eq!(label_levels(&[(100, 80), (100, 80)], 0), (vec![(100, 80)], Some(1)));
        assert_eq!(label_levels(&[(100, 80), (51, 40)], 0), (vec![(100, 80)], Some(1)));
        // One axis halved, the other not: not a 2x reduction.
        assert_eq!(label_levels(&[(100, 80), (50, 80)], 0), (vec![(100, 80)], Some(1)));
        // A side of 1 stays 1.
        assert_eq!(label_levels(&[(3, 1), (2, 1), (1, 1)], 0), (vec![(3, 1), (2, 1), (1, 1)], None));
    }

    #[test]
    fn nearest_indices_take_the_pixel_holding_each_centre_and_clamp_at_the_end() {
        // 2x: pixels 0,1 -> 0, 2,3 -> 1; a size rounded up (5 over 3) keeps the last.
        assert_eq!(nearest_indices(5, 3, 0.5), [0, 0, 1, 1, 2]);
        // A size rounded down (97 over 24 at 4x): the last centre (96.5 / 4 = 24.1) is past it: clamped.
        let cols = nearest_indices(97, 24, 0.25);
        assert_eq!((cols[0], cols[3], cols[4], cols[95], cols[96]), (0, 0, 1, 23, 23));
        // The ratio from the sizes where there are no scales.
        let multiscale = json!({"datasets": [{"path": "0"}, {"path": "1"}]});
        let map = NearestMap::new(&multiscale, &[(4, 6), (2, 3)], 0, 1, (0, 1));
        assert_eq!(map, NearestMap { cols: vec![0, 0, 1, 1], rows: vec![0, 0, 1, 1, 2, 2] });
        // Scales (y 3x, x 2x) win over sizes.
        let multiscale = json!({"datasets": [
            {"coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]},
            {"coordinateTransformations": [{"type": "scale", "scale": [3.0, 2.0]}]},
        ]});
        let map = NearestMap::new(&multiscale, &[(4, 6), (2, 3)], 0, 1, (0, 1));
        assert_eq!(map, NearestMap { cols: vec![0, 0, 1, 1], rows: vec![0, 0, 0, 1, 1, 1] });
    }

    #[test]
    fn the_list_keeps_every_label_and_adds_the_name_once() {
        let existing = json!(["a", "b/0"]);
        assert_eq!(labels_list(Some(&existing), "c"), vec![json!("a"), json!("b/0"), json!("c")]);
        assert_eq!(labels_list(Some(&existing), "a"), vec![json!("a"), json!("b/0")]);
        assert_eq!(labels_list(None, "c"), vec![json!("c")]);
        assert_eq!(labels_list(Some(&json!("not a list")), "c"), vec![json!("c")]);
    }

    #[test]
    fn the_label_metadata_has_colours_for_both_classes_and_the_source() {
        let meta = image_label();
        let values: Vec<i64> =
            meta["colors"].as_array().unwrap().iter().map(|c| c["label-value"].as_i64().unwrap()).collect();
        assert_eq!(values, [0, 1]);
        assert_eq!(meta["colors"][0]["rgba"], json!([0, 0, 0, 0]));
        assert_eq!(meta["source"]["image"], "../../");
        assert_eq!(meta["properties"][1]["class"], "foreground");
    }
}
