//! Owner death: when this process dies — SIGKILL and abort included — every live herd dies too,
//! and its cgroup is removed.
//!
//! A sentinel process is forked once, on the first herd. For a cgroup herd it holds the herd's
//! `cgroup.kill`, `cgroup.events` and parent directory, received over a `SOCK_SEQPACKET` socket
//! whose other end only this process holds. For a process-group herd it makes the group's
//! anchor itself (see `group.rs`), so the anchor's zombie — and with it the group id — is held
//! by the sentinel, and outlives this process. One anchor is kept ordered ahead, so that a new
//! process-group herd takes one at hand instead of waiting for the sentinel to wake up, make it
//! and answer (about 200 µs on a small VM). The next is ordered when a herd lets its anchor go,
//! in the same wake-up of the sentinel: ordered while a herd is being made, the sentinel woke on
//! the maker's CPU and took it for the clone. When the socket's other end closes (this process
//! is gone, however it went), the sentinel kills every herd it holds, removes their cgroups once
//! empty, releases the anchors, and exits.
//! `PR_SET_PDEATHSIG` would not do: it reaches only the direct child, and fires when the
//! spawning *thread* exits.
//!
//! The sentinel is a fork of a possibly multi-threaded process, so it follows the rules of
//! fork(2) in such a process: raw system calls only, no allocation (its table is its own mmap),
//! no locks. It leads a process group of its own, so that a signal to the owner's group (a CI
//! runner's `kill -KILL -<pgid>`) does not take the sentinel down with the owner, but it stays
//! in the owner's session (children must be able to join the groups it anchors). It ignores
//! the signals a terminal sends, and it closes every inherited descriptor, so it never holds a
//! pipe open on anybody's behalf.

use std::io::{self, IoSlice};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::net::{
    sendmsg, socketpair, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};

use super::clone::BlockedSignals;
use super::raw::syscall;
use super::spawn::clone_anchor;

const REGISTER: u8 = 1;
const UNREGISTER: u8 = 2;
/// Make an anchor; the sentinel answers with the request's id and the anchor's pid (the group
/// id), or `-errno`.
const ANCHOR: u8 = 3;
/// How many anchors the owner keeps ordered ahead (in hand or on their way). Each is a zombie
/// the sentinel holds until this process exits; one is enough for herds made one after another.
const ANCHORS_AHEAD: usize = 1;
/// Longest cgroup name the sentinel stores (ours are `sheepdog-<pid>-<n>`).
const NAME_MAX: usize = 64;
/// How many herds one sentinel holds at once.
const CAPACITY: usize = 65536;

struct Sentinel {
    /// The owner's end of the socket, and the anchors ordered; one lock, so that messages never
    /// interleave and answers are read in the order they were asked for.
    channel: Mutex<Channel>,
}

struct Channel {
    socket: OwnedFd,
    /// Answers to `ANCHOR` received and not yet handed out: `(registration, pid or -errno)`.
    anchors: Vec<(u64, i32)>,
    /// `ANCHOR` requests sent whose answer has not been read yet.
    ordered: usize,
}

static SENTINEL: OnceLock<Option<Sentinel>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the sentinel needs to kill a herd and remove its cgroup.
pub(crate) struct Guarded<'a> {
    pub kill: BorrowedFd<'a>,
    pub events: BorrowedFd<'a>,
    /// The directory that holds the cgroup, and the cgroup's own directory and name there.
    pub parent: BorrowedFd<'a>,
    pub home: BorrowedFd<'a>,
    pub name: &'a [u8],
}

/// Whether a sentinel runs (starting it on first need).
pub(crate) fn available() -> bool {
    SENTINEL.get_or_init(start).is_some()
}

/// Hands a herd to the sentinel; returns its registration, or `None` (logged) if the herd is
/// not protected against the owner's death.
pub(crate) fn register(herd: Guarded<'_>) -> Option<u64> {
    let sentinel = SENTINEL.get_or_init(start).as_ref()?;
    if herd.name.len() > NAME_MAX {
        return None;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut message = Vec::with_capacity(9 + herd.name.len());
    message.extend_from_slice(&id.to_ne_bytes());
    message.push(REGISTER);
    message.extend_from_slice(herd.name);
    let fds = [herd.kill, herd.events, herd.parent, herd.home];
    match sentinel.send(&message, &fds) {
        Ok(()) => Some(id),
        Err(err) => {
            tracing::warn!(%err, "sheepdog: the sentinel is gone; herds outlive a killed owner");
            None
        }
    }
}

/// Takes a process-group anchor from the sentinel (the one ordered ahead, if it has arrived);
/// returns the registration and the group id, or `None` (then the caller anchors the group
/// itself, unprotected against its own death).
pub(crate) fn anchor() -> Option<(u64, i32)> {
    let sentinel = SENTINEL.get_or_init(start).as_ref()?;
    match sentinel.lock().take_anchor() {
        Ok((id, pgid)) if pgid > 0 => Some((id, pgid)),
        Ok((_, errno)) => {
            let err = io::Error::from_raw_os_error(-errno);
            tracing::warn!(%err, "sheepdog: the sentinel cannot make an anchor");
            None
        }
        Err(err) => {
            tracing::warn!(%err, "sheepdog: the sentinel is gone; herds outlive a killed owner");
            None
        }
    }
}

/// The process-group herd registered as `id` is gone: the sentinel releases its anchor, and
/// makes the next one ahead.
pub(crate) fn release_anchor(id: u64) {
    let Some(Some(sentinel)) = SENTINEL.get() else {
        return;
    };
    unregister(id);
    let mut channel = sentinel.lock();
    while channel.anchors.len() + channel.ordered < ANCHORS_AHEAD {
        if channel.order_anchor().is_err() {
            break; // the sentinel is gone; the next herd finds out and says so
        }
    }
}

/// The herd was removed normally: the sentinel forgets it.
pub(crate) fn unregister(id: u64) {
    if let Some(Some(sentinel)) = SENTINEL.get() {
        let mut message = id.to_ne_bytes().to_vec();
        message.push(UNREGISTER);
        let _ = sentinel.send(&message, &[]);
    }
}

impl Sentinel {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channel> {
        crate::lock(&self.channel)
    }

    fn send(&self, message: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        let channel = self.lock();
        sendmsg(
            &channel.socket,
            &[IoSlice::new(message)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        Ok(())
    }
}

impl Channel {
    /// The oldest answer to `ANCHOR`: one that has arrived, else the next to arrive. With none
    /// on its way, orders it and the one ahead in the same wake-up of the sentinel.
    fn take_anchor(&mut self) -> io::Result<(u64, i32)> {
        while self.ordered > 0 && self.receive_anchor(RecvFlags::DONTWAIT)? {}
        if self.anchors.is_empty() {
            while self.ordered < 1 + ANCHORS_AHEAD {
                self.order_anchor()?;
            }
            self.receive_anchor(RecvFlags::empty())?;
        }
        Ok(self.anchors.remove(0))
    }

    /// Asks the sentinel for one more anchor, without waiting for it.
    fn order_anchor(&mut self) -> io::Result<()> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut message = id.to_ne_bytes().to_vec();
        message.push(ANCHOR);
        rustix::net::send(&self.socket, &message, SendFlags::NOSIGNAL)?;
        self.ordered += 1;
        Ok(())
    }

    /// Reads one answer into `anchors`; `false` if none is there (with `DONTWAIT`).
    fn receive_anchor(&mut self, flags: RecvFlags) -> io::Result<bool> {
        let mut answer = [0u8; 12];
        match rustix::net::recv(&self.socket, &mut answer, flags) {
            Ok((12, _)) => {
                let (id, pgid) = answer.split_at(8);
                let id = u64::from_ne_bytes(id.try_into().map_err(io::Error::other)?);
                let pgid = i32::from_ne_bytes(pgid.try_into().map_err(io::Error::other)?);
                self.anchors.push((id, pgid));
                self.ordered -= 1;
                Ok(true)
            }
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sentinel is gone",
            )),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

fn start() -> Option<Sentinel> {
    match fork_sentinel() {
        Ok(sentinel) => Some(sentinel),
        Err(err) => {
            tracing::warn!(%err, "sheepdog: cannot start the sentinel; herds outlive a killed owner");
            None
        }
    }
}

fn fork_sentinel() -> io::Result<Sentinel> {
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // No handler may run in the new process before it has reset them.
    let blocked = BlockedSignals::new();
    // SAFETY: clone(2) with only SIGCHLD is fork(2) without the C library's atfork handlers. The
    // child runs `sentinel_main`, which makes raw system calls only and never returns.
    let pid = unsafe { syscall(libc::SYS_clone, &[libc::SIGCHLD as usize, 0, 0, 0, 0]) };
    if pid == 0 {
        // SAFETY: in the new process; `theirs` is open in it.
        unsafe { sentinel_main(theirs.as_raw_fd()) }
    }
    drop(blocked);
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(-pid as i32));
    }
    drop(theirs);
    // The sentinel is our child: if it ever exits before us, the reaper collects it.
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            super::reaper::adopt_sentinel(pidfd);
        }
    }
    Ok(Sentinel {
        channel: Mutex::new(Channel {
            socket: ours,
            anchors: Vec::new(),
            ordered: 0,
        }),
    })
}

/// One herd, as the sentinel holds it: a cgroup (`kill`, `events`, `parent`, `name`) or a
/// process group (`pgid`, whose anchor is the sentinel's unreaped child); unused fields are -1.
#[derive(Clone, Copy)]
struct Entry {
    id: u64,
    kill: i32,
    events: i32,
    parent: i32,
    home: i32,
    pgid: i32,
    /// NUL-terminated.
    name: [u8; NAME_MAX + 1],
}

/// The sentinel process: collects registrations until the owner's end closes, then kills.
///
/// # Safety
/// Must run in a freshly forked process, on the parent thread's copied stack, with all signals
/// blocked; `socket` must be open.
unsafe fn sentinel_main(socket: i32) -> ! {
    // SAFETY (whole function): raw system calls on descriptors this process owns and on memory
    // it mapped itself; nothing here allocates, locks or touches thread-local state.
    unsafe {
        syscall(libc::SYS_setpgid, &[0, 0]);
        let ignore = [libc::SIG_IGN, 0, 0, 0]; // handler, flags, restorer, mask
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGTERM,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            syscall(
                libc::SYS_rt_sigaction,
                &[sig as usize, ignore.as_ptr() as usize, 0, 8],
            );
        }
        let empty = 0u64;
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                8,
            ],
        );
        // Keep only the socket: holding anything else (a child's stdin pipe, say) would change
        // what other processes see.
        if socket > 0 {
            syscall(libc::SYS_close_range, &[0, socket as usize - 1, 0]);
        }
        syscall(
            libc::SYS_close_range,
            &[socket as usize + 1, u32::MAX as usize, 0],
        );
        let name = b"sheepdog-guard\0";
        syscall(
            libc::SYS_prctl,
            &[libc::PR_SET_NAME as usize, name.as_ptr() as usize],
        );

        let table = syscall(
            libc::SYS_mmap,
            &[
                0,
                CAPACITY * size_of::<Entry>(),
                (libc::PROT_READ | libc::PROT_WRITE) as usize,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as usize,
                usize::MAX, // fd -1
                0,
            ],
        );
        if table < 0 {
            syscall(libc::SYS_exit_group, &[1]);
        }
        let table = table as *mut Entry;
        let mut len = 0usize;

        loop {
            let mut payload = [0u8; 9 + NAME_MAX];
            let mut control = [0u64; 16]; // aligned room for one SCM_RIGHTS with 3 fds
            let mut iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            };
            let mut msg: libc::msghdr = core::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            let n = syscall(
                libc::SYS_recvmsg,
                &[
                    socket as usize,
                    &mut msg as *mut _ as usize,
                    libc::MSG_CMSG_CLOEXEC as usize,
                ],
            );
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n <= 0 {
                break; // the owner is gone
            }
            let n = n as usize;
            if n < 9 {
                continue;
            }
            let mut id_bytes = [0u8; 8];
            id_bytes.copy_from_slice(&payload[..8]);
            let id = u64::from_ne_bytes(id_bytes);
            match payload[8] {
                REGISTER => {
                    let cmsg = libc::CMSG_FIRSTHDR(&msg);
                    if cmsg.is_null()
                        || (*cmsg).cmsg_level != libc::SOL_SOCKET
                        || (*cmsg).cmsg_type != libc::SCM_RIGHTS
                    {
                        continue;
                    }
                    let fds = libc::CMSG_DATA(cmsg) as *const i32;
                    let name_len = n - 9;
                    let mut entry = Entry {
                        id,
                        kill: *fds,
                        events: *fds.add(1),
                        parent: *fds.add(2),
                        home: *fds.add(3),
                        pgid: -1,
                        name: [0; NAME_MAX + 1],
                    };
                    entry.name[..name_len].copy_from_slice(&payload[9..n]);
                    if len < CAPACITY {
                        *table.add(len) = entry;
                        len += 1;
                    } else {
                        close_entry(&entry);
                    }
                }
                ANCHOR => {
                    let answer = match clone_anchor() {
                        Ok(cloned) if len < CAPACITY => {
                            // The pid is what we keep; the pidfd would only be one more fd.
                            drop(cloned.pidfd);
                            *table.add(len) = Entry {
                                id,
                                kill: -1,
                                events: -1,
                                parent: -1,
                                home: -1,
                                pgid: cloned.pid,
                                name: [0; NAME_MAX + 1],
                            };
                            len += 1;
                            cloned.pid
                        }
                        Ok(cloned) => {
                            reap_anchor(cloned.pid);
                            -libc::ENOSPC
                        }
                        Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
                    };
                    let mut bytes = [0u8; 12];
                    bytes[..8].copy_from_slice(&id.to_ne_bytes());
                    bytes[8..].copy_from_slice(&answer.to_ne_bytes());
                    syscall(
                        libc::SYS_sendto,
                        &[
                            socket as usize,
                            bytes.as_ptr() as usize,
                            bytes.len(),
                            libc::MSG_NOSIGNAL as usize,
                            0,
                            0,
                        ],
                    );
                }
                UNREGISTER => {
                    let mut i = 0;
                    while i < len {
                        if (*table.add(i)).id == id {
                            close_entry(&*table.add(i));
                            len -= 1;
                            *table.add(i) = *table.add(len);
                        } else {
                            i += 1;
                        }
                    }
                }
                _ => {}
            }
        }

        // The owner died: kill every herd first, then clean up each once it is empty.
        for i in 0..len {
            let entry = &*table.add(i);
            if entry.pgid > 0 {
                // Safe: the anchor, our unreaped child, holds the group id.
                syscall(
                    libc::SYS_kill,
                    &[(-entry.pgid) as isize as usize, libc::SIGKILL as usize],
                );
            } else {
                syscall(
                    libc::SYS_write,
                    &[entry.kill as usize, b"1".as_ptr() as usize, 1],
                );
            }
        }
        for i in 0..len {
            let entry = &*table.add(i);
            if entry.pgid > 0 {
                reap_anchor(entry.pgid);
            } else if wait_empty(entry.events) {
                remove_children(entry.home);
                syscall(
                    libc::SYS_unlinkat,
                    &[
                        entry.parent as usize,
                        entry.name.as_ptr() as usize,
                        libc::AT_REMOVEDIR as usize,
                    ],
                );
            }
        }
        loop {
            syscall(libc::SYS_exit_group, &[0]);
        }
    }
}

/// Lets go of a herd: closes its descriptors, or reaps its anchor (freeing the group id).
unsafe fn close_entry(entry: &Entry) {
    if entry.pgid > 0 {
        reap_anchor(entry.pgid);
        return;
    }
    // SAFETY: the sentinel owns these descriptors.
    unsafe {
        for fd in [entry.kill, entry.events, entry.parent, entry.home] {
            syscall(libc::SYS_close, &[fd as usize]);
        }
    }
}

/// Reaps an anchor (it exited at once, so this does not block).
fn reap_anchor(pid: i32) {
    // SAFETY: waitid(2) for our own child, with a zeroed siginfo to write into.
    unsafe {
        let mut info: libc::siginfo_t = core::mem::zeroed();
        syscall(
            libc::SYS_waitid,
            &[
                libc::P_PID as usize,
                pid as usize,
                &mut info as *mut _ as usize,
                libc::WEXITED as usize,
                0,
            ],
        );
    }
}

/// Removes the cgroups directly inside the directory open as `dir` (the herds in a home).
unsafe fn remove_children(dir: i32) {
    let mut buf = [0u64; 512]; // 4 KiB, aligned for linux_dirent64
    loop {
        // SAFETY: getdents64 into a buffer of the given size.
        let n = unsafe {
            syscall(
                libc::SYS_getdents64,
                &[
                    dir as usize,
                    buf.as_mut_ptr() as usize,
                    size_of::<[u64; 512]>(),
                ],
            )
        };
        if n <= 0 {
            return;
        }
        let base = buf.as_ptr() as *const u8;
        let mut offset = 0usize;
        while offset < n as usize {
            // SAFETY: the kernel filled `n` bytes of linux_dirent64 records: d_ino (8), d_off
            // (8), d_reclen (2), d_type (1), then the NUL-terminated name.
            unsafe {
                let record = base.add(offset);
                let reclen = u16::from_ne_bytes([*record.add(16), *record.add(17)]) as usize;
                let kind = *record.add(18);
                let name = record.add(19);
                let dot = *name == b'.';
                if kind == libc::DT_DIR && !dot {
                    syscall(
                        libc::SYS_unlinkat,
                        &[dir as usize, name as usize, libc::AT_REMOVEDIR as usize],
                    );
                }
                offset += reclen.max(1);
            }
        }
    }
}

/// Waits (by `POLLPRI` on `cgroup.events`, at most about 10 s) until `populated 0`.
unsafe fn wait_empty(events: i32) -> bool {
    for _ in 0..100 {
        let mut buf = [0u8; 256];
        // SAFETY: pread into a stack buffer of the given size.
        let n = unsafe {
            syscall(
                libc::SYS_pread64,
                &[events as usize, buf.as_mut_ptr() as usize, buf.len(), 0],
            )
        };
        if n <= 0 {
            return false;
        }
        if contains(&buf[..n as usize], b"populated 0") {
            return true;
        }
        let mut pollfd = libc::pollfd {
            fd: events,
            events: libc::POLLPRI,
            revents: 0,
        };
        let timeout = [0usize, 100_000_000]; // 100 ms
                                             // SAFETY: ppoll with one valid pollfd and a timespec.
        unsafe {
            syscall(
                libc::SYS_ppoll,
                &[
                    &mut pollfd as *mut _ as usize,
                    1,
                    timeout.as_ptr() as usize,
                    0,
                    8,
                ],
            )
        };
    }
    false
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
