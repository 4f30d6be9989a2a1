//! The two programs as a student runs them: `servercall` and `clientcall`, real processes, stdin
//! typed by the test, stdout read back, over loopback on a port the system picks.
//!
//! These tests check what the README promises: the old lab's transcript, the server's console,
//! the clear one-line errors, and the `--no-reader` exercise.

mod process;

#[cfg(unix)]
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
#[cfg(unix)]
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::sync::mpsc;
use std::thread;

use process::{run_with_input, Program, PATIENCE};

/// The old lab's session, typed into the real `clientcall`: each upcall is printed before the
/// next prompt, and `bye` ends it with exit status 0.
#[test]
fn the_lab_transcript_from_the_real_programs() {
    let (mut server, port) = Program::servercall(&[]);
    let client = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\nhalo\nbye\n",
    );
    let transcript = String::from_utf8_lossy(&client.stdout);
    assert_eq!(
        transcript,
        format!(
            "Connected to 127.0.0.1:{port} as client-1.\n\
             Enter message: Received upcall from server: Upcall event: Processing haii\n\
             Enter another message: Received upcall from server: Upcall event: Processing halo\n\
             Enter another message: \n"
        )
    );
    assert!(client.status.success(), "{:?}", client.status);

    for line in [
        "Connection from: 127.0.0.1:",
        "client-1 registered on_event",
        "Received from client-1: haii",
        "Upcall 1 to client-1: on_event(\"Upcall event: Processing haii\")",
        "client-1 returned for upcall 1: ok",
        "Received from client-1: halo",
        "client-1 returned for upcall 2: ok",
        "client-1 said BYE",
        "client-1 disconnected",
    ] {
        server.wait_for(line);
    }
}

/// End of input is the same as `bye`: a scripted client never hangs.
#[test]
fn end_of_input_says_bye() {
    let (mut server, port) = Program::servercall(&[]);
    let client = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\n",
    );
    assert!(client.status.success());
    server.wait_for("client-1 said BYE");
}

/// A second client hears the first one's messages as upcalls, and the server's console can call
/// a client on its own: `call`, `broadcast`, `list`, then `quit`.
#[test]
fn two_clients_and_the_console() {
    let (mut server, port) = Program::servercall(&[]);
    let mut alice = Program::clientcall(port, &[]);
    let mut bob = Program::clientcall(port, &[]);
    server.wait_for("client-2 registered hostname");

    alice.type_line("haii");
    alice.wait_for("Received upcall from server: Upcall event: Processing haii");
    // Bob sits at his prompt: the upcall is printed on a line of its own, and the prompt again.
    bob.wait_for(
        "\nReceived upcall from server: Upcall event: client-1 says haii\nEnter message: ",
    );

    server.type_line("list");
    server.wait_for("client-1  127.0.0.1:");
    server.wait_for("client-2  127.0.0.1:");
    server.type_line("call client-1 uppercase haii");
    server.wait_for("client-1 returned: HAII");
    server.type_line("call client-2 hostname");
    let hostname = server.wait_for("client-2 returned: ");
    assert!(hostname.len() > "client-2 returned: ".len(), "{hostname:?}");
    server.type_line("call client-2 format_disk");
    server.wait_for("client-2 was not called: format_disk is not registered");
    server.type_line("call client-9 hostname");
    server.wait_for("client-9 was not called: no such client");

    server.type_line("broadcast class starts now");
    server.wait_for("client-1 returned: ok");
    server.wait_for("client-2 returned: ok");
    server.wait_for("Broadcast: 2 of 2 client(s) returned");
    alice.wait_for("Received upcall from server: Upcall event: server says class starts now");
    bob.wait_for("Received upcall from server: Upcall event: server says class starts now");

    server.type_line("quit");
    server.wait_for("Saying BYE to 2 client(s) and stopping.");
    let (status, log) = server.finish();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.ends_with("Server stopped.\n"), "{log}");

    // The clients learn that the server is gone, and say so.
    for client in [alice, bob] {
        let (status, output) = client.finish();
        assert_eq!(status.code(), Some(1), "{output}");
        assert!(output.contains("Server said BYE"), "{output}");
        assert!(
            output.ends_with("Server closed the connection.\n"),
            "{output}"
        );
    }
}

/// `--no-reader` is the old lab's client: nobody reads the socket while the user sits at the
/// prompt, so a call from the console goes unanswered until the user presses Enter.
#[test]
fn without_a_reader_thread_a_console_call_times_out() {
    let (mut server, port) = Program::servercall(&["--upcall-timeout", "1"]);
    let mut client = Program::clientcall(port, &["--no-reader"]);
    server.wait_for("client-1 registered uppercase");

    server.type_line("call client-1 uppercase too late");
    server.wait_for("Upcall 1 to client-1: uppercase(\"too late\")");
    server.wait_for("client-1 did not answer within 1 s");

    // Enter: the client reads its socket at last, answers upcall 1 (too late: the server has
    // given up on it) and then gets the upcall its message caused.
    client.type_line("haii");
    client.wait_for("Received upcall from server: Upcall event: Processing haii");
    server.wait_for("client-1 sent a bad line: unknown upcall id 1");
    client.type_line("halo");
    client.wait_for("Server error: unknown upcall id 1");

    // The same call, with the reader thread, is answered at once.
    let mut reader = Program::clientcall(port, &[]);
    server.wait_for("client-2 registered uppercase");
    server.type_line("call client-2 uppercase in time");
    server.wait_for("client-2 returned: IN TIME");
    drop(reader.stdin.take());
}

#[test]
fn a_busy_port_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = run_with_input(
        env!("CARGO_BIN_EXE_servercall"),
        &["--listen", &address],
        "",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "servercall: cannot listen on {address}: the address is already in use."
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--listen 127.0.0.1:"), "{stderr}");
}

#[test]
fn no_server_is_one_clear_line() {
    // A port that was just free: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr,
        format!(
            "clientcall: cannot connect to 127.0.0.1:{port}: connection refused. Is servercall \
             running there? Start it with `cargo run --bin servercall`, or point --server at \
             it.\n"
        )
    );
}

#[test]
fn bad_options_are_explained() {
    let output = run_with_input(
        env!("CARGO_BIN_EXE_servercall"),
        &["--max-clients", "0"],
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "servercall: --max-clients wants a whole number of at least 1, got `0`. Try \
         `servercall --help`.\n"
    );
    let output = run_with_input(env!("CARGO_BIN_EXE_clientcall"), &["--help"], "");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--no-reader"));
}

/// A server that is full turns the extra client away in words.
#[test]
fn a_full_server_says_so() {
    let (mut server, port) = Program::servercall(&["--max-clients", "1"]);
    let mut first = Program::clientcall(port, &[]);
    server.wait_for("client-1 registered");
    let second = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\n",
    );
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&second.stderr),
        "clientcall: the server said: server full\n"
    );
    server.wait_for("refused: server full (1 clients)");
    first.type_line("still here");
    first.wait_for("Processing still here");
}

/// A misbehaving server (garbage, a callback the client does not have, client-only verbs) is
/// reported, not obeyed, and the client keeps working.
#[test]
fn the_client_survives_a_misbehaving_server() {
    use std::io::{BufRead, BufReader, Write};

    // The "server" is this test, speaking raw bytes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // It greets and acknowledges each registration properly: the client waits for that.
    let accepted = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        socket.write_all(b"WELCOME client-1 upcall/1\n").unwrap();
        let mut from_client = BufReader::new(socket.try_clone().unwrap());
        for callback in ["on_event", "uppercase", "hostname"] {
            let mut line = String::new();
            from_client.read_line(&mut line).unwrap();
            assert_eq!(line, format!("REGISTER {callback}\n"));
            writeln!(socket, "REGISTERED {callback}").unwrap();
        }
        (socket, from_client)
    });
    let mut client = Program::clientcall(port, &[]);
    let (mut socket, mut from_client) = accepted.join().unwrap();
    let mut expect = |line: &str| {
        let mut got = String::new();
        from_client.read_line(&mut got).unwrap();
        assert_eq!(got, format!("{line}\n"));
    };
    socket
        .write_all(b"GARBAGE here\nMSG \xff\xfe\nUPCALL 7 format_disk c\nRETURN 1 x\n")
        .unwrap();
    socket.write_all(b"UPCALL 8 uppercase hi\n").unwrap();
    expect("FAIL 7 unknown callback format_disk");
    expect("RETURN 8 HI");
    client.wait_for("Ignoring a line from the server: unknown verb");
    client.wait_for("Ignoring a line from the server: line is not valid UTF-8.");
    client.wait_for("Ignoring RETURN from the server: it is not a server's line.");

    // Still a working client: a message goes out, its upcall comes back and is printed.
    client.type_line("still fine");
    expect("MSG still fine");
    socket
        .write_all(b"UPCALL 9 on_event Upcall event: Processing still fine\n")
        .unwrap();
    expect("RETURN 9 ok");
    client.wait_for("Received upcall from server: Upcall event: Processing still fine");
}

/// More clients than the machine can hold threads for would abort the whole server at the first
/// thread too many: the server holds its limit below that and says so.
///
/// Unix only: the limit comes from what the system states (`/proc`, the cgroup, `getrlimit`);
/// Windows states none (`client_limit_here` is `None` there), so there is no note to check.
///
/// The note is on stderr and the server's first line on stdout. Each stream is read on its own,
/// up to its first newline: read together as they arrive, a note written in pieces could have
/// stdout's line land in the middle of it.
#[cfg(unix)]
#[test]
fn an_impossible_max_clients_is_lowered_with_a_note() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_servercall"))
        .args(["--max-clients", "10000000", "--listen", "127.0.0.1:0"])
        .env_remove("UPCALL_LISTEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("servercall starts");
    let stderr = first_line(server.stderr.take().unwrap());
    let stdout = first_line(server.stdout.take().unwrap());
    let (stderr, stdout) = (stderr.recv_timeout(PATIENCE), stdout.recv_timeout(PATIENCE));
    // Only our own child, by its handle; before any assertion, so a failure leaves nothing behind.
    let _ = server.kill();
    let _ = server.wait();
    let stderr = stderr.expect("a line on stderr in time");
    let stdout = stdout.expect("a line on stdout in time");
    assert!(
        stderr.starts_with("servercall: --max-clients 10000000 is more than this machine allows ("),
        "{stderr}"
    );
    assert!(stderr.contains("); using "), "{stderr}");
    assert!(
        stdout.starts_with("servercall listening on 127.0.0.1:"),
        "{stdout}"
    );
}

/// The first line of a stream (up to and with its newline, or all of it if it ends first), read by
/// a thread of its own; the receiver gets it once it is whole.
#[cfg(unix)]
fn first_line(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (line, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = BufReader::new(stream).read_until(b'\n', &mut bytes);
        let _ = line.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    receiver
}
