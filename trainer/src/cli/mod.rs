//! The `trainer` command line: the arguments (their doc comments are the `--help`: `train`, `export`),
//! one step that resolves them into a request (`resolve`, every rule about which flags go together), the
//! progress bar and the closing line; training and export are library calls ([`crate::train::train`],
//! [`crate::export::run`]) that the tests make directly.

mod export;
mod progress;
mod resolve;
mod train;

use std::process::ExitCode;

use crate::data::annotated;
use crate::data::load::{self, MaskReading, PairSource};
use crate::data::TrainingImage;
use anyhow::Context;
use clap::{Parser, Subcommand};

use imaging::report::{self, Stdout};

use self::resolve::{TrainData, TrainRequest};

use self::export::ExportArgs;
use self::progress::Bar;
use self::train::TrainArgs;

/// Train the two-class segmentation network on RGB images and their binary masks (candle), and export it as
/// a self-contained ONNX file for the runner.
#[derive(Parser)]
#[command(name = "trainer", version = crate::VERSION, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit the network on random crops of the images and masks, validating on held-out data; writes
    /// checkpoint.safetensors, loss.csv and loss.png (with validation also val.csv and best.safetensors) into
    /// --out.
    Train(Box<TrainArgs>),
    /// Write a checkpoint as a self-describing ONNX file (opset 17): input `image` float32 (N,3,H,W) RGB in
    /// [0,1], outputs `logits` and `probabilities` (N,C,H,W) for C classes; the input normalisation is inside
    /// the graph.
    /// Also as a bioimage.io package (--bioimageio) and a Triton model repository entry (--triton).
    Export(Box<ExportArgs>),
}

/// Loads every pair, naming the flag and file of the first bad one.
fn load_pairs(sources: &[PairSource], reading: &MaskReading) -> Result<Vec<TrainingImage>, load::DataError> {
    sources.iter().map(|s| load::load_pair_reading(s, reading)).collect()
}

fn run_train(args: TrainArgs) -> anyhow::Result<String> {
    // Flags first, then the device, then the files, so a typo fails before any work.
    let TrainRequest { mut config, data, val, mask_reading, classes, annotation_rule, device, quiet } =
        resolve::train(&args)?;
    let device = crate::train::select_device(device)?;
    let (train_sources, annotated_sources) = match data {
        TrainData::Folder(dir) => (PairSource::from_folder(&dir)?, Vec::new()),
        TrainData::Pairs(pairs) => (pairs, Vec::new()),
        TrainData::Annotated(sources) => (Vec::new(), sources),
    };
    config.inputs = train_sources
        .iter()
        .chain(&val)
        .flat_map(|p| [(p.image_flag.clone(), p.image.clone()), (p.mask_flag.clone(), p.mask.clone())])
        .chain(annotated_sources.iter().flat_map(|a| {
            [(a.image_flag.clone(), a.image.clone()), (a.annotations_flag.clone(), a.annotations.clone())]
        }))
        .collect();
    // Output paths are checked before any image is decoded.
    crate::outputs::check_outputs_are_not_inputs(
        &crate::outputs::OutputPaths::new(&config.out_dir),
        &config.inputs,
    )?;
    let mut images = load_pairs(&train_sources, &mask_reading)?;
    for source in &annotated_sources {
        images.extend(annotated::load_annotated(source, &annotation_rule, config.crop)?);
    }
    let val_images = load_pairs(&val, &mask_reading)?;
    config.classes = classes.resolve(images.iter().chain(&val_images).map(|i| i.labels.as_slice()))?;
    let mut bar = Bar::new(config.iterations, quiet);
    let report = crate::train::train(&config, &images, &val_images, &device, &mut bar)?;
    let s = &report.summary;
    let mut files = vec!["checkpoint.safetensors", "loss.csv", "loss.png"];
    let validation = match report.best {
        Some(best) => {
            files.extend(["val.csv", "best.safetensors"]);
            format!(
                "; best validation {} at iteration {} (best.safetensors), validating every {} iterations took \
                 {:.1}% of the time",
                best.score_text(),
                best.iteration,
                report.val_every.unwrap_or(0),
                100.0 * report.validation_seconds / report.seconds.max(1e-9)
            )
        }
        None => String::new(),
    };
    Ok(format!(
        "trained {} iterations of {} x {}^2 crops on {} image(s) in {:.1} s ({:.3} s/it); final loss {:.4}{validation}; \
         wrote {}",
        s.iterations,
        s.batch,
        s.crop,
        images.len(),
        report.seconds,
        report.seconds / report.iterations_run.max(1) as f64,
        s.final_loss,
        files.iter().map(|f| config.out_dir.join(f).display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Parses the arguments and runs; every error is one line on standard error, a closed standard output is a
/// quiet end.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them (into a closed pipe too); a usage error is one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", report::usage_line(&e.render().to_string(), &report::invoked_command("trainer")));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(args) => run_train(*args).context("training failed"),
        Command::Export(args) => {
            crate::export::run(&resolve::export(*args)).map(|r| r.to_string()).context("export failed")
        }
    };
    match result.and_then(|line| Ok(Stdout::new().line(line)?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if report::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
