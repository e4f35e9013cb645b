//! `runner`: see [`runner::cli`] (the arguments and what each mode prints) and `runner predict --help`.

fn main() -> std::process::ExitCode {
    runner::cli::main()
}
