//! A herd's container on Linux: a cgroup (with the process groups its children lead as a
//! second net), or, where no cgroup can be had, a process group with this process as the
//! adopter of its orphans (`group.rs`).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::cgroup::{self, Cgroup};
use super::group::Group;
use super::keeper::Keeper;
use super::process::{deliver, open_pidfd, pidfd_send_signal, proc_stat};
use super::reaper;
use super::sentinel::{self, Guarded};
use super::spawn::{spawn, ProcessGroup, SpawnTarget, Spawned};
use crate::command::Command;
use crate::error::Error;
use crate::signal::Signal;

/// Where a herd's cgroup is created: below this process's own cgroup, or below a given one.
pub(crate) fn cgroup_parent(requested: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let mount = match cgroup::mount_point() {
        Ok(Some(mount)) => mount,
        Ok(None) => return Err("no cgroup v2 hierarchy is mounted".into()),
        Err(err) => return Err(format!("cannot read /proc/self/mountinfo: {err}")),
    };
    let parent = match requested {
        Some(parent) => parent.to_owned(),
        None => cgroup::own_cgroup(&mount)
            .map_err(|err| format!("cannot find this process's cgroup: {err}"))?,
    };
    Ok((mount, parent))
}

/// Why no cgroup herd was made.
#[derive(Debug)]
pub(crate) enum CgroupError {
    /// No cgroup can be had here (no mount, no permission): a reason to fall back.
    Unavailable(String),
    /// Making one failed (too many open files, out of memory, ...): an error to report.
    Failed { context: String, source: io::Error },
}

/// A herd's cgroup. Each child it starts leads a process group of its own (so a terminal's
/// Ctrl-C reaches the owner, not the children); those groups are the second net.
#[derive(Debug)]
pub(crate) struct CgroupHerd {
    /// Shared only with the reaper thread, once the herd is dropped.
    cgroup: Arc<Cgroup>,
    /// The parent of this process's home the herd's cgroup came from (`None`: no home, so not
    /// held by the sentinel).
    home_parent: Option<PathBuf>,
    /// The process groups the herd's children lead (their pids).
    groups: Mutex<Vec<i32>>,
    /// When the last spawn into the herd began (see [`NOTIFIED_RECENTLY`]).
    last_spawn: Mutex<Option<Instant>>,
    /// The process that keeps a cgroup made ahead populated until the herd first looks at its
    /// members (see `keeper.rs`); never a member itself.
    keeper: Mutex<Option<Keeper>>,
}

/// A spawn into a herd less than this after the one before it is not pinned. The kernel
/// notifies a change of `cgroup.events` at most once per 20 ms per cgroup (later ones wait for
/// a timer), so such a spawn's notification is deferred: no kworker wakes at the clone to push
/// the child onto another CPU, and the pin would cost its system calls (about 6 µs back to
/// back) for nothing. Half the kernel's interval leaves room for its clock's coarse ticks.
const NOTIFIED_RECENTLY: Duration = Duration::from_millis(10);

impl CgroupHerd {
    /// A new cgroup in this process's home below `parent` (see [`cgroup_parent`]).
    pub(crate) fn create(parent: Option<&Path>) -> Result<CgroupHerd, CgroupError> {
        let (mount, parent) = cgroup_parent(parent).map_err(CgroupError::Unavailable)?;
        let classify = |source: io::Error, below: &Path| {
            let context = format!("cannot create a cgroup below {}", below.display());
            match source.raw_os_error() {
                // This host or user may not make cgroups there: a fact, not a failure.
                Some(
                    libc::EACCES
                    | libc::EPERM
                    | libc::EROFS
                    | libc::ENOENT
                    | libc::ENOTDIR
                    | libc::EOPNOTSUPP,
                ) => CgroupError::Unavailable(format!("{context}: {source}")),
                // Out of descriptors, memory, or cgroups: this attempt failed.
                _ => CgroupError::Failed { context, source },
            }
        };
        let (cgroup, keeper, guarded) =
            herd_cgroup(&mount, &parent).map_err(|err| classify(err, &parent))?;
        Ok(CgroupHerd {
            cgroup: Arc::new(cgroup),
            home_parent: guarded.then_some(parent),
            groups: Mutex::new(Vec::new()),
            last_spawn: Mutex::new(None),
            keeper: Mutex::new(keeper),
        })
    }

    /// Whether the herd dies with this process even when it is killed (SIGKILL, abort).
    pub(crate) fn guarded(&self) -> bool {
        self.home_parent.is_some()
    }

    pub(crate) fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// Starts `cmd` inside the cgroup, leading a process group of its own.
    pub(crate) fn spawn(&self, cmd: &Command) -> Result<Spawned, Error> {
        let now = Instant::now();
        let recent = crate::lock(&self.last_spawn)
            .replace(now)
            .is_some_and(|last| now.duration_since(last) < NOTIFIED_RECENTLY);
        // A cgroup with a keeper is populated: no notification, so nothing to pin against.
        let kept = crate::lock(&self.keeper).is_some();
        let spawned = spawn(
            cmd,
            &SpawnTarget {
                cgroup: Some(self.cgroup.target(!recent && !kept)),
                process_group: ProcessGroup::New,
            },
        )?;
        let mut groups = self.lock_groups();
        // Forget groups that are gone, now and then, so a long-lived herd does not grow.
        if groups.len() >= 64 && groups.len().is_power_of_two() {
            groups.retain(|&pgid| group_exists(pgid));
        }
        groups.push(spawned.process.pid() as i32);
        Ok(spawned)
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        crate::lock(&self.groups)
    }

    /// Kills the keeper, if the herd still has one, and waits until it is gone: from here on
    /// the cgroup's population is the herd's.
    fn retire_keeper(&self) {
        let keeper = crate::lock(&self.keeper).take();
        if let Some(keeper) = keeper {
            keeper.retire();
        }
    }

    /// Kills the cgroup with one write, and, as a second net, members of the herd's process
    /// groups that moved themselves out of the cgroup.
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.retire_keeper();
        self.kill_all()
    }

    /// [`kill`](Self::kill), the keeper included.
    fn kill_all(&self) -> io::Result<()> {
        let strays = self.group_strays();
        let killed = self.cgroup.kill();
        for (_, pidfd) in strays {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        }
        killed
    }

    /// Sends `signal` (and then SIGCONT, with `and_continue`) to every member, and to the strays
    /// of the herd's process groups.
    pub(crate) fn signal_members(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        self.retire_keeper();
        let strays = self.group_strays();
        let mut signalled = self.cgroup.signal_members(signal, and_continue)?;
        for (pid, pidfd) in strays {
            if deliver(&pidfd, signal, and_continue).is_ok() {
                signalled.push(pid);
            }
        }
        Ok(signalled)
    }

    /// Kills what is left of the herd's process groups outside the cgroup.
    pub(crate) fn kill_strays(&self) {
        for (_, pidfd) in self.group_strays() {
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        }
    }

    /// Processes in the herd's process groups but outside its cgroup, with a pidfd for each.
    ///
    /// A group id is a pid, reused only once that process and its group are gone; so a group
    /// whose leader is still a member of the cgroup is ours. Candidates are taken only from such
    /// groups, each through a pidfd whose process is checked again after it was opened; only
    /// processes outside the cgroup are looked at. No live leader, or an empty cgroup, proves no
    /// group: those cases cost one `kill(pid, 0)` per group, or one read of `cgroup.events`.
    fn group_strays(&self) -> Vec<(u32, OwnedFd)> {
        // A group is ours only while its leader is a member: with no leader left (the usual
        // case when a herd is dropped), there is nothing to look for.
        let leaders_left = self.lock_groups().iter().any(|&pgid| process_exists(pgid));
        if !leaders_left || !self.cgroup.populated().unwrap_or(false) {
            return Vec::new();
        }
        let members: HashSet<u32> = self
            .cgroup
            .members()
            .unwrap_or_default()
            .into_iter()
            .collect();
        // A group whose leader (the child that made it) is still a member is ours.
        let owned: HashSet<i32> = self
            .lock_groups()
            .iter()
            .copied()
            .filter(|&pgid| members.contains(&(pgid as u32)))
            .collect();
        if owned.is_empty() {
            return Vec::new();
        }
        let in_owned = |pid: u32| process_group_of(pid).is_some_and(|g| owned.contains(&g));
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| !members.contains(&pid) && in_owned(pid))
            .filter_map(|pid| {
                let pidfd = open_pidfd(pid)?;
                in_owned(pid).then_some((pid, pidfd))
            })
            .collect()
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        self.retire_keeper();
        Ok(!self.cgroup.populated()?)
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        self.retire_keeper();
        self.cgroup.wait_for("populated", false).await
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        self.retire_keeper();
        self.cgroup.members()
    }

    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        self.cgroup.set_frozen(frozen)?;
        self.cgroup.wait_for("frozen", frozen).await
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        self.cgroup.set_frozen(false)
    }

    /// Kills everything at once; the cgroup is removed in the background once it is empty.
    pub(crate) fn dispose(self) {
        let keeper = crate::lock(&self.keeper).take();
        // A live keeper wakes the reaper thread, which watches it, when it dies at the kill
        // below; so the cgroup is handed over first, without a wake-up of its own (the keeper's
        // pidfd is then only closed: the reaper's duplicate reaps it).
        let quiet = keeper.as_ref().is_some_and(Keeper::alive);
        let keeper = keeper.and_then(Keeper::into_pidfd);
        // Make the next herd's cgroup now, after this herd's work rather than during the next.
        let mut refill = self
            .home_parent
            .clone()
            .map(|parent| Box::new(move || refill(&parent)) as reaper::Task);
        if quiet {
            reaper::adopt_cgroup_quietly(Arc::clone(&self.cgroup), refill.take());
        }
        // Without a keeper, an empty herd (the usual case at drop) has nothing to kill and
        // proves no stray.
        if keeper.is_some() || !matches!(self.cgroup.populated(), Ok(false)) {
            if let Err(err) = self.kill_all() {
                if quiet {
                    reaper::wake(); // no keeper's death will
                }
                tracing::error!(
                    path = %self.cgroup.path().display(), %err,
                    "sheepdog: cannot kill a dropped herd",
                );
            }
        }
        if !quiet {
            reaper::adopt_cgroup(self.cgroup, keeper, refill);
        }
    }
}

/// The process group of `pid`.
fn process_group_of(pid: u32) -> Option<i32> {
    proc_stat(pid).map(|stat| stat.pgid)
}

/// Whether process `pid` exists, zombie included.
fn process_exists(pid: i32) -> bool {
    exists(pid)
}

/// Whether any process is in group `pgid`.
fn group_exists(pgid: i32) -> bool {
    exists(-pgid)
}

/// `kill(target, 0)`, which signals nobody: whether the process (or, negative, the process
/// group) exists, also when it is not ours to signal (`EPERM`).
fn exists(target: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    let ret = unsafe { super::raw::syscall(libc::SYS_kill, &[target as isize as usize, 0]) };
    ret == 0 || ret == -(libc::EPERM as isize)
}

/// This process's home for herd cgroups below one parent: `parent/sheepdog-<pid>`, made on
/// the first herd there and handed once to the owner-death sentinel, which kills and removes the
/// whole home (every herd in it) when this process dies. It keeps a few cgroups made ahead on
/// the reaper thread, each with a keeper where one can be had — after a herd is dropped, so
/// that the `mkdir` and the clone neither delay nor compete with the making of the next herd.
struct Home {
    parent: PathBuf,
    mount: PathBuf,
    path: PathBuf,
    ready: Vec<(Cgroup, Option<Keeper>)>,
}

/// How many empty herd cgroups a home keeps ready.
const READY: usize = 2;

static HOMES: Mutex<Vec<Home>> = Mutex::new(Vec::new());

fn homes() -> std::sync::MutexGuard<'static, Vec<Home>> {
    crate::lock(&HOMES)
}

/// A new cgroup for a herd below `parent`, its keeper if it was made ahead with one, and
/// whether the sentinel guards it. Without a sentinel there is no home: herds go straight below
/// `parent`, unguarded, so that nothing is left behind at a normal exit.
fn herd_cgroup(mount: &Path, parent: &Path) -> io::Result<(Cgroup, Option<Keeper>, bool)> {
    let mut homes = homes();
    let index = match homes.iter().position(|home| home.parent == parent) {
        Some(index) => index,
        None => match make_home(mount, parent)? {
            Some(home) => {
                homes.push(home);
                homes.len() - 1
            }
            None => {
                let prefix = format!("sheepdog-{}-herd", std::process::id());
                return Ok((Cgroup::create(mount, parent, &prefix)?, None, false));
            }
        },
    };
    let home = &mut homes[index];
    let (cgroup, keeper) = match home.ready.pop() {
        Some(ready) => ready,
        None => (Cgroup::create(mount, &home.path, "herd")?, None),
    };
    Ok((cgroup, keeper, true))
}

/// Makes cgroups ahead for the home below `parent` (on the reaper thread).
fn refill(parent: &Path) {
    let (mount, path) = match homes().iter().find(|home| home.parent == parent) {
        Some(home) if home.ready.len() < READY => (home.mount.clone(), home.path.clone()),
        _ => return,
    };
    // Made without the lock held, so herds are not kept waiting for a mkdir.
    let Ok(cgroup) = Cgroup::create(&mount, &path, "herd") else {
        return;
    };
    let keeper = Keeper::start(cgroup.dir_fd());
    let mut homes = homes();
    match homes.iter_mut().find(|home| home.parent == parent) {
        Some(home) if home.ready.len() < READY => {
            home.ready.push((cgroup, keeper));
            if home.ready.len() < READY {
                let parent = parent.to_owned();
                reaper::run_later(move || refill(&parent));
            }
        }
        _ => {
            if let Some(keeper) = keeper {
                keeper.retire();
            }
            drop(cgroup.remove());
        }
    }
}

fn make_home(mount: &Path, parent: &Path) -> io::Result<Option<Home>> {
    if !sentinel::available() {
        return Ok(None);
    }
    let name = format!("sheepdog-{}", std::process::id());
    let home = Cgroup::create_named(mount, parent, &name)?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let guarded = home.kill_fd().is_some_and(|kill| {
        sentinel::register(Guarded {
            kill,
            events: home.events_fd(),
            parent: parent_fd.as_fd(),
            home: home.dir_fd(),
            name: name.as_bytes(),
        })
        .is_some()
    });
    if !guarded {
        // Unprotected: do not keep a home that nothing would remove at exit.
        let _ = home.remove();
        return Ok(None);
    }
    Ok(Some(Home {
        parent: parent.to_owned(),
        mount: mount.to_owned(),
        path: home.path().to_owned(),
        ready: Vec::new(),
    }))
}

/// The container of one herd: the strongest mechanism available, or the one asked for.
#[derive(Debug)]
pub(crate) enum Container {
    Cgroup(CgroupHerd),
    Group(Group),
}

impl Container {
    /// A new cgroup below `parent`, or below this process's own cgroup; `Err` says why not.
    pub(crate) fn cgroup(parent: Option<&Path>) -> Result<Container, CgroupError> {
        CgroupHerd::create(parent).map(Container::Cgroup)
    }

    /// A new process group, led by an anchor; `adopt` makes this process the adopter of
    /// orphans (`PR_SET_CHILD_SUBREAPER`, process-wide and for good).
    pub(crate) fn group(adopt: bool) -> io::Result<Container> {
        Group::create(adopt).map(Container::Group)
    }

    /// For a process group: whether this process adopts the herd's orphans.
    pub(crate) fn adopts_orphans(&self) -> Option<bool> {
        match self {
            Container::Cgroup(_) => None,
            Container::Group(group) => Some(group.adopting()),
        }
    }

    pub(crate) fn cgroup_path(&self) -> Option<&Path> {
        match self {
            Container::Cgroup(herd) => Some(herd.cgroup_path()),
            Container::Group(_) => None,
        }
    }

    pub(crate) fn process_group(&self) -> Option<i32> {
        match self {
            Container::Cgroup(_) => None,
            Container::Group(group) => Some(group.pgid()),
        }
    }

    pub(crate) fn guarded(&self) -> bool {
        match self {
            Container::Cgroup(herd) => herd.guarded(),
            Container::Group(group) => group.guarded(),
        }
    }

    pub(crate) fn spawn(&self, cmd: &Command) -> Result<Spawned, Error> {
        match self {
            Container::Cgroup(herd) => herd.spawn(cmd),
            Container::Group(group) => group.spawn(cmd),
        }
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.kill(),
            Container::Group(group) => {
                group.kill();
                Ok(())
            }
        }
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        match self {
            Container::Cgroup(herd) => herd.is_empty(),
            Container::Group(group) => Ok(group.members().is_empty()),
        }
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.wait_empty().await,
            Container::Group(group) => group.wait_empty().await,
        }
    }

    /// CPU time (user, system) of the whole tree, exited members included, where the
    /// mechanism keeps count (cgroups do; process groups do not).
    pub(crate) fn cpu_time(&self) -> io::Result<Option<(Duration, Duration)>> {
        match self {
            Container::Cgroup(herd) => herd.cgroup.cpu_time().map(Some),
            Container::Group(_) => Ok(None),
        }
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.members(),
            Container::Group(group) => Ok(group.members()),
        }
    }

    /// [`members`](Self::members) for async paths: a process group's look at /proc runs on a
    /// blocking thread.
    pub(crate) async fn members_async(&self) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.members(),
            Container::Group(group) => group.members_async().await,
        }
    }

    /// Sends `signal` to every member; `and_continue` follows it with SIGCONT, so stopped
    /// members act on it at once.
    pub(crate) fn signal_members(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.signal_members(signal, and_continue),
            Container::Group(group) => Ok(group.signal_members(signal, and_continue)),
        }
    }

    /// [`signal_members`](Self::signal_members) for async paths (see
    /// [`members_async`](Self::members_async)).
    pub(crate) async fn signal_members_async(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        match self {
            Container::Cgroup(herd) => herd.signal_members(signal, and_continue),
            Container::Group(group) => group.signal_members_async(signal, and_continue).await,
        }
    }

    pub(crate) fn kill_strays(&self) {
        if let Container::Cgroup(herd) = self {
            herd.kill_strays();
        }
    }

    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.set_frozen(frozen).await,
            Container::Group(group) => group.set_frozen(frozen).await,
        }
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        match self {
            Container::Cgroup(herd) => herd.thaw_now(),
            Container::Group(group) => {
                group.thaw_now();
                Ok(())
            }
        }
    }

    /// Kills everything at once; the rest of the clean-up happens in the background.
    pub(crate) fn dispose(self) {
        match self {
            Container::Cgroup(herd) => herd.dispose(),
            Container::Group(group) => group.dispose(),
        }
    }
}
