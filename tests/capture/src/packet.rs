//! Inside one captured frame: the link layer, IPv4 or IPv6, and the TCP header, parsed by hand.
//!
//! Link layers: Ethernet (linktype 1, what `tcpdump -i eth0`, `-i br-upcall` and `-i lo` write on
//! Linux), Linux cooked capture v1 and v2 (113 and 276, what `tcpdump -i any` writes), BSD
//! loopback (0 and 108, macOS `lo0`) and raw IP (101, 228, 229). IPv4 fragments are skipped; IPv6
//! extension headers that TCP may follow are stepped over.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
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

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const ACK: u8 = 0x10;

/// The parts of a TCP segment the decoder uses.
#[derive(Debug, Clone)]
pub(crate) struct Segment<'a> {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    pub seq: u32,
    pub flags: u8,
    /// As captured: shorter than sent if the capture's snapshot length cut the packet.
    pub payload: &'a [u8],
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The TCP segment in one captured frame, if it holds one.
pub(crate) fn tcp_segment(link: Link, frame: &[u8]) -> Option<Segment<'_>> {
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
