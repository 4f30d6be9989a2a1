//! The protocol's error: why a line is not valid `upcall/1`, in words that say which character,
//! where, and which field. The parser (`protocol.rs`) returns it; `Display` is the text that
//! follows `ERR ` on the wire.

use std::fmt;

/// Why a line is not valid `upcall/1`.
///
/// A small `Copy` enum in the style of `httparse`: cheap to return, easy to match on in tests. It
/// carries just enough to say what was wrong (which character and where, which field after which
/// verb), and its [`Display`](fmt::Display) text is what follows `ERR ` on the wire. The texts fit
/// both directions (the same parser reads the server's lines in the client); where the direction
/// matters, the receiver adds it: for an unknown verb, the server's `ERR` names the verbs it
/// expected ([`CLIENT_VERBS`](super::CLIENT_VERBS)), the client's note those of a server ([`SERVER_VERBS`](super::SERVER_VERBS)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The line (with its newline) is longer than the receiver's limit.
    LineTooLong,
    /// The bytes of the line are not valid UTF-8.
    InvalidUtf8,
    /// A control character (NUL, ESC, a CR in the middle, ...) at byte `at` of the line (from 1).
    ControlCharacter { character: char, at: usize },
    /// An invisible character that reorders or hides text (a bidi override, a line separator, a
    /// zero-width space, a joiner outside an emoji sequence, ...) at byte `at` of the line.
    FormatCharacter { character: char, at: usize },
    /// The first word is not a verb of `upcall/1` (in either direction).
    UnknownVerb,
    /// `verb` needs `field` and the line ends before it (`REGISTER` without a name, ...).
    MissingField {
        verb: &'static str,
        field: &'static str,
    },
    /// Two spaces in a row where one separates two fields (`RETURN  1 ok`): the field after
    /// `after` is empty.
    EmptyField { after: &'static str },
    /// More than `verb` takes (`BYE now`, a callback name with a space in it); `takes` says what
    /// it does take.
    UnexpectedField {
        verb: &'static str,
        takes: &'static str,
    },
    /// A callback name that is not `[a-z][a-z0-9_]*` of at most 32 characters.
    BadCallbackName,
    /// An upcall id that is not a decimal number of at most 20 digits that fits in 64 bits.
    BadUpcallId { why: &'static str },
    /// A `WELCOME` for a protocol other than `upcall/1`.
    UnsupportedVersion,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::LineTooLong => f.write_str("line too long"),
            ProtocolError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
            ProtocolError::ControlCharacter { character, at } => {
                write!(f, "control character {} at byte {at}", named(character))
            }
            ProtocolError::FormatCharacter { character, at } => write!(
                f,
                "invisible format character {} at byte {at} ({})",
                named(character),
                why_refused(character)
            ),
            ProtocolError::UnknownVerb => f.write_str("unknown verb"),
            ProtocolError::MissingField { verb, field } => {
                write!(f, "missing field: {verb} needs {field}")
            }
            ProtocolError::EmptyField { after } => write!(
                f,
                "empty field: two spaces after {after} (fields are separated by one space)"
            ),
            ProtocolError::UnexpectedField { verb, takes } => {
                write!(f, "unexpected field: {verb} takes {takes}")
            }
            ProtocolError::BadCallbackName => {
                f.write_str("bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)")
            }
            ProtocolError::BadUpcallId { why } => write!(f, "bad upcall id: {why}"),
            ProtocolError::UnsupportedVersion => f.write_str("unsupported protocol version"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// `U+001B (escape)`: a character by its code point, and its name when a student may not know it
/// by its number. (The dissector has the same table.)
fn named(c: char) -> String {
    let name = match c {
        '\0' => "NUL",
        '\u{7}' => "bell",
        '\u{8}' => "backspace",
        '\n' => "line feed",
        '\u{b}' => "vertical tab",
        '\u{c}' => "form feed",
        '\r' => "carriage return",
        '\u{1b}' => "escape",
        '\u{7f}' => "delete",
        '\u{ad}' => "soft hyphen",
        '\u{61c}' => "Arabic letter mark",
        '\u{180e}' => "Mongolian vowel separator",
        '\u{200b}' => "zero width space",
        '\u{200c}' => "zero width non-joiner",
        '\u{200d}' => "zero width joiner",
        '\u{200e}' => "left-to-right mark",
        '\u{200f}' => "right-to-left mark",
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        '\u{202a}' => "left-to-right embedding",
        '\u{202b}' => "right-to-left embedding",
        '\u{202c}' => "pop directional formatting",
        '\u{202d}' => "left-to-right override",
        '\u{202e}' => "right-to-left override",
        '\u{2060}' => "word joiner",
        '\u{2066}' => "left-to-right isolate",
        '\u{2067}' => "right-to-left isolate",
        '\u{2068}' => "first strong isolate",
        '\u{2069}' => "pop directional isolate",
        '\u{feff}' => "zero width no-break space",
        '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' => "variation selector",
        '\u{e0000}'..='\u{e007f}' => "tag",
        _ => return format!("U+{:04X}", u32::from(c)),
    };
    format!("U+{:04X} ({name})", u32::from(c))
}

/// Why an invisible character was refused, in the words of the rule it broke.
fn why_refused(c: char) -> &'static str {
    match c {
        '\u{200d}' => "a zero width joiner is allowed only between two emoji",
        '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' => {
            "a variation selector is allowed only right after a visible character"
        }
        '\u{e0020}'..='\u{e007f}' => {
            "tag characters are allowed only in a flag: U+1F3F4, tags, U+E007F"
        }
        _ => "it reorders or hides text",
    }
}
