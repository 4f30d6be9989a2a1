//! The operator's console: `servercall`'s stdin, where the server decides *on its own* to call
//! its clients back.
//!
//! This is what turns the old lab's echo into a real upcall server. In the old lab, the server only
//! ever spoke when spoken to. Here the operator types `call client-1 uppercase haii` and the server
//! runs `uppercase("haii")` *on the client's machine* and prints what came back, although the client
//! asked for nothing.
//!
//! The console runs on the main thread, apart from every connection thread, which is why it may wait
//! for an upcall's answer: that answer is read by the client's own thread and handed over. Each
//! `call` and `broadcast` waits on a short-lived thread of its own, so that `list` and `help` answer
//! at once while a call waits, and five calls to a slow client take one timeout, not five.
//!
//! Whatever is typed or piped in, the console carries on: a line that is not UTF-8, or is
//! absurdly long, is skipped with a note, never a reason to stop reading (after which `quit` could
//! no longer stop the server).

use std::io::{self, BufRead, Write};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;

use crate::lock;
use crate::server::{seconds, Outcome, Server};

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
  kick <client-id>|<address>        drop a client, or every client from an address (which is
                                    then refused for 10 min)
  help                              this text
  quit                              say BYE to every client and stop the server";

/// `call`s and `broadcast`s that may wait for answers at the same time. Each waits on a thread of
/// its own, so `list` and `help` answer at once even while calls wait.
pub const MAX_CALLS_IN_FLIGHT: usize = 16;

/// Longest console line read; a longer one (a paste gone wrong) is skipped with a note.
const MAX_CONSOLE_LINE: usize = 64 * 1024;

/// Reads commands from `input` until `quit` or the end of input, answering on `output`.
///
/// `call` and `broadcast` run on threads of their own and print their results when the answers
/// come; the console goes on reading meanwhile. Before `run` returns (at `quit` or at the end of
/// input) it waits for them, so their results are never lost.
pub fn run(
    server: &Server,
    mut input: impl BufRead,
    output: impl Write + Send,
) -> io::Result<ConsoleEnd> {
    // Lock: guards the console's output, so that one command's answer is printed in one piece.
    // Held only while printing, never while waiting for an upcall.
    let output = Mutex::new(output);
    // A slot for each call in flight: a call takes one before it starts (waiting if all are
    // taken) and gives it back when it has printed its answer.
    let slots = Slots::new(MAX_CALLS_IN_FLIGHT);
    thread::scope(|waiting| {
        let mut line = Vec::new();
        loop {
            line.clear();
            if read_bounded(&mut input, &mut line)? == 0 {
                return Ok(ConsoleEnd::EndOfInput);
            }
            if !line.ends_with(b"\n") && line.len() >= MAX_CONSOLE_LINE {
                skip_rest_of_line(&mut input)?;
                print_answer(
                    &output,
                    format!("Ignored a console line over {MAX_CONSOLE_LINE} bytes."),
                );
                continue;
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                print_answer(
                    &output,
                    "Ignored a line that is not UTF-8 text: the console reads UTF-8.".into(),
                );
                continue;
            };
            let (command, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            let rest = rest.trim_start().to_string();
            match command {
                "" => {}
                "help" => print_answer(&output, HELP.into()),
                "list" => print_answer(&output, list(server)),
                "call" | "broadcast" => {
                    let slot = slots.try_take().unwrap_or_else(|| {
                        print_answer(
                            &output,
                            format!(
                            "{MAX_CALLS_IN_FLIGHT} calls are waiting for answers: this one starts \
                             when one of them has finished."
                        ),
                        );
                        slots.take()
                    });
                    let output = &output;
                    let is_call = command == "call";
                    // The slot goes with the thread, and is free again when its answer is printed.
                    let started = thread::Builder::new().spawn_scoped(waiting, move || {
                        let answer = if is_call {
                            call(server, &rest)
                        } else {
                            broadcast(server, &rest)
                        };
                        print_answer(output, answer);
                        drop(slot);
                    });
                    if let Err(error) = started {
                        // Out of threads (a container's pids limit): this command cannot run
                        // (its slot is free again, with the closure that held it), and the
                        // server and the console go on.
                        print_answer(
                            output,
                            format!("Could not run `{command}`: cannot start a thread ({error})."),
                        );
                    }
                }
                "kick" => print_answer(
                    &output,
                    match server.kick(&rest) {
                        Ok(answer) | Err(answer) => answer,
                    },
                ),
                "quit" => {
                    let count = server.client_count();
                    print_answer(
                        &output,
                        format!("Saying BYE to {count} client(s) and stopping."),
                    );
                    return Ok(ConsoleEnd::Quit);
                }
                other => print_answer(&output, format!("Unknown command `{other}`. Type `help`.")),
            }
        }
    })
}

/// Prints one answer (one or more lines) in one piece. A console whose output is gone still
/// serves: the error is ignored.
fn print_answer(output: &Mutex<impl Write>, answer: String) {
    let mut output = lock(output);
    let _ = writeln!(output, "{answer}");
    let _ = output.flush();
}

/// Reads up to a newline, or [`MAX_CONSOLE_LINE`] bytes, whichever comes first.
fn read_bounded(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    io::Read::take(input, MAX_CONSOLE_LINE as u64).read_until(b'\n', line)
}

/// Reads and drops the rest of an overlong line.
fn skip_rest_of_line(input: &mut impl BufRead) -> io::Result<()> {
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let read = read_bounded(input, &mut rest)?;
        if read == 0 || rest.ends_with(b"\n") {
            return Ok(());
        }
    }
}

fn list(server: &Server) -> String {
    let clients = server.clients();
    if clients.is_empty() {
        return "No clients connected.".into();
    }
    let lines: Vec<String> = clients
        .iter()
        .map(|client| {
            let callbacks = if client.callbacks.is_empty() {
                "(no callbacks)".to_string()
            } else {
                client.callbacks.join(", ")
            };
            format!("{}  {}  {callbacks}", client.name, client.address)
        })
        .collect();
    lines.join("\n")
}

/// `call <client-id> <callback> [argument]`: the argument is the rest of the line, spaces and all.
fn call(server: &Server, arguments: &str) -> String {
    const USAGE: &str = "Usage: call <client-id> <callback> [argument]";
    let mut words = arguments.splitn(3, ' ');
    let (Some(client), Some(callback)) = (words.next(), words.next()) else {
        return USAGE.into();
    };
    if client.is_empty() || callback.is_empty() {
        return USAGE.into();
    }
    let argument = words.next().unwrap_or("");
    server.call(client, callback, argument).to_string()
}

fn broadcast(server: &Server, text: &str) -> String {
    let results = server.broadcast(text);
    if results.is_empty() {
        return "No client has registered on_event.".into();
    }
    let mut lines: Vec<String> = results.iter().map(ToString::to_string).collect();
    let answered = results
        .iter()
        .filter(|result| matches!(result.outcome, Outcome::Returned(_)))
        .count();
    let timeout = seconds(server.config().upcall_timeout);
    lines.push(format!(
        "Broadcast: {answered} of {} client(s) returned (upcall timeout {timeout}).",
        results.len()
    ));
    lines.join("\n")
}

/// A counting semaphore: at most `count` slots are taken at a time, and a [`Slot`] is given back
/// when it is dropped, however its holder ends. The console takes one for each `call` and
/// `broadcast` that waits for answers, so a paste of a thousand calls starts at most
/// [`MAX_CALLS_IN_FLIGHT`] threads, and the rest wait their turn.
struct Slots {
    /// Lock: guards how many slots are taken. Held to count one in or out, and by a taker waiting
    /// for one to be freed (the wait releases it); never while a call waits for an upcall.
    taken: Mutex<usize>,
    freed: Condvar,
    count: usize,
}

/// One taken slot; dropping it frees it.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(count: usize) -> Slots {
        Slots {
            taken: Mutex::new(0),
            freed: Condvar::new(),
            count,
        }
    }

    /// A slot if one is free, at once.
    fn try_take(&self) -> Option<Slot<'_>> {
        let mut taken = lock(&self.taken);
        (*taken < self.count).then(|| {
            *taken += 1;
            Slot(self)
        })
    }

    /// A slot, waiting until one is free.
    fn take(&self) -> Slot<'_> {
        let mut taken = lock(&self.taken);
        while *taken >= self.count {
            taken = self
                .freed
                .wait(taken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *taken += 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.taken) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn no_more_slots_than_there_are_and_a_dropped_one_is_free_again_for_whoever_waits() {
        let slots = Slots::new(2);
        let first = slots.try_take().expect("a free slot");
        let _second = slots.try_take().expect("a free slot");
        assert!(slots.try_take().is_none());
        let (took, taken) = mpsc::channel();
        let waiting = &slots;
        thread::scope(|scope| {
            scope.spawn(move || {
                let _third = waiting.take();
                took.send(()).unwrap();
            });
            // It waits while both are taken...
            assert!(taken.recv_timeout(Duration::from_millis(200)).is_err());
            // ...and gets the one given back.
            drop(first);
            taken
                .recv_timeout(Duration::from_secs(10))
                .expect("the waiter took the freed slot");
        });
        // The waiter's slot was freed when it ended: one is free again.
        assert!(slots.try_take().is_some());
    }
}
