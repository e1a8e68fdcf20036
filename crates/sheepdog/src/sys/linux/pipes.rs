//! Pipe buffers, and the memory a pipe is read into.

use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// A new pipe, `(read end, write end)`, both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
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
