//! The conversation as a ladder: a text sequence diagram, one column per party, one row per
//! entry, the way upcalls are drawn on a whiteboard.
//!
//! ```text
//! server                                                   client-1
//!    |<-- [connect] -------------------------------------------|
//!    |--- WELCOME client-1 upcall/1 -------------------------->|
//!    |<-- MSG haii --------------------------------------------|
//!    |--- UPCALL 1 on_event Upcall event: Processing haii ---->|
//!    |<-- RETURN 1 ok -----------------------------------------|
//! ```
//!
//! The server's lifeline is on the left, one per connection on the right, named by the id its
//! `WELCOME` gave it ([`parties`]). A lifeline begins at its connection's first entry and ends at
//! its last. Every label starts in the same column, so the labels read down like the `.txt`;
//! a label too long for the space is shortened by [`label`]. Everything fits in [`WIDTH`]
//! columns (with more clients than fit, the labels keep [`MIN_LABEL`] columns and the rows grow).
//! With [`Format::time`] each row starts with the seconds since the first SYN, and each `UPCALL`
//! ends with its round trip, the time until the client's `RETURN` or `FAIL` (`no answer` if none
//! came). The output depends on the capture only, so tests compare it as text.

use crate::conversation::{Direction, Entry};
use crate::text::{label, prefix, Format};
use crate::transcript::{duration_text, pair_upcalls, pairing_of, parties, Party};

/// The widest row, in characters.
pub const WIDTH: usize = 100;

/// The fewest columns a label gets, however many clients there are.
pub const MIN_LABEL: usize = 24;

/// The widest round trip after an `UPCALL`'s row: `rtt 999.999 ms`.
const ROUND_TRIP_WIDTH: usize = 14;

/// The fewest columns from one client's lifeline to the next.
const MIN_SPACING: usize = 8;

/// Where each lifeline stands, and how wide a label may be.
struct Layout {
    /// The server's lifeline, after what `--time` and `--frames` put first.
    server: usize,
    /// One column per party, in the order of [`parties`].
    clients: Vec<usize>,
    label: usize,
    /// The widest name the header shows; a longer one keeps its end: `..laptop-1`.
    name: usize,
}

impl Layout {
    fn new(entries: &[Entry], parties: &[Party], format: Format) -> Layout {
        let server = prefix_width(format) + "server".len() / 2;
        let longest_name = parties.iter().map(|p| p.name.chars().count()).max();
        let longest_name = longest_name.unwrap_or(0).max(MIN_SPACING - 2);
        // The last lifeline such that a name centred on it still fits, and a round trip after it.
        let rightmost = |name: usize| {
            let rightmost = WIDTH - (name - name / 2);
            if format.time {
                rightmost.min(WIDTH - 3 - ROUND_TRIP_WIDTH)
            } else {
                rightmost
            }
        };
        let others = parties.len().saturating_sub(1);
        let room = |spacing: usize| {
            let name = longest_name.min(spacing - 1);
            rightmost(name).saturating_sub(spacing * others + server + ARROW_PARTS)
        };
        // Names whole, if that leaves labels their room; else the clients closer together.
        let spacing = (MIN_SPACING..=longest_name + 2)
            .rev()
            .find(|&spacing| room(spacing) >= MIN_LABEL)
            .unwrap_or(MIN_SPACING);
        let longest_label = entries
            .iter()
            .map(|entry| label(&entry.event, usize::MAX).chars().count());
        let label = longest_label
            .max()
            .unwrap_or(0)
            .min(room(spacing).max(MIN_LABEL));
        let first = server + ARROW_PARTS + label;
        let clients = (0..parties.len()).map(|k| first + k * spacing).collect();
        Layout {
            server,
            clients,
            label,
            name: spacing - 1,
        }
    }

    fn right(&self) -> usize {
        self.clients.last().copied().unwrap_or(self.server)
    }
}

/// Columns an arrow takes besides its label: the server's lifeline, `<-- ` before the label, and
/// at least ` -----` after it (` ---->` towards the client), so that its end stands out.
const ARROW_PARTS: usize = 11;

fn prefix_width(format: Format) -> usize {
    usize::from(format.time) * 11 + usize::from(format.frames) * 7
}

/// The conversation as a ladder, each row ending in `\n`.
pub fn ladder(entries: &[Entry], format: Format) -> String {
    let parties = parties(entries);
    let layout = Layout::new(entries, &parties, format);
    let pairings = pair_upcalls(entries);
    let mut out = String::new();

    let mut header = Vec::new();
    put(&mut header, layout.server - "server".len() / 2, "server");
    for (party, &column) in parties.iter().zip(&layout.clients) {
        let name = shown_name(&party.name, layout.name);
        put(&mut header, column - name.chars().count() / 2, &name);
    }
    push_row(&mut out, &header);

    for (index, entry) in entries.iter().enumerate() {
        let mut row = vec![' '; layout.right() + 1];
        put(&mut row, 0, &prefix(entry, format));
        row[layout.server] = '|';
        let mut client = layout.server;
        for (party, &column) in parties.iter().zip(&layout.clients) {
            if (party.first..=party.last).contains(&index) {
                row[column] = '|';
            }
            if party.connection == entry.connection {
                client = column;
            }
        }
        // An arrow to a farther client has the room of the lifelines it crosses too.
        let room = client.saturating_sub(layout.server + ARROW_PARTS);
        let arrow = arrow(
            entry.direction,
            &label(&entry.event, room.max(layout.label)),
            client - layout.server - 1,
        );
        put(&mut row, layout.server + 1, &arrow);
        if format.time {
            if let Some(pairing) = pairing_of(&pairings, entry) {
                let round_trip = match pairing.took {
                    Some(took) => format!("rtt {}", duration_text(took)),
                    None => "no answer".to_string(),
                };
                row.truncate(layout.right() + 3);
                row.resize(layout.right() + 3, ' ');
                row.extend(round_trip.chars());
            }
        }
        push_row(&mut out, &row);
    }
    out
}

/// The inside of an arrow, `inside` characters between the two lifelines: `<-- label ----` from
/// the client, `--- label --->` to it.
fn arrow(direction: Direction, label: &str, inside: usize) -> String {
    let start = match direction {
        Direction::ClientToServer => "<-- ",
        Direction::ServerToClient => "--- ",
    };
    let mut text = format!("{start}{label} ");
    let used = text.chars().count();
    let dashes = inside.saturating_sub(used);
    match direction {
        Direction::ClientToServer => text.extend(std::iter::repeat_n('-', dashes)),
        Direction::ServerToClient => {
            text.extend(std::iter::repeat_n('-', dashes.saturating_sub(1)));
            text.push('>');
        }
    }
    text
}

/// A name in at most `width` characters: whole, or its end after `..` (`..laptop-1`), as the
/// end is what tells clients apart.
fn shown_name(name: &str, width: usize) -> String {
    let length = name.chars().count();
    if length <= width {
        return name.to_string();
    }
    let end: String = name.chars().skip(length + 2 - width).collect();
    format!("..{end}")
}

/// Writes `text` into `row` from column `at`, growing the row if it must.
fn put(row: &mut Vec<char>, at: usize, text: &str) {
    for (offset, c) in text.chars().enumerate() {
        if at + offset >= row.len() {
            row.resize(at + offset + 1, ' ');
        }
        row[at + offset] = c;
    }
}

fn push_row(out: &mut String, row: &[char]) {
    let text: String = row.iter().collect();
    out.push_str(text.trim_end());
    out.push('\n');
}
