//! Spawning: everything that can fail is prepared here in the parent (C strings, `PATH`
//! candidates, pipes), then [`clone_child`] runs the child, which only makes system calls.

use std::ffi::{c_char, CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags};
use rustix::pipe::{pipe_with, PipeFlags};

use super::cgroup::open_in;
use super::child::{ChildPlan, ChildReport, Stage};
use super::clone::{clone_reported, log_demotion, Cloned};
use super::process::{reap_now, Process};
use super::terminal::Terminal;
use crate::sys::{SpawnError, SpawnRequest, SpawnStdio, Spawned};

/// Where the child goes before it execs: the hooks a `Herd` uses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpawnTarget<'a> {
    pub cgroup: Option<CgroupTarget<'a>>,
    pub process_group: ProcessGroup,
}

/// A cgroup v2 directory, opened in advance, and its `cgroup.procs`, opened on first need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgroupTarget<'a> {
    pub dir: BorrowedFd<'a>,
    /// Held by the cgroup: only the paths that enter by a write need it, and every descriptor
    /// this process holds is copied and closed again by each spawn.
    pub procs: &'a OnceLock<OwnedFd>,
    /// Whether the spawning thread is pinned to its CPU for the clone (see
    /// `clone::PinnedToThisCpu`): `false` only where the kernel's notification of the cgroup
    /// turning populated is known to be deferred, so that no kworker wakes at the clone.
    pub pin: bool,
    /// Enter by the child's write of `cgroup.procs`, not by `CLONE_INTO_CGROUP`: the kernel
    /// SIGKILLs a child cloned into a cgroup once killed through `cgroup.kill` (it compares the
    /// cgroup's kill count with that of the parent's own cgroup; seen on 6.18), while a
    /// migration is not checked.
    pub join_by_write: bool,
}

impl<'a> CgroupTarget<'a> {
    /// `cgroup.procs`, opened now if it is not yet.
    pub fn procs(&self) -> io::Result<BorrowedFd<'a>> {
        if let Some(fd) = self.procs.get() {
            return Ok(fd.as_fd());
        }
        let fd = open_in(self.dir, "cgroup.procs", OFlags::WRONLY)?;
        // A concurrent opener may have won: its descriptor is kept, this one closed.
        Ok(self.procs.get_or_init(|| fd).as_fd())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessGroup {
    /// Stay in this process's group.
    #[default]
    Inherit,
    /// Lead a new group (its id is the child's pid).
    New,
    /// Join an existing group.
    Join(i32),
}

/// The action named in the error when the child cannot join its process group.
pub(crate) const JOIN_GROUP: &str = "join the process group";

/// Starts `req` as `target` says.
pub(crate) fn spawn(
    req: &SpawnRequest<'_>,
    target: &SpawnTarget<'_>,
) -> Result<Spawned, SpawnError> {
    let exec = ExecPlan::new(req)?;
    let os_err = SpawnError::os;
    let mut stdio = StdioPlan::new(req).map_err(|(action, err)| os_err(action)(err))?;
    let passed = passed_fds(req, &mut stdio.keep).map_err(os_err("prepare passed descriptors"))?;
    let terminal = req
        .foreground
        .then(Terminal::open)
        .transpose()
        .map_err(os_err("open the controlling terminal"))?;

    let mut report = ChildReport::default();
    let mut plan = ChildPlan {
        candidates: exec.candidates.pointers(),
        argv: exec.argv.pointers(),
        envp: exec.envp.pointers(),
        cwd: exec.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        stdio: stdio.child_fds,
        passed_fds: passed.as_ptr(),
        passed_fds_len: passed.len(),
        process_group: match process_group(req, target.process_group)? {
            ProcessGroup::Inherit => -1,
            ProcessGroup::New => 0,
            ProcessGroup::Join(pgid) => pgid,
        },
        uid: req.uid.map_or(-1, i64::from),
        gid: req.gid.map_or(-1, i64::from),
        terminal: terminal.as_ref().map_or(-1, Terminal::raw_fd),
        ..ChildPlan::new(&mut report)
    };
    let (cloned, report) = clone_reported(&mut plan, target.cgroup).map_err(os_err("clone"))?;
    log_demotion();
    // The child's ends of the pipes are closed here, so reads see EOF when the child exits.
    drop(stdio.keep);

    if report.stage != Stage::None {
        // The child exited with 127 before exec; reap it so no zombie is left.
        if let Err(err) = reap_now(cloned.pid, cloned.pidfd.as_ref()) {
            tracing::error!(pid = cloned.pid, %err, "sheepdog: cannot reap a failed child");
        }
        return Err(exec.failure(req, report));
    }
    tracing::trace!(pid = cloned.pid, path = ?cloned.path, "sheepdog: spawned");
    Ok(Spawned {
        process: Process::new(cloned.pid, cloned.pidfd),
        stdio: stdio.parent_ends,
        path: cloned.path,
        terminal,
    })
}

/// Starts `req` into the cgroup whose directory is open as `cgroup`, if any, and into process
/// group `pgid` (`Some(0)`: a new one led by the child), outside any herd.
pub(crate) fn spawn_into(
    req: &SpawnRequest<'_>,
    cgroup: Option<BorrowedFd<'_>>,
    pgid: Option<i32>,
) -> Result<Spawned, SpawnError> {
    let procs = OnceLock::new();
    let target = SpawnTarget {
        cgroup: cgroup.map(|dir| CgroupTarget {
            dir,
            procs: &procs,
            pin: true,
            join_by_write: false,
        }),
        process_group: match pgid {
            None => ProcessGroup::Inherit,
            Some(0) => ProcessGroup::New,
            Some(pgid) => ProcessGroup::Join(pgid),
        },
    };
    spawn(req, &target)
}

/// The process group the child takes: the request's own (`0` for a new one) in place of the
/// target's.
fn process_group(req: &SpawnRequest<'_>, target: ProcessGroup) -> Result<ProcessGroup, SpawnError> {
    match req.process_group {
        None => Ok(target),
        Some(0) => Ok(ProcessGroup::New),
        Some(pgid) if pgid > 0 => Ok(ProcessGroup::Join(pgid)),
        Some(pgid) => Err(SpawnError::Os {
            action: JOIN_GROUP,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{pgid} is no process group id (0 for a new group, or a positive id)"),
            ),
        }),
    }
}

/// Starts an anchor: a child that leads a new process group and exits at once, without exec.
/// Kept unreaped, its zombie holds the group id, so the id cannot be reused while it is kept.
///
/// Allocates nothing and logs nothing: the sentinel, which runs before `main` on raw system
/// calls, makes anchors too.
pub(crate) fn spawn_anchor() -> io::Result<Process> {
    let cloned = clone_anchor()?;
    Ok(Process::new(cloned.pid, cloned.pidfd))
}

/// The anchor's clone, for callers that keep it their own way (the sentinel keeps the pid).
pub(super) fn clone_anchor() -> io::Result<Cloned> {
    let mut report = ChildReport::default();
    let mut plan = ChildPlan {
        process_group: 0,
        ..ChildPlan::new(&mut report)
    };
    let (cloned, report) = clone_reported(&mut plan, None)?;
    if report.stage != Stage::None {
        // It could not take a group and exited with 127: reap it.
        let _ = reap_now(cloned.pid, cloned.pidfd.as_ref());
        return Err(io::Error::from_raw_os_error(report.errno));
    }
    Ok(cloned)
}

/// A null-terminated array of C strings, owning the strings.
struct CStringArray {
    strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStringArray {
    fn new(strings: Vec<CString>) -> CStringArray {
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        CStringArray { strings, pointers }
    }

    fn pointers(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

extern "C" {
    /// The C library's environment: a null-terminated array of `KEY=value` strings (environ(7)).
    static environ: *const *const c_char;
}

/// The environment the child gets.
///
/// This process's own variables are not copied: the child is handed libc's `environ` itself, or
/// pointers to its strings, as posix_spawn callers do. Copying them (through
/// `std::env::vars_os`) was a third of the parent's work before clone for an isolated spawn.
/// Reading `environ` without std's lock is sound under `std::env::set_var`'s contract: whoever
/// changes the environment while other threads read it through anything but `std::env` breaks
/// that contract, not the reader.
enum EnvPlan {
    /// This process's environment, unchanged.
    Inherited,
    /// The entries of this process's environment the command keeps, then the command's own.
    Built {
        _owned: Vec<CString>,
        pointers: Vec<*const c_char>,
    },
}

impl EnvPlan {
    fn new(req: &SpawnRequest<'_>) -> Result<EnvPlan, SpawnError> {
        if !req.env_clear && req.env.is_empty() {
            return Ok(EnvPlan::Inherited);
        }
        let mut pointers = Vec::new();
        if !req.env_clear {
            for_each_inherited(|entry| {
                // SAFETY: `entry` is one of `environ`'s strings, which stay put until the spawn
                // ends (see the type's doc).
                let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
                // Like std: the key ends at the first `=` after its first byte; an entry with
                // no `=` is not a variable and is left out.
                if let Some(eq) = bytes.iter().skip(1).position(|&b| b == b'=') {
                    if req.env_override(OsStr::from_bytes(&bytes[..=eq])).is_none() {
                        pointers.push(entry);
                    }
                }
            });
        }
        let owned = req
            .env
            .iter()
            .filter_map(|(key, value)| Some((key, value.as_ref()?)))
            .map(|(key, value)| {
                let mut entry = Vec::with_capacity(key.len() + value.len() + 2);
                entry.extend_from_slice(key.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(entry, &|| {
                    format!("environment variable `{}`", key.to_string_lossy())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        pointers.extend(owned.iter().map(|s| s.as_ptr()));
        pointers.push(ptr::null());
        Ok(EnvPlan::Built {
            _owned: owned,
            pointers,
        })
    }

    fn pointers(&self) -> *const *const c_char {
        match self {
            // SAFETY: reading the pointer libc keeps in `environ` (see the type's doc).
            EnvPlan::Inherited => unsafe { environ },
            EnvPlan::Built { pointers, .. } => pointers.as_ptr(),
        }
    }
}

/// A copy of `bytes` with room for the NUL that [`CString::new`] appends, so that it does not
/// grow (and move) the copy.
fn with_nul_room(bytes: &[u8]) -> Vec<u8> {
    let mut copy = Vec::with_capacity(bytes.len() + 1);
    copy.extend_from_slice(bytes);
    copy
}

/// `bytes` as a C string, or the error naming `what` holds a NUL byte.
fn c_string(bytes: Vec<u8>, what: &dyn Fn() -> String) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::NulByte(what()))
}

/// Calls `f` with each string of this process's environment, in order.
fn for_each_inherited(mut f: impl FnMut(*const c_char)) {
    // SAFETY: `environ` is null or a null-terminated array of C strings (see `EnvPlan`'s doc),
    // so no index read here is past its terminator.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            f(*entry);
            entry = entry.add(1);
        }
    }
}

/// The exec side of a spawn: paths to try, argv, envp, working directory.
struct ExecPlan {
    candidates: CStringArray,
    argv: CStringArray,
    envp: EnvPlan,
    cwd: Option<CString>,
    /// The `PATH` searched, when the program name has no `/`.
    searched_path: Option<OsString>,
}

/// When neither the command nor this process sets `PATH` (execvp(3)'s default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

impl ExecPlan {
    fn new(req: &SpawnRequest<'_>) -> Result<ExecPlan, SpawnError> {
        let program = req.program;
        let c = c_string;
        if program.is_empty() {
            return Err(SpawnError::NotFound {
                searched_path: None,
                interpreter: None,
                missing_interpreter: None,
                looked_in: None,
            });
        }

        let (candidates, searched_path) = if program.as_bytes().contains(&b'/') {
            (
                vec![c(with_nul_room(program.as_bytes()), &|| {
                    "the program name".into()
                })?],
                None,
            )
        } else {
            let path = match req.env_override(OsStr::new("PATH")) {
                Some(value) => value.map(OsStr::to_owned),
                None if req.env_clear => None,
                None => std::env::var_os("PATH"),
            }
            .unwrap_or_else(|| DEFAULT_PATH.into());
            let candidates = path
                .as_bytes()
                .split(|&b| b == b':')
                .map(|dir| {
                    let dir = if dir.is_empty() { b".".as_slice() } else { dir };
                    let mut full = Vec::with_capacity(dir.len() + program.len() + 2); // `/` and NUL
                    full.extend_from_slice(dir);
                    full.push(b'/');
                    full.extend_from_slice(program.as_bytes());
                    c(full, &|| "the program name".into())
                })
                .collect::<Result<Vec<_>, _>>()?;
            (candidates, Some(path))
        };

        let argv0 = req.arg0.unwrap_or(program);
        let argv = std::iter::once(argv0)
            .chain(req.args.iter().map(OsString::as_os_str))
            .enumerate()
            .map(|(i, arg)| c(with_nul_room(arg.as_bytes()), &|| format!("argument {i}")))
            .collect::<Result<Vec<_>, _>>()?;

        let envp = EnvPlan::new(req)?;

        let cwd = req
            .current_dir
            .map(|dir| {
                c(with_nul_room(dir.as_os_str().as_bytes()), &|| {
                    "the working directory".into()
                })
            })
            .transpose()?;

        Ok(ExecPlan {
            candidates: CStringArray::new(candidates),
            argv: CStringArray::new(argv),
            envp,
            cwd,
            searched_path,
        })
    }

    /// The error for a child that reported a failure before exec.
    fn failure(&self, req: &SpawnRequest<'_>, report: ChildReport) -> SpawnError {
        let program = req.program;
        let source = io::Error::from_raw_os_error(report.errno);
        let os = |action| SpawnError::Os {
            action,
            source: io::Error::from_raw_os_error(report.errno),
        };
        match report.stage {
            Stage::WorkingDirectory => SpawnError::WorkingDirectory(source),
            Stage::Exec => {
                let tried = self
                    .candidates
                    .strings
                    .get(report.candidate)
                    .map(|c| PathBuf::from(OsStr::from_bytes(c.as_bytes())))
                    .unwrap_or_default();
                match report.errno {
                    libc::ENOENT | libc::ENOTDIR => {
                        // ENOENT for a file that exists: its interpreter is what is missing.
                        let interpreter =
                            (report.errno == libc::ENOENT && tried.is_file()).then_some(tried);
                        let relative =
                            self.searched_path.is_none() && !program.as_bytes().starts_with(b"/");
                        SpawnError::NotFound {
                            missing_interpreter: interpreter.as_deref().and_then(shebang),
                            interpreter,
                            looked_in: relative
                                .then(|| {
                                    req.current_dir
                                        .map(PathBuf::from)
                                        .or_else(|| std::env::current_dir().ok())
                                })
                                .flatten(),
                            searched_path: self.searched_path.clone(),
                        }
                    }
                    libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM => {
                        SpawnError::NotExecutable {
                            path: tried,
                            source,
                        }
                    }
                    _ => os("execve"),
                }
            }
            Stage::ProcessGroup => os(JOIN_GROUP),
            Stage::Terminal => os("take the terminal's foreground"),
            Stage::Cgroup => os("join the cgroup"),
            Stage::Identity => os("set the user or group id"),
            Stage::Stdio => os("set up stdin/stdout/stderr"),
            Stage::PassedFd => os("pass a descriptor"),
            Stage::SignalMask => os("reset the signal mask"),
            Stage::None => os("spawn"),
        }
    }
}

/// The child's stdio descriptors, and the parent's ends of any pipes.
struct StdioPlan {
    child_fds: [RawFd; 3],
    /// Descriptors owned for the child's sake, closed once it has exec'd.
    keep: Vec<OwnedFd>,
    parent_ends: [Option<OwnedFd>; 3],
}

impl StdioPlan {
    fn new(req: &SpawnRequest<'_>) -> Result<StdioPlan, (&'static str, io::Error)> {
        const PIPE_ACTION: [&str; 3] = [
            "create a pipe for stdin",
            "create a pipe for stdout",
            "create a pipe for stderr",
        ];
        let mut plan = StdioPlan {
            child_fds: [-1; 3],
            keep: Vec::new(),
            parent_ends: [None, None, None],
        };
        for (i, stdio) in req.stdio.into_iter().enumerate() {
            let child_fd = match stdio {
                SpawnStdio::Inherit => continue,
                SpawnStdio::Null => {
                    let flags = OFlags::RDWR | OFlags::CLOEXEC;
                    rustix::fs::open("/dev/null", flags, Mode::empty())
                        .map_err(|e| ("open /dev/null", e.into()))?
                }
                SpawnStdio::Piped => {
                    let (read, write) =
                        pipe_with(PipeFlags::CLOEXEC).map_err(|e| (PIPE_ACTION[i], e.into()))?;
                    let (child, parent) = if i == 0 { (read, write) } else { (write, read) };
                    plan.parent_ends[i] = Some(parent);
                    child
                }
                SpawnStdio::Fd(fd) => {
                    // Moved above 0..2 so that installing one stdio fd cannot clobber another.
                    rustix::io::fcntl_dupfd_cloexec(fd, 3)
                        .map_err(|e| ("duplicate a stdio descriptor", e.into()))?
                }
                SpawnStdio::MergeIntoStdout => {
                    // Whatever stdout got (installed first), else the stdout this process has.
                    plan.child_fds[i] = match plan.child_fds[1] {
                        -1 => 1,
                        stdout => stdout,
                    };
                    continue;
                }
            };
            plan.child_fds[i] = keep_above_stdio(child_fd, &mut plan.keep)
                .map_err(|e| ("duplicate a stdio descriptor", e))?;
        }
        Ok(plan)
    }
}

/// Keeps `fd` alive for the spawn and returns its number, moving it to 3 or above first.
fn keep_above_stdio(fd: OwnedFd, keep: &mut Vec<OwnedFd>) -> io::Result<RawFd> {
    let fd = if fd.as_raw_fd() < 3 {
        rustix::io::fcntl_dupfd_cloexec(&fd, 3)?
    } else {
        fd
    };
    let raw = fd.as_raw_fd();
    keep.push(fd);
    Ok(raw)
}

/// `(source, target)` pairs for the request's passed descriptors, with every source moved where
/// no target or stdio number can clobber it before it is installed.
fn passed_fds(req: &SpawnRequest<'_>, keep: &mut Vec<OwnedFd>) -> io::Result<Vec<[RawFd; 2]>> {
    let pairs = req.passed_fds;
    let Some(highest) = pairs.iter().map(|&(target, _)| target).max() else {
        return Ok(Vec::new());
    };
    let mut moves = Vec::with_capacity(pairs.len());
    for (target, source) in pairs.iter().map(|(target, fd)| (*target, fd.as_fd())) {
        if target < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {target} is stdio: set it with stdin/stdout/stderr"),
            ));
        }
        let moved = rustix::io::fcntl_dupfd_cloexec(source, highest + 1)?;
        moves.push([moved.as_raw_fd(), target]);
        keep.push(moved);
    }
    Ok(moves)
}

/// The interpreter named on the `#!` line of the file at `path`, if it has one.
fn shebang(path: &std::path::Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let interpreter = line
        .split(|b| b.is_ascii_whitespace())
        .find(|word| !word.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(interpreter)))
}
