//! `Executor`: processes addressed by identity, exits as `Send + 'static` futures, dispose that
//! kills or waits as asked, and start-and-forget that never leaves a zombie.

mod common;

use std::time::Duration;

use common::{alive, cmd, pid_exists, TempDir};
use sheepdog::{Executor, OnDispose, ProcessRef, Signal};

const BOUND: Duration = Duration::from_secs(10);

/// Polls (without blocking the runtime) until `cond` holds or the bound passes.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    common::eventually(BOUND, cond).await
}

#[tokio::test]
async fn dispose_kills_the_kill_ones_with_their_trees_and_waits_for_the_others() {
    let marker = format!("executor_dispose-{}", std::process::id());
    let dir = TempDir::new("executor_dispose");
    let done = dir.path().join("done");
    let executor = Executor::new();
    let server = executor
        .start(
            cmd(&marker, "sh").args(["-c", "sleep 30 & sleep 30 & wait"]),
            OnDispose::Kill,
        )
        .expect("start the server");
    let job = executor
        .start(
            cmd(&marker, "sh").args(["-c", &format!("sleep 0.3; touch '{}'", done.display())]),
            OnDispose::Wait,
        )
        .expect("start the job");
    assert!(eventually(|| alive(&marker).len() >= 4).await);
    executor.dispose().await.expect("dispose");
    assert!(done.exists(), "dispose returned before the Wait job ended");
    assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
    assert_eq!(
        server.exit.await.expect("exit").signal(),
        Some(Signal::KILL)
    );
    assert!(job.exit.await.expect("exit").success());
    assert!(!server.process.is_alive());
}

#[tokio::test]
async fn exit_is_a_send_static_future_and_the_child_is_reaped_without_it() {
    let executor = Executor::new();
    let started = executor
        .start(
            cmd("executor_exit", "sh").args(["-c", "exit 3"]),
            OnDispose::Kill,
        )
        .expect("start");
    let status = tokio::spawn(started.exit)
        .await
        .expect("join")
        .expect("exit");
    assert_eq!(status.code(), Some(3));

    // Nobody awaits this one's exit: it is reaped all the same.
    let unwatched = executor
        .start(&cmd("executor_exit", "true"), OnDispose::Kill)
        .expect("start")
        .process;
    assert!(
        eventually(|| !pid_exists(unwatched.pid())).await,
        "{} was left a zombie",
        unwatched.pid()
    );
}

#[tokio::test]
async fn stop_by_identity_runs_the_plan_and_refuses_strangers() {
    let executor = Executor::new();
    let started = executor
        .start(
            cmd("executor_stop", "sleep")
                .arg("30")
                .grace(Duration::from_secs(5)),
            OnDispose::Kill,
        )
        .expect("start");
    let stranger = ProcessRef::of(std::process::id()).expect("this process");
    let refused = executor.stop(&stranger).await.expect_err("not ours");
    assert_eq!(refused.kind(), std::io::ErrorKind::NotFound);
    let report = executor.stop(&started.process).await.expect("stop");
    assert!(!report.escalated(), "{report}");
    assert_eq!(
        started.exit.await.expect("exit").signal(),
        Some(Signal::TERM)
    );
    // Once it has ended and its herd is gone, its ref is refused too.
    let start = tokio::time::Instant::now();
    loop {
        match executor.stop(&started.process).await {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
            _ => assert!(start.elapsed() < BOUND, "the ended process is still listed"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_timeout_bounds_the_whole_herd_of_a_started_process() {
    let marker = format!("executor_timeout-{}", std::process::id());
    let executor = Executor::new();
    let started = executor
        .start(
            cmd(&marker, "sh")
                .args(["-c", "sleep 30 & wait"])
                .timeout(Duration::from_millis(100)),
            OnDispose::Kill,
        )
        .expect("start");
    let status = tokio::time::timeout(BOUND, started.exit)
        .await
        .expect("the timeout fired")
        .expect("exit");
    assert!(status.timed_out(), "{status}");
    assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
}

#[tokio::test]
async fn forgotten_processes_outlive_dispose_and_drop_and_are_reaped() {
    let marker = format!("executor_forget-{}", std::process::id());
    let executor = Executor::new();
    let kept = executor
        .start(cmd(&marker, "sleep").arg("30"), OnDispose::Wait)
        .expect("start")
        .process;
    let forgotten = executor
        .start_and_forget(cmd(&marker, "sleep").arg("0.5"))
        .expect("start");
    // Dropping the executor kills what it was keeping, not what it forgot.
    drop(executor);
    assert!(
        eventually(|| !kept.is_alive()).await,
        "a dropped executor's process runs on"
    );
    assert!(forgotten.is_alive());
    assert!(
        eventually(|| !pid_exists(forgotten.pid())).await,
        "{} was left running or a zombie",
        forgotten.pid()
    );
    assert!(alive(&marker).is_empty());
}
