//! The cast of the fairness and load tests, written once: the prompt student who answers every
//! upcall, the client that stops reading, the flooder, and a bad client next to a good one.
//!
//! Each takes a [`RawClient`] (connected over loopback by [`TestServer`], or from a network
//! namespace by `tests/lan.rs`), so the same student and the same bad neighbours play in every
//! test, whatever network they are on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use upcall::server::ServerConfig;

use super::client::{RawClient, Sender, Upcall};
use super::server::{quiet_config, TestServer};
use super::wait_until;

/// A client that registers `on_event` and then never reads again: a `clientcall` suspended with
/// Ctrl-Z, a laptop asleep. Its socket buffers fill, then its outbox, until the server drops it.
///
/// It does not wait for `REGISTERED` either: that line is left unread with everything after it
/// (a chat may be under way, and an upcall may come first).
pub fn stops_reading(mut client: RawClient) -> RawClient {
    client.send("REGISTER on_event\n");
    client
}

/// A line a listening client heard: an upcall, or any other line (without its newline).
pub enum Line {
    Upcall(Upcall),
    Other(String),
}

/// Reads `client` until the end of the stream on a thread of its own, answering every upcall
/// with `RETURN <id> ok` at once, then telling `note` what it heard and when the line arrived.
/// Returns the client's sender (shared with the thread) and the thread, which ends with the
/// stream.
pub fn answer_every_upcall(
    mut client: RawClient,
    mut note: impl FnMut(Line, Instant) + Send + 'static,
) -> (Sender, JoinHandle<()>) {
    let sender = client.sender();
    let answers = sender.clone();
    // However long the server is quiet, this client is still listening.
    client.set_patience(None);
    let listening = thread::spawn(move || {
        for line in client.lines() {
            let arrived = Instant::now();
            match Upcall::parse(&line) {
                Some(upcall) => {
                    if answers
                        .try_send(&format!("RETURN {} ok\n", upcall.id))
                        .is_err()
                    {
                        return;
                    }
                    note(Line::Upcall(upcall), arrived);
                }
                None => note(Line::Other(line.trim_end_matches('\n').into()), arrived),
            }
        }
    });
    (sender, listening)
}

/// What a [`Student`] heard, in order: the upcalls' `ids[i]`, `arguments[i]` and `arrivals[i]`
/// are one upcall.
#[derive(Default, Debug)]
pub struct Heard {
    pub ids: Vec<u64>,
    pub arguments: Vec<String>,
    pub arrivals: Vec<Instant>,
    /// Any line that is not an `UPCALL`: an `ERR` here would mean a `RETURN` the server did not
    /// expect, i.e. an upcall answered twice or never sent.
    pub other: Vec<String>,
}

/// An ordinary client: registers `on_event`, answers every upcall at once on a thread of its own
/// ([`answer_every_upcall`]), and notes each one with the moment it arrived.
pub struct Student {
    pub name: String,
    sender: Sender,
    /// Lock: guards what the listening thread has noted. Held to note one line, or to read.
    heard: Arc<Mutex<Heard>>,
    listening: JoinHandle<()>,
}

impl Student {
    /// A student on the loopback test server.
    pub fn join(server: &TestServer) -> Student {
        let (client, name) = server.connect_welcomed();
        Student::answering(client, name)
    }

    /// `client`, welcomed as `name`, registers `on_event` and from now on answers every upcall.
    pub fn answering(mut client: RawClient, name: String) -> Student {
        client.register("on_event");
        let heard = Arc::new(Mutex::new(Heard::default()));
        let notes = heard.clone();
        let (sender, listening) = answer_every_upcall(client, move |line, arrived| {
            let mut heard = notes.lock().unwrap();
            match line {
                Line::Upcall(upcall) => {
                    heard.ids.push(upcall.id);
                    heard.arguments.push(upcall.argument);
                    heard.arrivals.push(arrived);
                }
                Line::Other(text) => heard.other.push(text),
            }
        });
        Student {
            name,
            sender,
            heard,
            listening,
        }
    }

    /// Sends `text` as it is (no newline is added); panics if the connection is gone.
    pub fn send(&self, text: &str) {
        self.sender.send(text);
    }

    /// Another handle for sending as this student, from a thread of the test's.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// What the student has heard so far (the listening thread waits while this is held).
    pub fn heard(&self) -> MutexGuard<'_, Heard> {
        self.heard.lock().unwrap()
    }

    /// When the upcall whose argument is `argument` arrived, if it has.
    pub fn heard_at(&self, argument: &str) -> Option<Instant> {
        let heard = self.heard();
        let upcall = heard.arguments.iter().position(|heard| heard == argument)?;
        Some(heard.arrivals[upcall])
    }

    /// Waits (up to 10 s) for the upcall whose argument is `argument`; when it arrived.
    pub fn arrival_of(&self, argument: &str) -> Instant {
        let mut arrived = None;
        wait_until(Duration::from_secs(10), || {
            arrived = self.heard_at(argument);
            arrived.is_some()
        });
        arrived.unwrap_or_else(|| panic!("{} never heard {argument:?}", self.name))
    }

    /// Waits for the end of the stream (after a `BYE`, or [`Sender::hang_up`]); all it heard.
    pub fn heard_to_the_end(self) -> Heard {
        self.listening.join().expect("the listening thread");
        std::mem::take(&mut *self.heard.lock().unwrap())
    }
}

/// Reads `client` to the end on a thread of its own and throws every line away: a client that
/// keeps its buffers empty but answers nothing. Returns its sender.
pub fn ignores_what_it_hears(mut client: RawClient) -> Sender {
    let sender = client.sender();
    client.set_patience(None);
    thread::spawn(move || for _ in client.lines() {});
    sender
}

/// The line that ends a connection whose lines are refused faster than the message rate.
pub const CUT_OFF: &str =
    "ERR too many refused lines: more than 20 a second; closing the connection\n";

/// What a flooder heard: how many `ERR too many messages`, and whether it was cut off for
/// keeping it up.
pub struct Flooded {
    pub refused: usize,
    pub cut_off: bool,
}

/// `client` registers `on_event`, sends `count` `MSG <text>` as fast as it can, then `BYE`, and
/// reads whatever comes back; the thread returns what it heard once the server has closed.
pub fn flooder(client: RawClient, count: usize, text: &str) -> JoinHandle<Flooded> {
    let stream = client.sender();
    let heard = thread::spawn(move || {
        let mut client = client;
        client.set_patience(None);
        let mut flooded = Flooded {
            refused: 0,
            cut_off: false,
        };
        for line in client.lines() {
            flooded.refused += usize::from(line.starts_with("ERR too many messages"));
            flooded.cut_off |= line == CUT_OFF;
        }
        flooded
    });
    let line = format!("MSG {text}\n");
    thread::spawn(move || {
        let _ = stream.try_send("REGISTER on_event\n");
        for _ in 0..count {
            if stream.try_send(&line).is_err() {
                break;
            }
        }
        let _ = stream.try_send("BYE\n");
        heard.join().unwrap_or(Flooded {
            refused: 0,
            cut_off: false,
        })
    })
}

/// A server with two clients that both registered `on_event`: `bad` (client-1), which will
/// misbehave, and `other` (client-2), which behaves throughout and must never notice.
pub struct TwoClients {
    pub server: TestServer,
    pub bad: RawClient,
    pub other: RawClient,
    /// The upcall id each client expects next: every upcall must arrive, in order.
    pub bad_next_id: u64,
    pub other_next_id: u64,
}

impl TwoClients {
    pub fn start() -> TwoClients {
        TwoClients::with_config(quiet_config())
    }

    pub fn with_config(config: ServerConfig) -> TwoClients {
        let server = TestServer::start(config);
        let (bad, bad_name) = server.connect_registered(&["on_event"]);
        let (other, other_name) = server.connect_registered(&["on_event"]);
        assert_eq!(
            (bad_name.as_str(), other_name.as_str()),
            ("client-1", "client-2")
        );
        TwoClients {
            server,
            bad,
            other,
            bad_next_id: 1,
            other_next_id: 1,
        }
    }

    /// `bad` sends `line` (raw bytes) and must get exactly `error` back.
    pub fn rejects(&mut self, line: &[u8], error: &str) {
        self.bad.send_bytes(line);
        self.bad.expect(error);
    }

    /// Both connections still work both ways: `MSG ok` from `bad` earns its usual upcalls, on
    /// itself and on `other`, and so does a message from `other`. The ids run on from the last
    /// ones, so a lost or extra upcall anywhere would show.
    pub fn both_still_served(&mut self) {
        self.bad.send("MSG ok\n");
        self.bad.expect(&format!(
            "UPCALL {} on_event Upcall event: Processing ok\n",
            self.bad_next_id
        ));
        self.other.expect(&format!(
            "UPCALL {} on_event Upcall event: client-1 says ok\n",
            self.other_next_id
        ));
        self.other.send("MSG fine\n");
        self.other.expect(&format!(
            "UPCALL {} on_event Upcall event: Processing fine\n",
            self.other_next_id + 1
        ));
        self.bad.expect(&format!(
            "UPCALL {} on_event Upcall event: client-2 says fine\n",
            self.bad_next_id + 1
        ));
        self.bad_next_id += 2;
        self.other_next_id += 2;
    }
}
