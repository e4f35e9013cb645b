//! The run folder (`--out`): which files a run writes, in which order, and the guard that none of them is an
//! input.
//!
//! Why the folder is always self-consistent: the checkpoint is the record of a run. Each save writes the
//! logs first (loss.csv, val.csv, loss.png: every row up to this iteration), then the checkpoint, then
//! best.safetensors when this iteration is the best validation so far, each file atomically. A kill between
//! two of these renames leaves logs that cover the checkpoint's iterations and a best model no later than the
//! checkpoint. Nothing is written before the first save, so a run that fails before it leaves an earlier
//! run's files as they were; the first save of a new run removes the earlier run's checkpoint, best model
//! and val.csv before writing its own logs, so files of two runs never stand side by side.

use std::path::{Path, PathBuf};

use crate::checkpoint::{History, PerClass, ValRecord};
use imaging::classes::MAX_CLASSES;
use imaging::files::{self, FileError};

/// Where training writes.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    pub dir: PathBuf,
    pub checkpoint: PathBuf,
    pub best: PathBuf,
    pub loss_csv: PathBuf,
    pub val_csv: PathBuf,
    pub loss_png: PathBuf,
}

impl OutputPaths {
    pub fn new(dir: &Path) -> OutputPaths {
        OutputPaths {
            dir: dir.to_path_buf(),
            checkpoint: dir.join("checkpoint.safetensors"),
            best: dir.join("best.safetensors"),
            loss_csv: dir.join("loss.csv"),
            val_csv: dir.join("val.csv"),
            loss_png: dir.join("loss.png"),
        }
    }

    pub fn all(&self) -> [&PathBuf; 5] {
        [&self.checkpoint, &self.best, &self.loss_csv, &self.val_csv, &self.loss_png]
    }
}

/// An output that is also an input: writing it would destroy the input.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "--out {out}: the output {output} is the same file as {flag} {input}; choose another --out so that \
     training does not overwrite its own input"
)]
pub struct OutputIsInput {
    pub out: PathBuf,
    pub output: PathBuf,
    pub flag: String,
    pub input: PathBuf,
}

/// Refuses an output folder where a file training writes is one of `inputs` (flag, path), through links too.
pub fn check_outputs_are_not_inputs(
    paths: &OutputPaths,
    inputs: &[(String, PathBuf)],
) -> Result<(), OutputIsInput> {
    for output in paths.all() {
        if let Some((flag, input)) = inputs.iter().find(|(_, input)| files::same_file(input, output)) {
            return Err(OutputIsInput {
                out: paths.dir.clone(),
                output: output.clone(),
                flag: flag.to_string(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Why the output folder cannot take a run's files, found before the first step.
#[derive(Debug, thiserror::Error)]
pub enum OutFolderError {
    #[error(transparent)]
    IsInput(#[from] OutputIsInput),
    #[error("--out {dir}: cannot create it ({reason}); choose a folder that can be created")]
    Create { dir: PathBuf, reason: String },
    #[error("--out {dir}: {reason}")]
    Output { dir: PathBuf, reason: Box<FileError> },
}

/// Makes the output folder ready before any work, the same way for a new run and a resumed one: creates it
/// (with its parents), refuses it when a file training writes is an input, and proves every output writable
/// by claiming its temporary (then releasing it), so a run that could not save its results fails now, not
/// after training. Links are followed as every write follows them. Returns the folders it created, the
/// outermost first, so that a run that then fails before saving anything can remove them.
pub fn prepare(paths: &OutputPaths, inputs: &[(String, PathBuf)]) -> Result<Vec<PathBuf>, OutFolderError> {
    check_outputs_are_not_inputs(paths, inputs)?;
    let mut created: Vec<PathBuf> = paths
        .dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    created.reverse();
    std::fs::create_dir_all(&paths.dir)
        .map_err(|e| OutFolderError::Create { dir: paths.dir.clone(), reason: files::io_reason(&e) })?;
    let mut probe = files::OutputSet::default();
    for output in paths.all() {
        probe
            .add("--out", output)
            .map_err(|reason| OutFolderError::Output { dir: paths.dir.clone(), reason: Box::new(reason) })?;
    }
    // Dropped uncommitted: the temporaries are removed and every existing file is left as it was.
    drop(probe);
    Ok(created)
}

/// One file operation of a save.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Remove a file of an earlier run if it is there.
    Remove(PathBuf),
    /// Write a file atomically.
    Write(PathBuf, Vec<u8>),
}

impl Step {
    pub fn path(&self) -> &Path {
        match self {
            Step::Remove(p) | Step::Write(p, _) => p,
        }
    }

    /// Does the step; the error is one line naming the file and what to do.
    pub fn apply(&self) -> Result<(), String> {
        match self {
            Step::Remove(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove {} ({})", p.display(), files::io_reason(&e)))
                }
                _ => Ok(()),
            },
            Step::Write(p, bytes) => files::write_atomic("--out", p, bytes).map_err(|e| e.to_string()),
        }
    }
}

/// What one save writes, already encoded.
pub struct SaveContent<'a> {
    pub history: &'a History,
    pub loss_png: Vec<u8>,
    pub checkpoint: Vec<u8>,
    /// The checkpoint bytes again when this iteration is the best validation so far.
    pub best: Option<Vec<u8>>,
    /// The first save of a run that did not resume: clear the files of an earlier run first.
    pub first_of_new_run: bool,
}

/// The steps of one save, in the order that keeps the folder self-consistent (see the module comment).
pub fn save_steps(paths: &OutputPaths, content: SaveContent) -> Vec<Step> {
    let mut steps = Vec::new();
    if content.first_of_new_run {
        // The best model first: it must never stand without the checkpoint of its run.
        steps.push(Step::Remove(paths.best.clone()));
        steps.push(Step::Remove(paths.checkpoint.clone()));
    }
    steps.push(Step::Write(paths.loss_csv.clone(), loss_csv(&content.history.loss_rows()).into_bytes()));
    if content.history.validation.is_empty() {
        steps.push(Step::Remove(paths.val_csv.clone()));
    } else {
        steps.push(Step::Write(paths.val_csv.clone(), val_csv(&content.history.validation).into_bytes()));
    }
    steps.push(Step::Write(paths.loss_png.clone(), content.loss_png));
    steps.push(Step::Write(paths.checkpoint.clone(), content.checkpoint));
    if let Some(best) = content.best {
        steps.push(Step::Write(paths.best.clone(), best));
    }
    steps
}

/// `iteration,loss` with one row per iteration.
pub fn loss_csv(losses: &[(usize, f32)]) -> String {
    let mut s = String::from("iteration,loss\n");
    for (i, l) in losses {
        s.push_str(&format!("{i},{l}\n"));
    }
    s
}

/// `iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels` with one row per validation
/// (the scores are over the labelled pixels, which `labelled_pixels` counts); an undefined value (the IoU
/// and Dice of validation masks without foreground) is an empty cell. With more than two classes `iou` and
/// `dice` are the means over the classes, and each class's IoU and then each class's Dice follow as
/// `iou_0,iou_1,...,dice_0,dice_1,...` (by class index; the names are in the checkpoint); two classes keep
/// the seed's columns, `iou` the foreground's.
pub fn val_csv(records: &[ValRecord]) -> String {
    let cell = |v: f64| if v.is_nan() { String::new() } else { v.to_string() };
    let mut s = String::from("iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels");
    let classes = records.iter().map(|r| r.per_class.len()).max().unwrap_or(0);
    for prefix in ["iou", "dice"] {
        for c in 0..classes {
            s.push_str(&format!(",{prefix}_{c}"));
        }
    }
    s.push('\n');
    for r in records {
        let per_class: String = (0..classes)
            .map(|c| r.per_class.iou().get(c))
            .chain((0..classes).map(|c| r.per_class.dice().get(c)))
            .map(|v| format!(",{}", cell(v.copied().unwrap_or(f64::NAN))))
            .collect();
        s.push_str(&format!(
            "{},{},{},{},{},{},{}{per_class}\n",
            r.iteration,
            r.loss,
            cell(r.iou),
            cell(r.dice),
            r.accuracy,
            cell(r.false_positive_rate),
            r.labelled.map_or(String::new(), |n| n.to_string())
        ));
    }
    s
}

/// The rows of an existing loss.csv; unreadable rows (or no file) give nothing.
pub fn read_loss_csv(path: &Path) -> Vec<(usize, f32)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let (i, l) = line.split_once(',')?;
            Some((i.trim().parse().ok()?, l.trim().parse().ok()?))
        })
        .collect()
}

/// The rows of an existing val.csv; unreadable rows (or no file) give nothing.
pub fn read_val_csv(path: &Path) -> Vec<ValRecord> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let value = |text: &str| if text.is_empty() { Some(f64::NAN) } else { text.parse().ok() };
            let extra = f.len().saturating_sub(7);
            let per_class = if extra > 0 {
                let v: Vec<f64> = f[7..].iter().map(|t| value(t)).collect::<Option<_>>()?;
                (extra.is_multiple_of(2) && extra / 2 <= MAX_CLASSES)
                    .then(|| PerClass::new(&v[..extra / 2], &v[extra / 2..]))?
            } else {
                PerClass::NONE
            };
            let (i, loss, iou, dice, acc, fpr, labelled) = match f[..] {
                [i, loss, iou, dice, acc, fpr, n, ..] => (i, loss, iou, dice, acc, fpr, n),
                [i, loss, iou, dice, acc, fpr] => (i, loss, iou, dice, acc, fpr, ""),
                [i, loss, iou, dice, acc] => (i, loss, iou, dice, acc, "", ""),
                _ => return None,
            };
            Some(ValRecord {
                iteration: i.parse().ok()?,
                loss: loss.parse().ok()?,
                iou: value(iou)?,
                dice: value(dice)?,
                accuracy: acc.parse().ok()?,
                false_positive_rate: value(fpr)?,
                labelled: if labelled.is_empty() { None } else { Some(labelled.parse().ok()?) },
                per_class,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.csv");
        let rows = vec![(1, 0.5f32), (2, 0.25)];
        std::fs::write(&path, loss_csv(&rows)).unwrap();
        assert!(loss_csv(&rows).starts_with("iteration,loss\n1,0.5\n"));
        assert_eq!(read_loss_csv(&path), rows);
        let records = vec![ValRecord {
            iteration: 50,
            loss: 0.3,
            iou: 0.8,
            dice: 0.9,
            accuracy: 0.95,
            false_positive_rate: 0.01,
            labelled: Some(70),
            per_class: PerClass::NONE,
        }];
        let path = dir.path().join("val.csv");
        std::fs::write(&path, val_csv(&records)).unwrap();
        assert!(val_csv(&records)
            .starts_with("iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels\n50,0.3,0.8,0.9,0.95,0.01,70\n"));
        assert_eq!(read_val_csv(&path), records);
        // Undefined IoU and Dice (no foreground to score) are empty cells, read back as NaN.
        let negative = ValRecord { iou: f64::NAN, dice: f64::NAN, ..records[0] };
        assert!(val_csv(&[negative]).ends_with("\n50,0.3,,,0.95,0.01,70\n"), "{}", val_csv(&[negative]));
        std::fs::write(&path, val_csv(&[negative])).unwrap();
        let read = read_val_csv(&path);
        assert!(read[0].iou.is_nan() && read[0].dice.is_nan() && read[0].false_positive_rate == 0.01);
        // A val.csv of the five columns before the false-positive rate still reads.
        std::fs::write(&path, "iteration,loss,iou,dice,accuracy\n50,0.3,0.8,0.9,0.95\n").unwrap();
        assert!(read_val_csv(&path)[0].false_positive_rate.is_nan());
        // More classes: the means, then each class's IoU and Dice.
        let three =
            ValRecord { per_class: PerClass::new(&[0.5, f64::NAN, 1.0], &[0.6, 0.7, 1.0]), ..records[0] };
        let text = val_csv(&[three]);
        assert!(
            text.starts_with("iteration,loss,iou,dice,accuracy,false_positive_rate,labelled_pixels,iou_0,iou_1,iou_2,dice_0,dice_1,dice_2\n50,0.3,0.8,0.9,0.95,0.01,70,0.5,,1,0.6,0.7,1\n"),
            "{text}"
        );
        std::fs::write(&path, &text).unwrap();
        let read = read_val_csv(&path);
        assert_eq!(read[0].per_class.dice(), [0.6, 0.7, 1.0]);
        assert!(read[0].per_class.iou()[1].is_nan() && read[0].per_class.iou()[2] == 1.0);
    }

    #[test]
    fn logs_come_before_the_checkpoint_and_the_best_model_after_it() {
        let paths = OutputPaths::new(Path::new("out"));
        let history = History { losses: vec![0.5; 3], validation: Vec::new() };
        let content = |first, best: Option<Vec<u8>>| SaveContent {
            history: &history,
            loss_png: vec![1],
            checkpoint: vec![2],
            best,
            first_of_new_run: first,
        };
        let order = |steps: Vec<Step>| -> Vec<String> {
            steps
                .iter()
                .map(|s| {
                    let verb = if matches!(s, Step::Remove(_)) { "rm" } else { "write" };
                    format!("{verb} {}", s.path().file_name().unwrap().to_string_lossy())
                })
                .collect()
        };
        assert_eq!(
            order(save_steps(&paths, content(true, None))),
            [
                "rm best.safetensors",
                "rm checkpoint.safetensors",
                "write loss.csv",
                "rm val.csv",
                "write loss.png",
                "write checkpoint.safetensors"
            ]
        );
        assert_eq!(
            order(save_steps(&paths, content(false, Some(vec![3])))),
            [
                "write loss.csv",
                "rm val.csv",
                "write loss.png",
                "write checkpoint.safetensors",
                "write best.safetensors"
            ]
        );
    }

    #[test]
    fn the_out_folder_is_created_and_proved_writable_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        // Nested folders are created, as for a fresh run.
        let nested = dir.path().join("a/b/run");
        let created = prepare(&OutputPaths::new(&nested), &[]).unwrap();
        assert_eq!(created, [dir.path().join("a"), dir.path().join("a/b"), nested.clone()]);
        assert!(nested.is_dir());
        assert_eq!(std::fs::read_dir(&nested).unwrap().count(), 0, "no temporary is left");
        // A file where the folder should be.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare(&OutputPaths::new(&file), &[]).unwrap_err();
        assert!(matches!(err, OutFolderError::Create { .. }), "{err}");
        // An output that is a folder.
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("loss.png")).unwrap();
        let err = prepare(&OutputPaths::new(&run), &[]).unwrap_err().to_string();
        assert!(err.contains("loss.png is a folder"), "{err}");
        // An unwritable folder (root writes anyway; then the probe succeeds).
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
            let writable = std::fs::File::create(locked.join("probe")).is_ok();
            let result = prepare(&OutputPaths::new(&locked), &[]);
            assert_eq!(result.is_ok(), writable, "{result:?}");
        }
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("photo.png");
        std::fs::write(&image, b"x").unwrap();
        let inputs = vec![("--image".to_string(), image.clone())];
        // loss.png of --out is the image itself.
        let out = dir.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::hard_link(&image, out.join("loss.png")).unwrap();
        let err = check_outputs_are_not_inputs(&OutputPaths::new(&out), &inputs).unwrap_err();
        assert!(err.to_string().contains("loss.png is the same file as --image"), "{err}");
        // An input named loss.csv in the folder itself.
        let csv = dir.path().join("loss.csv");
        std::fs::write(&csv, b"x").unwrap();
        let inputs = vec![("--mask #2".to_string(), csv)];
        let err = check_outputs_are_not_inputs(&OutputPaths::new(dir.path()), &inputs).unwrap_err();
        assert_eq!(err.flag, "--mask #2");
        assert!(check_outputs_are_not_inputs(&OutputPaths::new(&dir.path().join("new")), &inputs).is_ok());
    }
}
