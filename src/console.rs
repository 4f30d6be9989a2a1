//! The operator's console: `servercall`'s stdin, where the server decides *on its own* to call
//! its clients back.
//!
//! This is what turns the old lab's echo into a real upcall server. In the old lab, the server only
//! ever spoke when spoken to. Here the operator types `call client-1 uppercase haii` and the server
//! runs `uppercase("haii")` *on the client's machine* and prints what came back, although the client
//! asked for nothing.
//!
//! The console runs on the main thread, apart from every connection thread, which is why it may wait
//! for an upcall's answer: that answer is read by the client's own thread and handed over.

use std::io::{self, BufRead, Write};

use crate::server::{seconds, Server};

/// Why the console stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEnd {
    /// The operator typed `quit`: the server should say `BYE` to everyone and stop.
    Quit,
    /// Stdin reached its end (no terminal, e.g. a detached container). The server keeps serving.
    EndOfInput,
}

const HELP: &str = "\
Console commands:
  list                              clients, their addresses and callbacks
  call <client-id> <callback> [arg] upcall one client's callback and wait for its result
  broadcast <text>                  upcall on_event on every client that registered it
  help                              this text
  quit                              say BYE to every client and stop the server";

/// Reads commands from `input` until `quit` or the end of input, answering on `output`.
pub fn run(server: &Server, input: impl BufRead, mut output: impl Write) -> io::Result<ConsoleEnd> {
    for line in input.lines() {
        let line = line?;
        let (command, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        let rest = rest.trim_start();
        match command {
            "" => {}
            "help" => writeln!(output, "{HELP}")?,
            "list" => list(server, &mut output)?,
            "call" => call(server, rest, &mut output)?,
            "broadcast" => broadcast(server, rest, &mut output)?,
            "quit" => {
                let count = server.client_count();
                writeln!(output, "Saying BYE to {count} client(s) and stopping.")?;
                return Ok(ConsoleEnd::Quit);
            }
            other => writeln!(output, "Unknown command `{other}`. Type `help`.")?,
        }
        output.flush()?;
    }
    Ok(ConsoleEnd::EndOfInput)
}

fn list(server: &Server, output: &mut impl Write) -> io::Result<()> {
    let clients = server.clients();
    if clients.is_empty() {
        return writeln!(output, "No clients connected.");
    }
    for client in clients {
        let callbacks = if client.callbacks.is_empty() {
            "(no callbacks)".to_string()
        } else {
            client.callbacks.join(", ")
        };
        writeln!(output, "{}  {}  {callbacks}", client.name, client.address)?;
    }
    Ok(())
}

/// `call <client-id> <callback> [argument]`: the argument is the rest of the line, spaces and all.
fn call(server: &Server, arguments: &str, output: &mut impl Write) -> io::Result<()> {
    let mut words = arguments.splitn(3, ' ');
    let (Some(client), Some(callback)) = (words.next(), words.next()) else {
        return writeln!(output, "Usage: call <client-id> <callback> [argument]");
    };
    if client.is_empty() || callback.is_empty() {
        return writeln!(output, "Usage: call <client-id> <callback> [argument]");
    }
    let argument = words.next().unwrap_or("");
    writeln!(output, "{}", server.call(client, callback, argument))
}

fn broadcast(server: &Server, text: &str, output: &mut impl Write) -> io::Result<()> {
    let results = server.broadcast(text);
    if results.is_empty() {
        return writeln!(output, "No client has registered on_event.");
    }
    let mut answered = 0;
    for result in &results {
        writeln!(output, "{result}")?;
        if matches!(result.outcome, crate::server::Outcome::Returned(_)) {
            answered += 1;
        }
    }
    let timeout = seconds(server.config().upcall_timeout);
    writeln!(
        output,
        "Broadcast: {answered} of {} client(s) returned (upcall timeout {timeout}).",
        results.len()
    )
}
