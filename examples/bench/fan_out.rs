//! Parts 4 and 5: N clients held by a server in another process, broadcast to, and measured.
//!
//! # The load
//!
//! Ten thousand clients cannot each have a thread in this process (the machine's thread budget is
//! shared with the server's ten thousand), so a few load threads each own a slice of the sockets
//! and read them in the order the server writes them (client-number order: each load thread
//! connected its slice one after the other, and the server numbers clients as it accepts them).
//! Each client answers its upcall with `RETURN <id> ok` at once, as `clientcall` does.
//!
//! A client's arrival time is the moment its load thread read the line. That is never earlier than
//! the kernel's delivery, and it is later by whatever the load thread was busy with: the load's lag
//! is inside the numbers, never subtracted. How the threads wait is [`LoadMode`]; their CPU time is
//! printed next to the server's.
//!
//! # The baseline
//!
//! `bench --raw-fan-out-server` ([`raw_fan_out_server`]) is the least a thread-per-client server
//! must do for the same broadcast: a thread per connection (same stack, same read buffer) that
//! greets, acknowledges `REGISTER` and counts `RETURN`s into a channel, and a console thread that
//! writes the same `UPCALL` line to every connection. It runs in a process of its own and faces the
//! same load, so "4 ÷ 4r" is what the upcall server's registry, locks and pending map add.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::system::{self, ProcessStatus};
use crate::wire::{parse_upcall, Conn, ServerProcess, WriteBytes};
use crate::{show, Options, Report, Row, STEP_TIMEOUT};

/// How a load thread waits for its clients' upcalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Blocking reads. Arrival times are as exact as a thread wake-up, but the load is woken once
    /// per client, and on two cores those wake-ups compete with the server for the CPU.
    Block,
    /// Nonblocking reads; when the next client has nothing yet, the thread sleeps this long. The
    /// server then writes to sockets nobody sleeps on (no wake-up per client), and arrival times
    /// may be late by up to one interval.
    Poll(Duration),
}

impl LoadMode {
    pub fn describe(self) -> String {
        match self {
            LoadMode::Block => "blocking reads".into(),
            LoadMode::Poll(interval) => format!("polling every {}", show(interval)),
        }
    }
}

enum LoadEvent {
    /// All of this thread's clients are connected and registered.
    Connected,
    /// This thread's share could not be connected: why, and how many it had.
    Failed(String, usize),
    /// About to wait for the first client of a round.
    Ready,
    /// The round is over for this thread: its last arrival, clients served, anything wrong.
    Round {
        last: Instant,
        count: usize,
        errors: Vec<String>,
    },
}

enum LoadCommand {
    /// Read one broadcast upcall from every client, answer it, report.
    Round { text: String },
}

struct Load {
    commands: Vec<Sender<LoadCommand>>,
    events: Receiver<LoadEvent>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Connects and registers `n` clients from `threads` threads.
    fn connect(
        address: SocketAddr,
        n: usize,
        threads: usize,
        mode: LoadMode,
    ) -> Result<Load, String> {
        let threads = threads.clamp(1, n.max(1));
        let (events_in, events) = mpsc::channel();
        let mut commands = Vec::new();
        let mut handles = Vec::new();
        for t in 0..threads {
            let share = n / threads + usize::from(t < n % threads);
            let (command_in, command_out) = mpsc::channel();
            commands.push(command_in);
            let events_in = events_in.clone();
            let thread = thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || load_thread(address, share, mode, command_out, events_in))
                .map_err(|e| format!("cannot start a load thread: {e}"))?;
            handles.push(thread);
        }
        drop(events_in);
        let load = Load {
            commands,
            events,
            threads: handles,
        };
        let mut failures = Vec::new();
        let mut connected = 0;
        for t in 0..threads {
            match load.events.recv_timeout(Duration::from_secs(300)) {
                Ok(LoadEvent::Connected) => connected += n / threads + usize::from(t < n % threads),
                Ok(LoadEvent::Failed(error, had)) => {
                    connected += had;
                    failures.push(error);
                }
                _ => failures.push("a load thread stopped answering".into()),
            }
        }
        match failures.first() {
            Some(first) => Err(format!(
                "about {connected} of {n} clients connected, then: {first}"
            )),
            None => Ok(load),
        }
    }

    /// One broadcast: every load thread gets ready to read its clients' upcall for `text`, then
    /// `fire` sends the broadcast and returns when. Returns (sent, last arrival, clients served).
    fn round(
        &self,
        text: &str,
        fire: impl FnOnce() -> io::Result<Instant>,
    ) -> Result<(Instant, Instant, usize), String> {
        for command in &self.commands {
            command
                .send(LoadCommand::Round { text: text.into() })
                .map_err(|_| "a load thread is gone")?;
        }
        for _ in 0..self.commands.len() {
            match self.events.recv_timeout(STEP_TIMEOUT) {
                Ok(LoadEvent::Ready) => {}
                _ => return Err("a load thread did not get ready".into()),
            }
        }
        // Let the last thread reach its first read before the broadcast leaves.
        thread::sleep(Duration::from_millis(2));
        let start = fire().map_err(|e| format!("cannot write to the console: {e}"))?;
        let (mut last, mut count) = (start, 0);
        for _ in 0..self.commands.len() {
            match self.events.recv_timeout(STEP_TIMEOUT) {
                Ok(LoadEvent::Round {
                    last: l,
                    count: c,
                    errors,
                }) => {
                    if let Some(error) = errors.first() {
                        return Err(format!("{} bad upcall(s), e.g. {error}", errors.len()));
                    }
                    last = last.max(l);
                    count += c;
                }
                _ => return Err("a load thread did not finish its round in time".into()),
            }
        }
        Ok((start, last, count))
    }

    fn stop(self) {
        drop(self.commands);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn load_thread(
    address: SocketAddr,
    share: usize,
    mode: LoadMode,
    commands: Receiver<LoadCommand>,
    events: Sender<LoadEvent>,
) {
    // 256 bytes a client: a broadcast upcall is one short line.
    let mut conns = Vec::with_capacity(share);
    for _ in 0..share {
        match Conn::register(address, "on_event", 256) {
            Ok((conn, _)) => conns.push(conn),
            Err(error) => {
                let had = conns.len();
                let _ = events.send(LoadEvent::Failed(
                    format!("client {} of a load thread: {error}", had + 1),
                    had,
                ));
                return;
            }
        }
    }
    if let LoadMode::Poll(_) = mode {
        for conn in &conns {
            if let Err(error) = conn.stream.set_nonblocking(true) {
                let _ = events.send(LoadEvent::Failed(error.to_string(), conns.len()));
                return;
            }
        }
    }
    let _ = events.send(LoadEvent::Connected);
    let mut answer = Vec::with_capacity(64);
    while let Ok(LoadCommand::Round { text }) = commands.recv() {
        let expected = format!("Upcall event: server says {text}");
        let _ = events.send(LoadEvent::Ready);
        let mut errors = Vec::new();
        let mut last = Instant::now();
        for conn in &mut conns {
            let line = match next_line(conn, mode) {
                Ok(line) => &conn.buffer[line],
                Err(error) => {
                    errors.push(error.to_string());
                    continue;
                }
            };
            last = Instant::now();
            match parse_upcall(line) {
                Some((id, b"on_event", argument)) if argument == expected.as_bytes() => {
                    answer.clear();
                    let _ = writeln!(WriteBytes(&mut answer), "RETURN {id} ok");
                    if let Err(error) = conn.send(&answer) {
                        errors.push(error.to_string());
                    }
                }
                _ => errors.push(format!("unexpected {:?}", String::from_utf8_lossy(line))),
            }
        }
        let _ = events.send(LoadEvent::Round {
            last,
            count: conns.len(),
            errors,
        });
    }
    // Dropping the sockets closes them: the server's threads see the end and leave.
}

/// The next line of a load client, waiting as `mode` says.
fn next_line(conn: &mut Conn, mode: LoadMode) -> io::Result<Range<usize>> {
    let LoadMode::Poll(interval) = mode else {
        return conn.line_range();
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match conn.line_range() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no upcall arrived"));
                }
                thread::sleep(interval);
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Which server a fan-out run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// This program as `--raw-fan-out-server`: the baseline.
    Raw,
    /// The real `servercall`.
    Servercall,
}

/// What one fan-out run (one server, one N) measured.
struct FanOut {
    connect_time: Duration,
    before: ProcessStatus,
    idle: ProcessStatus,
    after: ProcessStatus,
    kernel_stack_kib: f64,
    last_upcall: Vec<Duration>,
    all_returned: Vec<Duration>,
    cpu_server_ms: f64,
    cpu_load_ms: f64,
    limits: Vec<String>,
}

/// Starts a server, connects `n` clients, measures them idle, broadcasts, stops. An error is a
/// sentence for the report.
fn fan_out(
    options: &Options,
    kind: Kind,
    servercall: &Path,
    n: usize,
    want_limits: bool,
) -> Result<FanOut, String> {
    let mut process = match kind {
        Kind::Servercall => ServerProcess::servercall(servercall, n + 16),
        Kind::Raw => ServerProcess::raw_fan_out(),
    }
    .map_err(|e| e.to_string())?;
    let pid = process.pid();
    thread::sleep(Duration::from_millis(200));
    let before = system::process_status(pid);
    let kernel_stack_before = system::meminfo_kib("KernelStack:");
    let started = Instant::now();
    let load = match Load::connect(process.address, n, options.load_threads, options.load_mode) {
        Ok(load) => load,
        Err(error) => {
            let status = system::process_status(pid);
            let limit = system::open_file_limit(&pid.to_string()).unwrap_or(0);
            let error = format!(
                "{error}. The server then had {} threads, {} open files (limit {limit}), {} memory maps, RSS {} KiB",
                status.threads, status.fds, status.maps, status.rss_kib
            );
            process.stop();
            return Err(error);
        }
    };
    let connect_time = started.elapsed();
    // Let the last threads settle before reading the memory.
    thread::sleep(Duration::from_millis(500));
    let idle = system::process_status(pid);
    let kernel_stack_kib = system::meminfo_kib("KernelStack:") as f64 - kernel_stack_before as f64;
    let limits = if want_limits {
        system::limits(n, &before, &idle, pid)
    } else {
        Vec::new()
    };

    let mut run = FanOut {
        connect_time,
        before,
        idle,
        after: idle,
        kernel_stack_kib,
        last_upcall: Vec::new(),
        all_returned: Vec::new(),
        cpu_server_ms: 0.0,
        cpu_load_ms: 0.0,
        limits,
    };
    let (mut cpu_server, mut cpu_load) = (0, 0);
    let mut failed = None;
    let pid_text = pid.to_string();
    for round in 0..2 + options.broadcasts {
        let text = format!("b{round}");
        // Read outside the timed window: for a process of 10,000 threads it takes a while.
        let server_cpu = system::cpu_ticks(&pid_text);
        let load_cpu = system::cpu_ticks("self");
        let command = format!("broadcast {text}");
        let (start, last, count) = match load.round(&text, || process.console(&command)) {
            Ok(outcome) => outcome,
            Err(error) => {
                failed = Some(error);
                break;
            }
        };
        let (done, line) = match process.wait_for("Broadcast: ", STEP_TIMEOUT) {
            Ok(summary) => summary,
            Err(error) => {
                failed = Some(error.to_string());
                break;
            }
        };
        let expected = format!("Broadcast: {n} of {n} client(s) returned");
        if count != n || !line.starts_with(&expected) {
            failed = Some(format!(
                "{count} clients read an upcall; the console said: {line}"
            ));
            break;
        }
        if round >= 2 {
            run.last_upcall.push(last - start);
            run.all_returned.push(done - start);
            cpu_server += system::cpu_ticks(&pid_text) - server_cpu;
            cpu_load += system::cpu_ticks("self") - load_cpu;
        }
    }
    run.after = system::process_status(pid);
    let rounds = run.last_upcall.len().max(1) as f64;
    run.cpu_server_ms = system::cpu_seconds(cpu_server) * 1000.0 / rounds;
    run.cpu_load_ms = system::cpu_seconds(cpu_load) * 1000.0 / rounds;
    load.stop();
    process.stop();
    match failed {
        Some(error) => Err(format!("broadcast: {error}")),
        None => Ok(run),
    }
}

pub fn part_fan_out(options: &Options, report: &mut Report, servercall: &Path) {
    let own_limit = system::open_file_limit("self").unwrap_or(0);
    let largest = options.clients.iter().copied().max().unwrap_or(0);
    let mut growth: Vec<(usize, Duration)> = Vec::new();
    for &n in &options.clients {
        // The load holds one socket per client, plus a few files of its own.
        if own_limit > 0 && n as u64 + 64 > own_limit {
            report.problems.push(format!(
                "N = {n} skipped: this process may open {own_limit} files, the load needs {}",
                n + 64
            ));
            continue;
        }
        for kind in [Kind::Raw, Kind::Servercall] {
            let name = match kind {
                Kind::Raw => "raw fan-out",
                Kind::Servercall => "servercall",
            };
            progress!(
                "4/5: {name}: {n} clients from {} load threads, {} broadcasts",
                options.load_threads,
                options.broadcasts
            );
            let wants_limits = kind == Kind::Servercall && n == largest;
            let run = match fan_out(options, kind, servercall, n, wants_limits) {
                Ok(run) => run,
                Err(error) => {
                    report.problems.push(format!("{name}, N = {n}: {error}"));
                    continue;
                }
            };
            let per = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
            report.capacity.push(format!(
                "{name:<11} N = {n:>5}: connected in {:>9}; threads {} (before {}); RSS {:.1} MiB (before {:.1}) = {:.2} KiB/client idle, {:.2} after the broadcasts; {:.2} fds and {:.2} memory maps per client; kernel stacks +{:.1} MiB machine-wide ({:.1} KiB/client, not in RSS)",
                show(run.connect_time),
                run.idle.threads,
                run.before.threads,
                run.idle.rss_kib as f64 / 1024.0,
                run.before.rss_kib as f64 / 1024.0,
                per(run.idle.rss_kib, run.before.rss_kib),
                per(run.after.rss_kib, run.before.rss_kib),
                per(run.idle.fds, run.before.fds),
                per(run.idle.maps, run.before.maps),
                run.kernel_stack_kib / 1024.0,
                run.kernel_stack_kib / n as f64,
            ));
            if !run.limits.is_empty() {
                report.limits = run.limits.clone();
            }
            let size = format!("N={n}");
            let last_group = format!("fan-out {n} last");
            let all_group = format!("fan-out {n} all");
            let is_raw = kind == Kind::Raw;
            let (label, all_label, all_note) = if is_raw {
                (
                    "4r raw fan-out: last client has its line",
                    "4r raw fan-out: all RETURNs counted",
                    "thread per client, no protocol (baseline of 4)",
                )
            } else {
                (
                    "4  broadcast: last client has its UPCALL",
                    "4  broadcast: console says all returned",
                    "includes printing one line per client",
                )
            };
            let last = Row::from_samples(label, &size, &last_group, is_raw, run.last_upcall, "");
            let note = format!(
                "{} per client; CPU per broadcast: server {:.1} ms, load {:.1} ms ({} threads, {})",
                show(last.p50 / n as u32),
                run.cpu_server_ms,
                run.cpu_load_ms,
                options.load_threads,
                options.load_mode.describe(),
            );
            if !is_raw {
                growth.push((n, last.p50));
            }
            report.latency.push(Row { note, ..last });
            report.latency.push(Row::from_samples(
                all_label,
                &size,
                &all_group,
                is_raw,
                run.all_returned,
                all_note,
            ));
        }
    }
    // Linear growth means the time per client stays flat: show each step.
    for pair in growth.windows(2) {
        let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
        report.capacity.push(format!(
            "broadcast growth from N = {n0} to {n1} (×{:.0} clients): last-UPCALL p50 ×{:.2}",
            n1 as f64 / n0 as f64,
            t1.as_secs_f64() / t0.as_secs_f64()
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The raw fan-out server

/// `bench --raw-fan-out-server`: the baseline of part 4 (see the module's documentation). It
/// speaks just enough of the protocol for the load (`WELCOME`, `REGISTERED`, `UPCALL`) and just
/// enough of the console (`broadcast <text>`, anything else quits).
pub fn raw_fan_out_server() -> ExitCode {
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        return ExitCode::FAILURE;
    };
    let Ok(address) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    println!("raw fan-out server listening on {address}");
    let _ = io::stdout().flush();
    let clients: Arc<Mutex<Vec<Arc<TcpStream>>>> = Arc::default();
    let (returned, returns) = mpsc::channel::<()>();
    {
        let clients = clients.clone();
        thread::spawn(move || {
            for (number, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let stream = Arc::new(stream);
                clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(stream.clone());
                let returned = returned.clone();
                let _ = thread::Builder::new()
                    .stack_size(upcall::server::limits::CLIENT_THREAD_STACK)
                    .spawn(move || raw_fan_out_client(&stream, number + 1, &returned));
            }
        });
    }
    let mut stdout = io::stdout();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(text) = line.strip_prefix("broadcast ") else {
            break;
        };
        let snapshot: Vec<Arc<TcpStream>> =
            clients.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let upcall = format!("UPCALL 1 on_event Upcall event: server says {text}\n");
        let sent = snapshot
            .iter()
            .filter(|client| (&***client).write_all(upcall.as_bytes()).is_ok())
            .count();
        let counted = returns.iter().take(sent).count();
        let _ = writeln!(
            stdout,
            "Broadcast: {counted} of {} client(s) returned (raw)",
            snapshot.len()
        );
        let _ = stdout.flush();
    }
    ExitCode::SUCCESS
}

fn raw_fan_out_client(stream: &TcpStream, number: usize, returned: &Sender<()>) {
    let mut writer = stream;
    let welcome = format!("WELCOME client-{number} upcall/1\n");
    if writer.write_all(welcome.as_bytes()).is_err() {
        return;
    }
    let mut reader = BufReader::with_capacity(upcall::framing::READ_BUFFER_SIZE, stream);
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.starts_with(b"RETURN ") {
            let _ = returned.send(());
        } else if let Some(callback) = line.strip_prefix(b"REGISTER ") {
            let mut answer = b"REGISTERED ".to_vec();
            answer.extend_from_slice(callback);
            if writer.write_all(&answer).is_err() {
                return;
            }
        }
    }
}
