//! Lines from a child's stdout and stderr as they arrive, tagged with their stream.
//!
//! Reads 64 KiB at a time and hands out lines as slices of its buffer: no syscall and no
//! allocation per line when a chunk holds many. A line longer than the limit comes in pieces,
//! each marked partial, so memory stays bounded.

use std::borrow::Cow;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::child::Child;
use crate::pipe::{ChildStderr, ChildStdout};

/// Which stream a [`Line`] came from.
///
/// ```
/// assert_ne!(sheepdog::StreamKind::Stdout, sheepdog::StreamKind::Stderr);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line, without its `\n` (or `\r\n`), borrowed from the reader's buffer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut child = sheepdog::Command::new("echo").arg("hi").stdout(sheepdog::Stdio::piped()).spawn()?;
/// # let mut lines = child.lines();
/// while let Some(line) = lines.next().await? {
///     println!("{:?}: {}", line.stream, line.text());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The stream it came from.
    pub stream: StreamKind,
    /// Its bytes, exactly as written (any encoding).
    pub bytes: &'a [u8],
    /// Part of a line longer than the limit; the rest follows in the next lines.
    pub partial: bool,
}

impl Line<'_> {
    /// The line as text; bytes that are not UTF-8 become U+FFFD.
    ///
    /// ```
    /// let line = sheepdog::Line { stream: sheepdog::StreamKind::Stdout, bytes: b"caf\xe9", partial: false };
    /// assert_eq!(line.text(), "caf\u{fffd}");
    /// ```
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.bytes)
    }
}

/// The longest line handed out whole (1 MiB by default).
const DEFAULT_MAX_LINE: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;

/// Reads lines from one pipe.
#[derive(Debug)]
struct LineReader<R> {
    pipe: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(pipe: R) -> LineReader<R> {
        LineReader {
            pipe,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line as `(start, end, partial)` in `buf`, or `None` at the end.
    async fn next(&mut self, max: usize) -> io::Result<Option<(usize, usize, bool)>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(at) = pending.iter().position(|&b| b == b'\n') {
                let (line_start, mut line_end) = (self.start, self.start + at);
                self.start += at + 1;
                if line_end > line_start && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                return Ok(Some((line_start, line_end, false)));
            }
            // More than `max` bytes and no newline among them: a piece of a long line. (At
            // exactly `max`, the next byte may still be its newline.)
            if pending.len() > max {
                let line_start = self.start;
                self.start += max;
                return Ok(Some((line_start, line_start + max, true)));
            }
            if self.eof {
                if pending.is_empty() {
                    return Ok(None);
                }
                // The last line, without a final newline.
                let (line_start, line_end) = (self.start, self.end);
                self.start = self.end;
                return Ok(Some((line_start, line_end, false)));
            }
            // Make room: move the pending bytes to the front, grow only for a long line.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < CHUNK {
                let grown = (self.end + CHUNK).min(max + CHUNK);
                self.buf.resize(grown.max(self.buf.len()), 0);
            }
            let n = self.pipe.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }
}

/// Lines from a child's stdout and stderr, in the order they arrive on each stream
/// ([`Child::lines`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut child = sheepdog::Command::new("sh")
///     .args(["-c", "echo building; echo warning >&2"])
///     .stdout(sheepdog::Stdio::piped())
///     .stderr(sheepdog::Stdio::piped())
///     .spawn()?;
/// let mut lines = child.lines();
/// while let Some(line) = lines.next().await? {
///     println!("[{:?}] {}", line.stream, line.text());
/// }
/// child.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Lines {
    out: Option<LineReader<ChildStdout>>,
    err: Option<LineReader<ChildStderr>>,
    max: usize,
    /// Neither stream was piped (or both were taken): every `next` says so.
    unpiped: bool,
}

impl Lines {
    /// Sets the longest line handed out whole; longer ones come in [partial](Line::partial)
    /// pieces of this size.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut child = sheepdog::Command::new("echo").arg("hi").stdout(sheepdog::Stdio::piped()).spawn()?;
    /// # let mut lines = child.lines();
    /// let lines = lines.max_line(4096);
    /// # Ok(()) }
    /// ```
    pub fn max_line(mut self, bytes: usize) -> Lines {
        self.max = bytes.max(1);
        self
    }

    /// The next line from either stream, or `None` once both have ended. Cancel-safe.
    ///
    /// An `InvalidInput` error when the child had neither stream [piped](crate::Stdio::piped)
    /// (or both had been taken) when the `Lines` was made: there was nothing to read, and
    /// quietly ending would look like a program that printed nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut child = sheepdog::Command::new("echo").arg("hi").stdout(sheepdog::Stdio::piped()).spawn()?;
    /// # let mut lines = child.lines();
    /// if let Some(line) = lines.next().await? {
    ///     println!("{}", line.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.unpiped {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no lines to read: neither stdout nor stderr of the child is piped \
                 (Stdio::piped), or both were taken",
            ));
        }
        let max = self.max;
        let (stream, range) = loop {
            let next = match (&mut self.out, &mut self.err) {
                (None, None) => return Ok(None),
                (Some(out), None) => (StreamKind::Stdout, out.next(max).await?),
                (None, Some(err)) => (StreamKind::Stderr, err.next(max).await?),
                (Some(out), Some(err)) => tokio::select! {
                    line = out.next(max) => (StreamKind::Stdout, line?),
                    line = err.next(max) => (StreamKind::Stderr, line?),
                },
            };
            match next {
                (stream, Some(range)) => break (stream, range),
                (StreamKind::Stdout, None) => self.out = None,
                (StreamKind::Stderr, None) => self.err = None,
            }
        };
        let (start, end, partial) = range;
        let buf = match stream {
            StreamKind::Stdout => &self.out.as_ref().expect("just read").buf,
            StreamKind::Stderr => &self.err.as_ref().expect("just read").buf,
        };
        Ok(Some(Line {
            stream,
            bytes: &buf[start..end],
            partial,
        }))
    }
}

impl Child {
    /// Takes the child's piped stdout and stderr and reads them as lines. With neither of
    /// them piped, [`Lines::next`] returns an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut child = sheepdog::Command::new("ls").stdout(sheepdog::Stdio::piped()).spawn()?;
    /// let mut lines = child.lines();
    /// while let Some(line) = lines.next().await? {
    ///     println!("{}", line.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lines(&mut self) -> Lines {
        let out = self.stdout.take().map(LineReader::new);
        let err = self.stderr.take().map(LineReader::new);
        Lines {
            unpiped: out.is_none() && err.is_none(),
            out,
            err,
            max: DEFAULT_MAX_LINE,
        }
    }
}
