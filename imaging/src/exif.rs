//! The EXIF orientation of an image (TIFF tag 274, JPEG APP1 EXIF, PNG eXIf): how a viewer turns the
//! stored pixels to show them. Inputs are read and predicted in their stored orientation (which keeps
//! streaming exact); outputs carry the input's orientation tag, so that viewers show them turned like the
//! input. Also the smallest EXIF block that holds an orientation, for the writers.

/// The eight EXIF orientations: where the stored image's first row and first column go when shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Orientation {
    /// 1: shown as stored.
    #[default]
    Normal,
    /// 2: mirrored left to right.
    MirrorHorizontal,
    /// 3: turned 180 degrees.
    Rotate180,
    /// 4: mirrored top to bottom.
    MirrorVertical,
    /// 5: mirrored along the main diagonal (rows become columns).
    Transpose,
    /// 6: turned 90 degrees clockwise to be shown upright.
    Rotate90,
    /// 7: mirrored along the other diagonal.
    Transverse,
    /// 8: turned 90 degrees counter-clockwise (270 clockwise) to be shown upright.
    Rotate270,
}

impl Orientation {
    /// The orientation of EXIF/TIFF tag value `value` (1 to 8), or None for any other value.
    pub fn from_tag(value: u16) -> Option<Orientation> {
        Some(match value {
            1 => Orientation::Normal,
            2 => Orientation::MirrorHorizontal,
            3 => Orientation::Rotate180,
            4 => Orientation::MirrorVertical,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => return None,
        })
    }

    /// The tag value (1 to 8).
    pub fn tag(self) -> u16 {
        match self {
            Orientation::Normal => 1,
            Orientation::MirrorHorizontal => 2,
            Orientation::Rotate180 => 3,
            Orientation::MirrorVertical => 4,
            Orientation::Transpose => 5,
            Orientation::Rotate90 => 6,
            Orientation::Transverse => 7,
            Orientation::Rotate270 => 8,
        }
    }

    /// Whether a viewer shows the image with width and height exchanged (5 to 8).
    pub fn swaps_sides(self) -> bool {
        self.tag() >= 5
    }

    /// The orientation held by an EXIF block: TIFF-structured data ("II*\0" or "MM\0*" header), with or
    /// without the "Exif\0\0" prefix of a JPEG APP1 segment. None when the block holds no valid
    /// orientation (absent, malformed or out of range).
    pub fn from_exif(exif: &[u8]) -> Option<Orientation> {
        let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
        let little = match tiff.get(..4)? {
            b"II*\0" => true,
            b"MM\0*" => false,
            _ => return None,
        };
        let u16_at = |at: usize| -> Option<u16> {
            let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
            Some(if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
        };
        let u32_at = |at: usize| -> Option<u32> {
            let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
            Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
        };
        let ifd = usize::try_from(u32_at(4)?).ok()?;
        let entries = u16_at(ifd)?;
        for i in 0..usize::from(entries) {
            let entry = ifd + 2 + 12 * i;
            // Tag 274, type SHORT (3), count 1: the value sits in the first two bytes of the field.
            if u16_at(entry)? == 274 {
                if u16_at(entry + 2)? != 3 || u32_at(entry + 4)? != 1 {
                    return None;
                }
                return Orientation::from_tag(u16_at(entry + 8)?);
            }
        }
        None
    }

    /// The smallest EXIF block holding this orientation: a little-endian TIFF header and one directory
    /// with the one entry (tag 274, SHORT, count 1), without the "Exif\0\0" prefix (a PNG eXIf chunk
    /// holds it as is; a JPEG APP1 segment puts the prefix before it).
    pub fn exif(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26);
        out.extend_from_slice(b"II*\0");
        out.extend_from_slice(&8u32.to_le_bytes()); // the directory follows the header
        out.extend_from_slice(&1u16.to_le_bytes()); // one entry
        out.extend_from_slice(&274u16.to_le_bytes());
        out.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        out.extend_from_slice(&1u32.to_le_bytes()); // count
        out.extend_from_slice(&self.tag().to_le_bytes());
        out.extend_from_slice(&[0, 0]); // the rest of the 4-byte value field
        out.extend_from_slice(&0u32.to_le_bytes()); // no next directory
        out
    }
}

impl std::fmt::Display for Orientation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Orientation::Normal => "as stored",
            Orientation::MirrorHorizontal => "mirrored left to right",
            Orientation::Rotate180 => "turned 180 degrees",
            Orientation::MirrorVertical => "mirrored top to bottom",
            Orientation::Transpose => "transposed",
            Orientation::Rotate90 => "turned 90 degrees clockwise",
            Orientation::Transverse => "transversed",
            Orientation::Rotate270 => "turned 90 degrees counter-clockwise",
        };
        write!(f, "EXIF orientation {} ({what})", self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_orientation_survives_its_own_exif_block() {
        for tag in 1..=8 {
            let orientation = Orientation::from_tag(tag).unwrap();
            assert_eq!(orientation.tag(), tag);
            let exif = orientation.exif();
            assert_eq!(Orientation::from_exif(&exif), Some(orientation));
            let app1 = [&b"Exif\0\0"[..], &exif].concat();
            assert_eq!(Orientation::from_exif(&app1), Some(orientation));
        }
        assert_eq!(Orientation::from_tag(0), None);
        assert_eq!(Orientation::from_tag(9), None);
        assert!(Orientation::Rotate90.swaps_sides() && !Orientation::Rotate180.swaps_sides());
    }

    #[test]
    fn big_endian_and_malformed_blocks() {
        let mut be = b"MM\0*\0\0\0\x08\0\x02".to_vec();
        be.extend_from_slice(&[0x01, 0x0F, 0, 2, 0, 0, 0, 4, b'C', b'a', b'm', 0]); // Make
        be.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]); // Orientation 6
        assert_eq!(Orientation::from_exif(&be), Some(Orientation::Rotate90));
        // Cut anywhere before the end of the orientation's value, the block holds none.
        for cut in 0..be.len() - 2 {
            assert_eq!(Orientation::from_exif(&be[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Orientation::from_exif(b"hello world"), None);
        let mut bad_value = be.clone();
        bad_value[be.len() - 3] = 9;
        assert_eq!(Orientation::from_exif(&bad_value), None);
    }
}
