//! JPEG files, decoded whole (a JPEG cannot be read by rows) within [`WHOLE_IMAGE_LIMIT`], after checking
//! that the stream is whole. The orientation comes from an APP1 EXIF segment.

use std::io::{Cursor, Read, Seek, SeekFrom};

use super::error::SourceError;
use super::limits::{check_size, check_whole, zeroed, WHOLE_IMAGE_LIMIT};
use super::reader::{Access, DecodedRows, Descriptor, FileFormat, Input, Opened, SourceInfo};
use super::samples::{convert, Channels, Samples};
use crate::exif::Orientation;

pub(crate) const FORMAT: Descriptor = Descriptor {
    id: "jpeg",
    name: "JPEG (decoded whole)",
    extensions: &[("jpg", "a JPEG image"), ("jpeg", "a JPEG image")],
    random_access: true,
    levels: false,
    vendor_container: false,
    access: Access::Stream { sniff: |head| head.starts_with(&[0xFF, 0xD8, 0xFF]), open, probe },
};

/// True when a JPEG stream is whole. Its marker segments are walked from the start, each skipped by its
/// length, so the markers of an embedded EXIF thumbnail (inside APP1) are never mistaken for the image's;
/// every scan's entropy-coded data (where 0xFF is always followed by 0x00, a fill 0xFF or a restart
/// marker) must end in a marker, and the walk must reach the end-of-image marker after at least one scan.
/// A camera JPEG cut inside its main scan fails, whatever its thumbnail holds.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let (mut i, mut scans) = (2, 0usize);
    loop {
        if bytes.get(i) != Some(&0xFF) {
            return false;
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1; // fill bytes before a marker
        }
        let Some(&marker) = bytes.get(i) else { return false };
        i += 1;
        match marker {
            0xD9 => return scans > 0,
            0x00 => return false,
            0x01 | 0xD0..=0xD7 => {} // markers without a length
            _ => {
                let Some(length) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return false;
                };
                if length < 2 || i + length > bytes.len() {
                    return false;
                }
                i += length;
                if marker == 0xDA {
                    scans += 1;
                    loop {
                        let Some(at) = bytes[i..].iter().position(|&b| b == 0xFF) else { return false };
                        i += at;
                        match bytes.get(i + 1) {
                            None => return false,
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

/// The EXIF orientation of a JPEG: the first APP1 segment starting with "Exif\0\0", among the marker
/// segments before the first scan.
fn exif_orientation(bytes: &[u8]) -> Orientation {
    let mut i = 2;
    while bytes.get(i) == Some(&0xFF) {
        let Some(&marker) = bytes.get(i + 1) else { break };
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let Some(length) = bytes.get(i + 2..i + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let Some(segment) = bytes.get(i + 4..i + 2 + length.max(2)) else { break };
        if marker == 0xE1 && segment.starts_with(b"Exif\0\0") {
            return Orientation::from_exif(segment).unwrap_or_default();
        }
        i += 2 + length;
    }
    Orientation::Normal
}

fn dimensions(input: &mut Box<dyn Input>, name: &str) -> Result<(usize, usize), SourceError> {
    let (w, h) = image::ImageReader::with_format(&mut *input, image::ImageFormat::Jpeg)
        .into_dimensions()
        .map_err(|e| SourceError::Decode { name: name.to_string(), reason: e.to_string() })?;
    check_size(name, w as u64, h as u64)
}

/// The header of a JPEG: its size and orientation (the EXIF segment is within the first 256 KiB).
fn probe(mut input: Box<dyn Input>, name: &str) -> Result<SourceInfo, SourceError> {
    let (width, height) = dimensions(&mut input, name)?;
    let open_error = |source| SourceError::Open { name: name.to_string(), source };
    input.seek(SeekFrom::Start(0)).map_err(open_error)?;
    let mut head = Vec::new();
    input.take(1 << 18).read_to_end(&mut head).map_err(open_error)?;
    Ok(SourceInfo::single_level(
        FileFormat::of(&FORMAT),
        width,
        height,
        "JPEG",
        "8-bit".into(),
        exif_orientation(&head),
    ))
}

fn open(mut input: Box<dyn Input>, name: &str, _level: usize, out: Channels) -> Result<Opened, SourceError> {
    let decode = |reason: String| SourceError::Decode { name: name.to_string(), reason };
    let (width, height) = dimensions(&mut input, name)?;
    check_whole(name, width, height, "a JPEG")?;
    input.seek(SeekFrom::Start(0)).map_err(|source| SourceError::Open { name: name.to_string(), source })?;
    let mut bytes = Vec::new();
    // A JPEG larger than its decoded size is not a sane file.
    input
        .take(WHOLE_IMAGE_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::Open { name: name.to_string(), source })?;
    if !jpeg_is_complete(&bytes) {
        return Err(decode("the JPEG is truncated: its data ends without an end-of-image marker".into()));
    }
    let orientation = exif_orientation(&bytes);
    let mut reader = image::ImageReader::with_format(Cursor::new(&bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * WHOLE_IMAGE_LIMIT);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| decode(e.to_string()))?;
    drop(bytes);
    let mut pixels = zeroed(width * height * out.count(), name, width, height)?;
    let what = match image {
        image::DynamicImage::ImageLuma8(gray) => {
            convert(Samples::U8(gray.as_raw()), 1, out, &mut pixels);
            "8-bit gray"
        }
        other => {
            convert(Samples::U8(other.into_rgb8().as_raw()), 3, out, &mut pixels);
            "8-bit colour"
        }
    };
    let info =
        SourceInfo::single_level(FileFormat::of(&FORMAT), width, height, "JPEG", what.into(), orientation);
    let reader = Box::new(DecodedRows { pixels, row_bytes: width * out.count() });
    Ok(Opened { width, height, reader, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_without_its_end_marker_is_incomplete() {
        let scan = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34];
        assert!(!jpeg_is_complete(&scan));
        assert!(jpeg_is_complete(&[&scan[..], &[0xFF, 0xD9]].concat()));
        assert!(jpeg_is_complete(&[&scan[..], &[0xFF, 0xD9, 0, 0]].concat()), "trailing bytes are allowed");
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]), "no scan at all");
        assert!(!jpeg_is_complete(&scan[..5]), "cut inside the scan header");
    }

    /// A JPEG of `side` x `side` noise (so its scan is long), encoded by the `image` crate.
    fn noise_jpeg(side: u32, seed: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..side * side * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) as u8)
            .collect();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode(&pixels, side, side, image::ExtendedColorType::Rgb8)
            .unwrap();
        bytes
    }

    #[test]
    fn a_camera_jpeg_cut_in_its_main_scan_is_incomplete_whatever_its_thumbnail() {
        // A camera JPEG: SOI, an APP1 EXIF segment holding a whole thumbnail JPEG (with its own scan and
        // end marker), then the main image's segments.
        let thumbnail = noise_jpeg(16, 1);
        let main = noise_jpeg(96, 2);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&thumbnail);
        let mut camera = vec![0xFF, 0xD8, 0xFF, 0xE1];
        camera.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
        camera.extend_from_slice(&app1);
        camera.extend_from_slice(&main[2..]);
        assert!(jpeg_is_complete(&camera));
        assert!(image::load_from_memory(&camera).is_ok(), "a valid JPEG to a decoder");
        assert_eq!(exif_orientation(&camera), Orientation::Normal, "an EXIF block without a TIFF header");
        for cut in [camera.len() - 2, camera.len() - 100, camera.len() / 2 + thumbnail.len() / 2] {
            assert!(!jpeg_is_complete(&camera[..cut]), "cut at {cut} of {}", camera.len());
        }
        let cut = Box::new(Cursor::new(camera[..camera.len() - 50].to_vec()));
        let err = open(cut, "cut.jpg", 0, Channels::Rgb).err().expect("an error").to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn the_exif_orientation_of_a_jpeg_is_read() {
        let main = noise_jpeg(16, 3);
        let app1 = [&b"Exif\0\0"[..], &Orientation::Rotate270.exif()].concat();
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&main[2..]);
        let opened = open(Box::new(Cursor::new(jpeg)), "turned.jpg", 0, Channels::Rgb).unwrap();
        assert_eq!(opened.info.orientation, Orientation::Rotate270);
        assert_eq!(exif_orientation(&main), Orientation::Normal);
    }
}
