//! Every side holds: the operator's console and the server's log never freeze the server, and a
//! broadcast reports each client exactly once, whatever the clients do.
//!
//! (The client's own bounds are tested in `tests/client_bounds.rs`, the connections' fairness in
//! `tests/fairness.rs`.)

mod process;
pub mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use process::servercall_with_a_paused_terminal;
use support::scenarios::TwoClients;
use support::{quiet_config, RawClient, TestServer};
use upcall::console::{self, ConsoleEnd};
use upcall::server::{Outcome, Server, ServerConfig};

/// Console output that remembers when each line was printed.
#[derive(Clone, Default)]
struct Timed(Arc<Mutex<Vec<(Instant, String)>>>);

impl Write for Timed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let mut lines = self.0.lock().unwrap();
        for line in String::from_utf8_lossy(bytes).lines() {
            lines.push((now, line.to_string()));
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_console_survives_invalid_utf8_and_carries_on() {
    let server = TestServer::start(quiet_config());
    let mut output = Vec::new();
    let input: &[u8] = b"broadcast caf\xe9\nlist\nquit\n";
    let end = console::run(&server, input, &mut output).unwrap();
    assert_eq!(end, ConsoleEnd::Quit);
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "Ignored a line that is not UTF-8 text: the console reads UTF-8.\n\
         No clients connected.\n\
         Saying BYE to 0 client(s) and stopping.\n"
    );
}

/// `quit` typed before the accept loop has started: `serve` then returns at once.
#[test]
fn quit_before_the_accept_loop_starts_still_stops_it() {
    let server = Server::new(quiet_config());
    server.shutdown();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (done, served) = mpsc::channel();
    thread::spawn(move || done.send(server.serve(listener).is_ok()));
    assert_eq!(served.recv_timeout(Duration::from_secs(2)), Ok(true));
}

/// Five `call`s to a client that reads but never answers wait together; a `list` typed after
/// them answers at once, and every call's result comes when its timeout does.
#[test]
fn list_answers_at_once_while_calls_wait() {
    let server = TestServer::start(ServerConfig {
        upcall_timeout: Duration::from_secs(2),
        ..quiet_config()
    });
    let (mut silent, name) = server.connect_registered(&["uppercase"]);
    let output = Timed::default();
    let started = Instant::now();
    let commands = format!("{}list\n", format!("call {name} uppercase hi\n").repeat(5));
    let end = console::run(&server, commands.as_bytes(), output.clone()).unwrap();
    assert_eq!(end, ConsoleEnd::EndOfInput);
    for _ in 0..5 {
        silent.expect_upcall(); // read, never answered
    }
    let lines = output.0.lock().unwrap().clone();
    let (listed_at, _) = lines
        .iter()
        .find(|(_, line)| line.starts_with(&format!("{name}  ")))
        .expect("list answered");
    assert!(
        *listed_at - started < Duration::from_millis(500),
        "list waited {:?}",
        *listed_at - started
    );
    let timed_out = lines
        .iter()
        .filter(|(_, line)| *line == format!("{name} did not answer within 2 s"))
        .count();
    assert_eq!(timed_out, 5, "{lines:?}");
    // All five waited together: about one timeout, not five.
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// One broadcast, six clients: two answer, one fails, one never answers, one leaves after reading
/// its upcall, one has no `on_event`. Each called client appears exactly once, with how its upcall
/// ended, and the summary counts match.
#[test]
fn a_broadcast_reports_each_client_exactly_once() {
    let server = TestServer::start(ServerConfig {
        upcall_timeout: Duration::from_secs(1),
        ..quiet_config()
    });
    let (mut one, _) = server.connect_registered(&["on_event"]);
    let (mut two, _) = server.connect_registered(&["on_event"]);
    let (mut fails, _) = server.connect_registered(&["on_event"]);
    let (mut silent, _) = server.connect_registered(&["on_event"]);
    let (mut leaves, _) = server.connect_registered(&["on_event"]);
    let (_uncalled, _) = server.connect_registered(&["uppercase"]);

    let mut output = Vec::new();
    let console = {
        let server = server.handle();
        thread::spawn(move || {
            console::run(&server, "broadcast hello\n".as_bytes(), &mut output).unwrap();
            String::from_utf8(output).unwrap()
        })
    };
    let id = one.expect_upcall().id;
    one.send(&format!("RETURN {id} ok\n"));
    let id = two.expect_upcall().id;
    two.send(&format!("RETURN {id} fine\n"));
    let id = fails.expect_upcall().id;
    fails.send(&format!("FAIL {id} no thanks\n"));
    silent.expect_upcall();
    leaves.expect_upcall();
    leaves.hang_up();

    assert_eq!(
        console.join().unwrap(),
        "client-1 returned: ok\n\
         client-2 returned: fine\n\
         client-3 failed: no thanks\n\
         client-4 did not answer within 1 s\n\
         client-5 disconnected before answering\n\
         Broadcast: 2 of 5 client(s) returned (upcall timeout 1 s).\n"
    );
    // client-4 let its upcall time out and said nothing since (a laptop asleep): the next
    // broadcast still sends it the upcall, but does not wait for it a second time.
    let results = server.broadcast("again");
    let ghost = results.iter().find(|r| r.client == "client-4");
    assert_eq!(
        ghost.map(|r| &r.outcome),
        Some(&Outcome::Unanswered),
        "{results:?}"
    );
    silent.expect_upcall();
}

/// A paused terminal (here: nobody reads servercall's stdout, so the pipe fills) never holds up
/// a client: with the log stuck, a new connection still gets `WELCOME` and a `MSG` its `UPCALL` at
/// once.
#[test]
fn a_paused_terminal_never_holds_up_a_client() {
    let (mut server, port) = servercall_with_a_paused_terminal();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    // From here on, nobody reads stdout. 2,000 connections write ~150 KB of log: far more than a
    // pipe holds (64 KiB).
    for _ in 0..2000 {
        drop(TcpStream::connect(address).unwrap());
    }
    thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let mut client = RawClient::connect(address);
        let line = client.expect_line();
        assert!(line.starts_with("WELCOME "), "{line:?}");
        client.send("REGISTER on_event\n");
        client.send(&format!("MSG paused {n}\n"));
        client.expect("REGISTERED on_event\n");
        client.expect(&format!(
            "UPCALL 1 on_event Upcall event: Processing paused {n}\n"
        ));
        worst = worst.max(started.elapsed());
    }
    eprintln!("with the terminal paused: slowest connect-to-UPCALL {worst:?}");
    assert!(worst < Duration::from_millis(250), "{worst:?}");
    let _ = server.kill();
    let _ = server.wait();
}

/// Text that cannot lie: a right-to-left override or a line separator in a `MSG` gets `ERR` and
/// reaches nobody, so nobody can forge what the operator or a classmate reads. Emoji sequences
/// glued by a zero width joiner (a family, the rainbow flag) are text and pass.
#[test]
fn invisible_format_characters_are_refused_and_not_passed_on_while_emoji_sequences_pass() {
    let mut clients = TwoClients::start();
    for (sneaky, error) in [
        (
            "MSG gnp.exe\u{202E}\n",
            "ERR invisible format character U+202E (right-to-left override) at byte 12 (it \
             reorders or hides text)\n",
        ),
        (
            "MSG hi\u{2028}client-2 said BYE\n",
            "ERR invisible format character U+2028 (line separator) at byte 7 (it reorders or \
             hides text)\n",
        ),
        (
            "MSG ad\u{200D}min\n",
            "ERR invisible format character U+200D (zero width joiner) at byte 7 (a zero width \
             joiner is allowed only between two emoji)\n",
        ),
    ] {
        clients.rejects(sneaky.as_bytes(), error);
    }
    let emoji = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{1F3F3}\u{FE0F}\u{200D}\u{1F308}";
    let (sender, other) = (&mut clients.bad, &mut clients.other);
    sender.send(&format!("MSG {emoji}\n"));
    sender.expect_upcall_of("on_event", &format!("Upcall event: Processing {emoji}"));
    // The first upcall `other` hears is the emoji one: nothing of the refused lines came through.
    other.expect_upcall_of("on_event", &format!("Upcall event: client-1 says {emoji}"));
}
