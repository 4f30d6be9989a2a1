//! The pictures of a conversation: `decode --ladder` (a text sequence diagram) and `decode
//! --mermaid` (the same for Mermaid), and the places that show them.
//!
//! - On small captures built in memory: the exact ladder and Mermaid of the lab's conversation,
//!   the round trips `--time` adds, long lines shortened so that every row fits 100 columns,
//!   clients named by their `WELCOME`, and Mermaid's special characters escaped.
//! - On every checked-in capture (Ethernet, loopback, SLL, SLL2): the ladder fits, has one row
//!   per entry, and is the same every time; the Mermaid source has nothing Mermaid would misread.
//! - `pcaps/README.md` shows the ladder of each reference capture, and README.md and README.id.md
//!   the Mermaid diagram of `upcall-basic.pcap`, exactly as the decoder draws them today.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use upcall_capture::ladder::WIDTH;
use upcall_capture::synth::{Capture, DataLink, Talk};
use upcall_capture::{cli, decode, decode_file, ladder, mermaid, Format};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> upcall_capture::CliOutcome {
    cli(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

/// What `decode FLAGS FILE` prints for a checked-in file; it must succeed without a warning.
fn decoded(flags: &[&str], pcap: &Path) -> String {
    let path = pcap.display().to_string();
    let mut args = flags.to_vec();
    args.push(&path);
    let outcome = run(&args);
    assert_eq!(
        (outcome.status, outcome.stderr.as_str()),
        (0, ""),
        "decode {args:?}"
    );
    outcome.stdout
}

/// The lab's conversation, one line a segment, 1 ms between packets.
fn lab() -> Talk {
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000);
    talk.lab();
    talk
}

#[test]
fn the_lab_conversation_as_a_ladder() {
    let conversation = decode(&lab().to_bytes(), 4141, "lab").unwrap();
    assert_eq!(
        ladder(&conversation.entries, Format::default()),
        "\
server                                                   client-1
   |<-- [connect] -------------------------------------------|
   |--- WELCOME client-1 upcall/1 -------------------------->|
   |<-- REGISTER on_event -----------------------------------|
   |--- REGISTERED on_event -------------------------------->|
   |<-- MSG haii --------------------------------------------|
   |--- UPCALL 1 on_event Upcall event: Processing haii ---->|
   |<-- RETURN 1 ok -----------------------------------------|
   |<-- BYE -------------------------------------------------|
   |--- BYE ------------------------------------------------>|
   |--- [close] -------------------------------------------->|
   |<-- [close] ---------------------------------------------|
"
    );
}

#[test]
fn with_time_each_row_has_its_time_and_each_upcall_its_round_trip() {
    let mut talk = lab();
    // A second upcall that is never answered, on the same connection before it closes.
    talk.capture.frames.truncate(11);
    talk.now = Duration::from_millis(11);
    talk.server(b"UPCALL 2 on_event nobody answers\n"); // 12, at 11 ms
    let conversation = decode(&talk.to_bytes(), 4141, "lab").unwrap();
    let time = Format {
        time: true,
        frames: false,
    };
    let drawn = ladder(&conversation.entries, time);
    let rows: Vec<&str> = drawn.lines().collect();
    assert_eq!(
        rows[6],
        "  0.007000    |--- UPCALL 1 on_event Upcall event: Processing haii ---->|  rtt 1.000 ms"
    );
    assert_eq!(
        rows[7],
        "  0.008000    |<-- RETURN 1 ok -----------------------------------------|"
    );
    assert_eq!(
        rows.last().copied(),
        Some(
            "  0.011000    |--- UPCALL 2 on_event nobody answers ------------------->|  no answer"
        )
    );
    assert!(rows[0].starts_with("           server"), "{drawn}");

    // The round trip is a note in Mermaid; the time leads each message.
    let source = mermaid(&conversation.entries, time);
    assert!(
        source.contains(
            "    server->>c1: 0.007000 UPCALL 1 on_event Upcall event: Processing haii\n    \
             Note right of c1: answered after 1.000 ms\n    c1->>server: 0.008000 RETURN 1 ok\n"
        ),
        "{source}"
    );
}

#[test]
fn the_lab_conversation_in_mermaid() {
    let conversation = decode(&lab().to_bytes(), 4141, "lab").unwrap();
    assert_eq!(
        mermaid(&conversation.entries, Format::default()),
        "\
sequenceDiagram
    participant server
    participant c1 as client-1
    c1--)server: [connect]
    server->>c1: WELCOME client-1 upcall/1
    c1->>server: REGISTER on_event
    server->>c1: REGISTERED on_event
    c1->>server: MSG haii
    server->>c1: UPCALL 1 on_event Upcall event: Processing haii
    c1->>server: RETURN 1 ok
    c1->>server: BYE
    server->>c1: BYE
    server--)c1: [close]
    c1--)server: [close]
"
    );
}

#[test]
fn mermaid_gets_its_special_characters_as_entity_codes() {
    let mut talk = Talk::new(Capture::new(DataLink::LINUX_SLL2), 40_000);
    talk.connect();
    talk.server(b"WELCOME client-1 upcall/1\n");
    talk.client(b"MSG a;b #1 <br> x&y \"quoted\"\n");
    talk.client(b"msg \xff\n");
    talk.client_resets();
    let conversation = decode(&talk.to_bytes(), 4141, "special").unwrap();
    let source = mermaid(&conversation.entries, Format::default());
    assert!(
        source
            .contains("    c1->>server: MSG a#59;b #35;1 #lt;br#gt; x#amp;y #quot;quoted#quot;\n"),
        "{source}"
    );
    assert!(
        source.contains(
            "    c1->>server: [bad line: line is not valid UTF-8] #quot;msg \\xff#quot;\n"
        ),
        "{source}"
    );
    assert!(source.ends_with("    c1--xserver: [reset]\n"), "{source}");
    assert_mermaid_reads_literally(&source);
}

/// Every statement is a declaration, a message or a note of the shapes `mermaid` writes, the
/// participants come first, in order, and no message holds a `;`, `#`, `<`, `>` or `"` other
/// than in an entity code.
fn assert_mermaid_reads_literally(source: &str) {
    let mut lines = source.lines();
    assert_eq!(lines.next(), Some("sequenceDiagram"));
    assert_eq!(lines.next(), Some("    participant server"));
    let mut declared = vec!["server".to_string()];
    let mut messages = 0;
    for line in lines {
        let statement = line.strip_prefix("    ").expect("indented by four");
        if let Some(rest) = statement.strip_prefix("participant ") {
            assert_eq!(messages, 0, "a participant after the messages: {line}");
            let (id, _) = rest.split_once(" as ").expect("participant ID as NAME");
            assert_eq!(id, format!("c{}", declared.len()), "in order: {line}");
            declared.push(id.to_string());
            continue;
        }
        let (head, text) = statement.split_once(": ").expect("FROM ARROW TO: TEXT");
        if let Some(whom) = head.strip_prefix("Note right of ") {
            assert!(declared.iter().any(|id| id == whom), "{line}");
        } else {
            let arrow = ["->>", "--)", "--x"]
                .into_iter()
                .find(|arrow| head.contains(arrow))
                .unwrap_or_else(|| panic!("no arrow in {line}"));
            let (from, to) = head.split_once(arrow).unwrap();
            assert!(declared.iter().any(|id| id == from), "{line}");
            assert!(declared.iter().any(|id| id == to), "{line}");
            assert!(from == "server" || to == "server", "{line}");
        }
        messages += 1;
        let mut plain = text.to_string();
        for code in ["#59;", "#35;", "#lt;", "#gt;", "#amp;", "#quot;"] {
            plain = plain.replace(code, "");
        }
        assert!(!text.trim().is_empty(), "an empty message: {line}");
        assert!(
            !plain.contains([';', '#', '<', '>', '"', '&']),
            "Mermaid would misread {line}"
        );
    }
    assert!(messages > 0, "no message at all");
}

#[test]
fn long_lines_are_shortened_and_rows_fit_with_many_clients() {
    let mut capture = Capture::new(DataLink::ETHERNET);
    for n in 1..=5u16 {
        let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000 + n);
        talk.now = Duration::from_millis(u64::from(n) * 100);
        talk.connect();
        talk.server(format!("WELCOME student-laptop-{n} upcall/1\n").as_bytes());
        let long = format!("MSG {}\n", "panjang ".repeat(40));
        talk.client(long.as_bytes());
        let mut huge = b"MSG ".to_vec();
        huge.extend([b'x'; 5000]);
        huge.push(b'\n');
        talk.client(&huge);
        talk.server(b"ERR unknown upcall id 7 (never sent, already answered, or given up after the timeout)\n");
        capture.frames.extend(talk.capture.frames);
    }
    capture.frames.sort_by_key(|(time, _)| *time);
    let conversation = decode(&capture.to_bytes(), 4141, "five").unwrap();
    for format in [
        Format::default(),
        Format {
            time: true,
            frames: true,
        },
    ] {
        let drawn = ladder(&conversation.entries, format);
        for row in drawn.lines() {
            assert!(row.chars().count() <= WIDTH, "{} columns: {row}", row.len());
        }
        assert_eq!(drawn.lines().count(), conversation.entries.len() + 1);
        let header = drawn.lines().next().unwrap();
        for n in 1..=5 {
            assert!(header.contains(&format!("top-{n}")), "{header}");
        }
        // Shortened, keeping the verb, the reason and the length.
        assert!(drawn.contains("|<-- MSG panjang panjang"), "{drawn}");
        assert!(drawn.contains("..."), "{drawn}");
        assert!(
            drawn.contains("[bad line: line too long] \"MSG xxx"),
            "{drawn}"
        );
        assert!(drawn.contains("\"... (5004 bytes) --"), "{drawn}");
        assert!(
            drawn.contains("ERR unknown upcall id 7 (...) --"),
            "{drawn}"
        );
    }
}

#[test]
fn every_checked_in_capture_draws_a_ladder_that_fits() {
    let captures = upcall_capture::checked_in_captures(&manifest_dir());
    assert!(captures.len() >= 7, "{captures:?}");
    for pcap in &captures {
        let conversation = decode_file(pcap, 4141).unwrap();
        for flags in [&["--ladder"][..], &["--ladder", "--time", "--frames"]] {
            let drawn = decoded(flags, pcap);
            assert_eq!(drawn, decoded(flags, pcap), "the same every time");
            assert_eq!(drawn.lines().count(), conversation.entries.len() + 1);
            for row in drawn.lines() {
                assert!(
                    row.chars().count() <= WIDTH,
                    "{}: {} columns: {row}",
                    pcap.display(),
                    row.chars().count()
                );
            }
            for event in ["[connect]", "[close]"] {
                assert!(drawn.contains(event), "{}: no {event}", pcap.display());
            }
        }
        assert_mermaid_reads_literally(&decoded(&["--mermaid"], pcap));
        assert_mermaid_reads_literally(&decoded(&["--mermaid", "--time", "--frames"], pcap));
    }
}

#[test]
fn a_connection_without_welcome_or_with_a_reused_id_is_still_named() {
    let path = manifest_dir().join("tests/data/any-two-clients.pcap");
    let drawn = decoded(&["--ladder"], &path);
    let header = drawn.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["server", "client-1", "client-2", "c3"]
    );

    let mut capture = Capture::new(DataLink::ETHERNET);
    for n in 1..=2u16 {
        let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 40_000 + n);
        talk.now = Duration::from_millis(u64::from(n) * 100);
        talk.connect();
        // The server restarted between the two: both are client-1.
        talk.server(b"WELCOME client-1 upcall/1\n");
        capture.frames.extend(talk.capture.frames);
    }
    let conversation = decode(&capture.to_bytes(), 4141, "restart").unwrap();
    let drawn = ladder(&conversation.entries, Format::default());
    let header = drawn.lines().next().unwrap();
    assert!(header.ends_with("client-1     client-1 (c2)"), "{drawn}");
}

#[test]
fn the_command_line_draws_on_request() {
    let path = manifest_dir().join("pcaps/upcall-basic.pcap");
    let file = path.display().to_string();
    let both = run(&["--ladder", "--mermaid", &file]);
    assert_eq!(both.status, 2);
    assert_eq!(
        both.stderr,
        "decode: give --ladder or --mermaid, not both.\n"
    );
    assert!(decoded(&["--mermaid"], &path).starts_with("sequenceDiagram\n"));
    let help = run(&["--help"]).stdout;
    for flag in ["--ladder", "--mermaid"] {
        assert!(help.contains(flag), "{help}");
    }
    assert!(
        help.contains("clientcall waits for each REGISTERED"),
        "{help}"
    );
    for line in help.lines() {
        assert!(line.chars().count() <= WIDTH, "{line}");
    }
}

/// The text of the fenced block right after `marker` in `document`.
fn block_after(document: &str, marker: &str) -> Option<String> {
    let start = document.find(marker)? + marker.len();
    let end = start + document[start..].find("```")?;
    Some(document[start..end].to_string())
}

#[test]
fn the_pcaps_readme_shows_the_ladder_of_each_reference_capture() {
    let readme = fs::read_to_string(manifest_dir().join("pcaps/README.md")).unwrap();
    let references: Vec<PathBuf> = upcall_capture::checked_in_captures(&manifest_dir())
        .into_iter()
        .filter(|pcap| pcap.starts_with(manifest_dir().join("pcaps")))
        .collect();
    assert_eq!(references.len(), 4, "{references:?}");
    for pcap in &references {
        let name = pcap.file_name().unwrap().to_string_lossy();
        let marker = format!("<!-- ladder: {name} -->\n```text\n");
        let shown = block_after(&readme, &marker)
            .unwrap_or_else(|| panic!("pcaps/README.md has no `{}` block", marker.trim_end()));
        let drawn = decoded(&["--ladder"], pcap);
        assert!(
            shown == drawn,
            "pcaps/README.md shows another ladder for {name} than \
             `cargo run -q --example decode -- --ladder pcaps/{name}` draws:\n{drawn}"
        );
    }
}

#[test]
fn both_readmes_show_the_lab_conversation_in_mermaid() {
    let drawn = decoded(
        &["--mermaid"],
        &manifest_dir().join("pcaps/upcall-basic.pcap"),
    );
    for readme in ["README.md", "README.id.md"] {
        let text = fs::read_to_string(manifest_dir().join(readme)).unwrap();
        let shown = block_after(&text, "```mermaid\n")
            .unwrap_or_else(|| panic!("{readme} has no ```mermaid block"));
        assert!(
            shown == drawn,
            "{readme}'s Mermaid diagram is not what \
             `cargo run -q --example decode -- --mermaid pcaps/upcall-basic.pcap` draws:\n{drawn}"
        );
    }
}

/// `connections` clients, `at_once` of them connected at a time, each saying hello and answering
/// one upcall: the capture's bytes.
fn many_clients(connections: u16, at_once: u16) -> Vec<u8> {
    let mut capture = Capture::new(DataLink::ETHERNET);
    for n in 0..connections {
        let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 10_000 + n);
        // A new client every 2 ms; each stays about `at_once` x 2 ms.
        talk.now = Duration::from_millis(u64::from(n) * 2);
        talk.step = Duration::from_micros(u64::from(at_once) * 2000 / 10);
        talk.connect();
        talk.server(format!("WELCOME client-{} upcall/1\n", n + 1).as_bytes());
        talk.client(b"REGISTER on_event\n");
        talk.server(b"REGISTERED on_event\n");
        talk.client(b"MSG haii\n");
        talk.server(b"UPCALL 1 on_event Upcall event: Processing haii\n");
        talk.client(b"RETURN 1 ok\n");
        talk.client_closes_first();
        capture.frames.extend(talk.capture.frames);
    }
    capture.frames.sort_by_key(|(time, _)| *time);
    capture.to_bytes()
}

/// A capture of a whole class reconnecting all day: 8,000 connections, 20 at a time. Before,
/// each client had a lifeline of its own and every row crossed them all (488 MiB of ladder).
/// Now every row fits 100 columns, so the ladder is at most one row of 100 columns per entry.
#[test]
fn the_ladder_of_8000_connections_grows_linearly_with_the_capture() {
    let conversation = decode(&many_clients(8000, 20), 4141, "class").unwrap();
    let entries = conversation.entries.len();
    assert!(entries >= 8000 * 9, "{entries} entries");
    for format in [
        Format::default(),
        Format {
            time: true,
            frames: true,
        },
    ] {
        let drawn = ladder(&conversation.entries, format);
        assert_eq!(drawn.lines().count(), entries + 1);
        for row in drawn.lines() {
            assert!(row.chars().count() <= WIDTH, "{} columns: {row}", row.len());
        }
        assert!(
            drawn.len() <= (entries + 1) * (WIDTH + 1),
            "{} bytes for {entries} entries",
            drawn.len()
        );
        eprintln!(
            "8,000 connections, {entries} entries, {format:?}: {:.1} MiB of ladder",
            drawn.len() as f64 / (1 << 20) as f64
        );
    }
}

/// Lifelines are reused once more clients come than fit: a client on a lifeline the header
/// does not name names itself on every arrow, and its lifeline is one of the few drawn.
#[test]
fn clients_beyond_the_width_share_lifelines_and_name_themselves() {
    let conversation = decode(&many_clients(30, 3), 4141, "thirty").unwrap();
    let drawn = ladder(&conversation.entries, Format::default());
    let header = drawn.lines().next().unwrap();
    assert!(header.contains("client-1"), "{header}");
    assert!(!header.contains("client-30"), "{header}");
    assert!(
        drawn.contains("<-- client-30: MSG haii --"),
        "no arrow names client-30:\n{drawn}"
    );
    for row in drawn.lines() {
        assert!(row.chars().count() <= WIDTH, "{row}");
    }
}
