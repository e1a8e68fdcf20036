//! `ExitStatus`: how a process ended, with the resources it used.

use std::fmt;
use std::time::Duration;

use crate::signal::Signal;

/// How a process ended: it exited with a code, or a signal killed it.
///
/// Comes with the [`ResourceUsage`] the kernel reported when the process was reaped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let status = sheepdog::Command::new("false").spawn()?.wait().await?;
/// assert_eq!(status.code(), Some(1));
/// assert!(!status.success());
/// assert_eq!(status.to_string(), "exited with code 1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub(crate) end: End,
    pub(crate) usage: ResourceUsage,
    pub(crate) timed_out: bool,
}

pub(crate) use crate::sys::End;

impl From<crate::sys::Reaped> for ExitStatus {
    /// What the platform reported as it reaped the process.
    fn from(reaped: crate::sys::Reaped) -> ExitStatus {
        ExitStatus {
            end: reaped.end,
            usage: ResourceUsage {
                user_time: reaped.user_time,
                system_time: reaped.system_time,
                max_rss_bytes: reaped.max_rss_bytes,
            },
            timed_out: false,
        }
    }
}

impl ExitStatus {
    /// Whether the process exited with code 0.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(sheepdog::Command::new("true").spawn()?.wait().await?.success());
    /// # Ok(()) }
    /// ```
    pub fn success(&self) -> bool {
        self.end == End::Exited(0) && !self.timed_out
    }

    /// Whether the process ran into its [`Command::timeout`](crate::Command::timeout) and was
    /// stopped; [`code`](ExitStatus::code) or [`signal`](ExitStatus::signal) tell how it ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("true").spawn()?.wait().await?;
    /// assert!(!status.timed_out());
    /// # Ok(()) }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The exit code, or `None` when a signal ended the process.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("sh").args(["-c", "exit 3"]).spawn()?.wait().await?;
    /// assert_eq!(status.code(), Some(3));
    /// # Ok(()) }
    /// ```
    pub fn code(&self) -> Option<i32> {
        match self.end {
            End::Exited(code) => Some(code),
            End::Signaled { .. } => None,
        }
    }

    /// The signal that ended the process, or `None` when it exited.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("sleep").arg("10").spawn()?;
    /// child.start_kill()?;
    /// assert_eq!(child.wait().await?.signal(), Some(sheepdog::Signal::KILL));
    /// # Ok(()) }
    /// ```
    pub fn signal(&self) -> Option<Signal> {
        match self.end {
            End::Signaled { signal, .. } => Some(signal),
            End::Exited(_) => None,
        }
    }

    /// Whether the process dumped core as it died.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("true").spawn()?.wait().await?;
    /// assert!(!status.core_dumped());
    /// # Ok(()) }
    /// ```
    pub fn core_dumped(&self) -> bool {
        matches!(
            self.end,
            End::Signaled {
                core_dumped: true,
                ..
            }
        )
    }

    /// The resources the process (and the descendants it waited for) used.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("true").spawn()?.wait().await?;
    /// println!("{:?}", status.usage().max_rss_bytes());
    /// # Ok(()) }
    /// ```
    pub fn usage(&self) -> ResourceUsage {
        self.usage
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            f.write_str("timed out, then ")?;
        }
        match self.end {
            End::Exited(code) => write!(f, "exited with code {code}"),
            End::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {signal}")?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

impl ExitStatus {
    /// Ends this process the way the child ended, for programs that run a command in its
    /// place (a `timeout`, an init): with the same exit code; or, killed by a signal, by the
    /// same signal (its default action, this program's handler and mask for it put aside), so
    /// that this program's parent sees the signal too. Where a signal does not end the process
    /// (one whose default is to ignore or stop it, or in PID 1, which gets no default actions),
    /// exits with 128 + the signal's number, as shells report it. Flush what is buffered first.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// // The process exits here: an example that cannot run as a test.
    /// let status = sheepdog::Command::new("sh").args(["-c", "kill -TERM $$"]).status().await?;
    /// status.exit_like();
    /// # }
    /// ```
    pub fn exit_like(&self) -> ! {
        match self.end {
            End::Exited(code) => std::process::exit(code),
            End::Signaled { signal, .. } => {
                crate::sys::die_by(signal);
                std::process::exit(128 + signal.as_raw())
            }
        }
    }
}

impl From<ExitStatus> for std::process::ExitStatus {
    /// The same exit code or signal (and core dump flag), as std reports it; whether it
    /// [timed out](ExitStatus::timed_out) and the resource usage are not kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::unix::process::ExitStatusExt;
    /// let status = sheepdog::Command::new("sh").args(["-c", "exit 3"]).status().await?;
    /// let std_status = std::process::ExitStatus::from(status);
    /// assert_eq!((std_status.code(), std_status.signal()), (Some(3), None));
    /// # Ok(()) }
    /// ```
    fn from(status: ExitStatus) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        // The wait status as waitpid(2) encodes it: the code in bits 8..16; the signal in bits
        // 0..7, with 0x80 for a core dump.
        let raw = match status.end {
            End::Exited(code) => (code & 0xff) << 8,
            End::Signaled {
                signal,
                core_dumped,
            } => signal.as_raw() | if core_dumped { 0x80 } else { 0 },
        };
        std::process::ExitStatus::from_raw(raw)
    }
}

/// CPU time and peak memory of a process, as `waitid(2)` reports them at reaping time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let usage = sheepdog::Command::new("true").spawn()?.wait().await?.usage();
/// println!("user {:?}, system {:?}, peak {:?} bytes",
///     usage.user_time(), usage.system_time(), usage.max_rss_bytes());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceUsage {
    pub(crate) user_time: Duration,
    pub(crate) system_time: Duration,
    pub(crate) max_rss_bytes: Option<u64>,
}

impl ResourceUsage {
    /// CPU time spent in user mode.
    ///
    /// ```
    /// assert_eq!(sheepdog::ResourceUsage::default().user_time(), std::time::Duration::ZERO);
    /// ```
    pub fn user_time(&self) -> Duration {
        self.user_time
    }

    /// CPU time spent in the kernel on the process's behalf.
    ///
    /// ```
    /// assert_eq!(sheepdog::ResourceUsage::default().system_time(), std::time::Duration::ZERO);
    /// ```
    pub fn system_time(&self) -> Duration {
        self.system_time
    }

    /// Peak resident memory of the process's own image, in bytes, or `None` where it cannot
    /// be known. A child shares this program's memory until it execs, and the kernel counts
    /// the peak of that memory in the child's: a figure not above this program's own peak may
    /// be this program's, so it is reported as unknown, never as the child's. For the peak of a
    /// whole tree, see [`Herd::usage`](crate::Herd::usage) (where the memory controller is on).
    ///
    /// ```
    /// assert_eq!(sheepdog::ResourceUsage::default().max_rss_bytes(), None);
    /// ```
    pub fn max_rss_bytes(&self) -> Option<u64> {
        self.max_rss_bytes
    }
}
