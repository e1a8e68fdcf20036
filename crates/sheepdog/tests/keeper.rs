//! A cgroup herd made ahead comes with a keeper: an idle process that keeps the cgroup
//! populated so that the first spawn costs no `cgroup.events` notification. It must never count
//! as a member, hold none of this process's descriptors, and leave no process or zombie behind
//! on any path.
//!
//! One test, its steps in order: which herd gets a keeper depends on the cgroups this process
//! has made ahead, which other tests in the same binary would take.

mod common;

use std::path::Path;
use std::time::Duration;

use sheepdog::{Herd, Mechanism};

/// A herd taken from the cgroups made ahead, and its keeper's pid; `None` (with the reason
/// printed) where this host gives no keepers.
fn kept_herd() -> Option<(Herd, u32)> {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipping keepers: they are cloned from assembly written for x86_64 only");
        return None;
    }
    let cgroup_herd = || Herd::builder().mechanism(Mechanism::CgroupV2).build();
    // Dropping a herd makes the next cgroups ahead; wait until they are made.
    match cgroup_herd() {
        Ok(first) => drop(first),
        Err(err) => {
            eprintln!("skipping keepers: no cgroup herd here: {err}");
            return None;
        }
    }
    common::settle();
    let herd = cgroup_herd().expect("a second cgroup herd");
    let dir = herd
        .containment()
        .cgroup()
        .expect("a cgroup herd has a cgroup");
    let procs = procs_of(dir);
    let unguarded = herd
        .containment()
        .cannot_catch()
        .iter()
        .any(|gap| gap.contains("owner-death sentinel"));
    if unguarded {
        eprintln!("skipping keepers: no owner-death sentinel here, so no cgroups made ahead");
        return None;
    }
    assert_eq!(
        procs.len(),
        1,
        "a herd made ahead holds its keeper and nothing else: {procs:?}"
    );
    Some((herd, procs[0]))
}

/// A `sleep 1000` started in `herd`, marked with `marker`.
fn sleep_in(herd: &Herd, marker: &str) -> sheepdog::Child {
    herd.spawn(common::cmd(marker, "sleep").arg("1000"))
        .expect("spawn sleep")
}

/// The pids in the cgroup at `dir` (not below it).
fn procs_of(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .expect("read cgroup.procs")
        .lines()
        .map(|line| line.parse().expect("a pid"))
        .collect()
}

/// A `/proc/PID/status` field.
fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read the keeper's status")
        .lines()
        .find_map(|line| Some(line.strip_prefix(field)?.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_keeper_is_never_a_member_and_never_left_behind() {
    // 1. What a keeper is: idle, named, every signal blocked, no descriptors.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    assert_eq!(status_field(keeper, "Name:"), "sheepdog-keeper");
    assert_eq!(
        status_field(keeper, "PPid:"),
        std::process::id().to_string()
    );
    // The kernel never blocks SIGKILL (9) and SIGSTOP (19); everything else is.
    let blocked = u64::from_str_radix(&status_field(keeper, "SigBlk:"), 16).expect("hex");
    assert_eq!(blocked, !((1 << 8) | (1 << 18)), "SigBlk {blocked:x}");
    let fds = std::fs::read_dir(format!("/proc/{keeper}/fd"))
        .expect("the keeper's fd table")
        .count();
    assert_eq!(
        fds, 0,
        "the keeper holds none of this process's descriptors"
    );

    // 2. A spawn lands beside it; the first look at the members retires it (killed and reaped,
    //    no zombie), and only the child is listed.
    let marker = format!("keeper-{}", std::process::id());
    let mut child = sleep_in(&herd, &marker);
    assert_eq!(herd.members().expect("members"), vec![child.pid()]);
    assert!(!common::pid_exists(keeper), "the retired keeper is reaped");
    herd.kill().await.expect("kill");
    let status = child.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(sheepdog::Signal::KILL));
    drop(herd);

    // 3. `is_empty` and `wait_empty` on a kept herd see the herd, not the keeper.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    assert!(herd.is_empty().expect("is_empty"));
    assert!(!common::pid_exists(keeper));
    drop(herd);
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(10), herd.wait_empty())
        .await
        .expect("wait_empty returns although the keeper was there")
        .expect("wait_empty");
    assert!(!common::pid_exists(keeper));
    drop(herd);

    // 4. `signal`, `stop` and `kill` on a kept herd address the herd's processes only.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    assert_eq!(herd.signal(sheepdog::Signal::HUP).expect("signal"), vec![]);
    assert!(!common::pid_exists(keeper));
    drop(herd);
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    let mut child = sleep_in(&herd, &marker);
    let report = herd.stop(Duration::from_secs(10)).await.expect("stop");
    assert_eq!(
        report.signalled(),
        &[(sheepdog::Signal::TERM, vec![child.pid()])]
    );
    assert!(!report.escalated());
    assert!(!common::pid_exists(keeper));
    child.wait().await.expect("wait");
    drop(herd);
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    let mut child = sleep_in(&herd, &marker);
    herd.kill().await.expect("kill");
    assert!(!common::pid_exists(keeper));
    let status = child.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(sheepdog::Signal::KILL));
    drop(herd);

    // 5. `freeze` and `thaw` leave the keeper be: it is frozen and thawed with the herd.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    let mut child = sleep_in(&herd, &marker);
    tokio::time::timeout(Duration::from_secs(10), herd.freeze())
        .await
        .expect("the freeze completes, keeper included")
        .expect("freeze");
    assert!(
        common::pid_exists(keeper),
        "a freeze does not retire the keeper"
    );
    herd.thaw().await.expect("thaw");
    herd.kill().await.expect("kill");
    assert!(!common::pid_exists(keeper));
    child.wait().await.expect("wait");
    drop(herd);

    // 6. A kept herd that is only spawned into and dropped: the drop's kill ends the keeper,
    //    and the background reaps it and removes the cgroup.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    let dir = herd.containment().cgroup().expect("a cgroup").to_owned();
    let status = herd
        .spawn(&common::cmd(&marker, "true"))
        .expect("spawn true")
        .wait()
        .await
        .expect("wait");
    assert!(status.success());
    assert_eq!(
        procs_of(&dir),
        vec![keeper],
        "the keeper outlives the child"
    );
    drop(herd);
    common::settle();
    assert!(
        !common::pid_exists(keeper),
        "the dropped herd's keeper is reaped"
    );
    assert!(!dir.exists(), "the dropped herd's cgroup is removed");

    // 7. A keeper that died before its herd was dropped (killed by someone else): the drop
    //    cannot count on its death to wake the background, and must not leave the cgroup.
    let Some((herd, keeper)) = kept_herd() else {
        return;
    };
    let dir = herd.containment().cgroup().expect("a cgroup").to_owned();
    let pid = rustix::process::Pid::from_raw(keeper as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill the keeper");
    assert!(
        common::poll_until(Duration::from_secs(10), || !common::pid_exists(keeper)),
        "the background reaps a keeper that died"
    );
    drop(herd);
    common::settle();
    assert!(!dir.exists(), "the dropped herd's cgroup is removed");
    assert!(common::alive(&marker).is_empty());
}
