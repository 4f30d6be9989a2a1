//! Running `servercall` and `clientcall` as real processes under test: start them with piped
//! stdin, type into them, and wait (boundedly) for what they print. Shared by the test files that
//! check the programs and the README's sample output.

#![allow(dead_code)] // each test file uses its own part of this harness

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine, short enough that a hang fails the test quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A program running under test, whose output is collected as it comes.
pub struct Program {
    child: Child,
    pub stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    /// Where the next `wait_for` starts looking, so one line is not matched twice.
    pub seen: usize,
}

impl Program {
    pub fn start(binary: &str, args: &[&str]) -> Program {
        let mut child = spawn(binary, args);
        let output = Arc::new(Mutex::new(String::new()));
        // Prompts end without a newline, so collect bytes, not lines.
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    output.lock().unwrap().push_str(&text);
                }
            });
        }
        Program {
            stdin: child.stdin.take(),
            child,
            output,
            seen: 0,
        }
    }

    pub fn servercall(args: &[&str]) -> (Program, u16) {
        let mut args = args.to_vec();
        args.extend(["--listen", "127.0.0.1:0"]);
        Program::listening(Program::start(env!("CARGO_BIN_EXE_servercall"), &args))
    }

    /// A started `servercall`, once it says where it listens, and its port.
    pub fn listening(mut server: Program) -> (Program, u16) {
        let first = server.wait_for("(upcall/1)");
        (server, listening_port(&first))
    }

    pub fn clientcall(port: u16, args: &[&str]) -> Program {
        let server = format!("127.0.0.1:{port}");
        let mut all = vec!["--server", &server];
        all.extend(args);
        let mut client = Program::start(env!("CARGO_BIN_EXE_clientcall"), &all);
        client.wait_for("Enter message: ");
        client
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the program reads its stdin");
    }

    /// Waits until the output (after what earlier waits matched) contains `text`; returns the
    /// whole line it is on.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let output = self.output.lock().unwrap();
                if let Some(at) = output[self.seen..].find(text) {
                    let at = self.seen + at;
                    let start = output[..at].rfind('\n').map_or(0, |i| i + 1);
                    let end = output[at..].find('\n').map_or(output.len(), |i| at + i);
                    self.seen = at + text.len();
                    return output[start..end].to_string();
                }
            }
            if Instant::now() > deadline {
                panic!("no {text:?} within {PATIENCE:?}; output:\n{}", self.text());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Closes stdin and waits for the exit (bounded); returns the status and everything printed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the output threads drain the pipes.
                thread::sleep(Duration::from_millis(50));
                return (status, self.text());
            }
            if Instant::now() > deadline {
                panic!("the program did not exit; output:\n{}", self.text());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // Only our own child, by its handle: a failed test leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in `servercall`'s first line (`servercall listening on 127.0.0.1:PORT (upcall/1)`).
fn listening_port(line: &str) -> u16 {
    line.split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// `servercall --listen 127.0.0.1:0` in a terminal that is paused once it has said where it
/// listens: from then on nobody reads its stdout, a pipe, so once the pipe's 64 KiB are full every
/// write to it blocks. Returns the child (its stdin piped, to type into) and the port.
pub fn servercall_with_a_paused_terminal() -> (Child, u16) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_servercall"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("UPCALL_LISTEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut first = Vec::new();
    let mut stdout = server.stdout.take().expect("stdout is piped");
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing past the first line is read.
    while first.last() != Some(&b'\n') && matches!(stdout.read(&mut byte), Ok(1)) {
        first.push(byte[0]);
    }
    // Kept open and never read again: the pipe fills.
    server.stdout = Some(stdout);
    (server, listening_port(&String::from_utf8_lossy(&first)))
}

/// Starts a program with stdin, stdout and stderr piped to the test.
fn spawn(binary: &str, args: &[&str]) -> Child {
    Command::new(binary)
        .args(args)
        // The tests decide the address; an UPCALL_* variable in the developer's shell must
        // not change what they see.
        .env_remove("UPCALL_LISTEN")
        .env_remove("UPCALL_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Runs a program to the end with all of its stdin given at once.
pub fn run_with_input(binary: &str, args: &[&str], input: &str) -> Output {
    let mut child = spawn(binary, args);
    // A program that exits early (cannot connect, say) may never read its input: a broken pipe
    // here is not the test's concern, the program's output and exit status are.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let (done, result) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    wait_bounded(&result)
}

fn wait_bounded<T>(result: &Receiver<std::io::Result<T>>) -> T {
    result
        .recv_timeout(PATIENCE)
        .expect("the program finished in time")
        .expect("the program ran")
}
