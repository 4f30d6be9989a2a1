//! The `upcall/1` side of a conversation, beyond single lines: which client each connection is
//! (the id its `WELCOME` gave it), the fields of each message by the names the Wireshark dissector
//! uses, and which `RETURN` or `FAIL` answers which `UPCALL`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use upcall::protocol::Message;

use crate::conversation::{Direction, Entry, Event};

/// The `upcall/1` fields of a message, by the names the Wireshark dissector gives them
/// (`upcall.verb`, `upcall.id`, ...), in the order the dissector adds them. The text fields are
/// there even when empty, as in the dissector.
pub fn message_fields(message: &Message) -> Vec<(&'static str, String)> {
    let mut fields = vec![("upcall.verb", message.verb().to_string())];
    match message {
        Message::Welcome { client_id } => fields.push(("upcall.client_id", client_id.clone())),
        Message::Registered { callback } | Message::Register { callback } => {
            fields.push(("upcall.callback", callback.clone()));
        }
        Message::Upcall {
            id,
            callback,
            argument,
        } => {
            fields.push(("upcall.id", id.to_string()));
            fields.push(("upcall.callback", callback.clone()));
            fields.push(("upcall.argument", argument.clone()));
        }
        Message::Err { reason } => fields.push(("upcall.reason", reason.clone())),
        Message::Bye => {}
        Message::Msg { text } => fields.push(("upcall.text", text.clone())),
        Message::Return { id, value } => {
            fields.push(("upcall.id", id.to_string()));
            fields.push(("upcall.value", value.clone()));
        }
        Message::Fail { id, reason } => {
            fields.push(("upcall.id", id.to_string()));
            fields.push(("upcall.reason", reason.clone()));
        }
    }
    fields
}

/// An `UPCALL` and the first `RETURN` or `FAIL` with its id on the same connection after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub connection: usize,
    pub id: u64,
    /// The frame of the `UPCALL` (an index into the entries would not survive a reformat).
    pub request_frame: u64,
    /// The frame of the answer, if there is one.
    pub response_frame: Option<u64>,
    /// How long the client took: from the `UPCALL`'s frame to its answer's.
    pub took: Option<Duration>,
}

/// Pairs every `UPCALL` with its answer, in the order of the `UPCALL`s.
pub fn pair_upcalls(entries: &[Entry]) -> Vec<Pairing> {
    let mut pairings: Vec<(Pairing, Duration)> = Vec::new();
    // (connection, id) -> index in `pairings` of the UPCALL still waiting for its answer.
    let mut waiting: HashMap<(usize, u64), usize> = HashMap::new();
    for entry in entries {
        let Event::Line {
            message: Ok(message),
            ..
        } = &entry.event
        else {
            continue;
        };
        match message {
            Message::Upcall { id, .. } => {
                let key = (entry.connection, *id);
                // A second UPCALL with the same id (the server never sends one) keeps the first.
                if let std::collections::hash_map::Entry::Vacant(slot) = waiting.entry(key) {
                    slot.insert(pairings.len());
                    pairings.push((
                        Pairing {
                            connection: entry.connection,
                            id: *id,
                            request_frame: entry.frame,
                            response_frame: None,
                            took: None,
                        },
                        entry.time,
                    ));
                }
            }
            Message::Return { id, .. } | Message::Fail { id, .. } => {
                let key = (entry.connection, *id);
                if let Some(&index) = waiting.get(&key) {
                    let (pairing, sent) = &mut pairings[index];
                    if pairing.response_frame.is_none() {
                        pairing.response_frame = Some(entry.frame);
                        pairing.took = Some(entry.time.saturating_sub(*sent));
                    }
                }
            }
            _ => {}
        }
    }
    pairings.into_iter().map(|(pairing, _)| pairing).collect()
}

/// The id each connection's client was given: the first `WELCOME` the server sent on it
/// (`client-1`), by connection number. A connection without one (the capture began after it, or
/// the client left before the server spoke) is not in the map. The Wireshark dissector names
/// the clients by the same rule (`upcall.client`).
pub fn client_names(entries: &[Entry]) -> BTreeMap<usize, String> {
    let mut names = BTreeMap::new();
    for entry in entries {
        if let Event::Line {
            message: Ok(Message::Welcome { client_id }),
            ..
        } = &entry.event
        {
            if entry.direction == Direction::ServerToClient {
                names
                    .entry(entry.connection)
                    .or_insert_with(|| client_id.clone());
            }
        }
    }
    names
}

/// One side of a conversation besides the server: a connection, under the name of its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub connection: usize,
    /// The id from the connection's `WELCOME` (`client-1`), else `c3` for connection 3. If two
    /// connections got the same id (the server restarted during the capture), the later ones
    /// say which connection they are: `client-1 (c3)`.
    pub name: String,
    /// The indexes of the connection's first and last entries: where its lifeline begins and ends.
    pub first: usize,
    pub last: usize,
}

/// Every connection that has entries, in the order of their numbers.
pub fn parties(entries: &[Entry]) -> Vec<Party> {
    let names = client_names(entries);
    let mut parties: BTreeMap<usize, Party> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        parties
            .entry(entry.connection)
            .and_modify(|party| party.last = index)
            .or_insert_with(|| Party {
                connection: entry.connection,
                name: String::new(),
                first: index,
                last: index,
            });
    }
    let mut taken = BTreeSet::new();
    let mut parties: Vec<Party> = parties.into_values().collect();
    for party in &mut parties {
        let number = party.connection;
        party.name = match names.get(&number) {
            Some(name) if taken.insert(name.clone()) => name.clone(),
            Some(name) => format!("{name} (c{number})"),
            None => format!("c{number}"),
        };
    }
    parties
}

/// The pairings by their `UPCALL`'s connection, id and frame, so that [`pairing_of`] finds one
/// at once (a capture of thousands of connections has thousands of them).
pub type UpcallIndex<'a> = HashMap<(usize, u64, u64), &'a Pairing>;

/// The index of `pairings` for [`pairing_of`].
pub fn index_upcalls(pairings: &[Pairing]) -> UpcallIndex<'_> {
    pairings
        .iter()
        .map(|pairing| {
            (
                (pairing.connection, pairing.id, pairing.request_frame),
                pairing,
            )
        })
        .collect()
}

/// The pairing of an `UPCALL` entry with its answer; `None` for any other entry.
pub fn pairing_of<'a>(index: &UpcallIndex<'a>, entry: &Entry) -> Option<&'a Pairing> {
    let Event::Line {
        message: Ok(Message::Upcall { id, .. }),
        ..
    } = &entry.event
    else {
        return None;
    };
    index.get(&(entry.connection, *id, entry.frame)).copied()
}

/// A round trip for people: `0.312 ms`, `42.120 ms`, `1.501 s`.
pub fn duration_text(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
    } else {
        format!("{:.3} s", duration.as_secs_f64())
    }
}
