//! `trainer`: see [`trainer::cli`] (the arguments and what each command prints) and `trainer --help`.

fn main() -> std::process::ExitCode {
    trainer::cli::main()
}
