//! Peak resident memory of the whole runner process predicting a large image: the runner binary is spawned
//! on a generated PNG and its maximum resident set size is read from wait4's rusage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Builds (if stale) the runner binary beside this bench's executable and returns its path.
pub fn runner_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "-q", "-p", "runner", "--bin", "runner"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .with_context(|| format!("cannot run {cargo} build"))?;
    if !status.success() {
        bail!("`cargo build --release -p runner` failed");
    }
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("bench executable has no folder")?.join("runner");
    if !path.is_file() {
        bail!("runner binary not found at {}; run `cargo build --release -p runner`", path.display());
    }
    Ok(path)
}

/// Writes a `side` x `side` PNG of `rgb` (fast compression) to `path`.
pub fn write_png(path: &Path, rgb: &[u8], side: usize) -> Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    PngEncoder::new_with_quality(file, CompressionType::Fast, FilterType::Sub).write_image(
        rgb,
        side as u32,
        side as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(())
}

/// Environment variable that turns the bench executable into the measuring parent (see [`measure_child`]).
pub const MEASURE_ENV: &str = "SEGMENTER_BENCH_MEASURE_RSS";

/// One measured run of `runner predict`.
#[derive(Debug, Clone, Copy)]
pub struct RunMeasure {
    /// Peak resident bytes of the runner process.
    pub rss: f64,
    /// Wall seconds, start to exit.
    pub wall: f64,
    /// CPU seconds of the runner process (user + system, every thread): the work done, where the wall time
    /// also counts waiting for a core on a loaded machine.
    pub cpu: f64,
}

/// One run of `runner predict`: (peak resident bytes, wall seconds). See [`predict_measured`].
pub fn predict_peak_rss(
    runner: &Path,
    model: &Path,
    image: &Path,
    output: &Path,
    threads: usize,
    extra: &[&str],
) -> Result<(f64, f64)> {
    let m = predict_measured(runner, model, image, output, threads, extra)?;
    Ok((m.rss, m.wall))
}

/// One run of `runner predict`, measured.
///
/// Linux folds the parent's peak RSS into a child's ru_maxrss when the child is spawned by vfork/posix_spawn
/// (the exec'd child inherits the shared mm's high-water mark), so a large bench process would inflate the
/// number. The runner is therefore started by a freshly exec'd, small copy of this executable
/// ([`measure_child`]), whose own high-water mark is a few MB.
pub fn predict_measured(
    runner: &Path,
    model: &Path,
    image: &Path,
    output: &Path,
    threads: usize,
    extra: &[&str],
) -> Result<RunMeasure> {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .env(MEASURE_ENV, "1")
        .arg(runner)
        .arg("predict")
        .arg("--model")
        .arg(model)
        .arg("--image")
        .arg(image)
        .arg("--output")
        .arg(output)
        .args(["--threads", &threads.to_string(), "--quiet"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", runner.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("runner predict failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> Result<f64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("the measuring process printed no {key}"))
    };
    Ok(RunMeasure { rss: value("maxrss_kib ")? * 1024.0, wall: seconds, cpu: value("cpu_s ")? })
}

/// The measuring parent: runs `args` (program first), waits with wait4 and prints `maxrss_kib N` and
/// `cpu_s S` (the child's user + system time); exits with the child's status.
pub fn measure_child(args: &[String]) -> Result<i32> {
    let (program, rest) = args.split_first().context("no command to measure")?;
    let child = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, zero is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    // ru_maxrss is in KiB on Linux.
    println!("maxrss_kib {}", usage.ru_maxrss);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    println!("cpu_s {}", tv(usage.ru_utime) + tv(usage.ru_stime));
    Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 1 })
}
