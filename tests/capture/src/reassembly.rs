//! TCP reassembly: the segments of each direction of each connection put back into one byte
//! stream by sequence number, and the stream cut into lines.
//!
//! A segment sent twice is used once, one that arrives early waits for the bytes before it, a
//! line split over several segments is joined, and several lines in one segment are split. The
//! bytes are cut at `\n` exactly as `upcall::framing` does, and each line goes through the
//! crate's own [`upcall::protocol::parse`]. Bytes that were never captured become a `[gap]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use upcall::protocol::{self, ProtocolError};

use crate::conversation::{Conversation, Cut, Direction, Entry, Event};
use crate::packet::{Segment, ACK, FIN, RST, SYN};

/// An entry before its time is made relative, and with its place in the order of emission.
struct Pending {
    time: Duration,
    entry: Entry,
}

/// Bytes that arrived before the ones in front of them.
#[derive(Debug)]
struct Early {
    bytes: Vec<u8>,
    frame: u64,
    time: Duration,
}

/// One direction of one connection: a byte stream, cut into lines.
#[derive(Debug, Default)]
struct Flow {
    /// The sequence number of the first byte of data (the SYN's plus one).
    base: Option<u32>,
    /// Bytes of the stream delivered so far (so `base + next` is the next sequence number).
    next: u64,
    /// Segments that start after `next`, by their offset in the stream.
    early: BTreeMap<u64, Early>,
    /// The line being collected.
    line: Vec<u8>,
    /// The stream offset of the FIN, once one was seen.
    fin_at: Option<u64>,
    closed: bool,
    reset: bool,
    /// The last frame that delivered bytes, and its time.
    last_frame: u64,
    last_time: Duration,
}

/// Where one line or event goes once it is known.
struct Sink<'a> {
    out: &'a mut Vec<Pending>,
    connection: usize,
    direction: Direction,
    max_line: usize,
}

impl Sink<'_> {
    fn push(&mut self, frame: u64, time: Duration, event: Event) {
        self.out.push(Pending {
            time,
            entry: Entry {
                time: Duration::ZERO,
                frame,
                connection: self.connection,
                direction: self.direction,
                event,
            },
        });
    }

    /// One complete line, without its `\n`, framed as `upcall::framing` frames it.
    fn line(&mut self, frame: u64, time: Duration, mut raw: Vec<u8>) {
        // The limit counts the newline; the `\r` before it counts too.
        let too_long = raw.len() >= self.max_line;
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
        let message = if too_long {
            Err(ProtocolError::LineTooLong)
        } else if raw.is_empty() {
            return; // An empty line is ignored.
        } else {
            match std::str::from_utf8(&raw) {
                Ok(text) => protocol::parse(text),
                Err(_) => Err(ProtocolError::InvalidUtf8),
            }
        };
        self.push(frame, time, Event::Line { raw, message });
    }
}

impl Flow {
    /// The offset in the stream of a sequence number, near `next` (so a stream may be longer
    /// than 4 GiB and its sequence numbers wrap); `None` before the first byte.
    fn offset(&self, seq: u32) -> Option<u64> {
        let base = self.base?;
        // Truncating `next` is the point: sequence numbers are `base + next` modulo 2^32.
        let expected = base.wrapping_add(self.next as u32);
        let delta = i64::from(seq.wrapping_sub(expected) as i32);
        u64::try_from(self.next as i64 + delta).ok()
    }

    /// A segment of this direction: its data, and its FIN.
    fn segment(&mut self, sink: &mut Sink, frame: u64, time: Duration, segment: &Segment) {
        if self.base.is_none() {
            // No SYN seen (the capture began mid-connection): start at this segment.
            self.base = Some(segment.seq);
        }
        let data_seq = segment
            .seq
            .wrapping_add(u32::from(segment.flags & SYN != 0));
        let Some(mut start) = self.offset(data_seq) else {
            return;
        };
        let mut bytes = segment.payload;
        if segment.flags & FIN != 0 && self.fin_at.is_none() {
            self.fin_at = Some(start + bytes.len() as u64);
        }
        if !bytes.is_empty() {
            if start < self.next {
                // Some or all of it was delivered already: a retransmission.
                let seen = (self.next - start).min(bytes.len() as u64);
                bytes = &bytes[seen as usize..];
                start += seen;
            }
            if !bytes.is_empty() {
                if start == self.next {
                    self.deliver(sink, frame, time, bytes);
                    self.deliver_early(sink);
                } else {
                    // Early: keep the longest copy of what starts there.
                    let keep = self
                        .early
                        .get(&start)
                        .is_none_or(|early| early.bytes.len() < bytes.len());
                    if keep {
                        self.early.insert(
                            start,
                            Early {
                                bytes: bytes.to_vec(),
                                frame,
                                time,
                            },
                        );
                    }
                }
            }
        }
        self.close_if_complete(sink, frame, time);
    }

    /// Delivers the early segments that `next` has reached.
    fn deliver_early(&mut self, sink: &mut Sink) {
        while let Some(entry) = self.early.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let early = entry.remove();
            let end = start + early.bytes.len() as u64;
            if end > self.next {
                let from = (self.next - start) as usize;
                // The line completes with the frame that filled the hole, not the early one.
                let frame = early.frame.max(self.last_frame);
                let time = early.time.max(self.last_time);
                self.deliver(sink, frame, time, &early.bytes[from..]);
            }
        }
    }

    fn deliver(&mut self, sink: &mut Sink, frame: u64, time: Duration, bytes: &[u8]) {
        self.next += bytes.len() as u64;
        self.last_frame = frame;
        self.last_time = time;
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..newline]);
            sink.line(frame, time, std::mem::take(&mut self.line));
            rest = &rest[newline + 1..];
        }
        self.line.extend_from_slice(rest);
    }

    fn close_if_complete(&mut self, sink: &mut Sink, frame: u64, time: Duration) {
        if let Some(fin_at) = self.fin_at {
            if !self.closed && self.next >= fin_at {
                self.closed = true;
                self.unfinished(sink, frame, time, Cut::Close);
                sink.push(frame, time, Event::Close);
            }
        }
    }

    fn unfinished(&mut self, sink: &mut Sink, frame: u64, time: Duration, cut: Cut) {
        if !self.line.is_empty() {
            let raw = std::mem::take(&mut self.line);
            sink.push(frame, time, Event::Unfinished { raw, cut });
        }
    }

    /// The end of the capture: whatever is still waiting behind a hole is delivered after it.
    fn finish(&mut self, sink: &mut Sink) {
        while let Some((&start, early)) = self.early.first_key_value() {
            let (frame, time) = (early.frame, early.time);
            if start > self.next {
                self.unfinished(sink, self.last_frame, self.last_time, Cut::Gap);
                sink.push(
                    frame,
                    time,
                    Event::Gap {
                        missing: start - self.next,
                    },
                );
                self.next = start;
                self.last_frame = frame;
                self.last_time = time;
            }
            self.deliver_early(sink);
        }
        if let Some(fin_at) = self.fin_at {
            if !self.closed && fin_at > self.next {
                self.unfinished(sink, self.last_frame, self.last_time, Cut::Gap);
                sink.push(
                    self.last_frame,
                    self.last_time,
                    Event::Gap {
                        missing: fin_at - self.next,
                    },
                );
                self.next = fin_at;
            }
            let (frame, time) = (self.last_frame, self.last_time);
            self.close_if_complete(sink, frame, time);
        }
        let cut = if self.reset {
            Cut::Close
        } else {
            Cut::EndOfCapture
        };
        self.unfinished(sink, self.last_frame, self.last_time, cut);
    }
}

#[derive(Debug)]
struct Connection {
    index: usize,
    /// The client's initial sequence number, if its SYN was captured.
    isn: Option<u32>,
    to_server: Flow,
    to_client: Flow,
}

impl Connection {
    fn flow(&mut self, direction: Direction) -> &mut Flow {
        match direction {
            Direction::ClientToServer => &mut self.to_server,
            Direction::ServerToClient => &mut self.to_client,
        }
    }

    fn ended(&self) -> bool {
        let flows = [&self.to_server, &self.to_client];
        flows.iter().any(|flow| flow.reset) || flows.iter().all(|flow| flow.fin_at.is_some())
    }
}

/// (client address, client port, server address, server port)
type Key = (IpAddr, u16, IpAddr, u16);

pub(crate) struct Decoder {
    port: u16,
    max_line: usize,
    connections: Vec<Connection>,
    /// The connection now using each address pair (a pair may be used again later).
    current: HashMap<Key, usize>,
    out: Vec<Pending>,
    /// The time of the first SYN on the port, else of its first segment.
    first_syn: Option<Duration>,
    first_segment: Option<Duration>,
    pub(crate) segments: u64,
    /// Ports that SYNs went to, for the hint when none went to `port`.
    pub(crate) syn_ports: BTreeSet<u16>,
}

impl Decoder {
    pub(crate) fn new(port: u16, max_line: usize) -> Decoder {
        Decoder {
            port,
            max_line,
            connections: Vec::new(),
            current: HashMap::new(),
            out: Vec::new(),
            first_syn: None,
            first_segment: None,
            segments: 0,
            syn_ports: BTreeSet::new(),
        }
    }

    pub(crate) fn segment(&mut self, frame: u64, time: Duration, segment: &Segment) {
        let (direction, key) = if segment.destination_port == self.port {
            let key = (
                segment.source,
                segment.source_port,
                segment.destination,
                segment.destination_port,
            );
            (Direction::ClientToServer, key)
        } else if segment.source_port == self.port {
            let key = (
                segment.destination,
                segment.destination_port,
                segment.source,
                segment.source_port,
            );
            (Direction::ServerToClient, key)
        } else {
            if segment.flags & (SYN | ACK) == SYN {
                self.syn_ports.insert(segment.destination_port);
            }
            return;
        };
        self.segments += 1;
        self.first_segment.get_or_insert(time);
        let syn = segment.flags & SYN != 0;
        if syn {
            self.first_syn.get_or_insert(time);
        }
        let opening = syn && segment.flags & ACK == 0 && direction == Direction::ClientToServer;

        let existing = self.current.get(&key).copied();
        let index = match existing {
            // The same SYN again (a retransmission, or the same packet seen twice by `-i any`).
            Some(index) if opening && self.connections[index].isn == Some(segment.seq) => index,
            // A new SYN on an address pair used before: a new connection.
            Some(index) if !opening || !self.connections[index].ended() => {
                if opening && self.connections[index].isn.is_none() {
                    self.connections[index].isn = Some(segment.seq);
                }
                index
            }
            _ => {
                let index = self.connections.len();
                self.connections.push(Connection {
                    index: index + 1,
                    isn: opening.then_some(segment.seq),
                    to_server: Flow::default(),
                    to_client: Flow::default(),
                });
                self.current.insert(key, index);
                if opening {
                    self.out.push(Pending {
                        time,
                        entry: Entry {
                            time: Duration::ZERO,
                            frame,
                            connection: index + 1,
                            direction,
                            event: Event::Connect,
                        },
                    });
                }
                index
            }
        };
        let connection = &mut self.connections[index];
        let mut sink = Sink {
            out: &mut self.out,
            connection: connection.index,
            direction,
            max_line: self.max_line,
        };
        let flow = connection.flow(direction);
        if syn {
            if flow.base.is_none() {
                flow.base = Some(segment.seq.wrapping_add(1));
            }
            if segment.payload.is_empty() && segment.flags & FIN == 0 {
                return;
            }
        }
        flow.segment(&mut sink, frame, time, segment);
        if segment.flags & RST != 0 && !flow.reset {
            flow.reset = true;
            sink.push(frame, time, Event::Reset);
        }
    }

    pub(crate) fn finish(mut self, linktype: u32, frames: u64, truncated: bool) -> Conversation {
        for connection in &mut self.connections {
            for direction in [Direction::ClientToServer, Direction::ServerToClient] {
                let mut sink = Sink {
                    out: &mut self.out,
                    connection: connection.index,
                    direction,
                    max_line: self.max_line,
                };
                connection.flow(direction).finish(&mut sink);
            }
        }
        let zero = self.first_syn.or(self.first_segment).unwrap_or_default();
        // Stable: entries of one frame keep the order in which they were found.
        self.out.sort_by_key(|pending| pending.entry.frame);
        let entries = self
            .out
            .into_iter()
            .map(|pending| Entry {
                time: pending.time.saturating_sub(zero),
                ..pending.entry
            })
            .collect();
        Conversation {
            entries,
            linktype,
            frames,
            segments: self.segments,
            connections: self.connections.len(),
            truncated,
            snapped: 0,
        }
    }
}
