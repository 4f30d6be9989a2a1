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
//! This file starts a session and runs it with its two threads, and says how it ended (the program
//! turns that into its exit status). `keyboard.rs` is the terminal side: the keyboard loop and the
//! prompts. `session.rs` is the protocol side: connecting and registering, the reader thread,
//! sending a message and waiting for the upcall it causes. Beside them: `screen.rs` (the terminal,
//! printed by one thread), `mailbox.rs` (news from the reader thread for the keyboard thread),
//! `no_reader.rs` (the old lab's way, `--no-reader`), `connect.rs` (reaching the server, and
//! saying clearly why not) and `config.rs` (the command line's settings, and how long to wait).
//!
//! Each file uses only files below it, so no two use each other (`tests/layers.rs` checks it):
//!
//! ```text
//! mod.rs              run: start, then the two threads (or none, --no-reader)
//!  └ no_reader.rs     the old lab's way
//!     └ keyboard.rs   the terminal side: prompts, typed lines
//!        └ session.rs the protocol side: start, the reader thread, send, wait
//!           ├ connect.rs  reaching the server
//!           └ screen.rs, mailbox.rs, system.rs, config.rs: none uses another client file
//! ```
//!
//! # Bounded, whatever the other side does
//!
//! Nothing the server or a classmate sends can make the client grow or hang: upcall lines wait for
//! the terminal in a bounded queue (the [`Screen`]: past it they are counted, and still answered),
//! the mailbox keeps at most a few dozen items, a line is at most `--max-line` bytes, a write that
//! the server does not take within [`WAIT`] ends the session, and leaving waits at most
//! [`FAREWELL`] for the server.

use std::io::BufRead;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

mod config;
mod connect;
mod keyboard;
mod mailbox;
mod no_reader;
mod screen;
mod session;
mod system;

pub use config::{ClientConfig, FAREWELL, WAIT};
pub use connect::{connect, with_default_port};
pub use screen::Screen;
pub use session::Link;
pub use system::{end_of_input_key, in_lab_container, in_words, Place};

use connect::Incoming;
use keyboard::keyboard_loop;
use mailbox::Heard;
use no_reader::without_reader_thread;
use session::{read_upcalls, start, wait_for_upcall, Session};

use crate::framing::LineReader;
use crate::lock;

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
