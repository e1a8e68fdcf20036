//! The parent's ends of a child's stdio pipes, as tokio `AsyncWrite` / `AsyncRead`.
//!
//! A pipe joins tokio's reactor on first use, not at spawn, so `Command::spawn` works outside a
//! runtime and a pipe handed on to another process never touches the reactor.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// A pipe end that is registered with the reactor on first use.
#[derive(Debug)]
enum Lazy<T> {
    Fd(Option<OwnedFd>),
    Registered(T),
}

trait Register: Sized {
    fn register(fd: OwnedFd) -> io::Result<Self>;
    fn into_fd(self) -> io::Result<OwnedFd>;
}

impl Register for pipe::Sender {
    fn register(fd: OwnedFd) -> io::Result<Self> {
        pipe::Sender::from_owned_fd(fd)
    }
    fn into_fd(self) -> io::Result<OwnedFd> {
        self.into_blocking_fd()
    }
}

impl Register for pipe::Receiver {
    fn register(fd: OwnedFd) -> io::Result<Self> {
        pipe::Receiver::from_owned_fd(fd)
    }
    fn into_fd(self) -> io::Result<OwnedFd> {
        self.into_blocking_fd()
    }
}

impl<T: Register + AsFd + Unpin> Lazy<T> {
    fn get(&mut self) -> io::Result<Pin<&mut T>> {
        if let Lazy::Fd(fd) = self {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(io::Error::other(
                    "sheepdog: child pipes need a tokio runtime with IO enabled",
                ));
            }
            let fd = fd
                .take()
                .ok_or_else(|| io::Error::other("sheepdog: pipe lost by a failed registration"))?;
            *self = Lazy::Registered(T::register(fd)?);
        }
        match self {
            Lazy::Registered(inner) => Ok(Pin::new(inner)),
            Lazy::Fd(_) => unreachable!("registered above"),
        }
    }

    fn into_owned_fd(self) -> io::Result<OwnedFd> {
        match self {
            Lazy::Fd(Some(fd)) => Ok(fd),
            Lazy::Fd(None) => Err(io::Error::other(
                "sheepdog: pipe lost by a failed registration",
            )),
            Lazy::Registered(inner) => inner.into_fd(),
        }
    }
}

macro_rules! pipe_end {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(Lazy<$inner>);

        impl $name {
            pub(crate) fn new(fd: OwnedFd) -> $name {
                $name(Lazy::Fd(Some(fd)))
            }

            #[doc = concat!(
                "The pipe as a plain blocking descriptor, for example to hand it to another ",
                "process.\n\n```no_run\n# fn demo(end: sheepdog::", stringify!($name),
                ") -> std::io::Result<()> {\nlet fd: std::os::fd::OwnedFd = end.into_owned_fd()?;",
                "\n# Ok(()) }\n```"
            )]
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                self.0.into_owned_fd()
            }
        }

        impl TryFrom<$name> for crate::Stdio {
            type Error = io::Error;

            #[doc = concat!(
                "The pipe as another child's stdio, to chain children as a shell does ",
                "(`a | b`), like tokio's `TryInto<Stdio>`: the bytes go from one child to the ",
                "other through the kernel, not through this process. Fails only if the pipe ",
                "cannot be taken out of the async runtime's reactor.\n\n```\n",
                "# #[tokio::main(flavor = \"current_thread\")]\n",
                "# async fn main() -> Result<(), Box<dyn std::error::Error>> {\n",
                "use sheepdog::{Command, Stdio};\n",
                "let mut echo = Command::new(\"echo\").arg(\"hi\")",
                ".stdout(Stdio::piped()).spawn()?;\n",
                "let pipe: Stdio = echo.stdout.take().unwrap().try_into()?;\n",
                "let out = Command::new(\"tr\").args([\"a-z\", \"A-Z\"])",
                ".stdin(pipe).output().await?;\n",
                "assert_eq!(out.stdout, b\"HI\\n\");\n",
                "# Ok(()) }\n```"
            )]
            fn try_from(end: $name) -> io::Result<crate::Stdio> {
                end.into_owned_fd().map(crate::Stdio::from)
            }
        }
    };
}

pipe_end!(
    /// The write end of a child's stdin pipe. Dropping it closes the pipe (the child reads EOF).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncWriteExt;
    /// let mut child = sheepdog::Command::new("cat")
    ///     .stdin(sheepdog::Stdio::piped())
    ///     .spawn()?;
    /// let mut stdin = child.take_stdin().unwrap();
    /// stdin.write_all(b"hello").await?;
    /// drop(stdin);
    /// child.wait().await?;
    /// # Ok(()) }
    /// ```
    ChildStdin,
    pipe::Sender
);

pipe_end!(
    /// The read end of a child's stdout pipe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncReadExt;
    /// let mut child = sheepdog::Command::new("echo")
    ///     .arg("hi")
    ///     .stdout(sheepdog::Stdio::piped())
    ///     .spawn()?;
    /// let mut out = String::new();
    /// child.take_stdout().unwrap().read_to_string(&mut out).await?;
    /// assert_eq!(out, "hi\n");
    /// # Ok(()) }
    /// ```
    ChildStdout,
    pipe::Receiver
);

pipe_end!(
    /// The read end of a child's stderr pipe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncReadExt;
    /// let mut child = sheepdog::Command::new("sh")
    ///     .args(["-c", "echo oops >&2"])
    ///     .stderr(sheepdog::Stdio::piped())
    ///     .spawn()?;
    /// let mut err = String::new();
    /// child.take_stderr().unwrap().read_to_string(&mut err).await?;
    /// assert_eq!(err, "oops\n");
    /// # Ok(()) }
    /// ```
    ChildStderr,
    pipe::Receiver
);

impl AsyncWrite for ChildStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.get()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.get()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.get()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.get()?.poll_shutdown(cx)
    }
}

/// The read end of a child's pipe, as the capture engine (`capture.rs`) reads it.
pub(crate) trait PipeReader: AsyncRead + Unpin + Send + 'static {
    /// Reads what the pipe holds now into `buf`'s spare capacity, without waiting: `WouldBlock`
    /// when it holds nothing (and then [`poll_read_ready`](Self::poll_read_ready) waits).
    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Ready once the pipe holds data or its writers are gone.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The descriptor, out of the reactor (in blocking mode).
    fn into_fd(self) -> io::Result<OwnedFd>;
}

macro_rules! impl_async_read {
    ($($name:ident),*) => {$(
        impl PipeReader for $name {
            fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
                self.0.get()?.try_read_buf(buf)
            }

            fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.0.get()?.poll_read_ready(cx)
            }

            fn into_fd(self) -> io::Result<OwnedFd> {
                self.0.into_owned_fd()
            }
        }

        impl AsyncRead for $name {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.0.get()?.poll_read(cx, buf)
            }
        }
    )*};
}

impl_async_read!(ChildStdout, ChildStderr);
