//! The README's sample output is real output: each block marked `<!-- sample: NAME -->` is compared
//! with what the programs print when run the way the README says. Only port numbers may differ
//! (the tests use a port the system picks, the README shows 4141 and the port a client happened to
//! get).

mod process;

use process::{run_with_input, Program};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The text of the fenced block right after `<!-- sample: NAME -->`.
fn sample(name: &str) -> String {
    let readme = readme();
    let marker = format!("<!-- sample: {name} -->\n```text\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no sample {name}"))
        + marker.len();
    let end = start + readme[start..].find("```").expect("the block ends");
    readme[start..end].to_string()
}

/// `127.0.0.1:51018` and `127.0.0.1:4141` both become `127.0.0.1:PORT`.
fn without_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..at + "127.0.0.1:".len()]);
        rest = rest[at + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push_str("PORT");
    }
    out.push_str(rest);
    out
}

#[test]
fn the_client_sample_is_real() {
    let (_server, port) = Program::servercall(&[]);
    let client = run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\nhalo\nbye\n",
    );
    let transcript = String::from_utf8_lossy(&client.stdout);
    assert_eq!(without_ports(&transcript), without_ports(&sample("client")));
}

#[test]
fn the_server_log_sample_is_real() {
    let (mut server, port) = Program::servercall(&[]);
    run_with_input(
        env!("CARGO_BIN_EXE_clientcall"),
        &["--server", &format!("127.0.0.1:{port}")],
        "haii\nhalo\nbye\n",
    );
    server.wait_for("client-1 disconnected");
    assert_eq!(
        without_ports(&server.text()),
        without_ports(&sample("server-log"))
    );
}

/// The console sample interleaves what the operator types with what the server prints: type each
/// command, wait for the lines the README shows after it, and rebuild the session from both.
#[test]
fn the_console_sample_is_real() {
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
    let expected = sample("console");
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
    assert_eq!(without_ports(&session), without_ports(&expected));
}

/// The commands of a Markdown text: every line of its fenced blocks that have no language tag
/// (sample output is fenced as `text`).
fn commands(markdown: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut inside = None;
    for line in markdown.lines() {
        match (&inside, line.strip_prefix("```")) {
            (None, Some(tag)) => inside = Some(tag.is_empty()),
            (Some(_), Some(_)) => inside = None,
            (Some(true), None) if !line.trim().is_empty() => commands.push(line.to_string()),
            _ => {}
        }
    }
    commands.sort();
    commands.dedup();
    commands
}

/// The Indonesian lab guide and the README's lab section give the same commands, letter for
/// letter: a translation must never change what a student types.
#[test]
fn the_indonesian_lab_guide_has_the_same_commands() {
    let readme = readme();
    let start = readme.find("\n## Lab").expect("README has a Lab section");
    let end = start + 1 + readme[start + 1..].find("\n## ").unwrap();
    let english = commands(&readme[start..end]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.id.md");
    let indonesian = commands(&std::fs::read_to_string(path).unwrap());
    assert!(english.len() >= 8, "{english:?}");
    assert_eq!(english, indonesian);
}
