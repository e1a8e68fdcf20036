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
        idle.arg("600");
        idle
    })
    .pipe(cmd(&marker, "true").drain_timeout(Duration::from_millis(100)))
    .output()
    .await
    .expect("pipeline");
    assert_eq!(out.statuses[0].signal(), Some(Signal::KILL));
    assert!(out.statuses[1].success());
    assert!(alive(&marker).is_empty(), "left: {:?}", alive(&marker));
}

/// The timeout covers the whole pipeline: every stage is stopped, and each status says so.
#[tokio::test]
async fn a_timeout_stops_every_stage() {
    let marker = format!("pipeline_timeout-{}", std::process::id());
    let started = Instant::now();
    let out = Pipeline::new(cmd(&marker, "sh").args(["-c", "sleep 600 & sleep 600"]))
        .pipe(&cmd(&marker, "cat"))
        .timeout(Duration::from_millis(200))
        .stop_plan(sheepdog::StopPlan::grace(Duration::from_secs(2)))
        .output()
        .await
        .expect("pipeline");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(out.timed_out());
    assert!(
        out.statuses.iter().all(|status| status.timed_out()),
        "{:?}",
        out.statuses
    );
    assert_eq!(out.statuses[0].signal(), Some(Signal::TERM));
    assert!(common::poll_until(Duration::from_secs(10), || alive(
        &marker
    )
    .is_empty()));
}

/// A started pipeline streams its last stage's lines as they come; `wait` gives each status.
#[tokio::test]
async fn a_spawned_pipeline_streams_lines() {
    let mut running = Pipeline::new(cmd("pipeline_stream", "seq").args(["1", "100000"]))
        .pipe(cmd("pipeline_stream", "grep").arg("7$"))
        .pipe(
            cmd("pipeline_stream", "sed")
                .arg("s/^/n=/")
                .stdout(sheepdog::Stdio::piped()),
        )
        .spawn()
        .expect("spawn");
    assert_eq!(running.stages().len(), 3);
    let mut lines = running.lines();
    let mut count = 0u32;
    while let Some(line) = lines.next().await.expect("line") {
        count += 1;
        assert_eq!(line.text(), format!("n={}", 10 * count - 3));
    }
    assert_eq!(count, 10_000);
    let statuses = running.wait().await.expect("wait");
    assert!(
        statuses.iter().all(|status| status.success()),
        "{statuses:?}"
    );
}

/// The first stage's input is fed while the last stage's output is read.
#[tokio::test]
async fn input_feeds_the_first_stage() {
    let out = Pipeline::new(
        cmd("pipeline_input", "tr")
            .args(["a-z", "A-Z"])
            .input("b\na\nc\n"),
    )
    .pipe(&cmd("pipeline_input", "sort"))
    .output()
    .await
    .expect("pipeline");
    assert_eq!(out.stdout, b"A\nB\nC\n");
    assert!(out.success());
}

/// Past a failing limit the pipeline is killed, all of it; the head is kept.
#[tokio::test]
async fn an_output_limit_stops_the_pipeline() {
    let marker = format!("pipeline_limit-{}", std::process::id());
    let out = Pipeline::new(&cmd(&marker, "yes"))
        .pipe(cmd(&marker, "cat").capture_limit(1000, sheepdog::OverLimit::Fail))
        .output()
        .await
        .expect("pipeline");
    assert!(out.limit_exceeded() && out.stdout_truncated());
    assert_eq!(out.stdout, b"y\n".repeat(500));
    assert!(!out.success());
    assert!(common::poll_until(Duration::from_secs(10), || alive(
        &marker
    )
    .is_empty()));
}

/// 256 MiB of random bytes through two stages, exact, into a reused buffer.
#[tokio::test]
async fn large_binary_output_through_stages_is_exact() {
    let dir = common::TempDir::new("pipeline_large");
    let (path, expected) = common::random_file("pipeline_large", &dir, 256 << 20).await;
    let out = Pipeline::new(cmd("pipeline_large", "cat").arg(&path))
        .pipe(&cmd("pipeline_large", "cat"))
        .output_with_buffer(Vec::with_capacity(expected.len()))
        .await
        .expect("pipeline");
    assert!(out.success(), "{:?}", out.statuses);
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "the bytes differ from the file");
}
