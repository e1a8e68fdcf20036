//! Pipelines without a shell: kernel pipes between stages, SIGPIPE as in a shell, a status per
//! stage, pipefail.

mod common;

use std::time::{Duration, Instant};

use common::{alive, cmd};
use sheepdog::{Pipeline, Signal};

#[tokio::test]
async fn yes_into_head_ends_promptly_like_in_a_shell() {
    let marker = format!("pipeline_yes-{}", std::process::id());
    let started = Instant::now();
    let out = Pipeline::new(&cmd(&marker, "yes"))
        .pipe(&{
            let mut head = cmd(&marker, "head");
            head.args(["-n", "3"]);
            head
        })
        .output()
        .await
        .expect("pipeline");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.stdout, b"y\ny\ny\n");
    // `yes` learned that its reader was gone the shell way: SIGPIPE.
    assert_eq!(
        out.statuses[0].signal(),
        Some(Signal::PIPE),
        "{:?}",
        out.statuses
    );
    assert!(out.statuses[1].success());
    assert_eq!(out.failure().map(|(stage, _)| stage), Some(0), "pipefail");
    assert!(alive(&marker).is_empty());
}

#[tokio::test]
async fn bytes_flow_through_every_stage_exactly() {
    let out = Pipeline::new(&{
        let mut gen = cmd("pipeline_bytes", "sh");
        gen.args(["-c", "head -c 3000000 /dev/zero | tr '\\0' '\\252'"]);
        gen
    })
    .pipe(&cmd("pipeline_bytes", "cat"))
    .pipe(&{
        let mut count = cmd("pipeline_bytes", "wc");
        count.arg("-c");
        count
    })
    .output()
    .await
    .expect("pipeline");
    assert!(out.success(), "{:?}", out.statuses);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3000000");
    assert_eq!(out.statuses.len(), 3);
}

#[tokio::test]
async fn a_failing_stage_is_attributed() {
    let out = Pipeline::new(&{
        let mut echo = cmd("pipeline_fail", "echo");
        echo.arg("hi");
        echo
    })
    .pipe(&{
        let mut middle = cmd("pipeline_fail", "sh");
        middle.args(["-c", "cat; exit 3"]);
        middle
    })
    .pipe(&cmd("pipeline_fail", "cat"))
    .output()
    .await
    .expect("pipeline");
    assert_eq!(out.stdout, b"hi\n");
    let (stage, status) = out.failure().expect("a failure");
    assert_eq!((stage, status.code()), (1, Some(3)));
    assert!(!out.success());
}

/// A stage that will never finish on its own after the last one ended is stopped; nothing of
/// the pipeline is left.
#[tokio::test]
async fn what_outlives_the_last_stage_is_stopped() {
    let marker = format!("pipeline_rest-{}", std::process::id());
    let out = Pipeline::new(&{
        let mut idle = cmd(&marker, "sleep");
        idle.arg("600").drain_timeout(Duration::from_millis(100));
        idle
    })
    .pipe(&cmd(&marker, "true"))
    .output()
    .await
    .expect("pipeline");
    assert_eq!(out.statuses[0].signal(), Some(Signal::KILL));
    assert!(out.statuses[1].success());
    assert!(alive(&marker).is_empty(), "left: {:?}", alive(&marker));
}
