//! The graph a model must be: one float32 (N,3,H,W) input and (N,C,H,W) logits and/or probabilities for C
//! classes (2 to [`MAX_CLASSES`]), with dynamic height and width, and the tiling its metadata declares.

use std::path::Path;

use imaging::tiles::Tiling;
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::error::SessionError;

/// Names the exported graph uses (see the trainer's export).
pub const INPUT_NAME: &str = "image";
pub const LOGITS_NAME: &str = "logits";
pub const PROBABILITIES_NAME: &str = "probabilities";

/// The most classes (output channels) a model may have: the mask holds class indices in one byte, and
/// the trainer makes at most this many.
pub const MAX_CLASSES: usize = 16;

/// The graph's input and output names, and its class count.
#[derive(Debug)]
pub struct Names {
    pub input: String,
    pub logits: Option<String>,
    pub probabilities: Option<String>,
    /// Output channels: one per class.
    pub classes: usize,
}

/// A readable description of a tensor type, for error messages.
fn describe(ty: &ValueType) -> String {
    match (ty.tensor_type(), ty.tensor_shape()) {
        (Some(t), Some(s)) => format!("{t:?} {:?}", &**s),
        _ => "not a tensor".to_string(),
    }
}

/// Checks a (N, channels, H, W) float tensor type with dynamic H and W, `channels` one of `allowed`
/// (a dynamic channel count is taken as the first); `Ok` holds the channels, `Err` why not.
fn check_nchw(ty: &ValueType, allowed: std::ops::RangeInclusive<i64>) -> Result<usize, String> {
    let ok_type = ty.tensor_type() == Some(TensorElementType::Float32);
    let dims: Vec<i64> = ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let ok_shape = dims.len() == 4 && (allowed.contains(&dims[1]) || dims[1] < 0);
    if !ok_type || !ok_shape {
        let channels = if allowed.start() == allowed.end() {
            allowed.start().to_string()
        } else {
            format!("C with C from {} to {}", allowed.start(), allowed.end())
        };
        return Err(format!("expected float32 (N,{channels},H,W), found {}", describe(ty)));
    }
    if dims[2] > 0 || dims[3] > 0 {
        return Err(format!("height and width must be dynamic for tiling, found {}", describe(ty)));
    }
    Ok(if dims[1] < 0 { *allowed.start() } else { dims[1] } as usize)
}

/// Checks the session's input and outputs and returns their names.
pub fn validate(session: &Session, path: &Path) -> Result<Names, SessionError> {
    let incompatible = |reason: String| SessionError::Incompatible { path: path.to_path_buf(), reason };
    let [input] = session.inputs() else {
        return Err(incompatible(format!("it has {} inputs, expected one image", session.inputs().len())));
    };
    check_nchw(input.dtype(), 3..=3).map_err(|r| incompatible(format!("input `{}`: {r}", input.name())))?;
    let input = input.name().to_string();

    let find = |name: &str| session.outputs().iter().find(|o| o.name() == name);
    let (mut logits, probabilities) = (find(LOGITS_NAME), find(PROBABILITIES_NAME));
    if logits.is_none() && probabilities.is_none() {
        // A model with other output names: its only output is taken as the logits.
        match session.outputs() {
            [only] => logits = Some(only),
            outs => {
                return Err(incompatible(format!(
                    "it has no `{LOGITS_NAME}` or `{PROBABILITIES_NAME}` output among {} outputs",
                    outs.len()
                )))
            }
        }
    }
    let mut classes = None;
    for out in logits.iter().chain(probabilities.iter()) {
        let channels = check_nchw(out.dtype(), 2..=MAX_CLASSES as i64)
            .map_err(|r| incompatible(format!("output `{}`: {r}", out.name())))?;
        if classes.is_some_and(|c| c != channels) {
            return Err(incompatible(format!(
                "its outputs disagree on the class count ({} and {channels} channels)",
                classes.unwrap_or_default()
            )));
        }
        classes = Some(channels);
    }
    Ok(Names {
        input,
        logits: logits.map(|o| o.name().to_string()),
        probabilities: probabilities.map(|o| o.name().to_string()),
        classes: classes.unwrap_or(2),
    })
}

/// The tiling the model declares in its metadata (see [`Tiling::from_metadata`]).
pub fn tiling(session: &Session, path: &Path) -> Result<Tiling, SessionError> {
    let incompatible = |reason: String| SessionError::Incompatible { path: path.to_path_buf(), reason };
    let metadata =
        session.metadata().map_err(|e| incompatible(format!("its metadata cannot be read ({e})")))?;
    Tiling::from_metadata(|key| metadata.custom(key)).map_err(|e| incompatible(e.to_string()))
}

/// The name of the foreground class (class 1) from the model's `classes` metadata
/// ("background,foreground" as `trainer export` writes it); "foreground" when the model has none.
pub fn foreground_class(session: &Session) -> String {
    let classes = session.metadata().ok().and_then(|m| m.custom("classes"));
    foreground_class_of(classes.as_deref())
}

/// The class names of the model's `classes` metadata, `classes` of them: the metadata's when it names that
/// many, else `class 0`, `class 1`, ...
pub fn class_names(session: &Session, classes: usize) -> Vec<String> {
    let text = session.metadata().ok().and_then(|m| m.custom("classes"));
    class_names_of(text.as_deref(), classes)
}

/// The comma-separated names when there are `classes` of them, none empty; numbered ones otherwise.
pub fn class_names_of(text: Option<&str>, classes: usize) -> Vec<String> {
    let names: Vec<String> =
        text.map(|t| t.split(',').map(|n| n.trim().to_owned()).collect()).unwrap_or_default();
    if names.len() == classes && names.iter().all(|n| !n.is_empty()) {
        names
    } else {
        (0..classes).map(|i| format!("class {i}")).collect()
    }
}

/// The second of the comma-separated class names, if any and not empty.
pub fn foreground_class_of(classes: Option<&str>) -> String {
    classes
        .and_then(|c| c.split(',').nth(1))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("foreground")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::{class_names_of, foreground_class_of};

    #[test]
    fn class_names_are_the_metadata_s_when_they_count_right() {
        assert_eq!(class_names_of(Some("background, nuclei,dab"), 3), ["background", "nuclei", "dab"]);
        assert_eq!(class_names_of(Some("background,nuclei"), 3), ["class 0", "class 1", "class 2"]);
        assert_eq!(class_names_of(None, 2), ["class 0", "class 1"]);
    }

    #[test]
    fn the_foreground_class_is_the_second_name() {
        assert_eq!(foreground_class_of(Some("background,foreground")), "foreground");
        assert_eq!(foreground_class_of(Some("other, Lumen ")), "Lumen");
        assert_eq!(foreground_class_of(Some("background")), "foreground");
        assert_eq!(foreground_class_of(Some("background,")), "foreground");
        assert_eq!(foreground_class_of(None), "foreground");
    }
}
