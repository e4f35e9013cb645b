//! `--tissue auto|FILE`, `--roi`: the scope of one image's prediction, built from the files before any
//! window is predicted (the rules are in `imaging::tissue`).
//!
//! `auto` reads one low-resolution level whole: `--tissue-level`, or the coarsest level at most 32 times
//! coarser than the level predicted. An image without such a level (a single-level file) is reduced while
//! streamed, by blocks of 32 x 32 pixels, which reads it once more. A user's mask is read whole at its own
//! size (any size: stretched over the image), > 127 inside. `--roi` polygons (level-0 coordinates, QuPath's
//! export) bound it too, only those of `--roi-class` when given. All three intersect.

use std::path::{Path, PathBuf};

use imaging::annotations::geojson::parse;
use imaging::sink::{ImageFormat, PixelKind, RowSink};
use imaging::source::{Channels, ImageSource};
use imaging::tissue::detect::{self, BoxReducer, TissueRule, TARGET_DOWNSAMPLE};
use imaging::tissue::map::{Roi, Scope};
use imaging::tissue::{Mask, TissueMap};

/// What limits a prediction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TissueRequest {
    /// `--tissue auto`.
    pub auto: bool,
    /// `--tissue FILE`.
    pub mask: Option<PathBuf>,
    /// `--tissue-threshold`: saturation (0-255) above which a pixel is tissue.
    pub threshold: Option<u8>,
    /// `--tissue-level`: the level `auto` reads.
    pub level: Option<usize>,
    /// `--tissue-output`: where the auto mask goes (the file written, the path as given).
    pub output: Option<(PathBuf, PathBuf)>,
    /// `--roi`: QuPath annotations.
    pub roi: Option<PathBuf>,
    /// `--roi-class`: only the annotations of this class.
    pub roi_class: Option<String>,
}

impl TissueRequest {
    /// Whether anything limits the prediction.
    pub fn limits(&self) -> bool {
        self.auto || self.mask.is_some() || self.roi.is_some()
    }
}

/// The auto mask and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoTissue {
    /// The level read (`None`: a streamed reduction of the level predicted).
    pub level: Option<usize>,
    /// Pixels of the level predicted per mask pixel.
    pub downsample: (f64, f64),
    pub threshold: u8,
    /// The share of the image inside the mask (grown by the halo).
    pub fraction: f64,
}

/// The scope and what `auto` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub scope: Scope,
    pub auto: Option<AutoTissue>,
}

/// Why a scope cannot be built: one line naming the flag and the path.
#[derive(Debug, thiserror::Error)]
pub enum TissueError {
    #[error("{flag} {path}: {reason}")]
    File { flag: &'static str, path: PathBuf, reason: String },
    #[error("--tissue-level {level}: the image has {levels} level(s) (0 to {}); pick one of them", levels - 1)]
    Level { level: usize, levels: usize },
    #[error("--roi {path}: no annotation of class \"{class}\"; the file's classes are {found}; pass --roi-class with one of them")]
    RoiClass { path: PathBuf, class: String, found: String },
}

/// The scope of predicting level `predicted` (`width` x `height`) of `image` with windows of halo `halo`.
pub fn limit(
    image: &Path,
    predicted: usize,
    width: usize,
    height: usize,
    halo: usize,
    request: &TissueRequest,
) -> Result<Limited, TissueError> {
    let mut scope = Scope::default();
    let mut auto = None;
    let file_error =
        |flag, path: &Path, reason: String| TissueError::File { flag, path: path.to_path_buf(), reason };
    let levels = ImageSource::levels(image).map_err(|e| file_error("--image", image, e.to_string()))?;
    let level_scale = levels.get(predicted).map_or((1.0, 1.0), |l| l.downsample);
    if request.auto {
        let (map, found) = auto_map(image, &levels, predicted, width, height, halo, request)?;
        if let Some((file, path)) = &request.output {
            let format = ImageFormat::from_path(path)
                .map_err(|e| file_error("--tissue-output", path, e.to_string()))?;
            let mut sink =
                RowSink::image(file, format, PixelKind::Gray8, map.mask.width, map.mask.height, false)
                    .map_err(|e| file_error("--tissue-output", path, e.to_string()))?;
            sink.write_pixels(&map.mask.to_gray())
                .map_err(|e| file_error("--tissue-output", path, e.to_string()))?;
            sink.finish().map_err(|e| file_error("--tissue-output", path, e.to_string()))?;
        }
        auto = Some(AutoTissue { fraction: map.fraction(), ..found });
        scope.maps.push(map);
    }
    if let Some(path) = &request.mask {
        let mut source = ImageSource::open(path, Channels::Gray)
            .map_err(|e| file_error("--tissue", path, e.to_string()))?;
        let (w, h) = (source.width(), source.height());
        let gray = source.read_all().map_err(|e| file_error("--tissue", path, e.to_string()))?;
        scope.maps.push(TissueMap::stretched(Mask::from_gray(w, h, &gray), width, height));
    }
    if let Some(path) = &request.roi {
        let text = std::fs::read_to_string(path).map_err(|e| file_error("--roi", path, e.to_string()))?;
        let annotations = parse(&text).map_err(|e| file_error("--roi", path, e.to_string()))?;
        let polygons: Vec<_> = annotations
            .items
            .iter()
            .filter(|a| request.roi_class.is_none() || a.class == request.roi_class)
            .flat_map(|a| a.polygons.iter().cloned())
            .collect();
        if let (Some(class), true) = (&request.roi_class, polygons.is_empty()) {
            let found: Vec<String> = annotations
                .class_names()
                .into_iter()
                .map(|c| c.map_or("(unclassified)".into(), |c| format!("\"{c}\"")))
                .collect();
            return Err(TissueError::RoiClass {
                path: path.clone(),
                class: class.clone(),
                found: found.join(", "),
            });
        }
        scope.roi = Some(Roi::new(polygons, level_scale, width, height));
    }
    Ok(Limited { scope, auto })
}

/// `--tissue auto`: the mask of the chosen level, or of a streamed reduction.
fn auto_map(
    image: &Path,
    levels: &[imaging::source::LevelInfo],
    predicted: usize,
    width: usize,
    height: usize,
    halo: usize,
    request: &TissueRequest,
) -> Result<(TissueMap, AutoTissue), TissueError> {
    let rule = TissueRule { threshold: request.threshold };
    let read_error = |e: imaging::source::SourceError| TissueError::File {
        flag: "--tissue",
        path: image.to_path_buf(),
        reason: format!("reading the low-resolution view: {e}"),
    };
    let downsamples: Vec<f64> = levels.iter().map(|l| l.downsample.0).collect();
    let level = match request.level {
        Some(l) if l >= levels.len() => return Err(TissueError::Level { level: l, levels: levels.len() }),
        Some(l) => l,
        None => detect::choose_level(&downsamples, predicted),
    };
    if level != predicted || request.level.is_some() {
        let mut source = ImageSource::open_level(image, level, Channels::Rgb).map_err(read_error)?;
        let (w, h) = (source.width(), source.height());
        let rgb = source.read_all().map_err(read_error)?;
        let scale = (width as f64 / w as f64, height as f64 / h as f64);
        let found = detect::detect(&rgb, w, h, scale, halo, rule);
        let map = TissueMap::stretched(found.mask, width, height);
        return Ok((
            map,
            AutoTissue { level: Some(level), downsample: scale, threshold: found.threshold, fraction: 0.0 },
        ));
    }
    let factor = TARGET_DOWNSAMPLE as usize;
    let mut source = ImageSource::open_level(image, predicted, Channels::Rgb).map_err(read_error)?;
    let mut reducer = BoxReducer::new(width, factor);
    let mut rows = Vec::new();
    let mut left = height;
    while left > 0 {
        rows.clear();
        let n = source.read_rows(left.min(factor * 4), &mut rows).map_err(read_error)?;
        if n == 0 {
            break;
        }
        reducer.push(&rows);
        left -= n;
    }
    let (w, h) = (reducer.view_width(), height.div_ceil(factor));
    let rgb = reducer.finish();
    let scale = (factor as f64, factor as f64);
    let found = detect::detect(&rgb, w, h, scale, halo, rule);
    let map = TissueMap::scaled(found.mask, scale, width, height);
    Ok((map, AutoTissue { level: None, downsample: scale, threshold: found.threshold, fraction: 0.0 }))
}
