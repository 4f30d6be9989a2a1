//! The one test client: a raw `upcall/1` connection, spoken byte for byte as a student does with
//! `nc`, and the one parser of the `UPCALL` lines it hears.
//!
//! It never uses the crate's client or parser, so a bug in either cannot hide a bug in the server:
//! what a test expects is written out as the bytes on the wire, newline included.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client waits for any one line before it declares the server silent. Long enough
/// for a loaded CI machine running debug builds, short enough that a broken test fails in seconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The text the server's `ERR` carries for an upcall id it has no pending entry for.
pub fn unknown_id_error(id: u64) -> String {
    format!(
        "ERR unknown upcall id {id} (never sent, already answered, or given up after the timeout)\n"
    )
}

/// One raw TCP connection to the server.
pub struct RawClient {
    /// The socket, buffered for reading: the buffer may hold bytes past a line, so every read
    /// goes through it. Writes go straight to the socket underneath.
    reader: BufReader<TcpStream>,
}

impl RawClient {
    /// A new connection to `addr`, with nothing read yet.
    pub fn connect(addr: SocketAddr) -> RawClient {
        RawClient::over(TcpStream::connect(addr).expect("connect to the test server"))
    }

    /// A client on a stream the test connected itself (from inside a network namespace, say).
    pub fn over(stream: TcpStream) -> RawClient {
        // Each `send` leaves at once as its own segment, so "three writes" really are three.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        RawClient {
            reader: BufReader::new(stream),
        }
    }

    /// How long each read waits for the server from now on ([`READ_TIMEOUT`] to begin with);
    /// `None` for a client that listens until the end of the stream, however long that takes.
    pub fn set_patience(&self, patience: Option<Duration>) {
        self.stream()
            .set_read_timeout(patience)
            .expect("read timeout");
    }

    fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Another handle on the socket, for a test that writes from a second thread.
    pub fn writer(&self) -> TcpStream {
        self.stream().try_clone().expect("clone the socket")
    }

    /// A handle for writing whole lines from several threads at once (see [`Sender`]).
    pub fn sender(&self) -> Sender {
        Sender(Arc::new(Mutex::new(self.writer())))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream().local_addr().expect("local address")
    }

    /// Writes `text` as it is, in one `write_all`: no newline is added.
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).expect("write to the server");
    }

    /// Like `send_bytes`, for a client that may have been closed by the server meanwhile.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads exactly one line, its `\n` included. Panics on timeout, end of stream or non-UTF-8.
    pub fn expect_line(&mut self) -> String {
        match self.try_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the server closed the connection; expected a line"),
            Err(error) => panic!("no line from the server in time: {error}"),
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

    /// Every line from here on (each with its `\n`), until the end of the stream or the first
    /// read that fails (a timeout, a reset).
    pub fn lines(&mut self) -> impl Iterator<Item = String> + '_ {
        std::iter::from_fn(|| self.try_line().ok().flatten())
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

    /// Reads the `WELCOME <id> upcall/1` line; returns the id the server gave (`client-1`).
    pub fn expect_welcome(&mut self) -> String {
        let welcome = self.expect_line();
        welcome
            .strip_prefix("WELCOME ")
            .and_then(|rest| rest.strip_suffix(" upcall/1\n"))
            .unwrap_or_else(|| panic!("expected WELCOME <id> upcall/1, got {welcome:?}"))
            .to_string()
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

    /// Waits until the server has sent something and leaves it unread: closing the socket now
    /// makes Linux send a reset instead of a FIN, as a client killed mid-conversation does.
    pub fn wait_unread(&self) {
        if self.reader.buffer().is_empty() {
            let mut byte = [0u8; 1];
            self.stream()
                .peek(&mut byte)
                .expect("something arrives from the server");
        }
    }

    /// Closes the sending direction only (a FIN), still able to read, as `nc` does at the end of
    /// its input.
    pub fn stop_sending(&self) {
        let _ = self.stream().shutdown(Shutdown::Write);
    }

    /// Closes both directions, as a client that goes away does.
    pub fn hang_up(&self) {
        let _ = self.stream().shutdown(Shutdown::Both);
    }
}

/// The write half of a client that several threads write to (the test, and a thread answering
/// its upcalls, say); clones share the one socket.
///
/// Lock: guards the socket's write half. It is held for one `write_all`, which is the point: two
/// threads' lines never interleave in the middle of a line.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<TcpStream>>);

impl Sender {
    /// Writes `text` whole (no newline is added); panics if the connection is gone.
    pub fn send(&self, text: &str) {
        self.try_send(text).expect("write to the server");
    }

    /// Like `send`, for a client that may have been closed by the server meanwhile.
    pub fn try_send(&self, text: &str) -> io::Result<()> {
        let mut socket = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        socket.write_all(text.as_bytes())
    }

    /// Closes both directions: the thread reading this client then sees the end of the stream.
    pub fn hang_up(&self) {
        let socket = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = socket.shutdown(Shutdown::Both);
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
    /// `None` for any line that is not an `UPCALL` with its newline.
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
