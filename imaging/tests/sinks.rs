//! The row sinks of every image format carry the input's orientation; a .npy file stays as stored.

use imaging::sink::{ImageFormat, Orientation, PixelKind, ProbabilityFormat, RowSink, SinkOptions};
use imaging::source::{Channels, ImageSource};

#[test]
fn image_outputs_carry_the_orientation_and_npy_stays_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (5, 3);
    let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 13) as u8).collect();
    for orientation in [Orientation::Normal, Orientation::Rotate90, Orientation::MirrorVertical] {
        for (ext, format) in
            [("png", ImageFormat::Png), ("tif", ImageFormat::Tiff), ("jpg", ImageFormat::Jpeg)]
        {
            let path = dir.path().join(format!("o{}.{ext}", orientation.tag()));
            let options = SinkOptions { orientation, ..SinkOptions::default() };
            let mut sink =
                RowSink::image_with(&path, format, PixelKind::Rgb8, width, height, options).unwrap();
            sink.write_pixels(&rgb).unwrap();
            sink.finish().unwrap();
            let mut source = ImageSource::open(&path, Channels::Rgb).unwrap();
            assert_eq!(source.orientation(), orientation, "{ext}");
            let pixels = source.read_all().unwrap();
            if format != ImageFormat::Jpeg {
                assert_eq!(pixels, rgb, "{ext}: the pixels stay as stored");
            }
        }
        let path = dir.path().join("p.tif");
        let options = SinkOptions { orientation, force_bigtiff: true, ..SinkOptions::default() };
        let mut sink =
            RowSink::probabilities_with(&path, ProbabilityFormat::Tiff, width, height, options).unwrap();
        sink.write_values(&vec![0.5; width * height]).unwrap();
        sink.finish().unwrap();
        let source = ImageSource::open(&path, Channels::Gray).unwrap();
        assert_eq!(source.orientation(), orientation, "probabilities (BigTIFF)");
    }
}

#[test]
fn a_png_or_tiff_whose_last_bytes_cannot_be_written_is_an_error() {
    // /dev/full takes opens and refuses every write: the buffered last bytes fail at the end.
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let full = std::path::Path::new("/dev/full");
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let sink = RowSink::image(full, format, PixelKind::Gray8, 4, 2, false);
        let result = sink.and_then(|mut sink| {
            sink.write_pixels(&[7; 8])?;
            sink.finish()
        });
        let err = result.expect_err("a full disk is an error").to_string();
        assert!(err.contains("No space left"), "{format:?}: {err}");
    }
}
