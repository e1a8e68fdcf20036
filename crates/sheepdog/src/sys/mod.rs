//! The platform layer: everything that talks to the kernel, behind one internal interface.
//!
//! The portable core (`command`, `child`, `herd`, `status`, ...) calls only what this module
//! exports. It hands `sys` plain data (a [`SpawnRequest`] built from a `Command`) and gets
//! plain data back ([`Reaped`], [`Stat`], [`SpawnError`], [`ContainerError`]), which it turns
//! into its public types (`ExitStatus`, `Error`) with their context. `sys` imports nothing of
//! the public layer but plain value types (`Signal`).
//!
//! Each platform is one module, `os` below, that provides every item of the list at the end of
//! this file, with the signatures the Linux module has: `linux/` (cgroup v2 or process-group
//! herds, pidfds, vfork-style clone3), and `unsupported.rs`, which compiles everywhere and
//! fails every call with [`io::ErrorKind::Unsupported`] (selected on other targets, or on
//! Linux with `RUSTFLAGS='--cfg sheepdog_unsupported'`, which CI checks). A new platform is a
//! new module providing the same list. Every `unsafe` block of the crate lives below this point.

// The unsupported backend fills in little of the shared types below.
#![cfg_attr(any(not(target_os = "linux"), sheepdog_unsupported), allow(dead_code))]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::signal::Signal;

#[cfg(all(target_os = "linux", not(sheepdog_unsupported)))]
mod linux;
#[cfg(all(target_os = "linux", not(sheepdog_unsupported)))]
use linux as os;
#[cfg(any(not(target_os = "linux"), sheepdog_unsupported))]
mod unsupported;
#[cfg(any(not(target_os = "linux"), sheepdog_unsupported))]
use unsupported as os;

/// How a child was created, from the strongest path to the weakest fallback.
///
/// The first spawn tries the strongest path; when the kernel or a sandbox (seccomp) refuses it,
/// the process falls back for good and says so once in a `tracing` warning.
/// [`Child::spawn_path`](crate::Child::spawn_path) tells which one a child got. The variants
/// are Linux's paths; another platform adds its own (the enum is `non_exhaustive`).
///
/// ```
/// # fn main() -> Result<(), sheepdog::Error> {
/// let child = sheepdog::Command::new("true").spawn()?;
/// println!("started through {:?}", child.spawn_path());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SpawnPath {
    /// `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD [| CLONE_INTO_CGROUP])`: the child is in its
    /// cgroup from its first instruction and is addressed by pidfd.
    Clone3,
    /// `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`: the child joins its cgroup by writing
    /// `cgroup.procs` before exec (slower when spawns are spaced out) and is addressed by pidfd.
    Clone,
    /// `clone(CLONE_VM | CLONE_VFORK)` with no pidfd: the child is addressed by pid, which is
    /// safe only because it stays unreaped until its `Child` collects it; waits use a thread.
    CloneWithoutPidfd,
}

/// A started child, with this process's ends of its pipes.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub process: Process,
    pub stdio: [Option<OwnedFd>; 3],
    pub path: SpawnPath,
    /// The terminal whose foreground the child took (see [`SpawnRequest::foreground`]).
    pub terminal: Option<Terminal>,
}

/// The environment changes of a spawn: a variable set (`Some`) or removed (`None`).
pub(crate) type EnvChanges = BTreeMap<OsString, Option<OsString>>;

/// What to start, as plain data: built by the core from a `Command`, borrowing from it.
#[derive(Debug, Clone)]
pub(crate) struct SpawnRequest<'a> {
    pub program: &'a OsStr,
    /// `argv[0]`, when it is not the program name.
    pub arg0: Option<&'a OsStr>,
    pub args: &'a [OsString],
    /// Whether the child starts from an empty environment instead of this process's.
    pub env_clear: bool,
    /// Changes to the environment; a platform may add its own (a herd's mark).
    pub env: Cow<'a, EnvChanges>,
    pub current_dir: Option<&'a Path>,
    /// stdin, stdout, stderr.
    pub stdio: [SpawnStdio<'a>; 3],
    /// `(number in the child, descriptor)` pairs to pass on.
    pub passed_fds: &'a [(RawFd, Arc<OwnedFd>)],
    /// Whether the child takes the controlling terminal's foreground.
    pub foreground: bool,
    /// The child's process group: `Some(0)` a new one, `Some(pgid)` that one, `None` the
    /// container's choice.
    pub process_group: Option<i32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl<'a> SpawnRequest<'a> {
    /// `program` with no arguments, this process's environment and inherited stdio.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new(program: &'a OsStr) -> SpawnRequest<'a> {
        SpawnRequest {
            program,
            arg0: None,
            args: &[],
            env_clear: false,
            env: Cow::Owned(EnvChanges::new()),
            current_dir: None,
            stdio: [SpawnStdio::Inherit; 3],
            passed_fds: &[],
            foreground: false,
            process_group: None,
            uid: None,
            gid: None,
        }
    }

    /// The environment variable `key` as the child will see it, if it was set or removed.
    pub(crate) fn env_override(&self, key: &OsStr) -> Option<Option<&OsStr>> {
        self.env.get(key).map(|value| value.as_deref())
    }
}

/// Where one of a child's stdin, stdout, stderr goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SpawnStdio<'a> {
    Inherit,
    Null,
    /// A new pipe, whose other end is returned in [`Spawned`]'s `stdio`.
    Piped,
    Fd(BorrowedFd<'a>),
    /// Wherever stdout goes.
    MergeIntoStdout,
}

/// Why a spawn failed; the core adds the program's name (`Error`).
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// No such program: `searched_path` is the `PATH` searched for a name without a `/`.
    NotFound {
        searched_path: Option<OsString>,
        interpreter: Option<PathBuf>,
        missing_interpreter: Option<PathBuf>,
        looked_in: Option<PathBuf>,
    },
    /// The file `path` exists but cannot be executed.
    NotExecutable { path: PathBuf, source: io::Error },
    /// The request's working directory could not be entered.
    WorkingDirectory(io::Error),
    /// A string of the request (named here) contains a NUL byte.
    NulByte(String),
    /// Any other OS failure, with what was being done.
    Os {
        action: &'static str,
        source: io::Error,
    },
}

impl SpawnError {
    /// An OS error met while doing `action`.
    pub(crate) fn os(action: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
        move |source| SpawnError::Os { action, source }
    }
}

/// Why no container of the strongest kind was made.
#[derive(Debug)]
pub(crate) enum ContainerError {
    /// None can be had here (no mount, no permission): a reason to fall back.
    Unavailable(String),
    /// Making one failed (too many open files, out of memory, ...): an error to report.
    Failed { context: String, source: io::Error },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Exited(i32),
    Signaled { signal: Signal, core_dumped: bool },
}

/// What the kernel reported as it reaped a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub end: End,
    pub user_time: Duration,
    pub system_time: Duration,
    /// The child's own peak resident memory, where it can be told from this process's.
    pub max_rss_bytes: Option<u64>,
}

/// What the platform says of any process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `R`, `S`, `D`, `T` (stopped), `t`, `Z` (zombie), `X` (dead), `I`, ...
    pub state: char,
    pub ppid: u32,
    pub pgid: i32,
    pub sid: i32,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: u64,
}

impl Stat {
    /// Whether the process has exited (a zombie, or dead and being reaped).
    pub(crate) fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

// What each platform provides (`os`): the whole interface the core uses.

/// Every process id on the host.
pub(crate) use os::all_pids;
/// How much background work (reaping, cgroup removal) is still to do (tests).
pub(crate) use os::background_work;
/// This boot's id, so that a pid and start time from another boot are told apart.
pub(crate) use os::boot_id;
/// The children of process `pid`.
pub(crate) use os::children;
/// The command line of process `pid`.
pub(crate) use os::command_line;
/// Ends this process by a signal's default action (returns where that does not end it).
pub(crate) use os::die_by;
/// Makes this process put new herds where no owner-death guard holds them (tests).
pub(crate) use os::force_homeless;
/// Makes this process use a spawn path no stronger than the given one (tests).
pub(crate) use os::force_spawn_path;
/// Whether this process is the init of a pid namespace (whose death ends every process in it).
pub(crate) use os::namespace_init;
/// A new pipe, `(read end, write end)`, both close-on-exec.
pub(crate) use os::pipe;
/// Faults in a buffer's spare capacity before a read fills it.
pub(crate) use os::populate;
/// Appends what a non-blocking pipe holds now to a buffer's spare capacity (`Ok(0)`: the end).
pub(crate) use os::read_now;
/// Sets a pipe's kernel buffer size.
pub(crate) use os::resize_pipe;
/// Makes the sentinel take an errno as its next receive's result (tests).
pub(crate) use os::sentinel_inject_receive_error;
/// The pid of the owner-death sentinel, starting it if none runs (tests).
pub(crate) use os::sentinel_pid;
/// Makes reads of a descriptor return `WouldBlock` instead of waiting.
pub(crate) use os::set_nonblocking;
/// Starts a request outside any container (tests: into an open cgroup and a process group).
pub(crate) use os::spawn_into;
/// What the platform says of process `pid` ([`Stat`]), `None` once it is gone.
pub(crate) use os::stat;
/// Stops this whole process until something continues it.
pub(crate) use os::stop_self;
/// A new [`StopWatch`] and the switch whose drop ends [`wait_readable`] calls on it.
pub(crate) use os::stop_switch;
/// Why herds made here do not die with this process when it is killed.
pub(crate) use os::unguarded_reason;
/// Waits on a plain thread until a pipe is readable (`true`) or its stop switch is dropped.
pub(crate) use os::wait_readable;
/// Where herds' cgroups would be created, if this process may create them there; else why not.
pub(crate) use os::writable_cgroup_parent;
/// A herd's container: `cgroup(parent)` (or a [`ContainerError`]), `group(adopt)`, `spawn`,
/// `spawn_subtree`, and the verbs on its members (kill, signal, freeze, wait, count, usage).
pub(crate) use os::Container;
/// A handle that signals a process and sees it exit, never reaping it: `open(pid)`, `pid`,
/// `signal`, `has_exited`, `exited`, `reaped`, `exit_code` (a wait status).
pub(crate) use os::Leader;
/// One unreaped child of this process: `pid`, `wait`, `try_wait`, `status` (a [`Reaped`]),
/// `signal`, `leader`; dropping it reaps the child in the background.
pub(crate) use os::Process;
/// What [`wait_readable`] watches for the end of a read on another thread.
pub(crate) use os::StopWatch;
/// A child's own part of a container, stopped without its siblings.
pub(crate) use os::Subtree;
/// The terminal whose foreground a child holds; dropping it gives the foreground back.
pub(crate) use os::Terminal;
/// Whether this platform can start processes at all (`false`: every call fails `Unsupported`).
pub(crate) use os::SUPPORTED;
