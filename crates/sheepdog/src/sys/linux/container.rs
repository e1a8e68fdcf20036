//! A herd's container on Linux: a cgroup (with the process groups its children lead as a
//! second net), or, where no cgroup can be had, a process group with this process as the
//! adopter of its orphans (`group.rs`).

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use super::cgroup::{self, Cgroup};
use super::group::Group;
use super::process::Pidfd;
use super::reaper;
use super::sentinel::{self, Guarded};
use super::spawn::{spawn, ProcessGroup, SpawnTarget};
use super::stale;
use crate::signal::Signal;
use crate::sys::{ContainerError as CgroupError, SpawnError, SpawnRequest, Spawned};

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

/// Where new herds' cgroups go (below this process's own), if this process may create cgroups
/// there; else why not.
pub(crate) fn writable_cgroup_parent() -> Result<PathBuf, String> {
    let (_, parent) = cgroup_parent(None)?;
    rustix::fs::access(&parent, rustix::fs::Access::WRITE_OK)
        .map(|()| parent.clone())
        .map_err(|err| {
            format!(
                "cannot create cgroups below {}: {}",
                parent.display(),
                io::Error::from(err)
            )
        })
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
    /// The process groups the herd's children lead: their ids, and their leaders' pidfds
    /// (shared with the children's handles), which name the groups for as long as they are open.
    groups: Mutex<Vec<Leader>>,
    /// How many groups may be recorded before the gone ones are forgotten: twice as many as
    /// were left by the last look (at least [`GROUPS_LOOKED_AT`]), so the looks cost O(1) per
    /// spawn however many children live at once. Changed only with `groups` locked.
    look_at: AtomicUsize,
}

/// A process group a herd's child leads, by the leader's pidfd (its pid is the group's id).
type Leader = Arc<Pidfd>;

/// The fewest recorded groups at which a herd looks for gone ones.
const GROUPS_LOOKED_AT: usize = 64;

/// A spawn into a cgroup less than this after the one before it is not pinned. The kernel
/// notifies a change of `cgroup.events` at most once per 20 ms per cgroup (later ones wait for
/// a timer), so such a spawn's notification is deferred: no kworker wakes at the clone to push
/// the child onto another CPU, and the pin would cost its system calls (about 6 µs back to
/// back) for nothing. Half the kernel's interval leaves room for its clock's coarse ticks. The
/// time is the cgroup's, not the herd's: a reused cgroup brings it along, so back-to-back
/// private herds are not pinned.
const NOTIFIED_RECENTLY: Duration = Duration::from_millis(10);

impl CgroupHerd {
    /// A new cgroup in this process's home below `parent` (see [`cgroup_parent`]). A reused one
    /// counts its CPU time from here if `measured`; else nobody may ask it (its `cpu.stat` read
    /// costs a flush of the kernel's per-CPU statistics).
    pub(crate) fn create(parent: Option<&Path>, measured: bool) -> Result<CgroupHerd, CgroupError> {
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
        let (mut cgroup, guarded) =
            herd_cgroup(&mount, &parent).map_err(|err| classify(err, &parent))?;
        if measured {
            cgroup.renew().map_err(|err| classify(err, &parent))?;
        }
        Ok(CgroupHerd {
            cgroup: Arc::new(cgroup),
            home_parent: guarded.then_some(parent),
            groups: Mutex::new(Vec::new()),
            look_at: AtomicUsize::new(GROUPS_LOOKED_AT),
        })
    }

    /// Whether the herd dies with this process even when it is killed (SIGKILL, abort).
    pub(crate) fn guarded(&self) -> bool {
        self.home_parent.is_some()
    }

    pub(crate) fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// Starts `req` inside the cgroup, leading a process group of its own.
    pub(crate) fn spawn(&self, req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
        let recent = self.cgroup.spawned_within(NOTIFIED_RECENTLY);
        self.spawn_into(req, &self.cgroup, !recent)
    }

    /// Starts `req` in a cgroup of its own below the herd's, so that its tree can be stopped
    /// without its siblings; the herd's verbs reach it as any member.
    pub(crate) fn spawn_subtree(
        &self,
        req: &SpawnRequest<'_>,
    ) -> Result<(Spawned, Subtree), SpawnError> {
        let made = cgroup::mount_point().and_then(|mount| {
            let mount = mount.ok_or_else(|| io::Error::other("no cgroup v2 mount any more"))?;
            Cgroup::create(&mount, self.cgroup.path(), "spawn")
        });
        let subtree = Subtree(Arc::new(
            made.map_err(SpawnError::os("create a cgroup for the child's tree"))?,
        ));
        // Always empty before this spawn: pinned (see "The first task in an empty cgroup").
        let spawned = self.spawn_into(req, &subtree.0, true)?;
        Ok((spawned, subtree))
    }

    fn spawn_into(
        &self,
        req: &SpawnRequest<'_>,
        cgroup: &Cgroup,
        pin: bool,
    ) -> Result<Spawned, SpawnError> {
        let spawned = spawn(
            req,
            &SpawnTarget {
                cgroup: Some(cgroup.target(pin)),
                process_group: ProcessGroup::New,
            },
        )?;
        // Without a pidfd (kernels before 5.3) the group could not be told apart from a later
        // one with the same id: it is not recorded, and the cgroup is the only net.
        let Some(pidfd) = spawned.process.pidfd() else {
            return Ok(spawned);
        };
        let mut groups = self.lock_groups();
        groups.push(pidfd);
        // Forget groups that are gone, now and then, so a long-lived herd does not grow; the
        // look (a system call per group) runs without the lock, so concurrent spawns into the
        // herd do not wait for it, nor start looks of their own meanwhile.
        if groups.len() >= self.look_at.load(Ordering::Relaxed) {
            self.look_at.store(usize::MAX, Ordering::Relaxed);
            let looked = groups.clone();
            drop(groups);
            let gone: HashSet<i32> = looked
                .iter()
                .filter(|leader| !strays::group_exists(leader))
                .map(|leader| leader.pid())
                .collect();
            drop(looked);
            let mut groups = self.lock_groups();
            groups.retain(|leader| !gone.contains(&leader.pid()));
            let next = (2 * groups.len()).max(GROUPS_LOOKED_AT);
            self.look_at.store(next, Ordering::Relaxed);
        }
        Ok(spawned)
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Vec<Leader>> {
        crate::lock(&self.groups)
    }

    /// Kills the cgroup with one write, then, as a second net, the herd's process groups (so
    /// their members that moved themselves out of it, see [`strays`]).
    pub(crate) fn kill(&self) -> io::Result<()> {
        let killed = self.cgroup.kill();
        self.kill_strays();
        killed
    }

    /// Sends `signal` (and then SIGCONT, with `and_continue`) to every member, and to the
    /// strays of the herd's process groups. Returns the members that got it (strays are not
    /// listed).
    pub(crate) fn signal_members(
        &self,
        signal: Signal,
        and_continue: bool,
    ) -> io::Result<Vec<u32>> {
        let members = self.cgroup.members()?;
        let groups = self.leaders();
        // Where the groups are signalled as wholes, their members get it that way, once.
        let reached = strays::signal_groups(&groups, signal, and_continue);
        let skip: HashSet<u32> = match reached {
            Some(_) => HashSet::new(),
            None => members.iter().copied().collect(),
        };
        let (in_groups, alone): (Vec<u32>, Vec<u32>) = match &reached {
            Some(pgids) if !pgids.is_empty() => members
                .into_iter()
                .partition(|&pid| process_group_of(pid).is_some_and(|g| pgids.contains(&g))),
            _ => (Vec::new(), members),
        };
        let mut signalled = super::process::signal_each(
            alone,
            |pid| self.cgroup.open_member(pid),
            signal,
            and_continue,
        );
        signalled.extend(in_groups);
        if reached.is_none() {
            strays::search_later(groups, skip, signal, and_continue);
        }
        Ok(signalled)
    }

    /// Kills what is left of the herd's process groups outside the cgroup.
    pub(crate) fn kill_strays(&self) {
        let groups = self.leaders();
        if strays::signal_groups(&groups, Signal::KILL, false).is_none() {
            // After the cgroup's own kill, its members need no exclusion.
            strays::search_later(groups, HashSet::new(), Signal::KILL, false);
        }
    }

    /// The herd's process groups, each with its leader's pidfd: the group that pidfd names is
    /// the herd's own, whatever has become of its leader. No system call.
    fn leaders(&self) -> Vec<Leader> {
        self.lock_groups().clone()
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        Ok(!self.cgroup.populated()?)
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        self.cgroup.wait_for("populated", false).await
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        self.cgroup.members()
    }

    pub(crate) async fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        self.cgroup.set_frozen(frozen)?;
        self.cgroup.wait_for("frozen", frozen).await
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        self.cgroup.set_frozen(false)
    }

    /// Lets the herd go without killing it (`Command::kill_on_drop(false)`): the reaper thread
    /// removes the cgroup once the tree has left it by itself. Until then the cgroup stays in
    /// this process's home, so the owner's death still kills the tree.
    pub(crate) fn release(self) {
        let refill = self
            .home_parent
            .clone()
            .map(|parent| Box::new(move || refill(&parent)) as reaper::Task);
        reaper::adopt_cgroup(self.cgroup, refill);
    }

    /// Kills everything at once. An empty cgroup (the usual case: the children were waited
    /// for) goes back to the home's pool if nobody set anything in it (see [`recycle`]), else
    /// it is removed here, with one `rmdir`, so that nothing is left even if this process exits
    /// at once; a populated one is removed by the reaper thread once it is empty.
    pub(crate) fn dispose(self) {
        let CgroupHerd {
            cgroup,
            home_parent,
            groups,
            look_at,
        } = self;
        let cgroup = match home_parent.as_deref() {
            Some(parent) => match recycle(parent, cgroup) {
                Ok(()) => return,
                Err(cgroup) => cgroup,
            },
            None => cgroup,
        };
        CgroupHerd {
            cgroup,
            home_parent,
            groups,
            look_at,
        }
        .remove()
    }

    /// [`dispose`](Self::dispose) of a cgroup that is not reused.
    fn remove(self) {
        // Make the next herd's cgroup ahead, after this herd's work rather than during the next.
        let refill = self
            .home_parent
            .clone()
            .map(|parent| Box::new(move || refill(&parent)) as reaper::Task);
        if matches!(self.cgroup.populated(), Ok(false)) && self.cgroup.remove_empty().is_ok() {
            if let Some(refill) = refill {
                reaper::run_later(refill);
            }
            return;
        }
        if let Err(err) = self.kill() {
            tracing::error!(
                path = %self.cgroup.path().display(), %err,
                "sheepdog: cannot kill a dropped herd",
            );
        }
        reaper::adopt_cgroup(self.cgroup, refill);
    }
}

/// The second net: processes of a herd's process groups outside its cgroup, reached without a
/// scan of /proc where the kernel can signal a group through a pidfd (Linux 6.9), else found by
/// one scan on the reaper thread, off the caller's path.
mod strays {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::process::{
        deliver, open_pidfd, pidfd_signal_raw, proc_stat, unreaped, Pidfd,
    };
    use super::super::reaper;
    use super::Leader;
    use crate::signal::Signal;

    /// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9): the signal goes to the process group whose id
    /// is the pidfd's pid. The pidfd holds that pid, so the group cannot be another one.
    const PIDFD_SIGNAL_PROCESS_GROUP: usize = 1 << 2;

    /// Whether group signals through a pidfd are still tried (until the kernel refuses one).
    static GROUP_SIGNALS: AtomicBool = AtomicBool::new(true);

    /// Makes this process find strays by the background scan from now on, as on kernels before
    /// 6.9 (for tests).
    #[cfg(test)]
    pub(crate) fn force_scan() {
        GROUP_SIGNALS.store(false, Ordering::Relaxed);
    }

    /// Whether groups are signalled through their leaders' pidfds here.
    fn group_signals() -> bool {
        GROUP_SIGNALS.load(Ordering::Relaxed)
    }

    /// Sends `signal` (then SIGCONT, with `and_continue`) to each of `groups` through its
    /// leader's pidfd. Returns the groups that got it, or `None` where the kernel cannot signal
    /// a group that way (before 6.9; see [`search_later`]).
    pub(super) fn signal_groups(
        groups: &[Leader],
        signal: Signal,
        and_continue: bool,
    ) -> Option<HashSet<i32>> {
        let mut reached = HashSet::new();
        if groups.is_empty() {
            return Some(reached);
        }
        if !group_signals() {
            return None;
        }
        for leader in groups {
            match signal_group(leader, signal) {
                Ok(()) => {
                    if and_continue {
                        let _ = signal_group(leader, Signal::CONT);
                    }
                    reached.insert(leader.pid());
                }
                // A flag this kernel does not know (before 6.9): search from now on.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    GROUP_SIGNALS.store(false, Ordering::Relaxed);
                    return None;
                }
                // The group is gone.
                Err(_) => {}
            }
        }
        Some(reached)
    }

    /// Where groups cannot be signalled through a pidfd: a search on the reaper thread for
    /// processes of `groups` outside `skip` (the cgroup's members), each signalled through a
    /// pidfd of its own. Only groups whose leader is not yet reaped are searched for: that
    /// leader holds the group's id, so a process found with it is in the herd's group.
    pub(super) fn search_later(
        groups: Vec<Leader>,
        skip: HashSet<u32>,
        signal: Signal,
        and_continue: bool,
    ) {
        let groups: Vec<Leader> = groups
            .into_iter()
            .filter(|leader| unreaped(&**leader))
            .collect();
        if groups.is_empty() {
            return;
        }
        let pgids: HashSet<i32> = groups.iter().map(|leader| leader.pid()).collect();
        // The leaders' pidfds travel with the search: they keep the groups' ids from reuse.
        let queued = reaper::run_later(move || {
            let _leaders = groups;
            search(&pgids, &skip, signal, and_continue);
        });
        if !queued {
            tracing::error!("sheepdog: no reaper thread; strays of a herd's groups not signalled");
        }
    }

    /// Whether any process is in the group `leader` led.
    pub(super) fn group_exists(leader: &Pidfd) -> bool {
        if group_signals() {
            // Signal 0 only checks; ESRCH: the group is gone (EINVAL: see below).
            match pidfd_signal_raw(leader, 0, PIDFD_SIGNAL_PROCESS_GROUP) {
                Ok(()) => return true,
                Err(err) if err.raw_os_error() != Some(libc::EINVAL) => return false,
                Err(_) => {}
            }
        }
        let Some(pgid) = rustix::process::Pid::from_raw(leader.pid()) else {
            return false;
        };
        // EPERM: it exists, and is not ours.
        match rustix::process::test_kill_process_group(pgid) {
            Ok(()) | Err(rustix::io::Errno::PERM) => true,
            Err(_) => false,
        }
    }

    fn signal_group(leader: &Pidfd, signal: Signal) -> std::io::Result<()> {
        pidfd_signal_raw(leader, signal.as_raw(), PIDFD_SIGNAL_PROCESS_GROUP)
    }

    /// One pass over /proc (one read of `stat` per process) for processes of `pgids` not in
    /// `skip`, each signalled through a pidfd whose group is checked again once it is open.
    fn search(pgids: &HashSet<i32>, skip: &HashSet<u32>, signal: Signal, and_continue: bool) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let ours = |pid: u32| proc_stat(pid).is_some_and(|stat| pgids.contains(&stat.pgid));
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            if skip.contains(&pid) || !ours(pid) {
                continue;
            }
            if let Some(pidfd) = open_pidfd(pid) {
                if ours(pid) {
                    let _ = deliver(&pidfd, signal, and_continue);
                }
            }
        }
    }
}

/// A child's own cgroup below its herd's ([`CgroupHerd::spawn_subtree`]): the tree of that one
/// child, to stop alone. Removed in the background once empty, after its last holder lets go.
#[derive(Debug)]
pub(crate) struct Subtree(Arc<Cgroup>);

impl Subtree {
    pub(crate) fn thaw(&self) -> io::Result<()> {
        self.0.set_frozen(false)
    }

    /// Sends `signal` (then SIGCONT) to every member, each through a verified pidfd.
    pub(crate) fn signal_all(&self, signal: Signal) -> io::Result<Vec<u32>> {
        self.0.signal_members(signal, true)
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        self.0.wait_for("populated", false).await
    }

    pub(crate) fn count(&self) -> usize {
        self.0.members().map_or(0, |members| members.len())
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        self.0.kill()
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        reaper::adopt_cgroup(Arc::clone(&self.0), None);
    }
}

/// Whether this process is the init (pid 1) of its pid namespace: when it dies, the kernel
/// kills every other process of the namespace.
pub(crate) fn namespace_init() -> bool {
    std::process::id() == 1
}

/// The process group of `pid`.
fn process_group_of(pid: u32) -> Option<i32> {
    super::process::proc_stat(pid).map(|stat| stat.pgid)
}

/// This process's home for herd cgroups below one parent: `parent/sheepdog-<pid>`, made on
/// the first herd there and handed once to the owner-death sentinel, which kills and removes the
/// whole home (every herd in it) when this process dies. It keeps a pool of empty herd
/// cgroups: those dropped herds give back as good as new ([`recycle`]), and a few made ahead on
/// the reaper thread after one was removed, so that a `mkdir` neither delays nor competes with
/// the making of the next herd.
struct Home {
    parent: PathBuf,
    mount: PathBuf,
    path: PathBuf,
    /// The watch of writes into the home (see `cgroup::writes`): none means herd cgroups of
    /// this home are never reused.
    watch: Option<i32>,
    /// Empty herd cgroups, made ahead or given back by herds: the last given back is taken
    /// first (its notification interval is running, see [`NOTIFIED_RECENTLY`]).
    ready: Vec<Cgroup>,
}

/// How many empty herd cgroups the reaper thread makes ahead, after a herd's cgroup was
/// removed rather than reused.
const READY: usize = 2;

/// The most empty herd cgroups a home keeps (each holds three descriptors): more than the
/// herds a burst of concurrent spawns gives back at once on a small host, few enough to be
/// cheap to keep.
const POOL: usize = 16;

static HOMES: Mutex<Vec<Home>> = Mutex::new(Vec::new());

/// Set by tests that need herds without a home (as where no sentinel can be had).
static HOMELESS: AtomicBool = AtomicBool::new(false);

/// Makes this process put new herds straight below their parent, without a home (for tests of
/// the unguarded path).
pub(crate) fn force_homeless() {
    HOMELESS.store(true, Ordering::Relaxed);
}

fn homes() -> std::sync::MutexGuard<'static, Vec<Home>> {
    crate::lock(&HOMES)
}

/// A new cgroup for a herd below `parent`, and whether the sentinel guards it. Without a
/// sentinel there is no home: herds go straight below `parent`, unguarded, so that nothing is
/// left behind at a normal exit.
fn herd_cgroup(mount: &Path, parent: &Path) -> io::Result<(Cgroup, bool)> {
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
                return Ok((Cgroup::create(mount, parent, &prefix)?, false));
            }
        },
    };
    // Nothing but the pop runs under the lock: concurrent herds do not wait for each other's
    // mkdir, nor for the sentinel's check.
    let home = &mut homes[index];
    let cgroup = match home.ready.pop() {
        Some(ready) => {
            drop(homes);
            ready
        }
        None => {
            let path = home.path.clone();
            drop(homes);
            made_ahead(Cgroup::create(mount, &path, "herd")?)
        }
    };
    // A dead sentinel is replaced here, and the home registered again with the new one.
    Ok((cgroup, sentinel::available()))
}

/// A new herd cgroup of a home, watched so that it can be reused.
fn made_ahead(mut cgroup: Cgroup) -> Cgroup {
    cgroup.watch_writes();
    cgroup
}

/// Gives a dropped herd's empty cgroup back to its home's pool, if nobody set anything in it
/// and the pool has room; else hands it back.
fn recycle(parent: &Path, cgroup: Arc<Cgroup>) -> Result<(), Arc<Cgroup>> {
    let home_watch = homes()
        .iter()
        .find(|home| home.parent == parent && home.ready.len() < POOL)
        .and_then(|home| home.watch);
    let Some(home_watch) = home_watch else {
        return Err(cgroup);
    };
    if !cgroup.reusable(home_watch) {
        return Err(cgroup);
    }
    let mut cgroup = Arc::try_unwrap(cgroup)?;
    cgroup.hand_on();
    let mut homes = homes();
    match homes.iter_mut().find(|home| home.parent == parent) {
        Some(home) if home.ready.len() < POOL => {
            home.ready.push(cgroup);
            Ok(())
        }
        _ => Err(Arc::new(cgroup)),
    }
}

/// Makes cgroups ahead for the home below `parent` (on the reaper thread).
fn refill(parent: &Path) {
    let (mount, path) = match homes().iter().find(|home| home.parent == parent) {
        Some(home) if home.ready.len() < READY => (home.mount.clone(), home.path.clone()),
        _ => return,
    };
    // Made without the lock held, so herds are not kept waiting for a mkdir.
    let Ok(cgroup) = Cgroup::create(&mount, &path, "herd").map(made_ahead) else {
        return;
    };
    let mut homes = homes();
    match homes.iter_mut().find(|home| home.parent == parent) {
        Some(home) if home.ready.len() < READY => {
            home.ready.push(cgroup);
            if home.ready.len() < READY {
                let parent = parent.to_owned();
                reaper::run_later(move || refill(&parent));
            }
        }
        _ => drop(cgroup.remove()),
    }
}

fn make_home(mount: &Path, parent: &Path) -> io::Result<Option<Home>> {
    // As a pid namespace's init, this process's death ends every process of the namespace,
    // sentinel included: a home would be left behind, and the kernel guards the herds anyway.
    if HOMELESS.load(Ordering::Relaxed) || namespace_init() || !sentinel::available() {
        return Ok(None);
    }
    // A home of an earlier process with this pid would be taken over as it is.
    stale::remove_own_leftover(parent);
    let prefix = stale::home_name();
    let home = Cgroup::create_first(mount, parent, &prefix)?;
    // From here on, a failure must not leave the home's directory behind.
    let guarded = guard_home(&home, parent);
    let registered = match guarded {
        Ok(registered) => registered,
        Err(err) => {
            let _ = home.remove();
            return Err(err);
        }
    };
    if !registered {
        // Unprotected: do not keep a home that nothing would remove at exit.
        let _ = home.remove();
        return Ok(None);
    }
    // Homes whose owner and sentinel were both killed are removed off the caller's path.
    let swept = parent.to_owned();
    reaper::run_later(move || {
        stale::sweep(&swept);
    });
    Ok(Some(Home {
        parent: parent.to_owned(),
        mount: mount.to_owned(),
        path: home.path().to_owned(),
        watch: cgroup::writes::watch(home.path(), false),
        ready: Vec::new(),
    }))
}

/// Hands `home` to the sentinel; `Ok(false)` if it is not protected.
fn guard_home(home: &Cgroup, parent: &Path) -> io::Result<bool> {
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let name = home
        .path()
        .file_name()
        .map(|name| name.as_encoded_bytes())
        .unwrap_or_default();
    Ok(home.kill_fd().is_some_and(|kill| {
        sentinel::register(Guarded {
            kill,
            events: home.events_fd(),
            parent: parent_fd.as_fd(),
            home: home.dir_fd(),
            name,
        })
        .is_some()
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
    /// `measured`: its CPU time may be asked (see [`CgroupHerd::create`]).
    pub(crate) fn cgroup(parent: Option<&Path>, measured: bool) -> Result<Container, CgroupError> {
        CgroupHerd::create(parent, measured).map(Container::Cgroup)
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

    pub(crate) fn spawn(&self, req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
        match self {
            Container::Cgroup(herd) => herd.spawn(req),
            // The herd is this process group: a child moved out of it would escape.
            Container::Group(_) if req.process_group.is_some() => Err(SpawnError::Os {
                action: "leave the herd's process group",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the herd is a process group (no cgroup), and a child moved out of it by \
                     Command::process_group would escape it",
                ),
            }),
            Container::Group(group) => group.spawn(req),
        }
    }

    /// [`spawn`](Self::spawn), with the child's tree in a cgroup of its own where the herd is
    /// a cgroup (`None` for a process-group herd: there the child alone can be told apart).
    pub(crate) fn spawn_subtree(
        &self,
        req: &SpawnRequest<'_>,
    ) -> Result<(Spawned, Option<Subtree>), SpawnError> {
        match self {
            Container::Cgroup(herd) => herd
                .spawn_subtree(req)
                .map(|(spawned, subtree)| (spawned, Some(subtree))),
            Container::Group(_) => self.spawn(req).map(|spawned| (spawned, None)),
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

    /// A counter of the herd's cgroup (`memory.peak`, `pids.peak`): `None` where its
    /// controller is not enabled, or the mechanism keeps none.
    pub(crate) fn counter(&self, file: &str) -> io::Result<Option<u64>> {
        match self {
            Container::Cgroup(herd) => herd.cgroup.counter(file),
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

    /// Lets the tree go without killing it; what is left to clean up once it has ended is
    /// done in the background.
    pub(crate) fn release(self) {
        match self {
            Container::Cgroup(herd) => herd.release(),
            Container::Group(group) => group.release(),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::cgroup::testing::TestParent;
    use super::*;

    fn cgroup_of(pid: u32) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
    }

    fn gone_within(pid: u32, limit: Duration) -> bool {
        let start = Instant::now();
        while super::super::process::proc_stat(pid).is_some_and(|stat| stat.state != 'Z') {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Where the kernel cannot signal a group through a pidfd (before 6.9), a member that moved
    /// itself out of the cgroup is found by the background search and killed.
    #[test]
    fn a_stray_is_found_by_the_search_where_groups_cannot_be_signalled() {
        let Some(parent) = TestParent::new("strays") else {
            return;
        };
        let herd = match CgroupHerd::create(Some(parent.path()), true) {
            Ok(herd) => herd,
            Err(err) => {
                eprintln!("skipping: no cgroup herd: {err:?}");
                return;
            }
        };
        let elsewhere = parent.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("make another cgroup");
        let pidfile = std::env::temp_dir().join(format!("sheepdog-stray-{}", std::process::id()));
        let script = format!(
            "sh -c 'echo $$ > {cgroup}/cgroup.procs && echo $$ > {file}.tmp && mv {file}.tmp {file} \
             && exec sleep 1000' & sleep 1000",
            cgroup = elsewhere.display(),
            file = pidfile.display(),
        );
        let args = ["-c".into(), script.into()];
        let cmd = SpawnRequest {
            args: &args,
            ..SpawnRequest::new("sh".as_ref())
        };
        let spawned = herd.spawn(&cmd).expect("spawn");
        let start = Instant::now();
        let stray = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the stray started"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = std::fs::remove_file(&pidfile);
        assert!(
            cgroup_of(stray).is_some_and(|c| c.contains("/elsewhere")),
            "the stray left the herd's cgroup"
        );
        strays::force_scan();
        herd.kill().expect("kill");
        assert!(
            gone_within(stray, Duration::from_secs(10)),
            "the stray outlived the kill"
        );
        assert!(gone_within(spawned.process.pid(), Duration::from_secs(10)));
        drop(spawned);
        herd.dispose();
    }
}
