//! Linux: vfork-style clone3 spawns, pidfds, `waitid(P_PIDFD)`, cgroup v2 herds.

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

pub(crate) use clone::force as force_spawn_path;
pub use clone::SpawnPath;
pub(crate) use container::{
    cgroup_parent, force_homeless, namespace_init, CgroupError, Container, Subtree,
};
pub(crate) use pipes::{
    populate, read_now, resize_pipe, set_nonblocking, stop_switch, wait_readable, StopWatch,
};
pub(crate) use process::{die_by, proc_stat, stop_self, Leader, Process};
pub(crate) use procfs::{all_pids, boot_id, children, command_line, stat, Stat};
pub(crate) use reaper::outstanding as background_work;
pub(crate) use sentinel::{
    inject_receive_error as sentinel_inject_receive_error, pid as sentinel_pid, unguarded_reason,
};
pub(crate) use spawn::{spawn, CgroupTarget, ProcessGroup, SpawnTarget, Spawned};
pub(crate) use terminal::Terminal;
