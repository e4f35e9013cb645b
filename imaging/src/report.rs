//! What a binary tells the person who ran it: every error on one clean line, and results on a standard output
//! that may be closed or full.
//!
//! How a `main()` uses it:
//! ```no_run
//! use std::process::ExitCode;
//! use imaging::report::{error_line, Stdout};
//!
//! fn run(out: &mut Stdout) -> anyhow::Result<()> {
//!     out.line("predicted 640x480")?; // a StdoutError converts into anyhow::Error like any other
//!     Ok(())
//! }
//!
//! fn main() -> ExitCode {
//!     let mut out = Stdout::new();
//!     match run(&mut out) {
//!         Ok(()) => ExitCode::SUCCESS,
//!         // `runner ... | head -1`: the reader is gone, which is not a failure of ours.
//!         Err(e) if imaging::report::is_broken_pipe(&e) => ExitCode::SUCCESS,
//!         Err(e) => {
//!             eprintln!("error: {}", error_line(&e));
//!             ExitCode::FAILURE
//!         }
//!     }
//! }
//! ```
//! Rust's `println!` panics when stdout is a closed pipe or a full disk (`> /dev/full`); [`Stdout::line`]
//! returns the error instead. Rust ignores SIGPIPE, so a closed pipe is an `EPIPE` error, not a kill.

use std::fmt::Display;
use std::io::Write;

/// The error and its causes on one line: no line breaks, no terminal colour codes, no C++ source locations
/// or signatures from ONNX Runtime, and no cause that repeats what the line already says.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = clean(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    dedupe_segments(&line)
}

/// One message made fit for one line; see [`error_line`].
pub fn clean(message: &str) -> String {
    let plain = strip_ansi(message);
    let kept: Vec<&str> = plain.lines().filter(|l| !l.trim().is_empty() && !is_trace_line(l)).collect();
    let joined = kept.join(" ");
    let without_locations = strip_source_locations(&joined);
    let words: Vec<&str> = without_locations.split_whitespace().collect();
    dedupe_segments(&words.join(" "))
}

/// Removes terminal escape sequences (`ESC [ ... letter` and two-byte `ESC x`) and other control
/// characters except line breaks and tabs.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, then one final byte in '@'..='~'.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // An operating-system command, ended by BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            '\r' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A line of a stack trace or a bare C++ frame (ONNX Runtime appends these to some messages).
fn is_trace_line(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("Stacktrace")
        || t.starts_with("Stack trace")
        || (t.starts_with('#') && t[1..].starts_with(|c: char| c.is_ascii_digit()))
        || (t.starts_with("at ") && t.contains("::"))
        || t.starts_with("0x")
}

/// Whether `word` is a C/C++ source location such as `/onnxruntime_src/core/session/inference_session.cc:123`.
fn is_source_location(word: &str) -> bool {
    let Some((file, line)) = word.trim_end_matches([',', ';']).rsplit_once(':') else { return false };
    let source_file =
        [".cc", ".cpp", ".cxx", ".h", ".hpp", ".cu", ".c"].iter().any(|ext| file.ends_with(ext));
    source_file && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
}

/// Drops each C++ source location and the function signature that follows it (`file.cc:42 void
/// ns::f(int, bool) const`), keeping the message around them.
fn strip_source_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_start = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        let word_end = rest[word_start..].find(char::is_whitespace).map_or(rest.len(), |e| word_start + e);
        let word = &rest[word_start..word_end];
        if word.is_empty() {
            break;
        }
        if is_source_location(word) {
            rest = skip_signature(&rest[word_end..]);
            continue;
        }
        out.push_str(&rest[..word_end]);
        rest = &rest[word_end..];
    }
    out
}

/// `text` after a leading C++ function signature (return type, qualified name, parenthesised parameters,
/// trailing `const`), or `text` itself when it does not start with one.
fn skip_signature(text: &str) -> &str {
    let Some(open) = text.find('(') else { return text };
    let head = &text[..open];
    if !head.contains("::") || head.contains(". ") || head.len() > 300 {
        return text;
    }
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let after = &text[open + i + 1..];
                    return after.trim_start().strip_prefix("const").unwrap_or(after);
                }
            }
            _ => {}
        }
    }
    text
}

/// Collapses a segment repeated right after itself ("x: x" -> "x"), as when a cause's text is quoted by its
/// parent and printed again.
fn dedupe_segments(line: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in line.split(": ") {
        if segments.last() != Some(&segment) {
            segments.push(segment);
        }
    }
    segments.join(": ")
}

/// A command-line usage error (as clap renders it: the error, maybe a tip, the usage, a pointer to
/// `--help`) on one line: `error: ...; tip: ...; see `CMD --help``, with CMD from the usage line, else
/// `command`.
pub fn usage_line(rendered: &str, command: &str) -> String {
    let plain = strip_ansi(rendered);
    let mut parts: Vec<String> = Vec::new();
    let mut command = (!command.is_empty()).then(|| command.to_string());
    for line in plain.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            let words: Vec<&str> =
                usage.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect();
            command = Some(words.join(" "));
        } else if line.starts_with("For more information") {
            continue;
        } else {
            parts.push(line.to_string());
        }
    }
    let mut text = parts.join("; ");
    if !text.starts_with("error:") {
        text = format!("error: {text}");
    }
    match command {
        Some(command) if !command.is_empty() => format!("{text}; see `{command} --help`"),
        _ => format!("{text}; see --help"),
    }
}

/// The command a usage error is about: `program` and its subcommand, when the first argument names one.
pub fn invoked_command(program: &str) -> String {
    match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(sub) => format!("{program} {sub}"),
        None => program.to_string(),
    }
}

/// Standard output failed: the reader went away (a broken pipe) or the write failed otherwise.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write to standard output ({source}); check where the output goes (a full disk, a closed file)"
)]
pub struct StdoutError {
    source: std::io::Error,
}

impl StdoutError {
    /// The reader of a pipe closed it (`runner ... | head -1`): a quiet end, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Whether `error` (or one of its causes) is standard output's broken pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|c| c.downcast_ref::<StdoutError>().is_some_and(StdoutError::is_broken_pipe))
}

/// Lines to a writer, each flushed, with write errors returned instead of panicking.
pub struct Printer<W: Write> {
    out: W,
}

/// Lines to the process's standard output.
pub type Stdout = Printer<std::io::Stdout>;

impl Stdout {
    pub fn new() -> Stdout {
        Printer { out: std::io::stdout() }
    }
}

impl Default for Stdout {
    fn default() -> Stdout {
        Stdout::new()
    }
}

impl<W: Write> Printer<W> {
    /// Lines to `out` (e.g. a file or a pipe).
    pub fn to(out: W) -> Printer<W> {
        Printer { out }
    }

    /// Writes `text` and a line break, and flushes, so a failure shows here and not at exit.
    pub fn line(&mut self, text: impl Display) -> Result<(), StdoutError> {
        writeln!(self.out, "{text}").and_then(|()| self.out.flush()).map_err(|source| StdoutError { source })
    }
}

thread_local! {
    /// Whether this thread is inside [`catch_panic`], whose panics are reported as errors, not printed.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once per process) a panic hook that stays silent inside [`catch_panic`] and defers to the
/// previous hook everywhere else.
fn install_quiet_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `work` (a call into a crate that may panic on hostile input, such as an image decoder) and turns a
/// panic into `Err(message)` on one line, without the panic being printed. For work on this thread only;
/// needs the default `panic = "unwind"`.
pub fn catch_panic<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| clean(&panic_message(payload.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_one_line_error() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let err = catch_panic(|| -> u8 { panic!("index out of bounds:\nthe len is 3") }).unwrap_err();
        assert_eq!(err, "index out of bounds: the len is 3");
        let err = catch_panic(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(err, "a panic without a message");
        // Nested: the inner catch leaves the outer one catching.
        let outer = catch_panic(|| {
            let _ = catch_panic(|| panic!("inner"));
            panic!("outer")
        });
        assert_eq!(outer.unwrap_err(), "outer");
    }

    #[test]
    fn a_usage_error_is_one_line_naming_the_help() {
        let rendered = "error: unexpected argument '--outptu' found\n\n  tip: a similar argument exists: \
                        '--output'\n\nUsage: runner predict --output <OUTPUT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered, "runner"),
            "error: unexpected argument '--outptu' found; tip: a similar argument exists: '--output'; see \
             `runner predict --help`"
        );
        assert_eq!(usage_line("error: bad\n", ""), "error: bad; see --help");
        assert_eq!(usage_line("error: bad\n", "trainer train"), "error: bad; see `trainer train --help`");
    }

    #[test]
    fn causes_are_joined_without_repeats() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let error = anyhow::Error::new(io).context(format!("cannot read x.png: {text}"));
        assert_eq!(error_line(&error), format!("cannot read x.png: {text}"));
        let error = anyhow::anyhow!("{text}: {text}");
        assert_eq!(error_line(&error), text);
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&error), "outer: inner");
    }

    #[test]
    fn line_breaks_and_colour_are_removed() {
        let error = anyhow::anyhow!("\u{1b}[31mbad\u{1b}[0m thing\nsecond   line\r\n\tthird");
        assert_eq!(error_line(&error), "bad thing second line third");
        assert_eq!(clean("\u{1b}]0;title\u{7}x\u{7}y"), "xy");
    }

    #[test]
    fn onnx_runtime_locations_and_signatures_are_dropped() {
        let message = "Non-zero status code returned while running Conv node. Name:'/conv1/Conv' Status \
            Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* \
            onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, \
            onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 1073741824\n";
        assert_eq!(
            clean(message),
            "Non-zero status code returned while running Conv node. Name:'/conv1/Conv' Status Message: \
             Failed to allocate memory for requested buffer of size 1073741824"
        );
        let message = "Load model failed: /src/onnxruntime/core/graph/model.cc:180 \
            onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&, const IOnnxRuntimeOpSchemaRegistryList*, \
            const onnxruntime::logging::Logger&, const onnxruntime::ModelOptions&) const Unsupported model IR version: 99\n\
            Stacktrace:\n#0 0x7f00 in onnxruntime::Model::Model\n#1 0x7f01 in main";
        assert_eq!(clean(message), "Load model failed: Unsupported model IR version: 99");
        // Ordinary text with colons and parentheses is kept.
        let plain = "tile 3 (x 480, y 0): value NaN at 12:40 in f(x)";
        assert_eq!(clean(plain), plain);
    }

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just opened by pipe(2) and are owned by nothing else.
        unsafe {
            use std::os::fd::FromRawFd;
            (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1]))
        }
    }

    #[test]
    fn a_closed_pipe_is_a_broken_pipe_error_not_a_panic() {
        let (reader, writer) = pipe();
        drop(reader);
        let mut out = Printer::to(writer);
        let err = out.line("predicted").unwrap_err();
        assert!(err.is_broken_pipe(), "{err}");
        assert!(is_broken_pipe(&anyhow::Error::new(err).context("printing the summary")));
    }

    #[test]
    fn a_full_device_is_an_error_that_is_not_a_broken_pipe() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut out = Printer::to(full);
        let err = out.line("predicted").unwrap_err();
        assert!(!err.is_broken_pipe());
        let line = error_line(&anyhow::Error::new(err));
        assert!(line.starts_with("cannot write to standard output (No space left on device"), "{line}");
        assert!(!line.contains('\n'));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn an_open_pipe_receives_the_lines() {
        let (mut reader, writer) = pipe();
        let mut out = Printer::to(writer);
        out.line(format_args!("a {}", 1)).unwrap();
        out.line("b").unwrap();
        drop(out);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
        assert_eq!(text, "a 1\nb\n");
    }
}
