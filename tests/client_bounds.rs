//! `clientcall` stays bounded in memory and in time, whatever the server or a classmate does:
//! a flood of upcalls while its terminal is paused, a server that stops reading, a server that
//! never closes.
//!
//! The real `clientcall` runs as a child process; the other side is either the library server in
//! this process or a fake server (a `TcpListener` in the test) that misbehaves on purpose.

pub mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use support::resident_kib;
use support::{quiet_config, wait_until, TestServer};
use upcall::server::Outcome;

fn clientcall(address: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clientcall"))
        .args(["--server", address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start clientcall")
}

/// Waits for `child` to end, up to `limit`; its exit code and how long it took.
fn ends_within(child: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("clientcall still running after {limit:?}");
}

/// A classmate floods 4 KB messages while this student sits at the prompt and the terminal is
/// paused (nobody reads clientcall's stdout). Every upcall is still answered, and clientcall's
/// memory stays flat.
///
/// Linux only: the memory is read from `/proc/<pid>/status`, and std has no portable way to read
/// another process's resident memory (Windows and macOS need system calls std does not offer).
/// The bound it checks is the client's own code (the screen's queue), the same on every system.
#[cfg(target_os = "linux")]
#[test]
fn a_flood_of_upcalls_with_a_paused_terminal_keeps_memory_flat() {
    let server = TestServer::start(quiet_config());
    let mut student = clientcall(&server.addr.to_string());
    let stdout = student.stdout.take().unwrap();
    // Read the first line ("Connected to ..."), then never again: the terminal is paused.
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(wait_until(Duration::from_secs(5), || server
        .clients()
        .first()
        .is_some_and(|client| client.callbacks.len() == 3)));
    let start_kib = resident_kib(&student.id().to_string());

    let (mut classmate, _) = server.connect_registered(&[]);
    let text = "x".repeat(4000);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(4) {
        classmate.send(&format!("MSG {sent} {text}\n"));
        sent += 1;
        // The classmate registered nothing, so each MSG earns it an ERR: read them.
        classmate.expect_line();
    }
    let end_kib = resident_kib(&student.id().to_string());
    // Still connected, still answering: a call gets its answer at once.
    let answer = server.call("client-1", "uppercase", "still there");
    eprintln!(
        "{sent} upcalls of 4 KB in 4 s: clientcall RSS {start_kib} KiB -> {end_kib} KiB; {answer}"
    );
    assert_eq!(answer.outcome, Outcome::Returned("STILL THERE".into()));
    assert!(sent > 1000, "only {sent} messages were sent");
    assert!(
        end_kib < start_kib + 8 * 1024,
        "clientcall grew from {start_kib} KiB to {end_kib} KiB"
    );
    let _ = student.kill();
    let _ = student.wait();
}

/// A fake server: greets, acknowledges the three registrations, then hands the stream to `then`.
fn fake_server(then: impl FnOnce(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"WELCOME client-1 upcall/1\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for _ in 0..3 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let callback = line.trim().strip_prefix("REGISTER ").unwrap().to_string();
            stream
                .write_all(format!("REGISTERED {callback}\n").as_bytes())
                .unwrap();
        }
        then(stream);
    });
    address
}

/// A server that calls and calls but never reads the answers: once the client cannot send a
/// `RETURN` for the write timeout, it gives up with one clear line and exit status 1.
#[test]
fn a_server_that_stops_reading_is_given_up_on() {
    let address = fake_server(|mut stream| {
        let big = "y".repeat(4000);
        for id in 1..=20_000 {
            let upcall = format!("UPCALL {id} uppercase {big}\n");
            if stream.write_all(upcall.as_bytes()).is_err() {
                break;
            }
        }
        thread::sleep(Duration::from_secs(90));
    });
    let mut client = clientcall(&address);
    // Its terminal shows what it prints (every upcall has a line), as a terminal does.
    let mut stdout = client.stdout.take().unwrap();
    let printed = thread::spawn(move || {
        let mut output = String::new();
        let _ = stdout.read_to_string(&mut output);
        output
    });
    let (code, took) = ends_within(&mut client, Duration::from_secs(60));
    let output = printed.join().unwrap();
    let output = output.lines().last().unwrap_or_default();
    eprintln!("clientcall gave up after {took:?}");
    assert_eq!(code, Some(1));
    assert!(
        output.contains("The server stopped reading: nothing could be sent for 5 s. Giving up."),
        "{output}"
    );
}

/// End of input against a server that neither reads nor closes: the client still ends within a
/// few seconds.
#[test]
fn end_of_input_ends_the_client_whatever_the_server_does() {
    let address = fake_server(|_stream| thread::sleep(Duration::from_secs(30)));
    let mut client = clientcall(&address);
    thread::sleep(Duration::from_millis(300));
    drop(client.stdin.take()); // end of input
    let (code, took) = ends_within(&mut client, Duration::from_secs(10));
    eprintln!("clientcall ended {took:?} after the end of its input");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

/// A server that trickles one byte every 2 s and never finishes `WELCOME`: a read timeout alone
/// would restart with every byte and wait for ever. The client gives up after its wait, in words
/// (no raw OS error), with exit status 1.
#[test]
fn a_server_that_trickles_its_welcome_is_given_up_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        for byte in b"WELCOME client-1 upcall/1".iter().cycle().take(30) {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_secs(2));
        }
    });
    let mut client = clientcall(&address);
    let (code, took) = ends_within(&mut client, Duration::from_secs(30));
    let mut stderr = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("clientcall gave up after {took:?}: {stderr}");
    assert_eq!(code, Some(1));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        stderr,
        format!(
            "clientcall: {address} did not say WELCOME within 5 s: is it an upcall server? \
             Check the address and port.\n"
        )
    );
}

/// Runs `clientcall` against `server` with all of `input` at once; its exit code and stdout.
fn session(server: &TestServer, input: &[u8]) -> (Option<i32>, String) {
    let mut client = clientcall(&server.addr.to_string());
    client.stdin.take().unwrap().write_all(input).unwrap();
    let mut stdout = client.stdout.take().unwrap();
    let printed = thread::spawn(move || {
        let mut output = String::new();
        let _ = stdout.read_to_string(&mut output);
        output
    });
    let (code, _) = ends_within(&mut client, Duration::from_secs(20));
    (code, printed.join().unwrap())
}

/// A line in another encoding (a Windows console pipes in its code page) gets one line of note,
/// and the session goes on: the next message is sent, `bye` ends it with status 0.
#[test]
fn a_line_that_is_not_utf8_is_skipped_with_a_note() {
    let server = TestServer::start(quiet_config());
    let (code, output) = session(&server, b"haii\nstra\xdfe\nhalo\nbye\n");
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(
        output
            .matches("Cannot send that line: it is not UTF-8 text (")
            .count(),
        1,
        "{output}"
    );
    assert!(output.contains("Processing haii"), "{output}");
    assert!(output.contains("Processing halo"), "{output}");
}

/// Ctrl-D then Enter in a Windows console (and Ctrl-Z then Enter read through a Unix pipe) is a
/// line of one control character: the student meant to leave, and leaves.
#[test]
fn another_systems_end_of_input_key_ends_the_session_too() {
    let server = TestServer::start(quiet_config());
    for key in ["\u{4}", "\u{1a}"] {
        let input = format!("haii\n{key}\nnot sent\n");
        let (code, output) = session(&server, input.as_bytes());
        assert_eq!(code, Some(0), "{output}");
        assert!(!output.contains("control character"), "{output}");
        assert!(!output.contains("Processing not sent"), "{output}");
    }
}

/// Every upcall the client runs is shown in its terminal with what it sent back, in the words of
/// the server's log; a long argument is cut so that it stays one line.
#[test]
fn every_upcall_the_client_runs_is_shown_with_its_result() {
    let server = TestServer::start(quiet_config());
    let mut student = clientcall(&server.addr.to_string());
    let stdout = student.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    assert!(wait_until(Duration::from_secs(5), || server
        .clients()
        .first()
        .is_some_and(|client| client.callbacks.len() == 3)));
    let long = "a".repeat(100);
    for (callback, argument) in [
        ("uppercase", "haii"),
        ("hostname", ""),
        ("uppercase", &long),
    ] {
        let answer = server.call("client-1", callback, argument);
        assert!(matches!(answer.outcome, Outcome::Returned(_)), "{answer}");
    }
    let expected = [
        "Upcall 1 from server: uppercase(\"haii\") -> HAII".to_string(),
        "Upcall 2 from server: hostname() -> ".to_string(),
        format!(
            "Upcall 3 from server: uppercase(\"{}\"..., 100 characters in all) -> {}..., 100 \
             characters in all",
            "a".repeat(60),
            "A".repeat(60)
        ),
    ];
    for wanted in expected {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).expect("the upcall's line");
            if line.starts_with(&wanted) {
                break;
            }
        }
    }
    let _ = student.kill();
    let _ = student.wait();
}
