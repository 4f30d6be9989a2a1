//! Slots go to students, and floods of any kind end the same way.
//!
//! The tricks a student's script can play to hold a place on the class's server without being a
//! client (trickling bytes, empty lines, never registering), the useless lines it can send for
//! ever (empty lines, the same `REGISTER`, `RETURN`s for nothing), and the operator's answer to
//! whatever is left (`kick`). Raw bytes over loopback, with a short line timeout so each test takes
//! seconds.

pub mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::scenarios::{TwoClients, CUT_OFF};
use support::{quiet_config, wait_until, RawClient, TestServer};
use upcall::console;
use upcall::server::ServerConfig;

fn short_timeouts() -> ServerConfig {
    ServerConfig {
        line_timeout: Duration::from_secs(2),
        max_msg_rate: 20,
        ..quiet_config()
    }
}

/// Reads lines until `last` comes, then the end of the connection; panics on anything but
/// `allowed` lines before it.
fn expect_until(client: &mut RawClient, allowed: &[&str], last: &str) -> usize {
    let mut before = 0;
    loop {
        let line = client.expect_line();
        if line == last {
            client.expect_eof();
            return before;
        }
        assert!(
            allowed.iter().any(|prefix| line.starts_with(prefix)),
            "unexpected {line:?} before {last:?}"
        );
        before += 1;
    }
}

/// One byte every half second, empty lines every half second, `\r\n`s, a bad line every half
/// second: each is closed once the line timeout has passed (since it connected, for those that
/// never register; since its line began, for the registered trickler), told why. A registered client that is quiet for the same time stays.
#[test]
fn tricklers_and_empty_lines_do_not_keep_a_slot() {
    let server = TestServer::start(short_timeouts());
    let (mut quiet, _) = server.connect_registered(&["on_event"]);
    let mut kinds: Vec<(&[u8], RawClient)> = [
        b"R".as_slice(),
        b"\n".as_slice(),
        b"\r\n".as_slice(),
        b"nonsense\n".as_slice(),
    ]
    .into_iter()
    .map(|bytes| {
        let (client, _) = server.connect_welcomed();
        (bytes, client)
    })
    .collect();
    // The trickler registered: its deadline is the line it never finishes.
    kinds[0].1.register("on_event");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for (bytes, client) in &mut kinds {
            let _ = client.try_send_bytes(bytes);
        }
        thread::sleep(Duration::from_millis(500));
    }
    let (_, mut trickler) = kinds.remove(0);
    expect_until(
        &mut trickler,
        &[],
        "ERR a line was left unfinished for 2 s: closing the connection\n",
    );
    for (_, mut client) in kinds {
        expect_until(
            &mut client,
            &["ERR unknown verb"],
            "ERR no complete line within 2 s of connecting: closing the connection\n",
        );
    }
    quiet.send("MSG still here\n");
    quiet.expect_upcall_of("on_event", "Upcall event: Processing still here");
}

/// A connection that talks but never registers a callback is closed after the line timeout.
#[test]
fn a_connection_that_never_registers_is_closed() {
    let server = TestServer::start(short_timeouts());
    let (mut talker, _) = server.connect_welcomed();
    talker.send("MSG hello\n");
    expect_until(
        &mut talker,
        &["ERR no on_event registered"],
        "ERR no callback registered within 2 s of connecting: closing the connection\n",
    );
}

/// A flood of any kind of useless line ends the same way: refused past the rate, and cut off
/// with an `ERR` that names the limit when it keeps up.
#[test]
fn floods_of_every_kind_of_line_are_cut_off() {
    let server = TestServer::start(short_timeouts());
    let floods: [(&str, &[&str]); 4] = [
        ("\n", &["ERR too many lines"]),
        (
            "REGISTER on_event\n",
            &["REGISTERED on_event", "ERR too many lines"],
        ),
        ("RETURN 99 ok\n", &["ERR unknown upcall id 99"]),
        ("MSG spam\n", &["UPCALL ", "ERR too many messages"]),
    ];
    for (line, allowed) in floods {
        let (mut flooder, _) = server.connect_registered(&["on_event"]);
        // All in one write, so that no byte is left unread when the server closes.
        flooder.send(&line.repeat(200));
        let before = expect_until(&mut flooder, allowed, CUT_OFF);
        assert!(before >= 40, "{line:?}: cut off after {before} lines only");
    }
    // A client answering its upcalls is never cut off, however many it answers.
    let (mut student, _) = server.connect_registered(&["on_event"]);
    for round in 0..100 {
        let console = server.handle();
        let call = thread::spawn(move || console.call("client-5", "on_event", "ping"));
        let id = student.expect_upcall_of("on_event", "ping");
        student.send(&format!("RETURN {id} pong {round}\n"));
        assert_eq!(
            call.join().unwrap().to_string(),
            format!("client-5 returned: pong {round}")
        );
    }
}

/// A `MSG` short enough to reach its sender but too long to be passed on (the relayed upcall names
/// the sender, so it is longer): the sender is told, instead of the others silently missing it.
#[test]
fn a_message_too_long_to_pass_on_tells_its_sender() {
    let mut clients = TwoClients::start();
    let (sender, other) = (&mut clients.bad, &mut clients.other);
    let text = "m".repeat(4050);
    sender.send(&format!("MSG {text}\n"));
    sender.expect_upcall_of("on_event", &format!("Upcall event: Processing {text}"));
    let error = sender.expect_line();
    assert!(
        error.starts_with("ERR message too long to pass on: "),
        "{error:?}"
    );
    sender.send("MSG short\n");
    sender.expect_upcall_of("on_event", "Upcall event: Processing short");
    other.expect_upcall_of("on_event", "Upcall event: client-1 says short");
}

/// The operator's `kick`: a client by id, or every connection from an address, which is then
/// refused (said in the reply, and told to whoever tries again).
#[test]
fn kick_removes_a_client_or_a_whole_address() {
    let server = TestServer::start(quiet_config());
    let (mut one, _) = server.connect_registered(&["on_event"]);
    let (mut two, _) = server.connect_registered(&["on_event"]);
    let (mut three, _) = server.connect_registered(&["on_event"]);

    let mut output = Vec::new();
    console::run(&server, "kick client-1\n".as_bytes(), &mut output).unwrap();
    assert_eq!(String::from_utf8(output).unwrap(), "Kicked client-1.\n");
    one.expect("ERR kicked by the operator\n");
    one.expect("BYE\n");
    one.expect_eof();
    assert_eq!(server.client_count(), 2);

    let mut output = Vec::new();
    console::run(&server, "kick 127.0.0.1\n".as_bytes(), &mut output).unwrap();
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "Kicked 2 connection(s) from 127.0.0.1; it is refused for 10 min.\n"
    );
    for client in [&mut two, &mut three] {
        client.expect("ERR kicked by the operator\n");
        client.expect("BYE\n");
        client.expect_eof();
    }
    assert!(wait_until(Duration::from_secs(2), || server.client_count() == 0));
    let mut again = server.connect();
    again.expect("ERR your address is refused for 10 min (kicked by the operator)\n");
    again.expect("BYE\n");
    again.expect_eof();

    let mut output = Vec::new();
    console::run(&server, "kick nobody\n".as_bytes(), &mut output).unwrap();
    assert!(String::from_utf8(output)
        .unwrap()
        .starts_with("No client `nobody` and not an IP address"));
}
