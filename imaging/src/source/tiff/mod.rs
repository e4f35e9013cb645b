//! TIFF and BigTIFF, read natively, in image-tiff's layers: `ifd.rs` the header, directories and tags;
//! `image.rs` one directory made into a validated description ([`image::Page`], [`image::Layout`]);
//! `levels.rs` the directory chain walked into levels and what the file is; `decode.rs` one chunk read and
//! decoded, through `codecs.rs` (none, LZW, Deflate, PackBits, ZSTD, WebP, predictors), `jpeg.rs`
//! (JPEG, with JPEGTables and libjpeg's YCbCr conversion) and `jpeg2000.rs` (JPEG 2000, Aperio's YCbCr); `reader.rs` the level read one strip or one row
//! of tiles at a time, and the format's descriptor. A new codec is one decoder in `codecs.rs` and one
//! match arm in `decode.rs`.

mod codecs;
mod decode;
mod ifd;
mod image;
mod jpeg;
mod jpeg2000;
mod levels;
mod reader;

pub(crate) use self::reader::FORMAT;
