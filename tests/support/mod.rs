//! Shared helpers for the integration tests that talk to a real server over loopback.
//!
//! The tests speak raw `upcall/1` bytes, the way a student does with `nc`: they never use the
//! crate's client, so a bug in the client cannot hide a bug in the server. What they do use:
//!
//! - [`TestServer`]: a [`Server`] serving on `127.0.0.1:<ephemeral port>` in this process (never
//!   the lab's port 4141, so tests can run while a real lab server is up), shut down on drop;
//! - [`RawClient`]: a plain `TcpStream` with `send` (raw bytes out) and `expect_line` (exactly one
//!   line in). Every read has a timeout, so a missing line fails the test instead of hanging it.
//!
//! Each test file uses only some of these helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use upcall::server::{Server, ServerConfig};

#[cfg(target_os = "linux")]
pub mod netns;

/// How long a test waits for any one line before it declares the server silent. Long enough for
/// a loaded CI machine running debug builds, short enough that a broken test fails in seconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The text the server's `ERR` carries for an upcall id it has no pending entry for.
pub fn unknown_id_error(id: u64) -> String {
    format!(
        "ERR unknown upcall id {id} (never sent, already answered, or given up after the timeout)\n"
    )
}

/// A configuration for tests: no log (test output stays readable), the defaults otherwise.
pub fn quiet_config() -> ServerConfig {
    ServerConfig {
        log: false,
        upcall_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        // Tests send as fast as they can; the flood control has tests of its own.
        max_msg_rate: 0,
        ..Default::default()
    }
}

/// A server running in this process on an ephemeral loopback port.
///
/// It derefs to [`Server`], so tests call `server.call(..)`, `server.clients()` and so on directly,
/// exactly as the console does. Dropping it shuts the server down, so no test leaves an accept
/// loop behind for the next one.
pub struct TestServer {
    server: Server,
    pub addr: SocketAddr,
    /// Receives what `serve` returned, once it has returned.
    served: mpsc::Receiver<io::Result<()>>,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> TestServer {
        TestServer::serving(Server::new(config))
    }

    /// Serves `server` (made by the test, with a log of its own, say).
    pub fn serving(server: Server) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let (done, served) = mpsc::channel();
        {
            let server = server.clone();
            thread::spawn(move || {
                let _ = done.send(server.serve(listener));
            });
        }
        TestServer {
            server,
            addr,
            served,
        }
    }

    /// Another handle to the same server, to move into a thread (`server.call` blocks until the
    /// client answers, so the test runs it on a thread while it plays the client itself).
    pub fn handle(&self) -> Server {
        self.server.clone()
    }

    /// A new raw connection, with nothing read yet.
    pub fn connect(&self) -> RawClient {
        RawClient::connect(self.addr)
    }

    /// A new connection that has read its `WELCOME`; returns the client and its id (`client-1`).
    pub fn connect_welcomed(&self) -> (RawClient, String) {
        let mut client = self.connect();
        let welcome = client.expect_line();
        let name = welcome
            .strip_prefix("WELCOME ")
            .and_then(|rest| rest.strip_suffix(" upcall/1\n"))
            .unwrap_or_else(|| panic!("expected WELCOME <id> upcall/1, got {welcome:?}"))
            .to_string();
        (client, name)
    }

    /// A welcomed client that has also registered `callbacks` (each acknowledged).
    pub fn connect_registered(&self, callbacks: &[&str]) -> (RawClient, String) {
        let (mut client, name) = self.connect_welcomed();
        for callback in callbacks {
            client.register(callback);
        }
        (client, name)
    }

    /// True once `serve` has returned (after `shutdown`), waiting at most `limit`.
    pub fn serve_returned_within(&self, limit: Duration) -> bool {
        matches!(self.served.recv_timeout(limit), Ok(Ok(())))
    }
}

impl Deref for TestServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// One raw TCP connection to the server.
pub struct RawClient {
    /// The write half (and the handle for `shutdown`).
    stream: TcpStream,
    /// The read half, buffered: it may read past a line, so every read goes through it.
    reader: BufReader<TcpStream>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        // Each `send` leaves at once as its own segment, so "three writes" really are three.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the socket"));
        RawClient { stream, reader }
    }

    /// Another handle on the write half, for a test that writes from a second thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the socket")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes `text` as it is, in one `write_all`: no newline is added.
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Like `send_bytes`, for a client that may have been closed by the server meanwhile.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly one line, its `\n` included. Panics on timeout, end of stream or non-UTF-8.
    pub fn expect_line(&mut self) -> String {
        match self.try_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the server closed the connection; expected a line"),
            Err(error) => panic!("no line from the server within {READ_TIMEOUT:?}: {error}"),
        }
    }

    /// One line (with its `\n`), `Ok(None)` at end of stream, or the read error (a timeout).
    pub fn try_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        let read = self.reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(None);
        }
        assert!(
            line.ends_with(b"\n"),
            "the server closed the connection in the middle of a line: {:?}",
            String::from_utf8_lossy(&line)
        );
        Ok(Some(
            String::from_utf8(line).expect("the server sent UTF-8"),
        ))
    }

    /// Asserts that the next line is exactly `expected` (bytes, newline included).
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.expect_line(), expected);
    }

    /// Asserts that the server closed the connection: the next read returns 0 bytes.
    pub fn expect_eof(&mut self) {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected end of stream, got more data: {:?}",
                String::from_utf8_lossy(&byte)
            ),
            Err(error) => panic!("expected end of stream, got {error}"),
        }
    }

    /// `REGISTER <callback>`, and its acknowledgement.
    pub fn register(&mut self, callback: &str) {
        self.send(&format!("REGISTER {callback}\n"));
        self.expect(&format!("REGISTERED {callback}\n"));
    }

    /// Reads one line that must be an `UPCALL`; returns its id, callback and argument.
    pub fn expect_upcall(&mut self) -> Upcall {
        let line = self.expect_line();
        Upcall::parse(&line).unwrap_or_else(|| panic!("expected an UPCALL line, got {line:?}"))
    }

    /// Reads one `UPCALL` and checks its callback and argument; returns its id.
    pub fn expect_upcall_of(&mut self, callback: &str, argument: &str) -> u64 {
        let upcall = self.expect_upcall();
        assert_eq!(
            (upcall.callback.as_str(), upcall.argument.as_str()),
            (callback, argument),
            "upcall {}",
            upcall.id
        );
        upcall.id
    }

    /// A round trip that proves everything the server wrote to this client *before* it read this
    /// line has been received.
    ///
    /// Upcall ids start at 1, so id 0 is never pending and `RETURN 0` always earns an `ERR`. The
    /// server answers it in order on the same socket, so if the next line is that `ERR`, nothing
    /// else was in between. This is how a test says "and nothing else arrived" without sleeping.
    pub fn ping(&mut self) {
        self.send("RETURN 0 ping\n");
        self.expect(&unknown_id_error(0));
    }

    /// Closes both directions, as a client that goes away does.
    pub fn hang_up(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// An `UPCALL <id> <callback> [<argument>]` line, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcall {
    pub id: u64,
    pub callback: String,
    pub argument: String,
}

impl Upcall {
    /// Parses by hand (not with the crate's parser), so the tests check the wire format itself.
    pub fn parse(line: &str) -> Option<Upcall> {
        let rest = line.strip_prefix("UPCALL ")?.strip_suffix('\n')?;
        let (id, rest) = rest.split_once(' ')?;
        let (callback, argument) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Upcall {
            id: id.parse().ok()?,
            callback: callback.to_string(),
            argument: argument.to_string(),
        })
    }
}

/// Polls `condition` every few milliseconds until it holds or `limit` has passed; true if it held.
///
/// For facts the server does not announce on the wire (a client was forgotten, the count went
/// down), polling with a deadline is the only way to wait; it is bounded, so it never hangs.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The resident memory of a process in KiB (`VmRSS` in `/proc/<process>/status`; `"self"` for this
/// one). The tests that measure memory run on Linux: without the file they fail, not pass.
pub fn resident_kib(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_else(|error| panic!("/proc/{process}/status: {error}"));
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}
