//! The selectable table behind [`Prompter::select`](super::prompt::Prompter::select).
//!
//! [`TableState`] is the whole table as data: rows, filter, cursor and
//! selection, changed only through [`Action`]s. The terminal widget
//! ([`run_tty`]) turns key presses into actions and the scripted prompter turns
//! `table:` lines into the same actions, so a test script exercises exactly the
//! logic a person does. Rows may keep arriving while the table is shown (live
//! discovery of joining systems); [`Incoming`] feeds them in.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind};
use crossterm::{cursor, queue};

use super::printer::neutralise;
use super::prompt::{PromptError, Region, Selection, is_interrupt, terminal_width, typed_char};

/// Rows on screen at once; longer tables scroll with the cursor.
const VIEWPORT: usize = 10;

/// How long the widget waits for a key before it looks for new rows.
const TICK: Duration = Duration::from_millis(100);

/// Room for the cursor and the selection marker in front of each row: ` > [x] `.
const MARKER_WIDTH: usize = 7;

/// One change to a table, from a key press or a script line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Up,
    Down,
    /// Space: select or unselect the row under the cursor.
    Toggle,
    /// Right arrow: select every row the filter shows.
    SelectAll,
    /// Left arrow: unselect every row, shown or not.
    SelectNone,
    /// A typed character extends the filter.
    Type(char),
    Backspace,
}

/// A selectable table, without any terminal.
#[derive(Debug)]
pub(crate) struct TableState {
    headers: Vec<String>,
    /// In arrival order; indices into this are what a selection returns.
    rows: Vec<Vec<String>>,
    selection: Selection,
    selected: BTreeSet<usize>,
    filter: String,
    /// Position of the cursor among the rows the filter shows.
    cursor: usize,
    /// Position of the first shown row on screen.
    top: usize,
}

impl TableState {
    pub(crate) fn new(headers: &[&str], rows: Vec<Vec<String>>, selection: Selection) -> Self {
        TableState {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: rows.into_iter().map(shown).collect(),
            selection,
            selected: BTreeSet::new(),
            filter: String::new(),
            cursor: 0,
            top: 0,
        }
    }

    /// Appends a row that arrived while the table is shown. The cursor stays on
    /// its row because rows only ever arrive at the end.
    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(shown(row));
    }

    /// The rows, in arrival order, for the next showing of the table.
    pub(crate) fn into_rows(self) -> Vec<Vec<String>> {
        self.rows
    }

    /// How many rows exist, filtered or not.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The selected rows as indices in arrival order.
    pub(crate) fn selected(&self) -> Vec<usize> {
        self.selected.iter().copied().collect()
    }

    /// Indices of the rows matching the filter (case-insensitive substring of any cell).
    fn visible(&self) -> Vec<usize> {
        let needle = self.filter.to_lowercase();
        (0..self.rows.len())
            .filter(|&i| {
                needle.is_empty()
                    || self.rows[i]
                        .iter()
                        .any(|cell| cell.to_lowercase().contains(&needle))
            })
            .collect()
    }

    pub(crate) fn apply(&mut self, action: Action) {
        let visible = self.visible();
        match action {
            Action::Up => self.cursor = self.cursor.saturating_sub(1),
            Action::Down => {
                if self.cursor + 1 < visible.len() {
                    self.cursor += 1;
                }
            }
            Action::Toggle => {
                let Some(&row) = visible.get(self.cursor) else {
                    return;
                };
                let was_selected = self.selected.contains(&row);
                if self.selection == Selection::One {
                    self.selected.clear();
                }
                if was_selected {
                    self.selected.remove(&row);
                } else {
                    self.selected.insert(row);
                }
            }
            Action::SelectAll => {
                if self.selection == Selection::Many {
                    self.selected.extend(visible);
                }
            }
            Action::SelectNone => self.selected.clear(),
            Action::Type(c) => {
                self.filter.push(c);
                self.cursor = 0;
            }
            Action::Backspace => {
                self.filter.pop();
                self.cursor = 0;
            }
        }
        // Keep the cursor on screen.
        self.top = self.top.min(self.cursor);
        if self.cursor >= self.top + VIEWPORT {
            self.top = self.cursor + 1 - VIEWPORT;
        }
    }

    /// Column widths over the header and every row, so filtering does not make
    /// the columns jump.
    fn widths(&self) -> Vec<usize> {
        (0..self.headers.len())
            .map(|c| {
                std::iter::once(&self.headers[c])
                    .chain(self.rows.iter().filter_map(|row| row.get(c)))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// One line of the table: a marker, then the cells padded to `widths`.
    fn line<'a>(
        &self,
        widths: &[usize],
        marker: &str,
        cells: impl Iterator<Item = &'a str>,
    ) -> String {
        let mut line = format!("{marker:MARKER_WIDTH$}");
        for (cell, width) in cells.zip(widths) {
            line.push_str(&format!("{cell:width$}  "));
        }
        line.trim_end().to_string()
    }

    fn row_line(&self, widths: &[usize], row: usize, marker: &str) -> String {
        let cells =
            (0..self.headers.len()).map(|c| self.rows[row].get(c).map_or("", String::as_str));
        self.line(widths, marker, cells)
    }

    /// The screen: title, header, the rows in view, the filter and the key help.
    /// Lines other than the title are cut to `width` so none of them wraps.
    pub(crate) fn render(&self, title: &str, width: usize) -> Vec<String> {
        let widths = self.widths();
        let visible = self.visible();
        let filter = if self.filter.is_empty() {
            "<type to filter rows>"
        } else {
            &self.filter
        };
        let mut lines = vec![self.line(&widths, "", self.headers.iter().map(String::as_str))];
        for (position, &row) in visible.iter().enumerate().skip(self.top).take(VIEWPORT) {
            let cursor = if position == self.cursor { ">" } else { " " };
            let mark = if self.selected.contains(&row) {
                "[x]"
            } else {
                "[ ]"
            };
            lines.push(self.row_line(&widths, row, &format!(" {cursor} {mark}")));
        }
        if self.rows.is_empty() {
            lines.push(format!("{:MARKER_WIDTH$}(no rows yet)", ""));
        } else if visible.is_empty() {
            lines.push(format!("{:MARKER_WIDTH$}(no rows match the filter)", ""));
        } else if visible.len() > VIEWPORT {
            let last = (self.top + VIEWPORT).min(visible.len());
            lines.push(format!(
                "{:MARKER_WIDTH$}rows {}-{last} of {}",
                "",
                self.top + 1,
                visible.len()
            ));
        }
        lines.push(format!(" Filter | {filter}"));
        lines.push(" space to select; enter to confirm".to_string());
        lines.push(match self.selection {
            Selection::Many => " ↑/↓ to move; → to select all; ← to select none".to_string(),
            Selection::One => " ↑/↓ to move".to_string(),
        });
        let mut screen = vec![title.to_string()];
        screen.extend(
            lines
                .into_iter()
                .map(|line| line.chars().take(width.saturating_sub(1)).collect()),
        );
        screen
    }

    /// The header and the selected rows, for a transcript.
    pub(crate) fn summary(&self) -> Vec<String> {
        let widths = self.widths();
        let mut lines = vec![self.line(&widths, "", self.headers.iter().map(String::as_str))];
        lines.extend(
            self.selected
                .iter()
                .map(|&row| self.row_line(&widths, row, "   [x]")),
        );
        lines
    }
}

/// `row` as it is shown: its cells come from other machines (names, disk
/// models), so they are neutralised here, where the columns are measured.
fn shown(row: Vec<String>) -> Vec<String> {
    row.into_iter()
        .map(|cell| neutralise(&cell).into_owned())
        .collect()
}

/// Where more rows come from while a table is shown.
pub trait RowFeed {
    /// A row that has already arrived, if any.
    fn try_next(&mut self) -> Feed;
    /// Waits until `deadline` for one more row.
    fn next_before(&mut self, deadline: Instant) -> Feed;
}

/// What a [`RowFeed`] has.
pub enum Feed {
    Row(Vec<String>),
    /// Nothing yet.
    Empty,
    /// No more rows can come.
    Closed,
}

/// Rows that may still arrive for a shown table, until the feed closes. The
/// caller keeps the feed, so rows arriving after the table is closed wait for
/// its next showing.
pub(crate) struct Incoming<'r>(Option<&'r mut dyn RowFeed>);

impl<'r> Incoming<'r> {
    pub(crate) fn new(feed: Option<&'r mut dyn RowFeed>) -> Self {
        Incoming(feed)
    }

    /// True once the feed is closed and every row has been taken.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_none()
    }

    /// Adds the rows that have already arrived; true if there were any.
    pub(crate) fn drain(&mut self, table: &mut TableState) -> bool {
        let mut added = false;
        while let Some(feed) = self.0.as_mut() {
            match feed.try_next() {
                Feed::Row(row) => {
                    table.push(row);
                    added = true;
                }
                Feed::Empty => break,
                Feed::Closed => self.0 = None,
            }
        }
        added
    }

    /// Waits until `deadline` for one more row; false on timeout or when no
    /// more rows can come.
    pub(crate) fn wait_one(&mut self, table: &mut TableState, deadline: Instant) -> bool {
        let Some(feed) = self.0.as_mut() else {
            return false;
        };
        match feed.next_before(deadline) {
            Feed::Row(row) => {
                table.push(row);
                true
            }
            Feed::Empty => false,
            Feed::Closed => {
                self.0 = None;
                false
            }
        }
    }
}

/// A channel of rows is a feed (tests, and tables of plain rows).
impl RowFeed for Receiver<Vec<String>> {
    fn try_next(&mut self) -> Feed {
        match self.try_recv() {
            Ok(row) => Feed::Row(row),
            Err(TryRecvError::Empty) => Feed::Empty,
            Err(TryRecvError::Disconnected) => Feed::Closed,
        }
    }

    fn next_before(&mut self, deadline: Instant) -> Feed {
        match self.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(row) => Feed::Row(row),
            Err(RecvTimeoutError::Timeout) => Feed::Empty,
            Err(RecvTimeoutError::Disconnected) => Feed::Closed,
        }
    }
}

/// The table key bindings, as upstream's.
fn key_action(key: &KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::Right => Action::SelectAll,
        KeyCode::Left => Action::SelectNone,
        KeyCode::Char(' ') => Action::Toggle,
        KeyCode::Backspace => Action::Backspace,
        _ => return typed_char(key).map(Action::Type),
    })
}

/// Shows `table` below `title` on a terminal already in raw mode until Enter
/// (`Ok`) or Ctrl-C/Esc ([`PromptError::Interrupted`]). It redraws on every
/// key and whenever rows arrive; afterwards only the title is left on screen.
pub(crate) fn run_tty(
    out: &mut impl Write,
    title: &str,
    table: &mut TableState,
    incoming: &mut Incoming<'_>,
) -> Result<(), PromptError> {
    let mut region = Region::default();
    queue!(out, cursor::Hide)?;
    let mut stale = true;
    let outcome = loop {
        if stale {
            let width = terminal_width();
            region.draw(out, width, &table.render(title, width), "")?;
            stale = false;
        }
        if event::poll(TICK)? {
            match event::read()? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    if is_interrupt(&key) {
                        break Err(PromptError::Interrupted);
                    }
                    if key.code == KeyCode::Enter {
                        break Ok(());
                    }
                    if let Some(action) = key_action(&key) {
                        table.apply(action);
                        stale = true;
                    }
                }
                Event::Resize(..) => stale = true,
                _ => {}
            }
        }
        stale |= incoming.drain(table);
    };
    region.draw(out, terminal_width(), &[title.to_string()], "")?;
    out.write_all(b"\r\n")?;
    out.flush()?;
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn row(name: &str, address: &str) -> Vec<String> {
        vec![name.to_string(), address.to_string()]
    }

    fn table(selection: Selection) -> TableState {
        TableState::new(
            &["NAME", "ADDRESS"],
            vec![
                row("micro01", "10.0.0.1"),
                row("micro02", "10.0.0.2"),
                row("other", "10.1.0.3"),
            ],
            selection,
        )
    }

    fn apply(table: &mut TableState, actions: &[Action]) {
        for &action in actions {
            table.apply(action);
        }
    }

    #[test]
    fn moves_and_toggles() {
        let mut t = table(Selection::Many);
        apply(
            &mut t,
            &[
                Action::Toggle,
                Action::Down,
                Action::Down,
                Action::Down,
                Action::Toggle,
            ],
        );
        assert_eq!(t.selected(), vec![0, 2]);
        apply(
            &mut t,
            &[
                Action::Up,
                Action::Up,
                Action::Up,
                Action::Toggle,
                Action::Toggle,
            ],
        );
        assert_eq!(t.selected(), vec![0, 2]);
        apply(&mut t, &[Action::Toggle]);
        assert_eq!(t.selected(), vec![2]);
    }

    #[test]
    fn select_all_and_none() {
        let mut t = table(Selection::Many);
        apply(&mut t, &[Action::SelectAll]);
        assert_eq!(t.selected(), vec![0, 1, 2]);
        apply(&mut t, &[Action::SelectNone]);
        assert!(t.selected().is_empty());
    }

    #[test]
    fn one_keeps_a_single_row() {
        let mut t = table(Selection::One);
        apply(&mut t, &[Action::Toggle, Action::Down, Action::Toggle]);
        assert_eq!(t.selected(), vec![1]);
        apply(&mut t, &[Action::SelectAll]);
        assert_eq!(t.selected(), vec![1]);
        apply(&mut t, &[Action::Toggle]);
        assert!(t.selected().is_empty());
    }

    #[test]
    fn filter_is_case_insensitive_and_limits_select_all() {
        let mut t = table(Selection::Many);
        apply(
            &mut t,
            &[Action::Down, Action::Type('M'), Action::Type('I')],
        );
        // Filtering puts the cursor back on the first match.
        apply(&mut t, &[Action::Down, Action::Toggle]);
        assert_eq!(t.selected(), vec![1]);
        apply(&mut t, &[Action::Type('x')]);
        apply(&mut t, &[Action::Toggle, Action::SelectAll]);
        assert_eq!(t.selected(), vec![1], "nothing matches \"mix\"");
        apply(
            &mut t,
            &[
                Action::Backspace,
                Action::Backspace,
                Action::Backspace,
                Action::Type('1'),
                Action::Type('.'),
            ],
        );
        apply(&mut t, &[Action::SelectAll]);
        assert_eq!(
            t.selected(),
            vec![1, 2],
            "only 10.1.0.3 matches \"1.\" besides the selected row"
        );
    }

    #[test]
    fn renders_markers_cursor_and_help() {
        let mut t = table(Selection::Many);
        apply(&mut t, &[Action::Down, Action::Toggle]);
        let screen = t.render("Select systems:", 80);
        assert_eq!(
            screen,
            vec![
                "Select systems:",
                "       NAME     ADDRESS",
                "   [ ] micro01  10.0.0.1",
                " > [x] micro02  10.0.0.2",
                "   [ ] other    10.1.0.3",
                " Filter | <type to filter rows>",
                " space to select; enter to confirm",
                " ↑/↓ to move; → to select all; ← to select none",
            ]
        );
        assert_eq!(
            t.summary(),
            vec!["       NAME     ADDRESS", "   [x] micro02  10.0.0.2"]
        );
        let narrow = t.render("A long title is never cut", 12);
        assert_eq!(narrow[0], "A long title is never cut");
        assert!(
            narrow[1..].iter().all(|line| line.chars().count() <= 11),
            "{narrow:?}"
        );
    }

    /// Names and disk models come from other machines: shown in a table,
    /// their control characters are escaped, and the columns still line up.
    #[test]
    fn remote_cells_cannot_steer_the_terminal() {
        let mut t = TableState::new(
            &["NAME", "ADDRESS"],
            vec![row("micro2\x1b[2J", "10.0.0.2")],
            Selection::Many,
        );
        t.push(row("\rmicro3\u{9b}1A", "10.0.0.3"));
        let screen = t.render("Select systems:", 80);
        assert_eq!(
            &screen[1..4],
            [
                r"       NAME                 ADDRESS",
                r" > [ ] micro2\u{1b}[2J      10.0.0.2",
                r"   [ ] \u{d}micro3\u{9b}1A  10.0.0.3",
            ]
        );
    }

    #[test]
    fn scrolls_long_tables() {
        let rows = (0..25).map(|i| row(&format!("m{i:02}"), "addr")).collect();
        let mut t = TableState::new(&["NAME", "ADDRESS"], rows, Selection::Many);
        for _ in 0..12 {
            t.apply(Action::Down);
        }
        let screen = t.render("t", 80);
        assert!(
            screen.contains(&"   [ ] m03   addr".to_string()),
            "{screen:#?}"
        );
        assert!(
            screen.contains(&" > [ ] m12   addr".to_string()),
            "{screen:#?}"
        );
        assert!(
            !screen
                .iter()
                .any(|line| line.contains("m02") || line.contains("m13"))
        );
        assert!(
            screen.contains(&"       rows 4-13 of 25".to_string()),
            "{screen:#?}"
        );
    }

    #[test]
    fn incoming_rows_keep_the_cursor_and_close() {
        let (sender, receiver) = mpsc::channel();
        let mut receiver = receiver;
        let mut incoming = Incoming::new(Some(&mut receiver));
        let mut t = table(Selection::Many);
        t.apply(Action::Down);
        sender.send(row("micro04", "10.0.0.4")).unwrap();
        assert!(incoming.drain(&mut t));
        assert!(!incoming.drain(&mut t));
        assert_eq!(t.len(), 4);
        t.apply(Action::Toggle);
        assert_eq!(t.selected(), vec![1]);
        drop(sender);
        assert!(!incoming.wait_one(&mut t, Instant::now() + Duration::from_secs(5)));
        assert!(incoming.is_closed());
    }
}
