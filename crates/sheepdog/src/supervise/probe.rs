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
    Some(match ready {
        Ready::Line(..) => return None,
        Ready::Tcp(addr) => {
            let addr = *addr;
            retry(move || async move { tokio::net::TcpStream::connect(addr).await.is_ok() })
        }
        Ready::File(path) => {
            let path = path.clone();
            retry(move || {
                let path = path.clone();
                // A stat may block on a slow filesystem: not on a runtime thread.
                async move {
                    tokio::task::spawn_blocking(move || path.exists())
                        .await
                        .unwrap_or(false)
                }
            })
        }
        Ready::Command(cmd) => {
            let cmd = cmd.clone();
            retry(move || {
                let cmd = cmd.clone();
                async move { cmd.status().await.is_ok_and(|status| status.success()) }
            })
        }
        Ready::Notify(_) => match notify {
            Some(receiver) => Box::pin(notified(receiver)),
            None => Box::pin(std::future::pending()),
        },
    })
}

/// Tries `attempt` until it returns true, waiting longer between tries each time.
fn retry<F, Fut>(attempt: F) -> Probe
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    Box::pin(async move {
        let mut interval = FIRST_INTERVAL;
        while !attempt().await {
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(MAX_INTERVAL);
        }
    })
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
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
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
