//! Dropping a capture mid-stream ends its reader thread, even while a process still holds and
//! fills the pipe: the read end is closed and no pipe is left open. (Alone in its binary so
//! that the descriptor count is this test's.)

mod common;

use std::time::Duration;

use common::{alive, cmd};

/// This process's pipe descriptors, with their pipes (the capture's own: its stdout and
/// stderr, and the switch that stops its reader thread). Other descriptors come and go with
/// the cgroups sheepdog makes ahead.
fn open_pipes() -> Vec<String> {
    common::describe_fds()
        .into_iter()
        .filter(|fd| fd.contains("pipe:"))
        .collect()
}

/// Bytes `pid` has written so far (`wchar` of /proc/PID/io), 0 if unknown.
fn written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar: ")?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_capture_ends_its_reader_thread() {
    // A first herd starts what lives as long as this process (the sentinel's socket).
    assert!(cmd("capture_cancel", "true")
        .status()
        .await
        .expect("status")
        .success());
    common::settle();
    let before = open_pipes();

    let marker = format!("capture_cancel-{}", std::process::id());
    // Let go of the tree on drop: only the capture's reader holds the read end, so `yes`
    // writes until that reader ends, and then dies of SIGPIPE.
    let mut yes = cmd(&marker, "yes");
    yes.kill_on_drop(false);
    let mut capture = Box::pin(yes.output());
    let mut guard = None;
    // Far past the point where a stream is handed to a blocking thread (1 MiB).
    let big = common::eventually(Duration::from_secs(20), || {
        alive(&marker).into_iter().any(|pid| {
            guard.get_or_insert_with(|| common::KillOnDrop::new(pid));
            written(pid) > 16 << 20
        })
    });
    tokio::select! {
        out = &mut capture => panic!("`yes` ended: {out:?}"),
        big = big => assert!(big, "`yes` wrote 16 MiB"),
    }
    drop(capture);

    assert!(
        common::eventually(Duration::from_secs(10), || alive(&marker).is_empty()).await,
        "the reader closed its end, so `yes` died of SIGPIPE: {:?}; ours: {:?}; its: {:?}",
        alive(&marker),
        common::describe_fds(),
        alive(&marker)
            .iter()
            .map(|pid| std::fs::read_link(format!("/proc/{pid}/fd/1")))
            .collect::<Vec<_>>()
    );
    common::settle();
    let mut after = Vec::new();
    let same = common::eventually(Duration::from_secs(10), || {
        after = open_pipes();
        after == before
    })
    .await;
    assert!(same, "pipes open before {before:?}, after {after:?}");
}
