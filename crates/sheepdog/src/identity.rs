//! `ProcessRef` and `tree`: addressing any process safely across pid reuse, and seeing a tree.
//!
//! A pid names a process only until it is reaped; then the kernel may give it to another. A
//! `ProcessRef` adds what does not repeat: the start time in clock ticks since boot
//! (`/proc/PID/stat` field 22) and the boot id. Before it acts, it opens a pidfd for the pid and
//! then checks the start time: the pidfd pins the process it was opened for, so once the check
//! passes, no window remains in which the pid could be reused under it.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;

use crate::signal::Signal;
use crate::status::{End, ExitStatus, ResourceUsage};
use crate::sys;

/// A process's identity, safe to keep and to write down: pid, start time and boot id.
///
/// Two refs are equal when all three are. A start time or boot id that could not be read is
/// unknown (`None`), and an unknown is never taken for "reused": such a ref addresses whatever
/// has its pid.
///
/// With the `serde` feature it serializes as `{"pid": 42, "start_ticks": 12345, "boot_id":
/// "..."}`.
///
/// ```
/// let me = sheepdog::ProcessRef::of(std::process::id())?;
/// assert!(me.is_alive());
/// assert_eq!(me, sheepdog::ProcessRef::of(std::process::id())?);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProcessRef {
    pid: u32,
    start_ticks: Option<u64>,
    boot_id: Option<String>,
}

impl ProcessRef {
    /// The process that has `pid` now; `NotFound` when none has.
    ///
    /// ```
    /// let init = sheepdog::ProcessRef::of(1)?;
    /// assert_eq!(init.pid(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn of(pid: u32) -> io::Result<ProcessRef> {
        let start_ticks = match sys::stat(pid) {
            Some(stat) => Some(stat.start_ticks),
            // Unreadable (a /proc mounted with hidepid, say), or gone: a pidfd tells which.
            None => {
                sys::Leader::open(pid).map_err(|err| not_found(pid, err))?;
                None
            }
        };
        Ok(ProcessRef {
            pid,
            start_ticks,
            boot_id: sys::boot_id().map(str::to_owned),
        })
    }

    pub(crate) fn from_parts(pid: u32, start_ticks: Option<u64>) -> ProcessRef {
        ProcessRef {
            pid,
            start_ticks,
            boot_id: sys::boot_id().map(str::to_owned),
        }
    }

    /// The process id.
    ///
    /// ```
    /// assert_eq!(sheepdog::ProcessRef::of(std::process::id())?.pid(), std::process::id());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the process started, in clock ticks after boot (`/proc/PID/stat` field 22), if it
    /// could be read.
    ///
    /// ```
    /// assert!(sheepdog::ProcessRef::of(std::process::id())?.start_ticks().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_ticks(&self) -> Option<u64> {
        self.start_ticks
    }

    /// The id of the boot the process ran in (`/proc/sys/kernel/random/boot_id`), if known.
    ///
    /// ```
    /// let me = sheepdog::ProcessRef::of(std::process::id())?;
    /// println!("{:?}", me.boot_id());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn boot_id(&self) -> Option<&str> {
        self.boot_id.as_deref()
    }

    /// Whether this very process still runs: `false` once it has exited (a zombie included),
    /// or when its pid now belongs to another process.
    ///
    /// ```
    /// assert!(sheepdog::ProcessRef::of(std::process::id())?.is_alive());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.open()
            .is_ok_and(|(_, stat)| stat.is_none_or(|stat| !matches!(stat.state, 'Z' | 'X')))
    }

    /// Sends `signal` to this process, through a pidfd opened and then checked against the
    /// start time, so a process that reused the pid is never signalled. `NotFound` when it is
    /// gone or its pid was reused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("30").spawn()?;
    /// child.process_ref().signal(sheepdog::Signal::TERM)?;
    /// assert_eq!(child.wait().await?.signal(), Some(sheepdog::Signal::TERM));
    /// # Ok(()) }
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let (handle, _) = self.open()?;
        handle.signal(signal, false).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot send {signal} to process {}: {err}", self.pid),
            )
        })
    }

    /// Waits for this process to exit, whoever's child it is (by pidfd: no polling). Returns
    /// how it ended where the kernel tells: on Linux 6.15 or later, once its parent has reaped
    /// it (waited for up to 200 ms after the exit); resource usage is not reported for a
    /// process that is not ours (CPU times read zero, peak memory `None`). Else `None`. `NotFound` if it was already
    /// gone when called. Cancel-safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("0.1").spawn()?;
    /// let process = child.process_ref();
    /// let (ended, status) = tokio::join!(process.exited(), child.wait());
    /// ended?;
    /// assert!(status?.success());
    /// # Ok(()) }
    /// ```
    pub async fn exited(&self) -> io::Result<Option<ExitStatus>> {
        let (handle, _) = self.open()?;
        handle.exited().await?;
        if handle.exit_code().is_none() {
            // The kernel keeps the status for us once the parent has reaped it, which a
            // parent that waits does at once; one that does not leaves a zombie, and no status.
            let _ = tokio::time::timeout(REAP_GRACE, handle.reaped()).await;
        }
        Ok(handle.exit_code().and_then(status_from_wait))
    }

    /// A pidfd for this process and what `/proc` says of it, checked to be this process.
    fn open(&self) -> io::Result<(sys::Leader, Option<sys::Stat>)> {
        let gone = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "process {} is gone (its pid may have been reused)",
                    self.pid
                ),
            )
        };
        if let (Some(ours), Some(now)) = (self.boot_id.as_deref(), sys::boot_id()) {
            if ours != now {
                return Err(gone());
            }
        }
        let handle = sys::Leader::open(self.pid).map_err(|err| not_found(self.pid, err))?;
        // Read after the pidfd was opened: the process it pins is the one described.
        let stat = sys::stat(self.pid);
        match (self.start_ticks, stat) {
            (Some(ours), Some(now)) if ours != now.start_ticks => Err(gone()),
            _ => Ok((handle, stat)),
        }
    }
}

/// How long [`ProcessRef::exited`] waits for the parent to reap the process it saw exit.
const REAP_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

fn not_found(pid: u32, err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::ESRCH) {
        io::Error::new(io::ErrorKind::NotFound, format!("no process {pid}"))
    } else {
        io::Error::new(err.kind(), format!("cannot open process {pid}: {err}"))
    }
}

/// An exit status from a wait status (as `waitpid(2)` reports it); `None` for a signal this
/// crate does not know (never a guess).
fn status_from_wait(wait: i32) -> Option<ExitStatus> {
    let end = if wait & 0x7f == 0 {
        End::Exited((wait >> 8) & 0xff)
    } else {
        End::Signaled {
            signal: Signal::from_raw(wait & 0x7f)?,
            core_dumped: wait & 0x80 != 0,
        }
    };
    Some(ExitStatus {
        end,
        usage: ResourceUsage::default(),
        timed_out: false,
    })
}

/// One process of a [`tree`]: where it sits and what it runs.
///
/// ```
/// let me = sheepdog::ProcessRef::of(std::process::id())?;
/// let info = &sheepdog::tree(&me)?[0];
/// assert_eq!(info.pid, std::process::id());
/// assert_eq!(info.depth, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The process id.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// Its state letter, as in `/proc/PID/stat`: `R` running, `S` sleeping, `T` stopped, `Z`
    /// zombie, ...
    pub state: char,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
    /// Its command line (its name in brackets when it has none, as `ps` shows it).
    pub command: Vec<OsString>,
    /// Its identity, to address it later.
    pub process: ProcessRef,
    /// How far below the root of the tree: 0 for the root, 1 for its children, ...
    pub depth: usize,
}

impl ProcessInfo {
    fn read(pid: u32, depth: usize) -> Option<ProcessInfo> {
        let stat = sys::stat(pid)?;
        Some(ProcessInfo {
            pid,
            ppid: stat.ppid,
            pgid: stat.pgid,
            sid: stat.sid,
            state: stat.state,
            start_ticks: stat.start_ticks,
            command: sys::command_line(pid),
            process: ProcessRef::from_parts(pid, Some(stat.start_ticks)),
            depth,
        })
    }
}

/// The process `root` and everything below it now: the root, then its children, then
/// grandchildren (breadth first; siblings by pid). Children come from
/// `/proc/PID/task/*/children`, or from one scan of every process's parent where the kernel
/// lacks that file. A snapshot: the tree may change while it is read, and processes that exit
/// meanwhile are left out. `NotFound` if `root` is gone or its pid was reused.
///
/// Reads `/proc`: call it off the async runtime's threads for big trees
/// (`tokio::task::spawn_blocking`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let child = sheepdog::Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn()?;
/// # while sheepdog::tree(&child.process_ref())?.len() < 3 { tokio::task::yield_now().await }
/// for info in sheepdog::tree(&child.process_ref())? {
///     println!("{:indent$}{} {:?}", "", info.pid, info.command, indent = 2 * info.depth);
/// }
/// # Ok(()) }
/// ```
pub fn tree(root: &ProcessRef) -> io::Result<Vec<ProcessInfo>> {
    let (_pinned, _) = root.open()?;
    let mut by_parent: Option<HashMap<u32, Vec<u32>>> = None;
    let mut infos = Vec::new();
    let mut queue = VecDeque::from([(root.pid, 0)]);
    while let Some((pid, depth)) = queue.pop_front() {
        let Some(info) = ProcessInfo::read(pid, depth) else {
            continue; // exited meanwhile
        };
        if depth == 0 && root.start_ticks.is_some_and(|t| t != info.start_ticks) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} is gone (its pid was reused)"),
            ));
        }
        let mut children = match sys::children(pid) {
            Some(children) => children,
            None => by_parent
                .get_or_insert_with(parents)
                .get(&pid)
                .cloned()
                .unwrap_or_default(),
        };
        children.sort_unstable();
        children.dedup();
        queue.extend(children.into_iter().map(|child| (child, depth + 1)));
        infos.push(info);
    }
    Ok(infos)
}

/// Every process's children, from one scan of `/proc`.
fn parents() -> HashMap<u32, Vec<u32>> {
    let mut by_parent: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in sys::all_pids().unwrap_or_default() {
        if let Some(stat) = sys::stat(pid) {
            by_parent.entry(stat.ppid).or_default().push(pid);
        }
    }
    by_parent
}

/// The given processes as trees: each whose parent is not among them is a root (depth 0),
/// the others follow below their parents, breadth first.
pub(crate) fn forest(pids: &[u32]) -> Vec<ProcessInfo> {
    let mut infos: Vec<ProcessInfo> = pids
        .iter()
        .filter_map(|&pid| ProcessInfo::read(pid, 0))
        .collect();
    infos.sort_unstable_by_key(|info| info.pid);
    let present: std::collections::HashSet<u32> = infos.iter().map(|info| info.pid).collect();
    let mut below: HashMap<u32, Vec<ProcessInfo>> = HashMap::new();
    let mut queue = VecDeque::new();
    for info in infos {
        if present.contains(&info.ppid) && info.ppid != info.pid {
            below.entry(info.ppid).or_default().push(info);
        } else {
            queue.push_back(info);
        }
    }
    let mut ordered = Vec::with_capacity(present.len());
    while let Some(info) = queue.pop_front() {
        for mut child in below.remove(&info.pid).unwrap_or_default() {
            child.depth = info.depth + 1;
            queue.push_back(child);
        }
        ordered.push(info);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(status_from_wait(3 << 8).map(|s| s.code()), Some(Some(3)));
        let killed = status_from_wait(libc::SIGKILL).expect("known");
        assert_eq!(killed.signal(), Some(Signal::KILL));
        assert!(!killed.core_dumped());
        assert!(status_from_wait(libc::SIGSEGV | 0x80).is_some_and(|s| s.core_dumped()));
        assert!(
            status_from_wait(0x7f & 99).is_none(),
            "an unknown signal is no guess"
        );
    }

    #[test]
    fn a_ref_with_another_start_time_is_not_this_process() {
        let me = ProcessRef::of(std::process::id()).expect("self");
        let reused = ProcessRef {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let err = reused.signal(Signal::CONT).expect_err("never signalled");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let unknown = ProcessRef {
            start_ticks: None,
            ..me
        };
        assert!(unknown.is_alive(), "unknown is never taken for reused");
    }
}
