//! Shared libraries that come from Python wheels installed beside the running executable.
//!
//! When the runner is installed as a wheel (`pip install segmenter-runner`), pip puts the executable in
//! `<env>/bin/` and the wheels it depends on (`onnxruntime`, `openslide-bin`) in
//! `<env>/lib/python3.X/site-packages/`. The same holds for a venv, a conda environment and `pip install
//! --user` (`~/.local/bin`, `~/.local/lib/python3.X/site-packages`). So the libraries are found from the
//! executable's own location, without running Python. The search is a pure function of the executable's
//! path and a folder listing, so that it is tested without files.

use std::path::{Path, PathBuf};

/// The folders under an environment's root that hold `python3.X/site-packages`.
const LIB_DIRS: [&str; 2] = ["lib", "lib64"];
/// What pip installs into, in `python3.X/`: `dist-packages` is Debian's name for a system-wide install.
const PACKAGE_DIRS: [&str; 2] = ["site-packages", "dist-packages"];

/// The files `member` (a path inside site-packages, e.g. `onnxruntime/capi/libonnxruntime.so.1.31.1`) may
/// be, for an executable at `exe`, in the order to try: for each `python3*` folder that `list_dir` names
/// under `<exe's folder>/../lib` and `../lib64`, highest Python version first, its `site-packages` then its
/// `dist-packages`.
pub fn candidates(exe: &Path, member: &str, list_dir: impl Fn(&Path) -> Vec<String>) -> Vec<PathBuf> {
    let Some(root) = exe.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for lib in LIB_DIRS {
        let lib_dir = root.join(lib);
        let mut pythons: Vec<(Vec<u32>, String)> = list_dir(&lib_dir)
            .into_iter()
            .filter_map(|name| python_version(&name).map(|v| (v, name)))
            .collect();
        // python3.12 before python3.9: the newest interpreter is the one pip most likely installed into.
        pythons.sort_by(|a, b| b.cmp(a));
        for (_, name) in pythons {
            found.extend(PACKAGE_DIRS.iter().map(|packages| lib_dir.join(&name).join(packages).join(member)));
        }
    }
    found
}

/// `python3.11` -> `[3, 11]`; anything else (`python3.11.bak`, `pkgconfig`) -> `None`.
fn python_version(name: &str) -> Option<Vec<u32>> {
    let version = name.strip_prefix("python")?;
    let parts: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty() && p.len() <= 2 && p[0] == 3)
}

/// The names in `dir`, or none when it cannot be read.
pub fn list_dir(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// The first of [`candidates`] for the running executable that is a file.
pub fn find(member: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    candidates(&exe, member, list_dir).into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORT: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

    fn listing(entries: &'static [(&'static str, &'static [&'static str])]) -> impl Fn(&Path) -> Vec<String> {
        move |dir| {
            entries
                .iter()
                .filter(|(d, _)| Path::new(d) == dir)
                .flat_map(|(_, names)| names.iter().map(|n| n.to_string()))
                .collect()
        }
    }

    #[test]
    fn a_venv_executable_finds_its_site_packages() {
        let list = listing(&[("/env/lib", &["python3.11", "pkgconfig", "libfoo.so"])]);
        assert_eq!(
            candidates(Path::new("/env/bin/segmenter-runner"), ORT, list),
            vec![
                PathBuf::from("/env/lib/python3.11/site-packages").join(ORT),
                PathBuf::from("/env/lib/python3.11/dist-packages").join(ORT)
            ]
        );
    }

    #[test]
    fn newer_pythons_come_first_and_lib64_after_lib() {
        let list = listing(&[
            ("/home/u/.local/lib", &["python3.9", "python3.12", "python3.10"]),
            ("/home/u/.local/lib64", &["python3.11"]),
        ]);
        let got: Vec<PathBuf> = candidates(Path::new("/home/u/.local/bin/segmenter-runner"), "m", list)
            .into_iter()
            // Each Python folder's site-packages, then its dist-packages: keep the first of each pair.
            .step_by(2)
            .collect();
        let want: Vec<PathBuf> = [
            "/home/u/.local/lib/python3.12",
            "/home/u/.local/lib/python3.10",
            "/home/u/.local/lib/python3.9",
            "/home/u/.local/lib64/python3.11",
        ]
        .iter()
        .map(|p| Path::new(p).join("site-packages").join("m"))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn names_that_are_not_python_3_folders_are_skipped() {
        for name in ["python2.7", "python3.11.bak", "python", "pythonista", "python3.x", "site-packages"] {
            let list = move |_: &Path| vec![name.to_string()];
            assert!(candidates(Path::new("/env/bin/runner"), "m", list).is_empty(), "{name}");
        }
        // Debian's interpreter folder is `python3` (no minor version): still a Python 3.
        let list = |_: &Path| vec!["python3".to_string()];
        assert_eq!(candidates(Path::new("/usr/bin/runner"), "m", list).len(), 4);
    }

    #[test]
    fn an_executable_without_two_parents_has_no_candidates() {
        assert!(candidates(Path::new("runner"), "m", |_| vec!["python3.11".into()]).is_empty());
    }
}
