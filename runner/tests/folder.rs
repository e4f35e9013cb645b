//! Folders of images: which files are images (by content), the glob filter, stems and masks, and shards
//! of a real listing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use runner::folder::{find_images, jobs, select_shard, FolderError, Shard};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n rest";
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
const TIFF: &[u8] = b"II*\0\x08\0\0\0";
const BIGTIFF: &[u8] = b"MM\0+\0\x08\0\0";

fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn images_are_found_by_content_sorted_by_name() {
    let dir = folder(&[
        ("c.tif", TIFF),
        ("a.png", PNG),
        ("b.jpeg", JPEG),
        ("scan.dat", BIGTIFF),  // content decides, not the extension
        ("notes.png", b"text"), // an image name without image content
        ("readme.txt", b"hello"),
        ("empty.png", b""),
        (".mask.png.segmenter-12.tmp", PNG), // a run's temporary
    ]);
    fs::create_dir(dir.path().join("sub.png")).unwrap();
    fs::write(dir.path().join("sub.png/inner.png"), PNG).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.png"), dir.path().join("d-link.png")).unwrap();
    let fifo = dir.path().join("e-pipe.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());

    let path = dir.path().to_path_buf();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(find_images("--input-dir", &path, None)));
    let found = receiver.recv_timeout(Duration::from_secs(10)).expect("blocked on the FIFO").unwrap();
    assert_eq!(names(&found), ["a.png", "b.jpeg", "c.tif", "d-link.png", "scan.dat"]);
    assert!(found.iter().all(|p| p.parent() == Some(dir.path())));
}

#[test]
fn the_pattern_filters_file_names() {
    let dir =
        folder(&[("slide_01.tif", TIFF), ("slide_02.tif", TIFF), ("slide_10.png", PNG), ("x.tif", TIFF)]);
    let found = find_images("--input-dir", dir.path(), Some("slide_0?.tif")).unwrap();
    assert_eq!(names(&found), ["slide_01.tif", "slide_02.tif"]);
    let found = find_images("--input-dir", dir.path(), Some("*.tif")).unwrap();
    assert_eq!(names(&found), ["slide_01.tif", "slide_02.tif", "x.tif"]);
    let err = find_images("--input-dir", dir.path(), Some("*.jpg")).unwrap_err();
    assert!(matches!(err, FolderError::NoImages { .. }), "{err}");
    assert!(err.to_string().contains("matching \"*.jpg\""), "{err}");
    let err = find_images("--input-dir", dir.path(), Some("[")).unwrap_err();
    assert!(matches!(err, FolderError::Pattern { .. }), "{err}");
}

#[test]
fn a_missing_or_empty_folder_is_an_error() {
    let err = find_images("--input-dir", Path::new("/no/such/folder"), None).unwrap_err();
    assert!(matches!(err, FolderError::ListFolder { .. }), "{err}");
    let empty = folder(&[("notes.txt", b"x")]);
    assert!(matches!(find_images("--input-dir", empty.path(), None), Err(FolderError::NoImages { .. })));
}

#[test]
fn an_unreadable_image_is_listed_so_that_its_failure_is_reported() {
    let dir = folder(&[("a.png", PNG), ("locked.tif", TIFF), ("locked.txt", b"x")]);
    for name in ["locked.tif", "locked.txt"] {
        let path = dir.path().join(name);
        let mut permissions = fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o000);
        fs::set_permissions(&path, permissions).unwrap();
    }
    let found = names(&find_images("--input-dir", dir.path(), None).unwrap());
    // (root reads the files anyway and then finds the TIFF by content; either way the TIFF is listed.)
    assert_eq!(found, ["a.png", "locked.tif"]);
}

#[test]
fn masks_are_matched_by_stem_and_colliding_stems_are_errors() {
    let images = folder(&[("a.png", PNG), ("b.tif", TIFF), ("c.jpg", JPEG)]);
    let masks = folder(&[("a.png", PNG), ("b.tiff", TIFF), ("z.png", PNG)]);
    let found = find_images("--input-dir", images.path(), None).unwrap();
    let jobs = jobs(found.clone(), Some(masks.path())).unwrap();
    let summary: Vec<(&str, Option<String>)> = jobs
        .iter()
        .map(|j| (j.stem.as_str(), j.mask.as_ref().map(|m| names(std::slice::from_ref(m))[0].clone())))
        .collect();
    assert_eq!(summary, [("a", Some("a.png".to_string())), ("b", Some("b.tiff".to_string())), ("c", None)]);
    assert_eq!(jobs[1].image, images.path().join("b.tif"));

    fs::write(masks.path().join("a.tif"), TIFF).unwrap();
    let err = runner::folder::jobs(found, Some(masks.path())).unwrap_err();
    assert!(matches!(&err, FolderError::AmbiguousMask { stem, .. } if stem == "a"), "{err}");

    fs::write(images.path().join("a.tiff"), TIFF).unwrap();
    let err =
        runner::folder::jobs(find_images("--input-dir", images.path(), None).unwrap(), None).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("a.png") && message.contains("a.tiff"), "{message}");
}

#[test]
fn the_shards_of_a_folder_cover_it_exactly_once() {
    let files: Vec<(String, &[u8])> = (0..23).map(|i| (format!("img_{i:03}.png"), PNG)).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let dir = folder(&refs);
    let all = find_images("--input-dir", dir.path(), None).unwrap();
    for count in [1, 2, 4, 7, 23, 30] {
        let mut union = Vec::new();
        for index in 0..count {
            let shard: Shard = format!("{index}/{count}").parse().unwrap();
            // Each task lists the folder itself: the sorted listing is the same in every task.
            union.extend(select_shard(find_images("--input-dir", dir.path(), None).unwrap(), shard));
        }
        assert_eq!(union, all, "{count} shards");
    }
}
