//! Signals for programs that run herds: receive the ones a terminal or a supervisor sends, to
//! forward them to the tree (the same signal: Ctrl-C at sheepdog means Ctrl-C to the tree) or,
//! for SIGTSTP, to [`suspend`](crate::suspend).

use std::io;
use std::task::Poll;

use tokio::signal::unix::{signal, SignalKind};

use std::convert::Infallible;

use crate::herd::Herd;
use crate::signal::Signal;

/// The signals a program running herds should not die of but pass on: SIGINT, SIGTERM,
/// SIGHUP, SIGQUIT, and SIGTSTP (job control).
pub const FORWARDED: [Signal; 5] = [
    Signal::INT,
    Signal::TERM,
    Signal::HUP,
    Signal::QUIT,
    Signal::TSTP,
];

/// Receives [`FORWARDED`] signals once created: this process no longer dies of them (or
/// stops, for SIGTSTP); each arrives from [`Signals::recv`] instead.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let herd = sheepdog::Herd::new()?;
/// let mut signals = sheepdog::Signals::new()?;
/// loop {
///     match signals.recv().await {
///         sheepdog::Signal::TSTP => sheepdog::suspend(&[&herd]).await?,
///         signal => drop(herd.signal(signal)?),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts receiving the [`FORWARDED`] signals. Needs a tokio runtime.
    ///
    /// ```no_run
    /// # fn demo() -> std::io::Result<()> {
    /// let signals = sheepdog::Signals::new()?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> io::Result<Signals> {
        let streams = FORWARDED
            .into_iter()
            .map(|sig| {
                signal(SignalKind::from_raw(sig.as_raw()))
                    .map(|stream| (sig, stream))
                    .map_err(|err| {
                        io::Error::new(err.kind(), format!("cannot receive {sig}: {err}"))
                    })
            })
            .collect::<io::Result<_>>()?;
        Ok(Signals { streams })
    }

    /// Passes every signal received on to `herds`, the same signal to every member; on
    /// SIGTSTP, [suspends](crate::suspend) them with this program. Runs until a herd cannot be
    /// signalled; drop (or abort) it to stop forwarding. Cancel-safe between signals; cancelled
    /// while it handles SIGTSTP, it is as [`suspend`](crate::suspend).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let herd = sheepdog::Herd::new()?;
    /// let mut child = herd.spawn(&sheepdog::Command::new("make"))?;
    /// let mut signals = sheepdog::Signals::new()?;
    /// let herds = [&herd];
    /// tokio::select! {
    ///     status = child.wait() => println!("make {}", status?),
    ///     err = signals.forward_to(&herds) => return Err(err.unwrap_err()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn forward_to(&mut self, herds: &[&Herd]) -> io::Result<Infallible> {
        loop {
            match self.recv().await {
                Signal::TSTP => crate::suspend(herds).await?,
                signal => {
                    for herd in herds {
                        herd.signal(signal)?;
                    }
                }
            }
        }
    }

    /// The next signal received. Cancel-safe: a signal is never lost by abandoning the wait.
    ///
    /// ```no_run
    /// # async fn demo(mut signals: sheepdog::Signals) {
    /// let signal = signals.recv().await;
    /// println!("got {signal}");
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (sig, stream) in self.streams.iter_mut() {
                if stream.poll_recv(cx).is_ready() {
                    return Poll::Ready(*sig);
                }
            }
            Poll::Pending
        })
        .await
    }
}
