//! What Linux says in `/proc` and `/sys`. Plain file reads, nothing unsafe; absent files (another
//! system, a sandbox) just leave a fact unknown.

use super::facts::MachineFacts;
use std::fs;
use std::path::{Path, PathBuf};

pub(super) fn add_proc_facts(facts: &mut MachineFacts) {
    facts.max_map_count = read_number("/proc/sys/vm/max_map_count");
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(space) = facts.address_space_free {
        // "VmSize:   123456 kB": what is mapped already.
        let mapped = field(&status, "VmSize:").map_or(0, |kib| kib * 1024);
        facts.address_space_free = Some(space.saturating_sub(mapped));
    }
    // "Uid: real effective saved fs": ulimit -u counts by the real uid, and spares root.
    let uids: Vec<u64> = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match (facts.user_threads_free, uids.as_slice()) {
        (Some(limit), [real, effective, ..]) if *effective != 0 => {
            facts.user_threads_free = Some(limit.saturating_sub(threads_of_user(*real)));
        }
        _ => facts.user_threads_free = None,
    }
    facts.cgroup_pids_free = cgroup_pids_free();
}

fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Threads that every process of user `uid` runs now.
fn threads_of_user(uid: u64) -> u64 {
    let Ok(processes) = fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                == Some(uid)
        })
        .filter_map(|status| field(&status, "Threads:"))
        .sum()
}

/// Room under the tightest `pids.max` of this process's control group and its parents.
/// `/proc/self/cgroup` names the group: `0::/path` (cgroup v2) or `N:pids:/path` (v1).
fn cgroup_pids_free() -> Option<u64> {
    let groups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut dir = groups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let root = match controllers {
            "" => PathBuf::from("/sys/fs/cgroup"),
            list if list.split(',').any(|c| c == "pids") => PathBuf::from("/sys/fs/cgroup/pids"),
            _ => return None,
        };
        root.join(path.trim_start_matches('/'))
            .join("pids.max")
            .exists()
            .then(|| root.join(path.trim_start_matches('/')))
    })?;
    let mut free: Option<u64> = None;
    loop {
        if let (Some(max), Some(current)) = (
            read_number(dir.join("pids.max")),
            read_number(dir.join("pids.current")),
        ) {
            let here = max.saturating_sub(current);
            free = Some(free.map_or(here, |free| free.min(here)));
        }
        if !dir.pop() || !dir.join("pids.max").exists() {
            return free;
        }
    }
}
