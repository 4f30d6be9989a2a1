//! The client without a reader thread (`clientcall --no-reader`), like the old lab's: the socket is
//! read only after the user has sent a message, so upcalls that arrive while the user types wait in
//! the socket, unanswered. Compare it with the normal client in `mod.rs` to see what the reader
//! thread is for.
//!
//! [`read_until`] is also how every client reads while it registers its callbacks, before its
//! reader thread starts.

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::connect::Incoming;
use super::mailbox::Heard;
use super::{keyboard_loop, no_upcall, Link, Session, FAREWELL, WAIT};
use crate::error::Error;
use crate::framing::LineReader;
use crate::lock;

/// The client without a reader thread, like the old lab's: the socket is read only after the user
/// has sent a message. Upcalls that arrive in between wait in the socket, unanswered.
pub(super) fn without_reader_thread(
    session: &Session,
    mut reader: LineReader<Incoming>,
    keyboard: impl BufRead,
) -> Link {
    let ending = keyboard_loop(session, keyboard, |expected| {
        // Now, and only now, the socket is read: upcalls that queued up while the user was
        // typing are answered late, then comes the one this message caused.
        let waited = read_until(session, &mut reader, WAIT, |heard| match heard {
            Heard::OnEvent(text) => text == expected,
            Heard::ServerError | Heard::Closed => true,
            Heard::Registered(_) => false,
        });
        match waited {
            Waited::Heard(_) => Link::Up,
            Waited::TimedOut => {
                session.screen.line(&no_upcall());
                Link::Up
            }
            Waited::Lost => Link::Lost,
        }
    });
    if ending == Link::Up {
        // The server's BYE and its close; a server that never closes is left after FAREWELL.
        read_until(session, &mut reader, FAREWELL, |heard| {
            matches!(heard, Heard::Closed)
        });
    }
    ending
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
