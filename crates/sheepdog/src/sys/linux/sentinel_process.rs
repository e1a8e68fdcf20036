//! The sentinel process itself: its entry point before `main`, its loop, and what it does when
//! the owner dies.
//!
//! The sentinel is this program's own image, exec'd afresh (see `sentinel.rs`), so it has an
//! address space of its own from the start. A constructor in `.init_array` runs in every program
//! linked with sheepdog; it only looks for [`MARKER`] in the environment, and in the sentinel
//! it never returns to `main`. The loop makes raw system calls only and allocates nothing (its
//! table is its own mmap): it runs before the Rust runtime is set up, and nothing it does may
//! depend on that.

use core::ffi::c_char;
use core::mem::size_of;

use super::raw::syscall;
use super::sentinel::{ANCHOR, FAULT, MARKER, NAME_MAX, READY, REGISTER, UNREGISTER};
use super::spawn::clone_anchor;

/// How many herds one sentinel holds at once.
const CAPACITY: usize = 65536;
/// How deep the sentinel looks for cgroups to remove below a home (herds that made their own
/// sub-cgroups).
const MAX_DEPTH: u32 = 8;

extern "C" {
    /// The C library's environment (environ(7)), set up before constructors run.
    static environ: *const *const c_char;
}

/// Runs before `main` in every program linked with sheepdog: a scan of the environment for
/// [`MARKER`], which costs a comparison of the first byte of each variable in any other program.
/// `sentinel.rs` reads it when it starts a sentinel, so that the linker keeps it.
#[used]
#[link_section = ".init_array"]
pub(super) static ENTRY: extern "C" fn() = enter_if_sentinel;

extern "C" fn enter_if_sentinel() {
    // SAFETY: before `main`, one thread; libc has set `environ` up.
    if let Some(socket) = unsafe { marked_socket() } {
        // SAFETY: `socket` is an open AF_UNIX SOCK_SEQPACKET socket, and this process is the
        // freshly exec'd sentinel: nothing else runs in it.
        unsafe { run(socket) }
    }
}

/// The socket [`MARKER`] names, if it is set and names an AF_UNIX `SOCK_SEQPACKET` socket.
unsafe fn marked_socket() -> Option<i32> {
    let marker = MARKER.as_bytes();
    // SAFETY: `environ` is null or a null-terminated array of NUL-terminated strings.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return None;
        }
        while !(*entry).is_null() {
            let s = (*entry).cast::<u8>();
            entry = entry.add(1);
            let mut i = 0;
            while i < marker.len() && *s.add(i) == marker[i] {
                i += 1;
            }
            if i < marker.len() || *s.add(i) != b'=' {
                continue;
            }
            let mut fd: i32 = 0;
            let mut digits = s.add(i + 1);
            while (*digits).is_ascii_digit() && fd < 1 << 20 {
                fd = fd * 10 + (*digits - b'0') as i32;
                digits = digits.add(1);
            }
            let seqpacket = socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET);
            let unix = socket_option(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX);
            return (*digits == 0 && seqpacket && unix).then_some(fd);
        }
        None
    }
}

fn socket_option(fd: i32, option: i32) -> Option<i32> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as u32;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `value`.
    let ret = unsafe {
        syscall(
            libc::SYS_getsockopt,
            &[
                fd as usize,
                libc::SOL_SOCKET as usize,
                option as usize,
                &mut value as *mut i32 as usize,
                &mut len as *mut u32 as usize,
            ],
        )
    };
    (ret == 0).then_some(value)
}

/// One herd, as the sentinel holds it: a cgroup (`kill`, `events`, `parent`, `home`, `name`)
/// or a process group (`pgid`, whose anchor is the sentinel's unreaped child); unused fields
/// are -1.
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

/// What one receive gave.
enum Received {
    /// A whole message of this many bytes, with its descriptors (if any) in the control buffer.
    Message(usize),
    /// The owner is gone: end of file, or the connection reset (it died with answers unread).
    OwnerGone,
    /// Nothing to act on: an interrupted or failed receive, or a message cut short (its
    /// descriptors already closed). The owner is alive as far as this tells.
    Nothing,
}

/// The sentinel: collects registrations until the owner's end closes, then kills.
///
/// # Safety
/// Must run in the sentinel process (exec'd for it), before `main`; `socket` must be open.
unsafe fn run(socket: i32) -> ! {
    // SAFETY: raw system calls on descriptors this process owns and on memory it maps itself;
    // nothing here allocates, locks or touches thread-local state.
    unsafe {
        settle(socket);
        let mut table = Table::map();
        answer(socket, READY, syscall(libc::SYS_getpid, &[]) as i32);
        serve(socket, &mut table);
        // The owner died: kill every herd first, then clean up each once it is empty.
        kill_all(&table);
        clean_up(&table);
        loop {
            syscall(libc::SYS_exit_group, &[0]);
        }
    }
}

/// Makes the sentinel outlast whatever ends its owner: ignores the signals a terminal or a
/// careless `kill` sends, keeps only `socket` open, and takes its own name.
unsafe fn settle(socket: i32) {
    // SAFETY: rt_sigaction(2), rt_sigprocmask(2), close_range(2) and prctl(2) with arguments
    // on the stack; the descriptors closed are this process's own.
    unsafe {
        // A terminal's signals (and SIGTERM from a careless `kill`) must not end the sentinel
        // before the owner: it is the one that cleans up after it. It was started with every
        // signal blocked; the mask goes once they are ignored.
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
            libc::SIGUSR1,
            libc::SIGUSR2,
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
        // Only the socket is kept: stdio was /dev/null only for the dynamic loader's and the
        // constructors' sake, and anything a library constructor opened goes too.
        if socket > 0 {
            syscall(libc::SYS_close_range, &[0, socket as usize - 1, 0]);
        }
        syscall(
            libc::SYS_close_range,
            &[socket as usize + 1, u32::MAX as usize, 0],
        );
        let name = b"sheepdog-sentinel\0"; // the kernel keeps the first 15 bytes
        syscall(
            libc::SYS_prctl,
            &[libc::PR_SET_NAME as usize, name.as_ptr() as usize],
        );
    }
}

/// The herds the sentinel holds, in memory it maps itself (nothing here may allocate).
struct Table {
    entries: *mut Entry,
    len: usize,
}

impl Table {
    /// Maps room for [`CAPACITY`] herds; the sentinel exits if it cannot.
    unsafe fn map() -> Table {
        // SAFETY: an anonymous private mapping, and exit_group(2) if there is none.
        unsafe {
            let entries = syscall(
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
            if entries < 0 {
                syscall(libc::SYS_exit_group, &[1]);
            }
            Table {
                entries: entries as *mut Entry,
                len: 0,
            }
        }
    }

    /// Adds `entry`, or returns `false` if the table is full.
    fn push(&mut self, entry: Entry) -> bool {
        if self.len == CAPACITY {
            return false;
        }
        // SAFETY: `len` < CAPACITY, the mapping's size in entries.
        unsafe { *self.entries.add(self.len) = entry };
        self.len += 1;
        true
    }

    /// Lets go of every herd registered as `id`.
    fn remove(&mut self, id: u64) {
        let mut i = 0;
        while i < self.len {
            // SAFETY: `i` and `len - 1` are below `len`, within the mapping.
            unsafe {
                if (*self.entries.add(i)).id == id {
                    close_entry(&*self.entries.add(i));
                    self.len -= 1;
                    *self.entries.add(i) = *self.entries.add(self.len);
                } else {
                    i += 1;
                }
            }
        }
    }

    fn entries(&self) -> &[Entry] {
        // SAFETY: the first `len` entries of the mapping were written by `push`.
        unsafe { core::slice::from_raw_parts(self.entries, self.len) }
    }
}

/// Answers the owner's requests until it is gone.
unsafe fn serve(socket: i32, table: &mut Table) {
    // An error the owner asked to see in place of the next receive (a test seam), and the
    // request to answer once it has been passed over.
    let mut fault = (0i32, 0u64);
    loop {
        let mut payload = [0u8; 9 + NAME_MAX];
        let mut control = [0u64; 16]; // aligned room for one SCM_RIGHTS with 4 fds
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty one.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        let faulted = fault.0 != 0;
        let n = if faulted {
            -(core::mem::replace(&mut fault.0, 0) as isize)
        } else {
            // SAFETY: recvmsg(2) into `payload` and `control`, which `msg` describes.
            unsafe {
                syscall(
                    libc::SYS_recvmsg,
                    &[
                        socket as usize,
                        &mut msg as *mut _ as usize,
                        libc::MSG_CMSG_CLOEXEC as usize,
                    ],
                )
            }
        };
        // SAFETY (the rest of the loop): `msg` is the header recvmsg filled (or an empty one).
        unsafe {
            let n = match classify(socket, n, &msg) {
                Received::Message(n) => n,
                Received::OwnerGone => return,
                Received::Nothing => {
                    if faulted {
                        answer(socket, fault.1, 0);
                    }
                    continue;
                }
            };
            if n < 9 {
                close_received(&msg);
                continue;
            }
            let mut id_bytes = [0u8; 8];
            id_bytes.copy_from_slice(&payload[..8]);
            let id = u64::from_ne_bytes(id_bytes);
            match payload[8] {
                REGISTER => register(socket, table, id, &payload[9..n], &msg),
                ANCHOR => {
                    close_received(&msg);
                    answer(socket, id, anchor(table, id));
                }
                UNREGISTER => {
                    close_received(&msg);
                    table.remove(id);
                }
                FAULT if n >= 13 => {
                    close_received(&msg);
                    let mut errno = [0u8; 4];
                    errno.copy_from_slice(&payload[9..13]);
                    fault = (i32::from_ne_bytes(errno), id);
                }
                _ => close_received(&msg),
            }
        }
    }
}

/// `REGISTER`: keeps a cgroup herd's four descriptors (kill, events, parent, home) and its
/// `name`, and answers 0, or closes them and answers with an errno.
unsafe fn register(socket: i32, table: &mut Table, id: u64, name: &[u8], msg: &libc::msghdr) {
    // SAFETY: `msg` is the header recvmsg filled; `four_fds` points into its control buffer.
    unsafe {
        let Some(fds) = four_fds(msg) else {
            close_received(msg);
            answer(socket, id, -libc::EINVAL);
            return;
        };
        let mut entry = Entry {
            id,
            kill: *fds,
            events: *fds.add(1),
            parent: *fds.add(2),
            home: *fds.add(3),
            pgid: -1,
            name: [0; NAME_MAX + 1],
        };
        entry.name[..name.len()].copy_from_slice(name);
        if !name.is_empty() && table.push(entry) {
            answer(socket, id, 0);
        } else {
            close_entry(&entry);
            answer(socket, id, -libc::ENOSPC);
        }
    }
}

/// `ANCHOR`: starts an anchor, a child that leads a new process group and exits; the group id
/// (its pid) lives as long as the sentinel does not reap it. Returns the group id, or `-errno`.
fn anchor(table: &mut Table, id: u64) -> i32 {
    match clone_anchor() {
        Ok(cloned) => {
            // The pid is what we keep; the pidfd would only be one more fd.
            drop(cloned.pidfd);
            let entry = Entry {
                id,
                kill: -1,
                events: -1,
                parent: -1,
                home: -1,
                pgid: cloned.pid,
                name: [0; NAME_MAX + 1],
            };
            if table.push(entry) {
                cloned.pid
            } else {
                reap_anchor(cloned.pid);
                -libc::ENOSPC
            }
        }
        Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Kills every herd: a process group by its anchor's group id, a cgroup by `cgroup.kill`.
unsafe fn kill_all(table: &Table) {
    for entry in table.entries() {
        // SAFETY: kill(2) of a group our unreaped anchor holds (so it cannot be a stranger's),
        // or write(2) of a static byte to our own descriptor.
        unsafe {
            if entry.pgid > 0 {
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
    }
}

/// Once each herd is empty: reaps its anchor, or removes its cgroup and what a herd made below.
unsafe fn clean_up(table: &Table) {
    for entry in table.entries() {
        // SAFETY: our own descriptors, and `name` is NUL-terminated.
        unsafe {
            if entry.pgid > 0 {
                reap_anchor(entry.pgid);
            } else if wait_empty(entry.events) {
                remove_below(entry.home, 0);
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
    }
}

/// What the result `n` of recvmsg(2) on `socket` means. Only the end of the stream, or a
/// connection reset, is the owner's death; any other error is passed over (after a short wait,
/// so that one that persists does not spin).
unsafe fn classify(socket: i32, n: isize, msg: &libc::msghdr) -> Received {
    const CUT_SHORT: i32 = libc::MSG_TRUNC | libc::MSG_CTRUNC;
    if n > 0 {
        if msg.msg_flags & CUT_SHORT != 0 {
            // SAFETY: `msg` is the header recvmsg filled.
            unsafe { close_received(msg) };
            return Received::Nothing;
        }
        return Received::Message(n as usize);
    }
    if n == -(libc::ECONNRESET as isize) {
        return Received::OwnerGone;
    }
    // SAFETY: ppoll(2) on one pollfd, with a timespec on the stack.
    let hung_up = unsafe {
        let mut pollfd = libc::pollfd {
            fd: socket,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // A zero-length message reads as 0 too; only a closed peer also raises POLLRDHUP.
        let wait = if n == 0 || n == -(libc::EINTR as isize) {
            [0usize, 0]
        } else {
            [0usize, 10_000_000] // 10 ms
        };
        syscall(
            libc::SYS_ppoll,
            &[
                &mut pollfd as *mut _ as usize,
                1,
                wait.as_ptr() as usize,
                0,
                8,
            ],
        );
        pollfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
    };
    if n == 0 && hung_up {
        Received::OwnerGone
    } else {
        Received::Nothing
    }
}

/// The four descriptors of a `REGISTER`, if its one control message holds exactly that.
unsafe fn four_fds(msg: &libc::msghdr) -> Option<*const i32> {
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || (*cmsg).cmsg_len != libc::CMSG_LEN(4 * size_of::<i32>() as u32) as usize
            || !libc::CMSG_NXTHDR(msg, cmsg).is_null()
        {
            return None;
        }
        Some(libc::CMSG_DATA(cmsg) as *const i32)
    }
}

/// Closes every descriptor a message carried (one the sentinel does not keep).
unsafe fn close_received(msg: &libc::msghdr) {
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled; the descriptors in it
    // are this process's, just received.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const i32;
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len - header) / size_of::<i32>();
                for i in 0..count {
                    syscall(libc::SYS_close, &[*data.add(i) as usize]);
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}

/// Sends `(id, value)` to the owner without waiting: an owner that reads no answers does not
/// hold the sentinel up (it times out waiting instead).
fn answer(socket: i32, id: u64, value: i32) {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&id.to_ne_bytes());
    bytes[8..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: send(2) of a stack buffer on our socket.
    unsafe {
        syscall(
            libc::SYS_sendto,
            &[
                socket as usize,
                bytes.as_ptr() as usize,
                bytes.len(),
                (libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as usize,
                0,
                0,
            ],
        );
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

/// Removes every cgroup below the directory open as `dir`: the herds in a home, whether or not
/// the owner's reaper had got to them, and any cgroup a herd made inside itself. Passes are
/// repeated until one removes nothing, since a directory read while entries go may skip some.
unsafe fn remove_below(dir: i32, depth: u32) {
    loop {
        // SAFETY: lseek(2) and getdents64(2) on our directory, into a buffer of the given size.
        let removed = unsafe {
            syscall(libc::SYS_lseek, &[dir as usize, 0, libc::SEEK_SET as usize]);
            remove_pass(dir, depth)
        };
        if removed == 0 {
            return;
        }
    }
}

/// One pass over the directory; returns how many cgroups it removed.
unsafe fn remove_pass(dir: i32, depth: u32) -> usize {
    let mut removed = 0;
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
            return removed;
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
                if kind == libc::DT_DIR && *name != b'.' && remove_cgroup(dir, name, depth) {
                    removed += 1;
                }
                offset += reclen.max(1);
            }
        }
    }
}

/// Removes cgroup `name` in `dir`, and first what is below it if it has children.
unsafe fn remove_cgroup(dir: i32, name: *const u8, depth: u32) -> bool {
    // SAFETY: unlinkat(2) and openat(2) with a NUL-terminated name from getdents64.
    unsafe {
        let rmdir = || {
            syscall(
                libc::SYS_unlinkat,
                &[dir as usize, name as usize, libc::AT_REMOVEDIR as usize],
            )
        };
        let ret = rmdir();
        if ret == 0 {
            return true;
        }
        if ret != -(libc::EBUSY as isize) && ret != -(libc::ENOTEMPTY as isize) {
            return false;
        }
        if depth >= MAX_DEPTH {
            return false;
        }
        let child = syscall(
            libc::SYS_openat,
            &[
                dir as usize,
                name as usize,
                (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as usize,
            ],
        );
        if child < 0 {
            return false;
        }
        remove_below(child as i32, depth + 1);
        syscall(libc::SYS_close, &[child as usize]);
        rmdir() == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructor's whole cost in a program that is not the sentinel is this scan.
    #[test]
    fn a_program_that_is_not_the_sentinel_goes_on_to_main() {
        let runs = 1000;
        let started = std::time::Instant::now();
        for _ in 0..runs {
            // SAFETY: `environ` is read as libc keeps it; nothing in this crate's tests
            // changes the environment.
            assert_eq!(unsafe { marked_socket() }, None);
        }
        let each = started.elapsed() / runs;
        println!(
            "one scan of {} variables: {each:?}",
            std::env::vars_os().count()
        );
        assert!(each < std::time::Duration::from_millis(1), "{each:?}");
    }

    #[test]
    fn only_a_seqpacket_socket_is_taken_for_the_sentinels() {
        let (a, _b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .expect("a socket pair");
        use std::os::fd::AsRawFd;
        assert_eq!(
            socket_option(a.as_raw_fd(), libc::SO_TYPE),
            Some(libc::SOCK_STREAM)
        );
        assert_eq!(socket_option(-1, libc::SO_TYPE), None);
    }
}
