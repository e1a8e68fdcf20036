//! `Supervisor`: services kept running with restarts, backoff, readiness and dependencies.
//!
//! The supervisor is a task (an actor loop) that owns every service's state; the
//! [`Supervisor`] handle sends it requests and receives its events. Each incarnation of a
//! service runs in a herd of its own, watched by a task of its own (`incarnation.rs`) that
//! reports back only once that herd is empty: a restart never overlaps the previous tree.

mod actor;
mod event;
mod graph;
mod incarnation;
mod probe;
mod service;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::herd::Herd;

pub use event::{Event, EventKind};
pub use graph::SuperviseError;
pub use service::{Backoff, Condition, Liveness, Ready, Restart, Service, StartLimit};

/// Keeps a set of [`Service`]s running: starts each once its dependencies are met, restarts it
/// by its policy with backoff, gives up at its start limit, and stops them all in reverse
/// dependency order. What happens comes out as [`Event`]s from [`next`](Supervisor::next).
///
/// Every incarnation runs in a [`Herd`] of its own, and the next one starts only once that herd
/// is empty, so a restart never leaves the previous tree behind (a daemonized grandchild
/// included). Dropping the supervisor kills every service's herd at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use sheepdog::{Command, Condition, EventKind, Ready, Service, Supervisor};
///
/// let mut db = Command::new("sh");
/// db.args(["-c", "sleep 0.1; echo accepting connections; exec sleep 60"]);
/// let mut migrate = Command::new("echo");
/// migrate.arg("migrated");
/// let mut sup = Supervisor::builder()
///     .service(Service::new("db", db).ready(Ready::line("accepting"), Duration::from_secs(10)))
///     .service(Service::new("migrate", migrate).depends_on("db", Condition::Ready))
///     .start()?;
/// let mut lines = Vec::new();
/// while let Some(event) = sup.next().await {
///     match &event.kind {
///         EventKind::Output { line, .. } => lines.push(line.clone()),
///         // `db` is stopped too; then `next` returns `None`.
///         EventKind::Exited { .. } if &*event.service == "migrate" => sup.stop(),
///         _ => {}
///     }
/// }
/// assert_eq!(lines, ["accepting connections", "migrated"]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Supervisor kills every service"]
pub struct Supervisor {
    events: mpsc::UnboundedReceiver<Event>,
    requests: mpsc::UnboundedSender<Request>,
    herds: Herds,
    task: AbortHandle,
}

/// The herds of the running incarnations, shared with the handle so that its drop can kill
/// them at once, without waiting for the actor task to be dropped.
type Herds = Arc<Mutex<HashMap<u64, Arc<Herd>>>>;

#[derive(Debug)]
pub(crate) enum Request {
    Stop,
    Kill,
}

impl Supervisor {
    /// A supervisor to be given services.
    ///
    /// ```
    /// let builder = sheepdog::Supervisor::builder();
    /// ```
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    /// The next event, or `None` once every service has ended, given up or been stopped (the
    /// supervisor is then done). Cancel-safe: an event is never lost by dropping the future.
    /// Events (output lines included) are queued until read.
    ///
    /// ```no_run
    /// # async fn demo(mut sup: sheepdog::Supervisor) {
    /// while let Some(event) = sup.next().await {
    ///     println!("{event}");
    /// }
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Asks every service to stop, dependants before what they depend on, each by its
    /// [stop plan](Service::stop); services not started yet will not be. Returns at once: the
    /// events tell how the stop goes, and [`next`](Supervisor::next) returns `None` at its end.
    ///
    /// ```no_run
    /// # async fn demo(mut sup: sheepdog::Supervisor) {
    /// sup.stop();
    /// while let Some(event) = sup.next().await {
    ///     println!("{event}");
    /// }
    /// # }
    /// ```
    pub fn stop(&self) {
        let _ = self.requests.send(Request::Stop);
    }

    /// Kills every service's tree at once (also during a [`stop`](Supervisor::stop), to cut it
    /// short) and starts nothing more. Returns at once, like `stop`.
    ///
    /// ```no_run
    /// # async fn demo(mut sup: sheepdog::Supervisor) {
    /// sup.kill();
    /// while sup.next().await.is_some() {}
    /// # }
    /// ```
    pub fn kill(&self) {
        for herd in crate::lock(&self.herds).values() {
            let _ = herd.kill_now();
        }
        let _ = self.requests.send(Request::Kill);
    }
}

impl Supervisor {
    /// Job control (Ctrl-Z) for a program that supervises: freezes every service's tree, stops
    /// this process, and once a shell continues it, thaws them, as [`suspend`](crate::suspend)
    /// does for herds. Readiness timeouts do not count the time suspended. Cancelled while it
    /// freezes, the trees frozen so far stay frozen until the next `suspend` ends.
    ///
    /// ```no_run
    /// # async fn demo(sup: sheepdog::Supervisor) -> std::io::Result<()> {
    /// use tokio::signal::unix::{signal, SignalKind};
    /// let mut tstp = signal(SignalKind::from_raw(20))?; // SIGTSTP
    /// tstp.recv().await;
    /// sup.suspend().await?;
    /// # Ok(()) }
    /// ```
    pub async fn suspend(&self) -> io::Result<()> {
        let herds: Vec<Arc<Herd>> = crate::lock(&self.herds).values().cloned().collect();
        let herds: Vec<&Herd> = herds.iter().map(Arc::as_ref).collect();
        crate::suspend(&herds).await
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for herd in crate::lock(&self.herds).values() {
            let _ = herd.kill_now();
        }
        self.task.abort();
    }
}

/// The services for a [`Supervisor`].
///
/// ```
/// use sheepdog::{Command, Service, Supervisor};
/// let builder = Supervisor::builder().service(Service::new("a", Command::new("true")));
/// assert!(builder.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct SupervisorBuilder {
    services: Vec<Service>,
}

impl SupervisorBuilder {
    /// Adds a service.
    ///
    /// ```
    /// let b = sheepdog::Supervisor::builder()
    ///     .service(sheepdog::Service::new("a", sheepdog::Command::new("true")));
    /// ```
    pub fn service(mut self, service: Service) -> SupervisorBuilder {
        self.services.push(service);
        self
    }

    /// Checks the services without starting anything: names are unique, every dependency is a
    /// service, there is no cycle.
    ///
    /// ```
    /// use sheepdog::{Command, Condition, Service, Supervisor};
    /// let err = Supervisor::builder()
    ///     .service(Service::new("api", Command::new("true")).depends_on("db", Condition::Ready))
    ///     .check()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "service `api` depends on `db`, which is not a service");
    /// ```
    pub fn check(&self) -> Result<(), SuperviseError> {
        graph::resolve(&self.services).map(drop)
    }

    /// Checks the services and starts supervising them, in a task on the current tokio runtime
    /// (it fails outside one).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::SuperviseError> {
    /// let sup = sheepdog::Supervisor::builder()
    ///     .service(sheepdog::Service::new("a", sheepdog::Command::new("sleep").arg("5").clone()))
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> Result<Supervisor, SuperviseError> {
        let edges = graph::resolve(&self.services)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SuperviseError::NoRuntime)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let herds = Herds::default();
        let task = actor::spawn(
            &runtime,
            self.services,
            edges,
            events_tx,
            requests_rx,
            herds.clone(),
        );
        Ok(Supervisor {
            events,
            requests,
            herds,
            task,
        })
    }
}
