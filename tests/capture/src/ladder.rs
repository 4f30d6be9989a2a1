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
//! columns. With more clients than fit, lifelines are reused: a connection takes the first one free
//! since the last entry of the connection before it, and when more are open at once than fit,
//! the extras share the rightmost one. A connection on a lifeline it does not name in the header
//! names itself on each of its arrows (`client-9: MSG haii`). So the rows never grow with the
//! number of clients, and a capture of 8,000 connections draws in space linear in its entries.
//! With [`Format::time`] each row starts with the seconds since the first SYN, and each `UPCALL`
//! ends with its round trip, the time until the client's `RETURN` or `FAIL` (`no answer` if none
//! came). The output depends on the capture only, so tests compare it as text.

use std::collections::HashMap;

use crate::conversation::{Direction, Entry};
use crate::text::{label, prefix, Format};
use crate::transcript::{duration_text, index_upcalls, pair_upcalls, pairing_of, parties, Party};

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
    /// One column per lifeline ([`Lanes`]).
    clients: Vec<usize>,
    label: usize,
    /// The widest name the header shows; a longer one keeps its end: `..laptop-1`.
    name: usize,
}

impl Layout {
    fn new(entries: &[Entry], parties: &[Party], lanes: usize, format: Format) -> Layout {
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
        let others = lanes.saturating_sub(1);
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
        let clients = (0..lanes).map(|k| first + k * spacing).collect();
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

/// The most lifelines a ladder draws: as many as leave labels [`MIN_LABEL`] columns (and a round
/// trip its room after the last, when there is one to show).
fn most_lanes(format: Format, round_trips: bool) -> usize {
    let server = prefix_width(format) + "server".len() / 2;
    let right = if format.time && round_trips {
        WIDTH - 3 - ROUND_TRIP_WIDTH
    } else {
        WIDTH - MIN_SPACING / 2
    };
    let room = right.saturating_sub(server + ARROW_PARTS + MIN_LABEL);
    1 + room / MIN_SPACING
}

/// Which lifeline each party stands on.
struct Lanes {
    /// By party, in the order of [`parties`].
    lane: Vec<usize>,
    /// Whether the party is the one its lifeline's header names.
    named: Vec<bool>,
    count: usize,
    /// By lifeline, the entries (first, last) where its parties' lifelines run, in order.
    spans: Vec<Vec<(usize, usize)>>,
}

impl Lanes {
    /// One lifeline per party when they fit; else a party takes the lowest lifeline free since
    /// its last party's last entry, or, with all of them busy, the rightmost.
    fn new(parties: &[Party], most: usize) -> Lanes {
        let mut lane = Vec::with_capacity(parties.len());
        let mut named = Vec::with_capacity(parties.len());
        let mut spans: Vec<Vec<(usize, usize)>> = Vec::new();
        if parties.len() <= most {
            for (k, party) in parties.iter().enumerate() {
                lane.push(k);
                named.push(true);
                spans.push(vec![(party.first, party.last)]);
            }
        } else {
            // Parties in the order they begin; the busy lifelines by when they are free again.
            let mut order: Vec<usize> = (0..parties.len()).collect();
            order.sort_by_key(|&k| parties[k].first);
            lane = vec![0; parties.len()];
            named = vec![false; parties.len()];
            let mut busy_until: Vec<Option<usize>> = Vec::new();
            for k in order {
                let party = &parties[k];
                let free = busy_until
                    .iter()
                    .position(|until| until.is_none_or(|until| until < party.first));
                let chosen = match free {
                    Some(free) => free,
                    None if busy_until.len() < most => {
                        busy_until.push(None);
                        spans.push(Vec::new());
                        named[k] = true;
                        busy_until.len() - 1
                    }
                    None => most - 1,
                };
                lane[k] = chosen;
                let until = busy_until[chosen].map_or(party.last, |u| u.max(party.last));
                busy_until[chosen] = Some(until);
                match spans[chosen].last_mut() {
                    Some(span) if span.1 >= party.first => span.1 = span.1.max(party.last),
                    _ => spans[chosen].push((party.first, party.last)),
                }
            }
        }
        let count = spans.len();
        Lanes {
            lane,
            named,
            count,
            spans,
        }
    }
}

/// The conversation as a ladder, each row ending in `\n`.
pub fn ladder(entries: &[Entry], format: Format) -> String {
    let parties = parties(entries);
    let pairings = pair_upcalls(entries);
    let lanes = Lanes::new(&parties, most_lanes(format, !pairings.is_empty()));
    let layout = Layout::new(entries, &parties, lanes.count, format);
    let upcalls = index_upcalls(&pairings);
    let by_connection: HashMap<usize, usize> = parties
        .iter()
        .enumerate()
        .map(|(k, party)| (party.connection, k))
        .collect();
    let mut out = String::new();

    let mut header = Vec::new();
    put(&mut header, layout.server - "server".len() / 2, "server");
    for (k, party) in parties.iter().enumerate() {
        if lanes.named[k] {
            let column = layout.clients[lanes.lane[k]];
            let name = shown_name(&party.name, layout.name);
            put(&mut header, column - name.chars().count() / 2, &name);
        }
    }
    push_row(&mut out, &header);

    // Per lifeline, the span that the row may be in.
    let mut span_at = vec![0; lanes.count];
    for (index, entry) in entries.iter().enumerate() {
        let mut row = vec![' '; layout.right() + 1];
        put(&mut row, 0, &prefix(entry, format));
        row[layout.server] = '|';
        for (lane, spans) in lanes.spans.iter().enumerate() {
            while spans.get(span_at[lane]).is_some_and(|span| span.1 < index) {
                span_at[lane] += 1;
            }
            if spans.get(span_at[lane]).is_some_and(|span| span.0 <= index) {
                row[layout.clients[lane]] = '|';
            }
        }
        let party = by_connection[&entry.connection];
        let client = layout.clients[lanes.lane[party]];
        // An arrow to a farther client has the room of the lifelines it crosses too.
        let room = client.saturating_sub(layout.server + ARROW_PARTS);
        let room = room.max(layout.label);
        let text = if lanes.named[party] {
            label(&entry.event, room)
        } else {
            let name = &parties[party].name;
            let room = room.saturating_sub(name.chars().count() + 2);
            format!("{name}: {}", label(&entry.event, room))
        };
        let arrow = arrow(entry.direction, &text, client - layout.server - 1);
        put(&mut row, layout.server + 1, &arrow);
        if format.time {
            if let Some(pairing) = pairing_of(&upcalls, entry) {
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
