//! The lifecycle driver: the one place where deadlines fire and stop ladders run.
//!
//! Their state lives with the process tree (a [`Lifecycle`] in the herd, or in a lone child's
//! watch), and their work runs in a tokio task that the tree's owner holds, never in the future
//! a caller happens to poll. So a dropped `wait()` or `stop()` loses nothing: the deadline still
//! fires, the ladder still climbs, and the next call joins it or reads how it ended.
//!
//! What is stopped is a [`Flock`]: a herd (the whole tree) or a lone child of a shared herd.
//! The trait is also the seam that lets the ladder's logic be tested without processes.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::signal::Signal;
use crate::status::ExitStatus;
use crate::stop::{StopPlan, StopReport, StopTarget};
use crate::time::Deadline;

/// A tree the driver can stop.
pub(crate) trait Flock: Send + Sync + 'static {
    /// Where its deadline and stop are kept.
    fn lifecycle(&self) -> &Lifecycle;
    /// Resumes every member that is frozen or stopped, so that it can act on signals.
    fn thaw(&self) -> io::Result<()>;
    /// Sends `signal`, then SIGCONT, to every member; returns the pids that got it.
    fn signal_all(&self, signal: Signal) -> impl Future<Output = io::Result<Vec<u32>>> + Send;
    /// Completes when no member is left.
    fn wait_empty(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// How many members are left now.
    fn count(&self) -> impl Future<Output = usize> + Send;
    /// Kills every member at once, without waiting.
    fn kill(&self) -> io::Result<()>;
    /// After the tree left on its own: what is left outside it that belongs to it.
    fn finish(&self) {}
}

/// The process a plan's `Leader` steps go to.
pub(crate) trait Leader: Send + Sync + 'static {
    fn pid(&self) -> u32;
    /// Sends `signal`, then SIGCONT; an error once the process is gone.
    fn signal(&self, signal: Signal) -> io::Result<()>;
    /// Whether it has exited (not necessarily been reaped).
    fn has_exited(&self) -> bool;
}

impl<T: Leader> Leader for Arc<T> {
    fn pid(&self) -> u32 {
        (**self).pid()
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        (**self).signal(signal)
    }

    fn has_exited(&self) -> bool {
        (**self).has_exited()
    }
}

impl Leader for crate::sys::Leader {
    fn pid(&self) -> u32 {
        crate::sys::Leader::pid(self)
    }

    fn signal(&self, signal: Signal) -> io::Result<()> {
        crate::sys::Leader::signal(self, signal, true)
    }

    fn has_exited(&self) -> bool {
        crate::sys::Leader::has_exited(self)
    }
}

/// How a stop ended, shareable between every caller that waits for it.
type Ended = Result<StopReport, (io::ErrorKind, String)>;

/// The deadline and the stop of one tree.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    state: Mutex<State>,
    /// How many processes were started into the tree: a stop that ended is joined only while
    /// nothing was started after it began.
    spawns: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The last stop (under way, or its report once it has ended), and how many spawns the
    /// tree had seen when it began.
    stop: Option<(u64, watch::Receiver<Option<Ended>>)>,
    /// The deadline passed while the tree (or its leader) still ran.
    timed_out: bool,
    /// Tasks that run for this tree: aborted when its owner lets it go.
    tasks: Vec<AbortHandle>,
    /// A deadline set where no tokio runtime was at hand, started by the first async call.
    pending: Option<Pending>,
}

struct Pending(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl Lifecycle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// A process was started into the tree.
    pub(crate) fn spawned(&self) {
        self.spawns.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the deadline passed while the tree still ran.
    pub(crate) fn timed_out(&self) -> bool {
        self.state().timed_out
    }

    /// Starts a deadline that was set outside a tokio runtime, now that there is one.
    pub(crate) fn start_pending(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let pending = self.state().pending.take();
        if let Some(Pending(start)) = pending {
            start();
        }
    }

    /// Waits for the stop under way, if any, to end; `None` when no stop was begun.
    pub(crate) async fn stopped(&self) -> Option<io::Result<StopReport>> {
        let (_, receiver) = self.state().stop.clone()?;
        Some(ended(receiver).await)
    }

    /// Marks `statuses` (the leader's, or every stage's) timed out if the tree's deadline
    /// passed while it ran, and then waits for that stop to end.
    pub(crate) async fn conclude(&self, statuses: &mut [ExitStatus]) -> io::Result<()> {
        if !self.timed_out() {
            return Ok(());
        }
        for status in statuses {
            status.timed_out = true;
        }
        match self.stopped().await {
            Some(stopped) => stopped.map(drop),
            None => Ok(()),
        }
    }

    /// Ends every task that runs for this tree (its owner is letting it go).
    pub(crate) fn abort(&self) -> bool {
        let mut state = self.state();
        state.pending = None;
        let had = !state.tasks.is_empty();
        for task in state.tasks.drain(..) {
            task.abort();
        }
        had
    }

    fn keep(&self, task: AbortHandle) {
        let mut state = self.state();
        state.tasks.retain(|task| !task.is_finished());
        state.tasks.push(task);
    }
}

/// Stops `flock` by `plan`, or joins the last stop (whatever its plan) while it is under way, or
/// once it has ended (well) if nothing was started into the tree since it began. The stop runs
/// in a task of its own: dropping this future does not interrupt it.
pub(crate) async fn stop<F: Flock, L: Leader>(
    flock: &Arc<F>,
    plan: &StopPlan,
    leader: Option<L>,
) -> io::Result<StopReport> {
    ended(begin_stop(flock, plan, leader)).await
}

fn begin_stop<F: Flock, L: Leader>(
    flock: &Arc<F>,
    plan: &StopPlan,
    leader: Option<L>,
) -> watch::Receiver<Option<Ended>> {
    let lifecycle = flock.lifecycle();
    let spawns = lifecycle.spawns.load(Ordering::Relaxed);
    let mut state = lifecycle.state();
    if let Some((began, stop)) = &state.stop {
        let joinable = match &*stop.borrow() {
            None => true,
            Some(ended) => ended.is_ok() && *began == spawns,
        };
        if joinable {
            return stop.clone();
        }
    }
    let (report, receiver) = watch::channel(None);
    state.stop = Some((spawns, receiver.clone()));
    drop(state);
    let (flock_, plan) = (Arc::clone(flock), plan.clone());
    let task = tokio::spawn(async move {
        let ended = run_ladder(&*flock_, &plan, leader.as_ref())
            .await
            .map_err(|err| (err.kind(), err.to_string()));
        report.send_replace(Some(ended));
    });
    lifecycle.keep(task.abort_handle());
    receiver
}

async fn ended(mut receiver: watch::Receiver<Option<Ended>>) -> io::Result<StopReport> {
    let ended = receiver
        .wait_for(Option::is_some)
        .await
        .map_err(|_| io::Error::other("the stop was abandoned: its herd was dropped"))?;
    match ended.as_ref() {
        Some(Ok(report)) => Ok(report.clone()),
        Some(Err((kind, message))) => Err(io::Error::new(*kind, message.clone())),
        None => unreachable!("waited for Some"),
    }
}

/// Enforces `deadline` on `flock`: when it passes, the tree is stopped by `plan` whether or not
/// anybody waits. With `until_empty`, the watch ends early once the tree is gone. Outside a
/// tokio runtime it starts with the first async call on the tree (the deadline still counts
/// from now).
pub(crate) fn enforce<F: Flock, L: Leader>(
    flock: &Arc<F>,
    deadline: Deadline,
    plan: StopPlan,
    leader: Option<L>,
    until_empty: bool,
) {
    let weak = Arc::downgrade(flock);
    let start = move || {
        let Some(flock) = weak.upgrade() else {
            return;
        };
        let watched = Arc::clone(&flock);
        let task = tokio::spawn(async move {
            let flock = watched;
            let gone = async {
                if until_empty {
                    let _ = flock.wait_empty().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = deadline.reached() => {}
                () = gone => return,
            }
            let running = match &leader {
                Some(leader) => !leader.has_exited(),
                None => flock.count().await > 0,
            };
            flock.lifecycle().state().timed_out |= running;
            if let Err(err) = stop(&flock, &plan, leader).await {
                tracing::error!(%err, "sheepdog: cannot stop a tree at its deadline");
            }
        });
        flock.lifecycle().keep(task.abort_handle());
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        start();
    } else {
        flock.lifecycle().state().pending = Some(Pending(Box::new(start)));
    }
}

/// Runs `plan` on `flock`: thaws it, then each step (a signal to the leader, or to every member
/// when there is no leader or the step says so, and a wait for the tree to empty), and kills
/// whatever is left at the end. Escalation is timed by the tree emptying, not by the leader
/// exiting; the waits do not count time this program spends suspended by job control.
pub(crate) async fn run_ladder<F: Flock, L: Leader>(
    flock: &F,
    plan: &StopPlan,
    leader: Option<&L>,
) -> io::Result<StopReport> {
    let started = Instant::now();
    flock.thaw()?;
    let mut signalled = Vec::new();
    for step in plan.steps() {
        let pids = match (step.target(), leader) {
            // A leader that is gone already gets nothing; the tree may still be there.
            (StopTarget::Leader, Some(leader)) => match leader.signal(step.signal()) {
                Ok(()) => vec![leader.pid()],
                Err(_) => Vec::new(),
            },
            _ => flock.signal_all(step.signal()).await?,
        };
        signalled.push((step.signal(), pids));
        if left_within(flock, step.wait()).await {
            flock.finish();
            return Ok(StopReport {
                signalled,
                left_at_kill: None,
                elapsed: started.elapsed(),
            });
        }
    }
    let left = flock.count().await;
    flock.kill()?;
    flock.wait_empty().await?;
    Ok(StopReport {
        signalled,
        left_at_kill: (left > 0).then_some(left),
        elapsed: started.elapsed(),
    })
}

/// Whether the tree empties within `wait` of running time (a failed watch counts as empty:
/// the kill that would follow could not be confirmed either).
async fn left_within<F: Flock>(flock: &F, wait: Duration) -> bool {
    let deadline = Deadline::after(wait);
    tokio::select! {
        _ = flock.wait_empty() => true,
        () = deadline.reached() => false,
    }
}

#[cfg(test)]
mod tests {
    //! The ladder and the deadline with a fake tree and tokio's paused clock: no processes.

    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;

    /// A tree of `members` processes that obey the signals in `obeys` (each obedient member
    /// leaves), and whose `kill` empties it.
    #[derive(Debug, Default)]
    struct FakeFlock {
        lifecycle: Lifecycle,
        members: AtomicUsize,
        obeys: Vec<Signal>,
        signals: Mutex<Vec<Signal>>,
        changed: Notify,
    }

    impl FakeFlock {
        fn new(members: usize, obeys: &[Signal]) -> Arc<FakeFlock> {
            Arc::new(FakeFlock {
                members: AtomicUsize::new(members),
                obeys: obeys.to_vec(),
                ..FakeFlock::default()
            })
        }

        fn leave(&self) {
            self.members.store(0, Ordering::SeqCst);
            self.changed.notify_waiters();
        }

        fn signals(&self) -> Vec<Signal> {
            crate::lock(&self.signals).clone()
        }
    }

    impl Flock for FakeFlock {
        fn lifecycle(&self) -> &Lifecycle {
            &self.lifecycle
        }

        fn thaw(&self) -> io::Result<()> {
            Ok(())
        }

        async fn signal_all(&self, signal: Signal) -> io::Result<Vec<u32>> {
            crate::lock(&self.signals).push(signal);
            let n = self.members.load(Ordering::SeqCst);
            if self.obeys.contains(&signal) {
                self.leave();
            }
            Ok((0..n as u32).collect())
        }

        async fn wait_empty(&self) -> io::Result<()> {
            loop {
                let changed = self.changed.notified();
                if self.members.load(Ordering::SeqCst) == 0 {
                    return Ok(());
                }
                changed.await;
            }
        }

        async fn count(&self) -> usize {
            self.members.load(Ordering::SeqCst)
        }

        fn kill(&self) -> io::Result<()> {
            crate::lock(&self.signals).push(Signal::KILL);
            self.leave();
            Ok(())
        }
    }

    struct NoLeader;

    impl Leader for NoLeader {
        fn pid(&self) -> u32 {
            unreachable!()
        }
        fn signal(&self, _: Signal) -> io::Result<()> {
            unreachable!()
        }
        fn has_exited(&self) -> bool {
            unreachable!()
        }
    }

    const NONE: Option<NoLeader> = None;

    #[tokio::test(start_paused = true)]
    async fn ladder_stops_at_the_first_step_the_tree_obeys() {
        let flock = FakeFlock::new(3, &[Signal::TERM]);
        let plan = StopPlan::new()
            .then(Signal::INT, StopTarget::Tree, Duration::from_secs(2))
            .then(Signal::TERM, StopTarget::Tree, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let report = run_ladder(&*flock, &plan, NONE.as_ref()).await.unwrap();
        assert_eq!(flock.signals(), [Signal::INT, Signal::TERM]);
        assert!(!report.escalated());
        assert_eq!(report.signalled().len(), 2);
        // The INT step waited its whole 2 s; TERM emptied the tree at once.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn ladder_kills_what_ignores_every_step() {
        let flock = FakeFlock::new(2, &[]);
        let report = run_ladder(
            &*flock,
            &StopPlan::grace(Duration::from_secs(3)),
            NONE.as_ref(),
        )
        .await
        .unwrap();
        assert_eq!(flock.signals(), [Signal::TERM, Signal::KILL]);
        assert_eq!(report.killed(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_fires_without_anybody_waiting() {
        let flock = FakeFlock::new(1, &[]);
        enforce(
            &flock,
            Deadline::after(Duration::from_secs(10)),
            StopPlan::grace(Duration::from_secs(1)),
            NONE,
            false,
        );
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(flock.signals().is_empty());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(flock.signals(), [Signal::TERM, Signal::KILL]);
        assert!(flock.lifecycle().timed_out());
        let report = flock.lifecycle().stopped().await.unwrap().unwrap();
        assert_eq!(report.killed(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tree_gone_before_its_deadline_is_not_timed_out() {
        let flock = FakeFlock::new(1, &[]);
        enforce(
            &flock,
            Deadline::after(Duration::from_secs(10)),
            StopPlan::default(),
            NONE,
            true,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        flock.leave();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(flock.signals().is_empty());
        assert!(!flock.lifecycle().timed_out());
        assert!(flock.lifecycle().stopped().await.is_none());
    }

    /// Dropping the caller's future after any number of polls leaves the stop running, and the
    /// next call joins it: one ladder, one report.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_stop_goes_on_and_is_joined() {
        for polls in 1..4 {
            let flock = FakeFlock::new(1, &[]);
            let plan = StopPlan::grace(Duration::from_secs(5));
            {
                let mut first = std::pin::pin!(stop(&flock, &plan, NONE));
                for _ in 0..polls {
                    let _ = futures_poll_once(first.as_mut()).await;
                }
            }
            // A different plan joins the stop under way instead of starting another.
            let report = stop(&flock, &StopPlan::new(), NONE).await.unwrap();
            assert_eq!(flock.signals(), [Signal::TERM, Signal::KILL], "{polls}");
            assert_eq!(report.signalled()[0].0, Signal::TERM);
        }
    }

    /// A stop that ended is joined only while nothing new was started into the tree: after a
    /// spawn, the next stop runs again.
    #[tokio::test(start_paused = true)]
    async fn a_stop_after_a_new_spawn_runs_again() {
        let flock = FakeFlock::new(1, &[Signal::TERM]);
        let plan = StopPlan::grace(Duration::from_secs(1));
        stop(&flock, &plan, NONE).await.unwrap();
        stop(&flock, &plan, NONE).await.unwrap();
        assert_eq!(flock.signals(), [Signal::TERM], "joined, not run again");
        flock.members.store(1, Ordering::SeqCst);
        flock.lifecycle().spawned();
        let report = stop(&flock, &plan, NONE).await.unwrap();
        assert_eq!(flock.signals(), [Signal::TERM, Signal::TERM]);
        assert_eq!(report.signalled()[0].1.len(), 1);
    }

    /// A leader that records what it is sent; `gone` makes it a leader that has exited.
    #[derive(Default)]
    struct FakeLeader {
        gone: bool,
        got: Mutex<Vec<Signal>>,
    }

    impl Leader for Arc<FakeLeader> {
        fn pid(&self) -> u32 {
            7
        }
        fn signal(&self, signal: Signal) -> io::Result<()> {
            if self.gone {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            crate::lock(&self.got).push(signal);
            Ok(())
        }
        fn has_exited(&self) -> bool {
            self.gone
        }
    }

    /// A step for the leader goes to the leader alone, and to nobody once it is gone; the
    /// tree's steps still run, timed by the tree emptying.
    #[tokio::test(start_paused = true)]
    async fn leader_steps_reach_only_a_leader_still_there() {
        let plan = StopPlan::new()
            .then(Signal::INT, StopTarget::Leader, Duration::from_secs(1))
            .then(Signal::TERM, StopTarget::Tree, Duration::from_secs(1));
        for gone in [false, true] {
            let flock = FakeFlock::new(2, &[Signal::TERM]);
            let leader = Arc::new(FakeLeader {
                gone,
                ..FakeLeader::default()
            });
            let report = run_ladder(&*flock, &plan, Some(&leader)).await.unwrap();
            let to_leader = if gone { vec![] } else { vec![7] };
            assert_eq!(report.signalled()[0], (Signal::INT, to_leader));
            assert_eq!(report.signalled()[1], (Signal::TERM, vec![0, 1]));
            let expected: &[Signal] = if gone { &[] } else { &[Signal::INT] };
            assert_eq!(*crate::lock(&leader.got), expected);
            assert_eq!(
                flock.signals(),
                [Signal::TERM],
                "the tree got only its own step"
            );
            assert!(!report.escalated());
        }
    }

    /// Polls `fut` once, returning whether it completed.
    async fn futures_poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
        let mut fut = Some(fut);
        std::future::poll_fn(|cx| {
            let ready = fut.take().expect("polled once").poll(cx).is_ready();
            std::task::Poll::Ready(ready)
        })
        .await
    }
}
