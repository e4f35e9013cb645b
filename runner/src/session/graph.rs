//! The graph a model must be: one float32 (N,3,H,W) input and (N,2,H,W) logits and/or probabilities, with
//! dynamic height and width, and the tiling its metadata declares.

use std::path::Path;

use imaging::tiles::Tiling;
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::error::SessionError;

/// Names the exported graph uses (see the trainer's export).
pub const INPUT_NAME: &str = "image";
pub const LOGITS_NAME: &str = "logits";
pub const PROBABILITIES_NAME: &str = "probabilities";

/// The graph's input and output names.
#[derive(Debug)]
pub struct Names {
    pub input: String,
    pub logits: Option<String>,
    pub probabilities: Option<String>,
}

/// A readable description of a tensor type, for error messages.
fn describe(ty: &ValueType) -> String {
    match (ty.tensor_type(), ty.tensor_shape()) {
        (Some(t), Some(s)) => format!("{t:?} {:?}", &**s),
        _ => "not a tensor".to_string(),
    }
}

/// Checks a (N, channels, H, W) float tensor type with dynamic H and W; `Err` holds why not.
fn check_nchw(ty: &ValueType, channels: i64) -> Result<(), String> {
    let ok_type = ty.tensor_type() == Some(TensorElementType::Float32);
    let dims: Vec<i64> = ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let ok_shape = dims.len() == 4 && (dims[1] == channels || dims[1] < 0);
    if !ok_type || !ok_shape {
        return Err(format!("expected float32 (N,{channels},H,W), found {}", describe(ty)));
    }
    if dims[2] > 0 || dims[3] > 0 {
        return Err(format!("height and width must be dynamic for tiling, found {}", describe(ty)));
    }
    Ok(())
}

/// Checks the session's input and outputs and returns their names.
pub fn validate(session: &Session, path: &Path) -> Result<Names, SessionError> {
    let incompatible = |reason: String| SessionError::Incompatible { path: path.to_path_buf(), reason };
    let [input] = session.inputs() else {
        return Err(incompatible(format!("it has {} inputs, expected one image", session.inputs().len())));
    };
    check_nchw(input.dtype(), 3).map_err(|r| incompatible(format!("input `{}`: {r}", input.name())))?;
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
    for out in logits.iter().chain(probabilities.iter()) {
        check_nchw(out.dtype(), 2).map_err(|r| incompatible(format!("output `{}`: {r}", out.name())))?;
    }
    Ok(Names {
        input,
        logits: logits.map(|o| o.name().to_string()),
        probabilities: probabilities.map(|o| o.name().to_string()),
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

/// The second of the comma-separated class names, if any and not empty.
pub fn foreground_class_of(classes: Option<&str>) -> String {
    classes
        .and_then(|c| c.split(',').nth(1))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("foreground")
        .to_owned()
}
