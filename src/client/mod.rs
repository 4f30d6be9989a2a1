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
//! This file is the terminal side: the keyboard loop, the prompts, and how a session ends (the
//! program turns that into its exit status). `session.rs` is the protocol side: connecting and
//! registering, the reader thread, sending a message and waiting for the upcall it causes. Beside
//! them: `screen.rs` (the terminal, printed by one thread), `mailbox.rs` (news from the reader
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

use std::io::{BufRead, IsTerminal};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod connect;
mod mailbox;
mod no_reader;
mod screen;
mod session;
mod system;

pub use connect::{connect, with_default_port};
pub use screen::Screen;
pub use system::{end_of_input_key, in_lab_container, in_words, Place};

use connect::Incoming;
use mailbox::Heard;
use no_reader::without_reader_thread;
use session::{
    no_upcall, read_upcalls, send_message, start, stopped_reading, wait_for_upcall, Sent, Session,
};
use system::is_end_of_input_key;

use crate::framing::LineReader;
use crate::lock;
use crate::protocol::Message;

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

/// Connects to the server, names an unreachable one clearly, and runs the session until the user
/// says `bye` (or input ends), or the connection is lost. `Err` is why it could not start, in one
/// sentence; the program turns each ending into its exit status.
///
/// `lost` is what the reader thread does when the connection is lost while the main thread waits
/// for the keyboard (which nothing can interrupt): the program ends itself there, with the exit
/// status it chooses. The library never ends the process.
pub fn run(config: &ClientConfig, keyboard: impl BufRead, lost: fn() -> !) -> Result<Link, String> {
    let (session, reader) = start(config)?;
    let session = Arc::new(session);
    let ending = if config.reader_thread {
        with_reader_thread(&session, reader, keyboard, lost)
    } else {
        without_reader_thread(&session, reader, keyboard)
    };
    session.screen.flush();
    Ok(ending)
}

/// The normal client: a reader thread answers upcalls at any time, the main thread reads keys.
fn with_reader_thread(
    session: &Arc<Session>,
    mut reader: LineReader<Incoming>,
    keyboard: impl BufRead,
    lost: fn() -> !,
) -> Link {
    // The reader thread may wait for the server as long as it likes.
    *lock(&session.read_deadline) = None;
    if let Err(error) = session.socket.set_read_timeout(None) {
        session
            .screen
            .line(&format!("Server connection failed: {}", in_words(&error)));
        return Link::Lost;
    }
    let reader_session = Arc::clone(session);
    thread::spawn(move || read_upcalls(&reader_session, &mut reader, lost));

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
    // At a terminal, say once how to leave, with this system's key. (A script's output, as in
    // the README's samples, stays the old lab's transcript.)
    if std::io::stdin().is_terminal() {
        session.screen.line(&format!(
            "Type a message and press Enter; `bye` or {} ends the session.",
            end_of_input_key()
        ));
    }
    session.screen.prompt(prompt);
    let mut keyboard = keyboard;
    loop {
        let line = match typed_line(&mut keyboard) {
            Typed::Line(line) => line,
            Typed::NotText => {
                session.screen.prompt_answered();
                session.screen.line(&not_text());
                session.screen.prompt(prompt);
                continue;
            }
            Typed::End => {
                session.screen.prompt_answered();
                break;
            }
        };
        session.screen.prompt_answered();
        if line.trim().eq_ignore_ascii_case("bye") {
            typed_bye = true;
            break;
        }
        if is_end_of_input_key(&line) {
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

/// One line from the keyboard.
enum Typed {
    /// A line of text, without its line ending.
    Line(String),
    /// A line that is not UTF-8 (another encoding): it was read and is skipped.
    NotText,
    /// The end of input (or a keyboard that cannot be read any more).
    End,
}

/// Reads one line as bytes, so that a line in another encoding is one line to skip, not the end
/// of the session (`lines()` would stop at it for good).
fn typed_line(keyboard: &mut impl BufRead) -> Typed {
    let mut bytes = Vec::new();
    match keyboard.read_until(b'\n', &mut bytes) {
        Ok(0) | Err(_) => return Typed::End,
        Ok(_) => {}
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    match String::from_utf8(bytes) {
        Ok(line) => Typed::Line(line),
        Err(_) => Typed::NotText,
    }
}

/// What the user is told about a line that is not UTF-8, with the fix for their system.
fn not_text() -> String {
    let fix = if cfg!(windows) {
        "the console sends its own code page: run `chcp 65001` first"
    } else {
        "set your terminal or script to UTF-8"
    };
    format!("Cannot send that line: it is not UTF-8 text ({fix}). Nothing was sent.")
}

/// Whether the connection is still there after a step of the session, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Still connected (or, at the end, the user left with the connection intact).
    Up,
    /// The server closed the connection, or stopped reading.
    Lost,
}

fn connection_lost(session: &Session) -> Link {
    session.screen.last_line("Server closed the connection.");
    Link::Lost
}
