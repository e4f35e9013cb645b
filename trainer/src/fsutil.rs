//! File-system guards: atomic writes (nothing a user already has is lost when a write fails half-way),
//! inputs that must be regular files (a FIFO would block forever), and outputs that must not be an input.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Why an input path cannot be read as a file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputFileError {
    #[error("{0}")]
    Io(String),
    #[error("it is not a regular file (a directory, FIFO or device); pass an image file")]
    NotRegular,
}

/// Checks that `path` (after following links) is a regular file, without opening it: opening a FIFO would
/// block until a writer appears. Returns its size in bytes.
pub fn regular_file_size(path: &Path) -> Result<u64, InputFileError> {
    let meta = std::fs::metadata(path).map_err(|e| InputFileError::Io(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(InputFileError::NotRegular);
    }
    Ok(meta.len())
}

/// An I/O error's own words without the "(os error N)" suffix, which repeats nothing a user can act on.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// What identifies a file on disk: the canonical path of an existing file or of the folder of a file still
/// to be written, plus device and inode when it exists (so hard links count as the same file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    canonical: Option<PathBuf>,
    inode: Option<(u64, u64)>,
}

impl FileIdentity {
    pub fn of(path: &Path) -> FileIdentity {
        let canonical = std::fs::canonicalize(path).ok().or_else(|| {
            // Not there yet: the canonical folder plus the file name.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
        });
        FileIdentity { canonical, inode: inode(path) }
    }

    /// True when both name the same file (same canonical path, or the same device and inode).
    pub fn same_as(&self, other: &FileIdentity) -> bool {
        let same_path = self.canonical.is_some() && self.canonical == other.canonical;
        let same_inode = self.inode.is_some() && self.inode == other.inode;
        same_path || same_inode
    }
}

#[cfg(unix)]
fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn inode(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// True when `a` and `b` are the same file (through links too) or would be once written.
pub fn same_file(a: &Path, b: &Path) -> bool {
    FileIdentity::of(a).same_as(&FileIdentity::of(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_spellings_of_one_file_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"x").unwrap();
        let hard = dir.path().join("hard.png");
        std::fs::hard_link(&a, &hard).unwrap();
        let soft = dir.path().join("soft.png");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&a, &soft).unwrap();
        let dotted = dir.path().join(".").join("a.png");
        assert!(same_file(&a, &hard));
        #[cfg(unix)]
        assert!(same_file(&soft, &a));
        assert!(same_file(&dotted, &a));
        assert!(!same_file(&a, &dir.path().join("b.png")));
        // A file not written yet is compared by folder and name.
        let later = dir.path().join("later.csv");
        assert!(same_file(&later, &dir.path().join(".").join("later.csv")));
    }

    #[test]
    fn fifos_and_folders_are_not_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(regular_file_size(dir.path()), Err(InputFileError::NotRegular));
        let missing = regular_file_size(&dir.path().join("none")).unwrap_err().to_string();
        assert_eq!(missing, "No such file or directory");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert_eq!(regular_file_size(&fifo), Err(InputFileError::NotRegular));
    }
}
