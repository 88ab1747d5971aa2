//! The real `microcloud` binary, driven from its command line: help and version,
//! `preseed validate` on every fixture, how failures are reported (exit code,
//! `Error:` on stderr, nothing on stdout, no panic, no colour when asked, no
//! passphrase), and that local checks fail before anything is created.
//!
//! Nothing here needs root, LXD or a network: every run gets its own temporary
//! state directory and an environment without LXD/Incus variables, and runs
//! that could reach for LXD get `LXD_SOCKET` pointing at a path that does not
//! exist.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_microcloud");

/// Variables of the developer's shell that would change what the binary does.
const SCRUBBED_ENV: &[&str] = &[
    "LXD_DIR",
    "LXD_SOCKET",
    "INCUS_DIR",
    "INCUS_SOCKET",
    "MICROCLOUD_STATE_DIR",
    "NO_COLOR",
    "RUST_LOG",
];

/// A passphrase that must never be echoed back.
const PASSPHRASE: &str = "Pw-cli-test-SECRET-5c1d";

/// A temporary directory for one test: the state directory lives inside it (and
/// is not created up front, so a test can tell whether the binary created it).
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// `MICROCLOUD_STATE_DIR` of every command built by [`Sandbox::microcloud`].
    fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `microcloud` with a clean environment and this sandbox's state directory.
    fn microcloud(&self) -> Command {
        self.command(BIN)
    }

    /// `program` with the environment of [`Sandbox::microcloud`], for wrappers
    /// that run the binary themselves.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .env("MICROCLOUD_STATE_DIR", self.state_dir())
            .timeout(Duration::from_secs(30));
        command
    }

    /// Names in the sandbox, to check that a run created nothing.
    fn entries(&self) -> BTreeSet<String> {
        fs::read_dir(self.dir.path())
            .expect("list the sandbox")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/preseed")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn fixture(kind: &str, prefix: &str) -> PathBuf {
    fixtures(kind)
        .into_iter()
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .unwrap_or_else(|| panic!("no {kind} fixture starting with {prefix}"))
}

/// The value of a `# <key>: ...` header line of a fixture.
fn header(text: &str, key: &str) -> Option<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_owned())
}

/// A fixture's text, to read its headers: some bad fixtures are UTF-16 or not UTF-8 on
/// purpose, and one starts with a byte order mark.
fn fixture_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = match bytes.as_slice() {
        [0xff, 0xfe, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    text.trim_start_matches('\u{feff}').to_owned()
}

/// Bad fixtures that fail without a lab, with the text their error must contain.
fn offline_bad_fixtures() -> Vec<(PathBuf, String)> {
    fixtures("bad")
        .into_iter()
        .filter_map(|path| {
            let text = fixture_text(&path);
            if header(&text, "needs").as_deref() == Some("lab") {
                return None;
            }
            let expect = header(&text, "expect")
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
            Some((path, expect))
        })
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What is wrong with `output` as a reported failure: exit code 1, stderr
/// starting with `Error:` and containing `expected`, no panic, empty stdout.
fn failure_problems(output: &Output, expected: &str) -> Vec<String> {
    let (out, err) = (stdout(output), stderr(output));
    let mut problems = Vec::new();
    if output.status.code() != Some(1) {
        problems.push(format!("exit status {:?}, expected 1", output.status));
    }
    if !err.starts_with("Error:") {
        problems.push("stderr does not start with `Error:`".into());
    }
    if !err.contains(expected) {
        problems.push(format!("stderr does not contain {expected:?}"));
    }
    if err.contains("panicked") || out.contains("panicked") {
        problems.push("the binary panicked".into());
    }
    if !out.is_empty() {
        problems.push("stdout is not empty".into());
    }
    if problems.is_empty() {
        return problems;
    }
    problems.push(format!("stdout: {out:?}\nstderr: {err:?}"));
    problems
}

/// Asserts `output` is a reported failure (see [`failure_problems`]); returns stderr.
fn assert_failure(output: &Output, expected: &str) -> String {
    let problems = failure_problems(output, expected);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    stderr(output)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .expect("read the hostname")
        .into_string()
        .expect("UTF-8 hostname")
}

/// Two system names that are certainly not this machine's hostname.
fn other_systems() -> [&'static str; 2] {
    let names = ["mc-cli-test-a", "mc-cli-test-b"];
    assert!(!names.contains(&hostname().as_str()));
    names
}

// --- Help and version -------------------------------------------------------

#[test]
fn help_lists_the_commands_and_global_options() {
    let sandbox = Sandbox::new();
    let output = sandbox.microcloud().arg("--help").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = stdout(&output);
    let commands: BTreeSet<&str> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        BTreeSet::from([
            "init", "add", "join", "preseed", "remove", "cluster", "service", "status", "help"
        ]),
        "{help}"
    );
    for option in ["--state-dir", "--verbose", "--debug", "--no-color"] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let expected = format!("microcloud {}\n", env!("CARGO_PKG_VERSION"));
    let sandbox = Sandbox::new();
    sandbox
        .microcloud()
        .arg("--version")
        .assert()
        .success()
        .stdout(expected.clone());
    // `propagate_version`: subcommands answer too.
    sandbox
        .microcloud()
        .args(["preseed", "--version"])
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

// --- preseed validate -------------------------------------------------------

/// Every good fixture validates, those that set up MicroCeph and MicroOVN
/// too: whether a machine has them is a question for `microcloud preseed`
/// on that machine, not for the file.
#[test]
fn validate_accepts_every_good_fixture() {
    let sandbox = Sandbox::new();
    let good = fixtures("good");
    assert!(!good.is_empty());
    for path in good {
        sandbox
            .microcloud()
            .args(["preseed", "validate"])
            .arg(&path)
            .assert()
            .success()
            .stdout(contains(format!("{} is valid", path.display())))
            .stderr("");
    }
    assert!(
        !sandbox.state_dir().exists(),
        "validate created the state directory"
    );
}

#[test]
fn validate_rejects_every_offline_bad_fixture() {
    let sandbox = Sandbox::new();
    let bad = offline_bad_fixtures();
    let all = fixtures("bad").len();
    assert!(all >= 80, "only {all} bad fixtures");
    assert!(bad.len() >= 77, "only {} offline bad fixtures", bad.len());
    let mut failures = Vec::new();
    for (path, expect) in &bad {
        let output = sandbox
            .microcloud()
            .args(["preseed", "validate"])
            .arg(path)
            .output()
            .unwrap();
        let mut problems = failure_problems(&output, expect);
        // Every preseed error names the file it comes from.
        let origin = format!("Error: {}", path.display());
        if !stderr(&output).starts_with(&origin) {
            problems.push(format!("stderr does not start with {origin:?}"));
        }
        // The fixtures' passphrases, however badly written, are never shown.
        if ["s3cret", "lab-secret"]
            .iter()
            .any(|secret| stderr(&output).contains(secret))
        {
            problems.push("stderr shows the passphrase".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", path.display(), problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        !sandbox.state_dir().exists(),
        "validate created the state directory"
    );
}

#[test]
fn parse_errors_carry_file_and_line() {
    // (fixture, the line the error is on)
    let cases = [
        ("03-yaml-syntax", 3),
        ("04-unknown-key", 5),
        ("05-unknown-system-key", 6),
        ("06-wrong-type", 5),
        ("21-duplicate-system", 8),
        ("37-duplicate-key", 5),
        // At the merge (`<<: *uplink`), not where the merged keys are written.
        ("89-merge-into-wrong-section", 14),
        // The second system's own key, not a key merged into it from the first.
        ("90-merge-then-typo", 13),
        ("97-latin1-bytes", 8),
        // Counted from the first line, though it starts with a byte order mark.
        ("99-bom-then-typo", 4),
    ];
    let sandbox = Sandbox::new();
    for (name, line) in cases {
        let path = fixture("bad", name);
        let output = sandbox
            .microcloud()
            .args(["preseed", "validate"])
            .arg(&path)
            .output()
            .unwrap();
        let located = format!("Error: {}:{line}:", path.display());
        let err = stderr(&output);
        assert!(
            err.starts_with(&located),
            "{name}: want {located:?}, got {err:?}"
        );
    }
}

#[test]
fn validate_of_a_missing_file_names_it() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("no-such-preseed.yaml");
    let output = sandbox
        .microcloud()
        .args(["preseed", "validate"])
        .arg(&missing)
        .output()
        .unwrap();
    let err = assert_failure(&output, &missing.display().to_string());
    assert!(err.contains("No such file"), "{err}");
}

// --- Bad command lines ------------------------------------------------------

/// The exit status of a refused command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 2: clap's usage error (`error: ...`), before the command runs.
    Usage,
    /// 1: the command ran and refused (`Error: ...`).
    Failed,
}

/// One bad command line: `{dir}`, `{file}`, `{missing}` and `{unreadable}` in the arguments
/// are paths in the test's sandbox (a directory, a regular file, nothing, a file this user
/// cannot read).
struct BadLine {
    args: &'static [&'static str],
    stdin: &'static str,
    refusal: Refusal,
    expect: &'static str,
}

const fn usage(args: &'static [&'static str], expect: &'static str) -> BadLine {
    BadLine {
        args,
        stdin: "",
        refusal: Refusal::Usage,
        expect,
    }
}

const fn failed(args: &'static [&'static str], expect: &'static str) -> BadLine {
    BadLine {
        args,
        stdin: "",
        refusal: Refusal::Failed,
        expect,
    }
}

/// A preseed that passes every static check, for runs that must fail after reading it.
const VALID_PRESEED: &str =
    "initiator: mc-cli-test-a\nlookup_subnet: 10.0.0.0/24\nsystems: [{name: mc-cli-test-a}]\n";

const BAD_LINES: &[BadLine] = &[
    usage(&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    usage(&["init", "--bogus"], "unexpected argument '--bogus' found"),
    usage(
        &["init", "--preseed"],
        "a value is required for '--preseed <FILE>'",
    ),
    usage(
        &["init", "--dry-run", "--dry-run"],
        "the argument '--dry-run' cannot be used multiple times",
    ),
    // MicroCloud 1.1's `add --preseed`: 3.3 reads preseeds with `microcloud preseed`.
    usage(
        &["add", "--preseed", "cloud.yaml"],
        "unexpected argument '--preseed' found",
    ),
    usage(
        &["join", "--initiator-address", "micro01"],
        "invalid value 'micro01' for '--initiator-address <IP>'",
    ),
    usage(
        &["join", "--lookup-timeout", "soon"],
        "give a whole number of seconds, such as 60",
    ),
    usage(
        &["join", "--lookup-timeout=-5"],
        "give a whole number of seconds, such as 60",
    ),
    usage(
        &["join", "--lookup-timeout", "0"],
        "the lookup timeout must be at least 1 second",
    ),
    usage(
        &["join", "--lookup-timeout", "604800"],
        "the lookup timeout can be at most 86400 seconds (24 hours)",
    ),
    usage(
        &["join", "--session-timeout", "7200"],
        "Session timeout cannot exceed 60 minutes; use at most 3600 seconds",
    ),
    usage(
        &["preseed", "validate"],
        "the following required arguments were not provided",
    ),
    usage(
        &["preseed", "check", "cloud.yaml"],
        "unrecognized subcommand 'check'",
    ),
    usage(&["remove"], "<NAME>..."),
    usage(
        &["remove", "micro2", ""],
        "a member name cannot be empty; `microcloud cluster list` shows the names",
    ),
    usage(
        &["remove", "--format", "xml", "micro2"],
        "invalid value 'xml' for '--format <FORMAT>'",
    ),
    usage(&["cluster"], "'microcloud cluster' requires a subcommand"),
    usage(
        &["cluster", "list", "--format", "bogus"],
        "[possible values: table, json, yaml, csv, compact]",
    ),
    usage(
        &["cluster", "list", "-f", "json", "--format", "yaml"],
        "the argument '--format <FORMAT>' cannot be used multiple times",
    ),
    usage(
        &["cluster", "remove", "-f", "micro2", "--format", "xml"],
        "invalid value 'xml' for '--format <FORMAT>'",
    ),
    usage(
        &["service", "list", "--format", "xml"],
        "invalid value 'xml' for '--format <FORMAT>'",
    ),
    usage(&["service", "frob"], "unrecognized subcommand 'frob'"),
    usage(
        &["status", "--format"],
        "a value is required for '--format <FORMAT>'",
    ),
    usage(
        &["status", "-f", "xml"],
        "invalid value 'xml' for '--format <FORMAT>'",
    ),
    usage(&["status", "micro1"], "unexpected argument 'micro1' found"),
    usage(
        &["--state-dir"],
        "a value is required for '--state-dir <STATE_DIR>'",
    ),
    failed(
        &["preseed", "validate", "{missing}"],
        "No such file or directory (os error 2); check the path",
    ),
    failed(
        &["preseed", "validate", "{dir}"],
        "Is a directory (os error 21); give the path of the preseed file in it",
    ),
    failed(
        &["preseed", "validate", "{file}/cloud.yaml"],
        "Not a directory (os error 20); a part of the path before the file name is a file",
    ),
    failed(
        &["init", "--preseed", "{unreadable}"],
        "Permission denied (os error 13); make the file readable by this user",
    ),
    failed(&["init", "--preseed", "{missing}"], "check the path"),
    BadLine {
        args: &["preseed"],
        stdin: "",
        refusal: Refusal::Failed,
        expect: "<stdin>: The preseed is empty; write a YAML mapping",
    },
    BadLine {
        args: &["--state-dir", "{file}", "preseed"],
        stdin: VALID_PRESEED,
        refusal: Refusal::Failed,
        expect: "is not a directory; give --state-dir (or MICROCLOUD_STATE_DIR) the path of a directory",
    },
    failed(
        &["--state-dir", "{file}/state", "remove", "micro2"],
        "is not a directory; give --state-dir",
    ),
    failed(
        &["join", "--initiator-address", "10.0.0.1"],
        "use `microcloud preseed` with a preseed file",
    ),
    failed(&["remove", "micro2", "--force"], "Unix socket not found at"),
    failed(
        &["service", "list", "-f", "json"],
        "Unix socket not found at",
    ),
];

/// Every bad command line is refused quickly, with its exit status and a message that says
/// what to do, prints nothing on stdout, and creates or changes nothing: no state directory,
/// no file in the sandbox. None waits for LXD: `LXD_SOCKET` names a path with nothing there.
#[test]
fn bad_command_lines_are_refused_and_change_nothing() {
    assert!(BAD_LINES.len() >= 20);
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("dir")).unwrap();
    fs::write(sandbox.path("file"), "not a directory\n").unwrap();
    let unreadable = sandbox.path("unreadable.yaml");
    fs::write(&unreadable, VALID_PRESEED).unwrap();
    let mut permissions = fs::metadata(&unreadable).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o000);
    fs::set_permissions(&unreadable, permissions).unwrap();
    // root reads any file: that row then says nothing.
    let can_deny = fs::File::open(&unreadable).is_err();
    let before = sandbox.entries();
    let substitute = |arg: &str| {
        let mut arg = arg.to_owned();
        for name in ["dir", "file", "missing", "unreadable"] {
            let path = if name == "unreadable" {
                unreadable.clone()
            } else {
                sandbox.path(name)
            };
            arg = arg.replace(&format!("{{{name}}}"), &path.display().to_string());
        }
        arg
    };
    let mut failures = Vec::new();
    for line in BAD_LINES {
        if line.args.contains(&"{unreadable}") && !can_deny {
            eprintln!("skipped {:?}: this user can read any file", line.args);
            continue;
        }
        let args: Vec<String> = line.args.iter().map(|arg| substitute(arg)).collect();
        let started = std::time::Instant::now();
        let output = sandbox
            .microcloud()
            .args(&args)
            .env("LXD_SOCKET", sandbox.path("lxd.socket"))
            .write_stdin(line.stdin)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let (out, err) = (stdout(&output), stderr(&output));
        let mut problems = Vec::new();
        let (code, prefix) = match line.refusal {
            Refusal::Usage => (2, "error:"),
            Refusal::Failed => (1, "Error:"),
        };
        if output.status.code() != Some(code) {
            problems.push(format!("exit status {:?}, expected {code}", output.status));
        }
        if !err.starts_with(prefix) {
            problems.push(format!("stderr does not start with {prefix:?}"));
        }
        if !err.contains(line.expect) {
            problems.push(format!("stderr does not contain {:?}", line.expect));
        }
        // clap's errors end by pointing to the help.
        if line.refusal == Refusal::Usage && !err.contains("try '--help'") {
            problems.push("the usage error does not point to --help".into());
        }
        if err.contains("panicked") || !out.is_empty() {
            problems.push("a panic, or output on stdout".into());
        }
        if elapsed > Duration::from_secs(10) {
            problems.push(format!("took {elapsed:?}"));
        }
        if sandbox.entries() != before {
            problems.push(format!("the sandbox changed: {:?}", sandbox.entries()));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{args:?}:\n  {}\n  stdout: {out:?}\n  stderr: {err:?}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        fs::read_to_string(sandbox.path("file")).unwrap(),
        "not a directory\n"
    );
    assert!(fs::read_dir(sandbox.path("dir")).unwrap().next().is_none());
}

/// A preseed larger than any preseed is refused before it is parsed, from standard input.
#[test]
fn an_oversized_preseed_on_stdin_is_refused() {
    let sandbox = Sandbox::new();
    let mut input = String::from(VALID_PRESEED);
    while input.len() <= 1024 * 1024 {
        input.push_str("# a comment line that pads the preseed beyond any real size\n");
    }
    let output = sandbox
        .microcloud()
        .arg("preseed")
        .env("LXD_SOCKET", sandbox.path("lxd.socket"))
        .write_stdin(input)
        .output()
        .unwrap();
    assert_failure(
        &output,
        "<stdin>: The preseed is larger than 1024 KiB, and a preseed is a few kilobytes of YAML",
    );
    assert!(sandbox.entries().is_empty());
}

// --- init -------------------------------------------------------------------

#[test]
fn interactive_commands_without_a_terminal_point_to_preseed() {
    let sandbox = Sandbox::new();
    for command in ["init", "init --dry-run", "add", "add --dry-run", "join"] {
        let output = sandbox
            .microcloud()
            .args(command.split(' '))
            .output()
            .unwrap();
        assert_failure(&output, "use `microcloud preseed` with a preseed file");
        assert!(sandbox.entries().is_empty(), "{command} created files");
    }
}

#[test]
fn service_add_without_a_terminal_says_it_needs_one_and_changes_nothing() {
    let sandbox = Sandbox::new();
    for command in ["service add", "service add --dry-run"] {
        let output = sandbox
            .microcloud()
            .args(command.split(' '))
            .output()
            .unwrap();
        assert_failure(
            &output,
            "`microcloud service add` asks questions and needs a terminal",
        );
        assert!(sandbox.entries().is_empty(), "{command} created files");
    }
}

#[test]
fn init_reports_the_same_errors_as_validate() {
    let sandbox = Sandbox::new();
    let path = fixture("bad", "04-unknown-key");
    let output = sandbox
        .microcloud()
        .arg("init")
        .arg("--preseed")
        .arg(&path)
        .env("LXD_SOCKET", sandbox.path("lxd.socket"))
        .output()
        .unwrap();
    assert_failure(&output, &format!("{}:5:", path.display()));

    let missing = sandbox.path("missing.yaml");
    let output = sandbox
        .microcloud()
        .arg("init")
        .arg("--preseed")
        .arg(&missing)
        .output()
        .unwrap();
    assert_failure(&output, &missing.display().to_string());
    assert!(!sandbox.state_dir().exists());
}

// --- preseed from standard input ---------------------------------------------

#[test]
fn preseed_on_stdin_reports_errors_without_the_passphrase() {
    let head = "initiator: micro01\nlookup_subnet: 10.0.0.0/24\n";
    let cases = [
        (
            format!("{head}session_passphrase: {PASSPHRASE}\nsytems: [{{name: micro01}}]\n"),
            "<stdin>:4:1: unknown field `sytems`",
        ),
        (
            format!("{head}session_passphrase: [{PASSPHRASE}]\nsystems: [{{name: micro01}}]\n"),
            "<stdin>:3:21: session_passphrase:",
        ),
        (
            format!("{head}session_passphrase: \"{PASSPHRASE}\nsystems: [{{name: micro01}}]\n"),
            "<stdin>:3:",
        ),
        (
            format!("{head}session_passphrase: {PASSPHRASE}\nsystems: [{{name: micro01}}\n"),
            "<stdin>:4:",
        ),
        (
            format!("{head}session_passphrase: {PASSPHRASE}\nsession_passphrase: x\nsystems: []\n"),
            "duplicate mapping key `session_passphrase`",
        ),
        (
            format!(
                "{head}session_passphrase: {PASSPHRASE}\nsession_timeout: 7200\nsystems: [{{name: micro01}}]\n"
            ),
            "Session timeout cannot exceed 60 minutes",
        ),
    ];
    let sandbox = Sandbox::new();
    for (input, expected) in cases {
        let output = sandbox
            .microcloud()
            .arg("preseed")
            .env("LXD_SOCKET", sandbox.path("lxd.socket"))
            .write_stdin(input.as_str())
            .output()
            .unwrap();
        let err = assert_failure(&output, expected);
        assert!(!err.contains(PASSPHRASE), "passphrase leaked:\n{err}");
    }
    assert!(!sandbox.state_dir().exists());
}

/// A valid preseed that does not list this machine must fail on local checks,
/// before anything is contacted or created: no state directory, no identity.
#[test]
fn preseed_not_listing_this_machine_fails_before_creating_anything() {
    let [a, b] = other_systems();
    let host = hostname();
    let cases = [
        // This machine would take part in a new cluster it is not part of.
        (
            format!(
                "initiator: {a}\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: {PASSPHRASE}\nsystems:\n  - name: {a}\n  - name: {b}\n"
            ),
            "Local MicroCloud must be included in the list of systems when initializing",
        ),
        // Growing a cluster (its initiator is not listed) without this machine.
        (
            format!(
                "initiator: mc-cli-test-initiator\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: {PASSPHRASE}\nsystems:\n  - name: {a}\n  - name: {b}\n"
            ),
            "is not listed in the preseed's systems",
        ),
    ];
    for (input, expected) in cases {
        let sandbox = Sandbox::new();
        let before = sandbox.entries();
        let flag_state = sandbox.path("flag-state");
        let output = sandbox
            .microcloud()
            .arg("--state-dir")
            .arg(&flag_state)
            .arg("preseed")
            .env("LXD_SOCKET", sandbox.path("lxd.socket"))
            .write_stdin(input.as_str())
            .output()
            .unwrap();
        let err = assert_failure(&output, expected);
        assert!(
            err.contains(&format!("{host:?}")),
            "the error does not name {host:?}:\n{err}"
        );
        assert!(!err.contains(PASSPHRASE), "passphrase leaked:\n{err}");
        assert_eq!(sandbox.entries(), before, "the run created files");
    }
}

/// With this machine listed at one of its own addresses, every local check
/// passes up to finding LXD; that fails, and the identity is still not created.
#[test]
fn preseed_without_lxd_fails_before_creating_the_identity() {
    let Some(address) = microcloud::discovery::local_addresses()
        .expect("list local addresses")
        .into_iter()
        .map(|a| a.address)
        .find(|ip| ip.is_ipv4())
    else {
        eprintln!("skipped: this machine has no global IPv4 address that is up");
        return;
    };
    let [other, _] = other_systems();
    let sandbox = Sandbox::new();
    let input = format!(
        "initiator_address: {address}\nsession_passphrase: {PASSPHRASE}\nsystems:\n  - name: {host}\n    address: {address}\n  - name: {other}\n    address: 203.0.113.254\n",
        host = hostname()
    );
    let socket = sandbox.path("lxd.socket");
    let before = sandbox.entries();
    let output = sandbox
        .microcloud()
        .args(["--debug", "preseed"])
        .env("LXD_SOCKET", &socket)
        .env("RUST_LOG", "trace")
        .write_stdin(input)
        .output()
        .unwrap();
    // Trace logging is on, so log lines may precede the error: check the rest.
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    let error_line = err
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no Error: line in\n{err}"));
    assert!(
        error_line.contains(&socket.display().to_string()),
        "{error_line}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains(PASSPHRASE), "passphrase leaked:\n{err}");
    assert_eq!(sandbox.entries(), before, "the run created files");
}

// --- Colour -----------------------------------------------------------------

const ESC: char = '\x1b';

fn failing_validate(sandbox: &Sandbox) -> Command {
    let mut command = sandbox.microcloud();
    command
        .args(["preseed", "validate"])
        .arg(fixture("bad", "04-unknown-key"));
    command
}

#[test]
fn no_colour_on_a_pipe_with_no_color_or_flag() {
    let sandbox = Sandbox::new();
    let with_env = failing_validate(&sandbox)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let with_flag = failing_validate(&sandbox)
        .arg("--no-color")
        .output()
        .unwrap();
    let plain = failing_validate(&sandbox).output().unwrap();
    for output in [with_env, with_flag, plain] {
        let err = assert_failure(&output, "unknown field");
        assert!(!err.contains(ESC), "ANSI escape in {err:?}");
    }
}

/// On a pipe the binary never colours, so the test above cannot tell whether
/// `NO_COLOR` is honoured. Under `script(1)` stderr is a terminal: colour must
/// appear by default (proving the check can see it) and not with either switch.
#[test]
fn no_colour_on_a_terminal_with_no_color_or_flag() {
    let probe = std::process::Command::new("script")
        .arg("--version")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: script(1) from util-linux is not available");
        return;
    }
    let sandbox = Sandbox::new();
    let fixture = fixture("bad", "04-unknown-key");
    let on_terminal = |extra_env: Option<(&str, &str)>, flag: &str| {
        let line = format!("'{BIN}' {flag} preseed validate '{}'", fixture.display());
        let mut script = sandbox.command("script");
        script.args(["-q", "-e", "-c", &line, "/dev/null"]);
        if let Some((key, value)) = extra_env {
            script.env(key, value);
        }
        let output = script.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        // stdout and stderr share the terminal.
        let text = stdout(&output);
        assert!(text.contains("unknown field"), "{text:?}");
        text
    };
    let coloured = on_terminal(None, "");
    assert!(
        coloured.contains(ESC),
        "no colour on a terminal: {coloured:?}"
    );
    for text in [
        on_terminal(Some(("NO_COLOR", "1")), ""),
        on_terminal(None, "--no-color"),
    ] {
        assert!(!text.contains(ESC), "ANSI escape in {text:?}");
        assert!(text.trim_start().starts_with("Error:"), "{text:?}");
    }
}

// --- cluster list -----------------------------------------------------------

#[test]
fn cluster_list_names_a_missing_socket() {
    let sandbox = Sandbox::new();
    let socket = sandbox.path("nonexistent/unix.socket");
    let output = sandbox
        .microcloud()
        .args(["cluster", "list"])
        .env("LXD_SOCKET", &socket)
        .output()
        .unwrap();
    let err = assert_failure(&output, &socket.display().to_string());
    assert!(err.contains("LXD_SOCKET"), "{err}");
}

#[test]
fn cluster_list_names_a_socket_nobody_listens_on() {
    let sandbox = Sandbox::new();
    let socket = sandbox.path("stale.socket");
    // Bound then closed: the file stays, connections are refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let output = sandbox
        .microcloud()
        .args(["cluster", "list"])
        .env("LXD_SOCKET", &socket)
        .output()
        .unwrap();
    let err = assert_failure(
        &output,
        &format!("Failed to reach LXD at {}", socket.display()),
    );
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn cluster_list_rejects_an_unknown_format() {
    let sandbox = Sandbox::new();
    let assert = sandbox
        .microcloud()
        .args(["cluster", "list", "--format", "bogus"])
        .env("LXD_SOCKET", sandbox.path("lxd.socket"))
        .assert()
        .code(2)
        .stdout("");
    let err = stderr(assert.get_output());
    for format in ["table", "json", "yaml", "csv", "compact"] {
        assert!(err.contains(format), "{format} not listed:\n{err}");
    }
}

// --- status and service list ----------------------------------------------

#[test]
fn status_help_documents_the_exit_codes() {
    let sandbox = Sandbox::new();
    for args in [&["status", "--help"][..], &["--help"]] {
        let output = sandbox.microcloud().args(args).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let help = stdout(&output);
        for code in ["0", "3 status: WARNING", "4 status: ERROR"] {
            assert!(help.contains(code), "{args:?} lacks {code}:\n{help}");
        }
    }
}

#[test]
fn read_only_commands_fail_with_status_1_and_the_socket_without_lxd() {
    let sandbox = Sandbox::new();
    let socket = sandbox.path("stale.socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["service", "list"],
        &["cluster", "list", "-f", "yaml"],
    ] {
        let output = sandbox
            .microcloud()
            .args(args)
            .env("LXD_SOCKET", &socket)
            .output()
            .unwrap();
        // Never 3 or 4: those say the cluster's health, not a failure.
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_failure(
            &output,
            &format!("Failed to reach LXD at {}", socket.display()),
        );
    }
}

#[test]
fn status_and_service_list_reject_an_unknown_format() {
    let sandbox = Sandbox::new();
    for args in [
        &["status", "-f", "xml"][..],
        &["service", "list", "--format", "xml"],
    ] {
        sandbox
            .microcloud()
            .args(args)
            .env("LXD_SOCKET", sandbox.path("lxd.socket"))
            .assert()
            .code(2)
            .stdout("");
    }
}

// --- remove ---------------------------------------------------------------

#[test]
fn remove_needs_a_name() {
    for args in [&["remove"][..], &["rm"], &["cluster", "remove"]] {
        let output = Sandbox::new().microcloud().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains("<NAME>..."), "{args:?}: {err}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn remove_help_says_what_it_removes_and_what_force_leaves() {
    for args in [&["remove", "--help"][..], &["cluster", "remove", "--help"]] {
        let output = Sandbox::new().microcloud().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let out = stdout(&output);
        for needle in [
            "LXD, then MicroCeph, then MicroOVN",
            "--force",
            "--dry-run",
            "--format",
        ] {
            assert!(out.contains(needle), "{args:?} lacks {needle:?}:\n{out}");
        }
    }
    let output = Sandbox::new()
        .microcloud()
        .args(["cluster", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&output).contains("membership lives only in the services' clusters"));
}

#[test]
fn remove_without_lxd_fails_and_changes_nothing() {
    let sandbox = Sandbox::new();
    let socket = sandbox.path("lxd.socket");
    let before = sandbox.entries();
    let output = sandbox
        .microcloud()
        .args(["remove", "micro2"])
        .env("LXD_SOCKET", &socket)
        .output()
        .unwrap();
    assert_failure(&output, &socket.display().to_string());
    assert_eq!(sandbox.entries(), before, "the run created files");
}
