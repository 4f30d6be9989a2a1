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
//! ```text
//! line      = verb [ SP rest ] LF          ; a CR right before LF is dropped (nc -C, telnet)
//!                                          ; an empty line is ignored
//! verb      = 1*ALPHA                      ; matched case-insensitively, always sent upper case
//!
//! ; server -> client
//! WELCOME    client-id SP "upcall/1"       ; first line on every connection
//! REGISTERED callback                      ; acknowledges REGISTER
//! UPCALL     id SP callback [ SP text ]    ; "please run callback(text) and answer"
//! ERR        [ text ]                      ; the last line was rejected; the connection stays
//! BYE                                      ; answer to BYE, or "I am closing"
//!
//! ; client -> server
//! REGISTER   callback                      ; "you may call me back on this function"
//! MSG        [ text ]                      ; a message for the server (and the other clients)
//! RETURN     id [ SP text ]                ; the result of upcall id
//! FAIL       id [ SP text ]                ; upcall id failed, and why
//! BYE                                      ; polite close
//!
//! client-id = 1*( %x21-7E )                ; e.g. client-1 (no spaces)
//! callback  = %x61-7A *31( %x61-7A / DIGIT / "_" )   ; [a-z][a-z0-9_]*, at most 32 characters
//! id        = 1*20DIGIT                    ; decimal, chosen by the server, from 1 on each connection
//! text      = *( any UTF-8 character except control characters (TAB is allowed) and the
//!                invisible format characters that reorder or hide text: bidi controls
//!                U+061C U+200E U+200F U+202A-202E U+2066-2069, line and paragraph separators
//!                U+2028 U+2029, zero-width U+180E U+200B-200D U+2060-2064 U+FEFF, soft hyphen U+00AD )
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

use std::fmt;

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

/// Why a line is not valid `upcall/1`.
///
/// A small `Copy` enum with fixed messages, in the style of `httparse`: cheap to return, easy to
/// match on in tests, and the text after `ERR` on the wire is exactly [`ProtocolError::as_str`].
/// The texts fit both directions (the same parser reads the server's lines in the client); where
/// the direction matters, the receiver adds it: for an unknown verb, the server's `ERR` names the
/// verbs it expected ([`CLIENT_VERBS`]), the client's note those of a server ([`SERVER_VERBS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The line (with its newline) is longer than the receiver's limit.
    LineTooLong,
    /// The bytes of the line are not valid UTF-8.
    InvalidUtf8,
    /// The line contains a control character (NUL, ESC, a CR in the middle, ...).
    ControlCharacter,
    /// The line contains an invisible character that reorders or hides text (a bidi override, a
    /// line separator, a zero-width space, ...).
    FormatCharacter,
    /// The first word is not a verb of `upcall/1` (in either direction).
    UnknownVerb,
    /// The verb needs a field that is not there (`REGISTER` without a name, ...).
    MissingField,
    /// The verb takes no field but one was given (`BYE now`), or a field has a space in it.
    UnexpectedField,
    /// A callback name that is not `[a-z][a-z0-9_]*` of at most 32 characters.
    BadCallbackName,
    /// An upcall id that is not a decimal number of at most 20 digits that fits in 64 bits.
    BadUpcallId,
    /// A `WELCOME` for a protocol other than `upcall/1`.
    UnsupportedVersion,
}

impl ProtocolError {
    /// The fixed, human-readable reason. It is what follows `ERR ` on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolError::LineTooLong => "line too long",
            ProtocolError::InvalidUtf8 => "line is not valid UTF-8",
            ProtocolError::ControlCharacter => "control character in line",
            ProtocolError::FormatCharacter => {
                "invisible format character in line (bidi control, separator or zero-width)"
            }
            ProtocolError::UnknownVerb => "unknown verb",
            ProtocolError::MissingField => "missing field",
            ProtocolError::UnexpectedField => "unexpected field",
            ProtocolError::BadCallbackName => {
                "bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)"
            }
            ProtocolError::BadUpcallId => "bad upcall id (expected a decimal number)",
            ProtocolError::UnsupportedVersion => "unsupported protocol version",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProtocolError {}

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
    pub fn encode(&self) -> Result<String, ProtocolError> {
        let verb = self.verb();
        match self {
            Message::Welcome { client_id } => {
                check_token(client_id)?;
                Ok(format!("{verb} {client_id} {PROTOCOL_VERSION}\n"))
            }
            Message::Registered { callback } | Message::Register { callback } => {
                check_callback_name(callback)?;
                Ok(format!("{verb} {callback}\n"))
            }
            Message::Upcall {
                id,
                callback,
                argument,
            } => {
                check_callback_name(callback)?;
                Ok(with_text(format!("{verb} {id} {callback}"), argument)?)
            }
            Message::Err { reason: text } | Message::Msg { text } => {
                with_text(verb.to_string(), text)
            }
            Message::Return { id, value: text } | Message::Fail { id, reason: text } => {
                with_text(format!("{verb} {id}"), text)
            }
            Message::Bye => Ok(format!("{verb}\n")),
        }
    }
}

/// Appends the free-text last field (if any) and the newline.
fn with_text(mut line: String, text: &str) -> Result<String, ProtocolError> {
    check_text(text)?;
    if !text.is_empty() {
        line.push(' ');
        line.push_str(text);
    }
    line.push('\n');
    Ok(line)
}

/// Parses one line, without its `\n` (and without a `\r` before it: the framing layer drops both).
///
/// The caller has already skipped empty lines. Every error is a [`ProtocolError`] whose message
/// can go straight back to the sender after `ERR`.
pub fn parse(line: &str) -> Result<Message, ProtocolError> {
    check_text(line)?;
    // `VERB` or `VERB<space>REST`: the first space ends the verb, everything after it is the rest.
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, rest),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "WELCOME" => {
            let (client_id, version) = rest.split_once(' ').ok_or(ProtocolError::MissingField)?;
            check_token(client_id)?;
            if version != PROTOCOL_VERSION {
                return Err(ProtocolError::UnsupportedVersion);
            }
            Ok(Message::Welcome {
                client_id: client_id.to_string(),
            })
        }
        "REGISTERED" => Ok(Message::Registered {
            callback: callback_name(rest)?,
        }),
        "REGISTER" => Ok(Message::Register {
            callback: callback_name(rest)?,
        }),
        "UPCALL" => {
            let (id, rest) = upcall_id(rest)?;
            // The argument is optional: `UPCALL 2 hostname` calls hostname().
            let (callback, argument) = rest.split_once(' ').unwrap_or((rest, ""));
            Ok(Message::Upcall {
                id,
                callback: callback_name(callback)?,
                argument: argument.to_string(),
            })
        }
        "ERR" => Ok(Message::Err {
            reason: rest.to_string(),
        }),
        "MSG" => Ok(Message::Msg {
            text: rest.to_string(),
        }),
        "RETURN" => {
            let (id, value) = upcall_id(rest)?;
            Ok(Message::Return {
                id,
                value: value.to_string(),
            })
        }
        "FAIL" => {
            let (id, reason) = upcall_id(rest)?;
            Ok(Message::Fail {
                id,
                reason: reason.to_string(),
            })
        }
        // `BYE ` (a trailing space from a hand-typed line) is still a plain BYE.
        "BYE" if rest.is_empty() => Ok(Message::Bye),
        "BYE" => Err(ProtocolError::UnexpectedField),
        _ => Err(ProtocolError::UnknownVerb),
    }
}

/// Splits `id [SP rest]` and parses the id.
fn upcall_id(fields: &str) -> Result<(u64, &str), ProtocolError> {
    let (id, rest) = fields.split_once(' ').unwrap_or((fields, ""));
    if id.is_empty() {
        return Err(ProtocolError::MissingField);
    }
    // Digits only: `u64::from_str` would also take a leading `+`, which the grammar does not,
    // and any number of leading zeros, where the grammar allows 20 digits in all.
    if id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::BadUpcallId);
    }
    let id = id.parse().map_err(|_| ProtocolError::BadUpcallId)?;
    Ok((id, rest))
}

/// A callback name as the last field of a line.
fn callback_name(field: &str) -> Result<String, ProtocolError> {
    if field.is_empty() {
        return Err(ProtocolError::MissingField);
    }
    if field.contains(' ') {
        return Err(ProtocolError::UnexpectedField);
    }
    check_callback_name(field)?;
    Ok(field.to_string())
}

/// `[a-z][a-z0-9_]*`, at most [`MAX_CALLBACK_NAME`] characters.
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

/// A field that is one word: not empty, no spaces.
fn check_token(token: &str) -> Result<(), ProtocolError> {
    if token.is_empty() {
        return Err(ProtocolError::MissingField);
    }
    if token.contains(' ') {
        return Err(ProtocolError::UnexpectedField);
    }
    check_text(token)
}

/// Free text: any character but a control character (TAB is allowed: it prints) or an invisible
/// format character.
pub fn check_text(text: &str) -> Result<(), ProtocolError> {
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            return Err(ProtocolError::ControlCharacter);
        }
        if is_invisible_format(c) {
            return Err(ProtocolError::FormatCharacter);
        }
    }
    Ok(())
}

/// Characters that print nothing themselves but change how the text around them shows.
///
/// A right-to-left override (U+202E) makes `MSG gnp.exe` show as `MSG exe.png`, and a line
/// separator (U+2028) starts what looks like a new log line in many terminals: either lets a
/// student forge what the operator reads. Zero-width characters make two different names look
/// the same. None of them belongs in a chat line, so they are refused like control characters.
/// (Std has no table of Unicode's format category; this is the list that can hide or fake text.)
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
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
        assert_eq!(hidden.encode(), Err(ProtocolError::FormatCharacter));
    }

    #[test]
    fn malformed_lines_get_fixed_errors() {
        let cases = [
            ("HELLO there", ProtocolError::UnknownVerb),
            ("", ProtocolError::UnknownVerb),
            ("REGISTER", ProtocolError::MissingField),
            ("REGISTER On_Event", ProtocolError::BadCallbackName),
            ("REGISTER 1abc", ProtocolError::BadCallbackName),
            ("REGISTER on event", ProtocolError::UnexpectedField),
            ("RETURN", ProtocolError::MissingField),
            ("RETURN x ok", ProtocolError::BadUpcallId),
            ("RETURN +1 ok", ProtocolError::BadUpcallId),
            ("RETURN -1 ok", ProtocolError::BadUpcallId),
            (
                "RETURN 99999999999999999999999 ok",
                ProtocolError::BadUpcallId,
            ),
            ("UPCALL 1", ProtocolError::MissingField),
            ("BYE now", ProtocolError::UnexpectedField),
            ("MSG a\0b", ProtocolError::ControlCharacter),
            ("MSG \x1b[31mred", ProtocolError::ControlCharacter),
            ("MSG a\rb", ProtocolError::ControlCharacter),
            ("MSG gnp.exe\u{202E}", ProtocolError::FormatCharacter),
            (
                "MSG one\u{2028}client-2 said BYE",
                ProtocolError::FormatCharacter,
            ),
            ("MSG a\u{2029}b", ProtocolError::FormatCharacter),
            ("MSG ad\u{200B}min", ProtocolError::FormatCharacter),
            (
                "MSG \u{2066}isolated\u{2069}",
                ProtocolError::FormatCharacter,
            ),
            ("MSG \u{FEFF}bom", ProtocolError::FormatCharacter),
            (
                "WELCOME client\u{200D}1 upcall/1",
                ProtocolError::FormatCharacter,
            ),
            (
                "RETURN 0000000000000000000000000001 x",
                ProtocolError::BadUpcallId,
            ),
            ("RETURN 000000000000000000001 x", ProtocolError::BadUpcallId),
            ("WELCOME client-1", ProtocolError::MissingField),
            (
                "WELCOME client-1 upcall/2",
                ProtocolError::UnsupportedVersion,
            ),
        ];
        for (line, error) in cases {
            assert_eq!(parse(line), Err(error), "{line:?}");
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
        assert_eq!(split_in_two.encode(), Err(ProtocolError::ControlCharacter));
        let bad_name = Message::Register {
            callback: "On Event".into(),
        };
        assert_eq!(bad_name.encode(), Err(ProtocolError::BadCallbackName));
        let spaced_id = Message::Welcome {
            client_id: "client 1".into(),
        };
        assert_eq!(spaced_id.encode(), Err(ProtocolError::UnexpectedField));
    }

    #[test]
    fn every_error_has_a_printable_message() {
        let all = [
            ProtocolError::LineTooLong,
            ProtocolError::InvalidUtf8,
            ProtocolError::ControlCharacter,
            ProtocolError::UnknownVerb,
            ProtocolError::MissingField,
            ProtocolError::UnexpectedField,
            ProtocolError::BadCallbackName,
            ProtocolError::BadUpcallId,
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
