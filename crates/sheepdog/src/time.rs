//! Timers that can be paused: a herd suspended by job control (Ctrl-Z) must not run out of
//! time while it cannot run.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// Measures running time: the time between start and now, minus the time spent paused.
///
/// ```
/// let mut watch = sheepdog::time::Stopwatch::start();
/// watch.pause();
/// let frozen = watch.elapsed();
/// std::thread::sleep(std::time::Duration::from_millis(5));
/// assert_eq!(watch.elapsed(), frozen); // nothing counts while paused
/// watch.resume();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    /// Running time accumulated before the current run.
    banked: Duration,
    /// When the current run began; `None` while paused.
    running_since: Option<Instant>,
}

impl Stopwatch {
    /// A stopwatch running from now.
    ///
    /// ```
    /// let watch = sheepdog::time::Stopwatch::start();
    /// assert!(!watch.is_paused());
    /// ```
    pub fn start() -> Stopwatch {
        Stopwatch {
            banked: Duration::ZERO,
            running_since: Some(Instant::now()),
        }
    }

    /// Stops counting; does nothing if already paused.
    ///
    /// ```
    /// let mut watch = sheepdog::time::Stopwatch::start();
    /// watch.pause();
    /// assert!(watch.is_paused());
    /// ```
    pub fn pause(&mut self) {
        if let Some(since) = self.running_since.take() {
            self.banked += since.elapsed();
        }
    }

    /// Counts again; does nothing if running.
    ///
    /// ```
    /// let mut watch = sheepdog::time::Stopwatch::start();
    /// watch.pause();
    /// watch.resume();
    /// assert!(!watch.is_paused());
    /// ```
    pub fn resume(&mut self) {
        if self.running_since.is_none() {
            self.running_since = Some(Instant::now());
        }
    }

    /// Whether it is paused.
    ///
    /// ```
    /// assert!(!sheepdog::time::Stopwatch::start().is_paused());
    /// ```
    pub fn is_paused(&self) -> bool {
        self.running_since.is_none()
    }

    /// The running time so far.
    ///
    /// ```
    /// let watch = sheepdog::time::Stopwatch::start();
    /// assert!(watch.elapsed() < std::time::Duration::from_secs(60));
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.banked
            + self
                .running_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// A sleep that completes after `duration` of *running* time; paused, it does not advance.
///
/// Pause and resume it between polls (for example in a `tokio::select!` loop that handles
/// SIGTSTP and SIGCONT).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut sleep = sheepdog::time::Sleep::new(std::time::Duration::from_millis(10));
/// sleep.pause();
/// sleep.resume();
/// (&mut sleep).await;
/// assert!(sleep.is_elapsed());
/// # }
/// ```
#[derive(Debug)]
pub struct Sleep {
    watch: Stopwatch,
    duration: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Sleep {
    /// A running sleep of `duration`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// sheepdog::time::Sleep::new(std::time::Duration::from_millis(1)).await;
    /// # }
    /// ```
    pub fn new(duration: Duration) -> Sleep {
        Sleep {
            watch: Stopwatch::start(),
            duration,
            timer: Box::pin(tokio::time::sleep(duration)),
        }
    }

    /// Stops the clock: the remaining time is kept for [`resume`](Sleep::resume).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut sleep = sheepdog::time::Sleep::new(std::time::Duration::from_secs(1));
    /// sleep.pause();
    /// # }
    /// ```
    pub fn pause(&mut self) {
        self.watch.pause();
    }

    /// Starts the clock again with the time that was left.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut sleep = sheepdog::time::Sleep::new(std::time::Duration::from_secs(1));
    /// sleep.pause();
    /// sleep.resume();
    /// # }
    /// ```
    pub fn resume(&mut self) {
        if self.watch.is_paused() {
            self.watch.resume();
            let left = self.duration.saturating_sub(self.watch.elapsed());
            self.timer.as_mut().reset(later(Instant::now(), left));
        }
    }

    /// Whether its running time has reached its duration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let sleep = sheepdog::time::Sleep::new(std::time::Duration::from_secs(60));
    /// assert!(!sleep.is_elapsed());
    /// # }
    /// ```
    pub fn is_elapsed(&self) -> bool {
        self.watch.elapsed() >= self.duration
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Paused, nothing wakes it: whoever resumes it polls it again.
        if self.watch.is_paused() {
            return Poll::Pending;
        }
        self.timer.as_mut().poll(cx)
    }
}

/// `at + by`, or, where that cannot be counted, a moment about thirty years on: a duration too
/// long to count is "for ever", never a panic.
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(Duration::from_secs(30 * 365 * 86400)))
        .unwrap_or(at)
}

/// Time this process has spent suspended by [`suspend`](crate::suspend), so that timeouts
/// (`Command::timeout`) do not count it.
#[derive(Debug, Default)]
struct JobClock {
    paused_since: Option<Instant>,
    total: Duration,
}

static JOB_CLOCK: std::sync::Mutex<JobClock> = std::sync::Mutex::new(JobClock {
    paused_since: None,
    total: Duration::ZERO,
});
static JOB_CLOCK_CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn job_clock() -> std::sync::MutexGuard<'static, JobClock> {
    crate::lock(&JOB_CLOCK)
}

/// All the time spent suspended so far, the current suspension included.
pub(crate) fn suspended() -> Duration {
    let clock = job_clock();
    clock.total
        + clock
            .paused_since
            .map_or(Duration::ZERO, |since| since.elapsed())
}

/// The process is about to be suspended.
pub(crate) fn begin_suspension() {
    let mut clock = job_clock();
    if clock.paused_since.is_none() {
        clock.paused_since = Some(Instant::now());
    }
}

/// The process runs again; timeouts waiting on [`suspension_changed`] look again.
pub(crate) fn end_suspension() {
    let mut clock = job_clock();
    if let Some(since) = clock.paused_since.take() {
        clock.total += since.elapsed();
    }
    drop(clock);
    JOB_CLOCK_CHANGED.notify_waiters();
}

/// Completes when a suspension ends.
pub(crate) async fn suspension_changed() {
    JOB_CLOCK_CHANGED.notified().await;
}

/// A moment that time spent suspended by job control moves back: a timeout must not run out
/// while its tree could not run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    /// Time the process had spent suspended when the deadline was set.
    suspended_before: Duration,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: later(Instant::now(), timeout),
            suspended_before: suspended(),
        }
    }

    /// When it is due, as things stand: later by each suspension since it was set.
    pub(crate) fn due(&self) -> Instant {
        later(self.at, suspended() - self.suspended_before)
    }

    /// Completes once the deadline has passed, suspensions not counted. Cancel-safe.
    pub(crate) async fn reached(&self) {
        loop {
            tokio::select! {
                // A suspension while asleep moves the deadline again: look once more.
                () = tokio::time::sleep_until(self.due()) => if Instant::now() >= self.due() {
                    return;
                },
                () = suspension_changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_count() {
        let mut watch = Stopwatch::start();
        tokio::time::advance(Duration::from_secs(2)).await;
        watch.pause();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(watch.elapsed(), Duration::from_secs(2));
        watch.resume();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(watch.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_completes_after_its_running_time() {
        let start = Instant::now();
        let mut sleep = Sleep::new(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        sleep.pause();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(!sleep.is_elapsed());
        // Still pending while paused, however much time passes.
        let pending = tokio::time::timeout(Duration::from_secs(50), &mut sleep).await;
        assert!(pending.is_err());
        sleep.resume();
        (&mut sleep).await;
        assert!(sleep.is_elapsed());
        // 2 s, then 150 s paused, then the 3 s left.
        assert_eq!(start.elapsed(), Duration::from_secs(155));
    }
}
