//! Timeouts and stop plans: at the deadline the tree is stopped by its plan, `wait` says the
//! child timed out, and nothing of the tree is left.

mod common;

use std::time::Duration;

use common::{alive, cmd};
use sheepdog::{Herd, Signal, Stdio, StopPlan, StopTarget};

/// `sh -c script`, started with `timeout` and `grace`.
fn timed_tree(marker: &str, script: &str, timeout: Duration, grace: Duration) -> sheepdog::Child {
    cmd(marker, "sh")
        .args(["-c", script])
        .timeout(timeout)
        .grace(grace)
        .spawn()
        .expect("spawn")
}

#[tokio::test]
async fn timeout_stops_the_whole_tree_gracefully() {
    let marker = format!("timeout_graceful-{}", std::process::id());
    let mut child = timed_tree(
        &marker,
        "sleep 100 & sleep 100 & wait",
        Duration::from_millis(200),
        Duration::from_secs(10),
    );
    let status = child.wait().await.expect("wait");
    assert!(status.timed_out(), "{status}");
    assert!(!status.success());
    assert_eq!(status.signal(), Some(Signal::TERM), "{status}");
    assert_eq!(status.to_string(), "timed out, then killed by SIGTERM");
    assert!(alive(&marker).is_empty(), "left: {:?}", alive(&marker));
    // Asked again, the answer is the same.
    assert!(child.wait().await.expect("wait").timed_out());
}

#[tokio::test]
async fn timeout_escalates_when_the_tree_ignores_sigterm() {
    let marker = format!("timeout_ignores-{}", std::process::id());
    let mut child = timed_tree(
        &marker,
        "trap '' TERM; sleep 100 & wait",
        Duration::from_millis(100),
        Duration::from_millis(200),
    );
    let status = child.wait().await.expect("wait");
    assert!(status.timed_out());
    assert_eq!(status.signal(), Some(Signal::KILL), "{status}");
    assert!(alive(&marker).is_empty(), "left: {:?}", alive(&marker));
}

/// The leader exits on SIGTERM, its child ignores it: the escalation is timed by the tree, not
/// by the leader, so the child is still killed.
#[tokio::test]
async fn escalation_waits_for_the_tree_not_the_leader() {
    let marker = format!("timeout_tree-{}", std::process::id());
    let mut child = timed_tree(
        &marker,
        "(trap '' TERM; sleep 100) & wait",
        Duration::from_millis(100),
        Duration::from_millis(200),
    );
    let status = child.wait().await.expect("wait");
    assert!(status.timed_out());
    assert_eq!(
        status.signal(),
        Some(Signal::TERM),
        "the leader obeyed: {status}"
    );
    assert!(alive(&marker).is_empty(), "left: {:?}", alive(&marker));
}

#[tokio::test]
async fn a_command_that_finishes_in_time_has_not_timed_out() {
    let mut child = cmd("timeout_in_time", "true")
        .timeout(Duration::from_secs(60))
        .spawn()
        .expect("spawn");
    let status = child.wait().await.expect("wait");
    assert!(status.success() && !status.timed_out(), "{status}");
}

/// A plan's steps go to whom they say: SIGINT to the leader only, then SIGTERM to the tree.
#[tokio::test]
async fn stop_plan_steps_reach_their_targets() {
    common::sigint_default_for_children();
    let herd = Herd::new().expect("a herd");
    let marker = format!("stop_plan-{}", std::process::id());
    // The leader reports SIGINT and exits; its child ignores SIGINT, not SIGTERM.
    let mut leader = herd
        .spawn(
            cmd(&marker, "sh")
                .args([
                    "-c",
                    "trap 'echo got-int; exit 3' INT; (trap '' INT; sleep 100) & echo ready; wait",
                ])
                .stdout(Stdio::piped()),
        )
        .expect("spawn");
    let mut stdout = leader.take_stdout().expect("stdout");
    let mut seen = Vec::new();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = stdout.read(&mut buf).await.expect("read");
        assert!(n > 0, "the tree ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let plan = StopPlan::new()
        .then(Signal::INT, StopTarget::Leader, Duration::from_millis(300))
        .then(Signal::TERM, StopTarget::Tree, Duration::from_secs(10));
    let report = herd.stop_with(&plan, Some(&leader)).await.expect("stop");
    let steps = report.signalled();
    assert_eq!(steps[0], (Signal::INT, vec![leader.pid()]), "{report}");
    assert_eq!(steps[1].0, Signal::TERM, "{report}");
    assert_eq!(steps[1].1.len(), 1, "only the sleep was left: {report}");
    assert!(!report.escalated(), "{report}");
    assert_eq!(leader.wait().await.expect("wait").code(), Some(3));
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.expect("read");
    assert!(String::from_utf8_lossy(&rest).contains("got-int"));
    assert!(alive(&marker).is_empty());
}

const SUSPEND_HELPER: &str = "SHEEPDOG_SUSPEND_HELPER";

/// The suspended side of `time_suspended_does_not_count_against_a_timeout`: a child with a 1 s
/// timeout, and this whole process suspended (SIGSTOP) right after it starts.
#[tokio::test]
async fn suspend_helper() {
    if std::env::var_os(SUSPEND_HELPER).is_none() {
        return;
    }
    let started = std::time::Instant::now();
    let mut child = cmd("suspend_helper", "sleep")
        .arg("100")
        .timeout(Duration::from_secs(1))
        .spawn()
        .expect("spawn");
    let (status, suspended) = tokio::join!(child.wait(), async {
        println!("suspending");
        sheepdog::suspend(&[]).await
    });
    suspended.expect("suspend");
    let status = status.expect("wait");
    println!(
        "timed_out={} wall_ms={}",
        status.timed_out(),
        started.elapsed().as_millis()
    );
}

/// A child's timeout does not count the time its program spent suspended by job control.
#[test]
fn time_suspended_does_not_count_against_a_timeout() {
    if std::env::var_os(SUSPEND_HELPER).is_some() {
        return;
    }
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--exact",
            "suspend_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SUSPEND_HELPER, "1")
        .env(common::MARK, "suspend_helper")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the helper");
    let mut lines = std::io::BufReader::new(helper.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().expect("a line").expect("read");
    while !next().contains("suspending") {}
    let pid = helper.id();
    assert!(
        common::poll_until(Duration::from_secs(10), || common::pid_state(pid)
            == Some('T')),
        "the helper stopped itself"
    );
    // Stopped for longer than the whole timeout.
    std::thread::sleep(Duration::from_millis(1500));
    let continued = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .expect("kill -CONT");
    assert!(continued.success());
    let report = loop {
        let line = next();
        if let Some(at) = line.find("timed_out=") {
            break line[at..].to_owned();
        }
    };
    assert!(helper.wait().expect("wait").success(), "{report}");
    let wall: u64 = report
        .split("wall_ms=")
        .nth(1)
        .and_then(|w| w.trim().parse().ok())
        .expect("wall_ms");
    assert!(report.starts_with("timed_out=true"), "{report}");
    // 1 s of running time plus the 1.5 s stopped: the pause did not count.
    assert!(
        wall >= 2400,
        "timed out after {wall} ms of wall time: {report}"
    );
}
