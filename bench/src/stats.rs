//! Repeated timings summarised as median, min and max.

use std::time::Instant;

/// Median, min and max of repeated measurements (seconds, bytes, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    /// Summarises `values`; the median of an even count is the mean of the two middle values.
    pub fn of(values: &[f64]) -> Stats {
        assert!(!values.is_empty(), "no measurements");
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Stats { median, min: v[0], max: v[n - 1], runs: n }
    }

    /// Applies `f` to median, min and max (for derived quantities such as GFLOP/s, where min and max swap).
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Stats {
        let (a, b) = (f(self.min), f(self.max));
        Stats { median: f(self.median), min: a.min(b), max: a.max(b), runs: self.runs }
    }

    /// "median (min-max)" with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!("{:.d$} ({:.d$}-{:.d$})", self.median, self.min, self.max, d = decimals)
    }
}

/// Seconds of each of `reps` calls of `f`, after `warmup` untimed calls.
pub fn time<E>(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Vec<f64>, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        out.push(start.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// CPU seconds (user + system, every thread) this process has used so far: on a loaded machine the work
/// done, where wall time also counts waiting for a core.
pub fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it for this process.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let rate = s.map(|t| 6.0 / t);
        assert_eq!((rate.median, rate.min, rate.max), (3.0, 2.0, 6.0));
        assert_eq!(s.show(1), "2.0 (1.0-3.0)");
    }
}
