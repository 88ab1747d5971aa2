//! The printer decides where output goes: only data reaches stdout (so it can
//! be piped), every status line goes to stderr. Colour is used only on a
//! terminal and never when `NO_COLOR` or `--no-color` is set. Long steps show
//! a spinner where colour is used, and plain start and end lines elsewhere.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    color: bool,
    /// Long steps animate a spinner instead of printing plain lines.
    spinner: bool,
}

/// Whether stderr gets colour: a terminal, no `--no-color`, and `NO_COLOR`
/// unset or empty (no-color.org). Log lines follow the same rule.
pub fn stderr_color(no_color: bool) -> bool {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && !no_color_env && std::io::stderr().is_terminal()
}

const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// The spinners of the steps under way: several while a run sets up its
/// services side by side. They redraw the last lines of stderr, so every
/// other line printed meanwhile has to go above them.
fn spinners() -> &'static MultiProgress {
    static SPINNERS: OnceLock<MultiProgress> = OnceLock::new();
    SPINNERS.get_or_init(MultiProgress::new)
}

/// Prints `text` as a line on stderr, above the spinners if any run.
fn emit(text: &str) {
    spinners().suspend(|| {
        let _ = writeln!(std::io::stderr(), "{text}");
    });
}

impl Printer {
    /// `no_color` is the `--no-color` flag; `NO_COLOR` (any value) also disables colour.
    pub fn new(no_color: bool) -> Self {
        let color = stderr_color(no_color);
        // A spinner is drawn with escape sequences too: whoever asks for no
        // colour gets plain lines, and so does a terminal that cannot move the cursor.
        let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
        Printer {
            color,
            spinner: color && !dumb,
        }
    }

    /// A progress line ("Joining the LXD cluster ...").
    pub fn status(&self, message: impl AsRef<str>) {
        emit(message.as_ref());
    }

    /// A step that completed.
    pub fn success(&self, message: impl AsRef<str>) {
        emit(&format!(
            "{} {}",
            paint(self.color, GREEN, "✓"),
            message.as_ref()
        ));
    }

    /// Something the person should know but that does not stop the run.
    pub fn warn(&self, message: impl AsRef<str>) {
        emit(&format!(
            "{} {}",
            paint(self.color, YELLOW, "!"),
            message.as_ref()
        ));
    }

    /// The final error, with its chain of causes.
    pub fn error(&self, error: &anyhow::Error) {
        let mut text = format!("{} {error}", paint(self.color, RED, "Error:"));
        for cause in error.chain().skip(1) {
            text.push_str(&format!("\n  Caused by: {cause}"));
        }
        emit(&text);
    }

    /// Data for stdout.
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }

    /// Starts a long step; `message` says what it does ("Joining micro2 to
    /// the cluster"). A spinner shows it with the time it has taken so far,
    /// or, off a terminal, one line `message ...`. Steps may overlap: each
    /// has its own spinner, or its own lines.
    pub fn step(&self, message: impl Into<String>) -> Step {
        let message = message.into();
        let shown = if self.spinner {
            let bar =
                spinners().add(ProgressBar::new_spinner().with_message(format!("{message} ...")));
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            Shown::Spinner(bar)
        } else {
            Shown::Lines(Box::new(std::io::stderr()))
        };
        Step::start(message, self.color, shown)
    }
}

/// A long step under way, from [`Printer::step`]. Dropping it without
/// [`Step::done`] reports it failed, so an error or Ctrl-C that leaves the
/// step early still ends its line.
#[must_use = "a step dropped at once reports a failure"]
pub struct Step {
    message: String,
    started: Instant,
    color: bool,
    shown: Shown,
    finished: bool,
}

enum Shown {
    Spinner(ProgressBar),
    /// Plain lines, on stderr (a buffer in tests).
    Lines(Box<dyn Write + Send>),
}

impl Step {
    fn start(message: String, color: bool, mut shown: Shown) -> Step {
        if let Shown::Lines(out) = &mut shown {
            let _ = writeln!(out, "{message} ...");
        }
        Step {
            message,
            started: Instant::now(),
            color,
            shown,
            finished: false,
        }
    }

    /// Ends the step; `message` says what it achieved ("Peer micro2 has
    /// joined the cluster") and the line adds the time it took.
    pub fn done(mut self, message: impl AsRef<str>) {
        let line = format!(
            "{} {} ({:.1} s)",
            paint(self.color, GREEN, "✓"),
            message.as_ref(),
            self.started.elapsed().as_secs_f64()
        );
        self.finish(&line);
    }

    fn finish(&mut self, line: &str) {
        self.finished = true;
        match &mut self.shown {
            Shown::Spinner(bar) => {
                bar.finish_and_clear();
                spinners().remove(bar);
                emit(line);
            }
            Shown::Lines(out) => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            let line = format!(
                "{} {} (failed after {:.1} s)",
                paint(self.color, RED, "✗"),
                self.message,
                self.started.elapsed().as_secs_f64()
            );
            self.finish(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Stands in for stderr and keeps what was written.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    /// Splits `line` into its text before the parenthesis and the seconds in it.
    fn seconds<'a>(line: &'a str, before: &str) -> (&'a str, f64) {
        let (text, rest) = line.rsplit_once(before).expect(line);
        let seconds = rest.strip_suffix(" s)").expect(line);
        assert_eq!(seconds.split_once('.').expect(line).1.len(), 1, "{line}");
        (text, seconds.parse().expect(line))
    }

    #[test]
    fn a_plain_step_prints_when_it_starts_and_when_it_is_done() {
        let out = Buffer::default();
        let step = Step::start(
            "Joining micro2 to the cluster".into(),
            false,
            Shown::Lines(Box::new(out.clone())),
        );
        assert_eq!(out.lines(), ["Joining micro2 to the cluster ..."]);
        std::thread::sleep(Duration::from_millis(100));
        step.done("Peer micro2 has joined the cluster");
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (text, elapsed) = seconds(&lines[1], " (");
        assert_eq!(text, "✓ Peer micro2 has joined the cluster");
        assert!(elapsed >= 0.1, "{lines:?}");
    }

    #[test]
    fn a_step_dropped_before_it_is_done_failed() {
        let out = Buffer::default();
        let step = Step::start(
            "Creating network \"lxdbr0\"".into(),
            true,
            Shown::Lines(Box::new(out.clone())),
        );
        drop(step);
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (text, _) = seconds(&lines[1], " (failed after ");
        assert_eq!(text, "\x1b[31m✗\x1b[0m Creating network \"lxdbr0\"");
    }
}
