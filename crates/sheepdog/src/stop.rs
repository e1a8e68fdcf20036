//! `StopPlan`: the graceful ladder as data, and the one driver that runs it for every mechanism.

use std::fmt;
use std::time::Duration;

use crate::signal::Signal;

/// How to stop a tree: steps of (signal, to whom, how long to wait for the tree to empty), and
/// then, always, a kill that cannot be ignored.
///
/// Escalation is timed by the *tree* emptying, not by the leader exiting: a leader that exits
/// on SIGTERM while its children ignore it does not cut the ladder short.
///
/// ```
/// use std::time::Duration;
/// use sheepdog::{Signal, StopPlan, StopTarget};
///
/// // SIGINT to the leader, 2 s; SIGTERM to everybody, 5 s; then SIGKILL.
/// let plan = StopPlan::new()
///     .then(Signal::INT, StopTarget::Leader, Duration::from_secs(2))
///     .then(Signal::TERM, StopTarget::Tree, Duration::from_secs(5));
/// assert_eq!(plan.steps().len(), 2);
/// assert_eq!(StopPlan::grace(Duration::from_secs(5)).steps()[0].signal(), Signal::TERM);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopPlan {
    steps: Vec<StopStep>,
}

/// One step of a [`StopPlan`].
///
/// ```
/// let plan = sheepdog::StopPlan::grace(std::time::Duration::from_secs(1));
/// let step = plan.steps()[0];
/// assert_eq!(step.target(), sheepdog::StopTarget::Tree);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopStep {
    signal: Signal,
    target: StopTarget,
    wait: Duration,
}

/// Who a step's signal goes to.
///
/// ```
/// assert_ne!(sheepdog::StopTarget::Leader, sheepdog::StopTarget::Tree);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopTarget {
    /// The process that was spawned (for a herd without one, the whole tree).
    Leader,
    /// Every process in the herd.
    Tree,
}

impl StopPlan {
    /// A plan with no gentle step: kill at once.
    ///
    /// ```
    /// assert!(sheepdog::StopPlan::new().steps().is_empty());
    /// ```
    pub fn new() -> StopPlan {
        StopPlan { steps: Vec::new() }
    }

    /// SIGTERM to the whole tree, up to `grace` for it to exit, then kill: the usual plan.
    ///
    /// ```
    /// let plan = sheepdog::StopPlan::grace(std::time::Duration::from_secs(10));
    /// assert_eq!(plan.steps()[0].wait(), std::time::Duration::from_secs(10));
    /// ```
    pub fn grace(grace: Duration) -> StopPlan {
        StopPlan::new().then(Signal::TERM, StopTarget::Tree, grace)
    }

    /// Adds a step: send `signal` to `target`, then wait up to `wait` for the tree to empty.
    ///
    /// ```
    /// use sheepdog::{Signal, StopPlan, StopTarget};
    /// let plan = StopPlan::new().then(Signal::HUP, StopTarget::Leader, std::time::Duration::ZERO);
    /// assert_eq!(plan.steps()[0].signal(), Signal::HUP);
    /// ```
    pub fn then(mut self, signal: Signal, target: StopTarget, wait: Duration) -> StopPlan {
        self.steps.push(StopStep {
            signal,
            target,
            wait,
        });
        self
    }

    /// The gentle steps, in order; the kill that follows them is implied.
    ///
    /// ```
    /// assert_eq!(sheepdog::StopPlan::default().steps().len(), 1);
    /// ```
    pub fn steps(&self) -> &[StopStep] {
        &self.steps
    }
}

impl Default for StopPlan {
    /// [`StopPlan::grace`] of 5 seconds.
    fn default() -> StopPlan {
        StopPlan::grace(Duration::from_secs(5))
    }
}

impl StopStep {
    /// The signal sent.
    ///
    /// ```
    /// assert_eq!(sheepdog::StopPlan::default().steps()[0].signal(), sheepdog::Signal::TERM);
    /// ```
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Who it is sent to.
    ///
    /// ```
    /// assert_eq!(sheepdog::StopPlan::default().steps()[0].target(), sheepdog::StopTarget::Tree);
    /// ```
    pub fn target(&self) -> StopTarget {
        self.target
    }

    /// How long to wait for the tree to empty before the next step.
    ///
    /// ```
    /// let step = sheepdog::StopPlan::default().steps()[0];
    /// assert_eq!(step.wait(), std::time::Duration::from_secs(5));
    /// ```
    pub fn wait(&self) -> Duration {
        self.wait
    }
}

impl fmt::Display for StopPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let to = match step.target {
                StopTarget::Leader => "leader",
                StopTarget::Tree => "tree",
            };
            write!(f, "{} to the {to}, wait {:?}; ", step.signal, step.wait)?;
        }
        f.write_str("then SIGKILL to the tree")
    }
}

/// What stopping a herd did: who got which signal, whether the final kill was needed, how long
/// it took.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let herd = sheepdog::Herd::new()?;
/// let report = herd.stop(std::time::Duration::from_secs(1)).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    pub(crate) signalled: Vec<(Signal, Vec<u32>)>,
    pub(crate) left_at_kill: Option<usize>,
    pub(crate) elapsed: Duration,
}

impl StopReport {
    /// Each step's signal and the pids it was sent to, in order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let herd = sheepdog::Herd::new()?;
    /// # herd.spawn(&sheepdog::Command::new("sleep").arg("10"))?;
    /// # let report = herd.stop(std::time::Duration::from_millis(100)).await?;
    /// for (signal, pids) in report.signalled() {
    ///     println!("{signal} to {pids:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn signalled(&self) -> &[(Signal, Vec<u32>)] {
        &self.signalled
    }

    /// The pids that were sent SIGTERM, in any step.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let herd = sheepdog::Herd::new()?;
    /// # herd.spawn(&sheepdog::Command::new("sleep").arg("10"))?;
    /// # let report = herd.stop(std::time::Duration::from_millis(100)).await?;
    /// println!("{} processes got SIGTERM", report.terminated().len());
    /// # Ok(()) }
    /// ```
    pub fn terminated(&self) -> Vec<u32> {
        self.signalled
            .iter()
            .filter(|(signal, _)| *signal == Signal::TERM)
            .flat_map(|(_, pids)| pids.iter().copied())
            .collect()
    }

    /// Whether the gentle steps ran out and the rest of the tree had to be killed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let herd = sheepdog::Herd::new()?;
    /// # herd.spawn(&sheepdog::Command::new("sleep").arg("10"))?;
    /// # let report = herd.stop(std::time::Duration::from_millis(100)).await?;
    /// if report.escalated() { println!("had to kill"); }
    /// # Ok(()) }
    /// ```
    pub fn escalated(&self) -> bool {
        self.left_at_kill.is_some()
    }

    /// How many processes were still there when the kill came, if it came.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let herd = sheepdog::Herd::new()?;
    /// # herd.spawn(&sheepdog::Command::new("sleep").arg("10"))?;
    /// # let report = herd.stop(std::time::Duration::from_millis(100)).await?;
    /// println!("{:?}", report.killed());
    /// # Ok(()) }
    /// ```
    pub fn killed(&self) -> Option<usize> {
        self.left_at_kill
    }

    /// How long the stop took, until the tree was gone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let herd = sheepdog::Herd::new()?;
    /// # herd.spawn(&sheepdog::Command::new("sleep").arg("10"))?;
    /// # let report = herd.stop(std::time::Duration::from_millis(100)).await?;
    /// println!("{:?}", report.elapsed());
    /// # Ok(()) }
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (signal, pids) in &self.signalled {
            write!(f, "{signal} to {} process(es); ", pids.len())?;
        }
        match self.left_at_kill {
            None => write!(f, "all exited")?,
            Some(left) => write!(f, "{left} still there, killed")?,
        }
        write!(f, " ({:?} in all)", self.elapsed)
    }
}
