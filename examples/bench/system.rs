//! What the kernel says about a process and about the machine, read from `/proc`.
//!
//! Every figure of parts 4 and 5 that is not a time comes from here: a server's RSS, threads, open
//! files and memory maps, the machine's kernel stacks, the CPU time spent while the bench ran, and
//! the limits that a larger N would run into.

use std::fs;
use std::thread;

use crate::{thousands, TICKS_PER_SECOND};

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStatus {
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub maps: u64,
}

pub fn process_status(pid: u32) -> ProcessStatus {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ProcessStatus {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64),
        maps: fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_or(0, |maps| maps.lines().count() as u64),
    }
}

/// Fields of `/proc/<pid>/stat` from the third on (the command name, in parentheses, may hold
/// spaces: everything after the last `)`).
fn stat_fields(path: &str) -> Vec<u64> {
    let stat = fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect()
}

/// utime + stime of a process (fields 14 and 15 of its stat), in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let fields = stat_fields(&format!("/proc/{pid}/stat"));
    // Field 3 is at index 0, so field 14 is at index 11.
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// CPU time in ticks: (the whole machine busy, the whole machine in all, this process and the
/// children it has waited for). Busy minus ours is the load that came from elsewhere.
pub fn cpu_snapshot() -> (u64, u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let get = |i: usize| cpu.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let all = busy + get(3) + get(4);
    // utime, stime, cutime, cstime: fields 14 to 17.
    let fields = stat_fields("/proc/self/stat");
    let ours = (11..=14).map(|i| fields.get(i).copied().unwrap_or(0)).sum();
    (busy, all, ours)
}

pub fn cpu_seconds(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND
}

pub fn meminfo_kib(name: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft "Max open files" of a process (`self` or a pid).
pub fn open_file_limit(pid: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()?
        .lines()
        .find(|line| line.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

pub fn machine() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("model name")?;
            Some(rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPU(s), {model}, Linux {}, {} build",
        kernel.trim(),
        if cfg!(debug_assertions) {
            "DEBUG (its numbers mean little)"
        } else {
            "release"
        }
    )
}

/// For each limit of this machine, the largest N it allows, computed from the per-client costs
/// measured with `n` clients (`before` is the server with none). Sorted: the first one binds.
pub fn limits(n: usize, before: &ProcessStatus, idle: &ProcessStatus, pid: u32) -> Vec<String> {
    let n = n as f64;
    let per = |after: u64, before: u64| ((after as f64 - before as f64) / n).max(1e-9);
    let mut found: Vec<(f64, String)> = Vec::new();
    if let Some(limit) = open_file_limit(&pid.to_string()) {
        let fds = per(idle.fds, before.fds);
        found.push((
            (limit as f64 - before.fds as f64) / fds,
            format!("open files: {limit} per process; {fds:.2} per client in the server (and one per client in the load, another process)"),
        ));
    }
    if let (Some(pid_max), Some(threads_max)) = (
        read_number("/proc/sys/kernel/pid_max"),
        read_number("/proc/sys/kernel/threads-max"),
    ) {
        // /proc/loadavg's fourth field is running/total tasks on the whole machine, the server's
        // threads for these n clients included.
        let tasks = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|line| {
                let total = line.split_whitespace().nth(3)?.split('/').nth(1)?;
                total.parse::<f64>().ok()
            })
            .unwrap_or(0.0);
        let threads = per(idle.threads, before.threads);
        let cap = pid_max.min(threads_max) as f64;
        found.push((
            n + (cap - tasks) / threads,
            format!("threads: pid_max {pid_max} for the whole machine ({tasks:.0} tasks now, with these {n:.0} clients); {threads:.2} per client"),
        ));
    }
    if let Ok(range) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let ends: Vec<f64> = range
            .split_whitespace()
            .filter_map(|port| port.parse().ok())
            .collect();
        if ends.len() == 2 {
            found.push((
                ends[1] - ends[0] + 1.0,
                format!("ephemeral ports {}–{}: one per client towards one server address (std cannot bind a client to 127.0.0.2 before connecting, which would multiply them)", ends[0], ends[1]),
            ));
        }
    }
    if let Some(max_maps) = read_number("/proc/sys/vm/max_map_count") {
        let maps = per(idle.maps, before.maps);
        found.push((
            (max_maps as f64 - before.maps as f64) / maps,
            format!("memory maps: vm.max_map_count {max_maps} per process; {maps:.2} per client (thread stack + its guard page, Rust's signal stack + its guard page); past it a new thread cannot map its signal stack and Rust aborts the whole process"),
        ));
    }
    let available = meminfo_kib("MemAvailable:") as f64;
    let rss = per(idle.rss_kib, before.rss_kib);
    found.push((
        n + available / (rss + 16.0),
        format!(
            "memory: {:.0} MiB available; {rss:.1} KiB RSS + 16 KiB kernel stack per client (socket buffers not counted)",
            available / 1024.0
        ),
    ));
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
        .into_iter()
        .enumerate()
        .map(|(i, (max, what))| {
            let mark = if i == 0 { "→" } else { " " };
            format!("{mark} N ≤ {:>9}  {what}", thousands(max.floor()))
        })
        .collect()
}
