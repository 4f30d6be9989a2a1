//! The life of one connection, on its own thread: greet the client, then read its lines one by one
//! and answer each, until it leaves. This is where a `MSG` becomes upcalls (step 1) and where their
//! answers come back (step 3).
//!
//! Whatever happens here ends this one connection at worst: a bad line gets `ERR` and the next
//! line is read; a broken socket ends this thread, and the others never notice.

use std::time::Instant;

use super::limits::{MessageRate, Noise};
use super::peer::{NotFiled, Peer};
use super::pending::Outcome;
use super::Server;
use crate::error::Error;
use crate::log::seconds;
use crate::protocol::{self, Message, ProtocolError, CLIENT_VERBS, ON_EVENT};

/// What the connection does after a line.
enum Next {
    /// Read the next line.
    Read,
    /// The client said `BYE`: the connection ends.
    Close,
}

impl Server {
    /// Serves one client from `WELCOME` to its last line.
    pub(super) fn serve_client(&self, peer: &Peer) {
        log!(self, "Connection from: {} ({})", peer.address, peer.name);
        let config = self.config();
        let mut reader = peer.reader();
        let mut rate = MessageRate::new(config.max_msg_rate);
        let mut bad_lines = MessageRate::new(config.max_msg_rate);
        let connected = Instant::now();
        let mut said_anything = false;
        let welcome = Message::Welcome {
            client_id: peer.name.clone(),
        };
        let mut farewell = String::from("disconnected");
        if peer.send(self, &welcome).is_ok() {
            loop {
                match reader.read_message() {
                    Ok(Some(message)) => {
                        said_anything = true;
                        if let Next::Close = self.handle(peer, message, &mut rate) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(Error::Protocol(error)) => {
                        self.reject(peer, bad_line(error, config.max_line));
                        // Each bad line costs an `ERR` back, the same size or larger: a script
                        // that sends garbage in a loop is disconnected, like IRC's "Excess Flood".
                        if !bad_lines.allow(Instant::now()) {
                            let reason = format!(
                                "too many bad lines: more than {} a second",
                                config.max_msg_rate
                            );
                            peer.refuse(self, format!("{reason}; closing the connection"));
                            farewell = format!("dropped: {reason}");
                            break;
                        }
                    }
                    // The socket's read timeout (the line timeout) passed: is this connection
                    // holding a slot without using it?
                    Err(error) if error.is_timeout() => {
                        let limit = seconds(config.line_timeout);
                        let reason = match reader.partial_line_since() {
                            Some(since) if since.elapsed() >= config.line_timeout => {
                                format!("a line was left unfinished for {limit}")
                            }
                            None if !said_anything
                                && connected.elapsed() >= config.line_timeout =>
                            {
                                format!("no complete line within {limit} of connecting")
                            }
                            // A client that is merely quiet: it may think as long as it likes.
                            _ => continue,
                        };
                        peer.refuse(self, format!("{reason}: closing the connection"));
                        farewell = format!("dropped: {reason}");
                        break;
                    }
                    Err(Error::Io(error)) => {
                        farewell = format!("disconnected ({error})");
                        break;
                    }
                }
            }
        }
        self.forget(peer);
        log!(self, "{} {farewell}", peer.name);
    }

    /// One message from a client.
    fn handle(&self, peer: &Peer, message: Message, rate: &mut MessageRate) -> Next {
        match message {
            Message::Register { callback } => match peer.register(&callback) {
                Ok(()) => {
                    peer.note(
                        self,
                        Noise::Registered,
                        format_args!("{} registered {callback}", peer.name),
                    );
                    let _ = peer.send(self, &Message::Registered { callback });
                }
                Err(reason) => self.reject(peer, reason),
            },
            Message::Msg { text } => {
                if rate.allow(Instant::now()) {
                    self.pass_on(peer, &text);
                } else {
                    let limit = self.config().max_msg_rate;
                    self.reject(
                        peer,
                        format!(
                            "too many messages: at most {limit} a second (bursts of {}); \
                             this one was not passed on",
                            2 * limit
                        ),
                    );
                }
            }
            Message::Return { id, value } => self.answer(peer, id, Outcome::Returned(value)),
            Message::Fail { id, reason } => self.answer(peer, id, Outcome::Failed(reason)),
            // Lines that only a server sends. The parser reads both directions (one grammar for
            // the whole protocol); refusing them is the receiver's job.
            Message::Welcome { .. }
            | Message::Registered { .. }
            | Message::Upcall { .. }
            | Message::Err { .. } => {
                let reason = format!("{} is sent by the server, not by a client", message.verb());
                self.reject(peer, reason);
            }
            Message::Bye => {
                log!(self, "{} said BYE", peer.name);
                let _ = peer.send(self, &Message::Bye);
                return Next::Close;
            }
        }
        Next::Read
    }

    /// `MSG <text>`: log it, call `on_event` back on the sender, and on every other client.
    ///
    /// This thread only *sends* the upcalls; their answers arrive on the other clients' sockets
    /// and are read by their own threads. Waiting here would stop this client's socket from being
    /// read, its own `RETURN` included. Sending never waits either: a client that is not reading
    /// gets the line in its outbox.
    fn pass_on(&self, sender: &Peer, text: &str) {
        sender.note(
            self,
            Noise::Received,
            format_args!("Received from {}: {text}", sender.name),
        );
        match sender.upcall(self, ON_EVENT, &protocol::processing(text), None) {
            Ok(_) | Err(NotFiled::Gone) => {}
            Err(reason) => sender.refuse(self, reason.to_string()),
        }
        let relayed = protocol::relayed(&sender.name, text);
        for other in self.snapshot() {
            if other.number != sender.number && other.has_callback(ON_EVENT) {
                // A failure here concerns `other` only: it goes to the log, not to the sender.
                match other.upcall(self, ON_EVENT, &relayed, None) {
                    Ok(_) | Err(NotFiled::Gone) => {}
                    Err(reason) => {
                        other.note(
                            self,
                            Noise::Upcall,
                            format_args!("Upcall to {} not sent: {reason}", other.name),
                        );
                    }
                }
            }
        }
    }

    /// `RETURN`/`FAIL <id>`: hand the outcome to whoever waits for upcall `id`.
    fn answer(&self, peer: &Peer, id: u64, outcome: Outcome) {
        match peer.take_pending(id) {
            Some(pending) => self.settle(peer, id, pending, outcome),
            None => self.reject(
                peer,
                format!(
                    "unknown upcall id {id} (never sent, already answered, or given up after \
                     the timeout)"
                ),
            ),
        }
    }

    /// The one way a line is refused: the log says why (summarised if it repeats), the client
    /// gets `ERR` with the same reason, and the connection stays.
    fn reject(&self, peer: &Peer, reason: String) {
        peer.note(
            self,
            Noise::Refused,
            format_args!("{} sent a bad line: {reason}", peer.name),
        );
        peer.refuse(self, reason);
    }

    /// Takes a client out of the registry and fails every upcall still waiting on it, at once: a
    /// console `call` to a client that just disconnected must not sit out the whole timeout.
    fn forget(&self, peer: &Peer) {
        self.leave(peer);
        peer.hang_up();
        for (id, pending) in peer.close() {
            self.settle(peer, id, pending, Outcome::Disconnected);
        }
        for summary in peer.repeats_due(Instant::now(), true) {
            log!(self, "{summary}");
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
