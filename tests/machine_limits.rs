//! Nothing the machine or the operator does ends the server: a terminal nobody reads, a full disk,
//! a small open-file limit, a connect-and-close flood at that limit, and a control group that runs
//! out of threads. `servercall` runs as a real process here, under `ulimit` and cgroups; Linux
//! only (`/proc`, `/dev/full`, cgroups), and the cgroup test needs root (CI runs as root).
#![cfg(target_os = "linux")]

mod process;
pub mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use process::{servercall_with_a_paused_terminal, Program};
use support::{is_root, wait_until, RawClient};

const SERVERCALL: &str = env!("CARGO_BIN_EXE_servercall");

/// `servercall` started by `sh -c "<setup>; exec servercall ..."`, and the port it listens on.
fn servercall_after(setup: &str, args: &str) -> (Program, u16) {
    let script = format!("{setup}; exec {SERVERCALL} --listen 127.0.0.1:0 {args}");
    Program::listening(Program::start("sh", &["-c", &script]))
}

/// A connection that has read its `WELCOME` (or whatever the server said first; nothing if it
/// said nothing in time).
fn first_line(port: u16) -> (RawClient, String) {
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    client.set_patience(Some(Duration::from_secs(10)));
    let line = client.try_line().ok().flatten().unwrap_or_default();
    (client, line)
}

#[test]
fn quit_ends_the_program_even_when_nobody_reads_its_output() {
    let (mut server, _) = servercall_with_a_paused_terminal();
    let mut stdin = server.stdin.take().unwrap();
    // 3,000 `help`s: about 2 MB of answers, far more than the pipe and the log's queue hold.
    stdin.write_all("help\n".repeat(3000).as_bytes()).unwrap();
    thread::sleep(Duration::from_secs(1));
    let quit = Instant::now();
    stdin.write_all(b"quit\n").unwrap();
    let ended = wait_until(Duration::from_secs(10), || {
        matches!(server.try_wait(), Ok(Some(_)))
    });
    let took = quit.elapsed();
    if !ended {
        let _ = server.kill();
    }
    eprintln!("quit with a stuck stdout: ended after {took:?}");
    assert!(ended, "servercall did not end within 10 s of quit");
    assert!(server.wait().unwrap().success());
}

#[test]
fn lines_that_cannot_be_written_are_counted() {
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("printf 'list\\nquit\\n' | {SERVERCALL} --listen 127.0.0.1:0 > /dev/full"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("lines of output could not be written (No space left on device"),
        "{stderr}"
    );
}

#[test]
fn a_small_open_file_limit_still_serves_a_class() {
    let (mut server, port) = servercall_after("ulimit -n 100", "--quiet");
    // stderr's note and stdout's first line come in either order: look at all the output.
    assert!(wait_until(Duration::from_secs(10), || server
        .text()
        .contains("using ")));
    let note = server.text();
    assert!(
        note.contains("the open-file limit 100 allows about 88 clients); using 88."),
        "{note}"
    );
    let clients: Vec<(RawClient, String)> = (0..60).map(|_| first_line(port)).collect();
    let welcomed = clients
        .iter()
        .filter(|(_, line)| line.starts_with("WELCOME client-"))
        .count();
    assert_eq!(welcomed, 60);
    server.type_line("quit");
    assert!(server.finish().0.success());
}

#[test]
fn a_connect_and_close_flood_at_256_files_does_not_keep_a_student_out() {
    let (mut server, port) = servercall_after("ulimit -n 256", "--quiet");
    let stop = Instant::now() + Duration::from_secs(5);
    let flooders: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut connections = 0;
                while Instant::now() < stop {
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        connections += 1;
                    }
                }
                connections
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let mut waits = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let (_student, line) = first_line(port);
        assert!(line.starts_with("WELCOME client-"), "{line:?}");
        waits.push(started.elapsed());
        thread::sleep(Duration::from_millis(400));
    }
    let flood: usize = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    let worst = waits.iter().max().copied().unwrap_or_default();
    eprintln!("{flood} connect-and-close connections; students waited {waits:?}");
    // The bound is 1 s; a loaded CI machine gets some slack.
    assert!(worst < Duration::from_secs(3), "a student waited {worst:?}");
    server.type_line("quit");
    assert!(server.finish().0.success());
}

/// A control group for one test, removed when dropped.
struct PidsGroup {
    dir: PathBuf,
}

impl PidsGroup {
    fn new(max: u32) -> PidsGroup {
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let root = if v2 {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/pids")
        };
        let dir = root.join(format!("upcall-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|error| {
            panic!(
                "cannot create {} (this test needs root): {error}",
                dir.display()
            )
        });
        let group = PidsGroup { dir };
        group.set_max(max);
        group
    }

    fn set_max(&self, max: u32) {
        std::fs::write(self.dir.join("pids.max"), max.to_string()).unwrap();
    }

    fn current(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("pids.current")).unwrap();
        text.trim().parse().unwrap()
    }
}

impl Drop for PidsGroup {
    fn drop(&mut self) {
        // The group can go once its processes have ended.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn out_of_threads_the_server_refuses_clearly_and_never_panics() {
    if !is_root() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: creating a control group needs root (CI runs it as root)");
        return;
    }
    let group = PidsGroup::new(60);
    let procs = group.dir.join("cgroup.procs");
    let (mut server, port) = servercall_after(&format!("echo $$ > {}", procs.display()), "");
    // The server saw the group's limit and kept --max-clients under it.
    let noted = wait_until(Duration::from_secs(10), || {
        server
            .text()
            .contains("the control group's pids.max leaves room for about")
    });
    assert!(noted, "{}", server.text());
    let mut students: Vec<(RawClient, String)> = (0..5).map(|_| first_line(port)).collect();
    for (client, line) in &mut students {
        assert!(line.starts_with("WELCOME client-"), "{line:?}");
        client.send("REGISTER on_event\n");
    }
    // Other processes of the container take every thread that is left.
    group.set_max(group.current());
    let (_late, refused) = first_line(port);
    assert_eq!(refused, "ERR server busy: try again in a moment\n");
    server.wait_for("cannot start a thread for it");
    server.type_line("call client-1 on_event hello");
    server.wait_for("Could not run `call`: cannot start a thread");
    // Threads come back: everything works again, and `quit` ends the program cleanly.
    group.set_max(60);
    students[0].0.send("MSG still here\n");
    server.wait_for("Received from client-1: still here");
    server.type_line("quit");
    let (status, text) = server.finish();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(!text.contains("panicked"), "{text}");
}
