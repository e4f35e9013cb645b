//! Files read and written safely: every output of both binaries goes through [`OutputSet`] (or
//! [`write_atomic`], a set of one), so a failure never leaves a partial file and never destroys an input.
//!
//! Stages: [`OutputSet::new`] checks that every input is a regular file (a FIFO, socket, device or folder
//! is refused without being opened, so nothing blocks); [`OutputSet::add`] follows the output path's
//! symbolic links to the file they name, checks it (its folder exists and is writable, it is not a folder,
//! and it is not the same file as any input or earlier output, by canonical path or by device and inode, so
//! symbolic and hard links count) and creates its temporary file beside that file; the caller writes every
//! temporary; [`OutputSet::commit`] syncs them and renames them over their targets. An OME-Zarr store
//! ([`OutputSet::add_store`]) is the same with a temporary folder, synced file by file and swapped in at
//! the commit with the other outputs (the label `--labels` writes into an input store is registered the
//! same way). A set that is dropped uncommitted removes its temporaries, so a failure anywhere before the
//! commit leaves every existing file and store as it was.
//!
//! Links and special files: an output that is a symbolic link is written through: the rename replaces the
//! file the link names, never the link. An output that is (or names) a FIFO, a character device or a
//! socket, such as `/dev/stdout` or `/dev/null`, cannot be replaced atomically and must never be replaced:
//! it is written directly, without a temporary.
//!
//! Temporaries are named `.<file name>.segmenter-<host>-<pid>.tmp`, so a person who finds one knows what
//! wrote it, and two processes on two machines sharing a folder never pick the same name. The next run
//! on the same host that writes the same file removes those whose process is gone; a temporary of another
//! host is never touched (its processes cannot be seen from here).

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The folder of an OME-Zarr store that holds the shares' plan and done markers until `runner finalize`; a
/// store holding it is in progress, not broken.
pub const SHARES_DIR: &str = ".segmenter-shares";

/// Why an input or output path is refused, or an output could not be put in place. Every message is one
/// line naming the flag, the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{flag} {path}: cannot read it ({reason}); check the path")]
    InputUnreadable { flag: String, path: PathBuf, reason: String },
    #[error("{flag} {path} is {kind}, not a regular file; pass an image or model file")]
    InputNotFile { flag: String, path: PathBuf, kind: &'static str },
    #[error("{flag} {path} is the same file as {input_flag} {input}; writing it would overwrite that input, so choose another path for {flag}")]
    OverwritesInput { flag: String, path: PathBuf, input_flag: String, input: PathBuf },
    #[error("{flag} {path} {how} {input_flag} {input}; replacing it would delete or change that input, so choose a path for {flag} outside it")]
    NestsInput { flag: String, path: PathBuf, how: &'static str, input_flag: String, input: PathBuf },
    #[error("{flag} {path} is the same file as {other_flag} {other}; give each output its own path")]
    SameOutput { flag: String, path: PathBuf, other_flag: String, other: PathBuf },
    #[error("{flag} {path} is a folder; give a file path inside it, e.g. {example}")]
    OutputIsFolder { flag: String, path: PathBuf, example: PathBuf },
    #[error("{flag} {path} names no file; give a file path such as {example}")]
    NoFileName { flag: String, path: PathBuf, example: &'static str },
    #[error("{flag} {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) or choose another path")]
    MissingFolder { flag: String, path: PathBuf, folder: PathBuf },
    #[error("{flag} {path}: {folder} is not a folder; choose a path inside a folder")]
    ParentNotFolder { flag: String, path: PathBuf, folder: PathBuf },
    #[error("{flag} {path}: cannot create a file in {folder} ({reason}); choose a writable folder")]
    Unwritable { flag: String, path: PathBuf, folder: PathBuf, reason: String },
    #[error("{flag} {path}: its symbolic links do not end in a file ({reason}); fix the link or give another path")]
    BadLink { flag: String, path: PathBuf, reason: String },
    #[error("{flag} {path}: its name is too long for the file system (the temporary written beside it, {temporary}, adds the host and process id); choose a shorter name for {flag}")]
    NameTooLong { flag: String, path: PathBuf, temporary: String },
    #[error("{flag} {path}: another output set of this process is writing it; write each file once")]
    Busy { flag: String, path: PathBuf },
    #[error(
        "{flag} {path}: cannot write it ({reason}); check that its folder is writable and the disk has room"
    )]
    Write { flag: String, path: PathBuf, reason: String },
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

    /// The identity of an existing file or of a file still to be written (its canonical folder plus its
    /// name), through links.
    fn of(path: &Path) -> Option<Identity> {
        if let Ok(metadata) = fs::metadata(path) {
            if let Ok(canonical) = fs::canonicalize(path) {
                return Some(Identity { canonical, device_inode: device_inode(&metadata) });
            }
        }
        let target = resolve_links(path).ok()?;
        let folder = fs::canonicalize(folder_of(&target)).ok()?;
        Some(Identity { canonical: folder.join(target.file_name()?), device_inode: None })
    }
}

/// True when `a` and `b` are the same file (through symbolic and hard links) or would be once written.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (Identity::of(a), Identity::of(b)) {
        (Some(a), Some(b)) => a.same_file(&b),
        _ => false,
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
    /// The path as given (for messages) and the file written: the end of its links.
    given: PathBuf,
    target: PathBuf,
    /// Where the caller writes: a temporary beside `target` (a file, or a folder for a store), or
    /// `target` itself for a special file.
    written: PathBuf,
    kind: Kind,
    folder: PathBuf,
    identity: Identity,
}

/// What an output is, which decides how it is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A regular file, written as a temporary file renamed over its target at the commit.
    File,
    /// A FIFO, device or socket, written directly.
    Special,
    /// An OME-Zarr store (a folder), written as a temporary folder swapped in at the commit.
    Store,
}

/// The inputs and outputs of one piece of work; see the module docs.
#[derive(Debug, Default)]
pub struct OutputSet {
    inputs: Vec<Input>,
    outputs: Vec<Output>,
}

/// Temporaries held by live sets of this process: a temporary with this host and process id that is not
/// here was left by an earlier process that had the same id (common in containers), so it is stale.
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

/// An I/O error's own words without the "(os error N)" suffix, which repeats nothing a user can act on.
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Whether `error` says a file name is longer than the file system takes (ENAMETOOLONG).
pub fn name_too_long(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ENAMETOOLONG)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// What to do when a file or folder cannot be created: the true reason's remedy for a name too long,
/// else the folder's.
pub fn create_hint(error: &std::io::Error) -> &'static str {
    if name_too_long(error) {
        "the name is too long for the file system; choose a shorter name"
    } else {
        "check that its folder exists and is writable"
    }
}

/// Why an input path cannot be read as a file.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InputFileError {
    #[error("{0}")]
    Io(String),
    #[error("it is {0}, not a regular file; pass an image file")]
    NotRegular(&'static str),
}

/// Checks that `path` (after following links) is a regular file, without opening it: opening a FIFO would
/// block until a writer appears. Returns its size in bytes.
pub fn regular_file_size(path: &Path) -> Result<u64, InputFileError> {
    let meta = fs::metadata(path).map_err(|e| InputFileError::Io(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(InputFileError::NotRegular(kind_of(&meta)));
    }
    Ok(meta.len())
}

/// Checks that `path` (given as `flag`) is a regular file after following links, without opening it, or a
/// folder holding an OME-Zarr image.
pub fn check_input(flag: &str, path: &Path) -> Result<(), FileError> {
    input_identity(flag, path).map(|_| ())
}

fn input_identity(flag: &str, path: &Path) -> Result<Identity, FileError> {
    let unreadable = |e: std::io::Error| FileError::InputUnreadable {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: io_reason(&e),
    };
    let metadata = fs::metadata(path).map_err(unreadable)?;
    // An OME-Zarr image is a folder (read by `source`, which checks its metadata).
    let zarr = metadata.is_dir() && crate::source::looks_like_ome_zarr_store(path);
    if !metadata.is_file() && !zarr {
        return Err(FileError::InputNotFile {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            kind: kind_of(&metadata),
        });
    }
    let canonical = fs::canonicalize(path).map_err(unreadable)?;
    Ok(Identity { canonical, device_inode: device_inode(&metadata) })
}

/// How the output at canonical path `output` nests with the input at canonical path `input`: "contains"
/// (an output store or folder holding the input) or "is inside" (an output inside an input store), by
/// whole path components; `None` when neither holds the other (an equal path is the same file).
fn nesting(output: &Path, input: &Path) -> Option<&'static str> {
    if output == input {
        None
    } else if input.starts_with(output) {
        Some("contains")
    } else if output.starts_with(input) {
        Some("is inside")
    } else {
        None
    }
}

/// The folder a file path is in (`.` for a bare name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The most links followed before a path counts as a loop (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The path a file is written at: `path` with its symbolic links followed to their end, textually, so a
/// dangling link gives the path it would create. A link to a special file (`/dev/stdout` ->
/// `/proc/self/fd/1` -> `pipe:[N]`) ends at the last path the kernel can open.
pub fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&current)?;
                let next = if link.is_absolute() { link } else { folder_of(&current).join(link) };
                // A link whose text names nothing but which the kernel opens (`/proc/self/fd/1` ->
                // `pipe:[N]`) is used as it is.
                if fs::symlink_metadata(&next).is_err() && fs::metadata(&current).is_ok() {
                    return Ok(current);
                }
                current = next;
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!("more than {MAX_LINKS} symbolic links, probably a loop")))
}

/// This machine's name as it may appear in a file name (letters, digits, `-`, `_`, `.`), or `host`.
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = raw_host_name().unwrap_or_default();
        let clean: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .take(64)
            .collect();
        if clean.is_empty() {
            "host".to_string()
        } else {
            clean
        }
    })
}

#[cfg(unix)]
fn raw_host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer, which lives for the call.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

#[cfg(not(unix))]
fn raw_host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// The temporary that `target` is written through by process `pid` on `host`.
pub fn temporary_path(target: &Path, host: &str, pid: u32) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    folder_of(target).join(format!(".{name}.segmenter-{host}-{pid}.tmp"))
}

/// The host and process id in a temporary's file name, if `file_name` is a temporary of the file `name`.
pub fn temporary_owner<'a>(file_name: &'a str, name: &str) -> Option<(&'a str, u32)> {
    let rest = file_name.strip_prefix('.')?.strip_prefix(name)?.strip_prefix(".segmenter-")?;
    let (host, digits) = rest.strip_suffix(".tmp")?.rsplit_once('-')?;
    if host.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, digits.parse().ok()?))
}

/// Whether a process with this id is running on this host (or may be: when unsure, it counts as running).
pub fn process_running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        if pid <= 0 {
            return true;
        }
        // Signal 0 checks existence only. EPERM: it exists but belongs to someone else.
        // SAFETY: kill with signal 0 sends nothing and has no memory effects.
        let status = unsafe { libc::kill(pid, 0) };
        let exists = status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        // A killed process that its parent has not reaped yet (a zombie) still answers signal 0, but it
        // will write nothing more: its temporaries are stale.
        exists
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_state(&stat))
                .is_some_and(|state| state == 'Z' || state == 'X')
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The state letter of a `/proc/PID/stat` line (the field after the command name, which is in
/// parentheses and may itself hold spaces and parentheses).
fn stat_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// Removes the temporaries of the file `name` in `folder` left by processes of this host that are gone (and
/// this process's own, when no live set holds them). Best effort: a temporary that cannot be removed stays.
fn remove_stale_temporaries(folder: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    let own = std::process::id();
    let host = host_name();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((owner_host, pid)) = file_name.to_str().and_then(|f| temporary_owner(f, name)) else {
            continue;
        };
        if owner_host != host {
            continue;
        }
        let path = entry.path();
        let stale = if pid == own { !with_held(|held| held.contains(&path)) } else { !process_running(pid) };
        if stale {
            // A store's temporary is a folder.
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
    }
}

impl OutputSet {
    /// Checks every input `(flag, path)`: it must exist and be a regular file after following links (or a
    /// folder holding an OME-Zarr image).
    pub fn new(inputs: &[(&str, &Path)]) -> Result<OutputSet, FileError> {
        let mut set = OutputSet::default();
        for &(flag, path) in inputs {
            set.add_input(flag, path)?;
        }
        Ok(set)
    }

    /// Adds one more input (checked like those given to [`OutputSet::new`]); outputs added later must not
    /// be it.
    pub fn add_input(&mut self, flag: &str, path: &Path) -> Result<(), FileError> {
        let identity = input_identity(flag, path)?;
        self.inputs.push(Input { flag: flag.to_string(), path: path.to_path_buf(), identity });
        Ok(())
    }

    /// Checks the output `path` (given as `flag`) and returns the path to write it at: a temporary file
    /// (created empty, beside the file the path names), or the special file itself. See the module docs.
    pub fn add(&mut self, flag: &str, path: &Path) -> Result<PathBuf, FileError> {
        let err_path = || (flag.to_string(), path.to_path_buf());
        let target = resolve_links(path).map_err(|e| {
            let (flag, path) = err_path();
            FileError::BadLink { flag, path, reason: io_reason(&e) }
        })?;
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            let (flag, path) = err_path();
            return Err(FileError::NoFileName { flag, path, example: "out/mask.png" });
        };
        let folder = folder_of(&target);
        let special = match fs::metadata(&target) {
            Ok(m) if m.is_dir() => {
                let (flag, path) = err_path();
                return Err(FileError::OutputIsFolder { flag, example: path.join("mask.png"), path });
            }
            Ok(m) => (!m.is_file()).then(|| device_inode(&m)),
            Err(_) => None,
        };
        if let Some(device_inode) = special {
            let canonical = fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            let identity = Identity { canonical, device_inode };
            self.check_distinct(flag, path, &identity)?;
            self.outputs.push(Output {
                flag: flag.to_string(),
                given: path.to_path_buf(),
                target: target.clone(),
                written: target.clone(),
                kind: Kind::Special,
                folder,
                identity,
            });
            return Ok(target);
        }
        match fs::metadata(&folder) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let (flag, path) = err_path();
                return Err(FileError::ParentNotFolder { flag, path, folder });
            }
            Err(_) => {
                let (flag, path) = err_path();
                return Err(FileError::MissingFolder { flag, path, folder });
            }
        }
        let canonical_folder = fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone());
        let device_inode = fs::metadata(&target).ok().and_then(|m| device_inode(&m));
        let identity = Identity { canonical: canonical_folder.join(&name), device_inode };
        self.check_distinct(flag, path, &identity)?;

        remove_stale_temporaries(&folder, &name);
        let temporary = temporary_path(&target, host_name(), std::process::id());
        if !with_held(|held| held.insert(temporary.clone())) {
            let (flag, path) = err_path();
            return Err(FileError::Busy { flag, path });
        }
        // Creating it now proves the folder writable before any work, and claims the name.
        if let Err(e) = File::options().write(true).create_new(true).open(&temporary) {
            with_held(|held| held.remove(&temporary));
            let (flag, path) = err_path();
            if name_too_long(&e) {
                let temporary =
                    temporary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                return Err(FileError::NameTooLong { flag, path, temporary });
            }
            return Err(FileError::Unwritable { flag, path, folder, reason: io_reason(&e) });
        }
        self.outputs.push(Output {
            flag: flag.to_string(),
            given: path.to_path_buf(),
            target,
            written: temporary.clone(),
            kind: Kind::File,
            folder,
            identity,
        });
        Ok(temporary)
    }

    /// Checks the output `path` (given as `flag`) of an OME-Zarr store (a folder, `.ome.zarr`) and returns
    /// the folder to write it in: a temporary folder beside it, created empty, which
    /// [`OutputSet::commit`] swaps in with the other outputs (an earlier store at the path is moved away,
    /// the new one in, and the earlier one removed). Refused, as [`OutputSet::add`] refuses them: an
    /// input, an earlier output, a missing folder; and anything at the path that is not an OME-Zarr store.
    pub fn add_store(&mut self, flag: &str, path: &Path) -> Result<PathBuf, FileError> {
        let err_path = || (flag.to_string(), path.to_path_buf());
        let target = resolve_links(path).map_err(|e| {
            let (flag, path) = err_path();
            FileError::BadLink { flag, path, reason: io_reason(&e) }
        })?;
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            let (flag, path) = err_path();
            return Err(FileError::NoFileName { flag, path, example: "out/mask.ome.zarr" });
        };
        let folder = folder_of(&target);
        if fs::metadata(&target).is_ok() && !crate::source::looks_like_ome_zarr_store(&target) {
            let (flag, path) = err_path();
            let shares = target.join(SHARES_DIR).is_dir();
            let reason = if shares {
                "an OME-Zarr store being predicted in shares is there (it holds .segmenter-shares); finish \
                 it with `runner finalize` or remove it, refusing to replace it"
            } else {
                "something that is not an OME-Zarr store is there; refusing to replace it"
            };
            return Err(FileError::Unwritable { flag, path, folder, reason: reason.into() });
        }
        if !fs::metadata(&folder).map(|m| m.is_dir()).unwrap_or(false) {
            let (flag, path) = err_path();
            return Err(FileError::MissingFolder { flag, path, folder });
        }
        let canonical_folder = fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone());
        let identity = Identity { canonical: canonical_folder.join(&name), device_inode: None };
        self.check_distinct(flag, path, &identity)?;
        remove_stale_temporaries(&folder, &name);
        let temporary = temporary_path(&target, host_name(), std::process::id());
        if !with_held(|held| held.insert(temporary.clone())) {
            let (flag, path) = err_path();
            return Err(FileError::Busy { flag, path });
        }
        if let Err(e) = fs::create_dir(&temporary) {
            with_held(|held| held.remove(&temporary));
            let (flag, path) = err_path();
            if name_too_long(&e) {
                let temporary =
                    temporary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                return Err(FileError::NameTooLong { flag, path, temporary });
            }
            return Err(FileError::Unwritable { flag, path, folder, reason: io_reason(&e) });
        }
        self.outputs.push(Output {
            flag: flag.to_string(),
            given: path.to_path_buf(),
            target,
            written: temporary.clone(),
            kind: Kind::Store,
            folder,
            identity,
        });
        Ok(temporary)
    }

    /// Refuses an output that is an input, contains one or lies inside one (a store), or is an earlier
    /// output.
    fn check_distinct(&self, flag: &str, path: &Path, identity: &Identity) -> Result<(), FileError> {
        for input in &self.inputs {
            // `--labels` writes into the NGFF label group of the input store, by design.
            let label_group = flag == "--labels"
                && identity
                    .canonical
                    .strip_prefix(&input.identity.canonical)
                    .is_ok_and(|rest| rest.starts_with("labels"));
            if label_group {
                continue;
            }
            if let Some(how) = nesting(&identity.canonical, &input.identity.canonical) {
                return Err(FileError::NestsInput {
                    flag: flag.to_string(),
                    path: path.to_path_buf(),
                    how,
                    input_flag: input.flag.clone(),
                    input: input.path.clone(),
                });
            }
        }
        if let Some(input) = self.inputs.iter().find(|i| i.identity.same_file(identity)) {
            return Err(FileError::OverwritesInput {
                flag: flag.to_string(),
                path: path.to_path_buf(),
                input_flag: input.flag.clone(),
                input: input.path.clone(),
            });
        }
        if let Some(other) = self.outputs.iter().find(|o| o.identity.same_file(identity)) {
            return Err(FileError::SameOutput {
                flag: flag.to_string(),
                path: path.to_path_buf(),
                other_flag: other.flag.clone(),
                other: other.given.clone(),
            });
        }
        Ok(())
    }

    /// The paths as given, in the order they were added.
    pub fn targets(&self) -> Vec<PathBuf> {
        self.outputs.iter().map(|o| o.given.clone()).collect()
    }

    /// Syncs every temporary (a store's every file and folder), puts each in place (a file renamed over
    /// the file its path names; a store swapped in, the earlier store at its path moved away first and
    /// removed once every output is in place) and syncs the folders; returns the paths as given, in the
    /// order they were added. Nothing is put in place before every temporary is synced, so a failure to
    /// sync leaves every earlier file and store as it was. Every other check was done by `add`, so a
    /// rename can only fail if the folder changed meanwhile; then the outputs not yet renamed keep their
    /// earlier files.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, FileError> {
        let commit_error = |o: &Output, e: std::io::Error| FileError::Commit {
            flag: o.flag.clone(),
            path: o.given.clone(),
            reason: io_reason(&e),
        };
        for output in &self.outputs {
            match output.kind {
                Kind::File => File::open(&output.written).and_then(|f| f.sync_all()),
                Kind::Store => sync_tree(&output.written),
                Kind::Special => Ok(()),
            }
            .map_err(|e| commit_error(output, e))?;
        }
        let mut folders: Vec<&Path> = Vec::new();
        let mut earlier_stores = Vec::new();
        for output in self.outputs.iter().filter(|o| o.kind != Kind::Special) {
            if output.kind == Kind::Store && fs::symlink_metadata(&output.target).is_ok() {
                let earlier =
                    temporary_path(&output.target, &format!("{}-old", host_name()), std::process::id());
                if fs::symlink_metadata(&earlier).is_ok() {
                    fs::remove_dir_all(&earlier).map_err(|e| commit_error(output, e))?;
                }
                fs::rename(&output.target, &earlier).map_err(|e| commit_error(output, e))?;
                if let Err(e) = fs::rename(&output.written, &output.target) {
                    // Put the earlier store back.
                    let _ = fs::rename(&earlier, &output.target);
                    return Err(commit_error(output, e));
                }
                earlier_stores.push(earlier);
            } else {
                fs::rename(&output.written, &output.target).map_err(|e| commit_error(output, e))?;
            }
            with_held(|held| held.remove(&output.written));
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
        for earlier in earlier_stores {
            // The new stores are in place; an earlier one that cannot be removed is only left behind, under
            // a temporary name that the next run on this host removes.
            let _ = fs::remove_dir_all(&earlier);
        }
        Ok(std::mem::take(&mut self.outputs).into_iter().map(|o| o.given).collect())
    }
}

/// Syncs every file and folder under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some file systems refuse a folder's fsync; its files are synced.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput || e.raw_os_error() == Some(22) => Ok(()),
        other => other,
    }
}

impl Drop for OutputSet {
    /// An uncommitted set removes its temporaries (those not yet renamed); targets are never touched.
    fn drop(&mut self) {
        for output in &self.outputs {
            if output.kind != Kind::Special && with_held(|held| held.remove(&output.written)) {
                let _ = match output.kind {
                    Kind::Store => fs::remove_dir_all(&output.written),
                    _ => fs::remove_file(&output.written),
                };
            }
        }
    }
}

/// Writes one file (given as `flag`) through `write`, which writes the path it is handed, and puts it in
/// place: a set of one output, with every rule of [`OutputSet`].
pub fn write_atomic_with(
    flag: &str,
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), FileError> {
    let mut set = OutputSet::default();
    let written = set.add(flag, path)?;
    write(&written).map_err(|reason| FileError::Write {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason,
    })?;
    set.commit().map(|_| ())
}

/// Writes `bytes` as the file `path` (given as `flag`), atomically; see [`write_atomic_with`].
pub fn write_atomic(flag: &str, path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(flag, path, |written| {
        let mut file = File::create(written).map_err(|e| io_reason(&e))?;
        std::io::Write::write_all(&mut file, bytes).map_err(|e| io_reason(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_round_trip() {
        let t = temporary_path(Path::new("out/mask.png"), "node7", 4242);
        assert_eq!(t, Path::new("out/.mask.png.segmenter-node7-4242.tmp"));
        assert_eq!(temporary_owner(".mask.png.segmenter-node7-4242.tmp", "mask.png"), Some(("node7", 4242)));
        assert_eq!(temporary_owner(".mask.png.segmenter-a-b-9.tmp", "mask.png"), Some(("a-b", 9)));
        assert_eq!(temporary_owner(".mask.png.segmenter-h-.tmp", "mask.png"), None);
        assert_eq!(temporary_owner(".mask.png.segmenter-4242.tmp", "mask.png"), None);
        assert_eq!(temporary_owner(".mask.png.segmenter-h-12x.tmp", "mask.png"), None);
        assert_eq!(temporary_owner(".other.png.segmenter-h-1.tmp", "mask.png"), None);
        assert_eq!(temporary_owner(".mask.png.segmenter-h-1.tmp.bak", "mask.png"), None);
        assert_eq!(temporary_path(Path::new("m.png"), "h", 7), Path::new("./.m.png.segmenter-h-7.tmp"));
        assert!(!host_name().is_empty() && !host_name().contains('/'));
    }

    #[test]
    fn this_process_is_running_and_a_reaped_child_is_not() {
        assert!(process_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_running(pid));
    }

    #[test]
    fn a_store_with_shares_in_progress_is_called_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("m.ome.zarr");
        fs::create_dir_all(store.join(SHARES_DIR)).unwrap();
        let err = OutputSet::new(&[]).unwrap().add_store("--output", &store).unwrap_err().to_string();
        assert!(err.contains("being predicted in shares") && err.contains("runner finalize"), "{err}");
        assert!(!err.contains("not an OME-Zarr store"), "{err}");
    }

    #[test]
    fn a_name_too_long_says_so() {
        let dir = tempfile::tempdir().unwrap();
        // 250 bytes: a valid name, but its temporary (host and process id added) is over 255.
        let path = dir.path().join(format!("{}.png", "m".repeat(246)));
        let err = OutputSet::new(&[]).unwrap().add("--output", &path).unwrap_err();
        assert!(matches!(err, FileError::NameTooLong { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("too long") && message.contains("shorter name for --output"), "{message}");
        assert!(!message.contains("writable folder"), "{message}");
        let e = std::io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        assert!(create_hint(&e).contains("too long"));
        assert!(create_hint(&std::io::Error::from(std::io::ErrorKind::NotFound)).contains("folder exists"));
    }

    #[test]
    fn a_dead_child_not_yet_reaped_is_not_running() {
        assert_eq!(stat_state("4242 (a (b) c) Z 1 2 3"), Some('Z'));
        assert_eq!(stat_state("1 (init) S 0"), Some('S'));
        assert_eq!(stat_state("garbage"), None);
        #[cfg(target_os = "linux")]
        {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            // Not waited for: once it has exited it is a zombie until reaped.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while stat_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap()) != Some('Z') {
                assert!(std::time::Instant::now() < deadline, "the child did not exit");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(!process_running(pid), "a zombie's temporaries are stale");
            child.wait().unwrap();
        }
    }

    #[test]
    fn links_and_spellings_of_one_file_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        fs::write(&a, b"x").unwrap();
        let hard = dir.path().join("hard.png");
        fs::hard_link(&a, &hard).unwrap();
        let dotted = dir.path().join(".").join("a.png");
        assert!(same_file(&a, &hard));
        assert!(same_file(&dotted, &a));
        assert!(!same_file(&a, &dir.path().join("b.png")));
        // A file not written yet is compared by folder and name.
        let later = dir.path().join("later.csv");
        assert!(same_file(&later, &dir.path().join(".").join("later.csv")));
        #[cfg(unix)]
        {
            let soft = dir.path().join("soft.png");
            std::os::unix::fs::symlink(&a, &soft).unwrap();
            assert!(same_file(&soft, &a));
            // A dangling link is the file it would create.
            let dangling = dir.path().join("dangling.png");
            std::os::unix::fs::symlink("later.csv", &dangling).unwrap();
            assert!(same_file(&dangling, &later));
        }
    }

    #[test]
    fn fifos_and_folders_are_not_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(regular_file_size(dir.path()), Err(InputFileError::NotRegular("a folder")));
        let missing = regular_file_size(&dir.path().join("none")).unwrap_err().to_string();
        assert_eq!(missing, "No such file or directory");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert_eq!(regular_file_size(&fifo), Err(InputFileError::NotRegular("a FIFO (named pipe)")));
    }

    #[cfg(unix)]
    #[test]
    fn an_output_link_is_written_through_never_replaced() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::create_dir(dir.path().join("links")).unwrap();
        let real = dir.path().join("real/out.png");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("links/out.png");
        symlink("../real/out.png", &link).unwrap();
        // A chain of two links, one of them dangling (the file does not exist yet).
        let chain = dir.path().join("links/chain.csv");
        symlink("middle.csv", &chain).unwrap();
        symlink("../real/new.csv", dir.path().join("links/middle.csv")).unwrap();

        write_atomic("--output", &link, b"new").unwrap();
        write_atomic("--metrics", &chain, b"rows").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert!(fs::symlink_metadata(&chain).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(fs::read(dir.path().join("real/new.csv")).unwrap(), b"rows");
        // No temporary is left in either folder.
        for folder in ["real", "links"] {
            for entry in fs::read_dir(dir.path().join(folder)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "{name} left behind");
            }
        }
        // A loop of links is one clear error.
        let a = dir.path().join("loop_a");
        symlink("loop_b", &a).unwrap();
        symlink("loop_a", dir.path().join("loop_b")).unwrap();
        let err = write_atomic("--output", &a, b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic links") && err.contains("--output"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_written_directly_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        // A character device, through a link as /dev/stdout is.
        let null_link = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
        write_atomic("--metrics-json", &null_link, b"{}").unwrap();
        write_atomic("--metrics-json", Path::new("/dev/null"), b"{}").unwrap();
        assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        assert!(fs::symlink_metadata(&null_link).unwrap().file_type().is_symlink());
        // A FIFO with a reader: the bytes go through it and it stays a FIFO.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_atomic("--metrics-json", &fifo, b"through").unwrap();
        assert_eq!(reader.join().unwrap(), b"through");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary beside them");
    }

    #[test]
    fn nesting_is_by_whole_components() {
        let p = Path::new;
        assert_eq!(nesting(p("/d/c.ome.zarr"), p("/d/c.ome.zarr/input.png")), Some("contains"));
        assert_eq!(nesting(p("/d/s.ome.zarr/mask.png"), p("/d/s.ome.zarr")), Some("is inside"));
        assert_eq!(nesting(p("/d/c.ome.zarr2"), p("/d/c.ome.zarr")), None, "a name that only begins alike");
        assert_eq!(nesting(p("/d/c.ome.zarr"), p("/d/c.ome.zarr2/x.png")), None);
        assert_eq!(nesting(p("/d/a.png"), p("/d/a.png")), None, "the same file is said as such");
    }

    #[test]
    fn an_output_that_contains_or_lies_in_an_input_is_refused_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("c.ome.zarr");
        fs::create_dir(&store).unwrap();
        fs::write(store.join(".zattrs"), r#"{"multiscales": [{"axes": [], "datasets": []}]}"#).unwrap();
        let input = store.join("input.png");
        fs::write(&input, b"x").unwrap();
        let mut set = OutputSet::new(&[("--image", &input)]).unwrap();
        let err = set.add_store("--output", &store).unwrap_err();
        assert!(matches!(err, FileError::NestsInput { how: "contains", .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("--output") && message.contains("--image"), "{message}");
        #[cfg(unix)]
        {
            // An output inside an input store, through a link to the store's folder.
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&store, &link).unwrap();
            let mut set = OutputSet::new(&[("--image", &store)]).unwrap();
            let err = set.add("--overlay", &link.join("overlay.png")).unwrap_err();
            assert!(err.to_string().contains("is inside --image"), "{err}");
            // The one exception: --labels into the store's label group.
            fs::create_dir(store.join("labels")).unwrap();
            set.add("--labels", &store.join("labels").join(".zattrs")).unwrap();
            let err = set.add("--labels", &store.join("other.png")).unwrap_err();
            assert!(matches!(err, FileError::NestsInput { .. }), "{err}");
            assert!(matches!(err, FileError::NestsInput { .. }), "{err}");
        }
        let image = dir.path().join("s.png");
        fs::write(&image, b"x").unwrap();
        let mut set = OutputSet::new(&[("--image", &image)]).unwrap();
        set.add("--output", &dir.path().join("s.png.out.png")).unwrap();
    }

    #[test]
    fn outputs_must_differ_from_inputs_and_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.png");
        fs::write(&input, b"x").unwrap();
        let mut set = OutputSet::new(&[("--image", &input)]).unwrap();
        let err = set.add("--output", &dir.path().join(".").join("in.png")).unwrap_err();
        assert!(matches!(err, FileError::OverwritesInput { .. }), "{err}");
        set.add("--output", &dir.path().join("out.png")).unwrap();
        let err = set.add("--overlay", &dir.path().join("out.png")).unwrap_err();
        assert!(matches!(err, FileError::SameOutput { .. }), "{err}");
        let err = set.add("--overlay", &dir.path().join("missing/o.png")).unwrap_err();
        assert!(matches!(err, FileError::MissingFolder { .. }), "{err}");
        let err = set.add("--overlay", dir.path()).unwrap_err();
        assert!(matches!(err, FileError::OutputIsFolder { .. }), "{err}");
        drop(set);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "an uncommitted set removes its temporaries");
    }

    #[test]
    fn a_store_output_is_a_temporary_folder_and_only_an_ome_zarr_store_may_be_there() {
        use crate::pyramid::Reduction;
        use crate::sink::ome_tiff::OmeSamples;
        use crate::sink::ome_zarr::OmeZarrWriter;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("m.ome.zarr");
        let mut set = OutputSet::new(&[]).unwrap();
        let written = set.add_store("--output", &store).unwrap();
        assert_eq!(written, temporary_path(&store, host_name(), std::process::id()), "a new store");
        assert!(written.is_dir(), "created empty");
        let err = set.add_store("--overlay", &store).unwrap_err().to_string();
        assert!(err.contains("--output"), "{err}");
        drop(set);
        assert!(!store.exists() && !written.exists(), "an uncommitted set leaves nothing");
        let samples = OmeSamples::U8 { channels: 1, rule: Reduction::Mask };
        let mut writer = OmeZarrWriter::create(&store, 2, 2, samples, None).unwrap();
        writer.write_pixels(&[0, 255, 255, 0]).unwrap();
        writer.finish().unwrap();
        let mut set = OutputSet::new(&[]).unwrap();
        let written = set.add_store("--output", &store).unwrap();
        let mut writer = OmeZarrWriter::create(&written, 2, 2, samples, None).unwrap();
        writer.write_pixels(&[255, 255, 255, 255]).unwrap();
        writer.finish().unwrap();
        set.commit().unwrap();
        assert!(crate::source::looks_like_ome_zarr_store(&store), "the commit swaps the new store in");
        let mut source = crate::source::ImageSource::open(&store, crate::source::Channels::Gray).unwrap();
        assert_eq!(source.read_all().unwrap(), [255; 4]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the earlier store removed");
        let file = dir.path().join("f.ome.zarr");
        fs::write(&file, b"x").unwrap();
        let folder = dir.path().join("d.ome.zarr");
        fs::create_dir(&folder).unwrap();
        for path in [&file, &folder] {
            let err = OutputSet::new(&[]).unwrap().add_store("--output", path).unwrap_err().to_string();
            assert!(err.contains("not an OME-Zarr store"), "{err}");
        }
        let err = OutputSet::new(&[]).unwrap().add_store("--output", &dir.path().join("no/m.ome.zarr"));
        assert!(err.is_err());
    }
}
