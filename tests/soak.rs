//! Robustness under load: the server after thousands of connections, a client that stops reading,
//! a client killed in the middle of an upcall, and many clients talking while the console
//! broadcasts.
//!
//! Every test runs the library server in this process on `127.0.0.1:0`, log off, and plays its
//! clients over loopback with plain `TcpStream`s. The light variants run in the default
//! `cargo test` (a few seconds in debug); the heavy ones are `#[ignore]`d and meant for
//! `cargo test --release -- --ignored`.
//!
//! Some tests compare the process's thread count and open file descriptors before and after, and
//! those are shared by every test of this file (they run on threads of one process). So each test
//! takes [`serial`] first: one at a time, and the others' threads wait, idle, on the lock.

mod support;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::{resident_kib, wait_until};
use upcall::console;
use upcall::server::{Outcome, Server, ServerConfig};

/// Any single line must arrive within this long, or the test fails instead of hanging.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Helpers

struct TestServer {
    server: Server,
    address: SocketAddr,
    acceptor: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    fn start(config: ServerConfig) -> TestServer {
        let server = Server::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let acceptor = {
            let server = server.clone();
            thread::spawn(move || server.serve(listener))
        };
        TestServer {
            server,
            address,
            acceptor: Some(acceptor),
        }
    }

    fn stop(mut self) {
        self.server.shutdown();
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().expect("accept loop").expect("serve");
        }
        assert!(
            self.server
                .wait_for_clients_to_leave(Duration::from_secs(10)),
            "clients still registered 10 s after shutdown"
        );
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        log: false,
        max_clients: 100_000,
        // Load, not a flood: the flood control has tests of its own. Under this load a client's
        // answers queue behind thousands of upcalls, all unanswered for a while.
        max_msg_rate: 0,
        max_pending: 1_000_000,
        ..ServerConfig::default()
    }
}

/// `Threads:` of /proc/self/status.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// Entries of /proc/self/fd (the directory handle itself counts too, in every reading alike).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Polls until the server has no client left and the threads and descriptors are back within
/// `tolerance` of the baseline; returns the last reading.
fn settle(
    server: &Server,
    baseline: (usize, usize),
    tolerance: usize,
    limit: Duration,
) -> (usize, usize) {
    let deadline = Instant::now() + limit;
    loop {
        let now = (threads(), open_fds());
        let back = server.client_count() == 0
            && now.0 <= baseline.0 + tolerance
            && now.1 <= baseline.1 + tolerance;
        if back || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A client speaking raw `upcall/1` lines.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    name: String,
}

impl Client {
    /// Connects and reads `WELCOME`.
    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
            name: String::new(),
        };
        let welcome = client.line();
        let name = welcome
            .strip_prefix("WELCOME ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("expected WELCOME, got {welcome:?}"));
        client.name = name.to_string();
        client
    }

    fn registered(address: SocketAddr, callback: &str) -> Client {
        let mut client = Client::connect(address);
        client.send(&format!("REGISTER {callback}\n"));
        assert_eq!(client.line(), format!("REGISTERED {callback}"));
        client
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("send");
    }

    /// The next line without its newline; panics on timeout or end of stream.
    fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("{}: connection closed", self.name),
            Ok(_) => line.trim_end_matches('\n').to_string(),
            Err(error) => panic!("{}: no line within {LINE_TIMEOUT:?}: {error}", self.name),
        }
    }
}

/// `UPCALL <id> <callback> <argument>` → (id, argument).
fn upcall(line: &str) -> Option<(u64, String)> {
    let mut fields = line.strip_prefix("UPCALL ")?.splitn(3, ' ');
    let id = fields.next()?.parse().ok()?;
    let _callback = fields.next()?;
    Some((id, fields.next().unwrap_or("").to_string()))
}

/// What a client's answering thread saw.
#[derive(Default, Debug)]
struct Heard {
    ids: Vec<u64>,
    arguments: Vec<String>,
    /// Any line that is not an `UPCALL`: an `ERR` here would mean a `RETURN` the server did not
    /// expect, i.e. an upcall answered twice or never sent.
    other: Vec<String>,
}

/// Reads `client` until end of stream on a thread of its own, answering every upcall with
/// `RETURN <id> ok` at once (through `writer`, shared with whoever else writes to this client).
fn answer_everything(
    mut reader: BufReader<TcpStream>,
    writer: Arc<Mutex<TcpStream>>,
    heard: Arc<Mutex<Heard>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = line.trim_end_matches('\n');
            match upcall(text) {
                Some((id, argument)) => {
                    let answered = writer
                        .lock()
                        .unwrap()
                        .write_all(format!("RETURN {id} ok\n").as_bytes());
                    let mut heard = heard.lock().unwrap();
                    heard.ids.push(id);
                    heard.arguments.push(argument);
                    if answered.is_err() {
                        return;
                    }
                }
                None => heard.lock().unwrap().other.push(text.to_string()),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Churn: thousands of connections come and go, many of them rudely

/// One connection's life, in one of six ways.
fn churn_cycle(address: SocketAddr, kind: usize) {
    match kind {
        // Polite: register, say BYE, wait for the server's BYE.
        0 => {
            let mut client = Client::registered(address, "on_event");
            client.send("BYE\n");
            assert_eq!(client.line(), "BYE");
        }
        // Registered, then gone without a word (FIN).
        1 => drop(Client::registered(address, "on_event")),
        // Half a line, then FIN: "connection closed in the middle of a line" on the server.
        2 => {
            let mut client = Client::connect(address);
            client.send("REGISTER on_ev");
            client.writer.shutdown(Shutdown::Write).unwrap();
        }
        // WELCOME left unread, then closed: unread data makes Linux send RST, not FIN.
        3 => {
            let stream = TcpStream::connect(address).expect("connect");
            stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
            let mut peek = [0; 1];
            stream.peek(&mut peek).expect("WELCOME arrives");
            (&stream).write_all(b"REGISTER on_event\n").unwrap();
        }
        // Half a line, then RST.
        4 => {
            let stream = TcpStream::connect(address).expect("connect");
            stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
            let mut peek = [0; 1];
            stream.peek(&mut peek).expect("WELCOME arrives");
            (&stream).write_all(b"MSG hal").unwrap();
        }
        // Connected and closed at once, before WELCOME could even be read.
        _ => drop(TcpStream::connect(address).expect("connect")),
    }
}

fn churn(cycles: usize) {
    let _serial = serial();
    let server = TestServer::start(config());
    // One of each first, so that anything created once (a thread-local, an arena) is there
    // before the baseline is taken.
    for kind in 0..6 {
        churn_cycle(server.address, kind);
    }
    wait_until(Duration::from_secs(5), || server.server.client_count() == 0);
    let baseline = (threads(), open_fds());

    let started = Instant::now();
    for cycle in 0..cycles {
        churn_cycle(server.address, cycle % 6);
    }
    let took = started.elapsed();

    // Every connection thread must be gone, every socket closed (a few stragglers may still be
    // on their way out: poll).
    let after = settle(&server.server, baseline, 2, Duration::from_secs(10));
    assert!(
        after.0 <= baseline.0 + 2 && after.1 <= baseline.1 + 2,
        "after {cycles} cycles in {took:?}: threads {} (baseline {}), fds {} (baseline {})",
        after.0,
        baseline.0,
        after.1,
        baseline.1
    );
    assert_eq!(
        server.server.client_count(),
        0,
        "clients left in the registry"
    );

    // And the server still serves.
    let mut client = Client::registered(server.address, "on_event");
    client.send("MSG still there?\n");
    assert_eq!(
        client.line(),
        "UPCALL 1 on_event Upcall event: Processing still there?"
    );
    client.send("RETURN 1 ok\n");
    client.send("BYE\n");
    assert_eq!(client.line(), "BYE");
    server.stop();
}

#[test]
fn churn_of_600_connections_leaves_no_thread_and_no_descriptor_behind() {
    churn(600);
}

#[test]
#[ignore = "heavy: 10,000 connections; run with --release -- --ignored"]
fn churn_of_10000_connections_leaves_no_thread_and_no_descriptor_behind() {
    churn(10_000);
}

// ---------------------------------------------------------------------------------------------
// 2. A client that never reads

/// While the console broadcasts big upcalls and another client chats, one client never reads.
/// Its socket buffers fill, then its outbox, and it is dropped (too far behind, a line unsent for
/// the write timeout, or too many upcalls unanswered, whichever comes first). Meanwhile no other
/// client misses a single upcall, no broadcast waits for the stuck client, and afterwards no
/// thread is left behind.
fn a_client_that_never_reads(readers: usize, after_drop: usize) {
    let _serial = serial();
    let write_timeout = Duration::from_millis(500);
    let server = TestServer::start(ServerConfig {
        write_timeout,
        // Long: the stuck client must be dropped for not reading, not by the upcall timeout.
        upcall_timeout: Duration::from_secs(30),
        // Big lines fill the stuck client's buffers (a few MiB on loopback) in a few dozen writes.
        max_line: 128 * 1024,
        ..config()
    });
    // The server's own threads (sweeper, flusher, starter) start with its accept loop: let one
    // client come and go first, so that the baseline counts them.
    let mut first = Client::registered(server.address, "on_event");
    first.send("BYE\n");
    assert_eq!(first.line(), "BYE");
    drop(first);
    thread::sleep(Duration::from_millis(100));
    let baseline = (threads(), open_fds());

    // The clients that read: each answers every upcall and records it.
    let mut listeners = Vec::new();
    for _ in 0..readers {
        let client = Client::registered(server.address, "on_event");
        let heard = Arc::new(Mutex::new(Heard::default()));
        let writer = Arc::new(Mutex::new(client.writer));
        let thread = answer_everything(client.reader, writer.clone(), heard.clone());
        listeners.push((client.name, writer, heard, thread));
    }
    // The chatty one: sends MSGs (each one an upcall to every other client) and answers its own.
    let chatty = Client::registered(server.address, "on_event");
    let chatty_writer = Arc::new(Mutex::new(chatty.writer));
    let chatty_heard = Arc::new(Mutex::new(Heard::default()));
    let chatty_reader =
        answer_everything(chatty.reader, chatty_writer.clone(), chatty_heard.clone());
    // The one that never reads.
    let stuck = Client::registered(server.address, "on_event");
    let stuck_name = stuck.name.clone();
    let is_connected = |name: &str| server.server.clients().iter().any(|c| c.name == name);

    let stop_chatting = Arc::new(AtomicBool::new(false));
    let chatter = {
        let writer = chatty_writer.clone();
        let stop = stop_chatting.clone();
        thread::spawn(move || {
            let text = "c".repeat(16 * 1024);
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) {
                let line = format!("MSG {sent} {text}\n");
                if writer.lock().unwrap().write_all(line.as_bytes()).is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(Duration::from_millis(2));
            }
            sent
        })
    };

    // Broadcast until the stuck client is dropped, then `after_drop` times more.
    let big = "b".repeat(64 * 1024);
    let mut broadcasts = 0;
    let mut slowest = Duration::ZERO;
    let mut dropped_after = None;
    let started = Instant::now();
    let mut extra = 0;
    while extra < after_drop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{stuck_name} still connected after {broadcasts} broadcasts of 64 KiB"
        );
        let begun = Instant::now();
        let results = server.server.broadcast(&format!("{broadcasts} {big}"));
        let took = begun.elapsed();
        slowest = slowest.max(took);
        broadcasts += 1;
        for result in &results {
            if result.client != stuck_name {
                assert_eq!(
                    result.outcome,
                    Outcome::Returned("ok".into()),
                    "broadcast {broadcasts}: {result}"
                );
            }
        }
        if dropped_after.is_none() && !is_connected(&stuck_name) {
            dropped_after = Some(broadcasts);
            // The chat has done its part (filling the stuck client's buffers); the broadcasts
            // after the drop check that everybody else still gets everything.
            stop_chatting.store(true, Ordering::SeqCst);
        }
        if dropped_after.is_some() {
            extra += 1;
        }
    }
    stop_chatting.store(true, Ordering::SeqCst);
    let messages = chatter.join().expect("chatter");

    eprintln!(
        "{stuck_name} dropped after {} broadcasts of 64 KiB ({messages} chat messages); slowest broadcast {slowest:?}",
        dropped_after.unwrap_or(0)
    );
    // How long may one broadcast wait for the stuck client? Not at all: a line that does not fit
    // waits in its outbox, and the writer waits at most one send timeout (10 ms) once. What a
    // broadcast does wait for is the answers of the readers, which queue behind the chatty
    // client's 16 KiB upcalls. The bound is generous, for a loaded machine.
    let bound = write_timeout * 4 + Duration::from_secs(2);
    assert!(
        slowest <= bound,
        "the slowest broadcast took {slowest:?} (write timeout {write_timeout:?})"
    );

    // Every reader gets every broadcast and every chat message, exactly once, ids 1, 2, 3, ...
    let expected = broadcasts + messages;
    for (name, _, heard, _) in &listeners {
        let complete = wait_until(Duration::from_secs(20), || {
            heard.lock().unwrap().ids.len() >= expected
        });
        let heard = heard.lock().unwrap();
        assert!(
            complete,
            "{name} heard {} upcalls of {expected} ({broadcasts} broadcasts, {messages} messages)",
            heard.ids.len()
        );
        let in_order: Vec<u64> = (1..=expected as u64).collect();
        assert_eq!(heard.ids, in_order, "{name}: upcall ids");
        assert!(heard.other.is_empty(), "{name} was told: {:?}", heard.other);
        let broadcast_texts = heard
            .arguments
            .iter()
            .filter(|argument| argument.starts_with("Upcall event: server says "))
            .count();
        assert_eq!(broadcast_texts, broadcasts, "{name}: broadcasts heard");
    }
    assert!(
        chatty_heard.lock().unwrap().other.is_empty(),
        "the chatty client was told: {:?}",
        chatty_heard.lock().unwrap().other
    );

    // The stuck client's socket was shut down by the server: once it reads, it finds the end.
    drop(stuck);
    for (_, writer, _, _) in &listeners {
        let _ = writer.lock().unwrap().shutdown(Shutdown::Both);
    }
    let _ = chatty_writer.lock().unwrap().shutdown(Shutdown::Both);
    for (_, _, _, thread) in listeners {
        thread.join().expect("listener");
    }
    chatty_reader.join().expect("chatty reader");
    let after = settle(&server.server, baseline, 1, Duration::from_secs(10));
    assert!(
        after.0 <= baseline.0 + 1 && after.1 <= baseline.1 + 1,
        "threads {} (baseline {}), fds {} (baseline {}): something is still blocked",
        after.0,
        baseline.0,
        after.1,
        baseline.1
    );
    server.stop();
}

#[test]
fn a_client_that_never_reads_is_dropped_and_nobody_else_loses_an_upcall() {
    a_client_that_never_reads(3, 3);
}

#[test]
#[ignore = "heavy: run with --release -- --ignored"]
fn a_client_that_never_reads_among_fifty_is_dropped_and_nobody_else_loses_an_upcall() {
    a_client_that_never_reads(50, 20);
}

// ---------------------------------------------------------------------------------------------
// 3. A client that dies with an upcall outstanding

/// How the client goes away while the server waits for its `RETURN`.
enum Death {
    /// `close()` with nothing unread: FIN.
    Close,
    /// `close()` with the `UPCALL` still unread: Linux sends RST.
    Reset,
    /// The client's process is killed (SIGKILL): the kernel closes its socket.
    Kill,
}

fn dies_with_an_upcall_outstanding(death: Death) {
    let _serial = serial();
    let upcall_timeout = Duration::from_secs(30);
    let server = TestServer::start(ServerConfig {
        upcall_timeout,
        ..config()
    });

    let (name, stream, mut child) = match death {
        Death::Kill => {
            // This test binary, run again as the client (see `killable_client` below).
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["killable_client", "--exact", "--ignored", "--nocapture"])
                .args(["--test-threads", "1"])
                .env("UPCALL_SOAK_CLIENT_OF", server.address.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("run the killable client");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let name = lines
                .by_ref()
                .map_while(Result::ok)
                // The harness prints `test killable_client ... ` first, on the same line.
                .find_map(|line| {
                    line.split_once("REGISTERED AS ")
                        .map(|(_, name)| name.to_string())
                });
            let Some(name) = name else {
                // Our own child, by its handle, before failing: nothing is left behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child did not register");
            };
            // The rest of its output is read on a thread: "GOT UPCALL" says it holds one.
            let (got, got_upcall) = mpsc::channel();
            thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    if line.ends_with("GOT UPCALL") {
                        let _ = got.send(());
                    }
                }
            });
            (name, None, Some((child, got_upcall)))
        }
        _ => {
            let client = Client::registered(server.address, "uppercase");
            (client.name.clone(), Some(client), None)
        }
    };

    let caller = {
        let server = server.server.clone();
        let name = name.clone();
        thread::spawn(move || {
            let result = server.call(&name, "uppercase", "haii");
            (result, Instant::now())
        })
    };

    // Wait until the upcall has reached the client, then let the client die.
    let died = match (death, stream, child.as_mut()) {
        (Death::Close, Some(mut client), _) => {
            let line = client.line();
            assert!(line.starts_with("UPCALL 1 uppercase"), "{line:?}");
            let died = Instant::now();
            drop(client);
            died
        }
        (Death::Reset, Some(client), _) => {
            let mut peek = [0; 1];
            client
                .reader
                .get_ref()
                .peek(&mut peek)
                .expect("the UPCALL arrives");
            let died = Instant::now();
            drop(client);
            died
        }
        (Death::Kill, _, Some((child, got_upcall))) => {
            got_upcall
                .recv_timeout(LINE_TIMEOUT)
                .expect("the child got the UPCALL");
            let died = Instant::now();
            child.kill().expect("kill the client");
            died
        }
        _ => unreachable!(),
    };
    if let Some((mut child, _)) = child {
        let _ = child.wait();
    }

    let (result, returned) = caller.join().expect("caller");
    let waited = returned.saturating_duration_since(died);
    assert_eq!(result.outcome, Outcome::Disconnected, "{result}");
    assert!(
        waited < Duration::from_secs(2),
        "call returned {waited:?} after the client died (upcall timeout {upcall_timeout:?})"
    );
    server.stop();
}

#[test]
fn a_call_to_a_client_that_closes_returns_disconnected_at_once() {
    dies_with_an_upcall_outstanding(Death::Close);
}

#[test]
fn a_call_to_a_client_that_resets_returns_disconnected_at_once() {
    dies_with_an_upcall_outstanding(Death::Reset);
}

#[test]
fn a_call_to_a_killed_client_returns_disconnected_at_once() {
    dies_with_an_upcall_outstanding(Death::Kill);
}

/// Not a test of its own: the client process that [`Death::Kill`] kills. Run as this test binary
/// with `UPCALL_SOAK_CLIENT_OF=<address>`, it registers `uppercase`, says so on stdout, reads one
/// upcall, says so, and waits to be killed. Without that variable (`cargo test -- --ignored`) it
/// does nothing.
#[test]
#[ignore = "helper: the process that a_call_to_a_killed_client_... kills"]
fn killable_client() {
    let Ok(address) = std::env::var("UPCALL_SOAK_CLIENT_OF") else {
        return;
    };
    let mut client = Client::registered(address.parse().unwrap(), "uppercase");
    println!("REGISTERED AS {}", client.name);
    let line = client.line();
    assert!(line.starts_with("UPCALL "), "{line:?}");
    println!("GOT UPCALL");
    // Never answer: wait for the SIGKILL (and give up, in case nobody sends it).
    thread::sleep(Duration::from_secs(60));
}

// ---------------------------------------------------------------------------------------------
// 4. Everybody at once

/// `clients` clients each send `messages` MSGs as fast as they can while the console broadcasts
/// `broadcasts` times. Each MSG is an upcall to every client (the sender's `Processing`, the
/// others' `says`), so every client must see exactly `clients × messages + broadcasts` upcalls,
/// numbered 1, 2, 3, ... without a gap or a repeat, and the server must accept every `RETURN`
/// (an `ERR` back would mean an id it did not expect: answered twice, or never sent).
fn everybody_at_once(clients: usize, messages: usize, broadcasts: usize) {
    let _serial = serial();
    // This test counts, it does not time: with a hundred clients the server has 400,000 chat
    // upcalls to send, and a broadcast's RETURN can queue behind thousands of them for longer than
    // the default 5 s (measured). A late answer would be a timeout here, not a lost upcall.
    let server = TestServer::start(ServerConfig {
        upcall_timeout: Duration::from_secs(300),
        ..config()
    });
    let mut everyone = Vec::new();
    for _ in 0..clients {
        let client = Client::registered(server.address, "on_event");
        let heard = Arc::new(Mutex::new(Heard::default()));
        let writer = Arc::new(Mutex::new(client.writer));
        let reader = answer_everything(client.reader, writer.clone(), heard.clone());
        everyone.push((client.name, writer, heard, reader));
    }

    let start = Arc::new(std::sync::Barrier::new(clients + 1));
    let senders: Vec<JoinHandle<()>> = everyone
        .iter()
        .map(|(name, writer, _, _)| {
            let (name, writer, start) = (name.clone(), writer.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for m in 0..messages {
                    let line = format!("MSG {name} {m}\n");
                    writer.lock().unwrap().write_all(line.as_bytes()).unwrap();
                }
            })
        })
        .collect();

    // The console, as `servercall` runs it, fed `broadcast` lines.
    let commands = (0..broadcasts)
        .map(|b| format!("broadcast b{b}\n"))
        .collect::<Vec<_>>()
        .concat();
    let mut console_output = Vec::new();
    start.wait();
    console::run(&server.server, commands.as_bytes(), &mut console_output).expect("console");
    for sender in senders {
        sender.join().expect("sender");
    }

    let console_output = String::from_utf8(console_output).unwrap();
    let summary = format!("Broadcast: {clients} of {clients} client(s) returned");
    let summaries = console_output
        .lines()
        .filter(|line| line.starts_with(&summary))
        .count();
    assert_eq!(
        summaries,
        broadcasts,
        "console output:\n{}",
        console_output
            .lines()
            .filter(|l| !l.ends_with("returned: ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let expected = clients * messages + broadcasts;
    for (name, writer, heard, reader) in everyone {
        let complete = wait_until(Duration::from_secs(30), || {
            heard.lock().unwrap().ids.len() >= expected
        });
        {
            let heard = heard.lock().unwrap();
            assert!(
                complete,
                "{name} heard {} upcalls of {expected}",
                heard.ids.len()
            );
            let in_order: Vec<u64> = (1..=expected as u64).collect();
            assert_eq!(heard.ids, in_order, "{name}: upcall ids");
        }
        // BYE, then the server's BYE: every RETURN before it has been read and matched, so an
        // ERR for one of them would be in `other` by now.
        writer.lock().unwrap().write_all(b"BYE\n").unwrap();
        reader.join().expect("reader");
        let heard = heard.lock().unwrap();
        assert_eq!(heard.other, vec!["BYE".to_string()], "{name} was told");
    }
    server.stop();
}

#[test]
fn many_clients_sending_while_the_console_broadcasts_get_every_upcall_once() {
    everybody_at_once(8, 40, 20);
}

#[test]
#[ignore = "heavy: run with --release -- --ignored"]
fn hundreds_of_clients_sending_while_the_console_broadcasts_get_every_upcall_once() {
    everybody_at_once(100, 40, 100);
}

// ---------------------------------------------------------------------------------------------
// 5. A line without end

/// 100 MiB without a newline (a `cat /dev/zero | nc` accident, or an attack) must cost the server
/// one small buffer, not 100 MiB: it reads and discards, waiting for the newline. The server runs
/// in this process, so this process's resident memory is the server's; `serial` keeps the other
/// tests of this file from running meanwhile.
#[test]
fn a_100_mib_line_is_discarded_without_being_stored() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 100 * 1024 * 1024;
    let _serial = serial();
    let server = TestServer::start(config());
    let mut flood = Client::registered(server.address, "on_event");
    let mut other = Client::registered(server.address, "on_event");
    let chunk = vec![b'a'; CHUNK];

    let before = resident_kib("self");
    let started = Instant::now();
    flood.send("MSG ");
    for _ in 0..TOTAL / CHUNK {
        flood.writer.write_all(&chunk).expect("send");
    }
    flood.send("\nMSG ok\n");
    assert_eq!(
        flood.line(),
        "ERR line too long (the limit is 4096 bytes with the newline; the line was skipped)"
    );
    let elapsed = started.elapsed();
    let grown = resident_kib("self").saturating_sub(before);

    assert_eq!(
        flood.line(),
        "UPCALL 1 on_event Upcall event: Processing ok"
    );
    let says = format!("UPCALL 1 on_event Upcall event: {} says ok", flood.name);
    assert_eq!(other.line(), says);
    assert!(
        elapsed < Duration::from_secs(10),
        "100 MiB took {elapsed:?}"
    );
    assert!(
        grown < 16 * 1024,
        "resident memory grew by {grown} KiB while the server skipped 100 MiB"
    );
    server.stop();
}
