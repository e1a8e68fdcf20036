//! What a supervised service is: a command and the rules it is kept running by.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::command::Command;
use crate::status::ExitStatus;
use crate::stop::StopPlan;

/// One long-running program a [`Supervisor`](crate::Supervisor) keeps: its command, when to
/// restart it, how fast, when to give up, how to know it is ready, how to stop it, and what it
/// waits for.
///
/// ```
/// use std::time::Duration;
/// use sheepdog::{Command, Condition, Ready, Restart, Service};
///
/// let mut cmd = Command::new("./api");
/// cmd.arg("--port=8080");
/// let api = Service::new("api", cmd)
///     .restart(Restart::on_failure())
///     .ready(Ready::tcp("127.0.0.1:8080".parse().unwrap()), Duration::from_secs(10))
///     .depends_on("db", Condition::Ready);
/// assert_eq!(api.name(), "api");
/// ```
#[derive(Debug, Clone)]
pub struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) command: Command,
    pub(crate) restart: Restart,
    pub(crate) backoff: Backoff,
    pub(crate) start_limit: StartLimit,
    pub(crate) ready: Option<(Ready, Duration)>,
    pub(crate) liveness: Option<Liveness>,
    pub(crate) stop: StopPlan,
    pub(crate) depends_on: Vec<(String, Condition)>,
}

impl Service {
    /// A service named `name` that runs `command`, with [`Restart::Never`], the default
    /// [`Backoff`] and [`StartLimit`], no readiness probe (it counts as ready once started) and
    /// [`StopPlan::default`]. Its stdout and stderr are read by the supervisor and handed out
    /// line by line as [`EventKind::Output`](crate::EventKind::Output); stdin is null.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("web", sheepdog::Command::new("python3"));
    /// assert_eq!(svc.name(), "web");
    /// ```
    pub fn new(name: impl Into<String>, command: Command) -> Service {
        Service {
            name: Arc::from(name.into()),
            command,
            restart: Restart::Never,
            backoff: Backoff::default(),
            start_limit: StartLimit::default(),
            ready: None,
            liveness: None,
            stop: StopPlan::default(),
            depends_on: Vec::new(),
        }
    }

    /// The service's name.
    ///
    /// ```
    /// assert_eq!(sheepdog::Service::new("db", sheepdog::Command::new("true")).name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When to start it again after it exited.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("w", sheepdog::Command::new("true"))
    ///     .restart(sheepdog::Restart::Always);
    /// ```
    pub fn restart(mut self, restart: Restart) -> Service {
        self.restart = restart;
        self
    }

    /// How long to wait before each restart.
    ///
    /// ```
    /// use std::time::Duration;
    /// let svc = sheepdog::Service::new("w", sheepdog::Command::new("true"))
    ///     .backoff(sheepdog::Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(5)));
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Service {
        self.backoff = backoff;
        self
    }

    /// How many starts are allowed within how long before the supervisor gives up.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("w", sheepdog::Command::new("true"))
    ///     .start_limit(sheepdog::StartLimit::new(3, std::time::Duration::from_secs(10)));
    /// ```
    pub fn start_limit(mut self, limit: StartLimit) -> Service {
        self.start_limit = limit;
        self
    }

    /// How to know an incarnation is ready, and how long it gets to become so. One that is not
    /// ready in time is stopped and counts as failed.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("db", sheepdog::Command::new("postgres"))
    ///     .ready(sheepdog::Ready::line("accepting connections"), std::time::Duration::from_secs(30));
    /// ```
    pub fn ready(mut self, probe: Ready, timeout: Duration) -> Service {
        self.ready = Some((probe, timeout));
        self
    }

    /// How to know, once it is ready, that an incarnation still works: one that fails the
    /// check [`misses`](Liveness::misses) times in a row is stopped and counts as failed
    /// ([`EventKind::NotLive`](crate::EventKind::NotLive)).
    ///
    /// ```
    /// let svc = sheepdog::Service::new("api", sheepdog::Command::new("./api"))
    ///     .liveness(sheepdog::Liveness::tcp("127.0.0.1:8080".parse().unwrap()));
    /// ```
    pub fn liveness(mut self, liveness: Liveness) -> Service {
        self.liveness = Some(liveness);
        self
    }

    /// How an incarnation's tree is stopped: when the supervisor stops, when it did not become
    /// ready in time, and for what its leader left behind when it exited.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("db", sheepdog::Command::new("postgres"))
    ///     .stop(sheepdog::StopPlan::grace(std::time::Duration::from_secs(10)));
    /// ```
    pub fn stop(mut self, plan: StopPlan) -> Service {
        self.stop = plan;
        self
    }

    /// Starts this service only once `service` has met `condition`; stops it before that one.
    ///
    /// ```
    /// let svc = sheepdog::Service::new("api", sheepdog::Command::new("./api"))
    ///     .depends_on("db", sheepdog::Condition::Ready);
    /// ```
    pub fn depends_on(mut self, service: impl Into<String>, condition: Condition) -> Service {
        self.depends_on.push((service.into(), condition));
        self
    }
}

/// When a [`Service`] is started again after it exited (not after the supervisor stopped it).
///
/// ```
/// use sheepdog::Restart;
/// assert!(Restart::on_failure().restarts_after_code(Some(1)));
/// assert!(!Restart::on_failure().restarts_after_code(Some(0)));
/// assert!(!Restart::OnFailure { success: vec![0, 3] }.restarts_after_code(Some(3)));
/// assert!(Restart::Always.restarts_after_code(Some(0)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// Never: the service runs once.
    Never,
    /// When it failed: exited with a code not in `success`, or was killed by a signal, or did
    /// not start, or was not ready in time.
    OnFailure {
        /// Exit codes that count as success (usually just 0).
        success: Vec<i32>,
    },
    /// Whenever it exited, also with success.
    Always,
}

impl Restart {
    /// [`Restart::OnFailure`] with only 0 as success.
    ///
    /// ```
    /// assert_eq!(sheepdog::Restart::on_failure(), sheepdog::Restart::OnFailure { success: vec![0] });
    /// ```
    pub fn on_failure() -> Restart {
        Restart::OnFailure { success: vec![0] }
    }

    /// Whether an exit with `code` (`None`: killed by a signal, or never started) is followed by
    /// a restart.
    ///
    /// ```
    /// assert!(sheepdog::Restart::on_failure().restarts_after_code(None));
    /// ```
    pub fn restarts_after_code(&self, code: Option<i32>) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure { success } => !code.is_some_and(|code| success.contains(&code)),
            Restart::Always => true,
        }
    }

    /// Whether `status` counts as a success for this policy.
    pub(crate) fn is_success(&self, status: &ExitStatus) -> bool {
        match self {
            Restart::OnFailure { success } => status.code().is_some_and(|c| success.contains(&c)),
            _ => status.success(),
        }
    }
}

/// The delay before each restart: `initial`, then `factor` times the previous one, up to `max`,
/// each spread by up to ± `jitter` (a fraction) so that services that failed together do not
/// restart in lockstep. The delay goes back to `initial` once an incarnation has run for
/// [`reset_after`](Backoff::reset_after).
///
/// ```
/// use std::time::Duration;
/// let backoff = sheepdog::Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
/// assert_eq!(backoff.delay(0, 0.5), Duration::from_millis(100));
/// assert_eq!(backoff.delay(2, 0.5), Duration::from_millis(400));
/// assert_eq!(backoff.delay(9, 0.5), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
    reset_after: Duration,
}

impl Backoff {
    /// A backoff without jitter that resets after 10 s of running.
    ///
    /// ```
    /// let b = sheepdog::Backoff::new(std::time::Duration::ZERO, 1.0, std::time::Duration::ZERO);
    /// ```
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Backoff {
        Backoff {
            initial,
            factor: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
            max: max.max(initial),
            jitter: 0.0,
            reset_after: Duration::from_secs(10),
        }
    }

    /// Spreads each delay by up to ± `fraction` of it (clamped to 0..=1).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = sheepdog::Backoff::default().jitter(0.1);
    /// let d = b.delay(0, 1.0);
    /// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(110));
    /// ```
    pub fn jitter(mut self, fraction: f64) -> Backoff {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How long an incarnation must run for the next delay to start again from `initial`.
    ///
    /// ```
    /// let b = sheepdog::Backoff::default().reset_after(std::time::Duration::from_secs(60));
    /// ```
    pub fn reset_after(mut self, run: Duration) -> Backoff {
        self.reset_after = run;
        self
    }

    pub(crate) fn resets_after(&self) -> Duration {
        self.reset_after
    }

    /// The delay after `failures` earlier restarts in a row, with `random` (in 0..=1) placing it
    /// within the jitter (0.5 is the middle: no spread).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = sheepdog::Backoff::new(Duration::from_secs(1), 3.0, Duration::from_secs(60)).jitter(0.5);
    /// assert_eq!(b.delay(1, 0.0), Duration::from_millis(1500));
    /// assert_eq!(b.delay(1, 1.0), Duration::from_millis(4500));
    /// ```
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        let exponent = i32::try_from(failures).unwrap_or(i32::MAX);
        let base =
            (self.initial.as_secs_f64() * self.factor.powi(exponent)).min(self.max.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        Duration::try_from_secs_f64(base * spread).unwrap_or(self.max)
    }
}

impl Default for Backoff {
    /// 100 ms, doubling, up to 30 s, ± 10 %.
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(30)).jitter(0.1)
    }
}

/// At most `burst` starts within `interval`; a restart that would exceed it is not made and the
/// service is given up ([`EventKind::GaveUp`](crate::EventKind::GaveUp)).
///
/// ```
/// let limit = sheepdog::StartLimit::new(5, std::time::Duration::from_secs(10));
/// assert_eq!(limit.burst(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    burst: u32,
    interval: Duration,
}

impl StartLimit {
    /// `burst` starts within any `interval` (a `burst` of 0 counts as 1).
    ///
    /// ```
    /// let limit = sheepdog::StartLimit::new(3, std::time::Duration::from_secs(1));
    /// assert_eq!(limit.interval(), std::time::Duration::from_secs(1));
    /// ```
    pub fn new(burst: u32, interval: Duration) -> StartLimit {
        StartLimit {
            burst: burst.max(1),
            interval,
        }
    }

    /// How many starts are allowed within [`interval`](StartLimit::interval).
    ///
    /// ```
    /// assert_eq!(sheepdog::StartLimit::default().burst(), 5);
    /// ```
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The window the starts are counted in.
    ///
    /// ```
    /// assert_eq!(sheepdog::StartLimit::default().interval(), std::time::Duration::from_secs(10));
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Default for StartLimit {
    /// 5 starts within 10 s (systemd's default).
    fn default() -> StartLimit {
        StartLimit::new(5, Duration::from_secs(10))
    }
}

/// How to know that an incarnation of a service is ready to serve.
///
/// ```
/// use sheepdog::Ready;
/// let probes = [
///     Ready::line("listening on"),
///     Ready::tcp("127.0.0.1:8080".parse().unwrap()),
///     Ready::file("/run/app.pid"),
///     Ready::command(sheepdog::Command::new("pg_isready")),
///     Ready::notify(3),
/// ];
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Ready {
    /// A line on stdout or stderr for which the function returns true.
    Line(Arc<dyn Fn(&str) -> bool + Send + Sync>, String),
    /// A TCP connection to the address succeeds.
    Tcp(SocketAddr),
    /// The file (or directory) exists.
    File(PathBuf),
    /// The command exits with success.
    Command(Box<Command>),
    /// The service writes `READY=1` (a line of its own, as with `sd_notify`) to this descriptor
    /// number, whose number it also finds in the environment variable `NOTIFY_FD`.
    Notify(i32),
}

impl Ready {
    /// A line on stdout or stderr that contains `text`.
    ///
    /// ```
    /// let ready = sheepdog::Ready::line("accepting connections");
    /// ```
    pub fn line(text: impl Into<String>) -> Ready {
        let text = text.into();
        let needle = text.clone();
        Ready::Line(
            Arc::new(move |line| line.contains(&needle)),
            format!("a line containing {text:?}"),
        )
    }

    /// A line on stdout or stderr for which `matches` returns true (for example a regex's
    /// `is_match`); `what` describes it in messages.
    ///
    /// ```
    /// let ready = sheepdog::Ready::line_matching("a port number", |line| {
    ///     line.split_whitespace().any(|word| word.parse::<u16>().is_ok())
    /// });
    /// ```
    pub fn line_matching(
        what: impl Into<String>,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Ready {
        Ready::Line(Arc::new(matches), what.into())
    }

    /// A TCP connection to `addr` succeeds (tried every 50 ms at first, then less often, at
    /// most every 500 ms).
    ///
    /// ```
    /// let ready = sheepdog::Ready::tcp("127.0.0.1:5432".parse().unwrap());
    /// ```
    pub fn tcp(addr: SocketAddr) -> Ready {
        Ready::Tcp(addr)
    }

    /// `path` exists (looked for as often as [`tcp`](Ready::tcp) connects).
    ///
    /// ```
    /// let ready = sheepdog::Ready::file("/tmp/app.ready");
    /// ```
    pub fn file(path: impl Into<PathBuf>) -> Ready {
        Ready::File(path.into())
    }

    /// `command` exits with success (run again, in a herd of its own, as often as
    /// [`tcp`](Ready::tcp) connects, each run after the previous one ended).
    ///
    /// ```
    /// let ready = sheepdog::Ready::command(sheepdog::Command::new("pg_isready"));
    /// ```
    pub fn command(command: Command) -> Ready {
        Ready::Command(Box::new(command))
    }

    /// The service writes `READY=1` on a line of its own to descriptor `fd` (3 or more), which
    /// the supervisor passes to it and names in `NOTIFY_FD`.
    ///
    /// ```
    /// let ready = sheepdog::Ready::notify(3);
    /// ```
    pub fn notify(fd: i32) -> Ready {
        Ready::Notify(fd)
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Line(_, what) => f.write_str(what),
            Ready::Tcp(addr) => write!(f, "a TCP connection to {addr}"),
            Ready::File(path) => write!(f, "the file {}", path.display()),
            Ready::Command(cmd) => {
                write!(f, "`{}` succeeding", cmd.get_program().to_string_lossy())
            }
            Ready::Notify(fd) => write!(f, "READY=1 on descriptor {fd}"),
        }
    }
}

/// A check that a ready service still works, tried at an interval; after a number of misses in
/// a row the incarnation is stopped and counts as failed.
///
/// ```
/// use std::time::Duration;
/// let live = sheepdog::Liveness::command(sheepdog::Command::new("pg_isready"))
///     .every(Duration::from_secs(5))
///     .misses(3);
/// assert_eq!(live.get_misses(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Liveness {
    pub(crate) probe: Ready,
    pub(crate) every: Duration,
    pub(crate) misses: u32,
}

impl Liveness {
    /// A TCP connection to `addr` succeeds (every 10 s, 3 misses by default).
    ///
    /// ```
    /// let live = sheepdog::Liveness::tcp("127.0.0.1:5432".parse().unwrap());
    /// ```
    pub fn tcp(addr: SocketAddr) -> Liveness {
        Liveness::of(Ready::Tcp(addr))
    }

    /// `path` exists.
    ///
    /// ```
    /// let live = sheepdog::Liveness::file("/run/app/alive");
    /// ```
    pub fn file(path: impl Into<PathBuf>) -> Liveness {
        Liveness::of(Ready::File(path.into()))
    }

    /// `command` exits with success (a run that outlasts the interval is a miss, and killed).
    ///
    /// ```
    /// let live = sheepdog::Liveness::command(sheepdog::Command::new("pg_isready"));
    /// ```
    pub fn command(command: Command) -> Liveness {
        Liveness::of(Ready::Command(Box::new(command)))
    }

    fn of(probe: Ready) -> Liveness {
        Liveness {
            probe,
            every: Duration::from_secs(10),
            misses: 3,
        }
    }

    /// How often it is tried (and how long one try may take); at least 1 ms.
    ///
    /// ```
    /// let live = sheepdog::Liveness::file("/tmp/alive").every(std::time::Duration::from_secs(1));
    /// ```
    pub fn every(mut self, interval: Duration) -> Liveness {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// How many misses in a row make the incarnation fail (at least 1).
    ///
    /// ```
    /// let live = sheepdog::Liveness::file("/tmp/alive").misses(5);
    /// ```
    pub fn misses(mut self, misses: u32) -> Liveness {
        self.misses = misses.max(1);
        self
    }

    /// The misses in a row that make the incarnation fail.
    ///
    /// ```
    /// assert_eq!(sheepdog::Liveness::file("/tmp/alive").get_misses(), 3);
    /// ```
    pub fn get_misses(&self) -> u32 {
        self.misses
    }
}

/// What a dependency must have done before its dependant starts.
///
/// ```
/// assert_eq!(sheepdog::Condition::Ready.to_string(), "ready");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// It has been started (its first incarnation is running).
    Started,
    /// It has been ready (its probe succeeded; without a probe, as soon as it started).
    Ready,
    /// It has exited with success and will not be restarted (a setup step, a migration).
    Completed,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
        })
    }
}
