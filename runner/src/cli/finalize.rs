//! `runner finalize`: its flags (their doc comments are the `--help`) and the lines it prints.

use std::path::PathBuf;
use std::process::ExitCode;

use imaging::report::Stdout;
use imaging::sink::ome_zarr_shards::Finalized;

#[derive(clap::Args)]
pub(super) struct FinalizeArgs {
    /// The stores: the --output, --probabilities and --overlay of the shares.
    #[arg(required = true)]
    stores: Vec<PathBuf>,
}

pub(super) fn run_finalize(args: FinalizeArgs, out: &mut Stdout) -> anyhow::Result<ExitCode> {
    let done = crate::slide_shard::finalize(&args.stores)?;
    for (store, finalized) in args.stores.iter().zip(done) {
        match finalized {
            Finalized::Levels(levels) => {
                out.line(format_args!("finalized {}: {levels} levels", store.display()))?
            }
            Finalized::AlreadyFinal => {
                out.line(format_args!("{} is already final; nothing to do", store.display()))?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
