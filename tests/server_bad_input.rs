//! The server against clients that misbehave: bad bytes, bad lines, huge lines, sudden exits and
//! clients that stop reading.
//!
//! The rule every test checks is the one in `crate::error`: a bad *line* costs that line only
//! (the server answers `ERR <reason>` and reads on), and a bad *client* costs that client only.
//! So after each bad input the test checks that the same connection still works (`MSG ok` still
//! earns its upcall) and that a second client, connected all along, saw nothing but the normal
//! traffic. The pair is `TwoClients` of `tests/support/scenarios.rs`: `bad` (client-1), which
//! misbehaves, and `other` (client-2), which must never notice.

pub mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::scenarios::{stops_reading, TwoClients};
use support::{quiet_config, unknown_id_error, wait_until, TestServer};
use upcall::server::{Outcome, ServerConfig};

const TOO_LONG_4096: &str =
    "ERR line too long (the limit is 4096 bytes with the newline; the line was skipped)\n";

// ---------------------------------------------------------------------------------------------
// Bytes that are not text
// ---------------------------------------------------------------------------------------------

/// The protocol is UTF-8 text. Bytes that are not (a binary file piped into `nc`) are refused
/// without taking the connection down, and the next line is read normally.
#[test]
fn invalid_utf8_is_rejected_and_the_connection_kept() {
    let mut clients = TwoClients::start();
    clients.rejects(b"MSG \xff\xfe\n", "ERR line is not valid UTF-8\n");
    clients.both_still_served();
}

/// A NUL or an escape sequence in a message would garble logs and terminals (an ESC can recolour
/// or clear the operator's screen), so control characters are refused on input.
#[test]
fn control_characters_are_rejected_and_the_connection_kept() {
    let mut clients = TwoClients::start();
    clients.rejects(
        b"MSG a\0b\n",
        "ERR control character U+0000 (NUL) at byte 6\n",
    );
    clients.rejects(
        b"MSG \x1b[2Jcleared\n",
        "ERR control character U+001B (escape) at byte 5\n",
    );
    clients.rejects(
        b"MSG a\rb\n",
        "ERR control character U+000D (carriage return) at byte 6\n",
    );
    clients.both_still_served();
}

// ---------------------------------------------------------------------------------------------
// Lines that are text but not upcall/1
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unknown_verb_is_rejected_and_the_connection_kept() {
    let mut clients = TwoClients::start();
    clients.rejects(
        b"HELLO there\n",
        "ERR unknown verb (expected REGISTER, MSG, RETURN, FAIL or BYE)\n",
    );
    clients.both_still_served();
}

/// An answer to a question the server never asked must not be taken for the answer to another
/// one. `RETURN` and `FAIL` name their upcall; an id with no pending upcall is an error.
#[test]
fn return_and_fail_for_an_unknown_id_are_rejected() {
    let mut clients = TwoClients::start();
    clients.rejects(b"RETURN 99 x\n", &unknown_id_error(99));
    clients.rejects(b"FAIL 99 x\n", &unknown_id_error(99));
    clients.rejects(
        b"RETURN x ok\n",
        "ERR bad upcall id: expected a decimal number\n",
    );
    clients.rejects(b"FAIL\n", "ERR missing field: FAIL needs an upcall id\n");
    clients.rejects(
        b"RETURN  1 ok\n",
        "ERR empty field: two spaces after RETURN (fields are separated by one space)\n",
    );
    clients.both_still_served();
}

/// An upcall is answered once. A second answer to the same id is refused like an unknown one.
#[test]
fn a_second_answer_to_the_same_upcall_is_rejected() {
    let mut clients = TwoClients::start();
    clients.both_still_served(); // gives `bad` upcalls 1 and 2
    clients.bad.send("RETURN 1 ok\nRETURN 2 ok\n");
    clients.rejects(b"RETURN 1 again\n", &unknown_id_error(1));
    clients.rejects(b"FAIL 2 again\n", &unknown_id_error(2));
    clients.both_still_served();
}

/// An answer after the upcall timeout is too late: the server has given up on that upcall.
///
/// The test knows id 1 (a `MSG`'s upcall, which nobody waits for) has been given up without
/// sleeping: it then makes a console call (id 2, later deadline) and waits for it to time out.
/// The sweeper removes every expired upcall in one pass, so id 1 is gone by then.
#[test]
fn a_return_for_an_expired_upcall_is_rejected() {
    let timeout = Duration::from_millis(300);
    let mut clients = TwoClients::with_config(ServerConfig {
        upcall_timeout: timeout,
        ..quiet_config()
    });
    clients.bad.send("MSG slow\n");
    clients
        .bad
        .expect("UPCALL 1 on_event Upcall event: Processing slow\n");
    clients
        .other
        .expect("UPCALL 1 on_event Upcall event: client-1 says slow\n");
    let call = {
        let server = clients.server.handle();
        thread::spawn(move || server.call("client-1", "on_event", "probe"))
    };
    clients.bad.expect("UPCALL 2 on_event probe\n");
    assert_eq!(call.join().unwrap().outcome, Outcome::TimedOut(timeout));

    clients.rejects(b"RETURN 1 ok\n", &unknown_id_error(1));
    clients.bad_next_id = 3;
    clients.other_next_id = 2;
    clients.both_still_served();
}

/// Callback names are identifiers (`[a-z][a-z0-9_]*`, at most 32 characters): they appear in
/// every UPCALL line and in the log, so anything else is refused when it is registered.
#[test]
fn bad_callback_names_are_rejected() {
    let mut clients = TwoClients::start();
    let bad_name = "ERR bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)\n";
    clients.rejects(b"REGISTER On-Event\n", bad_name);
    clients.rejects(
        format!("REGISTER {}\n", "a".repeat(33)).as_bytes(),
        bad_name,
    );
    clients.rejects(
        b"REGISTER\n",
        "ERR missing field: REGISTER needs a callback name\n",
    );
    clients.rejects(
        b"REGISTER on event\n",
        "ERR unexpected field: REGISTER takes one callback name, without spaces\n",
    );
    // None of them was registered.
    let callbacks = &clients.server.clients()[0].callbacks;
    assert_eq!(callbacks, &["on_event".to_string()]);
    clients.both_still_served();
}

/// One grammar serves both directions, so the parser reads `UPCALL` or `WELCOME` from a client
/// happily; the server must still refuse to take orders meant for a client.
#[test]
fn server_only_verbs_from_a_client_are_rejected() {
    let mut clients = TwoClients::start();
    clients.rejects(
        b"UPCALL 1 x y\n",
        "ERR UPCALL is sent by the server, not by a client\n",
    );
    clients.rejects(
        b"WELCOME a upcall/1\n",
        "ERR WELCOME is sent by the server, not by a client\n",
    );
    clients.rejects(
        b"REGISTERED on_event\n",
        "ERR REGISTERED is sent by the server, not by a client\n",
    );
    clients.rejects(
        b"ERR you first\n",
        "ERR ERR is sent by the server, not by a client\n",
    );
    clients.both_still_served();
}

/// A client that sends before it registered `on_event` cannot get its "Processing" upcall, and
/// is told why. Its message is still an event for everyone else.
#[test]
fn a_message_before_registering_on_event_is_refused_to_the_sender_only() {
    let mut clients = TwoClients::start();
    let (mut newcomer, name) = clients.server.connect_welcomed();
    assert_eq!(name, "client-3");

    newcomer.send("MSG hi\n");
    newcomer.expect("ERR no on_event registered: send REGISTER on_event to get upcalls\n");
    clients
        .bad
        .expect("UPCALL 1 on_event Upcall event: client-3 says hi\n");
    clients
        .other
        .expect("UPCALL 1 on_event Upcall event: client-3 says hi\n");
    clients.bad_next_id = 2;
    clients.other_next_id = 2;

    newcomer.register("on_event");
    newcomer.send("MSG hi again\n");
    newcomer.expect("UPCALL 1 on_event Upcall event: Processing hi again\n");
    for client in [&mut clients.bad, &mut clients.other] {
        client.expect_upcall_of("on_event", "Upcall event: client-3 says hi again");
    }
    clients.bad_next_id = 3;
    clients.other_next_id = 3;
    clients.both_still_served();
}

// ---------------------------------------------------------------------------------------------
// Line length
// ---------------------------------------------------------------------------------------------

/// A line over the limit is skipped up to its newline and reported; the server neither closes
/// the connection nor reads the tail of the long line as a new line.
#[test]
fn a_line_over_the_limit_is_skipped_and_the_next_line_works() {
    let mut clients = TwoClients::start();
    let long = format!("MSG {}\n", "y".repeat(5000));
    clients.rejects(long.as_bytes(), TOO_LONG_4096);
    clients.both_still_served();
}

/// The limit counts the newline: 4,096 bytes with it are accepted, 4,097 are not. `FAIL 99 ...`
/// makes the difference visible: an accepted line is parsed (unknown id), a refused one is not.
#[test]
fn the_line_limit_is_4096_bytes_counting_the_newline() {
    let mut clients = TwoClients::start();
    let line_of = |length: usize| {
        let head = "FAIL 99 ";
        format!("{head}{}\n", "z".repeat(length - head.len() - 1))
    };
    assert_eq!(line_of(4096).len(), 4096);

    clients.rejects(line_of(4096).as_bytes(), &unknown_id_error(99));
    clients.rejects(line_of(4097).as_bytes(), TOO_LONG_4096);
    // A `\r` before the newline is part of the line's bytes too.
    let crlf = format!("{}\r\n", line_of(4096).trim_end());
    clients.rejects(crlf.as_bytes(), TOO_LONG_4096);
    clients.both_still_served();
}

/// A message right at the limit is accepted, but the upcall it causes is longer (the server adds
/// `UPCALL <id> on_event Upcall event: Processing `) and the server never sends a line over the
/// limit. The sender is told, and the id that was not used is not skipped on the wire.
#[test]
fn a_message_at_the_limit_is_accepted_but_its_upcall_is_not_sent() {
    let mut clients = TwoClients::start();
    let message = format!("MSG {}\n", "w".repeat(4096 - 5));
    assert_eq!(message.len(), 4096);
    clients.rejects(
        message.as_bytes(),
        "ERR line too long: the upcall line would be over the 4096-byte limit\n",
    );
    clients.both_still_served();
}

// ---------------------------------------------------------------------------------------------
// Clients that go away or stop reading
// ---------------------------------------------------------------------------------------------

/// Half a line and then a close (Ctrl-C in `nc` while typing) is a broken message, not a
/// message: nobody gets an upcall for `hal`, the client is forgotten, the others carry on.
#[test]
fn a_client_that_closes_in_the_middle_of_a_line_is_forgotten() {
    let mut clients = TwoClients::start();
    let (mut leaving, _) = clients.server.connect_registered(&["on_event"]);
    assert_eq!(clients.server.client_count(), 3);

    leaving.send("MSG hal");
    leaving.hang_up();
    drop(leaving);
    let server = &clients.server;
    assert!(
        wait_until(Duration::from_secs(2), || server.client_count() == 2),
        "the server still counts {} clients",
        server.client_count()
    );
    assert!(clients
        .server
        .clients()
        .iter()
        .all(|client| client.name != "client-3"));
    // `both_still_served` also proves no `client-3 says hal` upcall was sent: the ids would be
    // off by one and the first line each client reads would be that upcall.
    clients.both_still_served();
}

/// A client that leaves while an upcall caused by its own message is still unanswered: the
/// server gives up on that upcall (nobody waits for it) and serves everyone else as before.
#[test]
fn a_client_that_leaves_with_an_upcall_outstanding_is_forgotten() {
    let mut clients = TwoClients::start();
    let (mut leaving, _) = clients.server.connect_registered(&["on_event"]);

    leaving.send("MSG bye for now\n");
    leaving.expect("UPCALL 1 on_event Upcall event: Processing bye for now\n");
    for client in [&mut clients.bad, &mut clients.other] {
        client.expect("UPCALL 1 on_event Upcall event: client-3 says bye for now\n");
    }
    clients.bad_next_id = 2;
    clients.other_next_id = 2;
    drop(leaving);

    assert!(wait_until(Duration::from_secs(2), || {
        clients.server.client_count() == 2
    }));
    clients.both_still_served();
}

/// A client that stops reading fills its socket buffers; then its lines wait in its outbox and
/// its unanswered upcalls pile up, until the server drops it. The active client, whose messages
/// cause upcalls to the stuck one, loses nothing and never waits for it.
#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_lose_nothing() {
    const MAX_MESSAGES: u64 = 5000;
    let write_timeout = Duration::from_millis(500);
    let server = TestServer::start(ServerConfig {
        write_timeout,
        ..quiet_config()
    });
    let (mut active, _) = server.connect_registered(&["on_event"]);
    let (stuck, stuck_name) = server.connect_welcomed();
    let _stuck = stops_reading(stuck);
    // From here on nobody reads `_stuck`: every message of `active` adds ~3 KB to its buffers.
    let text = "x".repeat(3000);

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut sent = 0;
    while server.client_count() == 2 {
        assert!(
            sent < MAX_MESSAGES && started.elapsed() < Duration::from_secs(20),
            "the stuck client was not dropped after {sent} messages in {:?}",
            started.elapsed()
        );
        sent += 1;
        let round_trip = Instant::now();
        active.send(&format!("MSG {sent} {text}\n"));
        let id = active.expect_upcall_of(
            "on_event",
            &format!("Upcall event: Processing {sent} {text}"),
        );
        assert_eq!(id, sent, "an upcall of the active client was lost");
        slowest = slowest.max(round_trip.elapsed());
        // Answered, as every clientcall does: a client that never answers runs into the limit
        // of unanswered upcalls (tested on its own).
        active.send(&format!("RETURN {id} ok\n"));
    }
    let dropped_after = started.elapsed();
    eprintln!(
        "stuck client dropped after {sent} messages and {dropped_after:?}; \
         slowest round trip {slowest:?}"
    );

    assert!(server
        .clients()
        .iter()
        .all(|client| client.name != stuck_name));
    assert!(
        dropped_after < Duration::from_secs(10),
        "dropping the stuck client took {dropped_after:?}"
    );
    // The active client waited for the stuck one once, one write timeout, not more.
    assert!(
        slowest < write_timeout * 3,
        "one message took {slowest:?} (write timeout {write_timeout:?})"
    );
    // And it goes on being served at full speed.
    for more in sent + 1..=sent + 5 {
        let round_trip = Instant::now();
        active.send(&format!("MSG {more}\n"));
        active.expect(&format!(
            "UPCALL {more} on_event Upcall event: Processing {more}\n"
        ));
        assert!(round_trip.elapsed() < write_timeout);
    }
}
