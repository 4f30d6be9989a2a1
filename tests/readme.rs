//! The README's sample output is real output: each block marked `<!-- sample: NAME -->` is compared
//! with what the programs print when run the way the README says. Only port numbers may differ
//! (the tests use a port the system picks, the README shows 4141 and the port a client happened to
//! get). The Indonesian guide, README.id.md, carries the same samples, checked the same way, and
//! every command block of README.md letter for letter.
//!
//! The lab's samples (`lab-*`) need Docker: `compose/lab-check.sh` checks those, in both files.

mod bare;
mod process;

pub mod guide;

use guide::{anchor, read, sample, without_ports, GUIDES as READMES};
use process::{run_with_input, Program};

/// The names of the samples in a Markdown text, in order.
fn sample_names(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("<!-- sample: "))
        .filter_map(|rest| rest.strip_suffix(" -->"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_client_sample_is_real() {
    for readme in READMES {
        let (_server, port) = Program::servercall(&[]);
        let client = run_with_input(
            env!("CARGO_BIN_EXE_clientcall"),
            &["--server", &format!("127.0.0.1:{port}")],
            "haii\nhalo\nbye\n",
        );
        let transcript = String::from_utf8_lossy(&client.stdout);
        assert_eq!(
            without_ports(&transcript),
            without_ports(&sample(readme, "client")),
            "{readme}"
        );
    }
}

/// The bare server of `examples/bare_server.rs` gives the client the same session, to the byte.
#[test]
fn the_client_sample_is_real_with_the_bare_server_too() {
    let address = bare::start();
    let client = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &address.to_string()],
        "haii\nhalo\nbye\n",
    );
    let transcript = String::from_utf8_lossy(&client.stdout);
    assert_eq!(
        without_ports(&transcript),
        without_ports(&sample("README.md", "client"))
    );
}

#[test]
fn the_server_log_sample_is_real() {
    for readme in READMES {
        let (mut server, port) = Program::servercall(&[]);
        run_with_input(
            env!("CARGO_BIN_EXE_clientcall"),
            &["--server", &format!("127.0.0.1:{port}")],
            "haii\nhalo\nbye\n",
        );
        server.wait_for("client-1 disconnected");
        assert_eq!(
            without_ports(&server.text()),
            without_ports(&sample(readme, "server-log")),
            "{readme}"
        );
    }
}

/// The console sample interleaves what the operator types with what the server prints: type each
/// command, wait for the lines the README shows after it, and rebuild the session from both. The
/// client's terminal meanwhile is the sample `client-console`.
#[test]
fn the_console_sample_is_real() {
    for readme in READMES {
        console_session_matches(readme);
    }
}

fn console_session_matches(readme: &str) {
    let (mut server, port) = Program::servercall(&[]);
    let mut client = Program::clientcall(port, &[]);
    for message in ["haii", "halo"] {
        client.type_line(message);
        client.wait_for(&format!("Processing {message}"));
        server.wait_for("returned for upcall");
    }
    let is_command = |line: &&str| {
        ["list", "call ", "broadcast ", "quit"]
            .iter()
            .any(|command| line.starts_with(command))
    };
    let expected = sample(readme, "console");
    let mut lines = expected.lines().peekable();
    let mut session = String::new();
    while let Some(command) = lines.next() {
        assert!(is_command(&command), "{command:?} is not a console command");
        let printed_before = server.text().len();
        server.type_line(command);
        let mut last = None;
        while let Some(line) = lines.next_if(|line| !is_command(line)) {
            last = Some(line);
        }
        // The README's ports are not ours: wait for what follows the last port on the line.
        let last = last.expect("every command prints something");
        let port_free = last.rsplit("127.0.0.1:").next().unwrap();
        let last = port_free.trim_start_matches(|c: char| c.is_ascii_digit());
        server.wait_for(last);
        let printed = server.text();
        let end = printed_before + printed[printed_before..].find(last).unwrap() + last.len() + 1;
        session.push_str(command);
        session.push('\n');
        session.push_str(&printed[printed_before..end]);
    }
    assert_eq!(
        without_ports(&session),
        without_ports(&expected),
        "{readme}"
    );
    // The same session seen from the client's terminal: each upcall it ran, with its result.
    let (_, client_text) = client.finish();
    assert_eq!(
        without_ports(&client_text),
        without_ports(&sample(readme, "client-console")),
        "{readme}"
    );
}

/// The command blocks of a Markdown text: every fenced block that is not sample output (sample
/// output is fenced as `text`), whole, with its language tag (none, or `powershell`).
fn command_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut inside: Option<(bool, String)> = None;
    for line in markdown.lines() {
        match (&mut inside, line.strip_prefix("```")) {
            (None, Some(tag)) => inside = Some((tag != "text", format!("{line}\n"))),
            (Some((is_command, block)), Some(_)) => {
                if *is_command {
                    block.push_str("```\n");
                    blocks.push(std::mem::take(block));
                }
                inside = None;
            }
            (Some((_, block)), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(inside.is_none(), "a fenced block is not closed");
    blocks
}

/// The Indonesian guide gives every command block of the README letter for letter, and no command
/// the README does not give: a translation must never change what a student types.
#[test]
fn the_indonesian_guide_has_every_command_block() {
    let english = command_blocks(&read("README.md"));
    let indonesian = command_blocks(&read("README.id.md"));
    assert!(english.len() >= 30, "{} command blocks", english.len());
    let missing: Vec<&String> = english.iter().filter(|b| !indonesian.contains(b)).collect();
    assert!(missing.is_empty(), "README.id.md lacks:\n{missing:#?}");
    let extra: Vec<&String> = indonesian.iter().filter(|b| !english.contains(b)).collect();
    assert!(
        extra.is_empty(),
        "README.id.md has blocks README.md lacks:\n{extra:#?}"
    );
}

/// The Indonesian guide shows the same samples as the README (the programs print English), in
/// the same order; the tests above run each of them against the programs.
#[test]
fn the_indonesian_guide_has_the_same_samples() {
    let english = sample_names(&read("README.md"));
    assert!(english.len() >= 6, "{english:?}");
    assert_eq!(sample_names(&read("README.id.md")), english);
    for name in &english {
        assert_eq!(
            sample("README.id.md", name),
            sample("README.md", name),
            "{name}"
        );
    }
}

/// Exercise 5's answer key, as an instructor marks it: the broadcast's two upcalls at once, a
/// `list` typed right after it answered at once (the console does not wait for the broadcast),
/// and `client-1 returned: ok` only with the summary, after the silent client's 5 s timeout.
#[test]
fn exercise_5_answer_key_is_what_the_console_does() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::{Duration, Instant};
    for readme in READMES {
        let (mut server, port) = Program::servercall(&[]);
        let client = Program::clientcall(port, &[]);
        server.wait_for("client-1 registered hostname");
        // The `nc` of the exercise: registers on_event and never answers.
        let mut nc = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        nc.write_all(b"REGISTER on_event\n").unwrap();
        server.wait_for("client-2 registered on_event");
        let printed_before = server.text().len();
        let started = Instant::now();
        server.type_line("broadcast quiz in 5 minutes");
        server.type_line("list");
        let listed = server.wait_for("client-2  127.0.0.1:");
        let list_answered = started.elapsed();
        let summary = "Broadcast: 1 of 2 client(s) returned (upcall timeout 5 s).";
        server.wait_for(summary);
        let summary_after = started.elapsed();
        assert!(
            list_answered < Duration::from_secs(3),
            "list waited for the broadcast: {list_answered:?} ({listed})"
        );
        assert!(
            summary_after >= Duration::from_millis(4500),
            "the summary came before the timeout: {summary_after:?}"
        );
        let printed = server.text()[printed_before..].to_string();
        let ok_at = printed
            .find("client-1 returned: ok")
            .expect("client-1's result");
        let list_at = printed.find("client-2  127.0.0.1:").unwrap();
        assert!(
            list_at < ok_at,
            "{readme}: `ok` before the list:\n{printed}"
        );
        // The key's lines, in its order, leaving out what `list` printed between them.
        let key: Vec<&str> = printed
            .lines()
            .filter(|line| !line.starts_with("client-1  ") && !line.starts_with("client-2  "))
            .collect();
        let expected = sample(readme, "exercise-5");
        assert_eq!(key, expected.lines().collect::<Vec<_>>(), "{readme}");
        // And the nc side saw the upcall, which nobody answers.
        let mut reader = BufReader::new(nc.try_clone().unwrap());
        nc.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            lines.push(line.trim_end().to_string());
        }
        assert_eq!(
            lines[2], "UPCALL 1 on_event Upcall event: server says quiz in 5 minutes",
            "{lines:?}"
        );
        drop(nc);
        drop(client.finish());
        server.type_line("quit");
        drop(server.finish());
    }
}

/// Each guide names the other in its first lines, has a table of contents, and starts with the
/// set-up: the first command block (getting the repository) comes within the first screen.
#[test]
fn each_guide_starts_with_the_other_a_contents_and_the_first_command() {
    for (readme, other, contents) in [
        ("README.md", "README.id.md", "## Contents"),
        ("README.id.md", "README.md", "## Isi"),
    ] {
        let text = read(readme);
        let head: Vec<&str> = text.lines().take(5).collect();
        assert!(
            head.iter()
                .any(|line| line.contains(&format!("]({other})"))),
            "{readme} does not link to {other} in its first lines"
        );
        assert!(text.contains(contents), "{readme} has no {contents}");
        let first_block = text
            .lines()
            .position(|line| line == "```")
            .expect("a command block");
        assert!(
            first_block < 50,
            "{readme}: the first command is on line {first_block}"
        );
        assert_eq!(
            text.lines().nth(first_block + 1),
            Some("git clone <the repository's address> upcall")
        );
    }
}

/// Every link to a section of the same guide (`](#anchor)`) names a heading of that guide, in
/// GitHub's way of making anchors: lower case, spaces to `-`, punctuation dropped.
#[test]
fn every_section_link_of_each_guide_leads_to_a_heading_of_that_guide() {
    for readme in READMES {
        let text = read(readme);
        let anchors: Vec<String> = text
            .lines()
            .filter(|line| line.starts_with('#'))
            .map(anchor)
            .collect();
        for (at, _) in text.match_indices("](#") {
            let rest = &text[at + 3..];
            let anchor = &rest[..rest.find(')').unwrap()];
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{readme}: no heading for #{anchor}"
            );
        }
    }
}

/// The Performance figures of both guides are those of the benchmark's page, their one source:
/// the memory per idle client (servercall, N = 10000), the ratios of parts 1 and 2 over the five
/// runs of its first table (as scheduled and pinned, together), and the broadcast's worst ratio
/// to the raw fan-out. The page's own summary gives the same.
#[test]
fn the_performance_figures_are_the_benchmark_pages() {
    let bench = read("examples/bench/README.md");
    let line = bench
        .lines()
        .find(|line| line.contains("servercall  N = 10000"))
        .expect("the N = 10000 memory line");
    let idle = line.split(" = ").nth(2).expect("= X KiB/client idle");
    let idle: f64 = idle.split(' ').next().unwrap().parse().unwrap();
    let memory = format!("{idle:.1} KiB");
    // | the five | 2 / 1b | 2 / 1 | 2 / 1b [1 CPU] | 2 / 1 [1 CPU] |, each a range `a–b`.
    let five: Vec<(f64, f64)> = bench
        .lines()
        .find(|line| line.starts_with("| the five |"))
        .expect("the five runs' row")
        .split('|')
        .skip(2)
        .filter(|cell| !cell.trim().is_empty())
        .map(|cell| {
            let (low, high) = cell.trim().split_once('–').expect("a range");
            (low.parse().unwrap(), high.parse().unwrap())
        })
        .collect();
    assert_eq!(five.len(), 4, "{five:?}");
    let range = |columns: [usize; 2]| {
        let low = columns
            .map(|c| five[c].0)
            .into_iter()
            .fold(f64::MAX, f64::min);
        let high = columns.map(|c| five[c].1).into_iter().fold(0.0, f64::max);
        format!("{low:.2}–{high:.2}×")
    };
    let same_lines = range([0, 2]);
    let ping_pong = range([1, 3]);
    let broadcast = bench
        .lines()
        .filter(|line| line.starts_with("4  broadcast: last client has its UPCALL"))
        .map(|line| {
            // N=1000, samples, p50 and its unit, p99 and its unit, × base.
            let columns: Vec<&str> = line.split_whitespace().collect();
            let size = columns.iter().position(|c| c.starts_with("N=")).unwrap();
            columns[size + 6].parse::<f64>().unwrap()
        })
        .fold(0.0, f64::max);
    let broadcast = format!("{broadcast:.2}×");
    for figure in [&ping_pong, &same_lines, &format!("within {broadcast}")] {
        assert!(
            bench.contains(figure.as_str()),
            "the bench page's summary lacks {figure}"
        );
    }
    for (readme, within, comma) in [
        ("README.md", "within", false),
        ("README.id.md", "dalam", true),
    ] {
        let text = read(readme);
        let local = |figure: &str| {
            if comma {
                figure.replace('.', ",")
            } else {
                figure.to_string()
            }
        };
        for figure in [
            local(&memory),
            local(&ping_pong),
            local(&same_lines),
            format!("{within} {}", local(&broadcast)),
        ] {
            assert!(text.contains(&figure), "{readme} does not give {figure}");
        }
    }
}
