//! Linux: vfork-style clone3 spawns, pidfds, `waitid(P_PIDFD)`, cgroup v2 herds.
//!
//! Provides the items `sys/mod.rs` lists, nothing more.

mod cgroup;
mod child;
mod clone;
mod container;
mod group;
mod orphans;
mod pipes;
mod process;
mod procfs;
mod raw;
mod reaper;
mod sentinel;
mod sentinel_process;
mod spawn;
mod stale;
mod terminal;

/// This platform starts processes.
pub(crate) const SUPPORTED: bool = true;

pub(crate) use clone::force as force_spawn_path;
pub(crate) use container::{
    force_homeless, namespace_init, writable_cgroup_parent, Container, Subtree,
};
pub(crate) use pipes::{
    pipe, populate, read_now, resize_pipe, set_nonblocking, stop_switch, wait_readable, StopWatch,
};
pub(crate) use process::{die_by, stop_self, Leader, Process};
pub(crate) use procfs::{all_pids, boot_id, children, command_line, stat};
pub(crate) use reaper::outstanding as background_work;
pub(crate) use sentinel::{
    inject_receive_error as sentinel_inject_receive_error, pid as sentinel_pid, unguarded_reason,
};
pub(crate) use spawn::spawn_into;
pub(crate) use terminal::Terminal;
