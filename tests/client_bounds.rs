//! `clientcall` stays bounded in memory and in time, whatever the server or a classmate does:
//! a flood of upcalls while its terminal is paused, a server that stops reading, a server that
//! never closes.
//!
//! The real `clientcall` runs as a child process; the other side is either the library server in
//! this process or a fake server (a `TcpListener` in the test) that misbehaves on purpose.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{quiet_config, resident_kib, wait_until, TestServer};
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
