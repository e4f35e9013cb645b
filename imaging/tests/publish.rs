//! Every output goes in place at the output set's commit, OME-Zarr stores and a label written into an
//! input store included: a failure of a later output before the commit leaves the earlier store, the
//! earlier files and the input store exactly as they were, with no temporary left.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use imaging::files::OutputSet;
use imaging::pyramid::Reduction;
use imaging::sink::ome_tiff::OmeSamples;
use imaging::sink::ome_zarr::OmeZarrWriter;
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::source::{Channels, ImageSource};

const MASK: OmeSamples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };

/// Every file under `dir` (recursively) with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A `width` x `height` store of `value` at `path`, written as a single run writes it.
fn store(path: &Path, width: usize, height: usize, value: u8) {
    let mut set = OutputSet::new(&[]).unwrap();
    let written = set.add_store("--output", path).unwrap();
    let mut writer = OmeZarrWriter::create(&written, width, height, MASK, None).unwrap();
    writer.write_pixels(&vec![value; width * height]).unwrap();
    writer.finish().unwrap();
    assert!(!path.exists(), "a store is not in place before the commit");
    set.commit().unwrap();
}

#[test]
fn a_late_failure_before_the_commit_leaves_earlier_stores_files_and_the_input_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (40, 30);
    let input = dir.path().join("input.ome.zarr");
    let output = dir.path().join("mask.ome.zarr");
    let overlay = dir.path().join("overlay.png");
    // The late output's folder is elsewhere: it is broken on purpose below.
    let elsewhere = tempfile::tempdir().unwrap();
    let late = elsewhere.path().join("late");
    store(&input, width, height, 9);
    store(&output, width, height, 255);
    fs::write(&overlay, b"the earlier overlay").unwrap();
    fs::create_dir(&late).unwrap();
    let before = tree(dir.path());

    // A run: the label into the input store, a new store, a file, and a late output that fails.
    let mut set = OutputSet::new(&[("--image", &input)]).unwrap();
    let mut labels = LabelsPlan::new(&input, "pred", 0).unwrap();
    labels.register(&mut set, "--labels").unwrap();
    let written = set.add_store("--output", &output).unwrap();
    let overlay_written = set.add("--overlay", &overlay).unwrap();
    let late_written = set.add("--geojson", &late.join("regions.geojson")).unwrap();

    let mut writer = OmeZarrWriter::create(&written, width, height, MASK, None).unwrap();
    writer.write_pixels(&vec![0; width * height]).unwrap();
    writer.finish().unwrap();
    let mut label = labels.start().unwrap();
    label.write_mask(&vec![255; width * height]).unwrap();
    label.finish().unwrap();
    fs::write(&overlay_written, b"the new overlay").unwrap();
    // The late output's folder is replaced by a file after the store and the label are written: its
    // write fails (as root, a folder made read-only would not stop it).
    fs::rename(&late, elsewhere.path().join("late-moved")).unwrap();
    fs::write(&late, b"not a folder").unwrap();
    assert!(fs::write(&late_written, b"{}").is_err(), "the late output fails");
    drop(set); // the run's error: the set is never committed

    let after = tree(dir.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file added or removed: no temporary, no label, no store left"
    );
    assert!(before == after, "every earlier file and store byte for byte as it was");
    assert!(!input.join("labels").exists(), "the input store holds no labels group");
    let mut earlier = ImageSource::open(&output, Channels::Gray).unwrap();
    assert_eq!(earlier.read_all().unwrap(), vec![255; width * height], "the earlier store reads back");
}

#[test]
fn a_committed_run_puts_every_output_in_place_together() {
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (40, 30);
    let input = dir.path().join("input.ome.zarr");
    let output = dir.path().join("mask.ome.zarr");
    store(&input, width, height, 9);
    store(&output, width, height, 255);

    let mut set = OutputSet::new(&[("--image", &input)]).unwrap();
    let mut labels = LabelsPlan::new(&input, "pred", 0).unwrap();
    labels.register(&mut set, "--labels").unwrap();
    let written = set.add_store("--output", &output).unwrap();
    let mut writer = OmeZarrWriter::create(&written, width, height, MASK, None).unwrap();
    writer.write_pixels(&vec![0; width * height]).unwrap();
    writer.finish().unwrap();
    let mut label = labels.start().unwrap();
    label.write_mask(&vec![255; width * height]).unwrap();
    label.finish().unwrap();
    assert!(!input.join("labels").exists(), "nothing in the input store before the commit");
    set.commit().unwrap();

    let mut replaced = ImageSource::open(&output, Channels::Gray).unwrap();
    assert_eq!(replaced.read_all().unwrap(), vec![0; width * height], "the new store replaced the old");
    let mut label = ImageSource::open(&input.join("labels/pred"), Channels::Gray).unwrap();
    assert_eq!(label.read_all().unwrap(), vec![1; width * height], "the label, values 0 and 1");
    let listing = fs::read_to_string(input.join("labels/.zattrs")).unwrap();
    assert!(listing.contains("\"pred\""), "{listing}");
    let names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no temporary left: {names:?}");

    // A second label goes into the existing group, which keeps the first.
    let mut set = OutputSet::new(&[("--image", &input)]).unwrap();
    let mut labels = LabelsPlan::new(&input, "again", 0).unwrap();
    labels.register(&mut set, "--labels").unwrap();
    let mut label = labels.start().unwrap();
    label.write_mask(&vec![0; width * height]).unwrap();
    label.finish().unwrap();
    assert!(!input.join("labels/again").exists(), "not before the commit");
    set.commit().unwrap();
    let listing = fs::read_to_string(input.join("labels/.zattrs")).unwrap();
    assert!(listing.contains("\"pred\"") && listing.contains("\"again\""), "{listing}");
    assert!(input.join("labels/again").is_dir());
}
