//! Pipe buffers, the memory a pipe is read into, and reads on a plain thread that another
//! thread can end.

use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{pipe_with, PipeFlags};

/// A new pipe, `(read end, write end)`, both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// Sets the kernel buffer of the pipe behind `fd` to `bytes` (`F_SETPIPE_SZ`, see fcntl(2)).
/// An unprivileged user may be refused (`EPERM` past `/proc/sys/fs/pipe-user-pages-soft`).
pub(crate) fn resize_pipe(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    rustix::pipe::fcntl_setpipe_size(fd, bytes)
        .map(drop)
        .map_err(io::Error::from)
}

/// Faults in the whole pages of `spare` ready for writing (`MADV_POPULATE_WRITE`, Linux 5.14;
/// see madvise(2)), so that a later read into it copies without a page fault per page. Best
/// effort: older kernels refuse it (asked once), and then the reads take the faults as before.
pub(crate) fn populate(spare: &mut [MaybeUninit<u8>]) {
    static REFUSED: AtomicBool = AtomicBool::new(false);
    if REFUSED.load(Ordering::Relaxed) {
        return;
    }
    let page = rustix::param::page_size();
    let start = spare.as_mut_ptr() as usize;
    let first = start.next_multiple_of(page);
    let end = (start + spare.len()) / page * page;
    if end > first {
        // SAFETY: [first, end) lies inside `spare`, memory this process owns and may write;
        // MADV_POPULATE_WRITE maps its pages writable and leaves what they hold as it is.
        let result = unsafe {
            rustix::mm::madvise(
                first as *mut c_void,
                end - first,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
        if result == Err(rustix::io::Errno::INVAL) {
            REFUSED.store(true, Ordering::Relaxed);
        }
    }
}

/// Makes reads of `fd` return `WouldBlock` instead of waiting (`FIONBIO`, see ioctl(2)), for
/// [`read_now`] and [`wait_readable`].
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)
}

/// Appends what the pipe behind `fd` (non-blocking) holds now to `buf`, at most its spare
/// capacity, without waiting: `Ok(0)` at the end, `WouldBlock` when the pipe is empty.
pub(crate) fn read_now(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    rustix::io::read(fd, rustix::buffer::spare_capacity(buf)).map_err(io::Error::from)
}

/// Ends [`wait_readable`] calls on other threads: dropping it (a pipe's write end) makes its
/// [`StopWatch`] readable, so nothing has to be sent, and a dropped owner stops them too.
#[derive(Debug)]
pub(crate) struct StopSwitch(#[allow(dead_code)] OwnedFd);

/// What [`wait_readable`] watches for its [`StopSwitch`] (a pipe's read end).
#[derive(Debug)]
pub(crate) struct StopWatch(OwnedFd);

/// A new switch and its watch (a close-on-exec pipe).
pub(crate) fn stop_switch() -> io::Result<(StopSwitch, StopWatch)> {
    let (read, write) = pipe()?;
    Ok((StopSwitch(write), StopWatch(read)))
}

/// Sleeps in `poll(2)` until the pipe behind `fd` holds data or has no writer left (`true`),
/// or until `stop`'s switch is dropped (`false`, also when both happened).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, stop: &StopWatch) -> io::Result<bool> {
    loop {
        let mut fds = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(&stop.0, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
        if !fds[1].revents().is_empty() {
            return Ok(false);
        }
        if !fds[0].revents().is_empty() {
            return Ok(true);
        }
    }
}
