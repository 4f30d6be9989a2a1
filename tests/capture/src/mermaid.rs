//! The conversation as a Mermaid `sequenceDiagram`, for lab reports: GitHub, GitLab and Mermaid's
//! live editor draw it from a fenced ```` ```mermaid ```` block.
//!
//! ```text
//! sequenceDiagram
//!     participant server
//!     participant c1 as client-1
//!     c1--)server: [connect]
//!     server->>c1: WELCOME client-1 upcall/1
//!     c1->>server: MSG haii
//! ```
//!
//! The participants are declared first, the server and then each connection in order, so the
//! columns stand as in the [`ladder`](mod@crate::ladder). A line of `upcall/1` is a solid arrow
//! (`->>`); the TCP events are the other kinds: `--)` for `[connect]` and `[close]`, `--x` for
//! `[reset]`. Labels are those of the ladder, shortened to [`LABEL_WIDTH`].
//!
//! Mermaid reads some characters in a message as syntax: `;` ends a statement, `#` starts an
//! entity code, and `<`, `>`, `&` and `"` go to the browser as HTML. Each is written as Mermaid's
//! entity code (`#59;`, `#35;`, `#lt;`, `#gt;`, `#amp;`, `#quot;`), which it draws as the
//! character. With [`Format::time`] (and [`Format::frames`]) a message starts with its time (and
//! frame number), and each answered `UPCALL` gets a note with its round trip.

use crate::conversation::{Direction, Entry, Event};
use crate::text::{label, prefix, Format};
use crate::transcript::{duration_text, index_upcalls, pair_upcalls, pairing_of, parties};

/// The longest label on an arrow.
pub const LABEL_WIDTH: usize = 72;

/// The conversation as Mermaid source, starting with `sequenceDiagram`, each line ending in `\n`.
pub fn mermaid(entries: &[Entry], format: Format) -> String {
    let parties = parties(entries);
    let pairings = pair_upcalls(entries);
    let upcalls = index_upcalls(&pairings);
    let mut out = String::from("sequenceDiagram\n    participant server\n");
    for party in &parties {
        out.push_str(&format!(
            "    participant c{} as {}\n",
            party.connection,
            escape(&party.name)
        ));
    }
    for entry in entries {
        let client = format!("c{}", entry.connection);
        let (from, to) = match entry.direction {
            Direction::ClientToServer => (client.as_str(), "server"),
            Direction::ServerToClient => ("server", client.as_str()),
        };
        let arrow = match entry.event {
            Event::Connect | Event::Close => "--)",
            Event::Reset => "--x",
            _ => "->>",
        };
        let text = format!(
            "{}{}",
            prefix(entry, format),
            label(&entry.event, LABEL_WIDTH)
        );
        out.push_str(&format!("    {from}{arrow}{to}: {}\n", escape(text.trim())));
        if format.time {
            if let Some(took) = pairing_of(&upcalls, entry).and_then(|pairing| pairing.took) {
                out.push_str(&format!(
                    "    Note right of {client}: answered after {}\n",
                    duration_text(took)
                ));
            }
        }
    }
    out
}

/// Text as Mermaid draws it literally: see the module's doc.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ';' => out.push_str("#59;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '"' => out.push_str("#quot;"),
            c => out.push(c),
        }
    }
    out
}
