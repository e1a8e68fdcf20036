//! A herd's container on Linux: a cgroup (with the process group its children share as a
//! second net), or, where no cgroup can be had, a process group alone (`group.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cgroup::{self, Cgroup};
use super::group::Group;
use super::process::{open_pidfd, pidfd_send_signal};
use super::reaper;
use super::sentinel::{self, Guarded};
use super::spawn::{spawn, ProcessGroup, SpawnTarget, Spawned, JOIN_GROUP};
use crate::command::Command;
use crate::error::Error;
use crate::signal::Signal;

/// Where a herd's cgroup is created: below this process's own cgroup, or below a given one.
pub(crate) fn cgroup_parent(requested: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let mount = match cgroup::mount_point() {
        Ok(Some(mount)) => mount,
        Ok(None) => return Err("no cgroup v2 hierarchy is mounted".into()),
        Err(err) => return Err(format!("cannot read /proc/self/mountinfo: {err}")),
    };
    let parent = match requested {
        Some(parent) => parent.to_owned(),
        None => cgroup::own_cgroup(&mount)
            .map_err(|err| format!("cannot find this process's cgroup: {err}"))?,
    };
    Ok((mount, parent))
}

/// Why no cgroup herd was made.
#[derive(Debug)]
pub(crate) enum CgroupError {
    /// No cgroup can be had here (no mount, no permission): a reason to fall back.
    Unavailable(String),
    /// Making one failed (too many open files, out of memory, ...): an error to report.
    Failed { context: String, source: io::Error },
}

/// A herd's cgroup, with the process group its children share as a second net.
#[derive(Debug)]
pub(crate) struct CgroupHerd {
    cgroup: Cgroup,
    /// The herd's registration with the owner-death sentinel, if it is protected.
    guard: Option<u64>,
    /// The process group the herd's children join; led by the first child.
    process_group: Mutex<Option<i32>>,
}

impl CgroupHerd {
    /// A new cgroup below `parent` (see [`cgroup_parent`]).
    pub(crate) fn create(parent: Option<&Path>) -> Result<CgroupHerd, CgroupError> {
        let (mount, parent) = cgroup_parent(parent).map_err(CgroupError::Unavailable)?;
        let cgroup = Cgroup::create(&mount, &parent).map_err(|source| {
            let context = format!("cannot create a cgroup below {}", parent.display());
            match source.raw_os_error() {
                // This host or user may not make cgroups there: a fact, not a failure.
                Some(
                    libc::EACCES
                    | libc::EPERM
                    | libc::EROFS
                    | libc::ENOENT
                    | libc::ENOTDIR
                    | libc::EOPNOTSUPP,
                ) => CgroupError::Unavailable(format!("{context}: {source}")),
                // Out of descriptors, memory, or cgroups: this attempt failed.
                _ => CgroupError::Failed { context, source },
            }
        })?;
        let guard = guard(&cgroup, &parent);
        Ok(CgroupHerd {
            cgroup,
            guard,
            process_group: Mutex::new(None),
        })
    }

    /// Whether the herd dies with this process even when it is killed (SIGKILL, abort).
    pub(crate) fn guarded(&self) -> bool {
        self.guard.is_some()
    }

    pub(crate) fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// Starts `cmd` inside the cgroup and in the herd's process group.
    pub(crate) fn spawn(&self, cmd: &Command) -> Result<Spawned, Error> {
        let group = *self.lock_group();
        let attempt = |process_group| {
            spawn(
                cmd,
                &SpawnTarget {
                    cgroup: Some(self.cgroup.target()),
                    process_group,
                },
            )
        };
        let (spawned, leads) = match group {
            None => (attempt(ProcessGroup::New)?, true),
            Some(pgid) => match attempt(ProcessGroup::Join(pgid)) {
                // Every member of the group has exited: this child leads a new one.
                Err(Error::Os { action, .. }) if action == JOIN_GROUP => {
                    (attempt(ProcessGroup::New)?, true)
                }
                other => (other?, false),
            },
        };
        if leads {
            *self.lock_group() = Some(spawned.process.pid() as i32);
        }
        Ok(spawned)
    }

    fn lock_group(&self) -> std::sync::MutexGuard<'_, Option<i32>> {
        self.process_group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kills the cgroup with one write, and, as a second net, members of the herd's process
    /// group that moved themselves out of the cgroup.
    pub(crate) fn kill(&self) -> io::Result<()> {
        let strays = self.group_strays();
        let killed = self.cgroup.kill();
        for (_, pidfd) in strays {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        }
        killed
    }

    /// Sends `signal` to every member, and to the strays of the herd's process group.
    pub(crate) fn signal_members(&self, signal: Signal) -> io::Result<Vec<u32>> {
        let strays = self.group_strays();
        let mut signalled = self.cgroup.signal_members(signal)?;
        for (pid, pidfd) in strays {
            if pidfd_send_signal(&pidfd, signal).is_ok() {
                signalled.push(pid);
            }
        }
        Ok(signalled)
    }

    /// Kills what is left of the process group outside the cgroup.
    pub(crate) fn kill_strays(&self) {
        for (_, pidfd) in self.group_strays() {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        }
    }

    /// Processes in the herd's process group but outside its cgroup, with a pidfd for each.
    ///
    /// A group id is reused only once its group is empty, so the group is ours while one of
    /// the cgroup's members is in it; the candidates are taken only then, each through a pidfd
    /// whose process is checked again after it was opened.
    fn group_strays(&self) -> Vec<(u32, OwnedFd)> {
        let Some(pgid) = *self.lock_group() else {
            return Vec::new();
        };
        let members = self.cgroup.members().unwrap_or_default();
        if !members
            .iter()
            .any(|&pid| process_group_of(pid) == Some(pgid))
        {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| !members.contains(pid) && process_group_of(*pid) == Some(pgid))
            .filter_map(|pid| {
                let pidfd = open_pidfd(pid)?;
                (process_group_of(pid) == Some(pgid)).then_some((pid, pidfd))
            })
            .collect()
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        Ok(!self.cgroup.populated()?)
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        self.cgroup.wait_for("populated", false).await
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        self.cgroup.members()
    }

    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        self.cgroup.set_frozen(frozen)?;
        self.cgroup.wait_for("frozen", frozen).await
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        self.cgroup.set_frozen(false)
    }

    /// Kills everything at once; the cgroup is removed in the background once it is empty.
    pub(crate) fn dispose(self) {
        if let Err(err) = self.kill() {
            tracing::error!(
                path = %self.cgroup.path().display(), %err,
                "sheepdog: cannot kill a dropped herd",
            );
        }
        reaper::adopt_cgroup(self.cgroup, self.guard);
    }
}

/// The process group of `pid`, from `/proc/PID/stat` (field 5, after the parenthesised name).
fn process_group_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Registers the cgroup with the owner-death sentinel.
fn guard(cgroup: &Cgroup, parent: &Path) -> Option<u64> {
    let kill = cgroup.kill_fd()?;
    let parent = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let name = cgroup.path().file_name()?;
    sentinel::register(Guarded {
        kill,
        events: cgroup.events_fd(),
        parent: parent.as_fd(),
        name: name.as_bytes(),
    })
}

/// The container of one herd: the strongest mechanism available, or the one asked for.
#[derive(Debug)]
pub(crate) enum Container {
    Cgroup(CgroupHerd),
    Group(Group),
}

impl Container {
    /// A new cgroup below `parent`, or below this process's own cgroup; `Err` says why not.
    pub(crate) fn cgroup(parent: Option<&Path>) -> Result<Container, CgroupError> {
        CgroupHerd::create(parent).map(Container::Cgroup)
    }

    /// A new process group, led by an anchor.
    pub(crate) fn group() -> io::Result<Container> {
        Group::create().map(Container::Group)
    }

    pub(crate) fn cgroup_path(&self) -> Option<&Path> {
        match self {
            Container::Cgroup(herd) => Some(herd.cgroup_path()),
            Container::Group(_) => None,
        }
    }

    pub(crate) fn process_group(&self) -> Option<i32> {
        match self {
            Container::Cgroup(herd) => *herd.lock_group(),
            Container::Group(group) => Some(group.pgid()),
        }
    }

    pub(crate) fn guarded(&self) -> bool {
        match self {
            Container::Cgroup(herd) => herd.guarded(),
            Container::Group(group) => group.guarded(),
        }
    }

    pub(crate) fn spawn(&self, cmd: &Command) -> Result<Spawned, Error> {
        match self {
            Container::Cgroup(herd) => herd.spawn(cmd),
            Container::Group(group) => spawn(cmd, &group.target()),
        }
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.kill(),
            Container::Group(group) => group.signal_group(Signal::KILL),
        }
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        match self {
            Container::Cgroup(herd) => herd.is_empty(),
            Container::Group(group) => Ok(group.members()?.is_empty()),
        }
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.wait_empty().await,
            Container::Group(group) => group.wait_empty().await,
        }
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.members(),
            Container::Group(group) => group.members(),
        }
    }

    pub(crate) fn signal_members(&self, signal: Signal) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.signal_members(signal),
            Container::Group(group) => group.signal_members(signal),
        }
    }

    pub(crate) fn kill_strays(&self) {
        if let Container::Cgroup(herd) = self {
            herd.kill_strays();
        }
    }

    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.set_frozen(frozen).await,
            Container::Group(group) => group.set_frozen(frozen).await,
        }
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.thaw_now(),
            Container::Group(group) => group.signal_group(Signal::CONT),
        }
    }

    /// Kills everything at once; the rest of the clean-up happens in the background.
    pub(crate) fn dispose(self) {
        match self {
            Container::Cgroup(herd) => herd.dispose(),
            Container::Group(group) => group.dispose(),
        }
    }
}
