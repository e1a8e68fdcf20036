//! Readiness probes that are tried until they succeed: TCP, file, command, notify descriptor.
//! (A line probe is matched against the output as it is read, in the incarnation's loop.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::service::Ready;

pub(crate) type Probe = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The first wait between two tries; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// A future that completes once `ready` holds, or `None` for a line probe. `notify` is the read
/// end of the notify descriptor's pipe, for [`Ready::Notify`].
pub(crate) fn start(ready: &Ready, notify: Option<pipe::Receiver>) -> Option<Probe> {
    match ready {
        Ready::Line(..) => None,
        Ready::Notify(_) => Some(match notify {
            Some(receiver) => Box::pin(notified(receiver)),
            None => Box::pin(std::future::pending()),
        }),
        polled => {
            let polled = polled.clone();
            Some(Box::pin(async move {
                let mut interval = FIRST_INTERVAL;
                while !attempt(&polled).await {
                    tokio::time::sleep(interval).await;
                    interval = (interval * 2).min(MAX_INTERVAL);
                }
            }))
        }
    }
}

/// A future that completes once `probe` has failed `misses` times in a row, tried every
/// `every` (a try that takes longer than that is a miss).
pub(crate) fn watch(probe: &Ready, every: Duration, misses: u32) -> Probe {
    let probe = probe.clone();
    Box::pin(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate: the service just became ready
        let mut missed = 0;
        while missed < misses {
            ticks.tick().await;
            let live = tokio::time::timeout(every, attempt(&probe)).await;
            missed = if live == Ok(true) { 0 } else { missed + 1 };
        }
    })
}

/// One try of a probe that is polled: TCP, file, command (the others never succeed here).
async fn attempt(probe: &Ready) -> bool {
    match probe {
        Ready::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
        Ready::File(path) => {
            let path = path.clone();
            // A stat may block on a slow filesystem: not on a runtime thread.
            tokio::task::spawn_blocking(move || path.exists())
                .await
                .unwrap_or(false)
        }
        // Each run in a herd of its own, killed if this future is dropped.
        Ready::Command(cmd) => cmd.status().await.is_ok_and(|status| status.success()),
        Ready::Line(..) | Ready::Notify(_) => false,
    }
}

/// Completes when a line `READY=1` arrives on `receiver`; never, if the service closes it
/// without (the readiness timeout then decides).
async fn notified(mut receiver: pipe::Receiver) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = match receiver.read(&mut chunk).await {
            Ok(0) | Err(_) => return std::future::pending().await,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            if pending[..at] == *b"READY=1" {
                return;
            }
            pending.drain(..=at);
        }
        // A bound on what a service that never ends a line can make us hold.
        if pending.len() > 4096 {
            pending.clear();
        }
    }
}

/// A pipe for [`Ready::Notify`]: the read end for the probe, the write end for the child.
pub(crate) fn notify_pipe() -> io::Result<(pipe::Receiver, std::os::fd::OwnedFd)> {
    let (read, write) = crate::sys::pipe()?;
    Ok((pipe::Receiver::from_owned_fd(read)?, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn notify_completes_on_a_ready_line_only() {
        let (receiver, write) = notify_pipe().unwrap();
        let mut probe = start(&Ready::notify(3), Some(receiver)).unwrap();
        let mut writer = std::fs::File::from(write);
        writer.write_all(b"STATUS=starting\nREADY=").unwrap();
        let early = tokio::time::timeout(Duration::from_millis(50), &mut probe).await;
        assert!(early.is_err(), "ready before READY=1 was written");
        writer.write_all(b"1\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .expect("READY=1 was not noticed");
    }

    #[tokio::test]
    async fn tcp_completes_once_something_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut probe = start(&Ready::tcp(addr), None).unwrap();
        let early = tokio::time::timeout(Duration::from_millis(120), &mut probe).await;
        assert!(early.is_err(), "ready with nothing listening");
        let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .expect("the listener was not noticed");
    }
}
