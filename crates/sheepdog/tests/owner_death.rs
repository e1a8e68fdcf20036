//! When the program that owns a herd dies — by SIGKILL or abort, no destructor running — every
//! process of the herd dies too and its cgroup is removed (the sentinel's job).
//!
//! The owner is this test binary itself, run again as `owner_helper` with
//! `SHEEPDOG_OWNER_HELPER` set: it makes a herd, starts a tree, reports, and then is killed or
//! aborts. A process-group herd is the owner's second, so its anchor is the one the sentinel
//! made ahead.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const HELPER: &str = "SHEEPDOG_OWNER_HELPER";
const MECHANISM: &str = "SHEEPDOG_OWNER_MECHANISM";

/// The owner's side; does nothing unless run as the helper.
#[test]
fn owner_helper() {
    let Some(mode) = std::env::var_os(HELPER) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let group = std::env::var_os(MECHANISM).is_some_and(|m| m == "group");
        let mechanism = if group {
            sheepdog::Mechanism::ProcessGroup
        } else {
            sheepdog::Mechanism::CgroupV2
        };
        // A herd made and dropped first, so that the herd below takes what was made ahead
        // rather than made on request: the sentinel's anchor for a process group, a cgroup
        // made ahead for a cgroup.
        if let Ok(first) = sheepdog::Herd::builder().mechanism(mechanism).build() {
            drop(first);
        }
        while sheepdog::__private::background_work() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let herd = match sheepdog::Herd::builder().mechanism(mechanism).build() {
            Ok(herd) => herd,
            Err(err) => {
                println!("skip {err}");
                return;
            }
        };
        // A process group cannot hold a setsid escapee; a cgroup can.
        let script = if group {
            "sleep 1000 & sleep 1000 & (sleep 1000 &) ; echo ready; wait"
        } else {
            "sleep 1000 & setsid sleep 1000 & (sleep 1000 &) ; echo ready; wait"
        };
        let mut tree = sheepdog::Command::new("sh");
        tree.args(["-c", script]).stdout(sheepdog::Stdio::piped());
        let mut child = herd.spawn(&tree).expect("spawn the tree");
        let mut out = String::new();
        use tokio::io::AsyncReadExt;
        let mut stdout = child.take_stdout().expect("stdout");
        let mut buf = [0u8; 64];
        while !out.contains("ready") {
            let n = stdout.read(&mut buf).await.expect("read");
            assert!(n > 0, "the tree ended early");
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        match herd.containment().cgroup() {
            Some(cgroup) => println!("cgroup {}", cgroup.display()),
            None => println!("cgroup none"),
        }
        println!("ready");
        // Wait for the word (a line on stdin), then abort; or be killed while waiting. The herd
        // is never dropped normally.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if mode == "abort" {
            std::process::abort();
        }
        std::future::pending::<()>().await;
        drop(herd);
    });
}

/// The owner process, killed and reaped when dropped (also when an assertion fails).
struct Owner(std::process::Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_owner(mode: &str, mechanism: &str) {
    let marker = &format!("owner-{mode}-{mechanism}-{}", std::process::id());
    // The owner leads a process group, so that "killpg" can kill it the way CI runners do.
    let mut owner = Command::new(std::env::current_exe().expect("this test binary"))
        .process_group(0)
        .args(["--exact", "owner_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, mode)
        .env(MECHANISM, mechanism)
        .env(common::MARK, marker)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the owner");
    let stdout = owner.stdout.take().expect("stdout");
    let mut owner = Owner(owner);
    let mut cgroup = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("read the owner's output");
        if let Some(reason) = line.strip_prefix("skip ") {
            eprintln!("skipping owner death ({mode}): {reason}");
            return;
        }
        // libtest prints "test owner_helper ... " without a newline before it.
        if let Some((_, path)) = line.split_once("cgroup ") {
            cgroup = Some(PathBuf::from(path));
        }
        if line == "ready" {
            break;
        }
    }
    let cgroup = cgroup.expect("the owner reported its herd's cgroup");
    let cgroup = (cgroup.as_os_str() != "none").then_some(cgroup);
    // The owner itself carries the marker too; the tree is everything else.
    let owner_pid = owner.0.id();
    let tree = || {
        common::alive(marker)
            .into_iter()
            .filter(|&pid| pid != owner_pid)
            .collect::<Vec<_>>()
    };
    assert!(tree().len() >= 4, "the tree is running: {:?}", tree());
    if mode == "kill" {
        owner.0.kill().expect("SIGKILL the owner");
    } else if mode == "killpg" {
        // The owner's whole process group at once, as a CI runner ends a job.
        let pgid = rustix::process::Pid::from_raw(owner_pid as i32).expect("a pid");
        rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL)
            .expect("SIGKILL the owner's group");
    } else {
        use std::io::Write;
        let mut stdin = owner.0.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("tell the owner to abort");
    }
    let status = owner.0.wait().expect("reap the owner");
    assert!(!status.success(), "{status}");
    let gone = common::poll_until(Duration::from_secs(10), || {
        tree().is_empty() && cgroup.as_ref().is_none_or(|c| !c.exists())
    });
    assert!(
        gone,
        "after the owner died: alive {:?}, cgroup {cgroup:?} left: {}",
        tree(),
        cgroup.as_ref().is_some_and(|c| c.exists())
    );
    drop(lines);
}

#[test]
fn herd_dies_when_its_owner_is_sigkilled() {
    if std::env::var_os(HELPER).is_none() {
        run_owner("kill", "cgroup");
    }
}

#[test]
fn herd_dies_when_its_owner_aborts() {
    if std::env::var_os(HELPER).is_none() {
        run_owner("abort", "cgroup");
    }
}

#[test]
fn herd_dies_when_its_owners_process_group_is_sigkilled() {
    if std::env::var_os(HELPER).is_none() {
        run_owner("killpg", "cgroup");
    }
}

#[test]
fn process_group_herd_dies_when_its_owner_is_sigkilled() {
    if std::env::var_os(HELPER).is_none() {
        run_owner("kill", "group");
    }
}

#[test]
fn process_group_herd_dies_when_its_owner_aborts() {
    if std::env::var_os(HELPER).is_none() {
        run_owner("abort", "group");
    }
}
