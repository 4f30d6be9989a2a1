//! Playing cases against a server: a few at a time (`--jobs`), each on connections of its own, the
//! long ones (timeouts) first.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::case::{selected, Case, Outcome, Side};
use super::options::Options;
use super::report::Report;
use super::server_ctx::ServerCtx;
use super::timing_cases;
use super::wire::Transcript;
use crate::lock;

/// Plays the selected ones of `cases` against the server at `address`, `options.jobs` at a time.
pub fn play(
    address: &str,
    options: &Options,
    cases: Vec<Case<ServerCtx>>,
) -> Result<Report, String> {
    let addr = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("`{address}` is not an address: use HOST:PORT, such as 127.0.0.1:4141")
        })?;
    // One connection first: a server that is not there is one sentence, not thirty failures.
    std::net::TcpStream::connect_timeout(&addr, options.wait).map_err(|error| {
        format!("cannot connect to {addr} ({error}): is the server running, on that port?")
    })?;
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|case| selected(case.rule, &options.selection))
        .collect();
    // The long cases (timeouts) first, so that the run takes as long as the longest, not the sum.
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.sort_by_key(|&i| !timing_cases::is_slow(cases[i].rule));
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cases.len()]);
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..options.jobs.min(cases.len()) {
            scope.spawn(|| {
                while let Some(&index) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let outcome = run_one(&cases[index], addr, options);
                    // Lock: guards the results table; held to store one outcome.
                    lock(&results)[index] = Some(outcome);
                }
            });
        }
    });
    let outcomes = results.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(Report {
        outcomes: outcomes.into_iter().flatten().collect(),
    })
}

fn run_one(case: &Case<ServerCtx>, addr: SocketAddr, options: &Options) -> Outcome {
    let transcript: Transcript = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut ctx = ServerCtx::new(addr, options.clone(), transcript.clone());
    let failure = (case.run)(&mut ctx).err();
    drop(ctx);
    let transcript = lock(&transcript).clone();
    Outcome {
        side: Side::Server,
        rule: case.rule,
        title: case.title,
        failure,
        transcript,
        took: started.elapsed(),
    }
}
