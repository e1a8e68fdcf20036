//! Owner death: when this process dies — SIGKILL and abort included — every live herd dies too,
//! and its cgroup is removed.
//!
//! A sentinel process is started on the first herd. For a cgroup herd it holds the home's
//! `cgroup.kill`, `cgroup.events` and directories, received over a `SOCK_SEQPACKET` socket whose
//! other end only this process holds. For a process-group herd it makes the group's anchor
//! itself (see `group.rs`), so the anchor's zombie — and with it the group id — is held by the
//! sentinel, and outlives this process. One anchor is kept ordered ahead, so that a new
//! process-group herd takes one at hand instead of waiting for the sentinel to wake up, make it
//! and answer. When the socket's other end closes (this process is gone, however it went), the
//! sentinel kills every herd it holds, removes their cgroups once empty, releases the anchors,
//! and exits (`sentinel_process.rs`). `PR_SET_PDEATHSIG` would not do: it reaches only the
//! direct child, and fires when the spawning *thread* exits.
//!
//! The sentinel is not a fork of this program: a vfork-style child (`clone.rs`) execs this
//! program's own image (`/proc/self/exe`, opened first) as `sheepdog-sentinel`, with the socket
//! as fd 3 and [`MARKER`] in its environment, and sheepdog's constructor takes over before
//! `main`. So no page table is copied whatever this program's size, the sentinel has a small
//! address space of its own, and `ps` shows its name, not this program's command line. It
//! leads a process group of its own (a CI runner's `kill -KILL -<pgid>` of the owner's group
//! must not take it down with the owner) but stays in the owner's session (children must be
//! able to join the groups it anchors). Where the image cannot be exec'd, or does not hold
//! sheepdog (a shared library loaded by another program), there is no sentinel: herds say
//! why in their `Containment`.
//!
//! Every exchange with the sentinel is bounded: sends never block (what cannot be sent yet is
//! kept in order, or the herd goes unguarded), and an answer is awaited at most
//! [`ANSWER_TIMEOUT`]; a sentinel that missed one (stopped, say) is not waited for again until
//! it answers. A dead sentinel is replaced on the next call, and the homes registered with it
//! are registered again with the new one; process-group anchors it held are lost with it.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CString};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    sendmsg, socketpair, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};

use super::child::{ChildPlan, ChildReport, Stage};
use super::clone::clone_reported;
use super::process::reap_now;
use super::sentinel_process;

pub(super) const REGISTER: u8 = 1;
pub(super) const UNREGISTER: u8 = 2;
/// Make an anchor; the sentinel answers with the request's id and the anchor's pid (the group
/// id), or `-errno`.
pub(super) const ANCHOR: u8 = 3;
/// Take the `errno` that follows as the result of the next receive, and answer once that has
/// been passed over (a test seam).
pub(super) const FAULT: u8 = 4;
/// The id of the sentinel's first message, which carries its pid: it runs.
pub(super) const READY: u64 = 0;
/// Longest cgroup name the sentinel stores (ours are `sheepdog-<pid>`).
pub(super) const NAME_MAX: usize = 64;
/// The environment variable that makes a process the sentinel; its value is the socket's fd.
pub(super) const MARKER: &str = "SHEEPDOG_SENTINEL";
/// The socket's descriptor in the sentinel.
const SOCKET_FD: i32 = 3;
/// The sentinel's `argv[0]`; its `comm` is the first 15 bytes.
const NAME: &str = "sheepdog-sentinel";
/// How many anchors the owner keeps ordered ahead (in hand or on their way). Each is a zombie
/// the sentinel holds until this process exits; one is enough for herds made one after another.
const ANCHORS_AHEAD: usize = 1;
/// How long a new sentinel has to say it runs (an exec and the dynamic loader, under load).
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer is awaited (about 200 µs when the sentinel is not held up).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How many messages without descriptors are kept while the socket is full.
const BACKLOG_MAX: usize = 4096;

static STATE: Mutex<State> = Mutex::new(State {
    current: None,
    disabled: None,
    reason: None,
    durable: Vec::new(),
});
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct State {
    /// The running sentinel, if one was started.
    current: Option<Channel>,
    /// Why no sentinel can be started in this process (decided once: every attempt would cost
    /// an exec or a timeout).
    disabled: Option<String>,
    /// Why the last herd that asked got no guard.
    reason: Option<String>,
    /// Registrations a replacement sentinel gets again (the homes), with descriptors of our own.
    durable: Vec<Durable>,
}

struct Durable {
    id: u64,
    fds: [OwnedFd; 4],
    name: Vec<u8>,
}

/// The owner's end of one sentinel.
struct Channel {
    socket: OwnedFd,
    pid: i32,
    /// Anchors received and not yet handed out: `(registration, pid)`.
    anchors: VecDeque<(u64, i32)>,
    /// `ANCHOR` requests sent (or queued) whose answer has not been read yet.
    ordered: Vec<u64>,
    /// Answers to `awaited` requests read and not yet claimed: `(id, 0 or -errno)`.
    acks: Vec<(u64, i32)>,
    /// Requests answered one by one (`REGISTER`, `FAULT`; `READY` at the start) whose answer
    /// is still awaited; their answers go to `acks`.
    awaited: Vec<u64>,
    /// Messages without descriptors that found the socket full, in order.
    backlog: VecDeque<Vec<u8>>,
    /// An answer was not there in time; nothing is waited for until one arrives.
    stalled: bool,
    /// The sentinel is gone (end of file, or a send refused as to a closed peer).
    dead: bool,
}

/// Why an exchange with the sentinel did not give what was asked.
enum Failure {
    /// It is gone.
    Dead,
    /// It did not answer in time, or its socket is full: it is stopped or starved.
    Stalled,
    /// It answered no, or the system refused a call.
    Refused(io::Error),
}

/// What the sentinel needs to kill a herd and remove its cgroup.
pub(crate) struct Guarded<'a> {
    pub kill: BorrowedFd<'a>,
    pub events: BorrowedFd<'a>,
    /// The directory that holds the cgroup, and the cgroup's own directory and name there.
    pub parent: BorrowedFd<'a>,
    pub home: BorrowedFd<'a>,
    pub name: &'a [u8],
}

fn state() -> MutexGuard<'static, State> {
    crate::lock(&STATE)
}

/// Whether a sentinel runs (starting it, or a replacement for a dead one, on need).
///
/// Asked at every herd's making: where another thread holds the state right now (asking the
/// same, or talking to the sentinel), its last answer is taken rather than waited for, so that
/// concurrent spawns do not queue behind each other's look at the socket.
pub(crate) fn available() -> bool {
    /// The last answer: 0 none yet, 1 yes, 2 no.
    static LAST: AtomicU8 = AtomicU8::new(0);
    let mut state = match STATE.try_lock() {
        Ok(state) => state,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => match LAST.load(Ordering::Relaxed) {
            0 => state(),
            last => return last == 1,
        },
    };
    let available = state.channel().is_some();
    LAST.store(if available { 1 } else { 2 }, Ordering::Relaxed);
    available
}

/// Why herds made now are not guarded against this process's death (the last failure seen).
pub(crate) fn unguarded_reason() -> String {
    unguarded_reason_locked(&state())
}

fn unguarded_reason_locked(state: &State) -> String {
    state
        .disabled
        .clone()
        .or_else(|| state.reason.clone())
        .unwrap_or_else(|| "the owner-death sentinel could not take this herd".into())
}

/// Hands a herd to the sentinel and waits (bounded) for its answer; returns its registration,
/// or `None` (logged, see [`unguarded_reason`]) if the herd is not protected against the
/// owner's death. The sentinel keeps its own copies of the descriptors.
pub(crate) fn register(herd: Guarded<'_>) -> Option<u64> {
    if herd.name.is_empty() || herd.name.len() > NAME_MAX {
        state().reason = Some(format!("a cgroup name not of 1 to {NAME_MAX} bytes"));
        return None;
    }
    let duplicate = || -> io::Result<[OwnedFd; 4]> {
        Ok([
            herd.kill.try_clone_to_owned()?,
            herd.events.try_clone_to_owned()?,
            herd.parent.try_clone_to_owned()?,
            herd.home.try_clone_to_owned()?,
        ])
    };
    let durable = match duplicate() {
        Ok(fds) => Durable {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            fds,
            name: herd.name.to_vec(),
        },
        Err(err) => {
            state().reason = Some(format!(
                "cannot hand a cgroup to the owner-death sentinel: {err}"
            ));
            return None;
        }
    };
    let mut state = state();
    let id = durable.id;
    let result = state.exchange("take a herd", |channel| channel.register(&durable));
    result.ok().map(|()| {
        state.durable.push(durable);
        id
    })
}

/// Takes a process-group anchor from the sentinel (the one ordered ahead, if it has arrived);
/// returns the registration and the group id, or `None` (then the caller anchors the group
/// itself, unprotected against its own death).
pub(crate) fn anchor() -> Option<(u64, i32)> {
    state()
        .exchange("make a process group's anchor", Channel::take_anchor)
        .ok()
}

/// The process-group herd registered as `id` is gone: the sentinel releases its anchor, and
/// makes the next one ahead.
pub(crate) fn release_anchor(id: u64) {
    unregister(id);
    if let Some(channel) = state().current.as_mut().filter(|c| !c.dead) {
        // A failure shows at the next herd, which asks anyway.
        let _ = channel.order_ahead();
    }
}

/// The herd was removed normally: the sentinel forgets it.
pub(crate) fn unregister(id: u64) {
    state().unregister(id);
}

/// The running sentinel's pid (for tests), starting one on need.
pub(crate) fn pid() -> Option<i32> {
    state().channel().map(|channel| channel.pid)
}

/// Makes the sentinel take `errno` as the result of its next receive (for tests), and waits
/// (bounded) until it has said it passed over it.
pub(crate) fn inject_receive_error(errno: i32) -> io::Result<()> {
    let mut state = state();
    let Some(channel) = state.channel() else {
        return Err(io::Error::other(unguarded_reason_locked(&state)));
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut message = id.to_ne_bytes().to_vec();
    message.push(FAULT);
    message.extend_from_slice(&errno.to_ne_bytes());
    channel.awaited.push(id);
    let answered = channel
        .send(&message, &[])
        .and_then(|()| channel.wait_until(ANSWER_TIMEOUT, |c| c.acks.iter().any(|a| a.0 == id)));
    channel.acks.retain(|a| a.0 != id);
    answered.map_err(|failure| match failure {
        Failure::Dead => io::Error::new(io::ErrorKind::BrokenPipe, "the sentinel is gone"),
        Failure::Stalled => io::Error::new(io::ErrorKind::TimedOut, "the sentinel did not answer"),
        Failure::Refused(err) => err,
    })
}

impl State {
    /// The live sentinel, started (or replaced) on need; `None` with `disabled` or `reason`
    /// set.
    fn channel(&mut self) -> Option<&mut Channel> {
        if self.disabled.is_some() {
            return None;
        }
        let alive = match self.current.as_mut() {
            Some(channel) => channel.drain().is_ok(),
            None => false,
        };
        if !alive {
            if let Some(dead) = self.current.take() {
                tracing::warn!(
                    pid = dead.pid,
                    "sheepdog: the owner-death sentinel is gone; starting another (process-group \
                     herds it held are no longer guarded)",
                );
            }
            match start() {
                Ok(channel) => {
                    self.current = Some(channel);
                    self.register_again();
                }
                Err((why, lasting)) => {
                    tracing::warn!(
                        reason = %why,
                        "sheepdog: no owner-death sentinel; herds outlive a killed owner",
                    );
                    if lasting {
                        self.disabled = Some(why);
                    } else {
                        self.reason = Some(why);
                    }
                    return None;
                }
            }
        }
        self.current.as_mut()
    }

    /// Runs `f` with the live sentinel; a sentinel found dead is replaced and `f` tried once
    /// more. On failure, the reason is kept and logged.
    fn exchange<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Channel) -> Result<T, Failure>,
    ) -> Result<T, ()> {
        for _ in 0..2 {
            let Some(channel) = self.channel() else {
                return Err(());
            };
            let failure = match f(channel) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let why = match failure {
                Failure::Dead => {
                    channel.dead = true;
                    continue;
                }
                Failure::Stalled => {
                    let first = !channel.stalled;
                    channel.stalled = true;
                    let why = format!(
                        "the owner-death sentinel (pid {}) did not answer within {:?} (stopped?)",
                        channel.pid, ANSWER_TIMEOUT
                    );
                    if first {
                        tracing::warn!("sheepdog: {why}; herds go unguarded until it answers");
                    }
                    why
                }
                Failure::Refused(err) => {
                    let why = format!("the owner-death sentinel cannot {what}: {err}");
                    tracing::warn!("sheepdog: {why}");
                    why
                }
            };
            self.reason = Some(why);
            return Err(());
        }
        self.reason = Some("the owner-death sentinel died twice in a row".into());
        Err(())
    }

    /// Gives a replacement sentinel the registrations the dead one held.
    fn register_again(&mut self) {
        let Some(channel) = self.current.as_mut() else {
            return;
        };
        for durable in &self.durable {
            if channel.register(durable).is_err() {
                tracing::warn!(
                    "sheepdog: a new owner-death sentinel did not take a home back; its herds \
                     outlive a killed owner",
                );
            }
        }
    }

    fn unregister(&mut self, id: u64) {
        self.durable.retain(|durable| durable.id != id);
        if let Some(channel) = self.current.as_mut().filter(|c| !c.dead) {
            let mut message = id.to_ne_bytes().to_vec();
            message.push(UNREGISTER);
            // Never blocks; a sentinel gone or stuck for good keeps what it holds until
            // this process exits, which only kills what is already gone.
            let _ = channel.send(&message, &[]);
        }
    }
}

impl Channel {
    fn register(&mut self, herd: &Durable) -> Result<(), Failure> {
        if self.stalled && !self.heard_from()? {
            return Err(Failure::Stalled);
        }
        let mut message = Vec::with_capacity(9 + herd.name.len());
        message.extend_from_slice(&herd.id.to_ne_bytes());
        message.push(REGISTER);
        message.extend_from_slice(&herd.name);
        self.send(&message, &herd.fds.each_ref().map(AsFd::as_fd))?;
        self.awaited.push(herd.id);
        let answered = self.wait_until(ANSWER_TIMEOUT, |c| c.acks.iter().any(|a| a.0 == herd.id));
        if let Err(failure) = answered {
            // A sentinel that wakes up later drops it again, in order.
            self.awaited.retain(|&id| id != herd.id);
            let mut cancel = herd.id.to_ne_bytes().to_vec();
            cancel.push(UNREGISTER);
            let _ = self.send(&cancel, &[]);
            return Err(failure);
        }
        let index = self.acks.iter().position(|a| a.0 == herd.id);
        let (_, answer) = self.acks.swap_remove(index.unwrap_or_default());
        match answer {
            0 => Ok(()),
            errno => Err(Failure::Refused(io::Error::from_raw_os_error(-errno))),
        }
    }

    /// The oldest anchor that has arrived, else the next to arrive. With none on its way, orders
    /// it and the one ahead in the same wake-up of the sentinel.
    fn take_anchor(&mut self) -> Result<(u64, i32), Failure> {
        self.drain()?;
        if self.anchors.is_empty() {
            if self.stalled {
                return Err(Failure::Stalled);
            }
            while self.ordered.len() < 1 + ANCHORS_AHEAD {
                self.order_anchor()?;
            }
            self.wait_until(ANSWER_TIMEOUT, |c| !c.anchors.is_empty())?;
        }
        let (id, pgid) = self.anchors.pop_front().ok_or(Failure::Stalled)?;
        if pgid <= 0 {
            return Err(Failure::Refused(io::Error::from_raw_os_error(-pgid)));
        }
        Ok((id, pgid))
    }

    /// Orders anchors until [`ANCHORS_AHEAD`] are in hand or on their way.
    fn order_ahead(&mut self) -> Result<(), Failure> {
        while self.anchors.len() + self.ordered.len() < ANCHORS_AHEAD {
            self.order_anchor()?;
        }
        Ok(())
    }

    /// Asks the sentinel for one more anchor, without waiting for it.
    fn order_anchor(&mut self) -> Result<(), Failure> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut message = id.to_ne_bytes().to_vec();
        message.push(ANCHOR);
        self.send(&message, &[])?;
        self.ordered.push(id);
        Ok(())
    }

    /// Sends one message without blocking. One without descriptors that finds the socket full
    /// waits in the backlog, behind those already there; one with descriptors fails.
    fn send(&mut self, message: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Failure> {
        self.flush()?;
        if self.backlog.is_empty() {
            match send_now(&self.socket, message, fds) {
                Ok(()) => return Ok(()),
                Err(Errno::AGAIN) => {}
                Err(err) => return Err(self.failed_send(err)),
            }
        }
        if !fds.is_empty() || self.backlog.len() >= BACKLOG_MAX {
            return Err(Failure::Stalled);
        }
        self.backlog.push_back(message.to_vec());
        Ok(())
    }

    /// Sends what the backlog holds, as far as the socket takes it now.
    fn flush(&mut self) -> Result<(), Failure> {
        while let Some(queued) = self.backlog.front() {
            match send_now(&self.socket, queued, &[]) {
                Ok(()) => drop(self.backlog.pop_front()),
                Err(Errno::AGAIN) => break,
                Err(err) => return Err(self.failed_send(err)),
            }
        }
        Ok(())
    }

    fn failed_send(&mut self, err: Errno) -> Failure {
        match err {
            Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN => {
                self.dead = true;
                Failure::Dead
            }
            err => Failure::Refused(err.into()),
        }
    }

    /// Reads every answer already there, and sends what waits in the backlog (among it,
    /// perhaps, the requests whose answers would end a stall); `Err(Dead)` if the sentinel is
    /// gone.
    fn drain(&mut self) -> Result<(), Failure> {
        if self.dead {
            return Err(Failure::Dead);
        }
        while self.receive(Duration::ZERO)? {}
        self.flush()
    }

    /// Whether the sentinel has answered anything since it stalled (reading what is there).
    fn heard_from(&mut self) -> Result<bool, Failure> {
        self.drain()?;
        Ok(!self.stalled)
    }

    /// Reads answers until `done` holds, for at most `limit`.
    fn wait_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&Channel) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Stalled);
            }
            self.receive(left)?;
        }
        Ok(())
    }

    /// Reads one answer, waiting at most `wait` for it; `false` if none came.
    fn receive(&mut self, wait: Duration) -> Result<bool, Failure> {
        if !wait.is_zero() {
            let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(false),
                Ok(_) | Err(Errno::INTR) => {}
                Err(err) => return Err(Failure::Refused(err.into())),
            }
        }
        let mut answer = [0u8; 12];
        match rustix::net::recv(&self.socket, &mut answer, RecvFlags::DONTWAIT) {
            Ok((12, _)) => {
                let (id, value) = answer.split_at(8);
                let id = u64::from_ne_bytes(id.try_into().unwrap_or_default());
                let value = i32::from_ne_bytes(value.try_into().unwrap_or_default());
                self.take_answer(id, value);
                Ok(true)
            }
            // The sentinel sends nothing else; 0 is the end of the stream.
            Ok((0, _)) | Err(Errno::CONNRESET) => {
                self.dead = true;
                Err(Failure::Dead)
            }
            Ok(_) => Ok(true),
            Err(Errno::AGAIN | Errno::INTR) => Ok(false),
            Err(err) => Err(Failure::Refused(err.into())),
        }
    }

    fn take_answer(&mut self, id: u64, value: i32) {
        self.stalled = false;
        if let Some(index) = self.awaited.iter().position(|&r| r == id) {
            self.awaited.swap_remove(index);
            self.acks.push((id, value));
        } else if let Some(index) = self.ordered.iter().position(|&o| o == id) {
            self.ordered.swap_remove(index);
            self.anchors.push_back((id, value));
        }
    }
}

fn send_now(socket: &OwnedFd, message: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS);
    }
    sendmsg(
        socket,
        &[IoSlice::new(message)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    Ok(())
}

/// Whether a failure to start a sentinel will fail the same way next time: only a shortage
/// of processes, memory or descriptors passes.
fn lasting(err: &io::Error) -> bool {
    !matches!(
        err.raw_os_error(),
        Some(
            libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::EINTR
        )
    )
}

/// Starts a sentinel and waits (bounded) until it says it runs; the error says why not, for
/// `Containment`, and whether trying again is pointless.
fn start() -> Result<Channel, (String, bool)> {
    let started = Instant::now();
    if !linked_into_main_program() {
        return Err((
            "sheepdog is not linked into this process's main program (a shared library loaded \
             by another program?), whose image the owner-death sentinel runs"
                .into(),
            true,
        ));
    }
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|err| {
        let err = io::Error::from(err);
        let lasting = lasting(&err);
        (
            format!("cannot make the owner-death sentinel's socket: {err}"),
            lasting,
        )
    })?;
    let (pid, pidfd) = exec_sentinel(theirs.as_fd()).map_err(|err| {
        let lasting = lasting(&err);
        (
            format!("cannot start the owner-death sentinel: {err}"),
            lasting,
        )
    })?;
    drop(theirs);
    let mut channel = Channel {
        socket: ours,
        pid,
        anchors: VecDeque::new(),
        ordered: Vec::new(),
        acks: Vec::new(),
        awaited: vec![READY],
        backlog: VecDeque::new(),
        stalled: false,
        dead: false,
    };
    let ready = channel.wait_until(START_TIMEOUT, |c| c.acks.iter().any(|a| a.0 == READY));
    let failure = match ready {
        Ok(()) => None,
        Err(Failure::Dead) => Some(
            "the owner-death sentinel exited at its start (does this program's image run \
             sheepdog's constructor?)"
                .to_owned(),
        ),
        Err(Failure::Stalled) => Some(format!(
            "the owner-death sentinel did not start within {START_TIMEOUT:?}"
        )),
        Err(Failure::Refused(err)) => {
            Some(format!("cannot hear from the owner-death sentinel: {err}"))
        }
    };
    if let Some(why) = failure {
        if let Some(pidfd) = &pidfd {
            let _ = super::process::pidfd_send_signal(pidfd, crate::signal::Signal::KILL);
        }
        let _ = reap_now(pid, pidfd.as_ref());
        return Err((why, true));
    }
    channel.acks.clear();
    // It is our child: should it ever exit before us, the reaper collects it.
    match pidfd {
        Some(pidfd) => super::reaper::adopt_sentinel(pidfd),
        None => super::reaper::adopt_pid(pid),
    }
    tracing::debug!(pid, elapsed = ?started.elapsed(), "sheepdog: owner-death sentinel started");
    Ok(channel)
}

/// Execs this program's image as the sentinel, with `socket` as its fd [`SOCKET_FD`]; returns
/// once it has exec'd.
fn exec_sentinel(socket: BorrowedFd<'_>) -> io::Result<(i32, Option<OwnedFd>)> {
    let exe = rustix::fs::open(
        "/proc/self/exe",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| io::Error::new(err.kind(), format!("cannot open /proc/self/exe: {err}")))?;
    // Above the socket's place, so that installing the socket clobbers neither.
    let exe = rustix::io::fcntl_dupfd_cloexec(&exe, SOCKET_FD + 1)?;
    let socket = rustix::io::fcntl_dupfd_cloexec(socket, SOCKET_FD + 1)?;
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let null = rustix::io::fcntl_dupfd_cloexec(&null, SOCKET_FD + 1)?;

    let program = CString::new(format!("/proc/self/fd/{}", exe.as_raw_fd()))?;
    let candidates = [program.as_ptr(), ptr::null()];
    let argv0 = CString::new(NAME)?;
    let argv = [argv0.as_ptr(), ptr::null()];
    // This program's environment (the dynamic loader may need its variables), and the marker.
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| key.as_bytes() != MARKER.as_bytes())
        .filter_map(|(key, value)| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    env.push(CString::new(format!("{MARKER}={SOCKET_FD}"))?);
    let envp: Vec<_> = env
        .iter()
        .map(|s| s.as_ptr())
        .chain([ptr::null()])
        .collect();
    let passed = [[socket.as_raw_fd(), SOCKET_FD]];

    let mut report = ChildReport::default();
    let mut plan = ChildPlan {
        candidates: candidates.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: c"/".as_ptr(),
        stdio: [null.as_raw_fd(); 3],
        passed_fds: passed.as_ptr(),
        passed_fds_len: passed.len(),
        process_group: 0,
        ..ChildPlan::new(&mut report)
    };
    let (cloned, report) = clone_reported(&mut plan, None)?;
    if report.stage != Stage::None {
        let _ = reap_now(cloned.pid, cloned.pidfd.as_ref());
        let err = io::Error::from_raw_os_error(report.errno);
        if !lasting(&err) {
            return Err(err);
        }
        return Err(io::Error::new(
            err.kind(),
            format!("{:?} failed for /proc/self/exe: {err}", report.stage),
        ));
    }
    Ok((cloned.pid, cloned.pidfd))
}

/// Whether sheepdog's constructor is part of the main program's image (the first object the
/// dynamic loader lists), so that exec'ing that image runs it. Reading [`sentinel_process::ENTRY`]
/// here also keeps the linker from leaving it out.
fn linked_into_main_program() -> bool {
    // SAFETY: a volatile read of a static function pointer.
    let entry = unsafe { ptr::read_volatile(&sentinel_process::ENTRY) } as usize;
    let mut found = (entry, false);
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr(3) passes a valid `info` (with `dlpi_phnum` program headers)
        // and our `data`.
        unsafe {
            let found = &mut *(data as *mut (usize, bool));
            let info = &*info;
            for i in 0..usize::from(info.dlpi_phnum) {
                let header = &*info.dlpi_phdr.add(i);
                let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
                if header.p_type == libc::PT_LOAD
                    && (start..start.wrapping_add(header.p_memsz as usize)).contains(&found.0)
                {
                    found.1 = true;
                }
            }
        }
        1 // the first object is the main program: stop there
    }
    // SAFETY: the callback only reads what the loader hands it and writes `found`.
    unsafe { libc::dl_iterate_phdr(Some(first_object), &mut found as *mut _ as *mut c_void) };
    found.1
}
