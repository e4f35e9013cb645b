//! The run folder stays self-consistent whatever the point at which a save is interrupted: a kill is
//! simulated after every step (every rename or removal) of the saves of a new run over an earlier one.

use std::path::Path;

use candle_core::Device;
use trainer::checkpoint::{Checkpoint, History, PerClass, TrainingSummary, ValRecord};
use trainer::model::{Normalization, SegNet};
use trainer::outputs::{read_loss_csv, read_val_csv, save_steps, OutputPaths, SaveContent, Step};

/// A checkpoint of `run` (which sets the weights and the loss values) after `iterations`, validated every 2.
fn checkpoint(run: u64, iterations: usize) -> Checkpoint {
    let net = SegNet::random(run, Normalization::IDENTITY, &Device::Cpu).unwrap();
    let losses: Vec<f32> = (1..=iterations).map(|i| run as f32 + 1.0 / i as f32).collect();
    let validation = (2..=iterations)
        .step_by(2)
        .map(|i| ValRecord {
            iteration: i,
            loss: 0.1,
            iou: 0.5 + run as f64 * 0.01 + i as f64 * 1e-3,
            dice: 0.6,
            accuracy: 0.7,
            false_positive_rate: 0.02,
            labelled: Some(100),
            per_class: PerClass::NONE,
        })
        .collect();
    let summary = TrainingSummary { iterations, final_loss: losses[iterations - 1], ..Default::default() };
    Checkpoint { net, summary, adam: None, history: History { losses, validation } }
}

/// The steps of saving `ck` (its last validation is the best so far).
fn steps(paths: &OutputPaths, ck: &Checkpoint, first_of_new_run: bool) -> Vec<Step> {
    let bytes = ck.to_bytes().unwrap();
    let content = SaveContent {
        history: &ck.history,
        loss_png: vec![0; 8],
        best: Some(bytes.clone()),
        checkpoint: bytes,
        first_of_new_run,
    };
    save_steps(paths, content)
}

/// Every loss.csv and val.csv row the checkpoint holds is there, from the checkpoint's run; a best model is
/// from the same run and no later than the checkpoint, and never without it.
fn assert_consistent(paths: &OutputPaths, when: &str) {
    let load = |p: &Path| p.exists().then(|| Checkpoint::load(p, &Device::Cpu).unwrap());
    let (ck, best) = (load(&paths.checkpoint), load(&paths.best));
    let Some(ck) = ck else {
        assert!(best.is_none(), "{when}: best.safetensors without its checkpoint");
        return;
    };
    let rows = read_loss_csv(&paths.loss_csv);
    assert!(rows.len() >= ck.summary.iterations, "{when}: loss.csv behind the checkpoint");
    assert_eq!(rows[..ck.summary.iterations], ck.history.loss_rows()[..], "{when}: loss.csv of another run");
    let val = read_val_csv(&paths.val_csv);
    assert!(val.len() >= ck.history.validation.len(), "{when}: val.csv behind the checkpoint");
    assert_eq!(
        val[..ck.history.validation.len()],
        ck.history.validation[..],
        "{when}: val.csv of another run"
    );
    if let Some(best) = best {
        let n = best.summary.iterations;
        assert!(n <= ck.summary.iterations, "{when}: best model later than the checkpoint");
        assert_eq!(best.history.losses[..], ck.history.losses[..n], "{when}: best model of another run");
    }
}

#[test]
fn a_kill_between_any_two_renames_leaves_a_consistent_folder() {
    let dir = tempfile::tempdir().unwrap();
    let paths = OutputPaths::new(dir.path());
    // An earlier run of 8 iterations in the folder.
    for s in steps(&paths, &checkpoint(7, 8), true) {
        s.apply().unwrap();
    }
    assert_consistent(&paths, "earlier run");
    // A new run saves at 2, 4 and 6; a kill may come after any step of any save.
    let saves = [(checkpoint(3, 2), true), (checkpoint(3, 4), false), (checkpoint(3, 6), false)];
    let all: Vec<Step> = saves.iter().flat_map(|(ck, first)| steps(&paths, ck, *first)).collect();
    for kill_after in 0..=all.len() {
        let scratch = tempfile::tempdir().unwrap();
        let scratch_paths = OutputPaths::new(scratch.path());
        for p in paths.all() {
            if p.exists() {
                std::fs::copy(p, scratch.path().join(p.file_name().unwrap())).unwrap();
            }
        }
        for step in &all[..kill_after] {
            let moved = match step {
                Step::Remove(p) => Step::Remove(scratch.path().join(p.file_name().unwrap())),
                Step::Write(p, b) => Step::Write(scratch.path().join(p.file_name().unwrap()), b.clone()),
            };
            moved.apply().unwrap();
        }
        assert_consistent(&scratch_paths, &format!("killed after step {kill_after} of {}", all.len()));
    }
}
