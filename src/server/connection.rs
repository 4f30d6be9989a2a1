//! The life of one connection, on its own thread: greet the client, then read its lines one by one
//! and answer each, until it leaves. This is where a `MSG` becomes upcalls (step 1) and where their
//! answers come back (step 3).
//!
//! Whatever happens here ends this one connection at worst: a bad line gets `ERR` and the next
//! line is read; a broken socket ends this thread, and the others never notice.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::config::ServerConfig;
use super::limits::{self, MessageRate};
use super::peer::{Peer, SharedSocket};
use super::pending::{NotFiled, Outcome};
use super::shared::Server;
use crate::error::Error;
use crate::framing::{Line, LineReader};
use crate::log::seconds;
use crate::os::{self, Interest};
use crate::protocol::{self, Message, ProtocolError, CLIENT_VERBS, ON_EVENT};

/// What the connection does after a line.
enum Next {
    /// Read the next line.
    Read,
    /// The connection ends; the log says this about it (`disconnected`, `dropped: ...`).
    Close(String),
}

/// One connection's state, owned by its thread from `WELCOME` to the last line: the one place
/// that knows what this client has done so far.
struct Connection<'a> {
    server: &'a Server,
    config: &'a ServerConfig,
    peer: &'a Peer,
    reader: LineReader<SharedSocket>,
    /// Lines that cost the server work: messages, empty lines, repeated `REGISTER`s.
    lines: MessageRate,
    /// Lines answered with `ERR`.
    refused: MessageRate,
    connected: Instant,
    /// A complete, non-empty line has arrived.
    said_anything: bool,
    /// A callback is registered: this connection is a client, not a port scan or a squatter.
    registered: bool,
}

/// Serves one client from `WELCOME` to its last line, on the client's own thread.
pub(super) fn serve_client(server: &Server, peer: &Peer) {
    log!(server, "Connection from: {} ({})", peer.address, peer.name);
    let mut connection = Connection::new(server, peer);
    let farewell = connection.run();
    if farewell.starts_with("dropped") {
        connection.linger();
    }
    server.forget(peer);
    log!(server, "{} {farewell}", peer.name);
    server.shared.serving.fetch_sub(1, Ordering::SeqCst);
}

impl<'a> Connection<'a> {
    fn new(server: &'a Server, peer: &'a Peer) -> Connection<'a> {
        let config = &server.shared.config;
        let rate = config.max_msg_rate;
        Connection {
            server,
            config,
            peer,
            reader: peer.reader(),
            lines: MessageRate::new(rate),
            refused: MessageRate::new(rate),
            connected: Instant::now(),
            said_anything: false,
            registered: false,
        }
    }

    /// Greets the client and answers its lines until the connection ends; returns what the log
    /// says about the end.
    fn run(&mut self) -> String {
        let welcome = Message::Welcome {
            client_id: self.peer.name.clone(),
        };
        if self.peer.send(self.server, &welcome).is_err() {
            return "disconnected".into();
        }
        loop {
            // With no deadline to keep, the next read may wait in the kernel for the line.
            self.reader.source().may_wait = self.deadline().is_none();
            let next = match self.reader.read_line_or_empty() {
                Ok(Some(line)) => {
                    self.peer.heard_from();
                    self.handle(line)
                }
                Ok(None) => Next::Close("disconnected".into()),
                Err(error) => self.read_failed(error),
            };
            if let Next::Close(farewell) = next {
                return farewell;
            }
        }
    }

    /// No line came: a bad one (refused, and the connection stays), none yet (wait for it), or
    /// none ever again.
    fn read_failed(&mut self, error: Error) -> Next {
        match error {
            Error::Protocol(error) => {
                self.peer.heard_from();
                let max_line = self.config.max_line;
                self.refuse(bad_line(error, max_line))
            }
            // Nothing more to read for now, and a deadline to keep (or a socket that cannot
            // wait, on Windows): wait for input up to the deadline.
            Error::Io(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                self.wait_for_input()
            }
            // The kernel gave up on the connection: keepalive probes, or data sent to the
            // client, went unanswered (a laptop asleep, a student who left the Wi-Fi).
            Error::Io(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) =>
            {
                Next::Close(format!(
                    "vanished: its computer stopped answering for {} (TCP keepalive)",
                    seconds(limits::KEEPALIVE_GIVE_UP)
                ))
            }
            Error::Io(error) => Next::Close(format!("disconnected ({error})")),
        }
    }

    /// One line from the client.
    fn handle(&mut self, line: Line) -> Next {
        let Line::Message(message) = line else {
            // An empty line means nothing, and costs nothing, unless it comes in a flood.
            return self.count_line();
        };
        self.said_anything = true;
        match message {
            Message::Register { callback } => self.register(callback),
            Message::Msg { text } => self.pass_on(&text),
            Message::Return { id, value } => self.answer(id, Outcome::Returned(value)),
            Message::Fail { id, reason } => self.answer(id, Outcome::Failed(reason)),
            // Lines that only a server sends. The parser reads both directions (one grammar for
            // the whole protocol); refusing them is the receiver's job.
            Message::Welcome { .. }
            | Message::Registered { .. }
            | Message::Upcall { .. }
            | Message::Err { .. } => self.refuse(format!(
                "{} is sent by the server, not by a client",
                message.verb()
            )),
            Message::Bye => {
                log!(self.server, "{} said BYE", self.peer.name);
                let _ = self.peer.send(self.server, &Message::Bye);
                Next::Close("disconnected".into())
            }
        }
    }

    /// `REGISTER <callback>`. A new callback is free; registering one again is a line like any
    /// other, counted against the rate.
    fn register(&mut self, callback: String) -> Next {
        if self.peer.has_callback(&callback) {
            if let Next::Close(farewell) = self.count_line() {
                return Next::Close(farewell);
            }
        }
        match self.peer.register(&callback) {
            Ok(()) => {
                self.registered = true;
                let name = &self.peer.name;
                note!(
                    self.server,
                    self.peer,
                    Registered,
                    "{name} registered {callback}"
                );
                let _ = self
                    .peer
                    .send(self.server, &Message::Registered { callback });
                Next::Read
            }
            Err(reason) => self.refuse(reason),
        }
    }

    /// A line that did nothing useful (an empty line, a repeated `REGISTER`): fine now and then,
    /// refused past the message rate.
    fn count_line(&mut self) -> Next {
        if self.lines.allow(Instant::now()) {
            return Next::Read;
        }
        let limit = self.config.max_msg_rate;
        self.refuse(format!(
            "too many lines: at most {limit} a second (bursts of {}); this one was ignored",
            2 * limit
        ))
    }

    /// `MSG <text>`: log it, call `on_event` back on the sender, and on every other client.
    ///
    /// This thread only *sends* the upcalls; their answers arrive on the other clients' sockets
    /// and are read by their own threads. Waiting here would stop this client's socket from being
    /// read, its own `RETURN` included. Sending never waits either: a client that is not reading
    /// gets the line in its outbox.
    fn pass_on(&mut self, text: &str) -> Next {
        if !self.lines.allow(Instant::now()) {
            return self.too_many_messages();
        }
        let (server, sender) = (self.server, self.peer);
        let name = &sender.name;
        note!(server, sender, Received, "Received from {name}: {text}");
        // The sender first: `UPCALL <id> on_event Upcall event: Processing <text>`.
        let own = sender.upcall(server, ON_EVENT, &protocol::processing(text), None);
        if let Some(next) = self.own_upcall_not_sent(own) {
            return next;
        }
        // Then every other client that registered on_event: `... client-1 says <text>`.
        let relayed = protocol::relayed(name, text);
        if !fits_any_upcall(&relayed, self.config.max_line) {
            return self.too_long_to_pass_on();
        }
        for other in server.snapshot() {
            if other.number != sender.number && other.has_callback(ON_EVENT) {
                relay(server, &other, &relayed);
            }
        }
        Next::Read
    }

    /// A `MSG` past the message rate: refused, not passed on.
    fn too_many_messages(&mut self) -> Next {
        let limit = self.config.max_msg_rate;
        self.refuse(format!(
            "too many messages: at most {limit} a second (bursts of {}); \
             this one was not passed on",
            2 * limit
        ))
    }

    /// The sender's own upcall was not sent: tells it why. Returns what to do instead of passing
    /// the message on to the others, if anything.
    fn own_upcall_not_sent(&mut self, own: Result<u64, NotFiled>) -> Option<Next> {
        match own {
            Ok(_) | Err(NotFiled::Gone) => None,
            // Too long for the sender's own upcall is too long for the others' too (theirs names
            // the sender): one `ERR` says it.
            Err(reason @ NotFiled::BadLine(..)) => Some(self.tell(reason.to_string())),
            Err(reason) => match self.tell(reason.to_string()) {
                Next::Read => None,
                close => Some(close),
            },
        }
    }

    /// The message fits the sender's upcall but not the others', which name the sender.
    fn too_long_to_pass_on(&mut self) -> Next {
        let max_line = self.config.max_line;
        self.tell(format!(
            "message too long to pass on: the upcall to the others would be over the \
             {max_line}-byte line limit (at most about {} bytes of text)",
            longest_relayed_text(&self.peer.name, max_line)
        ))
    }

    /// `RETURN`/`FAIL <id>`: hand the outcome to whoever waits for upcall `id`.
    fn answer(&mut self, id: u64, outcome: Outcome) -> Next {
        match self.peer.take_pending(id) {
            Some(pending) => {
                self.server.settle(self.peer, id, pending, outcome);
                Next::Read
            }
            None => self.refuse(format!(
                "unknown upcall id {id} (never sent, already answered, or given up after the \
                 timeout)"
            )),
        }
    }

    /// Refuses the last line: the log says why (summarised if it repeats), and [`Self::tell`]
    /// answers it.
    fn refuse(&mut self, reason: String) -> Next {
        let name = &self.peer.name;
        note!(
            self.server,
            self.peer,
            Refused,
            "{name} sent a bad line: {reason}"
        );
        self.tell(reason)
    }

    /// `ERR <reason>` for the last line; the connection stays, unless lines are refused faster
    /// than the message rate. Each refusal costs an `ERR` back, the same size or larger: a
    /// script that sends garbage (or anything useless) in a loop is disconnected, like IRC's
    /// "Excess Flood".
    fn tell(&mut self, reason: String) -> Next {
        self.peer.refuse(self.server, reason);
        if self.refused.allow(Instant::now()) {
            return Next::Read;
        }
        let limit = self.config.max_msg_rate;
        let reason = format!("too many refused lines: more than {limit} a second");
        self.peer
            .refuse(self.server, format!("{reason}; closing the connection"));
        Next::Close(format!("dropped: {reason}"))
    }

    /// Before closing a connection the server refused, lets the client read why: the sending side
    /// is closed (the `ERR` goes out, then a FIN), and what the client still sends is read and
    /// thrown away for a second. Closing a socket with unread bytes in it sends a reset instead,
    /// and the client's system may then throw away the `ERR` before the client reads it: Windows
    /// does (under Wine a read after the reset fails, `ERR` unread, where Linux still gives it).
    /// So the second is not cut short however much a flooder sends meanwhile (at first it was,
    /// after 1 MiB: a flooder under Wine then missed its `ERR` in 1 run of 6). The cost is
    /// bounded by time: one thread reading for one second.
    fn linger(&mut self) {
        const LINGER: Duration = Duration::from_secs(1);
        let socket = self.peer.socket();
        let _ = socket.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut buffer = [0; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match os::receive(socket, &mut buffer, false) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = os::wait(&[(socket, Interest::Read)], Some(left));
                }
                Err(_) => break,
            }
        }
    }

    /// Waits until the client sends more, or until one of its deadlines passes.
    fn wait_for_input(&mut self) -> Next {
        loop {
            if self.peer.is_hung_up() {
                return Next::Close("disconnected".into());
            }
            let deadline = self.deadline();
            let now = Instant::now();
            let timeout = deadline.map(|deadline| deadline.saturating_duration_since(now));
            if timeout == Some(Duration::ZERO) {
                return self.past_deadline();
            }
            let timeout = match (timeout, limits::HANG_UP_CHECK) {
                (Some(timeout), Some(check)) => Some(timeout.min(check)),
                (timeout, check) => timeout.or(check),
            };
            match os::wait_for(self.peer.socket(), Interest::Read, timeout) {
                Ok(true) => return Next::Read,
                Ok(_) => {} // a deadline, or time to look at `is_hung_up` again
                Err(error) => return Next::Close(format!("disconnected ({error})")),
            }
        }
    }

    /// When the client must have done something by: registered a callback (a new connection),
    /// or finished the line it began. A registered client that is merely quiet has no deadline:
    /// it may think as long as it likes (a person typing by hand with `nc`).
    fn deadline(&self) -> Option<Instant> {
        let timeout = self.config.line_timeout;
        let unregistered = (!self.registered).then(|| self.connected + timeout);
        let partial = self
            .reader
            .partial_line_since()
            .map(|since| since + timeout);
        [unregistered, partial].into_iter().flatten().min()
    }

    /// A deadline passed: this connection is holding a slot without using it. The reason given
    /// is that of the deadline that came first (a thread woken late may find both passed).
    fn past_deadline(&mut self) -> Next {
        let timeout = self.config.line_timeout;
        let limit = seconds(timeout);
        let unregistered = (!self.registered).then(|| self.connected + timeout);
        let partial = self
            .reader
            .partial_line_since()
            .map(|since| since + timeout);
        let reason = match (unregistered, partial) {
            (Some(register_by), Some(finish_by)) if finish_by < register_by => {
                format!("a line was left unfinished for {limit}")
            }
            (None, Some(_)) => format!("a line was left unfinished for {limit}"),
            _ if !self.said_anything => format!("no complete line within {limit} of connecting"),
            _ => format!("no callback registered within {limit} of connecting"),
        };
        self.peer
            .refuse(self.server, format!("{reason}: closing the connection"));
        Next::Close(format!("dropped: {reason}"))
    }
}

/// Passes a `MSG` on to `other`. A failure concerns `other` only: it goes to the log, not to the
/// sender.
fn relay(server: &Server, other: &Peer, relayed: &str) {
    match other.upcall(server, ON_EVENT, relayed, None) {
        Ok(_) | Err(NotFiled::Gone) => {}
        Err(reason) => {
            let to = &other.name;
            note!(server, other, Upcall, "Upcall to {to} not sent: {reason}");
        }
    }
}

/// The reason sent back for a line that is not valid `upcall/1`.
fn bad_line(error: ProtocolError, max_line: usize) -> String {
    match error {
        ProtocolError::LineTooLong => format!(
            "{error} (the limit is {max_line} bytes with the newline; the line was skipped)"
        ),
        // The parser reads both directions; which verbs were expected depends on who is reading.
        ProtocolError::UnknownVerb => format!("{error} (expected {CLIENT_VERBS})"),
        _ => error.to_string(),
    }
}

/// Whether `UPCALL <id> on_event <argument>` fits in a line for every id a client can have. The
/// line is counted, not written: this runs for every `MSG`, and writing it out would cost as much
/// as the sender's own upcall.
fn fits_any_upcall(argument: &str, max_line: usize) -> bool {
    const LONGEST_ID: usize = 20; // u64::MAX, 18446744073709551615
    let space_and_argument = if argument.is_empty() {
        0
    } else {
        1 + argument.len()
    };
    let longest = "UPCALL ".len() + LONGEST_ID + 1 + ON_EVENT.len() + space_and_argument + 1;
    longest <= max_line && protocol::check_text(argument).is_ok()
}

/// About how many bytes of text a `MSG` from `sender` may have to be passed on.
fn longest_relayed_text(sender: &str, max_line: usize) -> usize {
    let overhead = format!(
        "UPCALL {} {ON_EVENT} {}\n",
        u64::MAX,
        protocol::relayed(sender, "")
    );
    max_line.saturating_sub(overhead.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_the_longest_upcall_agrees_with_writing_it_out() {
        let written = |argument: &str, max_line: usize| {
            let longest = Message::Upcall {
                id: u64::MAX,
                callback: ON_EVENT.into(),
                argument: argument.into(),
            };
            longest.encode().is_ok_and(|line| line.len() <= max_line)
        };
        for length in 0..80 {
            let argument = "x".repeat(length);
            for max_line in [40, 60, 79, 80, 81, 4096] {
                assert_eq!(
                    fits_any_upcall(&argument, max_line),
                    written(&argument, max_line),
                    "{length} bytes, limit {max_line}"
                );
            }
        }
        assert!(!fits_any_upcall("a\u{202e}b", 4096));
    }
}
