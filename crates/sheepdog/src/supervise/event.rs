//! What the supervisor tells: an event per thing that happened to a service.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lines::StreamKind;
use crate::status::ExitStatus;
use crate::stop::StopReport;

/// Something that happened to a service, and when.
///
/// ```no_run
/// # fn demo(event: sheepdog::Event) {
/// println!("{:?} {}: {}", event.at, event.service, event.kind);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    /// When it happened.
    pub at: Instant,
    /// The service's name.
    pub service: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a service.
///
/// ```
/// let kind = sheepdog::EventKind::Restarting { after: std::time::Duration::from_millis(200) };
/// assert_eq!(kind.to_string(), "restarting in 200ms");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// An incarnation started (the first is 1).
    Starting {
        /// Which start this is.
        incarnation: u32,
        /// Its leader's pid.
        pid: u32,
    },
    /// It could not be started (the program is missing, ...); this counts as a failure.
    StartFailed {
        /// Why, in words.
        error: String,
    },
    /// Its readiness probe succeeded (without a probe: right after it started).
    Ready,
    /// It was not ready within its timeout; it is stopped, and this counts as a failure.
    NotReady {
        /// The readiness timeout.
        timeout: Duration,
    },
    /// Its [liveness](crate::Service::liveness) check missed this many times in a row; it is stopped,
    /// and this counts as a failure.
    NotLive {
        /// The misses in a row.
        misses: u32,
    },
    /// A line it printed.
    Output {
        /// Which stream.
        stream: StreamKind,
        /// The line, without its newline (bytes that are not UTF-8 become U+FFFD).
        line: String,
    },
    /// Its leader exited, and its whole tree is gone.
    Exited {
        /// How the leader ended.
        status: ExitStatus,
    },
    /// It will be started again after this delay.
    Restarting {
        /// The backoff delay.
        after: Duration,
    },
    /// It will not be started (again): the start limit was hit, or a dependency can no longer
    /// be met.
    GaveUp {
        /// Why, in words.
        reason: String,
    },
    /// It was stopped by the supervisor (or was never started because of the stop); its tree is
    /// gone.
    Stopped {
        /// How its tree was stopped, if it was running.
        report: Option<StopReport>,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Starting { incarnation, pid } => {
                write!(f, "starting (#{incarnation}, pid {pid})")
            }
            EventKind::StartFailed { error } => write!(f, "cannot start: {error}"),
            EventKind::Ready => f.write_str("ready"),
            EventKind::NotReady { timeout } => write!(f, "not ready within {timeout:?}"),
            EventKind::NotLive { misses } => {
                write!(f, "not live: {misses} liveness checks missed in a row")
            }
            EventKind::Output { line, .. } => f.write_str(line),
            EventKind::Exited { status } => write!(f, "exited: {status}"),
            EventKind::Restarting { after } => write!(f, "restarting in {after:?}"),
            EventKind::GaveUp { reason } => write!(f, "gave up: {reason}"),
            EventKind::Stopped {
                report: Some(report),
            } => write!(f, "stopped: {report}"),
            EventKind::Stopped { report: None } => f.write_str("stopped"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.service, self.kind)
    }
}
