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
    // SAFETY: rt_sigprocmask and ioctl(TIOCSPGRP) with valid pointers; the mask is restored
    // right after.
    let ret = unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_BLOCK as usize,
                &ttou as *const u64 as usize,
                &mut old as *mut u64 as usize,
                8,
            ],
        );
        let ret = syscall(
            libc::SYS_ioctl,
            &[
                tty.as_raw_fd() as usize,
                libc::TIOCSPGRP as usize,
                &pgid as *const i32 as usize,
            ],
        );
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &old as *const u64 as usize,
                0,
                8,
            ],
        );
        ret
    };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(())
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.give_back();
    }
}
