//! `runner info`: its flags (their doc comments are the `--help`) and the description it prints.

use std::path::PathBuf;
use std::process::ExitCode;

use imaging::report::Stdout;
use imaging::tiles;

use super::openslide_lib::use_openslide_lib;
use super::resolve::check_tile;
use crate::session::library::ExecutionDevice;
use crate::session::ModelOptions;

#[derive(clap::Args)]
pub(super) struct InfoArgs {
    /// The image or slide to describe.
    image: PathBuf,
    /// The level whose prediction is estimated (0 is full resolution).
    #[arg(long, default_value_t = 0)]
    level: usize,
    /// A model to measure the time and memory of a prediction with (on a synthetic 512x512 image).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Largest square tile side in pixels, halo included, as for `runner predict`.
    #[arg(long, default_value_t = tiles::DEFAULT_TILE)]
    tile: usize,
    /// Threads, as for `runner predict` [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// The ONNX Runtime library (with --model), as for `runner predict`.
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// The OpenSlide library, as for `runner predict`.
    #[arg(long)]
    openslide_lib: Option<PathBuf>,
}

pub(super) fn run_info(args: InfoArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    check_tile(args.tile)?;
    use_openslide_lib(&args.openslide_lib)?;
    let options =
        ModelOptions { device: ExecutionDevice::Cpu, threads: args.threads, ort_lib: args.ort_lib.clone() };
    let model = args.model.as_deref().map(|m| (m, &options));
    out.line(crate::info::describe(&args.image, args.level, args.tile, model)?)?;
    Ok(ExitCode::SUCCESS)
}
