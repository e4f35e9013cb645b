//! NGFF 0.5 (Zarr v3) outputs and labels written into OME-Zarr images: the v3 store read back by the
//! project's reader equal to the v2 store at every level, its metadata against the keys the Zarr v3 and
//! NGFF 0.5 specs require; labels written into copies of the v2 and v3 fixtures (and into stores whose
//! levels round down, or are not 2x reductions) equal to the mask reduced in memory by the mask rule, every
//! other file of the store byte for byte as before, labels listed before kept.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use imaging::pyramid::{self, Reduction};
use imaging::sink::ome_tiff::OmeSamples;
use imaging::sink::ome_zarr::{NgffVersion, OmeZarrWriter, StoreLayout};
use imaging::sink::zarr_labels::LabelsPlan;
use imaging::source::{Channels, ImageSource};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zarr").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(key, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// A mask of 0/255 with structures of every size, including one pixel thin lines.
fn mask(width: usize, height: usize) -> Vec<u8> {
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let on = (x * 7 + y * 3) % 11 < 4 || x == 13 || (y / 5 + x / 9) % 3 == 0;
            if on {
                255
            } else {
                0
            }
        })
        .collect()
}

/// The mask's levels reduced in memory by the mask rule (rounded up), each cut to `sizes` (the label
/// levels: the reduction's last row or column dropped where a size is rounded down), as 0/1.
fn expected_levels(mask: &[u8], sizes: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let mut levels = vec![mask.to_vec()];
    for pair in sizes.windows(2) {
        let ((w, h), (nw, nh)) = (pair[0], pair[1]);
        let above = levels.last().unwrap();
        let (mut next, mut out) = (Vec::new(), Vec::new());
        for y in (0..h).step_by(2).take(nh) {
            let bottom = (y + 1 < h).then(|| &above[(y + 1) * w..][..w]);
            pyramid::reduce_rows_u8(&above[y * w..][..w], bottom, w, 1, Reduction::Mask, &mut out);
            next.extend_from_slice(&out[..nw]);
        }
        levels.push(next);
    }
    levels.iter().map(|l| l.iter().map(|&v| u8::from(v >= 128)).collect()).collect()
}

fn read_level(store: &Path, level: usize) -> Vec<u8> {
    ImageSource::open_level(store, level, Channels::Gray).unwrap().read_all().unwrap()
}

/// Writes `pixels` into a store of `layout` at `path` in bands of 37 rows.
fn write_store(path: &Path, samples: OmeSamples, layout: StoreLayout, pixels: &[u8]) {
    let row = layout.levels[0].0 * samples.pixel_bytes();
    let mut writer = OmeZarrWriter::create_with(path, samples, layout).unwrap();
    for rows in pixels.chunks(37 * row) {
        writer.write_pixels(rows).unwrap();
    }
    writer.finish().unwrap();
}

/// Writes `mask` as the label `name` of level `level` of `image`; returns the plan.
fn write_label(image: &Path, name: &str, level: usize, mask: &[u8]) -> LabelsPlan {
    let plan = LabelsPlan::new(image, name, level).unwrap();
    let width = plan.layout.levels[level].0;
    let mut writer = plan.start().unwrap();
    for rows in mask.chunks(29 * width) {
        writer.write_mask(rows).unwrap();
    }
    writer.finish().unwrap();
    plan
}

#[test]
fn a_v3_store_reads_back_as_the_v2_store_and_has_the_keys_the_specs_require() {
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (2100, 1300);
    for (channels, rule) in [(1, Reduction::Mask), (3, Reduction::Mean)] {
        let samples = OmeSamples::U8 { channels, rule };
        let pixels: Vec<u8> = (0..width * height * channels).map(|i| ((i * 37) % 253) as u8).collect();
        let mut stores = Vec::new();
        for version in [NgffVersion::V04, NgffVersion::V05] {
            let path = dir.path().join(format!("{channels}-{}.ome.zarr", version.as_str()));
            let layout = StoreLayout::output(version, width, height, samples, Some((0.5, 0.5)));
            write_store(&path, samples, layout, &pixels);
            stores.push(path);
        }
        let out = if channels == 1 { Channels::Gray } else { Channels::Rgb };
        let levels = ImageSource::levels(&stores[1]).unwrap();
        assert_eq!(levels.len(), 3);
        for level in 0..levels.len() {
            let v2 = ImageSource::open_level(&stores[0], level, out).unwrap().read_all().unwrap();
            let mut v3 = ImageSource::open_level(&stores[1], level, out).unwrap();
            assert_eq!(
                v3.microns_per_pixel(),
                Some((0.5 * f64::from(1 << level), 0.5 * f64::from(1 << level)))
            );
            assert!(v3.read_all().unwrap() == v2, "{channels} channels, level {level}");
        }
        // Zarr v3 and NGFF 0.5: the group's zarr.json and no v2 files.
        let store = &stores[1];
        assert!(!store.join(".zattrs").exists() && !store.join(".zgroup").exists());
        let group = json(&store.join("zarr.json"));
        assert_eq!(group["zarr_format"], 3);
        assert_eq!(group["node_type"], "group");
        let ome = &group["attributes"]["ome"];
        assert_eq!(ome["version"], "0.5");
        let m = &ome["multiscales"][0];
        assert!(m.get("version").is_none(), "0.5 keeps the version in `ome` only");
        let names: Vec<&str> =
            m["axes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, if channels == 1 { vec!["y", "x"] } else { vec!["c", "y", "x"] });
        for (level, dataset) in m["datasets"].as_array().unwrap().iter().enumerate() {
            assert_eq!(dataset["path"], level.to_string());
            let array = json(&store.join(level.to_string()).join("zarr.json"));
            assert_eq!(array["zarr_format"], 3);
            assert_eq!(array["node_type"], "array");
            assert_eq!(array["data_type"], "uint8");
            assert_eq!(
                array["dimension_names"],
                m["axes"].as_array().unwrap().iter().map(|a| a["name"].clone()).collect::<Value>()
            );
            assert_eq!(array["chunk_grid"]["name"], "regular");
            let chunk =
                if channels == 1 { serde_json::json!([512, 512]) } else { serde_json::json!([3, 512, 512]) };
            assert_eq!(array["chunk_grid"]["configuration"]["chunk_shape"], chunk);
            assert_eq!(array["chunk_key_encoding"]["name"], "default");
            assert_eq!(array["chunk_key_encoding"]["configuration"]["separator"], "/");
            assert_eq!(array["fill_value"], 0);
            assert_eq!(array["codecs"][0]["name"], "bytes");
            assert_eq!(array["codecs"][1]["name"], "zstd");
            let (w, h) = (levels[level].width, levels[level].height);
            let shape = if channels == 1 { serde_json::json!([h, w]) } else { serde_json::json!([3, h, w]) };
            assert_eq!(array["shape"], shape);
        }
        // Chunk keys of the default encoding: c/<y>/<x> (c/0/<y>/<x> for c,y,x).
        let key = if channels == 1 { "0/c/2/4" } else { "0/c/0/2/4" };
        assert!(store.join(key).is_file(), "{key}");
    }
    // Float32 probabilities: little endian bytes, then zstd.
    let values: Vec<f32> = (0..700 * 3).map(|i| i as f32 / 9.0).collect();
    let path = dir.path().join("p.ome.zarr");
    let layout = StoreLayout::output(NgffVersion::V05, 700, 3, OmeSamples::F32, None);
    let mut writer = OmeZarrWriter::create_with(&path, OmeSamples::F32, layout).unwrap();
    writer.write_values(&values).unwrap();
    writer.finish().unwrap();
    let array = json(&path.join("0/zarr.json"));
    assert_eq!(array["data_type"], "float32");
    assert_eq!(array["codecs"][0]["configuration"]["endian"], "little");
    let chunk = zstd::bulk::decompress(&fs::read(path.join("0/c/0/1")).unwrap(), 4 * 512 * 512).unwrap();
    let first = f32::from_le_bytes(chunk[..4].try_into().unwrap());
    assert_eq!(first, values[512]);
}

#[test]
fn labels_go_into_v2_and_v3_fixtures_with_the_image_levels_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, version, levels) in
        [("v04_cyx_u8.ome.zarr", "0.4", 3), ("v05_cyx_u16_sharded.ome.zarr", "0.5", 2)]
    {
        let image = dir.path().join(name);
        copy_dir(&fixture(name), &image);
        let v3 = version == "0.5";
        let listing = if v3 { "labels/zarr.json" } else { "labels/.zattrs" };
        // A label listed before, and a file of it, that must stay.
        fs::create_dir_all(image.join("labels/cells")).unwrap();
        fs::write(image.join("labels/cells/notes.txt"), b"kept").unwrap();
        let before_listing = if v3 {
            r#"{"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"version": "0.5", "labels": ["cells"]}, "mine": 1}}"#
        } else {
            fs::write(image.join("labels/.zgroup"), b"{\"zarr_format\": 2}").unwrap();
            r#"{"labels": ["cells"], "mine": 1}"#
        };
        fs::write(image.join(listing), before_listing).unwrap();
        let before = snapshot(&image);

        let sizes: Vec<(usize, usize)> =
            ImageSource::levels(&image).unwrap().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes.len(), levels);
        let mask = mask(sizes[0].0, sizes[0].1);
        let plan = write_label(&image, "segmenter", 0, &mask);
        assert_eq!(plan.note(), None);
        let label = image.join("labels/segmenter");
        let expected = expected_levels(&mask, &sizes);
        for (level, want) in expected.iter().enumerate() {
            assert!(read_level(&label, level) == *want, "{name} level {level}");
        }
        // The label's metadata: the image's axes and transforms, image-label, its own version.
        let (attrs, ome) = if v3 {
            let group = json(&label.join("zarr.json"));
            assert_eq!(group["attributes"]["ome"]["version"], "0.5");
            (group.clone(), group["attributes"]["ome"].clone())
        } else {
            assert!(label.join(".zgroup").is_file());
            let attrs = json(&label.join(".zattrs"));
            (attrs.clone(), attrs)
        };
        let image_ms = if v3 {
            json(&image.join("zarr.json"))["attributes"]["ome"]["multiscales"][0].clone()
        } else {
            json(&image.join(".zattrs"))["multiscales"][0].clone()
        };
        let m = &ome["multiscales"][0];
        assert_eq!(m["axes"], image_ms["axes"]);
        for level in 0..levels {
            assert_eq!(
                m["datasets"][level]["coordinateTransformations"],
                image_ms["datasets"][level]["coordinateTransformations"]
            );
            let array = label.join(level.to_string());
            let meta = if v3 { json(&array.join("zarr.json")) } else { json(&array.join(".zarray")) };
            // c,y,x with one channel.
            assert_eq!(meta["shape"], serde_json::json!([1, sizes[level].1, sizes[level].0]));
            assert_eq!(meta[if v3 { "data_type" } else { "dtype" }], if v3 { "uint8" } else { "|u1" });
        }
        let label_meta = &ome["image-label"];
        assert_eq!(label_meta["colors"][1]["label-value"], 1);
        assert_eq!(label_meta["colors"][0]["rgba"][3], 0, "0 is transparent");
        assert_eq!(label_meta["source"]["image"], "../../");
        assert_eq!(label_meta.get("version").is_some(), !v3, "0.4 puts the version in image-label");
        assert!(attrs.is_object());

        // The listing keeps "cells" and the other keys, and adds the label once (a rerun replaces it).
        write_label(&image, "segmenter", 0, &vec![0; mask.len()]);
        assert!(read_level(&label, 0).iter().all(|&v| v == 0), "the rerun replaced the label");
        let listing_json = json(&image.join(listing));
        let (list, mine) = if v3 {
            (listing_json["attributes"]["ome"]["labels"].clone(), listing_json["attributes"]["mine"].clone())
        } else {
            (listing_json["labels"].clone(), listing_json["mine"].clone())
        };
        assert_eq!(list, serde_json::json!(["cells", "segmenter"]));
        assert_eq!(mine, 1);
        let after = snapshot(&image);
        for (file, bytes) in &before {
            if file != listing {
                assert!(after.get(file) == Some(bytes), "{name}: {file} changed");
            }
        }
        let added: Vec<&String> = after
            .keys()
            .filter(|f| !before.contains_key(*f) && !f.starts_with("labels/segmenter/"))
            .collect();
        assert!(added.is_empty(), "{name}: files added outside the label: {added:?}");
        let leftovers = after.keys().filter(|f| f.ends_with(".tmp")).count();
        assert_eq!(leftovers, 0, "{name}: a temporary was left");
    }
}

#[test]
fn label_levels_follow_images_rounding_down_and_stop_at_a_level_that_is_not_a_halving() {
    let dir = tempfile::tempdir().unwrap();
    let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
    let (width, height) = (1101, 1301);
    let pixels: Vec<u8> = (0..width * height).map(|i| (i % 251) as u8).collect();
    for (name, sizes, labelled, version) in [
        // Rounded down at every level (the floor of an odd size).
        ("floor", vec![(1101, 1301), (550, 650), (275, 325), (137, 162)], 4, NgffVersion::V04),
        // Rounded up, then down.
        ("mixed", vec![(1101, 1301), (551, 651), (275, 325)], 3, NgffVersion::V05),
        // A 4x reduction after a 2x one: the label stops after the 2x level.
        ("quarter", vec![(1101, 1301), (551, 651), (137, 162)], 2, NgffVersion::V05),
    ] {
        let image = dir.path().join(format!("{name}.ome.zarr"));
        let mut layout = StoreLayout::output(version, width, height, samples, Some((0.25, 0.25)));
        layout.levels = sizes.clone();
        let multiscales = &mut layout.ome["multiscales"][0];
        multiscales["datasets"] = serde_json::json!(sizes
            .iter()
            .enumerate()
            .map(|(i, _)| serde_json::json!({"path": i.to_string(), "coordinateTransformations": [{"type": "scale", "scale": [0.25 * (width as f64 / sizes[i].0 as f64), 0.25 * (width as f64 / sizes[i].0 as f64)]}]}))
            .collect::<Vec<_>>());
        write_store(&image, samples, layout, &pixels);
        // The writer's own cascade with levels rounded down: each level the one above reduced, then cut.
        let image_levels = expected_levels(&pixels, &sizes[..labelled]);
        for (level, want) in image_levels.iter().enumerate() {
            let got: Vec<u8> = read_level(&image, level).iter().map(|&v| u8::from(v >= 128)).collect();
            assert!(got == *want, "{name}: image level {level}");
        }
        let mask = mask(width, height);
        let plan = write_label(&image, "m", 0, &mask);
        assert_eq!(plan.layout.levels, sizes[..labelled].to_vec());
        assert_eq!(plan.note().is_some(), labelled < sizes.len(), "{name}");
        let label = image.join("labels/m");
        for (level, want) in expected_levels(&mask, &sizes[..labelled]).iter().enumerate() {
            assert!(read_level(&label, level) == *want, "{name}: label level {level}");
        }
    }
}

/// The `scale` of dataset `level` of `multiscale` on the y and x axes (the last two).
fn scales(multiscale: &Value, level: usize) -> (f64, f64) {
    let scale = multiscale["datasets"][level]["coordinateTransformations"][0]["scale"].as_array().unwrap();
    let n = scale.len();
    (scale[n - 2].as_f64().unwrap(), scale[n - 1].as_f64().unwrap())
}

/// The predicted level `predicted` (`pw` x `ph`, 0/1) upsampled by nearest neighbour to `w` x `h` with
/// the scales of the two levels: each pixel takes the predicted pixel whose area (in physical units,
/// from 0) holds its centre, found by walking the predicted pixels; past the last one, the last one.
fn upsampled(
    predicted: &[u8],
    (pw, ph): (usize, usize),
    (w, h): (usize, usize),
    (fine_y, fine_x): (f64, f64),
    (coarse_y, coarse_x): (f64, f64),
) -> Vec<u8> {
    let holder = |i: usize, fine: f64, coarse: f64, m: usize| {
        let centre = (i as f64 + 0.5) * fine;
        let mut k = 0;
        while k + 1 < m && (k + 1) as f64 * coarse <= centre {
            k += 1;
        }
        k
    };
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let py = holder(y, fine_y, coarse_y, ph);
        for x in 0..w {
            out.push(predicted[py * pw + holder(x, fine_x, coarse_x, pw)]);
        }
    }
    out
}

/// The `multiscales` entry of an OME-Zarr group.
fn multiscale(group: &Path) -> Value {
    if group.join("zarr.json").exists() {
        json(&group.join("zarr.json"))["attributes"]["ome"]["multiscales"][0].clone()
    } else {
        json(&group.join(".zattrs"))["multiscales"][0].clone()
    }
}

#[test]
fn labels_predicted_at_a_coarser_level_have_every_image_level_the_finer_ones_upsampled() {
    let dir = tempfile::tempdir().unwrap();
    // A v3 image of three levels rounded up then down, its scales those of 2x levels.
    let mixed = dir.path().join("mixed.ome.zarr");
    let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
    let sizes = vec![(1101, 1301), (551, 651), (275, 325)];
    let mut layout = StoreLayout::output(NgffVersion::V05, 1101, 1301, samples, Some((0.25, 0.25)));
    layout.levels = sizes.clone();
    layout.ome["multiscales"][0]["datasets"] = serde_json::json!((0..3)
        .map(|i| {
            let scale = 0.25 * f64::from(1 << i);
            serde_json::json!({"path": i.to_string(), "coordinateTransformations": [{"type": "scale", "scale": [scale, scale]}]})
        })
        .collect::<Vec<_>>());
    write_store(&mixed, samples, layout, &vec![0; 1101 * 1301]);
    let keep = std::env::var_os("IMAGING_KEEP_OME_ZARR").map(PathBuf::from);
    let mut cases = Vec::new();
    for (name, levels) in [("v04_cyx_u8.ome.zarr", 3), ("v05_cyx_u16_sharded.ome.zarr", 2)] {
        for first in 1..levels {
            let image = dir.path().join(format!("{first}-{name}"));
            copy_dir(&fixture(name), &image);
            cases.push((image, first));
        }
    }
    cases.push((mixed.clone(), 1));
    cases.push((mixed, 2));
    for (image, first) in cases {
        let what = format!("{} from level {first}", image.display());
        let sizes: Vec<(usize, usize)> =
            ImageSource::levels(&image).unwrap().iter().map(|l| (l.width, l.height)).collect();
        let (pw, ph) = sizes[first];
        let mask = mask(pw, ph);
        let name = format!("from{first}");
        let plan = write_label(&image, &name, first, &mask);
        assert_eq!(plan.note(), None, "{what}");
        let label = image.join("labels").join(&name);
        let label_sizes: Vec<(usize, usize)> =
            ImageSource::levels(&label).unwrap().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(label_sizes, sizes, "{what}: the label has the image's levels and shapes");
        let image_ms = multiscale(&image);
        let label_ms = multiscale(&label);
        assert_eq!(label_ms["datasets"].as_array().unwrap().len(), sizes.len());
        for level in 0..sizes.len() {
            assert_eq!(
                label_ms["datasets"][level]["coordinateTransformations"],
                image_ms["datasets"][level]["coordinateTransformations"],
                "{what}: level {level}"
            );
        }
        let predicted: Vec<u8> = mask.iter().map(|&v| u8::from(v >= 128)).collect();
        assert!(read_level(&label, first) == predicted, "{what}: the predicted level");
        assert!(predicted.contains(&0) && predicted.contains(&1));
        for (level, &size) in sizes[..first].iter().enumerate() {
            let want =
                upsampled(&predicted, (pw, ph), size, scales(&image_ms, level), scales(&image_ms, first));
            assert!(read_level(&label, level) == want, "{what}: upsampled level {level}");
        }
        for (j, want) in expected_levels(&mask, &sizes[first..]).iter().enumerate() {
            assert!(read_level(&label, first + j) == *want, "{what}: reduced level {}", first + j);
        }
        if let Some(keep) = &keep {
            // For scripts/checks/check_ome_zarr.py IMAGE --labels fromN.
            copy_dir(&image, &keep.join(image.file_name().unwrap()));
        }
    }
}

#[test]
fn bad_names_non_zarr_images_and_foreign_label_folders_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("i.ome.zarr");
    copy_dir(&fixture("v04_cyx_u8.ome.zarr"), &image);
    let before = snapshot(&image);
    for name in ["", ".hidden", "a/b", "..", "a\\b", " ", "a\nb", "cells v2"] {
        let err = LabelsPlan::new(&image, name, 0).unwrap_err();
        assert!(err.contains("not a label name") && !err.contains('\n'), "{name:?}: {err}");
    }
    let png = fixture("v04_cyx_u8.png");
    let err = LabelsPlan::new(&png, "m", 0).unwrap_err();
    assert!(err.contains("is not an OME-Zarr image"), "{err}");
    let err = LabelsPlan::new(&fixture("v04_yxc_i16.ome.zarr"), "m", 0).map(|_| ()).err();
    assert_eq!(err, None, "y,x,c is y before x: accepted");
    // labels/m is a folder that is not an image: refused, and left alone.
    fs::create_dir_all(image.join("labels/m")).unwrap();
    fs::write(image.join("labels/m/x.txt"), b"x").unwrap();
    let err = LabelsPlan::new(&image, "m", 0).unwrap_err();
    assert!(err.contains("refusing to replace it"), "{err}");
    fs::remove_dir_all(image.join("labels")).unwrap();
    // A label abandoned half way leaves no labels/ folder behind.
    let plan = LabelsPlan::new(&image, "m", 0).unwrap();
    let mut writer = plan.start().unwrap();
    writer.write_mask(&vec![255; 97 * 10]).unwrap();
    drop(writer);
    assert!(snapshot(&image) == before);
    assert!(!image.join("labels").exists());
}
