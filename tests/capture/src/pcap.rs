//! Reading a capture file: the pcap container, its link type, and every frame handed on to
//! `packet` (to find the TCP segment in it) and `reassembly` (to put the segments back into
//! lines). What can go wrong with a student's file is said in one sentence, with what to do.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::{DataLink, TsResolution};
use upcall::protocol::DEFAULT_MAX_LINE;

use crate::conversation::Conversation;
use crate::packet::{tcp_segment, Link};
use crate::reassembly::Decoder;

/// The first four bytes of a pcapng file (a Section Header Block), the same in either byte order.
pub const PCAPNG_MAGIC: u32 = 0x0A0D_0D0A;

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
