//! The upcall server: it accepts clients, remembers which functions each one registered, and calls
//! those functions back — when a message arrives, and whenever its operator asks.
//!
//! # How it is built
//!
//! ```text
//!   accept loop (serve) ──▶ starter ──spawns──▶ one thread per client (connection.rs)
//!                                                 │ reads that client's lines, answers REGISTER,
//!                                                 │ turns MSG into upcalls, matches RETURN/FAIL
//!                                                 ▼
//!   registry: client-1 ─▶ Peer { outbox, callbacks, pending upcalls }        (peer.rs)
//!             client-2 ─▶ Peer { ... }                                   (registry.rs)
//!          ▲                                      ▲
//!   console (call, broadcast, kick)  sweeper: gives up on upcalls past their timeout (sweeper.rs)
//!                                    flusher: sends what waits in the outboxes    (flusher.rs)
//! ```
//!
//! | thread | how many | what it does |
//! |---|---|---|
//! | a client's connection thread | N, one per client | reads its lines, answers them, waits for its socket |
//! | accept loop | 1 | `accept`, nothing else |
//! | starter | 1 | checks the door rules, starts each client's thread |
//! | sweeper | 1 | gives up on upcalls past their timeout, prints log summaries |
//! | flusher | 1 | sends what waits in outboxes; sleeps while none waits |
//! | log | 1 | the only thread that writes to the terminal |
//! | console | 1, plus one per `call`/`broadcast` waiting (at most 16) | the operator's commands |
//!
//! Every connection has its own thread, waiting on its own socket. That is the simplest
//! model there is (the code for one client reads top to bottom, like the old single-client lab) and
//! its cost is stated in the README's "Performance" section: a thread's memory per client, and a
//! scheduler wake-up per line. An event loop (epoll) would serve the same clients from one thread,
//! at the price of turning this straight-line code into a state machine.
//!
//! # The upcall, step by step
//!
//! 1. Something decides to call `callback(argument)` on a client: a `MSG` (the sender's own
//!    connection thread, `connection.rs`), or the console's `call`/`broadcast` (the
//!    operator's thread, [`Server::call`] and [`Server::broadcast`] in this file).
//! 2. `Peer::upcall` (`peer.rs`) picks the next upcall id, files a pending upcall under that
//!    id, and puts `UPCALL <id> <callback> <argument>` in the client's outbox. It does **not** wait
//!    for the answer.
//! 3. The answer, `RETURN <id> <value>` or `FAIL <id> <reason>`, arrives on the client's socket and is
//!    therefore read by that client's connection thread, which takes the pending entry out and
//!    *settles* it (`pending.rs`): whoever waits is told, or the log says how it ended.
//!
//! Step 2 never waits because of step 3: if the connection thread sent an upcall and then waited for
//! its answer, nobody would be reading the socket the answer arrives on. That thread would wait
//! forever (or until the timeout), a deadlock built into the design. So waiting is done by other
//! threads only (the console), on a channel, and the connection thread stays free to read.
//!
//! # Fair to a whole class
//!
//! One server serves 40–200 students, some with buggy or playful scripts, and one of them must
//! never stall, flood or lock out the others. Each defence is one idea:
//!
//! - **Nobody waits for a slow reader.** Writing to a client that stopped reading would block the
//!   writer, and the writer is often *another* client's thread. So no write ever waits (`os::send_now`) and
//!   every line goes through the client's outbox (`outbox.rs`): it is written at once if the socket
//!   has room (almost always), and otherwise queued, and one `flusher` thread sends the rest when
//!   the socket has room again. A client that falls behind
//!   by more than [`limits::OUTBOX_LIMIT`], or leaves a line unsent for the write timeout, is
//!   dropped. A second thread per client (a writer) would do the same job more simply, but would
//!   double the memory of ten thousand idle clients; the outbox costs nothing until it is used.
//! - **Floods are refused, not passed on**: `--max-msg-rate` ([`limits::MessageRate`]).
//! - **Slots go to students**: a connection must register a callback within `--line-timeout`
//!   and finish every line within it; `--max-per-address` (an IPv6 /64 is one address),
//!   `--max-clients`, and the operator's `kick`.
//! - **Vanished laptops are found**: TCP keepalive ([`limits::KEEPALIVE_GIVE_UP`]), and a client
//!   that let an upcall time out is not waited for again until it speaks.
//! - **Floods of any kind end the same way**: every useless line counts against the rate, and a
//!   client refused faster than the rate is disconnected.
//! - **Everything per client is bounded**: callbacks, pending upcalls, queued bytes, line length.
//! - **The log never blocks** ([`crate::log::Log`]) and repeats are summarised
//!   ([`limits::Repeats`]), so a flood cannot flood the operator's terminal either.
//!
//! # Locks
//!
//! There are three that matter, each with one job, and none is ever held while waiting for a
//! client:
//! - the registry (`Shared::registry`): which clients exist;
//! - a client's `outbox`: the lines waiting for that client, in order. Held to queue a line or
//!   take the queue out, never during a write (see `outbox.rs`), never while waiting for an answer;
//! - a client's `state`: its callbacks and pending upcalls.
//!
//! (A fourth, the flusher's waiting set, only holds the numbers of the clients it should visit.)
//!
//! When two are needed, the order is always `outbox`, then `state` (see `Peer::upcall`), and
//! `outbox`, then the waiting set (see `flusher.rs`); taking them in one order only is what rules
//! out a deadlock between two threads.
//!
//! # The files, in layers
//!
//! Each file uses only files below it, so no two files use each other, not even through a third
//! (`tests/layers.rs` checks it):
//!
//! ```text
//! mod.rs             Server's public methods: new, serve, call, broadcast, kick, clients, shutdown
//!  ├ connection.rs   one client's thread, from WELCOME to its last line (steps 1 and 3)
//!  ├ sweeper.rs      the helper thread that gives up on late upcalls
//!  ├ flusher.rs      the helper thread that sends what waits in outboxes
//!  └─ shared.rs      the Server handle and what all threads share: registry, bells, log;
//!      │             finding and forgetting a client, settling an upcall
//!      └ registry.rs who is connected, and the door rules
//!         └ peer.rs  one client: its socket, outbox, callbacks, pending upcalls; step 2
//!            └ outbox.rs, pending.rs, limits.rs, config.rs: none uses another server file
//! ```
//!
//! A file never names one above it. Where a lower one must act on the server (a peer whose
//! client is stuck takes it out of the registry, which holds peers), it names what it needs as a
//! trait, `peer::Owner`, and the server provides it. The two macros below, `log!` and `note!`,
//! come before every file, so each file can use them: they expand to method calls, not to a file.
//!
//! # What this server leaves out
//!
//! No authentication and no encryption (it is a lab on a private bridge; anything on the network
//! can connect and will be read in Wireshark, which is the point). No reconnection: a client that
//! comes back is a new client with a new id. Upcall results are not stored: they go to whoever asked.

/// `log!(server, "...", args)`: one line in the server's log (if it is on). Never waits.
macro_rules! log {
    ($server:expr, $($arg:tt)*) => {
        $server.log(format_args!($($arg)*))
    };
}

/// `note!(server, peer, Kind, "...", args)`: a log line about `peer` of a kind it could cause many
/// of ([`limits::Noise`]): at most a few a second are printed, the rest summarised.
macro_rules! note {
    ($server:expr, $peer:expr, $kind:ident, $($arg:tt)*) => {
        $peer.note($server, $crate::server::limits::Noise::$kind, format_args!($($arg)*))
    };
}

mod config;
mod connection;
mod flusher;
pub mod limits;
mod outbox;
mod peer;
mod pending;
mod registry;
mod shared;
mod sweeper;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::lock;
use crate::log::Log;
use crate::protocol::{self, Message, ON_EVENT};

pub use crate::log::seconds;
pub use config::ServerConfig;
pub use pending::{CallResult, Outcome};
pub use registry::{Source, KICK_BAN};
pub use shared::Server;

use peer::Peer;
use registry::Registry;
use shared::{Alarm, Shared, Waiting};

/// How many clients this machine lets the process hold, and which limit says so (see
/// [`limits::client_limit`]); `None` where the system states no limit.
pub fn client_limit_here() -> Option<(usize, String)> {
    limits::client_limit(&crate::os::machine_facts())
}

/// What `list` shows about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub address: SocketAddr,
    pub callbacks: Vec<String>,
}

/// How many accepted connections may wait for the starter thread. Far more than any burst of
/// connections needs; past it the accept loop waits, and the kernel's own queue takes over.
const ARRIVALS_QUEUE: usize = 8192;

impl Server {
    /// A server with `config`; its log (if on) prints to stdout.
    pub fn new(config: ServerConfig) -> Server {
        let log = if config.log {
            Log::to_stdout()
        } else {
            Log::off()
        };
        Server::with_log(config, log)
    }

    /// A server that logs to `log` (the console prints through the same one).
    pub fn with_log(config: ServerConfig, log: Log) -> Server {
        Server {
            shared: Arc::new(Shared {
                config,
                registry: Mutex::new(Registry::default()),
                waiting: Waiting::default(),
                sweeper: Alarm::default(),
                stopping: AtomicBool::new(false),
                serving: AtomicUsize::new(0),
                local_addr: OnceLock::new(),
                log,
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
    ///
    /// This loop only accepts. Starting a client's thread takes a few dozen microseconds; if the
    /// loop did it, a class connecting at once would fill the kernel's queue of 128 waiting
    /// connections, and every connection past it would wait a second for its SYN to be retried.
    /// So a `starter` thread starts them, and the loop is back in `accept` at once.
    pub fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let _ = self.shared.local_addr.set(listener.local_addr()?);
        crate::os::widen_listen_queue(&listener);
        // `quit` may come before this point; then `shutdown` found no address to wake.
        if self.is_stopping() {
            return Ok(());
        }
        let starter = self.start_helpers()?;
        for stream in listener.incoming() {
            if self.is_stopping() {
                break;
            }
            match stream {
                // The starter admits it and starts its thread (`admit`); this loop is back in
                // `accept` at once.
                Ok(stream) => {
                    if starter.send(stream).is_err() {
                        break;
                    }
                }
                Err(error) => self.pause_after(&error),
            }
        }
        Ok(())
    }

    /// Starts the helper threads of the table above (the sweeper, the flusher, and the starter,
    /// which admits each accepted connection); returns the way to the starter.
    fn start_helpers(&self) -> io::Result<SyncSender<TcpStream>> {
        self.spawn_helper("sweeper", |server| sweeper::sweep_expired_upcalls(&server))?;
        self.spawn_helper("flusher", |server| flusher::flush_outboxes(&server))?;
        let (to_starter, arrivals) = mpsc::sync_channel::<TcpStream>(ARRIVALS_QUEUE);
        self.spawn_helper("starter", move |server| {
            for (number, stream) in (1..).zip(arrivals) {
                server.admit(stream, number);
            }
        })?;
        Ok(to_starter)
    }

    fn spawn_helper(
        &self,
        name: &str,
        job: impl FnOnce(Server) + Send + 'static,
    ) -> io::Result<()> {
        let server = self.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || job(server))
            .map(|_| ())
    }

    /// `accept` failed: typically "too many open files" when the process is at its limit. Waiting
    /// a moment lets disconnections free some; exiting would drop every client. The moment is
    /// short: a student is waiting in the kernel's queue.
    fn pause_after(&self, error: &io::Error) {
        log!(self, "Cannot accept a connection: {error}");
        thread::sleep(Duration::from_millis(10));
    }

    /// Registers a new connection and starts its thread, or turns it away with `ERR` when one of
    /// the connection limits says no.
    fn admit(&self, stream: TcpStream, number: u64) {
        if self.is_stopping() {
            return;
        }
        let Ok(address) = stream.peer_addr() else {
            return; // gone already
        };
        let peer = match Peer::new(number, address, stream, &self.shared.config) {
            Ok(peer) => Arc::new(peer),
            Err(error) => return log!(self, "Could not start client-{number}: {error}"),
        };
        if peer.closed_already() {
            // Connected and closed before we got to it (a port scan, a connect-and-close
            // flood): no thread, no log line, and its file descriptor is free again at once.
            return;
        }
        let entered = lock(&self.shared.registry).enter(&peer, &self.shared.config);
        if let Err(refusal) = entered {
            self.log_refusal(address.ip(), &refusal.why);
            return peer.turn_away(&refusal.told);
        }
        self.shared.serving.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name(peer.name.clone())
            .stack_size(limits::CLIENT_THREAD_STACK)
            .spawn({
                let (server, peer) = (self.clone(), peer.clone());
                move || connection::serve_client(&server, &peer)
            });
        if let Err(error) = spawned {
            // Out of threads or memory (a container's pids limit, `ulimit -u`): this client
            // cannot be served, the others still are.
            self.shared.serving.fetch_sub(1, Ordering::SeqCst);
            self.leave(&peer);
            self.log_refusal(
                address.ip(),
                &format!("cannot start a thread for it ({error})"),
            );
            peer.turn_away("server busy: try again in a moment");
        }
    }

    /// One log line for a refused connection, or none if its source was refused this second
    /// already (a connect-and-close flood must not flood the log too).
    fn log_refusal(&self, ip: IpAddr, why: &str) {
        let line = format!("Connection from {ip} refused: {why}");
        let lines = lock(&self.shared.registry).log_refusal(Source::of(ip), line);
        for line in lines {
            log!(self, "{line}");
        }
        self.shared.sweeper.ring(); // the second's count is owed
    }

    /// The console's `call`: upcalls `callback(argument)` on one client and waits for the outcome.
    ///
    /// This runs on the caller's thread (the console's), never on a connection thread: the answer
    /// is read by the client's own thread, which hands it over through a channel.
    pub fn call(&self, client_name: &str, callback: &str, argument: &str) -> CallResult {
        let Some(peer) = self.find(client_name) else {
            return CallResult {
                client: client_name.to_string(),
                outcome: Outcome::NotSent("no such client (try `list`)".into()),
            };
        };
        let (waiter, answers) = mpsc::channel();
        if let Err(reason) = peer.upcall(self, callback, argument, Some(waiter)) {
            return CallResult {
                client: peer.name.clone(),
                outcome: reason.into(),
            };
        }
        // Every pending upcall ends in exactly one message: its answer, the sweeper's timeout or
        // the disconnection. `recv` fails only if all of them were lost, which would be a bug.
        answers.recv().unwrap_or(CallResult {
            client: peer.name.clone(),
            outcome: Outcome::Disconnected,
        })
    }

    /// The console's `broadcast`: upcalls `on_event` on every client that registered it, all at
    /// once, then collects the outcomes as they come. Every called client appears exactly once in
    /// the result, in client order.
    ///
    /// The upcalls are all sent before any answer is awaited, so a broadcast to a thousand clients
    /// takes one round trip plus the time to write a thousand lines, not a thousand round trips.
    pub fn broadcast(&self, text: &str) -> Vec<CallResult> {
        let argument = protocol::server_says(text);
        let (waiter, answers) = mpsc::channel();
        let mut called = Vec::new();
        let mut results = Vec::new();
        for peer in self.snapshot() {
            if !peer.has_callback(ON_EVENT) {
                continue;
            }
            called.push(peer.name.clone());
            if let Err(reason) = peer.upcall(self, ON_EVENT, &argument, Some(waiter.clone())) {
                results.push(CallResult {
                    client: peer.name.clone(),
                    outcome: reason.into(),
                });
            }
        }
        drop(waiter);
        // Each filed upcall sends exactly one result, and the channel closes when the last
        // pending entry holding a sender is settled.
        results.extend(answers.iter());
        // Answers come in the order clients answered; show them in the order of `list`. A map
        // from name to place keeps the sort O(N log N) for ten thousand clients.
        let place: HashMap<&str, usize> = called
            .iter()
            .enumerate()
            .map(|(place, name)| (name.as_str(), place))
            .collect();
        results.sort_by_key(|result| place.get(result.client.as_str()).copied());
        results
    }

    /// The console's `kick`: drops a client (`client-7`) or every connection from an address
    /// (and refuses that address, or its IPv6 /64, for [`KICK_BAN`]). Returns what to tell the
    /// operator.
    pub fn kick(&self, target: &str) -> Result<String, String> {
        let told = Message::Err {
            reason: "kicked by the operator".into(),
        };
        if let Some(peer) = self.find(target) {
            self.kick_peer(&peer, &told);
            return Ok(format!("Kicked {}.", peer.name));
        }
        let Ok(ip) = target.parse::<IpAddr>() else {
            return Err(format!(
                "No client `{target}` and not an IP address: try `list`, then `kick client-N` or \
                 `kick <address>`."
            ));
        };
        let source = Source::of(ip);
        let peers = lock(&self.shared.registry).ban(source);
        for peer in &peers {
            self.kick_peer(peer, &told);
        }
        let minutes = KICK_BAN.as_secs() / 60;
        log!(
            self,
            "The operator kicked {source}: refused for {minutes} min"
        );
        Ok(format!(
            "Kicked {} connection(s) from {source}; it is refused for {minutes} min.",
            peers.len()
        ))
    }

    fn kick_peer(&self, peer: &Peer, told: &Message) {
        log!(self, "{} kicked by the operator", peer.name);
        let _ = peer.send(self, told);
        let _ = peer.send(self, &Message::Bye);
        self.forget(peer);
    }

    /// The console's `list`.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.snapshot()
            .iter()
            .map(|peer| ClientInfo {
                name: peer.name.clone(),
                address: peer.address,
                callbacks: peer.callbacks(),
            })
            .collect()
    }

    pub fn client_count(&self) -> usize {
        lock(&self.shared.registry).peers.len()
    }

    /// The console's `quit`: says `BYE` to every client, closes their connections and stops the
    /// accept loop. Returns at once; [`Server::serve`] returns soon after. Works at any moment,
    /// also before `serve` has started (then `serve` returns at once).
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.waiting.wake();
        self.shared.sweeper.ring();
        for peer in self.snapshot() {
            let _ = peer.send(self, &Message::Bye);
            peer.hang_up();
        }
        // `accept` blocks until a connection arrives, and std has no way to interrupt it. So we
        // make one: a connection to ourselves wakes the loop, which then sees `stopping`.
        if let Some(&address) = self.shared.local_addr.get() {
            let _ = TcpStream::connect_timeout(&reachable(address), Duration::from_secs(1));
        }
    }

    /// Waits (up to `limit`) until every connection thread has finished and the log is printed, so
    /// the last log lines come before the program exits. True if they all did.
    pub fn wait_for_clients_to_leave(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut all_left = true;
        while self.client_count() > 0 || self.shared.serving.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                all_left = false;
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.shared.log.flush(Duration::from_secs(1));
        all_left
    }
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
