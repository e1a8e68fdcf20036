//! Run-and-capture: `Command::output`, `run` and `status`, whose waits always end.
//!
//! The reading itself is the capture engine (`capture.rs`), shared with `Pipeline::output`.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::capture::{capture, Running, Streams, WAIT};
use crate::child::Child;
use crate::command::Command;
use crate::error::{Error, RunFailure};
use crate::status::ExitStatus;

/// What a program printed, and how it ended ([`Command::output`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sheepdog::Error> {
/// let out = sheepdog::Command::new("uname").arg("-s").output().await?;
/// assert!(out.status.success());
/// assert_eq!(out.stdout, b"Linux\n");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// How the program ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (when captured).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (when captured).
    pub stderr: Vec<u8>,
    ending: Ending,
    truncated: [bool; 2],
}

/// How a run ended, as one value to match on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sheepdog::Error> {
/// use sheepdog::Outcome;
/// let out = sheepdog::Command::new("sh").args(["-c", "exit 3"]).output().await?;
/// match out.outcome() {
///     Outcome::Exited(0) => println!("done"),
///     Outcome::Exited(code) => println!("failed with {code}"),
///     Outcome::Killed(signal) => println!("killed by {signal}"),
///     Outcome::TimedOut => println!("too slow"),
///     Outcome::OutputLimit => println!("too chatty"),
///     Outcome::OutputHeldOpen => println!("a daemon kept the output open"),
///     _ => println!("other"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not sheepdog's timeout).
    Killed(crate::Signal),
    /// It ran into its timeout and was stopped (see the status for how it finally ended).
    TimedOut,
    /// A captured stream went past its [capture limit](Command::capture_limit) with
    /// [`OverLimit::Fail`], and the tree was killed.
    OutputLimit,
    /// It exited, but something it started held its stdout or stderr open past the drain
    /// timeout, and was killed.
    OutputHeldOpen,
}

impl Output {
    /// How the run ended: a timeout first, then the output limit, then output held open, then
    /// the exit itself.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("true").output().await?;
    /// assert_eq!(out.outcome(), sheepdog::Outcome::Exited(0));
    /// # Ok(()) }
    /// ```
    pub fn outcome(&self) -> Outcome {
        outcome(&self.status, self.ending)
    }

    /// Whether stdout went past the [capture limit](Command::capture_limit) and only part of
    /// it was kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("yes")
    ///     .timeout(std::time::Duration::from_millis(100))
    ///     .capture_limit(1024, sheepdog::OverLimit::KeepTail)
    ///     .output()
    ///     .await?;
    /// assert!(out.stdout_truncated() && out.stdout.len() == 1024);
    /// # Ok(()) }
    /// ```
    pub fn stdout_truncated(&self) -> bool {
        self.truncated[0]
    }

    /// Whether stderr went past the [capture limit](Command::capture_limit).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let out = sheepdog::Command::new("echo").arg("hi").output().await?;
    /// if out.stderr_truncated() { eprintln!("(stderr was cut)"); }
    /// # Ok(()) }
    /// ```
    pub fn stderr_truncated(&self) -> bool {
        self.truncated[1]
    }

    /// Whether the program exited but something it started still held its output open after
    /// the [drain timeout](Command::drain_timeout): the output is what came until then, and
    /// the rest of the tree was killed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("sh")
    ///     .args(["-c", "sleep 600 & echo hi"])
    ///     .drain_timeout(std::time::Duration::from_millis(100))
    ///     .output()
    ///     .await?;
    /// assert!(out.held_open());
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok(()) }
    /// ```
    pub fn held_open(&self) -> bool {
        self.ending == Ending::HeldOpen
    }

    /// Whether a stream went past the [capture limit](Command::capture_limit) set with
    /// [`OverLimit::Fail`], so the run was stopped there (the output is what came until then).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("yes")
    ///     .capture_limit(4096, sheepdog::OverLimit::Fail)
    ///     .output()
    ///     .await?;
    /// assert!(out.limit_exceeded() && out.stdout.len() == 4096);
    /// # Ok(()) }
    /// ```
    pub fn limit_exceeded(&self) -> bool {
        self.ending == Ending::LimitExceeded
    }
}

impl Command {
    /// Runs the program in a private herd and captures its stdout and stderr (unless set
    /// otherwise; stdin is `/dev/null` unless set). A non-zero exit is data, not an error.
    ///
    /// The wait ends: when the program exits while a descendant still holds its output open
    /// (a daemon it started, say), reading stops after the [drain timeout](Command::drain_timeout),
    /// the rest of the tree is killed, and [`Output::held_open`] says so.
    ///
    /// Cancelling (dropping the future) kills the program's whole tree at once and loses what
    /// it printed; nothing is left running (with [`kill_on_drop(false)`](Command::kill_on_drop),
    /// the tree is let go instead, and so are the holders of a pipe held open).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("ls").arg("/").output().await?;
    /// println!("{}", String::from_utf8_lossy(&out.stdout));
    /// # Ok(()) }
    /// ```
    pub async fn output(&self) -> Result<Output, Error> {
        self.output_with_buffers(Vec::new(), Vec::new()).await
    }

    /// [`output`](Command::output) into buffers the caller provides: they are cleared, and
    /// their capacity is kept. A program that captures large outputs again and again saves the
    /// first touch of every fresh page (the kernel zeroes each one), which costs more than
    /// reading the bytes; [`Output`] hands the buffers back for the next run. Cancelling is as
    /// for `output` (the buffers are dropped).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let mut cmd = sheepdog::Command::new("ls");
    /// cmd.arg("/");
    /// let (mut stdout, mut stderr) = (Vec::with_capacity(1 << 20), Vec::new());
    /// for _ in 0..3 {
    ///     let out = cmd.output_with_buffers(stdout, stderr).await?;
    ///     println!("{} bytes", out.stdout.len());
    ///     (stdout, stderr) = (out.stdout, out.stderr);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn output_with_buffers(
        &self,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    ) -> Result<Output, Error> {
        let feed = self.take_input()?;
        let mut cmd = self.clone();
        cmd.stdin_for_capture(feed.is_some());
        cmd.outputs_for_capture(true);
        let mut child = cmd.spawn()?;
        let (limit, drain) = child.capture;
        let out = child
            .collect(feed, [stdout, stderr], limit, drain)
            .await
            .map_err(|(action, source)| self.os_error(action, source))?;
        // Dropping the child kills what is left of its tree: the holders of the output.
        drop(child);
        Ok(out)
    }

    /// Runs the program and returns its stdout, trimmed, as text (lossily decoded); a non-zero
    /// exit, a signal, a timeout, output held open or an output limit with [`OverLimit::Fail`]
    /// is an [`Error::Failed`] that says what ran, how it ended, how long it took, and how
    /// stderr ended. Cancelling is as for [`output`](Command::output).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let greeting = sheepdog::Command::new("echo").args(["hello", "world"]).run().await?;
    /// assert_eq!(greeting, "hello world");
    /// # Ok(()) }
    /// ```
    pub async fn run(&self) -> Result<String, Error> {
        let started = std::time::Instant::now();
        let out = self.output().await?;
        if out.status.success() && out.ending == Ending::Read {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        // With stderr merged into stdout, the end of stdout is where the errors are.
        let errors = if self.merges_stderr() {
            &out.stdout
        } else {
            &out.stderr
        };
        Err(Error::Failed(Box::new(RunFailure {
            program: self.get_program().to_owned(),
            command: shell_quoted(self),
            status: out.status,
            duration: started.elapsed(),
            held_open: out.held_open(),
            output_limit: self
                .get_capture_limit()
                .filter(|_| out.limit_exceeded())
                .map(|(bytes, _)| bytes),
            stderr_tail: tail(errors, STDERR_TAIL_LINES),
        })))
    }

    /// Runs the program in a private herd with inherited stdio and returns how it ended.
    /// Cancelling kills the program's whole tree and loses its status.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let status = sheepdog::Command::new("true").status().await?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<ExitStatus, Error> {
        let mut child = self.spawn()?;
        child
            .wait()
            .await
            .map_err(|source| self.os_error(WAIT, source))
    }

    /// An OS error met while running this command, with what was being done.
    pub(crate) fn os_error(&self, action: &'static str, source: io::Error) -> Error {
        Error::Os {
            program: self.get_program().to_owned(),
            action,
            source,
        }
    }
}

impl Child {
    /// Waits for the child while reading its piped stdout and stderr to their ends, and
    /// returns all three, as `tokio::process::Child::wait_with_output` does. Stdin is closed
    /// first (write to [`stdin`](Child::stdin) before, from another task, to feed it).
    ///
    /// Unlike tokio's, the wait ends: when the program has exited but something it started
    /// still holds a pipe open, reading stops after the command's
    /// [drain timeout](Command::drain_timeout) and [`Output::held_open`] says so; the
    /// command's [capture limit](Command::capture_limit) applies. The child is dropped at the
    /// end, so for [`Command::spawn`] the rest of its tree is killed (unless
    /// [`kill_on_drop(false)`](Command::kill_on_drop)).
    ///
    /// Cancelling drops the child (as above) and what was read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sheepdog::{Command, Stdio};
    /// let child = Command::new("sh")
    ///     .args(["-c", "echo out; echo err >&2; exit 3"])
    ///     .stdout(Stdio::piped())
    ///     .stderr(Stdio::piped())
    ///     .spawn()?;
    /// let out = child.wait_with_output().await?;
    /// assert_eq!(out.status.code(), Some(3));
    /// assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        let (limit, drain) = self.capture;
        let pid = self.pid();
        self.collect(None, [Vec::new(), Vec::new()], limit, drain)
            .await
            .map_err(|(action, err)| {
                io::Error::new(
                    err.kind(),
                    format!("cannot {action} (process {pid}): {err}"),
                )
            })
    }

    /// Reads the child's piped stdout and stderr into `bufs` (and feeds `feed` to its
    /// stdin) while it runs, waits for it, and stops its tree first if a stream went past
    /// `limit` under [`OverLimit::Fail`] (the capture engine, `capture.rs`).
    pub(crate) async fn collect(
        &mut self,
        feed: Option<Feed>,
        bufs: [Vec<u8>; 2],
        limit: Option<(usize, OverLimit)>,
        drain: Duration,
    ) -> Result<Output, (&'static str, io::Error)> {
        let streams = Streams {
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
            stdin: self.stdin.take().zip(feed),
        };
        let got = capture(self, streams, bufs, limit, drain).await?;
        let [stdout, stderr] = got.bufs;
        Ok(Output {
            status: got.status,
            stdout,
            stderr,
            ending: got.ending,
            truncated: got.truncated,
        })
    }
}

impl Running for Child {
    type Status = ExitStatus;

    fn finish(&mut self) -> impl Future<Output = io::Result<ExitStatus>> + Send {
        self.wait()
    }

    fn kill_tree(&mut self) -> io::Result<()> {
        self.start_kill()
    }
}

/// What [`Command::input`] or [`Command::input_reader`] feeds the child's stdin.
#[derive(Clone)]
pub(crate) enum Input {
    Bytes(Arc<[u8]>),
    /// Read by one run only: the first takes it.
    Reader(Arc<Mutex<Option<BoxedReader>>>),
}

type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Input::Reader(_) => f.write_str("Reader"),
        }
    }
}

/// What one run writes to stdin.
pub(crate) enum Feed {
    Bytes(Arc<[u8]>),
    Reader(BoxedReader),
}

impl Input {
    /// What this run feeds; a reader can feed one run only.
    pub(crate) fn take(&self) -> io::Result<Feed> {
        match self {
            Input::Bytes(bytes) => Ok(Feed::Bytes(bytes.clone())),
            Input::Reader(reader) => {
                crate::lock(reader).take().map(Feed::Reader).ok_or_else(|| {
                    io::Error::other(
                        "the input reader was used up by an earlier run of this command",
                    )
                })
            }
        }
    }
}

impl Command {
    /// This run's stdin feed, if the command has one.
    pub(crate) fn take_input(&self) -> Result<Option<Feed>, Error> {
        self.get_input()
            .map(Input::take)
            .transpose()
            .map_err(|source| self.os_error("feed stdin", source))
    }
}

/// How reading a run's output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every stream reached its end.
    Read,
    /// A stream went past its limit under [`OverLimit::Fail`].
    LimitExceeded,
    /// The program exited, and something held a stream open past the drain timeout.
    HeldOpen,
}

/// How many lines of stderr a failure quotes.
const STDERR_TAIL_LINES: usize = 5;

/// The last `lines` lines of `bytes`, lossily decoded.
fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The command line as a POSIX shell would take it: words quoted only where needed.
fn shell_quoted(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What happens to a captured stream longer than its [capture limit](Command::capture_limit).
///
/// ```
/// assert_ne!(sheepdog::OverLimit::KeepHead, sheepdog::OverLimit::KeepTail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverLimit {
    /// Keep the first bytes; the rest is read and dropped, so the program is not blocked.
    KeepHead,
    /// Keep the last bytes (where errors usually are).
    KeepTail,
    /// Keep the first bytes, then kill the tree: the run ends as [`Outcome::OutputLimit`],
    /// which [`run`](Command::run) reports as an error.
    Fail,
}

pub(crate) fn outcome(status: &ExitStatus, ending: Ending) -> Outcome {
    if status.timed_out() {
        return Outcome::TimedOut;
    }
    match (ending, status.code(), status.signal()) {
        (Ending::LimitExceeded, _, _) => Outcome::OutputLimit,
        (Ending::HeldOpen, _, _) => Outcome::OutputHeldOpen,
        (Ending::Read, Some(code), _) => Outcome::Exited(code),
        (Ending::Read, None, Some(signal)) => Outcome::Killed(signal),
        (Ending::Read, None, None) => Outcome::Exited(-1),
    }
}
