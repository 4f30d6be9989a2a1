//! The reference captures in `pcaps/` still describe today's code.
//!
//! `pcaps/capture.sh` records four scenarios in the Docker lab. Here the same four scenarios run
//! over loopback, with the real `clientcall` (or raw bytes, where the scenario is a hand-typed `nc`
//! session) talking to the library's server through a small recording proxy. The proxy writes
//! down every line in each direction, and the result must be the conversation of the `.txt` beside
//! each capture: the same lines, the same ids, in the same order on each connection. Ports and
//! timings are aside, and so is the host name a `hostname` upcall returns (the lab's container is
//! `upcall-client`, this machine is not).
//!
//! So a protocol change that was not re-captured fails here: run `pcaps/capture.sh` again.
//!
//! The two scenarios of well-behaved clients (`upcall-basic`, `upcall-two-clients`) also run
//! against the bare server of `examples/bare_server.rs`, the one a student reads first: it must
//! hold the same conversations, byte for byte.

mod bare;
mod process;
pub mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use process::{Program, PATIENCE};
use support::{RawClient, TestServer};
use upcall::server::ServerConfig;
use upcall_capture::{format_entry, Direction, Entry, Event, Format};

/// Every line that went through the proxy, as the decoder would print it, in the order the proxy
/// passed it on: `(connection, "c1 C>S MSG haii")`.
type Recording = Arc<Mutex<Vec<(usize, String)>>>;

/// A server in this process, and a proxy in front of it that records the conversation.
struct Lab {
    server: TestServer,
    proxy: Proxy,
}

/// The recording proxy, in front of any server: the library's, or the bare one.
struct Proxy {
    address: SocketAddr,
    recording: Recording,
}

impl Lab {
    fn start(config: ServerConfig) -> Lab {
        let server = TestServer::start(config);
        let proxy = Proxy::start(server.addr);
        Lab { server, proxy }
    }
}

impl Deref for Lab {
    type Target = Proxy;

    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

impl Proxy {
    /// A proxy to the bare server of `examples/bare_server.rs`.
    fn bare() -> Proxy {
        Proxy::start(bare::start())
    }

    fn start(upstream: SocketAddr) -> Proxy {
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let recording = Recording::default();
        let address = proxy.local_addr().unwrap();
        thread::spawn({
            let recording = recording.clone();
            move || {
                for (number, client) in proxy.incoming().enumerate() {
                    let client = client.unwrap();
                    let server = TcpStream::connect(upstream).unwrap();
                    for (from, to, direction) in [
                        (&client, &server, Direction::ClientToServer),
                        (&server, &client, Direction::ServerToClient),
                    ] {
                        let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                        let recording = recording.clone();
                        thread::spawn(move || pump(from, to, number + 1, direction, &recording));
                    }
                }
            }
        });
        Proxy { address, recording }
    }

    fn clientcall(&self) -> Program {
        Program::clientcall(self.address.port(), &[])
    }

    /// Waits until the proxy has passed `line` on connection `connection` (boundedly).
    fn wait_for(&self, connection: usize, line: &str) {
        let wanted = format!("c{connection} {line}");
        let deadline = Instant::now() + PATIENCE;
        while !self
            .recording
            .lock()
            .unwrap()
            .iter()
            .any(|(_, recorded)| *recorded == wanted)
        {
            assert!(Instant::now() < deadline, "never saw {wanted:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Compares what went through the proxy with the reference `.txt`, connection by connection.
    fn assert_same_as(&self, reference: &str) {
        let path = format!("{}/pcaps/{reference}.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let recorded = self.recording.lock().unwrap().clone();
        let connections = recorded.iter().map(|(c, _)| *c).max().unwrap_or(0);
        let expected_connections = text
            .lines()
            .filter(|line| line.ends_with("C>S [connect]"))
            .count();
        assert_eq!(connections, expected_connections, "connections in {path}");
        for connection in 1..=connections {
            let prefix = format!("c{connection} ");
            let expected: Vec<String> = text
                .lines()
                .filter(|line| line.starts_with(&prefix) && !is_tcp_event(line))
                .map(without_hostname)
                .collect();
            let got: Vec<String> = recorded
                .iter()
                .filter(|(c, _)| *c == connection)
                .map(|(_, line)| without_hostname(line))
                .collect();
            assert_eq!(got, expected, "connection c{connection} of {path}");
        }
    }
}

/// Passes bytes on, and records every complete line on the way, before it is passed on: so a
/// line caused by another is always recorded after it.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    connection: usize,
    direction: Direction,
    recording: &Recording,
) {
    let mut pending = Vec::new();
    let mut buffer = [0; 8192];
    while let Ok(n @ 1..) = from.read(&mut buffer) {
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let mut raw: Vec<u8> = pending.drain(..=end).collect();
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
            if raw.is_empty() {
                continue;
            }
            let message = std::str::from_utf8(&raw)
                .map_err(|_| upcall::protocol::ProtocolError::InvalidUtf8)
                .and_then(|line| {
                    if raw.len() + 1 > upcall::protocol::DEFAULT_MAX_LINE {
                        Err(upcall::protocol::ProtocolError::LineTooLong)
                    } else {
                        upcall::protocol::parse(line)
                    }
                });
            let entry = Entry {
                time: Duration::ZERO,
                frame: 0,
                connection,
                direction,
                event: Event::Line { raw, message },
            };
            let line = format_entry(&entry, Format::default());
            recording.lock().unwrap().push((connection, line));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// `[connect]`, `[close]`, `[reset]`: TCP's part, which the proxy does not see as lines.
fn is_tcp_event(line: &str) -> bool {
    ["[connect]", "[close]", "[reset]"]
        .iter()
        .any(|event| line.ends_with(event))
}

/// `RETURN 2 upcall-client` and `RETURN 2 my-laptop` are the same answer to `hostname()`.
fn without_hostname(line: &str) -> String {
    let mut line = line.to_string();
    for name in [this_hostname(), "upcall-client".to_string()] {
        if line.contains(" C>S RETURN ") && line.ends_with(&format!(" {name}")) {
            line.truncate(line.len() - name.len());
            line.push_str("<hostname>");
        }
    }
    line
}

/// This machine's name, as the client's `hostname` callback answers it on every system (on
/// Windows there is no `/proc`: the callback asks the system, and so does this).
fn this_hostname() -> String {
    let callback = upcall::callbacks::find("hostname").expect("hostname is registered");
    callback("", &|_| {}).expect("this machine has a name")
}

fn quiet() -> ServerConfig {
    ServerConfig {
        log: false,
        ..ServerConfig::default()
    }
}

#[test]
fn upcall_basic_is_still_the_lab_transcript() {
    upcall_basic(&Lab::start(quiet()));
}

/// The bare server a student reads first holds the same conversation with the real `clientcall`.
#[test]
fn upcall_basic_is_the_bare_servers_transcript_too() {
    upcall_basic(&Proxy::bare());
}

fn upcall_basic(lab: &Proxy) {
    let mut client = lab.clientcall();
    for message in ["haii", "halo"] {
        client.type_line(message);
        client.wait_for(&format!("Processing {message}"));
    }
    client.type_line("bye");
    assert!(client.finish().0.success());
    lab.assert_same_as("upcall-basic");
}

#[test]
fn upcall_two_clients_is_still_two_clients() {
    two_clients(&Lab::start(quiet()));
}

/// Two clients of the bare server: the same relayed upcalls, with the same ids on each connection.
#[test]
fn upcall_two_clients_is_the_bare_servers_too() {
    two_clients(&Proxy::bare());
}

fn two_clients(lab: &Proxy) {
    let mut first = lab.clientcall();
    let mut second = lab.clientcall();
    first.type_line("haii");
    lab.wait_for(1, "C>S RETURN 1 ok");
    lab.wait_for(2, "C>S RETURN 1 ok");
    second.type_line("halo");
    lab.wait_for(1, "C>S RETURN 2 ok");
    lab.wait_for(2, "C>S RETURN 2 ok");
    first.type_line("bye");
    assert!(first.finish().0.success());
    second.type_line("bye");
    assert!(second.finish().0.success());
    lab.assert_same_as("upcall-two-clients");
}

#[test]
fn upcall_server_initiated_is_still_the_console_calling() {
    let lab = Lab::start(quiet());
    let mut client = lab.clientcall();
    let uppercase = lab.server.call("client-1", "uppercase", "haii");
    assert_eq!(uppercase.to_string(), "client-1 returned: HAII");
    let hostname = lab.server.call("client-1", "hostname", "");
    assert_eq!(
        hostname.to_string(),
        format!("client-1 returned: {}", this_hostname())
    );
    assert_eq!(lab.server.broadcast("class starts now").len(), 1);
    client.type_line("bye");
    assert!(client.finish().0.success());
    lab.assert_same_as("upcall-server-initiated");
}

#[test]
fn upcall_bad_input_is_still_answered_line_by_line() {
    let lab = Lab::start(ServerConfig {
        upcall_timeout: Duration::from_millis(300),
        ..quiet()
    });
    let mut nc = RawClient::connect(lab.address);
    nc.set_patience(Some(PATIENCE));
    assert!(nc.expect_line().starts_with("WELCOME"));
    let overlong = format!("MSG {}\n", "x".repeat(5000));
    for line in [
        &b"HELLO there\n"[..],
        b"MSG caf\xe9\n",
        overlong.as_bytes(),
        b"REGISTER on_event\n",
    ] {
        nc.send_bytes(line);
        nc.expect_line();
    }
    nc.send("MSG haii\n");
    assert!(nc.expect_line().starts_with("UPCALL 1 on_event"));
    // Too late: the server gives up after 300 ms.
    thread::sleep(Duration::from_millis(600));
    nc.send("RETURN 1 ok\n");
    assert!(nc.expect_line().starts_with("ERR unknown upcall id 1"));
    nc.send("REGISTER uppercase\n");
    nc.expect_line();
    let call = thread::spawn({
        let server = lab.server.handle();
        move || server.call("client-1", "uppercase", "haii").to_string()
    });
    assert_eq!(nc.expect_line(), "UPCALL 2 uppercase haii\n");
    nc.send("FAIL 2 not today\n");
    assert_eq!(call.join().unwrap(), "client-1 failed: not today");
    nc.send("BYE\n");
    assert_eq!(nc.expect_line(), "BYE\n");
    lab.wait_for(1, "S>C BYE");
    lab.assert_same_as("upcall-bad-input");
}
