//! `cargo run --example bare_server`: the whole upcall story in one file. Read this first.
//!
//! A thread per client, a registry, the pending upcalls, `REGISTER`, `MSG` -> `UPCALL` -> `RETURN`:
//! nothing else. With well-behaved clients it speaks `upcall/1` byte for byte as `servercall`
//! does (the tests run the lab's transcripts against both), so `clientcall` and `nc` work with it.
//! `cargo run --example bare_server -- 0.0.0.0:4141` listens elsewhere than 127.0.0.1:4141.
//!
//! It leaves out what one student can do to a whole class: stop reading (and stall whoever writes
//! to it), flood, hold a slot with silence, never answer. `servercall` is this same story with a
//! defence against each; the README's "Reading the source" has the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use upcall::error::Error;
use upcall::framing::LineReader;
use upcall::protocol::{self, Message, DEFAULT_MAX_LINE, DEFAULT_PORT, ON_EVENT};

fn main() -> io::Result<()> {
    let address = std::env::args().nth(1);
    let address = address.unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
    let listener = TcpListener::bind(&address)?;
    let address = listener.local_addr()?;
    println!("bare_server listening on {address} (upcall/1)");
    serve(listener);
    Ok(())
}

/// Every connected client, by number (`client-7` is 7).
///
/// Lock: guards which clients exist. Held to insert or remove one, or to copy the list out;
/// never while writing to a socket, so a slow write keeps nobody from arriving or leaving.
type Registry = Mutex<BTreeMap<u64, Arc<Client>>>;

/// One connected client, as every thread sees it: its own thread, and the threads of the other
/// clients whose messages it hears.
struct Client {
    /// `client-7`: what `WELCOME` told it.
    name: String,
    /// Lock: guards the order of bytes on this client's socket. Several threads write to it (its
    /// own, and every other client's thread relaying a `MSG`), and each line must leave whole.
    /// Held for one `write_all` of one line. If the client stops reading, that write never ends
    /// and the writer (often another client's thread) is stuck: the first threat `servercall`
    /// defends against, with its outboxes.
    writer: Mutex<TcpStream>,
    /// Lock: guards what the server remembers about this client. Held for a few map operations,
    /// never across I/O.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The functions the client said the server may call back.
    callbacks: BTreeSet<String>,
    /// The id of the last upcall to this client: ids start at 1 on every connection.
    last_id: u64,
    /// Upcalls sent and not answered yet: id -> the callback called.
    pending: HashMap<u64, String>,
}

impl Client {
    /// Takes the state's lock. `unwrap`: a poisoned lock means a thread panicked holding it (a
    /// bug); the bare server lets that spread, `servercall` goes on (`lock` in `src/lib.rs`).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// Accepts clients for ever, one thread each.
pub fn serve(listener: TcpListener) {
    let registry = Arc::new(Registry::default());
    for (number, stream) in (1..).zip(listener.incoming()) {
        match stream {
            Ok(stream) => {
                let registry = registry.clone();
                thread::spawn(move || serve_client(&registry, number, stream));
            }
            // One failed accept is one client turned away, not a reason to stop serving.
            Err(error) => println!("Cannot accept a connection: {error}"),
        }
    }
}

/// One client's thread, from `WELCOME` to its last line. Whatever goes wrong here ends this
/// connection only.
fn serve_client(registry: &Registry, number: u64, stream: TcpStream) {
    // Every line leaves at once as its own segment (one packet per line in Wireshark), instead
    // of waiting for the acknowledgement of the previous one (Nagle's algorithm).
    let _ = stream.set_nodelay(true);
    let (Ok(address), Ok(writer)) = (stream.peer_addr(), stream.try_clone()) else {
        return; // gone already
    };
    let client = Arc::new(Client {
        name: format!("client-{number}"),
        writer: Mutex::new(writer),
        state: Mutex::default(),
    });
    println!("Connection from: {address} ({})", client.name);
    // Lock: the registry, for one insert. In it before `WELCOME` is harmless: nobody calls a
    // client back before it has registered a callback, which it does after `WELCOME`.
    registry.lock().unwrap().insert(number, client.clone());
    let farewell = match converse(registry, &client, &stream) {
        Ok(()) => "disconnected".to_string(),
        Err(error) => format!("disconnected ({error})"),
    };
    // Lock: the registry, for one remove.
    registry.lock().unwrap().remove(&number);
    // Close now: another thread may hold a copy of `client` (and its socket) for a moment more.
    let _ = stream.shutdown(Shutdown::Both);
    println!("{} {farewell}", client.name);
}

/// Reads the client's lines one by one and answers each, until `BYE` or the end of the stream.
fn converse(registry: &Registry, client: &Client, stream: &TcpStream) -> Result<(), Error> {
    let client_id = client.name.clone();
    send(client, &Message::Welcome { client_id })?;
    // The crate's framing: bytes up to each newline, at most DEFAULT_MAX_LINE of them, parsed.
    let mut lines = LineReader::new(stream, DEFAULT_MAX_LINE);
    loop {
        let message = match lines.read_message() {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()), // the client closed the connection
            // A line that is not `upcall/1`: say why, and read the next one.
            Err(Error::Protocol(error)) => {
                refuse(client, error.to_string())?;
                continue;
            }
            Err(error) => return Err(error),
        };
        match message {
            // The client offers a function the server may call back.
            Message::Register { callback } => {
                println!("{} registered {callback}", client.name);
                // Lock: this client's state, for one insert.
                client.state().callbacks.insert(callback.clone());
                send(client, &Message::Registered { callback })?;
            }
            // Step 1: a message is an event for everyone. `on_event` is called back on the
            // sender ("Processing ...") and on every other client ("client-1 says ...").
            //
            // This thread only *sends* those upcalls; it never waits for their answers. The
            // answer to the sender's own upcall arrives on this very socket, which only this
            // thread reads: waiting here for it would wait for ever. Each answer is read by the
            // thread of the client that gives it (the `RETURN` arm below), and matched by id.
            Message::Msg { text } => {
                println!("Received from {}: {text}", client.name);
                upcall(client, ON_EVENT, &protocol::processing(&text));
                let relayed = protocol::relayed(&client.name, &text);
                // Lock: the registry, to copy the list out; released before the first write.
                let everyone: Vec<Arc<Client>> =
                    registry.lock().unwrap().values().cloned().collect();
                for other in everyone.iter().filter(|other| other.name != client.name) {
                    upcall(other, ON_EVENT, &relayed);
                }
            }
            // Step 3: the answer to upcall `id`, read by the called client's own thread. Taking it
            // out of the pending ones (lock: this client's state, one remove) ends it once.
            Message::Return { id, value } => match client.state().pending.remove(&id) {
                Some(_) => println!("{} returned for upcall {id}: {value}", client.name),
                None => refuse(client, format!("unknown upcall id {id}"))?,
            },
            Message::Fail { id, reason } => match client.state().pending.remove(&id) {
                Some(callback) => {
                    println!("Upcall {id} ({callback}): {} failed: {reason}", client.name)
                }
                None => refuse(client, format!("unknown upcall id {id}"))?,
            },
            Message::Bye => {
                println!("{} said BYE", client.name);
                return send(client, &Message::Bye);
            }
            // The parser reads both directions; the other verbs only a server sends.
            other => refuse(client, format!("{} is sent by the server", other.verb()))?,
        }
    }
}

/// Step 2: calls `callback(argument)` back on `client`, if it registered that callback: files
/// the upcall as pending under the next id, and sends `UPCALL <id> <callback> <argument>`. It
/// does not wait for the answer (step 1 says why it must not).
fn upcall(client: &Client, callback: &str, argument: &str) {
    // Lock order: `writer`, then `state`, here (the one place that takes both). Holding the writer
    // while the id is chosen makes ids leave in the order given: 1, 2, 3, never 2 before 1.
    let mut writer = client.writer.lock().unwrap();
    let id = {
        // Lock: this client's state, to check the callback and file the upcall.
        let state = &mut *client.state();
        if !state.callbacks.contains(callback) {
            return;
        }
        state.last_id += 1;
        state.pending.insert(state.last_id, callback.to_string());
        state.last_id
    };
    let message = Message::Upcall {
        id,
        callback: callback.to_string(),
        argument: argument.to_string(),
    };
    let Ok(line) = message.encode() else {
        return; // never: the callback is registered and the text came from a valid line
    };
    // Logged before the line leaves, so the log never shows an answer before its call. (So the
    // writer is held while the terminal prints: `servercall`'s log never waits for a terminal.)
    println!("Upcall {id} to {}: {callback}({argument:?})", client.name);
    // A failed write means this client is gone: its own thread sees the end of its stream and
    // cleans up. It is not the caller's problem (the caller may be another client's thread).
    let _ = writer.write_all(line.as_bytes());
}

/// `ERR <reason>`: the last line was refused; the connection stays.
fn refuse(client: &Client, reason: String) -> Result<(), Error> {
    send(client, &Message::Err { reason })
}

/// Sends one line to `client`: encoded by the crate's protocol, written whole.
fn send(client: &Client, message: &Message) -> Result<(), Error> {
    let line = message.encode()?;
    // Lock: this client's socket, for one write of one line.
    client.writer.lock().unwrap().write_all(line.as_bytes())?;
    Ok(())
}
