//! The protocol side of the client: the session both threads share, connecting and registering,
//! the reader thread that answers upcalls, sending a message and waiting for the upcall it causes.
//! It prints only through the [`Screen`]; the keyboard and the prompts are the terminal side's, in
//! `keyboard.rs`.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{ClientConfig, WAIT};
use super::connect::{connect, with_default_port, Incoming};
use super::mailbox::{Heard, Mailbox};
use super::screen::Screen;
use super::system::in_words;
use crate::callbacks::{self, CALLBACKS};
use crate::error::Error;
use crate::framing::{LineReader, LineSender};
use crate::lock;
use crate::log::{seconds, thousands};
use crate::protocol::{self, Message, ProtocolError, ON_EVENT, SERVER_VERBS};

/// Whether the connection is still there after a step of the session, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Still connected (or, at the end, the user left with the connection intact).
    Up,
    /// The server closed the connection, or stopped reading.
    Lost,
}

/// What both threads share.
pub(super) struct Session {
    /// Lock: guards the order of bytes on the socket: the main thread sends `MSG` and `BYE`, the
    /// reader thread sends `RETURN` and `FAIL`, and each line must leave whole. Held for one write.
    pub(super) writer: Mutex<LineSender<TcpStream>>,
    /// Another handle to the socket, for its options. Socket options need no lock.
    pub(super) socket: TcpStream,
    /// Lock: guards when the reads of the socket give up (see [`Incoming`]); `None`: never.
    /// Held only to set it, never across a read.
    pub(super) read_deadline: Arc<Mutex<Option<Instant>>>,
    pub(super) screen: Screen,
    pub(super) mailbox: Mailbox,
    pub(super) max_line: usize,
    /// The user said `bye`: from now on the server closing the connection is expected, not news.
    pub(super) leaving: AtomicBool,
}

/// Connect, read `WELCOME`, register every callback. Each step has its own deadline of [`WAIT`]
/// however slowly the server's bytes trickle in, so starting ends, one way or the other, within
/// about three times [`WAIT`] (and `bye` or the end of input, read after it, end the session).
pub(super) fn start(config: &ClientConfig) -> Result<(Session, LineReader<Incoming>), String> {
    let server = with_default_port(&config.server);
    let stream = connect(&server)?;
    let lost = |error: io::Error| format!("lost the connection to {server}: {}", in_words(&error));
    // See the server's `admit` on TCP_NODELAY: the same reasoning holds for RETURN lines.
    stream.set_nodelay(true).map_err(lost)?;
    // A server that stops reading fills the socket's buffers; then a write gives up after this
    // long instead of hanging the client for ever.
    stream.set_write_timeout(Some(WAIT)).map_err(lost)?;
    let (incoming, read_deadline) = Incoming::new(stream.try_clone().map_err(lost)?);
    *lock(&read_deadline) = Some(Instant::now() + WAIT);
    let mut reader = LineReader::new(incoming, config.max_line);
    let client_id = match reader.read_message() {
        Ok(Some(Message::Welcome { client_id })) => client_id,
        Ok(Some(Message::Err { reason })) => return Err(format!("the server said: {reason}")),
        Ok(Some(other)) => {
            return Err(format!(
                "{server} does not speak upcall/1: it opened with {} instead of WELCOME",
                other.verb()
            ))
        }
        Ok(None) => {
            return Err(format!(
                "{server} closed the connection before saying WELCOME"
            ))
        }
        Err(Error::Protocol(error)) => {
            return Err(format!("{server} does not speak upcall/1 ({error})"))
        }
        Err(error) if error.is_timeout() => {
            return Err(format!(
                "{server} did not say WELCOME within {}: is it an upcall server? Check the \
                 address and port.",
                seconds(WAIT)
            ))
        }
        Err(Error::Io(error)) => {
            return Err(format!(
                "{server} did not say WELCOME: {}",
                in_words(&error)
            ))
        }
    };
    let session = Session {
        writer: Mutex::new(LineSender::new(
            stream.try_clone().map_err(lost)?,
            config.max_line,
        )),
        socket: stream,
        read_deadline,
        screen: Screen::new(),
        mailbox: Mailbox::default(),
        max_line: config.max_line,
        leaving: AtomicBool::new(false),
    };
    session
        .screen
        .line(&format!("Connected to {server} as {client_id}."));
    // One callback at a time, each acknowledged before the next: the client knows the server
    // accepted it, and the conversation reads REGISTER, REGISTERED, REGISTER, REGISTERED in
    // Wireshark, the same in every capture.
    for (name, _) in CALLBACKS {
        let callback = name.to_string();
        session
            .send(&Message::Register {
                callback: callback.clone(),
            })
            .map_err(|error| format!("lost the connection to {server}: {error}"))?;
        let acknowledged = read_until(&session, &mut reader, WAIT, |heard| match heard {
            Heard::Registered(registered) => *registered == callback,
            Heard::ServerError | Heard::Closed => true,
            Heard::OnEvent(_) => false,
        });
        match acknowledged {
            Waited::Heard(Heard::Registered(_)) => {}
            Waited::Heard(_) => return Err(format!("{server} refused to register {callback}")),
            Waited::TimedOut => {
                return Err(format!(
                    "{server} did not acknowledge REGISTER {callback} within {}",
                    seconds(WAIT)
                ))
            }
            Waited::Lost => return Err(format!("{server} closed the connection")),
        }
    }
    Ok((session, reader))
}

/// The reader thread: every line from the server, as it comes, until the connection closes.
pub(super) fn read_upcalls(session: &Session, reader: &mut LineReader<Incoming>, lost: fn() -> !) {
    loop {
        match reader.read_message() {
            Ok(Some(message)) => match session.handle(message) {
                Ok(Some(news)) => session.mailbox.post(news),
                Ok(None) => {}
                Err(error) if error.is_timeout() && !session.leaving.load(Ordering::SeqCst) => {
                    session.screen.last_line(&stopped_reading());
                    lost();
                }
                Err(_) => break,
            },
            Err(Error::Protocol(error)) => session.ignore_bad_line(error),
            Ok(None) | Err(Error::Io(_)) => break,
        }
    }
    if session.leaving.load(Ordering::SeqCst) {
        session.mailbox.post(Heard::Closed);
    } else {
        // The main thread is blocked reading the keyboard and cannot be interrupted: waiting for
        // the user to press Enter before saying the server is gone would be worse. So the news
        // and the end happen here, by the program's own hand (`lost`).
        session.screen.last_line("Server closed the connection.");
        lost();
    }
}

/// The outcome of sending one typed line.
pub(super) enum Sent {
    /// Sent; the `on_event` text the server will call back with.
    Yes(String),
    /// Not sent: the line cannot be a `MSG` (too long, control characters). The user was told.
    Refused,
    ConnectionLost,
    /// The line did not go out within [`WAIT`]: the server is not reading.
    ServerStoppedReading,
}

/// What the user is told when the server has not taken a line for [`WAIT`].
pub(super) fn stopped_reading() -> String {
    format!(
        "The server stopped reading: nothing could be sent for {}. Giving up.",
        seconds(WAIT)
    )
}

pub(super) fn send_message(session: &Session, text: &str) -> Sent {
    match session.send(&Message::Msg {
        text: text.to_string(),
    }) {
        Ok(()) => Sent::Yes(protocol::processing(text)),
        Err(Error::Protocol(error)) => {
            let limit = match error {
                ProtocolError::LineTooLong => {
                    format!(" (at most {} bytes a line)", session.max_line)
                }
                _ => String::new(),
            };
            session
                .screen
                .line(&format!("Cannot send that message: {error}{limit}."));
            Sent::Refused
        }
        Err(error) if error.is_timeout() => Sent::ServerStoppedReading,
        Err(Error::Io(_)) => Sent::ConnectionLost,
    }
}

/// Waits for the `on_event` upcall that our message causes, so that its line is printed before the
/// next prompt.
pub(super) fn wait_for_upcall(session: &Session, expected: &str) -> Link {
    let deadline = Instant::now() + WAIT;
    loop {
        match session.mailbox.wait(deadline) {
            Some(Heard::OnEvent(text)) if text == expected => return Link::Up,
            // Another client's message or a broadcast (already printed), or news from before
            // this message was sent: not the answer we wait for.
            Some(Heard::OnEvent(_)) => {}
            Some(Heard::ServerError) => return Link::Up,
            Some(Heard::Registered(_)) => {}
            Some(Heard::Closed) => return Link::Lost,
            None => {
                session.screen.line(&no_upcall());
                return Link::Up;
            }
        }
    }
}

/// What the user is told when the upcall a message should cause does not come.
pub(super) fn no_upcall() -> String {
    format!("No upcall from the server within {}.", seconds(WAIT))
}

/// An upcall this client ran and what it answered, in the words of the server's log:
/// `Upcall 3 from server: uppercase("haii") -> HAII`. A long argument or value is cut, so that
/// one upcall stays one line a student can read.
fn ran_here(id: u64, callback: &str, argument: &str, answer: &Message) -> String {
    let call = if argument.is_empty() {
        format!("{callback}()")
    } else {
        let (shown, cut) = shortened(argument);
        format!("{callback}({shown:?}{cut})")
    };
    let result = match answer {
        Message::Return { value, .. } if value.is_empty() => "(an empty value)".to_string(),
        Message::Return { value, .. } => {
            let (shown, cut) = shortened(value);
            format!("{shown}{cut}")
        }
        Message::Fail { reason, .. } => format!("failed: {reason}"),
        other => other.verb().to_string(),
    };
    format!("Upcall {id} from server: {call} -> {result}")
}

/// Characters of an argument or a value shown on the upcall's line.
const SHOWN: usize = 60;

/// The first [`SHOWN`] characters of `text`, and what to add when it had more (`..., 4,000
/// characters in all`).
fn shortened(text: &str) -> (&str, String) {
    match text.char_indices().nth(SHOWN) {
        None => (text, String::new()),
        Some((end, _)) => {
            let count = thousands(text.chars().count() as u64);
            (&text[..end], format!("..., {count} characters in all"))
        }
    }
}

impl Session {
    pub(super) fn send(&self, message: &Message) -> Result<(), Error> {
        lock(&self.writer).send(message)
    }

    /// One line from the server. Runs upcalls; returns what the main thread may be waiting for, or
    /// the error of an answer that could not be sent.
    pub(super) fn handle(&self, message: Message) -> Result<Option<Heard>, Error> {
        match message {
            Message::Upcall {
                id,
                callback,
                argument,
            } => {
                let answer = match callbacks::find(&callback) {
                    // What a callback shows is printed if the terminal keeps up, and counted and
                    // skipped if upcalls come faster than it shows them; it is answered either way.
                    Some(function) => match function(&argument, &|text| self.screen.news(text)) {
                        Ok(value) => Message::Return { id, value },
                        Err(reason) => Message::Fail { id, reason },
                    },
                    None => Message::Fail {
                        id,
                        reason: format!("unknown callback {callback}"),
                    },
                };
                let answer = match self.send(&answer) {
                    Err(Error::Protocol(error)) => {
                        // The result cannot go on the wire (too long, say): the server still
                        // gets an answer, so it need not wait out its timeout.
                        let fail = Message::Fail {
                            id,
                            reason: format!("the result cannot be sent: {error}"),
                        };
                        self.send(&fail)?;
                        fail
                    }
                    sent => sent.map(|()| answer)?,
                };
                // `on_event` shows itself (the old lab's line); every other upcall is shown here,
                // as the server's log shows it, with what went back: the function ran *here*.
                if callback != ON_EVENT {
                    self.screen
                        .news(&ran_here(id, &callback, &argument, &answer));
                }
                Ok((callback == ON_EVENT).then_some(Heard::OnEvent(argument)))
            }
            Message::Err { reason } => {
                self.screen.news(&format!("Server error: {reason}"));
                Ok(Some(Heard::ServerError))
            }
            Message::Bye => {
                if !self.leaving.load(Ordering::SeqCst) {
                    self.screen
                        .line("Server said BYE: it is closing the connection.");
                }
                Ok(None)
            }
            Message::Registered { callback } => Ok(Some(Heard::Registered(callback))),
            // A server that breaks the protocol is reported, not obeyed; the client goes on.
            other => {
                self.screen.news(&format!(
                    "Ignoring {} from the server: it is not a server's line.",
                    other.verb()
                ));
                Ok(None)
            }
        }
    }

    pub(super) fn ignore_bad_line(&self, error: ProtocolError) {
        let reason = match error {
            ProtocolError::UnknownVerb => format!("{error} (expected {SERVER_VERBS})"),
            _ => error.to_string(),
        };
        self.screen
            .news(&format!("Ignoring a line from the server: {reason}."));
    }
}

/// What [`read_until`] ended with.
pub(super) enum Waited {
    /// What we waited for (or the connection closing while we were leaving anyway).
    Heard(Heard),
    /// Nothing of the kind within [`WAIT`].
    TimedOut,
    /// The server closed the connection.
    Lost,
}

/// Reads and handles lines (answering upcalls on the way) until `done` says that what was heard
/// is what we wait for, or `patience` passes. Used whenever no reader thread reads the socket:
/// in this mode, and in every client while it registers its callbacks, before the reader starts.
pub(super) fn read_until(
    session: &Session,
    reader: &mut LineReader<Incoming>,
    patience: Duration,
    done: impl Fn(&Heard) -> bool,
) -> Waited {
    let deadline = Instant::now() + patience;
    // Every read of the socket gives up at the deadline, however the bytes trickle.
    *lock(&session.read_deadline) = Some(deadline);
    loop {
        if Instant::now() >= deadline {
            return Waited::TimedOut;
        }
        let heard = match reader.read_message() {
            // An answer that cannot be sent ends the session like a close.
            Ok(Some(message)) => session.handle(message).unwrap_or(Some(Heard::Closed)),
            Err(Error::Protocol(error)) => {
                session.ignore_bad_line(error);
                None
            }
            Err(error) if error.is_timeout() => continue,
            Ok(None) | Err(Error::Io(_)) => Some(Heard::Closed),
        };
        match heard {
            Some(Heard::Closed) if !session.leaving.load(Ordering::SeqCst) => return Waited::Lost,
            Some(heard) if done(&heard) => return Waited::Heard(heard),
            _ => {}
        }
    }
}
