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
use super::service::Ready;
use super::{Event, EventKind};
use crate::child::Child;
use crate::herd::Herd;
use crate::lines::{Lines, StreamKind};
use crate::status::ExitStatus;
use crate::stop::{StopPlan, StopReport};

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
        /// It was not ready within its timeout and was stopped for that.
        not_ready: Option<Duration>,
        /// The stop that ended it (asked for, or of what its leader left behind).
        stop: Option<StopReport>,
    },
}

/// Everything the incarnation's task owns.
pub(crate) struct Incarnation {
    pub service: usize,
    pub name: Arc<str>,
    pub generation: u64,
    pub herd: Arc<Herd>,
    pub child: Child,
    pub ready: Option<(Ready, Duration)>,
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
    NotReady(Duration),
}

impl Incarnation {
    pub(crate) async fn run(mut self) {
        let mut lines = Some(self.child.lines());
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
        let ready_by = tokio::time::sleep(timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(ready_by);

        let next = loop {
            tokio::select! {
                status = self.child.wait() => break Next::Exited(status),
                request = &mut self.stop => match request {
                    Ok(()) => break Next::Stop,
                    // The supervisor is gone; its drop kills the herd.
                    Err(_) => break Next::Stop,
                },
                line = next_line(&mut lines) => {
                    let Some((stream, text)) = line else { continue };
                    let is_ready = waiting_ready && matcher.as_ref().is_some_and(|m| m(&text));
                    self.emit(EventKind::Output { stream, line: text });
                    if is_ready {
                        waiting_ready = false;
                        self.report_ready();
                    }
                }
                () = until(probe.as_mut()), if waiting_ready => {
                    waiting_ready = false;
                    probe = None;
                    self.report_ready();
                }
                () = &mut ready_by, if waiting_ready => {
                    break Next::NotReady(timeout.unwrap_or_default());
                }
            }
        };
        drop(probe);

        let (mut status, not_ready) = match next {
            Next::Exited(status) => (Some(status), None),
            Next::Stop => (None, None),
            Next::NotReady(after) => (None, Some(after)),
        };
        // What the leader left behind goes too, by the same plan (its leader steps go to the
        // tree then), before anybody can start the next incarnation.
        let left_behind = status.is_some() && !self.herd.is_empty().unwrap_or(true);
        let mut stop = None;
        if status.is_none() || left_behind {
            let leader = if status.is_none() {
                Some(&self.child)
            } else {
                None
            };
            let stopping = self.herd.stop_with(&self.plan, leader);
            tokio::pin!(stopping);
            let report = loop {
                tokio::select! {
                    report = &mut stopping => break report,
                    line = next_line(&mut lines) => if let Some((stream, text)) = line {
                        self.emit(EventKind::Output { stream, line: text });
                    },
                }
            };
            stop = report.ok();
        }
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
            not_ready,
            stop,
        });
    }

    fn emit(&self, kind: EventKind) {
        let _ = self.events.send(Event {
            at: Instant::now(),
            service: self.name.clone(),
            kind,
        });
    }

    fn report_ready(&self) {
        let _ = self.reports.send(Report::Ready {
            service: self.service,
            generation: self.generation,
        });
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
