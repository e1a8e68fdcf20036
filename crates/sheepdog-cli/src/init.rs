//! sheepdog as PID 1 (a container's entrypoint): a minimal init that runs the real `sheepdog`
//! as its one child, passes signals on to it, reaps every orphan, and exits with its status.
//!
//! Orphans of the namespace are re-parented to PID 1. The library reaps its own children by
//! pidfd; a `waitpid(-1)` in the same process would steal their statuses, and nothing in /proc
//! tells an orphan from a child the library spawned. So PID 1 is a separate, tiny process with
//! no child of its own but the real sheepdog: there, reaping any child is safe.
//! (docs/decisions/up-pid1-init-process.md)

use std::io;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use rustix::process::{Pid, WaitOptions, WaitStatus};
use tokio::signal::unix::{signal, Signal as Stream, SignalKind};

/// Signals PID 1 passes on to the real sheepdog. The kernel gives PID 1 no default action for
/// signals it does not handle, so each is handled here explicitly.
const FORWARDED: [(i32, &str); 6] = [
    (rustix::process::Signal::TERM.as_raw(), "SIGTERM"),
    (rustix::process::Signal::INT.as_raw(), "SIGINT"),
    (rustix::process::Signal::HUP.as_raw(), "SIGHUP"),
    (rustix::process::Signal::QUIT.as_raw(), "SIGQUIT"),
    (rustix::process::Signal::USR1.as_raw(), "SIGUSR1"),
    (rustix::process::Signal::USR2.as_raw(), "SIGUSR2"),
];

/// Whether this process is the init of its PID namespace.
pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// Runs this same command line as a child and stays PID 1 until it has exited.
pub fn run() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say!("sheepdog (init): cannot start the async runtime: {err}");
            return ExitCode::from(crate::run::EXIT_INTERNAL);
        }
    };
    match runtime.block_on(supervise_child()) {
        Ok(status) => exit_code(status),
        Err(err) => {
            say!("sheepdog (init): {err}");
            ExitCode::from(crate::run::EXIT_INTERNAL)
        }
    }
}

async fn supervise_child() -> io::Result<WaitStatus> {
    // Handled before the child exists, so that none arrives unhandled.
    let mut children = signal(SignalKind::child())?;
    let mut streams: Vec<(i32, Stream)> = FORWARDED
        .iter()
        .map(|&(signo, _)| signal(SignalKind::from_raw(signo)).map(|s| (signo, s)))
        .collect::<io::Result<_>>()?;

    let exe = std::env::current_exe()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot find its own program: {err}")))?;
    // In its own process group, holding the terminal's foreground if there is one: a Ctrl-C
    // at the terminal then reaches it once, not once directly and once forwarded.
    let child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .process_group(0)
        .spawn()
        .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start {}: {err}", exe.display()))
        })?;
    let pid = Pid::from_child(&child);
    drop(child); // reaped below, with every orphan
    let stdin = std::io::stdin();
    if rustix::termios::isatty(&stdin) {
        let _ = rustix::termios::tcsetpgrp(&stdin, pid);
    }

    loop {
        let signo = tokio::select! {
            _ = children.recv() => {
                if let (Some(status), left) = reap_all(pid) {
                    if left {
                        linger(&mut children).await;
                    }
                    return Ok(status);
                }
                continue;
            }
            signo = next_signal(&mut streams) => signo,
        };
        // The child is not reaped yet (its status comes only through `reap_all`), so its pid
        // cannot have been reused.
        if let Some(sig) = rustix::process::Signal::from_named_raw(signo) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// How long PID 1 waits, once the real sheepdog has exited, for the processes it left to end:
/// its owner-death sentinel, re-parented here, is removing the herds' cgroups, and PID 1's
/// exit would kill it half-way (every process of the namespace dies with PID 1).
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reaps children as they exit until none is left, or [`LINGER`] has passed.
async fn linger(children: &mut Stream) {
    let deadline = tokio::time::sleep(LINGER);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = children.recv() => {
                if !reap_all(Pid::INIT).1 {
                    return;
                }
            }
            () = &mut deadline => return,
        }
    }
}

/// Reaps every child that has exited; returns the status of `main` if it was among them, and
/// whether any child is left.
fn reap_all(main: Pid) -> (Option<WaitStatus>, bool) {
    let mut main_status = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == main {
                    main_status = Some(status);
                }
            }
            // No child has exited yet: some are left.
            Ok(None) => return (main_status, true),
            // None is left (ECHILD).
            Err(_) => return (main_status, false),
        }
    }
}

async fn next_signal(streams: &mut [(i32, Stream)]) -> i32 {
    std::future::poll_fn(|cx| {
        for (signo, stream) in streams.iter_mut() {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*signo);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The child's code, or 128 + the signal that killed it (as a shell reports it).
fn exit_code(status: WaitStatus) -> ExitCode {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signo)) => ExitCode::from(128u8.saturating_add(signo as u8)),
        (None, None) => ExitCode::from(crate::run::EXIT_INTERNAL),
    }
}
