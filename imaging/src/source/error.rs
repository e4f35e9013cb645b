//! What can go wrong reading an image, one line each.

/// How to get OpenSlide, for messages.
pub const HOW_TO_GET_OPENSLIDE: &str =
    "run `just setup` (or scripts/setup/fetch_openslide.sh), or pass --openslide-lib PATH, or set OPENSLIDE_LIB, \
     or `pip install openslide-bin` into the Python environment the runner is installed in";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {name}: {source}")]
    Open { name: String, source: std::io::Error },
    #[error("{name} is not a readable PNG, JPEG or TIFF image ({reason})")]
    Decode { name: String, reason: String },
    #[error("{name} is {what}, which is not supported; {hint}")]
    Unsupported { name: String, what: String, hint: String },
    #[error("{name} is {width}x{height}: {reason}")]
    TooLarge { name: String, width: u64, height: u64, reason: String },
    #[error("{name} is not a readable OME-Zarr image ({reason})")]
    Zarr { name: String, reason: String },
    #[error("{name} has no level {level}; its levels are {levels}")]
    NoLevel { name: String, level: usize, levels: String },
    #[error("{name}: OpenSlide cannot read it ({reason})")]
    OpenSlide { name: String, reason: String },
    #[error(
        "{name} is probably {what}, which is read through OpenSlide, and {reason}; {HOW_TO_GET_OPENSLIDE}"
    )]
    NeedsOpenSlide { name: String, what: String, reason: String },
}

/// The hint of an unsupported sample layout: what is read.
pub(crate) const READABLE: &str = "images read are gray, gray+alpha, RGB, RGBA or palette, of 8 or 16 bits \
     (unsigned, or signed 16-bit), or float16/32/64; convert it to one of those (e.g. 8-bit RGB)";

pub(crate) fn decoder_panicked(name: &str, message: &str) -> SourceError {
    SourceError::Decode { name: name.to_string(), reason: format!("its decoder failed on it ({message})") }
}
