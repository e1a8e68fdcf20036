//! Finishing in the background what dropped handles leave behind: reaping children that were
//! not waited for, so none stays a zombie, removing herd cgroups once they are empty, and
//! making the next herd cgroups ahead.
//!
//! One thread per process, started on first need, sleeps in poll(2) on what it adopted (a pidfd
//! turns readable when its process exits; `cgroup.events` raises a priority event when it
//! changes) and on an eventfd that announces new adoptions. It does not depend on a tokio
//! runtime, so what is dropped during runtime shutdown (or outside any runtime) is finished too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

use super::cgroup::Cgroup;
use super::process::{waitid, Pidfd, Target};

/// Something the reaper finishes.
enum Adopted {
    /// A child to reap, by its pidfd (which its herd may share, see `container.rs`).
    Child(Arc<Pidfd>),
    /// The sentinel, reaped should it ever exit before this process: not work that ends.
    Sentinel(OwnedFd),
    /// A killed herd's cgroup, to remove once empty.
    Cgroup(Arc<Cgroup>),
}

impl Adopted {
    /// Whether it counts as background work that ends (see [`outstanding`]).
    fn is_work(&self) -> bool {
        !matches!(self, Adopted::Sentinel(_))
    }

    fn done(&self) {
        if self.is_work() {
            OUTSTANDING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Adopted::Child(fd) => fd.as_fd(),
            Adopted::Sentinel(fd) => fd.as_fd(),
            Adopted::Cgroup(cgroup) => cgroup.events_fd(),
        }
    }

    fn flags(&self) -> PollFlags {
        match self {
            Adopted::Child(_) | Adopted::Sentinel(_) => PollFlags::IN,
            Adopted::Cgroup(..) => PollFlags::PRI,
        }
    }

    /// Finishes if it can; returns whether it must still be watched.
    fn pending(&self) -> bool {
        match self {
            // Reaped, or gone for any other reason: done.
            Adopted::Child(fd) => still_running(fd),
            Adopted::Sentinel(fd) => still_running(fd),
            Adopted::Cgroup(cgroup) => match cgroup.populated() {
                Ok(true) => true,
                Ok(false) => {
                    // On failure it stays in this process's home, which the sentinel removes
                    // when this process exits.
                    if let Err(err) = cgroup.remove() {
                        tracing::error!(
                            path = %cgroup.path().display(), %err,
                            "sheepdog: cannot remove a herd's cgroup",
                        );
                    }
                    false
                }
                Err(err) => {
                    tracing::error!(
                        path = %cgroup.path().display(), %err,
                        "sheepdog: cannot read a herd's cgroup.events",
                    );
                    false
                }
            },
        }
    }
}

/// Reaps the child behind `pidfd` if it has exited; whether it is still running.
fn still_running(pidfd: &impl AsRawFd) -> bool {
    matches!(
        waitid(Target::Pidfd(pidfd.as_raw_fd()), libc::WNOHANG),
        Ok(None)
    )
}

struct Reaper {
    adopted: Mutex<Vec<Adopted>>,
    /// Work that need not delay the caller (making cgroups ahead of use).
    tasks: Mutex<Vec<Task>>,
    wake: OwnedFd,
}

pub(crate) type Task = Box<dyn FnOnce() + Send>;

static REAPER: OnceLock<Option<Arc<Reaper>>> = OnceLock::new();

/// Adoptions and tasks not finished yet (for tests that wait for the background to settle).
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);

/// How much background work is still to be done: adopted children and cgroups not yet finished,
/// tasks not yet run.
pub(crate) fn outstanding() -> usize {
    OUTSTANDING.load(Ordering::SeqCst)
}

/// Reaps the process behind `pidfd` once it exits.
pub(crate) fn adopt_pidfd(pidfd: Arc<Pidfd>) {
    adopt(Adopted::Child(pidfd));
}

/// Reaps the sentinel if it ever exits before this process.
pub(crate) fn adopt_sentinel(pidfd: OwnedFd) {
    adopt(Adopted::Sentinel(pidfd));
}

/// Removes `cgroup` (already killed) once it is empty, and runs `then`: one wake-up for both.
pub(crate) fn adopt_cgroup(cgroup: Arc<Cgroup>, then: Option<Task>) {
    if let (Some(task), Some(reaper)) = (then, reaper()) {
        reaper.queue(task);
    }
    adopt(Adopted::Cgroup(cgroup));
}

/// The reaper thread's shared state, started on first use; `None` if the thread cannot start.
fn reaper() -> Option<&'static Arc<Reaper>> {
    REAPER.get_or_init(start).as_ref()
}

/// Hands `what` to the thread and wakes it.
fn adopt(what: Adopted) {
    let Some(reaper) = reaper() else {
        tracing::error!("sheepdog: no reaper thread; a dropped child or cgroup is left behind");
        return;
    };
    if what.is_work() {
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
    }
    crate::lock(&reaper.adopted).push(what);
    reaper.wake();
}

/// Runs `task` on the reaper thread, off the caller's path; returns `false` (and drops it)
/// when there is no reaper thread.
pub(crate) fn run_later(task: impl FnOnce() + Send + 'static) -> bool {
    let Some(reaper) = reaper() else {
        return false;
    };
    reaper.queue(Box::new(task));
    reaper.wake();
    true
}

impl Reaper {
    /// Queues `task` for the thread's next wake-up.
    fn queue(&self, task: Task) {
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
        crate::lock(&self.tasks).push(task);
    }

    fn wake(&self) {
        // Cannot fail short of an overflowing counter, which the thread's reads prevent.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// Puts this thread in `SCHED_BATCH`: the same share of CPU as before, but its wake-ups do not
/// preempt the thread that runs (the scheduler leaves that to its tick). The reaper is woken
/// whenever a handle is dropped; at normal policy it would take the dropping thread's CPU at
/// once, and the work done after a herd's drop (removing its cgroup, making the next one) would
/// land on the caller's path after all. A failure changes nothing.
fn yield_on_wake() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) for this thread (0), reading one valid `sched_param`.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// Children without a pidfd, to reap once they exit: all on one thread (see [`adopt_pid`]).
struct PidReaper {
    pids: Mutex<Vec<i32>>,
    arrived: Condvar,
}

/// The longest the pid reaper sleeps between two looks while it has children to reap.
const PID_POLL_MAX: Duration = Duration::from_millis(500);

/// Reaps process `pid` (a child without a pidfd) once it exits.
///
/// Without a pidfd there is no descriptor that turns readable at the exit, and a blocking
/// `waitid` waits for one pid only; so one thread for all of them (however many children are
/// dropped) looks at each with `WNOHANG`, sooner after each new arrival and then less often, up
/// to [`PID_POLL_MAX`]. Only kernels before 5.3, or sandboxes that refuse pidfds, get here.
pub(crate) fn adopt_pid(pid: i32) {
    static PID_REAPER: OnceLock<Option<Arc<PidReaper>>> = OnceLock::new();
    let reaper = PID_REAPER.get_or_init(|| {
        let reaper = Arc::new(PidReaper {
            pids: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
        });
        let for_thread = Arc::clone(&reaper);
        match std::thread::Builder::new()
            .name("sheepdog-reap".into())
            .spawn(move || reap_pids(&for_thread))
        {
            Ok(_) => Some(reaper),
            Err(err) => {
                tracing::error!(%err, "sheepdog: cannot start a thread to reap dropped children");
                None
            }
        }
    });
    let Some(reaper) = reaper else {
        return;
    };
    OUTSTANDING.fetch_add(1, Ordering::SeqCst);
    crate::lock(&reaper.pids).push(pid);
    reaper.arrived.notify_one();
}

fn reap_pids(reaper: &PidReaper) {
    let mut pause = Duration::from_millis(1);
    let mut pids = crate::lock(&reaper.pids);
    loop {
        pids.retain(|&pid| {
            // Exited and reaped, or not ours to reap (already reaped): done either way.
            let pending = matches!(waitid(Target::Pid(pid), libc::WNOHANG), Ok(None));
            if !pending {
                OUTSTANDING.fetch_sub(1, Ordering::SeqCst);
            }
            pending
        });
        let before = pids.len();
        pids = if pids.is_empty() {
            reaper
                .arrived
                .wait(pids)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        } else {
            reaper
                .arrived
                .wait_timeout(pids, pause)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0)
        };
        pause = if pids.len() > before {
            Duration::from_millis(1)
        } else {
            (pause * 2).min(PID_POLL_MAX)
        };
    }
}

fn start() -> Option<Arc<Reaper>> {
    let wake = match eventfd(0, EventfdFlags::CLOEXEC) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(%err, "sheepdog: cannot create the reaper's eventfd");
            return None;
        }
    };
    let reaper = Arc::new(Reaper {
        adopted: Mutex::new(Vec::new()),
        tasks: Mutex::new(Vec::new()),
        wake,
    });
    let for_thread = Arc::clone(&reaper);
    let spawned = std::thread::Builder::new()
        .name("sheepdog-reaper".into())
        .spawn(move || run(&for_thread));
    if let Err(err) = spawned {
        tracing::error!(%err, "sheepdog: cannot start the reaper thread");
        return None;
    }
    Some(reaper)
}

fn run(reaper: &Reaper) {
    yield_on_wake();
    let mut watched: Vec<Adopted> = Vec::new();
    loop {
        let new = std::mem::take(&mut *crate::lock(&reaper.adopted));
        for adopted in new {
            if adopted.pending() {
                watched.push(adopted);
            } else {
                adopted.done();
            }
        }
        let tasks = std::mem::take(&mut *crate::lock(&reaper.tasks));
        for task in tasks {
            task();
            OUTSTANDING.fetch_sub(1, Ordering::SeqCst);
        }

        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(&reaper.wake, PollFlags::IN));
        fds.extend(
            watched
                .iter()
                .map(|a| PollFd::from_borrowed_fd(a.fd(), a.flags())),
        );
        if poll(&mut fds, None).is_err() {
            continue; // EINTR; nothing else is expected with valid descriptors
        }
        let woken = !fds[0].revents().is_empty();
        let ready: Vec<bool> = fds[1..].iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        if woken {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&reaper.wake, &mut buf);
        }
        let mut ready = ready.into_iter();
        watched.retain(|a| {
            let keep = !ready.next().unwrap_or(false) || a.pending();
            if !keep {
                a.done();
            }
            keep
        });
    }
}
