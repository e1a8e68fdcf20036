//! Errors that say what ran, what failed, and the OS error behind it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::SpawnError;

/// Why a program could not be started.
///
/// Every variant names the program; its `Display` is a full sentence a person can act on, and
/// [`Error::kind`] maps it onto [`io::ErrorKind`]. When one of these is returned, nothing is left
/// behind: no process, no zombie, no file descriptor.
///
/// ```
/// # async fn demo() {
/// let err = sheepdog::Command::new("no-such-program-xyz").spawn().unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// assert!(err.to_string().contains("no-such-program-xyz"));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No file by that name: searched for in `searched_path` (the child's `PATH`) when the name
    /// has no `/`.
    #[error("cannot run `{}`: {}", show(program), not_found_detail(searched_path.as_deref(), interpreter.as_ref(), missing_interpreter.as_ref(), looked_in.as_ref()))]
    NotFound {
        /// The program as given.
        program: OsString,
        /// The `PATH` that was searched, when the name had no `/`.
        searched_path: Option<OsString>,
        /// A file that exists but whose interpreter (`#!` line or ELF loader) does not.
        interpreter: Option<PathBuf>,
        /// The interpreter its `#!` line names, when that is what is missing.
        missing_interpreter: Option<PathBuf>,
        /// The directory a relative name (with a `/`) was looked for in.
        looked_in: Option<PathBuf>,
    },
    /// The file exists but cannot be executed (no execute permission, not a program, a directory).
    #[error("cannot run `{}`: `{}` is not executable: {source}", show(program), path.display())]
    NotExecutable {
        /// The program as given.
        program: OsString,
        /// The file that was tried.
        path: PathBuf,
        /// The OS error (`EACCES`, `ENOEXEC`, ...).
        source: io::Error,
    },
    /// The working directory could not be entered.
    #[error("cannot run `{}`: working directory `{}`: {source}", show(program), dir.display())]
    WorkingDirectory {
        /// The program as given.
        program: OsString,
        /// The directory set with [`Command::current_dir`](crate::Command::current_dir).
        dir: PathBuf,
        /// The OS error (`ENOENT`, `ENOTDIR`, `EACCES`, ...).
        source: io::Error,
    },
    /// A string handed to the OS contains a NUL byte, which C strings cannot carry.
    #[error("cannot run `{}`: {what} contains a NUL byte", show(program))]
    NulByte {
        /// The program as given.
        program: OsString,
        /// Which string: "the program name", "argument 2", "environment variable `K`", ...
        what: String,
    },
    /// The program ran but failed ([`Command::run`](crate::Command::run)): a non-zero exit, a
    /// signal, a timeout, or output held open by a descendant.
    #[error("{0}")]
    Failed(Box<RunFailure>),
    /// Any other OS failure while starting the program.
    #[error(
        "cannot run `{}`: {action} failed: {source}{}",
        show(program),
        os_hint(source)
    )]
    Os {
        /// The program as given.
        program: OsString,
        /// What was being done: "create a pipe for stdout", "clone", ...
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// The program that could not be started.
    ///
    /// ```
    /// let err = sheepdog::Command::new("no-such-program-xyz").spawn().unwrap_err();
    /// assert_eq!(err.program(), "no-such-program-xyz");
    /// ```
    pub fn program(&self) -> &OsStr {
        match self {
            Error::NotFound { program, .. }
            | Error::NotExecutable { program, .. }
            | Error::WorkingDirectory { program, .. }
            | Error::NulByte { program, .. }
            | Error::Os { program, .. } => program,
            Error::Failed(failure) => &failure.program,
        }
    }

    /// The closest [`io::ErrorKind`].
    ///
    /// ```
    /// let err = sheepdog::Command::new("/").spawn().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::NotExecutable { .. } => io::ErrorKind::PermissionDenied,
            Error::NulByte { .. } => io::ErrorKind::InvalidInput,
            Error::Failed(failure) if failure.status.timed_out() => io::ErrorKind::TimedOut,
            Error::Failed(_) => io::ErrorKind::Other,
            Error::WorkingDirectory { source, .. } | Error::Os { source, .. } => source.kind(),
        }
    }

    /// The OS error number behind this error, if there is one.
    ///
    /// ```
    /// let err = sheepdog::Command::new("/").spawn().unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(13)); // EACCES
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::NotFound { .. } => Some(libc::ENOENT),
            Error::NulByte { .. } | Error::Failed(_) => None,
            Error::NotExecutable { source, .. }
            | Error::WorkingDirectory { source, .. }
            | Error::Os { source, .. } => source.raw_os_error(),
        }
    }
}

impl Error {
    /// The error for `program` (run in `dir`, if set) from what the platform said of its spawn.
    pub(crate) fn from_spawn(program: &OsStr, dir: Option<&Path>, err: SpawnError) -> Error {
        let program = program.to_owned();
        match err {
            SpawnError::NotFound {
                searched_path,
                interpreter,
                missing_interpreter,
                looked_in,
            } => Error::NotFound {
                program,
                searched_path,
                interpreter,
                missing_interpreter,
                looked_in,
            },
            SpawnError::NotExecutable { path, source } => Error::NotExecutable {
                program,
                path,
                source,
            },
            SpawnError::WorkingDirectory(source) => Error::WorkingDirectory {
                program,
                dir: dir.map(PathBuf::from).unwrap_or_default(),
                source,
            },
            SpawnError::NulByte(what) => Error::NulByte { program, what },
            SpawnError::Os { action, source } => Error::Os {
                program,
                action,
                source,
            },
        }
    }
}

impl From<Error> for io::Error {
    /// An `io::Error` of the same [kind](Error::kind) that carries this error inside (its
    /// message is this error's; [`io::Error::get_ref`] gives it back), so that `?` works in a
    /// function that returns `io::Result`, as with `tokio::process`. The OS error number is
    /// not kept: ask [`Error::raw_os_error`] before converting.
    ///
    /// ```
    /// fn start() -> std::io::Result<sheepdog::Child> {
    ///     Ok(sheepdog::Command::new("no-such-program-xyz").spawn()?)
    /// }
    /// let err = start().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    /// assert!(err.to_string().contains("no-such-program-xyz"));
    /// ```
    fn from(err: Error) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}

/// A string as it can be shown on a line: control characters (a tab, an escape, a NUL) are
/// written escaped (`\t`, `\u{1b}`), so a message never carries them to a terminal.
fn show(s: &OsStr) -> String {
    let mut shown = String::new();
    for c in s.to_string_lossy().chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn not_found_detail(
    searched: Option<&OsStr>,
    interpreter: Option<&PathBuf>,
    missing_interpreter: Option<&PathBuf>,
    looked_in: Option<&PathBuf>,
) -> String {
    match (interpreter, missing_interpreter, searched, looked_in) {
        (Some(file), Some(missing), ..) => format!(
            "`{}` exists, but its interpreter `{}` (its `#!` line) was not found",
            show(file.as_os_str()),
            show(missing.as_os_str())
        ),
        (Some(file), None, ..) => format!(
            "`{}` exists, but its interpreter (the `#!` line or ELF loader) was not found",
            show(file.as_os_str())
        ),
        (None, _, Some(path), _) => format!("not found in PATH `{}`", show(path)),
        (None, _, None, Some(dir)) => format!("no such file in `{}`", show(dir.as_os_str())),
        (None, _, None, None) => "no such file".to_owned(),
    }
}

/// How a program run by [`Command::run`](crate::Command::run) failed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// if let Err(sheepdog::Error::Failed(failure)) = sheepdog::Command::new("false").run().await {
///     assert_eq!(failure.status.code(), Some(1));
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunFailure {
    /// The program as given.
    pub program: OsString,
    /// The command line, shell-quoted.
    pub command: String,
    /// How it ended.
    pub status: crate::ExitStatus,
    /// How long it ran.
    pub duration: std::time::Duration,
    /// Whether a descendant held its output open after it exited.
    pub held_open: bool,
    /// The [capture limit](crate::Command::capture_limit) in bytes, when a stream went past it
    /// under [`OverLimit::Fail`](crate::OverLimit::Fail) and the run was stopped for it.
    pub output_limit: Option<usize>,
    /// The last lines it wrote to stderr.
    pub stderr_tail: String,
}

impl RunFailure {
    /// How the run ended, as one value to match on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// if let Err(sheepdog::Error::Failed(failure)) = sheepdog::Command::new("false").run().await {
    ///     assert_eq!(failure.outcome(), sheepdog::Outcome::Exited(1));
    /// }
    /// # }
    /// ```
    pub fn outcome(&self) -> crate::Outcome {
        use crate::output::Ending;
        let ending = match (self.output_limit, self.held_open) {
            (Some(_), _) => Ending::LimitExceeded,
            (None, true) => Ending::HeldOpen,
            (None, false) => Ending::Read,
        };
        crate::output::outcome(&self.status, ending)
    }
}

impl std::fmt::Display for RunFailure {
    /// `` `cmd` exited with code 3 after 0.02s``, then the tail of stderr, indented.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.duration.as_secs_f64();
        match self.output_limit {
            // The status (SIGKILL) would only echo our own kill.
            Some(limit) => write!(
                f,
                "`{}` went past the output limit of {limit} bytes and was killed after {seconds:.2}s",
                self.command
            )?,
            None => write!(f, "`{}` {} after {seconds:.2}s", self.command, self.status)?,
        }
        if self.held_open {
            f.write_str("; a process it started still held its output open, and was killed")?;
        }
        if !self.stderr_tail.is_empty() {
            f.write_str("\nstderr ended with:")?;
            for line in self.stderr_tail.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

fn os_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            " (too many open files: close descriptors or raise the limit, `ulimit -n`)"
        }
        Some(libc::EAGAIN) => " (process limit reached: see `ulimit -u` and pids.max)",
        _ => "",
    }
}
