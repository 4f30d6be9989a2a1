//! Programs for the checker's tests to check: servercall and clientcall, the Python examples,
//! and the Python examples with one fault put in (a *mutant*: one line of the example replaced,
//! the way a student's bug would be).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use upcall::check::{client_cases, server_cases, Command as Check, Options, Report};

/// The server timeouts the tests run with: short, so that CI stays fast, and far enough apart
/// that a case waiting for one never meets the other (6.5 waits 2 s; the line timeout is 4 s).
pub const LINE_TIMEOUT: &str = "4";
pub const UPCALL_TIMEOUT: &str = "1";

/// A program the test started; killed (by its own PID) when dropped.
pub struct Started {
    child: Child,
    /// Kept open: for servercall it is the console, for a client the keyboard.
    _stdin: Option<ChildStdin>,
    pub address: String,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3` (`python` on Windows, as python.org's installer names it), or `None` when it is
/// missing outside CI. Under CI a missing python3 fails the test, except in the Windows build:
/// CI runs that under Wine, which has no Windows Python (CI's Linux steps run these tests).
pub fn python() -> Option<&'static str> {
    let name = if cfg!(windows) { "python" } else { "python3" };
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some(name);
    }
    assert!(
        cfg!(windows) || std::env::var_os("CI").is_none(),
        "python3 is needed for the Python examples' tests, and CI must have it"
    );
    eprintln!("{name} not found: the Python examples are not checked on this machine");
    None
}

/// Starts a server program and reads the address it says it listens on.
pub fn start_server(mut command: Command) -> Started {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server");
    let stdin = child.stdin.take();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("the server's first line");
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // The rest of its output is drained, so that the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Started {
        child,
        _stdin: stdin,
        address,
    }
}

pub fn servercall() -> Started {
    let mut command = Command::new(env!("CARGO_BIN_EXE_servercall"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--quiet",
        "--line-timeout",
        LINE_TIMEOUT,
        "--upcall-timeout",
        UPCALL_TIMEOUT,
    ]);
    start_server(command)
}

/// The example's source, from examples/python/.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `source` with `old` (which must be there exactly once) replaced by `new`, in a file of its own.
pub fn mutant(name: &str, source: &str, old: &str, new: &str) -> PathBuf {
    assert_eq!(
        source.matches(old).count(),
        1,
        "the fault's line is not in {name} exactly once: {old:?}"
    );
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "upcall-checkcall-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join(name);
    std::fs::write(&path, source.replace(old, new)).expect("write the mutant");
    path
}

pub fn python_server(python: &str, script: &Path) -> Started {
    let mut command = Command::new(python);
    command.arg("-u").arg(script).args([
        "--listen",
        "127.0.0.1:0",
        "--line-timeout",
        LINE_TIMEOUT,
        "--upcall-timeout",
        UPCALL_TIMEOUT,
    ]);
    start_server(command)
}

/// Options as a test runs the checker: the servers' timeouts above.
pub fn options(command: Check) -> Options {
    let mut options = Options::new(command);
    options.line_timeout = Duration::from_secs(LINE_TIMEOUT.parse().unwrap());
    options.upcall_timeout = Duration::from_secs(UPCALL_TIMEOUT.parse().unwrap());
    options
}

/// Every server case against the server at `address`.
pub fn check_server(address: &str) -> Report {
    let options = options(Check::Server {
        address: address.into(),
    });
    server_cases::run(address, &options).expect("the checker runs")
}

/// Every client case against the client that `start` starts, given the checker's address.
pub fn check_client(start: impl FnOnce(String) -> Command) -> Report {
    let options = options(Check::Client {
        listen: "127.0.0.1:0".into(),
    });
    let mut started = None;
    let report = client_cases::run("127.0.0.1:0", &options, |addr| {
        let mut command = start(addr.to_string());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client");
        let stdin = child.stdin.take();
        started = Some(Started {
            child,
            _stdin: stdin,
            address: addr.to_string(),
        });
    })
    .expect("the checker runs");
    drop(started);
    report
}

pub fn clientcall(address: String) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clientcall"));
    command.args(["--server", &address]);
    command
}

pub fn python_client(python: &'static str, script: PathBuf) -> impl FnOnce(String) -> Command {
    move |address| {
        let mut command = Command::new(python);
        command.arg("-u").arg(script).args(["--server", &address]);
        command
    }
}
