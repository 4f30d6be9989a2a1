//! The bench's clients and servers: a line-by-line client connection, the raw TCP server of the
//! baselines, the library server on a thread, and `servercall` as a child process.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use upcall::framing::READ_BUFFER_SIZE;
use upcall::server::{Server, ServerConfig};

use crate::STEP_TIMEOUT;

/// What the raw server answers to `MSG haii`: as long as the `UPCALL` line the upcall server
/// answers with, for a five-digit upcall id (the ids of a run reach five digits).
pub const RAW_REPLY: &[u8] = b"UPCALL 12345 on_event Upcall event: Processing haii\n";

pub fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// `writeln!` into a `Vec<u8>` (for `RETURN <id> ok` lines) without `io::Write`'s error type.
pub struct WriteBytes<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for WriteBytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `UPCALL <id> <callback> <argument>` → (id, callback, argument).
pub fn parse_upcall(line: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let rest = line.strip_prefix(b"UPCALL ")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    let rest = &rest[space + 1..];
    let (callback, argument) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], &rest[space + 1..]),
        None => (rest, &b""[..]),
    };
    Some((id, callback, argument))
}

// ---------------------------------------------------------------------------------------------
// A client connection

/// A benchmark client's connection: line by line, with a buffer of its own (small for the ten
/// thousand clients of the load, large for the pipelined client).
pub struct Conn {
    pub stream: TcpStream,
    pub buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    pub fn connect(address: SocketAddr, buffer: usize) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Conn {
            stream,
            buffer: vec![0; buffer],
            start: 0,
            end: 0,
        })
    }

    /// Connects to an upcall server and registers `callback`; returns the client's name too.
    pub fn register(
        address: SocketAddr,
        callback: &str,
        buffer: usize,
    ) -> io::Result<(Conn, String)> {
        let mut conn = Conn::connect(address, buffer)?;
        let welcome = conn.expect("WELCOME ")?;
        let name = welcome.split(' ').nth(1).unwrap_or("").to_string();
        conn.send(format!("REGISTER {callback}\n").as_bytes())?;
        conn.expect("REGISTERED ")?;
        Ok((conn, name))
    }

    /// A complete line already in the buffer, without its newline; never reads.
    pub fn buffered_line(&mut self) -> Option<&[u8]> {
        let newline = self.buffer[self.start..self.end]
            .iter()
            .position(|&b| b == b'\n')?;
        let line = self.start..self.start + newline;
        self.start += newline + 1;
        Some(&self.buffer[line])
    }

    /// The next line without its newline, reading as needed. End of stream is an error.
    pub fn line(&mut self) -> io::Result<&[u8]> {
        let line = self.line_range()?;
        Ok(&self.buffer[line])
    }

    /// Where the next line is in the buffer. On a nonblocking socket, `WouldBlock` keeps what was
    /// read so far: the next call goes on from there.
    pub fn line_range(&mut self) -> io::Result<Range<usize>> {
        loop {
            if let Some(newline) = self.buffer[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = self.start..self.start + newline;
                self.start += newline + 1;
                return Ok(line);
            }
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buffer.len() {
                return Err(bad("line longer than the client's buffer"));
            }
            match self.stream.read(&mut self.buffer[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => self.end += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    pub fn expect(&mut self, prefix: &str) -> io::Result<String> {
        let line = String::from_utf8_lossy(self.line()?).into_owned();
        if line.starts_with(prefix) {
            Ok(line)
        } else {
            Err(bad(format!("expected {prefix}…, got {line:?}")))
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers on threads of this process (parts 1, 2, 3 and 6)

/// The baseline server: a thread per connection that answers every line starting with `MSG` with
/// [`RAW_REPLY`] and ignores every other line. Its read buffer is the upcall server's size, so
/// both read the same number of bytes per system call.
///
/// `batched == false` writes each reply with its own `write_all`, as the upcall server's
/// `LineSender` does: same bytes, same system calls, no protocol. `batched == true` collects the
/// replies to every line already read and writes them together when the input runs dry: what a
/// server that coalesced its writes could reach (part 6 only).
pub struct RawServer {
    pub address: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn start(batched: bool) -> io::Result<RawServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = stopping.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    thread::spawn(move || raw_connection(stream, batched));
                }
            })
        };
        Ok(RawServer {
            address,
            stopping,
            acceptor: Some(acceptor),
        })
    }
}

fn raw_connection(stream: TcpStream, batched: bool) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut writer = &stream;
    let mut reader = BufReader::with_capacity(READ_BUFFER_SIZE, &stream);
    let mut line = Vec::with_capacity(128);
    let mut replies = Vec::with_capacity(64 * 1024);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.starts_with(b"MSG") {
            replies.extend_from_slice(RAW_REPLY);
        }
        let flush = !batched || reader.buffer().is_empty();
        if flush && !replies.is_empty() {
            if writer.write_all(&replies).is_err() {
                return;
            }
            replies.clear();
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The library server on a thread of this process, configured as `servercall --quiet` runs it.
pub struct LibraryServer {
    pub server: Server,
    pub address: SocketAddr,
    acceptor: Option<JoinHandle<io::Result<()>>>,
}

impl LibraryServer {
    pub fn start() -> io::Result<LibraryServer> {
        let server = Server::new(ServerConfig {
            log: false,
            max_clients: 100_000,
            // The benchmark measures throughput: flood control off.
            max_msg_rate: 0,
            ..ServerConfig::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let acceptor = {
            let server = server.clone();
            thread::spawn(move || server.serve(listener))
        };
        Ok(LibraryServer {
            server,
            address,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for LibraryServer {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.server
            .wait_for_clients_to_leave(Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------------------------
// A server in a process of its own (parts 3b, 4 and 5)

/// `servercall` (or the raw fan-out server), driven through its stdin and read on its stdout.
pub struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    pub address: SocketAddr,
    /// The console's lines, each with the moment it was read, except the per-client result lines
    /// of a broadcast (`client-7 returned: ok`, ten thousand of them), which are dropped.
    lines: Receiver<(Instant, String)>,
}

impl ServerProcess {
    pub fn servercall(path: &Path, max_clients: usize) -> io::Result<ServerProcess> {
        let mut command = Command::new(path);
        command
            .args(["--listen", "127.0.0.1:0", "--quiet", "--max-msg-rate", "0"])
            .arg("--max-clients")
            .arg(max_clients.to_string());
        ServerProcess::spawn(command, path)
    }

    /// This program again, as `--raw-fan-out-server` (see `fan_out::raw_fan_out_server`).
    pub fn raw_fan_out() -> io::Result<ServerProcess> {
        let path = std::env::current_exe()?;
        let mut command = Command::new(&path);
        command.arg("--raw-fan-out-server");
        ServerProcess::spawn(command, &path)
    }

    fn spawn(mut command: Command, path: &Path) -> io::Result<ServerProcess> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", path.display()))
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || forward_console(stdout, sender));
        let mut process = ServerProcess {
            child,
            stdin,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        // `servercall listening on 127.0.0.1:PORT (upcall/1). Type ...`
        let (_, first) = process.wait_for("", Duration::from_secs(10))?;
        process.address = first
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| bad(format!("unexpected first line {first:?}")))?;
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one console command; returns the moment just before it was written.
    pub fn console(&mut self, command: &str) -> io::Result<Instant> {
        let line = format!("{command}\n");
        let start = Instant::now();
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()?;
        Ok(start)
    }

    /// The next console line that starts with `prefix` (lines before it are skipped).
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> io::Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.starts_with(prefix) => return Ok((at, line)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the server printed no `{prefix}…` line within {timeout:?}"),
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(bad("the server's stdout closed (did it exit?)"))
                }
            }
        }
    }

    /// `quit`, and wait for the process to end (kill it after 10 s).
    pub fn stop(mut self) {
        let _ = self.console("quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        progress!("the server did not exit within 10 s of `quit`: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn forward_console(stdout: impl Read, sender: Sender<(Instant, String)>) {
    let mut lines = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let at = Instant::now();
        let text = line.trim_end();
        // A broadcast prints one line per client; only the summary after them matters here.
        if text.starts_with("client-") && text.ends_with(" returned: ok") {
            continue;
        }
        if sender.send((at, text.to_string())).is_err() {
            return;
        }
    }
}

/// Where `servercall` is: `--servercall PATH`, or the binary of this example's profile, which we
/// ask cargo to build first (a no-op when it is up to date; `cargo run --example` builds only the
/// example).
pub fn find_servercall(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/examples/bench → target/<profile>/servercall
    let path = exe.parent()?.parent()?.join("servercall");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--bin", "servercall"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    progress!("building servercall");
    match build.status() {
        Ok(status) if status.success() => {}
        _ => progress!(
            "could not build servercall with cargo; using {} as it is",
            path.display()
        ),
    }
    path.exists().then_some(path)
}
