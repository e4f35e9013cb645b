//! `--openslide-lib` of `runner predict` and `runner info`.

use std::path::PathBuf;

/// Makes `--openslide-lib` the library of this process; a library given but missing or not loadable is
/// an error at once, not a silent fallback to the native readers.
pub(super) fn use_openslide_lib(path: &Option<PathBuf>) -> anyhow::Result<()> {
    use imaging::source::openslide;
    if let Some(path) = path {
        openslide::set_library(Some(path.clone()));
        openslide::library().map_err(|e| anyhow::anyhow!("{e}; {}", openslide::HOW_TO_GET))?;
    }
    Ok(())
}
