//! `sheepdog up`: run the services of a `sheepdog.toml`, their output interleaved by line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sheepdog::{Event, EventKind, StreamKind, Supervisor};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config;

/// A service failed (exited badly and was not restarted, or was given up).
pub const EXIT_FAILED: u8 = 1;
/// The configuration cannot be used.
pub const EXIT_CONFIG: u8 = 2;

pub struct UpOptions {
    pub file: PathBuf,
    pub check: bool,
    pub timestamps: bool,
}

pub async fn up(options: UpOptions) -> ExitCode {
    let config = match config::load(&options.file) {
        Ok(config) => config,
        Err(err) => {
            say!("sheepdog up: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if options.check {
        show!(
            "{}: {} service(s), valid: {}",
            options.file.display(),
            config.names.len(),
            config.names.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    // Received from before anything starts, so that none arrives unhandled.
    let mut signals = match StopSignals::new() {
        Ok(signals) => signals,
        Err(err) => {
            say!("sheepdog up: cannot receive signals: {err}");
            return ExitCode::from(crate::run::EXIT_INTERNAL);
        }
    };
    let mut printer = Printer::new(&config.names, options.timestamps);
    let mut supervisor = match config.builder.start() {
        Ok(supervisor) => supervisor,
        Err(err) => {
            say!("sheepdog up: {err}");
            return ExitCode::from(crate::run::EXIT_INTERNAL);
        }
    };
    let mut tally = Tally::new(&config.names, &config.success_codes);
    follow(&mut supervisor, &mut signals, &mut tally, &mut printer).await;
    tally.exit_code()
}

/// The signals that stop the stack (INT, TERM, HUP) and Ctrl-Z (TSTP).
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
    tstp: Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            tstp: signal(SignalKind::from_raw(sheepdog::Signal::TSTP.as_raw()))?,
        })
    }
}

/// Prints the supervisor's events until every service has ended. A first INT, TERM or HUP
/// stops every service, a second kills them at once; Ctrl-Z freezes the services' trees with
/// sheepdog, and they thaw on `fg` or `bg`.
async fn follow(
    supervisor: &mut Supervisor,
    signals: &mut StopSignals,
    tally: &mut Tally<'_>,
    printer: &mut Printer,
) {
    let mut stops = 0;
    loop {
        let received = tokio::select! {
            event = supervisor.next() => match event {
                Some(event) => {
                    tally.show(&event, printer);
                    continue;
                }
                None => return,
            },
            _ = signals.int.recv() => "SIGINT",
            _ = signals.term.recv() => "SIGTERM",
            _ = signals.hup.recv() => "SIGHUP",
            _ = signals.tstp.recv() => {
                if let Err(err) = supervisor.suspend().await {
                    printer.note(&format!("suspending the services: {err}"));
                }
                continue;
            }
        };
        stops += 1;
        if stops == 1 {
            printer.note(&format!(
                "{received}: stopping every service (send it again to kill them at once)"
            ));
            supervisor.stop();
        } else {
            printer.note(&format!("{received} again: killing every service"));
            supervisor.kill();
        }
    }
}

/// What `up` keeps from the events: per service, why it failed (`None`: clean), and which are
/// ready.
struct Tally<'a> {
    outcomes: BTreeMap<String, Option<String>>,
    success_codes: &'a BTreeMap<String, Vec<i32>>,
    ready: BTreeSet<Arc<str>>,
    services: usize,
    started: Instant,
}

impl<'a> Tally<'a> {
    fn new(names: &[String], success_codes: &'a BTreeMap<String, Vec<i32>>) -> Tally<'a> {
        Tally {
            outcomes: names.iter().map(|name| (name.clone(), None)).collect(),
            success_codes,
            ready: BTreeSet::new(),
            services: names.len(),
            started: Instant::now(),
        }
    }

    /// Keeps what `event` decides and prints it; says once, the moment the whole stack is up.
    fn show(&mut self, event: &Event, printer: &mut Printer) {
        record(&mut self.outcomes, self.success_codes, event);
        printer.print(event);
        if matches!(event.kind, EventKind::Ready)
            && self.ready.insert(event.service.clone())
            && self.ready.len() == self.services
        {
            printer.note(&format!(
                "all {} services ready after {:.2?}",
                self.ready.len(),
                self.started.elapsed()
            ));
        }
    }

    /// Success, or the services that failed and why.
    fn exit_code(&self) -> ExitCode {
        let failed: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|(name, failure)| failure.as_ref().map(|why| format!("{name} ({why})")))
            .collect();
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            say!("sheepdog up: failed: {}", failed.join(", "));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Keeps, per service, why it failed, from its last event that decides it (`None`: clean).
fn record(
    outcomes: &mut BTreeMap<String, Option<String>>,
    success_codes: &BTreeMap<String, Vec<i32>>,
    event: &Event,
) {
    let failure = match &event.kind {
        EventKind::Exited { status } => {
            let clean = status.code().is_some_and(|code| {
                success_codes
                    .get(&*event.service)
                    .map_or(code == 0, |codes| codes.contains(&code))
            });
            (!clean).then(|| status.to_string())
        }
        EventKind::StartFailed { error } => Some(format!("cannot start: {error}")),
        EventKind::NotReady { timeout } => Some(format!("not ready within {timeout:?}")),
        EventKind::NotLive { misses } => Some(format!("{misses} liveness checks missed")),
        EventKind::GaveUp { reason } => Some(format!("gave up: {reason}")),
        EventKind::Stopped { .. } => None,
        _ => return,
    };
    outcomes.insert(event.service.to_string(), failure);
}

/// Writes each service's lines with its name in front, in a colour of its own on a terminal.
struct Printer {
    width: usize,
    colours: BTreeMap<String, &'static str>,
    stdout_colour: bool,
    stderr_colour: bool,
    /// Wall-clock time at `start`, to turn event instants into times of day.
    timestamps: Option<(Instant, SystemTime)>,
}

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

impl Printer {
    fn new(names: &[String], timestamps: bool) -> Printer {
        // https://no-color.org: any non-empty value turns colour off.
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer {
            width: names.iter().map(String::len).max().unwrap_or(0),
            colours: names
                .iter()
                .zip(COLOURS.iter().cycle())
                .map(|(name, colour)| (name.clone(), *colour))
                .collect(),
            stdout_colour: !no_colour && std::io::stdout().is_terminal(),
            stderr_colour: !no_colour && std::io::stderr().is_terminal(),
            timestamps: timestamps.then(|| (Instant::now(), SystemTime::now())),
        }
    }

    fn print(&mut self, event: &Event) {
        let (to_stdout, text) = match &event.kind {
            EventKind::Output {
                stream: StreamKind::Stdout,
                line,
            } => (true, line.clone()),
            EventKind::Output { line, .. } => (false, line.clone()),
            other => (false, format!("[sheepdog] {other}")),
        };
        let colour = if to_stdout {
            self.stdout_colour
        } else {
            self.stderr_colour
        };
        let mut line = String::new();
        if let Some(time) = self.time_of(event.at) {
            line.push_str(&time);
            line.push(' ');
        }
        let name = format!("{:width$} |", event.service, width = self.width);
        match self.colours.get(&*event.service).filter(|_| colour) {
            Some(code) => line.push_str(&format!("\x1b[{code}m{name}\x1b[0m")),
            None => line.push_str(&name),
        }
        line.push(' ');
        line.push_str(&text);
        line.push('\n');
        // A closed stdout or stderr (`up | head`) must not stop the services' supervision.
        let _ = if to_stdout {
            std::io::stdout().lock().write_all(line.as_bytes())
        } else {
            std::io::stderr().lock().write_all(line.as_bytes())
        };
    }

    /// A line of sheepdog's own.
    fn note(&mut self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "sheepdog up: {text}");
    }

    /// `HH:MM:SS.mmm` (UTC) of `at`.
    fn time_of(&self, at: Instant) -> Option<String> {
        let (start, wall) = self.timestamps?;
        let wall = wall + at.saturating_duration_since(start);
        let since_epoch = wall.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let seconds = since_epoch.as_secs() % 86_400;
        Some(format!(
            "{:02}:{:02}:{:02}.{:03}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            since_epoch.subsec_millis()
        ))
    }
}
