//! `segmenter-trainer`: the trainer under the name the `segmenter-trainer` wheel installs
//! (trainer/pyproject.toml); built only with the `wheel` feature, so that the source build makes one trainer
//! binary.

fn main() -> std::process::ExitCode {
    trainer::cli::main()
}
