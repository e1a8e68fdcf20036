//! Spawning through the default (strongest) path: statuses, stdio, environment, concurrency,
//! and coexistence with other libraries' children.

mod common;

use common::{cmd, scenarios};
use sheepdog::SpawnPath;

#[tokio::test]
async fn statuses_and_signals() {
    scenarios::statuses_and_signals("statuses_and_signals", SpawnPath::Clone3).await;
}

#[tokio::test]
async fn args_env_cwd_round_trip() {
    scenarios::args_env_cwd_round_trip("args_env_cwd_round_trip").await;
}

#[tokio::test]
async fn path_lookup_uses_child_path() {
    scenarios::path_lookup_uses_child_path("path_lookup_uses_child_path").await;
}

#[tokio::test]
async fn stdio_pipes() {
    scenarios::stdio_pipes("stdio_pipes").await;
}

#[tokio::test]
async fn dropped_child_is_reaped() {
    scenarios::dropped_child_is_reaped("dropped_child_is_reaped").await;
}

#[tokio::test]
async fn wait_is_cancel_safe() {
    scenarios::wait_is_cancel_safe("wait_is_cancel_safe").await;
}

/// 1000 spawns from 64 concurrent tasks: every status belongs to its own child.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_spawns_from_64_tasks() {
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            tokio::spawn(async move {
                for i in 0..1000 / 64 + 1 {
                    let n = task * 64 + i;
                    if n >= 1000 {
                        break;
                    }
                    let code = n % 250;
                    let mut child = cmd("thousand_spawns", "sh")
                        .args(["-c", &format!("exit {code}")])
                        .spawn()
                        .expect("spawn");
                    let status = child.wait().await.expect("wait");
                    assert_eq!(status.code(), Some(code), "child {n}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

/// Children started with std and tokio in the same program keep their exit statuses: sheepdog
/// never waits for "any child".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_libraries_children_keep_their_statuses() {
    let std_children = std::thread::spawn(|| {
        (0..40)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "exit 7"])
                    .env(common::MARK, "other_libraries")
                    .status()
                    .expect("std spawn")
                    .code()
            })
            .collect::<Vec<_>>()
    });
    let tokio_children = tokio::spawn(async {
        let mut codes = Vec::new();
        for _ in 0..40 {
            let status = tokio::process::Command::new("sh")
                .args(["-c", "exit 9"])
                .env(common::MARK, "other_libraries")
                .status()
                .await
                .expect("tokio spawn");
            codes.push(status.code());
        }
        codes
    });
    for _ in 0..100 {
        let mut child = cmd("other_libraries", "sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("spawn");
        assert_eq!(child.wait().await.expect("wait").code(), Some(3));
    }
    let std_codes = std_children.join().expect("std thread");
    assert!(std_codes.iter().all(|c| *c == Some(7)), "{std_codes:?}");
    let tokio_codes = tokio_children.await.expect("tokio task");
    assert!(tokio_codes.iter().all(|c| *c == Some(9)), "{tokio_codes:?}");
}

/// Resource usage comes with the status.
#[tokio::test]
async fn status_reports_resource_usage() {
    let mut child = cmd("resource_usage", "sh")
        .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
        .spawn()
        .expect("spawn");
    let usage = child.wait().await.expect("wait").usage();
    assert!(usage.max_rss_bytes() > 100 * 1024, "{usage:?}");
    assert!(
        usage.user_time() + usage.system_time() > std::time::Duration::ZERO,
        "{usage:?}"
    );
}

#[tokio::test]
async fn enters_cgroup_and_process_group() {
    scenarios::enters_cgroup_and_process_group("enters_cgroup").await;
}
