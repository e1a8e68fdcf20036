//! The last fallback, for kernels or sandboxes that refuse pidfds: children are addressed by
//! pid while unreaped, and waited for on a blocking thread. Forced for this whole test process.

#[macro_use]
mod common;

scenario_tests!(sheepdog::SpawnPath::CloneWithoutPidfd, "nopidfd_");

/// Children dropped before they exit are reaped by one thread, however many there are.
#[tokio::test]
async fn dropped_children_share_one_reaping_thread() {
    use_path();
    let herd = sheepdog::Herd::new().expect("a herd");
    let mut cmd = common::cmd("nopidfd_reap_threads", "sleep");
    cmd.arg("1000");
    let mut pids = Vec::new();
    for _ in 0..20 {
        let child = herd.spawn(&cmd).expect("spawn");
        pids.push(child.pid());
        drop(child);
    }
    let reapers = std::fs::read_dir("/proc/self/task")
        .expect("list this process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "sheepdog-reap")
        .count();
    drop(herd);
    assert!(reapers <= 1, "{reapers} threads reap 20 dropped children");
    assert!(
        common::poll_until(std::time::Duration::from_secs(10), || {
            pids.iter().all(|&pid| !common::pid_exists(pid))
        }),
        "the dropped children are reaped: {:?}",
        pids.iter()
            .map(|&pid| common::pid_state(pid))
            .collect::<Vec<_>>()
    );
}
