//! One session ready to run forward passes on one thread, computing only the outputs wanted, and what a
//! pass returns.

use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynValue, TensorRef};

use super::error::{flat, SessionError};
use super::graph::Names;

/// The outputs of one forward pass, each (batch, C, height, width) row-major.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    pub logits: Option<Vec<f32>>,
    pub probabilities: Option<Vec<f32>>,
}

/// Which outputs a forward pass computes (ONNX Runtime skips the nodes only the others need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub logits: bool,
    pub probabilities: bool,
}

/// The outputs of one forward pass as ONNX Runtime returned them, shapes checked, read in place.
#[derive(Debug)]
pub struct PassOutput {
    logits: Option<DynValue>,
    probabilities: Option<DynValue>,
    batch: usize,
    height: usize,
    width: usize,
}

impl PassOutput {
    /// The logits, (batch, C, height, width) row-major, if they were computed.
    pub fn logits(&self) -> Result<Option<&[f32]>, SessionError> {
        self.read(&self.logits)
    }

    /// The probabilities, (batch, C, height, width) row-major, if they were computed.
    pub fn probabilities(&self) -> Result<Option<&[f32]>, SessionError> {
        self.read(&self.probabilities)
    }

    fn read<'a>(&self, value: &'a Option<DynValue>) -> Result<Option<&'a [f32]>, SessionError> {
        let Some(value) = value else { return Ok(None) };
        let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| SessionError::Run {
            batch: self.batch,
            height: self.height,
            width: self.width,
            reason: flat(&e),
        })?;
        Ok(Some(data))
    }
}

/// One session ready to run forward passes that compute only the wanted outputs; used by one thread.
pub struct Worker<'m> {
    session: &'m mut Session,
    names: &'m Names,
    run_options: RunOptions<HasSelectedOutputs>,
    wanted: Wanted,
}

impl<'m> Worker<'m> {
    /// A worker on `session` computing the wanted outputs that the model has.
    pub fn new(
        session: &'m mut Session,
        names: &'m Names,
        wanted: Wanted,
    ) -> Result<Worker<'m>, SessionError> {
        let wanted = Wanted {
            logits: wanted.logits && names.logits.is_some(),
            probabilities: wanted.probabilities && names.probabilities.is_some(),
        };
        let mut selector = OutputSelector::no_default();
        for (name, want) in [(&names.logits, wanted.logits), (&names.probabilities, wanted.probabilities)] {
            if let (Some(name), true) = (name, want) {
                selector = selector.with(name.as_str());
            }
        }
        let run_options =
            RunOptions::new().map_err(|e| SessionError::Configure(flat(&e)))?.with_outputs(selector);
        Ok(Worker { session, names, run_options, wanted })
    }

    /// One forward pass over `input`, (batch, 3, height, width) row-major RGB in [0, 1].
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<PassOutput, SessionError> {
        let run_error = |reason: String| SessionError::Run { batch, height, width, reason };
        let tensor = TensorRef::from_array_view(([batch, 3, height, width], input))
            .map_err(|e| run_error(flat(&e)))?;
        let mut outputs = self
            .session
            .run_with_options(ort::inputs![self.names.input.as_str() => tensor], &self.run_options)
            .map_err(|e| run_error(flat(&e)))?;
        let expected = [batch as i64, self.names.classes as i64, height as i64, width as i64];
        let mut take = |name: &Option<String>, wanted: bool| -> Result<Option<DynValue>, SessionError> {
            let Some(name) = name.as_ref().filter(|_| wanted) else { return Ok(None) };
            let value =
                outputs.remove(name).ok_or_else(|| run_error(format!("output `{name}` is missing")))?;
            let (shape, _) = value.try_extract_tensor::<f32>().map_err(|e| run_error(flat(&e)))?;
            if **shape != expected {
                return Err(run_error(format!(
                    "output `{name}` has shape {:?}, expected {expected:?}",
                    &**shape
                )));
            }
            Ok(Some(value))
        };
        Ok(PassOutput {
            logits: take(&self.names.logits, self.wanted.logits)?,
            probabilities: take(&self.names.probabilities, self.wanted.probabilities)?,
            batch,
            height,
            width,
        })
    }
}
