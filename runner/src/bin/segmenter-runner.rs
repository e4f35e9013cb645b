//! `segmenter-runner`: the runner under the name the `segmenter-runner` wheel installs (runner/pyproject.toml);
//! built only with the `wheel` feature, so that the source build makes one runner binary.

fn main() -> std::process::ExitCode {
    runner::cli::main()
}
