//! Pipe buffers.

use std::io;
use std::os::fd::BorrowedFd;

/// Sets the kernel buffer of the pipe behind `fd` to `bytes` (`F_SETPIPE_SZ`, see fcntl(2)).
/// An unprivileged user may be refused (`EPERM` past `/proc/sys/fs/pipe-user-pages-soft`).
pub(crate) fn resize_pipe(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    rustix::pipe::fcntl_setpipe_size(fd, bytes)
        .map(drop)
        .map_err(io::Error::from)
}
