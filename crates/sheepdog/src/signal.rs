//! `Signal`: a signal number that is known to be valid.

use std::fmt;

/// A Unix signal, such as [`Signal::TERM`].
///
/// Only valid signal numbers (1 to 64 on Linux) can be made, so a `Signal` can never mean
/// "check only" (0) or be negative.
///
/// ```
/// use sheepdog::Signal;
/// assert_eq!(Signal::TERM.to_string(), "SIGTERM");
/// assert_eq!(Signal::from_raw(9), Some(Signal::KILL));
/// assert_eq!(Signal::from_raw(0), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident = $libc:ident, $doc:literal;)*) => {
        impl Signal {
            $(#[doc = $doc] pub const $name: Signal = Signal(libc::$libc);)*

            /// The conventional name, such as `"SIGTERM"`, or `None` for a real-time signal.
            ///
            /// ```
            /// assert_eq!(sheepdog::Signal::INT.name(), Some("SIGINT"));
            /// ```
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$libc => Some(stringify!($libc)),)*
                    _ => None,
                }
            }
        }
    };
}

signals! {
    HUP = SIGHUP, "Hangup: the terminal went away, or \"reload your configuration\".";
    INT = SIGINT, "Interrupt: Ctrl-C at a terminal.";
    QUIT = SIGQUIT, "Quit: Ctrl-\\ at a terminal; dumps core.";
    ILL = SIGILL, "Illegal instruction.";
    TRAP = SIGTRAP, "Trace or breakpoint trap.";
    ABRT = SIGABRT, "Abort, as from `abort(3)`.";
    BUS = SIGBUS, "Bus error: bad memory access.";
    FPE = SIGFPE, "Arithmetic error.";
    KILL = SIGKILL, "Kill: cannot be caught, blocked or ignored.";
    USR1 = SIGUSR1, "User-defined signal 1.";
    SEGV = SIGSEGV, "Invalid memory reference.";
    USR2 = SIGUSR2, "User-defined signal 2.";
    PIPE = SIGPIPE, "Write to a pipe with no reader.";
    ALRM = SIGALRM, "Timer from `alarm(2)`.";
    TERM = SIGTERM, "Termination request: the polite way to ask a process to exit.";
    STKFLT = SIGSTKFLT, "Stack fault (unused).";
    CHLD = SIGCHLD, "A child stopped or terminated.";
    CONT = SIGCONT, "Continue if stopped.";
    STOP = SIGSTOP, "Stop: cannot be caught, blocked or ignored.";
    TSTP = SIGTSTP, "Terminal stop: Ctrl-Z at a terminal.";
    TTIN = SIGTTIN, "Background read from the terminal.";
    TTOU = SIGTTOU, "Background write to the terminal.";
    URG = SIGURG, "Urgent data on a socket.";
    XCPU = SIGXCPU, "CPU time limit exceeded.";
    XFSZ = SIGXFSZ, "File size limit exceeded.";
    VTALRM = SIGVTALRM, "Virtual timer expired.";
    PROF = SIGPROF, "Profiling timer expired.";
    WINCH = SIGWINCH, "Terminal window size changed.";
    IO = SIGIO, "I/O is possible on a descriptor.";
    PWR = SIGPWR, "Power failure.";
    SYS = SIGSYS, "Bad system call (also what seccomp sends).";
}

impl Signal {
    /// The signal with this number, if it is a valid one (1 to 64).
    ///
    /// ```
    /// assert_eq!(sheepdog::Signal::from_raw(15), Some(sheepdog::Signal::TERM));
    /// assert!(sheepdog::Signal::from_raw(65).is_none());
    /// ```
    pub fn from_raw(signo: i32) -> Option<Signal> {
        (1..=64).contains(&signo).then_some(Signal(signo))
    }

    /// The signal number.
    ///
    /// ```
    /// assert_eq!(sheepdog::Signal::KILL.as_raw(), 9);
    /// ```
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} ({})", self.0)
    }
}
