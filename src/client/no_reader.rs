//! The client without a reader thread (`clientcall --no-reader`), like the old lab's: the socket is
//! read only after the user has sent a message, so upcalls that arrive while the user types wait in
//! the socket, unanswered. Compare it with the normal client in `mod.rs` to see what the reader
//! thread is for.
//!
//! It reads with `session.rs`'s `read_until`, which is also how every client reads while it
//! registers its callbacks, before its reader thread starts.

use std::io::BufRead;

use super::config::{FAREWELL, WAIT};
use super::connect::Incoming;
use super::keyboard::keyboard_loop;
use super::mailbox::Heard;
use super::session::{no_upcall, read_until, Link, Session, Waited};
use crate::framing::LineReader;

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
