//! Linux: vfork-style clone3 spawns, pidfds, `waitid(P_PIDFD)`, cgroup v2 herds.

mod cgroup;
mod child;
mod clone;
mod container;
mod group;
mod keeper;
mod orphans;
mod pipes;
mod process;
mod raw;
mod reaper;
mod sentinel;
mod spawn;
mod terminal;

pub(crate) use clone::force as force_spawn_path;
pub use clone::SpawnPath;
pub(crate) use container::{cgroup_parent, CgroupError, Container};
pub(crate) use pipes::{populate, resize_pipe};
pub(crate) use process::{proc_stat, stop_self, Process};
pub(crate) use reaper::outstanding as background_work;
pub(crate) use spawn::{spawn, CgroupTarget, ProcessGroup, SpawnTarget, Spawned};
pub(crate) use terminal::Terminal;
