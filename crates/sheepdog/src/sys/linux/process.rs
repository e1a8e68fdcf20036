//! Watching one child: its exit as an event, its status from `waitid`, signals by pidfd.
//!
//! A pidfd becomes readable when the process exits (pidfd_open(2)), so it is registered in
//! tokio's reactor and no SIGCHLD handler is needed. The status and rusage come from
//! `waitid(P_PIDFD)`, which reaps exactly this child: never `waitpid(-1)`, which would steal the
//! exit statuses of other libraries' children.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::raw::syscall;
use super::reaper;
use crate::signal::Signal;
use crate::sys::{End, Reaped};

/// `P_PIDFD` (Linux 5.4).
const P_PIDFD: usize = 3;

/// A child younger than this many microseconds at its first wait is taken to be running (see
/// [`Process::wait`]).
const JUST_STARTED_US: u32 = 1000;

/// One unreaped child of this process, and the means to address it safely.
#[derive(Debug)]
pub(crate) struct Process {
    pid: i32,
    /// When it was started, in microseconds of the monotonic clock, wrapping (every 71
    /// minutes): enough to tell a child just started, in room the struct has anyway.
    started_us: u32,
    handle: Handle,
    status: Option<Reaped>,
}

/// Time on the monotonic clock since this process first asked: a small number that stamps
/// moments (of spawns, for instance) in a few bytes.
pub(super) fn since_first_use() -> Duration {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed()
}

/// [`since_first_use`] in microseconds, wrapping.
fn monotonic_us() -> u32 {
    since_first_use().as_micros() as u32
}

/// A child's pidfd and its pid: shared by the child's handle, its herd (as its process group's
/// leader) and the lifecycle driver; it names the process (and, as a leader, its group) for as
/// long as it is open, reaped or not.
#[derive(Debug)]
pub(crate) struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

impl Pidfd {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[derive(Debug)]
enum Handle {
    /// A pidfd, registered in the reactor by the first asynchronous wait that finds the child
    /// running.
    Pidfd(Arc<Pidfd>),
    Registered(AsyncFd<Arc<Pidfd>>),
    /// No pidfd: the pid is safe to use only until the process is reaped, which only this
    /// handle (or the reaper it is handed to on drop) does.
    Pid,
    /// Transitional, while the pidfd moves into the reactor.
    Empty,
}

impl Process {
    pub(crate) fn new(pid: i32, pidfd: Option<OwnedFd>) -> Process {
        let handle = match pidfd {
            Some(fd) => Handle::Pidfd(Arc::new(Pidfd { fd, pid })),
            None => Handle::Pid,
        };
        Process {
            pid,
            started_us: monotonic_us(),
            handle,
            status: None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The child's pidfd, if it has one.
    pub(crate) fn pidfd(&self) -> Option<Arc<Pidfd>> {
        match &self.handle {
            Handle::Pidfd(fd) => Some(Arc::clone(fd)),
            Handle::Registered(fd) => Some(Arc::clone(fd.get_ref())),
            Handle::Pid | Handle::Empty => None,
        }
    }

    /// Waits for the process to exit and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<Reaped> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if matches!(self.handle, Handle::Pid) {
            return self.wait_without_pidfd().await;
        }
        // Right after a spawn the child has not exited, and a `waitid` first would only
        // lengthen the time the child, runnable on this CPU, waits for this thread to block: such
        // a wait registers the pidfd, which is readable from the moment its process has exited.
        // An older child may well have exited (a herd killed, say): it is looked at first, so
        // one that has gone is reaped without a trip through the reactor.
        let just_started = monotonic_us().wrapping_sub(self.started_us) < JUST_STARTED_US;
        if just_started && matches!(self.handle, Handle::Pidfd(_)) {
            let mut ready = self.registered()?.readable().await?;
            ready.clear_ready();
        }
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let ready = self.registered()?.readable().await?;
            // The pidfd stays readable once the process has exited; forget this edge and look.
            let mut ready = ready;
            ready.clear_ready();
        }
    }

    /// Without a pidfd there is no event to await: a blocking thread waits without reaping
    /// (`WNOWAIT`), so reaping stays here, where signals are also sent.
    async fn wait_without_pidfd(&mut self) -> io::Result<Reaped> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let pid = self.pid;
            tokio::task::spawn_blocking(move || waitid(Target::Pid(pid), libc::WNOWAIT))
                .await
                .map_err(io::Error::other)??;
        }
    }

    /// Reaps the process if it has exited, without waiting.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<Reaped>> {
        if self.status.is_none() {
            let target = match &self.handle {
                Handle::Pidfd(fd) => Target::Pidfd(fd.as_raw_fd()),
                Handle::Registered(fd) => Target::Pidfd(fd.as_raw_fd()),
                Handle::Pid => Target::Pid(self.pid),
                Handle::Empty => unreachable!("the pidfd is always put back"),
            };
            self.status = waitid(target, libc::WNOHANG)?;
        }
        Ok(self.status)
    }

    /// The status, if the process has been reaped.
    pub(crate) fn status(&self) -> Option<Reaped> {
        self.status
    }

    /// Sends `signal`; fails with `ESRCH` once the process has been reaped.
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        match &self.handle {
            Handle::Pidfd(fd) => pidfd_send_signal(fd, signal),
            Handle::Registered(fd) => pidfd_send_signal(fd.get_ref(), signal),
            // Used only while the process is our unreaped child: the pid cannot be reused.
            Handle::Pid => kill_pid(self.pid, signal),
            Handle::Empty => unreachable!("the pidfd is always put back"),
        }
    }

    fn registered(&mut self) -> io::Result<&AsyncFd<Arc<Pidfd>>> {
        if let Handle::Pidfd(_) = self.handle {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(io::Error::other(
                    "sheepdog: waiting for a child needs a tokio runtime with IO enabled",
                ));
            }
            let Handle::Pidfd(fd) = std::mem::replace(&mut self.handle, Handle::Empty) else {
                unreachable!()
            };
            // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
            // Registration hands the fd back on failure, so it is never lost.
            match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(registered) => self.handle = Handle::Registered(registered),
                Err(err) => {
                    self.handle = Handle::Pidfd(err.into_parts().0);
                    return Err(io::Error::other("sheepdog: cannot watch the child's pidfd"));
                }
            }
        }
        match &self.handle {
            Handle::Registered(fd) => Ok(fd),
            _ => unreachable!("registered above"),
        }
    }
}

impl Process {
    /// A second handle on this child, to signal it and watch for its exit from elsewhere (the
    /// lifecycle driver); reaping stays with this `Process`.
    pub(crate) fn leader(&self) -> io::Result<Leader> {
        let handle = match self.pidfd() {
            Some(fd) => LeaderHandle::Pidfd(fd),
            None => LeaderHandle::Pid {
                start_ticks: start_ticks_of(self.pid as u32),
            },
        };
        Ok(Leader {
            pid: self.pid,
            handle,
        })
    }
}

/// A handle on a child that signals it and sees it exit, but never reaps it.
#[derive(Debug)]
pub(crate) struct Leader {
    pid: i32,
    handle: LeaderHandle,
}

#[derive(Debug)]
enum LeaderHandle {
    Pidfd(Arc<Pidfd>),
    /// Without pidfds the pid is checked against the start time it had when this handle was
    /// made, so a reused pid is never signalled (`None`: unreadable, so only while it exists).
    Pid {
        start_ticks: Option<u64>,
    },
}

impl Leader {
    /// A handle on process `pid`, whoever's child it is (`pidfd_open(2)`); the caller checks
    /// that it is the process it meant (for instance by its start time) after opening.
    pub(crate) fn open(pid: u32) -> io::Result<Leader> {
        let raw = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
        Ok(Leader {
            pid: pid as i32,
            handle: LeaderHandle::Pidfd(Arc::new(Pidfd {
                fd: pidfd,
                pid: pid as i32,
            })),
        })
    }

    /// How the process ended (a wait status), where the kernel tells (see
    /// [`pidfd_exit_code`](super::procfs::pidfd_exit_code)).
    pub(crate) fn exit_code(&self) -> Option<i32> {
        match &self.handle {
            LeaderHandle::Pidfd(fd) => super::procfs::pidfd_exit_code(fd),
            LeaderHandle::Pid { .. } => None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Sends `signal` (then SIGCONT, with `and_continue`); `ESRCH` once the process is gone.
    pub(crate) fn signal(&self, signal: Signal, and_continue: bool) -> io::Result<()> {
        match &self.handle {
            LeaderHandle::Pidfd(fd) => deliver(fd, signal, and_continue),
            LeaderHandle::Pid { .. } => {
                if !self.is_same_process() {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                kill_pid(self.pid, signal)?;
                if and_continue {
                    let _ = kill_pid(self.pid, Signal::CONT);
                }
                Ok(())
            }
        }
    }

    /// Whether the process has exited (a zombie counts), without waiting.
    pub(crate) fn has_exited(&self) -> bool {
        match &self.handle {
            LeaderHandle::Pidfd(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let zero = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
            }
            LeaderHandle::Pid { .. } => {
                !self.is_same_process() || proc_stat(self.pid()).is_none_or(|s| s.state == 'Z')
            }
        }
    }

    /// Completes once the process has exited.
    pub(crate) async fn exited(&self) -> io::Result<()> {
        match &self.handle {
            LeaderHandle::Pidfd(fd) => {
                let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
                // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
                let watch = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(|err| err.into_parts().1)?;
                let _ = watch.readable().await?;
                Ok(())
            }
            LeaderHandle::Pid { .. } => {
                if self.has_exited() {
                    return Ok(());
                }
                // Waits without reaping (WNOWAIT) on a blocking thread: there is no event.
                let pid = self.pid;
                tokio::task::spawn_blocking(move || waitid(Target::Pid(pid), libc::WNOWAIT))
                    .await
                    .map_err(io::Error::other)??;
                Ok(())
            }
        }
    }

    /// Completes once the process has been reaped by its parent (its pidfd hangs up, Linux
    /// 6.9 and later); never, where the kernel does not say.
    pub(crate) async fn reaped(&self) -> io::Result<()> {
        let LeaderHandle::Pidfd(fd) = &self.handle else {
            return std::future::pending().await;
        };
        let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
        let watch = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        loop {
            let mut ready = watch.ready(Interest::READABLE).await?;
            if ready.ready().is_read_closed() {
                return Ok(());
            }
            ready.clear_ready();
        }
    }

    fn is_same_process(&self) -> bool {
        match &self.handle {
            LeaderHandle::Pidfd(_) => true,
            LeaderHandle::Pid { start_ticks } => {
                let now = start_ticks_of(self.pid as u32);
                now.is_some() && (start_ticks.is_none() || now == *start_ticks)
            }
        }
    }
}

/// `kill(2)` by pid, for children without a pidfd.
fn kill_pid(pid: i32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill(2) with plain integers.
    let ret = unsafe { syscall(libc::SYS_kill, &[pid as usize, signal.as_raw() as usize]) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(())
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22).
fn start_ticks_of(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|stat| stat.start_ticks)
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        match std::mem::replace(&mut self.handle, Handle::Empty) {
            Handle::Pidfd(fd) => reaper::adopt_pidfd(fd),
            Handle::Registered(fd) => reaper::adopt_pidfd(fd.into_inner()),
            Handle::Pid => reaper::adopt_pid(self.pid),
            Handle::Empty => {}
        }
    }
}

/// Ends this process by `signal`'s default action: the handler this program set for it (tokio's
/// signal streams, say) is put aside, the signal unblocked and raised on this thread. Returns
/// only where that does not end the process (a signal whose default is to ignore or to stop,
/// or PID 1, which gets no default actions).
pub(crate) fn die_by(signal: Signal) {
    let raw = signal.as_raw();
    // SAFETY: sigaction(2) and sigprocmask(2) with valid, zero-initialised structs; the
    // process is about to end, so no handler of this program runs again.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(raw, &default, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, raw);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(raw);
    }
}

/// Stops this whole process (SIGSTOP) until something continues it (SIGCONT): how a program
/// that handles SIGTSTP itself finally lets a shell's job control suspend it.
pub(crate) fn stop_self() {
    // SAFETY: tgkill(2) to this very thread: it takes the SIGSTOP itself on the way out of the
    // call, so the call returns only once the process has been continued. (kill(2) to the
    // process could let another thread take it and this one run on for a moment.)
    unsafe {
        let pid = syscall(libc::SYS_getpid, &[]);
        let tid = syscall(libc::SYS_gettid, &[]);
        syscall(
            libc::SYS_tgkill,
            &[pid as usize, tid as usize, libc::SIGSTOP as usize],
        );
    }
}

pub(crate) use super::procfs::stat as proc_stat;

/// A pidfd for `pid`, if it still exists. The caller checks that it is the process it meant.
pub(super) fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()
}

/// Sends `signal` through `pidfd` (pidfd_send_signal(2)); no siginfo, no flags.
pub(super) fn pidfd_send_signal(pidfd: &impl AsFd, signal: Signal) -> io::Result<()> {
    pidfd_signal_raw(pidfd, signal.as_raw(), 0)
}

/// Whether the process behind `pidfd` is not reaped yet (alive or a zombie).
pub(super) fn unreaped(pidfd: &impl AsFd) -> bool {
    // Signal 0 only checks; EPERM: it exists, and is not ours to signal.
    match pidfd_signal_raw(pidfd, 0, 0) {
        Ok(()) => true,
        Err(err) => err.raw_os_error() == Some(libc::EPERM),
    }
}

/// pidfd_send_signal(2) of signal number `signo` (0: a check only) with `flags`; no siginfo.
pub(super) fn pidfd_signal_raw(pidfd: &impl AsFd, signo: i32, flags: usize) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call; plain integers otherwise.
    let ret = unsafe {
        syscall(
            libc::SYS_pidfd_send_signal,
            &[pidfd.as_fd().as_raw_fd() as usize, signo as usize, 0, flags],
        )
    };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(())
}

/// Sends `signal` through `pidfd`, then, with `and_continue`, SIGCONT, so a stopped process acts
/// on it at once. The result is that of the first signal; the second matters only if it landed.
pub(super) fn deliver(pidfd: &impl AsFd, signal: Signal, and_continue: bool) -> io::Result<()> {
    pidfd_send_signal(pidfd, signal)?;
    if and_continue {
        let _ = pidfd_send_signal(pidfd, Signal::CONT);
    }
    Ok(())
}

/// Delivers `signal` (see [`deliver`]) to each of `pids` that `open_verified` gives a pidfd for:
/// the caller's proof that the process, once its pidfd was open, is still the one it means.
/// Returns the pids that got it.
pub(super) fn signal_each(
    pids: Vec<u32>,
    open_verified: impl Fn(u32) -> Option<OwnedFd>,
    signal: Signal,
    and_continue: bool,
) -> Vec<u32> {
    let mut signalled = Vec::new();
    for pid in pids {
        let Some(pidfd) = open_verified(pid) else {
            continue;
        };
        if deliver(&pidfd, signal, and_continue).is_ok() {
            signalled.push(pid);
        }
    }
    signalled
}

#[derive(Clone, Copy)]
pub(super) enum Target {
    Pidfd(i32),
    Pid(i32),
}

/// `waitid(2)` for exited children, through the raw syscall because it also returns rusage.
/// `Ok(None)`: nothing has exited yet (with `WNOHANG`).
pub(super) fn waitid(target: Target, extra_flags: i32) -> io::Result<Option<Reaped>> {
    let (idtype, id) = match target {
        Target::Pidfd(fd) => (P_PIDFD, fd as usize),
        Target::Pid(pid) => (libc::P_PID as usize, pid as usize),
    };
    // SAFETY: all-zero is a valid bit pattern for these plain C structs.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid with valid pointers to a siginfo_t and a rusage.
        let ret = unsafe {
            syscall(
                libc::SYS_waitid,
                &[
                    idtype,
                    id,
                    &mut info as *mut _ as usize,
                    (libc::WEXITED | extra_flags) as usize,
                    &mut usage as *mut _ as usize,
                ],
            )
        };
        match ret {
            0 => break,
            r if r == -(libc::EINTR as isize) => continue,
            r => return Err(io::Error::from_raw_os_error(-r as i32)),
        }
    }
    // SAFETY: waitid filled `info` for a child event (or left it zeroed with WNOHANG).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    let end = end_of(info.si_code, status)?;
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    Ok(Some(Reaped {
        end,
        user_time: time(usage.ru_utime),
        system_time: time(usage.ru_stime),
        max_rss_bytes: own_peak(usage.ru_maxrss),
    }))
}

/// A child's peak resident memory (`ru_maxrss`, KiB) where it is the child's own. A child that
/// shared this process's memory until exec (every spawn path but a plain fork), or a copy of it
/// (a fork), has that memory's peak counted in its own (exec(2) records the old image's peak),
/// so a figure not above this process's own peak may be this process's: unknown.
fn own_peak(child_kib: libc::c_long) -> Option<u64> {
    // SAFETY: an all-zero rusage is valid; getrusage(2) fills it for this process.
    let mut own: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
    (ret == 0 && child_kib > own.ru_maxrss).then(|| child_kib as u64 * 1024)
}

/// How a child ended, from `waitid`'s `si_code` and `si_status`. A code or signal number this
/// crate does not know is an error, never a guess.
fn end_of(code: i32, status: i32) -> io::Result<End> {
    match code {
        libc::CLD_EXITED => Ok(End::Exited(status)),
        libc::CLD_KILLED | libc::CLD_DUMPED => match Signal::from_raw(status) {
            Some(signal) => Ok(End::Signaled {
                signal,
                core_dumped: code == libc::CLD_DUMPED,
            }),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("waitid reported a child killed by signal {status}, which is no signal"),
            )),
        },
        code => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("waitid reported a child event {code} that is no exit (status {status})"),
        )),
    }
}

/// Reaps a child that is known to have exited (or to be about to), blocking briefly.
pub(super) fn reap_now(pid: i32, pidfd: Option<&OwnedFd>) -> io::Result<Option<Reaped>> {
    let target = match pidfd {
        Some(fd) => Target::Pidfd(fd.as_fd().as_raw_fd()),
        None => Target::Pid(pid),
    };
    waitid(target, 0)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn an_unknown_end_is_an_error_not_a_kill() {
        assert!(matches!(end_of(libc::CLD_EXITED, 3), Ok(End::Exited(3))));
        assert!(matches!(
            end_of(libc::CLD_DUMPED, libc::SIGSEGV),
            Ok(End::Signaled { signal, core_dumped: true }) if signal == Signal::SEGV
        ));
        for (code, status) in [(libc::CLD_KILLED, 0), (libc::CLD_KILLED, 65), (99, 9)] {
            let err = end_of(code, status).expect_err("no such end");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }
}
