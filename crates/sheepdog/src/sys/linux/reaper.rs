//! Finishing in the background what dropped handles leave behind: reaping children that were
//! not waited for, so none stays a zombie, and removing herd cgroups once they are empty.
//!
//! One thread per process, started on first need, sleeps in poll(2) on what it adopted (a pidfd
//! turns readable when its process exits; `cgroup.events` raises a priority event when it
//! changes) and on an eventfd that announces new adoptions. It does not depend on a tokio
//! runtime, so what is dropped during runtime shutdown (or outside any runtime) is finished too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

use super::cgroup::Cgroup;
use super::process::{waitid, Target};

/// Something the reaper finishes.
enum Adopted {
    /// A child to reap, by its pidfd.
    Child(OwnedFd),
    /// A killed herd's cgroup, to remove once empty, and its owner-death registration.
    Cgroup(Box<Cgroup>, Option<u64>),
}

impl Adopted {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Adopted::Child(fd) => fd.as_fd(),
            Adopted::Cgroup(cgroup, _) => cgroup.events_fd(),
        }
    }

    fn flags(&self) -> PollFlags {
        match self {
            Adopted::Child(_) => PollFlags::IN,
            Adopted::Cgroup(..) => PollFlags::PRI,
        }
    }

    /// Finishes if it can; returns whether it must still be watched.
    fn pending(&self) -> bool {
        match self {
            // Reaped, or gone for any other reason: done.
            Adopted::Child(fd) => {
                matches!(
                    waitid(Target::Pidfd(fd.as_raw_fd()), libc::WNOHANG),
                    Ok(None)
                )
            }
            Adopted::Cgroup(cgroup, guard) => match cgroup.populated() {
                Ok(true) => true,
                Ok(false) => {
                    match cgroup.remove() {
                        Ok(()) => {
                            if let Some(id) = guard {
                                super::sentinel::unregister(*id);
                            }
                        }
                        // Left registered: the sentinel removes it when this process exits.
                        Err(err) => tracing::error!(
                            path = %cgroup.path().display(), %err,
                            "sheepdog: cannot remove a herd's cgroup",
                        ),
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

struct Reaper {
    adopted: Mutex<Vec<Adopted>>,
    wake: OwnedFd,
}

static REAPER: OnceLock<Option<Arc<Reaper>>> = OnceLock::new();

/// Reaps the process behind `pidfd` once it exits.
pub(crate) fn adopt_pidfd(pidfd: OwnedFd) {
    adopt(Adopted::Child(pidfd));
}

/// Removes `cgroup` (already killed) once it is empty, then releases its sentinel `guard`.
pub(crate) fn adopt_cgroup(cgroup: Cgroup, guard: Option<u64>) {
    adopt(Adopted::Cgroup(Box::new(cgroup), guard));
}

fn adopt(what: Adopted) {
    let Some(reaper) = REAPER.get_or_init(start).as_ref() else {
        tracing::error!("sheepdog: no reaper thread; a dropped child or cgroup is left behind");
        return;
    };
    reaper
        .adopted
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(what);
    // Cannot fail short of an overflowing counter, which the thread's reads prevent.
    let _ = rustix::io::write(&reaper.wake, &1u64.to_ne_bytes());
}

/// Reaps process `pid` (a child without a pidfd) once it exits, on a thread of its own.
pub(crate) fn adopt_pid(pid: i32) {
    let spawned = std::thread::Builder::new()
        .name("sheepdog-reap".into())
        .spawn(move || {
            let _ = waitid(Target::Pid(pid), 0);
        });
    if let Err(err) = spawned {
        tracing::error!(pid, %err, "sheepdog: cannot start a thread to reap a dropped child");
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
    let mut watched: Vec<Adopted> = Vec::new();
    loop {
        let new: Vec<Adopted> = reaper
            .adopted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        watched.extend(new.into_iter().filter(Adopted::pending));

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
        watched.retain(|a| !ready.next().unwrap_or(false) || a.pending());
    }
}
