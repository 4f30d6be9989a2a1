//! The reference captures decode, and the decoder decodes what TCP can do to a line.
//!
//! - Every `.pcap` in `pcaps/` (the Docker lab's reference captures) and in `tests/data/` (small
//!   loopback captures) decodes line by line with the crate's own parser, to exactly the `.txt`
//!   beside it; every byte on port 4141 is part of a line, the server never sends a bad line, and
//!   every bad line a client sends is answered by `ERR` with the parser's reason. The loopback
//!   captures were taken with tcpdump while `servercall` ran on 127.0.0.1:4141:
//!   `loopback-basic` (`-i lo`, Ethernet) is the lab with one `clientcall`; `any-two-clients`
//!   (`-i any`, SLL2) two clients and the console's `call`, `broadcast` and `quit`;
//!   `sll-bad-lines` (`-i any -y LINUX_SLL`) a hand-made client sending bad lines, a line split
//!   over two segments and two lines in one, and never answering an UPCALL.
//! - The decoder (the `upcall-capture` crate in `tests/capture/`) on small captures built in memory: lines split
//!   over segments, several lines in one segment, retransmissions, segments out of order, gaps,
//!   the link layers of `-i lo`, `-i any` and the Docker bridge, IPv6, pcapng and other files it
//!   must refuse in one sentence, and the command line of `examples/decode.rs`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use upcall::protocol::{Message, ProtocolError};
use upcall_capture::synth::{self, Capture, DataLink, Endianness, Talk, TsResolution};
use upcall_capture::{
    cli, decode, format_conversation, pair_upcalls, Cut, DecodeError, Direction, Event, Format,
};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.txt` text of a capture held in memory.
fn text(bytes: &[u8]) -> String {
    let conversation = decode(bytes, 4141, "test.pcap").expect("decodes");
    format_conversation(&conversation.entries, Format::default())
}

/// The lines of a `.txt`, for readable assertions.
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

// ---------------------------------------------------------------------------------------------
// The reference captures.

/// `(capture, its .txt)` for every checked-in capture.
fn reference_captures() -> Vec<(PathBuf, PathBuf)> {
    upcall_capture::checked_in_captures(&manifest_dir())
        .into_iter()
        .map(|pcap| {
            let txt = pcap.with_extension("txt");
            (pcap, txt)
        })
        .collect()
}

fn display(path: &Path) -> String {
    path.strip_prefix(manifest_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_reference_capture_decodes_to_the_txt_beside_it() {
    let captures = reference_captures();
    assert!(
        !captures.is_empty(),
        "no .pcap in pcaps/ or tests/data/: nothing to check"
    );
    for (pcap, txt) in &captures {
        let conversation = upcall_capture::decode_file(pcap, upcall::protocol::DEFAULT_PORT)
            .unwrap_or_else(|error| panic!("{error}"));
        let decoded = format_conversation(&conversation.entries, Format::default());
        let expected = fs::read_to_string(txt).unwrap_or_else(|error| {
            panic!(
                "{}: {error}; write it with `cargo run -q --example decode -- {} > {}` and \
                 check it by eye. It should read:\n{decoded}",
                display(txt),
                display(pcap),
                display(txt),
            )
        });
        assert!(
            decoded == expected,
            "{} does not decode to {}.\n--- {}\n{expected}\n--- decoded now\n{decoded}",
            display(pcap),
            display(txt),
            display(txt)
        );
        assert!(!conversation.truncated, "{} is cut short", display(pcap));
        eprintln!(
            "{}: {} entries, {} connection(s)",
            display(pcap),
            conversation.entries.len(),
            conversation.connections
        );
    }
}

#[test]
fn every_byte_of_every_reference_capture_is_a_line_of_upcall_1() {
    for (pcap, _) in reference_captures() {
        let conversation = upcall_capture::decode_file(&pcap, upcall::protocol::DEFAULT_PORT)
            .unwrap_or_else(|error| panic!("{error}"));
        let name = display(&pcap);
        let mut lines = 0;
        for (index, entry) in conversation.entries.iter().enumerate() {
            let line = upcall_capture::format_entry(entry, Format::default());
            match &entry.event {
                Event::Gap { .. } | Event::Unfinished { .. } => {
                    panic!(
                        "{name}: frame {}: {line}: every byte must be in a line",
                        entry.frame
                    )
                }
                Event::Line { message, raw } => {
                    lines += 1;
                    match (entry.direction, message) {
                        (_, Ok(message)) => {
                            // What was parsed is what was sent (but for the verb's case).
                            let encoded = message.encode().expect("a parsed message encodes");
                            let sent = String::from_utf8_lossy(raw);
                            let split = |line: &str| -> (String, String) {
                                let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
                                (verb.to_ascii_uppercase(), rest.to_string())
                            };
                            assert!(
                                split(encoded.trim_end_matches('\n')) == split(&sent),
                                "{name}: frame {}: {sent:?} parses to {message:?}, which \
                                 encodes as {encoded:?}",
                                entry.frame
                            );
                        }
                        (Direction::ServerToClient, Err(error)) => {
                            panic!(
                                "{name}: frame {}: the server sent a bad line ({error}): {line}",
                                entry.frame
                            )
                        }
                        (Direction::ClientToServer, Err(error)) => {
                            // The server's next line to that client is ERR with the same reason.
                            let answer = conversation.entries[index + 1..].iter().find(|later| {
                                later.connection == entry.connection
                                    && later.direction == Direction::ServerToClient
                                    && matches!(later.event, Event::Line { .. })
                            });
                            let answered = matches!(
                                answer.map(|a| &a.event),
                                Some(Event::Line { message: Ok(Message::Err { reason }), .. })
                                    if reason.starts_with(&error.to_string())
                            );
                            assert!(
                                answered,
                                "{name}: frame {}: {line}: the server should answer ERR {error}",
                                entry.frame
                            );
                        }
                    }
                }
                Event::Connect | Event::Close | Event::Reset => {}
            }
        }
        assert!(lines > 0, "{name}: no upcall/1 line at all");
    }
}

// ---------------------------------------------------------------------------------------------
// What TCP does to lines.

/// What `Talk::lab` sends, as the `.txt` shows it.
const LAB: &str = "\
c1 C>S [connect]
c1 S>C WELCOME client-1 upcall/1
c1 C>S REGISTER on_event
c1 S>C REGISTERED on_event
c1 C>S MSG haii
c1 S>C UPCALL 1 on_event Upcall event: Processing haii
c1 C>S RETURN 1 ok
c1 C>S BYE
c1 S>C BYE
c1 S>C [close]
c1 C>S [close]
";

#[test]
fn the_lab_conversation_decodes_line_by_line() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.lab();
    let conversation = decode(&talk.to_bytes(), 4141, "lab").unwrap();
    assert_eq!(
        format_conversation(&conversation.entries, Format::default()),
        LAB
    );
    assert_eq!(conversation.linktype, 1);
    assert_eq!(conversation.connections, 1);
    // Every line carries what the crate's parser made of it.
    let messages: Vec<&Message> = conversation
        .entries
        .iter()
        .filter_map(|entry| match &entry.event {
            Event::Line { message, .. } => Some(message.as_ref().unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 8);
    assert_eq!(
        messages[4],
        &Message::Upcall {
            id: 1,
            callback: "on_event".into(),
            argument: "Upcall event: Processing haii".into()
        }
    );
}

#[test]
fn a_line_split_over_segments_is_one_line_in_the_frame_that_ends_it() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect(); // frames 1-3
    talk.server(b"WELCOME client-1 upc"); // 4
    talk.server(b"all/1"); // 5
    talk.server(b"\n"); // 6
    talk.client(b"MSG ha"); // 7
    talk.client(b"ii\r"); // 8: the \r of a \r\n in one segment, its \n in the next
    talk.client(b"\n"); // 9
    let conversation = decode(&talk.to_bytes(), 4141, "split").unwrap();
    let shown = format_conversation(
        &conversation.entries,
        Format {
            time: false,
            frames: true,
        },
    );
    assert_eq!(
        lines(&shown),
        [
            "#1     c1 C>S [connect]",
            "#6     c1 S>C WELCOME client-1 upcall/1",
            "#9     c1 C>S MSG haii",
        ]
    );
}

#[test]
fn several_lines_in_one_segment_are_several_entries() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect();
    talk.server(b"WELCOME client-1 upcall/1\n");
    talk.client(b"REGISTER on_event\nREGISTER uppercase\nMSG hai");
    talk.client(b"i\nMSG halo\n\nBYE\n"); // an empty line is ignored, as by the server
    assert_eq!(
        lines(&text(&talk.to_bytes())),
        [
            "c1 C>S [connect]",
            "c1 S>C WELCOME client-1 upcall/1",
            "c1 C>S REGISTER on_event",
            "c1 C>S REGISTER uppercase",
            "c1 C>S MSG haii",
            "c1 C>S MSG halo",
            "c1 C>S BYE",
        ]
    );
}

#[test]
fn a_retransmitted_segment_is_used_once() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect();
    let welcome = talk.server(b"WELCOME client-1 upcall/1\n");
    talk.server_at(welcome, b"WELCOME client-1 upcall/1\n"); // the same again
    let msg = talk.client(b"MSG haii\n");
    // A retransmission that brings old bytes and new ones.
    talk.client_at(msg, b"MSG haii\nMSG halo\n");
    talk.client_seq = talk.client_seq.wrapping_add(9);
    talk.client(b"BYE\n");
    talk.client_at(msg.wrapping_add(4), b"haii\n"); // a late, partial copy
    talk.server_closes_first();
    talk.fin(false); // a retransmitted FIN: one [close]
    assert_eq!(
        lines(&text(&talk.to_bytes())),
        [
            "c1 C>S [connect]",
            "c1 S>C WELCOME client-1 upcall/1",
            "c1 C>S MSG haii",
            "c1 C>S MSG halo",
            "c1 C>S BYE",
            "c1 S>C [close]",
            "c1 C>S [close]",
        ]
    );
}

#[test]
fn a_retransmitted_syn_opens_one_connection() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    let isn = talk.client_seq;
    let (client, server) = (talk.client, talk.server);
    talk.capture
        .tcp(Duration::ZERO, client, server, isn, 0, synth::SYN, &[]);
    talk.now = Duration::from_secs(1);
    talk.lab();
    assert_eq!(text(&talk.to_bytes()), LAB);
}

#[test]
fn segments_out_of_order_are_put_back_in_order() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect(); // 1-3
    let first = talk.client_seq;
    let one = b"REGISTER on_event\nMSG ha";
    let two = b"ii\nMSG halo\n";
    let three = b"BYE\n";
    let second = first.wrapping_add(one.len() as u32);
    let third = second.wrapping_add(two.len() as u32);
    talk.client_at(third, three); // 4: early
    talk.client_at(second, two); // 5: early
    talk.client_at(first, one); // 6: fills the hole: every line completes here
    talk.client_seq = third.wrapping_add(three.len() as u32);
    talk.client_closes_first(); // 7-10
    let conversation = decode(&talk.to_bytes(), 4141, "ooo").unwrap();
    let shown = format_conversation(
        &conversation.entries,
        Format {
            time: true,
            frames: true,
        },
    );
    assert_eq!(
        lines(&shown),
        [
            "  0.000000 #1     c1 C>S [connect]",
            "  0.005000 #6     c1 C>S REGISTER on_event",
            "  0.005000 #6     c1 C>S MSG haii",
            "  0.005000 #6     c1 C>S MSG halo",
            "  0.005000 #6     c1 C>S BYE",
            "  0.006000 #7     c1 C>S [close]",
            "  0.008000 #9     c1 S>C [close]",
        ]
    );
}

#[test]
fn bytes_never_captured_are_a_gap() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect();
    talk.client(b"MSG one\nMSG tw");
    let lost = talk.client_seq;
    talk.client_seq = lost.wrapping_add(6); // "o\nMSG " never captured
    talk.client(b"three\nMSG four\n");
    talk.client(b"MSG no newline");
    talk.client_closes_first();
    let conversation = decode(&talk.to_bytes(), 4141, "gap").unwrap();
    let cuts: Vec<Cut> = conversation
        .entries
        .iter()
        .filter_map(|entry| match entry.event {
            Event::Unfinished { cut, .. } => Some(cut),
            _ => None,
        })
        .collect();
    assert_eq!(cuts, [Cut::Gap, Cut::Close]);
    assert_eq!(
        lines(&text(&talk.to_bytes())),
        [
            "c1 C>S [connect]",
            "c1 C>S MSG one",
            "c1 C>S [unfinished line: the rest was not captured] \"MSG tw\"",
            "c1 C>S [gap: 6 bytes not captured]",
            "c1 C>S [bad line: unknown verb] \
             \"three\"",
            "c1 C>S MSG four",
            "c1 C>S [unfinished line: no newline before the close] \"MSG no newline\"",
            "c1 C>S [close]",
            "c1 S>C [close]",
        ]
    );
}

#[test]
fn bad_lines_show_the_error_and_the_bytes_escaped() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect();
    talk.client(b"MSG caf\xe9\n");
    talk.client(b"MSG a\x1b[31mred\tand \"quoted\" \\ \xc2\x85\n");
    talk.client(b"HELLO there\n");
    // The limit is the server's: 4096 bytes with the newline (and a \r before it).
    let longest = [b"MSG ".as_slice(), &[b'a'; 4091], b"\n"].concat();
    talk.client(&longest);
    let too_long = [b"MSG ".as_slice(), &[b'b'; 4091], b"\r\n"].concat();
    talk.client(&too_long[..2000]);
    talk.client(&too_long[2000..]);
    talk.client(b"RETURN 1 \xff\xfe\n");
    let conversation = decode(&talk.to_bytes(), 4141, "bad").unwrap();
    let shown = format_conversation(&conversation.entries, Format::default());
    let shown = lines(&shown);
    assert_eq!(
        shown[1],
        r#"c1 C>S [bad line: line is not valid UTF-8] "MSG caf\xe9""#
    );
    assert_eq!(
        shown[2],
        r#"c1 C>S [bad line: control character U+001B (escape) at byte 6] "MSG a\x1b[31mred\tand \"quoted\" \\ \u{85}""#
    );
    assert_eq!(shown[3], r#"c1 C>S [bad line: unknown verb] "HELLO there""#);
    assert!(shown[4].starts_with("c1 C>S MSG aaaa") && shown[4].len() == 7 + 4095);
    assert_eq!(
        shown[5],
        format!(
            "c1 C>S [bad line: line too long] \"MSG {}\"... (4095 bytes)",
            "b".repeat(76)
        )
    );
    assert_eq!(
        shown[6],
        r#"c1 C>S [bad line: line is not valid UTF-8] "RETURN 1 \xff\xfe""#
    );
    let errors: Vec<ProtocolError> = conversation
        .entries
        .iter()
        .filter_map(|entry| match &entry.event {
            Event::Line {
                message: Err(error),
                ..
            } => Some(*error),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            ProtocolError::InvalidUtf8,
            ProtocolError::ControlCharacter {
                character: '\u{1b}',
                at: 6
            },
            ProtocolError::UnknownVerb,
            ProtocolError::LineTooLong,
            ProtocolError::InvalidUtf8,
        ]
    );
    // The raw line is kept whole, without its \r\n.
    let Event::Line { raw, .. } = &conversation.entries[5].event else {
        panic!("not a line");
    };
    assert_eq!(raw.len(), 4095);
}

#[test]
fn connections_are_numbered_in_the_order_of_their_syns() {
    let mut first = Talk::new(Capture::new(DataLink::ETHERNET), 40_001);
    let mut second = Talk::new(Capture::new(DataLink::ETHERNET), 40_002);
    second.now = Duration::from_micros(1500);
    first.connect();
    second.connect();
    first.server(b"WELCOME client-1 upcall/1\n");
    second.server(b"WELCOME client-2 upcall/1\n");
    first.client(b"MSG haii\n");
    second.server(b"UPCALL 1 on_event Upcall event: client-1 says haii\n");
    second.client(b"RETURN 1 ok\n");
    first.client_resets();
    second.client_closes_first();
    // The same client port again, later: a new connection.
    let mut third = Talk::new(Capture::new(DataLink::ETHERNET), 40_001);
    third.now = Duration::from_secs(1);
    third.client_seq = 7;
    third.connect();
    third.server(b"WELCOME client-3 upcall/1\n");
    let mut capture = Capture::new(DataLink::ETHERNET);
    capture.frames = [first.capture, second.capture, third.capture]
        .into_iter()
        .flat_map(|capture| capture.frames)
        .collect();
    capture.frames.sort_by_key(|(time, _)| *time);
    let conversation = decode(&capture.to_bytes(), 4141, "three").unwrap();
    assert_eq!(conversation.connections, 3);
    assert_eq!(
        lines(&format_conversation(
            &conversation.entries,
            Format::default()
        )),
        [
            "c1 C>S [connect]",
            "c2 C>S [connect]",
            "c1 S>C WELCOME client-1 upcall/1",
            "c1 C>S MSG haii",
            "c2 S>C WELCOME client-2 upcall/1",
            "c1 C>S [reset]",
            "c2 S>C UPCALL 1 on_event Upcall event: client-1 says haii",
            "c2 C>S RETURN 1 ok",
            "c2 C>S [close]",
            "c2 S>C [close]",
            "c3 C>S [connect]",
            "c3 S>C WELCOME client-3 upcall/1",
        ]
    );
}

#[test]
fn sequence_numbers_that_wrap_around_do_not_matter() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.client_seq = u32::MAX - 10;
    talk.connect();
    let mut expected = vec!["c1 C>S [connect]".to_string()];
    for n in 0..40 {
        let line = format!("MSG message number {n}");
        talk.client(format!("{line}\n").as_bytes());
        expected.push(format!("c1 C>S {line}"));
    }
    assert_eq!(lines(&text(&talk.to_bytes())), expected);
}

#[test]
fn an_upcall_is_paired_with_its_answer_on_the_same_connection() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.connect(); // 1-3
    talk.server(b"UPCALL 1 on_event hello\n"); // 4
    talk.server(b"UPCALL 2 uppercase x\n"); // 5
    talk.client(b"FAIL 2 no\n"); // 6
    talk.client(b"RETURN 1 ok\nRETURN 1 again\n"); // 7
    talk.server(b"UPCALL 3 hostname\n"); // 8
    let conversation = decode(&talk.to_bytes(), 4141, "pairs").unwrap();
    let pairs: Vec<(u64, u64, Option<u64>)> = pair_upcalls(&conversation.entries)
        .into_iter()
        .map(|p| (p.id, p.request_frame, p.response_frame))
        .collect();
    assert_eq!(pairs, [(1, 4, Some(7)), (2, 5, Some(6)), (3, 8, None)]);
    let took = pair_upcalls(&conversation.entries)[0].took;
    assert_eq!(took, Some(Duration::from_millis(3)));
}

// ---------------------------------------------------------------------------------------------
// Link layers and file formats.

#[test]
fn cooked_captures_of_any_interface_decode_the_same() {
    for datalink in [
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
        DataLink::NULL,
        DataLink::RAW,
    ] {
        let mut talk = Talk::new(Capture::new(datalink), 40_000);
        talk.lab();
        let conversation = decode(&talk.to_bytes(), 4141, "cooked").unwrap();
        assert_eq!(conversation.linktype, u32::from(datalink));
        assert_eq!(
            format_conversation(&conversation.entries, Format::default()),
            LAB,
            "{datalink:?}"
        );
    }
}

#[test]
fn ipv6_decodes_the_same() {
    let client: IpAddr = "fd00::20".parse().unwrap();
    let server: IpAddr = "fd00::10".parse().unwrap();
    let mut talk = Talk::between(
        Capture::new(DataLink::ETHERNET),
        (client, 40_000),
        (server, 4141),
    );
    talk.lab();
    assert_eq!(text(&talk.to_bytes()), LAB);
}

#[test]
fn big_endian_and_nanosecond_files_decode_the_same() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.capture.endianness = Endianness::Big;
    talk.capture.ts_resolution = TsResolution::NanoSecond;
    talk.step = Duration::from_nanos(1_500);
    talk.lab();
    let conversation = decode(&talk.to_bytes(), 4141, "be").unwrap();
    assert_eq!(
        format_conversation(&conversation.entries, Format::default()),
        LAB
    );
    let last = conversation.entries.last().unwrap();
    // The client's FIN is the 14th packet: 13 steps of 1.5 us after the SYN.
    assert_eq!(last.time, Duration::from_nanos(13 * 1_500));
}

#[test]
fn vlan_tagged_frames_and_other_traffic_are_handled() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.lab();
    // Tag every frame with an 802.1Q header, and add unrelated traffic (ARP, UDP, another port).
    let mut capture = Capture::new(DataLink::ETHERNET);
    capture.frame(Duration::ZERO, {
        let mut arp = vec![0xFF; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        arp
    });
    let other = synth::ip_packet(
        ("172.28.0.20".parse().unwrap(), 5000),
        ("172.28.0.10".parse().unwrap(), 80),
        1,
        0,
        synth::PSH | synth::ACK,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    capture.frame(
        Duration::ZERO,
        synth::link_frame(DataLink::ETHERNET, &"172.28.0.20".parse().unwrap(), &other),
    );
    for (time, frame) in &talk.capture.frames {
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2A]);
        tagged.extend_from_slice(&frame[12..]);
        capture.frames.push((*time, tagged));
    }
    let conversation = decode(&capture.to_bytes(), 4141, "vlan").unwrap();
    assert_eq!(
        format_conversation(&conversation.entries, Format::default()),
        LAB
    );
    // Frame numbers count every frame of the file, as Wireshark's do.
    assert_eq!(conversation.entries[0].frame, 3);
    assert_eq!(conversation.frames, 2 + talk.capture.frames.len() as u64);
}

/// The smallest pcapng file: a Section Header Block.
fn pcapng() -> Vec<u8> {
    let mut block = vec![0x0A, 0x0D, 0x0D, 0x0A];
    block.extend_from_slice(&28u32.to_le_bytes());
    block.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    block.extend_from_slice(&1u16.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&(-1i64).to_le_bytes());
    block.extend_from_slice(&28u32.to_le_bytes());
    block
}

#[test]
fn a_pcapng_file_is_refused_with_what_to_do() {
    let error = decode(&pcapng(), 4141, "my.pcapng").unwrap_err();
    assert_eq!(
        error,
        DecodeError::Pcapng {
            path: "my.pcapng".into()
        }
    );
    let sentence = error.to_string();
    assert!(sentence.contains("pcapng"), "{sentence}");
    assert!(sentence.contains("tcpdump -w"), "{sentence}");
    assert!(sentence.contains("editcap -F pcap my.pcapng"), "{sentence}");
    assert_eq!(
        sentence.matches(". ").count(),
        0,
        "one sentence: {sentence}"
    );
}

#[test]
fn other_files_are_refused_in_one_sentence() {
    let empty = decode(&[], 4141, "empty.pcap").unwrap_err();
    assert!(empty.to_string().contains("empty.pcap is empty"), "{empty}");
    let text_file = decode(b"hello, this is not a capture", 4141, "notes.txt").unwrap_err();
    assert!(
        text_file
            .to_string()
            .starts_with("notes.txt is not a pcap file (it starts with the bytes 68 65 6c 6c)"),
        "{text_file}"
    );
    let mut wifi = Capture::new(DataLink::IEEE802_11);
    wifi.frame(Duration::ZERO, vec![0; 30]);
    let error = decode(&wifi.to_bytes(), 4141, "wifi.pcap").unwrap_err();
    assert_eq!(
        error,
        DecodeError::UnsupportedLinkType {
            path: "wifi.pcap".into(),
            linktype: 105
        }
    );
}

#[test]
fn a_capture_without_the_port_says_which_ports_it_has() {
    let mut talk = Talk::between(
        Capture::new(DataLink::ETHERNET),
        ("127.0.0.1".parse().unwrap(), 40_000),
        ("127.0.0.1".parse().unwrap(), 4242),
    );
    talk.lab();
    let bytes = talk.to_bytes();
    let error = decode(&bytes, 4141, "mine.pcap").unwrap_err();
    assert_eq!(
        error.to_string(),
        "mine.pcap holds no TCP traffic on port 4141 (its connections go to port 4242): give \
         the server's port with `--port 4242`."
    );
    assert_eq!(text_at(&bytes, 4242), LAB);
    let nothing = Capture::new(DataLink::ETHERNET).to_bytes();
    let error = decode(&nothing, 4141, "nothing.pcap").unwrap_err();
    assert_eq!(
        error.to_string(),
        "nothing.pcap holds no TCP traffic on port 4141: capture with the filter \
         `tcp port 4141` while the client talks to the server."
    );
}

fn text_at(bytes: &[u8], port: u16) -> String {
    let conversation = decode(bytes, port, "test.pcap").unwrap();
    format_conversation(&conversation.entries, Format::default())
}

#[test]
fn a_capture_cut_short_decodes_up_to_the_cut() {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.lab();
    let bytes = talk.to_bytes();
    // The last record (the server's ACK, 16 + 54 bytes) and the end of the client's FIN.
    let cut = &bytes[..bytes.len() - 80];
    let conversation = decode(cut, 4141, "cut.pcap").unwrap();
    assert!(conversation.truncated);
    assert_eq!(
        format_conversation(&conversation.entries, Format::default()),
        LAB.replace("c1 C>S [close]\n", "")
    );
}

// ---------------------------------------------------------------------------------------------
// The command line of `cargo run --example decode`.

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("upcall-pcaps-{}-{name}", std::process::id()));
        fs::write(&path, bytes).expect("write a temporary capture");
        TempFile(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn run(args: &[&str]) -> upcall_capture::CliOutcome {
    cli(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

#[test]
fn the_example_prints_the_txt_format() {
    let mut talk = Talk::new(Capture::new(DataLink::LINUX_SLL2), 40_000);
    talk.lab();
    let file = TempFile::new("lab.pcap", &talk.to_bytes());
    let outcome = run(&[&file.arg()]);
    assert_eq!((outcome.status, outcome.stderr.as_str()), (0, ""));
    assert_eq!(outcome.stdout, LAB);

    let outcome = run(&["--time", "--frames", &file.arg()]);
    assert_eq!(outcome.status, 0);
    assert_eq!(
        outcome.stdout.lines().nth(1),
        Some("  0.003000 #4     c1 S>C WELCOME client-1 upcall/1")
    );
}

#[test]
fn the_example_fails_with_one_sentence_and_status_1() {
    let file = TempFile::new("capture.pcapng", &pcapng());
    let outcome = run(&[&file.arg()]);
    assert_eq!(outcome.status, 1);
    assert_eq!(outcome.stdout, "");
    assert!(
        outcome
            .stderr
            .starts_with(&format!("decode: {} is a pcapng file", file.arg())),
        "{}",
        outcome.stderr
    );
    assert_eq!(outcome.stderr.lines().count(), 1);

    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.server = (talk.server.0, 8080);
    talk.lab();
    let file = TempFile::new("web.pcap", &talk.to_bytes());
    let outcome = run(&[&file.arg()]);
    assert_eq!(outcome.status, 1);
    assert!(
        outcome.stderr.contains("holds no TCP traffic on port 4141"),
        "{}",
        outcome.stderr
    );
    let outcome = run(&["--port", "8080", &file.arg()]);
    assert_eq!((outcome.status, outcome.stdout.as_str()), (0, LAB));

    let outcome = run(&["/no/such/file.pcap"]);
    assert_eq!(outcome.status, 1);
    assert!(outcome
        .stderr
        .starts_with("decode: cannot read /no/such/file.pcap"));
}

#[test]
fn the_example_explains_its_command_line() {
    let help = run(&["--help"]);
    assert_eq!(help.status, 0);
    assert!(help.stdout.contains("diff pcaps/upcall-basic.txt -"));
    for wrong in [
        &[][..],
        &["--port"],
        &["--port", "x", "a.pcap"],
        &["--nope"],
        &["a", "b"],
    ] {
        let outcome = run(wrong);
        assert_eq!(outcome.status, 2, "{wrong:?}");
        assert!(outcome.stderr.starts_with("decode: "), "{wrong:?}");
    }
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.lab();
    let bytes = talk.to_bytes();
    let file = TempFile::new("short.pcap", &bytes[..bytes.len() - 10]);
    let outcome = run(&[&file.arg()]);
    assert_eq!(outcome.status, 0);
    assert!(outcome.stderr.contains("ends in the middle of a packet"));

    // `tcpdump -s 60`: each frame cut after 60 bytes, the lines with it.
    let mut snapped = Capture::new(DataLink::ETHERNET);
    for (time, frame) in &talk.capture.frames {
        snapped
            .frames
            .push((*time, frame[..frame.len().min(60)].to_vec()));
    }
    let mut bytes = snapped.to_bytes();
    // Each record's original length is what was on the wire, not what was kept.
    let mut at = 24;
    for (_, frame) in &talk.capture.frames {
        let kept = frame.len().min(60);
        bytes[at + 12..at + 16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        at += 16 + kept;
    }
    let file = TempFile::new("snapped.pcap", &bytes);
    let outcome = run(&[&file.arg()]);
    assert_eq!(outcome.status, 0);
    assert!(
        outcome.stderr.contains("cut 6 packet(s) short"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stdout.contains("[gap: "), "{}", outcome.stdout);
}

#[test]
fn escaping_keeps_every_byte_visible_on_one_line() {
    use upcall_capture::escape_bytes;
    assert_eq!(escape_bytes(b"plain text"), "plain text");
    assert_eq!(escape_bytes("selamat pagi ☀".as_bytes()), "selamat pagi ☀");
    assert_eq!(
        escape_bytes(b"\0\t\r\n\\\"\x7f\xff"),
        r#"\0\t\r\n\\\"\x7f\xff"#
    );
    assert_eq!(escape_bytes(b"\xe2\x98"), r"\xe2\x98");
}
