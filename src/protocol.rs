//! The `upcall/1` wire protocol: what one line means, and how to write one.
//!
//! This module is the dictionary of the upcall story. It turns one line of text into a [`Message`]
//! and a [`Message`] back into a line. It never touches a socket: reading lines off a connection is
//! [`crate::framing`]'s job, deciding what to do with a message is the server's and the client's.
//! Keeping the parser free of I/O means it can be tested on byte literals alone, and the same parser
//! serves the server, the client and the tests that decode the reference captures in `pcaps/`.
//!
//! # Grammar
//!
//! The grammar is ABNF (RFC 5234), and each rule stands above the code that checks it, as in
//! `httparse`: read this module top to bottom, then `protocol/text.rs` for the characters a text may
//! hold, and you have read the whole grammar once. In short:
//!
//! ```text
//! line    = verb [ SP rest ] LF               ; see parse(): the verbs and their fields
//!
//! ; server -> client                          ; client -> server
//! WELCOME    client-id SP "upcall/1"          REGISTER   callback
//! REGISTERED callback                         MSG        [ text ]
//! UPCALL     id SP callback [ SP text ]       RETURN     id [ SP text ]
//! ERR        [ text ]                         FAIL       id [ SP text ]
//! BYE                                         BYE
//!
//! client-id = 1*( %x21-7E )                   ; check_token()
//! callback  = %x61-7A *31( %x61-7A / DIGIT / "_" )   ; check_callback_name()
//! id        = 1*20DIGIT                       ; upcall_id()
//! text      = *( visible / TAB / SP / joined ); check_text(): no control characters, no
//!                                             ; invisible characters that reorder or hide text,
//!                                             ; emoji sequences (ZWJ, flags) welcome
//! ```
//!
//! The last field of every line is free text: it runs to the end of the line and may contain spaces,
//! so `MSG hello there` carries `hello there` without any quoting. An absent text and an empty one are
//! the same thing, and [`Message::encode`] writes neither a trailing space nor an empty field.
//!
//! Why text lines and not a binary format? Because students read this protocol in Wireshark's
//! "Follow TCP Stream" and type it by hand with `nc`. Why a newline at the end of every line? Because
//! TCP is a byte stream, not a message stream: two quick `send`s can arrive as one `recv`, and one
//! long `send` as three. The old Python lab had no framing and printed `Processing haiihalo`. The
//! newline is the frame: a receiver collects bytes until it sees one (see [`crate::framing`]).
//!
//! Why are control characters refused? A NUL, an escape sequence or a stray CR in the middle of a
//! line would garble the server's log, a student's terminal and the Wireshark view, and a LF would
//! split one message into two. Refusing them on both sides, in one place, keeps every line printable.
//! The capture decoder (`tests/capture`) calls this parser, and the Wireshark dissector
//! (`pcaps/upcall.lua`) follows it rule for rule; `tests/tshark.rs` checks that they agree on
//! `tests/data/odd-lines.txt`, a corpus of odd lines.

/// The protocol name and version sent in `WELCOME`.
pub const PROTOCOL_VERSION: &str = "upcall/1";

/// The verbs a client sends: what a server expects, and says so when a line has another verb.
pub const CLIENT_VERBS: &str = "REGISTER, MSG, RETURN, FAIL or BYE";

/// The verbs a server sends: what a client expects.
pub const SERVER_VERBS: &str = "WELCOME, REGISTERED, UPCALL, ERR or BYE";

/// The TCP port of the lab, kept from the old Python scripts.
pub const DEFAULT_PORT: u16 = 4141;

/// Longest accepted line, counting its newline. Long enough for a paragraph of text, short enough
/// that a server with a thousand clients never holds more than a few MiB of half-read lines.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// Longest callback name. Names are identifiers, not data: a short cap keeps them readable in logs.
pub const MAX_CALLBACK_NAME: usize = 32;

/// The callback a `MSG` is answered on: the server calls `on_event` back on the sender and on
/// every other client that registered it.
pub const ON_EVENT: &str = "on_event";

/// The argument of the `on_event` upcall that answers the sender's `MSG <text>`. The server
/// sends it and the client waits for it, so both take it from here.
pub fn processing(text: &str) -> String {
    format!("Upcall event: Processing {text}")
}

/// The argument of the `on_event` upcall that passes `sender`'s `MSG <text>` on to every other
/// client.
pub fn relayed(sender: &str, text: &str) -> String {
    format!("Upcall event: {sender} says {text}")
}

/// The argument of the `on_event` upcall of the console's `broadcast <text>`.
pub fn server_says(text: &str) -> String {
    relayed("server", text)
}

/// One line of `upcall/1`, in either direction.
///
/// Some verbs only make sense one way (`UPCALL` goes from server to client, `RETURN` from client to
/// server); the parser accepts all of them and leaves it to the receiver to say "not from you".
/// That keeps one grammar for the whole protocol, and lets the capture decoder read both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `WELCOME <client-id> upcall/1`: the server greets a new connection and names it.
    Welcome { client_id: String },
    /// `REGISTERED <callback>`: the server acknowledges a registration.
    Registered { callback: String },
    /// `UPCALL <id> <callback> <argument>`: the server calls a function the client registered.
    Upcall {
        id: u64,
        callback: String,
        argument: String,
    },
    /// `ERR <reason>`: the server rejected the last line; the connection stays open.
    Err { reason: String },
    /// `BYE`: "I am closing this connection" (or the answer to the other side's `BYE`).
    Bye,
    /// `REGISTER <callback>`: the client offers a function the server may call back.
    Register { callback: String },
    /// `MSG <text>`: a message from the client.
    Msg { text: String },
    /// `RETURN <id> <value>`: the result of upcall `id`.
    Return { id: u64, value: String },
    /// `FAIL <id> <reason>`: upcall `id` could not be carried out.
    Fail { id: u64, reason: String },
}

mod error;
mod text;
pub use error::ProtocolError;
pub use text::check_text;

impl Message {
    /// The verb of this message as it is sent on the wire.
    pub fn verb(&self) -> &'static str {
        match self {
            Message::Welcome { .. } => "WELCOME",
            Message::Registered { .. } => "REGISTERED",
            Message::Upcall { .. } => "UPCALL",
            Message::Err { .. } => "ERR",
            Message::Bye => "BYE",
            Message::Register { .. } => "REGISTER",
            Message::Msg { .. } => "MSG",
            Message::Return { .. } => "RETURN",
            Message::Fail { .. } => "FAIL",
        }
    }

    /// Writes this message as one line, newline included.
    ///
    /// The encoder holds itself to the same rules as the parser: it refuses a bad callback name or
    /// a control character instead of putting a line on the wire that the other side would reject
    /// (or, worse, a `\n` that would split one message into two). So for every message `m` that
    /// encodes, `parse(encode(m)) == m`; the tests check that round trip.
    ///
    /// ```
    /// use upcall::protocol::{parse, Message, ProtocolError};
    ///
    /// let call = Message::Upcall { id: 1, callback: "uppercase".into(), argument: "haii".into() };
    /// assert_eq!(call.encode().as_deref(), Ok("UPCALL 1 uppercase haii\n"));
    /// assert_eq!(parse("UPCALL 1 uppercase haii"), Ok(call));
    ///
    /// // An empty text is not sent at all: no trailing space.
    /// let hostname = Message::Upcall { id: 2, callback: "hostname".into(), argument: "".into() };
    /// assert_eq!(hostname.encode().as_deref(), Ok("UPCALL 2 hostname\n"));
    ///
    /// // A newline in a text would split one message into two: refused before it is sent.
    /// let two = Message::Msg { text: "one\nMSG two".into() };
    /// let error = two.encode().unwrap_err();
    /// assert_eq!(error, ProtocolError::ControlCharacter { character: '\n', at: 8 });
    /// assert_eq!(error.to_string(), "control character U+000A (line feed) at byte 8");
    /// ```
    pub fn encode(&self) -> Result<String, ProtocolError> {
        use std::fmt::Write as _;
        let verb = self.verb();
        // One allocation for the whole line: the fixed fields (a verb, an id, a name) fit in 64
        // bytes but for a very long client id, and the free text is known. `format!` would grow
        // the string two or three times, and the server encodes a line for every upcall it sends.
        let mut line = String::with_capacity(64 + self.text().len());
        // Writing to a `String` cannot fail: the `fmt::Result`s below are always `Ok`.
        let _ = match self {
            Message::Welcome { client_id } => {
                check_token(client_id)?;
                write!(line, "{verb} {client_id} {PROTOCOL_VERSION}")
            }
            Message::Registered { callback } | Message::Register { callback } => {
                check_callback_name(callback)?;
                write!(line, "{verb} {callback}")
            }
            Message::Upcall { id, callback, .. } => {
                check_callback_name(callback)?;
                write!(line, "{verb} {id} {callback}")
            }
            Message::Err { .. } | Message::Msg { .. } | Message::Bye => write!(line, "{verb}"),
            Message::Return { id, .. } | Message::Fail { id, .. } => write!(line, "{verb} {id}"),
        };
        // The free-text last field, if any: an empty text is not sent at all, not even its space.
        let text = self.text();
        if !text.is_empty() {
            line.push(' ');
            line.push_str(text);
        }
        // The whole line, so that an error gives the character's place in the line, as parse does.
        check_text(&line)?;
        line.push('\n');
        Ok(line)
    }

    /// The free-text last field (`""` for the messages that have none).
    fn text(&self) -> &str {
        match self {
            Message::Upcall { argument: text, .. }
            | Message::Err { reason: text }
            | Message::Msg { text }
            | Message::Return { value: text, .. }
            | Message::Fail { reason: text, .. } => text,
            Message::Welcome { .. }
            | Message::Registered { .. }
            | Message::Register { .. }
            | Message::Bye => "",
        }
    }
}

/// Parses one line, without its `\n` (and without a `\r` before it: the framing layer drops both).
///
/// ```text
/// line      = verb [ SP rest ] LF        ; a CR right before LF is dropped (nc -C, telnet);
///                                        ; an empty line is ignored (the caller skips it)
/// verb      = 1*ALPHA                    ; matched case-insensitively, always sent upper case
/// rest      = the fields of the verb     ; each verb's rule stands beside the code that reads it
/// ```
///
/// The whole line is [`check_text`]ed first, so no field can hide a control character. Every
/// error is a [`ProtocolError`] whose text can go straight back to the sender after `ERR`.
///
/// ```
/// use upcall::protocol::{parse, Message, ProtocolError};
///
/// assert_eq!(parse("RETURN 1 ok"), Ok(Message::Return { id: 1, value: "ok".into() }));
/// assert_eq!(parse("msg selamat pagi"), Ok(Message::Msg { text: "selamat pagi".into() }));
/// assert_eq!(parse("BYE"), Ok(Message::Bye));
///
/// // Errors say what was wrong, and where.
/// let error = parse("RETURN  1 ok").unwrap_err();
/// assert_eq!(error, ProtocolError::EmptyField { after: "RETURN" });
/// assert_eq!(
///     error.to_string(),
///     "empty field: two spaces after RETURN (fields are separated by one space)"
/// );
/// let error = parse("REGISTER").unwrap_err();
/// assert_eq!(error.to_string(), "missing field: REGISTER needs a callback name");
/// let error = parse("MSG gnp.exe\u{202E}").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "invisible format character U+202E (right-to-left override) at byte 12 \
///      (it reorders or hides text)"
/// );
/// ```
pub fn parse(line: &str) -> Result<Message, ProtocolError> {
    check_text(line)?;
    // `VERB` or `VERB<space>REST`: the first space ends the verb, everything after it is the rest.
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, rest),
        None => (line, ""),
    };
    // Verbs are matched case-insensitively, by comparing with each known one rather than making
    // an upper-case copy: this runs for every line.
    let verb = VERBS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(verb))
        .unwrap_or("");
    match verb {
        // ; server -> client
        "WELCOME" => welcome(rest),
        // REGISTERED callback                  ; acknowledges REGISTER
        "REGISTERED" => Ok(Message::Registered {
            callback: callback_name("REGISTERED", rest)?,
        }),
        "UPCALL" => upcall(rest),
        // ERR        [ text ]                  ; the last line was rejected; the connection stays
        "ERR" => Ok(Message::Err {
            reason: rest.to_string(),
        }),
        // ; client -> server
        // REGISTER   callback                  ; "you may call me back on this function"
        "REGISTER" => Ok(Message::Register {
            callback: callback_name("REGISTER", rest)?,
        }),
        // MSG        [ text ]                  ; a message for the server (and the other clients)
        "MSG" => Ok(Message::Msg {
            text: rest.to_string(),
        }),
        // RETURN     id [ SP text ]            ; the result of upcall id
        "RETURN" => {
            let (id, value) = upcall_id("RETURN", rest)?;
            Ok(Message::Return {
                id,
                value: value.to_string(),
            })
        }
        // FAIL       id [ SP text ]            ; upcall id failed, and why
        "FAIL" => {
            let (id, reason) = upcall_id("FAIL", rest)?;
            Ok(Message::Fail {
                id,
                reason: reason.to_string(),
            })
        }
        // ; both ways
        // BYE                                  ; "I am closing", or the answer to BYE;
        //                                      ; "BYE " with a space is BYE too (typed by hand)
        "BYE" if rest.is_empty() => Ok(Message::Bye),
        "BYE" => Err(ProtocolError::UnexpectedField {
            verb: "BYE",
            takes: "no field",
        }),
        _ => Err(ProtocolError::UnknownVerb),
    }
}

/// Every verb of `upcall/1`, as it is sent on the wire.
const VERBS: [&str; 9] = [
    "WELCOME",
    "REGISTERED",
    "UPCALL",
    "ERR",
    "BYE",
    "REGISTER",
    "MSG",
    "RETURN",
    "FAIL",
];

/// The fields of a `WELCOME`, the first line on every connection.
///
/// ```text
/// WELCOME    client-id SP "upcall/1"
/// ```
fn welcome(fields: &str) -> Result<Message, ProtocolError> {
    let missing = ProtocolError::MissingField {
        verb: "WELCOME",
        field: "a client id and the protocol version",
    };
    let (client_id, version) = fields.split_once(' ').ok_or(missing)?;
    if client_id.is_empty() {
        return Err(ProtocolError::EmptyField { after: "WELCOME" });
    }
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion);
    }
    Ok(Message::Welcome {
        client_id: client_id.to_string(),
    })
}

/// The fields of an `UPCALL`: "please run callback(text) and answer".
///
/// ```text
/// UPCALL     id SP callback [ SP text ]   ; no text: `UPCALL 2 hostname` calls hostname()
/// ```
fn upcall(fields: &str) -> Result<Message, ProtocolError> {
    let (id, rest) = upcall_id("UPCALL", fields)?;
    let (callback, argument) = rest.split_once(' ').unwrap_or((rest, ""));
    if callback.is_empty() {
        return Err(if rest.is_empty() {
            ProtocolError::MissingField {
                verb: "UPCALL",
                field: "a callback name after the id",
            }
        } else {
            ProtocolError::EmptyField {
                after: "the upcall id",
            }
        });
    }
    check_callback_name(callback)?;
    Ok(Message::Upcall {
        id,
        callback: callback.to_string(),
        argument: argument.to_string(),
    })
}

/// Splits `id [SP rest]` after `verb` and parses the id.
///
/// ```text
/// id = 1*20DIGIT       ; decimal, at most 20 digits (leading zeros count), at most 2^64 - 1;
///                      ; chosen by the server, from 1 on each connection
/// ```
fn upcall_id<'a>(verb: &'static str, fields: &'a str) -> Result<(u64, &'a str), ProtocolError> {
    let (id, rest) = fields.split_once(' ').unwrap_or((fields, ""));
    if id.is_empty() {
        return Err(if fields.is_empty() {
            ProtocolError::MissingField {
                verb,
                field: "an upcall id",
            }
        } else {
            ProtocolError::EmptyField { after: verb }
        });
    }
    // Digits only: `u64::from_str` would also take a leading `+`, which the grammar does not,
    // and any number of leading zeros, where the grammar allows 20 digits in all.
    let why = if !id.bytes().all(|b| b.is_ascii_digit()) {
        "expected a decimal number"
    } else if id.len() > 20 {
        "more than 20 digits"
    } else {
        match id.parse() {
            Ok(id) => return Ok((id, rest)),
            Err(_) => "larger than 18446744073709551615",
        }
    };
    Err(ProtocolError::BadUpcallId { why })
}

/// A callback name as the last field of a `verb` line (`REGISTER`, `REGISTERED`).
fn callback_name(verb: &'static str, field: &str) -> Result<String, ProtocolError> {
    if field.is_empty() {
        return Err(ProtocolError::MissingField {
            verb,
            field: "a callback name",
        });
    }
    if field.starts_with(' ') {
        return Err(ProtocolError::EmptyField { after: verb });
    }
    if field.contains(' ') {
        return Err(ProtocolError::UnexpectedField {
            verb,
            takes: "one callback name, without spaces",
        });
    }
    check_callback_name(field)?;
    Ok(field.to_string())
}

/// ```text
/// callback = %x61-7A *31( %x61-7A / DIGIT / "_" )   ; [a-z][a-z0-9_]*, at most 32 characters
/// ```
///
/// [`MAX_CALLBACK_NAME`] is the 32. Names are identifiers: ASCII only, so they read the same in
/// every log and terminal.
pub fn check_callback_name(name: &str) -> Result<(), ProtocolError> {
    let mut bytes = name.bytes();
    let starts_with_letter = matches!(bytes.next(), Some(b'a'..=b'z'));
    let rest_ok = bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    if starts_with_letter && rest_ok && name.len() <= MAX_CALLBACK_NAME {
        Ok(())
    } else {
        Err(ProtocolError::BadCallbackName)
    }
}

/// A client id, one word: what [`Message::encode`] checks before it sends a `WELCOME`.
///
/// ```text
/// client-id = 1*( %x21-7E )      ; printable ASCII, no spaces: e.g. client-1
/// ```
///
/// The parser is more lenient on the id it receives (any text without a space): it only names
/// the connection.
fn check_token(token: &str) -> Result<(), ProtocolError> {
    if token.is_empty() {
        return Err(ProtocolError::MissingField {
            verb: "WELCOME",
            field: "a client id",
        });
    }
    if token.contains(' ') {
        return Err(ProtocolError::UnexpectedField {
            verb: "WELCOME",
            takes: "a client id of one word",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of the lab transcript, as bytes on the wire and as a value.
    fn lab_transcript() -> Vec<(&'static str, Message)> {
        vec![
            (
                "WELCOME client-1 upcall/1\n",
                Message::Welcome {
                    client_id: "client-1".into(),
                },
            ),
            (
                "REGISTER on_event\n",
                Message::Register {
                    callback: "on_event".into(),
                },
            ),
            (
                "REGISTERED on_event\n",
                Message::Registered {
                    callback: "on_event".into(),
                },
            ),
            (
                "MSG haii\n",
                Message::Msg {
                    text: "haii".into(),
                },
            ),
            (
                "UPCALL 1 on_event Upcall event: Processing haii\n",
                Message::Upcall {
                    id: 1,
                    callback: "on_event".into(),
                    argument: "Upcall event: Processing haii".into(),
                },
            ),
            (
                "RETURN 1 ok\n",
                Message::Return {
                    id: 1,
                    value: "ok".into(),
                },
            ),
            (
                "FAIL 2 unknown callback\n",
                Message::Fail {
                    id: 2,
                    reason: "unknown callback".into(),
                },
            ),
            (
                "ERR line too long\n",
                Message::Err {
                    reason: "line too long".into(),
                },
            ),
            ("BYE\n", Message::Bye),
        ]
    }

    #[test]
    fn lab_transcript_round_trips() {
        for (wire, message) in lab_transcript() {
            assert_eq!(
                parse(wire.trim_end_matches('\n')),
                Ok(message.clone()),
                "{wire:?}"
            );
            assert_eq!(message.encode().as_deref(), Ok(wire), "{message:?}");
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse("msg haii"),
            Ok(Message::Msg {
                text: "haii".into()
            })
        );
        assert_eq!(parse("Bye"), Ok(Message::Bye));
        assert_eq!(
            parse("register on_event"),
            Ok(Message::Register {
                callback: "on_event".into()
            })
        );
    }

    #[test]
    fn the_last_field_is_free_text_with_spaces() {
        assert_eq!(
            parse("MSG  two  spaces "),
            Ok(Message::Msg {
                text: " two  spaces ".into()
            })
        );
        assert_eq!(
            parse("RETURN 7 HELLO WORLD"),
            Ok(Message::Return {
                id: 7,
                value: "HELLO WORLD".into()
            })
        );
    }

    #[test]
    fn an_absent_text_is_an_empty_text() {
        let hostname_call = Message::Upcall {
            id: 2,
            callback: "hostname".into(),
            argument: String::new(),
        };
        assert_eq!(parse("UPCALL 2 hostname"), Ok(hostname_call.clone()));
        assert_eq!(hostname_call.encode().as_deref(), Ok("UPCALL 2 hostname\n"));
        assert_eq!(
            parse("MSG"),
            Ok(Message::Msg {
                text: String::new()
            })
        );
        assert_eq!(parse("BYE "), Ok(Message::Bye));
    }

    #[test]
    fn twenty_digits_with_leading_zeros_are_still_an_id_and_visible_unicode_is_text() {
        assert_eq!(
            parse("RETURN 00000000000000000001 ok"),
            Ok(Message::Return {
                id: 1,
                value: "ok".into()
            })
        );
        // Accents, Arabic, emoji: visible text is welcome.
        let text = "caf\u{e9} \u{645}\u{631}\u{62d}\u{628}\u{627} \u{1F600}";
        let message = Message::Msg { text: text.into() };
        assert_eq!(parse(&format!("MSG {text}")), Ok(message.clone()));
        let hidden = Message::Msg {
            text: "a\u{202E}b".into(),
        };
        assert_eq!(
            hidden.encode(),
            Err(ProtocolError::FormatCharacter {
                character: '\u{202E}',
                at: 6
            })
        );
    }

    #[test]
    fn malformed_lines_get_errors_that_say_what_was_wrong() {
        use ProtocolError::*;
        let control = |character, at| ControlCharacter { character, at };
        let format = |character, at| FormatCharacter { character, at };
        let not_a_number = BadUpcallId {
            why: "expected a decimal number",
        };
        let cases = [
            ("HELLO there", UnknownVerb),
            ("", UnknownVerb),
            (
                "REGISTER",
                MissingField {
                    verb: "REGISTER",
                    field: "a callback name",
                },
            ),
            ("REGISTER On_Event", BadCallbackName),
            ("REGISTER 1abc", BadCallbackName),
            (
                "REGISTER on event",
                UnexpectedField {
                    verb: "REGISTER",
                    takes: "one callback name, without spaces",
                },
            ),
            ("REGISTER  on_event", EmptyField { after: "REGISTER" }),
            (
                "RETURN",
                MissingField {
                    verb: "RETURN",
                    field: "an upcall id",
                },
            ),
            ("RETURN  1 ok", EmptyField { after: "RETURN" }),
            ("FAIL  1", EmptyField { after: "FAIL" }),
            ("RETURN x ok", not_a_number),
            ("RETURN +1 ok", not_a_number),
            ("RETURN -1 ok", not_a_number),
            (
                "RETURN 99999999999999999999 ok",
                BadUpcallId {
                    why: "larger than 18446744073709551615",
                },
            ),
            (
                "RETURN 99999999999999999999999 ok",
                BadUpcallId {
                    why: "more than 20 digits",
                },
            ),
            (
                "UPCALL 1",
                MissingField {
                    verb: "UPCALL",
                    field: "a callback name after the id",
                },
            ),
            (
                "UPCALL 1  on_event",
                EmptyField {
                    after: "the upcall id",
                },
            ),
            (
                "BYE now",
                UnexpectedField {
                    verb: "BYE",
                    takes: "no field",
                },
            ),
            ("MSG a\0b", control('\0', 6)),
            ("MSG \x1b[31mred", control('\x1b', 5)),
            ("MSG a\rb", control('\r', 6)),
            ("MSG caf\u{e9} \u{85}", control('\u{85}', 11)),
            ("MSG gnp.exe\u{202E}", format('\u{202E}', 12)),
            ("MSG one\u{2028}client-2 said BYE", format('\u{2028}', 8)),
            ("MSG a\u{2029}b", format('\u{2029}', 6)),
            ("MSG ad\u{200B}min", format('\u{200B}', 7)),
            ("MSG \u{2066}isolated\u{2069}", format('\u{2066}', 5)),
            ("MSG \u{FEFF}bom", format('\u{FEFF}', 5)),
            ("MSG \u{200E}mark", format('\u{200E}', 5)),
            ("MSG \u{61C}mark", format('\u{61C}', 5)),
            ("WELCOME client\u{200D}1 upcall/1", format('\u{200D}', 15)),
            (
                "RETURN 0000000000000000000000000001 x",
                BadUpcallId {
                    why: "more than 20 digits",
                },
            ),
            (
                "RETURN 000000000000000000001 x",
                BadUpcallId {
                    why: "more than 20 digits",
                },
            ),
            (
                "WELCOME client-1",
                MissingField {
                    verb: "WELCOME",
                    field: "a client id and the protocol version",
                },
            ),
            ("WELCOME  upcall/1", EmptyField { after: "WELCOME" }),
            ("WELCOME client-1 upcall/2", UnsupportedVersion),
        ];
        for (line, error) in cases {
            assert_eq!(parse(line), Err(error), "{line:?}");
        }
    }

    #[test]
    fn emoji_sequences_pass_and_the_same_characters_alone_are_refused() {
        let welcome = [
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", // family: man, woman, girl
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",          // rainbow flag
            "\u{1F3F4}\u{200D}\u{2620}\u{FE0F}",           // pirate flag
            "\u{1F469}\u{1F3FD}\u{200D}\u{2695}\u{FE0F}",  // health worker, skin tone
            "\u{2764}\u{FE0F}\u{200D}\u{1F525}",           // heart on fire
            "\u{1F408}\u{200D}\u{2B1B}",                   // black cat
            "\u{2764}\u{FE0F} 1\u{FE0F}\u{20E3} \u{8FBA}\u{E0101}", // heart, keycap, ideograph variant
            // Scotland: black flag, tags g b s c t, cancel tag.
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ];
        for text in welcome {
            let line = format!("MSG {text}");
            assert_eq!(
                parse(&line),
                Ok(Message::Msg { text: text.into() }),
                "{line:?}"
            );
        }
        let refused = [
            ("MSG \u{200D}\u{1F468}", '\u{200D}'), // a joiner first
            ("MSG \u{1F468}\u{200D}", '\u{200D}'), // a joiner last
            ("MSG ad\u{200D}min", '\u{200D}'),     // between letters
            ("MSG \u{1F468}\u{200D} \u{1F469}", '\u{200D}'), // before a space
            ("MSG \u{1F468}\u{200D}\u{200D}\u{1F469}", '\u{200D}'), // two joiners
            ("MSG \u{FE0F}first", '\u{FE0F}'),     // a selector first
            ("MSG a \u{FE0F}", '\u{FE0F}'),        // after a space
            ("MSG hidden\u{E0068}\u{E0069}", '\u{E0068}'), // tags without a flag
            ("MSG \u{1F3F4}\u{E0067}\u{E0062}", '\u{E0062}'), // a flag never closed
            ("MSG \u{1F3F4}\u{E007F}", '\u{E007F}'), // a cancel tag alone
            ("MSG \u{E0001}en", '\u{E0001}'),      // the language tag
        ];
        for (line, character) in refused {
            assert!(
                matches!(parse(line), Err(ProtocolError::FormatCharacter { character: c, .. }) if c == character),
                "{line:?}: {:?}",
                parse(line)
            );
        }
    }

    #[test]
    fn errors_name_the_character_its_place_and_the_rule() {
        let cases = [
            ("MSG a\u{4}b", "control character U+0004 at byte 6"),
            (
                "MSG \x1b[31m",
                "control character U+001B (escape) at byte 5",
            ),
            (
                "MSG ab\u{200D}c",
                "invisible format character U+200D (zero width joiner) at byte 7 (a zero width \
                 joiner is allowed only between two emoji)",
            ),
            (
                "MSG \u{202D}x",
                "invisible format character U+202D (left-to-right override) at byte 5 (it \
                 reorders or hides text)",
            ),
            ("RETURN x", "bad upcall id: expected a decimal number"),
            ("BYE now", "unexpected field: BYE takes no field"),
        ];
        for (line, text) in cases {
            assert_eq!(
                parse(line).map_err(|e| e.to_string()),
                Err(text.into()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn callback_names_are_identifiers_of_at_most_32_characters() {
        assert_eq!(check_callback_name("on_event"), Ok(()));
        assert_eq!(check_callback_name("a"), Ok(()));
        assert_eq!(check_callback_name(&"a".repeat(32)), Ok(()));
        for bad in ["", "_x", "A", "x-y", "é", &"a".repeat(33)] {
            assert_eq!(
                check_callback_name(bad),
                Err(ProtocolError::BadCallbackName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tabs_and_unicode_are_text() {
        assert_eq!(
            parse("MSG selamat\tpagi ☀"),
            Ok(Message::Msg {
                text: "selamat\tpagi ☀".into()
            })
        );
    }

    #[test]
    fn the_encoder_refuses_what_the_parser_would_refuse() {
        let split_in_two = Message::Msg {
            text: "one\nMSG two".into(),
        };
        assert_eq!(
            split_in_two.encode(),
            Err(ProtocolError::ControlCharacter {
                character: '\n',
                at: 8
            })
        );
        let bad_name = Message::Register {
            callback: "On Event".into(),
        };
        assert_eq!(bad_name.encode(), Err(ProtocolError::BadCallbackName));
        let spaced_id = Message::Welcome {
            client_id: "client 1".into(),
        };
        assert!(matches!(
            spaced_id.encode(),
            Err(ProtocolError::UnexpectedField {
                verb: "WELCOME",
                ..
            })
        ));
    }

    #[test]
    fn every_error_has_a_printable_message() {
        let all = [
            ProtocolError::LineTooLong,
            ProtocolError::InvalidUtf8,
            ProtocolError::ControlCharacter {
                character: '\0',
                at: 1,
            },
            ProtocolError::FormatCharacter {
                character: '\u{202E}',
                at: 1,
            },
            ProtocolError::UnknownVerb,
            ProtocolError::MissingField {
                verb: "REGISTER",
                field: "a callback name",
            },
            ProtocolError::EmptyField { after: "RETURN" },
            ProtocolError::UnexpectedField {
                verb: "BYE",
                takes: "no field",
            },
            ProtocolError::BadCallbackName,
            ProtocolError::BadUpcallId {
                why: "more than 20 digits",
            },
            ProtocolError::UnsupportedVersion,
        ];
        for error in all {
            let reason = Message::Err {
                reason: error.to_string(),
            };
            assert!(reason.encode().is_ok(), "{error:?}");
        }
    }
}
