//! `sheepdog`: run programs so that nothing they start escapes.

/// `eprintln!` that never panics: with stderr closed or a broken pipe (`... 2>&1 | true`), what
/// sheepdog says is dropped, and its exit status is still the command's.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics: a closed stdout (`sheepdog doctor | head -1`) ends the output.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod config;
mod doctor;
mod duration;
mod init;
mod report;
mod run;
mod tree;
mod up;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sheepdog::Signal;

#[derive(Parser)]
#[command(
    name = "sheepdog",
    version,
    about = "Run programs so that nothing they start escapes"
)]
struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Run CMD in a herd: everything it starts stays in it and ends with it.
    ///
    /// Signals sheepdog gets (INT, TERM, HUP, QUIT) go on to the whole tree. When CMD ends,
    /// whatever it left running is stopped, and a short report goes to stderr. Where no cgroup
    /// can be had, the tree is held by a process group (and sheepdog adopts its orphans); a
    /// line on stderr says so, and why, before CMD starts.
    ///
    /// Exit status, as timeout(1)'s: CMD's own code; 124 if it timed out (137 if it had to be
    /// killed; CMD's own with --preserve-status); 125 if sheepdog itself failed; 126 if CMD was
    /// found but is not executable; 127 if CMD was not found. If a signal killed CMD, sheepdog
    /// dies by the same signal (a shell shows 128+N).
    #[command(after_help = "Examples:\n  \
        sheepdog run -- make -j2\n  \
        sheepdog run --timeout 2s -- sh -c 'sleep 100 & sleep 100 & wait'\n  \
        sheepdog run --timeout 1m --grace 10s --signal INT -- ./server\n  \
        sheepdog run --json -- cargo test\n  \
        sheepdog run --require-cgroup -- ./build.sh")]
    Run {
        /// Stop CMD's tree after this long (500ms, 2s, 1m30s, 1d; a bare number is seconds;
        /// 0, as for timeout(1), is no timeout).
        #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
        timeout: Option<Duration>,
        /// How long the tree gets to exit after the stop signal, before SIGKILL (timeout(1)'s
        /// -k/--kill-after).
        #[arg(long, short = 'k', visible_alias = "kill-after", value_parser = duration::parse,
              default_value = "5s", value_name = "DURATION")]
        grace: Duration,
        /// The signal that asks the tree to stop (name or number: TERM, INT, SIGHUP, 9).
        #[arg(long, short = 's', value_parser = parse_signal, default_value = "TERM",
              value_name = "SIGNAL")]
        signal: Signal,
        /// Exit with CMD's status even when it timed out (else 124, or 137 when it had to be
        /// killed), as timeout(1)'s --preserve-status.
        #[arg(long)]
        preserve_status: bool,
        /// Give CMD the terminal's foreground even when stdin is not a terminal. Unlike
        /// timeout(1)'s --foreground, CMD's children are still timed out: the whole tree is.
        #[arg(long)]
        foreground: bool,
        /// Print the report as one JSON object (on stderr) instead of text.
        #[arg(long)]
        json: bool,
        /// Print no report.
        #[arg(long, short, conflicts_with = "json")]
        quiet: bool,
        /// Refuse to run without a cgroup v2 herd (exit 125, nothing started) instead of
        /// falling back to a process group; also `SHEEPDOG_REQUIRE_CGROUP=1`.
        #[arg(long)]
        require_cgroup: bool,
        /// The program to run and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Show a process and everything below it, as an indented tree (children from
    /// /proc/PID/task/*/children).
    #[command(
        after_help = "Examples:\n  sheepdog tree\n  sheepdog tree 1\n  sheepdog tree --json $$"
    )]
    Tree {
        /// The root (default: the process that started sheepdog, e.g. your shell).
        pid: Option<u32>,
        /// Print nested JSON objects (each with `pid`, `ppid`, `pgid`, `sid`, `state`,
        /// `start_ticks`, `command`, `children`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the services of a configuration file, each restarted and stopped as it says.
    ///
    /// Services start in dependency order (once what they depend on has started, is ready, or
    /// has completed), each in a herd of its own; their output is interleaved by line with
    /// their name in front. Ctrl-C (or SIGTERM, SIGHUP) stops them all in reverse dependency
    /// order; a second one kills them at once; Ctrl-Z freezes them with sheepdog until `fg`.
    /// `up` ends by itself once every service has ended or been given up.
    ///
    /// Exit status: 0 when every service ended cleanly or was stopped; 1 when one failed (a
    /// line names them); 2 when the configuration is invalid; 125 if sheepdog itself failed.
    #[command(after_help = "Examples:\n  \
        sheepdog up\n  \
        sheepdog up -f examples/sheepdog.toml --timestamps\n  \
        sheepdog up --check")]
    Up {
        /// The configuration file (relative paths in it are taken from its directory).
        #[arg(
            short = 'f',
            long = "file",
            default_value = "sheepdog.toml",
            value_name = "FILE"
        )]
        file: PathBuf,
        /// Check the configuration and start nothing.
        #[arg(long)]
        check: bool,
        /// Put the time of day (UTC) in front of each line.
        #[arg(long)]
        timestamps: bool,
    },
    /// Show what containment this host gives herds, and why.
    #[command(after_help = "Examples:\n  sheepdog doctor\n  sheepdog doctor --json")]
    Doctor {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(number) = name.parse::<i32>() {
        return Signal::from_raw(number)
            .ok_or_else(|| format!("`{text}`: signal numbers go from 1 to 64"));
    }
    (1..=64)
        .filter_map(Signal::from_raw)
        .find(|signal| signal.name() == Some(&format!("SIG{name}")))
        .ok_or_else(|| {
            format!("`{text}` is not a signal name: try TERM, INT, HUP, KILL or a number")
        })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not failures; a bad argument is sheepdog's own (125).
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                run::EXIT_INTERNAL
            } else {
                0
            });
        }
    };
    // A container's entrypoint: a minimal init stays PID 1 and runs this same command line.
    let runs_services = match &cli.command {
        Verb::Run { .. } => true,
        Verb::Up { check, .. } => !check,
        Verb::Doctor { .. } | Verb::Tree { .. } => false,
    };
    if runs_services && init::is_pid1() {
        return init::run();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say!("sheepdog: cannot start the async runtime: {err}");
            return ExitCode::from(run::EXIT_INTERNAL);
        }
    };
    match cli.command {
        Verb::Run {
            timeout,
            grace,
            signal,
            preserve_status,
            foreground,
            json,
            quiet,
            require_cgroup,
            cmd,
        } => {
            let ending = runtime.block_on(run::run(run::RunOptions {
                cmd,
                timeout,
                grace,
                signal,
                json,
                quiet,
                require_cgroup: require_cgroup
                    || std::env::var_os(run::REQUIRE_CGROUP_ENV).is_some_and(|v| v == "1"),
                preserve_status,
                foreground,
            }));
            match ending {
                run::RunExit::Code(code) => ExitCode::from(code),
                // CMD's own ending, its signal raised on sheepdog as timeout(1) does, once
                // the runtime (and with it every herd) is gone.
                run::RunExit::Like(status) => {
                    drop(runtime);
                    status.exit_like()
                }
            }
        }
        Verb::Up {
            file,
            check,
            timestamps,
        } => runtime.block_on(up::up(up::UpOptions {
            file,
            check,
            timestamps,
        })),
        Verb::Doctor { json } => runtime.block_on(doctor::doctor(json)),
        Verb::Tree { pid, json } => tree::tree(pid, json),
    }
}
