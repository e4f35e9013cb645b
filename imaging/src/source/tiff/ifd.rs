//! TIFF and BigTIFF structure: the header, image file directories (IFDs) and their entries, and tag values
//! read on demand (arrays such as strip offsets are read a few entries at a time, never whole). Errors are
//! reasons (strings), made into one-line errors by the caller.

use std::collections::BTreeMap;
use std::io::{Read, SeekFrom};

use crate::source::reader::Input;

// Tags read.

// Tags read.
pub(super) const NEW_SUBFILE_TYPE: u16 = 254;
pub(super) const IMAGE_WIDTH: u16 = 256;
pub(super) const IMAGE_LENGTH: u16 = 257;
pub(super) const BITS_PER_SAMPLE: u16 = 258;
pub(super) const COMPRESSION: u16 = 259;
pub(super) const PHOTOMETRIC: u16 = 262;
pub(super) const FILL_ORDER: u16 = 266;
pub(super) const IMAGE_DESCRIPTION: u16 = 270;
pub(super) const STRIP_OFFSETS: u16 = 273;
pub(super) const ORIENTATION: u16 = 274;
pub(super) const SAMPLES_PER_PIXEL: u16 = 277;
pub(super) const ROWS_PER_STRIP: u16 = 278;
pub(super) const STRIP_BYTE_COUNTS: u16 = 279;
pub(super) const X_RESOLUTION: u16 = 282;
pub(super) const Y_RESOLUTION: u16 = 283;
pub(super) const PLANAR_CONFIGURATION: u16 = 284;
pub(super) const RESOLUTION_UNIT: u16 = 296;
pub(super) const PREDICTOR: u16 = 317;
pub(super) const COLOR_MAP: u16 = 320;
pub(super) const TILE_WIDTH: u16 = 322;
pub(super) const TILE_LENGTH: u16 = 323;
pub(super) const TILE_OFFSETS: u16 = 324;
pub(super) const TILE_BYTE_COUNTS: u16 = 325;
pub(super) const SUB_IFDS: u16 = 330;
pub(super) const EXTRA_SAMPLES: u16 = 338;
pub(super) const SAMPLE_FORMAT: u16 = 339;
pub(super) const JPEG_TABLES: u16 = 347;
pub(super) const YCBCR_SUBSAMPLING: u16 = 530;

/// The most entries one directory may hold (real files have a few dozen).
const MAX_ENTRIES: u64 = 4096;

/// One directory entry: its type, count, and the raw value field (the value itself when it fits, else
/// the offset of the value).
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub typ: u16,
    pub count: u64,
    field: [u8; 8],
}

/// Bytes per value of a TIFF field type, or None for an unknown type.
pub(super) fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,         // BYTE, ASCII, SBYTE, UNDEFINED
        3 | 8 => 2,                 // SHORT, SSHORT
        4 | 9 | 11 | 13 => 4,       // LONG, SLONG, FLOAT, IFD
        5 | 10 | 12 | 16..=18 => 8, // RATIONAL, SRATIONAL, DOUBLE, LONG8, SLONG8, IFD8
        _ => return None,
    })
}

/// One directory: its entries by tag, and the offset of the next directory (0 at the end of the chain).
#[derive(Debug, Clone)]
pub(super) struct Ifd {
    pub entries: BTreeMap<u16, Entry>,
    pub next: u64,
}

/// A TIFF file being read.
pub(super) struct TiffInput {
    input: Box<dyn Input>,
    pub big: bool,
    pub little: bool,
    pub len: u64,
}

impl TiffInput {
    /// Reads the header; returns the file and the offset of the first directory.
    pub fn open(mut input: Box<dyn Input>) -> Result<(TiffInput, u64), String> {
        let len = input.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        let mut file = TiffInput { input, big: false, little: true, len };
        let mut head = [0u8; 16];
        let got = file.read_up_to(0, &mut head)?;
        let head = &head[..got];
        file.little = match head.get(..2) {
            Some(b"II") => true,
            Some(b"MM") => false,
            _ => return Err("the TIFF header is missing".into()),
        };
        let version = head.get(2..4).map(|b| file.u16(b)).ok_or("the TIFF header is cut short")?;
        let first = match version {
            42 => head.get(4..8).map(|b| file.u32(b) as u64),
            43 => {
                file.big = true;
                let sizes = head.get(4..8).map(|b| (file.u16(&b[..2]), file.u16(&b[2..])));
                if sizes != Some((8, 0)) {
                    return Err("the BigTIFF header is malformed".into());
                }
                head.get(8..16).map(|b| file.u64(b))
            }
            other => return Err(format!("TIFF version {other} is not 42 (TIFF) or 43 (BigTIFF)")),
        };
        let first = first.ok_or("the TIFF header is cut short")?;
        Ok((file, first))
    }

    pub fn u16(&self, b: &[u8]) -> u16 {
        let b = [b[0], b[1]];
        if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    pub fn u32(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    pub fn u64(&self, b: &[u8]) -> u64 {
        let b: [u8; 8] = b[..8].try_into().expect("8 bytes");
        if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    }

    /// Reads as many bytes as there are at `offset`, up to `buf.len()`.
    fn read_up_to(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        self.input.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(got)
    }

    /// Reads exactly `buf.len()` bytes at `offset`; `what` names them in the error of a file that ends
    /// first (a truncated file).
    pub fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        what: &dyn std::fmt::Display,
    ) -> Result<(), String> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(format!(
                "the file is truncated: {what} ({} bytes at offset {offset}) lies beyond its end ({} bytes)",
                buf.len(),
                self.len
            ));
        }
        let got = self.read_up_to(offset, buf)?;
        if got < buf.len() {
            return Err(format!("the file is truncated: {what} ends early"));
        }
        Ok(())
    }

    /// Reads the directory at `offset`.
    pub fn read_ifd(&mut self, offset: u64) -> Result<Ifd, String> {
        let what = format!("the directory at offset {offset}");
        let (count_len, entry_len, next_len) = if self.big { (8, 20, 8) } else { (2, 12, 4) };
        let mut count = [0u8; 8];
        self.read_at(offset, &mut count[..count_len], &what)?;
        let count = if self.big { self.u64(&count) } else { u64::from(self.u16(&count)) };
        if count == 0 || count > MAX_ENTRIES {
            return Err(format!("{what} has {count} entries"));
        }
        let mut raw = vec![0u8; count as usize * entry_len + next_len];
        self.read_at(offset + count_len as u64, &mut raw, &what)?;
        let mut entries = BTreeMap::new();
        for e in raw[..count as usize * entry_len].chunks_exact(entry_len) {
            let tag = self.u16(&e[0..2]);
            let typ = self.u16(&e[2..4]);
            let (count, value) = if self.big {
                (self.u64(&e[4..12]), &e[12..20])
            } else {
                (u64::from(self.u32(&e[4..8])), &e[8..12])
            };
            let mut field = [0u8; 8];
            field[..value.len()].copy_from_slice(value);
            // Entries of unknown types are skipped, as the specification says readers should.
            if type_size(typ).is_some() {
                entries.entry(tag).or_insert(Entry { typ, count, field });
            }
        }
        let tail = &raw[count as usize * entry_len..];
        let next = if self.big { self.u64(tail) } else { u64::from(self.u32(tail)) };
        Ok(Ifd { entries, next })
    }

    /// Where the value of `entry` is: inside the field, or at an offset in the file.
    fn locate(&self, entry: &Entry) -> Result<Option<u64>, String> {
        let size = type_size(entry.typ).unwrap_or(1);
        let bytes = entry.count.checked_mul(size).ok_or("a tag's size overflows")?;
        let field = if self.big { 8 } else { 4 };
        Ok(if bytes <= field {
            None
        } else if self.big {
            Some(self.u64(&entry.field))
        } else {
            Some(u64::from(self.u32(&entry.field)))
        })
    }

    /// The raw bytes of values `start..start + n` of `entry`.
    fn raw(&mut self, entry: &Entry, start: u64, n: u64, tag: u16) -> Result<Vec<u8>, String> {
        let size = type_size(entry.typ).unwrap_or(1);
        if start.checked_add(n).is_none_or(|end| end > entry.count) {
            return Err(format!(
                "tag {tag} holds {} values, fewer than the {} needed",
                entry.count,
                start + n
            ));
        }
        let (from, len) = (start * size, n * size);
        match self.locate(entry)? {
            None => Ok(entry.field[from as usize..(from + len) as usize].to_vec()),
            Some(offset) => {
                let len = usize::try_from(len).map_err(|_| "a tag is too large")?;
                let mut buf = Vec::new();
                buf.try_reserve_exact(len).map_err(|_| format!("tag {tag} is too large"))?;
                buf.resize(len, 0);
                let at = offset.checked_add(from).ok_or("a tag's offset overflows")?;
                self.read_at(at, &mut buf, &format_args!("the values of tag {tag}"))?;
                Ok(buf)
            }
        }
    }

    /// Values `start..start + n` of an unsigned integer tag (BYTE, SHORT, LONG, LONG8, IFD, IFD8).
    pub fn uints(&mut self, entry: &Entry, start: u64, n: u64, tag: u16) -> Result<Vec<u64>, String> {
        let raw = self.raw(entry, start, n, tag)?;
        Ok(match entry.typ {
            1 | 7 => raw.iter().map(|&b| u64::from(b)).collect(),
            3 => raw.chunks_exact(2).map(|b| u64::from(self.u16(b))).collect(),
            4 | 13 => raw.chunks_exact(4).map(|b| u64::from(self.u32(b))).collect(),
            16 | 18 => raw.chunks_exact(8).map(|b| self.u64(b)).collect(),
            other => return Err(format!("tag {tag} has type {other}, not an unsigned integer")),
        })
    }

    /// Every value of an unsigned integer tag that holds at most `max` values.
    pub fn uint_list(&mut self, entry: &Entry, max: u64, tag: u16) -> Result<Vec<u64>, String> {
        if entry.count > max {
            return Err(format!("tag {tag} holds {} values, more than {max}", entry.count));
        }
        self.uints(entry, 0, entry.count, tag)
    }

    /// The bytes of an ASCII, BYTE or UNDEFINED tag, if it holds at most `max` bytes.
    pub fn bytes(&mut self, entry: &Entry, max: u64, tag: u16) -> Result<Option<Vec<u8>>, String> {
        if entry.count > max || !matches!(entry.typ, 1 | 2 | 6 | 7) {
            return Ok(None);
        }
        self.raw(entry, 0, entry.count, tag).map(Some)
    }

    /// The first value of a RATIONAL (or integer) tag, as a float.
    pub fn rational(&mut self, entry: &Entry, tag: u16) -> Result<Option<f64>, String> {
        if entry.count == 0 {
            return Ok(None);
        }
        let raw = self.raw(entry, 0, 1, tag)?;
        Ok(match entry.typ {
            5 => {
                let (n, d) = (self.u32(&raw[..4]), self.u32(&raw[4..]));
                (d != 0).then(|| f64::from(n) / f64::from(d))
            }
            11 => Some(f64::from(f32::from_bits(self.u32(&raw)))),
            12 => Some(f64::from_bits(self.u64(&raw))),
            3 | 4 | 16 => self.uints(entry, 0, 1, tag)?.first().map(|&v| v as f64),
            _ => None,
        })
    }

    /// Reads a chunk's compressed bytes into `buf` (resized to `len`).
    pub fn read_chunk(&mut self, offset: u64, len: u64, buf: &mut Vec<u8>, index: u64) -> Result<(), String> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.len) {
            return Err(format!(
                "the file is truncated: chunk {index} ({len} bytes at offset {offset}) lies beyond its end ({} bytes)",
                self.len
            ));
        }
        let len = usize::try_from(len).map_err(|_| format!("chunk {index} is too large"))?;
        buf.clear();
        buf.try_reserve(len).map_err(|_| format!("chunk {index} ({len} bytes) does not fit in memory"))?;
        buf.resize(len, 0);
        self.read_at(offset, buf, &format_args!("chunk {index}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tiff(bytes: Vec<u8>) -> Result<(TiffInput, u64), String> {
        TiffInput::open(Box::new(Cursor::new(bytes)))
    }

    #[test]
    fn headers_of_both_byte_orders_and_bigtiff() {
        let (t, first) = tiff(b"II*\0\x08\0\0\0".to_vec()).unwrap();
        assert!(t.little && !t.big && first == 8);
        let (t, first) = tiff(b"MM\0*\0\0\0\x10".to_vec()).unwrap();
        assert!(!t.little && !t.big && first == 16);
        let (t, first) = tiff(b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0".to_vec()).unwrap();
        assert!(t.little && t.big && first == 16);
        for bad in [&b"II*"[..], b"II\x2b\0\x04\0\0\0", b"XX*\0\x08\0\0\0", b"II\x07\0\x08\0\0\0"] {
            assert!(tiff(bad.to_vec()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_directory_beyond_the_end_or_with_absurd_counts_is_an_error() {
        let (mut t, _) = tiff(b"II*\0\x08\0\0\0\x01\0".to_vec()).unwrap();
        let err = t.read_ifd(8).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(t.read_ifd(1 << 40).unwrap_err().contains("truncated"));
        let (mut t, _) = tiff(b"II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec()).unwrap();
        assert!(t.read_ifd(8).unwrap_err().contains("0 entries"));
    }
}
