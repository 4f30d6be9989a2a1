//! What a client case works with: the checker as a server ([`ClientCtx`]), on the one connection
//! the client under test made, sending upcalls and reading the client's answers.
//!
//! The runner (`client_cases.rs`) gives each case upcall ids of its own, from `base` on: an
//! answer below `base` is a late one to an earlier case, and `answer` passes it over.

use std::collections::BTreeSet;
use std::time::Duration;

use super::case::after;
use super::wire::{parse, Conn, Got};
use crate::protocol::Message;

/// The checker as a server, talking to the client under test.
pub struct ClientCtx {
    pub conn: Conn,
    pub wait: Duration,
    /// The callbacks the client registered.
    pub registered: BTreeSet<String>,
    /// The first upcall id of the current case; answers below it belong to earlier cases.
    pub(super) base: u64,
    pub(super) next_id: u64,
    /// The last line read, as received.
    pub(super) last: String,
}

/// How a client answered an upcall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Returned(String),
    Failed(String),
}

impl ClientCtx {
    /// Sends `UPCALL <id> <callback> [argument]` (as raw bytes, newline included) and returns
    /// the id.
    pub(super) fn upcall_raw(&mut self, callback: &str, rest: &[u8]) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = format!("UPCALL {id} {callback}").into_bytes();
        line.extend_from_slice(rest);
        self.conn.send_bytes(&line)?;
        Ok(id)
    }

    pub(super) fn upcall(&mut self, callback: &str, argument: &str) -> Result<u64, String> {
        self.upcall_raw(callback, format!(" {argument}\n").as_bytes())
    }

    /// The client's next answer (`RETURN`/`FAIL`), passing over late answers to earlier cases,
    /// `REGISTER`s (answered) and `MSG`s (the user typed something).
    pub(super) fn answer(&mut self, what: &str) -> Result<(u64, Answer), String> {
        let deadline = after(self.wait);
        loop {
            let line = match self.conn.read_line(deadline) {
                Got::Line(line) => line,
                Got::Closed => {
                    return Err(format!("{what}; instead the client closed the connection"))
                }
                Got::Silent => {
                    return Err(format!(
                        "{what}; instead nothing came within {:?}",
                        self.wait
                    ))
                }
            };
            self.last = line.clone();
            match parse(&line) {
                Ok(Message::Return { id, value }) if id >= self.base => {
                    return Ok((id, Answer::Returned(value)))
                }
                Ok(Message::Fail { id, reason }) if id >= self.base => {
                    return Ok((id, Answer::Failed(reason)))
                }
                Ok(Message::Return { .. } | Message::Fail { .. }) => self
                    .conn
                    .note("(a late answer to an earlier case: passed over)"),
                Ok(Message::Register { callback }) => {
                    self.conn.send(&[&format!("REGISTERED {callback}")])?;
                    self.registered.insert(callback);
                }
                Ok(Message::Msg { .. }) => self
                    .conn
                    .note("(a MSG: this case does not need it, passed over)"),
                Ok(_) => return Err(self.instead(what)),
                Err(error) => {
                    return Err(format!(
                        "{what}; instead a line that is not upcall/1 ({error})"
                    ))
                }
            }
        }
    }

    pub(super) fn instead(&self, what: &str) -> String {
        format!("{what}; instead `{}`", self.last)
    }

    /// Expects `RETURN <id> <value>`.
    pub(super) fn expect_return(&mut self, id: u64, value: &str, why: &str) -> Result<(), String> {
        let what = format!("RETURN {id} {value} ({why})");
        match self.answer(&what)? {
            (got, Answer::Returned(returned)) if got == id && returned == value => Ok(()),
            _ => Err(self.instead(&what)),
        }
    }

    pub(super) fn needs(&self, callback: &str) -> Result<(), String> {
        if self.registered.contains(callback) {
            Ok(())
        } else {
            Err(format!(
                "the client to have registered {callback} (rule 2.4); it registered {:?}",
                self.registered
            ))
        }
    }
}
