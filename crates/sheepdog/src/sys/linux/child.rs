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

impl ChildPlan {
    /// A plan that runs no program and changes nothing, reporting into `report`; callers set
    /// what they need with struct update syntax.
    pub(super) fn new(report: &mut ChildReport) -> ChildPlan {
        ChildPlan {
            candidates: ptr::null(),
            argv: ptr::null(),
            envp: ptr::null(),
            cwd: ptr::null(),
            stdio: [-1; 3],
            passed_fds: ptr::null(),
            passed_fds_len: 0,
            process_group: -1,
            uid: -1,
            gid: -1,
            cgroup_procs: -1,
            terminal: -1,
            report,
            handlers_cleared: false,
            unpin: ptr::null(),
        }
    }
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
    // SAFETY: each step makes raw system calls with arguments the parent validated, in the
    // order the steps' own comments need.
    unsafe {
        reset_signal_handlers(plan.handlers_cleared);
        restore_cpu_mask(plan.unpin);
        if let Err(report) = prepare(plan) {
            return report;
        }
        exec_first_candidate(plan)
    }
}

/// The report of a failed system call: its stage, and the errno of its return value `ret`.
#[inline(always)]
fn fail(stage: Stage, ret: isize) -> ChildReport {
    ChildReport {
        stage,
        errno: -ret as i32,
        candidate: 0,
    }
}

/// `Err` with `stage` if `ret`, a raw system call's return value, is an error.
#[inline(always)]
fn check(stage: Stage, ret: isize) -> Result<(), ChildReport> {
    if ret < 0 {
        Err(fail(stage, ret))
    } else {
        Ok(())
    }
}

/// Handlers the parent installed (tokio's among them) mean nothing after exec but would run
/// until then; SIGPIPE goes back to default because Rust programs ignore it.
#[inline(always)]
unsafe fn reset_signal_handlers(handlers_cleared: bool) {
    let mut old = [0usize; 4]; // large enough for the kernel's struct sigaction
    let default = [0usize; 4]; // SIG_DFL, no flags, empty mask
    for sig in 1..=NSIG {
        if sig == SIGKILL || sig == SIGSTOP || (handlers_cleared && sig != SIGPIPE) {
            continue;
        }
        // SAFETY: rt_sigaction(2) reads `default` and writes at most 32 bytes into `old`.
        unsafe {
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
    }
}

/// Takes back the parent's CPU mask if the parent pinned itself for the clone (`unpin` not
/// null). Only a mask that is still the pin is replaced: a clone into another cpuset has
/// already been given that cpuset's CPUs, and keeps them as it would unpinned. Best effort: the
/// parent's mask is what the child had inherited without the pin.
#[inline(always)]
unsafe fn restore_cpu_mask(unpin: *const CpuMasks) {
    if unpin.is_null() {
        return;
    }
    // SAFETY: a non-null `unpin` points to masks the parent keeps until the child execs;
    // sched_getaffinity(2) writes at most `len` bytes into `now`, which holds 128.
    unsafe {
        let masks = &*unpin;
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
}

/// Everything between the clone and the exec that can fail, in order. An anchor (no
/// candidates) exits here, once it has its process group.
#[inline(always)]
unsafe fn prepare(plan: &ChildPlan) -> Result<(), ChildReport> {
    // SAFETY: raw system calls with arguments the parent validated.
    unsafe {
        join_process_group(plan)?;
        if plan.candidates.is_null() {
            syscall(libc::SYS_exit_group, &[0]);
        }
        join_cgroup(plan.cgroup_procs)?;
        // After the cgroup write, which may need the privileges given up here; before chdir,
        // so that the directory is entered as the new user (as std does).
        take_identity(plan.uid, plan.gid)?;
        if !plan.cwd.is_null() {
            check(
                Stage::WorkingDirectory,
                syscall(libc::SYS_chdir, &[plan.cwd as usize]),
            )?;
        }
        install_descriptors(plan)?;
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
        check(Stage::SignalMask, ret)
    }
}

/// Joins or leads the process group the plan names, and makes it the terminal's foreground.
#[inline(always)]
unsafe fn join_process_group(plan: &ChildPlan) -> Result<(), ChildReport> {
    // SAFETY: setpgid(2), getpgid(2) and ioctl(TIOCSPGRP) with a pid_t on the stack.
    unsafe {
        if plan.process_group >= 0 {
            let ret = syscall(libc::SYS_setpgid, &[0, plan.process_group as usize]);
            check(Stage::ProcessGroup, ret)?;
        }
        if plan.terminal >= 0 {
            // All signals are blocked here, so the SIGTTOU a background group gets for this
            // is not delivered.
            let pgid = syscall(libc::SYS_getpgid, &[0]) as libc::pid_t;
            let ret = syscall(
                libc::SYS_ioctl,
                &[
                    plan.terminal as usize,
                    libc::TIOCSPGRP as usize,
                    &pgid as *const libc::pid_t as usize,
                ],
            );
            check(Stage::Terminal, ret)?;
        }
        Ok(())
    }
}

/// Moves this process into the cgroup whose `cgroup.procs` is open as `procs` (`-1`: none).
#[inline(always)]
unsafe fn join_cgroup(procs: c_int) -> Result<(), ChildReport> {
    if procs < 0 {
        return Ok(());
    }
    // SAFETY: write(2) of one static byte to a descriptor the parent opened.
    let ret = unsafe {
        syscall(
            libc::SYS_write,
            &[procs as usize, b"0".as_ptr() as usize, 1],
        )
    };
    check(Stage::Cgroup, ret)
}

/// Takes the group id, then the user id (`-1`: keep).
#[inline(always)]
unsafe fn take_identity(uid: i64, gid: i64) -> Result<(), ChildReport> {
    // SAFETY: setgid(2), getuid(2), setgroups(2) with an empty list, setuid(2).
    unsafe {
        if gid >= 0 {
            check(Stage::Identity, syscall(libc::SYS_setgid, &[gid as usize]))?;
        }
        if uid >= 0 {
            // Root keeps its supplementary groups across setuid: drop them, as std does.
            if syscall(libc::SYS_getuid, &[]) == 0 {
                syscall(libc::SYS_setgroups, &[0, 0]);
            }
            check(Stage::Identity, syscall(libc::SYS_setuid, &[uid as usize]))?;
        }
        Ok(())
    }
}

/// Installs stdio and the passed descriptors; marks every other one close-on-exec.
#[inline(always)]
unsafe fn install_descriptors(plan: &ChildPlan) -> Result<(), ChildReport> {
    // SAFETY: dup3(2) and close_range(2) on this process's own fd table (not shared with the
    // parent); `passed_fds` holds `passed_fds_len` pairs.
    unsafe {
        for (target, &source) in plan.stdio.iter().enumerate() {
            if source >= 0 {
                let ret = syscall(libc::SYS_dup3, &[source as usize, target, 0]);
                check(Stage::Stdio, ret)?;
            }
        }
        // Nothing beyond stdio survives exec, not even descriptors some library opened
        // without O_CLOEXEC. Kernels before 5.11 lack the flag; then only O_CLOEXEC protects.
        syscall(
            libc::SYS_close_range,
            &[3, u32::MAX as usize, libc::CLOSE_RANGE_CLOEXEC as usize],
        );
        for i in 0..plan.passed_fds_len {
            let [source, target] = *plan.passed_fds.add(i);
            let ret = syscall(libc::SYS_dup3, &[source as usize, target as usize, 0]);
            check(Stage::PassedFd, ret)?;
        }
        Ok(())
    }
}

/// Execs the first candidate that can be, like execvp(3): a missing file moves on to the next
/// PATH entry; a permission problem is remembered (and wins over "not found"); anything else
/// stops the search. Returns only on failure.
#[inline(always)]
unsafe fn exec_first_candidate(plan: &ChildPlan) -> ChildReport {
    let mut report = fail(Stage::Exec, -(libc::ENOENT as isize));
    let mut seen_eacces = false;
    let mut i = 0;
    let mut busy_retries = 0;
    loop {
        // SAFETY: `candidates` is null-terminated, and it and `argv`, `envp` stay valid until
        // the parent resumes; nanosleep(2) reads a timespec on the stack.
        let errno = unsafe {
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
            errno
        };
        let this = ChildReport {
            stage: Stage::Exec,
            errno,
            candidate: i,
        };
        match errno {
            libc::EACCES => {
                if !seen_eacces {
                    report = this;
                }
                seen_eacces = true;
            }
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {
                if !seen_eacces {
                    report = this;
                }
            }
            _ => return this,
        }
        i += 1;
    }
}
