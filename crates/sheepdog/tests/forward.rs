//! Forwarding: a signal this program gets reaches every process of the herd, the same signal.
//! Alone in its test process, because it sends SIGTERM to that process.

mod common;

use common::{alive, cmd};
use sheepdog::{Herd, Signals, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn signals_this_program_gets_reach_the_tree() {
    let marker = format!("forward-{}", std::process::id());
    let herd = Herd::new().expect("a herd");
    let mut signals = Signals::new().expect("receive signals");
    let mut child = herd
        .spawn(
            cmd(&marker, "sh")
                .args([
                    "-c",
                    "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
                ])
                .stdout(Stdio::piped()),
        )
        .expect("spawn");
    let mut lines = BufReader::new(child.take_stdout().expect("stdout")).lines();
    assert_eq!(
        lines.next_line().await.expect("read").as_deref(),
        Some("ready")
    );
    // SIGTERM to this very process: with `Signals` it does not die, it forwards.
    let me = rustix::process::Pid::from_raw(std::process::id() as i32).expect("a pid");
    rustix::process::kill_process(me, rustix::process::Signal::TERM).expect("SIGTERM to self");
    let herds = [&herd];
    let status = tokio::select! {
        status = child.wait() => status.expect("wait"),
        err = signals.forward_to(&herds) => panic!("forwarding failed: {:?}", err),
    };
    assert_eq!(status.code(), Some(7), "{status}");
    assert_eq!(
        lines.next_line().await.expect("read").as_deref(),
        Some("got-term")
    );
    drop(herd);
    assert!(common::poll_until(
        std::time::Duration::from_secs(10),
        || alive(&marker).is_empty()
    ));
}
