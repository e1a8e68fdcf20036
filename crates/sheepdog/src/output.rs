//! Run-and-capture: `Command::output` and `Command::status`, whose waits always end.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::command::{Command, Stdio};
use crate::error::{Error, RunFailure};
use crate::status::ExitStatus;

/// What a program printed, and how it ended ([`Command::output`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), sheepdog::Error> {
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
    held_open: bool,
    truncated: [bool; 2],
}

/// How a run ended, as one value to match on.
///
/// ```no_run
/// # async fn demo() -> Result<(), sheepdog::Error> {
/// use sheepdog::Outcome;
/// let out = sheepdog::Command::new("make").output().await?;
/// match out.outcome() {
///     Outcome::Exited(0) => println!("built"),
///     Outcome::Exited(code) => println!("failed with {code}"),
///     Outcome::Killed(signal) => println!("killed by {signal}"),
///     Outcome::TimedOut => println!("too slow"),
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
    /// It exited, but something it started held its stdout or stderr open past the drain
    /// timeout, and was killed.
    OutputHeldOpen,
}

impl Output {
    /// How the run ended: a timeout first, then output held open, then the exit itself.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("true").output().await?;
    /// assert_eq!(out.outcome(), sheepdog::Outcome::Exited(0));
    /// # Ok(()) }
    /// ```
    pub fn outcome(&self) -> Outcome {
        outcome(&self.status, self.held_open)
    }

    /// Whether stdout went past the [capture limit](Command::capture_limit) and only part of
    /// it was kept.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("yes")
    ///     .timeout(std::time::Duration::from_millis(100))
    ///     .capture_limit(1024, sheepdog::Keep::Tail)
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
    /// ```no_run
    /// # fn demo(out: sheepdog::Output) {
    /// if out.stderr_truncated() { eprintln!("(stderr was cut)"); }
    /// # }
    /// ```
    pub fn stderr_truncated(&self) -> bool {
        self.truncated[1]
    }

    /// Whether the program exited but something it started still held its output open after
    /// the [drain timeout](Command::drain_timeout): the output is what came until then, and
    /// the rest of the tree was killed.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("sh").args(["-c", "sleep 600 & echo hi"]).output().await?;
    /// assert!(out.held_open());
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok(()) }
    /// ```
    pub fn held_open(&self) -> bool {
        self.held_open
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
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("ls").arg("/").output().await?;
    /// println!("{}", String::from_utf8_lossy(&out.stdout));
    /// # Ok(()) }
    /// ```
    pub async fn output(&self) -> Result<Output, Error> {
        let mut cmd = self.clone();
        let set = self.stdio_is_set();
        let input = self.get_input();
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        } else if !set[0] {
            cmd.stdin(Stdio::null());
        }
        if !set[1] {
            cmd.stdout(Stdio::piped());
        }
        if !set[2] {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let (mut out_truncated, mut err_truncated) = (false, false);
        let limit = self.get_capture_limit();
        let out_pipe = child.take_stdout();
        let err_pipe = child.take_stderr();
        let in_pipe = child.take_stdin();
        let wait_error = |source: io::Error| Error::Os {
            program: self.get_program().to_owned(),
            action: "wait for the program",
            source,
        };

        let (status, held_open) = {
            let readers = async {
                let read_out = async {
                    match out_pipe {
                        Some(pipe) => capture(pipe, &mut stdout, limit, &mut out_truncated).await,
                        None => Ok(()),
                    }
                };
                let read_err = async {
                    match err_pipe {
                        Some(pipe) => capture(pipe, &mut stderr, limit, &mut err_truncated).await,
                        None => Ok(()),
                    }
                };
                let write_in = async {
                    if let (Some(mut pipe), Some(input)) = (in_pipe, input) {
                        // A child that stops reading early closes the pipe: that is its right.
                        match pipe.write_all(&input).await {
                            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => return Err(err),
                            _ => {}
                        }
                    }
                    Ok(())
                };
                let (out, err, input) = tokio::join!(read_out, read_err, write_in);
                out.and(err).and(input)
            };
            tokio::pin!(readers);
            tokio::select! {
                read = &mut readers => {
                    read.map_err(wait_error)?;
                    (child.wait().await.map_err(wait_error)?, false)
                }
                status = child.wait() => {
                    let status = status.map_err(wait_error)?;
                    match drain(&mut readers, self.get_drain()).await {
                        Some(read) => {
                            read.map_err(wait_error)?;
                            (status, false)
                        }
                        None => (status, true),
                    }
                }
            }
        };
        // Dropping the child kills what is left of its tree: the holders of the output.
        drop(child);
        Ok(Output {
            status,
            stdout,
            stderr,
            held_open,
            truncated: [out_truncated, err_truncated],
        })
    }

    /// Runs the program and returns its stdout, trimmed, as text (lossily decoded); a non-zero
    /// exit, a signal, a timeout or output held open is an [`Error::Failed`] that says what ran,
    /// how it ended, how long it took, and how stderr ended.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let branch = sheepdog::Command::new("git")
    ///     .args(["rev-parse", "--abbrev-ref", "HEAD"])
    ///     .run()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run(&self) -> Result<String, Error> {
        let started = std::time::Instant::now();
        let out = self.output().await?;
        if out.status.success() && !out.held_open {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        Err(Error::Failed(Box::new(RunFailure {
            program: self.get_program().to_owned(),
            command: shell_quoted(self),
            status: out.status,
            duration: started.elapsed(),
            held_open: out.held_open,
            stderr_tail: tail(&out.stderr, STDERR_TAIL_LINES),
        })))
    }

    /// Runs the program in a private herd with inherited stdio and returns how it ended.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// let status = sheepdog::Command::new("make").status().await?;
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<ExitStatus, Error> {
        let mut child = self.spawn()?;
        child.wait().await.map_err(|source| Error::Os {
            program: self.get_program().to_owned(),
            action: "wait for the program",
            source,
        })
    }
}

/// The readers' result, or `None` if they did not finish within `drain`.
async fn drain<F: std::future::Future + Unpin>(
    readers: &mut F,
    drain: Duration,
) -> Option<F::Output> {
    tokio::time::timeout(drain, readers).await.ok()
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

/// Which part of an output longer than its [capture limit](Command::capture_limit) is kept.
///
/// ```
/// assert_ne!(sheepdog::Keep::Head, sheepdog::Keep::Tail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keep {
    /// The first bytes (the rest is read and dropped, so the program is not blocked).
    Head,
    /// The last bytes (where errors usually are).
    Tail,
}

/// Reads `pipe` to its end into `buf`, keeping at most `limit` bytes where one is set.
async fn capture(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    buf: &mut Vec<u8>,
    limit: Option<(usize, Keep)>,
    truncated: &mut bool,
) -> io::Result<()> {
    let Some((bytes, keep)) = limit else {
        return pipe.read_to_end(buf).await.map(drop);
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        match keep {
            Keep::Head => {
                let room = bytes.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                *truncated |= n > room;
            }
            Keep::Tail => {
                buf.extend_from_slice(&chunk[..n]);
                // Trim in batches (at twice the limit), so each byte moves at most once.
                if buf.len() > bytes.saturating_mul(2).max(bytes + chunk.len()) {
                    buf.drain(..buf.len() - bytes);
                    *truncated = true;
                }
            }
        }
    }
    if keep == Keep::Tail && buf.len() > bytes {
        buf.drain(..buf.len() - bytes);
        *truncated = true;
    }
    Ok(())
}

pub(crate) fn outcome(status: &ExitStatus, held_open: bool) -> Outcome {
    match (
        status.timed_out(),
        held_open,
        status.code(),
        status.signal(),
    ) {
        (true, _, _, _) => Outcome::TimedOut,
        (false, true, _, _) => Outcome::OutputHeldOpen,
        (false, false, Some(code), _) => Outcome::Exited(code),
        (false, false, None, Some(signal)) => Outcome::Killed(signal),
        (false, false, None, None) => Outcome::Exited(-1),
    }
}
