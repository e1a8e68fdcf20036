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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::process::open_pidfd;
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

/// One herd's cgroup, with the files it needs opened once.
#[derive(Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
    /// The path as `/proc/PID/cgroup` shows it: below the mount, with a leading `/`.
    relative: String,
    dir: OwnedFd,
    procs: OwnedFd,
    events: OwnedFd,
    /// `cgroup.kill` (Linux 5.14); without it, members are killed one by one while frozen.
    kill: Option<OwnedFd>,
}

impl Cgroup {
    /// Creates a new cgroup `<prefix>-<n>` below `parent` (inside the v2 hierarchy mounted at
    /// `mount`), readable and writable by this user only.
    pub(crate) fn create(mount: &Path, parent: &Path, prefix: &str) -> io::Result<Cgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Cgroup::create_named(mount, parent, &name)
    }

    /// Creates (or, left over by an earlier process with this name, reuses) cgroup `name`.
    pub(crate) fn create_named(mount: &Path, parent: &Path, name: &str) -> io::Result<Cgroup> {
        let path = parent.join(name);
        let relative = path
            .strip_prefix(mount)
            .map(|r| format!("/{}", r.display()))
            .map_err(|_| io::Error::other("the parent cgroup is outside the cgroup2 mount"))?;
        match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o700)) {
            Err(rustix::io::Errno::EXIST) => {}
            other => other?,
        }
        Cgroup::open(path.clone(), relative).inspect_err(|_| {
            let _ = fs::remove_dir(&path);
        })
    }

    fn open(path: PathBuf, relative: String) -> io::Result<Cgroup> {
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Relative to the directory: one path walk instead of one per file.
        let open = |name: &str, flags: OFlags| -> io::Result<OwnedFd> {
            Ok(rustix::fs::openat(
                &dir,
                name,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        let procs = open("cgroup.procs", OFlags::WRONLY)?;
        let events = open("cgroup.events", OFlags::RDONLY)?;
        let kill = match open("cgroup.kill", OFlags::WRONLY) {
            Ok(fd) => Some(fd),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        Ok(Cgroup {
            path,
            relative,
            dir,
            procs,
            events,
            kill,
        })
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
            procs: self.procs.as_fd(),
            pin,
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

    /// CPU time of every process that ever ran in the cgroup (or below it), exited ones
    /// included: `user_usec` and `system_usec` from `cpu.stat`.
    pub(crate) fn cpu_time(&self) -> io::Result<(Duration, Duration)> {
        let stat = fs::read_to_string(self.path.join("cpu.stat"))?;
        let field = |key: &str| {
            stat.lines()
                .find_map(|line| line.strip_prefix(key)?.trim().parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_micros)
        };
        Ok((field("user_usec "), field("system_usec ")))
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
        let fd = rustix::fs::openat(
            &self.dir,
            "cgroup.events",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
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
    /// without it, SIGKILL to each member while the cgroup is frozen (so none can fork away).
    pub(crate) fn kill(&self) -> io::Result<()> {
        if let Some(kill) = &self.kill {
            rustix::io::write(kill, b"1")?;
            return Ok(());
        }
        self.set_frozen(true)?;
        let result = self.signal_members(Signal::KILL, false).map(drop);
        self.set_frozen(false)?;
        result
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
    fn open_member(&self, pid: u32) -> Option<OwnedFd> {
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
    Ok(text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then_some(v.trim() == "1")
    }))
}
