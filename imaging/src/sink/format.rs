//! Which format an output is written in, from its final path's extension.

use std::path::Path;

use super::error::SinkError;
use super::jpeg::JPEG_MAX_SIDE;
use super::ome_zarr::is_ome_zarr_path;

/// Image formats of the mask, overlay and error map, chosen by the final path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Tiff,
    /// A tiled, pyramidal OME-TIFF (`.ome.tif`, `.ome.tiff`).
    OmeTiff,
    /// An OME-Zarr store (`.ome.zarr`, a directory; [`super::ome_zarr`]).
    OmeZarr,
}

impl ImageFormat {
    pub fn from_path(path: &Path) -> Result<ImageFormat, SinkError> {
        if is_ome_tiff(path) {
            return Ok(ImageFormat::OmeTiff);
        }
        if is_ome_zarr_path(path) {
            return Ok(ImageFormat::OmeZarr);
        }
        match extension(path).as_deref() {
            Some("png") => Ok(ImageFormat::Png),
            Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
            Some("tif" | "tiff") => Ok(ImageFormat::Tiff),
            _ => Err(SinkError::Format {
                path: path.to_path_buf(),
                what: "image",
                allowed: ".png, .tif, .tiff, .ome.tif, .ome.zarr, .jpg or .jpeg",
            }),
        }
    }

    /// Refuses, before any work, an image this format cannot hold.
    pub fn check_size(self, path: &Path, width: usize, height: usize) -> Result<(), SinkError> {
        if self == ImageFormat::Jpeg && (width > JPEG_MAX_SIDE || height > JPEG_MAX_SIDE) {
            return Err(SinkError::JpegTooLarge { path: path.to_path_buf(), width, height });
        }
        Ok(())
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Tiff => "tif",
            ImageFormat::OmeTiff => "ome.tif",
            ImageFormat::OmeZarr => "ome.zarr",
        }
    }
}

/// Formats of the foreground probabilities: float32 (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbabilityFormat {
    Npy,
    Tiff,
    /// A tiled, pyramidal OME-TIFF of float32 (`.ome.tif`, `.ome.tiff`).
    OmeTiff,
    /// An OME-Zarr store of float32 (`.ome.zarr`, a directory).
    OmeZarr,
}

impl ProbabilityFormat {
    pub fn from_path(path: &Path) -> Result<ProbabilityFormat, SinkError> {
        if is_ome_tiff(path) {
            return Ok(ProbabilityFormat::OmeTiff);
        }
        if is_ome_zarr_path(path) {
            return Ok(ProbabilityFormat::OmeZarr);
        }
        match extension(path).as_deref() {
            Some("npy") => Ok(ProbabilityFormat::Npy),
            Some("tif" | "tiff") => Ok(ProbabilityFormat::Tiff),
            _ => Err(SinkError::Format {
                path: path.to_path_buf(),
                what: "probabilities",
                allowed: ".npy, .tif, .tiff, .ome.tif or .ome.zarr",
            }),
        }
    }
}

/// Whether the file name ends in `.ome.tif` or `.ome.tiff` (any case).
fn is_ome_tiff(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    name.ends_with(".ome.tif") || name.ends_with(".ome.tiff")
}

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_follows_the_extension() {
        assert_eq!(ImageFormat::from_path(Path::new("a/p.PNG")).unwrap(), ImageFormat::Png);
        assert_eq!(ImageFormat::from_path(Path::new("p.jpg")).unwrap(), ImageFormat::Jpeg);
        assert_eq!(ImageFormat::from_path(Path::new("p.jpeg")).unwrap(), ImageFormat::Jpeg);
        assert_eq!(ImageFormat::from_path(Path::new("p.tif")).unwrap(), ImageFormat::Tiff);
        assert_eq!(ImageFormat::from_path(Path::new("p.TIFF")).unwrap(), ImageFormat::Tiff);
        assert_eq!(ImageFormat::from_path(Path::new("a.b/p.OME.TIF")).unwrap(), ImageFormat::OmeTiff);
        assert_eq!(ImageFormat::from_path(Path::new("p.ome.tiff")).unwrap(), ImageFormat::OmeTiff);
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.ome.tif")).unwrap(), ProbabilityFormat::OmeTiff);
        for bad in ["p.bmp", "p", "p.npy", "p.ome"] {
            let err = ImageFormat::from_path(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("use a file name ending in .png, .tif"), "{err}");
        }
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.npy")).unwrap(), ProbabilityFormat::Npy);
        assert_eq!(ProbabilityFormat::from_path(Path::new("p.tif")).unwrap(), ProbabilityFormat::Tiff);
        assert!(ProbabilityFormat::from_path(Path::new("p.png")).is_err());
    }

    #[test]
    fn a_jpeg_above_its_side_limit_is_refused_before_any_work() {
        let err = ImageFormat::Jpeg.check_size(Path::new("m.jpg"), 70_000, 10).unwrap_err().to_string();
        assert!(err.contains("at most 65535 px a side") && err.contains("70000x10"), "{err}");
        assert!(ImageFormat::Png.check_size(Path::new("m.png"), 70_000, 10).is_ok());
    }
}
