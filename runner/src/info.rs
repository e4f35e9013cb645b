//! `runner info IMAGE`: what an image is (the reader, each level's size, tiles or strips, compression,
//! colour, microns per pixel) and what predicting one of its levels would take on this machine: the memory
//! of the bands held while streaming, the model sessions' memory and the time, both measured by predicting
//! a synthetic 512x512 image when a model is given. [`format_info`] is a pure function of the facts.

use std::path::Path;
use std::time::Instant;

use imaging::source::{openslide, Channels, FileFormat, ImageSource, SourceInfo};
use imaging::tiles::Tiling;

use crate::predict::{self, PredictOptions};
use crate::session::{Model, ModelOptions};

/// Side of the synthetic image predicted to measure the rate.
pub const PROBE_SIDE: usize = 512;

/// What predicting one level would take.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The level and its size.
    pub level: usize,
    pub width: usize,
    pub height: usize,
    /// Rows of one band (a row of tile windows with their halo).
    pub band_rows: usize,
    /// Bytes of the bands held at once (see [`band_bytes`]).
    pub band_bytes: u64,
    /// Memory the model's sessions took, measured (resident memory before loading it and after
    /// predicting the synthetic image), if a model was given.
    pub model_bytes: Option<u64>,
    /// Megapixels per second measured on the synthetic image, or why there is none.
    pub rate: Result<f64, String>,
}

/// Rows of one band for tiles of `tile` px: the tallest window of the plan of an image `width` wide.
pub fn band_rows(tiling: Tiling, width: usize, height: usize, tile: usize) -> usize {
    let rows = height.min(4 * tile).max(1);
    tiling
        .plan(rows, width, tile)
        .ok()
        .and_then(|plan| plan.bands.iter().map(|b| b.window_height).max())
        .unwrap_or(tile)
        .min(height)
}

/// Bytes held while streaming an image `width` wide in bands of `rows` rows: three RGB bands (the one
/// being read, the one queued, the one predicted) and one band of outputs (a class byte and a float32
/// probability per pixel).
pub fn band_bytes(width: usize, rows: usize) -> u64 {
    let pixels = width as u64 * rows as u64;
    3 * 3 * pixels + 5 * pixels
}

/// The reader's name, e.g. "OpenSlide 4.0.1 (aperio)", "native TIFF", "PNG".
pub fn reader_name(info: &SourceInfo, openslide_version: Option<&str>) -> String {
    if info.format != FileFormat::OpenSlide {
        return info.format.name().into();
    }
    format!(
        "{}{} ({})",
        info.format.name(),
        openslide_version.map(|v| format!(" {v}")).unwrap_or_default(),
        info.vendor.as_deref().unwrap_or("unknown vendor")
    )
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", (bytes as f64 / 1e6).ceil())
}

fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{seconds:.2} s")
    } else if seconds < 90.0 {
        format!("{seconds:.1} s")
    } else if seconds < 5400.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The screen `runner info` prints for `name`.
pub fn format_info(name: &str, info: &SourceInfo, reader: &str, estimate: &Estimate) -> String {
    let mut lines = vec![format!("{name}: {reader}")];
    if let Some((x, y)) = info.microns_per_pixel {
        lines.push(format!("microns per pixel (level 0): {x:.4} x {y:.4}"));
    } else {
        lines.push("microns per pixel: not recorded".into());
    }
    if info.other_pages > 0 {
        lines.push(format!(
            "pages: {} ({} of them neither levels nor thumbnails: only page 1 is predicted)",
            info.pages, info.other_pages
        ));
    }
    lines.push("level  size                 downsample  tile/strip     compression, colour".into());
    for (i, level) in info.levels.iter().enumerate() {
        let chunk = match (level.tile, level.rows_per_strip) {
            (Some((w, h)), _) => format!("tiles {w}x{h}"),
            (None, Some(rows)) => format!("strips of {rows}"),
            (None, None) => "-".into(),
        };
        let marker = if i == estimate.level { "*" } else { " " };
        lines.push(format!(
            "{marker}{i:<5} {:<20} {:<11} {chunk:<14} {}, {}",
            format!("{}x{}", level.width, level.height),
            format!("{:.2}", level.downsample.0),
            level.compression,
            level.photometric
        ));
    }
    let megapixels = (estimate.width * estimate.height) as f64 / 1e6;
    lines.push(format!(
        "predicting level {} ({}x{}, {megapixels:.2} megapixels):",
        estimate.level, estimate.width, estimate.height
    ));
    let model = match estimate.model_bytes {
        Some(bytes) => format!(" + {} for the model sessions (measured)", megabytes(bytes)),
        None => " + the model sessions (give --model to measure them)".into(),
    };
    lines.push(format!(
        "  memory: about {} for bands of {} rows{model}",
        megabytes(estimate.band_bytes),
        estimate.band_rows
    ));
    lines.push(match &estimate.rate {
        Ok(rate) => format!(
            "  time: about {} at {rate:.2} megapixels/s (measured on a {PROBE_SIDE}x{PROBE_SIDE} image)",
            duration(megapixels / rate.max(1e-9))
        ),
        Err(why) => format!("  time: {why}"),
    });
    lines.join("\n")
}

/// The process's resident memory (Linux: VmRSS), if known.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Loads the model and predicts a synthetic image: (megapixels per second, bytes the model took).
pub fn measure(
    model: &Path,
    options: &ModelOptions,
    tile: usize,
) -> anyhow::Result<(f64, Option<u64>, Tiling)> {
    let before = resident_bytes();
    let mut model = Model::load(model, options)?;
    // A smooth gradient: any content takes the same time through the network.
    let image = image::RgbImage::from_fn(PROBE_SIDE as u32, PROBE_SIDE as u32, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
    });
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let options = PredictOptions { tile, probabilities: false, logits: false };
    let mut rate = 0.0;
    // The first run builds the sessions; the second is timed.
    for _ in 0..2 {
        let mut source = ImageSource::from_bytes(&png, "synthetic", Channels::Rgb)?;
        let started = Instant::now();
        predict::predict_stream(&mut model, &mut source, options, |_| {}, |_| Ok(()))?;
        rate = (PROBE_SIDE * PROBE_SIDE) as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9);
    }
    let used = before.zip(resident_bytes()).map(|(b, a)| a.saturating_sub(b));
    Ok((rate, used, model.tiling))
}

/// Everything `runner info` prints, for the file at `path`.
pub fn describe(
    path: &Path,
    level: usize,
    tile: usize,
    model: Option<(&Path, &ModelOptions)>,
) -> anyhow::Result<String> {
    let info = ImageSource::probe(path)?;
    let Some(chosen) = info.levels.get(level) else {
        anyhow::bail!(
            "--level {level}: {} has no level {level}; its levels are {}",
            path.display(),
            info.levels_line()
        );
    };
    let version = (info.format == FileFormat::OpenSlide)
        .then(|| openslide::library().ok().map(|api| api.version()))
        .flatten();
    let reader = reader_name(&info, version.as_deref());
    let (rate, model_bytes, tiling) = match model {
        None => (Err("give --model to estimate time".to_string()), None, Tiling::default()),
        Some((path, options)) => match measure(path, options, tile) {
            Ok((rate, bytes, tiling)) => (Ok(rate), bytes, tiling),
            Err(e) => {
                (Err(format!("unknown ({})", imaging::report::error_line(&e))), None, Tiling::default())
            }
        },
    };
    let band_rows = band_rows(tiling, chosen.width, chosen.height, tile);
    let estimate = Estimate {
        level,
        width: chosen.width,
        height: chosen.height,
        band_rows,
        band_bytes: band_bytes(chosen.width, band_rows),
        model_bytes,
        rate,
    };
    Ok(format_info(&path.display().to_string(), &info, &reader, &estimate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imaging::source::{LevelInfo, Orientation, PyramidKind};

    fn level(width: usize, height: usize, downsample: f64) -> LevelInfo {
        LevelInfo {
            width,
            height,
            tile: Some((240, 240)),
            rows_per_strip: None,
            compression: "aperio (OpenSlide)".into(),
            photometric: "8-bit RGB".into(),
            downsample: (downsample, downsample),
        }
    }

    fn slide() -> SourceInfo {
        SourceInfo {
            format: FileFormat::OpenSlide,
            levels: vec![level(46_000, 32_914, 1.0), level(11_500, 8_228, 4.0)],
            pyramid: Some(PyramidKind::OpenSlide),
            pages: 1,
            other_pages: 0,
            orientation: Orientation::Normal,
            microns_per_pixel: Some((0.499, 0.499)),
            vendor: Some("aperio".into()),
        }
    }

    #[test]
    fn the_screen_names_the_reader_levels_memory_and_time() {
        let info = slide();
        let estimate = Estimate {
            level: 1,
            width: 11_500,
            height: 8_228,
            band_rows: 256,
            band_bytes: band_bytes(11_500, 256),
            model_bytes: Some(40_000_000),
            rate: Ok(2.0),
        };
        let text = format_info("slide.svs", &info, &reader_name(&info, Some("4.0.1")), &estimate);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "slide.svs: OpenSlide 4.0.1 (aperio)");
        assert_eq!(lines[1], "microns per pixel (level 0): 0.4990 x 0.4990");
        assert!(
            lines[3].starts_with(" 0     46000x32914          1.00        tiles 240x240  aperio"),
            "{text}"
        );
        assert!(
            lines[4].starts_with("*1     11500x8228           4.00"),
            "the chosen level is marked: {text}"
        );
        assert_eq!(lines[5], "predicting level 1 (11500x8228, 94.62 megapixels):");
        // 256 rows x 11500 px x (9 + 5) bytes = 41.2 MB.
        assert_eq!(
            lines[6],
            "  memory: about 42 MB for bands of 256 rows + 40 MB for the model sessions (measured)"
        );
        assert_eq!(lines[7], "  time: about 47.3 s at 2.00 megapixels/s (measured on a 512x512 image)");
        assert!(lines.len() < 25, "one screen");
    }

    #[test]
    fn without_a_model_the_time_is_not_guessed() {
        let mut info = slide();
        info.format = FileFormat::Tiff;
        info.vendor = None;
        info.microns_per_pixel = None;
        let estimate = Estimate {
            level: 0,
            width: 46_000,
            height: 32_914,
            band_rows: 256,
            band_bytes: band_bytes(46_000, 256),
            model_bytes: None,
            rate: Err("give --model to estimate time".into()),
        };
        let text = format_info("x.tif", &info, &reader_name(&info, None), &estimate);
        assert!(text.starts_with("x.tif: native TIFF\nmicrons per pixel: not recorded\n"), "{text}");
        assert!(text.contains("+ the model sessions (give --model to measure them)"), "{text}");
        assert!(text.ends_with("  time: give --model to estimate time"), "{text}");
    }

    #[test]
    fn bands_are_a_row_of_tile_windows() {
        let rows = band_rows(Tiling::default(), 10_000, 100_000, 256);
        assert!((200..=256).contains(&rows), "{rows}");
        assert_eq!(band_rows(Tiling::default(), 100, 10, 256), 10, "no taller than the image");
    }
}
