//! Creating the child: a vfork-style clone that runs [`child_main`] on a stack of its own.
//!
//! `CLONE_VM | CLONE_VFORK` makes the cost independent of the parent's size (no page tables are
//! copied) and suspends the calling thread until the child execs or exits, which is also what
//! makes the child's [`ChildReport`](super::child::ChildReport) visible to the parent afterwards.
//!
//! Paths, strongest first; a refused one is remembered process-wide (see [`SpawnPath`]):
//! 1. `clone3` with `CLONE_PIDFD`, and `CLONE_INTO_CGROUP` when a cgroup is the target (x86_64;
//!    issued from inline assembly because the child must switch stacks before running any code).
//! 2. glibc's `clone()` with `CLONE_PIDFD`; the child joins its cgroup by writing `cgroup.procs`.
//! 3. The same without a pidfd, for kernels or sandboxes that refuse them.

use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::ptr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::child::{child_main, ChildPlan, ChildReport, CpuMasks, CPU_MASK_WORDS};
use super::raw::syscall;
use super::spawn::CgroupTarget;
use crate::sys::SpawnPath;

impl SpawnPath {
    fn from_u8(v: u8) -> SpawnPath {
        match v {
            0 => SpawnPath::Clone3,
            1 => SpawnPath::Clone,
            _ => SpawnPath::CloneWithoutPidfd,
        }
    }
}

/// The strongest path not yet refused in this process.
static PATH: AtomicU8 = AtomicU8::new(if cfg!(target_arch = "x86_64") {
    SpawnPath::Clone3 as u8
} else {
    SpawnPath::Clone as u8
});

fn current_path() -> SpawnPath {
    SpawnPath::from_u8(PATH.load(Ordering::Relaxed))
}

/// A demotion not yet logged: `(path << 32) | errno`, 0 for none.
static NOTICE: AtomicU64 = AtomicU64::new(0);

/// Never use a path stronger than `path` again in this process. Only records the fact: this
/// also runs in the sentinel, which makes raw system calls only (it runs before `main`).
fn demote(path: SpawnPath, why: &io::Error) {
    let before = PATH.fetch_max(path as u8, Ordering::Relaxed);
    if before < path as u8 {
        let errno = why.raw_os_error().unwrap_or(0) as u32 as u64;
        NOTICE.store(((path as u64) << 32) | errno, Ordering::Relaxed);
    }
}

/// Logs a demotion recorded since the last call, once.
pub(super) fn log_demotion() {
    let notice = NOTICE.swap(0, Ordering::Relaxed);
    if notice != 0 {
        tracing::warn!(
            to = ?SpawnPath::from_u8((notice >> 32) as u8),
            error = %io::Error::from_raw_os_error(notice as u32 as i32),
            "sheepdog: the kernel or a sandbox refused a spawn path; falling back",
        );
    }
}

/// Forces this process onto `path` or a weaker one (for tests of the fallbacks).
pub(crate) fn force(path: SpawnPath) {
    PATH.fetch_max(path as u8, Ordering::Relaxed);
}

/// The stack the child runs on until exec. It lives in the parent's frame, which is unused while
/// the parent is suspended; the child needs well under a page of it.
#[repr(C, align(16))]
struct ChildStack([MaybeUninit<u8>; 32 * 1024]);

/// A created child: its pid, and its pidfd when the path gives one.
pub(super) struct Cloned {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub path: SpawnPath,
}

/// [`clone_child`], then the child's report (all zero: it exec'd, or an anchor exited as
/// planned).
pub(super) fn clone_reported(
    plan: &mut ChildPlan,
    cgroup: Option<CgroupTarget<'_>>,
) -> io::Result<(Cloned, ChildReport)> {
    let cloned = clone_child(plan, cgroup)?;
    // SAFETY: the child has exec'd or exited, so nothing writes the report any more.
    let report = unsafe { ptr::read_volatile(plan.report) };
    Ok((cloned, report))
}

/// Creates the child, which runs `plan` and execs. Returns after the exec or the child's exit.
///
/// `cgroup` puts the child in that cgroup (its directory for `clone3`, its `cgroup.procs` for
/// the paths that need it), pinning this thread for the clone where it says so.
pub(super) fn clone_child(
    plan: &mut ChildPlan,
    cgroup: Option<CgroupTarget<'_>>,
) -> io::Result<Cloned> {
    let mut stack = ChildStack([MaybeUninit::uninit(); 32 * 1024]);
    let _blocked = BlockedSignals::new();

    #[cfg(target_arch = "x86_64")]
    if current_path() == SpawnPath::Clone3 {
        let cgroup_dir = cgroup.filter(|c| !c.join_by_write).map(|c| c.dir);
        plan.cgroup_procs = match cgroup.filter(|c| c.join_by_write) {
            Some(c) => c.procs()?.as_raw_fd(),
            None => -1,
        };
        let pin = cgroup
            .filter(|c| c.pin)
            .and_then(|_| PinnedToThisCpu::new());
        plan.unpin = pin.as_ref().map_or(ptr::null(), |pin| &pin.masks);
        let mut result = clone3(plan, &mut stack, cgroup_dir);
        if matches!(&result, Err(err) if err.raw_os_error() == Some(libc::EINVAL))
            && plan.handlers_cleared
        {
            // Linux 5.3 and 5.4 have clone3 but not CLONE_CLEAR_SIGHAND.
            CLEAR_SIGHAND.store(false, Ordering::Relaxed);
            result = clone3(plan, &mut stack, cgroup_dir);
        }
        plan.unpin = ptr::null();
        drop(pin);
        match result {
            Ok(cloned) => return Ok(cloned),
            Err(err) => match err.raw_os_error() {
                // No clone3 (kernel < 5.3, or seccomp), or no CLONE_INTO_CGROUP (< 5.7).
                Some(libc::ENOSYS | libc::EPERM | libc::E2BIG) => demote(SpawnPath::Clone, &err),
                // Possibly only this cgroup; the slower path reports the real reason.
                Some(libc::EINVAL) if cgroup_dir.is_some() => {}
                _ => return Err(err),
            },
        }
    }
    plan.cgroup_procs = match cgroup {
        Some(c) => c.procs()?.as_raw_fd(),
        None => -1,
    };
    plan.handlers_cleared = false;
    let want_pidfd = current_path() != SpawnPath::CloneWithoutPidfd;
    let (pid, pidfd) = clone_legacy(plan, &mut stack, want_pidfd)?;
    let pidfd = match (pidfd, rustix::process::Pid::from_raw(pid)) {
        (Some(fd), _) => Some(fd),
        // An old kernel ignores CLONE_PIDFD; our unreaped child's pid cannot be reused yet.
        (None, Some(pid)) if want_pidfd => {
            match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => Some(fd),
                Err(err) => {
                    demote(SpawnPath::CloneWithoutPidfd, &err.into());
                    None
                }
            }
        }
        _ => None,
    };
    let path = if pidfd.is_some() {
        SpawnPath::Clone
    } else {
        SpawnPath::CloneWithoutPidfd
    };
    Ok(Cloned { pid, pidfd, path })
}

/// Keeps the calling thread on the CPU it runs on until dropped.
///
/// Used around a clone into a cgroup: when that cgroup was empty, the kernel's notification of
/// `cgroup.events` makes a kworker runnable on this CPU at the clone, and the new child is then
/// placed on another CPU — one that may be idle and slow to wake (a halted vCPU), and whose
/// wake-up at the child's exec pulls this thread over behind the child. Pinned, the child starts
/// here like any vfork child. It takes back the saved mask before exec (see [`ChildPlan`]), so
/// it ends with the same mask as without the pin. (A mask another thread sets for this one while
/// it is pinned is overwritten by the restore.) See docs/ARCHITECTURE.md, "the first task in an
/// empty cgroup".
#[cfg(target_arch = "x86_64")]
struct PinnedToThisCpu {
    masks: CpuMasks,
}

#[cfg(target_arch = "x86_64")]
impl PinnedToThisCpu {
    /// Pins this thread, or returns `None` (and changes nothing) where that is not possible.
    fn new() -> Option<PinnedToThisCpu> {
        let mut masks = CpuMasks {
            saved: [0; CPU_MASK_WORDS],
            pinned: [0; CPU_MASK_WORDS],
            len: 0,
        };
        // SAFETY: sched_getaffinity(2) writes at most the given number of bytes into `saved`
        // and returns how many it wrote (EINVAL if the kernel's mask is larger).
        let len = unsafe {
            syscall(
                libc::SYS_sched_getaffinity,
                &[0, 8 * CPU_MASK_WORDS, masks.saved.as_mut_ptr() as usize],
            )
        };
        // libc's, not the system call: glibc answers from the vDSO or its rseq area, without
        // entering the kernel (0.4 µs against 1.3 µs with caches cold, measured in C).
        // SAFETY: sched_getcpu(3) takes no arguments and touches only this thread's state.
        let cpu = unsafe { libc::sched_getcpu() };
        let (Ok(len), Ok(cpu)) = (usize::try_from(len), usize::try_from(cpu)) else {
            return None; // either call failed
        };
        if len == 0 || cpu >= 8 * len {
            return None;
        }
        masks.len = len;
        masks.pinned[cpu / 64] = 1 << (cpu % 64);
        // SAFETY: sched_setaffinity(2) reads `len` bytes of `pinned`.
        let ret = unsafe {
            syscall(
                libc::SYS_sched_setaffinity,
                &[0, masks.len, masks.pinned.as_ptr() as usize],
            )
        };
        (ret == 0).then_some(PinnedToThisCpu { masks })
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for PinnedToThisCpu {
    fn drop(&mut self) {
        // SAFETY: sched_setaffinity(2) reads `len` bytes of the mask saved in `new`.
        unsafe {
            syscall(
                libc::SYS_sched_setaffinity,
                &[0, self.masks.len, self.masks.saved.as_ptr() as usize],
            )
        };
    }
}

/// The kernel's `struct clone_args` (clone3(2)), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

#[cfg(target_arch = "x86_64")]
fn clone3(
    plan: &mut ChildPlan,
    stack: &mut ChildStack,
    cgroup_dir: Option<BorrowedFd<'_>>,
) -> io::Result<Cloned> {
    let mut pidfd: c_int = -1;
    // The kernel resets every caught signal to its default in the child (Linux 5.5), sparing
    // the child a query per signal; it tells the child so through the plan.
    plan.handlers_cleared = CLEAR_SIGHAND.load(Ordering::Relaxed);
    let clear = if plan.handlers_cleared {
        CLONE_CLEAR_SIGHAND
    } else {
        0
    };
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | clear,
        pidfd: &mut pidfd as *mut c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.0.as_mut_ptr() as u64,
        stack_size: stack.0.len() as u64,
        ..CloneArgs::default()
    };
    if let Some(dir) = cgroup_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    let ret: isize;
    // SAFETY: clone3 with CLONE_VM|CLONE_VFORK: the parent is suspended until the child execs or
    // exits. The child starts on `stack` (its top, 16-byte aligned, so `call` leaves the ABI's
    // alignment) and immediately calls `child_main(plan)`, which never returns; it touches no
    // register or stack slot of the parent's frame. r12 and r13 survive the syscall in both.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") &mut args as *mut CloneArgs,
            in("rsi") core::mem::size_of::<CloneArgs>(),
            in("r12") plan as *const ChildPlan,
            in("r13") child_main as unsafe extern "C" fn(*const ChildPlan) -> ! as usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(Cloned {
        pid: ret as i32,
        // SAFETY: on success the kernel stored a new pidfd that nothing else owns.
        pidfd: Some(unsafe { OwnedFd::from_raw_fd(pidfd) }),
        path: SpawnPath::Clone3,
    })
}

/// `CLONE_INTO_CGROUP` (Linux 5.7); not in every libc crate version.
#[cfg(target_arch = "x86_64")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5).
#[cfg(target_arch = "x86_64")]
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Whether clone3 takes `CLONE_CLEAR_SIGHAND` here (until refused once).
#[cfg(target_arch = "x86_64")]
static CLEAR_SIGHAND: AtomicBool = AtomicBool::new(true);

fn clone_legacy(
    plan: &ChildPlan,
    stack: &mut ChildStack,
    want_pidfd: bool,
) -> io::Result<(i32, Option<OwnedFd>)> {
    extern "C" fn trampoline(plan: *mut c_void) -> c_int {
        // SAFETY: `plan` is the pointer handed to clone() below, valid until the parent resumes.
        unsafe { child_main(plan as *const ChildPlan) }
    }
    let mut pidfd: c_int = -1;
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if want_pidfd {
        flags |= libc::CLONE_PIDFD;
    }
    // SAFETY: glibc's clone() switches to the child stack (its top, 16-byte aligned) before
    // calling `trampoline`, which never returns. With CLONE_PIDFD the pidfd is stored through
    // the parent_tid argument. The parent is suspended until the child execs or exits.
    let pid = unsafe {
        let top = stack.0.as_mut_ptr().add(stack.0.len()) as *mut c_void;
        libc::clone(
            trampoline,
            top,
            flags,
            plan as *const ChildPlan as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative value is a new pidfd the kernel gave us alone.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok((pid, pidfd))
}

/// Blocks every signal in this thread until dropped, so that no handler runs in the child while
/// it shares our memory; the child sets its own mask before exec.
pub(super) struct BlockedSignals(u64);

impl BlockedSignals {
    pub(super) fn new() -> BlockedSignals {
        let all = !0u64;
        let mut old = 0u64;
        // SAFETY: rt_sigprocmask with valid pointers to 8-byte masks.
        unsafe {
            syscall(
                libc::SYS_rt_sigprocmask,
                &[
                    libc::SIG_SETMASK as usize,
                    &all as *const u64 as usize,
                    &mut old as *mut u64 as usize,
                    8,
                ],
            )
        };
        BlockedSignals(old)
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe {
            syscall(
                libc::SYS_rt_sigprocmask,
                &[
                    libc::SIG_SETMASK as usize,
                    &self.0 as *const u64 as usize,
                    0,
                    8,
                ],
            )
        };
    }
}
