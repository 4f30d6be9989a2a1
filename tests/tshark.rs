//! Wireshark's view of the captures agrees with the Rust decoder's.
//!
//! `pcaps/upcall.lua` is the dissector students load into Wireshark. These tests run it in
//! `tshark` (Wireshark's command line) on every capture under `pcaps/` and `tests/data/`, and on
//! small synthetic ones, and check, frame by frame, that it finds the same lines as the decoder in
//! `tests/capture/` (the `upcall-capture` crate): the same verbs, ids, callbacks and texts, the same errors for
//! bad lines, and the same UPCALL / RETURN pairs (`upcall.response_in`, `upcall.request_in`,
//! `upcall.time`, and the `upcall.unanswered` warning on an UPCALL nobody answered), and the same
//! client on every line (`upcall.client`, the id of the connection's `WELCOME`), which the Info
//! column shows first and a display filter can pick out.
//!
//! tshark runs as `tshark -r FILE -X lua_script:pcaps/upcall.lua -2 -Y upcall -T fields ...`:
//! `-2` is two-pass analysis, which the dissector needs to know that an UPCALL is never answered
//! (and to link an UPCALL forward to its answer). Its HOME and configuration directory are an
//! empty temporary directory, so no personal preference or plugin changes what it shows.
//!
//! Without tshark (`apt-get install tshark`), the tests say so and pass, except under CI
//! (`CI=true`), where a missing tshark fails them: CI must never skip them silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use upcall::protocol::Message;
use upcall_capture::synth::{Capture, DataLink, Talk};
use upcall_capture::{Entry, Event, Format};

/// The fields compared, in the order tshark prints them (after `frame.number`).
const FIELDS: &[&str] = &[
    "upcall.verb",
    "upcall.client_id",
    "upcall.client",
    "upcall.id",
    "upcall.callback",
    "upcall.argument",
    "upcall.value",
    "upcall.reason",
    "upcall.text",
    "upcall.error",
    "upcall.response_in",
    "upcall.request_in",
    "upcall.unanswered",
    "upcall.unmatched",
];

/// Between fields and between occurrences of one field: control characters, which no valid
/// `upcall/1` line contains.
const SEPARATOR: char = '\u{1e}';
const AGGREGATOR: char = '\u{1f}';

/// `upcall.time` is compared apart, as a number: tshark computes it from doubles.
const TIME_FIELD: &str = "upcall.time";
const TIME_TOLERANCE: f64 = 2e-6;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "upcall-tshark-{}-{}-{label}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `Some(version line)` if tshark runs; `None` (after saying so, once) if it is not installed and
/// this is not CI. Under `CI=true` a missing tshark fails every test here.
fn tshark() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    static NOTICE: Once = Once::new();
    let found = FOUND.get_or_init(|| match Command::new("tshark").arg("--version").output() {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            Ok(text.lines().next().unwrap_or("tshark").to_string())
        }
        Ok(output) => Err(format!(
            "`tshark --version` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err("tshark is not installed".to_string())
        }
        Err(error) => Err(format!("tshark cannot be started: {error}")),
    });
    match found {
        Ok(version) => Some(version.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{why}, and CI=true: CI must run the Wireshark dissector tests (install it with \
             `apt-get install -y tshark`)"
        ),
        Err(why) => {
            // Straight to stderr: the test harness would swallow an eprintln! of a test that passes.
            NOTICE.call_once(|| {
                let _ = writeln!(
                    io::stderr(),
                    "NOTICE: {why}: the Wireshark dissector tests in tests/tshark.rs did not \
                     run. Install it with `sudo apt-get install tshark` to run them (CI does)."
                );
            });
            None
        }
    }
}

/// tshark with the dissector on a capture, two passes, showing the frames that `filter` keeps,
/// each as the values of `fields` (several occurrences joined by [`AGGREGATOR`]), separated by
/// [`SEPARATOR`]: its output, once tshark has succeeded without a word from Lua.
fn run_tshark(pcap: &Path, port: u16, filter: &str, fields: &[&str]) -> String {
    let home = TempDir::new("home");
    let lua = manifest_dir().join("pcaps/upcall.lua");
    let mut command = Command::new("tshark");
    command
        .env("HOME", &home.0)
        .env("XDG_CONFIG_HOME", &home.0)
        .env("WIRESHARK_CONFIG_DIR", &home.0)
        .env_remove("WIRESHARK_DATA_DIR")
        .env_remove("WIRESHARK_PLUGIN_DIR")
        .arg("-r")
        .arg(pcap)
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        // The defaults, said explicitly: the dissector relies on TCP reassembly.
        .args(["-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(["-o", "tcp.analyze_sequence_numbers:TRUE"])
        // Not the default in Wireshark 4.0: without it, TCP hands a segment that arrives before
        // the one in front of it to the dissector as it is, and skips a retransmission that
        // brings new bytes with old ones. The decoder puts both in place.
        .args(["-o", "tcp.reassemble_out_of_order:TRUE"])
        .args(["-o", &format!("upcall.port:{port}")])
        .args(["-2", "-Y", filter, "-T", "fields"])
        .args(["-E", &format!("separator={SEPARATOR}")])
        .args(["-E", &format!("aggregator={AGGREGATOR}")])
        .args(["-E", "occurrence=a", "-E", "quote=n"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tshark failed on {}: {stderr}",
        pcap.display()
    );
    // As root tshark warns that running as root "could be dangerous", and loads the script
    // anyway. Anything about Lua, though, means the dissector did not load or failed.
    assert!(
        !stderr.contains("Lua") && !stderr.contains("lua_script"),
        "tshark's Lua complained on {}: {stderr}",
        pcap.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs tshark with the dissector on a capture: the upcall fields of every frame that has any.
fn tshark_fields(pcap: &Path, port: u16) -> BTreeMap<u64, BTreeMap<String, String>> {
    let mut fields = vec!["frame.number"];
    fields.extend(FIELDS.iter().chain([&TIME_FIELD]));
    let stdout = run_tshark(pcap, port, "upcall", &fields);
    let mut frames = BTreeMap::new();
    for line in stdout.lines() {
        let mut values = line.split(SEPARATOR);
        let frame: u64 = values
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame number in tshark's line {line:?}"));
        let mut fields = BTreeMap::new();
        for (name, value) in FIELDS.iter().chain([&TIME_FIELD]).zip(values) {
            if !value.is_empty() {
                fields.insert(name.to_string(), value.to_string());
            }
        }
        frames.insert(frame, fields);
    }
    frames
}

/// What tshark should print, from the Rust decoder's entries: the same fields, occurrences
/// joined as tshark joins them.
fn expected_fields(entries: &[Entry]) -> BTreeMap<u64, BTreeMap<String, String>> {
    let pairings = upcall_capture::pair_upcalls(entries);
    let clients = upcall_capture::client_names(entries);
    let mut frames: BTreeMap<u64, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for entry in entries {
        let Event::Line { message, .. } = &entry.event else {
            continue;
        };
        let fields = frames.entry(entry.frame).or_default();
        let mut add = |name: &str, value: String| {
            fields.entry(name.to_string()).or_default().push(value);
        };
        if let Some(client) = clients.get(&entry.connection) {
            add("upcall.client", client.clone());
        }
        match message {
            Err(error) => add("upcall.error", error.to_string()),
            Ok(message) => {
                for (name, value) in upcall_capture::message_fields(message) {
                    // tshark writes a tab in a field as `\t`.
                    add(name, value.replace('\t', "\\t"));
                }
                match message {
                    Message::Upcall { id, .. } => {
                        let pairing = pairings.iter().find(|p| {
                            p.connection == entry.connection
                                && p.id == *id
                                && p.request_frame == entry.frame
                        });
                        match pairing.map(|p| p.response_frame) {
                            Some(Some(answer)) => add("upcall.response_in", answer.to_string()),
                            Some(None) => add("upcall.unanswered", "1".to_string()),
                            None => {}
                        }
                    }
                    Message::Return { id, .. } | Message::Fail { id, .. } => {
                        let pairing = pairings.iter().find(|p| {
                            p.connection == entry.connection
                                && p.id == *id
                                && p.response_frame == Some(entry.frame)
                        });
                        match pairing {
                            Some(pairing) => {
                                add("upcall.request_in", pairing.request_frame.to_string());
                                let took = pairing.took.unwrap_or_default();
                                add(TIME_FIELD, format!("{:.9}", took.as_secs_f64()));
                            }
                            None => add("upcall.unmatched", "1".to_string()),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    frames
        .into_iter()
        .map(|(frame, fields)| {
            let joined = fields
                .into_iter()
                .filter(|(_, values)| values.iter().any(|v| !v.is_empty()) || values.len() > 1)
                .map(|(name, values)| (name, values.join(&AGGREGATOR.to_string())))
                .collect();
            (frame, joined)
        })
        .collect()
}

/// A field's value for a message: occurrences apart, long ones cut.
fn shown(value: Option<&String>) -> String {
    let Some(value) = value else {
        return "(none)".to_string();
    };
    let value = value.replace(AGGREGATOR, " | ");
    match value.char_indices().nth(100) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &value[..cut], value.len()),
        None => format!("{value:?}"),
    }
}

/// Compares tshark's view of one capture with the decoder's; panics with every difference.
fn compare(pcap: &Path, port: u16) -> usize {
    let conversation = upcall_capture::decode_file(pcap, port)
        .unwrap_or_else(|error| panic!("the Rust decoder: {error}"));
    let expected = expected_fields(&conversation.entries);
    let actual = tshark_fields(pcap, port);
    let mut problems = Vec::new();
    let frames: BTreeSet<u64> = expected.keys().chain(actual.keys()).copied().collect();
    for frame in frames {
        let none = BTreeMap::new();
        let want = expected.get(&frame).unwrap_or(&none);
        let got = actual.get(&frame).unwrap_or(&none);
        let names: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
        for name in names {
            let (w, g) = (want.get(name), got.get(name));
            let same = if name == TIME_FIELD {
                match (w, g) {
                    (Some(w), Some(g)) => {
                        let times = |s: &str| -> Vec<f64> {
                            s.split(AGGREGATOR)
                                .map(|t| t.parse().unwrap_or(-1.0))
                                .collect()
                        };
                        let (w, g) = (times(w), times(g));
                        w.len() == g.len()
                            && w.iter()
                                .zip(&g)
                                .all(|(w, g)| (w - g).abs() <= TIME_TOLERANCE)
                    }
                    (w, g) => w == g,
                }
            } else {
                w == g
            };
            if !same {
                problems.push(format!(
                    "frame {frame} {name}: decoder {}, tshark {}",
                    shown(w),
                    shown(g)
                ));
            }
        }
    }
    if !problems.is_empty() {
        panic!(
            "tshark with pcaps/upcall.lua and the Rust decoder disagree on {}:\n  {}\n\nThe \
             decoder's view:\n{}",
            pcap.display(),
            problems.join("\n  "),
            upcall_capture::format_conversation(
                &conversation.entries,
                Format {
                    time: false,
                    frames: true
                }
            )
        );
    }
    expected.len()
}

#[test]
fn the_dissector_agrees_with_the_decoder_on_every_capture() {
    let Some(version) = tshark() else { return };
    let captures = upcall_capture::checked_in_captures(&manifest_dir());
    assert!(
        !captures.is_empty(),
        "no .pcap under pcaps/ or tests/data/ to check"
    );
    for pcap in &captures {
        let frames = compare(pcap, upcall::protocol::DEFAULT_PORT);
        assert!(frames > 0, "{}: no upcall/1 frame at all", pcap.display());
        eprintln!("{version}: {} agrees ({frames} frames)", pcap.display());
    }
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    fs::write(&path, bytes).expect("write a capture");
    path
}

/// Lines cut everywhere TCP may cut them: in two, in three, a segment that ends one line, holds
/// another and starts a third; `\r\n`; an empty line; a tab and non-ASCII text.
#[test]
fn the_dissector_reassembles_lines_as_the_decoder_does() {
    if tshark().is_none() {
        return;
    }
    let dir = TempDir::new("split");
    for datalink in [
        DataLink::ETHERNET,
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
    ] {
        let mut talk = Talk::new(Capture::new(datalink), 50_001);
        talk.connect();
        talk.server(b"WELCOME client-1 upcall/1\n");
        talk.client(b"REGISTER on_event\nREGISTER upper");
        talk.client(b"case\nREGISTER host");
        talk.server(b"REGISTERED on_event\nREGISTERED uppercase\n");
        talk.client(b"name\n");
        talk.server(b"REGISTERED hostname\n");
        talk.client(b"MSG sela");
        talk.client(b"mat\tpagi \xe2\x98");
        talk.client(b"\x80 \r\n\nMSG ");
        talk.client(b"\n");
        talk.server(b"UPCALL 1 on_event Upcall event: Processing selamat\tpagi \xe2\x98\x80 \n");
        talk.client(b"RETURN 1 ok\n");
        talk.server(b"UPCALL 2 hostname\nUPCALL 3 uppercase a");
        talk.server(b"b\n");
        talk.client(b"RETURN 2 lab-pc\nRET");
        talk.client(b"URN 3 AB\r\nBYE\n");
        talk.server(b"BYE\n");
        talk.server_closes_first();
        let name = format!("split-{}.pcap", u32::from(datalink));
        let path = write(&dir, &name, &talk.to_bytes());
        let frames = compare(&path, 4141);
        assert!(frames >= 14, "{name}: only {frames} frames with upcall/1");
    }
}

/// Bad lines get the parser's error; an UPCALL nobody answers is flagged; a late answer is no
/// answer to a waiting UPCALL; two connections use the same upcall ids, each its own.
#[test]
fn the_dissector_flags_what_the_decoder_flags() {
    if tshark().is_none() {
        return;
    }
    let dir = TempDir::new("errors");
    let mut one = Talk::new(Capture::new(DataLink::ETHERNET), 50_002);
    one.connect();
    let mut two = Talk::new(Capture::new(DataLink::ETHERNET), 50_003);
    // Both connections go into one capture, packet by packet in this order.
    two.now = Duration::from_millis(1);
    two.connect();
    one.server(b"WELCOME client-1 upcall/1\n");
    two.server(b"WELCOME client-2 upcall/1\n");
    one.client(b"REGISTER on_event\n");
    one.server(b"REGISTERED on_event\n");
    one.client(b"MSG caf\xe9\nHELLO there\nMSG a\x1b[31mred\nREGISTER On_Event\n");
    one.server(b"ERR line is not valid UTF-8\n");
    let long = [b"MSG ".as_slice(), &[b'a'; 5000], b"\n"].concat();
    one.client(&long[..3000]);
    one.client(&long[3000..]);
    one.server(b"ERR line too long\n");
    // The limit counts the newline and a `\r` before it: 4095 bytes and `\n` pass, 4096 do not.
    let longest = [b"MSG ".as_slice(), &[b'b'; 4091], b"\n"].concat();
    one.client(&longest);
    let too_long = [b"MSG ".as_slice(), &[b'c'; 4091], b"\r\n"].concat();
    one.client(&too_long);
    one.client(b"RETURN x ok\nUPCALL 1\nBYE now\nWELCOME c upcall/2\n");
    two.server(b"UPCALL 1 on_event Upcall event: client-1 says hi\n");
    one.server(b"UPCALL 1 uppercase are you there\n");
    two.client(b"RETURN 1 ok\n");
    one.server(b"UPCALL 2 on_event never answered either\n");
    two.client(b"RETURN 1 again\nFAIL 7 no such upcall\n");
    one.client(b"RETURN 99999999999999999999 too big\nRETURN 007 zeros\n");
    one.client_resets();
    two.client_closes_first();

    // Merge the two connections by time into one capture.
    let mut capture = Capture::new(DataLink::ETHERNET);
    let mut frames: Vec<(Duration, Vec<u8>)> = one
        .capture
        .frames
        .iter()
        .chain(&two.capture.frames)
        .cloned()
        .collect();
    frames.sort_by_key(|(time, _)| *time);
    capture.frames = frames;
    let path = write(&dir, "errors.pcap", &capture.to_bytes());
    let frames = compare(&path, 4141);
    assert!(frames >= 12, "only {frames} frames with upcall/1");
}

/// A retransmission that brings old bytes and new ones, a segment sent twice, and segments that
/// arrive before the ones in front of them: both put them back in stream order.
#[test]
fn the_dissector_puts_retransmitted_and_early_segments_in_place_as_the_decoder_does() {
    if tshark().is_none() {
        return;
    }
    let dir = TempDir::new("reorder");
    let mut talk = Talk::new(Capture::new(DataLink::ETHERNET), 50_004);
    talk.connect();
    let welcome = talk.server(b"WELCOME client-1 upcall/1\n");
    talk.server_at(welcome, b"WELCOME client-1 upcall/1\n");
    let msg = talk.client(b"MSG haii\n");
    talk.client_at(msg, b"MSG haii\nMSG halo\n");
    talk.client_seq = talk.client_seq.wrapping_add(9);
    talk.server(b"UPCALL 1 on_event Upcall event: Processing haii\n");
    let first = talk.client_seq;
    let one = b"RETURN 1 ok\nREGISTER upper";
    let two = b"case\nMSG late\n";
    let second = first.wrapping_add(one.len() as u32);
    talk.client_at(second, two);
    talk.client_at(first, one);
    talk.client_seq = second.wrapping_add(two.len() as u32);
    talk.server(b"UPCALL 2 on_event Upcall event: Processing late\n");
    talk.client(b"RETURN 2 ok\nBYE\n");
    talk.server(b"BYE\n");
    talk.server_closes_first();
    let path = write(&dir, "reorder.pcap", &talk.to_bytes());
    let frames = compare(&path, 4141);
    assert!(frames >= 8, "only {frames} frames with upcall/1");
}

/// `upcall.client` names the client of every line on each of the four reference captures, the
/// Info column starts with it, and `upcall.client == "client-N"` keeps exactly that client's
/// frames: the lines of the connection whose `WELCOME` gave it that id.
#[test]
fn the_dissector_names_each_client_and_filters_one_client() {
    if tshark().is_none() {
        return;
    }
    let references: Vec<PathBuf> = upcall_capture::checked_in_captures(&manifest_dir())
        .into_iter()
        .filter(|pcap| pcap.starts_with(manifest_dir().join("pcaps")))
        .collect();
    assert_eq!(
        references.len(),
        4,
        "the reference captures: {references:?}"
    );
    let mut infos = Vec::new();
    for pcap in &references {
        let conversation = upcall_capture::decode_file(pcap, upcall::protocol::DEFAULT_PORT)
            .unwrap_or_else(|error| panic!("the Rust decoder: {error}"));
        let clients = upcall_capture::client_names(&conversation.entries);
        assert!(!clients.is_empty(), "{}: no WELCOME", pcap.display());
        for (connection, client) in &clients {
            let expected: BTreeSet<u64> = conversation
                .entries
                .iter()
                .filter(|entry| entry.connection == *connection)
                .filter(|entry| matches!(entry.event, Event::Line { .. }))
                .map(|entry| entry.frame)
                .collect();
            let filter = format!("upcall.client == \"{client}\"");
            let stdout = run_tshark(pcap, 4141, &filter, &["frame.number", "_ws.col.Info"]);
            let mut shown = BTreeSet::new();
            for line in stdout.lines() {
                let (frame, info) = line.split_once(SEPARATOR).expect("two fields");
                shown.insert(frame.parse::<u64>().expect("a frame number"));
                assert!(
                    info.starts_with(&format!("[{client}] ")),
                    "{}: frame {frame} has the Info {info:?}, without [{client}] first",
                    pcap.display()
                );
                infos.push(info.to_string());
            }
            assert_eq!(
                shown,
                expected,
                "{}: `{filter}` shows other frames than {client}'s lines",
                pcap.display()
            );
        }
    }
    let example = "[client-2] UPCALL 1 on_event \"Upcall event: client-1 says haii\"";
    assert!(
        infos.iter().any(|info| info == example),
        "no {example:?} in {infos:#?}"
    );
}
