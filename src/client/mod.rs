//! The upcall client: it registers functions with the server, sends the user's messages, and runs
//! whatever the server calls back.
//!
//! # Two threads, and why
//!
//! A client has two sources of input that it cannot predict: the keyboard (the user may type at
//! any moment) and the socket (the server may call at any moment: that is what an upcall *is*).
//! Blocking `read` can wait on one of them only. So the client has two threads:
//!
//! - the **main thread** reads the keyboard, sends `MSG` lines, and waits (with a timeout) for the
//!   upcall its message causes, so that the output reads in the old lab's order;
//! - the **reader thread** reads the socket, runs every `UPCALL` it receives through the
//!   [`crate::callbacks`] table, and answers with `RETURN` or `FAIL` at once, even while
//!   the user sits at the prompt.
//!
//! The old Python client had only the first thread: it read the socket right after each message,
//! and not at all while waiting at the prompt. `clientcall --no-reader` behaves like that on purpose.
//! Try it with the server console's `call`: the upcall times out, because nobody reads it until
//! the user presses Enter. That is the reader thread's whole reason to exist.
//!
//! # Shared between the two threads
//!
//! The socket's write half (both threads send lines), the [`Screen`] (both print, through one
//! printing thread), and a flag that says the user is leaving. News from the reader to the main
//! thread goes through a small mailbox that keeps only the newest.
//!
//! # The files
//!
//! This file is the session: connecting, registering, the keyboard loop and the reader thread.
//! Beside it: `screen.rs` (the terminal, printed by one thread), `mailbox.rs` (news from the reader
//! thread for the keyboard thread), `no_reader.rs` (the old lab's way, `--no-reader`) and
//! `connect.rs` (reaching the server, and saying clearly why not).
//!
//! # Bounded, whatever the other side does
//!
//! Nothing the server or a classmate sends can make the client grow or hang: upcall lines wait for
//! the terminal in a bounded queue (the [`Screen`]: past it they are counted, and still answered),
//! the mailbox keeps at most a few dozen items, a line is at most `--max-line` bytes, a write that
//! the server does not take within [`WAIT`] ends the session, and leaving waits at most
//! [`FAREWELL`] for the server.

use std::io::{self, BufRead};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod connect;
mod mailbox;
mod no_reader;
mod screen;

pub use connect::{connect, with_default_port};
pub use screen::Screen;

use mailbox::{Heard, Mailbox};
use no_reader::{read_until, without_reader_thread, Waited};

use crate::callbacks::{self, CALLBACKS};
use crate::error::Error;
use crate::framing::{LineReader, LineSender};
use crate::lock;
use crate::log::seconds;
use crate::protocol::{self, Message, ProtocolError, ON_EVENT, SERVER_VERBS};

/// How long the client waits: to connect, for `WELCOME`, for the upcall its message causes, for the
/// server's `BYE`. Five seconds is the server's default upcall timeout too.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a leaving client waits for the server: to take its `BYE`, and to close. A server that
/// does neither cannot keep the program from ending.
pub const FAREWELL: Duration = Duration::from_secs(2);

/// What the client can be told on its command line.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT`, or just `HOST` for port 4141.
    pub server: String,
    /// Run the reader thread (the default), or read the socket only after each message.
    pub reader_thread: bool,
    /// Longest line accepted and sent, newline included.
    pub max_line: usize,
}

/// What both threads share.
struct Session {
    /// Lock: guards the order of bytes on the socket: the main thread sends `MSG` and `BYE`, the
    /// reader thread sends `RETURN` and `FAIL`, and each line must leave whole. Held for one write.
    writer: Mutex<LineSender<TcpStream>>,
    /// Another handle to the socket, to set how long a read may wait. Socket options need no lock.
    socket: TcpStream,
    screen: Screen,
    mailbox: Mailbox,
    max_line: usize,
    /// The user said `bye`: from now on the server closing the connection is expected, not news.
    leaving: AtomicBool,
}

/// Connects to the server, names an unreachable one clearly, and runs the session. The exit code is
/// 0 when the user said `bye` (or input ended), 1 when the connection failed or was lost.
pub fn run(config: &ClientConfig, keyboard: impl BufRead) -> ExitCode {
    match start(config) {
        Ok((session, reader)) => {
            let session = Arc::new(session);
            let ending = if config.reader_thread {
                with_reader_thread(&session, reader, keyboard)
            } else {
                without_reader_thread(&session, reader, keyboard)
            };
            session.screen.flush();
            if ending == Link::Up {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("clientcall: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Connect, read `WELCOME`, register every callback.
fn start(config: &ClientConfig) -> Result<(Session, LineReader<TcpStream>), String> {
    let server = with_default_port(&config.server);
    let stream = connect(&server)?;
    let lost = |error: io::Error| format!("lost the connection to {server}: {error}");
    // See the server's `admit` on TCP_NODELAY: the same reasoning holds for RETURN lines.
    stream.set_nodelay(true).map_err(lost)?;
    stream.set_read_timeout(Some(WAIT)).map_err(lost)?;
    // A server that stops reading fills the socket's buffers; then a write gives up after this
    // long instead of hanging the client for ever.
    stream.set_write_timeout(Some(WAIT)).map_err(lost)?;
    let mut reader = LineReader::new(stream.try_clone().map_err(lost)?, config.max_line);
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
        Err(Error::Io(error)) => {
            return Err(format!(
                "{server} did not say WELCOME within {} ({error})",
                seconds(WAIT)
            ))
        }
    };
    let session = Session {
        writer: Mutex::new(LineSender::new(
            stream.try_clone().map_err(lost)?,
            config.max_line,
        )),
        socket: stream,
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

/// The normal client: a reader thread answers upcalls at any time, the main thread reads keys.
fn with_reader_thread(
    session: &Arc<Session>,
    mut reader: LineReader<TcpStream>,
    keyboard: impl BufRead,
) -> Link {
    // The reader thread may wait for the server as long as it likes.
    if let Err(error) = session.socket.set_read_timeout(None) {
        session
            .screen
            .line(&format!("Server connection failed: {error}"));
        return Link::Lost;
    }
    let reader_session = Arc::clone(session);
    thread::spawn(move || read_upcalls(&reader_session, &mut reader));

    let ending = keyboard_loop(session, keyboard, |expected| {
        wait_for_upcall(session, expected)
    });
    if ending == Link::Up {
        // The reader thread sees the server's BYE and the close; wait for that (bounded).
        let deadline = Instant::now() + FAREWELL;
        while let Some(heard) = session.mailbox.wait(deadline) {
            if let Heard::Closed = heard {
                break;
            }
        }
    }
    ending
}

/// The reader thread: every line from the server, as it comes, until the connection closes.
fn read_upcalls(session: &Session, reader: &mut LineReader<TcpStream>) {
    loop {
        match reader.read_message() {
            Ok(Some(message)) => match session.handle(message) {
                Ok(Some(news)) => session.mailbox.post(news),
                Ok(None) => {}
                Err(error) if error.is_timeout() && !session.leaving.load(Ordering::SeqCst) => {
                    session.screen.last_line(&stopped_reading());
                    std::process::exit(1);
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
        // and the exit happen here.
        session.screen.last_line("Server closed the connection.");
        std::process::exit(1);
    }
}

/// The keyboard side, the same with or without a reader thread: show the prompt, read a line,
/// send it as `MSG` and let `wait_for_upcall` wait for the upcall it causes; until `bye` or the end
/// of input, which send `BYE`.
fn keyboard_loop(
    session: &Session,
    keyboard: impl BufRead,
    mut wait_for_upcall: impl FnMut(&str) -> Link,
) -> Link {
    let mut prompt = "Enter message: ";
    let mut typed_bye = false;
    session.screen.prompt(prompt);
    for line in keyboard.lines() {
        session.screen.prompt_answered();
        let Ok(line) = line else { break };
        if line.trim().eq_ignore_ascii_case("bye") {
            typed_bye = true;
            break;
        }
        // An empty line sends nothing: the prompt simply comes again.
        if !line.is_empty() {
            match send_message(session, &line) {
                Sent::Yes(expected) => {
                    // Wait for the upcall this message causes, so that it prints before the
                    // next prompt, as in the old lab.
                    if wait_for_upcall(&expected) == Link::Lost {
                        return connection_lost(session);
                    }
                    prompt = "Enter another message: ";
                }
                Sent::ConnectionLost => return connection_lost(session),
                Sent::ServerStoppedReading => {
                    session.screen.last_line(&stopped_reading());
                    return Link::Lost;
                }
                Sent::Refused => {}
            }
        }
        session.screen.prompt(prompt);
    }
    session.screen.input_ended(typed_bye);
    session.leaving.store(true, Ordering::SeqCst);
    // Leaving must not hang on a server that stopped reading: BYE gets a short write timeout.
    let _ = session.socket.set_write_timeout(Some(FAREWELL));
    let _ = session.send(&Message::Bye);
    Link::Up
}

/// Whether the connection is still there after a step of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Still connected (or, at the end, the user left with the connection intact).
    Up,
    /// The server closed the connection, or stopped reading.
    Lost,
}

/// The outcome of sending one typed line.
enum Sent {
    /// Sent; the `on_event` text the server will call back with.
    Yes(String),
    /// Not sent: the line cannot be a `MSG` (too long, control characters). The user was told.
    Refused,
    ConnectionLost,
    /// The line did not go out within [`WAIT`]: the server is not reading.
    ServerStoppedReading,
}

/// What the user is told when the server has not taken a line for [`WAIT`].
fn stopped_reading() -> String {
    format!(
        "The server stopped reading: nothing could be sent for {}. Giving up.",
        seconds(WAIT)
    )
}

fn send_message(session: &Session, text: &str) -> Sent {
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
fn wait_for_upcall(session: &Session, expected: &str) -> Link {
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
fn no_upcall() -> String {
    format!("No upcall from the server within {}.", seconds(WAIT))
}

fn connection_lost(session: &Session) -> Link {
    session.screen.last_line("Server closed the connection.");
    Link::Lost
}

impl Session {
    fn send(&self, message: &Message) -> Result<(), Error> {
        lock(&self.writer).send(message)
    }

    /// One line from the server. Runs upcalls; returns what the main thread may be waiting for, or
    /// the error of an answer that could not be sent.
    fn handle(&self, message: Message) -> Result<Option<Heard>, Error> {
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
                match self.send(&answer) {
                    Err(Error::Protocol(error)) => {
                        // The result cannot go on the wire (too long, say): the server still
                        // gets an answer, so it need not wait out its timeout.
                        self.send(&Message::Fail {
                            id,
                            reason: format!("the result cannot be sent: {error}"),
                        })?;
                    }
                    sent => sent?,
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

    fn ignore_bad_line(&self, error: ProtocolError) {
        let reason = match error {
            ProtocolError::UnknownVerb => format!("{error} (expected {SERVER_VERBS})"),
            _ => error.to_string(),
        };
        self.screen
            .news(&format!("Ignoring a line from the server: {reason}."));
    }
}
