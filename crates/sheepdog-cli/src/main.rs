//! `sheepdog`: run programs so that nothing they start escapes.
//!
//! For now `run` starts one command with inherited stdio and exits as it did; timeouts, stop
//! plans, reports and `doctor` follow (see docs/ARCHITECTURE.md).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run CMD with inherited stdio and exit with its status.
    ///
    /// Exit status: CMD's own code; 128+N if signal N killed it; 125 if sheepdog itself failed;
    /// 126 if CMD was found but is not executable; 127 if CMD was not found.
    #[command(
        after_help = "Examples:\n  sheepdog run -- sh -c 'echo hello from $$'\n  \
                            sheepdog run -- make -j2"
    )]
    Run {
        /// The program to run and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
}

/// timeout(1)'s conventions for failures of the runner itself.
const EXIT_INTERNAL: u8 = 125;
const EXIT_NOT_EXECUTABLE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sheepdog: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    match cli.command {
        Verb::Run { cmd } => runtime.block_on(run(cmd)),
    }
}

async fn run(argv: Vec<OsString>) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("sheepdog run: missing CMD; usage: sheepdog run -- CMD [ARGS...]");
        return ExitCode::from(EXIT_INTERNAL);
    };
    let mut command = sheepdog::Command::new(program);
    command.args(args);
    // At a terminal, CMD may be interactive (an editor, a REPL): it gets the foreground, so it
    // can read the terminal and gets Ctrl-C itself; sheepdog takes the terminal back after.
    if std::io::stdin().is_terminal() {
        command.foreground(true);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("sheepdog: {err}");
            return ExitCode::from(match err {
                sheepdog::Error::NotFound { .. } => EXIT_NOT_FOUND,
                sheepdog::Error::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
                _ => EXIT_INTERNAL,
            });
        }
    };
    match child.wait().await {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from(128 + signal.as_raw() as u8),
            (None, None) => ExitCode::from(EXIT_INTERNAL),
        },
        Err(err) => {
            eprintln!("sheepdog: waiting for {}: {err}", program.to_string_lossy());
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}
