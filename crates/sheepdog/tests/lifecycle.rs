//! The lifecycle driver: deadlines that fire whether or not anybody waits, stops that go on
//! when the future that asked for them is dropped, and timeouts that bound the whole tree.
//!
//! Cancellation is tested by dropping each public future after k polls, for every k until the
//! future completes on its own.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::{alive, cmd, eventually, read_until};
use sheepdog::{Command, Herd, Pipeline, Signal, Stdio};

/// Kills whatever carries the test's marker when the test ends, passed or failed.
struct KillMarked(String);

impl Drop for KillMarked {
    fn drop(&mut self) {
        for pid in alive(&self.0) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn marker(test: &str) -> (String, KillMarked) {
    let marker = format!("lifecycle-{test}-{}", std::process::id());
    (marker.clone(), KillMarked(marker))
}

/// Polls `fut` at most `polls` times (each time it is woken), and drops it right after the
/// last poll; its output if it completed by then.
async fn poll_at_most<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut left = polls;
    std::future::poll_fn(|cx| {
        left -= 1;
        match fut.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if left == 0 => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A tree that ignores SIGTERM (the disposition is inherited by the sleep), so that its stop
/// must climb to the kill; it prints `ready` once the trap is set.
fn stubborn(marker: &str, timeout: Duration, grace: Duration) -> Command {
    let mut command = cmd(marker, "sh");
    command
        .args(["-c", "trap '' TERM; sleep 100 & echo ready; wait"])
        .stdout(Stdio::piped())
        .timeout(timeout)
        .grace(grace);
    command
}

const BOUND: Duration = Duration::from_secs(10);

/// The reported bug: a wait that loses a `select!` during the grace period left the child
/// running for ever, since the ladder lived in that wait.
#[tokio::test]
async fn a_wait_dropped_during_the_grace_does_not_stop_the_ladder() {
    let (marker, _guard) = marker("grace");
    let mut child = stubborn(
        &marker,
        Duration::from_millis(300),
        Duration::from_millis(300),
    )
    .spawn()
    .expect("spawn");
    read_until(child.stdout().expect("stdout"), "ready").await;
    // The deadline passes and SIGTERM goes out while this wait runs; then it is abandoned.
    let abandoned = tokio::time::timeout(Duration::from_millis(450), child.wait()).await;
    assert!(
        abandoned.is_err(),
        "the tree ignores SIGTERM: {abandoned:?}"
    );
    assert!(!alive(&marker).is_empty(), "still in its grace period");
    assert!(
        eventually(BOUND, || alive(&marker).is_empty()).await,
        "the ladder stopped with the wait: {:?} left",
        alive(&marker)
    );
    let status = child.wait().await.expect("wait");
    assert!(status.timed_out(), "{status}");
    assert_eq!(status.signal(), Some(Signal::KILL), "{status}");
}

#[tokio::test]
async fn child_wait_dropped_after_any_number_of_polls_loses_nothing() {
    let (marker, _guard) = marker("wait_polls");
    for polls in 1.. {
        let mut child = stubborn(
            &marker,
            Duration::from_millis(100),
            Duration::from_millis(100),
        )
        .spawn()
        .expect("spawn");
        read_until(child.stdout().expect("stdout"), "ready").await;
        if let Some(status) = poll_at_most(child.wait(), polls).await {
            let status = status.expect("wait");
            assert!(status.timed_out(), "{status}");
            assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
            break;
        }
        assert!(
            eventually(BOUND, || alive(&marker).is_empty()).await,
            "dropped after {polls} polls: {:?} left",
            alive(&marker)
        );
        let status = child.wait().await.expect("wait");
        assert!(status.timed_out(), "after {polls} polls: {status}");
        assert_eq!(status.signal(), Some(Signal::KILL), "after {polls} polls");
        assert!(polls < 50, "the wait never completed");
    }
}

#[tokio::test]
async fn herd_stop_dropped_after_any_number_of_polls_goes_on_and_is_joined() {
    let (marker, _guard) = marker("stop_polls");
    let grace = Duration::from_millis(100);
    for polls in 1.. {
        let herd = Herd::new().expect("herd");
        let mut child = herd
            .spawn(&stubborn(&marker, Duration::from_secs(3600), grace))
            .expect("spawn");
        read_until(child.stdout().expect("stdout"), "ready").await;
        let completed = poll_at_most(herd.stop(grace), polls).await;
        let done = completed.is_some();
        // Asked again (with another plan), the stop under way is joined: one ladder, one report.
        let report = match completed {
            Some(report) => report.expect("stop"),
            None => herd.stop(Duration::ZERO).await.expect("stop again"),
        };
        assert!(report.escalated(), "after {polls} polls: {report}");
        assert_eq!(report.signalled()[0].0, Signal::TERM, "{report}");
        assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
        assert_eq!(
            child.wait().await.expect("wait").signal(),
            Some(Signal::KILL)
        );
        if done {
            break;
        }
        assert!(polls < 50, "the stop never completed");
    }
}

/// A herd stopped once and then given new work is stopped again by the next stop, not
/// answered with the first stop's report.
#[tokio::test]
async fn a_herd_stopped_then_reused_is_stopped_again() {
    let (marker, _guard) = marker("reused");
    let herd = Herd::new().expect("herd");
    let mut first = herd.spawn(cmd(&marker, "sleep").arg("100")).expect("spawn");
    herd.stop(Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        first.wait().await.expect("wait").signal(),
        Some(Signal::TERM)
    );
    let mut second = herd.spawn(cmd(&marker, "sleep").arg("100")).expect("spawn");
    let report = herd.stop(Duration::from_secs(5)).await.expect("stop again");
    assert_eq!(report.signalled()[0].1, [second.pid()], "{report}");
    assert_eq!(
        second.wait().await.expect("wait").signal(),
        Some(Signal::TERM)
    );
    assert!(alive(&marker).is_empty());
}

#[tokio::test]
async fn herd_kill_and_wait_empty_dropped_early_lose_nothing() {
    let (marker, _guard) = marker("kill_polls");
    let herd = Herd::new().expect("herd");
    let mut child = herd
        .spawn(cmd(&marker, "sh").args(["-c", "sleep 100 & sleep 100 & wait"]))
        .expect("spawn");
    // A wait for emptiness that is dropped leaves the tree alone...
    assert!(poll_at_most(herd.wait_empty(), 1).await.is_none());
    // Bounded: a process in the middle of exec shows no environment for a moment.
    assert!(eventually(BOUND, || !alive(&marker).is_empty()).await);
    // ...and a kill dropped after its first poll has still killed the tree.
    let _ = poll_at_most(herd.kill(), 1).await;
    assert!(
        eventually(BOUND, || alive(&marker).is_empty()).await,
        "{:?} left",
        alive(&marker)
    );
    herd.wait_empty().await.expect("wait_empty");
    assert_eq!(
        child.wait().await.expect("wait").signal(),
        Some(Signal::KILL)
    );
}

#[tokio::test]
async fn pipeline_wait_dropped_after_any_number_of_polls_loses_nothing() {
    let (marker, _guard) = marker("pipeline_polls");
    for polls in 1.. {
        let mut running = Pipeline::new(cmd(&marker, "sh").args(["-c", "trap '' TERM; sleep 100"]))
            .pipe(cmd(&marker, "sh").args(["-c", "trap '' TERM; cat >/dev/null"]))
            .timeout(Duration::from_millis(100))
            .stop_plan(sheepdog::StopPlan::grace(Duration::from_millis(100)))
            .spawn()
            .expect("spawn");
        if let Some(statuses) = poll_at_most(running.wait(), polls).await {
            let statuses = statuses.expect("wait");
            assert!(statuses.iter().all(|s| s.timed_out()), "{statuses:?}");
            break;
        }
        assert!(
            eventually(BOUND, || alive(&marker).is_empty()).await,
            "dropped after {polls} polls: {:?} left",
            alive(&marker)
        );
        let statuses = running.wait().await.expect("wait");
        assert!(statuses.iter().all(|s| s.timed_out()), "{statuses:?}");
        assert!(polls < 50, "the wait never completed");
    }
}

/// `output()` owns its child: cancelling it loses the output, and kills the whole tree.
#[tokio::test]
async fn output_dropped_after_any_number_of_polls_leaves_nothing_running() {
    let (marker, _guard) = marker("output_polls");
    for polls in 1.. {
        let mut command = cmd(&marker, "sh");
        command.args([
            "-c",
            "sleep 100 >/dev/null & echo started; sleep 0.1; echo more; sleep 0.1",
        ]);
        let completed = poll_at_most(command.output(), polls).await;
        assert!(
            eventually(BOUND, || alive(&marker).is_empty()).await,
            "dropped after {polls} polls: {:?} left",
            alive(&marker)
        );
        if let Some(output) = completed {
            assert!(output.expect("output").status.success());
            break;
        }
        assert!(polls < 50, "output never completed");
    }
}

/// The tokio habit "read stdout to the end, then wait": the deadline fires without the wait,
/// stops the tree, and the reader sees end-of-file.
#[tokio::test]
async fn a_timeout_ends_a_reader_that_never_waits() {
    let (marker, _guard) = marker("reader");
    let mut child = cmd(&marker, "sh")
        .args(["-c", "sleep 30 & sleep 30 & echo started; exec sleep 30"])
        .stdout(Stdio::piped())
        .timeout(Duration::from_millis(800))
        .spawn()
        .expect("spawn");
    let mut lines = child.lines();
    let read_all = async move {
        let mut seen = Vec::new();
        while let Some(line) = lines.next().await.expect("read") {
            seen.push(line.text().into_owned());
        }
        seen
    };
    let seen = tokio::time::timeout(BOUND, read_all)
        .await
        .expect("the reader reached end-of-file");
    assert_eq!(seen, ["started"]);
    assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
    let status = child.wait().await.expect("wait");
    assert!(status.timed_out(), "{status}");
}

/// The leader exits at once and leaves two sleeps: `wait` returns the leader's status, and the
/// deadline still stops the rest of the tree while the `Child` is kept.
#[tokio::test]
async fn a_timeout_outlives_the_leader_and_stops_the_rest_of_the_tree() {
    let (marker, _guard) = marker("outlives");
    let mut child = cmd(&marker, "sh")
        .args(["-c", "sleep 30 & sleep 30 & exit 0"])
        .timeout(Duration::from_millis(1500))
        .spawn()
        .expect("spawn");
    let status = child.wait().await.expect("wait");
    assert!(status.success() && !status.timed_out(), "{status}");
    // A sleep in the middle of exec shows no environment for a moment: look again (bounded,
    // well within the deadline).
    assert!(
        eventually(Duration::from_millis(1000), || alive(&marker).len() == 2).await,
        "the sleeps run until the deadline: {:?}",
        alive(&marker)
    );
    assert!(
        eventually(BOUND, || alive(&marker).is_empty()).await,
        "the deadline did not stop the tree: {:?} left",
        alive(&marker)
    );
    drop(child);
}

#[tokio::test]
async fn a_herd_deadline_stops_everything_in_it() {
    let (marker, _guard) = marker("herd_deadline");
    let herd = Herd::builder()
        .timeout(Duration::from_millis(200))
        .stop_plan(sheepdog::StopPlan::grace(Duration::from_secs(5)))
        .build()
        .expect("herd");
    let mut first = herd
        .spawn(cmd(&marker, "sh").args(["-c", "sleep 100 & wait"]))
        .expect("spawn");
    let mut second = herd.spawn(cmd(&marker, "sleep").arg("100")).expect("spawn");
    if tokio::time::timeout(BOUND, herd.wait_empty())
        .await
        .is_err()
    {
        panic!(
            "the deadline did not empty the herd: members {:?}, alive {:?}, timed out {}, first {:?}, second {:?}",
            herd.members(),
            alive(&marker),
            herd.timed_out(),
            first.try_wait(),
            second.try_wait()
        );
    }
    assert!(herd.timed_out());
    assert!(alive(&marker).is_empty(), "{:?} left", alive(&marker));
    assert_eq!(
        first.wait().await.expect("wait").signal(),
        Some(Signal::TERM)
    );
    assert_eq!(
        second.wait().await.expect("wait").signal(),
        Some(Signal::TERM)
    );
}

#[tokio::test]
async fn a_herd_empty_at_its_deadline_has_not_timed_out() {
    let herd = Herd::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .expect("herd");
    let status = herd
        .spawn(&Command::new("true"))
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!herd.timed_out());
}

/// In a shared herd, a child's timeout stops that child's tree (with cgroups: its own cgroup
/// below the herd's) and not its siblings.
#[tokio::test]
async fn a_timeout_in_a_shared_herd_stops_only_its_childs_tree() {
    let (marker, _guard) = marker("shared");
    let sibling_marker = format!("{marker}-sibling");
    let _sibling_guard = KillMarked(sibling_marker.clone());
    let herd = Herd::new().expect("herd");
    let mut timed = herd
        .spawn(
            cmd(&marker, "sh")
                .args(["-c", "sleep 100 & echo ready; wait"])
                .stdout(Stdio::piped())
                .timeout(Duration::from_millis(300)),
        )
        .expect("spawn");
    let mut sibling = herd
        .spawn(cmd(&sibling_marker, "sh").args(["-c", "sleep 100 & wait"]))
        .expect("spawn");
    read_until(timed.stdout.as_mut().expect("stdout"), "ready").await;
    let status = tokio::time::timeout(BOUND, timed.wait())
        .await
        .expect("the timeout fired")
        .expect("wait");
    assert!(status.timed_out(), "{status}");
    assert_eq!(status.signal(), Some(Signal::TERM), "{status}");
    if herd.containment().mechanism() == sheepdog::Mechanism::CgroupV2 {
        assert!(
            alive(&marker).is_empty(),
            "the timed child's tree: {:?} left",
            alive(&marker)
        );
    }
    assert_eq!(
        alive(&sibling_marker).len(),
        2,
        "the sibling's tree runs on"
    );
    assert!(sibling.try_wait().expect("try_wait").is_none());
    herd.kill().await.expect("kill");
    assert_eq!(
        sibling.wait().await.expect("wait").signal(),
        Some(Signal::KILL)
    );
    assert!(alive(&marker).is_empty() && alive(&sibling_marker).is_empty());
}

/// A deadline set outside a tokio runtime is enforced once the first wait runs in one, and
/// still counts from the spawn.
#[test]
fn a_deadline_set_outside_a_runtime_counts_from_the_spawn() {
    let (marker, _guard) = marker("no_runtime");
    let mut child = cmd(&marker, "sleep")
        .arg("100")
        .timeout(Duration::from_secs(1))
        .spawn()
        .expect("spawn");
    // Time passing with nothing polled: the deadline is behind us when the runtime comes.
    std::thread::sleep(Duration::from_millis(1100));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    let status = runtime.block_on(child.wait()).expect("wait");
    assert!(status.timed_out(), "{status}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "the deadline counted from the wait: {:?}",
        started.elapsed()
    );
}

/// Several waits for the same herd to empty, while another task keeps reading its state (as
/// the driver does): every wait sees the end. Sharing the kernel's event state between them
/// once let a read consume the last event, and a wait hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waits_for_emptiness_all_end() {
    let (marker, _guard) = marker("concurrent_waits");
    for _ in 0..20 {
        let herd = std::sync::Arc::new(Herd::new().expect("herd"));
        let mut child = herd
            .spawn(cmd(&marker, "sh").args(["-c", "sleep 100 & sleep 100 & wait"]))
            .expect("spawn");
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let herd = std::sync::Arc::clone(&herd);
                tokio::spawn(async move { herd.wait_empty().await })
            })
            .collect();
        let reader = {
            let herd = std::sync::Arc::clone(&herd);
            tokio::spawn(async move {
                while !herd.is_empty().expect("is_empty") {
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::task::yield_now().await;
        // The kill is issued at the first poll; the waits above must see the tree go.
        let _ = poll_at_most(herd.kill(), 1).await;
        for wait in waits {
            tokio::time::timeout(BOUND, wait)
                .await
                .expect("every wait for emptiness ends")
                .expect("join")
                .expect("wait_empty");
        }
        reader.await.expect("reader");
        let _ = child.wait().await;
    }
}
