//! The printer decides where output goes: only data reaches stdout (so it can
//! be piped), every status line goes to stderr. Colour is used only on a
//! terminal and never when `NO_COLOR` or `--no-color` is set. Long steps show
//! a spinner where colour is used, and plain start and end lines elsewhere.
//!
//! Status lines carry text other machines sent (names, addresses, errors),
//! so each is [`neutralise`]d before it reaches the terminal: another
//! machine's text cannot move the cursor, rewrite lines or retitle the window.

use std::borrow::Cow;
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

/// `text` with every character that can steer a terminal shown as an escape
/// (`\u{1b}` for ESC): C0 and C1 control characters, so escape and control
/// sequences, carriage returns and backspaces, except the newline; and the
/// bidirectional overrides and isolates, which make text read other than it is.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers_terminal) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if steers_terminal(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

fn steers_terminal(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
        emit(&neutralise(message.as_ref()));
    }

    /// A step that completed.
    pub fn success(&self, message: impl AsRef<str>) {
        emit(&self.marked(GREEN, "✓", message.as_ref()));
    }

    /// Something the person should know but that does not stop the run.
    pub fn warn(&self, message: impl AsRef<str>) {
        emit(&self.marked(YELLOW, "!", message.as_ref()));
    }

    /// The final error, with its chain of causes.
    pub fn error(&self, error: &anyhow::Error) {
        emit(&self.error_text(error));
    }

    /// `message` after its painted `mark`.
    fn marked(&self, code: &str, mark: &str, message: &str) -> String {
        format!("{} {}", paint(self.color, code, mark), neutralise(message))
    }

    /// An error and its causes, one a line.
    fn error_text(&self, error: &anyhow::Error) -> String {
        let mut text = self.marked(RED, "Error:", &error.to_string());
        for cause in error.chain().skip(1) {
            text.push_str("\n  Caused by: ");
            text.push_str(&neutralise(&cause.to_string()));
        }
        text
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
        let message = neutralise(&message.into()).into_owned();
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
            neutralise(message.as_ref()),
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

    /// What a hostile machine might put in a name or an error: a clear
    /// screen, a window title, a hidden line rewritten by a carriage return,
    /// a backspace, an 8-bit CSI (C1) and a right-to-left override.
    const HOSTILE: &str = "micro2\x1b[2J\x1b]0;pwned\x07\rok\x08 \u{9b}31m \u{202e}txt.exe";

    #[test]
    fn remote_text_cannot_steer_the_terminal() {
        let shown = neutralise(HOSTILE);
        assert_eq!(
            shown,
            r"micro2\u{1b}[2J\u{1b}]0;pwned\u{7}\u{d}ok\u{8} \u{9b}31m \u{202e}txt.exe"
        );
        assert!(!shown.chars().any(steers_terminal), "{shown}");
        // Newlines stay (multi-line messages), and so does ordinary text, unchanged.
        assert!(matches!(neutralise("a\nb ✓ é"), Cow::Borrowed("a\nb ✓ é")));
        // What is shown once is shown the same again.
        assert_eq!(neutralise(&shown), shown);
    }

    #[test]
    fn warnings_errors_and_steps_neutralise_what_they_show() {
        let printer = Printer {
            color: true,
            spinner: false,
        };
        let line = printer.marked(YELLOW, "!", HOSTILE);
        // Only the printer's own colour codes reach the terminal.
        assert_eq!(line.matches('\x1b').count(), 2, "{line:?}");
        assert!(
            line.starts_with("\x1b[33m!\x1b[0m micro2\\u{1b}[2J"),
            "{line:?}"
        );

        let error = anyhow::anyhow!("{HOSTILE}").context("Failed to join system \"\x1b[1Amicro1\"");
        let text = printer.error_text(&error);
        assert_eq!(text.matches('\x1b').count(), 2, "{text:?}");
        assert!(text.contains("\n  Caused by: micro2\\u{1b}[2J"), "{text:?}");

        let out = Buffer::default();
        let step = Step::start("Joining".into(), false, Shown::Lines(Box::new(out.clone())));
        step.done(format!("Joined {HOSTILE}"));
        let done = &out.lines()[1];
        assert!(!done.chars().any(steers_terminal), "{done:?}");
    }
}
