//! A dropped herd's cgroup is reused for the next herd only as if it were new: empty, never
//! killed, with no limit or setting anybody wrote, no cgroup inside; and nothing of the pool is
//! left once the program exits.
//!
//! One test runs the in-process cases one after the other: the pool is the process's, so
//! concurrent tests in this binary would take each other's cgroups. The exit case runs this
//! test binary again as a helper.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sheepdog::{Herd, Mechanism};

const HELPER: &str = "SHEEPDOG_REUSE_HELPER";

fn marker(case: &str) -> String {
    format!("reuse-{case}-{}", std::process::id())
}

/// A guarded cgroup herd (one in this process's home, whose cgroups are reused), or `None`
/// (printed) where this host has none.
fn home_herd() -> Option<Herd> {
    match Herd::builder().mechanism(Mechanism::CgroupV2).build() {
        Ok(herd) if herd.containment().unguarded_reason().is_none() => Some(herd),
        Ok(_) => {
            eprintln!("skipping: no owner-death sentinel, so no home and no reuse");
            None
        }
        Err(err) => {
            eprintln!("skipping: no cgroup herd here: {err}");
            None
        }
    }
}

fn path_of(herd: &Herd) -> PathBuf {
    herd.containment().cgroup().expect("a cgroup").to_owned()
}

fn setting(cgroup: &Path, file: &str) -> String {
    std::fs::read_to_string(cgroup.join(file))
        .unwrap_or_else(|err| panic!("read {file} of {}: {err}", cgroup.display()))
        .trim()
        .to_owned()
}

/// Spends some CPU time in a `Command::spawn` child and waits for it; returns the cgroup of its
/// private herd (below the mount), now given back.
async fn private_cgroup_after_cpu() -> PathBuf {
    let mut child = common::cmd(&marker("private"), "sh")
        .args([
            "-c",
            "grep ^0:: /proc/self/cgroup; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ])
        .stdout(sheepdog::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let line = common::read_until(&mut stdout, "\n").await;
    assert!(child.wait().await.expect("wait").success());
    drop(child);
    PathBuf::from(line.trim().trim_start_matches("0::/"))
}

/// Runs `script` in `herd` and waits for it.
async fn run(herd: &Herd, case: &str, script: &str) {
    let status = herd
        .spawn(common::cmd(&marker(case), "sh").args(["-c", script]))
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    assert!(status.success(), "{script}: {status}");
}

#[tokio::test]
async fn herd_cgroups_are_reused_only_as_new() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let Some(first) = home_herd() else {
        return;
    };
    let used = path_of(&first);
    // Some CPU time, so that a count carried over would show.
    run(
        &first,
        "cpu",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    )
    .await;
    drop(first);

    // The emptied cgroup is the next herd's, as new.
    let second = home_herd().expect("a second herd");
    assert_eq!(path_of(&second), used, "the emptied cgroup is reused");
    eprintln!("{} reused", used.display());
    assert!(second.members().expect("members").is_empty());
    assert_eq!(
        second.cpu_time().expect("cpu.stat"),
        Some((Duration::ZERO, Duration::ZERO)),
        "the CPU time counts from the reuse"
    );

    // One that a private herd (`Command::spawn`) used: its CPU time is not read when the private
    // herd gives it back, but when the next herd takes it.
    let private = private_cgroup_after_cpu().await;
    let after_private = home_herd().expect("a herd after a private one");
    assert!(
        path_of(&after_private).ends_with(&private),
        "the private herd's cgroup {} is reused",
        private.display()
    );
    assert_eq!(
        after_private.cpu_time().expect("cpu.stat"),
        Some((Duration::ZERO, Duration::ZERO)),
        "the CPU time counts from the reuse after a private herd"
    );
    drop(after_private);
    for (file, default) in [
        ("cgroup.max.descendants", "max"),
        ("cgroup.max.depth", "max"),
        ("cgroup.freeze", "0"),
        ("cgroup.subtree_control", ""),
        ("cgroup.type", "domain"),
    ] {
        assert_eq!(setting(&used, file), default, "{file}");
    }
    let inside: Vec<_> = std::fs::read_dir(&used)
        .expect("list the cgroup")
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(inside.is_empty(), "cgroups inside: {inside:?}");

    // A limit written into it: not reused, removed at the drop.
    std::fs::write(used.join("cgroup.max.descendants"), "5").expect("write a limit");
    run(&second, "limit", "true").await;
    drop(second);
    assert!(!used.exists(), "a cgroup with a limit set is removed");
    let third = home_herd().expect("a third herd");
    assert_ne!(path_of(&third), used);
    drop(third);

    // A killed cgroup: not reused (the kernel would kill what is cloned into it next), and the
    // next herd's children run.
    let killed = home_herd().expect("a herd to kill");
    let killed_path = path_of(&killed);
    run(&killed, "killed", "true").await;
    killed.kill().await.expect("kill");
    drop(killed);
    let after = home_herd().expect("a herd after the kill");
    assert_ne!(
        path_of(&after),
        killed_path,
        "a killed cgroup is not reused"
    );
    run(&after, "after_kill", "true").await;
    drop(after);

    // A tree still dying at the drop: killed, not reused while populated, removed once empty.
    let fourth = home_herd().expect("a fourth herd");
    let dying = path_of(&fourth);
    let mut sleeper = common::cmd(&marker("dying"), "sleep");
    sleeper.arg("1000");
    let _child = fourth.spawn(&sleeper).expect("spawn");
    drop(fourth);
    let fifth = home_herd().expect("a fifth herd");
    assert_ne!(path_of(&fifth), dying, "a populated cgroup is not reused");
    assert!(
        common::poll_until(Duration::from_secs(10), || !dying.exists()),
        "the killed herd's cgroup is removed once empty"
    );
    assert!(
        common::alive(&marker("dying")).is_empty(),
        "the sleep died with its herd"
    );

    // A cgroup made inside it (a child with a deadline of its own gets one): not reused.
    let inner = path_of(&fifth);
    let mut timed = common::cmd(&marker("timed"), "true");
    timed.timeout(Duration::from_secs(60));
    let status = fifth
        .spawn(&timed)
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    assert!(status.success());
    drop(fifth);
    let sixth = home_herd().expect("a sixth herd");
    assert_ne!(
        path_of(&sixth),
        inner,
        "a cgroup with a cgroup made inside is not reused"
    );
    drop(sixth);
    common::settle();
}

/// The helper's side: private herds one after the other and at once, all dropped (their
/// cgroups in the pool), then an exit without waiting for anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let Some(herd) = home_herd() else {
        println!("@@ skip");
        return;
    };
    let home = path_of(&herd).parent().expect("a home").to_owned();
    drop(herd);
    let mark = std::env::var(common::MARK).expect("marked");
    for _ in 0..20 {
        let status = common::cmd(&mark, "true")
            .spawn()
            .expect("spawn")
            .wait()
            .await
            .expect("wait");
        assert!(status.success());
    }
    let herds: Vec<Herd> = (0..8).map(|_| home_herd().expect("a herd")).collect();
    for herd in &herds {
        run(herd, "exit", "true").await;
    }
    drop(herds);
    let pooled = std::fs::read_dir(&home)
        .map(|dir| dir.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0);
    println!("@@ home {} {pooled}", home.display());
    std::process::exit(0);
}

#[test]
fn nothing_of_the_pool_is_left_after_exit() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "exit_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, "1")
        .env(common::MARK, marker("exit"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the helper");
    assert!(output.status.success(), "the helper failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("@@ skip") {
        return;
    }
    let line = text
        .lines()
        .find_map(|line| line.split_once("@@ home ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the helper named its home: {text}"));
    let (home, pooled) = line.rsplit_once(' ').expect("home and count");
    let home = PathBuf::from(home);
    eprintln!(
        "the helper left {pooled} cgroups in {} at its exit",
        home.display()
    );
    assert!(
        pooled.parse::<usize>().expect("a count") > 0,
        "cgroups were kept for reuse"
    );
    assert!(
        common::poll_until(Duration::from_secs(10), || !home.exists()),
        "{} left after its owner exited",
        home.display()
    );
}
