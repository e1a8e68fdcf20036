//! A herd cgroup's *keeper*: an idle process put into a cgroup made ahead, so that the herd's
//! first spawn finds the cgroup already populated.
//!
//! The first task of an empty cgroup makes the kernel notify `cgroup.events`, and the kworker
//! that does it is woken on the spawning CPU inside the clone, which pushes the new child onto
//! another CPU (see docs/ARCHITECTURE.md, "the first task in an empty cgroup"). A cgroup that
//! already holds a live process has no such transition. So cgroups made ahead on the reaper
//! thread each get a keeper there, off the caller's path, and the herd that takes one spawns
//! into a populated cgroup, without a pin.
//!
//! The keeper is not a member: it leaves at the herd's first look at its population (see
//! `container.rs`), and dies with the herd's `cgroup.kill` otherwise. It is a `CLONE_VM` child
//! that runs a few instructions of its own and no Rust code: it drops its share of this
//! process's descriptor table, names itself `sheepdog-keeper`, and sleeps in `pause(2)` with
//! every signal blocked (the mask it was cloned with), so only SIGKILL (and SIGSTOP or a freeze)
//! reaches it. Sharing the address space means no page tables are copied, whatever this
//! process's size; it also keeps that address space alive while the keeper lives, which is why
//! keepers are made only in cgroups the owner-death sentinel guards.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::process::{pidfd_send_signal, waitid, Target};
use crate::signal::Signal;

/// A live keeper, by its pidfd; the reaper thread watches it from its birth (through a
/// duplicate, see `reaper::watch_keeper`). Dropped without [`retire`](Keeper::retire) or
/// [`into_pidfd`](Keeper::into_pidfd), it is killed and left to the reaper.
#[derive(Debug)]
pub(crate) struct Keeper {
    /// `None` only once handed on.
    pidfd: Option<OwnedFd>,
}

/// Whether keepers are still tried in this process (until the kernel refuses one for good).
static ENABLED: AtomicBool = AtomicBool::new(true);

impl Keeper {
    /// Starts a keeper inside the cgroup whose directory is `cgroup_dir`; `None` where this
    /// platform, kernel or sandbox has no way to (then the herd simply spawns into an empty
    /// cgroup).
    pub(crate) fn start(cgroup_dir: BorrowedFd<'_>) -> Option<Keeper> {
        if !ENABLED.load(Ordering::Relaxed) || !super::clone::clone3_in_use() {
            return None;
        }
        match clone_keeper(cgroup_dir) {
            Ok(keeper) => {
                let watch = keeper.pidfd.as_ref().map(OwnedFd::try_clone);
                let Some(Ok(watch)) = watch else {
                    // Out of descriptors: a keeper nobody watches is not worth its process.
                    keeper.retire();
                    return None;
                };
                super::reaper::watch_keeper(watch);
                Some(keeper)
            }
            Err(err) => {
                // No clone3 (or no CLONE_INTO_CGROUP) here, or a sandbox that refuses it: do
                // not try again. Anything else (out of processes, memory) may pass next time.
                // A refused close_range shows later, in `retire`.
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG)
                ) {
                    ENABLED.store(false, Ordering::Relaxed);
                }
                tracing::debug!(%err, "sheepdog: no keeper for a herd cgroup made ahead");
                None
            }
        }
    }

    /// Kills the keeper and returns once it has exited and been reaped, so it is no longer in
    /// the cgroup. Bounded: a keeper that has not gone after a second (SIGKILL cannot be
    /// blocked, and it ends a stopped or frozen process too; only a host starved of CPU could
    /// delay it that long) is left to the reaper.
    pub(crate) fn retire(mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        let exited = exited_within(&pidfd, 1);
        let reaped = exited.then(|| waitid(Target::Pidfd(pidfd.as_raw_fd()), libc::WNOHANG));
        match reaped {
            // It exited by itself: it could not leave the shared descriptor table (a sandbox
            // that refuses close_range). Keepers cannot work here; stop making them.
            Some(Ok(Some(status))) if status.code().is_some() => {
                ENABLED.store(false, Ordering::Relaxed);
            }
            // Reaped, or reaped by someone else already.
            Some(Ok(Some(_)) | Err(_)) => {}
            None | Some(Ok(None)) => super::reaper::adopt_pidfd(pidfd),
        }
    }

    /// The pidfd, for the reaper to reap the keeper once the cgroup's kill has ended it.
    pub(crate) fn into_pidfd(mut self) -> Option<OwnedFd> {
        self.pidfd.take()
    }

    /// Whether the keeper is still alive, so that its death will wake the reaper thread that
    /// watches it (a zero-timeout poll of its pidfd).
    pub(crate) fn alive(&self) -> bool {
        self.pidfd
            .as_ref()
            .is_some_and(|pidfd| !exited_within(pidfd, 0))
    }
}

/// Whether the process behind `pidfd` has exited, waiting up to `seconds` for it (its pidfd
/// turns readable then; a failed poll counts as not exited).
fn exited_within(pidfd: &OwnedFd, seconds: i64) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(pidfd.as_fd(), PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            super::reaper::adopt_pidfd(pidfd);
        }
    }
}

/// The keeper's name (`PR_SET_NAME`: at most 15 bytes and a NUL), as `ps -o comm` shows it.
#[cfg(target_arch = "x86_64")]
static NAME: [u8; 16] = *b"sheepdog-keeper\0";

#[cfg(target_arch = "x86_64")]
fn clone_keeper(cgroup_dir: BorrowedFd<'_>) -> io::Result<Keeper> {
    use super::clone::{BlockedSignals, CloneArgs, CLONE_INTO_CGROUP};

    let mut pidfd: core::ffi::c_int = -1;
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_PIDFD) as u64 | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut core::ffi::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // The keeper keeps the mask it is cloned with: everything blocked.
    let blocked = BlockedSignals::new();
    let ret: isize;
    // SAFETY: clone3 with CLONE_VM and no stack: the child runs on this thread's stack pointer
    // but never touches memory through it — it stays inside this block, issuing system calls
    // with register arguments only (the name is a static), and with every signal blocked no
    // handler can run on that stack either. It never returns: it sleeps until killed, or exits
    // at once if it cannot leave the shared descriptor table (close_range with
    // CLOSE_RANGE_UNSHARE gives it an empty table of its own, so it holds none of this
    // process's descriptors, such as pipe ends whose readers wait for end-of-file). The parent
    // only gets the result in rax; rcx and r11 are clobbered by `syscall`, and the other
    // registers named here are written only on the child's path.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 6f",
            "mov eax, {close_range}",
            "xor edi, edi",
            "mov esi, -1",
            "mov edx, {unshare}",
            "syscall",
            "test rax, rax",
            "jnz 5f",
            "mov eax, {prctl}",
            "mov edi, {set_name}",
            "mov rsi, r12",
            "syscall",
            "4:",
            "mov eax, {pause}",
            "syscall",
            "jmp 4b",
            "5:",
            "mov eax, {exit}",
            "mov edi, 1",
            "syscall",
            "ud2",
            "6:",
            close_range = const libc::SYS_close_range,
            unshare = const libc::CLOSE_RANGE_UNSHARE,
            prctl = const libc::SYS_prctl,
            set_name = const libc::PR_SET_NAME,
            pause = const libc::SYS_pause,
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            inlateout("rdi") &args as *const CloneArgs => _,
            inlateout("rsi") core::mem::size_of::<CloneArgs>() => _,
            in("r12") NAME.as_ptr(),
            lateout("rdx") _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    drop(blocked);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    // SAFETY: on success the kernel stored a new pidfd that nothing else owns.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
    Ok(Keeper { pidfd: Some(pidfd) })
}

#[cfg(not(target_arch = "x86_64"))]
fn clone_keeper(_: BorrowedFd<'_>) -> io::Result<Keeper> {
    Err(io::ErrorKind::Unsupported.into())
}
