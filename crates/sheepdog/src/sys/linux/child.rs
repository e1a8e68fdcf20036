//! The code that runs in the new process between clone and exec.
//!
//! It shares the parent's memory (`CLONE_VM`) while the parent thread is suspended
//! (`CLONE_VFORK`), so it follows the rules of vfork(2): raw system calls only, no allocation, no
//! locks, no `errno`, no panics, and it never returns. Everything it needs was prepared by the
//! parent as a [`ChildPlan`] of raw pointers.

use core::ffi::{c_char, c_int};
use core::ptr;

use super::raw::syscall;

/// What the child must do before exec. Every pointer stays valid until the parent resumes.
pub(super) struct ChildPlan {
    /// Paths to try with execve, in order; null-terminated. Null for an anchor: a child that
    /// only takes its process group and exits with 0.
    pub candidates: *const *const c_char,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    /// Directory to enter, or null.
    pub cwd: *const c_char,
    /// Descriptor to install as fd 0, 1, 2; `-1` keeps the inherited one. Always 3 or more.
    pub stdio: [c_int; 3],
    /// `(source, target)` pairs for descriptors passed on purpose; sources collide with no target.
    pub passed_fds: *const [c_int; 2],
    pub passed_fds_len: usize,
    /// `-1`: keep the parent's process group; `0`: lead a new one; `n`: join group `n`.
    pub process_group: c_int,
    /// The user and group ids to take before exec (`setgid`, then `setuid`), or `-1` each.
    pub uid: i64,
    pub gid: i64,
    /// An open `cgroup.procs` to write `0` into (joins that cgroup), or `-1`.
    pub cgroup_procs: c_int,
    /// The controlling terminal, to make the child's process group its foreground, or `-1`.
    pub terminal: c_int,
    /// Where a failure is reported; the parent reads it after it resumes.
    pub report: *mut ChildReport,
    /// The kernel already reset caught signals to default (`CLONE_CLEAR_SIGHAND`); only
    /// SIGPIPE, which it leaves ignored, is left to do.
    pub handlers_cleared: bool,
    /// The parent pinned itself to one CPU around the clone (see `clone::PinnedToThisCpu`):
    /// the child takes back the parent's own mask before exec. Null when not pinned.
    pub unpin: *const CpuMasks,
}

/// A thread's CPU mask as sched_setaffinity(2) takes it, and the one-CPU mask it was pinned to.
/// Only the clone3 path (x86_64) pins.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct CpuMasks {
    pub saved: [u64; CPU_MASK_WORDS],
    pub pinned: [u64; CPU_MASK_WORDS],
    /// Bytes of each mask the kernel uses.
    pub len: usize,
}

/// Room for 1024 CPUs, as glibc's `cpu_set_t`.
pub(super) const CPU_MASK_WORDS: usize = 16;

/// The step a child failed at, with its errno. All zero means the exec succeeded.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ChildReport {
    pub stage: Stage,
    pub errno: i32,
    /// For [`Stage::Exec`]: which candidate the reported errno belongs to.
    pub candidate: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    #[default]
    None,
    ProcessGroup,
    Terminal,
    Cgroup,
    Identity,
    WorkingDirectory,
    Stdio,
    PassedFd,
    SignalMask,
    Exec,
}

const SIGKILL: usize = libc::SIGKILL as usize;
const SIGSTOP: usize = libc::SIGSTOP as usize;
const SIGPIPE: usize = libc::SIGPIPE as usize;
/// The kernel's signal numbers go up to 64 (`_NSIG`).
const NSIG: usize = 64;
/// How often an exec that fails with `ETXTBSY` is retried (about 63 ms in all).
const ETXTBSY_RETRIES: u32 = 6;

/// The entry point of the new process: prepares it as `plan` says and execs, or reports why not
/// and exits with status 127.
///
/// # Safety
/// `plan` and everything it points to must be valid, and this must run in a child created with
/// `CLONE_VM | CLONE_VFORK` on a stack of its own, with all signals blocked.
pub(super) unsafe extern "C" fn child_main(plan: *const ChildPlan) -> ! {
    // SAFETY: the parent keeps the plan alive until the child execs or exits.
    let plan = unsafe { &*plan };
    // SAFETY: each call below is a raw system call on descriptors and strings the parent
    // prepared; the child owns its fd table and signal handlers (no CLONE_FILES/CLONE_SIGHAND).
    let failure = unsafe { prepare_and_exec(plan) };
    // SAFETY: `report` points into the suspended parent's frame, which nothing else touches now.
    unsafe { ptr::write_volatile(plan.report, failure) };
    loop {
        // SAFETY: exit_group ends this process only; the parent shares memory, not the group.
        unsafe { syscall(libc::SYS_exit_group, &[127]) };
    }
}

/// Runs the steps in order; returns only on failure.
unsafe fn prepare_and_exec(plan: &ChildPlan) -> ChildReport {
    let fail = |stage, ret: isize| ChildReport {
        stage,
        errno: -ret as i32,
        candidate: 0,
    };
    // SAFETY (whole function): raw system calls with arguments the parent validated.
    unsafe {
        // Handlers the parent installed (tokio's among them) mean nothing after exec but would
        // run until then; SIGPIPE goes back to default because Rust programs ignore it.
        let mut old = [0usize; 4]; // large enough for the kernel's struct sigaction
        let default = [0usize; 4]; // SIG_DFL, no flags, empty mask
        for sig in 1..=NSIG {
            if sig == SIGKILL || sig == SIGSTOP || (plan.handlers_cleared && sig != SIGPIPE) {
                continue;
            }
            if sig == SIGPIPE {
                // Whatever it was, it ends as default: one call, no need to look first.
                syscall(
                    libc::SYS_rt_sigaction,
                    &[sig, default.as_ptr() as usize, 0, 8],
                );
                continue;
            }
            let query = syscall(
                libc::SYS_rt_sigaction,
                &[sig, 0, old.as_mut_ptr() as usize, 8],
            );
            let handler = old[0];
            let caught = handler != libc::SIG_DFL && handler != libc::SIG_IGN;
            if query == 0 && caught {
                syscall(
                    libc::SYS_rt_sigaction,
                    &[sig, default.as_ptr() as usize, 0, 8],
                );
            }
        }

        if !plan.unpin.is_null() {
            // Only a mask that is still the pin is replaced: a clone into another cpuset has
            // already been given that cpuset's CPUs, and keeps them as it would unpinned. Best
            // effort: the parent's mask is what the child had inherited without the pin.
            let masks = &*plan.unpin;
            let mut now = [0u64; CPU_MASK_WORDS];
            let ret = syscall(
                libc::SYS_sched_getaffinity,
                &[0, masks.len, now.as_mut_ptr() as usize],
            );
            if ret > 0 && now == masks.pinned {
                syscall(
                    libc::SYS_sched_setaffinity,
                    &[0, masks.len, masks.saved.as_ptr() as usize],
                );
            }
        }

        if plan.process_group >= 0 {
            let ret = syscall(libc::SYS_setpgid, &[0, plan.process_group as usize]);
            if ret < 0 {
                return fail(Stage::ProcessGroup, ret);
            }
        }

        if plan.terminal >= 0 {
            // All signals are blocked here, so the SIGTTOU a background group gets for this is
            // not delivered.
            let pgid = syscall(libc::SYS_getpgid, &[0]) as libc::pid_t;
            let ret = syscall(
                libc::SYS_ioctl,
                &[
                    plan.terminal as usize,
                    libc::TIOCSPGRP as usize,
                    &pgid as *const libc::pid_t as usize,
                ],
            );
            if ret < 0 {
                return fail(Stage::Terminal, ret);
            }
        }

        if plan.candidates.is_null() {
            syscall(libc::SYS_exit_group, &[0]);
        }

        if plan.cgroup_procs >= 0 {
            let ret = syscall(
                libc::SYS_write,
                &[plan.cgroup_procs as usize, b"0".as_ptr() as usize, 1],
            );
            if ret < 0 {
                return fail(Stage::Cgroup, ret);
            }
        }

        // After the cgroup write, which may need the privileges given up here; before chdir,
        // so that the directory is entered as the new user (as std does).
        if plan.gid >= 0 {
            let ret = syscall(libc::SYS_setgid, &[plan.gid as usize]);
            if ret < 0 {
                return fail(Stage::Identity, ret);
            }
        }
        if plan.uid >= 0 {
            // Root keeps its supplementary groups across setuid: drop them, as std does.
            if syscall(libc::SYS_getuid, &[]) == 0 {
                syscall(libc::SYS_setgroups, &[0, 0]);
            }
            let ret = syscall(libc::SYS_setuid, &[plan.uid as usize]);
            if ret < 0 {
                return fail(Stage::Identity, ret);
            }
        }

        if !plan.cwd.is_null() {
            let ret = syscall(libc::SYS_chdir, &[plan.cwd as usize]);
            if ret < 0 {
                return fail(Stage::WorkingDirectory, ret);
            }
        }

        for (target, &source) in plan.stdio.iter().enumerate() {
            if source >= 0 {
                let ret = syscall(libc::SYS_dup3, &[source as usize, target, 0]);
                if ret < 0 {
                    return fail(Stage::Stdio, ret);
                }
            }
        }

        // Nothing beyond stdio survives exec, not even descriptors some library opened without
        // O_CLOEXEC. Kernels before 5.11 lack the flag; then only O_CLOEXEC protects.
        syscall(
            libc::SYS_close_range,
            &[3, u32::MAX as usize, libc::CLOSE_RANGE_CLOEXEC as usize],
        );

        for i in 0..plan.passed_fds_len {
            let [source, target] = *plan.passed_fds.add(i);
            let ret = syscall(libc::SYS_dup3, &[source as usize, target as usize, 0]);
            if ret < 0 {
                return fail(Stage::PassedFd, ret);
            }
        }

        let empty_mask = 0u64;
        let ret = syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &empty_mask as *const u64 as usize,
                0,
                8,
            ],
        );
        if ret < 0 {
            return fail(Stage::SignalMask, ret);
        }

        // Like execvp(3): a missing file moves on to the next PATH entry; a permission problem is
        // remembered (and wins over "not found"); anything else stops the search.
        let mut report = fail(Stage::Exec, -(libc::ENOENT as isize));
        let mut seen_eacces = false;
        let mut i = 0;
        let mut busy_retries = 0;
        loop {
            let candidate = *plan.candidates.add(i);
            if candidate.is_null() {
                return report;
            }
            let ret = syscall(
                libc::SYS_execve,
                &[candidate as usize, plan.argv as usize, plan.envp as usize],
            );
            let errno = -ret as i32;
            // "Text file busy": a program just written is still open for writing, usually in
            // the fd table of a sibling another thread is spawning, until that one execs. Wait
            // a little (1, 2, 4, ... 32 ms) and try the same file again.
            if errno == libc::ETXTBSY && busy_retries < ETXTBSY_RETRIES {
                let delay = [0usize, 1_000_000 << busy_retries]; // timespec: 0 s, n ns
                syscall(libc::SYS_nanosleep, &[delay.as_ptr() as usize, 0]);
                busy_retries += 1;
                continue;
            }
            match errno {
                libc::EACCES => {
                    if !seen_eacces {
                        report = ChildReport {
                            stage: Stage::Exec,
                            errno,
                            candidate: i,
                        };
                    }
                    seen_eacces = true;
                }
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {
                    if !seen_eacces {
                        report = ChildReport {
                            stage: Stage::Exec,
                            errno,
                            candidate: i,
                        };
                    }
                }
                _ => {
                    return ChildReport {
                        stage: Stage::Exec,
                        errno,
                        candidate: i,
                    }
                }
            }
            i += 1;
        }
    }
}
