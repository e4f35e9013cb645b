//! Vendors' slide formats (Aperio SVS, Hamamatsu NDPI/VMS, 3DHISTECH MIRAX, Leica SCN, Ventana BIF, DICOM,
//! Philips TIFF, Sakura) through OpenSlide, loaded at run time like ONNX Runtime: nothing is compiled
//! against it, and without it every file the native readers read is still read natively.
//!
//! The library is looked up as the path given to [`set_library`] (the runner's `--openslide-lib`), else
//! `$OPENSLIDE_LIB`, else `.openslide/lib/libopenslide.so.1` (put there by `just setup`) in a folder above
//! the current folder or the executable's folder, else the `openslide-bin` wheel's copy in the Python
//! environment the executable is installed in (see [`crate::site_packages`]). It is loaded once per path
//! and kept for the process.
//!
//! A file goes to OpenSlide when `openslide_detect_vendor` names a vendor other than `generic-tiff`. Its
//! regions are read band by band at the chosen level, in chunks of at most [`CHUNK_WIDTH`] x
//! [`CHUNK_ROWS`] pixels, and turned from premultiplied ARGB into RGB: un-premultiplied where
//! 0 < alpha < 255 (`c * 255 / alpha`, truncated as openslide-python does), the slide's `openslide.background-color` (white by
//! default) where alpha is 0.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::error::SourceError;
pub use super::error::HOW_TO_GET_OPENSLIDE as HOW_TO_GET;
use super::limits::check_size;
use super::reader::{
    Access, Descriptor, FileFormat, LevelInfo, LevelReader, Opened, PyramidKind, SourceInfo,
};
use super::samples::{luma, Channels};
use crate::exif::Orientation;

/// The vendors' formats OpenSlide reads, by extension (.tif/.tiff ones are found by content), with what a
/// file so named probably is.
const SLIDES: [(&str, &str); 9] = [
    ("svs", "an Aperio SVS slide"),
    ("ndpi", "a Hamamatsu NDPI slide"),
    ("mrxs", "a 3DHISTECH MIRAX slide"),
    ("scn", "a Leica SCN slide"),
    ("bif", "a Ventana BIF slide"),
    ("vms", "a Hamamatsu VMS/VMU slide"),
    ("vmu", "a Hamamatsu VMS/VMU slide"),
    ("dcm", "a DICOM slide"),
    ("svslide", "a Sakura SVSlide"),
];

pub(crate) const FORMAT: Descriptor = Descriptor {
    id: "openslide",
    name: "OpenSlide",
    extensions: &SLIDES,
    random_access: true,
    levels: true,
    vendor_container: false,
    access: Access::Library,
};

/// The library file `just setup` puts in [`REPO_LIBRARY_DIR`].
pub const LIBRARY_FILE: &str = "libopenslide.so.1";
/// Where `just setup` (scripts/setup/fetch_openslide.sh) puts the library, relative to the repository.
pub const REPO_LIBRARY_DIR: &str = ".openslide/lib";
/// The library inside the `openslide-bin` wheel, relative to site-packages.
pub const WHEEL_MEMBER: &str = "openslide_bin/libopenslide.so.1";
/// The environment variable naming the library.
pub const LIBRARY_ENV: &str = "OPENSLIDE_LIB";
/// The widest region read in one call.
pub const CHUNK_WIDTH: usize = 4096;
/// The most rows read in one call.
pub const CHUNK_ROWS: usize = 256;

type Handle = *mut c_void;

/// The C API of OpenSlide 4, as loaded.
pub struct Api {
    open: unsafe extern "C" fn(*const c_char) -> Handle,
    close: unsafe extern "C" fn(Handle),
    detect_vendor: unsafe extern "C" fn(*const c_char) -> *const c_char,
    level_count: unsafe extern "C" fn(Handle) -> i32,
    level_dimensions: unsafe extern "C" fn(Handle, i32, *mut i64, *mut i64),
    level_downsample: unsafe extern "C" fn(Handle, i32) -> f64,
    read_region: unsafe extern "C" fn(Handle, *mut u32, i64, i64, i32, i64, i64),
    property_value: unsafe extern "C" fn(Handle, *const c_char) -> *const c_char,
    error: unsafe extern "C" fn(Handle) -> *const c_char,
    version: unsafe extern "C" fn() -> *const c_char,
    /// Where it was loaded from.
    pub path: PathBuf,
    // Kept loaded for the process (the function pointers above point into it).
    _library: libloading::Library,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenSlide({})", self.path.display())
    }
}

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: OpenSlide returns NULL or a NUL-terminated string it owns, valid while the handle lives.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn c_path(path: &Path) -> Option<CString> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        CString::new(path.as_os_str().as_bytes()).ok()
    }
    #[cfg(not(unix))]
    {
        CString::new(path.to_str()?).ok()
    }
}

impl Api {
    fn load(path: &Path) -> Result<Api, String> {
        // SAFETY: loading OpenSlide runs its (and GLib's) initialisers, which have no preconditions.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the types are those of OpenSlide 4's openslide.h.
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("it has no {} ({e}); is it OpenSlide 4?", $name))?
            };
        }
        Ok(Api {
            open: symbol!("openslide_open"),
            close: symbol!("openslide_close"),
            detect_vendor: symbol!("openslide_detect_vendor"),
            level_count: symbol!("openslide_get_level_count"),
            level_dimensions: symbol!("openslide_get_level_dimensions"),
            level_downsample: symbol!("openslide_get_level_downsample"),
            read_region: symbol!("openslide_read_region"),
            property_value: symbol!("openslide_get_property_value"),
            error: symbol!("openslide_get_error"),
            version: symbol!("openslide_get_version"),
            path: path.to_path_buf(),
            _library: library,
        })
    }

    /// OpenSlide's version, e.g. "4.0.1".
    pub fn version(&self) -> String {
        // SAFETY: no arguments; returns a static string.
        text(unsafe { (self.version)() }).unwrap_or_default()
    }

    /// The vendor OpenSlide recognises `path` as (e.g. "aperio", "generic-tiff", "dicom"), if any.
    pub fn detect_vendor(&self, path: &Path) -> Option<String> {
        let path = c_path(path)?;
        // SAFETY: a NUL-terminated path; returns NULL or a static string.
        text(unsafe { (self.detect_vendor)(path.as_ptr()) })
    }
}

/// Why the library is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error("OpenSlide not found (no {REPO_LIBRARY_DIR}/{LIBRARY_FILE} above {searched})")]
    NotFound { searched: String },
    #[error("the OpenSlide library given by {origin} does not exist: {path}")]
    Missing { origin: &'static str, path: PathBuf },
    #[error("cannot load OpenSlide from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    /// Not looked for: PNG and JPEG never go to OpenSlide.
    #[error("OpenSlide is not used for PNG and JPEG")]
    NotAsked,
}

/// The library given explicitly (`--openslide-lib`), for the whole process.
static EXPLICIT: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Libraries loaded so far (never unloaded: OpenSlide and GLib do not support it).
static LOADED: Mutex<Vec<&'static Api>> = Mutex::new(Vec::new());

/// Makes `path` (`--openslide-lib`) the library every later read uses; `None` goes back to the lookup.
pub fn set_library(path: Option<PathBuf>) {
    *EXPLICIT.lock().unwrap_or_else(|p| p.into_inner()) = path;
}

/// The library to load: `explicit`, else `$OPENSLIDE_LIB`, else the repository's copy, else the wheel's.
pub fn resolve_library(explicit: Option<&Path>) -> Result<PathBuf, LibraryError> {
    let existing = |path: PathBuf, origin| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(LibraryError::Missing { origin, path })
        }
    };
    if let Some(path) = explicit {
        return existing(path.to_path_buf(), "--openslide-lib");
    }
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|v| !v.is_empty()) {
        return existing(PathBuf::from(path), "OPENSLIDE_LIB");
    }
    let cwd = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    for start in [&cwd, &exe_dir].into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(REPO_LIBRARY_DIR).join(LIBRARY_FILE);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(wheel) = crate::site_packages::find(WHEEL_MEMBER) {
        return Ok(wheel);
    }
    let searched = [cwd, exe_dir].into_iter().flatten().map(|p| p.display().to_string()).collect::<Vec<_>>();
    Err(LibraryError::NotFound { searched: searched.join(" or ") })
}

/// Loads the library at `path` (once per process and path).
pub fn load(path: &Path) -> Result<&'static Api, LibraryError> {
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(api) = loaded.iter().find(|a| a.path == canonical) {
        return Ok(api);
    }
    let api: &'static Api = Box::leak(Box::new(
        Api::load(&canonical).map_err(|reason| LibraryError::Load { path: path.to_path_buf(), reason })?,
    ));
    loaded.push(api);
    Ok(api)
}

/// The library this process uses: the one given to [`set_library`], else the lookup's.
pub fn library() -> Result<&'static Api, LibraryError> {
    let explicit = EXPLICIT.lock().unwrap_or_else(|p| p.into_inner()).clone();
    load(&resolve_library(explicit.as_deref())?)
}

/// What a file that the native readers cannot read probably is, from its extension or a DICOM preamble:
/// e.g. "an Aperio SVS slide".
pub fn probable_vendor(path: &Path, head: &[u8]) -> Option<&'static str> {
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Some("a DICOM slide");
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    SLIDES.iter().find(|(e, _)| *e == ext).map(|(_, what)| *what)
}

/// An open slide: one handle per source.
struct Slide {
    api: &'static Api,
    handle: Handle,
}

// SAFETY: an openslide_t may be used from any thread (OpenSlide is thread-safe); the source uses it from
// one thread at a time anyway.
unsafe impl Send for Slide {}

impl Drop for Slide {
    fn drop(&mut self) {
        // SAFETY: the handle came from openslide_open and is closed once.
        unsafe { (self.api.close)(self.handle) }
    }
}

impl Slide {
    fn open(api: &'static Api, path: &Path, name: &str) -> Result<Slide, SourceError> {
        let fail = |reason: String| SourceError::OpenSlide { name: name.to_string(), reason };
        let c = c_path(path).ok_or_else(|| fail("its path holds a NUL byte".into()))?;
        // SAFETY: a NUL-terminated path.
        let handle = unsafe { (api.open)(c.as_ptr()) };
        if handle.is_null() {
            return Err(fail("OpenSlide does not recognise its format".into()));
        }
        let slide = Slide { api, handle };
        slide.check(name)?;
        Ok(slide)
    }

    /// The handle's error, if it is in the error state (then every later call fails too).
    fn check(&self, name: &str) -> Result<(), SourceError> {
        // SAFETY: a live handle.
        match text(unsafe { (self.api.error)(self.handle) }) {
            Some(reason) => Err(SourceError::OpenSlide { name: name.to_string(), reason }),
            None => Ok(()),
        }
    }

    fn property(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        // SAFETY: a live handle and a NUL-terminated key.
        text(unsafe { (self.api.property_value)(self.handle, key.as_ptr()) })
    }

    fn levels(&self, name: &str) -> Result<Vec<(i64, i64, f64)>, SourceError> {
        // SAFETY: a live handle; the out-parameters are valid.
        let count = unsafe { (self.api.level_count)(self.handle) };
        self.check(name)?;
        (0..count.max(0))
            .map(|level| {
                let (mut w, mut h) = (-1i64, -1i64);
                // SAFETY: as above, for a level below the count.
                let downsample = unsafe {
                    (self.api.level_dimensions)(self.handle, level, &mut w, &mut h);
                    (self.api.level_downsample)(self.handle, level)
                };
                self.check(name)?;
                Ok((w, h, downsample))
            })
            .collect()
    }
}

/// The reader of one level of a slide.
struct SlideRows {
    slide: Slide,
    level: i32,
    width: usize,
    downsample: f64,
    background: [u8; 3],
    buffer: Vec<u32>,
    /// The largest region read in one call: [`CHUNK_WIDTH`] x [`CHUNK_ROWS`] but in tests.
    chunk: (usize, usize),
}

/// `openslide.background-color`'s RRGGBB, white if absent or malformed.
fn parse_background(value: Option<&str>) -> [u8; 3] {
    value
        .filter(|v| v.len() == 6)
        .and_then(|v| u32::from_str_radix(v, 16).ok())
        .map_or([255; 3], |c| [(c >> 16) as u8, (c >> 8) as u8, c as u8])
}

/// One premultiplied ARGB pixel as RGB (see the module's documentation).
pub(crate) fn unpremultiply(argb: u32, background: [u8; 3]) -> [u8; 3] {
    let a = argb >> 24;
    let [r, g, b] = [(argb >> 16) & 0xFF, (argb >> 8) & 0xFF, argb & 0xFF];
    match a {
        255 => [r as u8, g as u8, b as u8],
        0 => background,
        // Truncated, as openslide-python's _convert.c does.
        _ => [r, g, b].map(|c| (c * 255 / a).min(255) as u8),
    }
}

impl LevelReader for SlideRows {
    /// Reads image rows `y..` of the level into `dst`, a region of at most `chunk` at a time.
    fn read_rows(&mut self, y: usize, out: Channels, dst: &mut [u8], name: &str) -> Result<(), SourceError> {
        let channels = out.count();
        let row_bytes = self.width * channels;
        let rows = dst.len() / row_bytes;
        let (chunk_width, chunk_rows) = self.chunk;
        for y0 in (y..y + rows).step_by(chunk_rows) {
            let h = chunk_rows.min(y + rows - y0);
            for x0 in (0..self.width).step_by(chunk_width) {
                let w = chunk_width.min(self.width - x0);
                self.buffer.clear();
                self.buffer.resize(w * h, 0);
                // Level-0 coordinates of the chunk's top left corner.
                let (lx, ly) = (
                    (x0 as f64 * self.downsample).round() as i64,
                    (y0 as f64 * self.downsample).round() as i64,
                );
                // SAFETY: a live handle and a buffer of w * h pixels.
                unsafe {
                    (self.slide.api.read_region)(
                        self.slide.handle,
                        self.buffer.as_mut_ptr(),
                        lx,
                        ly,
                        self.level,
                        w as i64,
                        h as i64,
                    )
                };
                self.slide.check(name)?;
                for (r, src) in self.buffer.chunks_exact(w).enumerate() {
                    let start = (y0 - y + r) * row_bytes + x0 * channels;
                    let row = &mut dst[start..start + w * channels];
                    for (&p, d) in src.iter().zip(row.chunks_exact_mut(channels)) {
                        let [r, g, b] = unpremultiply(p, self.background);
                        match out {
                            Channels::Rgb => d.copy_from_slice(&[r, g, b]),
                            Channels::Gray => d[0] = luma(r, g, b),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn set_region_chunk(&mut self, width: usize, rows: usize) {
        self.chunk = (width.max(1), rows.max(1));
    }
}

fn info_of(slide: &Slide, vendor: &str, name: &str) -> Result<SourceInfo, SourceError> {
    let raw = slide.levels(name)?;
    let Some(&(w0, h0, _)) = raw.first() else {
        return Err(SourceError::OpenSlide { name: name.to_string(), reason: "it has no levels".into() });
    };
    let mut levels = Vec::with_capacity(raw.len());
    for (i, &(w, h, _)) in raw.iter().enumerate() {
        let (width, height) = check_size(name, w.max(0) as u64, h.max(0) as u64)?;
        let number =
            |key: &str| slide.property(&format!("openslide.level[{i}].{key}"))?.parse::<usize>().ok();
        levels.push(LevelInfo {
            width,
            height,
            tile: number("tile-width").zip(number("tile-height")),
            rows_per_strip: None,
            compression: format!("{vendor} (OpenSlide)"),
            photometric: "8-bit RGB".into(),
            downsample: (w0 as f64 / width as f64, h0 as f64 / height as f64),
        });
    }
    let mpp = |key: &str| slide.property(key)?.trim().parse::<f64>().ok().filter(|v| *v > 0.0);
    Ok(SourceInfo {
        format: FileFormat::of(&FORMAT),
        pyramid: (levels.len() > 1).then_some(PyramidKind::OpenSlide),
        levels,
        pages: 1,
        other_pages: 0,
        orientation: Orientation::Normal,
        microns_per_pixel: mpp("openslide.mpp-x").zip(mpp("openslide.mpp-y")),
        vendor: Some(vendor.to_string()),
    })
}

/// What the slide at `path` is.
pub(crate) fn probe(
    api: &'static Api,
    path: &Path,
    name: &str,
    vendor: &str,
) -> Result<SourceInfo, SourceError> {
    info_of(&Slide::open(api, path, name)?, vendor, name)
}

/// Opens level `level` of the slide at `path`.
pub(crate) fn open(
    api: &'static Api,
    path: &Path,
    name: &str,
    vendor: &str,
    level: usize,
) -> Result<Opened, SourceError> {
    let slide = Slide::open(api, path, name)?;
    let info = info_of(&slide, vendor, name)?;
    let Some(chosen) = info.levels.get(level) else {
        return Err(SourceError::NoLevel { name: name.to_string(), level, levels: info.levels_line() });
    };
    let (width, height) = (chosen.width, chosen.height);
    // SAFETY: a live handle and a level below the count.
    let downsample = unsafe { (api.level_downsample)(slide.handle, level as i32) };
    let background = parse_background(slide.property("openslide.background-color").as_deref());
    let reader = Box::new(SlideRows {
        slide,
        level: level as i32,
        width,
        downsample,
        background,
        buffer: Vec::new(),
        chunk: (CHUNK_WIDTH, CHUNK_ROWS),
    });
    Ok(Opened { width, height, reader, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiplied_argb_becomes_rgb() {
        let white = [255; 3];
        assert_eq!(unpremultiply(0xFF10_2030, white), [0x10, 0x20, 0x30], "opaque: as is");
        assert_eq!(unpremultiply(0x0000_0000, white), white, "transparent: the background");
        assert_eq!(unpremultiply(0x0000_0000, [1, 2, 3]), [1, 2, 3]);
        assert_eq!(
            unpremultiply(0x8040_2000, white),
            [127, 63, 0],
            "half alpha: divided by alpha, truncated"
        );
        assert_eq!(unpremultiply(0x0101_0101, white), [255, 255, 255]);
    }

    #[test]
    fn background_colour_is_hex_rrggbb() {
        assert_eq!(parse_background(Some("FF8000")), [255, 128, 0]);
        assert_eq!(parse_background(None), [255; 3]);
        assert_eq!(parse_background(Some("nonsense")), [255; 3]);
    }

    #[test]
    fn vendor_files_are_named_by_extension_or_dicom_preamble() {
        assert_eq!(probable_vendor(Path::new("a/b.SVS"), b""), Some("an Aperio SVS slide"));
        assert_eq!(probable_vendor(Path::new("x.mrxs"), b""), Some("a 3DHISTECH MIRAX slide"));
        let mut dicom = vec![0u8; 132];
        dicom[128..].copy_from_slice(b"DICM");
        assert_eq!(probable_vendor(Path::new("noext"), &dicom), Some("a DICOM slide"));
        assert_eq!(probable_vendor(Path::new("x.tif"), b""), None);
    }

    #[test]
    fn a_missing_library_is_named() {
        let e = resolve_library(Some(Path::new("/nonexistent/libopenslide.so.1"))).unwrap_err();
        assert!(e.to_string().contains("--openslide-lib does not exist: /nonexistent"), "{e}");
    }
}
