//! What a child inherits, and what a spawn leaves behind in this process. One test, so that no
//! other test in this process opens descriptors while they are counted.

mod common;

use std::os::fd::AsRawFd;

use common::{cmd, open_fds, output};
use sheepdog::Stdio;

#[tokio::test]
async fn hygiene() {
    // tokio installs process-wide handlers for these; the child must not see them.
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("install a SIGINT handler");
    let _sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    let _sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .expect("install a SIGCHLD handler");
    child_has_default_signal_state().await;
    child_inherits_only_stdio().await;
    descriptor_count_is_unchanged_by_spawns_and_failures().await;
}

/// No caught signal, nothing blocked, SIGPIPE not ignored (Rust programs ignore it).
async fn child_has_default_signal_state() {
    let child = cmd("signal_state", "cat")
        .arg("/proc/self/status")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (_, out) = output(child).await;
    let status = String::from_utf8(out).expect("utf-8");
    let mask = |name: &str| {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
        u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex mask")
    };
    assert_eq!(
        mask("SigCgt:"),
        0,
        "the child has caught signals:\n{status}"
    );
    assert_eq!(
        mask("SigBlk:"),
        0,
        "the child has blocked signals:\n{status}"
    );
    let sigpipe_bit = 1 << (13 - 1);
    assert_eq!(
        mask("SigIgn:") & sigpipe_bit,
        0,
        "SIGPIPE is ignored:\n{status}"
    );
}

/// A descriptor this process opened without O_CLOEXEC does not reach the child; one passed on
/// purpose does.
async fn child_inherits_only_stdio() {
    let leaky = rustix::io::dup(std::io::stderr()).expect("dup without O_CLOEXEC");
    let flags = rustix::io::fcntl_getfd(&leaky).expect("getfd");
    assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC));
    let passed = std::fs::File::open("/dev/null").expect("open");
    // `ls` itself holds one more descriptor, 3, for the directory it lists: the lowest free
    // number, so a leaked descriptor would push it to another number and show up too.
    let child = cmd("inherits_only_stdio", "ls")
        .arg("/proc/self/fd")
        .stdout(Stdio::piped())
        .pass_fd(7, passed)
        .spawn()
        .expect("spawn");
    let (status, out) = output(child).await;
    assert!(status.success());
    let mut fds: Vec<u32> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    fds.sort();
    assert_eq!(
        fds,
        [0, 1, 2, 3, 7],
        "descriptor {} leaked into the child",
        leaky.as_raw_fd()
    );
}

async fn descriptor_count_is_unchanged_by_spawns_and_failures() {
    // Warm up the lazily started pieces: the runtime's registrations, the owner-death sentinel
    // (first herd), and the reaper thread, which starts when a child is dropped while it still
    // runs (this one waits for stdin) and removes dropped herds' cgroups.
    let mut warm = cmd("fd_count", "true").spawn().expect("spawn");
    warm.wait().await.expect("wait");
    let mut running = cmd("fd_count", "cat")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (pid, stdin) = (running.pid(), running.take_stdin());
    drop(running);
    drop(stdin);
    assert!(common::poll_until(
        std::time::Duration::from_secs(10),
        || !common::pid_exists(pid)
    ));
    drop(warm);
    // Until the reaper has removed those two herds (and made the next cgroups ahead), their
    // cgroup files come and go here.
    common::settle();

    let before = open_fds();
    for _ in 0..50 {
        let mut child = cmd("fd_count", "sh")
            .args(["-c", "cat >/dev/null; echo out; echo err >&2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (_, out) = output_and_stderr(&mut child).await;
        assert_eq!(out, b"out\n");
        cmd("fd_count", "sheepdog-no-such-program")
            .stdout(Stdio::piped())
            .spawn()
            .expect_err("absent");
        cmd("fd_count", "/etc/passwd")
            .stdout(Stdio::piped())
            .spawn()
            .expect_err("not executable");
        cmd("fd_count", "true")
            .stdin(Stdio::null())
            .current_dir("/nonexistent")
            .spawn()
            .expect_err("bad cwd");
        cmd("fd_count", "true")
            .stdout(std::fs::File::create("/dev/null").expect("open"))
            .spawn()
            .expect("spawn")
            .wait()
            .await
            .expect("wait");
    }
    // Herds made for each spawn finish in the background: the reaper removes their cgroups
    // (closing their descriptors) and makes the next ones ahead. Wait for that, then count:
    // descriptor numbers may differ (the cgroups made ahead are new), their number may not.
    common::settle();
    let after = open_fds();
    assert_eq!(
        zombie_children(),
        0,
        "a failed or finished spawn left a zombie"
    );
    assert_eq!(
        after.len(),
        before.len(),
        "descriptors before ({before:?}) and after 250 spawns and failures; now: {:?}",
        common::describe_fds()
    );
}

/// Children of this process that have exited but were not reaped.
fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let rest = stat.rsplit_once(')').map_or("", |r| r.1);
                let mut fields = rest.split_whitespace();
                fields.next() == Some("Z") && fields.next() == Some(me.as_str())
            })
        })
        .count()
}

async fn output_and_stderr(child: &mut sheepdog::Child) -> (sheepdog::ExitStatus, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    drop(child.take_stdin());
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut stdout = child.take_stdout().expect("stdout");
    let mut stderr = child.take_stderr().expect("stderr");
    let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    r1.expect("read stdout");
    r2.expect("read stderr");
    assert_eq!(err, b"err\n");
    (child.wait().await.expect("wait"), out)
}
