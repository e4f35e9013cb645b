//! Chunk decoding: one strip or tile read from the file, decompressed (`codecs.rs`, `jpeg.rs`), the
//! predictor undone and the samples typed; the planes of a planar chunk interleaved; a row of a decoded
//! chunk converted to 8-bit pixels.

use super::codecs::{self, Codec};
use super::ifd::TiffInput;
use super::image::{Kind, Layout, Photometric};
use super::{jpeg, jpeg2000};
use crate::source::samples::{convert, Channels, Samples};

/// Decoded samples of a chunk.
pub(super) enum Typed {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    F32(Vec<f32>),
}

/// A decoded chunk: `rows` rows of `stride` pixels of `spp` samples.
pub(super) struct Decoded {
    data: Typed,
    spp: usize,
    stride: usize,
    rows: usize,
}

/// Decodes the chunks of one page, keeping its buffers from chunk to chunk.
pub(super) struct ChunkDecoder {
    codec: Codec,
    kind: Kind,
    /// Samples per pixel in a chunk (1 in a plane of a planar image).
    spp: usize,
    /// Planes of a planar image read (0 for chunky images).
    planes: usize,
    ycbcr: bool,
    predictor: u64,
    reverse_bits: bool,
    jpeg_tables: Option<Vec<u8>>,
    chunk_width: usize,
    chunk_height: usize,
    raw: Vec<u8>,
    bytes: Vec<u8>,
    scratch: Vec<u8>,
    /// Chunks read from the file so far.
    pub chunks_read: u64,
}

impl ChunkDecoder {
    pub(super) fn new(
        layout: &Layout,
        reverse_bits: bool,
        jpeg_tables: Option<Vec<u8>>,
        (chunk_width, chunk_height): (usize, usize),
    ) -> ChunkDecoder {
        ChunkDecoder {
            codec: layout.codec,
            kind: layout.kind,
            spp: if layout.planar { 1 } else { layout.samples },
            planes: layout.planes,
            ycbcr: layout.ycbcr,
            predictor: layout.predictor,
            reverse_bits,
            jpeg_tables,
            chunk_width,
            chunk_height,
            raw: Vec::new(),
            bytes: Vec::new(),
            scratch: Vec::new(),
            chunks_read: 0,
        }
    }

    /// Reads and decodes chunk `index` (`len` bytes at `offset`), which holds `chunk_rows` rows of which
    /// the first `need_rows` are used, and pixels up to `need_width`.
    /// Refuses chunk `index` of `len` bytes when its codec cannot decode that many bytes to the
    /// `need_rows` rows its place in the image needs: memory follows what the file holds, not what its
    /// tags declare.
    pub(super) fn check_holds(&self, index: u64, len: u64, need_rows: usize) -> Result<(), String> {
        let need = (self.chunk_width as u64)
            .saturating_mul(need_rows as u64)
            .saturating_mul(self.spp as u64)
            .saturating_mul(self.kind.bytes() as u64);
        match codecs::max_decoded(self.codec, len) {
            // An empty chunk is said to be one when it is read.
            Some(most) if most < need && len > 0 => Err(format!(
                "chunk {index} is {len} bytes of {}, which cannot decode to the {need} bytes its {need_rows} \
                 rows need (at most {most}); the file is corrupt or cut short",
                self.codec.name()
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn decode(
        &mut self,
        file: &mut TiffInput,
        index: u64,
        (offset, len): (u64, u64),
        chunk_rows: usize,
        need_rows: usize,
        need_width: usize,
    ) -> Result<Decoded, String> {
        if len == 0 {
            return Err(format!(
                "chunk {index} is empty (a sparse file, or one whose writing was cut short)"
            ));
        }
        file.read_chunk(offset, len, &mut self.raw, index)?;
        self.chunks_read += 1;
        let max_pixels = self.chunk_width * self.chunk_height.max(chunk_rows);
        let at = |reason: String| format!("chunk {index}: {reason}");
        let check = |stride: usize, rows: usize| -> Result<(), String> {
            if stride < need_width || rows < need_rows {
                return Err(format!(
                    "chunk {index} decodes to {stride}x{rows} pixels, where its place in the image needs {need_width}x{need_rows}"
                ));
            }
            Ok(())
        };
        match self.codec {
            Codec::Jpeg => {
                let chunk = jpeg::decode(
                    self.jpeg_tables.as_deref(),
                    &self.raw,
                    self.ycbcr,
                    max_pixels,
                    &mut self.scratch,
                )
                .map_err(at)?;
                check(chunk.width, chunk.height)?;
                if self.planes == 0
                    && chunk.components != self.spp.min(3)
                    && !(self.spp == 4 && chunk.components == 3)
                {
                    return Err(at(format!(
                        "it has {} JPEG components for {} samples per pixel",
                        chunk.components, self.spp
                    )));
                }
                Ok(Decoded {
                    data: Typed::U8(chunk.pixels),
                    spp: chunk.components,
                    stride: chunk.width,
                    rows: chunk.height,
                })
            }
            Codec::Jpeg2000 { .. } => {
                let chunk = jpeg2000::decode(&self.raw, self.ycbcr, max_pixels).map_err(at)?;
                check(chunk.width, chunk.height)?;
                let want = if self.planes == 0 { self.spp } else { 1 };
                if chunk.components != want && !(want == 4 && chunk.components == 3) {
                    return Err(at(format!(
                        "it has {} JPEG 2000 components for {want} samples per pixel",
                        chunk.components
                    )));
                }
                Ok(Decoded {
                    data: Typed::U8(chunk.pixels),
                    spp: chunk.components,
                    stride: chunk.width,
                    rows: chunk.height,
                })
            }
            Codec::WebP => {
                let (pixels, w, h, spp) = codecs::webp(&self.raw, max_pixels).map_err(at)?;
                check(w, h)?;
                Ok(Decoded { data: Typed::U8(pixels), spp, stride: w, rows: h })
            }
            codec => {
                if self.reverse_bits {
                    self.raw.iter_mut().for_each(|b| *b = b.reverse_bits());
                }
                let stride = self.chunk_width;
                let values_per_row = stride * self.spp;
                let row_bytes = values_per_row * self.kind.bytes();
                let got = codecs::decompress(codec, &self.raw, row_bytes * chunk_rows, &mut self.bytes)
                    .map_err(at)?;
                let rows = got / row_bytes;
                if rows < need_rows {
                    return Err(format!(
                        "chunk {index} decodes to {got} bytes, fewer than the {} its {need_rows} rows need",
                        row_bytes * need_rows
                    ));
                }
                let bytes = &mut self.bytes[..rows * row_bytes];
                let little = file.little;
                let data = match self.kind {
                    Kind::U8 => {
                        let mut v = bytes.to_vec();
                        if self.predictor == 2 {
                            codecs::undo_horizontal(&mut v, values_per_row, self.spp, u8::wrapping_add);
                        }
                        Typed::U8(v)
                    }
                    Kind::U16 | Kind::I16 => {
                        let mut v: Vec<u16> = bytes
                            .chunks_exact(2)
                            .map(|b| {
                                if little {
                                    u16::from_le_bytes([b[0], b[1]])
                                } else {
                                    u16::from_be_bytes([b[0], b[1]])
                                }
                            })
                            .collect();
                        if self.predictor == 2 {
                            codecs::undo_horizontal(&mut v, values_per_row, self.spp, u16::wrapping_add);
                        }
                        if self.kind == Kind::I16 {
                            Typed::I16(v.into_iter().map(|x| x as i16).collect())
                        } else {
                            Typed::U16(v)
                        }
                    }
                    Kind::F16 | Kind::F32 | Kind::F64 => {
                        let size = self.kind.bytes();
                        // Floating-point prediction leaves each value's bytes big-endian.
                        let big = if self.predictor == 3 {
                            for row in bytes.chunks_exact_mut(row_bytes) {
                                codecs::undo_floating_point(row, values_per_row, size, &mut self.scratch);
                            }
                            true
                        } else {
                            !little
                        };
                        let value = |b: &[u8]| -> f32 {
                            match size {
                                2 => {
                                    let v = [b[0], b[1]];
                                    codecs::f16_to_f32(if big {
                                        u16::from_be_bytes(v)
                                    } else {
                                        u16::from_le_bytes(v)
                                    })
                                }
                                4 => {
                                    let v = [b[0], b[1], b[2], b[3]];
                                    if big {
                                        f32::from_be_bytes(v)
                                    } else {
                                        f32::from_le_bytes(v)
                                    }
                                }
                                _ => {
                                    let v: [u8; 8] = b.try_into().expect("8 bytes");
                                    (if big { f64::from_be_bytes(v) } else { f64::from_le_bytes(v) }) as f32
                                }
                            }
                        };
                        Typed::F32(bytes.chunks_exact(size).map(value).collect())
                    }
                };
                Ok(Decoded { data, spp: self.spp, stride, rows })
            }
        }
    }
}

/// The planes of a planar chunk (one sample per pixel each) as one chunk of interleaved samples.
pub(super) fn interleave(planes: Vec<Decoded>) -> Result<Decoded, String> {
    fn weave<T: Copy>(planes: &[&[T]], len: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(len * planes.len());
        for i in 0..len {
            out.extend(planes.iter().map(|p| p[i]));
        }
        out
    }
    let stride = planes.iter().map(|p| p.stride).min().unwrap_or(0);
    let rows = planes.iter().map(|p| p.rows).min().unwrap_or(0);
    if planes.iter().any(|p| p.stride != stride || p.spp != 1) {
        return Err("the planes of a planar image decode to chunks of different sizes".into());
    }
    let len = stride * rows;
    let n = planes.len();
    macro_rules! weave_as {
        ($variant:ident) => {{
            let slices: Option<Vec<_>> = planes
                .iter()
                .map(|p| match &p.data {
                    Typed::$variant(v) => Some(&v[..len]),
                    _ => None,
                })
                .collect();
            Typed::$variant(weave(&slices.ok_or("the planes of a planar image differ in kind")?, len))
        }};
    }
    let data = match planes[0].data {
        Typed::U8(_) => weave_as!(U8),
        Typed::U16(_) => weave_as!(U16),
        Typed::I16(_) => weave_as!(I16),
        Typed::F32(_) => weave_as!(F32),
    };
    Ok(Decoded { data, spp: n, stride, rows })
}

/// Converts row `r` of a decoded chunk, its first `width` pixels, into `dst`.
pub(super) fn convert_row(
    decoded: &Decoded,
    r: usize,
    width: usize,
    photometric: &Photometric,
    out: Channels,
    dst: &mut [u8],
    scratch: &mut Vec<u8>,
) {
    let spp = decoded.spp;
    let range = r * decoded.stride * spp..(r * decoded.stride + width) * spp;
    match (photometric, &decoded.data) {
        (Photometric::Palette(map), data) => {
            scratch.clear();
            let index = |i: usize| match data {
                Typed::U8(v) => v[i] as usize,
                Typed::U16(v) => v[i] as usize,
                _ => 0,
            };
            for i in range.step_by(spp) {
                scratch.extend_from_slice(map.get(index(i)).unwrap_or(&[0, 0, 0]));
            }
            convert(Samples::U8(scratch), 3, out, dst);
        }
        (Photometric::GrayInverted, Typed::U8(v)) => {
            scratch.clear();
            scratch.extend(v[range].iter().map(|x| 255 - x));
            convert(Samples::U8(scratch), spp, out, dst);
        }
        (Photometric::GrayInverted, Typed::U16(v)) => {
            let inverted: Vec<u16> = v[range].iter().map(|x| 65_535 - x).collect();
            convert(Samples::U16(&inverted), spp, out, dst);
        }
        (_, Typed::U8(v)) => convert(Samples::U8(&v[range]), spp, out, dst),
        (_, Typed::U16(v)) => convert(Samples::U16(&v[range]), spp, out, dst),
        (_, Typed::I16(v)) => convert(Samples::I16(&v[range]), spp, out, dst),
        (_, Typed::F32(v)) => convert(Samples::F32(&v[range]), spp, out, dst),
    }
}
