//! `ProcessRef` and `tree`: identity across pid reuse and serialization, trees of real shells,
//! and waiting for a process that is not our child.

mod common;

use std::time::Duration;

use common::{alive, cmd};
use sheepdog::{Herd, ProcessRef, Signal, Stdio};

const BOUND: Duration = Duration::from_secs(10);

/// Reads `stdout` until "ready" has been printed; returns what came before.
async fn read_until_ready(stdout: &mut sheepdog::ChildStdout) -> String {
    common::read_until(stdout, "ready\n")
        .await
        .replace("ready\n", "")
}

/// Polls (without blocking the runtime) until `cond` holds or the bound passes.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    common::eventually(BOUND, cond).await
}

#[tokio::test]
async fn tree_of_a_shell_with_subshells_is_read_breadth_first() {
    let marker = format!("identity_tree-{}", std::process::id());
    let herd = Herd::new().expect("herd");
    let mut child = herd
        .spawn(
            cmd(&marker, "sh")
                .args([
                    "-c",
                    "(sleep 30; true) & sh -c 'sleep 30; true' & echo ready; wait",
                ])
                .stdout(Stdio::piped()),
        )
        .expect("spawn");
    read_until_ready(child.stdout().expect("stdout")).await;
    let root = child.process_ref();
    // Two shells below the root, a sleep below each: five processes once both sleeps run.
    let sleeping = |tree: &[sheepdog::ProcessInfo]| {
        tree.iter()
            .filter(|info| info.command == ["sleep", "30"])
            .count()
            == 2
    };
    assert!(
        eventually(|| sheepdog::tree(&root).is_ok_and(|tree| sleeping(&tree))).await,
        "{:?}",
        sheepdog::tree(&root)
    );
    let tree = sheepdog::tree(&root).expect("tree");
    let depths: Vec<usize> = tree.iter().map(|info| info.depth).collect();
    assert_eq!(depths, [0, 1, 1, 2, 2], "{tree:#?}");
    assert_eq!(tree[0].pid, child.pid());
    assert_eq!(tree[0].command[0], "sh");
    for info in &tree[1..] {
        let parent = tree.iter().find(|p| p.pid == info.ppid).expect("parent");
        assert_eq!(parent.depth + 1, info.depth, "{tree:#?}");
        assert!(info.process.is_alive());
    }
    let sleeps: Vec<_> = tree[3..].iter().map(|info| info.command.clone()).collect();
    assert!(sleeps.iter().all(|c| c == &["sleep", "30"]), "{sleeps:?}");
    let mut pids: Vec<u32> = tree.iter().map(|info| info.pid).collect();
    pids.sort_unstable();
    let mut marked = alive(&marker);
    marked.sort_unstable();
    assert_eq!(pids, marked);

    // The herd's view: the same processes, the same shape.
    let forest = herd.tree().expect("herd tree");
    let depths: Vec<usize> = forest.iter().map(|info| info.depth).collect();
    assert_eq!(depths, [0, 1, 1, 2, 2], "{forest:#?}");

    herd.kill().await.expect("kill");
    assert_eq!(
        child.wait().await.expect("wait").signal(),
        Some(Signal::KILL)
    );
    let err = sheepdog::tree(&root).expect_err("the root is gone");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(!root.is_alive());
    assert_eq!(
        root.signal(Signal::TERM).expect_err("gone").kind(),
        std::io::ErrorKind::NotFound
    );
}

/// A process that is not our child (a grandchild): its exit is seen by pidfd, and on kernels
/// that keep it (6.15+) its status too, once its parent has reaped it.
#[tokio::test]
async fn exited_reports_a_process_that_is_not_our_child() {
    let mut child = cmd("identity_exited", "sh")
        .args([
            "-c",
            "sh -c 'sleep 0.2; exit 5' & echo $!; echo ready; wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let printed = read_until_ready(child.stdout().expect("stdout")).await;
    let pid: u32 = printed.trim().parse().expect("a pid");
    let grandchild = ProcessRef::of(pid).expect("the grandchild");
    let status = tokio::time::timeout(BOUND, grandchild.exited())
        .await
        .expect("its exit was seen")
        .expect("exited");
    if kernel_at_least(6, 15) {
        let status = status.expect("the kernel keeps the status");
        assert_eq!(status.code(), Some(5), "{status}");
    }
    assert!(!grandchild.is_alive());
    assert!(child.wait().await.expect("wait").success());
    let gone = grandchild.exited().await.expect_err("gone before the call");
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(['.', '-'])
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[cfg(feature = "serde")]
mod serialized {
    use super::*;

    const HELPER: &str = "SHEEPDOG_IDENTITY_HELPER";

    /// The other process's side: reads a ref from the environment and sends it SIGTERM.
    #[test]
    fn identity_helper() {
        let Ok(json) = std::env::var(HELPER) else {
            return;
        };
        let process: ProcessRef = serde_json::from_str(&json).expect("a ref");
        assert!(process.is_alive());
        process.signal(Signal::TERM).expect("signal");
    }

    #[tokio::test]
    async fn a_ref_read_back_in_another_process_reaches_the_same_process() {
        let mut child = cmd("identity_serde", "sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let json = serde_json::to_string(&child.process_ref()).expect("json");
        let value: serde_json::Value = serde_json::from_str(&json).expect("parse");
        assert_eq!(value["pid"], child.pid());
        assert!(value["start_ticks"].is_u64(), "{json}");
        assert!(value["boot_id"].is_string(), "{json}");
        let helper = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .args(["--exact", "serialized::identity_helper", "--test-threads=1"])
            .env(HELPER, &json)
            .env(common::MARK, "identity_serde")
            .output()
            .expect("run the helper");
        assert!(helper.status.success(), "{helper:?}");
        assert_eq!(
            child.wait().await.expect("wait").signal(),
            Some(Signal::TERM)
        );
    }

    /// Pid reuse, simulated: a ref with this pid but another start time is another process, and
    /// is never signalled.
    #[tokio::test]
    async fn a_ref_with_another_start_time_is_never_signalled() {
        let mut child = cmd("identity_reused", "sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let mut value = serde_json::to_value(child.process_ref()).expect("json");
        let ticks = value["start_ticks"].as_u64().expect("ticks");
        value["start_ticks"] = serde_json::json!(ticks + 1);
        let other: ProcessRef = serde_json::from_value(value).expect("a ref");
        assert!(!other.is_alive());
        let err = other.signal(Signal::KILL).expect_err("not this process");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(child.try_wait().expect("try_wait").is_none(), "signalled");
        let err = sheepdog::tree(&other).expect_err("not this process");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        child.signal(Signal::KILL).expect("kill");
        child.wait().await.expect("wait");
    }
}
