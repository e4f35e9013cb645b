//! `just bench`: this machine's sgemm peak, the training step (fast ops, the same with im2col convolutions,
//! candle's reference ops, PyTorch), tiled against untiled prediction of a large image with a breakdown of
//! the tiled time, image decode and encode, and the peak memory of predicting a very large image, side by
//! side in one run. `--write FILE` puts the tables into FILE between the bench markers and keeps the rest
//! (findings, history).

mod memory;
mod predict;
mod sgemm;
mod slides;
mod stats;
mod stream;
mod table;
mod train;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use ort::session::builder::GraphOptimizationLevel;

use stats::Stats;
use table::Table;
use trainer::ops::Kernels;

const BEGIN: &str = "<!-- bench:begin (written by `just bench`; edit outside the markers) -->";
const END: &str = "<!-- bench:end -->";

/// Benchmarks of the segmenter on this machine, side by side in one run.
#[derive(Parser)]
#[command(about)]
struct Cli {
    /// Quick mode: 2 repetitions per number and no 8192^2 memory run unless asked for by --sections.
    #[arg(long)]
    quick: bool,
    /// Timed repetitions per number [default: 7, or 2 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Sections to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    sections: Vec<Section>,
    /// Write the results into this Markdown file, between the bench markers (the rest of the file is kept).
    #[arg(long)]
    write: Option<PathBuf>,
    /// The model to predict with [default: models/model.onnx if present, else a random network].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Side of the square image of the prediction section.
    #[arg(long, default_value_t = 2048)]
    side: usize,
    /// Side of the square image of the memory section.
    #[arg(long, default_value_t = 8192)]
    memory_side: usize,
    /// Side of the sgemm yardstick's square product.
    #[arg(long, default_value_t = 2048)]
    sgemm_side: usize,
    /// Stream section: predict this BigTIFF instead of writing one with tifffile.
    #[arg(long)]
    big_tiff: Option<PathBuf>,
    /// Stream section: width and height of the BigTIFF written with tifffile.
    #[arg(long, num_args = 2, value_names = ["WIDTH", "HEIGHT"], default_values_t = [16000, 32000])]
    big_size: Vec<usize>,
    /// Stream section: width of the height sweep (heights 1024, 4096 and 16384).
    #[arg(long, default_value_t = 2048)]
    sweep_width: usize,
    /// Slides section: side of the square slide (JPEG YCbCr 4:2:0 and Deflate BigTIFFs).
    #[arg(long, default_value_t = 14000)]
    slide_side: usize,
    /// Slides section: where the generated slides are kept between runs [default: $TMPDIR/segmenter-bench-cache].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Memory, stream and slides sections: run this runner binary instead of building the workspace's (e.g. a
    /// copy of an earlier build, for before/after figures).
    #[arg(long)]
    runner: Option<PathBuf>,
    /// Skip the PyTorch comparison even when torch is installed.
    #[arg(long)]
    no_pytorch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Sgemm,
    Train,
    Predict,
    Memory,
    /// Prediction at scale (long: a 512-megapixel BigTIFF, a height sweep, a folder of images).
    Stream,
    /// Slides (long: a 196-megapixel slide, JPEG against Deflate tiles, into OME-TIFF and OME-Zarr against a
    /// striped TIFF).
    Slides,
}

/// Threads for every engine: RAYON_NUM_THREADS if set (candle's rule), else every core we may run on.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    let lscpu = command_line("lscpu", &[]);
    let model = lscpu.lines().find_map(|l| l.strip_prefix("Model name:")).map(str::trim).unwrap_or("unknown");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{model}, {cores} cores available")
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resolved versions of the crates that matter, from the workspace's Cargo.lock.
fn locked_versions() -> String {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap_or_default();
    let mut out = vec![];
    for name in ["candle-core", "gemm", "ort", "image"] {
        // Every locked version of the crate (image, for one, is locked twice).
        let needle = format!("name = \"{name}\"\nversion = \"");
        let versions: Vec<&str> = lock
            .match_indices(&needle)
            .filter_map(|(i, _)| lock[i + needle.len()..].split('"').next())
            .collect();
        if !versions.is_empty() {
            out.push(format!("{name} {}", versions.join(" and ")));
        }
    }
    out.push(format!("ONNX Runtime {}", runner::session::error::ORT_VERSION));
    out.join(", ")
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// The model bytes: --model, else models/model.onnx, else a random network exported in memory.
fn model_bytes(explicit: Option<&Path>) -> Result<(Vec<u8>, String)> {
    let default = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/model.onnx"));
    let path = explicit.or(default.is_file().then_some(default));
    if let Some(path) = path {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
        let name = if path == default { "models/model.onnx".to_string() } else { path.display().to_string() };
        return Ok((bytes, name));
    }
    let net = trainer::model::SegNet::random(
        0,
        trainer::model::Normalization { mean: [0.5; 3], std: [0.25; 3] },
        &candle_core::Device::Cpu,
    )?;
    let bytes = trainer::export::to_onnx_bytes(&net, &trainer::checkpoint::TrainingSummary::default())?;
    Ok((bytes, "a random network (seed 0; no models/model.onnx)".into()))
}

/// What every section of one bench run shares: the arguments, the repetitions and threads, the process's
/// peak memory so far, and the scratch folder.
struct BenchRun {
    cli: Cli,
    reps: usize,
    threads: usize,
    peak: Option<f64>,
    scratch: PathBuf,
}

fn sgemm_section(run: &mut BenchRun) -> Table {
    let n = run.cli.sgemm_side;
    let g = sgemm::peak(n, run.threads, run.reps.max(3));
    run.peak = Some(g.median);
    let mut t = Table::new(
        "Yardstick: f32 sgemm through the gemm crate",
        &["product", "threads", "GFLOP/s median (min-max)"],
    );
    t.row(vec![format!("{n}^3"), run.threads.to_string(), g.show(1)]);
    t.note("The fractions of peak below divide by this run's median.");
    t
}

fn train_section(run: &BenchRun) -> Result<Table> {
    let mut t = Table::new(
        "Training step (forward, cross-entropy, backward, Adam)",
        &[
            "ops",
            "batch",
            "s/step median (min-max)",
            "GFLOP/s",
            "of sgemm peak",
            "peak memory MB",
            "ours / PyTorch",
        ],
    );
    let python = train::python();
    let torch = if run.cli.no_pytorch { None } else { train::torch_version(&python) };
    // Rounds of (ours, PyTorch) blocks, interleaved so that both see the same machine state; each block
    // times `per_block` steps and contributes its median.
    let (rounds, per_block) = (run.reps.clamp(3, 7), 10);
    let load_before = load_average();
    let other = train::OtherLoad::start();
    let mut ratio_rows = vec![];
    for (batch, size) in [(1, 256), (4, 128)] {
        let label = format!("{batch} x {size}^2");
        let mut fast_step = train::CandleStep::new(batch, size, Kernels::Fast)?;
        let mut im2col_step = train::CandleStep::new(batch, size, Kernels::Im2col)?;
        fast_step.time(3, 0)?;
        im2col_step.time(3, 0)?;
        let (mut fast, mut im2col, mut pytorch, mut pytorch_peak) = (vec![], vec![], vec![], None);
        for _ in 0..rounds {
            fast.push(Stats::of(&fast_step.time(0, per_block)?).median);
            im2col.push(Stats::of(&im2col_step.time(0, per_block)?).median);
            if torch.is_some() {
                match train::pytorch_step(&python, batch, size, run.threads, 3, per_block) {
                    Ok(run) if !run.seconds.is_empty() => {
                        pytorch.push(Stats::of(&run.seconds).median);
                        pytorch_peak = run.peak_bytes.or(pytorch_peak);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("PyTorch comparison failed: {e:#}"),
                }
            }
        }
        drop((fast_step, im2col_step));
        let reference =
            train::CandleStep::new(batch, size, Kernels::Reference)?.time(1, run.reps.clamp(1, 3))?;
        let row = |what: &str, seconds: &[f64], peak_bytes| train::TrainRow {
            what: what.into(),
            batch,
            size,
            seconds: Stats::of(seconds),
            peak_bytes,
        };
        let peak = train::step_peak_memory(batch, size).map_err(|e| eprintln!("{e:#}")).ok();
        let fast = row("fast (trainer::ops)", &fast, peak);
        let im2col = row("fast, im2col + gemm convolutions only", &im2col, None);
        let reference = row("candle reference ops", &reference, None);
        let pytorch = (!pytorch.is_empty()).then(|| row("PyTorch", &pytorch, pytorch_peak));
        for row in [Some(&fast), Some(&im2col), Some(&reference), pytorch.as_ref()].into_iter().flatten() {
            let g = row.gflops();
            let vs = pytorch.as_ref().map(|p| row.seconds.median / p.seconds.median);
            ratio_rows.push((t.rows.len(), vs));
            t.row(vec![
                row.what.clone(),
                label.clone(),
                row.seconds.show(4),
                format!("{:.1}", g.median),
                run.peak.map_or("-".into(), |p| pct(g.median / p)),
                row.peak_bytes.map_or("-".into(), |b| format!("{:.0}", b / 1e6)),
                String::new(),
            ]);
        }
        t.note(format!(
            "{label}: fast ops are {:.1}x faster than candle's reference ops; the direct convolutions take {:.2}x \
             the time of im2col + gemm",
            reference.seconds.median / fast.seconds.median,
            fast.seconds.median / im2col.seconds.median
        ));
    }
    let other_cores = other.cores();
    let quiet = other_cores.is_some_and(|c| c <= train::QUIET_CORES);
    for (row, vs) in ratio_rows {
        t.rows[row][6] = match vs {
            None => "-".into(),
            Some(_) if !quiet => "loaded - no ratio claimed".into(),
            Some(r) => format!("{r:.2}"),
        };
    }
    t.note(format!(
        "load average {load_before} before, {} after; other processes used {} cores meanwhile (ratios are \
         claimed only below {})",
        load_average(),
        other_cores.map_or("unknown".into(), |c| format!("{c:.2}")),
        train::QUIET_CORES
    ));
    t.note(format!(
        "ours and PyTorch interleaved: {rounds} rounds of {per_block} steps each (fast, im2col, then PyTorch), \
         medians of the round medians; candle's reference ops: one block after them."
    ));
    t.note("peak memory: resident high-water mark (VmHWM) of a process that only trains (ours: a fresh copy of the bench; PyTorch: its script's process).");
    match (&torch, run.cli.no_pytorch) {
        (_, true) => t.note("PyTorch skipped (--no-pytorch)."),
        (Some(v), _) => t.note(format!("PyTorch {v} via scripts/research/pytorch_step.py ({python}), {} threads; target ours/PyTorch <= 0.6.", run.threads)),
        (None, _) => t.note(format!("PyTorch not installed: skipped ({python} cannot import torch; set BENCH_PYTHON to an interpreter that can).")),
    }
    t.note(format!("FLOP per step = 3 x {} x pixels.", train::FORWARD_FLOP_PER_PIXEL));
    Ok(t)
}

fn predict_section(run: &BenchRun, bytes: &[u8]) -> Result<Vec<Table>> {
    let side = run.cli.side;
    let rgb = predict::synthetic_rgb(side, side);
    let flop = train::FORWARD_FLOP_PER_PIXEL * (side * side) as f64;
    let megapixels = (side * side) as f64 / 1e6;
    let reps = run.reps.max(3);
    let mut model = predict::runner_model(bytes, run.threads)?;
    let (untiled, tiled, cpu_ratios) = predict::runner_untiled_and_tiled(&mut model, &rgb, side, reps)?;
    drop(model);
    let plan = imaging::tiles::plan(
        side,
        side,
        imaging::tiles::DEFAULT_TILE,
        imaging::tiles::HALO,
        imaging::tiles::PIXEL_BUDGET,
    )?;
    let halo = predict::halo_factor(&plan);
    let ratios: Vec<f64> = tiled.iter().zip(&untiled).map(|(b, a)| b / a).collect();

    let mut t = Table::new(
        &format!("Prediction of a {side}x{side} image ({} threads)", run.threads),
        &["pass", "s median (min-max)", "MP/s", "GFLOP/s", "of sgemm peak"],
    );
    for (name, s) in [
        ("(a) untiled, one ONNX Runtime pass (runner::predict::untiled)", &untiled),
        ("(b) tiled within the budget (runner::predict::tiled)", &tiled),
    ] {
        let s = Stats::of(s);
        let g = flop / s.median / 1e9;
        t.row(vec![
            name.into(),
            s.show(3),
            format!("{:.1}", megapixels / s.median),
            format!("{g:.1}"),
            run.peak.map_or("-".into(), |p| pct(g / p)),
        ]);
    }
    t.note(format!("ratio b/a (per repetition, same run): {} (target <= 1.2)", Stats::of(&ratios).show(3)));
    t.note(format!(
        "the same ratio in CPU seconds of the process (less sensitive to other load; counts ONNX Runtime's spinning): {}",
        Stats::of(&cpu_ratios).show(3)
    ));
    t.note(format!(
        "plan: {plan}; window pixels / image pixels = {halo:.3} (the halo's own cost at tile {}, halo {})",
        imaging::tiles::DEFAULT_TILE,
        imaging::tiles::HALO
    ));
    t.note("GFLOP/s count the image's pixels once (useful work), not the recomputed halo.");

    // Where the tiled time goes: session-only time for several session settings, then copy-in and stitch.
    let base = predict::SessionConfig::runner(run.threads);
    let logits = predict::SessionConfig { name: "logits only", logits_only: true, ..base };
    let configs = [
        base,
        predict::SessionConfig { name: "as runner, no spinning", spinning: false, ..base },
        logits,
        predict::SessionConfig { name: "logits only, no spinning", spinning: false, ..logits },
        predict::SessionConfig { name: "logits only, memory pattern off", memory_pattern: false, ..logits },
        predict::SessionConfig {
            name: "logits only, basic graph optimisation",
            level: Some(GraphOptimizationLevel::Level1),
            ..logits
        },
        predict::SessionConfig { name: "logits only, 1 thread", threads: 1, ..logits },
    ];
    let mut rows = predict::session_breakdown(bytes, &rgb, side, &configs, reps)?;
    if run.threads > 1 {
        rows.push(predict::parallel_tiles(bytes, &rgb, side, run.threads, reps)?);
    }
    let mut b = Table::new(
        "Tiled prediction breakdown: ONNX Runtime session time only (inputs prepared, outputs read in place)",
        &[
            "session settings",
            "threads",
            "untiled s",
            "all tiles s",
            "tiles / untiled (wall)",
            "tiles / untiled (CPU)",
        ],
    );
    for r in &rows {
        b.row(vec![
            r.config.name.into(),
            r.config.threads.to_string(),
            r.untiled.show(3),
            r.tiled.show(3),
            r.ratio.show(3),
            r.cpu_ratio.show(3),
        ]);
    }
    let mut e = Table::new(
        "Session time per pass shape (logits only): small passes against large ones",
        &["pass", "s per megapixel median (min-max)"],
    );
    for (name, per) in predict::pass_efficiency(bytes, &logits, reps)? {
        if name.ends_with(" 16^2") {
            b.note(format!("fixed cost of one run (a 1x3x16x16 pass): {} ms", per.show(3)));
        } else {
            e.row(vec![name, per.show(4)]);
        }
    }
    let (copy, stitch) = predict::copy_and_stitch(&rgb, side, reps)?;
    b.note(format!("copy-in of every window (bytes -> f32 planes, 1 thread): {} s", copy.show(4)));
    b.note(format!("stitch of every kept centre (argmax, 1 thread): {} s", stitch.show(4)));

    let c = predict::codec(&rgb, side, reps, &run.scratch)?;
    let mut d = Table::new(
        &format!("Image decode and encode, {side}x{side} (imaging::whole)"),
        &["step", "s median (min-max)"],
    );
    d.row(vec![format!("decode PNG ({:.1} MB)", c.png_bytes as f64 / 1e6), c.png_decode.show(3)]);
    d.row(vec![format!("decode JPEG q90 ({:.1} MB)", c.jpeg_bytes as f64 / 1e6), c.jpeg_decode.show(3)]);
    d.row(vec!["encode mask JPEG q95 (in memory)".into(), c.mask_jpeg_encode.show(3)]);
    d.row(vec![
        "write mask JPEG (imaging::whole::write_mask: encode, file, fsync)".into(),
        c.mask_jpeg_write.show(3),
    ]);
    Ok(vec![t, b, e, d])
}

/// `--runner`, else the workspace's runner, built if stale.
fn runner_binary(cli: &Cli) -> Result<PathBuf> {
    match &cli.runner {
        Some(path) if path.is_file() => Ok(path.clone()),
        Some(path) => anyhow::bail!("--runner {}: no such file; give a runner binary", path.display()),
        None => memory::runner_binary(),
    }
}

fn memory_section(run: &BenchRun, bytes: &[u8]) -> Result<Table> {
    let side = run.cli.memory_side;
    let runner = runner_binary(&run.cli)?;
    let model = run.scratch.join("model.onnx");
    std::fs::write(&model, bytes)?;
    let image = run.scratch.join(format!("image{side}.png"));
    memory::write_png(&image, &predict::synthetic_rgb(side, side), side)?;
    let output = run.scratch.join("mask.png");
    let (mut rss, mut secs) = (vec![], vec![]);
    for _ in 0..run.reps.clamp(1, 3) {
        let (r, s) = memory::predict_peak_rss(&runner, &model, &image, &output, run.threads, &[])?;
        rss.push(r / 1e9);
        secs.push(s);
    }
    let _ = std::fs::remove_file(&image);
    let mut t = Table::new(
        &format!("Peak memory of `runner predict` on a {side}x{side} PNG (whole process)"),
        &["peak resident GB median (min-max)", "wall s (decode, predict, PNG mask)", "target"],
    );
    t.row(vec![Stats::of(&rss).show(3), Stats::of(&secs).show(2), "<= 1.0 GB".into()]);
    t.note(format!(
        "max RSS of the runner process (wait4 in a freshly started measuring parent, so the bench's own memory is not counted); the RGB input alone is {:.0} MB.",
        (side * side * 3) as f64 / 1e6
    ));
    Ok(t)
}

fn main() -> Result<()> {
    if let Ok(spec) = std::env::var(train::STEP_ENV) {
        return train::step_memory_child(&spec);
    }
    if std::env::var_os(memory::MEASURE_ENV).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(memory::measure_child(&args)?);
    }
    let cli = Cli::parse();
    let reps = cli.reps.unwrap_or(if cli.quick { 2 } else { 7 }).max(1);
    let mut sections = cli.sections.clone();
    if sections.is_empty() {
        sections = vec![Section::Sgemm, Section::Train, Section::Predict];
        if !cli.quick {
            sections.push(Section::Memory);
            sections.push(Section::Stream);
            sections.push(Section::Slides);
        }
    }
    let scratch = std::env::temp_dir().join(format!("segmenter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let threads = threads();
    let load_before = load_average();
    let mut run = BenchRun { cli, reps, threads, peak: None, scratch: scratch.clone() };
    let (bytes, model_name) = model_bytes(run.cli.model.as_deref())?;
    println!("bench: {threads} threads, {reps} repetitions, load average {load_before}");
    let mut tables = vec![];
    let mut emit = |t: Table| {
        print!("{}", t.text());
        tables.push(t);
    };
    let result = (|| -> Result<()> {
        if sections.contains(&Section::Sgemm) {
            emit(sgemm_section(&mut run));
        }
        if sections.contains(&Section::Train) {
            emit(train_section(&run)?);
        }
        if sections.contains(&Section::Predict) {
            for t in predict_section(&run, &bytes)? {
                emit(t);
            }
        }
        if sections.contains(&Section::Memory) {
            emit(memory_section(&run, &bytes)?);
        }
        if sections.contains(&Section::Stream) {
            let runner = runner_binary(&run.cli)?;
            let model = run.scratch.join("model.onnx");
            std::fs::write(&model, &bytes)?;
            let options = stream::StreamOptions {
                runner: &runner,
                model: &model,
                scratch: &run.scratch,
                threads: run.threads,
                reps: run.reps,
                big_tiff: run.cli.big_tiff.as_deref(),
                big_size: (run.cli.big_size[0], run.cli.big_size[1]),
                probabilities_side: run.cli.memory_side,
                sweep_width: run.cli.sweep_width,
                sweep_heights: &[1024, 4096, 16384],
            };
            for t in stream::section(&options)? {
                emit(t);
            }
        }
        if sections.contains(&Section::Slides) {
            let runner = runner_binary(&run.cli)?;
            let model = run.scratch.join("model.onnx");
            std::fs::write(&model, &bytes)?;
            let cache =
                run.cli.cache.clone().unwrap_or_else(|| std::env::temp_dir().join("segmenter-bench-cache"));
            let options = slides::SlidesOptions {
                runner: &runner,
                model: &model,
                scratch: &run.scratch,
                cache: &cache,
                threads: run.threads,
                rounds: run.reps.clamp(1, 3),
                side: run.cli.slide_side,
            };
            for t in slides::section(&options)? {
                emit(t);
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;

    let load_after = load_average();
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut block = format!(
        "Run of {date}: {}; {threads} threads; {reps} repetitions per number; load average {load_before} before, \
         {load_after} after.\n\n- CPU: {}\n- rustc: {}\n- versions: {}\n- prediction model: {model_name}\n\n",
        if run.cli.quick { "quick mode" } else { "full run" },
        cpu_model(),
        command_line("rustc", &["-V"]),
        locked_versions(),
    );
    for t in &tables {
        block += &t.markdown();
    }
    println!("load average after: {load_after}");
    if let Some(path) = &run.cli.write {
        let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(path, table::splice(&old, BEGIN, END, &block))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
