//! The terminal side of the client, the same with or without a reader thread: the prompts, the
//! keyboard's lines (each sent as a `MSG`), and how typing ends (`bye`, or the end of input).

use std::io::{BufRead, IsTerminal};
use std::sync::atomic::Ordering;

use super::config::FAREWELL;
use super::session::{send_message, stopped_reading, Link, Sent, Session};
use super::system::{end_of_input_key, is_end_of_input_key};
use crate::protocol::Message;

/// The keyboard side, the same with or without a reader thread: show the prompt, read a line,
/// send it as `MSG` and let `wait_for_upcall` wait for the upcall it causes; until `bye` or the end
/// of input, which send `BYE`.
pub(super) fn keyboard_loop(
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

/// The server is gone: the session's last line.
fn connection_lost(session: &Session) -> Link {
    session.screen.last_line("Server closed the connection.");
    Link::Lost
}
