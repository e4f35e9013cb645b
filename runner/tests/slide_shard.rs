//! One slide over many workers: `predict --image --shard K/N` into OME-Zarr stores, then `finalize`, gives
//! the very files of a single run (every level, compared file by file) on random sizes and share counts;
//! a killed share rerun rewrites only its own chunks; finalize with a share missing names it and changes
//! nothing; a store of another plan is refused.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imaging::source::{Channels, ImageSource};
use runner::folder::Shard;
use runner::session::ModelOptions;
use runner::single::{self, SingleRequest};
use runner::slide_shard::{self, finalize};

/// Every file under `root`, by path relative to it, with its bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(single: &Path, sharded: &Path, case: &str) {
    let (a, b) = (tree(single), tree(sharded));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{case}: the files differ");
    for (name, bytes) in &a {
        assert!(*bytes == b[name], "{case}: {name} differs");
    }
    // Lower levels exist when the image is large enough, so the comparison covers the reductions too.
    assert!(a.keys().any(|k| k.starts_with("0/")), "{case}");
}

/// A folder with the model and an RGB image of `width` x `height` as `image.png` or `image.tif`.
fn workspace(width: usize, height: usize, seed: u64, tiff: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), common::model("net_11")).unwrap();
    // Noise in every other block over a blob: the random network finds foreground specks all over it, so
    // the mask has edges everywhere, share edges included.
    let mut rng = common::Rng::new(seed);
    let mut rgb = rng.image(height, width);
    for (i, v) in rgb.iter_mut().enumerate() {
        let (y, x) = (i / 3 / width, i / 3 % width);
        if (y / 23 + x / 29) % 2 == 0 {
            *v = rng.next() as u8;
        }
    }
    let image = dir.path().join(if tiff { "image.tif" } else { "image.png" });
    image::save_buffer(&image, &rgb, width as u32, height as u32, image::ExtendedColorType::Rgb8).unwrap();
    (dir, image)
}

fn request(dir: &Path, image: &Path, prefix: &str) -> SingleRequest {
    SingleRequest {
        model: dir.join("model.onnx"),
        image: image.to_path_buf(),
        output: dir.join(format!("{prefix}mask.ome.zarr")),
        mask: None,
        metrics_json: None,
        probabilities: Some(dir.join(format!("{prefix}probabilities.ome.zarr"))),
        overlay: Some(dir.join(format!("{prefix}overlay.ome.zarr"))),
        errors: None,
        geojson: None,
        geojson_label: Default::default(),
        objects_csv: None,
        tissue: Default::default(),
        tile: 128,
        level: 0,
        mask_rule: Default::default(),
        ngff: Default::default(),
        labels: None,
    }
}

fn options() -> ModelOptions {
    ModelOptions { threads: Some(2), ..ModelOptions::default() }
}

fn stores(request: &SingleRequest) -> Vec<PathBuf> {
    vec![request.output.clone(), request.probabilities.clone().unwrap(), request.overlay.clone().unwrap()]
}

fn run_share(request: &SingleRequest, index: usize, count: usize) {
    slide_shard::run(request, Shard { index, count }, &options(), |_| {})
        .unwrap_or_else(|e| panic!("share {index}/{count}: {e}"));
}

fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner")).current_dir(dir).args(args).output().unwrap()
}

#[test]
fn shares_then_finalize_equal_a_single_run_at_every_level() {
    let mut rng = common::Rng::new(21);
    // Fixed cases first: odd sizes, a share count above the chunk rows, one share; then random ones.
    let mut cases = vec![(1027, 1539, 4, true), (1500, 700, 5, false), (613, 1800, 1, false)];
    for _ in 0..3 {
        cases.push((
            rng.range(300, 1500),
            rng.range(300, 1800),
            rng.range(1, 6),
            rng.next().is_multiple_of(2),
        ));
    }
    for (case, &(width, height, count, tiff)) in cases.iter().enumerate() {
        let name = format!("{width}x{height} in {count} shares ({})", if tiff { "TIFF" } else { "PNG" });
        let (dir, image) = workspace(width, height, case as u64, tiff);
        // Tile 72 ends a band of windows at row 512, a share's edge: the overlay's boundary there needs the
        // row across it.
        let tile = if case == 0 { 72 } else { 128 };
        let single = SingleRequest { tile, ..request(dir.path(), &image, "single_") };
        single::run(&single, &options(), |_| {}).unwrap();
        let sharded = SingleRequest { tile, ..request(dir.path(), &image, "") };
        // Shares run in any order.
        let mut order: Vec<usize> = (0..count).collect();
        for i in (1..count).rev() {
            order.swap(i, rng.range(0, i));
        }
        for &k in &order {
            run_share(&sharded, k, count);
        }
        if case == 0 {
            // The mask has edges across row 512 (foreground over background both ways), so that the overlay
            // there tests the row across the share's edge.
            let mut mask = ImageSource::open(&single.output, Channels::Gray).unwrap();
            let rows = mask.read_all().unwrap();
            let (above, below) = (&rows[511 * width..512 * width], &rows[512 * width..513 * width]);
            let edges = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(a, b)| **a == 0 && **b > 0).count();
            assert!(edges(above, below) > 0 && edges(below, above) > 0, "{name}: no edge across row 512");
        }
        let finalized = finalize(&stores(&sharded)).unwrap();
        assert_eq!(finalized.len(), 3);
        for (a, b) in stores(&single).iter().zip(stores(&sharded)) {
            assert_same_tree(a, &b, &name);
        }
        // Finalizing again changes nothing.
        let before = tree(&sharded.output);
        finalize(&stores(&sharded)).unwrap();
        assert!(tree(&sharded.output) == before, "{name}: a second finalize changed the store");
    }
}

/// A process id of this host that is surely gone: a child that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[test]
#[cfg(unix)]
fn a_killed_share_rerun_rewrites_only_its_own_chunks() {
    let (width, height, count) = (1100, 1600, 3);
    let (dir, image) = workspace(width, height, 7, true);
    let single = request(dir.path(), &image, "single_");
    single::run(&single, &options(), |_| {}).unwrap();
    let sharded = request(dir.path(), &image, "");
    for k in 0..count {
        run_share(&sharded, k, count);
    }
    // Share 1 (chunk row 1) "killed": its marker gone, one chunk truncated, one removed, and temporaries
    // left by a dead process of this host and by a process of another host.
    let mask = &sharded.output;
    let shares = mask.join(".segmenter-shares");
    std::fs::remove_file(shares.join("done-1")).unwrap();
    std::fs::write(mask.join("0/1.0"), b"partial").unwrap();
    std::fs::remove_file(mask.join("0/1.1")).unwrap();
    let host = imaging::files::host_name();
    let dead = mask.join(format!("0/.1.1.segmenter-{host}-{}.tmp", dead_pid()));
    let foreign = mask.join("0/.1.0.segmenter-another-node-12.tmp");
    // A dead process's temporary of another share's chunk is not share 1's to remove.
    let not_ours = mask.join(format!("0/.0.0.segmenter-{host}-{}.tmp", dead_pid()));
    for path in [&dead, &foreign, &not_ours] {
        std::fs::write(path, b"half a chunk").unwrap();
    }
    let others: Vec<(PathBuf, u64)> =
        ["0/0.0", "0/0.1", "0/2.0", "0/2.1"].iter().map(|k| (mask.join(k), inode(&mask.join(k)))).collect();
    // Finalize refuses, naming the share, and changes nothing.
    let before = tree(mask);
    let err = finalize(std::slice::from_ref(mask)).unwrap_err().to_string();
    assert!(err.contains("share 1/3 is not done; run it with --shard 1/3"), "{err}");
    assert!(tree(mask) == before);
    run_share(&sharded, 1, count);
    assert!(!dead.exists(), "share 1's own stale temporary is removed");
    assert!(foreign.exists() && not_ours.exists(), "another host's or share's temporaries are left");
    for (path, ino) in &others {
        assert_eq!(inode(path), *ino, "{} was rewritten by share 1", path.display());
    }
    finalize(&stores(&sharded)).unwrap();
    for (a, b) in stores(&single).iter().zip(stores(&sharded)) {
        assert_same_tree(a, &b, "the rerun share");
    }
}

#[test]
fn finalize_with_a_share_missing_names_it_and_changes_nothing() {
    let (dir, image) = workspace(700, 1900, 3, false);
    let sharded = request(dir.path(), &image, "");
    run_share(&sharded, 0, 4);
    run_share(&sharded, 2, 4);
    let stores = stores(&sharded);
    let before: Vec<_> = stores.iter().map(|s| tree(s)).collect();
    let out =
        runner(dir.path(), &["finalize", "mask.ome.zarr", "probabilities.ome.zarr", "overlay.ome.zarr"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "mask.ome.zarr: shares 1/4 and 3/4 are not done; run them with --shard 1/4 and --shard 3/4"
        ),
        "{stderr}"
    );
    let after: Vec<_> = stores.iter().map(|s| tree(s)).collect();
    assert!(before == after, "finalize changed a store");
    assert!(!stores[0].join(".zattrs").exists() && !stores[0].join(".zgroup").exists());
    // One store complete, another not: neither is finalized.
    run_share(&sharded, 1, 4);
    run_share(&sharded, 3, 4);
    let other = dir.path().join("other.ome.zarr");
    let partial =
        SingleRequest { output: other.clone(), probabilities: None, overlay: None, ..sharded.clone() };
    slide_shard::run(&partial, Shard { index: 0, count: 2 }, &options(), |_| {}).unwrap();
    let before = tree(&stores[0]);
    let err = finalize(&[stores[0].clone(), other.clone()]).unwrap_err().to_string();
    assert!(err.contains("other.ome.zarr: share 1/2 is not done"), "{err}");
    assert!(tree(&stores[0]) == before);
}

#[test]
fn a_store_of_another_plan_and_outputs_that_cannot_be_shared_are_refused() {
    let (dir, _image) = workspace(600, 1100, 5, false);
    let base = ["predict", "--model", "model.onnx", "--image", "image.png", "--threads", "2", "--quiet"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        runner(dir.path(), &args)
    };
    let ok = run(&["--output", "m.ome.zarr", "--shard", "0/3"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("no rows") || stdout.contains("rows 0..512"), "{stdout}");
    let before = tree(&dir.path().join("m.ome.zarr"));
    let one_line = |out: &Output, want: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{want}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    };
    // Another share count, another model, another level of detail of the same request.
    one_line(
        &run(&["--output", "m.ome.zarr", "--shard", "1/2"]),
        "m.ome.zarr holds the shares of another prediction (its shares is 3, this run's 2); remove the store",
    );
    std::fs::write(dir.path().join("model2.onnx"), common::model("net_4")).unwrap();
    let other_model: Vec<&str> = ["predict", "--model", "model2.onnx", "--image", "image.png", "--quiet"]
        .into_iter()
        .chain(["--output", "m.ome.zarr", "--shard", "1/3"])
        .collect();
    one_line(&runner(dir.path(), &other_model), "(its model is");
    assert!(tree(&dir.path().join("m.ome.zarr")) == before, "a refused share changed the store");
    one_line(&run(&["--output", "m.png", "--shard", "0/2"]), "--output m.png: one image in shares");
    one_line(
        &run(&["--output", "n.ome.zarr", "--overlay", "o.png", "--shard", "0/2"]),
        "--overlay o.png: one image in shares",
    );
    one_line(
        &run(&["--output", "n.ome.zarr", "--mask", "image.png", "--shard", "0/2"]),
        "--mask is refused with --shard",
    );
    one_line(
        &run(&["--output", "n.ome.zarr", "--overlay", "n.ome.zarr", "--shard", "0/2"]),
        "--overlay n.ome.zarr is also --output n.ome.zarr",
    );
    // A finished store is not predicted over in shares, and finalize says a finished store is final.
    let single = run(&["--output", "s.ome.zarr"]);
    assert!(single.status.success());
    one_line(&run(&["--output", "s.ome.zarr", "--shard", "0/2"]), "a finished OME-Zarr image is there");
    let again = runner(dir.path(), &["finalize", "s.ome.zarr"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already final"));
    one_line(&runner(dir.path(), &["finalize", "image.png"]), "not an OME-Zarr store written in shares");
}
