//! Spawning through the default (strongest) path: statuses, stdio, environment, concurrency,
//! and coexistence with other libraries' children.

#[macro_use]
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use common::cmd;

const ENV_HELPER: &str = "SHEEPDOG_ENV_HELPER";

scenario_tests!(sheepdog::SpawnPath::Clone3, "");

/// A command that leaves the environment alone hands the child this process's environment as it
/// is: every entry, in order, byte for byte (it is passed without a copy). One that removes a
/// variable hands over all the others, in order. The harness's own commands always set the leak
/// mark, so the spawning side runs in this test binary started again (marked) as the helper.
#[test]
fn inherited_environment_is_passed_unchanged() {
    if std::env::var_os(ENV_HELPER).is_none() {
        let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "--exact",
                "inherited_environment_is_passed_unchanged",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_HELPER, OsStr::from_bytes(b"not utf-8: \xff\xfe"))
            .env(common::MARK, "inherited_environment")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the helper");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the helper failed: {}\n{stdout}",
            out.status
        );
        // The helper ran this very test, to its end.
        assert!(stdout.contains("environments checked"), "{stdout}");
        return;
    }
    let expected = |skip: &str| -> Vec<u8> {
        std::env::vars_os()
            .filter(|(key, _)| key != skip)
            .flat_map(|(key, value)| {
                [
                    key.into_vec(),
                    b"=".to_vec(),
                    value.into_vec(),
                    b"\0".to_vec(),
                ]
                .concat()
            })
            .collect()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let out = sheepdog::Command::new("/usr/bin/env")
            .arg("-0")
            .output()
            .await
            .expect("run env");
        assert!(out.status.success());
        assert_eq!(out.stdout, expected(""));
        // The helper's own variable, with its non-UTF-8 bytes, is among them.
        assert!(out.stdout.windows(3).any(|w| w == b"\xff\xfe\0"));
        let out = sheepdog::Command::new("/usr/bin/env")
            .arg("-0")
            .env_remove(ENV_HELPER)
            .output()
            .await
            .expect("run env");
        assert_eq!(out.stdout, expected(ENV_HELPER));
    });
    println!("environments checked");
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

/// Resource usage comes with the status (peak memory: tests/accounting.rs).
#[tokio::test]
async fn status_reports_resource_usage() {
    let mut child = cmd("resource_usage", "sh")
        .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
        .spawn()
        .expect("spawn");
    let usage = child.wait().await.expect("wait").usage();
    assert!(
        usage.user_time() + usage.system_time() > std::time::Duration::ZERO,
        "{usage:?}"
    );
}
