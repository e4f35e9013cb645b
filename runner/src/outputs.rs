//! The files one prediction reads and writes, checked before any work and replaced all together.
//!
//! Stages: [`OutputSet::new`] checks that every input is a regular file (a FIFO, socket, device or folder
//! is refused without being opened, so nothing blocks); [`OutputSet::add`] checks each output (its folder
//! exists and is writable, it is not a folder, and it is not the same file as any input or earlier output,
//! by canonical path or by device and inode, so symbolic and hard links count) and creates its temporary
//! file beside it; the caller writes every temporary; [`OutputSet::commit`] syncs them and renames them
//! over their targets. A set that is dropped uncommitted removes its temporaries, so a failure anywhere
//! before the commit leaves every existing file as it was.
//!
//! Temporaries are named `.<file name>.segmenter-<pid>.tmp`, so a person who finds one knows what wrote it,
//! and the next run that writes the same file removes those whose process is gone.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why an input or output path is refused, or an output could not be put in place. Every message is one
/// line naming the flag, the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("{flag} {path}: cannot read it ({reason}); check the path")]
    InputUnreadable { flag: String, path: PathBuf, reason: String },
    #[error("{flag} {path} is {kind}, not a regular file; pass an image or model file")]
    InputNotFile { flag: String, path: PathBuf, kind: &'static str },
    #[error("{flag} {path} is the same file as {input_flag} {input}; writing it would overwrite that input, so choose another path for {flag}")]
    OverwritesInput { flag: String, path: PathBuf, input_flag: String, input: PathBuf },
    #[error("{flag} {path} is the same file as {other_flag} {other}; give each output its own path")]
    SameOutput { flag: String, path: PathBuf, other_flag: String, other: PathBuf },
    #[error("{flag} {path} is a folder; give a file path inside it, e.g. {example}")]
    OutputIsFolder { flag: String, path: PathBuf, example: PathBuf },
    #[error("{flag} {path} is {kind}, not a regular file; give the path of a file to create or replace")]
    OutputNotFile { flag: String, path: PathBuf, kind: &'static str },
    #[error("{flag} {path} names no file; give a file path such as out/mask.png")]
    NoFileName { flag: String, path: PathBuf },
    #[error("{flag} {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) or choose another path")]
    MissingFolder { flag: String, path: PathBuf, folder: PathBuf },
    #[error("{flag} {path}: {folder} is not a folder; choose a path inside a folder")]
    ParentNotFolder { flag: String, path: PathBuf, folder: PathBuf },
    #[error("{flag} {path}: cannot create a file in {folder} ({reason}); choose a writable folder")]
    Unwritable { flag: String, path: PathBuf, folder: PathBuf, reason: String },
    #[error("{flag} {path}: another output set of this process is writing it; write each file once")]
    Busy { flag: String, path: PathBuf },
    #[error("{flag} {path}: cannot put the finished file in place ({reason}); the earlier file, if any, is unchanged")]
    Commit { flag: String, path: PathBuf, reason: String },
}

/// What identifies a file: its canonical path and, when it exists, its device and inode.
#[derive(Debug, Clone)]
struct Identity {
    canonical: PathBuf,
    device_inode: Option<(u64, u64)>,
}

impl Identity {
    fn same_file(&self, other: &Identity) -> bool {
        self.canonical == other.canonical
            || matches!((self.device_inode, other.device_inode), (Some(a), Some(b)) if a == b)
    }
}

#[derive(Debug)]
struct Input {
    flag: String,
    path: PathBuf,
    identity: Identity,
}

#[derive(Debug)]
struct Output {
    flag: String,
    target: PathBuf,
    temporary: PathBuf,
    folder: PathBuf,
    identity: Identity,
}

/// The inputs and outputs of one prediction; see the module docs.
#[derive(Debug, Default)]
pub struct OutputSet {
    inputs: Vec<Input>,
    outputs: Vec<Output>,
}

/// Temporaries held by live sets of this process: a temporary with this process's id that is not here was
/// left by an earlier process that had the same id (common in containers), so it is stale.
static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn with_held<R>(f: impl FnOnce(&mut HashSet<PathBuf>) -> R) -> R {
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(held.get_or_insert_with(HashSet::new))
}

/// What a path that is not a regular file is, for messages.
fn kind_of(metadata: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = metadata.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if metadata.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

fn device_inode(metadata: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((metadata.dev(), metadata.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// An I/O error's text, for the one-line messages (kept as text: the messages carry no source chain, so no
/// cause is printed twice).
fn reason(error: &std::io::Error) -> String {
    error.to_string()
}

/// Checks that `path` (given as `flag`) is a regular file after following links, without opening it.
pub fn check_input(flag: &str, path: &Path) -> Result<(), OutputError> {
    input_identity(flag, path).map(|_| ())
}

fn input_identity(flag: &str, path: &Path) -> Result<Identity, OutputError> {
    let metadata = fs::metadata(path).map_err(|e| OutputError::InputUnreadable {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: reason(&e),
    })?;
    if !metadata.is_file() {
        return Err(OutputError::InputNotFile {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            kind: kind_of(&metadata),
        });
    }
    let canonical = fs::canonicalize(path).map_err(|e| OutputError::InputUnreadable {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: reason(&e),
    })?;
    Ok(Identity { canonical, device_inode: device_inode(&metadata) })
}

/// The folder a file path is in (`.` for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary that `target` is written through by the process `pid`.
pub fn temporary_path(target: &Path, pid: u32) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    folder_of(target).join(format!(".{name}.segmenter-{pid}.tmp"))
}

/// The process id in a temporary's file name, if `file_name` is a temporary of the file named `name`.
fn temporary_pid(file_name: &str, name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?.strip_prefix(name)?.strip_prefix(".segmenter-")?;
    let digits = rest.strip_suffix(".tmp")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a process with this id is running (or may be: when unsure, it counts as running).
fn process_running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        if pid <= 0 {
            return true;
        }
        // Signal 0 checks existence only. EPERM: it exists but belongs to someone else.
        // SAFETY: kill with signal 0 sends nothing and has no memory effects.
        let status = unsafe { libc::kill(pid, 0) };
        status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the temporaries of the file `name` in `folder` left by processes that are gone (and this
/// process's own, when no live set holds them). Best effort: a temporary that cannot be removed stays.
fn remove_stale_temporaries(folder: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|f| temporary_pid(f, name)) else { continue };
        let path = entry.path();
        let stale = if pid == own { !with_held(|held| held.contains(&path)) } else { !process_running(pid) };
        if stale {
            let _ = fs::remove_file(&path);
        }
    }
}

impl OutputSet {
    /// Checks every input `(flag, path)`: it must exist and be a regular file after following links.
    pub fn new(inputs: &[(&str, &Path)]) -> Result<OutputSet, OutputError> {
        let mut set = OutputSet::default();
        for &(flag, path) in inputs {
            set.add_input(flag, path)?;
        }
        Ok(set)
    }

    /// Adds one more input (checked like those given to [`OutputSet::new`]); outputs added later must not
    /// be it.
    pub fn add_input(&mut self, flag: &str, path: &Path) -> Result<(), OutputError> {
        let identity = input_identity(flag, path)?;
        self.inputs.push(Input { flag: flag.to_string(), path: path.to_path_buf(), identity });
        Ok(())
    }

    /// Checks the output `path` (given as `flag`) and returns the temporary file to write it into (created
    /// empty, in the same folder). See the module docs for what is refused.
    pub fn add(&mut self, flag: &str, path: &Path) -> Result<PathBuf, OutputError> {
        let err_path = || (flag.to_string(), path.to_path_buf());
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            let (flag, path) = err_path();
            return Err(OutputError::NoFileName { flag, path });
        };
        let folder = folder_of(path);
        match fs::metadata(&folder) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let (flag, path) = err_path();
                return Err(OutputError::ParentNotFolder { flag, path, folder });
            }
            Err(_) => {
                let (flag, path) = err_path();
                return Err(OutputError::MissingFolder { flag, path, folder });
            }
        }
        let identity = self.output_identity(flag, path, &folder, &name)?;
        if let Some(input) = self.inputs.iter().find(|i| i.identity.same_file(&identity)) {
            let (flag, path) = err_path();
            return Err(OutputError::OverwritesInput {
                flag,
                path,
                input_flag: input.flag.clone(),
                input: input.path.clone(),
            });
        }
        if let Some(other) = self.outputs.iter().find(|o| o.identity.same_file(&identity)) {
            let (flag, path) = err_path();
            return Err(OutputError::SameOutput {
                flag,
                path,
                other_flag: other.flag.clone(),
                other: other.target.clone(),
            });
        }

        remove_stale_temporaries(&folder, &name);
        let temporary = temporary_path(path, std::process::id());
        if !with_held(|held| held.insert(temporary.clone())) {
            let (flag, path) = err_path();
            return Err(OutputError::Busy { flag, path });
        }
        // Creating it now proves the folder writable before any work, and claims the name.
        if let Err(e) = File::options().write(true).create_new(true).open(&temporary) {
            with_held(|held| held.remove(&temporary));
            let (flag, path) = err_path();
            return Err(OutputError::Unwritable { flag, path, folder, reason: reason(&e) });
        }
        self.outputs.push(Output {
            flag: flag.to_string(),
            target: path.to_path_buf(),
            temporary: temporary.clone(),
            folder,
            identity,
        });
        Ok(temporary)
    }

    /// The identity of an output that may not exist yet: the file it names (through links) when it exists,
    /// else the canonical folder joined with the name; a dangling link counts as the path it points to.
    fn output_identity(
        &self,
        flag: &str,
        path: &Path,
        folder: &Path,
        name: &str,
    ) -> Result<Identity, OutputError> {
        if let Ok(metadata) = fs::metadata(path) {
            if metadata.is_dir() {
                return Err(OutputError::OutputIsFolder {
                    flag: flag.to_string(),
                    path: path.to_path_buf(),
                    example: path.join("mask.png"),
                });
            }
            if !metadata.is_file() {
                return Err(OutputError::OutputNotFile {
                    flag: flag.to_string(),
                    path: path.to_path_buf(),
                    kind: kind_of(&metadata),
                });
            }
            if let Ok(canonical) = fs::canonicalize(path) {
                return Ok(Identity { canonical, device_inode: device_inode(&metadata) });
            }
        }
        let canonical_folder = fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
        let mut canonical = canonical_folder.join(name);
        if let Ok(link) = fs::read_link(path) {
            let pointed = if link.is_absolute() { link } else { canonical_folder.join(link) };
            let pointed_folder = folder_of(&pointed);
            if let (Ok(f), Some(n)) = (fs::canonicalize(&pointed_folder), pointed.file_name()) {
                canonical = f.join(n);
            }
        }
        Ok(Identity { canonical, device_inode: None })
    }

    /// The final paths, in the order they were added.
    pub fn targets(&self) -> Vec<PathBuf> {
        self.outputs.iter().map(|o| o.target.clone()).collect()
    }

    /// Syncs every temporary, renames each over its target and syncs the folders; returns the final paths
    /// in the order they were added. Every check was done by `add`, so a rename can only fail if the
    /// folder changed meanwhile; then the outputs not yet renamed keep their earlier files.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        let commit_error = |o: &Output, e: std::io::Error| OutputError::Commit {
            flag: o.flag.clone(),
            path: o.target.clone(),
            reason: reason(&e),
        };
        for output in &self.outputs {
            File::open(&output.temporary).and_then(|f| f.sync_all()).map_err(|e| commit_error(output, e))?;
        }
        let mut folders: Vec<&Path> = Vec::new();
        for output in &self.outputs {
            fs::rename(&output.temporary, &output.target).map_err(|e| commit_error(output, e))?;
            with_held(|held| held.remove(&output.temporary));
            if !folders.contains(&output.folder.as_path()) {
                folders.push(&output.folder);
            }
        }
        for folder in folders {
            // A folder's fsync makes the renames durable; some file systems refuse it, which costs only that.
            if let Ok(dir) = File::open(folder) {
                let _ = dir.sync_all();
            }
        }
        Ok(std::mem::take(&mut self.outputs).into_iter().map(|o| o.target).collect())
    }
}

impl Drop for OutputSet {
    /// An uncommitted set removes its temporaries (those not yet renamed); targets are never touched.
    fn drop(&mut self) {
        for output in &self.outputs {
            if with_held(|held| held.remove(&output.temporary)) {
                let _ = fs::remove_file(&output.temporary);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_round_trip() {
        let t = temporary_path(Path::new("out/mask.png"), 4242);
        assert_eq!(t, Path::new("out/.mask.png.segmenter-4242.tmp"));
        assert_eq!(temporary_pid(".mask.png.segmenter-4242.tmp", "mask.png"), Some(4242));
        assert_eq!(temporary_pid(".mask.png.segmenter-.tmp", "mask.png"), None);
        assert_eq!(temporary_pid(".mask.png.segmenter-12x.tmp", "mask.png"), None);
        assert_eq!(temporary_pid(".other.png.segmenter-1.tmp", "mask.png"), None);
        assert_eq!(temporary_pid(".mask.png.segmenter-1.tmp.bak", "mask.png"), None);
        assert_eq!(temporary_path(Path::new("m.png"), 7), Path::new("./.m.png.segmenter-7.tmp"));
    }

    #[test]
    fn this_process_is_running_and_a_reaped_child_is_not() {
        assert!(process_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_running(pid));
    }
}
