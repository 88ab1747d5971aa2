//! Interactive questions, behind a seam so that tests can answer them.
//!
//! Commands ask through the [`Prompter`] trait. [`TtyPrompter`] asks a person
//! on the terminal; [`ScriptedPrompter`] reads the answers from a script in
//! upstream MicroCloud's `TEST_CONSOLE` vocabulary (`table:select`,
//! `table:expect 3`, …, and plain lines for typed answers), so the same
//! command code runs unattended in tests. Both share everything but the I/O:
//! the question formats, the re-asking on invalid input and the table logic
//! (`select_table`) are written once, against the private `Console` trait.
//!
//! The terminal prompts draw on stderr, because stdout carries data. Raw mode is
//! on only while a question is being answered, and a guard restores the
//! terminal however the question ends, a panic included.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crossterm::cursor::{MoveToColumn, MoveToPreviousLine, MoveUp};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, execute, queue};

use super::printer::neutralise;
pub use super::select_table::RowFeed;
use super::select_table::{self, Action, Feed, Incoming, TableState};
use crate::trust::passphrase;

/// Asks the questions of the interactive commands.
pub trait Prompter: Send {
    /// `<question> (yes/no) [default=yes]: ` — yes/y/no/n, case-insensitive;
    /// anything else prints "Invalid input" and asks again.
    fn confirm(&mut self, question: &str, default: bool) -> Result<bool, PromptError>;

    /// `<question> [default=X]: ` (no default part when `None`); empty input
    /// takes the default; `validate` failures print the reason and ask again.
    fn text(
        &mut self,
        question: &str,
        default: Option<&str>,
        validate: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<String, PromptError>;

    /// The passphrase prompt of `microcloud join`: as [`Prompter::text`], with
    /// Tab completing the current word from the wordlist (three letters are
    /// always enough), checked with [`passphrase::validate`] and returned
    /// [normalized](passphrase::normalize).
    fn passphrase(&mut self, question: &str) -> Result<String, PromptError>;

    /// A selectable table under `title`. `rows` are shown at once; more
    /// arrive from `incoming` (cells matching `headers`) until it closes, and
    /// are appended to `rows`, however the question ends, so that asking
    /// again shows them again. Returns the indices into `rows` of the
    /// selected rows once Enter is pressed ([`select_rows`] returns the
    /// chosen items themselves). Keys:
    /// Up/Down move, Space toggles, Right selects all shown rows, Left selects
    /// none, typing filters rows (case-insensitive substring), Backspace edits
    /// the filter.
    fn select(
        &mut self,
        title: &str,
        headers: &[&str],
        rows: &mut Vec<Vec<String>>,
        incoming: Option<&mut dyn RowFeed>,
        selection: Selection,
    ) -> Result<Vec<usize>, PromptError>;

    /// A `! <message>` warning line, printed before a question.
    fn warn(&mut self, message: &str);
}

/// Something shown as one row of a selectable table.
pub trait Row {
    /// The cells, matching the table's headers.
    fn cells(&self) -> Vec<String>;
}

/// A table of `items` (more arrive on `incoming` while it is shown, and are
/// appended to `items`); returns the items chosen.
pub fn select_rows<R: Row + Clone>(
    prompter: &mut dyn Prompter,
    title: &str,
    headers: &[&str],
    items: &mut Vec<R>,
    incoming: Option<&Receiver<R>>,
    selection: Selection,
) -> Result<Vec<R>, PromptError> {
    let mut cells: Vec<Vec<String>> = items.iter().map(Row::cells).collect();
    let chosen = match incoming {
        None => prompter.select(title, headers, &mut cells, None, selection)?,
        Some(receiver) => {
            let mut feed = ItemFeed { receiver, items };
            prompter.select(title, headers, &mut cells, Some(&mut feed), selection)?
        }
    };
    Ok(chosen
        .into_iter()
        .map(|index| items[index].clone())
        .collect())
}

/// Feeds arriving items to a table as rows, keeping each item at the index of
/// its row.
struct ItemFeed<'a, R> {
    receiver: &'a Receiver<R>,
    items: &'a mut Vec<R>,
}

impl<R: Row> ItemFeed<'_, R> {
    fn add(&mut self, item: R) -> Feed {
        let cells = item.cells();
        self.items.push(item);
        Feed::Row(cells)
    }
}

impl<R: Row> RowFeed for ItemFeed<'_, R> {
    fn try_next(&mut self) -> Feed {
        match self.receiver.try_recv() {
            Ok(item) => self.add(item),
            Err(std::sync::mpsc::TryRecvError::Empty) => Feed::Empty,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Feed::Closed,
        }
    }

    fn next_before(&mut self, deadline: Instant) -> Feed {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.receiver.recv_timeout(wait) {
            Ok(item) => self.add(item),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Feed::Empty,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Feed::Closed,
        }
    }
}

/// How many rows a table lets the user select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Any number of rows.
    Many,
    /// At most one: Space selects the row under the cursor and unselects the others.
    One,
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// Ctrl-C or Esc.
    #[error("Interrupted by the user")]
    Interrupted,
    #[error("Interactive questions need a terminal on stdin and stderr")]
    NotATerminal,
    /// The test script ran out or did not fit the question.
    #[error("Test console script: {0}")]
    Script(String),
    #[error("Using the terminal")]
    Io(#[from] io::Error),
}

/// What differs between a person at a terminal and a script.
trait Console {
    /// Shows `prompt` and returns what was typed up to Enter. With
    /// `complete_words`, Tab completes the current word from the wordlist.
    fn read_answer(&mut self, prompt: &str, complete_words: bool) -> Result<String, PromptError>;

    /// Prints a whole line (an error or a warning).
    fn say(&mut self, line: &str);

    /// Lets the user work on `table` until they confirm it.
    fn run_table(
        &mut self,
        title: &str,
        table: &mut TableState,
        incoming: Incoming<'_>,
    ) -> Result<(), PromptError>;

    /// Asks until an answer (or the default, for empty input) passes `validate`.
    fn ask(
        &mut self,
        question: &str,
        default: Option<&str>,
        validate: &dyn Fn(&str) -> Result<(), String>,
        complete_words: bool,
    ) -> Result<String, PromptError> {
        let prompt = match default {
            Some(default) => format!("{question} [default={default}]: "),
            None => format!("{question}: "),
        };
        loop {
            let typed = self.read_answer(&prompt, complete_words)?;
            let answer = match (typed.trim(), default) {
                ("", Some(default)) => default,
                (typed, _) => typed,
            };
            match validate(answer) {
                Ok(()) => return Ok(answer.to_string()),
                Err(reason) => self.say(&format!("Invalid input: {reason}")),
            }
        }
    }
}

impl<C: Console + Send> Prompter for C {
    fn confirm(&mut self, question: &str, default: bool) -> Result<bool, PromptError> {
        let shown_default = if default { "yes" } else { "no" };
        let prompt = format!("{question} (yes/no) [default={shown_default}]: ");
        loop {
            match self
                .read_answer(&prompt, false)?
                .trim()
                .to_lowercase()
                .as_str()
            {
                "" => return Ok(default),
                "yes" | "y" => return Ok(true),
                "no" | "n" => return Ok(false),
                _ => self.say("Invalid input"),
            }
        }
    }

    fn text(
        &mut self,
        question: &str,
        default: Option<&str>,
        validate: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<String, PromptError> {
        self.ask(question, default, validate, false)
    }

    fn passphrase(&mut self, question: &str) -> Result<String, PromptError> {
        let typed = self.ask(question, None, &passphrase::validate, true)?;
        Ok(passphrase::normalize(&typed))
    }

    fn select(
        &mut self,
        title: &str,
        headers: &[&str],
        rows: &mut Vec<Vec<String>>,
        incoming: Option<&mut dyn RowFeed>,
        selection: Selection,
    ) -> Result<Vec<usize>, PromptError> {
        let mut table = TableState::new(headers, std::mem::take(rows), selection);
        let outcome = self
            .run_table(title, &mut table, Incoming::new(incoming))
            .map(|()| table.selected());
        *rows = table.into_rows();
        outcome
    }

    fn warn(&mut self, message: &str) {
        // Continuation lines line up with the text after the "! ".
        self.say(&format!("! {}", message.replace('\n', "\n  ")));
    }
}

/// Asks a person on the terminal.
#[derive(Debug)]
pub struct TtyPrompter {
    /// Only [`TtyPrompter::new`], which checks for a terminal, makes one.
    _private: (),
}

impl TtyPrompter {
    /// Fails with [`PromptError::NotATerminal`] unless stdin and stderr are terminals.
    pub fn new() -> Result<Self, PromptError> {
        if io::stdin().is_terminal() && io::stderr().is_terminal() {
            Ok(TtyPrompter { _private: () })
        } else {
            Err(PromptError::NotATerminal)
        }
    }
}

impl Console for TtyPrompter {
    fn read_answer(&mut self, prompt: &str, complete_words: bool) -> Result<String, PromptError> {
        let mut out = io::stderr().lock();
        let _raw = RawMode::enable()?;
        let mut region = Region::default();
        let mut answer = String::new();
        let outcome = loop {
            let suggestion = if complete_words {
                completion(&answer)
            } else {
                ""
            };
            region.draw(
                &mut out,
                terminal_width(),
                &[format!("{prompt}{answer}")],
                suggestion,
            )?;
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            if is_interrupt(&key) {
                break Err(PromptError::Interrupted);
            }
            match key.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Backspace => {
                    answer.pop();
                }
                KeyCode::Tab if complete_words && !answer.is_empty() && !answer.ends_with(' ') => {
                    answer.push_str(suggestion);
                    answer.push(' ');
                }
                _ => answer.extend(typed_char(&key)),
            }
        };
        // Leave the line as answered, without the suggestion.
        region.draw(
            &mut out,
            terminal_width(),
            &[format!("{prompt}{answer}")],
            "",
        )?;
        out.write_all(b"\r\n")?;
        out.flush()?;
        outcome.map(|()| answer)
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(io::stderr(), "{}", neutralise(line));
    }

    fn run_table(
        &mut self,
        title: &str,
        table: &mut TableState,
        mut incoming: Incoming<'_>,
    ) -> Result<(), PromptError> {
        let _raw = RawMode::enable()?;
        select_table::run_tty(&mut io::stderr().lock(), title, table, &mut incoming)
    }
}

/// The rest of the wordlist word that the last typed word is the unique start
/// of ("aar" → "dvark"); empty when there is none or the word is complete.
fn completion(answer: &str) -> &'static str {
    let word = answer.rsplit(' ').next().unwrap_or_default();
    passphrase::complete(word).map_or("", |full| &full[word.len()..])
}

/// The character a key types, if it types one (Ctrl and Alt combinations do not).
pub(super) fn typed_char(key: &KeyEvent) -> Option<char> {
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// Ctrl-C (which raw mode delivers as a key, not a signal) or Esc.
pub(super) fn is_interrupt(key: &KeyEvent) -> bool {
    key.code == KeyCode::Esc
        || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
}

/// The terminal width, with a fallback for terminals that report none.
pub(super) fn terminal_width() -> usize {
    match terminal::size() {
        Ok((columns, _)) if columns > 0 => usize::from(columns),
        _ => 80,
    }
}

/// Raw mode for the life of one question; dropping it restores the terminal,
/// also when the question fails or panics.
struct RawMode;

impl RawMode {
    fn enable() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = execute!(io::stderr(), cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// The lines a question occupies below whatever was printed before it,
/// redrawn in place (no alternate screen, so the answers stay in scrollback).
#[derive(Debug, Default)]
pub(super) struct Region {
    /// Terminal rows between the first line of the region and the cursor.
    rows_above_cursor: usize,
}

impl Region {
    /// Replaces the region with `lines`, with `suggestion` dimmed after the
    /// last one and the cursor where the next typed character goes. Lines
    /// longer than `width` wrap; the region counts the rows they take. Cursor moves are
    /// relative, so they stay right when the terminal scrolls.
    pub(super) fn draw(
        &mut self,
        out: &mut impl Write,
        width: usize,
        lines: &[String],
        suggestion: &str,
    ) -> io::Result<()> {
        match to_u16(self.rows_above_cursor) {
            0 => queue!(out, MoveToColumn(0))?,
            rows => queue!(out, MoveToPreviousLine(rows))?,
        }
        queue!(out, Clear(ClearType::FromCursorDown))?;
        // Questions and tables show what other machines sent (names, disk
        // models): none of it may steer the terminal.
        let lines: Vec<Cow<'_, str>> = lines.iter().map(|line| neutralise(line)).collect();
        let lines: Vec<&str> = lines.iter().flat_map(|line| line.split('\n')).collect();
        out.write_all(lines.join("\r\n").as_bytes())?;
        // After n characters the cursor is on row (n - 1) / width of the line:
        // at an exact fit it waits in the last column for the next character.
        let last_row = |chars: usize| chars.saturating_sub(1) / width;
        let (last, earlier) = lines.split_last().unwrap_or((&"", &[]));
        let earlier_rows: usize = earlier
            .iter()
            .map(|line| last_row(line.chars().count()) + 1)
            .sum();
        let typed = last.chars().count();
        let mut cursor_row = last_row(typed);
        if !suggestion.is_empty() {
            let end_row = last_row(typed + suggestion.chars().count());
            cursor_row = typed / width;
            queue!(
                out,
                SetAttribute(Attribute::Dim),
                Print(suggestion),
                SetAttribute(Attribute::Reset)
            )?;
            if end_row > cursor_row {
                queue!(out, MoveUp(to_u16(end_row - cursor_row)))?;
            }
            queue!(out, MoveToColumn(to_u16(typed % width)))?;
        }
        out.flush()?;
        self.rows_above_cursor = earlier_rows + cursor_row;
        Ok(())
    }
}

/// A row or column count for a cursor move; terminals are far smaller than `u16::MAX`.
fn to_u16(count: usize) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

/// How long `table:expect` waits for its rows.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers questions from a script in upstream's `TEST_CONSOLE` vocabulary,
/// one line per action:
///
/// - typed answers: any line not starting with `table:`; an empty line (or
///   `ctrl:m`) takes the default;
/// - `table:up`, `table:down`, `table:select` (toggle the row under the
///   cursor), `table:select-all`, `table:select-none`, `table:filter <text>`;
/// - `table:wait <duration>` (Go syntax: `300ms`, `2s`, `1m30s`): let rows
///   arrive for that long;
/// - `table:expect <n>`: wait up to 30 s until the table has `n` rows, rows
///   kept from an earlier showing of it included (an error if it already has
///   more, as upstream);
/// - `table:done`: confirm the table.
///
/// Text after ` # ` is a comment. Everything asked and answered is kept in a
/// [transcript](ScriptedPrompter::transcript).
#[derive(Debug)]
pub struct ScriptedPrompter {
    lines: VecDeque<String>,
    transcript: String,
}

impl ScriptedPrompter {
    /// A prompter that answers from `script`, one action per line.
    pub fn new(script: &str) -> Self {
        let lines = script
            .lines()
            .map(|line| {
                line.split_once(" # ")
                    .map_or(line, |(action, _)| action)
                    .trim()
                    .to_string()
            })
            .collect();
        ScriptedPrompter {
            lines,
            transcript: String::new(),
        }
    }

    /// The questions, answers, messages and confirmed tables so far, one line each.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    fn record(&mut self, line: &str) {
        self.transcript.push_str(line);
        self.transcript.push('\n');
    }

    fn next_line(&mut self, asking: &str) -> Result<String, PromptError> {
        self.lines.pop_front().ok_or_else(|| {
            PromptError::Script(format!("the script ended at \"{}\"", asking.trim_end()))
        })
    }
}

impl Console for ScriptedPrompter {
    fn read_answer(&mut self, prompt: &str, _complete_words: bool) -> Result<String, PromptError> {
        let line = self.next_line(prompt)?;
        if line.starts_with("table:") {
            return Err(PromptError::Script(format!(
                "\"{line}\" cannot answer \"{}\", which is not a table",
                prompt.trim_end()
            )));
        }
        let answer = if line == "ctrl:m" {
            String::new()
        } else {
            line
        };
        self.record(&format!("{prompt}{answer}"));
        Ok(answer)
    }

    fn say(&mut self, line: &str) {
        self.record(line);
    }

    fn run_table(
        &mut self,
        title: &str,
        table: &mut TableState,
        mut incoming: Incoming<'_>,
    ) -> Result<(), PromptError> {
        self.record(title);
        loop {
            incoming.drain(table);
            let line = self.next_line(title)?;
            let (command, argument) = line.split_once(' ').unwrap_or((&line, ""));
            let action = match command {
                "table:up" => Action::Up,
                "table:down" => Action::Down,
                "table:select" => Action::Toggle,
                "table:select-all" => Action::SelectAll,
                "table:select-none" => Action::SelectNone,
                "table:filter" => {
                    argument.chars().for_each(|c| table.apply(Action::Type(c)));
                    continue;
                }
                "table:wait" => {
                    let deadline =
                        Instant::now() + parse_duration(argument).map_err(PromptError::Script)?;
                    while incoming.wait_one(table, deadline) {}
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    continue;
                }
                "table:expect" => {
                    let rows = argument.parse().map_err(|_| {
                        PromptError::Script(format!("invalid row count in \"{line}\""))
                    })?;
                    expect_rows(table, &mut incoming, rows)
                        .map_err(|why| PromptError::Script(format!("{why} in \"{title}\"")))?;
                    continue;
                }
                "table:done" => break,
                _ => {
                    return Err(PromptError::Script(format!(
                        "\"{line}\" is not a table: action, but \"{title}\" is shown"
                    )));
                }
            };
            table.apply(action);
        }
        for line in table.summary() {
            self.record(&line);
        }
        Ok(())
    }
}

/// Carries out `table:expect <rows>`.
fn expect_rows(
    table: &mut TableState,
    incoming: &mut Incoming<'_>,
    rows: usize,
) -> Result<(), String> {
    if rows == 0 {
        return Err("cannot expect 0 rows".to_string());
    }
    if table.len() > rows {
        return Err(format!(
            "the table has more rows ({}) than expected ({rows})",
            table.len()
        ));
    }
    let deadline = Instant::now() + EXPECT_TIMEOUT;
    while table.len() < rows {
        if !incoming.wait_one(table, deadline) {
            let why = if incoming.is_closed() {
                "and no more can come"
            } else {
                "within the timeout"
            };
            return Err(format!(
                "expected {rows} rows, {} arrived {why}",
                table.len()
            ));
        }
    }
    Ok(())
}

/// Go's `time.ParseDuration` syntax, which upstream's `table:wait` takes:
/// decimal numbers with units, e.g. `300ms`, `1.5s`, `1m30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration \"{text}\"");
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let unit_start = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
        let unit_end = rest[unit_start..]
            .find(is_number)
            .map_or(rest.len(), |i| unit_start + i);
        let number: f64 = rest[..unit_start].parse().map_err(|_| invalid())?;
        let seconds = match &rest[unit_start..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| invalid())?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    fn no_spaces(answer: &str) -> Result<(), String> {
        if answer.contains(' ') {
            Err("Name cannot contain spaces".to_string())
        } else {
            Ok(())
        }
    }

    fn row(name: &str) -> Vec<String> {
        vec![name.to_string(), format!("{name}.lan")]
    }

    fn select(
        prompter: &mut ScriptedPrompter,
        rows: &[&str],
        incoming: Option<mpsc::Receiver<Vec<String>>>,
    ) -> Result<Vec<usize>, PromptError> {
        let mut rows = rows.iter().map(|name| row(name)).collect();
        let mut incoming = incoming;
        prompter.select(
            "Select systems:",
            &["NAME", "ADDRESS"],
            &mut rows,
            incoming.as_mut().map(|r| r as &mut dyn RowFeed),
            Selection::Many,
        )
    }

    #[test]
    fn confirm_takes_defaults_and_re_asks() {
        let mut p = ScriptedPrompter::new("\nctrl:m\nmaybe\nY\nno   # a comment\n");
        assert!(p.confirm("Continue?", true).unwrap());
        assert!(!p.confirm("Wipe?", false).unwrap());
        assert!(p.confirm("Sure?", false).unwrap());
        assert!(!p.confirm("Again?", true).unwrap());
        assert_eq!(
            p.transcript(),
            "Continue? (yes/no) [default=yes]: \n\
             Wipe? (yes/no) [default=no]: \n\
             Sure? (yes/no) [default=no]: maybe\n\
             Invalid input\n\
             Sure? (yes/no) [default=no]: Y\n\
             Again? (yes/no) [default=yes]: no\n"
        );
        assert!(matches!(
            p.confirm("More?", true),
            Err(PromptError::Script(_))
        ));
    }

    #[test]
    fn text_validates_answers_and_defaults() {
        let mut p = ScriptedPrompter::new("bad name\n\n  micro02  \n\n");
        assert_eq!(
            p.text("Name", Some("micro01"), &no_spaces).unwrap(),
            "micro01"
        );
        assert_eq!(p.text("Name", None, &no_spaces).unwrap(), "micro02");
        // A default that fails validation is asked again too.
        let err = p.text("Other", Some("a b"), &no_spaces).unwrap_err();
        assert!(
            matches!(err, PromptError::Script(ref why) if why.contains("ended at \"Other [default=a b]:\"")),
            "{err}"
        );
        assert_eq!(
            p.transcript(),
            "Name [default=micro01]: bad name\n\
             Invalid input: Name cannot contain spaces\n\
             Name [default=micro01]: \n\
             Name: micro02\n\
             Other [default=a b]: \n\
             Invalid input: Name cannot contain spaces\n"
        );
    }

    #[test]
    fn passphrase_is_validated_and_normalized() {
        let mut p = ScriptedPrompter::new(
            "\naardvark abandoned\naardvark  abandoned abbreviate   abdomen\n",
        );
        let question = "Specify the passphrase for joining the system";
        assert_eq!(
            p.passphrase(question).unwrap(),
            "aardvark abandoned abbreviate abdomen"
        );
        assert!(
            p.transcript()
                .contains("Invalid input: Passphrase cannot be empty\n")
        );
        assert!(
            p.transcript()
                .contains("Invalid input: Passphrase has to contain exactly four elements\n")
        );
    }

    #[test]
    fn warnings_are_marked() {
        let mut p = ScriptedPrompter::new("");
        p.warn("Disk configuration does not meet recommendations\nSecond line");
        assert_eq!(
            p.transcript(),
            "! Disk configuration does not meet recommendations\n  Second line\n"
        );
    }

    #[test]
    fn table_actions() {
        let script = "table:select\ntable:down\ntable:down\ntable:select\ntable:up\ntable:done\n\
                      table:select-all\ntable:select-none\ntable:filter MICRO0\ntable:down\ntable:select\ntable:done\n\
                      table:select-all\ntable:done\n";
        let mut p = ScriptedPrompter::new(script);
        let rows = ["micro01", "micro02", "other"];
        assert_eq!(select(&mut p, &rows, None).unwrap(), vec![0, 2]);
        assert_eq!(select(&mut p, &rows, None).unwrap(), vec![1]);
        assert_eq!(select(&mut p, &rows, None).unwrap(), vec![0, 1, 2]);
        assert!(p.transcript().starts_with("Select systems:\n       NAME     ADDRESS\n   [x] micro01  micro01.lan\n   [x] other    other.lan\n"));
    }

    #[test]
    fn table_script_errors() {
        let mut p = ScriptedPrompter::new("table:select\n");
        let err = select(&mut p, &["a"], None).unwrap_err();
        assert!(
            err.to_string().contains("ended at \"Select systems:\""),
            "{err}"
        );

        let mut p = ScriptedPrompter::new("yes\n");
        let err = select(&mut p, &["a"], None).unwrap_err();
        assert!(
            err.to_string().contains("\"yes\" is not a table: action"),
            "{err}"
        );

        let mut p = ScriptedPrompter::new("table:done\n");
        let err = p.confirm("Continue?", true).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot answer \"Continue? (yes/no) [default=yes]:\""),
            "{err}"
        );

        let mut p = ScriptedPrompter::new("table:expect 1\n");
        let err = select(&mut p, &["a", "b"], None).unwrap_err();
        assert!(
            err.to_string().contains("more rows (2) than expected (1)"),
            "{err}"
        );

        let mut p = ScriptedPrompter::new("table:expect 3\n");
        let err = select(&mut p, &["a", "b"], None).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected 3 rows, 2 arrived and no more can come"),
            "{err}"
        );

        let mut p = ScriptedPrompter::new("table:wait soon\n");
        let err = select(&mut p, &["a"], None).unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn table_waits_for_rows_arriving_live() {
        let (sender, receiver) = mpsc::channel();
        let discovery = thread::spawn(move || {
            for name in ["micro02", "micro03"] {
                thread::sleep(Duration::from_millis(50));
                sender.send(row(name)).unwrap();
            }
            thread::sleep(Duration::from_millis(20));
            sender.send(row("micro04")).unwrap();
        });
        let mut p = ScriptedPrompter::new(
            "table:expect 3\ntable:down\ntable:down\ntable:select\ntable:wait 200ms\ntable:filter 4\ntable:select\ntable:done\n",
        );
        let started = Instant::now();
        assert_eq!(
            select(&mut p, &["micro01"], Some(receiver)).unwrap(),
            vec![2, 3]
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        discovery.join().unwrap();
    }

    #[derive(Debug, Clone, PartialEq)]
    struct System(&'static str);

    impl Row for System {
        fn cells(&self) -> Vec<String> {
            row(self.0)
        }
    }

    #[test]
    fn items_that_arrived_stay_with_the_caller_and_are_what_is_chosen() {
        let (sender, receiver) = mpsc::channel();
        sender.send(System("micro02")).unwrap();
        let mut items = vec![System("micro01")];
        let ask = |script: &str, items: &mut Vec<System>| {
            select_rows(
                &mut ScriptedPrompter::new(script),
                "Select systems:",
                &["NAME", "ADDRESS"],
                items,
                Some(&receiver),
                Selection::Many,
            )
        };
        // A question that fails still hands back the items it received.
        assert!(ask("table:expect 2\n", &mut items).is_err());
        assert_eq!(items, [System("micro01"), System("micro02")]);
        sender.send(System("micro03")).unwrap();
        let chosen = ask(
            "table:expect 3\ntable:down\ntable:select\ntable:down\ntable:select\ntable:done\n",
            &mut items,
        );
        assert_eq!(chosen.unwrap(), [System("micro02"), System("micro03")]);
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        for bad in ["", "5", "ms", "1x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn draw(region: &mut Region, lines: &[&str], suggestion: &str) -> String {
        let mut out = Vec::new();
        let lines: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
        region.draw(&mut out, 10, &lines, suggestion).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A question that shows another machine's text (a disk model, say)
    /// draws its control characters escaped: only the region's own cursor
    /// moves reach the terminal, and wrapping is counted on what is shown.
    #[test]
    fn a_region_neutralises_what_it_draws() {
        let mut region = Region::default();
        let drawn = draw(&mut region, &["a\x1b[2Jb"], "");
        assert_eq!(drawn, "\x1b[1G\x1b[Ja\\u{1b}[2Jb");
        // 13 characters on a 10-column terminal: the second row.
        assert!(draw(&mut region, &[""], "").starts_with("\x1b[1F"));
    }

    #[test]
    fn region_redraws_over_wrapped_lines() {
        let mut region = Region::default();
        assert_eq!(draw(&mut region, &["abc"], ""), "\x1b[1G\x1b[Jabc");
        // 12 characters on a 10-column terminal take two rows.
        assert_eq!(
            draw(&mut region, &["0123456789AB"], ""),
            "\x1b[1G\x1b[J0123456789AB"
        );
        // An exact fit leaves the cursor on the first row.
        assert_eq!(
            draw(&mut region, &["0123456789"], ""),
            "\x1b[1F\x1b[J0123456789"
        );
        assert_eq!(
            draw(&mut region, &["title that wraps", "x"], ""),
            "\x1b[1G\x1b[Jtitle that wraps\r\nx"
        );
        assert_eq!(region.rows_above_cursor, 2);
    }

    #[test]
    fn region_puts_the_cursor_before_the_suggestion() {
        let mut region = Region::default();
        // The suggestion wraps: back up one row to column 8.
        let drawn = draw(&mut region, &["01234567"], "xyzw");
        assert_eq!(
            drawn,
            "\x1b[1G\x1b[J01234567\x1b[2mxyzw\x1b[0m\x1b[1A\x1b[9G"
        );
        assert_eq!(region.rows_above_cursor, 0);
        // The text fills the row: the cursor starts the next one.
        let drawn = draw(&mut region, &["0123456789"], "xyz");
        assert_eq!(drawn, "\x1b[1G\x1b[J0123456789\x1b[2mxyz\x1b[0m\x1b[1G");
        assert_eq!(region.rows_above_cursor, 1);
        assert!(draw(&mut region, &["0"], "").starts_with("\x1b[1F"));
    }

    #[test]
    fn suggests_the_rest_of_the_last_word() {
        assert_eq!(completion("aar"), "dvark");
        assert_eq!(completion("aardvark aba"), "ndoned");
        assert_eq!(completion("aardvark "), "");
        assert_eq!(completion("a"), "");
        assert_eq!(completion("aardvark"), "");
    }
}
