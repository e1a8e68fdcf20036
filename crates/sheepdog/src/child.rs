//! `Child`: one started process, watched without races.

use std::io;
use std::sync::Arc;

use crate::command::Command;
use crate::driver::{self, Flock, Lifecycle};
use crate::herd::Herd;
use crate::output::OverLimit;
use crate::pipe::{ChildStderr, ChildStdin, ChildStdout};
use crate::signal::Signal;
use crate::status::ExitStatus;
use crate::stop::StopPlan;
use crate::sys::{self, SpawnPath};
use crate::time::Deadline;

/// A started process.
///
/// It is addressed by pidfd, so a signal can never reach another process that reused its pid.
/// Dropping a `Child` started by [`Command::spawn`](crate::Command::spawn) kills it and
/// everything it started (its private herd), with a `tracing` warning if it was still running,
/// unless its command said [`kill_on_drop(false)`](crate::Command::kill_on_drop); one started
/// by [`Herd::spawn`](crate::Herd::spawn) lives as long as its herd. Either way a child that
/// was not waited for is reaped in the background, so it never stays a zombie.
///
/// The pipes are public fields, as in `tokio::process::Child`: `child.stdout.take()` hands
/// the stdout pipe to another task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut child = sheepdog::Command::new("sleep").arg("30").spawn()?;
/// child.signal(sheepdog::Signal::TERM)?;
/// let status = child.wait().await?;
/// assert_eq!(status.signal(), Some(sheepdog::Signal::TERM));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a Child started by Command::spawn kills its process tree"]
pub struct Child {
    /// The write end of the child's stdin, if it was [`piped`](crate::Stdio::piped) (and not
    /// taken yet). [`wait`](Child::wait) closes it.
    pub stdin: Option<ChildStdin>,
    /// The read end of the child's stdout, if it was [`piped`](crate::Stdio::piped).
    pub stdout: Option<ChildStdout>,
    /// The read end of the child's stderr, if it was [`piped`](crate::Stdio::piped).
    pub stderr: Option<ChildStderr>,
    process: sys::Process,
    path: SpawnPath,
    /// The terminal whose foreground the child holds; dropping it gives the foreground back.
    terminal: Option<sys::Terminal>,
    /// The private herd of a child started by `Command::spawn`, killed with it; its lifecycle
    /// holds the child's deadline (`Command::timeout`).
    herd: Option<Herd>,
    /// The deadline of a child of a shared herd, which stops the child alone.
    alone: Option<Arc<Alone>>,
    /// Whether dropping this child kills its private herd ([`Command::kill_on_drop`]).
    kill_on_drop: bool,
    /// How [`wait_with_output`](Child::wait_with_output) reads: the command's capture limit
    /// and drain timeout.
    pub(crate) capture: (Option<(usize, OverLimit)>, std::time::Duration),
}

impl Child {
    pub(crate) fn new(spawned: sys::Spawned, cmd: &Command) -> Child {
        let [stdin, stdout, stderr] = spawned.stdio;
        Child {
            stdin: stdin.map(ChildStdin::new),
            stdout: stdout.map(ChildStdout::new),
            stderr: stderr.map(ChildStderr::new),
            process: spawned.process,
            path: spawned.path,
            terminal: spawned.terminal,
            herd: None,
            alone: None,
            kill_on_drop: cmd.get_kill_on_drop(),
            capture: (cmd.get_capture_limit(), cmd.get_drain()),
        }
    }

    /// Hands the child its private herd, whose deadline (if any) stops the whole tree.
    pub(crate) fn in_private_herd(
        mut self,
        herd: Herd,
        timeout: Option<(Deadline, &StopPlan)>,
    ) -> Child {
        if let Some((deadline, plan)) = timeout {
            herd.enforce(deadline, plan.clone(), self.leader(), true);
        }
        self.herd = Some(herd);
        self
    }

    /// A child of a shared herd: at `deadline` its own tree (`subtree`), or where there is none
    /// the child alone, is stopped by `plan`.
    pub(crate) fn with_own_deadline(
        mut self,
        deadline: Deadline,
        plan: &StopPlan,
        subtree: Option<sys::Subtree>,
    ) -> Child {
        match self.leader() {
            Some(leader) => {
                let alone = Arc::new(Alone {
                    leader,
                    subtree,
                    lifecycle: Lifecycle::default(),
                });
                driver::enforce(&alone, deadline, plan.clone(), None::<sys::Leader>, true);
                self.alone = Some(alone);
            }
            None => tracing::warn!(
                pid = self.pid(),
                "sheepdog: no handle on the child to enforce its timeout with"
            ),
        }
        self
    }

    /// A handle for signalling the child and watching its exit from the lifecycle driver.
    pub(crate) fn leader(&self) -> Option<sys::Leader> {
        self.process.leader().ok()
    }

    fn lifecycle(&self) -> Option<&Lifecycle> {
        match (&self.herd, &self.alone) {
            (Some(herd), _) => Some(herd.lifecycle()),
            (None, Some(alone)) => Some(&alone.lifecycle),
            (None, None) => None,
        }
    }

    /// The process's identity, to keep or to write down and address it later, safely across
    /// pid reuse (see [`ProcessRef`](crate::ProcessRef)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("30").spawn()?;
    /// let process = child.process_ref();
    /// assert!(process.is_alive());
    /// child.signal(sheepdog::Signal::KILL)?;
    /// child.wait().await?;
    /// assert!(!process.is_alive());
    /// # Ok(()) }
    /// ```
    pub fn process_ref(&self) -> crate::ProcessRef {
        // Unreaped, the child's pid cannot name anybody else while its start time is read.
        let start = match self.process.status() {
            None => sys::stat(self.pid()).map(|stat| stat.start_ticks),
            Some(_) => None,
        };
        crate::ProcessRef::from_parts(self.pid(), start)
    }

    /// The process id. Use it for display and for `/proc`; address the process through this
    /// `Child`, since a pid can be reused once the process is reaped.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let child = sheepdog::Command::new("true").spawn()?;
    /// println!("started {}", child.pid());
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The process id while the process has not been reaped, `None` once a wait has returned
    /// its status (the id may belong to another process by then), as in `tokio::process`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("true").spawn()?;
    /// assert_eq!(child.id(), Some(child.pid()));
    /// child.wait().await?;
    /// assert_eq!(child.id(), None);
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> Option<u32> {
        self.process.status().is_none().then(|| self.pid())
    }

    /// Waits for the process to exit and returns its status. Closes stdin first, so a child
    /// reading it sees end-of-file instead of waiting forever. Once it has returned, it returns
    /// the same status again.
    ///
    /// When the child [timed out](crate::ExitStatus::timed_out), it returns once the stop of
    /// its tree has ended too. The deadline does not depend on this wait: it fires at its time
    /// whether or not anybody waits.
    ///
    /// Cancel-safe: dropping the future loses nothing (the exit status is kept for the next
    /// call, and a stop under way goes on).
    ///
    /// Needs a tokio runtime with IO enabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("true").spawn()?.wait().await?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        if let Some(lifecycle) = self.lifecycle() {
            lifecycle.start_pending();
        }
        let mut status = ExitStatus::from(self.process.wait().await?);
        self.terminal = None; // the foreground goes back
        if let Some(lifecycle) = self.lifecycle() {
            lifecycle
                .conclude(std::slice::from_mut(&mut status))
                .await?;
        }
        Ok(status)
    }

    /// Kills the child's herd at once, without waiting: for a child started by
    /// [`Command::spawn`](crate::Command::spawn), its whole private herd (the program and
    /// everything it started, even what has left its process group or session); for a child
    /// of a shared herd ([`Herd::spawn`](crate::Herd::spawn)), the child alone (kill the herd
    /// with [`Herd::kill`](crate::Herd::kill)). Succeeds without doing anything if there is
    /// nothing left to kill.
    ///
    /// This is `tokio::process::Child::start_kill`, widened to the tree; [`kill`](Child::kill)
    /// also waits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("30").spawn()?;
    /// child.start_kill()?;
    /// assert_eq!(child.wait().await?.signal(), Some(sheepdog::Signal::KILL));
    /// # Ok(()) }
    /// ```
    pub fn start_kill(&self) -> io::Result<()> {
        match &self.herd {
            Some(herd) => herd.kill_now(),
            None => self.kill_alone(),
        }
    }

    /// Kills the child's herd as [`start_kill`](Child::start_kill) does, then waits for the
    /// child to exit and, for a private herd, for the whole tree to be gone.
    ///
    /// Cancel-safe: the kill is issued at the first poll; dropping the future then only stops
    /// the waits (the status is kept for the next [`wait`](Child::wait)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sh").args(["-c", "sleep 30 & sleep 30"]).spawn()?;
    /// child.kill().await?; // both sleeps are gone
    /// assert_eq!(child.id(), None);
    /// # Ok(()) }
    /// ```
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await?;
        if let Some(herd) = &self.herd {
            herd.wait_empty().await?;
        }
        Ok(())
    }

    /// The status if the process has exited (reaping it), or `None` if it is still running.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("1").spawn()?;
    /// assert!(child.try_wait()?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut status = self.process.try_wait()?.map(ExitStatus::from);
        if let Some(status) = &mut status {
            status.timed_out = self.lifecycle().is_some_and(Lifecycle::timed_out);
            self.terminal = None; // the foreground goes back
        }
        Ok(status)
    }

    /// Sends `signal` to the process (`pidfd_send_signal(2)`). Fails if the process has already
    /// been reaped: there is nobody left to signal.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let child = sheepdog::Command::new("sleep").arg("30").spawn()?;
    /// child.signal(sheepdog::Signal::INT)?;
    /// # Ok(()) }
    /// ```
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if let Some(status) = self.process.status().map(ExitStatus::from) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot send {signal} to process {}: it has already {status}",
                    self.pid()
                ),
            ));
        }
        self.process.signal(signal).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot send {signal} to process {}: {err}", self.pid()),
            )
        })
    }

    /// Sends `SIGKILL` to the process alone; `Ok` if it has already exited.
    fn kill_alone(&self) -> io::Result<()> {
        match self.process.signal(Signal::KILL) {
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot kill process {}: {err}", self.pid()),
                )
            }),
        }
    }

    /// The child's stdin, if it was [`piped`](crate::Stdio::piped) and not taken: shorthand
    /// for `child.stdin.as_mut()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("cat").stdin(sheepdog::Stdio::piped()).spawn()?;
    /// assert!(child.stdin().is_some());
    /// # Ok(()) }
    /// ```
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// The child's stdout, if it was [`piped`](crate::Stdio::piped) and not taken: shorthand
    /// for `child.stdout.as_mut()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("ls").stdout(sheepdog::Stdio::piped()).spawn()?;
    /// assert!(child.stdout().is_some());
    /// # Ok(()) }
    /// ```
    pub fn stdout(&mut self) -> Option<&mut ChildStdout> {
        self.stdout.as_mut()
    }

    /// The child's stderr, if it was [`piped`](crate::Stdio::piped) and not taken: shorthand
    /// for `child.stderr.as_mut()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("ls").stderr(sheepdog::Stdio::piped()).spawn()?;
    /// assert!(child.stderr().is_some());
    /// # Ok(()) }
    /// ```
    pub fn stderr(&mut self) -> Option<&mut ChildStderr> {
        self.stderr.as_mut()
    }

    /// Takes the child's stdin, to write to it from another task or to close it: shorthand for
    /// `child.stdin.take()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("cat").stdin(sheepdog::Stdio::piped()).spawn()?;
    /// drop(child.take_stdin()); // cat reads end-of-file
    /// # Ok(()) }
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the child's stdout, to read it from another task: `child.stdout.take()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("ls").stdout(sheepdog::Stdio::piped()).spawn()?;
    /// let stdout = child.take_stdout().unwrap();
    /// # Ok(()) }
    /// ```
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the child's stderr, to read it from another task: `child.stderr.take()`.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let mut child = sheepdog::Command::new("ls").stderr(sheepdog::Stdio::piped()).spawn()?;
    /// let stderr = child.take_stderr().unwrap();
    /// # Ok(()) }
    /// ```
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// For a child that holds the terminal's foreground ([`Command::foreground`]) and stopped
    /// at a terminal stop signal (Ctrl-Z): gives the foreground back to this program, so that it
    /// can stop too and the shell regain the terminal. Does nothing for other children.
    ///
    /// ```no_run
    /// # async fn demo(child: sheepdog::Child) -> std::io::Result<()> {
    /// child.release_terminal()?;
    /// // ... stop this program (sheepdog::suspend), and once continued:
    /// child.reclaim_terminal()?;
    /// # Ok(()) }
    /// ```
    pub fn release_terminal(&self) -> io::Result<()> {
        match &self.terminal {
            Some(terminal) => terminal.give_back(),
            None => Ok(()),
        }
    }

    /// Hands the terminal's foreground back to the child's process group (after
    /// [`release_terminal`](Child::release_terminal)). Does nothing for other children.
    ///
    /// ```no_run
    /// # fn demo(child: sheepdog::Child) -> std::io::Result<()> {
    /// child.reclaim_terminal()?;
    /// # Ok(()) }
    /// ```
    pub fn reclaim_terminal(&self) -> io::Result<()> {
        match &self.terminal {
            Some(terminal) => terminal.hand_to(self.process_group()),
            None => Ok(()),
        }
    }

    /// Whether the process is stopped (by SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU). Safe to ask by
    /// pid: an unreaped child's pid cannot be anybody else's.
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// # let child = sheepdog::Command::new("true").spawn()?;
    /// if child.is_stopped() { println!("suspended"); }
    /// # Ok(()) }
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.process.status().is_none()
            && sys::stat(self.pid()).is_some_and(|stat| stat.state == 'T')
    }

    fn process_group(&self) -> i32 {
        sys::stat(self.pid()).map_or(self.pid() as i32, |stat| stat.pgid)
    }

    /// Which spawn path created this process (weaker ones are fallbacks for old kernels and
    /// sandboxes).
    ///
    /// ```
    /// # fn main() -> Result<(), sheepdog::Error> {
    /// let child = sheepdog::Command::new("true").spawn()?;
    /// assert_eq!(child.spawn_path(), sheepdog::SpawnPath::Clone3);
    /// # Ok(()) }
    /// ```
    pub fn spawn_path(&self) -> SpawnPath {
        self.path
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(herd) = self.herd.take() else {
            return;
        };
        if !self.kill_on_drop {
            herd.release();
            return;
        }
        if matches!(self.process.try_wait(), Ok(None)) {
            tracing::warn!(
                pid = self.pid(),
                "sheepdog: a running child was dropped without waiting; its tree is killed and \
                 its exit status is lost",
            );
        }
    }
}

/// A child of a shared herd with a deadline of its own: what the driver stops is the child's
/// own cgroup below the herd's, or, in a process-group herd, the child alone.
#[derive(Debug)]
struct Alone {
    leader: sys::Leader,
    subtree: Option<sys::Subtree>,
    lifecycle: Lifecycle,
}

impl Flock for Alone {
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn thaw(&self) -> io::Result<()> {
        match &self.subtree {
            Some(subtree) => subtree.thaw(),
            None => {
                let _ = self.leader.signal(Signal::CONT, false);
                Ok(())
            }
        }
    }

    async fn signal_all(&self, signal: Signal) -> io::Result<Vec<u32>> {
        if let Some(subtree) = &self.subtree {
            return subtree.signal_all(signal);
        }
        Ok(match self.leader.signal(signal, true) {
            Ok(()) => vec![self.leader.pid()],
            Err(_) => Vec::new(),
        })
    }

    async fn wait_empty(&self) -> io::Result<()> {
        match &self.subtree {
            Some(subtree) => subtree.wait_empty().await,
            None => self.leader.exited().await,
        }
    }

    async fn count(&self) -> usize {
        match &self.subtree {
            Some(subtree) => subtree.count(),
            None => usize::from(!self.leader.has_exited()),
        }
    }

    fn kill(&self) -> io::Result<()> {
        if let Some(subtree) = &self.subtree {
            return subtree.kill();
        }
        match self.leader.signal(Signal::KILL, false) {
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }
}
