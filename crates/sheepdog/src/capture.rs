//! The capture engine of `Command::output`, `Child::wait_with_output` and `Pipeline::output`:
//! read a run's stdout and stderr (and feed its stdin) while it runs, wait for it, give the
//! streams a bounded drain once it has ended, and stop the tree at a capture limit.
//!
//! A stream is read through tokio's reactor while it is small. Once it has brought
//! [`BIG_STREAM`] bytes it leaves the reactor for a thread of tokio's blocking pool, which reads
//! straight into the final buffer and sleeps in `poll(2)` between reads, as std's blocking
//! reads do: no task wake-up and no thread hand-off per pipe write. That thread also watches a
//! stop switch held by the engine, so it ends at the drain deadline, at another stream's limit,
//! and when the capture is dropped (cancelled), even while something still holds the pipe.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::command::{Command, Stdio};
use crate::output::{Ending, Feed, OverLimit};
use crate::pipe::{ChildStderr, ChildStdin, ChildStdout, PipeReader};

/// What a capture waits on and stops: one child, or a pipeline's herd.
pub(crate) trait Running {
    type Status;

    /// Waits for the run to end (cancel-safe).
    fn finish(&mut self) -> impl Future<Output = io::Result<Self::Status>> + Send;

    /// Kills the run's whole tree at once.
    fn kill_tree(&mut self) -> io::Result<()>;
}

/// The pipes of one run: read from it, and what is fed to its stdin.
pub(crate) struct Streams {
    pub(crate) stdout: Option<ChildStdout>,
    pub(crate) stderr: Option<ChildStderr>,
    pub(crate) stdin: Option<(ChildStdin, Feed)>,
}

/// What a capture brought: how the run ended, the two buffers, whether each was cut.
pub(crate) struct Captured<S> {
    pub(crate) status: S,
    pub(crate) bufs: [Vec<u8>; 2],
    pub(crate) truncated: [bool; 2],
    pub(crate) ending: Ending,
}

pub(crate) const WAIT: &str = "wait for the program";
const READ: &str = "read the program's output";

impl Command {
    /// stdin for a capture: a pipe for the `feed`, else `/dev/null` unless set.
    pub(crate) fn stdin_for_capture(&mut self, feed: bool) {
        if feed {
            self.stdin(Stdio::piped());
        } else if !self.stdio_is_set()[0] {
            self.stdin(Stdio::null());
        }
    }

    /// stdout (and stderr, if `stderr`) piped for a capture, unless set.
    pub(crate) fn outputs_for_capture(&mut self, stderr: bool) {
        let set = self.stdio_is_set();
        if !set[1] {
            self.stdout(Stdio::piped());
        }
        if stderr && !set[2] {
            self.stderr(Stdio::piped());
        }
    }
}

/// Reads `streams` into `bufs` (cleared first, capacity kept) and feeds stdin while `run`
/// runs, and waits for it. Once it has ended, the streams get `drain` to reach their ends;
/// then their readers are stopped, as [`Ending::HeldOpen`]. A stream past `limit` under
/// [`OverLimit::Fail`] stops the reading at once and kills the tree; the pipes stay open until
/// the run is waited for, so the program dies of that kill rather than of a SIGPIPE first.
///
/// Dropping the future stops every reader thread: none is left on a pipe that a descendant
/// still holds.
pub(crate) async fn capture<R: Running>(
    run: &mut R,
    streams: Streams,
    bufs: [Vec<u8>; 2],
    limit: Option<(usize, OverLimit)>,
    drain: Duration,
) -> Result<Captured<R::Status>, (&'static str, io::Error)> {
    let [out_buf, err_buf] = bufs;
    let mut out = Stream::new(streams.stdout, out_buf, limit);
    let mut err = Stream::new(streams.stderr, err_buf, limit);
    let (stop, _) = watch::channel(false);
    let (status, ending) = {
        let readers = async {
            let (read_out, read_err, fed) =
                tokio::join!(out.read(&stop), err.read(&stop), feed(streams.stdin, &stop));
            ending([read_out, read_err, fed])
        };
        let wait = run.finish();
        tokio::pin!(readers, wait);
        tokio::select! {
            ending = &mut readers => match ending? {
                Ending::Read => (Some(wait.await.map_err(|err| (WAIT, err))?), Ending::Read),
                ending => (None, ending),
            },
            done = &mut wait => {
                let done = done.map_err(|err| (WAIT, err))?;
                let ending = match tokio::time::timeout(drain, &mut readers).await {
                    Ok(ending) => ending?,
                    Err(_) => {
                        stop.send_replace(true);
                        readers.await?
                    }
                };
                (Some(done), ending)
            }
        }
    };
    let status = match status {
        Some(status) => status,
        None => {
            // A stream went past its limit while the program ran: stop the whole tree.
            run.kill_tree().map_err(|err| ("stop the program", err))?;
            run.finish().await.map_err(|err| (WAIT, err))?
        }
    };
    let (out, err) = (out.sink.finish(), err.sink.finish());
    Ok(Captured {
        status,
        bufs: [out.0, err.0],
        truncated: [out.1, err.1],
        ending,
    })
}

/// How one stream's reading ended.
enum Done {
    /// At the end of the stream.
    Ended,
    /// Stopped: by the drain deadline, or because another stream stopped the capture.
    Stopped,
}

/// Why reading stopped early.
enum Stop {
    Failed(&'static str, io::Error),
    Limit,
}

/// The capture's ending from its three parts: an error first, then a limit, then a stop.
fn ending(parts: [Result<Done, Stop>; 3]) -> Result<Ending, (&'static str, io::Error)> {
    let mut ending = Ending::Read;
    for part in parts {
        match part {
            Err(Stop::Failed(action, err)) => return Err((action, err)),
            Err(Stop::Limit) => ending = Ending::LimitExceeded,
            Ok(Done::Stopped) if ending == Ending::Read => ending = Ending::HeldOpen,
            Ok(_) => {}
        }
    }
    Ok(ending)
}

/// Waits until the capture is stopped (or the engine is gone).
async fn stopped(stop: &watch::Sender<bool>) {
    let _ = stop.subscribe().wait_for(|&stopped| stopped).await;
}

/// Writes `feed` to stdin and closes it, until the capture is stopped. A child that stops
/// reading early closes the pipe: that is its right, not an error.
async fn feed(stdin: Option<(ChildStdin, Feed)>, stop: &watch::Sender<bool>) -> Result<Done, Stop> {
    let Some((mut pipe, feed)) = stdin else {
        return Ok(Done::Ended);
    };
    let write = async {
        let written = match feed {
            Feed::Bytes(bytes) => pipe.write_all(&bytes).await,
            Feed::Reader(mut reader) => {
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = match reader.read(&mut chunk).await {
                        Ok(n) => n,
                        Err(err) => return Err(Stop::Failed("read the input", err)),
                    };
                    if n == 0 {
                        break Ok(());
                    }
                    if let Err(err) = pipe.write_all(&chunk[..n]).await {
                        break Err(err);
                    }
                }
            }
        };
        match written {
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
                Err(Stop::Failed("write the program's stdin", err))
            }
            _ => Ok(Done::Ended),
        }
    };
    let written = tokio::select! {
        written = write => written,
        () = stopped(stop) => Ok(Done::Stopped),
    };
    if written.is_err() {
        stop.send_replace(true);
    }
    written
}

/// Once a stream has brought this much, it is read on a blocking thread, its pipe is grown to
/// [`BIG_PIPE`], and its buffer is faulted in ahead while the pipe is empty.
const BIG_STREAM: usize = 1 << 20;
/// The buffer of a big stream's pipe (the default is 64 KiB): the writer blocks less, and a
/// reader that falls behind takes more per wake-up. Only big streams get it: an unprivileged
/// user's pipe buffers count against `pipe-user-pages-soft`, past which the kernel gives that
/// user's new pipes 8 KiB.
const BIG_PIPE: usize = 256 << 10;
/// How much of a big stream's buffer is faulted in ahead of the reads while the pipe is empty.
const POPULATE_AHEAD: usize = 1 << 20;
/// The least room offered to a read.
const MIN_ROOM: usize = 64 << 10;

/// One stream: its pipe (in the reactor while small, a plain descriptor once big) and where
/// its bytes go. Holds the pipe open until the capture ends.
struct Stream<P> {
    pipe: Option<P>,
    #[allow(dead_code)] // only held
    fd: Option<OwnedFd>,
    sink: Sink,
}

impl<P: PipeReader> Stream<P> {
    fn new(pipe: Option<P>, buf: Vec<u8>, limit: Option<(usize, OverLimit)>) -> Stream<P> {
        Stream {
            pipe,
            fd: None,
            sink: Sink::new(buf, limit),
        }
    }

    /// Reads the stream to its end, or until the capture is stopped; stops the capture on a
    /// limit or an error.
    async fn read(&mut self, stop: &watch::Sender<bool>) -> Result<Done, Stop> {
        let read = async {
            let Some(pipe) = self.pipe.as_mut() else {
                return Ok(Done::Ended);
            };
            let small = tokio::select! {
                small = read_small(pipe, &mut self.sink) => small?,
                () = stopped(stop) => return Ok(Done::Stopped),
            };
            match (small, self.pipe.take()) {
                (Done::Stopped, Some(pipe)) => self.read_big(pipe, stop).await,
                _ => Ok(Done::Ended),
            }
        };
        let read = read.await;
        if read.is_err() {
            stop.send_replace(true);
        }
        read
    }

    /// Moves `pipe` out of the reactor to a blocking thread, which reads it to its end or
    /// until the capture is stopped; the buffer and the pipe come back when it ends.
    async fn read_big(&mut self, pipe: P, stop: &watch::Sender<bool>) -> Result<Done, Stop> {
        let failed = |err| Stop::Failed(READ, err);
        let fd = pipe.into_fd().map_err(failed)?;
        crate::sys::set_nonblocking(fd.as_fd()).map_err(failed)?;
        // Best effort: the default buffer works, only slower.
        let _ = crate::sys::resize_pipe(fd.as_fd(), BIG_PIPE);
        let (switch, watch) = crate::sys::stop_switch().map_err(failed)?;
        let mut sink = std::mem::take(&mut self.sink);
        let mut thread = tokio::task::spawn_blocking(move || {
            let read = read_blocking(&fd, &mut sink, &watch);
            (fd, sink, read)
        });
        let joined = tokio::select! {
            joined = &mut thread => joined,
            () = stopped(stop) => {
                drop(switch);
                // A thread that never started (the blocking pool full) must not hold the
                // capture: it is cancelled, and the capture fails rather than waits. A running
                // one is not affected and ends at the switch.
                thread.abort();
                thread.await
            }
        };
        // Were this future dropped instead, `switch` would go with it and the thread would end
        // by itself.
        let (fd, sink, read) = joined.map_err(|err| failed(io::Error::other(err)))?;
        self.fd = Some(fd);
        self.sink = sink;
        read
    }
}

/// Reads `pipe` through the reactor until it ends (`Ended`) or has brought [`BIG_STREAM`]
/// bytes (`Stopped`: go on elsewhere). Cancel-safe: what was read is in `sink`.
async fn read_small(pipe: &mut impl PipeReader, sink: &mut Sink) -> Result<Done, Stop> {
    let failed = |err| Stop::Failed(READ, err);
    while sink.brought < BIG_STREAM {
        sink.make_room();
        match pipe.try_read_buf(&mut sink.buf) {
            Ok(0) => return Ok(Done::Ended),
            Ok(n) => sink.took(n)?,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::future::poll_fn(|cx| pipe.poll_read_ready(cx))
                    .await
                    .map_err(failed)?;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(failed(err)),
        }
    }
    Ok(Done::Stopped)
}

/// Reads `fd` (non-blocking) into `sink` on this (blocking) thread, to its end or until
/// `stop`'s switch is dropped. Once the pipe is found empty, the next part of the buffer is
/// faulted in, while the writer fills the pipe, and then the thread waits in `poll(2)`.
fn read_blocking(
    fd: &OwnedFd,
    sink: &mut Sink,
    stop: &crate::sys::StopWatch,
) -> Result<Done, Stop> {
    let failed = |err| Stop::Failed(READ, err);
    loop {
        sink.make_room();
        match crate::sys::read_now(fd.as_fd(), &mut sink.buf) {
            Ok(0) => return Ok(Done::Ended),
            // Read again even after a short read: the writer has often put more there by then,
            // and a thread that does not sleep needs no wake-up.
            Ok(n) => {
                sink.took(n)?;
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(failed(err)),
        }
        sink.populate_ahead();
        if !crate::sys::wait_readable(fd.as_fd(), stop).map_err(failed)? {
            return Ok(Done::Stopped);
        }
    }
}

/// Where a stream's bytes go: a buffer, and the limit on what it keeps.
#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    limit: Option<(usize, OverLimit)>,
    truncated: bool,
    /// Bytes the stream brought, kept or not.
    brought: usize,
    /// Where in `buf` the memory already faulted in ends.
    populated: usize,
}

impl Sink {
    fn new(mut buf: Vec<u8>, limit: Option<(usize, OverLimit)>) -> Sink {
        buf.clear();
        Sink {
            buf,
            limit,
            ..Sink::default()
        }
    }

    /// Makes room for the next read: the buffer grows by doubling, a big stream's at three
    /// quarters full (measured a few percent faster, see docs/decisions/), and never much past
    /// what the limit keeps.
    fn make_room(&mut self) {
        let (len, capacity) = (self.buf.len(), self.buf.capacity());
        let room = capacity - len;
        let big = self.brought >= BIG_STREAM;
        if room >= MIN_ROOM / 2 && !(big && room < capacity / 4) {
            return;
        }
        let mut more = len.max(MIN_ROOM);
        if let Some((bytes, over)) = self.limit {
            let most = match over {
                OverLimit::KeepTail => bytes.saturating_mul(2).max(bytes + MIN_ROOM),
                _ => bytes,
            };
            more = more.min(most.saturating_sub(len)).max(MIN_ROOM);
        }
        if self.limit.is_some() {
            self.buf.reserve_exact(more);
        } else {
            self.buf.reserve(more);
        }
        self.populated = 0; // the spare capacity may have moved
    }

    /// Takes the `n` bytes just appended, keeping what the limit allows.
    fn took(&mut self, n: usize) -> Result<(), Stop> {
        self.brought += n;
        let Some((bytes, over)) = self.limit else {
            return Ok(());
        };
        let len = self.buf.len();
        match over {
            // Trim in batches (at twice the limit), so each byte moves at most once.
            OverLimit::KeepTail if len > bytes.saturating_mul(2).max(bytes + MIN_ROOM) => {
                self.buf.drain(..len - bytes);
                self.truncated = true;
            }
            OverLimit::KeepHead | OverLimit::Fail if len > bytes => {
                self.buf.truncate(bytes);
                self.truncated = true;
                if over == OverLimit::Fail {
                    return Err(Stop::Limit);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Faults in the spare capacity up to [`POPULATE_AHEAD`] bytes past the end
    /// (`sys::populate`): fresh memory otherwise takes a page fault per 4 KiB inside each
    /// read, while the writer waits for the pipe.
    fn populate_ahead(&mut self) {
        let len = self.buf.len();
        let ready = self.populated.max(len) - len;
        let spare = self.buf.spare_capacity_mut();
        let to = spare.len().min(POPULATE_AHEAD);
        if to > ready {
            crate::sys::populate(&mut spare[ready..to]);
        }
        self.populated = self.populated.max(len + to);
    }

    /// The buffer, with a kept tail trimmed to the limit, and whether it was cut.
    fn finish(self) -> (Vec<u8>, bool) {
        let (mut buf, mut truncated) = (self.buf, self.truncated);
        if let Some((bytes, OverLimit::KeepTail)) = self.limit {
            if buf.len() > bytes {
                buf.drain(..buf.len() - bytes);
                truncated = true;
            }
        }
        (buf, truncated)
    }
}
