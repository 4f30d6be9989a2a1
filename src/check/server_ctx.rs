//! What a server case works with: the context ([`ServerCtx`]: where the server is, what it was
//! told, the transcript) and one connection to the server ([`Peer`]), which reads like `nc`.
//!
//! A server is often shared (a classroom's), so the other clients' messages may reach a case's
//! connection as `on_event` upcalls (`Upcall event: client-9 says ...`): those are passed over
//! (and left unanswered), unless the case is about them.

use std::net::SocketAddr;
use std::time::Instant;

use super::case::after;
use super::options::Options;
use super::wire::{parse, Conn, Got, Transcript};
use crate::protocol::{processing, Message};

/// What a server case works with: where the server is, what it was told, and the transcript.
pub struct ServerCtx {
    pub addr: SocketAddr,
    pub options: Options,
    transcript: Transcript,
    next_label: u8,
}

impl ServerCtx {
    /// The context of one case, its connections' lines going to `transcript`.
    pub fn new(addr: SocketAddr, options: Options, transcript: Transcript) -> ServerCtx {
        ServerCtx {
            addr,
            options,
            transcript,
            next_label: 0,
        }
    }

    /// A new connection, nothing read yet.
    pub fn connect(&mut self) -> Result<Peer, String> {
        let label = char::from(b'A' + self.next_label % 26);
        self.next_label += 1;
        let conn = Conn::connect(self.addr, self.options.wait, label, &self.transcript)?;
        Ok(Peer {
            conn,
            client_id: None,
            upcall_ids: Vec::new(),
            keep_relays: false,
            pings: 0,
            wait: self.options.wait,
            last: String::new(),
        })
    }

    /// A new connection that has read its first line (which only rule 2.1 judges).
    pub fn open(&mut self) -> Result<Peer, String> {
        let mut peer = self.connect()?;
        // Only rule 2.1 judges the first line; the others need a connection, not a WELCOME.
        let _ = peer.welcome()?;
        Ok(peer)
    }

    /// A new connection that has registered `callbacks`, each acknowledged.
    pub fn open_registered(&mut self, callbacks: &[&str]) -> Result<Peer, String> {
        let mut peer = self.open()?;
        for callback in callbacks {
            peer.send(&[&format!("REGISTER {callback}")])?;
            peer.expect_registered(callback)?;
        }
        Ok(peer)
    }
}

/// One connection to the server under test.
pub struct Peer {
    pub conn: Conn,
    /// What `WELCOME` named this connection.
    pub client_id: Option<String>,
    /// Every upcall id received, in order (relays included).
    pub upcall_ids: Vec<u64>,
    /// Hand other clients' relayed messages to the case instead of passing them over.
    pub keep_relays: bool,
    pings: u32,
    pub wait: std::time::Duration,
    /// The last line read, as received.
    last: String,
}

impl Peer {
    pub fn send(&mut self, lines: &[&str]) -> Result<(), String> {
        self.conn.send(lines)
    }

    /// Reads the first line; `WELCOME` sets the client id. Any other line is returned as an
    /// error for rule 2.1 to report; the other cases go on without an id.
    pub fn welcome(&mut self) -> Result<Result<(), String>, String> {
        let what = "WELCOME <client-id> upcall/1 as the first line";
        let line = match self.conn.read_line(after(self.wait)) {
            Got::Line(line) => line,
            Got::Closed => return Err(format!("{what}; instead the server closed the connection")),
            Got::Silent => {
                return Err(format!(
                    "{what}; instead nothing came within {:?}",
                    self.wait
                ))
            }
        };
        self.last = line.clone();
        Ok(match parse(&line) {
            Ok(Message::Welcome { client_id }) => {
                self.client_id = Some(client_id);
                Ok(())
            }
            Ok(_) => Err(self.instead(what)),
            Err(error) => Err(format!(
                "{what}; instead a line that is not upcall/1 ({error})"
            )),
        })
    }

    /// The next message, passing over other clients' relayed messages. `Err` says that `what`
    /// was expected and what came instead.
    pub fn next(&mut self, what: &str) -> Result<Message, String> {
        let deadline = after(self.wait);
        loop {
            let line = match self.conn.read_line(deadline) {
                Got::Line(line) => line,
                Got::Closed => {
                    return Err(format!("{what}; instead the server closed the connection"))
                }
                Got::Silent => {
                    return Err(format!(
                        "{what}; instead nothing came within {:?}",
                        self.wait
                    ))
                }
            };
            self.last = line.clone();
            // Another client's text relayed (rule 4.2) is that client's business, even when the
            // server under test should have refused it: this case is about its own lines.
            if !self.keep_relays && is_relay(&line) && parse(&line).is_err() {
                continue;
            }
            let message = match parse(&line) {
                Ok(message) => message,
                Err(error) => {
                    return Err(format!(
                        "{what}; instead a line that is not upcall/1 ({error})"
                    ))
                }
            };
            if let Message::Upcall {
                id,
                callback,
                argument,
            } = &message
            {
                self.upcall_ids.push(*id);
                let relay = callback == "on_event"
                    && argument.starts_with("Upcall event: ")
                    && argument.contains(" says ");
                // Not answered: an answer after a case's pause would come after the upcall
                // timeout, and every such late answer costs an ERR that counts against the
                // rate of refusals (rule 9.6). The server gives up on it; that is all.
                if relay && !self.keep_relays {
                    continue;
                }
            }
            return Ok(message);
        }
    }

    /// `what` was expected; the last line read was something else.
    pub fn instead(&self, what: &str) -> String {
        format!("{what}; instead `{}`", self.last)
    }

    pub fn expect_registered(&mut self, callback: &str) -> Result<(), String> {
        let what = format!("REGISTERED {callback}");
        match self.next(&what)? {
            Message::Registered { callback: got } if got == callback => Ok(()),
            _ => Err(self.instead(&what)),
        }
    }

    /// An `ERR` (any reason: it is for a person), in answer to `why`.
    pub fn expect_err(&mut self, why: &str) -> Result<String, String> {
        let what = format!("ERR <reason>, because {why}");
        match self.next(&what)? {
            Message::Err { reason } => Ok(reason),
            _ => Err(self.instead(&what)),
        }
    }

    /// The `on_event` upcall a `MSG <text>` causes on its sender; returns its id.
    pub fn expect_processing(&mut self, text: &str) -> Result<u64, String> {
        let argument = processing(text);
        let what = format!("UPCALL <id> on_event {argument}");
        match self.next(&what)? {
            Message::Upcall {
                id,
                callback,
                argument: got,
            } if callback == "on_event" && got == argument => Ok(id),
            _ => Err(self.instead(&what)),
        }
    }

    /// Checks that the connection still answers, and that nothing else comes first: sends
    /// `REGISTER ping_N` (a new name each time: it costs no rate) and expects its `REGISTERED`.
    pub fn ping(&mut self, why: &str) -> Result<(), String> {
        self.pings += 1;
        let name = format!("ping_{}", self.pings);
        self.send(&[&format!("REGISTER {name}")])?;
        let what = format!("REGISTERED {name} as the next line ({why})");
        match self.next(&what)? {
            Message::Registered { callback } if callback == name => Ok(()),
            _ => Err(self.instead(&what)),
        }
    }

    /// Waits until `deadline` for the server to close; returns the lines it sent before.
    pub fn until_closed(&mut self, deadline: Instant) -> Result<Vec<String>, Vec<String>> {
        let mut lines = Vec::new();
        loop {
            match self.conn.read_line(deadline) {
                Got::Line(line) => lines.push(line),
                Got::Closed => return Ok(lines),
                Got::Silent => return Err(lines),
            }
        }
    }
}

/// `UPCALL <id> on_event Upcall event: <someone> says ...`: another client's message.
/// Told by its text alone: another client's text may be what the server should have refused.
pub fn is_relay(line: &str) -> bool {
    line.starts_with("UPCALL ")
        && line.contains(" on_event Upcall event: ")
        && line.contains(" says ")
}
