//! Part 7: a burst of connections. N clients connect at once (from a few threads, each as fast as
//! it can); the row is the time until every one of them has its `WELCOME`, and the note says how
//! many connections the kernel dropped for a full listen queue (`TcpExtListenOverflows`).
//!
//! The baseline is the raw thread-per-client server of part 4: it accepts and starts each client's
//! thread in its accept loop, with std's listen queue of 128. servercall's accept loop only
//! accepts (a starter thread starts the client threads), and its queue holds 4,096 connections.
//! A dropped connection costs its client a SYN retry, one second later.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::wire::ServerProcess;
use crate::{Options, Report, Row};

/// Threads that connect at the same time.
const CONNECTING_THREADS: usize = 10;

/// The kernel's count of connections dropped because a listen queue was full (machine-wide).
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    let place = names
        .split_whitespace()
        .position(|name| name == "ListenOverflows");
    place
        .and_then(|place| values.split_whitespace().nth(place)?.parse().ok())
        .unwrap_or(0)
}

/// `n` connections at once; how long until all have their first line.
fn burst(address: SocketAddr, n: usize) -> io::Result<Duration> {
    let go = Arc::new(Barrier::new(CONNECTING_THREADS + 1));
    let connectors: Vec<_> = (0..CONNECTING_THREADS)
        .map(|_| {
            let go = go.clone();
            thread::spawn(move || -> io::Result<Vec<TcpStream>> {
                go.wait();
                let streams: Vec<TcpStream> = (0..n / CONNECTING_THREADS)
                    .map(|_| TcpStream::connect(address))
                    .collect::<io::Result<_>>()?;
                for stream in &streams {
                    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                    let mut line = String::new();
                    BufReader::new(stream).read_line(&mut line)?;
                }
                Ok(streams)
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    let mut connected = Vec::new();
    for connector in connectors {
        let streams = connector
            .join()
            .map_err(|_| io::Error::other("a connecting thread panicked"))??;
        connected.push(streams);
    }
    Ok(started.elapsed())
}

pub fn part_burst(options: &Options, report: &mut Report, servercall: &Path) {
    let n = if options.quick { 1000 } else { 5000 };
    // The raw baseline's dropped connections wait for SYN retries (seconds each): few rounds.
    let rounds = if options.quick {
        1
    } else {
        options.repeats.min(3)
    };
    let runs: [(&str, bool); 2] = [
        ("7r raw thread per client: all have WELCOME", true),
        ("7  servercall: all have WELCOME", false),
    ];
    for (label, is_raw) in runs {
        progress!("7: burst of {n} connections, {label}");
        let mut samples = Vec::new();
        let mut dropped = 0;
        for _ in 0..rounds {
            let server = if is_raw {
                ServerProcess::raw_fan_out()
            } else {
                ServerProcess::servercall(servercall, n + 100)
            };
            let server = match server {
                Ok(server) => server,
                Err(error) => {
                    report.problems.push(format!("part 7: {error}"));
                    return;
                }
            };
            let before = listen_overflows();
            match burst(server.address, n) {
                Ok(took) => samples.push(took),
                Err(error) => report.problems.push(format!("part 7, {label}: {error}")),
            }
            dropped += listen_overflows() - before;
            server.stop();
        }
        if samples.is_empty() {
            continue;
        }
        let note = format!(
            "{CONNECTING_THREADS} threads connecting at once; listen overflows: {dropped} in {} rounds",
            samples.len()
        );
        report.latency.push(Row::from_samples(
            label,
            &format!("N={n}"),
            "7",
            is_raw,
            samples,
            &note,
        ));
    }
}
