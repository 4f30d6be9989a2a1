//! The command line of `cargo run --example decode`, here so that the tests can run it without
//! starting a process: it returns what it would print and its exit status.

use std::path::Path;

use upcall::protocol::DEFAULT_PORT;

use crate::ladder::ladder;
use crate::mermaid::mermaid;
use crate::pcap::decode_file;
use crate::text::{format_conversation, Format};

/// The help text of `cargo run --example decode`.
pub const USAGE: &str = "\
decode: prints the upcall/1 conversation in a packet capture, one line per message, or draws it.

Usage: cargo run --example decode -- [--port N] [--time] [--frames] [--ladder | --mermaid] FILE

  --port N    the server's TCP port (default 4141)
  --time      start each line with the seconds since the first SYN; with --ladder or --mermaid,
              also give each UPCALL's round trip to its RETURN or FAIL
  --frames    start each line with its frame number, as Wireshark's \"No.\" column shows it
  --ladder    draw the conversation as a sequence diagram in text, one column per client
  --mermaid   the same diagram as Mermaid source, for GitHub, GitLab or a lab report
  --help      this text

The output has the format of the reference files in pcaps/: compare yours with
  cargo run -q --example decode -- my.pcap | diff pcaps/upcall-basic.txt -
Ports, addresses, sequence numbers and times are left out (connections are c1, c2, ... in the
order they opened), so diff shows what was said differently, and lines that crossed on the wire
in another order (clientcall waits for each REGISTERED before its next REGISTER, but two clients,
or a client and the server's console, may speak at the same moment). Capture with
  sudo tcpdump -i lo -w my.pcap 'tcp port 4141'
(classic pcap; -i any and Ethernet interfaces work too; a pcapng file is refused).";

/// What the decoder prints: the `.txt` lines, a ladder, or Mermaid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Text,
    Ladder,
    Mermaid,
}

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
    let mut view = View::Text;
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
            "--ladder" | "--mermaid" => {
                let wanted = if arg == "--ladder" {
                    View::Ladder
                } else {
                    View::Mermaid
                };
                if view != View::Text && view != wanted {
                    return fail(2, "give --ladder or --mermaid, not both.".into());
                }
                view = wanted;
            }
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
                stdout: match view {
                    View::Text => format_conversation(&conversation.entries, format),
                    View::Ladder => ladder(&conversation.entries, format),
                    View::Mermaid => mermaid(&conversation.entries, format),
                },
                stderr,
                status: 0,
            }
        }
        Err(error) => fail(1, error.to_string()),
    }
}
