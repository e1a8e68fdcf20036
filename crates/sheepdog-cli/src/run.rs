//! `sheepdog run`: CMD in a herd, with a timeout, signal forwarding, and a report.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sheepdog::time::Sleep;
use sheepdog::{Command, ExitStatus, Herd, Mechanism, Signal, Signals, StopPlan, StopTarget};

use crate::report::Report;

/// timeout(1)'s conventions.
pub const EXIT_TIMED_OUT: u8 = 124;
pub const EXIT_INTERNAL: u8 = 125;
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

/// `SHEEPDOG_REQUIRE_CGROUP=1` is `--require-cgroup`.
pub const REQUIRE_CGROUP_ENV: &str = "SHEEPDOG_REQUIRE_CGROUP";

pub struct RunOptions {
    pub cmd: Vec<OsString>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub signal: Signal,
    pub json: bool,
    pub quiet: bool,
    pub require_cgroup: bool,
    /// timeout(1)'s `--preserve-status`: the command's status even when it timed out.
    pub preserve_status: bool,
    /// Give CMD the terminal's foreground even when stdin is not a terminal.
    pub foreground: bool,
}

/// How `sheepdog run` ends: with a code, or the way the command ended (its signal re-raised).
pub enum RunExit {
    Code(u8),
    Like(ExitStatus),
}

impl From<u8> for RunExit {
    fn from(code: u8) -> RunExit {
        RunExit::Code(code)
    }
}

pub async fn run(options: RunOptions) -> RunExit {
    let started = Instant::now();
    let Some((program, args)) = options.cmd.split_first() else {
        say!("sheepdog run: missing CMD; usage: sheepdog run [OPTIONS] -- CMD [ARGS...]");
        return EXIT_INTERNAL.into();
    };
    let mut job = match Job::start(&options, program, args) {
        Ok(job) => job,
        Err(exit) => return exit,
    };
    let status = match job.wait().await {
        Ok(status) => status,
        Err(err) => {
            let what = format!("waiting for {}: {err}", program.to_string_lossy());
            return failed(&options, "lost", &what, EXIT_INTERNAL);
        }
    };
    let (left, not_stopped) = job.stop_what_was_left().await;
    let report = Report {
        command: &options.cmd,
        status: &status,
        timed_out: job.timed_out,
        wall: started.elapsed(),
        left_running: left,
        not_stopped: &not_stopped,
        containment: job.herd.containment(),
        tree: job.herd.usage().ok(),
    };
    if options.json {
        say!("{}", report.json());
    } else if !options.quiet {
        say!("{report}");
    }
    run_exit(status, job.timed_out, options.preserve_status)
}

/// CMD running in its herd, and what `sheepdog run` follows while it runs.
struct Job {
    herd: Arc<Herd>,
    child: sheepdog::Child,
    /// The signals sheepdog gets, forwarded to the tree (`None`: they cannot be received).
    signals: Option<Signals>,
    /// SIGCHLD, when CMD has the terminal: CMD stopped by Ctrl-Z.
    child_changed: Option<tokio::signal::unix::Signal>,
    /// The stop at the timeout, at a first INT/TERM, and of what CMD leaves running.
    plan: StopPlan,
    deadline: Option<Sleep>,
    timed_out: bool,
    /// The stop begun at the deadline or at a first INT/TERM: it runs in the herd's own task,
    /// so the wait goes on (a second INT/TERM then kills at once).
    stopping: bool,
}

impl Job {
    /// Makes the herd and spawns CMD into it, or says why not (and how `run` exits).
    fn start(options: &RunOptions, program: &OsString, args: &[OsString]) -> Result<Job, RunExit> {
        let herd = match make_herd(options.require_cgroup) {
            Ok(herd) => Arc::new(herd),
            Err(err) => return Err(failed(options, "no_herd", &err.to_string(), EXIT_INTERNAL)),
        };
        let containment = herd.containment();
        if containment.mechanism() != Mechanism::CgroupV2 && !options.quiet {
            say!("{}", fallback_line(containment));
        }
        let mut command = Command::new(program);
        command.args(args);
        // At a terminal, CMD may be interactive (an editor, a REPL): it gets the foreground, so
        // it can read the terminal and gets Ctrl-C itself; sheepdog takes the terminal back
        // after.
        let interactive = options.foreground || std::io::stdin().is_terminal();
        if interactive {
            command.foreground(true);
        }
        // Handled from before CMD starts, so that none arrives unhandled.
        let signals = forwarded_signals();
        let child_changed = if interactive { child_changes() } else { None };
        let child = match herd.spawn(&command) {
            Ok(child) => child,
            Err(err) => {
                let (outcome, code) = match err {
                    sheepdog::Error::NotFound { .. } => ("not_found", EXIT_NOT_FOUND),
                    sheepdog::Error::NotExecutable { .. } => {
                        ("not_executable", EXIT_NOT_EXECUTABLE)
                    }
                    _ => ("not_started", EXIT_INTERNAL),
                };
                return Err(failed(options, outcome, &err.to_string(), code));
            }
        };
        Ok(Job {
            herd,
            child,
            signals,
            child_changed,
            plan: StopPlan::new().then(options.signal, StopTarget::Tree, options.grace),
            // As timeout(1): a timeout of 0 is none.
            deadline: options
                .timeout
                .filter(|timeout| !timeout.is_zero())
                .map(Sleep::new),
            timed_out: false,
            stopping: false,
        })
    }

    /// Waits for CMD to exit, acting on the deadline, the signals and job control meanwhile.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            let event = tokio::select! {
                status = self.child.wait() => Event::Exited(status),
                () = until(self.deadline.as_mut()), if !self.timed_out => Event::Deadline,
                sig = recv(self.signals.as_mut()) => match sig {
                    Signal::TSTP => Event::Suspend,
                    sig => Event::Signal(sig),
                },
                () = recv_any(self.child_changed.as_mut()) => Event::ChildChanged,
            };
            match event {
                Event::Exited(status) => return status,
                Event::Suspend => {
                    self.pause_deadline();
                    if let Err(err) = sheepdog::suspend(&[&self.herd]).await {
                        say!("sheepdog: suspending the tree: {err}");
                    }
                    self.resume_deadline();
                }
                Event::Deadline => {
                    self.timed_out = true;
                    self.stopping = true;
                    begin_stop(&self.herd, &self.plan);
                }
                Event::ChildChanged => {
                    if self.child.is_stopped() {
                        self.stop_with_cmd().await;
                    }
                }
                // Asked again to stop while a stop runs: no more grace.
                Event::Signal(Signal::INT | Signal::TERM) if self.stopping => {
                    if let Err(err) = self.herd.kill().await {
                        say!("sheepdog: killing the tree: {err}");
                    }
                }
                Event::Signal(sig) => {
                    self.stopping |= matches!(sig, Signal::INT | Signal::TERM);
                    if let Err(err) = signal_tree(&self.herd, sig).await {
                        say!("sheepdog: forwarding {sig}: {err}");
                    }
                }
            }
        }
    }

    /// CMD, at the terminal, was stopped by Ctrl-Z. Like a shell's job: the terminal goes
    /// back, and sheepdog stops with CMD, the whole tree frozen (members in other sessions get
    /// no Ctrl-Z of their own); continued (`fg`), the terminal goes to CMD again, and CMD is
    /// continued.
    async fn stop_with_cmd(&mut self) {
        self.pause_deadline();
        let _ = self.child.release_terminal();
        if let Err(err) = sheepdog::suspend(&[&self.herd]).await {
            say!("sheepdog: suspending: {err}");
        }
        let _ = self.child.reclaim_terminal();
        let _ = signal_tree(&self.herd, Signal::CONT).await;
        self.resume_deadline();
    }

    fn pause_deadline(&mut self) {
        if let Some(deadline) = self.deadline.as_mut() {
            deadline.pause();
        }
    }

    fn resume_deadline(&mut self) {
        if let Some(deadline) = self.deadline.as_mut() {
            deadline.resume();
        }
    }

    /// Stops what CMD left running the same way a timeout would; returns how many processes
    /// were left, and those still there if the stop failed.
    async fn stop_what_was_left(&mut self) -> (usize, Vec<u32>) {
        let left = members(&self.herd).await.len();
        if left == 0 {
            return (0, Vec::new());
        }
        let stop = self.herd.stop_with(&self.plan, None);
        tokio::pin!(stop);
        let stopped = loop {
            tokio::select! {
                stopped = &mut stop => break stopped,
                sig = recv(self.signals.as_mut()) => match sig {
                    // Asked to stop while the grace runs: no more grace.
                    Signal::INT | Signal::TERM => {
                        if let Err(err) = self.herd.kill().await {
                            say!("sheepdog: killing the tree: {err}");
                        }
                    }
                    sig => {
                        let _ = signal_tree(&self.herd, sig).await;
                    }
                },
            }
        };
        match stopped {
            Ok(_) => (left, Vec::new()),
            Err(err) => {
                say!("sheepdog: stopping what was left: {err}");
                (left, members(&self.herd).await)
            }
        }
    }
}

/// Signals sheepdog gets go on, the same, to the tree; Ctrl-Z (SIGTSTP) freezes the herd and
/// pauses the timeout while sheepdog is stopped, and `fg`/`bg` continue all three.
fn forwarded_signals() -> Option<Signals> {
    match Signals::new() {
        Ok(signals) => Some(signals),
        Err(err) => {
            say!("sheepdog: {err}; signals will not be forwarded");
            None
        }
    }
}

/// With the terminal's foreground, Ctrl-Z stops CMD itself, not sheepdog: a SIGCHLD tells
/// sheepdog, which then hands the terminal back and stops too, so the shell regains it.
fn child_changes() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(stream) => Some(stream),
        Err(err) => {
            say!("sheepdog: cannot follow Ctrl-Z at the terminal: {err}");
            None
        }
    }
}

/// sheepdog could not run CMD, or lost it: says why (in the report's JSON form with `--json`,
/// so that every run prints one object) and ends with `code`.
fn failed(options: &RunOptions, outcome: &str, error: &str, code: u8) -> RunExit {
    if options.json {
        say!(
            "{}",
            crate::report::failure_json(&options.cmd, outcome, error)
        );
    } else {
        say!("sheepdog: {error}");
    }
    code.into()
}

/// Begins the stop by `plan` in the herd's own task; it goes on when this future is dropped.
fn begin_stop(herd: &Arc<Herd>, plan: &StopPlan) {
    let (herd, plan) = (Arc::clone(herd), plan.clone());
    tokio::spawn(async move {
        if let Err(err) = herd.stop_with(&plan, None).await {
            say!("sheepdog: stopping the tree after the timeout: {err}");
        }
    });
}

/// The herd: the strongest containment, or, with `require_cgroup`, a cgroup or an error that
/// says why there is none.
fn make_herd(require_cgroup: bool) -> std::io::Result<Herd> {
    if !require_cgroup {
        return Herd::new();
    }
    Herd::builder()
        .mechanism(Mechanism::CgroupV2)
        .build()
        .map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("a cgroup is required (--require-cgroup or {REQUIRE_CGROUP_ENV}=1): {err}"),
            )
        })
}

/// The line that says a weaker containment is in force, and why.
fn fallback_line(containment: &sheepdog::Containment) -> String {
    let adoption = if containment.adopts_orphans() {
        " with orphan adoption"
    } else {
        " without orphan adoption"
    };
    let why = containment.fallback_reason().unwrap_or("asked for");
    format!(
        "sheepdog: weaker containment: a {}{adoption} instead of a cgroup ({why})",
        containment.mechanism(),
    )
}

/// The herd's members now, looked up off the runtime (a process group's look reads /proc).
async fn members(herd: &Arc<Herd>) -> Vec<u32> {
    let herd = Arc::clone(herd);
    tokio::task::spawn_blocking(move || herd.members().unwrap_or_default())
        .await
        .unwrap_or_default()
}

/// Sends `signal` to the tree off the runtime (a process group's look reads /proc).
async fn signal_tree(herd: &Arc<Herd>, signal: Signal) -> std::io::Result<Vec<u32>> {
    let herd = Arc::clone(herd);
    tokio::task::spawn_blocking(move || herd.signal(signal))
        .await
        .map_err(std::io::Error::other)?
}

enum Event {
    Exited(std::io::Result<ExitStatus>),
    Deadline,
    Signal(Signal),
    Suspend,
    ChildChanged,
}

/// The deadline, if there is one.
async fn until(deadline: Option<&mut Sleep>) {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}

/// The next arrival of a signal, if it is received.
async fn recv_any(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The next signal, if signals are received.
async fn recv(signals: Option<&mut Signals>) -> Signal {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// timeout(1)'s exit status: CMD's code, or CMD's signal raised on sheepdog itself; timed out,
/// 124, or 137 when CMD had to be killed (SIGKILL), or with `--preserve-status` CMD's status
/// (128 + its signal).
fn run_exit(status: ExitStatus, timed_out: bool, preserve_status: bool) -> RunExit {
    if !timed_out {
        return RunExit::Like(status);
    }
    let killed = status.signal() == Some(Signal::KILL);
    match (status.code(), status.signal()) {
        (Some(code), _) if preserve_status => RunExit::Code(code as u8),
        (None, Some(signal)) if preserve_status || killed => {
            RunExit::Code(128u8.saturating_add(signal.as_raw() as u8))
        }
        _ => EXIT_TIMED_OUT.into(),
    }
}
