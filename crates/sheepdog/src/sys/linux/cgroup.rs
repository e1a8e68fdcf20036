//! cgroup v2 as a herd's container: one directory per herd, below this process's own cgroup.
//!
//! Children enter it before exec (`CLONE_INTO_CGROUP`, see `clone.rs`), so every descendant is
//! a member whatever it does to its session or process group. The kernel kills the whole tree
//! with one write to `cgroup.kill` (5.14), reports emptiness in `cgroup.events` (`populated 0`,
//! announced as a priority event on the open file), and freezes it with `cgroup.freeze` (5.2).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::process::{open_pidfd, since_first_use};
use super::spawn::CgroupTarget;
use crate::signal::Signal;

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo` (not always
/// `/sys/fs/cgroup`: hybrid hosts mount it at `/sys/fs/cgroup/unified`).
/// Read once per process: mounts do not move under a running program in practice, and every
/// `Command::spawn` asks.
pub(crate) fn mount_point() -> io::Result<Option<PathBuf>> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(mount) = MOUNT.get() {
        return Ok(mount.clone());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| unescape(mount_point))
    });
    Ok(MOUNT.get_or_init(|| mount).clone())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// This process's own cgroup v2 directory (the `0::` line of `/proc/self/cgroup`), read once:
/// herds are made below the cgroup this process started in, even if it is moved later.
pub(crate) fn own_cgroup(mount: &Path) -> io::Result<PathBuf> {
    static OWN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(own) = OWN.get() {
        return Ok(own.clone());
    }
    let cgroup = fs::read_to_string("/proc/self/cgroup")?;
    let relative = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| io::Error::other("/proc/self/cgroup has no cgroup v2 (`0::`) line"))?;
    Ok(OWN
        .get_or_init(|| mount.join(relative.trim_start_matches('/')))
        .clone())
}

/// How many names [`Cgroup::create_in`] tries before it gives up.
const NAME_ATTEMPTS: usize = 8;

/// The longest a kill on a kernel without `cgroup.kill` waits for the freeze to complete.
const FREEZE_PATIENCE: Duration = Duration::from_secs(1);

/// One herd's cgroup, with the files it needs opened once.
#[derive(Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
    /// The path as `/proc/PID/cgroup` shows it: below the mount, with a leading `/`.
    relative: String,
    dir: OwnedFd,
    /// `cgroup.procs`, opened on first need (see [`CgroupTarget::procs`]).
    procs: OnceLock<OwnedFd>,
    events: OwnedFd,
    /// `cgroup.kill` (Linux 5.14); without it, members are killed one by one while frozen.
    /// Opened ahead, so that a kill needs no new descriptor (this process may be out of them).
    kill: Option<OwnedFd>,
    /// The watch of writes into it (see [`writes`]); `None`: not watched, never reused.
    watch: Option<i32>,
    /// `cpu.stat` (user, system) when it was handed on to another herd: a reused cgroup keeps
    /// counting, so its CPU time is counted from here. `None`: handed on, not read (yet).
    cpu_base: Option<(Duration, Duration)>,
    /// When the last spawn into it began, as `since_first_use` in ns, plus one (0: never).
    last_spawn: AtomicU64,
    /// Whether `cgroup.kill` was written: from then on a child enters by a `cgroup.procs` write
    /// (see [`CgroupTarget::join_by_write`]).
    killed: AtomicBool,
}

/// Opens the file `name` of the cgroup directory `dir`, close-on-exec.
pub(super) fn open_in(dir: impl AsFd, name: &str, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

impl Cgroup {
    /// Creates a new cgroup `<prefix>-<n>` below `parent` (inside the v2 hierarchy mounted at
    /// `mount`), readable and writable by this user only.
    pub(crate) fn create(mount: &Path, parent: &Path, prefix: &str) -> io::Result<Cgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let names =
            std::iter::repeat_with(|| format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        Cgroup::create_in(mount, parent, names)
    }

    /// Creates a new cgroup `<prefix>`, or `<prefix>-1`, `<prefix>-2`, ... if that exists.
    pub(crate) fn create_first(mount: &Path, parent: &Path, prefix: &str) -> io::Result<Cgroup> {
        let names =
            std::iter::once(prefix.to_owned()).chain((1..).map(|n| format!("{prefix}-{n}")));
        Cgroup::create_in(mount, parent, names)
    }

    /// Creates the first of `names` that does not exist yet below `parent`. A directory that
    /// exists is never taken over: it was left by an earlier process with this pid, or made by
    /// somebody else, and may hold processes or settings that are not this herd's. Gives up
    /// after [`NAME_ATTEMPTS`] names that exist.
    pub(crate) fn create_in(
        mount: &Path,
        parent: &Path,
        names: impl Iterator<Item = String>,
    ) -> io::Result<Cgroup> {
        let mut taken: Vec<String> = Vec::new();
        for name in names.take(NAME_ATTEMPTS) {
            let path = parent.join(&name);
            let relative = path
                .strip_prefix(mount)
                .map(|r| format!("/{}", r.display()))
                .map_err(|_| io::Error::other("the parent cgroup is outside the cgroup2 mount"))?;
            match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    taken.push(name);
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
            return Cgroup::open(path.clone(), relative).inspect_err(|_| {
                let _ = fs::remove_dir(&path);
            });
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cgroups {} already exist below {} (left by another process?)",
                taken.join(", "),
                parent.display()
            ),
        ))
    }

    fn open(path: PathBuf, relative: String) -> io::Result<Cgroup> {
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Relative to the directory: one path walk instead of one per file.
        let events = open_in(&dir, "cgroup.events", OFlags::RDONLY)?;
        let kill = match open_in(&dir, "cgroup.kill", OFlags::WRONLY) {
            Ok(fd) => Some(fd),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        Ok(Cgroup {
            path,
            relative,
            dir,
            procs: OnceLock::new(),
            events,
            kill,
            watch: None,
            cpu_base: Some((Duration::ZERO, Duration::ZERO)),
            last_spawn: AtomicU64::new(0),
            killed: AtomicBool::new(false),
        })
    }

    /// Watches writes into this cgroup from now on, so that it can be reused (see
    /// [`reusable`](Self::reusable)); without the watch it never is.
    pub(crate) fn watch_writes(&mut self) {
        self.watch = writes::watch(&self.path, true);
    }

    /// Whether the cgroup can serve another herd as if it were new: empty, not frozen, and since
    /// it was made nobody wrote a setting or limit into it (or into `home`, watched as
    /// `home_watch`, whose `cgroup.subtree_control` gives it controllers) nor made a cgroup
    /// inside it, nor killed it. Membership and `cgroup.freeze` writes do not count: the
    /// emptiness and the freeze state are read.
    pub(crate) fn reusable(&self, home_watch: i32) -> bool {
        let Some(watch) = self.watch else {
            return false;
        };
        let mut buf = [0u8; 256];
        let Ok(n) = rustix::io::pread(&self.events, &mut buf, 0) else {
            return false;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        event_field(&text, "populated") == Some(false)
            && event_field(&text, "frozen") != Some(true)
            && writes::untouched(&[watch, home_watch])
    }

    /// Marks a [`reusable`](Self::reusable) cgroup as handed on to another herd: its CPU time
    /// is unknown until [`renew`](Self::renew).
    pub(crate) fn hand_on(&mut self) {
        self.cpu_base = None;
    }

    /// Makes a cgroup handed on count its CPU time from here (`cpu.stat` read once; no process
    /// ran in it since it was handed on).
    pub(crate) fn renew(&mut self) -> io::Result<()> {
        if self.cpu_base.is_none() {
            self.cpu_base = Some(self.cpu_stat()?);
        }
        Ok(())
    }

    /// Notes a spawn into the cgroup beginning now; returns whether the one before it, or any
    /// spawn of this process into a cgroup, began less than `interval` ago.
    pub(crate) fn spawned_within(&self, interval: Duration) -> bool {
        static ANY: AtomicU64 = AtomicU64::new(0);
        let now = since_first_use().as_nanos() as u64 + 1;
        let recent = |last: u64| last != 0 && now.saturating_sub(last) < interval.as_nanos() as u64;
        let mine = recent(self.last_spawn.swap(now, Ordering::Relaxed));
        let any = recent(ANY.swap(now, Ordering::Relaxed));
        mine || any
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup's directory.
    pub(crate) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// `cgroup.kill`, where the kernel has it.
    pub(crate) fn kill_fd(&self) -> Option<BorrowedFd<'_>> {
        self.kill.as_ref().map(|fd| fd.as_fd())
    }

    /// Where a spawn puts its child to enter this cgroup; `pin` as in [`CgroupTarget`].
    pub(crate) fn target(&self, pin: bool) -> CgroupTarget<'_> {
        CgroupTarget {
            dir: self.dir.as_fd(),
            procs: &self.procs,
            pin,
            join_by_write: self.killed.load(Ordering::Relaxed),
        }
    }

    /// Whether any process is in the cgroup or below it.
    pub(crate) fn populated(&self) -> io::Result<bool> {
        Ok(self.event_field("populated")? == Some(true))
    }

    /// Reads `cgroup.events` from the start; reading also re-arms its priority event.
    fn event_field(&self, key: &str) -> io::Result<Option<bool>> {
        read_event_field(&self.events, key)
    }

    /// CPU time of every process that ran in the cgroup (or below it) for its current herd,
    /// exited ones included: `user_usec` and `system_usec` from `cpu.stat`.
    pub(crate) fn cpu_time(&self) -> io::Result<(Duration, Duration)> {
        let Some(base) = self.cpu_base else {
            return Err(io::Error::other(format!(
                "the CPU time of {} was not measured for this herd",
                self.path.display()
            )));
        };
        let (user, system) = self.cpu_stat()?;
        Ok((user.saturating_sub(base.0), system.saturating_sub(base.1)))
    }

    /// `user_usec` and `system_usec` from `cpu.stat`, since the cgroup was made.
    fn cpu_stat(&self) -> io::Result<(Duration, Duration)> {
        let file = open_in(&self.dir, "cpu.stat", OFlags::RDONLY)?;
        let mut buf = [0u8; 1024];
        let n = rustix::io::read(&file, &mut buf)?;
        let stat = String::from_utf8_lossy(&buf[..n]);
        let field = |key: &str| {
            stat.lines()
                .find_map(|line| line.strip_prefix(key)?.trim().parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_micros)
        };
        Ok((field("user_usec "), field("system_usec ")))
    }

    /// A counter file of a controller (`memory.peak`, `pids.peak`), or `None` where that
    /// controller is not enabled for this cgroup (the file does not exist).
    pub(crate) fn counter(&self, file: &str) -> io::Result<Option<u64>> {
        match fs::read_to_string(self.path.join(file)) {
            Ok(text) => text.trim().parse().map(Some).map_err(|err| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{file}: {err}"))
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The events file, for `poll(2)` with `POLLPRI` (used by the background cleaner).
    pub(crate) fn events_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Waits until `cgroup.events` says `key` is `want`, by event.
    pub(crate) async fn wait_for(&self, key: &str, want: bool) -> io::Result<()> {
        if self.event_field(key)?.unwrap_or(!want) == want {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "sheepdog: waiting for a herd needs a tokio runtime with IO enabled",
            ));
        }
        // An open file of its own per wait: the kernel keeps "seen the last event" per open
        // file, so concurrent waiters (a caller's and the lifecycle driver's) that shared one
        // would consume each other's events by reading, and miss the last.
        let fd = open_in(&self.dir, "cgroup.events", OFlags::RDONLY)?;
        // SAFETY: an OwnedFd stays open and unchanged while the AsyncFd owns it.
        let watch = unsafe { AsyncFd::register_with_interest(fd, Interest::PRIORITY) }
            .map_err(|err| err.into_parts().1)?;
        loop {
            if read_event_field(watch.get_ref(), key)?.unwrap_or(!want) == want {
                return Ok(());
            }
            let mut ready = watch.ready(Interest::PRIORITY).await?;
            ready.clear_ready();
        }
    }

    /// Kills every process in the cgroup and below: one write to `cgroup.kill`, or, on kernels
    /// without it (< 5.14), see [`kill_frozen`](Self::kill_frozen).
    pub(crate) fn kill(&self) -> io::Result<()> {
        match &self.kill {
            Some(kill) => {
                self.killed.store(true, Ordering::Relaxed);
                rustix::io::write(kill, b"1")?;
                Ok(())
            }
            None => self.kill_frozen(),
        }
    }

    /// Freezes the cgroup, waits (by event, at most [`FREEZE_PATIENCE`]) until the kernel
    /// reports it `frozen`, SIGKILLs every member, and thaws it. Only once frozen can no member
    /// be in the middle of a fork, whose child would miss the list and live on. A freeze that
    /// does not complete in time (a member in uninterruptible sleep) is an error, after the
    /// members that are listed were killed all the same.
    ///
    /// Blocks the calling thread until the freeze completes: the kernel's freezer stops each
    /// task at its next return to user space, which takes micro- to milliseconds; only kernels
    /// 5.2 to 5.13 take this path.
    fn kill_frozen(&self) -> io::Result<()> {
        self.set_frozen(true)?;
        let frozen = self.await_frozen(FREEZE_PATIENCE);
        let killed = self.signal_members(Signal::KILL, false).map(drop);
        // SIGKILL ends a frozen process too; the thaw is only so that the cgroup is not left
        // frozen for whatever the owner does with it next.
        let thawed = self.set_frozen(false);
        frozen.and(killed).and(thawed)
    }

    /// Waits until `cgroup.events` says `frozen 1`, by its priority event, for at most
    /// `patience`.
    fn await_frozen(&self, patience: Duration) -> io::Result<()> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            if self.event_field("frozen")? == Some(true) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the freeze of {} did not complete within {patience:?}",
                        self.path.display()
                    ),
                ));
            }
            let mut fds = [rustix::event::PollFd::new(
                &self.events,
                rustix::event::PollFlags::PRI,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Makes this cgroup look like one on a kernel without `cgroup.kill` (for tests of that
    /// path).
    #[cfg(test)]
    pub(crate) fn forget_kill_file(&mut self) {
        self.kill = None;
    }

    /// Writes `cgroup.freeze`; the freeze completes asynchronously (see `frozen`).
    pub(crate) fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        fs::write(
            self.path.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )
    }

    /// Every process in the cgroup and in the cgroups its members made below it.
    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        collect_members(&self.path, &mut pids)?;
        Ok(pids)
    }

    /// Sends `signal` to every member, each addressed through a pidfd that is verified to belong
    /// to this cgroup after it was opened, so a pid reused by a stranger is never signalled.
    /// `and_continue` follows it with SIGCONT through the same pidfd. Returns the pids that were
    /// signalled.
    pub(crate) fn signal_members(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        Ok(super::process::signal_each(
            self.members()?,
            |pid| self.open_member(pid),
            signal,
            and_continue,
        ))
    }

    /// A pidfd for `pid` if, once opened, it is still a member of this cgroup (or below it).
    pub(crate) fn open_member(&self, pid: u32) -> Option<OwnedFd> {
        let pidfd = open_pidfd(pid)?;
        let mut cgroup = String::new();
        fs::File::open(format!("/proc/{pid}/cgroup"))
            .and_then(|mut f| f.read_to_string(&mut cgroup))
            .ok()?;
        let theirs = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        let inside = theirs == self.relative
            || theirs
                .strip_prefix(self.relative.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        inside.then_some(pidfd)
    }

    /// Removes the cgroup, which must be empty and have no cgroup below it: one `rmdir`.
    pub(crate) fn remove_empty(&self) -> io::Result<()> {
        fs::remove_dir(&self.path)
    }

    /// Removes the cgroup and any cgroups members made below it; all must be empty.
    pub(crate) fn remove(&self) -> io::Result<()> {
        remove_tree(&self.path)
    }
}

fn collect_members(dir: &Path, pids: &mut Vec<u32>) -> io::Result<()> {
    let procs = match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(procs) => procs,
        // A nested cgroup removed while we walk.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_members(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// Removes `dir`, first alone (no descriptor needed, the usual case), then with the cgroups that
/// members made inside it.
fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Reads the line `key 0|1` of a `cgroup.events` file open as `events`, from the start.
fn read_event_field(events: impl AsFd, key: &str) -> io::Result<Option<bool>> {
    let mut buf = [0u8; 256];
    let n = rustix::io::pread(events, &mut buf, 0)?;
    let text = std::str::from_utf8(&buf[..n]).map_err(io::Error::other)?;
    Ok(event_field(text, key))
}

/// The line `key 0|1` of `cgroup.events` text.
fn event_field(text: &str, key: &str) -> Option<bool> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then_some(v.trim() == "1")
    })
}

/// Writes into herd cgroups since they were made, seen through one inotify instance for the
/// process: a cgroup is reused for another herd only if nobody set anything in it. One read of
/// the instance (non-blocking, usually finding nothing) per reuse; the watches go with the
/// directories. An overflowed queue makes every watched cgroup count as written.
pub(crate) mod writes {
    use std::collections::HashSet;
    use std::os::fd::OwnedFd;
    use std::path::Path;
    use std::sync::{Mutex, OnceLock};

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    struct Watcher {
        fd: OwnedFd,
        touched: Mutex<Touched>,
    }

    #[derive(Default)]
    struct Touched {
        /// The watches that saw a write that counts.
        watches: HashSet<i32>,
        overflowed: bool,
    }

    fn watcher() -> Option<&'static Watcher> {
        static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();
        WATCHER
            .get_or_init(|| {
                let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
                Some(Watcher {
                    fd,
                    touched: Mutex::new(Touched::default()),
                })
            })
            .as_ref()
    }

    /// Watches writes into the files of the cgroup `dir`, and with `inside` the making of a
    /// cgroup inside it; `None` where it cannot be watched (no inotify, too many watches).
    pub(crate) fn watch(dir: &Path, inside: bool) -> Option<i32> {
        let watcher = watcher()?;
        let mut flags = WatchFlags::MODIFY | WatchFlags::ATTRIB | WatchFlags::ONLYDIR;
        if inside {
            flags |= WatchFlags::CREATE | WatchFlags::MOVED_TO;
        }
        let watch = inotify::add_watch(&watcher.fd, dir, flags).ok()?;
        // The number of a watch that is gone may come back.
        crate::lock(&watcher.touched).watches.remove(&watch);
        Some(watch)
    }

    /// Whether none of `watches` saw a write that counts. The lock is held across the read so
    /// that a write read by another thread's call is counted before this one answers. A read
    /// that leaves room for one more event has emptied the queue: every write made before it
    /// was read, so there is no second read to find nothing.
    pub(crate) fn untouched(watches: &[i32]) -> bool {
        let Some(watcher) = watcher() else {
            return false;
        };
        let mut touched = crate::lock(&watcher.touched);
        let mut buf = [0u8; 8192];
        loop {
            let n = match rustix::io::read(&watcher.fd, &mut buf) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                // AGAIN: nothing to read.
                Err(_) => break,
            };
            note(&mut touched, &buf[..n]);
            if n + EVENT_MAX <= buf.len() {
                break;
            }
        }
        !touched.overflowed && watches.iter().all(|w| !touched.watches.contains(w))
    }

    /// The largest event: `struct inotify_event` (16 bytes) and a name of up to 255 bytes with
    /// its NUL, padded.
    const EVENT_MAX: usize = 16 + 256 + 16;

    /// Notes what a read of events says.
    fn note(touched: &mut Touched, mut events: &[u8]) {
        let field = |bytes: &[u8], at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        while let (Some(wd), Some(mask), Some(len)) =
            (field(events, 0), field(events, 4), field(events, 12))
        {
            let name_end = 16 + len as usize;
            let Some(name) = events.get(16..name_end) else {
                break;
            };
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            let (wd, flags) = (wd as i32, ReadFlags::from_bits_retain(mask));
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                touched.overflowed = true;
            } else if flags.contains(ReadFlags::IGNORED) {
                // The directory is gone, and its watch with it.
                touched.watches.remove(&wd);
            } else if counts(flags, name) {
                touched.watches.insert(wd);
            }
            events = &events[name_end..];
        }
    }

    /// Whether an event says that somebody changed what a new cgroup would have: any write but
    /// membership, freeze (whose state is read instead) and the kernel's notifications of its
    /// `*.events` files; a change of owner or mode; a cgroup made inside. A `cgroup.kill`
    /// write counts: the kernel (seen on 6.18) then SIGKILLs every child cloned into the
    /// cgroup with `CLONE_INTO_CGROUP`, its kill count no longer matching the one the clone
    /// read from the parent's cgroup.
    fn counts(flags: ReadFlags, name: &[u8]) -> bool {
        if flags.intersects(ReadFlags::ATTRIB | ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            return true;
        }
        if !flags.contains(ReadFlags::MODIFY) {
            return false;
        }
        !(matches!(name, b"cgroup.procs" | b"cgroup.threads" | b"cgroup.freeze")
            || name.ends_with(b".events")
            || name.ends_with(b".events.local"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn event(wd: i32, mask: ReadFlags, name: &str) -> Vec<u8> {
            let len = if name.is_empty() {
                0
            } else {
                (name.len() + 1).next_multiple_of(16)
            };
            let mut bytes = Vec::new();
            bytes.extend(wd.to_ne_bytes());
            bytes.extend(mask.bits().to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes.extend((len as u32).to_ne_bytes());
            let mut padded = name.as_bytes().to_vec();
            padded.resize(len, 0);
            bytes.extend(padded);
            bytes
        }

        #[test]
        fn settings_limits_and_cgroups_inside_count_membership_and_notifications_do_not() {
            let mut touched = Touched::default();
            let events: Vec<u8> = [
                event(1, ReadFlags::MODIFY, "cgroup.procs"),
                event(2, ReadFlags::MODIFY, "cgroup.max.descendants"),
                event(3, ReadFlags::MODIFY, "cgroup.events"),
                event(3, ReadFlags::MODIFY, "memory.events.local"),
                event(3, ReadFlags::MODIFY, "cgroup.freeze"),
                event(4, ReadFlags::CREATE | ReadFlags::ISDIR, "inner"),
                event(5, ReadFlags::ATTRIB, ""),
                event(6, ReadFlags::MODIFY, "cgroup.kill"),
            ]
            .concat();
            note(&mut touched, &events);
            let mut seen: Vec<i32> = touched.watches.iter().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, [2, 4, 5, 6]);
            assert!(!touched.overflowed);
            // A watch gone with its directory is forgotten; an overflow spoils every watch.
            note(&mut touched, &event(2, ReadFlags::IGNORED, ""));
            assert!(!touched.watches.contains(&2));
            note(&mut touched, &event(-1, ReadFlags::QUEUE_OVERFLOW, ""));
            assert!(touched.overflowed);
        }
    }
}

/// A cgroup of a unit test's own, below this process's cgroup, killed and removed with what
/// the test made inside it when dropped (also when the test fails).
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    pub(crate) struct TestParent {
        pub mount: PathBuf,
        pub path: PathBuf,
    }

    impl TestParent {
        /// `None` (with the reason printed) where this process may not make cgroups.
        pub(crate) fn new(test: &str) -> Option<TestParent> {
            let mount = match super::mount_point() {
                Ok(Some(mount)) => mount,
                _ => {
                    eprintln!("skipping {test}: no cgroup v2 mount");
                    return None;
                }
            };
            let own = super::own_cgroup(&mount).ok()?;
            let path = own.join(format!("sheepdog-unit-{test}-{}", std::process::id()));
            if let Err(err) = std::fs::create_dir(&path) {
                eprintln!("skipping {test}: cannot create {}: {err}", path.display());
                return None;
            }
            Some(TestParent { mount, path })
        }

        pub(crate) fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for TestParent {
        fn drop(&mut self) {
            let _ = std::fs::write(self.path.join("cgroup.freeze"), "0");
            let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
            let start = Instant::now();
            while super::remove_tree(&self.path).is_err()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::spawn::{spawn, ProcessGroup, SpawnTarget};
    use super::testing::TestParent;
    use super::*;
    use crate::sys::SpawnRequest;

    #[test]
    fn an_existing_directory_is_never_taken_over() {
        let Some(parent) = TestParent::new("exists") else {
            return;
        };
        let foreign = parent.path().join("taken");
        fs::create_dir(&foreign).expect("make the foreign cgroup");
        fs::write(foreign.join("cgroup.freeze"), "1").expect("a setting of its own");
        let names = ["taken", "free"].map(String::from).into_iter();
        let cgroup = Cgroup::create_in(&parent.mount, parent.path(), names).expect("create");
        assert_eq!(cgroup.path(), parent.path().join("free"));
        drop(cgroup);

        let err = Cgroup::create_in(
            &parent.mount,
            parent.path(),
            std::iter::once("taken".into()),
        )
        .expect_err("no free name");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("taken"), "{err}");
        assert_eq!(
            fs::read_to_string(foreign.join("cgroup.freeze")).expect("read"),
            "1\n",
            "the foreign cgroup is left as it was"
        );
    }

    /// Without `cgroup.kill` (Linux < 5.14), a kill freezes the cgroup and kills every member:
    /// forks in flight while the freeze spreads must not get away.
    #[test]
    fn a_kill_without_cgroup_kill_catches_forks_in_flight() {
        let Some(parent) = TestParent::new("freeze_kill") else {
            return;
        };
        for round in 0..20 {
            let mut cgroup = Cgroup::create(&parent.mount, parent.path(), "storm").expect("create");
            cgroup.forget_kill_file();
            // Sixteen shells that start long sleeps as fast as they can: without the wait for
            // the freeze, a few of their children got away within 20 rounds here.
            let args = [
                "-c".into(),
                "for i in $(seq 16); do (while :; do sleep 1000 & done) & done; wait".into(),
            ];
            let storm = SpawnRequest {
                args: &args,
                ..SpawnRequest::new("sh".as_ref())
            };
            let target = SpawnTarget {
                cgroup: Some(cgroup.target(true)),
                process_group: ProcessGroup::New,
            };
            let spawned = spawn(&storm, &target).expect("spawn the storm");
            let start = Instant::now();
            while cgroup.members().expect("members").len() < 50 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the storm started"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            cgroup.kill().expect("kill");
            let start = Instant::now();
            while cgroup.populated().expect("populated") {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "round {round}: {} members outlived the kill",
                    cgroup.members().map_or(0, |m| m.len())
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(cgroup.event_field("frozen").expect("events"), Some(false));
            drop(spawned);
            cgroup.remove().expect("remove");
        }
    }
}
