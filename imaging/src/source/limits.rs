//! The sizes an image may claim, checked before anything is allocated for them: a file whose header
//! claims an absurd size is an error, never a panic or an exhausted machine.

use super::error::SourceError;

/// The widest image read (a band of 256 rows of it is 200 MB as RGB bytes).
pub const MAX_WIDTH: usize = 262_144;
/// The largest decoded size (bytes, 8-bit RGB) of an image that must be decoded whole (JPEG, interlaced
/// PNG), and of one strip or row of tiles of a TIFF.
pub const WHOLE_IMAGE_LIMIT: u64 = 1 << 30;

/// A zeroed buffer of `len` bytes, or an error naming the size instead of an allocation panic.
pub(crate) fn zeroed(len: usize, name: &str, width: usize, height: usize) -> Result<Vec<u8>, SourceError> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| SourceError::TooLarge {
        name: name.to_string(),
        width: width as u64,
        height: height as u64,
        reason: format!("{len} bytes do not fit in memory"),
    })?;
    buffer.resize(len, 0);
    Ok(buffer)
}

/// Checks the header's size before anything is allocated for it.
pub(crate) fn check_size(name: &str, width: u64, height: u64) -> Result<(usize, usize), SourceError> {
    let too_large = |reason: String| SourceError::TooLarge { name: name.to_string(), width, height, reason };
    if width == 0 || height == 0 {
        return Err(SourceError::Decode {
            name: name.to_string(),
            reason: format!("the image is {width}x{height}"),
        });
    }
    if width > MAX_WIDTH as u64 {
        return Err(too_large(format!("wider than the limit of {MAX_WIDTH} pixels")));
    }
    let height = usize::try_from(height).map_err(|_| too_large("too tall for this machine".into()))?;
    Ok((width as usize, height))
}

/// Checks that an image that must be decoded whole stays within [`WHOLE_IMAGE_LIMIT`].
pub(crate) fn check_whole(name: &str, width: usize, height: usize, what: &str) -> Result<(), SourceError> {
    let bytes = (width as u64).saturating_mul(height as u64).saturating_mul(3);
    if bytes > WHOLE_IMAGE_LIMIT {
        return Err(SourceError::TooLarge {
            name: name.to_string(),
            width: width as u64,
            height: height as u64,
            reason: format!(
                "{what} is decoded whole, and its {bytes} bytes exceed the limit of {WHOLE_IMAGE_LIMIT} bytes; \
                 convert it to a (non-interlaced) PNG or a TIFF, which are read by rows"
            ),
        });
    }
    Ok(())
}
