//! One connection of the checker: raw lines out and in, every one written down in the case's
//! transcript, every read bounded by a deadline.
//!
//! The checker reads lines itself instead of through [`crate::framing::LineReader`]: a report must
//! show a student the exact bytes their program sent (a stray `\r`, a lower-case verb, a trailing
//! space), which a parsed [`Message`] no longer has. What a line *means* still comes from the one
//! parser, [`crate::protocol::parse`].

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock;
use crate::protocol::{self, Message};

/// The longest line the checker takes in, newline included: the protocol's limit.
pub const MAX_LINE: usize = protocol::DEFAULT_MAX_LINE;

/// One line of a case's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Which connection: `A`, `B`, ... in the order the case opened them.
    pub connection: char,
    pub direction: Direction,
    /// The line, made printable (see [`printable`]).
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
    /// Something that happened without a line: a close, a wait.
    Note,
}

/// A case's transcript, shared by the connections it opens.
pub type Transcript = Arc<Mutex<Vec<Entry>>>;

/// What one read gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A line, without its `\n` (a `\r` before it is kept: [`parse`] drops it).
    Line(String),
    /// The other side closed the connection (or reset it).
    Closed,
    /// Nothing complete arrived before the deadline.
    Silent,
}

/// One TCP connection with its transcript.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
    label: char,
    transcript: Transcript,
    closed: bool,
}

impl Conn {
    /// Connects to `addr` (waiting at most `wait`); the transcript names it `label`.
    pub fn connect(
        addr: SocketAddr,
        wait: Duration,
        label: char,
        transcript: &Transcript,
    ) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&addr, wait)
            .map_err(|error| format!("could not connect to {addr}: {error}"))?;
        Ok(Conn::over(stream, label, transcript))
    }

    /// A connection someone else opened (the client checker's accepted socket).
    pub fn over(stream: TcpStream, label: char, transcript: &Transcript) -> Conn {
        // Each send leaves as its own segment, so "one write" in a case really is one.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        Conn {
            stream,
            pending: Vec::new(),
            label,
            transcript: transcript.clone(),
            closed: false,
        }
    }

    fn write_down(&self, direction: Direction, text: String) {
        lock(&self.transcript).push(Entry {
            connection: self.label,
            direction,
            text,
        });
    }

    /// Writes down what happened without a line.
    pub fn note(&self, text: &str) {
        self.write_down(Direction::Note, text.to_string());
    }

    /// Sends `lines`, each with a `\n`, in one write.
    pub fn send(&mut self, lines: &[&str]) -> Result<(), String> {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        self.send_bytes(&bytes)
    }

    /// Sends `bytes` exactly as they are, in one write; the transcript shows each line.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let shown = line.strip_suffix(b"\n").unwrap_or(line);
            let mut text = printable(shown);
            if !line.ends_with(b"\n") {
                text.push_str("   (no newline yet)");
            }
            self.write_down(Direction::Sent, text);
        }
        self.stream
            .write_all(bytes)
            .map_err(|error| format!("could not send: {error} (the other side closed?)"))
    }

    /// The next line, waiting until `deadline` at most.
    pub fn read_line(&mut self, deadline: Instant) -> Got {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = &line[..end];
                self.write_down(Direction::Received, printable(line));
                return Got::Line(String::from_utf8_lossy(line).into_owned());
            }
            if self.closed {
                return Got::Closed;
            }
            if self.pending.len() >= MAX_LINE {
                // A line past the limit: shown cut, and taken as what it is, a broken line.
                let line: Vec<u8> = std::mem::take(&mut self.pending);
                self.write_down(Direction::Received, printable(&line));
                return Got::Line(String::from_utf8_lossy(&line).into_owned());
            }
            let now = Instant::now();
            if now >= deadline {
                return Got::Silent;
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => self.close_seen("(the connection was closed)"),
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => self.close_seen(&format!("(the connection broke: {error})")),
            }
        }
    }

    fn close_seen(&mut self, why: &str) {
        self.closed = true;
        if !self.pending.is_empty() {
            let half = std::mem::take(&mut self.pending);
            self.note(&format!("(closed after half a line: {})", printable(&half)));
        } else {
            self.note(why);
        }
    }

    /// Closes our sending side: the other side reads end-of-file.
    pub fn shut_write(&self) {
        self.note("(checkcall closed its sending side)");
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// The meaning of a line: the crate's one parser, after dropping a `\r` before the newline.
pub fn parse(line: &str) -> Result<Message, protocol::ProtocolError> {
    protocol::parse(line.strip_suffix('\r').unwrap_or(line))
}

/// A line as a student can read it in a report: control characters and invisible ones spelled
/// out (`\r`, `\x01`, `\u{202e}`), long lines cut in the middle with their length.
pub fn printable(bytes: &[u8]) -> String {
    const SHOWN: usize = 120;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let cut = chars.len() > SHOWN;
    for (index, &c) in chars.iter().enumerate() {
        if cut && index == SHOWN - 20 {
            out.push_str(&format!("... ({} bytes in all) ...", bytes.len()));
        }
        if cut && index >= SHOWN - 20 && index < chars.len() - 20 {
            continue;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            '\u{FFFD}' => out.push_str("\\(not UTF-8)"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if protocol::check_text(&c.to_string()).is_err() => {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_spells_out_what_a_terminal_would_hide() {
        assert_eq!(printable(b"RETURN 1 ok\r"), "RETURN 1 ok\\r");
        assert_eq!(printable(b"MSG a\x01b"), "MSG a\\x01b");
        assert_eq!(printable("MSG a\u{202E}b".as_bytes()), "MSG a\\u{202e}b");
        assert_eq!(printable(b"MSG caf\xff"), "MSG caf\\(not UTF-8)");
        let long = printable(&[b'x'; 5000]);
        assert!(
            long.contains("(5000 bytes in all)") && long.len() < 200,
            "{long}"
        );
    }

    #[test]
    fn parse_drops_the_cr_before_the_newline_only() {
        assert_eq!(parse("BYE\r"), Ok(Message::Bye));
        assert!(parse("MSG a\rb").is_err());
    }
}
