//! The fallback container where no cgroup can be had: one process group per herd, with this
//! process as the adopter of the herd's orphans.
//!
//! The group is led by an *anchor*: a child that takes a new process group and exits at once.
//! Its zombie is kept unreaped until the herd ends, so the group id cannot be reused by anybody
//! else while the herd lives. The owner-death sentinel makes and holds the anchor (so it can
//! kill the group when this process dies); without a sentinel this process holds it. A pidfd
//! of the anchor is kept: `kill(-pgid)` is sent only while it shows the anchor unreaped;
//! otherwise every member is signalled through a pidfd of its own.
//!
//! A process group alone does not hold a process that starts a new session or group. So the
//! herd knows its members another way: its leaders (the children it started), everything below
//! them (`/proc/PID/task/*/children`), and the orphans this process adopted
//! (`PR_SET_CHILD_SUBREAPER`, see `orphans.rs`) that carry the herd's mark in their
//! environment, with everything below those. Ending the herd signals all of them and looks
//! again until a look finds nothing alive: a fork in flight during one round is caught by the
//! next. Adopted orphans are this process's children; each is reaped by its pidfd, and only
//! when it is the herd's (marked, seen in an earlier look, or in the herd's group).
//!
//! A look reads /proc and blocks: async paths run it on a blocking thread, and the clean-up
//! after a kill or a drop runs on the reaper thread.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::orphans::{self, HERD_VAR};
use super::process::{deliver, open_pidfd, unreaped, waitid, Process, Target};
use super::raw::syscall;
use super::reaper;
use super::sentinel;
use super::spawn::{spawn, spawn_anchor, ProcessGroup, SpawnTarget};
use crate::signal::Signal;
use crate::sys::{SpawnError, SpawnRequest, Spawned};

/// How long the clean-up after a kill keeps looking for members before it gives up (a member
/// it cannot signal, another user's, would otherwise keep it going).
const SWEEP_LIMIT: Duration = Duration::from_secs(10);

/// How long `set_frozen` waits for every member to reach the state.
const FREEZE_LIMIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Group {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    anchor: Anchor,
    /// The anchor's pidfd: while it shows the anchor unreaped, the group id is ours.
    anchor_pidfd: Option<OwnedFd>,
    pgid: i32,
    /// `SHEEPDOG_HERD=<owner pid>.<n>`: the mark this herd puts in its children's environment.
    mark: String,
    /// Whether this process adopts orphans (it is a child subreaper).
    adopting: bool,
    known: Mutex<Known>,
}

/// Who holds the exited, unreaped leader that holds the group id.
#[derive(Debug)]
enum Anchor {
    /// The owner-death sentinel (registration id): the group is killed when this process dies.
    Sentinel(u64),
    /// This process, when no sentinel could be had.
    Own(Process),
}

#[derive(Debug, Default)]
struct Known {
    /// The children this herd started: reaped by their `Child`, never here.
    leaders: Vec<Arc<Member>>,
    /// The live members the last look found, for signals that cannot wait for a look.
    members: Vec<Arc<Member>>,
    /// Every process (pid, start) the last look found, dead or alive: an adopted zombie among
    /// them is the herd's to reap.
    ids: HashSet<(u32, u64)>,
}

/// A process of the herd, addressed by a pidfd that was checked after it was opened.
#[derive(Debug)]
struct Member {
    pid: u32,
    pgid: i32,
    pidfd: OwnedFd,
}

impl Group {
    /// A new group; `adopt` makes this process the adopter of orphans (process-wide, for good).
    pub(crate) fn create(adopt: bool) -> io::Result<Group> {
        static HERDS: AtomicU64 = AtomicU64::new(0);
        let (anchor, pgid, anchor_pidfd) = match sentinel::anchor() {
            Some((id, pgid)) => {
                // The sentinel holds the anchor unreaped, so the pid is still the anchor's when
                // it leads a group of its own id.
                let pidfd = open_pidfd(pgid as u32)
                    .filter(|_| orphans::stat(pgid as u32).is_some_and(|s| s.pgid == pgid));
                (Anchor::Sentinel(id), pgid, pidfd)
            }
            None => {
                let anchor = spawn_anchor()?;
                let pgid = anchor.pid() as i32;
                // Our unreaped child: the pid cannot have been reused.
                let pidfd = open_pidfd(pgid as u32);
                (Anchor::Own(anchor), pgid, pidfd)
            }
        };
        let adopting = adopt && orphans::become_subreaper();
        let mark = format!(
            "{HERD_VAR}={}.{}",
            std::process::id(),
            HERDS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Group {
            inner: Arc::new(Inner {
                anchor,
                anchor_pidfd,
                pgid,
                mark,
                adopting,
                known: Mutex::new(Known::default()),
            }),
        })
    }

    /// Whether the group dies with this process even when it is killed.
    pub(crate) fn guarded(&self) -> bool {
        matches!(self.inner.anchor, Anchor::Sentinel(_))
    }

    /// Whether this process adopts the herd's orphans.
    pub(crate) fn adopting(&self) -> bool {
        self.inner.adopting
    }

    pub(crate) fn pgid(&self) -> i32 {
        self.inner.pgid
    }

    /// Starts `req` in the group, marked as this herd's, and keeps a pidfd of it.
    pub(crate) fn spawn(&self, req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
        let mut marked = req.clone();
        let (name, value) = self.inner.mark.split_once('=').unwrap_or((HERD_VAR, ""));
        marked.env.to_mut().insert(name.into(), Some(value.into()));
        let target = SpawnTarget {
            cgroup: None,
            process_group: ProcessGroup::Join(self.inner.pgid),
        };
        let spawned = spawn(&marked, &target)?;
        let pid = spawned.process.pid();
        // Our unreaped child: the pid is the child's.
        if let Some(pidfd) = open_pidfd(pid) {
            let mut known = self.inner.lock();
            if known.leaders.len() >= 64 && known.leaders.len().is_power_of_two() {
                known.leaders.retain(|leader| unreaped(&leader.pidfd));
            }
            known.leaders.push(Arc::new(Member {
                pid,
                pgid: self.inner.pgid,
                pidfd,
            }));
        }
        Ok(spawned)
    }

    /// Live members, from a look at /proc (blocking).
    pub(crate) fn members(&self) -> Vec<u32> {
        self.inner.look().iter().map(|m| m.pid).collect()
    }

    /// [`members`](Self::members) on a blocking thread.
    pub(crate) async fn members_async(&self) -> io::Result<Vec<u32>> {
        let inner = Arc::clone(&self.inner);
        let members = blocking(move || inner.look()).await?;
        Ok(members.iter().map(|m| m.pid).collect())
    }

    /// Sends `signal` (then SIGCONT, with `and_continue`) to every live member; returns their
    /// pids. Looks at /proc (blocking).
    pub(crate) fn signal_members(&self, signal: Signal, and_continue: bool) -> Vec<u32> {
        self.inner.signal_all(signal, and_continue)
    }

    /// [`signal_members`](Self::signal_members) on a blocking thread.
    pub(crate) async fn signal_members_async(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.signal_all(signal, and_continue)).await
    }

    /// Kills every member at once, as far as is known without a look (the group, the leaders,
    /// the members of the last look); the reaper thread then looks until nothing is left.
    pub(crate) fn kill(&self) {
        self.inner.signal_known(Signal::KILL);
        let inner = Arc::clone(&self.inner);
        if !reaper::run_later(move || inner.sweep()) {
            self.inner.sweep();
        }
    }

    /// Continues every member known without a look (see [`kill`](Self::kill)).
    pub(crate) fn thaw_now(&self) {
        self.inner.signal_known(Signal::CONT);
    }

    /// Returns when no live member is left: looks (on a blocking thread), waits for each
    /// member's pidfd to turn readable (its exit), and looks again for members forked or
    /// adopted meanwhile. Cancelling it loses nothing.
    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        loop {
            let inner = Arc::clone(&self.inner);
            let members = blocking(move || inner.look()).await?;
            if members.is_empty() {
                return Ok(());
            }
            for member in members {
                let pidfd = member.pidfd.try_clone()?;
                // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
                let watch = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
                    .map_err(|err| err.into_parts().1)?;
                let _ = watch.readable().await?;
            }
        }
    }

    /// Stops (`frozen`) or continues every member, and returns once all are in that state.
    /// The signals and the check of the states run on a blocking thread, bounded by
    /// [`FREEZE_LIMIT`].
    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.set_frozen(frozen)).await?
    }

    /// Kills the group; the reaper thread looks until nothing is left, then lets the anchor
    /// go (the id is free once the group is gone).
    pub(crate) fn dispose(self) {
        self.kill();
    }

    /// Lets the group go without signalling it (`Command::kill_on_drop(false)`): the anchor is
    /// released with the last hold on the herd. The id stays in use while members are left, so
    /// it is not reused under them, but nothing kills them any more, not even the owner's death.
    pub(crate) fn release(self) {}

    /// Reaps the anchor (when this process holds it) while the herd lives, as if the id had
    /// been lost; for tests of what is signalled then.
    #[cfg(test)]
    fn lose_anchor(&self) {
        if let (Anchor::Own(_), Some(pidfd)) = (&self.inner.anchor, &self.inner.anchor_pidfd) {
            let _ = waitid(Target::Pidfd(pidfd.as_raw_fd()), 0);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        crate::lock(&self.known)
    }

    /// Whether `kill(-pgid)` reaches only the herd: the anchor that holds the id is unreaped.
    fn anchor_holds(&self) -> bool {
        match (&self.anchor_pidfd, &self.anchor) {
            (Some(pidfd), _) => unreaped(pidfd),
            // Without pidfds (Linux < 5.3): our own anchor, which nothing here reaps.
            (None, Anchor::Own(anchor)) => anchor.status().is_none(),
            (None, Anchor::Sentinel(_)) => false,
        }
    }

    /// `kill(-pgid, signal)`, only while the anchor holds the id; returns whether it was sent.
    fn signal_group(&self, signal: Signal) -> bool {
        if !self.anchor_holds() {
            return false;
        }
        // SAFETY: kill(2) with plain integers; the anchor holds the group id (checked above).
        let ret = unsafe {
            syscall(
                libc::SYS_kill,
                &[(-self.pgid) as isize as usize, signal.as_raw() as usize],
            )
        };
        // ESRCH: only the anchor's zombie is left, nothing to signal.
        ret == 0 || ret == -(libc::ESRCH as isize)
    }

    /// Signals the group and, through their pidfds, the members outside it (all of them when
    /// the group could not be signalled, or when a second copy changes nothing: SIGKILL,
    /// SIGSTOP, SIGCONT; a member may have left the group since the look); returns the pids
    /// that got it.
    fn deliver_to(&self, members: &[Arc<Member>], signal: Signal, and_continue: bool) -> Vec<u32> {
        let grouped = self.signal_group(signal);
        if grouped && and_continue {
            self.signal_group(Signal::CONT);
        }
        let once = grouped && !is_idempotent(signal);
        members
            .iter()
            .filter(|m| {
                (once && m.pgid == self.pgid) || deliver(&m.pidfd, signal, and_continue).is_ok()
            })
            .map(|m| m.pid)
            .collect()
    }

    /// Looks, then signals every member found.
    fn signal_all(&self, signal: Signal, and_continue: bool) -> Vec<u32> {
        let members = self.look();
        self.deliver_to(&members, signal, and_continue)
    }

    /// Signals what is known without a look: the group, the leaders and the last look's members.
    fn signal_known(&self, signal: Signal) {
        let known: Vec<Arc<Member>> = {
            let known = self.lock();
            known
                .leaders
                .iter()
                .chain(&known.members)
                .cloned()
                .collect()
        };
        let once = self.signal_group(signal) && !is_idempotent(signal);
        for member in known.iter().filter(|m| !once || m.pgid != self.pgid) {
            let _ = deliver(&member.pidfd, signal, false);
        }
    }

    /// Every live member now: the walk from the live leaders and the herd's adopted orphans
    /// (and, when this process adopts nothing, from every process of the group or with the
    /// herd's mark). Reaps the herd's adopted orphans that have exited. Blocks.
    fn look(&self) -> Vec<Arc<Member>> {
        let (leaders, before) = {
            let mut known = self.lock();
            known.leaders.retain(|leader| unreaped(&leader.pidfd));
            let leaders: HashSet<u32> = known.leaders.iter().map(|l| l.pid).collect();
            (leaders, known.ids.clone())
        };
        let mut walk = Walk::default();
        let mut roots: Vec<u32> = leaders.iter().copied().collect();
        // A process that exits while the walk is below its parent hands its children to this
        // process before it shows as exited: so the adopted are looked at after each walk,
        // until a look at them finds nothing new.
        for round in 0..LOOK_ROUNDS {
            walk.below(roots);
            roots = self.adopted(&before, &leaders, &walk.visited);
            if round == 0 && !self.adopting {
                roots.extend(self.scanned(&walk.visited));
            }
            if roots.is_empty() {
                break;
            }
        }
        let Walk { ids, found, .. } = walk;
        let members: Vec<Arc<Member>> = found
            .into_iter()
            .filter_map(|(pid, stat)| {
                let pidfd = open_pidfd(pid)?;
                // Still the process the walk found, and alive, now that the pidfd holds it.
                let now = orphans::stat(pid)
                    .filter(|s| s.start_ticks == stat.start_ticks && !s.is_dead())?;
                Some(Arc::new(Member {
                    pid,
                    pgid: now.pgid,
                    pidfd,
                }))
            })
            .collect();
        let mut known = self.lock();
        known.ids = ids;
        known.members = members.clone();
        members
    }

    /// The group id, while the anchor holds it (then it is the herd's only).
    fn group(&self) -> Option<i32> {
        self.anchor_holds().then_some(self.pgid)
    }

    /// This process's children that are the herd's adopted orphans and not `visited` yet: in
    /// the herd's group, marked, or seen (pid and start time) by the look `before`. Reaps those
    /// that exited.
    fn adopted(
        &self,
        before: &HashSet<(u32, u64)>,
        leaders: &HashSet<u32>,
        visited: &HashSet<u32>,
    ) -> Vec<u32> {
        let group = self.group();
        let mut roots = Vec::new();
        for pid in orphans::children(std::process::id()) {
            if leaders.contains(&pid) || visited.contains(&pid) || pid as i32 == self.pgid {
                continue;
            }
            let Some(stat) = orphans::stat(pid) else {
                continue;
            };
            let seen = before.contains(&(pid, stat.start_ticks));
            if stat.is_dead() {
                // A zombie shows no environment: the herd's if seen before or in its group.
                if seen || Some(stat.pgid) == group {
                    reap_orphan(pid, stat.start_ticks);
                }
            } else if seen
                || Some(stat.pgid) == group
                || orphans::has_var(pid, self.mark.as_bytes(), true)
            {
                roots.push(pid);
            }
        }
        roots
    }

    /// Without adoption, orphans go to init: every live process of the group, or with the
    /// herd's mark, not `visited` yet (a scan of all of /proc).
    fn scanned(&self, visited: &HashSet<u32>) -> Vec<u32> {
        let group = self.group();
        let in_group = |pid: u32| {
            pid as i32 != self.pgid
                && orphans::stat(pid).is_some_and(|s| !s.is_dead() && Some(s.pgid) == group)
        };
        orphans::all_pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| !visited.contains(pid))
            .filter(|&pid| in_group(pid) || orphans::has_var(pid, self.mark.as_bytes(), false))
            .collect()
    }

    /// Kills every member, and looks again until nothing is left alive and every adopted orphan
    /// of the herd is reaped (bounded by [`SWEEP_LIMIT`]). Blocks.
    fn sweep(&self) {
        let deadline = Instant::now() + SWEEP_LIMIT;
        loop {
            let members = self.look();
            if members.is_empty() {
                // One more look reaps the orphans that died in the last round.
                self.look();
                return;
            }
            self.deliver_to(&members, Signal::KILL, false);
            if !wait_exits(&members, deadline) {
                tracing::error!(
                    pgid = self.pgid,
                    left = ?members.iter().map(|m| m.pid).collect::<Vec<_>>(),
                    "sheepdog: members of a process-group herd did not die when killed",
                );
                return;
            }
        }
    }

    fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let signal = if frozen { Signal::STOP } else { Signal::CONT };
        let deadline = Instant::now() + FREEZE_LIMIT;
        let in_state = |m: &Arc<Member>| {
            orphans::stat(m.pid).is_none_or(|s| s.is_dead() || (s.state == 'T') == frozen)
        };
        loop {
            let members = self.look();
            self.deliver_to(&members, signal, false);
            // Stopping is asynchronous; the state shows in /proc within a scheduling round.
            while !members.iter().all(in_state) {
                if Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the process-group herd did not reach the requested state within a second",
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // A member may have forked before it stopped: done when a new look finds no other.
            if self.look().iter().all(in_state) {
                return Ok(());
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Anchor::Sentinel(id) = self.anchor {
            sentinel::release_anchor(id);
        }
    }
}

/// How many times one look goes back to the adopted for orphans made during its walk.
const LOOK_ROUNDS: usize = 16;

/// The processes a look reached: live ones with what /proc said of them, and the ids (pid,
/// start time) of all, dead ones included.
#[derive(Default)]
struct Walk {
    visited: HashSet<u32>,
    ids: HashSet<(u32, u64)>,
    found: Vec<(u32, orphans::Stat)>,
}

impl Walk {
    /// Walks `roots` and everything below them (`/proc/PID/task/*/children`).
    fn below(&mut self, mut roots: Vec<u32>) {
        while let Some(pid) = roots.pop() {
            if !self.visited.insert(pid) {
                continue;
            }
            let Some(stat) = orphans::stat(pid) else {
                continue;
            };
            self.ids.insert((pid, stat.start_ticks));
            if stat.is_dead() {
                continue;
            }
            roots.extend(orphans::children(pid));
            self.found.push((pid, stat));
        }
    }
}

/// Runs `work` on tokio's blocking threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)
}

/// Whether a second copy of `signal` changes nothing (so a member may get it twice).
fn is_idempotent(signal: Signal) -> bool {
    matches!(signal, Signal::KILL | Signal::STOP | Signal::CONT)
}

/// Reaps `pid`, an exited orphan of the herd adopted by this process, by a pidfd checked to be
/// that zombie, our child.
fn reap_orphan(pid: u32, start: u64) {
    let Some(pidfd) = open_pidfd(pid) else {
        return;
    };
    let ours = orphans::stat(pid)
        .is_some_and(|s| s.start_ticks == start && s.is_dead() && s.ppid == std::process::id());
    if ours {
        let _ = waitid(Target::Pidfd(pidfd.as_raw_fd()), libc::WNOHANG);
    }
}

/// Waits until every member's pidfd turns readable (it exited), or `deadline`; returns whether
/// all exited.
fn wait_exits(members: &[Arc<Member>], deadline: Instant) -> bool {
    let mut waiting: Vec<&Arc<Member>> = members.iter().collect();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|m| PollFd::new(&m.pidfd, PollFlags::IN))
            .collect();
        let timeout = rustix::event::Timespec::try_from(left).ok();
        if poll(&mut fds, timeout.as_ref()).is_err() {
            return false;
        }
        let done: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        let mut index = 0;
        waiting.retain(|_| {
            index += 1;
            !done[index - 1]
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process started into `pgid` without the herd's mark: a stranger the herd must not hit.
    fn stranger(pgid: i32) -> Process {
        let args = ["1000".into()];
        let cmd = SpawnRequest {
            args: &args,
            ..SpawnRequest::new("sleep".as_ref())
        };
        let target = SpawnTarget {
            cgroup: None,
            process_group: ProcessGroup::Join(pgid),
        };
        spawn(&cmd, &target).expect("spawn a stranger").process
    }

    fn own_group() -> Group {
        let anchor = spawn_anchor().expect("an anchor");
        let pgid = anchor.pid() as i32;
        Group {
            inner: Arc::new(Inner {
                anchor_pidfd: open_pidfd(pgid as u32),
                anchor: Anchor::Own(anchor),
                pgid,
                mark: format!("{HERD_VAR}=test.{pgid}"),
                adopting: false,
                known: Mutex::new(Known::default()),
            }),
        }
    }

    fn ended(process: &mut Process) -> bool {
        let limit = Instant::now() + Duration::from_secs(10);
        while Instant::now() < limit {
            if process.try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// A group made the usual way (its anchor from the sentinel, where there is one) holds its
    /// id, checked through the anchor's pidfd.
    #[test]
    fn a_new_group_holds_its_id() {
        let group = Group::create(false).expect("a group");
        assert!(group.inner.anchor_pidfd.is_some(), "a pidfd of the anchor");
        assert!(group.inner.anchor_holds());
        assert!(group.members().is_empty(), "the anchor is no member");
    }

    /// With the anchor held, `kill(-pgid)` reaches the whole group, the stranger included: the
    /// check below that it does not once the anchor is lost is a real one.
    #[test]
    fn group_kill_reaches_the_group_while_the_anchor_holds() {
        let group = own_group();
        let mut stranger = stranger(group.pgid());
        group.inner.signal_known(Signal::KILL);
        assert!(ended(&mut stranger), "the group kill reached the stranger");
    }

    #[test]
    fn no_group_kill_once_the_anchor_is_lost() {
        let group = own_group();
        let mut stranger = stranger(group.pgid());
        let args = ["1000".into()];
        let sleep = SpawnRequest {
            args: &args,
            ..SpawnRequest::new("sleep".as_ref())
        };
        let mut member = group.spawn(&sleep).expect("spawn a member").process;
        group.lose_anchor();
        assert!(!group.inner.anchor_holds());
        group.kill();
        assert!(ended(&mut member), "the member was killed by its pidfd");
        assert!(
            stranger.try_wait().expect("try_wait").is_none(),
            "no kill(-pgid) without the anchor"
        );
        stranger.signal(Signal::KILL).expect("end the stranger");
        assert!(ended(&mut stranger));
    }
}
