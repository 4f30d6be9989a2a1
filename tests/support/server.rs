//! The one server launcher: the library's [`Server`] serving in this process, on an ephemeral
//! loopback port (never the lab's 4141, so tests can run while a real lab server is up) or on a
//! listener the test bound itself, and shut down when dropped.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::ops::Deref;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use upcall::log::Log;
use upcall::server::{Server, ServerConfig};

use super::client::RawClient;

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

/// A server running in this process.
///
/// It derefs to [`Server`], so tests call `server.call(..)`, `server.clients()` and so on directly,
/// exactly as the console does. Dropping it shuts the server down, so no test leaves an accept
/// loop behind for the next one.
pub struct TestServer {
    server: Server,
    pub addr: SocketAddr,
    /// Receives what `serve` returned, once it has returned.
    served: mpsc::Receiver<io::Result<()>>,
    /// Set by [`TestServer::stop`], which has shut the server down already.
    stopped: bool,
}

impl TestServer {
    /// A new server with `config`, on `127.0.0.1:<ephemeral port>`.
    pub fn start(config: ServerConfig) -> TestServer {
        TestServer::serving(Server::new(config))
    }

    /// Serves `server` (made by the test, with a log of its own, say) on an ephemeral port.
    pub fn serving(server: Server) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        TestServer::serving_on(server, listener)
    }

    /// Serves `server` on `listener`, bound by the test (inside a network namespace, say).
    ///
    /// The shutdown on drop wakes the accept loop with a connection to the listener's address,
    /// made from the thread that drops: drop it where that address is reachable.
    pub fn serving_on(server: Server, listener: TcpListener) -> TestServer {
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
            stopped: false,
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
        let name = client.expect_welcome();
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

    /// Shuts the server down and checks that it ends cleanly: `serve` returns without an error,
    /// and every client has left, each within 10 s.
    pub fn stop(mut self) {
        self.stopped = true;
        self.server.shutdown();
        match self.served.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("serve failed: {error}"),
            Err(_) => panic!("serve has not returned 10 s after shutdown"),
        }
        assert!(
            self.server
                .wait_for_clients_to_leave(Duration::from_secs(10)),
            "clients still registered 10 s after shutdown"
        );
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
        if !self.stopped {
            self.server.shutdown();
        }
    }
}

/// A server log the test can read: made with [`KeptLog::start`], given to the server with
/// `Server::with_log(config, kept.log.clone())`.
pub struct KeptLog {
    pub log: Log,
    /// Lock: guards the bytes printed so far. Held to append a write, or to copy them out.
    printed: Arc<Mutex<Vec<u8>>>,
}

impl KeptLog {
    /// Starts the log's printing thread, printing into a buffer instead of stdout.
    pub fn start() -> KeptLog {
        let printed = Arc::new(Mutex::new(Vec::new()));
        let log = Log::to({
            let printed = printed.clone();
            move || Printed(printed)
        });
        KeptLog { log, printed }
    }

    /// Everything the log has printed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.printed.lock().unwrap()).into_owned()
    }
}

/// The `Write` the log's printing thread holds: it appends to the bytes the test reads.
struct Printed(Arc<Mutex<Vec<u8>>>);

impl Write for Printed {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
