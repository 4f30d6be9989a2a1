//! Framing: turning a TCP byte stream into lines, and lines into bytes, with bounded memory.
//!
//! TCP delivers bytes, not messages. Whatever the sender wrote in one `write`, the receiver may get
//! in pieces or glued to the next write. This layer restores the messages: a [`LineReader`] collects
//! bytes up to a `\n` and hands back one parsed [`Message`] per line; a [`LineSender`] puts one whole
//! line on the wire with a single `write`. The server reads with [`LineReader`] and writes through
//! its outboxes (`src/server/outbox.rs`, which never wait); the client uses both. Neither type knows
//! anything about callbacks or upcalls.
//!
//! The reader is *bounded*: a line longer than its limit is not collected but skipped up to the next
//! newline, and reported as [`ProtocolError::LineTooLong`]. A client that sends 100 MiB without a
//! newline therefore costs the server at most one buffer and one line's worth of memory, not 100 MiB.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Instant;

use crate::error::Error;
use crate::protocol::{self, Message, ProtocolError};

/// Size of a reader's buffer. Most `upcall/1` lines are a few dozen bytes; a longer one simply
/// takes more than one `read`. A small buffer matters when a server holds ten thousand connections:
/// each has one, and it is allocated for as long as the connection lives.
pub const READ_BUFFER_SIZE: usize = 1024;

/// One line read by [`LineReader::read_line_or_empty`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Message(Message),
    /// `\n` or `\r\n` alone: allowed, and meaningless.
    Empty,
}

/// Reads `upcall/1` lines from a byte stream, at most `max_line` bytes each (newline included).
pub struct LineReader<R> {
    input: BufReader<R>,
    max_line: usize,
    /// The line being collected. It survives a read timeout (the client's `--no-reader` mode reads
    /// with one), so a line that arrives in two pieces is never lost in the middle.
    line: Vec<u8>,
    /// `line` holds a complete line that was handed out: start a new one on the next call.
    complete: bool,
    /// The line being read grew past the limit: skip bytes up to its newline, store none of them.
    skipping: bool,
    /// When the first byte of the line being collected arrived; `None` between lines. The server
    /// closes a connection that leaves a line unfinished for too long.
    started: Option<Instant>,
}

impl<R: Read> LineReader<R> {
    pub fn new(input: R, max_line: usize) -> LineReader<R> {
        LineReader {
            input: BufReader::with_capacity(READ_BUFFER_SIZE, input),
            max_line,
            line: Vec::new(),
            complete: false,
            skipping: false,
            started: None,
        }
    }

    /// The stream being read, to change how it reads (the server's `SharedSocket`).
    pub fn source(&mut self) -> &mut R {
        self.input.get_mut()
    }

    /// Since when a line has been arriving without its newline; `None` if no line is half-read.
    pub fn partial_line_since(&self) -> Option<Instant> {
        self.started
    }

    /// The next message, or `Ok(None)` when the other side has closed the connection cleanly.
    ///
    /// Empty lines are skipped. A line that is too long, not UTF-8 or not valid `upcall/1` comes
    /// back as `Err(Error::Protocol(..))`: the line is consumed and the stream is still usable, so
    /// the caller answers `ERR` and reads on. `Err(Error::Io(..))` means the connection is gone.
    pub fn read_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            match self.read_line_or_empty()? {
                None => return Ok(None),
                Some(Line::Message(message)) => return Ok(Some(message)),
                Some(Line::Empty) => {}
            }
        }
    }

    /// Like [`LineReader::read_message`], but an empty line comes back as [`Line::Empty`]
    /// instead of being skipped: the server counts empty lines against a client's rate, since a
    /// flood of them costs it as much as a flood of messages.
    pub fn read_line_or_empty(&mut self) -> Result<Option<Line>, Error> {
        let Some(line) = self.read_line()? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(Line::Empty));
        }
        Ok(Some(Line::Message(protocol::parse(line)?)))
    }

    /// The next line without its `\n` (and without a `\r` right before it).
    fn read_line(&mut self) -> Result<Option<&str>, Error> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        loop {
            let available = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Error::Io(error)),
            };
            if available.is_empty() {
                // End of stream. Half a line followed by a close is a broken message, not a
                // message: say so instead of acting on it.
                return if self.line.is_empty() && !self.skipping {
                    Ok(None)
                } else {
                    Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a line",
                    )))
                };
            }
            let newline = available.iter().position(|&byte| byte == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            // `max_line` counts the newline, so the content may be one byte shorter.
            if !self.skipping && self.line.len() + chunk.len() < self.max_line {
                self.line.extend_from_slice(chunk);
            } else {
                // Too long: drop what we have and keep dropping until the newline, so the next
                // call starts at the beginning of the next line instead of in the middle of this.
                self.skipping = true;
                self.line.clear();
            }
            // A line that does not end in this read has begun arriving: note when.
            if self.started.is_none() && newline.is_none() && !chunk.is_empty() {
                self.started = Some(Instant::now());
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.input.consume(used);
            if newline.is_some() {
                break;
            }
        }
        self.complete = true;
        self.started = None;
        if self.skipping {
            self.skipping = false;
            return Err(ProtocolError::LineTooLong.into());
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        match std::str::from_utf8(&self.line) {
            Ok(line) => Ok(Some(line)),
            Err(_) => Err(ProtocolError::InvalidUtf8.into()),
        }
    }
}

/// Writes `upcall/1` messages, one whole line per `write_all`.
///
/// One write per line matters twice. With `TCP_NODELAY` on, each write leaves as its own segment at
/// once, so a line is never held back waiting for the next one (Nagle) and shows up in Wireshark as
/// one packet. And since a line is written in one call, a lock around the sender (the client's two
/// threads share one) is enough to keep two threads' lines from interleaving. (Named apart from
/// `std::io::LineWriter`, a buffer that flushes at each newline.)
pub struct LineSender<W> {
    output: W,
    max_line: usize,
}

impl<W: Write> LineSender<W> {
    pub fn new(output: W, max_line: usize) -> LineSender<W> {
        LineSender { output, max_line }
    }

    /// Encodes and sends one message. A message that would make a line longer than `max_line` is
    /// refused with [`ProtocolError::LineTooLong`] before anything is written: we never send what
    /// the other side would have to reject.
    pub fn send(&mut self, message: &Message) -> Result<(), Error> {
        let line = message.encode()?;
        if line.len() > self.max_line {
            return Err(ProtocolError::LineTooLong.into());
        }
        self.output.write_all(line.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8], max_line: usize) -> LineReader<&[u8]> {
        LineReader::new(bytes, max_line)
    }

    fn protocol_error(result: Result<Option<Message>, Error>) -> ProtocolError {
        match result {
            Err(Error::Protocol(error)) => error,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn two_messages_in_one_read_stay_two_messages() {
        let mut lines = reader(b"MSG haii\nMSG halo\n", 4096);
        assert_eq!(
            lines.read_message().unwrap(),
            Some(Message::Msg {
                text: "haii".into()
            })
        );
        assert_eq!(
            lines.read_message().unwrap(),
            Some(Message::Msg {
                text: "halo".into()
            })
        );
        assert_eq!(lines.read_message().unwrap(), None);
    }

    #[test]
    fn crlf_and_empty_lines_are_accepted() {
        let mut lines = reader(b"\r\n\nmsg haii\r\nBYE\r\n", 4096);
        assert_eq!(
            lines.read_message().unwrap(),
            Some(Message::Msg {
                text: "haii".into()
            })
        );
        assert_eq!(lines.read_message().unwrap(), Some(Message::Bye));
    }

    #[test]
    fn a_line_longer_than_a_read_buffer_is_collected() {
        let text = "x".repeat(3000);
        let wire = format!("MSG {text}\n");
        let mut lines = reader(wire.as_bytes(), 4096);
        assert_eq!(lines.read_message().unwrap(), Some(Message::Msg { text }));
    }

    #[test]
    fn the_limit_counts_the_newline() {
        // "MSG " + 11 bytes + "\n" = 16 bytes: exactly at a limit of 16, one over at 15.
        let wire = b"MSG 0123456789a\nBYE\n";
        assert!(matches!(reader(wire, 16).read_message(), Ok(Some(_))));
        let mut lines = reader(wire, 15);
        assert_eq!(
            protocol_error(lines.read_message()),
            ProtocolError::LineTooLong
        );
        // The reader skipped to the next newline: the next line is intact.
        assert_eq!(lines.read_message().unwrap(), Some(Message::Bye));
    }

    #[test]
    fn an_overlong_line_is_skipped_without_being_stored() {
        let mut wire = vec![b'a'; 1_000_000];
        wire.extend_from_slice(b"\nBYE\n");
        let mut lines = reader(&wire, 4096);
        assert_eq!(
            protocol_error(lines.read_message()),
            ProtocolError::LineTooLong
        );
        assert!(
            lines.line.capacity() <= 4096,
            "buffer grew to {}",
            lines.line.capacity()
        );
        assert_eq!(lines.read_message().unwrap(), Some(Message::Bye));
    }

    #[test]
    fn invalid_utf8_is_reported_and_the_stream_goes_on() {
        let mut lines = reader(b"MSG \xff\xfe\nBYE\n", 4096);
        assert_eq!(
            protocol_error(lines.read_message()),
            ProtocolError::InvalidUtf8
        );
        assert_eq!(lines.read_message().unwrap(), Some(Message::Bye));
    }

    #[test]
    fn half_a_line_then_close_is_an_error_not_a_message() {
        let result = reader(b"MSG hai", 4096).read_message();
        assert!(
            matches!(&result, Err(Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{result:?}"
        );
    }

    /// A reader that gives out its bytes in the pieces it was given, with a timeout in between.
    struct Trickle(Vec<&'static [u8]>);

    impl Read for Trickle {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            if piece.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // Pieces in these tests are shorter than the reader's buffer.
            buffer[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    #[test]
    fn a_read_timeout_in_the_middle_of_a_line_loses_nothing() {
        let mut lines = LineReader::new(Trickle(vec![b"MSG ha", b"", b"ii\n"]), 4096);
        let timeout = lines.read_message();
        assert!(matches!(&timeout, Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock));
        assert_eq!(
            lines.read_message().unwrap(),
            Some(Message::Msg {
                text: "haii".into()
            })
        );
    }

    #[test]
    fn the_writer_sends_one_line_and_refuses_an_overlong_one() {
        let mut wire = Vec::new();
        let mut writer = LineSender::new(&mut wire, 16);
        writer
            .send(&Message::Msg {
                text: "haii".into(),
            })
            .unwrap();
        let too_long = Message::Msg {
            text: "x".repeat(20),
        };
        assert!(matches!(
            writer.send(&too_long),
            Err(Error::Protocol(ProtocolError::LineTooLong))
        ));
        assert_eq!(wire, b"MSG haii\n");
    }
}
