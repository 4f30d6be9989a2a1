//! The whole class at once: the heavy fairness tests, `#[ignore]`d by default and run by CI with
//! `cargo test --release --test classroom -- --ignored --test-threads 1`.
//!
//! - a classroom: 200 students chatting at human rates, and beside them a client that never
//!   reads, a flooder, 20 silent connections and a client that registers garbage;
//! - a burst of 5,000 connections at once;
//! - 300,000 distinct `REGISTER`s from one client.
//!
//! They measure this process, which holds the server *and* its clients, so they run one at a
//! time (`serial`).

pub mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::scenarios::{
    answer_every_upcall, flooder, ignores_what_it_hears, stops_reading, Line,
};
use support::{quiet_config, resident_kib, serial, wait_until, RawClient, TestServer};
use upcall::server::ServerConfig;

/// The kernel's count of connections dropped because a listen queue was full.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let place = names
        .split_whitespace()
        .position(|name| name == "ListenOverflows")
        .expect("ListenOverflows");
    values
        .split_whitespace()
        .nth(place)
        .unwrap()
        .parse()
        .unwrap()
}

/// 200 students chat at human rates (a message every 2–8 s each) for 15 s, while a client that
/// never reads, a flooder, 20 silent connections and a garbage registrar do their worst. Every
/// student's every message comes back as its upcall, the slowest within 250 ms.
#[test]
#[ignore]
fn a_classroom_of_200_with_four_bad_neighbours_is_served_throughout() {
    const STUDENTS: usize = 200;
    const LESSON: Duration = Duration::from_secs(15);
    let _serial = serial();
    let server = TestServer::start(ServerConfig {
        max_msg_rate: 20,
        ..quiet_config()
    });
    let start = Instant::now();
    let worst_micros = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut students = Vec::new();
    for n in 0..STUDENTS {
        let (client, _) = server.connect_registered(&["on_event"]);
        // The student answers every upcall, and times its own messages, whose text carries the
        // moment they were sent. (It keeps nothing else: this test measures the memory.)
        let (worst, answered) = (worst_micros.clone(), answered.clone());
        let mine = format!("Upcall event: Processing s{n} ");
        let (writer, _) = answer_every_upcall(client, move |line, _| {
            let Line::Upcall(upcall) = line else {
                return;
            };
            if let Some(sent) = upcall.argument.strip_prefix(&mine) {
                let sent: u64 = sent.split(' ').nth(1).unwrap().parse().unwrap();
                let took = start.elapsed().as_micros() as u64 - sent;
                worst.fetch_max(took, Ordering::SeqCst);
                answered.fetch_add(1, Ordering::SeqCst);
            }
        });
        students.push(writer);
    }
    let baseline_kib = resident_kib("self");

    // The bad neighbours.
    let _stuck = stops_reading(server.connect_welcomed().0);
    let silent: Vec<RawClient> = (0..20).map(|_| server.connect()).collect();
    let flood = flooder(server.connect(), 20_000, &"f".repeat(200));
    let registrar = thread::spawn({
        let stream = ignores_what_it_hears(server.connect_registered(&["on_event"]).0);
        move || {
            for n in 0..50_000 {
                let garbage = format!("REGISTER junk_{n}\nRETURN {n} x\nNONSENSE {n}\n");
                if stream.try_send(&garbage).is_err() {
                    break;
                }
            }
        }
    });

    // The lesson: each student sends a message every 2–8 s.
    let sent = Arc::new(AtomicUsize::new(0));
    let chatters: Vec<_> = students
        .iter()
        .enumerate()
        .map(|(n, writer)| {
            let (writer, sent) = (writer.clone(), sent.clone());
            thread::spawn(move || {
                let mut seq = 0u64;
                // A spread of start times and pauses, the same in every run.
                thread::sleep(Duration::from_millis((n as u64 * 37) % 2000));
                while start.elapsed() < LESSON {
                    seq += 1;
                    let now = start.elapsed().as_micros();
                    let line = format!("MSG s{n} {seq} {now}\n");
                    writer.send(&line);
                    sent.fetch_add(1, Ordering::SeqCst);
                    let pause = 2000 + (n as u64 * 7919 + seq * 104_729) % 6000;
                    thread::sleep(Duration::from_millis(pause));
                }
            })
        })
        .collect();
    for chatter in chatters {
        chatter.join().unwrap();
    }
    flood.join().unwrap();
    registrar.join().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || answered.load(Ordering::SeqCst)
            == sent),
        "{} of {sent} messages came back as upcalls",
        answered.load(Ordering::SeqCst)
    );
    let worst = Duration::from_micros(worst_micros.load(Ordering::SeqCst));
    let grown_kib = resident_kib("self").saturating_sub(baseline_kib);
    eprintln!(
        "classroom: {STUDENTS} students sent {sent} messages; slowest MSG -> UPCALL {worst:?}; \
         this process grew by {grown_kib} KiB"
    );
    assert!(worst <= Duration::from_millis(250), "slowest {worst:?}");
    assert!(grown_kib < 64 * 1024, "grew by {grown_kib} KiB");
    // Every student is still connected and served; the silent ones may still hold their
    // slots (the line timeout is 30 s), the stuck one is bounded but may still be there.
    assert!(server.client_count() >= STUDENTS);
    drop(silent);
}

/// 5,000 clients connect at once (10 threads of 500, as fast as each can). All get `WELCOME` within 2 s, and the kernel
/// drops no connection for a full listen queue.
#[test]
#[ignore]
fn a_burst_of_5000_connections_is_welcomed_within_2_s() {
    const THREADS: usize = 10;
    const EACH: usize = 500;
    let _serial = serial();
    let server = TestServer::start(ServerConfig {
        max_clients: 20_000,
        ..quiet_config()
    });
    let overflows = listen_overflows();
    let go = Arc::new(Barrier::new(THREADS + 1));
    let connectors: Vec<_> = (0..THREADS)
        .map(|_| {
            let (go, address) = (go.clone(), server.addr);
            thread::spawn(move || {
                go.wait();
                let mut clients: Vec<RawClient> =
                    (0..EACH).map(|_| RawClient::connect(address)).collect();
                for client in &mut clients {
                    client.expect_welcome();
                }
                clients
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    let connected: Vec<Vec<RawClient>> = connectors
        .into_iter()
        .map(|connector| connector.join().unwrap())
        .collect();
    let took = started.elapsed();
    let dropped = listen_overflows() - overflows;
    eprintln!(
        "{} connections welcomed in {took:?}; listen overflows: {dropped}",
        THREADS * EACH
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(dropped, 0, "the kernel dropped {dropped} connections");
    drop(connected);
}

/// 300,000 distinct `REGISTER`s from one client: 64 are kept, the rest refused, and this process
/// (server and client) grows by less than 2 MiB.
#[test]
#[ignore]
fn three_hundred_thousand_registrations_cost_under_2_mib() {
    let _serial = serial();
    let server = TestServer::start(quiet_config());
    let (mut client, _) = server.connect_registered(&["on_event"]);
    let stream = client.sender();
    client.set_patience(Some(Duration::from_secs(20)));
    let refusals = thread::spawn(move || {
        client
            .lines()
            .take_while(|line| line != "BYE\n")
            .filter(|line| line.starts_with("ERR too many callbacks"))
            .count()
    });
    let before = resident_kib("self");
    let mut batch = String::new();
    for n in 0..300_000 {
        batch.push_str(&format!("REGISTER cb_{n}\n"));
        if batch.len() > 64 * 1024 {
            stream.send(&batch);
            batch.clear();
        }
    }
    batch.push_str("BYE\n");
    stream.send(&batch);
    let refused = refusals.join().unwrap();
    let grown = resident_kib("self").saturating_sub(before);
    eprintln!("300,000 REGISTERs: {refused} refused; grew by {grown} KiB");
    assert_eq!(refused, 300_000 - 63); // on_event was the first
    assert!(grown < 2048, "grew by {grown} KiB");
}
