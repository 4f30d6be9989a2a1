//! The text format of the reference `.txt` files: one entry a line, as `c1 C>S MSG haii`.
//!
//! A valid line is printed exactly as it was sent, without its `\n`; everything else is in square
//! brackets, so it can never be mistaken for a line. The ladder and the Mermaid diagram take
//! their labels from here too, so the three views name every event alike.

use std::fmt::Write as _;

use crate::conversation::{Cut, Entry, Event};

/// A bad line longer than this is shown cut, with its length.
pub const SHOWN_BYTES: usize = 80;

/// How [`format_conversation`] writes entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    /// Start each entry with the seconds since the first SYN (`  0.004021 `), as Wireshark shows them.
    pub time: bool,
    /// Start each entry with its frame number (`#12 `), as Wireshark's "No." column shows it.
    pub frames: bool,
}

/// The conversation as text, one entry a line, each ending in `\n`: the `.txt` format.
pub fn format_conversation(entries: &[Entry], format: Format) -> String {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&format_entry(entry, format));
        text.push('\n');
    }
    text
}

/// One entry, without a newline: `c1 C>S MSG haii`.
pub fn format_entry(entry: &Entry, format: Format) -> String {
    format!(
        "{}c{} {} {}",
        prefix(entry, format),
        entry.connection,
        entry.direction.arrow(),
        event_text(&entry.event)
    )
}

/// What [`Format`] puts before an entry: its time and frame number, each followed by a space.
pub fn prefix(entry: &Entry, format: Format) -> String {
    let mut text = String::new();
    if format.time {
        let _ = write!(text, "{:10.6} ", entry.time.as_secs_f64());
    }
    if format.frames {
        let frame = format!("#{}", entry.frame);
        let _ = write!(text, "{frame:<6} ");
    }
    text
}

/// What happened, as the `.txt` shows it: a line as it was sent, anything else in brackets.
pub fn event_text(event: &Event) -> String {
    match event {
        Event::Connect => "[connect]".to_string(),
        Event::Close => "[close]".to_string(),
        Event::Reset => "[reset]".to_string(),
        Event::Gap { missing } => format!("[gap: {missing} bytes not captured]"),
        Event::Line {
            raw,
            message: Ok(_),
        } => String::from_utf8_lossy(raw).into_owned(),
        Event::Line { raw, .. } | Event::Unfinished { raw, .. } => {
            format!("{} {}", bracket(event).unwrap_or_default(), shown(raw))
        }
    }
}

/// For bytes that are not a valid line, the bracket that says why: `[bad line: line too long]`.
pub fn bracket(event: &Event) -> Option<String> {
    match event {
        Event::Line {
            message: Err(error),
            ..
        } => Some(format!("[bad line: {error}]")),
        Event::Unfinished { cut, .. } => {
            let why = match cut {
                Cut::Close => "no newline before the close",
                Cut::Gap => "the rest was not captured",
                Cut::EndOfCapture => "the capture ends here",
            };
            Some(format!("[unfinished line: {why}]"))
        }
        _ => None,
    }
}

/// Bytes as a quoted, escaped string, cut after [`SHOWN_BYTES`] bytes.
fn shown(raw: &[u8]) -> String {
    if raw.len() <= SHOWN_BYTES {
        format!("\"{}\"", escape_bytes(raw))
    } else {
        format!(
            "\"{}\"... ({} bytes)",
            escape_bytes(&raw[..SHOWN_BYTES]),
            raw.len()
        )
    }
}

/// Escapes bytes so that any of them prints on one line: printable UTF-8 stays as it is, `\\`,
/// `\"`, `\t`, `\r`, `\n` and `\0` are written so, other control characters as `\xNN` (or
/// `\u{NN}` above 0x7f), and bytes that are not UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\t' => text.push_str("\\t"),
                '\r' => text.push_str("\\r"),
                '\n' => text.push_str("\\n"),
                '\0' => text.push_str("\\0"),
                c if c.is_control() && c.is_ascii() => {
                    let _ = write!(text, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(text, "\\u{{{:x}}}", c as u32);
                }
                c => text.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// What happened, in at most `width` characters, for a label on a diagram: the `.txt` text when
/// it fits. When it does not, what matters stays: the start of a line (its verb, id and callback)
/// and a bad line's reason and length. A reason's explanation in parentheses goes first:
/// `ERR unknown upcall id 1 (...)`, `[bad line: unknown verb (...)] "HELLO there"`.
pub fn label(event: &Event, width: usize) -> String {
    // A tab would move everything after it on a diagram's row.
    let full = event_text(event).replace('\t', "\\t");
    if full.chars().count() <= width {
        return full;
    }
    let (Event::Line { raw, .. } | Event::Unfinished { raw, .. }) = event else {
        return cut(&full, width);
    };
    let Some(bracket) = bracket(event) else {
        // A valid line: without its explanation in parentheses, else cut at the end.
        let shorter = without_parentheses(&full);
        return if shorter.chars().count() <= width {
            shorter
        } else {
            cut(&full, width)
        };
    };
    // The bracket, then as many of the bytes as fit (but at least a few).
    let mut bracket = bracket;
    if bracket.chars().count() + 1 + QUOTED_AT_LEAST > width {
        bracket = without_parentheses(&bracket[..bracket.len() - 1]) + "]";
    }
    let room = width.saturating_sub(bracket.chars().count() + 1);
    format!("{bracket} {}", quoted_within(raw, room))
}

/// The fewest characters of a bad line's bytes a label shows: enough to recognise it.
const QUOTED_AT_LEAST: usize = 20;

/// Bytes quoted and escaped in at most `room` characters: whole if they fit, else their start
/// and their length, `"MSG xxxx"... (5004 bytes)`. An escape (`\xe9`) is never cut in half.
fn quoted_within(raw: &[u8], room: usize) -> String {
    let whole = format!("\"{}\"", escape_bytes(raw));
    if whole.chars().count() <= room {
        return whole;
    }
    let tail = format!("... ({} bytes)", raw.len());
    let keep = room.saturating_sub(tail.len() + 2);
    let mut end = raw.len().min(keep);
    while end > 0 && escape_bytes(&raw[..end]).chars().count() > keep {
        end -= 1;
    }
    format!("\"{}\"{tail}", escape_bytes(&raw[..end]))
}

/// `text` with its last parenthesised part, if it ends in one, replaced by `(...)`.
fn without_parentheses(text: &str) -> String {
    match text.rfind(" (") {
        Some(open) if text.ends_with(')') => format!("{} (...)", &text[..open]),
        _ => text.to_string(),
    }
}

/// `text` cut to `width` characters, the last three being `...`.
fn cut(text: &str, width: usize) -> String {
    let kept: String = text.chars().take(width.saturating_sub(3)).collect();
    format!("{kept}...")
}
