//! The terminal prompts on a real pseudo-terminal.
//!
//! Raw mode, key decoding and in-place redrawing only happen on a terminal, and
//! a test's own stdin is not one. There is no spare binary to put on one
//! either, so each test runs its own test binary again, filtered to itself,
//! on an expectrl pseudo-terminal with `MICROCLOUD_PTY_CHILD` set. In that
//! child the same test function asks the questions with `TtyPrompter` and prints
//! what they returned as `RESULT` lines; the parent types the keys and reads
//! the screen.
//!
//! The pseudo-terminal starts with echo off, so the parent turns it on and only
//! then lets the child start (a "go" line). Raw mode turns echo off; echo being
//! on again at the end shows that the prompts restored the terminal.

use std::error::Error;
use std::io::BufRead;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use expectrl::process::Termios;
use expectrl::session::OsSession;
use expectrl::{Expect, Session};
use microcloud::ui::prompt::{PromptError, Prompter, Selection, TtyPrompter};

type TestResult = Result<(), Box<dyn Error>>;

/// Set in the child: run the prompts instead of driving them.
const CHILD: &str = "MICROCLOUD_PTY_CHILD";

const DOWN: &str = "\x1b[B";
const CTRL_C: &str = "\x03";
const SHOW_CURSOR: &str = "\x1b[?25h";

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs the test function `test` of this binary in a child on a new
/// pseudo-terminal with echo on, and lets it start.
fn spawn_child(test: &str) -> Result<OsSession, Box<dyn Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    let mut session = Session::spawn(command)?;
    session.set_expect_timeout(Some(Duration::from_secs(10)));
    let process = session.get_process_mut();
    process.set_window_size(100, 30)?;
    process.set_echo(true)?;
    session.send_line("go")?;
    Ok(session)
}

/// In the child: waits for a line from the parent.
fn wait_for_parent() -> TestResult {
    std::io::stdin().lock().read_line(&mut String::new())?;
    Ok(())
}

/// Checks that the terminal is restored, lets the child end and waits for its
/// test to pass.
fn finish(mut session: OsSession) -> TestResult {
    assert!(session.get_process().is_echo()?, "echo is back on");
    session.send_line("done")?;
    session.expect("test result: ok. 1 passed")?;
    session.get_process().wait()?;
    Ok(())
}

fn row(name: &str) -> Vec<String> {
    vec![name.to_string(), format!("{name}.lan")]
}

#[test]
fn questions_and_a_live_table() -> TestResult {
    if is_child() {
        return ask_questions_and_a_live_table();
    }
    let mut p = spawn_child("questions_and_a_live_table")?;

    p.expect("Continue? (yes/no) [default=yes]: ")?;
    p.send("maybe\r")?;
    p.expect("Invalid input")?;
    p.expect("Continue? (yes/no) [default=yes]: ")?;
    p.send("n\r")?;
    p.expect("RESULT confirm false")?;

    p.expect("Name [default=micro01]: ")?;
    p.send("bad name\r")?;
    p.expect("Invalid input: Name cannot contain spaces")?;
    p.expect("Name [default=micro01]: ")?;
    p.send("\r")?;
    p.expect("RESULT text micro01")?;

    p.expect("Specify the passphrase for joining the system: ")?;
    p.send("aar")?;
    p.expect("dvark")?; // the suggestion, dimmed after the cursor
    p.send("\t")?;
    p.expect("system: aardvark ")?;
    p.send("aba\tabb\tabd\t\r")?;
    p.expect("RESULT passphrase aardvark abandoned abbreviate abdomen")?;

    p.expect("Select systems:")?;
    p.expect("> [ ] micro01  micro01.lan")?;
    assert!(
        !p.get_process().is_echo()?,
        "raw mode while the table is shown"
    );
    // The last row arrives about a second after the table is shown.
    p.expect("[ ] micro03  micro03.lan")?;
    p.send(" ")?;
    p.expect("> [x] micro01")?;
    p.send(DOWN)?;
    p.send(DOWN)?;
    p.send(" ")?;
    p.expect("> [x] micro03")?;
    p.send("\r")?;
    p.expect("RESULT select [0, 2]")?;
    finish(p)
}

fn ask_questions_and_a_live_table() -> TestResult {
    wait_for_parent()?;
    let mut prompter = TtyPrompter::new()?;
    let confirmed = prompter.confirm("Continue?", true)?;
    println!("RESULT confirm {confirmed}");

    let no_spaces = |answer: &str| {
        if answer.contains(' ') {
            Err("Name cannot contain spaces".to_string())
        } else {
            Ok(())
        }
    };
    let name = prompter.text("Name", Some("micro01"), &no_spaces)?;
    println!("RESULT text {name}");

    let passphrase = prompter.passphrase("Specify the passphrase for joining the system")?;
    println!("RESULT passphrase {passphrase}");

    let (sender, mut receiver) = mpsc::channel();
    let discovery = thread::spawn(move || {
        for name in ["micro02", "micro03"] {
            thread::sleep(Duration::from_millis(500));
            sender.send(row(name)).expect("the table is shown");
        }
    });
    let mut rows = vec![row("micro01")];
    let selected = prompter.select(
        "Select systems:",
        &["NAME", "ADDRESS"],
        &mut rows,
        Some(&mut receiver),
        Selection::Many,
    )?;
    println!("RESULT select {selected:?}");
    discovery.join().expect("the discovery thread");
    wait_for_parent()
}

#[test]
fn ctrl_c_at_a_table_interrupts_and_restores_the_terminal() -> TestResult {
    if is_child() {
        return interrupt_a_table();
    }
    let mut p = spawn_child("ctrl_c_at_a_table_interrupts_and_restores_the_terminal")?;
    p.expect("> [ ] micro01")?;
    assert!(
        !p.get_process().is_echo()?,
        "raw mode while the table is shown"
    );
    p.send(CTRL_C)?;
    p.expect(SHOW_CURSOR)?;
    p.expect("RESULT Interrupted by the user")?;
    finish(p)
}

fn interrupt_a_table() -> TestResult {
    wait_for_parent()?;
    let mut prompter = TtyPrompter::new()?;
    let outcome = prompter.select(
        "Select systems:",
        &["NAME", "ADDRESS"],
        &mut vec![row("micro01")],
        None,
        Selection::Many,
    );
    let error = outcome.expect_err("Ctrl-C interrupts the table");
    assert!(matches!(error, PromptError::Interrupted), "{error:?}");
    println!("RESULT {error}");
    wait_for_parent()
}
