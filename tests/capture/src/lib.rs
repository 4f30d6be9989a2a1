//! Reads a packet capture and gives back the `upcall/1` conversation in it, line by line; shows
//! it as text, as a ladder (a sequence diagram) or as Mermaid; writes small captures for tests.
//!
//! This is development support, apart from the programs: the `upcall` crate stays std-only, and
//! this crate (a dev-dependency of it) is the one place that uses `pcap-file`, to read and write
//! the pcap container. Everything inside the packets is parsed by hand. It serves:
//!
//! - `tests/pcaps.rs`: every reference capture in `pcaps/` decodes to the `.txt` beside it;
//! - `tests/diagrams.rs`: the ladders and Mermaid diagrams, and the READMEs that show them;
//! - `tests/tshark.rs`: Wireshark's view (the Lua dissector `pcaps/upcall.lua`) agrees with this one;
//! - `tests/captures.rs`: today's programs still say what the reference captures say;
//! - `examples/decode.rs`: a student's own capture, printed in the format of the reference `.txt`.
//!
//! # The files, in the order a capture goes through them
//!
//! | module | its job |
//! |---|---|
//! | [`conversation`] | what a decoded capture is: [`Entry`]s in capture order |
//! | [`pcap`] | the pcap file: header, link type, frames; errors in one sentence |
//! | `packet` | inside a frame: link layer, IPv4/IPv6, the TCP header |
//! | `reassembly` | TCP segments back into byte streams, streams cut into lines |
//! | [`transcript`] | who each client is, the fields of a message, which answer goes with which `UPCALL` |
//! | [`text`] | the `.txt` format: `c1 C>S MSG haii` |
//! | [`ladder`](mod@ladder) | the conversation as a text sequence diagram |
//! | [`mermaid`](mod@mermaid) | the same diagram as a Mermaid `sequenceDiagram` |
//! | [`cli`](mod@cli) | the command line of `examples/decode.rs` |
//! | [`synth`] | writing captures for tests, packet by packet |
//!
//! # The text format (the `.txt` beside each reference capture)
//!
//! [`format_conversation`] writes one entry per line:
//!
//! ```text
//! c1 C>S [connect]
//! c1 S>C WELCOME client-1 upcall/1
//! c1 C>S REGISTER on_event
//! c1 S>C REGISTERED on_event
//! c1 C>S MSG haii
//! c1 S>C UPCALL 1 on_event Upcall event: Processing haii
//! c1 C>S RETURN 1 ok
//! c1 C>S [bad line: line is not valid UTF-8] "MSG caf\xe9"
//! c1 S>C ERR line is not valid UTF-8
//! c1 C>S BYE
//! c1 S>C BYE
//! c1 S>C [close]
//! c1 C>S [close]
//! ```
//!
//! `c1`, `c2`, ... number the connections in the order their first packet (the SYN) was captured;
//! `C>S` is client to server, `S>C` server to client. A valid line is printed exactly as it was
//! sent, without its `\n` (or `\r\n`: the protocol treats both alike). Everything that is not a
//! valid line is in square brackets, so it can never be mistaken for one (a line starts with a
//! verb): a bad line shows the parser's error and the bytes, escaped (`\xNN` for a byte that is
//! not UTF-8, `\t`, `\r`, `\"`, `\\`; longer than 80 bytes, it is cut and its length given).
//!
//! What is left out, so that a capture taken on another day, machine or interface gives the same
//! text when the same things were said: the client's port and the addresses (a connection is
//! `c1`), sequence numbers, segment sizes (a line is a line however TCP cut it), ACK-only
//! packets, retransmissions, and the time. [`Format`] can add the time since the first SYN and the
//! frame number (what Wireshark's "No." column shows). What stays is the order of the entries, which
//! is the order in which the lines were completed on the wire: two sides talking at once (a client
//! sending a `MSG` while the server already sends it an upcall) can interleave differently from one
//! run to the next, and that is a real difference of the run.

use std::path::{Path, PathBuf};

pub mod cli;
pub mod conversation;
pub mod ladder;
pub mod mermaid;
mod packet;
pub mod pcap;
mod reassembly;
pub mod synth;
pub mod text;
pub mod transcript;

pub use cli::{cli, CliOutcome, USAGE};
pub use conversation::{Conversation, Cut, Direction, Entry, Event};
pub use ladder::ladder;
pub use mermaid::mermaid;
pub use pcap::{decode, decode_file, DecodeError, PCAPNG_MAGIC};
pub use text::{escape_bytes, format_conversation, format_entry, Format, SHOWN_BYTES};
pub use transcript::{client_names, message_fields, pair_upcalls, Pairing};

/// Every checked-in capture below `root` (the repository): the `.pcap` files of `pcaps/` (the
/// reference captures) and `tests/data/` (captures taken on loopback and with `-i any`), in name
/// order. A `.pcapng` there is a mistake (the decoder and the README ask for classic pcap), so it
/// fails loudly.
pub fn checked_in_captures(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["pcaps", "tests/data"] {
        let Ok(listing) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            assert_ne!(
                extension,
                "pcapng",
                "{}: captures here are classic pcap (`tcpdump -w`, or `editcap -F pcap`)",
                path.display()
            );
            if extension == "pcap" {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
