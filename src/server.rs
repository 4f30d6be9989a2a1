//! The upcall server: it accepts clients, remembers which functions each one registered, and calls
//! those functions back — when a message arrives, and whenever its operator asks.
//!
//! # How it is built
//!
//! ```text
//!   accept loop (serve)  ──spawns──▶  one thread per client (serve_client)
//!          │                               │ reads that client's lines, answers REGISTER,
//!          │                               │ turns MSG into upcalls, matches RETURN/FAIL
//!          ▼                               ▼
//!   registry: client-1 ─▶ Client { writer, callbacks, pending upcalls }
//!             client-2 ─▶ Client { ... }
//!          ▲                               ▲
//!   console (call, broadcast)       sweeper thread: gives up on upcalls past their timeout
//! ```
//!
//! Every connection has its own thread, blocked in `read` on its own socket. That is the simplest
//! model there is (the code for one client reads top to bottom, like the old single-client lab) and
//! its cost is stated in the README's "Performance" section: a thread's memory per client, and
//! a scheduler wake-up per line. An event loop (epoll) would serve the same clients from one thread,
//! at the price of turning this straight-line code into a state machine.
//!
//! # The upcall, step by step
//!
//! 1. Something decides to call `callback(argument)` on a client: a `MSG` (the connection's own
//!    thread), or the console's `call`/`broadcast` (the operator's thread).
//! 2. [`Client::upcall`] picks the next upcall id, files a [`PendingUpcall`] under that id, and
//!    writes `UPCALL <id> <callback> <argument>`. It does **not** wait for the answer.
//! 3. The answer, `RETURN <id> <value>` or `FAIL <id> <reason>`, arrives on the client's socket and
//!    is therefore read by that client's connection thread, which takes the pending entry out and
//!    hands the outcome to whoever waits for it (or logs it).
//!
//! Step 2 never waits because of step 3: if the connection thread sent an upcall and then waited for
//! its answer, nobody would be reading the socket the answer arrives on. That thread would wait
//! forever (or until the timeout), a deadlock built into the design. So waiting is done by other
//! threads only (the console), on a channel, and the connection thread stays free to read.
//!
//! # Locks
//!
//! There are three, each with one job, and none is ever held while waiting for a client:
//! - the registry ([`Shared::clients`]): which clients exist;
//! - a client's `writer`: the order of bytes on that client's socket;
//! - a client's `state`: its callbacks and pending upcalls.
//!
//! When two are needed, the order is always `writer`, then `state` (see [`Client::upcall`]); taking
//! them in one order only is what rules out a deadlock between two threads.
//!
//! # What this server leaves out
//!
//! No authentication and no encryption (it is a lab on a private bridge; anything on the network
//! can connect and will be read in Wireshark, which is the point). No reconnection: a client that
//! comes back is a new client with a new id. Upcall results are not stored: they go to whoever asked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::{LineReader, LineWriter};
use crate::error::Error;
use crate::lock;
use crate::protocol::{self, Message, ProtocolError, DEFAULT_MAX_LINE, ON_EVENT};

/// Stack size of a client's thread. A connection thread only parses short lines and formats a few
/// strings, which needs a few KiB of stack; the default of 2 MiB is reserved address space that ten
/// thousand clients would multiply into 20 GiB. 64 KiB leaves ample headroom (the guard page below
/// it turns an overflow into a clean abort, never silent corruption) and keeps the memory that is
/// really touched per client to a few pages.
pub const CLIENT_THREAD_STACK: usize = 64 * 1024;

/// How often the sweeper looks for upcalls past their deadline. An upcall is given up at most this
/// long after its timeout: a tenth of a second is invisible to a person and costs nothing.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How many client threads this machine lets one process hold, and which limit says so.
///
/// Each client costs a thread, and each thread four memory maps (its stack and guard page, and
/// std's signal stack and guard page) and one file descriptor. Past `vm.max_map_count` a new
/// thread cannot map its signal stack and std aborts the *whole process*, every client with it;
/// past the open-file limit `accept` fails. So `servercall` holds `--max-clients` below both,
/// leaving a margin for the process's own maps and files. `None` where `/proc` does not say.
pub fn client_limit_here() -> Option<(usize, String)> {
    const MAPS_PER_CLIENT: usize = 4;
    const SPARE: usize = 1000;
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .map(|maps| {
            let clients = maps.saturating_sub(SPARE) / MAPS_PER_CLIENT;
            (
                clients,
                format!("vm.max_map_count {maps} allows about {clients} client threads"),
            )
        });
    // "Max open files            20000                20000                files"
    let files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .map(|files| {
            let clients = files.saturating_sub(SPARE / 10);
            (
                clients,
                format!("the open-file limit {files} allows about {clients} clients"),
            )
        });
    [maps, files]
        .into_iter()
        .flatten()
        .min_by_key(|(clients, _)| *clients)
}

/// What an operator can set on `servercall`'s command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// More connections than this get `ERR server full` and are closed: each client costs a thread.
    pub max_clients: usize,
    /// How long an upcall may take before the server gives up on it.
    pub upcall_timeout: Duration,
    /// How long one write may block. A client that stops reading fills its socket buffers and then
    /// blocks whoever writes to it; after this long it is dropped instead of stalling everyone.
    pub write_timeout: Duration,
    /// Longest line accepted (and sent), newline included.
    pub max_line: usize,
    /// Print the step-by-step log. The benchmark turns it off: 10,000 log lines per broadcast would
    /// measure the terminal, not the server.
    pub log: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: 1024,
            upcall_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_line: DEFAULT_MAX_LINE,
            log: true,
        }
    }
}

/// How an upcall ended, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `RETURN <id> <value>`.
    Returned(String),
    /// `FAIL <id> <reason>`.
    Failed(String),
    /// No answer within the upcall timeout.
    TimedOut(Duration),
    /// The client went away before answering.
    Disconnected,
    /// The upcall was never sent (no such client, callback not registered, line too long, ...).
    NotSent(String),
}

/// A client's name and an upcall's outcome, printed the way the console shows it:
/// `client-1 returned: HAII`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub client: String,
    pub outcome: Outcome,
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = &self.client;
        match &self.outcome {
            Outcome::Returned(value) => write!(f, "{client} returned: {value}"),
            Outcome::Failed(reason) => write!(f, "{client} failed: {reason}"),
            Outcome::TimedOut(timeout) => {
                write!(f, "{client} did not answer within {}", seconds(*timeout))
            }
            Outcome::Disconnected => write!(f, "{client} disconnected before answering"),
            Outcome::NotSent(reason) => write!(f, "{client} was not called: {reason}"),
        }
    }
}

/// What `list` shows about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub address: SocketAddr,
    pub callbacks: Vec<String>,
}

/// The server. Cheap to clone: every clone is a handle to the same clients.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

/// What every thread of the server shares.
struct Shared {
    config: ServerConfig,
    /// The registry of connected clients, keyed by number (`client-7` is 7) so that `list` shows
    /// them in the order they came.
    ///
    /// Lock: guards which clients exist. Held only to insert, remove or copy out a few `Arc`s;
    /// never while writing to a socket or waiting for an upcall, so one slow client cannot hold
    /// up a connection or a disconnection elsewhere.
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
    /// Set by [`Server::shutdown`]: the accept loop and the sweeper stop when they see it.
    stopping: AtomicBool,
    /// Where the listener is, once `serve` has started; `shutdown` connects to it to wake `accept`.
    local_addr: OnceLock<SocketAddr>,
}

/// One connected client, as every thread of the server sees it.
struct Client {
    number: u64,
    name: String,
    address: SocketAddr,
    /// The write half of the socket.
    ///
    /// Lock: guards the order of bytes on this client's socket. Several threads write to one
    /// client (its own thread answering `REGISTER`, another client's thread passing on a `MSG`,
    /// the console calling), and each line must leave whole. Held for the one `write_all` of one
    /// line (at most the write timeout), never while waiting for an answer.
    writer: Mutex<LineWriter<SharedSocket>>,
    /// The same socket (see [`SharedSocket`]), used here only to shut it down. It needs no lock: a
    /// shutdown is safe from any thread, and must work even while a stuck writer holds `writer`.
    socket: Arc<TcpStream>,
    /// Lock: guards the client's callbacks and its pending upcalls. Held for a few map operations,
    /// never across I/O.
    state: Mutex<ClientState>,
}

struct ClientState {
    /// The functions this client said the server may call.
    callbacks: BTreeSet<String>,
    /// The id the next upcall to this client gets. Ids start at 1 on every connection.
    next_upcall_id: u64,
    /// Upcalls sent and not answered yet, by id.
    pending: HashMap<u64, PendingUpcall>,
    /// The connection has ended: no new upcall is filed, so nobody waits for an answer that
    /// cannot come.
    gone: bool,
}

/// An upcall that was sent and waits for its `RETURN` or `FAIL`.
struct PendingUpcall {
    callback: String,
    deadline: Instant,
    /// Who waits for the outcome: the console's `call` or `broadcast`. `None` for the upcalls a
    /// `MSG` causes: nobody waits for those, their outcome is only logged.
    reply_to: Option<Sender<CallResult>>,
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        Server {
            shared: Arc::new(Shared {
                config,
                clients: Mutex::new(BTreeMap::new()),
                stopping: AtomicBool::new(false),
                local_addr: OnceLock::new(),
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Accepts clients until [`Server::shutdown`], one thread each.
    ///
    /// The listener comes in already bound, so the caller decides the address and sees a bind
    /// error before anything starts (and tests can bind port 0 and ask which port they got).
    /// An error on one connection never ends this loop: at worst that one client is turned away.
    pub fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let _ = self.shared.local_addr.set(listener.local_addr()?);
        let sweeper = self.clone();
        thread::Builder::new()
            .name("sweeper".into())
            .spawn(move || sweeper.sweep_expired_upcalls())?;

        let mut last_number = 0;
        for stream in listener.incoming() {
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    // Typically "too many open files" when the process is at its limit. Waiting
                    // a moment lets disconnections free some; exiting would drop every client.
                    self.log(format_args!("Cannot accept a connection: {error}"));
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            last_number += 1;
            if let Err(error) = self.admit(stream, last_number) {
                self.log(format_args!(
                    "Could not start client-{last_number}: {error}"
                ));
            }
        }
        Ok(())
    }

    /// Registers a new connection and starts its thread, or turns it away when the server is full.
    fn admit(&self, stream: TcpStream, number: u64) -> io::Result<()> {
        let address = stream.peer_addr()?;
        let config = &self.shared.config;
        if self.client_count() >= config.max_clients {
            self.log(format_args!(
                "Connection from: {address} refused: server full ({} clients)",
                config.max_clients
            ));
            return turn_away(stream, config.max_line);
        }
        // TCP_NODELAY: an upcall is one short line, and the client is waiting for it. With Nagle's
        // algorithm on, a small write can sit in the kernel until the previous one is
        // acknowledged, and the other side delays its acknowledgements: tens of milliseconds for
        // a 40-byte line. We write whole lines only, so sending each at once costs nothing.
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(config.write_timeout))?;
        let socket = Arc::new(stream);
        let client = Arc::new(Client {
            number,
            name: format!("client-{number}"),
            address,
            writer: Mutex::new(LineWriter::new(
                SharedSocket(socket.clone()),
                config.max_line,
            )),
            socket: socket.clone(),
            state: Mutex::new(ClientState {
                callbacks: BTreeSet::new(),
                next_upcall_id: 1,
                pending: HashMap::new(),
                gone: false,
            }),
        });
        let reader = LineReader::new(SharedSocket(socket), config.max_line);
        lock(&self.shared.clients).insert(number, client.clone());

        let server = self.clone();
        let spawned = thread::Builder::new()
            .name(client.name.clone())
            .stack_size(CLIENT_THREAD_STACK)
            .spawn({
                let client = client.clone();
                move || server.serve_client(&client, reader)
            });
        if let Err(error) = spawned {
            // Out of threads or memory: this client cannot be served, the others still are.
            lock(&self.shared.clients).remove(&number);
            client.hang_up();
            return Err(error);
        }
        Ok(())
    }

    /// The life of one connection, on its own thread: greet, then read and answer line by line
    /// until the client leaves. Whatever happens here ends this connection at worst.
    fn serve_client(&self, client: &Client, mut reader: LineReader<SharedSocket>) {
        self.log(format_args!(
            "Connection from: {} ({})",
            client.address, client.name
        ));
        let welcome = Message::Welcome {
            client_id: client.name.clone(),
        };
        let mut farewell = String::from("disconnected");
        if client.send(&welcome).is_ok() {
            loop {
                match reader.read_message() {
                    Ok(Some(message)) => {
                        if !self.handle(client, message) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(Error::Protocol(error)) => self.reject_line(client, error),
                    Err(Error::Io(error)) => {
                        farewell = format!("disconnected ({error})");
                        break;
                    }
                }
            }
        }
        self.forget(client);
        self.log(format_args!("{} {farewell}", client.name));
    }

    /// One message from a client. False when the client said `BYE`: the connection ends.
    fn handle(&self, client: &Client, message: Message) -> bool {
        match message {
            Message::Register { callback } => {
                self.log(format_args!("{} registered {callback}", client.name));
                lock(&client.state).callbacks.insert(callback.clone());
                let _ = client.send(&Message::Registered { callback });
            }
            Message::Msg { text } => self.pass_on(client, &text),
            Message::Return { id, value } => self.answer(client, id, Outcome::Returned(value)),
            Message::Fail { id, reason } => self.answer(client, id, Outcome::Failed(reason)),
            // Lines that only a server sends. The parser reads both directions (one grammar for
            // the whole protocol); refusing them is the receiver's job.
            Message::Welcome { .. }
            | Message::Registered { .. }
            | Message::Upcall { .. }
            | Message::Err { .. } => {
                let reason = format!("{} is sent by the server, not by a client", message.verb());
                self.log(format_args!("{} sent a bad line: {reason}", client.name));
                let _ = client.send(&Message::Err { reason });
            }
            Message::Bye => {
                self.log(format_args!("{} said BYE", client.name));
                let _ = client.send(&Message::Bye);
                return false;
            }
        }
        true
    }

    /// `MSG <text>`: log it, call `on_event` back on the sender, and on every other client.
    ///
    /// This thread only *sends* the upcalls; their answers arrive on the other clients' sockets
    /// and are read by their own threads. Waiting here would stop this client's socket from being
    /// read, its own `RETURN` included.
    fn pass_on(&self, sender: &Client, text: &str) {
        self.log(format_args!("Received from {}: {text}", sender.name));
        let processing = protocol::processing(text);
        match sender.upcall(self, ON_EVENT, &processing, None) {
            Ok(_) => {}
            Err(Outcome::NotSent(reason)) => {
                let _ = sender.send(&Message::Err { reason });
            }
            Err(_) => {} // the sender is gone; its thread will notice
        }
        let says = format!("Upcall event: {} says {text}", sender.name);
        for other in self.snapshot() {
            if other.number != sender.number && other.has_callback(ON_EVENT) {
                // A failure here concerns `other` only: it goes to the log, not to the sender.
                if let Err(Outcome::NotSent(reason)) = other.upcall(self, ON_EVENT, &says, None) {
                    self.log(format_args!("Upcall to {} not sent: {reason}", other.name));
                }
            }
        }
    }

    /// `RETURN`/`FAIL <id>`: hand the outcome to whoever waits for upcall `id`.
    fn answer(&self, client: &Client, id: u64, outcome: Outcome) {
        let pending = lock(&client.state).pending.remove(&id);
        let Some(pending) = pending else {
            let reason = format!(
                "unknown upcall id {id} (never sent, already answered, or given up after the timeout)"
            );
            self.log(format_args!("{} sent a bad line: {reason}", client.name));
            let _ = client.send(&Message::Err { reason });
            return;
        };
        self.settle(client, id, pending, outcome);
    }

    /// A line that was not valid `upcall/1`: tell the client, keep the connection.
    fn reject_line(&self, client: &Client, error: ProtocolError) {
        let reason = match error {
            ProtocolError::LineTooLong => format!(
                "{error} (the limit is {} bytes with the newline; the line was skipped)",
                self.shared.config.max_line
            ),
            _ => error.to_string(),
        };
        self.log(format_args!("{} sent a bad line: {reason}", client.name));
        let _ = client.send(&Message::Err { reason });
    }

    /// Takes a client out of the registry and fails every upcall still waiting on it, at once: a
    /// console `call` to a client that just disconnected must not sit out the whole timeout.
    fn forget(&self, client: &Client) {
        lock(&self.shared.clients).remove(&client.number);
        client.hang_up();
        let abandoned: Vec<(u64, PendingUpcall)> = {
            let mut state = lock(&client.state);
            state.gone = true;
            state.pending.drain().collect()
        };
        for (id, pending) in abandoned {
            self.settle(client, id, pending, Outcome::Disconnected);
        }
    }

    /// Ends a pending upcall: its answer came, its time ran out, or its client left. Whoever
    /// waits for it is told; when nobody waits (an upcall a `MSG` caused), the log says how it
    /// ended.
    fn settle(&self, client: &Client, id: u64, pending: PendingUpcall, outcome: Outcome) {
        let result = CallResult {
            client: client.name.clone(),
            outcome,
        };
        let callback = pending.callback;
        match pending.reply_to {
            Some(waiter) => {
                // The waiter may have stopped waiting (a console that quit); nothing is lost then.
                let _ = waiter.send(result);
            }
            None => match &result.outcome {
                Outcome::Returned(value) => self.log(format_args!(
                    "{} returned for upcall {id}: {value}",
                    client.name
                )),
                Outcome::Failed(_) => self.log(format_args!("Upcall {id} ({callback}): {result}")),
                _ => self.log(format_args!("Upcall {id} ({callback}) given up: {result}")),
            },
        }
    }

    /// The sweeper thread: every [`SWEEP_INTERVAL`], gives up on upcalls past their deadline.
    ///
    /// Why a thread of its own? The upcalls a `MSG` causes have nobody waiting for them, so nobody
    /// would notice that their time is up. One thread for the whole server, waking ten times a
    /// second, is cheaper and simpler than a timer per upcall.
    fn sweep_expired_upcalls(&self) {
        let timeout = self.shared.config.upcall_timeout;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            thread::sleep(SWEEP_INTERVAL);
            let now = Instant::now();
            for client in self.snapshot() {
                let expired: Vec<(u64, PendingUpcall)> = {
                    let mut state = lock(&client.state);
                    let due: Vec<u64> = state
                        .pending
                        .iter()
                        .filter(|(_, pending)| pending.deadline <= now)
                        .map(|(&id, _)| id)
                        .collect();
                    due.into_iter()
                        .filter_map(|id| Some((id, state.pending.remove(&id)?)))
                        .collect()
                };
                for (id, pending) in expired {
                    self.settle(&client, id, pending, Outcome::TimedOut(timeout));
                }
            }
        }
    }

    /// The console's `call`: upcalls `callback(argument)` on one client and waits for the outcome.
    ///
    /// This runs on the caller's thread (the console's), never on a connection thread: the answer
    /// is read by `client`'s own thread, which hands it over through a channel.
    pub fn call(&self, client_name: &str, callback: &str, argument: &str) -> CallResult {
        let Some(client) = self.find(client_name) else {
            return CallResult {
                client: client_name.to_string(),
                outcome: Outcome::NotSent("no such client (try `list`)".into()),
            };
        };
        let (waiter, answers) = mpsc::channel();
        if let Err(outcome) = client.upcall(self, callback, argument, Some(waiter)) {
            return CallResult {
                client: client.name.clone(),
                outcome,
            };
        }
        // Every pending upcall ends in exactly one message: its answer, the sweeper's timeout or
        // the disconnection. `recv` fails only if all of them were lost, which would be a bug.
        answers.recv().unwrap_or(CallResult {
            client: client.name.clone(),
            outcome: Outcome::Disconnected,
        })
    }

    /// The console's `broadcast`: upcalls `on_event` on every client that registered it, all at
    /// once, then collects the outcomes as they come (in client order).
    ///
    /// The upcalls are all sent before any answer is awaited, so a broadcast to a thousand clients
    /// takes one round trip plus the time to write a thousand lines, not a thousand round trips.
    pub fn broadcast(&self, text: &str) -> Vec<CallResult> {
        let argument = format!("Upcall event: server says {text}");
        let (waiter, answers) = mpsc::channel();
        let mut called = Vec::new();
        let mut results = Vec::new();
        for client in self.snapshot() {
            if !client.has_callback(ON_EVENT) {
                continue;
            }
            called.push(client.name.clone());
            if let Err(outcome) = client.upcall(self, ON_EVENT, &argument, Some(waiter.clone())) {
                results.push(CallResult {
                    client: client.name.clone(),
                    outcome,
                });
            }
        }
        drop(waiter);
        let awaited = called.len() - results.len();
        results.extend(answers.iter().take(awaited));
        // Answers come in the order clients answered; show them in the order of `list`. The map
        // from name to place keeps this O(N log N): searching `called` for every comparison was
        // O(N²), nine seconds of CPU after a broadcast to 10,000 clients.
        let place: HashMap<&str, usize> = called
            .iter()
            .enumerate()
            .map(|(place, name)| (name.as_str(), place))
            .collect();
        results.sort_by_key(|result| place.get(result.client.as_str()).copied());
        results
    }

    /// The console's `list`.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.snapshot()
            .iter()
            .map(|client| ClientInfo {
                name: client.name.clone(),
                address: client.address,
                callbacks: lock(&client.state).callbacks.iter().cloned().collect(),
            })
            .collect()
    }

    pub fn client_count(&self) -> usize {
        lock(&self.shared.clients).len()
    }

    /// The console's `quit`: says `BYE` to every client, closes their connections and stops the
    /// accept loop. Returns at once; [`Server::serve`] returns soon after.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for client in self.snapshot() {
            let _ = client.send(&Message::Bye);
            client.hang_up();
        }
        // `accept` blocks until a connection arrives, and std has no way to interrupt it. So we
        // make one: a connection to ourselves wakes the loop, which then sees `stopping`.
        if let Some(&address) = self.shared.local_addr.get() {
            let _ = TcpStream::connect_timeout(&reachable(address), Duration::from_secs(1));
        }
    }

    /// Waits (up to `limit`) until every connection thread has finished, so the last log lines
    /// are printed before the program exits. True if they all did.
    pub fn wait_for_clients_to_leave(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.client_count() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Copies the registry's `Arc`s out, so the registry lock is released before anyone writes to
    /// a socket. The copy may include a client that is leaving: writing to it fails harmlessly.
    fn snapshot(&self) -> Vec<Arc<Client>> {
        lock(&self.shared.clients).values().cloned().collect()
    }

    fn find(&self, name: &str) -> Option<Arc<Client>> {
        self.snapshot()
            .into_iter()
            .find(|client| client.name == name)
    }

    fn log(&self, line: fmt::Arguments<'_>) {
        if self.shared.config.log {
            crate::log::say(line);
        }
    }
}

impl Client {
    /// Sends one line. A write error means this connection is broken (or the client stopped reading
    /// for longer than the write timeout): shut the socket, so the client's own thread wakes up from
    /// its `read`, cleans up, and says so in the log.
    fn send(&self, message: &Message) -> Result<(), Error> {
        let result = lock(&self.writer).send(message);
        if let Err(Error::Io(_)) = result {
            self.hang_up();
        }
        result
    }

    /// Sends `UPCALL <id> <callback> <argument>` and files it as pending. Does not wait.
    ///
    /// On success returns the id; the outcome will reach `reply_to` (or the log). On failure the
    /// upcall was not sent and nothing is pending; the error says why.
    fn upcall(
        &self,
        server: &Server,
        callback: &str,
        argument: &str,
        reply_to: Option<Sender<CallResult>>,
    ) -> Result<u64, Outcome> {
        let not_sent = |reason: String| Err(Outcome::NotSent(reason));
        let timeout = server.shared.config.upcall_timeout;
        // Lock order: `writer` first, then `state`. Holding `writer` while the id is chosen means
        // ids leave in the order they were given out: 1, 2, 3 on the wire, never 2 before 1.
        let mut writer = lock(&self.writer);
        let id = {
            let mut state = lock(&self.state);
            if state.gone {
                return Err(Outcome::Disconnected);
            }
            if !state.callbacks.contains(callback) {
                let registered: Vec<&str> = state.callbacks.iter().map(String::as_str).collect();
                return not_sent(if callback == ON_EVENT && registered.is_empty() {
                    "no on_event registered: send REGISTER on_event to get upcalls".to_string()
                } else {
                    format!(
                        "{callback} is not registered (registered: {})",
                        if registered.is_empty() {
                            "none".to_string()
                        } else {
                            registered.join(", ")
                        }
                    )
                });
            }
            let id = state.next_upcall_id;
            state.next_upcall_id += 1;
            state.pending.insert(
                id,
                PendingUpcall {
                    callback: callback.to_string(),
                    deadline: Instant::now() + timeout,
                    reply_to,
                },
            );
            id
        };
        // Logged before the line leaves, so the log can never show the answer before the call.
        if argument.is_empty() {
            server.log(format_args!("Upcall {id} to {}: {callback}()", self.name));
        } else {
            server.log(format_args!(
                "Upcall {id} to {}: {callback}({argument:?})",
                self.name
            ));
        }
        let message = Message::Upcall {
            id,
            callback: callback.to_string(),
            argument: argument.to_string(),
        };
        match writer.send(&message) {
            Ok(()) => Ok(id),
            Err(Error::Protocol(error)) => {
                // Nothing was written. The id goes back while `writer` is still held, so that no
                // other upcall can take the next id in between: ids on the wire have no gaps
                // and never repeat.
                let mut state = lock(&self.state);
                state.pending.remove(&id);
                state.next_upcall_id = id;
                not_sent(match error {
                    ProtocolError::LineTooLong => format!(
                        "{error}: the upcall line would be over the {}-byte limit",
                        server.shared.config.max_line
                    ),
                    _ => error.to_string(),
                })
            }
            Err(error) => {
                drop(writer);
                lock(&self.state).pending.remove(&id);
                self.hang_up();
                if error.is_timeout() {
                    server.log(format_args!(
                        "{} stopped reading: dropped after the {} write timeout",
                        self.name,
                        seconds(server.shared.config.write_timeout)
                    ));
                } else {
                    server.log(format_args!("Upcall {id} to {} failed: {error}", self.name));
                }
                Err(Outcome::Disconnected)
            }
        }
    }

    fn has_callback(&self, callback: &str) -> bool {
        lock(&self.state).callbacks.contains(callback)
    }

    /// Closes the connection in both directions. The client's thread, blocked in `read`, wakes
    /// up with end-of-file and cleans up; a writer blocked on a full socket wakes with an error.
    fn hang_up(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// A client's socket, shared by its reader, its writer and [`Client::hang_up`].
///
/// Why not three `try_clone`s? Each clone is one more file descriptor, and a process may open only
/// so many (20,000 on the lab machine): with three per client, `servercall` was full at 6,664
/// clients. Reading and writing need no handle of their own (`&TcpStream` does both: the socket's
/// state is in the kernel), so one descriptor behind an `Arc` serves all three, and it is closed
/// when the last of them is dropped, as before.
struct SharedSocket(Arc<TcpStream>);

impl Read for SharedSocket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buffer)
    }
}

impl Write for SharedSocket {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (&*self.0).write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// "Server full": say so in the protocol's own words, then close.
fn turn_away(mut stream: TcpStream, max_line: usize) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut writer = LineWriter::new(&mut stream, max_line);
    let full = Message::Err {
        reason: "server full".into(),
    };
    // Best effort: the client may already be gone, and the connection closes either way.
    let _ = writer.send(&full).and_then(|()| writer.send(&Message::Bye));
    let _ = stream.flush();
    stream.shutdown(Shutdown::Both)
}

/// An address we can connect to for the listener at `address`: a server listening on every
/// interface (`0.0.0.0`) is reached on the loopback.
fn reachable(address: SocketAddr) -> SocketAddr {
    let mut address = address;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

/// `5 s`, `1.5 s`, `250 ms`: durations the way the log prints them.
pub fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
