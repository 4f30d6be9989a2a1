//! A LAN-like network of our own for the tests: network namespaces joined by veth pairs (MTU
//! 1500, where the kernel does not buffer megabytes per socket as loopback does), made with `ip`
//! and removed when dropped. Needs root and Linux; traffic stays inside the namespaces.
//!
//! A socket belongs to the namespace of the thread that created it, so [`Lan::in_host`] runs a
//! closure on a fresh thread moved into a host's namespace (`setns`), and the sockets it makes can
//! then be used from any thread.

use std::fs::File;
use std::net::TcpListener;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread;

use upcall::server::Server;

use super::server::TestServer;

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}

const CLONE_NEWNET: i32 = 0x4000_0000;

/// A server host and client hosts, each on its own veth link to the server.
pub struct Lan {
    prefix: String,
    pub hosts: Vec<String>,
}

/// Runs `ip ARGS`, panicking with its output if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lan {
    /// Host 0 is the server (`10.77.N.1` on link N); host N (1..=clients) is `10.77.N.2`.
    pub fn new(tag: &str, clients: usize) -> Lan {
        let prefix = format!("u{}{}", tag, std::process::id() % 100_000);
        let hosts: Vec<String> = (0..=clients).map(|n| format!("{prefix}h{n}")).collect();
        let lan = Lan {
            prefix: prefix.clone(),
            hosts,
        };
        for host in &lan.hosts {
            ip(&["netns", "add", host]);
            ip(&["-n", host, "link", "set", "lo", "up"]);
        }
        for n in 1..=clients {
            let (server_end, client_end) = (format!("{prefix}s{n}"), format!("{prefix}c{n}"));
            ip(&[
                "link",
                "add",
                &server_end,
                "type",
                "veth",
                "peer",
                "name",
                &client_end,
            ]);
            ip(&["link", "set", &server_end, "netns", &lan.hosts[0]]);
            ip(&["link", "set", &client_end, "netns", &lan.hosts[n]]);
            let server_ip = format!("10.77.{n}.1/24");
            let client_ip = format!("10.77.{n}.2/24");
            ip(&[
                "-n",
                &lan.hosts[0],
                "addr",
                "add",
                &server_ip,
                "dev",
                &server_end,
            ]);
            ip(&[
                "-n",
                &lan.hosts[n],
                "addr",
                "add",
                &client_ip,
                "dev",
                &client_end,
            ]);
            ip(&["-n", &lan.hosts[0], "link", "set", &server_end, "up"]);
            ip(&["-n", &lan.hosts[n], "link", "set", &client_end, "up"]);
        }
        lan
    }

    /// The server's address on client host `n`'s link.
    pub fn server_ip(&self, n: usize) -> String {
        format!("10.77.{n}.1")
    }

    /// Runs `job` on a thread inside host `n`'s namespace and returns what it returns.
    pub fn in_host<T: Send + 'static>(
        &self,
        n: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.try_in_host(n, job)
            .expect("the job in the namespace panicked")
    }

    /// [`Lan::in_host`], telling a panic instead of passing it on.
    fn try_in_host<T: Send + 'static>(
        &self,
        n: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> thread::Result<T> {
        let path = format!("/var/run/netns/{}", self.hosts[n]);
        thread::spawn(move || {
            let namespace = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: `setns` takes a descriptor we hold open for the call and a flag; it moves
            // only this thread into the namespace.
            let moved = unsafe { setns(namespace.as_raw_fd(), CLONE_NEWNET) };
            assert_eq!(moved, 0, "setns into {path}");
            job()
        })
        .join()
    }

    /// Serves `server` inside host 0 on every interface, on `port`.
    pub fn serve(&self, server: Server, port: u16) -> LanServer<'_> {
        let listener = self.in_host(0, move || {
            TcpListener::bind(("0.0.0.0", port)).expect("bind in the server's namespace")
        });
        LanServer {
            lan: self,
            server: Some(TestServer::serving_on(server, listener)),
        }
    }

    /// Cuts client host `n` off without a FIN or a reset: its link goes down, and whatever is
    /// sent to it is silently lost (a laptop whose lid closed).
    pub fn vanish(&self, n: usize) {
        let end = format!("{}c{n}", self.prefix);
        ip(&["-n", &self.hosts[n], "link", "set", &end, "down"]);
    }

    /// Brings client host `n` back (the laptop wakes up).
    pub fn come_back(&self, n: usize) {
        let end = format!("{}c{n}", self.prefix);
        ip(&["-n", &self.hosts[n], "link", "set", &end, "up"]);
    }
}

/// The server of a [`Lan`], a [`TestServer`] that is shut down from inside host 0 when dropped:
/// there the connection that wakes its accept loop reaches its own listener (from any other
/// namespace, it would go to that namespace's port instead).
pub struct LanServer<'lan> {
    lan: &'lan Lan,
    /// Always `Some` until dropped.
    server: Option<TestServer>,
}

impl Deref for LanServer<'_> {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.server
            .as_ref()
            .expect("the server until it is dropped")
    }
}

impl Drop for LanServer<'_> {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Also while a failed test unwinds: a panic here would abort it.
            let _ = self.lan.try_in_host(0, move || drop(server));
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it, and so both ends of each pair.
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", host]).output();
        }
    }
}
