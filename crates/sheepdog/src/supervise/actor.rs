//! The supervisor's actor loop: the one owner of every service's state. It starts what may
//! start, schedules restarts, and stops in reverse dependency order; incarnations report to it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use super::event::{Event, EventKind};
use super::graph::Edges;
use super::incarnation::{Failed, Incarnation, Report};
use super::probe;
use super::service::{Condition, Ready, Service};
use super::{Herds, Request};
use crate::command::Stdio;
use crate::herd::Herd;
use crate::status::ExitStatus;
use crate::time::Deadline;

/// Starts the actor for `services` (checked, with their `edges`) on `runtime`.
pub(super) fn spawn(
    runtime: &tokio::runtime::Handle,
    services: Vec<Service>,
    edges: Edges,
    events: mpsc::UnboundedSender<Event>,
    requests: mpsc::UnboundedReceiver<Request>,
    herds: Herds,
) -> AbortHandle {
    let mut dependants = vec![Vec::new(); edges.len()];
    for (service, deps) in edges.iter().enumerate() {
        for &(dep, _) in deps {
            dependants[dep].push(service);
        }
    }
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let actor = Actor {
        slots: services.into_iter().map(Slot::new).collect(),
        edges,
        dependants,
        events,
        reports_tx,
        reports,
        requests,
        herds,
        next_generation: 0,
        shutting_down: false,
        rng: Rng::seeded(),
    };
    runtime.spawn(actor.run()).abort_handle()
}

/// One service's state in the actor.
struct Slot {
    spec: Service,
    phase: Phase,
    started: bool,
    ready: bool,
    completed: bool,
    /// When its recent incarnations started, for the start limit.
    starts: VecDeque<Instant>,
    /// Restarts in a row without an incarnation that ran long enough to reset the backoff.
    failures: u32,
    incarnations: u32,
}

enum Phase {
    Waiting,
    /// Until then; time suspended by job control does not count.
    Backoff(Deadline),
    Running(Running),
    Done,
}

/// A running incarnation, as the actor holds it.
struct Running {
    generation: u64,
    herd: Arc<Herd>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    since: Instant,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Slot {
    fn new(spec: Service) -> Slot {
        Slot {
            spec,
            phase: Phase::Waiting,
            started: false,
            ready: false,
            completed: false,
            starts: VecDeque::new(),
            failures: 0,
            incarnations: 0,
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }
}

struct Actor {
    slots: Vec<Slot>,
    edges: Edges,
    dependants: Vec<Vec<usize>>,
    events: mpsc::UnboundedSender<Event>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    requests: mpsc::UnboundedReceiver<Request>,
    herds: Herds,
    next_generation: u64,
    shutting_down: bool,
    rng: Rng,
}

impl Actor {
    async fn run(mut self) {
        loop {
            self.advance();
            if self
                .slots
                .iter()
                .all(|slot| matches!(slot.phase, Phase::Done))
            {
                return;
            }
            let due = self
                .slots
                .iter()
                .filter_map(|slot| match slot.phase {
                    Phase::Backoff(deadline) => Some(deadline.due()),
                    _ => None,
                })
                .min();
            tokio::select! {
                Some(report) = self.reports.recv() => self.on_report(report),
                request = self.requests.recv() => match request {
                    Some(Request::Stop) => self.shutting_down = true,
                    Some(Request::Kill) => {
                        self.shutting_down = true;
                        self.kill_all();
                    }
                    // The handle is gone: its drop killed the herds.
                    None => return,
                },
                () = sleep_until(due) => {}
                // A suspension ended: the backoffs are due later.
                () = crate::time::suspension_changed() => {}
            }
        }
    }

    /// Starts what may start, stops what must stop, gives up what can never start.
    fn advance(&mut self) {
        if self.shutting_down {
            for i in 0..self.slots.len() {
                if matches!(self.slots[i].phase, Phase::Waiting | Phase::Backoff(_)) {
                    self.slots[i].phase = Phase::Done;
                    self.emit(i, EventKind::Stopped { report: None });
                }
            }
            for i in 0..self.slots.len() {
                let dependants_down = self.dependants[i]
                    .iter()
                    .all(|&d| !self.slots[d].is_running());
                if let Phase::Running(running) = &mut self.slots[i].phase {
                    if dependants_down {
                        if let Some(stop) = running.stop.take() {
                            let _ = stop.send(());
                        }
                    }
                }
            }
            return;
        }
        let now = tokio::time::Instant::now();
        // A start can satisfy another's dependency (`started`): go on until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.slots.len() {
                match self.slots[i].phase {
                    Phase::Backoff(deadline) if deadline.due() <= now => {}
                    Phase::Waiting => {}
                    _ => continue,
                }
                match self.dependencies_met(i) {
                    Some(true) => {
                        self.start(i);
                        changed = true;
                    }
                    Some(false) => {
                        let reason = self.unmet(i);
                        self.slots[i].phase = Phase::Done;
                        self.emit(i, EventKind::GaveUp { reason });
                        changed = true;
                    }
                    None => {}
                }
            }
        }
    }

    /// Whether every dependency of `i` is met (`Some(true)`), one never can be (`Some(false)`),
    /// or some may still be (`None`).
    fn dependencies_met(&self, i: usize) -> Option<bool> {
        let mut all = Some(true);
        for &(dep, condition) in &self.edges[i] {
            match self.met(dep, condition) {
                Some(true) => {}
                Some(false) => return Some(false),
                None => all = None,
            }
        }
        all
    }

    fn met(&self, dep: usize, condition: Condition) -> Option<bool> {
        let slot = &self.slots[dep];
        let met = match condition {
            Condition::Started => slot.started,
            Condition::Ready => slot.ready,
            Condition::Completed => slot.completed,
        };
        match (met, &slot.phase) {
            (true, _) => Some(true),
            (false, Phase::Done) => Some(false),
            (false, _) => None,
        }
    }

    fn unmet(&self, i: usize) -> String {
        let (dep, condition) = self.edges[i]
            .iter()
            .copied()
            .find(|&(dep, condition)| self.met(dep, condition) == Some(false))
            .unwrap_or((i, Condition::Started));
        format!(
            "`{}` ended without having {condition}",
            self.slots[dep].spec.name()
        )
    }

    /// Starts an incarnation of service `i` in a new herd.
    fn start(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.incarnations += 1;
        slot.starts.push_back(Instant::now());
        let generation = self.next_generation;
        self.next_generation += 1;
        match spawn_incarnation(slot, i, generation, &self.events, &self.reports_tx) {
            Ok((running, pid)) => {
                slot.started = true;
                crate::lock(&self.herds).insert(generation, running.herd.clone());
                let probed = slot.spec.ready.is_some();
                let incarnation = slot.incarnations;
                slot.phase = Phase::Running(running);
                self.emit(i, EventKind::Starting { incarnation, pid });
                if !probed {
                    self.slots[i].ready = true;
                    self.emit(i, EventKind::Ready);
                }
            }
            Err(error) => {
                slot.phase = Phase::Waiting;
                self.emit(i, EventKind::StartFailed { error });
                self.after_end(i, None);
            }
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Ready {
                service,
                generation,
            } => {
                if self.is_current(service, generation) {
                    self.slots[service].ready = true;
                    self.emit(service, EventKind::Ready);
                }
            }
            Report::Ended {
                service,
                generation,
                status,
                failed,
                stop,
            } => {
                if !self.is_current(service, generation) {
                    return;
                }
                crate::lock(&self.herds).remove(&generation);
                let Phase::Running(running) =
                    std::mem::replace(&mut self.slots[service].phase, Phase::Waiting)
                else {
                    return;
                };
                let asked_to_stop = running.stop.is_none();
                let ran = running.since.elapsed();
                drop(running);
                match failed {
                    Some(Failed::NotReady(timeout)) => {
                        self.emit(service, EventKind::NotReady { timeout })
                    }
                    Some(Failed::NotLive(misses)) => {
                        self.emit(service, EventKind::NotLive { misses })
                    }
                    None => {}
                }
                let status = match status {
                    Ok(status) => {
                        self.emit(service, EventKind::Exited { status });
                        Some(status)
                    }
                    Err(err) => {
                        self.emit(
                            service,
                            EventKind::GaveUp {
                                reason: format!("cannot wait for its leader: {err}"),
                            },
                        );
                        self.slots[service].phase = Phase::Done;
                        return;
                    }
                };
                if asked_to_stop || self.shutting_down {
                    self.slots[service].phase = Phase::Done;
                    self.emit(service, EventKind::Stopped { report: stop });
                    return;
                }
                if ran >= self.slots[service].spec.backoff.resets_after() {
                    self.slots[service].failures = 0;
                }
                let status = if failed.is_some() { None } else { status };
                self.after_end(service, status.as_ref());
            }
        }
    }

    /// After an incarnation ended on its own (`status`: how; `None`: it failed to start or to
    /// be ready): done, or a restart after the backoff, or given up at the start limit.
    fn after_end(&mut self, i: usize, status: Option<&ExitStatus>) {
        let slot = &mut self.slots[i];
        let success = status.is_some_and(|status| slot.spec.restart.is_success(status));
        let restart = slot
            .spec
            .restart
            .restarts_after_code(status.and_then(ExitStatus::code));
        if !restart {
            slot.completed = success;
            slot.phase = Phase::Done;
            return;
        }
        let limit = slot.spec.start_limit;
        let now = Instant::now();
        while slot
            .starts
            .front()
            .is_some_and(|&at| now.duration_since(at) > limit.interval())
        {
            slot.starts.pop_front();
        }
        if slot.starts.len() >= limit.burst() as usize {
            slot.phase = Phase::Done;
            let reason = format!(
                "started {} times within {:?} (the start limit)",
                slot.starts.len(),
                limit.interval()
            );
            self.emit(i, EventKind::GaveUp { reason });
            return;
        }
        let delay = slot.spec.backoff.delay(slot.failures, self.rng.next_unit());
        slot.failures = slot.failures.saturating_add(1);
        slot.phase = Phase::Backoff(Deadline::after(delay));
        self.emit(i, EventKind::Restarting { after: delay });
    }

    fn is_current(&self, service: usize, generation: u64) -> bool {
        matches!(&self.slots[service].phase, Phase::Running(r) if r.generation == generation)
    }

    fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Phase::Running(running) = &mut slot.phase {
                let _ = running.herd.kill_now();
                if let Some(stop) = running.stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }

    fn emit(&self, i: usize, kind: EventKind) {
        let _ = self.events.send(Event {
            at: Instant::now(),
            service: self.slots[i].spec.name.clone(),
            kind,
        });
    }
}

/// Makes the herd, spawns the leader with its output piped (and the notify descriptor passed),
/// and starts the incarnation's task.
fn spawn_incarnation(
    slot: &Slot,
    service: usize,
    generation: u64,
    events: &mpsc::UnboundedSender<Event>,
    reports: &mpsc::UnboundedSender<Report>,
) -> Result<(Running, u32), String> {
    let spec = &slot.spec;
    let herd = Arc::new(Herd::new().map_err(|err| err.to_string())?);
    let mut command = spec.command.clone();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut notify = None;
    if let Some((Ready::Notify(fd), _)) = &spec.ready {
        let (receiver, write) = probe::notify_pipe()
            .map_err(|err| format!("cannot make a pipe for the notify descriptor: {err}"))?;
        command.pass_fd(*fd, write).env("NOTIFY_FD", fd.to_string());
        notify = Some(receiver);
    }
    let child = herd.spawn(&command).map_err(|err| err.to_string())?;
    // The command holds the write end of the notify pipe: only the child may keep it.
    drop(command);
    let pid = child.pid();
    let (stop, stop_rx) = oneshot::channel();
    let incarnation = Incarnation {
        service,
        name: spec.name.clone(),
        generation,
        herd: herd.clone(),
        child,
        ready: spec.ready.clone(),
        liveness: spec.liveness.clone(),
        notify,
        plan: spec.stop.clone(),
        events: events.clone(),
        reports: reports.clone(),
        stop: stop_rx,
    };
    let task = tokio::spawn(incarnation.run());
    Ok((
        Running {
            generation,
            herd,
            stop: Some(stop),
            task,
            since: Instant::now(),
        },
        pid,
    ))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A small xorshift generator for backoff jitter: spreading restarts needs no cryptographic
/// quality, and this avoids a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    /// A number in 0..1.
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_stays_in_the_unit_interval_and_moves() {
        let mut rng = Rng::seeded();
        let draws: Vec<f64> = (0..1000).map(|_| rng.next_unit()).collect();
        assert!(draws.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
