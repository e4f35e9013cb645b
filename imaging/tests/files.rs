//! The output set refuses outputs that would overwrite an input or each other, refuses inputs that are not
//! regular files without blocking on them, and replaces results all together or not at all.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use imaging::files::{host_name, temporary_path, FileError, OutputSet};

/// A folder with an image, a mask and a model, each holding distinct bytes.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("image.png", "image"), ("mask.png", "mask"), ("model.onnx", "model")] {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn inputs(&self) -> OutputSet {
        let (image, mask, model) = (self.path("image.png"), self.path("mask.png"), self.path("model.onnx"));
        OutputSet::new(&[("--image", &image), ("--mask", &mask), ("--model", &model)]).unwrap()
    }

    /// Every file in the folder with its bytes.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    }
}

fn assert_overwrites_input(result: Result<PathBuf, FileError>, input_flag: &str) {
    match result {
        Err(FileError::OverwritesInput { input_flag: flag, .. }) => assert_eq!(flag, input_flag),
        other => panic!("expected an output onto {input_flag} to be refused, got {other:?}"),
    }
}

#[test]
fn an_output_onto_any_input_is_refused_before_anything_is_written() {
    let files = Files::new();
    let before = files.snapshot();
    let dir = files.dir.path();
    std::os::unix::fs::symlink(files.path("image.png"), files.path("link-to-image.png")).unwrap();
    fs::hard_link(files.path("mask.png"), files.path("hard-mask.png")).unwrap();
    fs::create_dir(files.path("sub")).unwrap();
    let before_links = files.snapshot();
    let relative_dot = {
        // `dir/./image.png` and `dir/sub/../image.png` name the same file.
        let mut p = dir.as_os_str().to_owned();
        p.push("/./image.png");
        PathBuf::from(p)
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (files.path("image.png"), "--image"),
        (relative_dot, "--image"),
        (dir.join("sub/../image.png"), "--image"),
        (files.path("link-to-image.png"), "--image"),
        (files.path("mask.png"), "--mask"),
        (files.path("hard-mask.png"), "--mask"),
        (files.path("model.onnx"), "--model"),
    ];
    for (output, input_flag) in cases {
        for flag in ["--output", "--overlay", "--probabilities", "--metrics-json"] {
            let mut set = files.inputs();
            assert_overwrites_input(set.add(flag, &output), input_flag);
            drop(set);
        }
    }
    let message = files.inputs().add("--output", &files.path("image.png")).unwrap_err().to_string();
    assert!(message.contains("--output") && message.contains("--image") && message.contains("image.png"));
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(files.snapshot(), before_links);
    assert_eq!(before.len() + 1, before_links.len(), "the hard link is a file, the symbolic link is not");
}

#[test]
fn a_relative_output_naming_an_input_is_refused() {
    let files = Files::new();
    // The current folder is process-wide: use only absolute paths elsewhere in this file.
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(files.dir.path()).unwrap();
    let image = PathBuf::from("image.png");
    let mut set = OutputSet::new(&[("--image", &image)]).unwrap();
    let result = set.add("--output", Path::new("./image.png"));
    let bare = set.add("--overlay", Path::new("image.png"));
    std::env::set_current_dir(cwd).unwrap();
    assert_overwrites_input(result, "--image");
    assert_overwrites_input(bare, "--image");
}

#[test]
fn two_outputs_onto_one_file_are_refused() {
    let files = Files::new();
    let mut set = files.inputs();
    set.add("--output", &files.path("out.png")).unwrap();
    let err = set.add("--overlay", &files.path("out.png")).unwrap_err();
    assert!(matches!(&err, FileError::SameOutput { other_flag, .. } if other_flag == "--output"), "{err}");
    // Through a link to an output that does not exist yet.
    std::os::unix::fs::symlink(files.path("out.png"), files.path("alias.png")).unwrap();
    let err = set.add("--probabilities", &files.path("alias.png")).unwrap_err();
    assert!(matches!(err, FileError::SameOutput { .. }), "{err}");
    // And through a hard link to an existing file.
    fs::write(files.path("old.png"), "old").unwrap();
    fs::hard_link(files.path("old.png"), files.path("old-too.png")).unwrap();
    set.add("--overlay", &files.path("old.png")).unwrap();
    let err = set.add("--metrics-json", &files.path("old-too.png")).unwrap_err();
    assert!(matches!(err, FileError::SameOutput { .. }), "{err}");
}

/// Runs `f` on another thread and fails if it does not return within a few seconds.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(f()));
    receiver.recv_timeout(Duration::from_secs(10)).expect("blocked: the FIFO was opened")
}

#[test]
fn a_fifo_or_folder_input_is_refused_without_blocking() {
    let files = Files::new();
    let fifo = files.path("pipe.png");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let err = within_seconds(move || OutputSet::new(&[("--image", &fifo)]).map(|_| ()).unwrap_err());
    assert!(matches!(&err, FileError::InputNotFile { kind, .. } if kind.contains("FIFO")), "{err}");
    assert!(err.to_string().starts_with("--image "), "{err}");

    // A link to the FIFO is followed, and refused the same way.
    std::os::unix::fs::symlink(files.path("pipe.png"), files.path("link.png")).unwrap();
    let link = files.path("link.png");
    let err = within_seconds(move || OutputSet::new(&[("--mask", &link)]).map(|_| ()).unwrap_err());
    assert!(matches!(err, FileError::InputNotFile { .. }), "{err}");

    let folder = files.dir.path().to_path_buf();
    let err = OutputSet::new(&[("--model", &folder)]).unwrap_err();
    assert!(matches!(&err, FileError::InputNotFile { kind: "a folder", .. }), "{err}");
    let err = OutputSet::new(&[("--image", Path::new("/dev/null"))]).unwrap_err();
    assert!(matches!(&err, FileError::InputNotFile { kind: "a device", .. }), "{err}");
    let err = OutputSet::new(&[("--image", &files.path("missing.png"))]).unwrap_err();
    assert!(matches!(err, FileError::InputUnreadable { .. }), "{err}");
}

#[test]
fn an_output_that_is_a_folder_or_in_a_missing_folder_is_refused() {
    let files = Files::new();
    let mut set = files.inputs();
    let err = set.add("--output", files.dir.path()).unwrap_err();
    assert!(matches!(err, FileError::OutputIsFolder { .. }), "{err}");
    // A device is written directly, never replaced (see the special-files test in files.rs).
    assert_eq!(set.add("--output", Path::new("/dev/null")).unwrap(), Path::new("/dev/null"));
    let err = set.add("--overlay", &files.path("no/such/dir/o.png")).unwrap_err();
    assert!(matches!(err, FileError::MissingFolder { .. }), "{err}");
    assert!(err.to_string().contains("mkdir -p"), "{err}");
    let err = set.add("--overlay", &files.path("image.png/o.png")).unwrap_err();
    assert!(matches!(err, FileError::ParentNotFolder { .. }), "{err}");
}

#[test]
fn an_unwritable_folder_is_refused() {
    let files = Files::new();
    let locked = files.path("locked");
    fs::create_dir(&locked).unwrap();
    let mut permissions = fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o555);
    fs::set_permissions(&locked, permissions).unwrap();
    // root may write anyway; the check is then the real create, which succeeds.
    let probe = fs::File::create(locked.join("probe"));
    let mut set = files.inputs();
    let result = set.add("--output", &locked.join("mask.png"));
    if probe.is_err() {
        assert!(matches!(result, Err(FileError::Unwritable { .. })), "{result:?}");
    } else {
        result.unwrap();
    }
}

#[test]
fn a_failure_on_a_later_output_leaves_every_existing_file_as_it_was() {
    let files = Files::new();
    fs::write(files.path("mask-out.png"), "old mask").unwrap();
    fs::write(files.path("overlay.jpg"), "old overlay").unwrap();
    let before = files.snapshot();
    {
        let mut set = files.inputs();
        let mask_tmp = set.add("--output", &files.path("mask-out.png")).unwrap();
        let overlay_tmp = set.add("--overlay", &files.path("overlay.jpg")).unwrap();
        fs::write(&mask_tmp, "new mask").unwrap();
        fs::write(&overlay_tmp, "new overlay").unwrap();
        // The probabilities' folder is missing: refused, and the set is dropped uncommitted.
        let err = set.add("--probabilities", &files.path("gone/p.npy")).unwrap_err();
        assert!(matches!(err, FileError::MissingFolder { .. }), "{err}");
        assert!(mask_tmp.exists() && overlay_tmp.exists());
    }
    assert_eq!(files.snapshot(), before, "files changed, or temporaries were left");
}

#[test]
fn commit_replaces_every_target_and_leaves_no_temporary() {
    let files = Files::new();
    fs::write(files.path("out.png"), "old").unwrap();
    let mut set = files.inputs();
    let a = set.add("--output", &files.path("out.png")).unwrap();
    let b = set.add("--probabilities", &files.path("p.npy")).unwrap();
    assert_eq!(a.parent(), Some(files.dir.path()));
    assert!(a.file_name().unwrap().to_str().unwrap().starts_with(".out.png.segmenter-"));
    fs::File::create(&a).unwrap().write_all(b"new").unwrap();
    fs::write(&b, "probabilities").unwrap();
    let written = set.commit().unwrap();
    assert_eq!(written, vec![files.path("out.png"), files.path("p.npy")]);
    assert_eq!(fs::read(files.path("out.png")).unwrap(), b"new");
    assert_eq!(fs::read(files.path("p.npy")).unwrap(), b"probabilities");
    assert!(!a.exists() && !b.exists());
    // The same targets can be written again by a new set.
    let mut again = files.inputs();
    let tmp = again.add("--output", &files.path("out.png")).unwrap();
    fs::write(tmp, "newer").unwrap();
    again.commit().unwrap();
    assert_eq!(fs::read(files.path("out.png")).unwrap(), b"newer");
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept() {
    let files = Files::new();
    let target = files.path("mask-out.png");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let live = sleeper.id();
    let dead_tmp = temporary_path(&target, host_name(), dead);
    let live_tmp = temporary_path(&target, host_name(), live);
    let other_tmp = temporary_path(&files.path("other.png"), host_name(), dead);
    // Another machine's temporary (shared storage): its processes cannot be seen from here, so it stays.
    let other_host_tmp = temporary_path(&target, "another-node", dead);
    for tmp in [&dead_tmp, &live_tmp, &other_tmp, &other_host_tmp] {
        fs::write(tmp, "left over").unwrap();
    }
    let mut set = files.inputs();
    set.add("--output", &target).unwrap();
    let (dead_gone, live_kept, other_kept) = (!dead_tmp.exists(), live_tmp.exists(), other_tmp.exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(dead_gone, "the dead process's temporary was kept");
    assert!(live_kept, "the running process's temporary was removed");
    assert!(other_kept, "a temporary of another file was removed");
    assert!(other_host_tmp.exists(), "another host's temporary was removed");
}

#[test]
fn a_temporary_left_under_this_process_id_is_stale_unless_a_live_set_holds_it() {
    // In a container, a killed run and the next one often get the same process id.
    let files = Files::new();
    let target = files.path("mask-out.png");
    let own = temporary_path(&target, host_name(), std::process::id());
    fs::write(&own, "left by an earlier process with this id").unwrap();
    let mut set = files.inputs();
    assert_eq!(set.add("--output", &target).unwrap(), own);
    assert_eq!(fs::read(&own).unwrap(), b"", "the stale temporary was not replaced");
    // A second live set writing the same file in this process is refused instead of sharing it.
    let mut other = files.inputs();
    let err = other.add("--output", &target).unwrap_err();
    assert!(matches!(err, FileError::Busy { .. }), "{err}");
    drop(set);
    assert!(!own.exists());
}
