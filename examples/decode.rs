//! Prints the `upcall/1` conversation in a packet capture, in the format of the reference `.txt`
//! files in `pcaps/`, so that a student can compare their own capture with the reference:
//!
//! ```text
//! sudo tcpdump -i lo -w my.pcap 'tcp port 4141'      # while servercall and clientcall talk
//! cargo run -q --example decode -- my.pcap | diff pcaps/upcall-basic.txt -
//! ```
//!
//! Or draws it: `--ladder` as a sequence diagram in text, one column per client, `--mermaid` as
//! Mermaid source for a lab report. Other options: `--port N` (the server's port, default 4141),
//! `--time` (seconds since the first SYN; on a diagram also each upcall's round trip), `--frames`
//! (Wireshark's frame numbers), `--help`. Exit status 0 when the capture was decoded, 1 when it
//! could not be (a pcapng file, no traffic on the port, ...: said in one sentence), 2 for a wrong
//! command line.
//!
//! The decoder itself is the `upcall-capture` crate in `tests/capture/`, a dev-dependency shared
//! with the tests that check the reference captures: what this prints is exactly what they check.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = upcall_capture::cli(&args);
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    ExitCode::from(outcome.status as u8)
}
