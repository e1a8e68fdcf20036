//! Reaping children whose handles were dropped before they exited, so none stays a zombie.
//!
//! One thread per process, started on first need, sleeps in poll(2) on the adopted pidfds and an
//! eventfd that announces new ones. It does not depend on a tokio runtime, so children dropped
//! during runtime shutdown (or outside any runtime) are reaped too.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};

use super::process::{waitid, Target};

struct Reaper {
    adopted: Mutex<Vec<OwnedFd>>,
    wake: OwnedFd,
}

static REAPER: OnceLock<Option<Arc<Reaper>>> = OnceLock::new();

/// Reaps the process behind `pidfd` once it exits.
pub(crate) fn adopt_pidfd(pidfd: OwnedFd) {
    let Some(reaper) = REAPER.get_or_init(start).as_ref() else {
        tracing::error!("sheepdog: no reaper thread; a dropped child may stay a zombie");
        return;
    };
    reaper
        .adopted
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(pidfd);
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
    let mut watched: Vec<OwnedFd> = Vec::new();
    loop {
        watched.extend(
            reaper
                .adopted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .drain(..),
        );
        // A pidfd turns readable when its process exits, so only those are looked at.
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(&reaper.wake, PollFlags::IN));
        fds.extend(watched.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
        if poll(&mut fds, None).is_err() {
            continue; // EINTR; nothing else is expected with valid descriptors
        }
        let woken = !fds[0].revents().is_empty();
        let exited: Vec<bool> = fds[1..].iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        if woken {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&reaper.wake, &mut buf);
        }
        let mut exited = exited.into_iter();
        // Keep a pidfd until its process is reaped (or is gone for any other reason).
        watched.retain(|fd| {
            !exited.next().unwrap_or(false)
                || matches!(
                    waitid(Target::Pidfd(fd.as_raw_fd()), libc::WNOHANG),
                    Ok(None)
                )
        });
    }
}
