//! Hosts where a herd cannot have a cgroup: an unprivileged user (run as `nobody` through
//! setpriv) and a host without a cgroup v2 mount (hidden in a private mount namespace). The herd
//! falls back to a process group, says why, and still ends its tree.
//!
//! The herd's side runs in this test binary started again as `fallback_helper`.

mod common;

use std::process::{Command, Stdio};

const HELPER: &str = "SHEEPDOG_FALLBACK_HELPER";

/// A tree of five that leaves the herd's process group every way it can: a plain background
/// child, a new session, a new process group, and a double-forking daemon in a new session.
/// Their stderr goes nowhere, so that an escapee cannot keep the helper's output open.
const ESCAPES: &str = "exec 2>/dev/null; sleep 1000 & setsid sleep 1000 &
python3 -c 'import os; os.setpgid(0, 0); os.execvp(\"sleep\", [\"sleep\", \"1000\"])' &
python3 -c '
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp(\"sleep\", [\"sleep\", \"1000\"])
    os._exit(0)
os.wait()
'
echo ready; wait";

/// The herd's side; does nothing unless run as the helper. Prints `mechanism=<m> reason=<r>`,
/// then `before=<n> left=<n>` after killing a tree, then `captured=...` about `output()` on this
/// host (a 4 MiB stream, whose pipe grows if the user may; a daemon holding the output open; a
/// failing limit).
#[test]
fn fallback_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let herd = sheepdog::Herd::new().expect("a herd, whatever the host");
        let containment = herd.containment();
        println!(
            "mechanism={} reason={}",
            containment.mechanism(),
            containment.fallback_reason().unwrap_or("-")
        );
        let mut cmd = sheepdog::Command::new("sh");
        cmd.args(["-c", ESCAPES]).stdout(sheepdog::Stdio::piped());
        let mut child = herd.spawn(&cmd).expect("spawn");
        let mut out = String::new();
        use tokio::io::AsyncReadExt;
        let mut stdout = child.take_stdout().expect("stdout");
        let mut buf = [0u8; 16];
        while !out.contains("ready") {
            let n = stdout.read(&mut buf).await.expect("read");
            assert!(n > 0);
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // The escapes fork and exit on their own after `ready`: count the tree once it holds
        // the five it settles into (or whatever it holds after 10 s, which the caller rejects).
        let settled = |herd: &sheepdog::Herd| herd.members().is_ok_and(|m| m.len() == 5);
        common::eventually(std::time::Duration::from_secs(10), || settled(&herd)).await;
        let before = herd.members().expect("members").len();
        herd.kill().await.expect("kill");
        child.wait().await.expect("wait");
        println!(
            "before={before} left={}",
            herd.members().expect("members").len()
        );

        let out = sheepdog::Command::new("sh")
            .args([
                "-c",
                "head -c 4194304 /dev/zero; echo err >&2; sleep 1000 &",
            ])
            .drain_timeout(std::time::Duration::from_millis(200))
            .output()
            .await
            .expect("output");
        let zeros = out.stdout.len() == 4 << 20 && out.stdout.iter().all(|&b| b == 0);
        let limited = sheepdog::Command::new("yes")
            .capture_limit(1000, sheepdog::OverLimit::Fail)
            .output()
            .await
            .expect("output");
        println!(
            "captured={zeros} stderr={:?} held={} limited={}",
            String::from_utf8_lossy(&out.stderr),
            out.held_open(),
            limited.limit_exceeded() && limited.stdout.len() == 1000,
        );
    });
}

/// Runs the helper under `wrapper` (a command line that ends by running the binary) and returns
/// its first two report lines, or `None` to skip; checks the third (`output()`) itself.
fn run_helper(test: &str, wrapper: &[&str]) -> Option<(String, String)> {
    let exe = common::SharedExe::new(test);
    let marker = format!("{test}-{}", std::process::id());
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(&exe.path)
        .args([
            "--exact",
            "fallback_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .env(common::MARK, &marker)
        .stdin(Stdio::null())
        .output()
        .expect("run the helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mechanism = stdout
        .lines()
        .find_map(|l| l.split_once("mechanism=").map(|r| r.1));
    let counts = stdout
        .lines()
        .find_map(|l| l.split_once("before=").map(|r| r.1));
    assert!(
        out.status.success(),
        "{test}: helper failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("captured=true stderr=\"err\\n\" held=true limited=true"),
        "{test}: output() on this host:\n{stdout}"
    );
    // Bounded wait, not a single look: the helper's sentinel (forked, so it carries the
    // marker) outlives its owner by design until it has seen the owner go, and a member killed
    // by a dropped herd may still be on its way out when the helper exits.
    let gone = common::poll_until(std::time::Duration::from_secs(10), || {
        common::alive(&marker).is_empty()
    });
    assert!(gone, "{test}: left {:?}", common::alive(&marker));
    Some((mechanism?.to_owned(), counts?.to_owned()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

#[test]
fn unprivileged_user_gets_a_process_group_herd() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    if !is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipping: needs root and setpriv(1) to become nobody");
        return;
    }
    let wrapper = [
        "/usr/bin/setpriv",
        "--reuid",
        "nobody",
        "--regid",
        "nogroup",
        "--clear-groups",
    ];
    let (mechanism, counts) = run_helper("as_nobody", &wrapper).expect("the helper's report");
    if common::cgroup::cgroup2_mount().is_some() {
        assert!(
            mechanism.starts_with("process group reason=cannot create a cgroup below"),
            "{mechanism}"
        );
    }
    assert_eq!(counts, "5 left=0");
}

#[test]
fn host_without_cgroup2_mount_gets_a_process_group_herd() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let Some(mount) = common::cgroup::cgroup2_mount() else {
        eprintln!("skipping: no cgroup v2 mount to hide");
        return;
    };
    if !is_root() || !std::path::Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipping: needs root and unshare(1) for a private mount namespace");
        return;
    }
    let script = format!("umount -l '{}' && exec \"$0\" \"$@\"", mount.display());
    let wrapper = [
        "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ];
    let (mechanism, counts) = run_helper("no_mount", &wrapper).expect("the helper's report");
    assert_eq!(
        mechanism,
        "process group reason=no cgroup v2 hierarchy is mounted"
    );
    assert_eq!(counts, "5 left=0");
}
