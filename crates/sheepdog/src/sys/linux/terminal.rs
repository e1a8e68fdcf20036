//! Handing the controlling terminal's foreground to an interactive child, and back.
//!
//! A herd's children lead process groups of their own, which are background groups: one that
//! reads the terminal is stopped (SIGTTIN), and Ctrl-C does not reach it. An interactive child
//! (an editor, a REPL, a pager) instead takes the foreground itself, before exec (`child.rs`),
//! so it never runs a single instruction in the background; this process takes it back when
//! the child is done (tcsetpgrp(3)).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::raw::syscall;

/// The controlling terminal while a child holds its foreground; dropping it gives the
/// foreground back to the group that had it.
#[derive(Debug)]
pub(crate) struct Terminal {
    tty: OwnedFd,
    previous: libc::pid_t,
}

impl Terminal {
    /// Opens this process's controlling terminal and notes its foreground group.
    pub(crate) fn open() -> io::Result<Terminal> {
        let tty = rustix::fs::open(
            "/dev/tty",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let previous = rustix::termios::tcgetpgrp(&tty)?.as_raw_nonzero().get();
        Ok(Terminal { tty, previous })
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.tty.as_raw_fd()
    }
}

impl Terminal {
    /// Gives the foreground back to the group that had it (this program's, usually).
    pub(crate) fn give_back(&self) -> io::Result<()> {
        set_foreground(&self.tty, self.previous)
    }

    /// Makes process group `pgid` the foreground again.
    pub(crate) fn hand_to(&self, pgid: i32) -> io::Result<()> {
        set_foreground(&self.tty, pgid)
    }
}

/// tcsetpgrp(3), with SIGTTOU blocked in this thread: a background group that sets the
/// foreground gets SIGTTOU, which would stop this whole program.
fn set_foreground(tty: &OwnedFd, pgid: i32) -> io::Result<()> {
    let ttou = 1u64 << (libc::SIGTTOU - 1);
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask(2), which rustix lacks, with valid pointers to 8-byte sets.
    unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_BLOCK as usize,
                &ttou as *const u64 as usize,
                &mut old as *mut u64 as usize,
                8,
            ],
        )
    };
    let set = match rustix::process::Pid::from_raw(pgid) {
        Some(pgid) => rustix::termios::tcsetpgrp(tty, pgid),
        None => Err(rustix::io::Errno::INVAL),
    };
    // SAFETY: as above; puts back the mask saved by the first call.
    unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &old as *const u64 as usize,
                0,
                8,
            ],
        )
    };
    set.map_err(io::Error::from)
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.give_back();
    }
}
