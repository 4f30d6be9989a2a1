//! What a capture holds once decoded: a conversation, as a list of entries in capture order.
//!
//! An [`Entry`] is one line of `upcall/1` (with what the crate's parser made of it) or one moment
//! of a connection's life: opened (`[connect]`, the client's SYN), closed (`[close]`, a FIN, once
//! the bytes before it are in) or reset (`[reset]`). Every other file of this crate either builds
//! these entries (`pcap`, `reassembly`) or shows them (`text`, `ladder`, `mermaid`).

use std::time::Duration;

use upcall::protocol::{Message, ProtocolError};

/// Which way a line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: `C>S`.
    ClientToServer,
    /// Server to client: `S>C`.
    ServerToClient,
}

impl Direction {
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ClientToServer => "C>S",
            Direction::ServerToClient => "S>C",
        }
    }
}

/// Why bytes without a newline were left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The sender closed (FIN) or reset the connection after them.
    Close,
    /// Bytes after them were never captured (see the [`Event::Gap`] that follows).
    Gap,
    /// The capture ends there.
    EndOfCapture,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client's SYN: a connection is being opened. Always `C>S`.
    Connect,
    /// One line, without its `\n` and without a `\r` right before it, and what the crate's parser
    /// made of it. Empty lines are skipped, as the protocol says.
    Line {
        raw: Vec<u8>,
        message: Result<Message, ProtocolError>,
    },
    /// Bytes after the last newline that no newline followed.
    Unfinished { raw: Vec<u8>, cut: Cut },
    /// Bytes of the stream that are not in the capture (tcpdump dropped them, or the capture began
    /// after they were sent and before they were retransmitted).
    Gap { missing: u64 },
    /// A FIN: this side will send nothing more. Shown once every byte before it is in.
    Close,
    /// A RST: this side tore the connection down.
    Reset,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Since the first SYN of the capture (or its first packet on the port, if it has no SYN).
    pub time: Duration,
    /// The frame (packet) number in the capture, from 1, as Wireshark counts: the frame whose
    /// arrival completed this entry (for a line, the one that brought its `\n`).
    pub frame: u64,
    /// The connection, from 1 (`c1`), in the order of their SYNs.
    pub connection: usize,
    pub direction: Direction,
    pub event: Event,
}

/// What a capture held.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub entries: Vec<Entry>,
    /// The pcap's link type (1 Ethernet, 113 SLL, 276 SLL2, ...).
    pub linktype: u32,
    /// Frames in the file.
    pub frames: u64,
    /// TCP segments to or from the server port.
    pub segments: u64,
    pub connections: usize,
    /// The file ends in the middle of a packet (tcpdump was killed while writing): everything up
    /// to that packet was decoded.
    pub truncated: bool,
    /// Frames that the capture's snapshot length (`tcpdump -s`) cut short.
    pub snapped: u64,
}
