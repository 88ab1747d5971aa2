//! The printer decides where output goes: only data reaches stdout (so it can
//! be piped), every status line goes to stderr. Colour is used only on a
//! terminal and never when `NO_COLOR` or `--no-color` is set.

use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    color: bool,
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

impl Printer {
    /// `no_color` is the `--no-color` flag; `NO_COLOR` (any value) also disables colour.
    pub fn new(no_color: bool) -> Self {
        Printer {
            color: stderr_color(no_color),
        }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// A progress line ("Joining the LXD cluster ...").
    pub fn status(&self, message: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr(), "{}", message.as_ref());
    }

    /// A step that completed.
    pub fn success(&self, message: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stderr(),
            "{} {}",
            self.paint(GREEN, "✓"),
            message.as_ref()
        );
    }

    /// Something the person should know but that does not stop the run.
    pub fn warn(&self, message: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stderr(),
            "{} {}",
            self.paint(YELLOW, "!"),
            message.as_ref()
        );
    }

    /// The final error, with its chain of causes.
    pub fn error(&self, error: &anyhow::Error) {
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{} {error}", self.paint(RED, "Error:"));
        for cause in error.chain().skip(1) {
            let _ = writeln!(out, "  Caused by: {cause}");
        }
    }

    /// Data for stdout.
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }
}
