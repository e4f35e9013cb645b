//! The `runner` command line: the flags of each command (`predict`, `info`, `finalize`; their doc
//! comments are the `--help`), one step that resolves `predict`'s flags into a request (`resolve`, every
//! rule about which flags go together; `request`, what it makes), the runs of its three modes and the
//! lines they print (`modes`), the progress bars (`progress`) and `--openslide-lib` (`openslide_lib`).
//! Everything else is library code the tests call.

mod finalize;
mod flag_error;
mod info;
mod modes;
mod openslide_lib;
mod predict;
mod progress;
mod request;
mod resolve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imaging::report::{self, Stdout};

use self::finalize::FinalizeArgs;
use self::info::InfoArgs;
use self::openslide_lib::use_openslide_lib;
use self::predict::PredictArgs;
use self::request::Mode;

/// Predicts segmentation masks of whole images with an exported model.onnx, by exact overlapping tiles.
/// Images of any size are streamed band by band, so memory depends on the image width, not its height.
#[derive(Parser)]
#[command(name = "runner", version = crate::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predicts the foreground mask of one image (--image, --output) or of many (--input-dir or several
    /// --image, with --output-dir). PNG, JPEG, TIFF/BigTIFF or OME-Zarr, recognised by content, and the vendors'
    /// slide formats through OpenSlide (SVS, NDPI, MIRAX, DICOM, ...); any size.
    Predict(Box<PredictArgs>),
    /// Says what an image is (reader, levels, tiles, compression, colour, microns per pixel) and what
    /// predicting a level would take here (memory; time, measured with --model).
    Info(InfoArgs),
    /// Finishes OME-Zarr stores predicted in shares (`predict --image SLIDE --output OUT.ome.zarr --shard
    /// K/N`, one process per share): once every share is done, writes the lower levels and the metadata, so
    /// that each store is the one a single run writes. While a share is missing it names it and changes
    /// nothing; a store already finished is left as it is.
    Finalize(FinalizeArgs),
}

/// Parses the arguments and runs; every error is one line on standard error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them; a usage error is one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", report::usage_line(&e.render().to_string(), &report::invoked_command("runner")));
            return ExitCode::from(2);
        }
    };
    let mut out = Stdout::new();
    let result = match cli.command {
        Command::Predict(args) => run_predict(*args, &mut out),
        Command::Info(args) => info::run_info(args, &mut out),
        Command::Finalize(args) => finalize::run_finalize(args, &mut out),
    };
    match result {
        Ok(code) => code,
        Err(e) if report::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run_predict(args: PredictArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    // Every flag first, so a typo fails before any work.
    let request = resolve::predict(&args)?;
    use_openslide_lib(&request.openslide_lib)?;
    let (options, quiet) = (&request.model_options, request.quiet);
    match &request.mode {
        Mode::Single(single) => modes::run_single(single, options, quiet, out),
        Mode::Share(single, shard) => modes::run_share(single, *shard, options, quiet, out),
        Mode::Folder(folder) => modes::run_folder(folder, options, quiet, out),
    }
}
