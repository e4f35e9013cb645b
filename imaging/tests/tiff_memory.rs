//! Memory is bounded by what a TIFF holds, not by what its tags declare: a 32768x32768 Deflate tile in a
//! file of a few hundred bytes is refused in one line before its rows are allocated. One test per binary,
//! so the peak resident size is this test's own.

use imaging::source::{Channels, ImageSource};

/// A little-endian classic TIFF: one 8-bit gray `side` x `side` tile, Deflate, holding `data`.
fn one_tile_tiff(side: u32, data: &[u8]) -> Vec<u8> {
    let tags: [(u16, u16, u32); 10] = [
        (256, 4, side),
        (257, 4, side),
        (258, 3, 8),
        (259, 3, 8),
        (262, 3, 1),
        (277, 3, 1),
        (322, 4, side),
        (323, 4, side),
        (324, 4, 0), // the tile's offset, set below
        (325, 4, data.len() as u32),
    ];
    let ifd_len = 2 + 12 * tags.len() + 4;
    let data_at = (8 + ifd_len) as u32;
    let mut v = b"II*\0\x08\0\0\0".to_vec();
    v.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for (tag, typ, value) in tags {
        let value = if tag == 324 { data_at } else { value };
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&typ.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        if typ == 3 {
            v.extend_from_slice(&(value as u16).to_le_bytes());
            v.extend_from_slice(&[0, 0]);
        } else {
            v.extend_from_slice(&value.to_le_bytes());
        }
    }
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_tiny_file_declaring_a_huge_tile_is_refused_before_allocating_it() {
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut zlib, &[0u8; 4096]).unwrap();
    let file = one_tile_tiff(32768, &zlib.finish().unwrap());
    assert!(file.len() < 256, "{} bytes", file.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.tif");
    std::fs::write(&path, &file).unwrap();
    let message = match ImageSource::open(&path, Channels::Rgb) {
        Ok(mut source) => source.read_rows(1, &mut Vec::new()).err().unwrap().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("cannot decode to the") && message.contains("Deflate"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    let peak = peak_rss();
    assert!(peak < 256 << 20, "peak resident size {peak} bytes");

    // The same layout holding what it declares reads (a 64x64 tile of zeros).
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut zlib, &[0u8; 64 * 64]).unwrap();
    std::fs::write(&path, one_tile_tiff(64, &zlib.finish().unwrap())).unwrap();
    let pixels = ImageSource::open(&path, Channels::Rgb).unwrap().read_all().unwrap();
    assert_eq!(pixels, vec![0u8; 64 * 64 * 3]);
}
