//! The last fallback, for kernels or sandboxes that refuse pidfds: children are addressed by
//! pid while unreaped, and waited for on a blocking thread. Forced for this whole test process.

mod common;

use common::scenarios;
use sheepdog::SpawnPath;

fn force() {
    sheepdog::__private::force_spawn_path(SpawnPath::CloneWithoutPidfd);
}

#[tokio::test]
async fn statuses_and_signals() {
    force();
    scenarios::statuses_and_signals("nopidfd_statuses", SpawnPath::CloneWithoutPidfd).await;
}

#[tokio::test]
async fn args_env_cwd_round_trip() {
    force();
    scenarios::args_env_cwd_round_trip("nopidfd_args_env_cwd").await;
}

#[tokio::test]
async fn path_lookup_uses_child_path() {
    force();
    scenarios::path_lookup_uses_child_path("nopidfd_path_lookup").await;
}

#[tokio::test]
async fn stdio_pipes() {
    force();
    scenarios::stdio_pipes("nopidfd_stdio_pipes").await;
}

#[tokio::test]
async fn dropped_child_is_reaped() {
    force();
    scenarios::dropped_child_is_reaped("nopidfd_dropped_child").await;
}

#[tokio::test]
async fn wait_is_cancel_safe() {
    force();
    scenarios::wait_is_cancel_safe("nopidfd_wait_cancel").await;
}

#[tokio::test]
async fn enters_cgroup_and_process_group() {
    force();
    scenarios::enters_cgroup_and_process_group("nopidfd_enters_cgroup").await;
}
