//! Memory is bounded by what an OME-Zarr store holds, not by what its metadata declares: a shard far wider
//! than the image is read only where it meets the image, and chunk, inner chunk and shard index sizes over
//! the budget are refused before anything is read. One test per binary, so the peak resident size is this
//! test's own.

use std::path::Path;

use imaging::source::{Channels, ImageSource};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The fixture v05_cyx_u16_sharded with no shard stored (all fill value) and shards of `shard` x-pixels.
fn wide_shards(dir: &Path, shard: u64) -> std::path::PathBuf {
    let path = dir.join(format!("wide_{shard}.ome.zarr"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zarr/v05_cyx_u16_sharded.ome.zarr");
    copy_dir(&fixture, &path);
    std::fs::remove_dir_all(path.join("0/c")).unwrap();
    let meta = path.join("0/zarr.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let from = "\"chunk_shape\": [\n        3,\n        64,\n        64\n      ]";
    assert!(text.contains(from), "{text}");
    std::fs::write(&meta, text.replacen(from, &format!("\"chunk_shape\": [3, 64, {shard}]"), 1)).unwrap();
    path
}

/// The peak resident size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_declared_shard_or_chunk_takes_no_more_memory_than_the_image() {
    let dir = tempfile::tempdir().unwrap();
    // 3x64x2^22 uint16 shards: 1.6 GB each if read whole; the image is 97x75.
    let path = wide_shards(dir.path(), 1 << 22);
    let mut source = ImageSource::open(&path, Channels::Rgb).unwrap();
    let pixels = source.read_all().unwrap();
    assert_eq!(pixels.len(), 97 * 75 * 3);
    assert!(pixels.iter().all(|&p| p == 0), "absent shards are the fill value 0");
    let peak = peak_rss();
    assert!(peak < 256 << 20, "peak resident size {peak} bytes");

    // Shards of 2^40 pixels: an index of 2^36 entries; refused in one line before anything is read.
    let path = wide_shards(dir.path(), 1 << 40);
    let message = ImageSource::open(&path, Channels::Rgb).err().unwrap().to_string();
    assert!(message.contains("whose index is") && message.contains("over the budget"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}
