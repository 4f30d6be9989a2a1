//! Exercise 6's answer key (both guides) and the packet-by-packet walkthrough of
//! `pcaps/upcall-basic.pcap` (`pcaps/README.md`) give frame numbers and times: each is read here
//! from the capture itself, its one source. A capture taken again (`pcaps/capture.sh`) has other
//! times, and maybe other frames: then this test says which figure to write instead.
//!
//! The decoder (`tests/capture/`) leaves out what carries no `upcall/1` line (the handshake, bare
//! ACKs), and these are what the exercise asks about, so the frames are read here one by one with
//! `pcap-file`: Ethernet, IPv4, TCP, as the lab's bridge carries them.

use std::path::PathBuf;
use std::time::Duration;

/// One captured TCP segment of the reference capture.
#[derive(Debug)]
struct Frame {
    /// Since the first frame (Wireshark's "Time" column), exact: no float until a figure is
    /// written, so that 65 µs is 0.07 ms, not 0.06.
    time: Duration,
    source: String,
    destination: String,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

impl Frame {
    fn carries(&self, text: &str) -> bool {
        self.payload == text.as_bytes()
    }

    /// Data from the line's end of a `write`, one line: what `upcall/1` sends per segment.
    fn one_line(&self) -> bool {
        self.payload.ends_with(b"\n") && self.payload.iter().filter(|&&b| b == b'\n').count() == 1
    }

    fn bare_ack(&self) -> bool {
        self.flags == ACK && self.payload.is_empty()
    }

    fn sent_by_client(&self) -> bool {
        self.source.starts_with("172.28.0.20:")
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The frames of `pcaps/upcall-basic.pcap`, all Ethernet + IPv4 + TCP (the test says so if not).
fn frames() -> Vec<Frame> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/upcall-basic.pcap");
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("a pcap file");
    let mut frames = Vec::new();
    let mut first = None;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a whole record");
        let start = *first.get_or_insert(packet.timestamp);
        let data = &packet.data;
        assert_eq!(
            u16_at(data, 12),
            0x0800,
            "frame {}: not IPv4",
            frames.len() + 1
        );
        let ip = &data[14..];
        assert_eq!(ip[9], 6, "frame {}: not TCP", frames.len() + 1);
        let ip_header = usize::from(ip[0] & 0x0F) * 4;
        let ip_total = usize::from(u16_at(ip, 2));
        let tcp = &ip[ip_header..ip_total];
        let tcp_header = usize::from(tcp[12] >> 4) * 4;
        let address = |at: usize, port: u16| {
            format!(
                "{}.{}.{}.{}:{port}",
                ip[at],
                ip[at + 1],
                ip[at + 2],
                ip[at + 3]
            )
        };
        frames.push(Frame {
            time: packet.timestamp - start,
            source: address(12, u16_at(tcp, 0)),
            destination: address(16, u16_at(tcp, 2)),
            flags: tcp[13],
            seq: u32_at(tcp, 4),
            ack: u32_at(tcp, 8),
            payload: tcp[tcp_header..].to_vec(),
        });
    }
    frames
}

/// Frame `number`, from 1.
fn frame(frames: &[Frame], number: usize) -> &Frame {
    &frames[number - 1]
}

/// Milliseconds from frame `from` to frame `to`.
fn ms(frames: &[Frame], from: usize, to: usize) -> f64 {
    let span = frame(frames, to).time - frame(frames, from).time;
    span.as_nanos() as f64 / 1e6
}

fn read(file: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    // A phrase may be broken over two lines: compare words, not line breaks.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exercise 6's answer key in `guide`.
fn key_6(guide: &str) -> String {
    let text = read(guide);
    let start = text.find("### 6. ").expect("exercise 6");
    let end = start + text[start..].find("</details>").expect("its key ends");
    text[start..end].to_string()
}

/// `words` with each `{}` replaced by the next figure, rounded to its places and written with
/// `point` (`.` in English, `,` in Indonesian), and each `{.}` likewise but always with a point
/// (a figure as Wireshark shows it).
fn with_figures(words: &str, figures: &[(f64, usize)], point: char) -> String {
    let mut out = String::new();
    let mut rest = words;
    let mut figures = figures.iter();
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let (point, skip) = match &rest[at..] {
            hole if hole.starts_with("{}") => (point, 2),
            hole if hole.starts_with("{.}") => ('.', 3),
            hole => panic!("a hole is {{}} or {{.}}: {hole}"),
        };
        let (figure, places) = figures.next().expect("a figure for every hole");
        out.push_str(&format!("{figure:.places$}").replace('.', &point.to_string()));
        rest = &rest[at + skip..];
    }
    assert!(figures.next().is_none(), "more figures than holes: {words}");
    out.push_str(rest);
    out
}

/// Asserts that exercise 6's key says `english` in README.md and `indonesian` in README.id.md,
/// with the capture's `figures` in place of each `{}`.
fn key_says(english: &str, indonesian: &str, figures: &[(f64, usize)]) {
    for (guide, words, point) in [
        ("README.md", english, '.'),
        ("README.id.md", indonesian, ','),
    ] {
        let words = with_figures(words, figures, point);
        assert!(
            key_6(guide).contains(&words),
            "{guide}: exercise 6's key does not say {words:?}, which is what the capture says"
        );
    }
}

/// Asserts that the walkthrough in pcaps/README.md says `words`, with the capture's figures.
fn walkthrough_says(words: &str, figures: &[(f64, usize)]) {
    let words = with_figures(words, figures, '.');
    assert!(
        read("pcaps/README.md").contains(&words),
        "pcaps/README.md does not say {words:?}, which is what the capture says"
    );
}

/// (a) The handshake, then the server's `WELCOME` as the first line.
#[test]
fn exercise_6_handshake_and_welcome_are_the_captures() {
    let frames = frames();
    let (syn, syn_ack, ack) = (frame(&frames, 1), frame(&frames, 2), frame(&frames, 3));
    assert_eq!((syn.flags, syn.sent_by_client()), (SYN, true), "{syn:?}");
    assert_eq!(
        (syn_ack.flags, syn_ack.sent_by_client()),
        (SYN | ACK, false)
    );
    assert!(ack.bare_ack() && ack.sent_by_client(), "{ack:?}");
    assert_eq!(syn_ack.source, "172.28.0.10:4141");
    key_says(
        "Frames 1–3: `SYN` from the client `172.28.0.20`, `SYN, ACK` from `172.28.0.10:4141`, \
         `ACK`, within {} ms",
        "Frame 1–3: `SYN` dari klien `172.28.0.20`, `SYN, ACK` dari `172.28.0.10:4141`, lalu \
         `ACK`, dalam {} ms",
        &[(ms(&frames, 1, 3), 2)],
    );
    let welcome = frame(&frames, 4);
    assert!(
        welcome.carries("WELCOME client-1 upcall/1\n"),
        "{welcome:?}"
    );
    key_says(
        "Frame 4, `WELCOME client-1 upcall/1`, follows {} ms later",
        "Frame 4, `WELCOME client-1 upcall/1`, menyusul {} ms kemudian",
        &[(ms(&frames, 3, 4), 1)],
    );
}

/// (b) The first `UPCALL` right after its `MSG`, its `RETURN` right after it; the same for halo.
#[test]
fn exercise_6_upcalls_and_returns_are_the_captures() {
    let frames = frames();
    assert!(frame(&frames, 14).carries("MSG haii\n"));
    assert!(frame(&frames, 15).carries("UPCALL 1 on_event Upcall event: Processing haii\n"));
    assert!(frame(&frames, 17).carries("RETURN 1 ok\n"));
    key_says(
        "`UPCALL 1 on_event Upcall event: Processing haii` is frame 15, {} ms after `MSG haii` \
         (frame 14); `RETURN 1 ok` is frame 17, {} ms after the `UPCALL` (`upcall.time` {.} s, \
         \"Request in: 15\")",
        "`UPCALL 1 on_event Upcall event: Processing haii` ada di frame 15, {} ms setelah \
         `MSG haii` (frame 14); `RETURN 1 ok` di frame 17, {} ms setelah `UPCALL` (`upcall.time` \
         {.} s, \"Request in: 15\")",
        &[
            (ms(&frames, 14, 15), 1),
            (ms(&frames, 15, 17), 2),
            (ms(&frames, 15, 17) / 1000.0, 6),
        ],
    );
    assert!(frame(&frames, 21).carries("UPCALL 2 on_event Upcall event: Processing halo\n"));
    assert!(frame(&frames, 22).carries("RETURN 2 ok\n"));
    key_says(
        "For `halo`: frames 21 and 22, {} ms",
        "Untuk `halo`: frame 21 dan 22, {} ms",
        &[(ms(&frames, 21, 22), 2)],
    );
}

/// (c) Bare ACKs some 40 ms after the data they acknowledge (delayed ACKs), and an ACK that rides
/// along with the `UPCALL` instead.
#[test]
fn exercise_6_delayed_acks_are_the_captures() {
    let frames = frames();
    for (ack, data) in [(13, 12), (18, 17), (23, 22)] {
        let (ack_frame, data_frame) = (frame(&frames, ack), frame(&frames, data));
        assert!(
            ack_frame.bare_ack(),
            "frame {ack} is not a bare ACK: {ack_frame:?}"
        );
        assert_eq!(ack_frame.source, data_frame.destination, "frame {ack}");
        assert_eq!(
            ack_frame.ack,
            data_frame.seq + data_frame.payload.len() as u32,
            "frame {ack} does not acknowledge frame {data}"
        );
        // Linux waits at least 40 ms before it acknowledges alone (the key says so).
        assert!(ms(&frames, data, ack) >= 40.0, "frame {ack}");
    }
    key_says(
        "Frame 13, {} ms after frame 12, and frames 18 and 23, {} ms after the `RETURN`s",
        "Frame 13, {} ms setelah frame 12, serta frame 18 dan 23, {} ms setelah `RETURN`",
        &[(ms(&frames, 12, 13), 0), (ms(&frames, 17, 18), 0)],
    );
    assert_eq!(
        format!("{:.0}", ms(&frames, 17, 18)),
        format!("{:.0}", ms(&frames, 22, 23)),
        "the key gives one figure for frames 18 and 23"
    );
    key_says(
        "at least 40 ms on Linux",
        "paling sedikit 40 ms di Linux",
        &[],
    );
    // Frame 15, the UPCALL, carries the server's ACK of the MSG in frame 14.
    let (upcall, msg) = (frame(&frames, 15), frame(&frames, 14));
    assert_eq!(upcall.ack, msg.seq + msg.payload.len() as u32);
    key_says(
        "as it does in frame 15, where the `UPCALL` carries the `ACK` of the `MSG`",
        "seperti di frame 15, tempat `UPCALL` membawa `ACK` untuk `MSG`",
        &[],
    );
}

/// The walkthrough of `pcaps/README.md`, frame by frame, is the capture's.
#[test]
fn the_walkthrough_of_upcall_basic_is_the_captures() {
    let frames = frames();
    walkthrough_says("**The TCP handshake, frames 1–3.**", &[]);
    let welcome = frame(&frames, 4);
    assert!(welcome.carries("WELCOME client-1 upcall/1\n") && welcome.flags & PSH != 0);
    walkthrough_says(
        "**`WELCOME`, frame 4** (`{}`). The server speaks first: `WELCOME client-1 upcall/1`, {} \
         bytes with the newline, in one segment (flag `PSH`).",
        &[
            (welcome.time.as_secs_f64(), 4),
            (welcome.payload.len() as f64, 0),
        ],
    );
    let acked = frame(&frames, 5);
    assert!(acked.bare_ack() && acked.sent_by_client() && acked.ack == welcome.seq + 26);
    walkthrough_says("Frame 5 is the client's kernel acknowledging it.", &[]);
    // Registrations: each line its own segment, the client's and the server's in turn.
    let lines: Vec<&Frame> = frames[5..12]
        .iter()
        .filter(|f| !f.payload.is_empty())
        .collect();
    let expected = [
        "REGISTER on_event\n",
        "REGISTERED on_event\n",
        "REGISTER uppercase\n",
        "REGISTERED uppercase\n",
        "REGISTER hostname\n",
        "REGISTERED hostname\n",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (frame, line) in lines.iter().zip(expected) {
        assert!(frame.carries(line) && frame.one_line(), "{frame:?}");
    }
    walkthrough_says("**Registrations, frames 6–12.**", &[]);
    walkthrough_says(
        "Frame 13, {} ms later, is a *delayed ACK*",
        &[(ms(&frames, 12, 13), 0)],
    );
    assert!(frame(&frames, 14).carries("MSG haii\n"));
    walkthrough_says(
        "**The message, frame 14** (`{}`): `MSG haii`.",
        &[(frame(&frames, 14).time.as_secs_f64(), 3)],
    );
    walkthrough_says(
        "**The upcall, frame 15**, {} ms later: `UPCALL 1 on_event Upcall event: Processing haii`.",
        &[(ms(&frames, 14, 15), 1)],
    );
    walkthrough_says("**The result, frame 17**: `RETURN 1 ok`.", &[]);
    walkthrough_says("Wireshark links frame 15 and frame 17", &[]);
    assert!(frame(&frames, 18).bare_ack() && !frame(&frames, 18).sent_by_client());
    walkthrough_says("Frame 18 is the server's delayed ACK.", &[]);
    assert!(frame(&frames, 19).carries("MSG halo\n"));
    assert!(frame(&frames, 20).bare_ack());
    assert!(frame(&frames, 23).bare_ack());
    walkthrough_says(
        "**The second message, frames 19–23**: `MSG halo`, `UPCALL 2 ...`, `RETURN 2 ok`.",
        &[],
    );
    // The close: BYE, BYE, the server's FIN first, the client's, the last ACK.
    assert!(frame(&frames, 24).carries("BYE\n") && frame(&frames, 24).sent_by_client());
    assert!(frame(&frames, 25).bare_ack());
    assert!(frame(&frames, 26).carries("BYE\n") && !frame(&frames, 26).sent_by_client());
    assert!(frame(&frames, 27).flags & FIN != 0 && !frame(&frames, 27).sent_by_client());
    assert!(frame(&frames, 28).flags & FIN != 0 && frame(&frames, 28).sent_by_client());
    assert!(frame(&frames, 29).bare_ack() && !frame(&frames, 29).sent_by_client());
    assert_eq!(frames.len(), 29, "frames after the close");
    walkthrough_says(
        "**The close, frames 24–29.** The client sends `BYE`; the server answers `BYE` (frame 26) \
         and closes its side first (`FIN`, frame 27); the client closes its side (frame 28), and \
         the server's kernel acknowledges the last `FIN` (frame 29).",
        &[],
    );
}
