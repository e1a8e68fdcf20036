//! Herds with real process trees: every escape trick real programs use, ended by `kill`,
//! `stop` and drop, and then a count of what is still alive in /proc.
//!
//! Every process of a test carries a unique `SHEEPDOG_TEST` value (descendants inherit it), so
//! "nothing is left" is checked by scanning /proc for live processes with that value.

mod common;

use std::time::Duration;

use common::cgroup::TestCgroup;
use sheepdog::{Command, Herd, Mechanism, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How a test ends its herd.
#[derive(Debug, Clone, Copy)]
enum End {
    Kill,
    Stop,
    Drop,
}

const ENDS: [End; 3] = [End::Kill, End::Stop, End::Drop];
const MECHANISMS: [Mechanism; 2] = [Mechanism::CgroupV2, Mechanism::ProcessGroup];

/// A herd running `script` under `sh -c`, started once the script printed `ready`.
struct Tree {
    herd: Herd,
    leader: sheepdog::Child,
    marker: String,
    /// Pids the script printed (processes that may not be in the cgroup).
    printed: Vec<u32>,
}

/// Starts the tree in a herd of `mechanism`, or `None` (with a printed reason) where no such
/// herd can be made.
async fn start(test: &str, mechanism: Mechanism, end: End, script: &str) -> Option<Tree> {
    let herd = match Herd::builder().mechanism(mechanism).build() {
        Ok(herd) => herd,
        Err(err) => {
            eprintln!("skipping {test} with {mechanism}: {err}");
            return None;
        }
    };
    assert_eq!(herd.containment().mechanism(), mechanism);
    let marker = format!("{test}-{mechanism:?}-{end:?}-{}", std::process::id());
    let mut leader = herd
        .spawn(
            Command::new("sh")
                .args(["-c", script])
                .env(common::MARK, &marker)
                .stdout(Stdio::piped()),
        )
        .expect("spawn the tree");
    let mut lines = BufReader::new(leader.take_stdout().expect("stdout")).lines();
    let mut printed = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the tree said `ready` in time")
            .expect("read stdout")
            .expect("the tree said `ready` before closing stdout");
        if line == "ready" {
            break;
        }
        printed.push(line.trim().parse().expect("a pid"));
    }
    // Whatever is still written goes nowhere; nothing in these trees writes again.
    drop(lines);
    Some(Tree {
        herd,
        leader,
        marker,
        printed,
    })
}

impl Tree {
    /// Ends the herd as `end` says and checks that nothing of the tree is alive.
    async fn end(self, end: End, grace: Duration) -> Option<sheepdog::StopReport> {
        let Tree {
            herd,
            mut leader,
            marker,
            printed,
        } = self;
        // Bounded: a process in the middle of exec shows no environment for a moment.
        assert!(
            common::eventually(Duration::from_secs(10), || !common::alive(&marker)
                .is_empty())
            .await,
            "the tree is running"
        );
        let report = match end {
            End::Kill => {
                herd.kill().await.expect("kill");
                None
            }
            End::Stop => Some(herd.stop(grace).await.expect("stop")),
            End::Drop => {
                let cgroup = herd.containment().cgroup().map(|p| p.to_owned());
                drop(herd);
                // Drop returns at once; the tree goes, and the cgroup is removed, shortly after.
                let gone = common::poll_until(Duration::from_secs(10), || {
                    common::alive(&marker).is_empty() && cgroup.as_ref().is_none_or(|c| !c.exists())
                });
                assert!(gone, "left after drop: {:?}", common::alive(&marker));
                None
            }
        };
        // A member that moved itself out of the cgroup (the second net) gets its SIGKILL with
        // the rest, but `kill` and `stop` wait only for the cgroup: give it a moment to go.
        common::poll_until(Duration::from_secs(10), || {
            common::alive(&marker).is_empty()
        });
        let left = common::alive(&marker);
        assert!(left.is_empty(), "alive after {end:?}: {left:?}");
        for pid in printed {
            assert!(
                common::pid_state(pid).is_none_or(|s| s == 'Z'),
                "{pid} survived {end:?}"
            );
        }
        leader.wait().await.expect("reap the leader");
        report
    }
}

/// Runs `script` in a herd of each mechanism, under every way of ending a herd.
async fn each_end(test: &str, script: &str) {
    for mechanism in MECHANISMS {
        each_end_with(test, mechanism, script).await;
    }
}

/// Runs `script` in a herd of `mechanism`, under every way of ending a herd.
async fn each_end_with(test: &str, mechanism: Mechanism, script: &str) {
    for end in ENDS {
        if let Some(tree) = start(test, mechanism, end, script).await {
            tree.end(end, Duration::from_secs(5)).await;
        }
    }
}

#[tokio::test]
async fn background_children_die_with_the_herd() {
    each_end(
        "background_children",
        "sleep 1000 & sleep 1000 & echo ready; wait",
    )
    .await;
}

#[tokio::test]
async fn grandchild_in_a_new_process_group_dies_with_the_herd() {
    each_end(
        "new_process_group",
        "python3 -c 'import os; os.setpgid(0, 0); os.execvp(\"sleep\", [\"sleep\", \"1000\"])' &
         echo $!; echo ready; wait",
    )
    .await;
}

#[tokio::test]
async fn setsid_grandchild_dies_with_the_herd() {
    each_end(
        "setsid",
        "python3 -c 'import os; os.setsid(); os.execvp(\"sleep\", [\"sleep\", \"1000\"])' &
         echo $!; echo ready; wait",
    )
    .await;
}

#[tokio::test]
async fn double_fork_daemon_dies_with_the_herd() {
    each_end(
        "double_fork",
        "python3 -c '
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        os.execvp(\"sleep\", [\"sleep\", \"1000\"])
    os._exit(0)
os.wait()
'; echo ready; sleep 1000",
    )
    .await;
}

#[tokio::test]
async fn children_of_a_leader_that_exited_die_with_the_herd() {
    each_end(
        "leader_exits_first",
        "sleep 1000 & echo $!; sleep 1000 & echo $!; echo ready",
    )
    .await;
}

#[tokio::test]
async fn stop_escalates_when_the_tree_ignores_sigterm() {
    let script = "trap '' TERM; sleep 1000 & sleep 1000 & echo ready; wait";
    for mechanism in MECHANISMS {
        let Some(tree) = start("ignores_term", mechanism, End::Stop, script).await else {
            continue;
        };
        let report = tree
            .end(End::Stop, Duration::from_millis(300))
            .await
            .expect("a report");
        assert!(report.escalated(), "{mechanism}: {report}");
        assert_eq!(report.killed(), Some(3), "{mechanism}: {report}");
        assert_eq!(report.terminated().len(), 3, "{mechanism}: {report}");
        assert!(report.elapsed() >= Duration::from_millis(300), "{report}");
    }
}

#[tokio::test]
async fn stop_does_not_escalate_when_the_tree_exits_on_sigterm() {
    for mechanism in MECHANISMS {
        let script = "sleep 1000 & echo ready; wait";
        let Some(tree) = start("exits_on_term", mechanism, End::Stop, script).await else {
            continue;
        };
        let report = tree
            .end(End::Stop, Duration::from_secs(30))
            .await
            .expect("a report");
        assert!(!report.escalated(), "{mechanism}: {report}");
        assert_eq!(report.terminated().len(), 2, "{mechanism}: {report}");
    }
}

#[tokio::test]
async fn fork_storm_during_the_kill_does_not_escape() {
    // Forks as fast as it can (bounded, should the kill fail) while the herd is ended.
    each_end(
        "fork_storm",
        "i=0; while [ $i -lt 5000 ]; do sleep 1000 & i=$((i+1));
         if [ $i = 20 ]; then echo ready; fi; done; wait",
    )
    .await;
}

#[tokio::test]
async fn stopped_tree_is_ended() {
    for (mechanism, end) in MECHANISMS.into_iter().flat_map(|m| ENDS.map(|e| (m, e))) {
        let script = "sleep 1000 & sleep 1000 & echo ready; wait";
        let Some(tree) = start("sigstopped", mechanism, end, script).await else {
            continue;
        };
        for pid in tree.herd.members().expect("members") {
            let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
        }
        tree.end(end, Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn frozen_tree_is_ended() {
    for (mechanism, end) in MECHANISMS.into_iter().flat_map(|m| ENDS.map(|e| (m, e))) {
        let script = "sleep 1000 & sleep 1000 & echo ready; wait";
        let Some(tree) = start("frozen", mechanism, end, script).await else {
            continue;
        };
        tree.herd.freeze().await.expect("freeze");
        tree.end(end, Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn processes_in_new_user_and_pid_namespaces_die_with_the_herd() {
    each_end(
        "namespaces",
        "unshare --user --map-root-user --pid --fork --mount-proc sh -c 'sleep 1000 & sleep 1000 & wait' &
         while [ $(cat /proc/$!/task/*/children 2>/dev/null | wc -w) -lt 1 ]; do :; done
         echo ready; wait",
    )
    .await;
}

#[tokio::test]
async fn member_that_moves_to_another_cgroup_is_caught_by_the_process_group() {
    let other = match TestCgroup::new("elsewhere") {
        Ok(other) => other,
        Err(reason) => {
            eprintln!("skipping: {reason}");
            return;
        }
    };
    let script = format!(
        "sleep 1000 & sh -c 'echo $$ > {}/cgroup.procs; echo $$; echo ready; exec sleep 1000' & wait",
        other.path.display()
    );
    each_end_with("moved_out", Mechanism::CgroupV2, &script).await;
}

#[tokio::test]
async fn members_freeze_and_thaw() {
    let script = "sleep 1000 & echo ready; wait";
    let Some(tree) = start("freeze_thaw", Mechanism::CgroupV2, End::Kill, script).await else {
        return;
    };
    let members = tree.herd.members().expect("members");
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.contains(&tree.leader.pid()));
    let events = tree
        .herd
        .containment()
        .cgroup()
        .expect("a cgroup")
        .join("cgroup.events");
    let frozen = || std::fs::read_to_string(&events).expect("read cgroup.events");
    tree.herd.freeze().await.expect("freeze");
    assert!(frozen().contains("frozen 1"), "{}", frozen());
    tree.herd.thaw().await.expect("thaw");
    assert!(frozen().contains("frozen 0"), "{}", frozen());
    assert!(!tree.herd.is_empty().expect("is_empty"));
    tree.end(End::Kill, Duration::ZERO).await;
}

#[tokio::test]
async fn wait_empty_waits_for_background_descendants() {
    for mechanism in MECHANISMS {
        let Some(tree) = start("wait_empty", mechanism, End::Kill, "sleep 0.3 & echo ready").await
        else {
            continue;
        };
        tree.herd.wait_empty().await.expect("wait_empty");
        assert!(tree.herd.is_empty().expect("is_empty"));
        assert!(common::alive(&tree.marker).is_empty(), "{mechanism}");
    }
}

#[tokio::test]
async fn host_containment_agrees_with_herd_new() {
    let host = sheepdog::host_containment();
    match Herd::new() {
        Ok(herd) => {
            assert_eq!(
                host.mechanism(),
                Some(herd.containment().mechanism()),
                "{host}"
            );
            let cgroup = herd.containment().cgroup().expect("a cgroup path");
            assert!(cgroup.exists());
            // Herds live in this process's home cgroup, which the sentinel removes at exit.
            let home = cgroup.parent().and_then(|p| p.file_name()).expect("a home");
            // Named for this process and its pid namespace.
            let namespace = std::fs::metadata("/proc/self/ns/pid").map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            });
            assert_eq!(
                home.to_string_lossy(),
                format!(
                    "sheepdog-{}.{}",
                    std::process::id(),
                    namespace.expect("our pid namespace")
                )
            );
        }
        Err(err) => panic!("Herd::new failed although a process group is always possible: {err}"),
    }
}

/// The fallback says what it cannot catch, and a setsid grandchild whose parent exited first
/// is not among it: adopted, found by its mark, it dies with the herd.
#[tokio::test]
async fn process_group_fallback_catches_an_orphaned_setsid_grandchild() {
    // The escapee says `ready` itself, once it has its own session; its parent exits at once.
    let script = "python3 -c 'import os; os.setsid(); print(os.getpid()); print(\"ready\", flush=True); os.execvp(\"sleep\", [\"sleep\", \"1000\"])' & exit 0";
    let tree = start("group_escape", Mechanism::ProcessGroup, End::Kill, script)
        .await
        .expect("a process group herd is always possible");
    let containment = tree.herd.containment();
    assert!(containment.adopts_orphans(), "{containment}");
    let gaps = containment.cannot_catch().join("; ");
    assert!(gaps.contains("SIGKILL") && gaps.contains("mark"), "{gaps}");
    let escapee = *tree.printed.first().expect("the escapee's pid");
    let _cleanup = common::KillOnDrop::new(escapee);
    assert!(
        tree.herd.members().expect("members").contains(&escapee),
        "the escapee is a member"
    );
    tree.end(End::Kill, Duration::ZERO).await;
    assert!(
        common::poll_until(Duration::from_secs(10), || !common::pid_exists(escapee)),
        "the adopted escapee was killed and reaped (state {:?})",
        common::pid_state(escapee)
    );
}

#[tokio::test]
async fn forced_process_group_reports_itself() {
    let herd = Herd::builder()
        .mechanism(Mechanism::ProcessGroup)
        .build()
        .expect("a process group herd");
    let containment = herd.containment();
    assert_eq!(containment.mechanism(), Mechanism::ProcessGroup);
    assert_eq!(containment.cgroup(), None);
    assert_eq!(containment.fallback_reason(), None, "it was asked for");
    let pgid = containment.process_group().expect("a group id");
    assert!(containment
        .to_string()
        .starts_with(&format!("process group {pgid}")));
    assert!(
        herd.is_empty().expect("is_empty"),
        "only the anchor, which does not count"
    );
}

/// Herds are shared between tasks (`Arc<Herd>`), children moved into them.
#[test]
fn herd_is_send_and_sync_and_child_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Herd>();
    send_sync::<sheepdog::Command>();
    send::<sheepdog::Child>();
    send::<sheepdog::StopReport>();
}

/// The whole tree's CPU time counts processes that already exited, orphans included.
#[tokio::test]
async fn cpu_time_counts_the_whole_tree() {
    let herd = Herd::new().expect("a herd");
    let mut leader = herd
        .spawn(common::cmd("cpu_time", "sh").args([
            "-c",
            "(i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done) & exit 0",
        ]))
        .expect("spawn");
    let leader_usage = leader.wait().await.expect("wait").usage();
    herd.wait_empty().await.expect("wait for the orphaned loop");
    match herd.cpu_time().expect("cpu.stat") {
        Some((user, system)) => {
            let tree = user + system;
            // The orphaned loop was not waited for by the leader, so only the herd counts it.
            assert!(
                tree > leader_usage.user_time() + leader_usage.system_time(),
                "tree {tree:?}, leader {leader_usage:?}"
            );
            assert!(tree > std::time::Duration::from_millis(10), "{tree:?}");
        }
        None => assert_eq!(herd.containment().mechanism(), Mechanism::ProcessGroup),
    }
}

/// A child spawned into a herd's cgroup gets the spawning thread's CPU mask, and the thread
/// keeps its own: the spawn pins the thread to its CPU around the clone, and the child takes
/// the saved mask back before exec.
#[tokio::test]
async fn spawn_into_a_cgroup_keeps_the_cpu_mask() {
    let mask = |task: &str| {
        let status = std::fs::read_to_string(format!("/proc/{task}/status")).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_owned()
    };
    let before = mask("thread-self");
    if !before.contains(['-', ',']) {
        eprintln!("skipping: this thread may run on CPU {before} only, like a pinned one");
        return;
    }
    let script = "echo ready; exec sleep 1000";
    let Some(tree) = start("cpu_mask", Mechanism::CgroupV2, End::Kill, script).await else {
        return;
    };
    assert_eq!(
        mask(&tree.leader.pid().to_string()),
        before,
        "the child's mask"
    );
    assert_eq!(mask("thread-self"), before, "the spawning thread's mask");
    tree.end(End::Kill, Duration::ZERO).await;
}

/// A process-group herd's `wait_empty` (and its `stop`) looks at /proc off the runtime: on a
/// current-thread runtime a ticker task keeps ticking while it waits for a tree that forks.
#[test]
fn process_group_wait_empty_does_not_stall_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let herd = Herd::builder()
            .mechanism(Mechanism::ProcessGroup)
            .build()
            .expect("a process group herd");
        let marker = format!("ticker-{}", std::process::id());
        // Many short-lived members, so that the herd looks at /proc again and again.
        let script = "i=0; while [ $i -lt 40 ]; do sleep 0.01 & i=$((i+1)); done; \
                      setsid sleep 0.4 & wait";
        let mut leader = herd
            .spawn(
                Command::new("sh")
                    .args(["-c", script])
                    .env(common::MARK, &marker),
            )
            .expect("spawn");
        let longest = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let ticker = {
            let longest = std::sync::Arc::clone(&longest);
            tokio::spawn(async move {
                let mut last = std::time::Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let gap = last.elapsed();
                    last = std::time::Instant::now();
                    let mut longest = longest.lock().expect("lock");
                    *longest = (*longest).max(gap);
                }
            })
        };
        let started = std::time::Instant::now();
        herd.wait_empty().await.expect("wait_empty");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "wait_empty waited for the setsid member"
        );
        ticker.abort();
        leader.wait().await.expect("reap the leader");
        assert!(
            common::alive(&marker).is_empty(),
            "{:?}",
            common::alive(&marker)
        );
        let longest = *longest.lock().expect("lock");
        // A look at /proc on this thread would hold it for the whole wait; the bound leaves
        // room for a loaded machine's scheduling.
        assert!(
            longest < Duration::from_millis(150),
            "longest tick gap {longest:?}"
        );
    });
}

/// A leader that exits while the herd looks at its tree hands its children to this process
/// (the adopter) in the middle of the look: the look goes back to the adopted after its walk,
/// so `wait_empty` does not end while one of them runs.
#[tokio::test]
async fn process_group_wait_empty_sees_children_handed_over_during_a_look() {
    // In the herd's group, and in a session of its own (found by its mark only; it may be in
    // the middle of its exec, whose environment shows empty for a moment).
    let scripts = ["sleep 0.05 & echo ready", "setsid sleep 0.05 & echo ready"];
    for round in 0..40 {
        let script = scripts[round % 2];
        let Some(tree) = start("handed_over", Mechanism::ProcessGroup, End::Kill, script).await
        else {
            return;
        };
        tree.herd.wait_empty().await.expect("wait_empty");
        let left = common::alive(&tree.marker);
        assert!(
            left.is_empty(),
            "round {round} ({script}): {left:?} outlived wait_empty"
        );
    }
}

/// A herd goes on being a herd after `kill`: what is spawned into it afterwards runs (the
/// kernel kills a child cloned straight into a cgroup that was killed, so it must not be).
#[tokio::test]
async fn a_herd_spawns_again_after_a_kill() {
    let herd = Herd::new().expect("herd");
    let runs_true = |herd: &Herd| {
        let mut child = herd
            .spawn(&common::cmd("spawn_after_kill", "true"))
            .expect("spawn after the kill");
        async move {
            let status = child.wait().await.expect("wait");
            assert_eq!(status.code(), Some(0), "{status:?}");
        }
    };
    let mut first = herd
        .spawn(common::cmd("spawn_after_kill", "sleep").arg("100"))
        .expect("spawn");
    herd.kill().await.expect("kill");
    assert!(first.wait().await.expect("wait").signal().is_some());
    for _ in 0..3 {
        runs_true(&herd).await;
    }
    // What starts after the kill is in the herd, and the next kill ends it.
    let mut held = herd
        .spawn(common::cmd("spawn_after_kill", "sleep").arg("100"))
        .expect("spawn after the kill");
    assert!(herd.members().expect("members").contains(&held.pid()));
    herd.kill().await.expect("kill again");
    assert!(held.wait().await.expect("wait").signal().is_some());
    runs_true(&herd).await;
}

/// Linux 6.9 signals a process group through its leader's pidfd; before, a group is reached
/// only while its leader is unreaped.
fn kernel_signals_groups_by_pidfd() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 9)
}

/// The herd keeps each group's leader's pidfd, which names the group for as long as it is open:
/// a member that left the cgroup is killed with the herd even after its leader was reaped, when
/// nothing of the group is left in the cgroup to prove the group is the herd's.
#[tokio::test]
async fn a_stray_outlives_its_reaped_leader_but_not_the_kill() {
    if !kernel_signals_groups_by_pidfd() {
        eprintln!("skipping: this kernel cannot signal a process group through a pidfd");
        return;
    }
    let other = match TestCgroup::new("stray_of_reaped") {
        Ok(other) => other,
        Err(reason) => {
            eprintln!("skipping: {reason}");
            return;
        }
    };
    let herd = Herd::new().expect("herd");
    // The leader starts the stray, which leaves the cgroup but not the group, and exits.
    let script = format!(
        "sh -c 'echo $$ > {}/cgroup.procs && echo $$ && exec sleep 1000' </dev/null & wait_for=$!
         while kill -0 $wait_for && ! grep -q sleep /proc/$wait_for/cmdline; do :; done",
        other.path.display()
    );
    let mut leader = herd
        .spawn(
            common::cmd("stray_of_reaped", "sh")
                .args(["-c", &script])
                .stdout(Stdio::piped()),
        )
        .expect("spawn");
    let mut stdout = leader.stdout.take().expect("stdout");
    let printed = common::read_until(&mut stdout, "\n").await;
    let stray: u32 = printed.trim().parse().expect("the stray's pid");
    let _guard = common::KillOnDrop::new(stray);
    assert_eq!(leader.wait().await.expect("wait").code(), Some(0));
    assert!(herd.is_empty().expect("is_empty"), "only the stray is left");
    assert_eq!(common::pgid_of(stray), Some(leader.pid() as i32));
    herd.kill().await.expect("kill");
    assert!(
        common::eventually(Duration::from_secs(10), || {
            matches!(common::pid_state(stray), None | Some('Z'))
        })
        .await,
        "the stray outlived the kill"
    );
}
