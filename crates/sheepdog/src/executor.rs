//! `Executor`: processes run the way orchestrators run them — addressed by identity, watched
//! by a future that may be kept anywhere, and let go of together.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::watch;

use crate::command::Command;
use crate::error::Error;
use crate::herd::Herd;
use crate::identity::ProcessRef;
use crate::status::ExitStatus;
use crate::stop::StopReport;
use crate::sys;
use crate::time::Deadline;

/// What [`Executor::dispose`] does with a process.
///
/// ```
/// assert_ne!(sheepdog::OnDispose::Kill, sheepdog::OnDispose::Wait);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnDispose {
    /// Kill it and everything it started.
    Kill,
    /// Let it finish, and wait for it (and for what it started).
    Wait,
}

/// Runs processes for a program that keeps them by identity (a control plane, a test harness):
/// each in a herd of its own, each watched by a future that is `Send + 'static`, each reaped
/// whether or not anybody awaits that future.
///
/// [`Command::status`] and [`Command::timeout`] are the "run to completion" and "run with a
/// timeout" of such executors; they need no twin here.
///
/// Dropping the executor kills every process it started, except those started with
/// [`start_and_forget`](Executor::start_and_forget); [`dispose`](Executor::dispose) is the
/// orderly way. Needs a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sheepdog::{Command, Executor, OnDispose};
/// let executor = Executor::new();
/// let server = executor.start(Command::new("sleep").arg("30"), OnDispose::Kill)?;
/// let job = executor.start(&Command::new("true"), OnDispose::Wait)?;
/// assert!(job.exit.await?.success());
/// executor.dispose().await?; // the sleep is killed with its tree
/// assert!(!server.process.is_alive());
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct Executor {
    running: Arc<Mutex<HashMap<ProcessRef, Entry>>>,
}

/// A process the executor runs.
#[derive(Debug)]
struct Entry {
    herd: Arc<Herd>,
    on_dispose: OnDispose,
    /// A handle for the stop plan's leader steps.
    leader: Option<Arc<sys::Leader>>,
    plan: crate::StopPlan,
    /// Started with `start_and_forget`: dispose neither kills nor waits for it.
    forgotten: bool,
}

type Ended = Result<ExitStatus, (io::ErrorKind, String)>;

/// A process the executor started: its identity, and the future of its exit status.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let executor = sheepdog::Executor::new();
/// let started = executor.start(&sheepdog::Command::new("true"), sheepdog::OnDispose::Kill)?;
/// println!("started {}", started.process.pid());
/// assert!(started.exit.await?.success());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Started {
    /// Who it is, to keep and to [`stop`](Executor::stop) it by.
    pub process: ProcessRef,
    /// Completes with its exit status; may be moved to any task, or dropped.
    pub exit: Exit,
}

/// The exit status of a process started by an [`Executor`], as a future. Cancel-safe, and
/// dropping it changes nothing for the process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let executor = sheepdog::Executor::new();
/// let exit: sheepdog::Exit = executor
///     .start(sheepdog::Command::new("sh").args(["-c", "exit 3"]), sheepdog::OnDispose::Kill)?
///     .exit;
/// assert_eq!(tokio::spawn(exit).await??.code(), Some(3));
/// # Ok(()) }
/// ```
pub struct Exit {
    inner: Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send + 'static>>,
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exit")
    }
}

impl Future for Exit {
    type Output = io::Result<ExitStatus>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Exit {
    fn watching(receiver: watch::Receiver<Option<Ended>>) -> Exit {
        Exit {
            inner: Box::pin(ended(receiver)),
        }
    }
}

async fn ended(mut receiver: watch::Receiver<Option<Ended>>) -> io::Result<ExitStatus> {
    let ended = receiver.wait_for(Option::is_some).await.map_err(|_| {
        io::Error::other("the executor that ran the process was dropped, and the process killed")
    })?;
    match ended.as_ref() {
        Some(Ok(status)) => Ok(*status),
        Some(Err((kind, message))) => Err(io::Error::new(*kind, message.clone())),
        None => unreachable!("waited for Some"),
    }
}

impl Executor {
    /// An executor with nothing running.
    ///
    /// ```
    /// let executor = sheepdog::Executor::new();
    /// ```
    pub fn new() -> Executor {
        Executor::default()
    }

    /// Starts `cmd` in a herd of its own. Its [timeout](Command::timeout), if any, bounds the
    /// whole herd, as with [`Command::spawn`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let executor = sheepdog::Executor::new();
    /// let started = executor.start(&sheepdog::Command::new("true"), sheepdog::OnDispose::Wait)?;
    /// assert!(started.exit.await?.success());
    /// # Ok(()) }
    /// ```
    pub fn start(&self, cmd: &Command, on_dispose: OnDispose) -> Result<Started, Error> {
        let (process, exit) = self.launch(cmd, on_dispose, false)?;
        Ok(Started {
            process,
            exit: Exit::watching(exit),
        })
    }

    /// Starts `cmd` and lets it run on: it is reaped when it exits (never a zombie), can still
    /// be [stopped](Executor::stop) by identity, and neither [`dispose`](Executor::dispose)
    /// nor dropping the executor ends it. It dies with this program.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let executor = sheepdog::Executor::new();
    /// let process = executor.start_and_forget(sheepdog::Command::new("sleep").arg("0.1"))?;
    /// println!("{} runs on", process.pid());
    /// # Ok(()) }
    /// ```
    pub fn start_and_forget(&self, cmd: &Command) -> Result<ProcessRef, Error> {
        self.launch(cmd, OnDispose::Wait, true)
            .map(|(process, _)| process)
    }

    fn launch(
        &self,
        cmd: &Command,
        on_dispose: OnDispose,
        forgotten: bool,
    ) -> Result<(ProcessRef, watch::Receiver<Option<Ended>>), Error> {
        let herd = Herd::builder()
            .build_or_os_error()
            .map_err(|(_, source)| cmd.os_error("create a herd", source))?;
        let mut child = herd.spawn_untimed(cmd)?;
        if let Some((timeout, plan)) = cmd.get_timeout() {
            herd.enforce(Deadline::after(timeout), plan.clone(), child.leader(), true);
        }
        let process = child.process_ref();
        let herd = Arc::new(herd);
        let (report, exit) = watch::channel(None);
        self.lock().insert(
            process.clone(),
            Entry {
                herd: Arc::clone(&herd),
                on_dispose,
                leader: child.leader().map(Arc::new),
                plan: cmd.get_stop_plan().clone(),
                forgotten,
            },
        );
        // Reaps the child whether or not anybody awaits `exit`, then holds the herd until its
        // tree is gone (a dispose or the executor's drop kills it first, unless forgotten).
        let running = Arc::downgrade(&self.running);
        let key = process.clone();
        tokio::spawn(async move {
            let mut status = child.wait().await;
            if let Ok(status) = &mut status {
                if let Err(err) = herd
                    .lifecycle()
                    .conclude(std::slice::from_mut(status))
                    .await
                {
                    tracing::error!(%err, "sheepdog: a timed-out process's stop failed");
                }
            }
            report.send_replace(Some(status.map_err(|err| (err.kind(), err.to_string()))));
            let _ = herd.wait_empty().await;
            if let Some(running) = running.upgrade() {
                lock(&running).remove(&key);
            }
        });
        Ok((process, exit))
    }

    /// Stops a process this executor started, with its tree, by its command's
    /// [stop plan](Command::stop_plan). Refuses a ref that is not one of its processes, or
    /// whose start time does not match (`NotFound`). Cancel-safe, as [`Herd::stop_with`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let executor = sheepdog::Executor::new();
    /// let started = executor.start(sheepdog::Command::new("sleep").arg("30"), sheepdog::OnDispose::Kill)?;
    /// executor.stop(&started.process).await?;
    /// assert_eq!(started.exit.await?.signal(), Some(sheepdog::Signal::TERM));
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self, process: &ProcessRef) -> io::Result<StopReport> {
        let (herd, plan, leader) = {
            let running = self.lock();
            let entry = running.get(process).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "process {} is not one this executor runs (or it has ended)",
                        process.pid()
                    ),
                )
            })?;
            (
                Arc::clone(&entry.herd),
                entry.plan.clone(),
                entry.leader.clone(),
            )
        };
        herd.stop_led_by(&plan, leader).await
    }

    /// Lets go of everything: kills each [`OnDispose::Kill`] process with its tree, and waits
    /// for each [`OnDispose::Wait`] one and its tree to end. Cancel-safe: the kills are issued
    /// at the first poll; what is not yet waited for is still held by the executor.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let executor = sheepdog::Executor::new();
    /// executor.start(sheepdog::Command::new("sleep").arg("30"), sheepdog::OnDispose::Kill)?;
    /// executor.dispose().await?;
    /// # Ok(()) }
    /// ```
    pub async fn dispose(&self) -> io::Result<()> {
        let herds: Vec<(OnDispose, Arc<Herd>)> = self
            .lock()
            .values()
            .filter(|entry| !entry.forgotten)
            .map(|entry| (entry.on_dispose, Arc::clone(&entry.herd)))
            .collect();
        for (on_dispose, herd) in &herds {
            if *on_dispose == OnDispose::Kill {
                herd.kill_now()?;
            }
        }
        for (_, herd) in &herds {
            herd.wait_empty().await?;
        }
        let mut running = self.lock();
        running.retain(|_, entry| entry.forgotten);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessRef, Entry>> {
        lock(&self.running)
    }
}

fn lock(
    running: &Mutex<HashMap<ProcessRef, Entry>>,
) -> std::sync::MutexGuard<'_, HashMap<ProcessRef, Entry>> {
    crate::lock(running)
}

impl Drop for Executor {
    fn drop(&mut self) {
        for entry in self.lock().values().filter(|entry| !entry.forgotten) {
            let _ = entry.herd.kill_now();
        }
    }
}
