//! Start programs and keep every process they create in one container.
//!
//! sheepdog starts processes with a vfork-style `clone3` that costs no more than
//! `posix_spawn` however large the parent is, addresses them by pidfd so that no stranger is
//! ever signalled, and waits for them by event, never stealing another library's children.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sheepdog::{Command, Stdio};
//! use tokio::io::AsyncReadExt;
//!
//! let mut child = Command::new("uname").arg("-s").stdout(Stdio::piped()).spawn()?;
//! let mut out = String::new();
//! child.stdout.take().unwrap().read_to_string(&mut out).await?;
//! let status = child.wait().await?;
//! println!("{} ({status})", out.trim());
//! # Ok(()) }
//! ```
//!
//! The names are `tokio::process`'s (a tokio program ports by changing its `use` lines; see
//! `docs/from-tokio.md` for what differs). See `docs/ARCHITECTURE.md` in the repository for the
//! design: layers, invariants, decisions.

#![warn(missing_docs)]

mod capture;
mod child;
mod command;
mod driver;
mod error;
mod executor;
mod herd;
mod identity;
mod lines;
mod output;
mod pipe;
mod pipeline;
mod signal;
mod signals;
mod status;
mod stop;
mod supervise;
mod sys;
pub mod time;

pub use child::Child;
pub use command::{Command, Stdio};
pub use error::{Error, RunFailure};
pub use executor::{Executor, Exit, OnDispose, Started};
pub use herd::{
    host_containment, suspend, Containment, Herd, HerdBuilder, HerdUsage, HostContainment,
    Mechanism,
};
pub use identity::{tree, ProcessInfo, ProcessRef};
pub use lines::{Line, Lines, StreamKind};
pub use output::{Outcome, Output, OverLimit};
pub use pipe::{ChildStderr, ChildStdin, ChildStdout};
pub use pipeline::{Pipeline, PipelineOutput, RunningPipeline};
pub use signal::Signal;
pub use signals::{Signals, FORWARDED};
pub use status::{ExitStatus, ResourceUsage};
pub use stop::{StopPlan, StopReport, StopStep, StopTarget};
pub use supervise::{
    Backoff, Condition, Event, EventKind, Liveness, Ready, Restart, Service, StartLimit,
    SuperviseError, Supervisor, SupervisorBuilder,
};
pub use sys::SpawnPath;

/// Locks `mutex`, taking over a lock poisoned by a thread that panicked while holding it: every
/// critical section in this crate leaves its data whole (a push, a pop, a take), so the data is
/// still good, and a panic elsewhere must not stop herds from being cleaned up.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seams for sheepdog's own tests and benchmarks; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::os::fd::BorrowedFd;

    use crate::{Child, Command, Error, SpawnPath};

    /// How much background work (reaping, cgroup removal, cgroups made ahead) is still to do;
    /// tests that count this process's descriptors wait for 0.
    pub fn background_work() -> usize {
        crate::sys::background_work()
    }

    /// Makes this process put new cgroup herds straight below their parent, without the home
    /// the owner-death sentinel guards, as on hosts where no sentinel can be had.
    pub fn force_homeless() {
        crate::sys::force_homeless();
    }

    /// The pid of this process's owner-death sentinel, starting it if none runs; `None` where
    /// none can run.
    pub fn sentinel_pid() -> Option<i32> {
        crate::sys::sentinel_pid()
    }

    /// Makes the sentinel take `errno` as the result of its next receive, then waits (bounded)
    /// until it says it passed over it.
    pub fn sentinel_inject_receive_error(errno: i32) -> std::io::Result<()> {
        crate::sys::sentinel_inject_receive_error(errno)
    }

    /// Makes this process use `path` (or a weaker one) from now on, as if stronger ones had
    /// been refused.
    pub fn force_spawn_path(path: SpawnPath) {
        crate::sys::force_spawn_path(path);
    }

    /// Spawns `cmd` into the cgroup whose directory is open as `cgroup`, and into process
    /// group `pgid` (`Some(0)`: a new one led by the child).
    pub fn spawn_into(
        cmd: &Command,
        cgroup: Option<BorrowedFd<'_>>,
        pgid: Option<i32>,
    ) -> Result<Child, Error> {
        crate::sys::spawn_into(&cmd.spawn_request(), cgroup, pgid)
            .map(|spawned| Child::new(spawned, cmd))
            .map_err(|err| cmd.spawn_error(err))
    }
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
