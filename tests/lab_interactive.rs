//! Acceptance tests of the interactive `microcloud init`, `add` and `join`:
//! each runs as a lab machine (`scripts/lab exec I ...`) on its own real
//! pseudo-terminal, and the test reads the screens and types the keys a person
//! would: the passphrase shown on the initiator, typed (or completed with Tab)
//! on the joiners, the fingerprints compared across screens, the systems
//! chosen in the live table, the defaults accepted.
//!
//! Lab tests: they need root and LXD and are ignored by plain `cargo test`;
//! run them with `scripts/test-lab` (or `cargo test --test lab_interactive --
//! --ignored --test-threads=1` as root after `scripts/lab install`). Most lab
//! machines have no disks, so local storage goes to LXD's storage directory;
//! one test gives them a mounted system disk and a blank one each.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{Lab, MICROCLOUD, lab, lab_dir};
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{Expect, Needle, Regex, Session};

/// How long any one screen may take to show what a test waits for.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Forming the cluster takes seconds; this much time means a stall (as LXD
/// 5.0's socket once stalled joins for minutes), which must fail the test.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a screen is read while waiting.
const POLL: Duration = Duration::from_millis(25);

/// Columns of every test terminal.
const WIDTH: u16 = 160;

const ENTER: &str = "\r";
const TAB: &str = "\t";
const SPACE: &str = " ";
const DOWN: &str = "\x1b[B";
const RIGHT: &str = "\x1b[C";
const CTRL_C: &str = "\x03";

const JOINERS: [usize; 2] = [2, 3];

/// `microcloud ARGS` as one lab machine, on its own pseudo-terminal.
struct Screen {
    name: String,
    /// When the program was started, for the benchmark figure (scripts/bench --interactive).
    started: Instant,
    session: OsSession,
    /// Everything read so far, without escape sequences, for failure messages.
    seen: String,
}

impl Screen {
    fn spawn(i: usize, args: &[&str]) -> Screen {
        let mut command = lab(&["exec", &i.to_string(), MICROCLOUD]);
        command.args(args);
        let name = format!("micro{i} `microcloud {}`", args.join(" "));
        let started = Instant::now();
        let mut session = Session::spawn(command)
            .unwrap_or_else(|e| panic!("{name}: cannot start on a pseudo-terminal: {e}"));
        // A wide terminal, so disk paths are shown whole.
        session
            .get_process_mut()
            .set_window_size(WIDTH, 50)
            .unwrap_or_else(|e| panic!("{name}: cannot size the terminal: {e}"));
        Screen {
            name,
            started,
            session,
            seen: String::new(),
        }
    }

    /// Waits until `text` appears after what earlier waits read; returns
    /// what this wait read, up to the end of the first `text`, as plain text.
    fn expect(&mut self, text: &str) -> String {
        self.wait(&format!("{text:?}"), &text, TIMEOUT)
    }

    /// [`Screen::expect`] for a line that comes only once the cluster has formed.
    fn expect_formed(&mut self, text: &str) -> String {
        self.wait(&format!("{text:?}"), &text, FORMATION_TIMEOUT)
    }

    /// Waits until `pattern` matches; returns what this wait read, up to the
    /// end of the last match, as plain text.
    fn expect_re(&mut self, pattern: &str) -> String {
        self.wait(&format!("/{pattern}/"), &Regex(pattern), TIMEOUT)
    }

    fn wait<N: Needle>(&mut self, what: &str, needle: &N, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.session.check(needle) {
                Ok(found) if !found.is_empty() => {
                    let text = plain(found.as_bytes());
                    self.seen.push_str(&text);
                    return text;
                }
                Ok(_) => {}
                Err(err) if is_end(&err) => {
                    self.read_rest();
                    panic!(
                        "{} ended before {what} appeared; its screen:\n{}",
                        self.name,
                        self.tail()
                    );
                }
                Err(err) => panic!("{}: reading the terminal: {err}", self.name),
            }
            if Instant::now() >= deadline {
                self.read_rest();
                panic!(
                    "{}: {what} did not appear within {} s; its screen:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Types `keys`.
    fn send(&mut self, keys: &str) {
        self.session
            .send(keys)
            .unwrap_or_else(|e| panic!("{}: typing {keys:?}: {e}", self.name));
    }

    /// Reads whatever has arrived; true once the program closed the terminal.
    fn read_rest(&mut self) -> bool {
        self.read_rest_quietly()
            .unwrap_or_else(|err| panic!("{}: reading the terminal: {err}", self.name))
    }

    fn read_rest_quietly(&mut self) -> Result<bool, expectrl::Error> {
        match self.session.check(Regex("(?s).+")) {
            Ok(found) => {
                self.seen.push_str(&plain(found.as_bytes()));
                Ok(false)
            }
            Err(err) if is_end(&err) => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// [`Screen::finish`] of a command that must have succeeded.
    fn finish_ok(self) {
        let name = self.name.clone();
        let (code, rest) = self.finish();
        assert_eq!(code, 0, "{name}:\n{rest}");
    }

    /// Reads the screen to the end and returns the exit code and everything
    /// shown since the last wait.
    fn finish(mut self) -> (i32, String) {
        let before = self.seen.len();
        let deadline = Instant::now() + TIMEOUT;
        while !self.read_rest() {
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {} s; its screen:\n{}",
                self.name,
                TIMEOUT.as_secs(),
                self.tail()
            );
            thread::sleep(POLL);
        }
        let status = self
            .session
            .get_process()
            .wait()
            .unwrap_or_else(|e| panic!("{}: waiting for it: {e}", self.name));
        let WaitStatus::Exited(_, code) = status else {
            panic!("{} did not exit normally: {status:?}", self.name);
        };
        let rest = self.seen[before..].to_string();
        assert!(
            !rest.contains("panicked"),
            "{} panicked:\n{}",
            self.name,
            self.tail()
        );
        (code, rest)
    }

    /// The end of the screen, for failure messages.
    fn tail(&self) -> String {
        let chars: Vec<char> = self.seen.chars().collect();
        let start = chars.len().saturating_sub(4000);
        chars[start..].iter().collect()
    }
}

impl Drop for Screen {
    /// A failing test shows every machine's screen, not only the one it waited on.
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.read_rest_quietly();
            eprintln!("--- screen of {}:\n{}\n---", self.name, self.tail());
        }
    }
}

/// EOF, or EIO: what reading a pseudo-terminal gives once its program is gone.
fn is_end(err: &expectrl::Error) -> bool {
    match err {
        expectrl::Error::Eof => true,
        expectrl::Error::IO(io) => io.raw_os_error() == Some(nix::errno::Errno::EIO as i32),
        _ => false,
    }
}

/// Terminal output as text: escape sequences removed, `\r\n` as `\n`.
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters, then one final byte in @..~.
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out.replace("\r\n", "\n")
}

/// The rest of the last line of `text` that contains `prefix`, after it.
fn after<'t>(text: &'t str, prefix: &str) -> &'t str {
    let line = text
        .lines()
        .rfind(|line| line.contains(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    line.split_once(prefix).unwrap().1.trim_end()
}

/// The first word after `prefix` on the last line that contains it.
fn word_after<'t>(text: &'t str, prefix: &str) -> &'t str {
    after(text, prefix).split(' ').next().unwrap_or_default()
}

/// `microcloud init` on machine 1 up to the system table.
struct Initiator {
    screen: Screen,
    passphrase: String,
    fingerprint: String,
}

fn start_init() -> Initiator {
    let mut screen = init_screen();
    continue_without_optional_services(&mut screen);
    session_shown(screen)
}

/// `microcloud init` on machine 1, after its first question.
fn init_screen() -> Screen {
    let mut screen = Screen::spawn(1, &["init"]);
    screen.expect("Do you want to set up more than one cluster member? (yes/no) [default=yes]: ");
    screen.send(ENTER);
    screen
}

/// `microcloud add ARGS` on machine 1 up to the system table.
fn start_add(args: &[&str]) -> Initiator {
    let mut screen = Screen::spawn(1, &[&["add"], args].concat());
    continue_without_optional_services(&mut screen);
    session_shown(screen)
}

/// The lab has neither MicroCeph nor MicroOVN: go on with LXD alone.
fn continue_without_optional_services(screen: &mut Screen) {
    screen.expect("! MicroCeph, MicroOVN not found");
    screen.expect("Continue anyway? (yes/no) [default=yes]: ");
    screen.send(ENTER);
}

/// Reads the passphrase and fingerprint an initiator shows, up to its empty
/// system table.
fn session_shown(mut screen: Screen) -> Initiator {
    let shown = screen.expect_re(r"When requested, enter the passphrase: [a-z -]+\r?\n");
    let passphrase = after(&shown, "When requested, enter the passphrase: ").to_string();
    assert_eq!(passphrase.split(' ').count(), 4, "{passphrase:?}");
    let shown = screen.expect(" is displayed on joining systems.");
    let fingerprint = word_after(&shown, "Verify the fingerprint ").to_string();
    screen.expect("Select those that should join the cluster:");
    screen.expect("(no rows yet)");
    Initiator {
        screen,
        passphrase,
        fingerprint,
    }
}

/// Selects every row of the system table (Right arrow), and waits until each
/// joiner has its confirmation.
fn select_every_system(initiator: &mut Initiator, joiners: &mut [Screen]) {
    initiator.screen.send(RIGHT);
    initiator.screen.send(ENTER);
    for joiner in joiners {
        joiner.expect("Received confirmation from system micro1");
    }
}

/// Selects the system table's one row, machine `i`, and waits until its
/// joiner is confirmed.
fn select_the_only_system(initiator: &mut Initiator, joiner: &mut Screen, i: usize) {
    let m1 = &mut initiator.screen;
    m1.send(SPACE);
    m1.expect_re(&format!(r"> \[x\] micro{i}"));
    m1.send(ENTER);
    joiner.expect("Received confirmation from system micro1");
}

/// Picks `address`, the first row of the address table.
fn choose_first_address(screen: &mut Screen, address: &str) {
    screen.expect("Select an address for MicroCloud's internal traffic:");
    screen.expect(&format!("> [ ] {address}"));
    screen.send(SPACE);
    screen.send(ENTER);
}

/// How a joiner enters the passphrase.
enum Typing<'a> {
    /// Every letter.
    Full(&'a str),
    /// Three letters and Tab per word.
    Completed(&'a str),
}

/// `microcloud join` on machine `i`, typing the passphrase.
fn start_join(i: usize, typing: Typing) -> Screen {
    start_join_on(i, typing, None)
}

/// [`start_join`] on a machine with several addresses: `address` is chosen
/// in the address table first.
fn start_join_on(i: usize, typing: Typing, address: Option<&str>) -> Screen {
    let mut screen = Screen::spawn(i, &["join"]);
    if let Some(address) = address {
        choose_first_address(&mut screen, address);
    }
    screen.expect("Specify the passphrase for joining the system: ");
    match typing {
        Typing::Full(passphrase) => screen.send(passphrase),
        Typing::Completed(passphrase) => {
            let mut completed = String::new();
            for word in passphrase.split(' ') {
                screen.send(&word[..3]);
                screen.send(TAB);
                // Tab completed the word and moved on to the next one.
                completed.push_str(word);
                completed.push(' ');
                screen.expect(&format!("system: {completed}"));
            }
        }
    }
    screen.send(ENTER);
    screen
}

/// A joiner that was accepted: it shows the initiator's fingerprint, which
/// must be the one the initiator shows, and its own; returns its own.
fn joined_screen(screen: &mut Screen, initiator: &Initiator, lab: &Lab) -> String {
    let shown = screen.expect_re(r"Found system micro1 at \S+ using fingerprint [0-9a-f]{12}");
    assert_eq!(
        after(&shown, "Found system micro1 at "),
        format!(
            "{} using fingerprint {}",
            lab.address(1),
            initiator.fingerprint
        ),
        "{} does not see micro1 as micro1 shows itself",
        screen.name
    );
    let shown = screen.expect(" is displayed on system micro1.");
    word_after(&shown, "Verify the fingerprint ").to_string()
}

/// Waits until the initiator's table shows `count` joiners; returns each
/// row's address and fingerprint by name.
fn wait_for_rows(initiator: &mut Initiator, count: usize) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    while rows.len() < count {
        // Each drawing of the table ends with its filter line.
        let drawn = initiator.screen.expect(" Filter | ");
        for line in drawn.lines() {
            let Some((_, row)) = line.split_once("] ") else {
                continue;
            };
            if let [name, address, fingerprint] = row.split_whitespace().collect::<Vec<_>>()[..] {
                rows.insert(
                    name.to_string(),
                    (address.to_string(), fingerprint.to_string()),
                );
            }
        }
    }
    rows
}

/// Checks that the table shows each joiner with the address and fingerprint
/// the joiner itself shows.
fn assert_rows_match(
    rows: &BTreeMap<String, (String, String)>,
    fingerprints: &BTreeMap<usize, String>,
    lab: &Lab,
) {
    for (i, fingerprint) in fingerprints {
        let name = format!("micro{i}");
        let (address, shown) = rows
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not in the table: {rows:?}"));
        assert_eq!(*address, lab.address(*i), "{name}'s address in the table");
        assert_eq!(
            shown, fingerprint,
            "the table shows another fingerprint for {name} than {name} shows"
        );
    }
}

/// After the systems are chosen: every default, then the outcome everywhere;
/// the answers are saved as a preseed at `save_to` if given.
fn accept_defaults_and_finish(
    mut initiator: Initiator,
    mut joiners: Vec<Screen>,
    lab: &Lab,
    save_to: Option<&Path>,
) {
    let m1 = &mut initiator.screen;
    for i in JOINERS {
        m1.expect(&format!("Selected micro{i} at {}", lab.address(i)));
    }
    for joiner in &mut joiners {
        joiner.expect("Received confirmation from system micro1");
    }
    m1.expect("! No disks available for local storage on micro1, micro2, micro3");
    m1.expect("Would you like to set up local storage in LXD's storage directory on every system instead? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("MicroCloud will form an LXD cluster of 3 member(s), initiated by micro1:");
    m1.expect("storage pool \"local\" (dir) on LXD's storage directory");
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    let applying = Instant::now();
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    let last_joiner = joiners.iter().map(|j| j.started).max().expect("joiners");
    eprintln!(
        "TIMING interactive init: plan approved to \"MicroCloud is ready\": {:.2} s; last joiner started to ready: {:.2} s",
        applying.elapsed().as_secs_f64(),
        last_joiner.elapsed().as_secs_f64()
    );
    m1.expect("Would you like to save these answers as a preseed file, to set up the same cluster again? (yes/no) [default=no]: ");
    match save_to {
        None => m1.send(ENTER),
        Some(path) => {
            m1.send(&format!("yes{ENTER}"));
            m1.expect(
                "Where should the preseed file be written? [default=microcloud-preseed.yaml]: ",
            );
            m1.send(&format!("{}{ENTER}", path.display()));
            m1.expect(&format!("Preseed written to {}", path.display()));
        }
    }
    all_succeed(initiator, joiners);
    lab.assert_cluster(3, |i| {
        format!("{}/m{i}/lxd/storage-pools/local", lab_dir().display())
    });
}

/// Every joiner says it joined, and every screen ends with exit status 0.
fn all_succeed(initiator: Initiator, mut joiners: Vec<Screen>) {
    for joiner in &mut joiners {
        joiner.expect_formed("Successfully joined the MicroCloud cluster");
    }
    for screen in std::iter::once(initiator.screen).chain(joiners) {
        screen.finish_ok();
    }
}

/// `join` on micro2 (passphrase typed in full) and micro3 (typed with Tab
/// completion); returns their screens once both rows show on the initiator,
/// with fingerprints matching across screens.
fn join_both(initiator: &mut Initiator, passphrase: &str, lab: &Lab) -> Vec<Screen> {
    join_both_on(initiator, passphrase, lab, false)
}

/// [`join_both`], choosing each joiner's lab address first when
/// `address_tables` (machines with an underlay address too).
fn join_both_on(
    initiator: &mut Initiator,
    passphrase: &str,
    lab: &Lab,
    address_tables: bool,
) -> Vec<Screen> {
    let address = |i| address_tables.then(|| lab.address(i));
    let mut joiners = vec![
        start_join_on(2, Typing::Full(passphrase), address(2).as_deref()),
        start_join_on(3, Typing::Completed(passphrase), address(3).as_deref()),
    ];
    let fingerprints: BTreeMap<usize, String> = JOINERS
        .into_iter()
        .zip(&mut joiners)
        .map(|(i, joiner)| (i, joined_screen(joiner, initiator, lab)))
        .collect();
    let rows = wait_for_rows(initiator, JOINERS.len());
    assert_rows_match(&rows, &fingerprints, lab);
    joiners
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn init_and_two_joins_at_terminals_form_a_cluster() {
    let lab = Lab::up(3);
    let start = Instant::now();
    let mut initiator = start_init();
    let passphrase = initiator.passphrase.clone();
    let joiners = join_both(&mut initiator, &passphrase, &lab);

    // Space, Down, Space: both rows selected, the cursor on the second.
    let m1 = &mut initiator.screen;
    m1.send(SPACE);
    m1.expect_re(r"> \[x\] micro\d");
    m1.send(DOWN);
    m1.expect_re(r"   \[x\] micro\d[^\r\n]*\r?\n > \[ \] micro\d");
    m1.send(SPACE);
    m1.expect_re(r"   \[x\] micro\d[^\r\n]*\r?\n > \[x\] micro\d");
    m1.send(ENTER);
    let saved = tempfile::tempdir().unwrap();
    let preseed = saved.path().join("saved.yaml");
    accept_defaults_and_finish(initiator, joiners, &lab, Some(&preseed));
    eprintln!(
        "TIMING interactive init and two joins, first key to cluster checked: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    drop(lab);

    // The saved answers, with a passphrase added as its header says, form the
    // same cluster on fresh machines.
    let text = std::fs::read_to_string(&preseed).unwrap();
    assert!(
        !text.contains(&passphrase),
        "the passphrase was saved:\n{text}"
    );
    assert!(text.contains("# session_passphrase: ..."), "{text}");
    let yaml = format!("session_passphrase: saved answers again\n{text}");
    let lab = Lab::up(3);
    lab.assert_untouched(1);
    let children: Vec<_> = (1..=3).map(|i| lab.spawn(i, &["preseed"], &yaml)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }
    lab.assert_cluster(3, |i| {
        format!("{}/m{i}/lxd/storage-pools/local", lab_dir().display())
    });
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn a_wrong_passphrase_at_a_terminal_fails_and_joining_again_works() {
    let lab = Lab::up(3);
    let mut initiator = start_init();
    let passphrase = initiator.passphrase.clone();
    let mut wrong = "aardvark abandoned abbreviate abdomen";
    if wrong == passphrase {
        wrong = "abide abrasive abroad abruptly";
    }
    let mut first_try = start_join(2, Typing::Full(wrong));
    first_try.expect("Failed to join system \"micro1\": Wrong passphrase");
    let name = first_try.name.clone();
    let (code, rest) = first_try.finish();
    assert_ne!(code, 0, "{name}:\n{rest}");

    let joiners = join_both(&mut initiator, &passphrase, &lab);

    // Right arrow selects every row.
    let m1 = &mut initiator.screen;
    m1.send(RIGHT);
    m1.expect_re(r"> \[x\] micro\d[^\r\n]*\r?\n   \[x\] micro\d");
    m1.send(ENTER);
    accept_defaults_and_finish(initiator, joiners, &lab, None);
}

/// micro1 and micro2 form a cluster by preseed, each system's entry ending
/// with `extra(i)` (its storage, say).
fn form_two_of_three(lab: &Lab, extra: impl Fn(usize) -> String) {
    let mut yaml = format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nsession_passphrase: two of three\nsystems:\n",
        common::lab_subnet()
    );
    for i in 1..=2 {
        yaml.push_str(&format!("- name: micro{i}\n{}", extra(i)));
    }
    let children: Vec<_> = (1..=2).map(|i| lab.spawn(i, &["preseed"], &yaml)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn add_at_a_terminal_previews_then_grows_a_two_member_cluster_to_three() {
    let lab = Lab::up(3);
    // micro1 and micro2 form a cluster with directory pools.
    form_two_of_three(&lab, |i| {
        format!(
            "  storage:\n    local:\n      path: {}\n",
            lab.storage_dir(i)
        )
    });

    // A dry run shows the plan and changes nothing on micro3.
    let mut initiator = start_add(&["--dry-run"]);
    let mut joiner = start_join(3, Typing::Full(&initiator.passphrase.clone()));
    joined_screen(&mut joiner, &initiator, &lab);
    wait_for_rows(&mut initiator, 1);
    initiator.screen.send(RIGHT);
    initiator.screen.expect_re(r"> \[x\] micro3");
    initiator.screen.send(ENTER);
    initiator.screen.expect(
        "MicroCloud will add 1 member(s) to the LXD cluster of micro1, micro2 (from micro1):",
    );
    initiator
        .screen
        .expect("Dry run: nothing was changed on any machine");
    joiner.expect("Dry run: the initiator showed its plan; nothing was changed");
    for screen in [initiator.screen, joiner] {
        screen.finish_ok();
    }
    lab.assert_untouched(3);

    let mut initiator = start_add(&[]);
    let mut joiner = start_join(3, Typing::Completed(&initiator.passphrase.clone()));
    let fingerprint = joined_screen(&mut joiner, &initiator, &lab);
    let rows = wait_for_rows(&mut initiator, 1);
    assert_rows_match(&rows, &BTreeMap::from([(3, fingerprint)]), &lab);

    select_the_only_system(&mut initiator, &mut joiner, 3);
    let m1 = &mut initiator.screen;
    m1.expect(&format!("Selected micro3 at {}", lab.address(3)));
    // The cluster's pool and network are used as they are: no questions.
    m1.expect(
        "MicroCloud will add 1 member(s) to the LXD cluster of micro1, micro2 (from micro1):",
    );
    m1.expect("storage pool \"local\" (dir) on LXD's storage directory");
    m1.expect("network \"lxdbr0\": as on the other members");
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    joiner.expect_formed("Successfully joined the MicroCloud cluster");
    for screen in [initiator.screen, joiner] {
        screen.finish_ok();
    }
    lab.assert_cluster(3, |i| match i {
        3 => format!("{}/m3/lxd/storage-pools/local", lab_dir().display()),
        _ => lab.storage_dir(i),
    });
    // The new member got the cluster's network too.
    let network = lab.lxd_get(1, "/1.0/networks/lxdbr0?target=micro3");
    assert_eq!(network["status"], "Created", "{network}");
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn add_at_a_terminal_gives_the_local_pool_the_cluster_lacks_to_old_and_new_members() {
    let lab = Lab::up(3);
    // micro1 and micro2 form a cluster without local storage.
    form_two_of_three(&lab, |_| String::new());
    let pools = lab.lxd_get(1, "/1.0/storage-pools");
    assert_eq!(pools, serde_json::json!([]), "{pools}");

    let mut initiator = start_add(&[]);
    let mut joiner = start_join(3, Typing::Full(&initiator.passphrase.clone()));
    joined_screen(&mut joiner, &initiator, &lab);
    wait_for_rows(&mut initiator, 1);
    select_the_only_system(&mut initiator, &mut joiner, 3);
    let m1 = &mut initiator.screen;
    // The local storage question covers the old members too (their LXD
    // reports no spare disk, through micro1's).
    m1.expect("! No disks available for local storage on micro1, micro2, micro3");
    m1.expect("Would you like to set up local storage in LXD's storage directory on every system instead? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("micro2: member");
    m1.expect("storage pool \"local\" (dir) on LXD's storage directory");
    m1.expect("profile \"default\": root disk on pool local");
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    joiner.expect_formed("Successfully joined the MicroCloud cluster");
    for screen in [initiator.screen, joiner] {
        screen.finish_ok();
    }
    lab.assert_cluster(3, |i| {
        format!("{}/m{i}/lxd/storage-pools/local", lab_dir().display())
    });

    // A container on an old member runs on its `local` pool.
    lab.import_busybox();
    common::ok(&lab.exec(1, &["lxc", "launch", "busybox", "c2", "--target", "micro2"]));
    lab.wait_for_ipv4("c2");
    let instance = lab.lxd_get(1, "/1.0/instances/c2");
    assert_eq!(instance["location"], "micro2", "{instance}");
    assert_eq!(
        instance["expanded_devices"]["root"]["pool"], "local",
        "{instance}"
    );
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn ctrl_c_at_the_system_table_aborts_everywhere_and_changes_nothing() {
    let lab = Lab::up(3);
    // Before any cluster exists, the commands for one refuse at a terminal too.
    for args in [&["add"][..], &["service", "add"]] {
        let (code, out) = Screen::spawn(1, args).finish();
        assert_eq!(code, 1, "{args:?}:\n{out}");
        assert!(
            out.contains("MicroCloud is not initialized on \"micro1\": its LXD is not clustered. Run `microcloud init` first"),
            "{args:?}:\n{out}"
        );
    }
    let mut initiator = start_init();
    let passphrase = initiator.passphrase.clone();
    let mut joiners: Vec<Screen> = JOINERS
        .into_iter()
        .map(|i| start_join(i, Typing::Full(&passphrase)))
        .collect();
    for joiner in &mut joiners {
        joined_screen(joiner, &initiator, &lab);
    }
    wait_for_rows(&mut initiator, JOINERS.len());

    initiator.screen.send(CTRL_C);
    let name = initiator.screen.name.clone();
    let (code, rest) = initiator.screen.finish();
    assert_ne!(code, 0, "{name} exits with an error after Ctrl-C:\n{rest}");
    assert!(rest.contains("Interrupted by the user"), "{name}:\n{rest}");
    for mut joiner in joiners {
        joiner.expect("Initiator aborted the setup");
        let name = joiner.name.clone();
        let (code, rest) = joiner.finish();
        assert_ne!(code, 0, "{name}:\n{rest}");
    }
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn the_disk_table_offers_each_blank_disk_and_never_a_system_disk() {
    // Each machine: a mounted ext4 system disk (LXD 5.0 lists it as blank)
    // and one blank disk.
    let lab = Lab::up_with_disks(3, 1);
    let mut initiator = start_init();
    let passphrase = initiator.passphrase.clone();
    let mut joiners = join_both(&mut initiator, &passphrase, &lab);
    select_every_system(&mut initiator, &mut joiners);
    let m1 = &mut initiator.screen;
    m1.expect("Would you like to set up local storage? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("Select exactly one disk from each cluster member:");
    // Rows come in natural order: micro3's blank disk is the last one drawn.
    let table = m1.expect("virtio-lab-micro3-disk1");
    for i in lab.machines() {
        assert!(
            table.contains(&lab.blank_disks(i)[0]),
            "micro{i}'s blank disk is not offered:\n{table}"
        );
        let system = lab.system_disk(i);
        assert!(
            !table.contains(&system),
            "the mounted system disk {system} is offered:\n{table}"
        );
    }
    // LXD 5.0 cannot wipe (no storage_pool_source_wipe): no wipe question.
    m1.send(RIGHT);
    m1.send(ENTER);
    m1.expect("MicroCloud will form an LXD cluster of 3 member(s), initiated by micro1:");
    for i in lab.machines() {
        m1.expect(&format!(
            "storage pool \"local\" (btrfs) on {}\r",
            lab.blank_disks(i)[0]
        ));
    }
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    m1.expect("Would you like to save these answers as a preseed file");
    m1.send(ENTER);
    all_succeed(initiator, joiners);
    lab.assert_cluster(3, |i| lab.fs_uuid(i, &lab.blank_disks(i)[0]));
}

#[test]
#[ignore = "lab test: needs root, LXD, Ceph and OVN; run scripts/test-lab"]
fn init_at_a_terminal_sets_up_lxd_microceph_and_microovn() {
    // Each machine: MicroCeph and MicroOVN (emulated, over real Ceph and
    // OVN), two blank disks, an uplink and an underlay address.
    let lab = Lab::up_with_services(3, 2);
    let info = lab.info();
    let mut screen = init_screen();
    // The underlay bridge has an address too: MicroCloud's is the first, on eth0.
    choose_first_address(&mut screen, &lab.address(1));
    let mut initiator = session_shown(screen);
    let passphrase = initiator.passphrase.clone();
    let mut joiners = join_both_on(&mut initiator, &passphrase, &lab, true);
    select_every_system(&mut initiator, &mut joiners);
    let m1 = &mut initiator.screen;
    // Local storage: each machine's first blank disk (the filter shows just those).
    m1.expect("Would you like to set up local storage? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("Select exactly one disk from each cluster member:");
    m1.send("disk1");
    m1.send(RIGHT);
    m1.send(ENTER);
    // Distributed storage: the disks left, all wiped, not encrypted; Ceph's
    // networks on the MicroCloud subnet. LXD 5.0.2 lacks
    // storage_cephfs_create_missing, so CephFS is not offered, as upstream.
    m1.expect("Would you like to set up distributed storage? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("Select from the available unpartitioned disks:");
    let table = m1.expect("virtio-lab-micro3-disk2");
    assert!(
        !table.contains("disk1"),
        "a local disk is offered to Ceph:\n{table}"
    );
    m1.send(RIGHT);
    m1.send(ENTER);
    m1.expect("Select which disks to wipe:");
    m1.send(RIGHT);
    m1.send(ENTER);
    m1.expect("Do you want to encrypt the selected disks? (yes/no) [default=no]: ");
    m1.send(ENTER);
    m1.expect("would you like your Ceph internal traffic on? [default=");
    m1.send(ENTER);
    m1.expect("would you like your Ceph public traffic on? [default=");
    m1.send(ENTER);
    // Distributed networking: uplink0 everywhere, the lab's upstream gateway,
    // and the underlay addresses.
    answer_distributed_networking(m1, &info);
    m1.expect("MicroCloud will form an LXD cluster of 3 member(s), initiated by micro1:");
    m1.expect("storage pool \"remote\" (ceph, OSD pool lxd_remote)");
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    let applying = Instant::now();
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    eprintln!(
        "TIMING interactive init with MicroCeph and MicroOVN: plan approved to \"MicroCloud is ready\": {:.2} s",
        applying.elapsed().as_secs_f64()
    );
    m1.expect("Would you like to save these answers as a preseed file");
    m1.send(ENTER);
    all_succeed(initiator, joiners);
    lab.assert_cluster(3, |i| lab.fs_uuid(i, &lab.blank_disks(i)[0]));
    lab.assert_microcloud();
}

/// Upstream's distributed networking questions, answered for the lab:
/// uplink0 everywhere, its upstream gateway and range, DNS by default, and
/// each machine's underlay address.
fn answer_distributed_networking(m1: &mut Screen, info: &serde_json::Value) {
    m1.expect("Configure distributed networking? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect("Select an available interface per system to provide external connectivity for distributed network(s):");
    m1.send("uplink0");
    m1.send(RIGHT);
    m1.send(ENTER);
    let gateway = info["uplink"]["gateway"].as_str().unwrap();
    let (first, last) = info["uplink"]["range"]
        .as_str()
        .unwrap()
        .split_once('-')
        .unwrap();
    m1.expect("Specify the IPv4 gateway (CIDR) on the uplink network");
    m1.send(&format!("{gateway}{ENTER}"));
    m1.expect("Specify the first IPv4 address in the range to use on the uplink network");
    m1.send(&format!("{first}{ENTER}"));
    m1.expect("Specify the last IPv4 address in the range to use on the uplink network");
    m1.send(&format!("{last}{ENTER}"));
    m1.expect("Specify the IPv6 gateway (CIDR) on the uplink network");
    m1.send(ENTER);
    m1.expect("Specify the DNS addresses (comma-separated IPv4 / IPv6 addresses) for the distributed network");
    m1.send(ENTER);
    m1.expect("Configure dedicated OVN underlay networking? (yes/no) [default=no]: ");
    m1.send(&format!("yes{ENTER}"));
    m1.expect("Select exactly one network interface from each cluster member:");
    let underlay = info["machines"][0]["underlay"].as_str().unwrap();
    m1.send(&underlay[..underlay.rfind('.').unwrap() + 1]);
    m1.send(RIGHT);
    m1.send(ENTER);
}

/// The members of `service` (microceph, microovn), as `GET /core/1.0/cluster`
/// on machine `i`'s socket lists them.
fn service_members(lab: &Lab, i: usize, service: &str) -> Vec<String> {
    let info = lab.info();
    let socket = info["machines"][i - 1][format!("{service}_socket")]
        .as_str()
        .unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket", socket])
        .arg("http://control.socket/core/1.0/cluster")
        .output()
        .unwrap();
    let mut names: Vec<String> = common::json(&out)["metadata"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", common::text(&out)))
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
#[ignore = "lab test: needs root, LXD and OVN; run scripts/test-lab"]
fn service_add_sets_up_microovn_on_a_cluster_formed_without_it() {
    // Three members with directory pools and a bridge, formed by preseed
    // while MicroOVN is not installed.
    let lab = Lab::up(3);
    let mut yaml = format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nsession_passphrase: formed without ovn\nsystems:\n",
        common::lab_subnet()
    );
    for i in lab.machines() {
        yaml.push_str(&format!(
            "- name: micro{i}\n  storage:\n    local:\n      path: {}\n",
            lab.storage_dir(i)
        ));
    }
    let children: Vec<_> = lab
        .machines()
        .map(|i| lab.spawn(i, &["preseed"], &yaml))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }
    // Then MicroOVN is installed on every member.
    common::ok(
        &common::lab(&["services", "start", "--microovn"])
            .output()
            .unwrap(),
    );
    let info = lab.info();
    let start = Instant::now();

    let mut m1 = Screen::spawn(1, &["service", "add"]);
    let shown = m1.expect_re(r"When requested, enter the passphrase: [a-z -]+\r?\n");
    let passphrase = after(&shown, "When requested, enter the passphrase: ").to_string();
    let shown = m1.expect(" is displayed on joining systems.");
    let mut initiator = Initiator {
        fingerprint: word_after(&shown, "Verify the fingerprint ").to_string(),
        passphrase,
        screen: m1,
    };
    initiator
        .screen
        .expect("Waiting up to 600 s for micro2, micro3 to reach out");
    // The underlay bridge gives each machine a second address: the joiners
    // choose their lab address first.
    let mut joiners = Vec::new();
    for (i, typing) in [
        (2, Typing::Full(&initiator.passphrase)),
        (3, Typing::Completed(&initiator.passphrase)),
    ] {
        let mut joiner = start_join_on(i, typing, Some(&lab.address(i)));
        let fingerprint = joined_screen(&mut joiner, &initiator, &lab);
        initiator.screen.expect(&format!(
            "System micro{i} ({}) reached out with fingerprint {fingerprint}",
            lab.address(i)
        ));
        joiners.push(joiner);
    }
    for joiner in &mut joiners {
        joiner.expect("Received confirmation from system micro1");
    }
    let m1 = &mut initiator.screen;
    // Only MicroOVN's questions.
    answer_distributed_networking(m1, &info);
    // The cluster's profile has eth0 on lxdbr0: upstream's question.
    m1.expect("Replace existing default profile configuration? (yes/no) [default=no]: ");
    m1.send(&format!("yes{ENTER}"));
    m1.expect(
        "MicroCloud will set up MicroOVN on the 3 member(s) of the LXD cluster (from micro1):",
    );
    m1.expect("profile \"default\": eth0 on network default");
    m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    eprintln!(
        "TIMING service add (MicroOVN on 3 members): command started to \"MicroCloud is ready\": {:.2} s",
        start.elapsed().as_secs_f64()
    );
    all_succeed(initiator, joiners);

    // MicroOVN has every member, seen from each of them.
    for i in lab.machines() {
        assert_eq!(
            service_members(&lab, i, "microovn"),
            ["micro1", "micro2", "micro3"]
        );
    }
    let chassis = common::ok(&lab.exec(1, &["ovn-sbctl", "--columns=name", "list", "Chassis"]));
    assert_eq!(chassis.matches("name").count(), 3, "{chassis}");
    // LXD: UPLINK and the OVN `default`, Created; the profile's NIC on it;
    // the cluster's bridge is left as it was.
    for (name, kind) in [
        ("UPLINK", "physical"),
        ("default", "ovn"),
        ("lxdbr0", "bridge"),
    ] {
        let network = lab.lxd_get(1, &format!("/1.0/networks/{name}"));
        assert_eq!(network["type"], kind, "{network}");
        assert_eq!(network["status"], "Created", "{network}");
    }
    let profile = lab.lxd_get(1, "/1.0/profiles/default");
    assert_eq!(
        profile["devices"]["eth0"]["network"], "default",
        "{profile}"
    );
    assert_eq!(profile["devices"]["root"]["pool"], "local", "{profile}");

    // A container on micro2 with the default profile: an address from OVN's
    // DHCP in the network's subnet; it reaches the OVN router and, through
    // it, the uplink's gateway.
    lab.import_busybox();
    common::ok(&lab.exec(1, &["lxc", "launch", "busybox", "c1", "--target", "micro2"]));
    let address = lab.wait_for_ipv4("c1");
    let router = ovn_router(&lab);
    let prefix = &router[..router.rfind('.').unwrap() + 1];
    assert!(
        address.starts_with(prefix),
        "{address} is not beside {router}"
    );
    let uplink_gateway = info["uplink"]["gateway"].as_str().unwrap();
    let uplink_gateway = uplink_gateway.split('/').next().unwrap();
    for target in [router.as_str(), uplink_gateway] {
        assert_reaches(&lab, "c1", target);
    }
}

/// Container `name` answers pings from `target` (the first echo of a new
/// flow through OVN is often lost: one of five must come back).
fn assert_reaches(lab: &Lab, name: &str, target: &str) {
    let ping = lab.exec(
        1,
        &[
            "lxc", "exec", name, "--", "ping", "-c", "5", "-W", "2", target,
        ],
    );
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        !out.contains(" 0 packets received") && out.contains("packets received"),
        "{name} does not reach {target}:\n{}",
        common::text(&ping)
    );
}

/// The address of `default`'s OVN router, from LXD.
fn ovn_router(lab: &Lab) -> String {
    let router = common::ok(&lab.exec(1, &["lxc", "network", "get", "default", "ipv4.address"]));
    router.trim().split('/').next().unwrap().to_string()
}

#[test]
#[ignore = "lab test: needs root, LXD, Ceph and OVN; run scripts/test-lab"]
fn add_at_a_terminal_grows_microceph_and_microovn_with_the_new_member() {
    // Three members with MicroCeph (no disks) and MicroOVN (uplink0, the
    // underlay), formed by preseed; micro4 has both services installed.
    let lab = Lab::up_with_services(4, 0);
    let info = lab.info();
    let gateway = info["uplink"]["gateway"].as_str().unwrap().to_string();
    let gateway_ip = gateway.split('/').next().unwrap().to_string();
    let underlay = |i: usize| {
        info["machines"][i - 1]["underlay"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut yaml = format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nsession_passphrase: three then four\nsystems:\n",
        common::lab_subnet()
    );
    for i in 1..=3 {
        yaml.push_str(&format!(
            "- name: micro{i}\n  ovn_uplink_interface: uplink0\n  ovn_underlay_ip: {}\n  storage:\n    local:\n      path: {}\n",
            underlay(i),
            lab.storage_dir(i)
        ));
    }
    yaml.push_str(&format!(
        "ovn:\n  ipv4_gateway: {gateway}\n  ipv4_range: {}\n  dns_servers: {gateway_ip}\n",
        info["uplink"]["range"].as_str().unwrap()
    ));
    let children: Vec<_> = (1..=3).map(|i| lab.spawn(i, &["preseed"], &yaml)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }

    let start = Instant::now();
    let mut initiator = session_shown(Screen::spawn(1, &["add"]));
    let mut joiner = start_join_on(
        4,
        Typing::Full(&initiator.passphrase.clone()),
        Some(&lab.address(4)),
    );
    let fingerprint = joined_screen(&mut joiner, &initiator, &lab);
    let rows = wait_for_rows(&mut initiator, 1);
    assert_rows_match(&rows, &BTreeMap::from([(4, fingerprint)]), &lab);
    select_the_only_system(&mut initiator, &mut joiner, 4);
    let m1 = &mut initiator.screen;
    // The new member's questions only: no disk to offer Ceph, its uplink and
    // its underlay address; the cluster's gateway, range and DNS stay.
    m1.expect("No disks available for distributed storage. Skipping configuration");
    m1.expect("Select an available interface per system to provide external connectivity for distributed network(s):");
    m1.send("uplink0");
    m1.send(RIGHT);
    m1.send(ENTER);
    m1.expect("Using uplink0 on micro4 for OVN uplink");
    m1.expect("Configure dedicated OVN underlay networking? (yes/no) [default=no]: ");
    m1.send(&format!("yes{ENTER}"));
    m1.expect("Select exactly one network interface from each cluster member:");
    m1.send(&underlay(4));
    m1.send(RIGHT);
    m1.send(ENTER);
    let plan = m1.expect("Proceed with this plan? (yes/no) [default=yes]: ");
    for line in [
        "MicroCloud will add 1 member(s) to the LXD cluster of micro1, micro2, micro3 (from micro1):",
        "MicroCeph: joins the cluster",
        &format!("MicroOVN: joins the cluster, Geneve on {}", underlay(4)),
        "network \"UPLINK\" (physical) on uplink0, as the other members",
    ] {
        assert!(plan.contains(line), "{line:?} is not in the plan:\n{plan}");
    }
    assert!(!plan.contains("Specify the IPv4 gateway"), "{plan}");
    m1.send(ENTER);
    m1.expect_formed("MicroCloud is ready");
    eprintln!(
        "TIMING add with MicroCeph and MicroOVN: command started to \"MicroCloud is ready\": {:.2} s",
        start.elapsed().as_secs_f64()
    );
    joiner.expect_formed("Successfully joined the MicroCloud cluster");
    for screen in [initiator.screen, joiner] {
        screen.finish_ok();
    }

    let all = ["micro1", "micro2", "micro3", "micro4"];
    for service in ["microceph", "microovn"] {
        assert_eq!(service_members(&lab, 4, service), all, "{service}");
    }
    let encaps = common::ok(&lab.exec(1, &["ovn-sbctl", "--columns=ip", "list", "Encap"]));
    assert!(encaps.contains(&underlay(4)), "{encaps}");
    let uplink = lab.lxd_get(1, "/1.0/networks/UPLINK?target=micro4");
    assert_eq!(uplink["config"]["parent"], "uplink0", "{uplink}");
    assert_eq!(uplink["status"], "Created", "{uplink}");

    // A container on the new member: an address from OVN, and the way out.
    lab.import_busybox();
    common::ok(&lab.exec(1, &["lxc", "launch", "busybox", "c4", "--target", "micro4"]));
    let address = lab.wait_for_ipv4("c4");
    let router = ovn_router(&lab);
    assert!(
        address.starts_with(&router[..router.rfind('.').unwrap() + 1]),
        "{address} is not beside {router}"
    );
    for target in [router.as_str(), gateway_ip.as_str()] {
        assert_reaches(&lab, "c4", target);
    }
}
