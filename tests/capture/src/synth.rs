//! Writing captures, for tests: small conversations built packet by packet. A test that needs a
//! line split over three segments, a retransmission or a reset builds it here, exactly, instead of
//! hoping a real network does it.
//!
//! The files are built in memory with `pcap-file`'s writer: Ethernet, SLL or SLL2 frames around
//! IPv4 (or IPv6) and TCP headers with correct checksums, so Wireshark reads them as it reads
//! a real capture.

use std::net::IpAddr;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
// The settings of a capture's header, for the tests that build one.
pub use pcap_file::{DataLink, Endianness, TsResolution};

pub const FIN: u8 = crate::packet::FIN;
pub const SYN: u8 = crate::packet::SYN;
pub const RST: u8 = crate::packet::RST;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = crate::packet::ACK;

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

    /// The lab's conversation, each line in a segment of its own, 15 packets: the handshake
    /// (frames 1-3), `WELCOME client-1` (4), `REGISTER on_event` and its answer (5, 6),
    /// `MSG haii` (7), `UPCALL 1 on_event ...` (8), `RETURN 1 ok` (9), `BYE` both ways (10, 11),
    /// and the server closing first (12-15).
    pub fn lab(&mut self) {
        self.connect();
        self.server(b"WELCOME client-1 upcall/1\n");
        self.client(b"REGISTER on_event\n");
        self.server(b"REGISTERED on_event\n");
        self.client(b"MSG haii\n");
        self.server(b"UPCALL 1 on_event Upcall event: Processing haii\n");
        self.client(b"RETURN 1 ok\n");
        self.client(b"BYE\n");
        self.server(b"BYE\n");
        self.server_closes_first();
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
