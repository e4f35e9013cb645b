//! NumPy `.npy` outputs of probabilities: the header first, then float32 rows, little endian.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::writer::{create, RowWriter};

/// The header of a NumPy .npy file (format version 1.0) for a little-endian float32 C-order array of shape
/// (height, width): magic, version, header length, then the header dict padded with spaces to a multiple of
/// 64 bytes and ended by a newline.
pub fn npy_header(height: usize, width: usize) -> Vec<u8> {
    npy_header_of_shape(&[height, width])
}

/// [`npy_header`] for an array of any shape (at least two axes).
pub fn npy_header_of_shape(shape: &[usize]) -> Vec<u8> {
    let shape = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(10 + header_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out
}

struct NpyWriter(BufWriter<File>);

/// Starts a `height` x `width` float32 array at `path`.
pub(super) fn start(path: &Path, width: usize, height: usize) -> Result<Box<dyn RowWriter>, String> {
    start_shape(path, &[height, width])
}

/// Starts a float32 array of `shape` at `path`, its values to come in C order.
pub(super) fn start_shape(path: &Path, shape: &[usize]) -> Result<Box<dyn RowWriter>, String> {
    let mut file = create(path)?;
    file.write_all(&npy_header_of_shape(shape)).map_err(|e| e.to_string())?;
    Ok(Box::new(NpyWriter(file)))
}

impl RowWriter for NpyWriter {
    fn write_values(&mut self, rows: &[f32]) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(rows.len().min(1 << 16) * 4);
        for chunk in rows.chunks(1 << 16) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.0.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        let NpyWriter(mut file) = *self;
        file.flush().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        for (h, w) in [(1, 1), (480, 640), (8192, 8192)] {
            let header = npy_header(h, w);
            assert_eq!(header.len() % 64, 0);
            assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
            let len = u16::from_le_bytes([header[8], header[9]]) as usize;
            assert_eq!(10 + len, header.len());
            let text = std::str::from_utf8(&header[10..]).unwrap();
            assert!(text
                .starts_with(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}")));
            assert!(text.ends_with('\n'));
        }
        let header = npy_header_of_shape(&[5, 7, 3]);
        assert_eq!(header.len() % 64, 0);
        assert!(std::str::from_utf8(&header[10..]).unwrap().contains("'shape': (5, 7, 3), }"));
    }
}
