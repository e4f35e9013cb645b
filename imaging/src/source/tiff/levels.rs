//! The levels of a TIFF: the directory chain walked (pages, SubIFDs), which pages are levels, and what
//! the file is ([`SourceInfo`]: levels, pages, orientation, micrometres per pixel).
//!
//! Levels: the reduced-resolution SubIFDs of the first page (OME-TIFF); else, in an Aperio SVS, the tiled
//! pages after the first (the striped thumbnail, label and macro pages are not levels); else the pages
//! marked reduced-resolution (NewSubFileType bit 0) that are not label or macro images. Each level must be
//! smaller than the one before. Any other page (a stack of channels, planes or frames) is counted in
//! `other_pages` and not read: only the first page is.

use super::ifd::{TiffInput, SUB_IFDS};
use super::image::{Page, MAX_DESCRIPTION, MAX_OTHER_DESCRIPTION, MAX_SUB_IFDS};
use crate::exif::Orientation;
use crate::source::error::SourceError;
use crate::source::reader::{FileFormat, Input, PyramidKind, SourceInfo, MAX_PAGES};

/// The structure of a TIFF: its levels (pages), and what the file is.
pub(super) struct Structure {
    pub file: TiffInput,
    pub levels: Vec<Page>,
    pub info: SourceInfo,
}

impl Structure {
    /// Walks the directories of the TIFF in `input`, a file of `format`.
    pub(super) fn read(
        input: Box<dyn Input>,
        name: &str,
        format: FileFormat,
    ) -> Result<Structure, SourceError> {
        let decode = |reason: String| SourceError::Decode { name: name.to_string(), reason };
        let (mut file, first) = TiffInput::open(input).map_err(decode)?;
        let ifd0 = file.read_ifd(first).map_err(decode)?;
        let page0 = Page::parse(&mut file, &ifd0, MAX_DESCRIPTION).map_err(decode)?;
        // The main chain: only its directories are read (a few hundred bytes a page), up to MAX_PAGES; a
        // chain that loops or breaks after the first page ends there.
        let mut chain = vec![ifd0.clone()];
        let mut seen = std::collections::HashSet::from([first]);
        let mut next = ifd0.next;
        while next != 0 && chain.len() < MAX_PAGES && seen.insert(next) {
            match file.read_ifd(next) {
                Ok(ifd) => {
                    next = ifd.next;
                    chain.push(ifd);
                }
                Err(_) => break,
            }
        }
        let pages = chain.len();
        let (w0, h0) = (page0.width, page0.height);
        let mut levels = vec![page0.clone()];
        let mut pyramid = None;
        if let Some(entry) = page0.sub_ifds {
            let offsets = file.uint_list(&entry, MAX_SUB_IFDS, SUB_IFDS).map_err(decode)?;
            for offset in offsets {
                // A SubIFD that cannot be read is not a level (level 0 stays readable).
                let Ok(ifd) = file.read_ifd(offset) else { continue };
                let Ok(page) = Page::parse(&mut file, &ifd, MAX_OTHER_DESCRIPTION) else { continue };
                let last = levels.last().expect("level 0");
                if page.smaller_than(last.width, last.height) {
                    levels.push(page);
                }
            }
            if levels.len() > 1 {
                pyramid = Some(PyramidKind::SubIfds);
            }
        }
        let aperio = page0.description.as_deref().is_some_and(|d| d.starts_with("Aperio"));
        let mut other_pages = 0;
        for ifd in &chain[1..] {
            let Ok(page) = Page::parse(&mut file, ifd, MAX_OTHER_DESCRIPTION) else {
                other_pages += 1; // unreadable, so never read
                continue;
            };
            let last = levels.last().expect("level 0");
            let level = pyramid != Some(PyramidKind::SubIfds)
                && !page.is_label_or_macro()
                && page.smaller_than(last.width, last.height)
                && if aperio { page.tiled } else { page.subfile & 1 == 1 && page.subfile & 4 == 0 };
            if level {
                levels.push(page);
                pyramid = Some(if aperio { PyramidKind::Aperio } else { PyramidKind::Pages });
            } else if !(page.is_label_or_macro() || page.subfile & 1 == 1 || aperio) {
                // Not a thumbnail, label, macro or mask image: another image of a stack.
                other_pages += 1;
            }
        }
        let info = SourceInfo {
            format,
            levels: levels.iter().map(|p| p.level_info(w0, h0)).collect(),
            pyramid,
            pages,
            other_pages,
            orientation: page0
                .orientation
                .and_then(|o| u16::try_from(o).ok())
                .and_then(Orientation::from_tag)
                .unwrap_or_default(),
            microns_per_pixel: microns_per_pixel(&page0),
            vendor: None,
        };
        Ok(Structure { file, levels, info })
    }
}

/// Micrometres per pixel of a first page: OME-XML PhysicalSizeX/Y (with their units, µm by default), an
/// Aperio "MPP = " field, or the resolution tags in inches (2, the default) or centimetres (3).
fn microns_per_pixel(page: &Page) -> Option<(f64, f64)> {
    let description = page.description.as_deref().unwrap_or("");
    if description.contains("<OME") {
        if let Some(mpp) = ome_physical_size(description) {
            return Some(mpp);
        }
    }
    if description.starts_with("Aperio") {
        let mpp = description.split('|').find_map(|field| {
            let (key, value) = field.split_once('=')?;
            (key.trim() == "MPP").then(|| value.trim().parse::<f64>().ok()).flatten()
        });
        if let Some(mpp) = mpp.filter(|v| v.is_finite() && *v > 0.0) {
            return Some((mpp, mpp));
        }
    }
    let (x, y, unit) = page.resolution;
    let per_unit = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    let (x, y) = (x?, y.or(Some(x?))?);
    (x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0).then(|| (per_unit / x, per_unit / y))
}

/// PhysicalSizeX and PhysicalSizeY (in µm) of the first Pixels element of OME-XML.
fn ome_physical_size(xml: &str) -> Option<(f64, f64)> {
    let start = xml.find("<Pixels ").or_else(|| xml.find(":Pixels "))?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let size = |axis: &str| -> Option<f64> {
        let value: f64 = xml_attribute(element, &format!("PhysicalSize{axis}"))?.trim().parse().ok()?;
        let unit = xml_attribute(element, &format!("PhysicalSize{axis}Unit")).unwrap_or_else(|| "µm".into());
        let scale = match unit.trim() {
            "µm" | "μm" | "um" | "micron" => 1.0,
            "nm" => 1e-3,
            "pm" => 1e-6,
            "Å" => 1e-4,
            "mm" => 1e3,
            "cm" => 1e4,
            "m" => 1e6,
            _ => return None,
        };
        let microns = value * scale;
        (microns.is_finite() && microns > 0.0).then_some(microns)
    };
    let x = size("X")?;
    Some((x, size("Y").unwrap_or(x)))
}

/// The value of attribute `name` in an XML start tag.
fn xml_attribute(element: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = element[from..].find(name) {
        let at = from + at;
        from = at + name.len();
        if !element[..at].ends_with(char::is_whitespace) {
            continue;
        }
        let rest = element[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let rest = rest.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        return Some(value[..value.find(quote)?].to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ome_and_aperio_and_resolution_tags_give_microns_per_pixel() {
        let xml = r#"<?xml version="1.0"?><OME xmlns="x"><Image ID="Image:0"><Pixels DimensionOrder="XYCZT"
            ID="Pixels:0" PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY='0.5' SizeX="96">"#;
        assert_eq!(ome_physical_size(xml), Some((0.25, 0.5)));
        assert_eq!(ome_physical_size(r#"<OME><Pixels SizeX="3"></Pixels></OME>"#), None);
        assert_eq!(ome_physical_size(r#"<OME><Pixels PhysicalSizeX="1" PhysicalSizeXUnit="pixel">"#), None);
        assert_eq!(
            xml_attribute(r#"<Pixels APhysicalSizeX="9" PhysicalSizeX = "2""#, "PhysicalSizeX"),
            Some("2".into())
        );
        let mut page = Page {
            width: 10,
            height: 10,
            bits: vec![8],
            samples: 1,
            formats: vec![1],
            photometric: Some(1),
            compression: 1,
            predictor: 1,
            planar: 1,
            fill_order: 1,
            tiled: false,
            chunk_width: 10,
            chunk_height: 10,
            offsets: None,
            counts: None,
            subsampling: (2, 2),
            subfile: 0,
            extra_samples: 0,
            colormap: None,
            jpeg_tables: None,
            orientation: None,
            resolution: (Some(40_000.0), Some(20_000.0), 3),
            sub_ifds: None,
            description: Some(
                "Aperio Image Library v12\r\n96x80 (32x32) JPEG/RGB|AppMag = 40|MPP = 0.4990|X = 1".into(),
            ),
        };
        assert_eq!(microns_per_pixel(&page), Some((0.499, 0.499)));
        page.description = None;
        assert_eq!(microns_per_pixel(&page), Some((0.25, 0.5)), "centimetres");
        page.resolution = (Some(254.0), None, 2);
        assert_eq!(microns_per_pixel(&page), Some((100.0, 100.0)), "inches, y as x");
        page.resolution = (Some(1.0), Some(1.0), 1);
        assert_eq!(microns_per_pixel(&page), None, "no unit");
    }
}
