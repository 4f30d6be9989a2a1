//! Reads a packet capture and gives back the `upcall/1` conversation in it, line by line.
//!
//! One decoder serves three places, each of which includes this file with
//! `#[path = "..."] mod pcap_decoder;`:
//!
//! - `tests/pcaps.rs`: every reference capture in `pcaps/` decodes to the `.txt` beside it;
//! - `tests/tshark.rs`: Wireshark's view (the Lua dissector `pcaps/upcall.lua`) agrees with this one;
//! - `examples/decode.rs`: a student's own capture, printed in the format of the reference `.txt`.
//!
//! It is test code: the crate itself stays std-only, and only `pcap-file` (a dev-dependency) is used
//! here, to read and write the pcap container. Everything inside the packets is parsed by hand:
//!
//! - link layers: Ethernet (linktype 1, what `tcpdump -i eth0`, `-i br-upcall` and `-i lo` write
//!   on Linux), Linux cooked capture v1 and v2 (113 and 276, what `tcpdump -i any` writes), BSD
//!   loopback (0 and 108, macOS `lo0`) and raw IP (101, 228, 229);
//! - IPv4 (fragments are skipped) and IPv6 (with the common extension headers);
//! - TCP, reassembled by sequence number for each direction of each connection: a segment sent
//!   twice is used once, one that arrives early waits for the bytes before it, a line split over
//!   several segments is joined, and several lines in one segment are split.
//!
//! The bytes of each direction are cut at `\n` exactly as `upcall::framing` does, and each line
//! goes through the crate's own [`upcall::protocol::parse`]. The result is a list of [`Entry`]s in
//! capture order: lines, and the moments a connection opened (`[connect]`, the client's SYN),
//! closed (`[close]`, a FIN, once the bytes before it are in) or was reset (`[reset]`).
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
//! is the order in which the lines were completed on the wire: two sides talking at once (the
//! client sending its three `REGISTER`s while the server already answers the first) can interleave
//! differently from one run to the next, and that is a real difference of the run.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::{DataLink, TsResolution};
use upcall::protocol::{self, Message, ProtocolError, DEFAULT_MAX_LINE, DEFAULT_PORT};

/// The first four bytes of a pcapng file (a Section Header Block), the same in either byte order.
pub const PCAPNG_MAGIC: u32 = 0x0A0D_0D0A;

/// A bad line longer than this is shown cut, with its length.
pub const SHOWN_BYTES: usize = 80;

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

/// Why a file could not be decoded. Each says what is wrong and what to do, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The file could not be read.
    Io { path: String, error: String },
    /// A pcapng file (magic 0x0A0D0D0A): this decoder reads classic pcap only.
    Pcapng { path: String },
    /// Neither pcap nor pcapng.
    NotPcap { path: String, start: Vec<u8> },
    /// A pcap whose header `pcap-file` refused.
    BadHeader { path: String, error: String },
    /// A link type this decoder does not take apart.
    UnsupportedLinkType { path: String, linktype: u32 },
    /// No TCP segment to or from the port. `other_ports` are the ports that SYNs in the file
    /// went to, as a hint.
    NoTraffic {
        path: String,
        port: u16,
        other_ports: Vec<u16>,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Io { path, error } => write!(f, "cannot read {path}: {error}."),
            DecodeError::Pcapng { path } => write!(
                f,
                "{path} is a pcapng file, and this decoder reads classic pcap only: capture with \
                 `tcpdump -w FILE.pcap` (its default format), or convert this one with \
                 `editcap -F pcap {path} FILE.pcap`."
            ),
            DecodeError::NotPcap { path, start } if start.is_empty() => write!(
                f,
                "{path} is empty, not a pcap file: give the file that `tcpdump -w` wrote."
            ),
            DecodeError::NotPcap { path, start } => {
                let start: Vec<String> = start.iter().map(|b| format!("{b:02x}")).collect();
                write!(
                    f,
                    "{path} is not a pcap file (it starts with the bytes {}): give the file \
                     that `tcpdump -w` wrote.",
                    start.join(" ")
                )
            }
            DecodeError::BadHeader { path, error } => write!(
                f,
                "{path} has a pcap header this decoder cannot read ({error}): give the file \
                 that `tcpdump -w` wrote."
            ),
            DecodeError::UnsupportedLinkType { path, linktype } => write!(
                f,
                "{path} has link type {linktype}, which this decoder does not read: capture on \
                 an Ethernet interface, on lo, or with `-i any` (link types 1, 113 and 276)."
            ),
            DecodeError::NoTraffic {
                path,
                port,
                other_ports,
            } => {
                write!(f, "{path} holds no TCP traffic on port {port}")?;
                if other_ports.is_empty() {
                    write!(
                        f,
                        ": capture with the filter `tcp port {port}` while the client talks to \
                         the server."
                    )
                } else {
                    let ports: Vec<String> = other_ports.iter().map(u16::to_string).collect();
                    write!(
                        f,
                        " (its connections go to port {}): give the server's port with \
                         `--port {}`.",
                        ports.join(", "),
                        other_ports[0]
                    )
                }
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads and decodes a capture file.
pub fn decode_file(path: &Path, port: u16) -> Result<Conversation, DecodeError> {
    let bytes = std::fs::read(path).map_err(|error| DecodeError::Io {
        path: path.display().to_string(),
        error: error.to_string(),
    })?;
    decode(&bytes, port, &path.display().to_string())
}

/// Decodes a capture held in memory. `name` is only used in error messages.
pub fn decode(bytes: &[u8], port: u16, name: &str) -> Result<Conversation, DecodeError> {
    let path = name.to_string();
    let magic = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    match magic {
        Some(PCAPNG_MAGIC) => return Err(DecodeError::Pcapng { path }),
        Some(0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1) if bytes.len() >= 24 => {}
        _ => {
            return Err(DecodeError::NotPcap {
                path,
                start: bytes.iter().take(4).copied().collect(),
            })
        }
    }
    let mut reader = PcapReader::new(bytes).map_err(|error| DecodeError::BadHeader {
        path: path.clone(),
        error: error.to_string(),
    })?;
    let header = reader.header();
    let linktype: u32 = header.datalink.into();
    let link = match header.datalink {
        DataLink::ETHERNET => Link::Ethernet,
        DataLink::LINUX_SLL => Link::Sll,
        DataLink::LINUX_SLL2 => Link::Sll2,
        DataLink::NULL | DataLink::LOOP => Link::BsdLoopback,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::RawIp,
        _ => return Err(DecodeError::UnsupportedLinkType { path, linktype }),
    };
    let nanoseconds = header.ts_resolution == TsResolution::NanoSecond;

    let mut decoder = Decoder::new(port, DEFAULT_MAX_LINE);
    let mut frame = 0;
    let mut truncated = false;
    let mut snapped = 0;
    while let Some(packet) = reader.next_raw_packet() {
        // A damaged record can only be the last one (a capture cut short): keep what came before.
        let Ok(packet) = packet else {
            truncated = true;
            break;
        };
        frame += 1;
        if packet.incl_len < packet.orig_len {
            snapped += 1;
        }
        let fraction = if nanoseconds {
            packet.ts_frac
        } else {
            packet.ts_frac.saturating_mul(1000)
        };
        let time = Duration::new(u64::from(packet.ts_sec), fraction.min(999_999_999));
        if let Some(segment) = tcp_segment(link, &packet.data) {
            decoder.segment(frame, time, &segment);
        }
    }
    if decoder.segments == 0 {
        return Err(DecodeError::NoTraffic {
            path,
            port,
            other_ports: decoder.syn_ports.into_iter().collect(),
        });
    }
    let mut conversation = decoder.finish(linktype, frame, truncated);
    conversation.snapped = snapped;
    Ok(conversation)
}

/// Every checked-in capture: the `.pcap` files of `pcaps/` (the reference captures) and
/// `tests/data/` (captures taken on loopback and with `-i any`), in name order. A `.pcapng` there
/// is a mistake (the decoder and the README ask for classic pcap), so it fails loudly.
pub fn checked_in_captures() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
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
    let mut text = String::new();
    if format.time {
        let _ = write!(text, "{:10.6} ", entry.time.as_secs_f64());
    }
    if format.frames {
        let frame = format!("#{}", entry.frame);
        let _ = write!(text, "{frame:<6} ");
    }
    let _ = write!(text, "c{} {} ", entry.connection, entry.direction.arrow());
    match &entry.event {
        Event::Connect => text.push_str("[connect]"),
        Event::Close => text.push_str("[close]"),
        Event::Reset => text.push_str("[reset]"),
        Event::Gap { missing } => {
            let _ = write!(text, "[gap: {missing} bytes not captured]");
        }
        Event::Line {
            raw,
            message: Ok(_),
        } => text.push_str(&String::from_utf8_lossy(raw)),
        Event::Line {
            raw,
            message: Err(error),
        } => {
            let _ = write!(text, "[bad line: {error}] {}", shown(raw));
        }
        Event::Unfinished { raw, cut } => {
            let why = match cut {
                Cut::Close => "no newline before the close",
                Cut::Gap => "the rest was not captured",
                Cut::EndOfCapture => "the capture ends here",
            };
            let _ = write!(text, "[unfinished line: {why}] {}", shown(raw));
        }
    }
    text
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

// ---------------------------------------------------------------------------------------------
// The command line of `examples/decode.rs`, here so that the tests can run it without a process.

/// The help text of `cargo run --example decode`.
pub const USAGE: &str = "\
decode: prints the upcall/1 conversation in a packet capture, one line per message.

Usage: cargo run --example decode -- [--port N] [--time] [--frames] FILE.pcap

  --port N   the server's TCP port (default 4141)
  --time     start each line with the seconds since the first SYN
  --frames   start each line with its frame number, as Wireshark's \"No.\" column shows it
  --help     this text

The output has the format of the reference files in pcaps/: compare yours with
  cargo run -q --example decode -- my.pcap | diff pcaps/upcall-basic.txt -
Ports, addresses, sequence numbers and times are left out (connections are c1, c2, ... in the
order they opened), so diff shows what was said differently, and lines that crossed on the wire
in another order (clientcall sends its REGISTERs without waiting for the answers). Capture with
  sudo tcpdump -i lo -w my.pcap 'tcp port 4141'
(classic pcap; -i any and Ethernet interfaces work too; a pcapng file is refused).";

/// What the command line printed and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutcome {
    pub stdout: String,
    pub stderr: String,
    /// 0: decoded; 1: the file could not be decoded; 2: a wrong command line.
    pub status: i32,
}

/// Runs the decoder's command line (the arguments without the program name).
pub fn cli(args: &[String]) -> CliOutcome {
    let fail = |status: i32, message: String| CliOutcome {
        stdout: String::new(),
        stderr: format!("decode: {message}\n"),
        status,
    };
    let mut port = DEFAULT_PORT;
    let mut format = Format::default();
    let mut file: Option<&str> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                return CliOutcome {
                    stdout: format!("{USAGE}\n"),
                    stderr: String::new(),
                    status: 0,
                }
            }
            "--time" => format.time = true,
            "--frames" => format.frames = true,
            "--port" => match args.next().map(|value| value.parse::<u16>()) {
                Some(Ok(value)) if value > 0 => port = value,
                _ => return fail(2, "--port wants a TCP port number, such as 4141.".into()),
            },
            flag if flag.starts_with("--") => {
                return fail(2, format!("unknown option `{flag}` (try --help)."))
            }
            path if file.is_none() => file = Some(path),
            _ => return fail(2, "give one capture file (try --help).".into()),
        }
    }
    let Some(file) = file else {
        return fail(2, "give the capture file to decode (try --help).".into());
    };
    match decode_file(Path::new(file), port) {
        Ok(conversation) => {
            let mut stderr = String::new();
            if conversation.truncated {
                stderr = format!(
                    "decode: warning: {file} ends in the middle of a packet (was tcpdump \
                     stopped with Ctrl-C before it finished writing?); decoded what came before.\n"
                );
            }
            if conversation.snapped > 0 {
                stderr.push_str(&format!(
                    "decode: warning: the capture cut {} packet(s) short (tcpdump's -s snapshot \
                     length): capture again without -s, or with -s 0, to see whole lines.\n",
                    conversation.snapped
                ));
            }
            CliOutcome {
                stdout: format_conversation(&conversation.entries, format),
                stderr,
                status: 0,
            }
        }
        Err(error) => fail(1, error.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Link layer, IP, TCP.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    Sll,
    Sll2,
    BsdLoopback,
    RawIp,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The parts of a TCP segment the decoder uses.
#[derive(Debug, Clone)]
struct Segment<'a> {
    source: IpAddr,
    destination: IpAddr,
    source_port: u16,
    destination_port: u16,
    seq: u32,
    flags: u8,
    /// As captured: shorter than sent if the capture's snapshot length cut the packet.
    payload: &'a [u8],
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The TCP segment in one captured frame, if it holds one.
fn tcp_segment(link: Link, frame: &[u8]) -> Option<Segment<'_>> {
    let (ethertype, ip) = match link {
        Link::Ethernet => {
            let mut at = 12;
            let mut ethertype = u16_at(frame, at)?;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                at += 4;
                ethertype = u16_at(frame, at)?;
            }
            (Some(ethertype), frame.get(at + 2..)?)
        }
        // Packet type, ARPHRD type, address length, 8 address bytes, protocol.
        Link::Sll => (Some(u16_at(frame, 14)?), frame.get(16..)?),
        // Protocol, reserved, interface index, ARPHRD type, packet type, address length, address.
        Link::Sll2 => (Some(u16_at(frame, 0)?), frame.get(20..)?),
        // A 4-byte address family in the byte order of the machine that wrote it: look at the IP
        // version instead.
        Link::BsdLoopback => (None, frame.get(4..)?),
        Link::RawIp => (None, frame),
    };
    let version = ip.first()? >> 4;
    match (ethertype, version) {
        (Some(ETHERTYPE_IPV4) | None, 4) => ipv4(ip),
        (Some(ETHERTYPE_IPV6) | None, 6) => ipv6(ip),
        _ => None,
    }
}

fn ipv4(ip: &[u8]) -> Option<Segment<'_>> {
    let header = usize::from(ip.first()? & 0x0F) * 4;
    // 0 in a frame that segmentation offload built and the capture saw before the NIC split it.
    let total = match usize::from(u16_at(ip, 2)?) {
        0 => ip.len(),
        total => total,
    };
    let fragment = u16_at(ip, 6)?;
    // More fragments, or not the first one: TCP traffic on a LAN is never fragmented (PMTU).
    if fragment & 0x3FFF != 0 || *ip.get(9)? != IPPROTO_TCP || header < 20 || total < header {
        return None;
    }
    let source = IpAddr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let destination = IpAddr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    // `total` leaves out the Ethernet padding of short frames; `min` the part not captured.
    let tcp = ip.get(header..total.min(ip.len()))?;
    tcp_header(source, destination, tcp)
}

fn ipv6(ip: &[u8]) -> Option<Segment<'_>> {
    let payload = usize::from(u16_at(ip, 4)?);
    let source = IpAddr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let destination = IpAddr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    let end = (40 + payload).min(ip.len());
    let mut next = *ip.get(6)?;
    let mut at = 40;
    // Hop-by-hop, routing and destination options: skip them. Anything else is not TCP.
    while matches!(next, 0 | 43 | 60) {
        let length = (usize::from(*ip.get(at + 1)?) + 1) * 8;
        next = *ip.get(at)?;
        at += length;
    }
    if next != IPPROTO_TCP {
        return None;
    }
    tcp_header(source, destination, ip.get(at..end)?)
}

fn tcp_header(source: IpAddr, destination: IpAddr, tcp: &[u8]) -> Option<Segment<'_>> {
    let header = usize::from(tcp.get(12)? >> 4) * 4;
    if header < 20 {
        return None;
    }
    Some(Segment {
        source,
        destination,
        source_port: u16_at(tcp, 0)?,
        destination_port: u16_at(tcp, 2)?,
        seq: u32_at(tcp, 4)?,
        flags: *tcp.get(13)?,
        payload: tcp.get(header..).unwrap_or(&[]),
    })
}

// ---------------------------------------------------------------------------------------------
// Reassembly.

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

struct Decoder {
    port: u16,
    max_line: usize,
    connections: Vec<Connection>,
    /// The connection now using each address pair (a pair may be used again later).
    current: HashMap<Key, usize>,
    out: Vec<Pending>,
    /// The time of the first SYN on the port, else of its first segment.
    first_syn: Option<Duration>,
    first_segment: Option<Duration>,
    segments: u64,
    /// Ports that SYNs went to, for the hint when none went to `port`.
    syn_ports: BTreeSet<u16>,
}

impl Decoder {
    fn new(port: u16, max_line: usize) -> Decoder {
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

    fn segment(&mut self, frame: u64, time: Duration, segment: &Segment) {
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

    fn finish(mut self, linktype: u32, frames: u64, truncated: bool) -> Conversation {
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

// ---------------------------------------------------------------------------------------------
// Writing captures, for tests: small conversations built packet by packet.

pub mod synth {
    //! Builds pcap files in memory with `pcap-file`'s writer: Ethernet, SLL or SLL2 frames around
    //! IPv4 (or IPv6) and TCP headers with correct checksums, so Wireshark reads them as it reads
    //! a real capture.

    use std::net::IpAddr;
    use std::time::Duration;

    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};

    pub const FIN: u8 = super::FIN;
    pub const SYN: u8 = super::SYN;
    pub const RST: u8 = super::RST;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = super::ACK;

    /// A capture being written.
    pub struct Capture {
        pub datalink: DataLink,
        pub endianness: Endianness,
        pub ts_resolution: TsResolution,
        /// When the first packet was captured (a Unix time, like a real capture).
        pub start: Duration,
        pub frames: Vec<(Duration, Vec<u8>)>,
    }

    impl Capture {
        pub fn new(datalink: DataLink) -> Capture {
            Capture {
                datalink,
                endianness: Endianness::Little,
                ts_resolution: TsResolution::MicroSecond,
                start: Duration::from_secs(1_700_000_000),
                frames: Vec::new(),
            }
        }

        /// A raw frame at `at` after the start.
        pub fn frame(&mut self, at: Duration, bytes: Vec<u8>) {
            self.frames.push((self.start + at, bytes));
        }

        /// A TCP segment, wrapped in IP and the link layer.
        #[allow(clippy::too_many_arguments)]
        pub fn tcp(
            &mut self,
            at: Duration,
            from: (IpAddr, u16),
            to: (IpAddr, u16),
            seq: u32,
            ack: u32,
            flags: u8,
            payload: &[u8],
        ) {
            let ip = ip_packet(from, to, seq, ack, flags, payload);
            let frame = link_frame(self.datalink, &from.0, &ip);
            self.frame(at, frame);
        }

        /// The pcap file.
        pub fn to_bytes(&self) -> Vec<u8> {
            let header = PcapHeader {
                datalink: self.datalink,
                endianness: self.endianness,
                ts_resolution: self.ts_resolution,
                snaplen: 262_144,
                ..PcapHeader::default()
            };
            let mut writer = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
            for (time, data) in &self.frames {
                let packet = PcapPacket::new(*time, data.len() as u32, data);
                writer.write_packet(&packet).expect("pcap packet");
            }
            writer.into_writer()
        }
    }

    /// One connection of a capture, keeping both sides' sequence numbers and a clock.
    pub struct Talk {
        pub capture: Capture,
        pub client: (IpAddr, u16),
        pub server: (IpAddr, u16),
        /// The next sequence number of each side.
        pub client_seq: u32,
        pub server_seq: u32,
        /// The time of the next packet; each packet advances it by `step`.
        pub now: Duration,
        pub step: Duration,
    }

    impl Talk {
        /// A connection from 172.28.0.20:`client_port` to 172.28.0.10:4141 (the Docker lab's).
        pub fn new(capture: Capture, client_port: u16) -> Talk {
            Talk::between(
                capture,
                ("172.28.0.20".parse().unwrap(), client_port),
                ("172.28.0.10".parse().unwrap(), 4141),
            )
        }

        pub fn between(capture: Capture, client: (IpAddr, u16), server: (IpAddr, u16)) -> Talk {
            Talk {
                capture,
                client,
                server,
                // Near the top of the sequence space, so every test also crosses the wrap.
                client_seq: 0xFFFF_FF00,
                server_seq: 0x1234_5678,
                now: Duration::ZERO,
                step: Duration::from_millis(1),
            }
        }

        fn tick(&mut self) -> Duration {
            let at = self.now;
            self.now += self.step;
            at
        }

        /// SYN, SYN-ACK, ACK.
        pub fn connect(&mut self) {
            let (c, s) = (self.client_seq, self.server_seq);
            let at = self.tick();
            self.capture
                .tcp(at, self.client, self.server, c, 0, SYN, &[]);
            let at = self.tick();
            self.capture.tcp(
                at,
                self.server,
                self.client,
                s,
                c.wrapping_add(1),
                SYN | ACK,
                &[],
            );
            self.client_seq = c.wrapping_add(1);
            self.server_seq = s.wrapping_add(1);
            let at = self.tick();
            self.capture.tcp(
                at,
                self.client,
                self.server,
                self.client_seq,
                self.server_seq,
                ACK,
                &[],
            );
        }

        /// The client sends bytes in one segment.
        pub fn client(&mut self, bytes: &[u8]) -> u32 {
            let seq = self.client_seq;
            self.client_at(seq, bytes);
            self.client_seq = seq.wrapping_add(bytes.len() as u32);
            seq
        }

        /// The server sends bytes in one segment.
        pub fn server(&mut self, bytes: &[u8]) -> u32 {
            let seq = self.server_seq;
            self.server_at(seq, bytes);
            self.server_seq = seq.wrapping_add(bytes.len() as u32);
            seq
        }

        /// A client segment at any sequence number (a retransmission, or one out of order),
        /// without moving the client's next sequence number.
        pub fn client_at(&mut self, seq: u32, bytes: &[u8]) {
            let at = self.tick();
            let ack = self.server_seq;
            self.capture
                .tcp(at, self.client, self.server, seq, ack, PSH | ACK, bytes);
        }

        pub fn server_at(&mut self, seq: u32, bytes: &[u8]) {
            let at = self.tick();
            let ack = self.client_seq;
            self.capture
                .tcp(at, self.server, self.client, seq, ack, PSH | ACK, bytes);
        }

        /// A FIN from the client, then one from the server (each acknowledged).
        pub fn client_closes_first(&mut self) {
            self.fin(true);
            self.fin(false);
        }

        /// A FIN from the server, then one from the client.
        pub fn server_closes_first(&mut self) {
            self.fin(false);
            self.fin(true);
        }

        /// A FIN from one side, and the other side's ACK of it.
        pub fn fin(&mut self, from_client: bool) {
            let at = self.tick();
            let (from, to, seq, ack) = if from_client {
                (self.client, self.server, self.client_seq, self.server_seq)
            } else {
                (self.server, self.client, self.server_seq, self.client_seq)
            };
            self.capture.tcp(at, from, to, seq, ack, FIN | ACK, &[]);
            let at = self.tick();
            let (seq2, ack2) = (ack, seq.wrapping_add(1));
            self.capture.tcp(at, to, from, seq2, ack2, ACK, &[]);
            if from_client {
                self.client_seq = self.client_seq.wrapping_add(1);
            } else {
                self.server_seq = self.server_seq.wrapping_add(1);
            }
        }

        /// A RST from the client.
        pub fn client_resets(&mut self) {
            let at = self.tick();
            let (seq, ack) = (self.client_seq, self.server_seq);
            self.capture
                .tcp(at, self.client, self.server, seq, ack, RST | ACK, &[]);
        }

        pub fn to_bytes(&self) -> Vec<u8> {
            self.capture.to_bytes()
        }
    }

    fn checksum(chunks: &[&[u8]]) -> u16 {
        let mut sum: u32 = 0;
        let mut odd: Option<u8> = None;
        for chunk in chunks {
            for &byte in *chunk {
                match odd.take() {
                    Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                    None => odd = Some(byte),
                }
            }
        }
        if let Some(high) = odd {
            sum += u32::from(u16::from_be_bytes([high, 0]));
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An IPv4 or IPv6 packet (by the addresses) carrying one TCP segment.
    pub fn ip_packet(
        from: (IpAddr, u16),
        to: (IpAddr, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&from.1.to_be_bytes());
        tcp.extend_from_slice(&to.1.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4); // 20-byte header, no options
        tcp.push(flags);
        tcp.extend_from_slice(&64_240u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let tcp_len = tcp.len();
        match (from.0, to.0) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                let pseudo = [
                    &source.octets()[..],
                    &destination.octets()[..],
                    &[0, 6],
                    &(tcp_len as u16).to_be_bytes(),
                ]
                .concat();
                let sum = checksum(&[&pseudo[..], &tcp[..]]);
                tcp[16..18].copy_from_slice(&sum.to_be_bytes());
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]); // id, DF, TTL, TCP
                ip.extend_from_slice(&source.octets());
                ip.extend_from_slice(&destination.octets());
                let sum = checksum(&[&ip[..]]);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                ip.extend_from_slice(&tcp);
                ip
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                let pseudo = [
                    &source.octets()[..],
                    &destination.octets()[..],
                    &(tcp_len as u32).to_be_bytes(),
                    &[0, 0, 0, 6],
                ]
                .concat();
                let sum = checksum(&[&pseudo[..], &tcp[..]]);
                tcp[16..18].copy_from_slice(&sum.to_be_bytes());
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                ip.extend_from_slice(&[6, 64]);
                ip.extend_from_slice(&source.octets());
                ip.extend_from_slice(&destination.octets());
                ip.extend_from_slice(&tcp);
                ip
            }
            _ => panic!("both addresses must be IPv4, or both IPv6"),
        }
    }

    /// The link-layer frame around an IP packet. `from` picks the MAC address (and, for the
    /// cooked captures, whether the packet was outgoing).
    pub fn link_frame(datalink: DataLink, from: &IpAddr, ip: &[u8]) -> Vec<u8> {
        let ethertype: u16 = if ip[0] >> 4 == 6 { 0x86DD } else { 0x0800 };
        let mac = |address: &IpAddr| -> [u8; 6] {
            let last = match address {
                IpAddr::V4(v4) => v4.octets()[3],
                IpAddr::V6(v6) => v6.octets()[15],
            };
            [0x02, 0x42, 0xAC, 0x1C, 0x00, last]
        };
        let source_mac = mac(from);
        let mut frame = Vec::new();
        match datalink {
            DataLink::ETHERNET => {
                frame.extend_from_slice(&[0x02, 0x42, 0xAC, 0x1C, 0x00, 0xFF]);
                frame.extend_from_slice(&source_mac);
                frame.extend_from_slice(&ethertype.to_be_bytes());
            }
            DataLink::LINUX_SLL => {
                frame.extend_from_slice(&0u16.to_be_bytes()); // to us
                frame.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                frame.extend_from_slice(&6u16.to_be_bytes());
                frame.extend_from_slice(&source_mac);
                frame.extend_from_slice(&[0, 0]);
                frame.extend_from_slice(&ethertype.to_be_bytes());
            }
            DataLink::LINUX_SLL2 => {
                frame.extend_from_slice(&ethertype.to_be_bytes());
                frame.extend_from_slice(&[0, 0]); // reserved
                frame.extend_from_slice(&3u32.to_be_bytes()); // interface index
                frame.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                frame.push(0); // to us
                frame.push(6);
                frame.extend_from_slice(&source_mac);
                frame.extend_from_slice(&[0, 0]);
            }
            DataLink::NULL => {
                let family: u32 = if ethertype == 0x86DD { 30 } else { 2 };
                frame.extend_from_slice(&family.to_le_bytes());
            }
            DataLink::RAW => {}
            other => panic!("no frames for {other:?}"),
        }
        frame.extend_from_slice(ip);
        frame
    }
}
