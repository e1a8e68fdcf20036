//! The fallback container where no cgroup can be had: one process group per herd.
//!
//! The group is led by an *anchor*: a child that takes a new process group and exits at once.
//! Its zombie is kept unreaped until the herd ends, so the group id cannot be reused by anybody
//! else while the herd lives, and `kill(-pgid)` can never reach a stranger. The owner-death
//! sentinel makes and holds the anchor (so it can kill the group when this process dies);
//! without a sentinel this process holds it. A group-wide
//! SIGKILL is atomic with respect to forks inside the group (the kernel aborts a fork whose
//! parent has a group signal pending), so one `kill(-pgid, SIGKILL)` ends the whole group.
//! What leaves the group (a new session or process group) is not caught; `Containment` says so.

use std::io;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::process::{open_pidfd, proc_stat, signal_each, Process};
use super::raw::syscall;
use super::sentinel;
use super::spawn::{spawn_anchor, ProcessGroup, SpawnTarget};
use crate::signal::Signal;

#[derive(Debug)]
pub(crate) struct Group {
    anchor: Anchor,
    pgid: i32,
}

/// Who holds the exited, unreaped leader that holds the group id.
#[derive(Debug)]
enum Anchor {
    /// The owner-death sentinel (registration id): the group is killed when this process dies.
    Sentinel(u64),
    /// This process, when no sentinel could be had.
    Own(Process),
}

impl Group {
    pub(crate) fn create() -> io::Result<Group> {
        if let Some((id, pgid)) = sentinel::anchor() {
            return Ok(Group {
                anchor: Anchor::Sentinel(id),
                pgid,
            });
        }
        let anchor = spawn_anchor()?;
        let pgid = anchor.pid() as i32;
        Ok(Group {
            anchor: Anchor::Own(anchor),
            pgid,
        })
    }

    /// Whether the group dies with this process even when it is killed.
    pub(crate) fn guarded(&self) -> bool {
        matches!(self.anchor, Anchor::Sentinel(_))
    }

    pub(crate) fn pgid(&self) -> i32 {
        self.pgid
    }

    pub(crate) fn target(&self) -> SpawnTarget<'static> {
        SpawnTarget {
            cgroup: None,
            process_group: ProcessGroup::Join(self.pgid),
        }
    }

    /// Sends `signal` to the whole group at once (`kill(-pgid)`), which is safe while the
    /// anchor holds the id.
    pub(crate) fn signal_group(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: kill(2) with plain integers; the group id is ours (see the module docs).
        let ret = unsafe {
            syscall(
                libc::SYS_kill,
                &[(-self.pgid) as isize as usize, signal.as_raw() as usize],
            )
        };
        match ret {
            0 => Ok(()),
            // Only the anchor's zombie is left: nothing to signal.
            r if r == -(libc::ESRCH as isize) => Ok(()),
            r => Err(io::Error::from_raw_os_error(-r as i32)),
        }
    }

    /// Live members: every process of the group that has not exited.
    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        Ok(std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| self.is_live_member(pid))
            .collect())
    }

    /// The leader is the anchor and never a member: a vfork parent resumes when the anchor
    /// calls exit, a moment before /proc shows it as a zombie.
    fn is_live_member(&self, pid: u32) -> bool {
        pid as i32 != self.pgid
            && proc_stat(pid)
                .is_some_and(|stat| !matches!(stat.state, 'Z' | 'X') && stat.pgid == self.pgid)
    }

    /// Sends `signal` to each live member through a pidfd checked after it was opened; returns
    /// the pids signalled. `and_continue` follows it with SIGCONT through the same pidfd.
    pub(crate) fn signal_members(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        Ok(signal_each(
            self.members()?,
            |pid| open_pidfd(pid).filter(|_| self.is_live_member(pid)),
            signal,
            and_continue,
        ))
    }

    /// Returns when no live member is left: waits for each member's pidfd to turn readable
    /// (its exit), then looks again for members forked meanwhile.
    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        loop {
            let members = self.members()?;
            if members.is_empty() {
                return Ok(());
            }
            for pid in members {
                let Some(pidfd) = open_pidfd(pid) else {
                    continue;
                };
                if !self.is_live_member(pid) {
                    continue;
                }
                // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
                let watch = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
                    .map_err(|err| err.into_parts().1)?;
                let _ = watch.readable().await?;
            }
        }
    }

    /// Stops (`frozen`) or continues every member, and returns once all are in that state.
    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let signal = if frozen { Signal::STOP } else { Signal::CONT };
        self.signal_group(signal)?;
        // Stopping is asynchronous; the state shows in /proc within a scheduling round.
        for _ in 0..1000 {
            let pending = self.members()?.into_iter().any(|pid| {
                let stopped = proc_stat(pid).map_or(frozen, |stat| stat.state == 'T');
                stopped != frozen
            });
            if !pending {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the process group did not reach the requested state within a second",
        ))
    }

    /// Kills the group, then lets the anchor go (the id is free once the group is gone).
    pub(crate) fn dispose(self) {
        if let Err(err) = self.signal_group(Signal::KILL) {
            tracing::error!(pgid = self.pgid, %err, "sheepdog: cannot kill a dropped herd");
        }
        self.release();
    }

    /// Lets the group go without signalling it (`Command::kill_on_drop(false)`): the anchor
    /// is released at once. The id stays in use while members are left, so it is not reused
    /// under them, but nothing kills them any more, not even the owner's death.
    pub(crate) fn release(self) {
        match self.anchor {
            Anchor::Sentinel(id) => sentinel::release_anchor(id),
            Anchor::Own(anchor) => drop(anchor),
        }
    }
}
