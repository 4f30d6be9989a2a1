//! What the machine says about this process's limits: one plain record, filled by `os.rs` (the
//! `getrlimit` calls) and `os/linux.rs` (`/proc` and `/sys`), both of which use it, and read by
//! `server::limits::client_limit`.

/// What the machine says about this process's limits, for `server::limits::client_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// `vm.max_map_count` (Linux).
    pub max_map_count: Option<u64>,
    /// The soft open-file limit (`ulimit -n`).
    pub open_files: Option<u64>,
    /// Threads this process may still start under `ulimit -u` (root is not held to it).
    pub user_threads_free: Option<u64>,
    /// Tasks the process's control group may still start (`pids.max` minus `pids.current`: a
    /// container's pids limit).
    pub cgroup_pids_free: Option<u64>,
    /// Address space left under `ulimit -v`, in bytes.
    pub address_space_free: Option<u64>,
}
