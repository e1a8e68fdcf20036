//! `Herd`: the container of a process tree. Everything spawned into it, and everything those
//! processes spawn, lives and dies with it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::child::Child;
use crate::command::Command;
use crate::driver::{self, Flock, Lifecycle};
use crate::error::Error;
use crate::signal::Signal;
use crate::stop::{StopPlan, StopReport};
use crate::sys;
use crate::time::Deadline;

/// The container of a process tree.
///
/// Children enter the herd before they execute their first instruction, and whatever they start
/// is in it too: with cgroup v2, `setsid`, new process groups and double-forking daemons do not
/// get out ([`Containment::cannot_catch`] says what the mechanism in force misses). Dropping a
/// herd kills everything in it at once, without blocking the async runtime; the rest of the
/// clean-up (waiting for the tree to go, removing the cgroup) finishes in the background. If
/// this program dies, even by SIGKILL, a small sentinel process kills the herd.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sheepdog::{Command, Herd};
///
/// let herd = Herd::new()?;
/// let mut server = herd.spawn(Command::new("sh").args(["-c", "sleep 1000 & sleep 1000"]))?;
/// println!("{} processes in the herd", herd.members()?.len());
/// let report = herd.stop(std::time::Duration::from_secs(2)).await?;
/// println!("stopped: {report}");
/// server.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Herd kills everything in it"]
pub struct Herd {
    /// Shared only with the lifecycle driver's tasks (a deadline, a stop under way).
    core: Arc<HerdCore>,
}

/// What a herd's driver tasks share with it.
#[derive(Debug)]
pub(crate) struct HerdCore {
    /// Always `Some` until `Drop` hands it to the background clean-up.
    container: Option<sys::Container>,
    containment: Containment,
    lifecycle: Lifecycle,
    /// Let go by its owner ([`Herd::release`]): left to end by itself, never killed.
    released: std::sync::atomic::AtomicBool,
}

impl Herd {
    /// A herd with the strongest containment this host allows.
    ///
    /// That is a cgroup v2 directory below this process's own cgroup; where none can be made
    /// (no cgroup v2 mount, no write access), a process group, with the reason in
    /// [`Containment::fallback_reason`] (see also [`host_containment`]). Fails only when the
    /// system refuses the resources (descriptors, memory, processes).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// println!("{}", herd.containment());
    /// # Ok(()) }
    /// ```
    pub fn new() -> io::Result<Herd> {
        Herd::builder().build()
    }

    /// Options for a new herd.
    ///
    /// ```no_run
    /// # fn demo() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder()
    ///     .parent_cgroup("/sys/fs/cgroup/my-service")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> HerdBuilder {
        HerdBuilder::default()
    }

    /// Starts `cmd` inside the herd.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// let status = herd.spawn(&sheepdog::Command::new("true"))?.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self, cmd: &Command) -> Result<Child, Error> {
        let Some((timeout, plan)) = cmd.get_timeout() else {
            return self.spawn_untimed(cmd);
        };
        // A deadline of its own: the child's tree in a cgroup of its own, to stop it alone.
        self.lifecycle().spawned();
        let (spawned, subtree) = self
            .container()
            .spawn_subtree(&cmd.spawn_request())
            .map_err(|err| cmd.spawn_error(err))?;
        Ok(Child::new(spawned, cmd).with_own_deadline(Deadline::after(timeout), plan, subtree))
    }

    /// Starts `cmd` inside the herd, leaving its timeout to the caller.
    pub(crate) fn spawn_untimed(&self, cmd: &Command) -> Result<Child, Error> {
        self.lifecycle().spawned();
        self.container()
            .spawn(&cmd.spawn_request())
            .map(|spawned| Child::new(spawned, cmd))
            .map_err(|err| cmd.spawn_error(err))
    }

    /// Stops the herd by `plan` at `deadline`, whether or not anybody waits; `leader` gets the
    /// plan's leader steps and decides whether the herd timed out (else: whether it had
    /// members); with `until_empty` the watch ends once the herd is empty.
    pub(crate) fn enforce(
        &self,
        deadline: Deadline,
        plan: StopPlan,
        leader: Option<sys::Leader>,
        until_empty: bool,
    ) {
        driver::enforce(&self.core, deadline, plan, leader, until_empty);
    }

    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.core.lifecycle
    }

    /// Kills every process in the herd at once and returns when none is left in its cgroup (a
    /// process that moved itself out of the cgroup but stayed in a process group led by one of
    /// the herd's children gets the same SIGKILL; the call does not wait for it).
    ///
    /// Cancel-safe: the kill is issued at the first poll; dropping the future then only stops
    /// the wait for the tree to go.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(sheepdog::Command::new("sh").args(["-c", "sleep 100 & sleep 100"]))?;
    /// herd.kill().await?;
    /// assert!(herd.members()?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self) -> io::Result<()> {
        self.lifecycle().start_pending();
        self.kill_now()?;
        self.container()
            .wait_empty()
            .await
            .map_err(|err| self.context("wait for", err))
    }

    /// Lets the herd go without killing it: its deadline no longer applies, and its container
    /// is removed once the tree has left it by itself (see [`Command::kill_on_drop`]).
    pub(crate) fn release(self) {
        self.core
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Issues the kill of every member without waiting for them to go.
    pub(crate) fn kill_now(&self) -> io::Result<()> {
        self.container()
            .kill()
            .map_err(|err| self.context("kill", err))
    }

    /// Stops the herd gracefully: [`StopPlan::grace`] — SIGTERM to every member, up to `grace`
    /// for the whole tree to exit, then a kill for whatever is left. The report says who was
    /// signalled and whether the kill was needed. Cancel-safe, as [`stop_with`](Herd::stop_with).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(&sheepdog::Command::new("sleep").arg("100"))?;
    /// let report = herd.stop(std::time::Duration::from_secs(5)).await?;
    /// assert!(!report.escalated());
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self, grace: Duration) -> io::Result<StopReport> {
        self.stop_with(&StopPlan::grace(grace), None).await
    }

    /// Stops the herd by `plan`: resumes it if frozen or stopped, runs each step (a signal to
    /// `leader`, or to the tree when there is no leader or the step says so, and a wait for the
    /// tree to empty), and kills whatever is left at the end. Escalation is timed by the tree
    /// emptying, not by the leader exiting; the waits do not count time spent suspended by
    /// [`suspend`].
    ///
    /// Cancel-safe: the stop runs in a task of the herd's, not in this future. Dropped at any
    /// point, the ladder goes on to its end; a later call (with any plan) joins the stop under
    /// way, or returns the report of the one that ended, as does a stop begun by the herd's
    /// [deadline](HerdBuilder::timeout). Needs a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use sheepdog::{Signal, StopPlan, StopTarget};
    /// let herd = sheepdog::Herd::new()?;
    /// let server = herd.spawn(sheepdog::Command::new("sleep").arg("100"))?;
    /// let plan = StopPlan::new()
    ///     .then(Signal::INT, StopTarget::Leader, Duration::from_secs(3))
    ///     .then(Signal::TERM, StopTarget::Tree, Duration::from_secs(3));
    /// let report = herd.stop_with(&plan, Some(&server)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop_with(
        &self,
        plan: &StopPlan,
        leader: Option<&Child>,
    ) -> io::Result<StopReport> {
        self.stop_led_by(plan, leader.and_then(Child::leader)).await
    }

    /// [`stop_with`](Herd::stop_with), the leader given by a handle.
    pub(crate) async fn stop_led_by<L: driver::Leader>(
        &self,
        plan: &StopPlan,
        leader: Option<L>,
    ) -> io::Result<StopReport> {
        self.lifecycle().start_pending();
        driver::stop(&self.core, plan, leader)
            .await
            .map_err(|err| self.context("stop", err))
    }

    /// Whether the herd's [deadline](HerdBuilder::timeout) passed while processes were still in
    /// it (they were then stopped by its plan).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    /// assert!(!herd.timed_out());
    /// # Ok(()) }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.lifecycle().timed_out()
    }

    /// Sends `signal` to every member (each through a verified pidfd); returns their pids. For
    /// programs that forward a signal they got to the tree they run.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.signal(sheepdog::Signal::HUP)?; // "reload your configuration"
    /// # Ok(()) }
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<Vec<u32>> {
        self.container()
            .signal_members(signal, false)
            .map_err(|err| self.context("signal", err))
    }

    /// Returns when no process is left in the herd (learned by event, not by polling).
    /// Cancel-safe: it only watches.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(sheepdog::Command::new("sh").args(["-c", "sleep 0.1 &"]))?;
    /// herd.wait_empty().await?; // the background sleep included
    /// # Ok(()) }
    /// ```
    pub async fn wait_empty(&self) -> io::Result<()> {
        self.lifecycle().start_pending();
        self.container()
            .wait_empty()
            .await
            .map_err(|err| self.context("wait for", err))
    }

    /// Whether no process is left in the herd right now.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// assert!(sheepdog::Herd::new()?.is_empty()?);
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> io::Result<bool> {
        self.container()
            .is_empty()
            .map_err(|err| self.context("read", err))
    }

    /// The pids of every process in the herd now (a snapshot: it may change at once).
    ///
    /// For a process-group herd this walks the process tree in /proc and blocks for that long;
    /// on an async path, call it through `tokio::task::spawn_blocking` (the same holds for
    /// [`signal`](Self::signal) and [`is_empty`](Self::is_empty)).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// for pid in herd.members()? {
    ///     println!("{pid}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn members(&self) -> io::Result<Vec<u32>> {
        self.container()
            .members()
            .map_err(|err| self.context("list", err))
    }

    /// The herd's processes now as trees: each whose parent is not in the herd is a root, the
    /// others follow below their parents (see [`tree`](crate::tree) for the fields). Reads
    /// `/proc` once per member.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(sheepdog::Command::new("sh").args(["-c", "sleep 30 & wait"]))?;
    /// for info in herd.tree()? {
    ///     println!("{:indent$}{} {:?}", "", info.pid, info.command, indent = 2 * info.depth);
    /// }
    /// herd.kill().await?;
    /// # Ok(()) }
    /// ```
    pub fn tree(&self) -> io::Result<Vec<crate::ProcessInfo>> {
        Ok(crate::identity::forest(&self.members()?))
    }

    /// CPU time the whole tree has used so far, `(user, system)`, processes that already exited
    /// included (from the cgroup's `cpu.stat`), or `None` where the mechanism keeps no count (a
    /// process group).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(sheepdog::Command::new("sh").args(["-c", "ls / > /dev/null"]))?.wait().await?;
    /// if let Some((user, system)) = herd.cpu_time()? {
    ///     println!("user {user:?}, system {system:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cpu_time(&self) -> io::Result<Option<(Duration, Duration)>> {
        self.container()
            .cpu_time()
            .map_err(|err| self.context("read the CPU time of", err))
    }

    /// What the whole tree has used so far, processes that already exited included: CPU time,
    /// peak memory and peak process count, each where this host's mechanism keeps it, and
    /// [`HerdUsage::unknown`] says why a figure is missing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.spawn(&sheepdog::Command::new("true"))?.wait().await?;
    /// let usage = herd.usage()?;
    /// println!("cpu {:?}, peak memory {:?}", usage.user_time(), usage.memory_peak_bytes());
    /// for (figure, why) in usage.unknown() {
    ///     println!("{figure}: unknown ({why})");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn usage(&self) -> io::Result<HerdUsage> {
        let read = |file: &str| {
            self.container()
                .counter(file)
                .map_err(|err| self.context(&format!("read {file} of"), err))
        };
        Ok(HerdUsage {
            cpu: self.cpu_time()?,
            memory_peak: read("memory.peak")?,
            tasks_peak: read("pids.peak")?,
            mechanism: self.containment().mechanism(),
        })
    }

    /// Freezes every process in the herd (`cgroup.freeze`) and returns once all are frozen.
    /// A frozen tree can still be killed or stopped. Cancel-safe: the freeze is asked for at
    /// the first poll; dropping the future only stops the wait for it to complete.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.freeze().await?;
    /// herd.thaw().await?;
    /// # Ok(()) }
    /// ```
    pub async fn freeze(&self) -> io::Result<()> {
        self.lifecycle().start_pending();
        self.container()
            .set_frozen(true)
            .await
            .map_err(|err| self.context("freeze", err))
    }

    /// Resumes a frozen herd and returns once it runs again. Cancel-safe, as
    /// [`freeze`](Herd::freeze).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// herd.thaw().await?; // thawing a running herd does nothing
    /// # Ok(()) }
    /// ```
    pub async fn thaw(&self) -> io::Result<()> {
        self.lifecycle().start_pending();
        self.container()
            .set_frozen(false)
            .await
            .map_err(|err| self.context("thaw", err))
    }

    /// The mechanism that contains this herd, and what it cannot catch.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// assert_eq!(herd.containment().mechanism(), sheepdog::Mechanism::CgroupV2);
    /// # Ok(()) }
    /// ```
    pub fn containment(&self) -> &Containment {
        &self.core.containment
    }

    fn container(&self) -> &sys::Container {
        self.core.container()
    }

    fn context(&self, action: &str, err: io::Error) -> io::Error {
        io::Error::new(
            err.kind(),
            format!(
                "cannot {action} the herd in {}: {err}",
                self.core.containment
            ),
        )
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        // A driver task still holds the herd: kill the tree now, and let the task go; the rest
        // of the clean-up follows when the task lets go of the herd.
        let held = Arc::strong_count(&self.core) > 1;
        let aborted = self.core.lifecycle.abort();
        if self.core.released.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if aborted || held {
            if let Err(err) = self.core.container().kill() {
                tracing::error!(%err, "sheepdog: cannot kill a dropped herd");
            }
        }
    }
}

impl HerdCore {
    fn container(&self) -> &sys::Container {
        self.container
            .as_ref()
            .expect("a herd's container is only taken by Drop")
    }
}

impl Drop for HerdCore {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            if self.released.load(std::sync::atomic::Ordering::SeqCst) {
                container.release();
            } else {
                container.dispose();
            }
        }
    }
}

impl Flock for HerdCore {
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn thaw(&self) -> io::Result<()> {
        self.container().thaw_now()
    }

    async fn signal_all(&self, signal: Signal) -> io::Result<Vec<u32>> {
        // Stopped members act on the signal only once continued.
        self.container().signal_members_async(signal, true).await
    }

    async fn wait_empty(&self) -> io::Result<()> {
        self.container().wait_empty().await
    }

    async fn count(&self) -> usize {
        self.container()
            .members_async()
            .await
            .map_or(0, |members| members.len())
    }

    fn kill(&self) -> io::Result<()> {
        self.container().kill()
    }

    fn finish(&self) {
        self.container().kill_strays();
    }
}

/// What a herd's whole tree has used ([`Herd::usage`]).
///
/// ```
/// # fn demo(usage: sheepdog::HerdUsage) {
/// if let Some(peak) = usage.memory_peak_bytes() {
///     println!("peak {} MiB", peak >> 20);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HerdUsage {
    cpu: Option<(Duration, Duration)>,
    memory_peak: Option<u64>,
    tasks_peak: Option<u64>,
    mechanism: Mechanism,
}

impl HerdUsage {
    /// CPU time in user mode of every process that ran in the herd (`cpu.stat`).
    ///
    /// ```
    /// # fn demo(usage: sheepdog::HerdUsage) {
    /// println!("{:?}", usage.user_time());
    /// # }
    /// ```
    pub fn user_time(&self) -> Option<Duration> {
        self.cpu.map(|(user, _)| user)
    }

    /// CPU time in the kernel on behalf of every process that ran in the herd.
    ///
    /// ```
    /// # fn demo(usage: sheepdog::HerdUsage) {
    /// println!("{:?}", usage.system_time());
    /// # }
    /// ```
    pub fn system_time(&self) -> Option<Duration> {
        self.cpu.map(|(_, system)| system)
    }

    /// The tree's peak memory (`memory.peak`: the memory controller's count, every member's
    /// pages), where that controller is enabled for herd cgroups.
    ///
    /// ```
    /// # fn demo(usage: sheepdog::HerdUsage) {
    /// println!("{:?}", usage.memory_peak_bytes());
    /// # }
    /// ```
    pub fn memory_peak_bytes(&self) -> Option<u64> {
        self.memory_peak
    }

    /// The most processes the tree had at once (`pids.peak`, Linux 6.1), where the pids
    /// controller is enabled for herd cgroups.
    ///
    /// ```
    /// # fn demo(usage: sheepdog::HerdUsage) {
    /// println!("{:?}", usage.tasks_peak());
    /// # }
    /// ```
    pub fn tasks_peak(&self) -> Option<u64> {
        self.tasks_peak
    }

    /// Each figure that is missing, with why: `("peak memory", "...")`.
    ///
    /// ```
    /// # fn demo(usage: sheepdog::HerdUsage) {
    /// for (figure, why) in usage.unknown() {
    ///     eprintln!("{figure} unknown: {why}");
    /// }
    /// # }
    /// ```
    pub fn unknown(&self) -> Vec<(&'static str, &'static str)> {
        let group = self.mechanism == Mechanism::ProcessGroup;
        let because = |controller: &'static str| {
            if group {
                "a process-group herd keeps no counts"
            } else {
                controller
            }
        };
        let mut unknown = Vec::new();
        if self.cpu.is_none() {
            unknown.push(("CPU time", because("the cgroup has no cpu.stat")));
        }
        if self.memory_peak.is_none() {
            unknown.push((
                "peak memory",
                because("the memory controller is not enabled for herd cgroups on this host"),
            ));
        }
        if self.tasks_peak.is_none() {
            unknown.push((
                "peak process count",
                because("the pids controller is not enabled for herd cgroups on this host"),
            ));
        }
        unknown
    }
}

/// Options for a [`Herd`].
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let herd = sheepdog::Herd::builder().build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone)]
pub struct HerdBuilder {
    parent_cgroup: Option<PathBuf>,
    mechanism: Option<Mechanism>,
    timeout: Option<Duration>,
    stop_plan: StopPlan,
    adopt_orphans: Option<bool>,
    /// Set for the private herd of `Command::spawn`, whose CPU time nobody can ask: a reused
    /// cgroup then skips reading its `cpu.stat` as the base.
    cpu_time_unasked: bool,
}

/// `SHEEPDOG_ADOPT_ORPHANS=0` turns adoption off for every process-group herd that does not set
/// [`HerdBuilder::adopt_orphans`].
const ADOPT_ORPHANS_ENV: &str = "SHEEPDOG_ADOPT_ORPHANS";

impl HerdBuilder {
    /// Creates the herd's cgroup below this cgroup v2 directory (delegated to this user, for
    /// example) instead of below this process's own cgroup.
    ///
    /// ```no_run
    /// # fn demo() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder()
    ///     .parent_cgroup("/sys/fs/cgroup/ci-jobs")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn parent_cgroup(&mut self, dir: impl AsRef<Path>) -> &mut HerdBuilder {
        self.parent_cgroup = Some(dir.as_ref().to_owned());
        self
    }

    /// Uses `mechanism` or fails, instead of the strongest one available (to test a fallback,
    /// or to refuse one).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder()
    ///     .mechanism(sheepdog::Mechanism::ProcessGroup)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn mechanism(&mut self, mechanism: Mechanism) -> &mut HerdBuilder {
        self.mechanism = Some(mechanism);
        self
    }

    /// Bounds the herd's life: `timeout` after it is built, whatever is in it is stopped by
    /// the [stop plan](HerdBuilder::stop_plan), whether or not anybody waits, and
    /// [`Herd::timed_out`] says so. Time spent suspended by [`suspend`] does not count. Built
    /// outside a tokio runtime, the deadline is enforced from the herd's first async call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let herd = sheepdog::Herd::builder().timeout(Duration::from_millis(100)).build()?;
    /// let mut child = herd.spawn(sheepdog::Command::new("sh").args(["-c", "sleep 100 & sleep 100"]))?;
    /// herd.wait_empty().await?; // the deadline stopped both sleeps
    /// assert!(herd.timed_out());
    /// # Ok(()) }
    /// ```
    pub fn timeout(&mut self, timeout: Duration) -> &mut HerdBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// How the herd is stopped at its [deadline](HerdBuilder::timeout) ([`StopPlan::default`]:
    /// SIGTERM, 5 s, SIGKILL).
    ///
    /// ```
    /// let mut builder = sheepdog::Herd::builder();
    /// builder.stop_plan(sheepdog::StopPlan::grace(std::time::Duration::from_secs(1)));
    /// ```
    pub fn stop_plan(&mut self, plan: StopPlan) -> &mut HerdBuilder {
        self.stop_plan = plan;
        self
    }

    /// Whether a process-group herd (the fallback without cgroups) makes this program the
    /// adopter of orphaned descendants (`PR_SET_CHILD_SUBREAPER`); the default is yes, unless
    /// the environment says `SHEEPDOG_ADOPT_ORPHANS=0`. A cgroup herd ignores it.
    ///
    /// Adoption is what lets the fallback catch `setsid`, new process groups and double-forking
    /// daemons: a process whose parent exits comes back to this program instead of init, and
    /// the herd finds it by the mark it inherited (`SHEEPDOG_HERD` in its environment).
    ///
    /// **It is process-wide and for good**: once one herd adopts, every orphaned descendant of
    /// this program (also of children that other libraries started, such as
    /// `tokio::process`) is re-parented to it. sheepdog reaps only the orphans of its herds; an
    /// orphan of another child that exits stays a zombie until this program exits or reaps it
    /// (with `waitpid` for that pid); so does one of a cgroup herd in a program that also forces
    /// an adopting process-group herd. A program that starts long-lived trees by other means
    /// and cannot accept that turns adoption off; its fallback herds then find escapees only by
    /// a scan of every process (process group or mark), and lose those that clear their
    /// environment.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder().adopt_orphans(false).build()?;
    /// # Ok(()) }
    /// ```
    pub fn adopt_orphans(&mut self, adopt: bool) -> &mut HerdBuilder {
        self.adopt_orphans = Some(adopt);
        self
    }

    /// Creates the herd. Without a forced mechanism a cgroup is tried first; where none can be
    /// made, the herd falls back to a process group, says why in
    /// [`Containment::fallback_reason`], and logs a `tracing` warning.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::builder().build()?;
    /// # Ok(()) }
    /// ```
    pub fn build(&self) -> io::Result<Herd> {
        self.build_or_os_error().map_err(|(context, source)| {
            io::Error::new(source.kind(), format!("{context}: {source}"))
        })
    }

    /// Marks the herd as one whose CPU time is never asked (`Command::spawn`'s private herd).
    pub(crate) fn cpu_time_unasked(&mut self) -> &mut HerdBuilder {
        self.cpu_time_unasked = true;
        self
    }

    /// `build`, keeping the OS error apart from its context (for `Command::spawn`'s errors).
    pub(crate) fn build_or_os_error(&self) -> Result<Herd, (String, io::Error)> {
        let parent = self.parent_cgroup.as_deref();
        let measured = !self.cpu_time_unasked;
        let adopt = self
            .adopt_orphans
            .unwrap_or_else(|| std::env::var_os(ADOPT_ORPHANS_ENV).is_none_or(|v| v != "0"));
        let group = || group_container(adopt);
        let (container, fallback_reason) = match self.mechanism {
            Some(Mechanism::CgroupV2) => match sys::Container::cgroup(parent, measured) {
                Ok(container) => (container, None),
                Err(sys::ContainerError::Unavailable(why)) => {
                    return Err((
                        format!("no cgroup v2 herd here: {why}"),
                        io::ErrorKind::Unsupported.into(),
                    ))
                }
                Err(sys::ContainerError::Failed { context, source }) => {
                    return Err((context, source))
                }
            },
            Some(Mechanism::ProcessGroup) => (group()?, None),
            None => match sys::Container::cgroup(parent, measured) {
                Ok(container) => (container, None),
                Err(sys::ContainerError::Unavailable(why)) => {
                    tracing::warn!(
                        reason = %why,
                        "sheepdog: no cgroup for a herd; falling back to a process group",
                    );
                    (group()?, Some(why))
                }
                Err(sys::ContainerError::Failed { context, source }) => {
                    return Err((context, source))
                }
            },
        };
        // A pid namespace's init takes every process of the namespace with it when it dies.
        let guarded = container.guarded() || sys::namespace_init();
        let containment = Containment {
            mechanism: match container.cgroup_path() {
                Some(_) => Mechanism::CgroupV2,
                None => Mechanism::ProcessGroup,
            },
            cgroup: container.cgroup_path().map(Path::to_owned),
            process_group: container.process_group(),
            survives_owner_kill: !guarded,
            unguarded_reason: (!guarded).then(sys::unguarded_reason),
            adopts_orphans: container.adopts_orphans().unwrap_or(false),
            fallback_reason,
        };
        let herd = Herd {
            core: Arc::new(HerdCore {
                container: Some(container),
                containment,
                lifecycle: Lifecycle::default(),
                released: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if let Some(timeout) = self.timeout {
            herd.enforce(
                Deadline::after(timeout),
                self.stop_plan.clone(),
                None,
                false,
            );
        }
        Ok(herd)
    }
}

fn group_container(adopt: bool) -> Result<sys::Container, (String, io::Error)> {
    sys::Container::group(adopt)
        .map_err(|err| ("cannot start a process group for a herd".to_owned(), err))
}

/// A containment mechanism, strongest first.
///
/// ```
/// assert_eq!(sheepdog::Mechanism::CgroupV2.to_string(), "cgroup v2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// A cgroup v2 directory per herd: the kernel tracks every descendant.
    CgroupV2,
    /// A process group per herd, for hosts where no cgroup can be made (no cgroup v2 mount, no
    /// write access: unprivileged users, many containers), with this program as the adopter of
    /// the herd's orphans ([`HerdBuilder::adopt_orphans`]): descendants that start a new
    /// session or process group, or daemonize, are found by a walk of the process tree and end
    /// with the herd. Each child it starts gets `SHEEPDOG_HERD=<owner pid>.<n>` in its
    /// environment, the mark by which an adopted orphan is told to its herd. What it cannot
    /// catch is in [`Containment::cannot_catch`].
    ProcessGroup,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mechanism::CgroupV2 => f.write_str("cgroup v2"),
            Mechanism::ProcessGroup => f.write_str("process group"),
        }
    }
}

/// Which mechanism contains a herd, where, and what it cannot catch.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let herd = sheepdog::Herd::new()?;
/// let containment = herd.containment();
/// println!("{containment}; cannot catch: {:?}", containment.cannot_catch());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containment {
    mechanism: Mechanism,
    cgroup: Option<PathBuf>,
    process_group: Option<i32>,
    /// Why a weaker mechanism than cgroup v2 is in force, when it was not asked for.
    fallback_reason: Option<String>,
    /// The owner-death sentinel could not take this herd.
    survives_owner_kill: bool,
    /// Why not, when it could not (also logged as a `tracing` warning).
    unguarded_reason: Option<String>,
    /// A process-group herd whose orphans this program adopts.
    adopts_orphans: bool,
}

impl Containment {
    /// The mechanism in force.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// println!("{}", herd.containment().mechanism());
    /// # Ok(()) }
    /// ```
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The herd's cgroup directory, for the cgroup mechanism.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// println!("{:?}", herd.containment().cgroup());
    /// # Ok(()) }
    /// ```
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// The process group the herd's children are in (its id), when there is one yet.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// println!("{:?}", herd.containment().process_group());
    /// # Ok(()) }
    /// ```
    pub fn process_group(&self) -> Option<i32> {
        self.process_group
    }

    /// Why this herd got a weaker mechanism than cgroup v2 without asking for it.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// if let Some(why) = herd.containment().fallback_reason() {
    ///     eprintln!("warning: weaker containment: {why}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Why this herd's processes would outlive this program killed by SIGKILL, when they would
    /// (the owner-death sentinel could not be started, did not answer in time, or refused the
    /// herd); `None` when the herd dies with this program however it ends.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// if let Some(why) = herd.containment().unguarded_reason() {
    ///     eprintln!("warning: the herd outlives a killed owner: {why}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn unguarded_reason(&self) -> Option<&str> {
        self.unguarded_reason.as_deref()
    }

    /// Whether this program adopts the herd's orphans (a process-group herd; see
    /// [`HerdBuilder::adopt_orphans`]).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// println!("adopts orphans: {}", herd.containment().adopts_orphans());
    /// # Ok(()) }
    /// ```
    pub fn adopts_orphans(&self) -> bool {
        self.adopts_orphans
    }

    /// The ways out this mechanism cannot close, in words.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// for gap in herd.containment().cannot_catch() {
    ///     println!("- {gap}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cannot_catch(&self) -> Vec<&'static str> {
        let mut gaps = match self.mechanism {
            Mechanism::CgroupV2 => vec![
                "a process that moves itself into a cgroup outside the herd and also leaves the \
                 herd's process group (it needs write access to that cgroup)",
            ],
            Mechanism::ProcessGroup => {
                let mut gaps = vec![
                    "when this program is killed (SIGKILL), processes that left the herd's \
                     process group (setsid, setpgid, daemons): the sentinel ends the group \
                     only, and their adopter is gone; only a cgroup holds them",
                    "a member running as another user (a set-user-ID program), which this \
                     program may not signal",
                ];
                gaps.push(if self.adopts_orphans {
                    "an orphan (its parent exited) that dropped the herd's mark from its \
                     environment (SHEEPDOG_HERD) or hides it (another user): it cannot be told \
                     from another program's process"
                } else {
                    "a process that left the herd's process group and dropped the herd's mark \
                     from its environment (SHEEPDOG_HERD), once its parent exited: orphans are \
                     not adopted"
                });
                gaps
            }
        };
        if self.survives_owner_kill {
            gaps.push(
                "the herd's processes when this program is killed by SIGKILL: the owner-death \
                 sentinel could not take this herd",
            );
        }
        gaps
    }
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.cgroup, self.process_group) {
            (Some(path), _) => write!(f, "{} at {}", self.mechanism, path.display())?,
            (None, Some(pgid)) => write!(f, "{} {pgid}", self.mechanism)?,
            (None, None) => write!(f, "{}", self.mechanism)?,
        }
        if let Some(why) = &self.fallback_reason {
            write!(f, " (fallback: {why})")?;
        }
        Ok(())
    }
}

/// What [`host_containment`] predicts for a herd made here, and why.
///
/// ```
/// let host = sheepdog::host_containment();
/// println!("{host}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostContainment {
    mechanism: Option<Mechanism>,
    reason: String,
}

impl HostContainment {
    /// The mechanism a herd would get, or `None` if `Herd::new` would fail.
    ///
    /// ```
    /// let _ = sheepdog::host_containment().mechanism();
    /// ```
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    /// Why: where the cgroup would go, or what is missing.
    ///
    /// ```
    /// assert!(!sheepdog::host_containment().reason().is_empty());
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for HostContainment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mechanism {
            Some(mechanism) => write!(f, "{mechanism}: {}", self.reason),
            None => write!(f, "no containment: {}", self.reason),
        }
    }
}

/// Predicts, without creating anything, which containment [`Herd::new`] gets on this host.
///
/// ```
/// match sheepdog::host_containment().mechanism() {
///     Some(mechanism) => println!("herds here use {mechanism}"),
///     None => println!("no herds here: {}", sheepdog::host_containment().reason()),
/// }
/// ```
pub fn host_containment() -> HostContainment {
    match sys::writable_cgroup_parent() {
        Ok(parent) => HostContainment {
            mechanism: Some(Mechanism::CgroupV2),
            reason: format!("herd cgroups are created below {}", parent.display()),
        },
        Err(why) if !sys::SUPPORTED => HostContainment {
            mechanism: None,
            reason: why,
        },
        Err(why) => HostContainment {
            mechanism: Some(Mechanism::ProcessGroup),
            reason: format!("falling back to a process group per herd: {why}"),
        },
    }
}

/// Job control for a program that runs herds: what to do on SIGTSTP (Ctrl-Z, or a shell's
/// `kill -TSTP`) once the program handles that signal itself. Freezes every herd, stops this
/// process (SIGSTOP), and when a shell continues it (`fg`, `bg`: SIGCONT), thaws the herds and
/// returns. [`Command::timeout`] does not count the time spent suspended; pause your own timers
/// ([`time::Sleep`](crate::time::Sleep)) around it likewise.
///
/// Cancelling it while it freezes the herds leaves those frozen so far frozen (thaw them with
/// [`Herd::thaw`]); once this process has stopped, it runs to its end.
///
/// ```no_run
/// # async fn demo(herd: sheepdog::Herd, mut deadline: sheepdog::time::Sleep) -> std::io::Result<()> {
/// use tokio::signal::unix::{signal, SignalKind};
/// let mut tstp = signal(SignalKind::from_raw(20))?; // SIGTSTP
/// loop {
///     tokio::select! {
///         _ = tstp.recv() => {
///             deadline.pause();
///             sheepdog::suspend(&[&herd]).await?;
///             deadline.resume();
///         }
///         () = &mut deadline => break,
///     }
/// }
/// # Ok(()) }
/// ```
pub async fn suspend(herds: &[&Herd]) -> io::Result<()> {
    for herd in herds {
        herd.freeze().await?;
    }
    crate::time::begin_suspension();
    sys::stop_self();
    crate::time::end_suspension();
    for herd in herds {
        herd.thaw().await?;
    }
    Ok(())
}
