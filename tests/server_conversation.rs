//! The server, seen from the wire: whole conversations in raw `upcall/1` bytes.
//!
//! Each test starts a real [`upcall::server::Server`] in this process on an ephemeral loopback
//! port and talks to it through plain `TcpStream`s, byte for byte, the way the lab does with `nc`
//! and Wireshark. The console's operations (`call`, `broadcast`, `list`, `quit`) are driven through
//! the library API, exactly as `servercall`'s stdin drives them.
//!
//! Where a test must show that something did *not* happen, it does not sleep and hope: it makes
//! the server answer a `RawClient::ping` and checks that the answer is the very next line.

mod bare;
pub mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{quiet_config, unknown_id_error, wait_until, RawClient, TestServer, Upcall};
use upcall::console::{self, ConsoleEnd};
use upcall::server::{CallResult, Outcome, ServerConfig};

// ---------------------------------------------------------------------------------------------
// The lab transcript and framing
// ---------------------------------------------------------------------------------------------

/// The conversation of the lab handout, every byte of it. If this changes, the handout, the
/// reference captures in `pcaps/` and every student's `nc` session change with it.
#[test]
fn the_lab_transcript_byte_for_byte() {
    let server = TestServer::start(quiet_config());
    lab_transcript(server.connect());
}

/// The bare server of `examples/bare_server.rs`, the one a student reads first, speaks the lab's
/// conversation byte for byte too: the story and the real server cannot drift apart.
#[test]
fn the_bare_server_speaks_the_lab_transcript_byte_for_byte() {
    lab_transcript(RawClient::connect(bare::start()));
}

fn lab_transcript(mut client: RawClient) {
    client.expect("WELCOME client-1 upcall/1\n");
    client.send("REGISTER on_event\n");
    client.expect("REGISTERED on_event\n");
    client.send("MSG haii\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    client.send("RETURN 1 ok\n");
    // A timely RETURN is answered with nothing: the next line the client sees is the BYE.
    client.send("BYE\n");
    client.expect("BYE\n");
    client.expect_eof();
}

/// TCP is a byte stream: two lines in one `write` may arrive in one `read`. The old lab printed
/// `Processing haiihalo`; the newline framing must keep them two messages with two upcalls.
#[test]
fn two_lines_in_one_write_are_two_messages() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);

    client.send("MSG haii\nMSG halo\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    client.expect("UPCALL 2 on_event Upcall event: Processing halo\n");
}

/// The opposite accident: one long `send` arrives in several `recv`s (the old lab split a
/// 3,000-byte message into three). The server must wait for the newline and deliver it whole.
#[test]
fn a_3000_byte_message_is_one_upcall_with_the_whole_text() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);
    let text: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();

    client.send(&format!("MSG {text}\n"));
    client.expect_upcall_of("on_event", &format!("Upcall event: Processing {text}"));
    // Exactly one upcall: the next line is the ping's answer, not a second piece.
    client.ping();
}

/// A line typed slowly (or sent by a client that writes word by word) arrives in pieces, with
/// pauses in between. The sleeps here do not synchronise anything: they make sure the three
/// pieces leave as three TCP segments, so the server really sees a line in three `read`s.
#[test]
fn a_line_sent_in_three_writes_is_one_message() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);

    for piece in ["MS", "G ha", "ii\n"] {
        client.send(piece);
        thread::sleep(Duration::from_millis(50));
    }
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    client.ping();
}

/// `nc -C` and telnet end lines with `\r\n`, and people type verbs in lower case; empty lines
/// (an extra Enter) are not an error. All of that must just work.
#[test]
fn crlf_lowercase_verbs_and_empty_lines_are_accepted() {
    let server = TestServer::start(quiet_config());
    let mut client = server.connect();
    client.expect("WELCOME client-1 upcall/1\n");

    client.send("\r\n\nregister on_event\r\n");
    // The server always answers in upper case and with a bare `\n`.
    client.expect("REGISTERED on_event\n");
    client.send("\n\nmsg haii\r\n\r\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    client.send("return 1 ok\r\n");
    client.send("Bye\r\n");
    client.expect("BYE\n");
    client.expect_eof();
}

// ---------------------------------------------------------------------------------------------
// Several clients
// ---------------------------------------------------------------------------------------------

/// A message is an event for everyone: the sender's `on_event` hears "Processing X", every other
/// client's hears "client-1 says X". Upcall ids belong to a connection, so each client's first
/// upcall is 1 whoever caused it.
#[test]
fn a_message_reaches_every_client_with_its_own_upcall_ids() {
    let server = TestServer::start(quiet_config());
    let (mut one, name_one) = server.connect_registered(&["on_event"]);
    let (mut two, name_two) = server.connect_registered(&["on_event"]);
    let (mut three, _) = server.connect_registered(&["on_event"]);
    assert_eq!(
        (name_one.as_str(), name_two.as_str()),
        ("client-1", "client-2")
    );

    one.send("MSG haii\n");
    one.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    two.expect("UPCALL 1 on_event Upcall event: client-1 says haii\n");
    three.expect("UPCALL 1 on_event Upcall event: client-1 says haii\n");

    two.send("MSG halo\n");
    two.expect("UPCALL 2 on_event Upcall event: Processing halo\n");
    one.expect("UPCALL 2 on_event Upcall event: client-2 says halo\n");
    three.expect("UPCALL 2 on_event Upcall event: client-2 says halo\n");
}

/// `on_event` is opt-in: a client that did not register it gets no upcall for anyone's message.
#[test]
fn a_client_without_on_event_gets_no_upcalls() {
    let server = TestServer::start(quiet_config());
    let (mut sender, _) = server.connect_registered(&["on_event"]);
    let (mut silent, _) = server.connect_registered(&["uppercase"]);
    let (mut listener, _) = server.connect_registered(&["on_event"]);

    sender.send("MSG haii\n");
    sender.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
    listener.expect("UPCALL 1 on_event Upcall event: client-1 says haii\n");
    // The server handles the sender's lines in order: once it answers the sender's ping, every
    // upcall the MSG caused has been written. So if `silent` were to get one, it would already
    // be in its socket, ahead of the answer to its own ping.
    sender.ping();
    silent.ping();
}

// ---------------------------------------------------------------------------------------------
// The console
// ---------------------------------------------------------------------------------------------

/// The heart of the lab: the operator types `call client-1 uppercase haii`, the *client* computes
/// `HAII` and the server prints it. The console runs on its own thread because it waits for the
/// answer, which the test (playing the client) gives.
#[test]
fn console_call_prints_what_the_client_returned() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event", "uppercase"]);

    let console = {
        let server = server.handle();
        thread::spawn(move || {
            let mut output = Vec::new();
            let end = console::run(
                &server,
                "call client-1 uppercase haii\n".as_bytes(),
                &mut output,
            );
            (end.unwrap(), String::from_utf8(output).unwrap())
        })
    };
    client.expect("UPCALL 1 uppercase haii\n");
    client.send("RETURN 1 HAII\n");

    let (end, output) = console.join().unwrap();
    assert_eq!(output, "client-1 returned: HAII\n");
    assert_eq!(end, ConsoleEnd::EndOfInput);
}

/// A callback may fail on the client's side; the reason travels back in `FAIL` and the operator
/// sees it. An upcall without an argument has no trailing space on the wire.
#[test]
fn call_shows_the_reason_of_a_fail() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["hostname"]);

    let call = {
        let server = server.handle();
        thread::spawn(move || server.call("client-1", "hostname", ""))
    };
    client.expect("UPCALL 1 hostname\n");
    client.send("FAIL 1 no hostname in this container\n");

    let result = call.join().unwrap();
    assert_eq!(
        result.outcome,
        Outcome::Failed("no hostname in this container".into())
    );
    assert_eq!(
        result.to_string(),
        "client-1 failed: no hostname in this container"
    );
}

/// The server may only call what the client offered. A call to anything else is refused before
/// a byte is written, and it uses up no upcall id.
#[test]
fn call_to_an_unregistered_callback_is_not_sent() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);

    let result = server.call("client-1", "uppercase", "haii");
    assert_eq!(result.client, "client-1");
    match &result.outcome {
        Outcome::NotSent(reason) => assert!(
            reason.contains("uppercase is not registered"),
            "reason: {reason}"
        ),
        other => panic!("expected NotSent, got {other:?}"),
    }
    // Nothing reached the wire: the next line is the answer to the ping...
    client.ping();
    // ...and the id was not used up: the first real upcall is still number 1.
    client.send("MSG haii\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
}

#[test]
fn call_to_an_unknown_client_is_not_sent() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["uppercase"]);

    let result = server.call("client-9", "uppercase", "haii");
    assert_eq!(
        result,
        CallResult {
            client: "client-9".into(),
            outcome: Outcome::NotSent("no such client (try `list`)".into()),
        }
    );
    assert_eq!(
        result.to_string(),
        "client-9 was not called: no such client (try `list`)"
    );
    client.ping();
}

/// An operator who presses an arrow key at the console (in a terminal without line editing) puts
/// an escape sequence into the line. The server must not send it (it would be a control character
/// on the wire), must not use up an id, and must say *why* it did not send it: the reason is the
/// control character, not the length of the line.
#[test]
fn call_with_a_control_character_is_not_sent_and_says_why() {
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event", "uppercase"]);

    let result = server.call("client-1", "uppercase", "hi\u{1b}[A");
    match &result.outcome {
        Outcome::NotSent(reason) => {
            assert!(
                reason.contains("control character") && !reason.contains("over the limit"),
                "the reason must name the control character, not the line length: {reason:?}"
            );
        }
        other => panic!("expected NotSent, got {other:?}"),
    }
    client.ping();
    client.send("MSG haii\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing haii\n");
}

/// A broadcast sends every upcall first and then collects the answers, so one slow client costs
/// one timeout, not one per client. Answers come back in any order (here client-2 answers first)
/// but are reported in client order, each with its own outcome. A client without `on_event` is not
/// part of the broadcast at all.
#[test]
fn broadcast_reports_each_clients_outcome_in_client_order() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::start(ServerConfig {
        upcall_timeout: timeout,
        ..quiet_config()
    });
    let (mut answers, _) = server.connect_registered(&["on_event"]);
    let (mut fails, _) = server.connect_registered(&["on_event"]);
    let (mut silent, _) = server.connect_registered(&["on_event"]);
    let (mut not_subscribed, _) = server.connect_registered(&["uppercase"]);

    let started = Instant::now();
    let broadcast = {
        let server = server.handle();
        thread::spawn(move || server.broadcast("hello"))
    };
    for client in [&mut answers, &mut fails, &mut silent] {
        client.expect("UPCALL 1 on_event Upcall event: server says hello\n");
    }
    fails.send("FAIL 1 busy\n");
    answers.send("RETURN 1 ok\n");
    // `silent` never answers.

    let results = broadcast.join().unwrap();
    let elapsed = started.elapsed();
    let outcomes: Vec<(&str, &Outcome)> = results
        .iter()
        .map(|result| (result.client.as_str(), &result.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("client-1", &Outcome::Returned("ok".into())),
            ("client-2", &Outcome::Failed("busy".into())),
            ("client-3", &Outcome::TimedOut(timeout)),
        ]
    );
    assert_eq!(
        results[2].to_string(),
        "client-3 did not answer within 300 ms"
    );
    assert!(elapsed >= timeout, "gave up after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    not_subscribed.ping();
}

/// `list` shows the clients in the order they came, with the address the server sees (the
/// client's own local address) and their callbacks in alphabetical order.
#[test]
fn console_list_shows_clients_addresses_and_callbacks() {
    let server = TestServer::start(quiet_config());
    let mut output = Vec::new();
    console::run(&server, "list\n".as_bytes(), &mut output).unwrap();
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "No clients connected.\n"
    );

    let (one, _) = server.connect_registered(&["uppercase", "on_event"]);
    let (two, _) = server.connect_welcomed();

    let mut output = Vec::new();
    let end = console::run(&server, "list\n".as_bytes(), &mut output).unwrap();
    assert_eq!(end, ConsoleEnd::EndOfInput);
    assert_eq!(
        String::from_utf8(output).unwrap(),
        format!(
            "client-1  {}  on_event, uppercase\nclient-2  {}  (no callbacks)\n",
            one.local_addr(),
            two.local_addr()
        )
    );
}

/// `quit` ends the console; the program then calls `shutdown`, which says `BYE` to every client
/// and closes each connection, so clients see a clean end instead of a reset. The accept loop
/// stops too.
#[test]
fn quit_then_shutdown_says_bye_to_every_client() {
    let server = TestServer::start(quiet_config());
    let (mut one, _) = server.connect_registered(&["on_event"]);
    let (mut two, _) = server.connect_welcomed();

    let mut output = Vec::new();
    let end = console::run(&server, "list\nquit\nlist\n".as_bytes(), &mut output).unwrap();
    assert_eq!(end, ConsoleEnd::Quit);
    let output = String::from_utf8(output).unwrap();
    assert!(
        output.ends_with("Saying BYE to 2 client(s) and stopping.\n"),
        "the console must stop reading at quit: {output:?}"
    );

    server.shutdown();
    for client in [&mut one, &mut two] {
        client.expect("BYE\n");
        client.expect_eof();
    }
    assert!(server.serve_returned_within(Duration::from_secs(2)));
}

// ---------------------------------------------------------------------------------------------
// Timeouts and disconnections
// ---------------------------------------------------------------------------------------------

/// An upcall that is not answered in time is given up, and an answer that comes later is an
/// error, not a result for somebody else's question.
///
/// How the test knows the MSG's upcall (id 1) has been given up, without sleeping: it then
/// starts a console call (id 2), which has a later deadline. The sweeper removes everything past
/// its deadline in one pass, so by the time the call reports `TimedOut`, id 1 is gone too.
#[test]
fn a_late_return_after_the_upcall_timeout_is_an_unknown_id() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::start(ServerConfig {
        upcall_timeout: timeout,
        ..quiet_config()
    });
    let (mut client, _) = server.connect_registered(&["on_event"]);

    client.send("MSG late\n");
    client.expect("UPCALL 1 on_event Upcall event: Processing late\n");
    let started = Instant::now();
    let call = {
        let server = server.handle();
        thread::spawn(move || server.call("client-1", "on_event", "probe"))
    };
    client.expect("UPCALL 2 on_event probe\n");
    let result = call.join().unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut(timeout));
    assert!(started.elapsed() >= timeout);

    client.send("RETURN 1 ok\n");
    client.expect(&unknown_id_error(1));
    client.send("RETURN 2 ok\n");
    client.expect(&unknown_id_error(2));
}

/// A client that leaves with a console call outstanding must end that call at once, as
/// `Disconnected`: the operator should not sit out a 5-second timeout for a client that is gone.
#[test]
fn a_disconnect_ends_an_outstanding_call_at_once() {
    let server = TestServer::start(ServerConfig {
        upcall_timeout: Duration::from_secs(5),
        ..quiet_config()
    });
    let (mut client, _) = server.connect_registered(&["uppercase"]);

    let call = {
        let server = server.handle();
        thread::spawn(move || {
            let result = server.call("client-1", "uppercase", "haii");
            (result, Instant::now())
        })
    };
    client.expect("UPCALL 1 uppercase haii\n");
    let dropped = Instant::now();
    drop(client);

    let (result, returned) = call.join().unwrap();
    assert_eq!(result.outcome, Outcome::Disconnected);
    assert_eq!(result.to_string(), "client-1 disconnected before answering");
    let waited = returned.duration_since(dropped);
    assert!(
        waited < Duration::from_secs(1),
        "the call waited {waited:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Upcall ids under concurrency
// ---------------------------------------------------------------------------------------------

/// Two console threads and the client's own messages upcall the same client at the same time.
/// The server picks an id and writes its line under one lock, so the client must see ids 1, 2,
/// 3, ... in order, with no gap and no repeat, and each call must get back its own answer.
#[test]
fn upcall_ids_are_sequential_on_the_wire_under_concurrent_calls_and_messages() {
    const CALL_THREADS: usize = 2;
    const CALLS_PER_THREAD: usize = 25;
    const MESSAGES: usize = 50;
    const TOTAL: usize = CALL_THREADS * CALLS_PER_THREAD + MESSAGES;

    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);
    // Two threads write to this socket (the answers and the messages): a `Sender` keeps lines
    // whole.
    let writer = client.sender();

    let callers: Vec<_> = (0..CALL_THREADS)
        .map(|thread_number| {
            let server = server.handle();
            thread::spawn(move || {
                for call in 0..CALLS_PER_THREAD {
                    let argument = format!("call-{thread_number}-{call}");
                    let result = server.call("client-1", "on_event", &argument);
                    // The client echoes the argument back: a mixed-up answer would show here.
                    assert_eq!(result.outcome, Outcome::Returned(argument));
                }
            })
        })
        .collect();
    let messenger = {
        let writer = writer.clone();
        thread::spawn(move || {
            for message in 0..MESSAGES {
                writer.send(&format!("MSG msg-{message}\n"));
            }
        })
    };

    // Play the client: answer every upcall at once with its own argument.
    let mut seen: Vec<Upcall> = Vec::new();
    while seen.len() < TOTAL {
        let upcall = client.expect_upcall();
        writer.send(&format!("RETURN {} {}\n", upcall.id, upcall.argument));
        seen.push(upcall);
    }
    for caller in callers {
        caller.join().unwrap();
    }
    messenger.join().unwrap();

    let ids: Vec<u64> = seen.iter().map(|upcall| upcall.id).collect();
    assert_sequential(&ids);
    assert_eq!(ids.len(), TOTAL);
    // The messages' upcalls came in the order the messages were sent.
    let processed: Vec<&str> = seen
        .iter()
        .filter_map(|upcall| upcall.argument.strip_prefix("Upcall event: Processing "))
        .collect();
    let sent: Vec<String> = (0..MESSAGES).map(|m| format!("msg-{m}")).collect();
    assert_eq!(processed, sent);
    // Every answer found its upcall: no RETURN earned an `unknown upcall id` ERR.
    client.ping();
}

/// Asserts that `ids` is 1, 2, 3, ...; on failure shows where the sequence broke, not 300 numbers.
fn assert_sequential(ids: &[u64]) {
    if let Some(position) = (0..ids.len()).find(|&i| ids[i] != i as u64 + 1) {
        let context = &ids[position.saturating_sub(3)..(position + 4).min(ids.len())];
        panic!(
            "upcall ids on the wire must be 1, 2, 3, ... with no gap or repeat; upcall number {} \
             had id {} (ids around it: {context:?})",
            position + 1,
            ids[position]
        );
    }
}

/// An upcall that cannot be sent because its line would be too long gives its id back, so that
/// the ids on the wire have no gap. Giving it back must not race with another thread's upcall:
/// the failing thread releases the writer lock before it resets `next_upcall_id`, so another
/// upcall can take id N+1 in between and the failing one then sets the counter back to N; the
/// client then sees N+1, N, N+1 (out of order, and the same id twice).
///
/// The test provokes that window many times: one thread makes oversized calls (each fails at once,
/// nothing on the wire) while another makes normal calls that the client answers. On a correct
/// server the client sees 1, 2, 3, ... whatever the interleaving.
#[test]
fn an_oversized_call_failing_concurrently_does_not_reuse_an_upcall_id() {
    const GOOD_CALLS: u64 = 300;
    let max_line = 128;
    let server = TestServer::start(ServerConfig {
        max_line,
        ..quiet_config()
    });
    let (mut client, _) = server.connect_registered(&["on_event"]);
    let mut writer = client.writer();

    let done = Arc::new(AtomicBool::new(false));
    let oversized = {
        let server = server.handle();
        let done = done.clone();
        thread::spawn(move || {
            let too_long = "x".repeat(max_line);
            let mut failed = 0u64;
            while !done.load(Ordering::SeqCst) && failed < 2_000_000 {
                let result = server.call("client-1", "on_event", &too_long);
                assert!(matches!(result.outcome, Outcome::NotSent(_)), "{result:?}");
                failed += 1;
            }
        })
    };
    let good = {
        let server = server.handle();
        thread::spawn(move || {
            let mut outcomes = Vec::new();
            for call in 0..GOOD_CALLS {
                outcomes.push(server.call("client-1", "on_event", &format!("good-{call}")));
            }
            outcomes
        })
    };

    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (ids.len() as u64) < GOOD_CALLS && Instant::now() < deadline {
        let Ok(Some(line)) = client.try_line() else {
            break;
        };
        let upcall =
            Upcall::parse(&line).unwrap_or_else(|| panic!("expected an UPCALL, got {line:?}"));
        writer
            .write_all(format!("RETURN {} {}\n", upcall.id, upcall.argument).as_bytes())
            .unwrap();
        ids.push(upcall.id);
    }
    done.store(true, Ordering::SeqCst);
    oversized.join().unwrap();
    assert_sequential(&ids);
    assert_eq!(ids.len() as u64, GOOD_CALLS, "some calls were never sent");
    let outcomes = good.join().unwrap();
    for (call, result) in outcomes.iter().enumerate() {
        assert_eq!(result.outcome, Outcome::Returned(format!("good-{call}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

/// Each client costs a thread, so the server has a cap. A connection over it is told why in the
/// protocol's own words and closed cleanly (`ERR server full`, `BYE`, end of stream); a place
/// that frees up is given to the next client.
#[test]
fn max_clients_turns_away_the_extra_connection_and_frees_places() {
    let server = TestServer::start(ServerConfig {
        max_clients: 2,
        ..quiet_config()
    });
    let (mut one, _) = server.connect_registered(&["on_event"]);
    let (mut two, _) = server.connect_registered(&["on_event"]);

    let mut third = server.connect();
    third.expect("ERR server full\n");
    third.expect("BYE\n");
    third.expect_eof();
    assert_eq!(server.client_count(), 2);

    // client-1 leaves politely. The server closes the connection only after it has taken the
    // client out of its registry, so once client-1 sees the end of the stream its place is free.
    one.send("BYE\n");
    one.expect("BYE\n");
    one.expect_eof();

    let (mut fourth, name) = server.connect_registered(&["on_event"]);
    assert_ne!(name, "client-1", "a client id is never reused");
    fourth.send("MSG in\n");
    fourth.expect("UPCALL 1 on_event Upcall event: Processing in\n");
    two.expect_upcall_of("on_event", &format!("Upcall event: {name} says in"));
    assert!(wait_until(Duration::from_secs(1), || server.client_count() == 2));
}
