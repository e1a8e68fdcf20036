//! One incarnation of a service: a task that owns its leader, reads its output, runs its
//! readiness probe, and stops its herd, then tells the supervisor how it ended.
//!
//! The task ends only once the incarnation's herd is empty, so the supervisor never starts the
//! next incarnation while anything of this one is left.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::probe::{self, Probe};
use super::service::{Liveness, Ready};
use super::{Event, EventKind};
use crate::child::Child;
use crate::herd::Herd;
use crate::lines::{Lines, StreamKind};
use crate::status::ExitStatus;
use crate::stop::{StopPlan, StopReport};
use crate::time::Deadline;

/// What an incarnation tells the supervisor's loop.
pub(crate) enum Report {
    Ready {
        service: usize,
        generation: u64,
    },
    Ended {
        service: usize,
        generation: u64,
        status: io::Result<ExitStatus>,
        /// It failed a probe and was stopped for that.
        failed: Option<Failed>,
        /// The stop that ended it (asked for, or of what its leader left behind).
        stop: Option<StopReport>,
    },
}

/// A probe an incarnation failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failed {
    /// Not ready within this timeout.
    NotReady(Duration),
    /// The liveness check missed this many times in a row.
    NotLive(u32),
}

/// Everything the incarnation's task owns.
pub(crate) struct Incarnation {
    pub service: usize,
    pub name: Arc<str>,
    pub generation: u64,
    pub herd: Arc<Herd>,
    pub child: Child,
    pub ready: Option<(Ready, Duration)>,
    pub liveness: Option<Liveness>,
    pub notify: Option<tokio::net::unix::pipe::Receiver>,
    pub plan: StopPlan,
    pub events: mpsc::UnboundedSender<Event>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub stop: oneshot::Receiver<()>,
}

/// How long the output is read once the tree is gone.
const DRAIN: Duration = Duration::from_secs(1);

/// Why the running phase ended.
enum Next {
    Exited(io::Result<ExitStatus>),
    Stop,
    Failed(Failed),
}

impl Incarnation {
    pub(crate) async fn run(mut self) {
        let mut lines = Some(self.child.lines());
        let (mut status, failed) = match self.watch(&mut lines).await {
            Next::Exited(status) => (Some(status), None),
            Next::Stop => (None, None),
            Next::Failed(failed) => (None, Some(failed)),
        };
        let stop = self.stop_what_is_left(status.is_some(), &mut lines).await;
        let status = match status.take() {
            Some(status) => status,
            None => self.child.wait().await,
        };
        let _ = self.herd.wait_empty().await;
        // The tree is gone, so the pipes end, unless something outside the herd holds them:
        // what is already written is read, for a bounded time.
        let drain = async {
            while lines.is_some() {
                let Some((stream, text)) = next_line(&mut lines).await else {
                    break;
                };
                self.emit(EventKind::Output { stream, line: text });
            }
        };
        let _ = tokio::time::timeout(DRAIN, drain).await;
        let _ = self.reports.send(Report::Ended {
            service: self.service,
            generation: self.generation,
            status,
            failed,
            stop,
        });
    }

    /// The running phase: passes the output on, and runs the readiness probe, then the
    /// liveness check, until the leader exits, a stop is asked for, or a probe fails.
    async fn watch(&mut self, lines: &mut Option<Lines>) -> Next {
        let (matcher, timeout) = match &self.ready {
            Some((Ready::Line(matches, _), timeout)) => (Some(matches.clone()), Some(*timeout)),
            Some((_, timeout)) => (None, Some(*timeout)),
            None => (None, None),
        };
        let mut probe: Option<Probe> = match &self.ready {
            Some((ready, _)) => probe::start(ready, self.notify.take()),
            None => None,
        };
        let mut waiting_ready = self.ready.is_some();
        // Watched from readiness on.
        let mut liveness: Option<Probe> = match (&self.liveness, waiting_ready) {
            (Some(live), false) => Some(probe::watch(&live.probe, live.every, live.misses)),
            _ => None,
        };
        // Time suspended by job control does not count against the readiness timeout.
        let ready_deadline = timeout.map(Deadline::after);
        let ready_by = async {
            match &ready_deadline {
                Some(deadline) => deadline.reached().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(ready_by);

        loop {
            tokio::select! {
                status = self.child.wait() => return Next::Exited(status),
                // Asked to stop, or the supervisor is gone (its drop kills the herd).
                _ = &mut self.stop => return Next::Stop,
                line = next_line(lines) => {
                    let Some((stream, text)) = line else { continue };
                    let is_ready = waiting_ready && matcher.as_ref().is_some_and(|m| m(&text));
                    self.emit(EventKind::Output { stream, line: text });
                    if is_ready {
                        waiting_ready = false;
                        liveness = self.became_ready();
                    }
                }
                () = until(probe.as_mut()), if waiting_ready => {
                    waiting_ready = false;
                    probe = None;
                    liveness = self.became_ready();
                }
                () = &mut ready_by, if waiting_ready => {
                    return Next::Failed(Failed::NotReady(timeout.unwrap_or_default()));
                }
                () = until(liveness.as_mut()) => {
                    let misses = self.liveness.as_ref().map_or(0, |live| live.misses);
                    return Next::Failed(Failed::NotLive(misses));
                }
            }
        }
    }

    /// Stops the tree by the plan, before anybody can start the next incarnation: all of it
    /// when the leader still runs (`exited` false), or what the leader left behind (its
    /// leader steps go to the tree then). The output goes on being passed on meanwhile.
    async fn stop_what_is_left(
        &self,
        exited: bool,
        lines: &mut Option<Lines>,
    ) -> Option<StopReport> {
        let left_behind = exited && !self.herd.is_empty().unwrap_or(false);
        if exited && !left_behind {
            return None;
        }
        let leader = if exited { None } else { Some(&self.child) };
        let stopping = self.herd.stop_with(&self.plan, leader);
        tokio::pin!(stopping);
        let report = loop {
            tokio::select! {
                report = &mut stopping => break report,
                line = next_line(lines) => if let Some((stream, text)) = line {
                    self.emit(EventKind::Output { stream, line: text });
                },
            }
        };
        report.ok()
    }

    fn emit(&self, kind: EventKind) {
        let _ = self.events.send(Event {
            at: Instant::now(),
            service: self.name.clone(),
            kind,
        });
    }

    /// Tells the supervisor, and starts the liveness check if there is one.
    fn became_ready(&self) -> Option<Probe> {
        let _ = self.reports.send(Report::Ready {
            service: self.service,
            generation: self.generation,
        });
        self.liveness
            .as_ref()
            .map(|live| probe::watch(&live.probe, live.every, live.misses))
    }
}

/// The next line from either stream, or pending forever once both ended (`lines` is then
/// `None`). A read error ends the streams: the process goes on, its output is lost.
async fn next_line(lines: &mut Option<Lines>) -> Option<(StreamKind, String)> {
    let Some(reader) = lines else {
        return std::future::pending().await;
    };
    match reader.next().await {
        Ok(Some(line)) => Some((line.stream, line.text().into_owned())),
        Ok(None) | Err(_) => {
            *lines = None;
            None
        }
    }
}

async fn until(probe: Option<&mut Probe>) {
    match probe {
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}
