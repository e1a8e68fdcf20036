//! The real `sheepdog` binary: exit statuses of `sheepdog run`.

use std::process::Command;
use std::time::Duration;

fn sheepdog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(args)
        .env("SHEEPDOG_TEST", "cli_run")
        .output()
        .expect("run the sheepdog binary")
}

#[test]
fn run_passes_output_and_exit_code_through() {
    let out = sheepdog(&[
        "run",
        "--quiet",
        "--",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n", "--quiet adds nothing to stderr");
    // Without --quiet, the report follows what the command wrote.
    let out = sheepdog(&["run", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("oops\nsheepdog: `sh` exited with code 3 after "),
        "{stderr}"
    );
}

/// What the command leaves running in the background dies with it (the README's main job).
#[test]
fn run_leaves_nothing_of_the_tree_behind() {
    // The sleep does not hold stdout, so `output()` returns when sheepdog does.
    let out = sheepdog(&[
        "run",
        "--",
        "sh",
        "-c",
        "sleep 300 >/dev/null & echo $!; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the background pid");
    // Armed only while the sleep may be alive: once it is gone its pid may be reused.
    let cleanup = KillOnDrop(pid);
    // SIGKILL was sent before sheepdog exited; dying takes the process a moment.
    assert!(
        poll_until(|| matches!(state_of(pid), None | Some('Z'))),
        "the background sleep {pid} survived sheepdog"
    );
    std::mem::forget(cleanup);
}

#[test]
fn run_dies_by_the_signal_that_killed_the_command() {
    use std::os::unix::process::ExitStatusExt;
    let out = sheepdog(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    // As timeout(1): the signal raised on sheepdog itself, so a parent's waitpid sees it (a
    // shell says 128 + 15).
    assert_eq!((out.status.code(), out.status.signal()), (None, Some(15)));
    let shell = Command::new("sh")
        .args(["-c", "\"$0\" run -q -- sh -c 'kill -TERM $$'; echo $?"])
        .arg(env!("CARGO_BIN_EXE_sheepdog"))
        .output()
        .expect("run sh");
    assert_eq!(String::from_utf8_lossy(&shell.stdout).trim(), "143");
}

#[test]
fn run_uses_timeouts_exit_codes_for_its_own_failures() {
    let out = sheepdog(&["run", "--", "sheepdog-no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sheepdog-no-such-program"), "{stderr}");
    assert!(stderr.contains("not found in PATH"), "{stderr}");

    let out = sheepdog(&["run", "--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn version_and_help() {
    let out = sheepdog(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sheepdog "));
    let out = sheepdog(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
}

/// The spawn engine needs no privilege: as `nobody`, `sheepdog run` starts and waits as usual.
#[test]
fn run_works_as_an_unprivileged_user() {
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let (true, Some(setpriv)) = (is_root, setpriv) else {
        eprintln!("skipping run_works_as_an_unprivileged_user: needs root and setpriv(1)");
        return;
    };
    // A copy in a world-readable place: the build tree may sit below a directory `nobody`
    // cannot enter.
    let copy = TempCopy::new(env!("CARGO_BIN_EXE_sheepdog"));
    let out = Command::new(setpriv)
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .arg(&copy.binary)
        .args(["run", "--", "sh", "-c", "id -u; exit 5"])
        .env("SHEEPDOG_TEST", "cli_unprivileged")
        .output()
        .expect("run setpriv");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"65534\n");
}

/// The binary linked (or copied) into a fresh 0755 directory under the temp dir, removed on drop.
struct TempCopy {
    dir: std::path::PathBuf,
    binary: std::path::PathBuf,
}

impl TempCopy {
    fn new(binary: &str) -> TempCopy {
        use std::os::unix::fs::PermissionsExt;
        // A directory of its own per copy: tests that run at once must not share one.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sheepdog-test-cli-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let copy = TempCopy {
            binary: dir.join("sheepdog"),
            dir,
        };
        std::fs::set_permissions(&copy.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // A hard link opens nothing for writing, so no sibling spawn can make the exec fail
        // with "text file busy"; a copy only when the temp dir is on another filesystem.
        if std::fs::hard_link(binary, &copy.binary).is_err() {
            std::fs::copy(binary, &copy.binary).expect("copy the binary");
        }
        copy
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends a process by pid when dropped, should a test fail with it still running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// At a terminal, `sheepdog run` gives CMD the foreground: an interactive command can read the
/// terminal (a background group reading it would be stopped with SIGTTIN and hang), and the
/// terminal comes back to sheepdog afterwards. Driven through a pseudo-terminal from python3.
#[test]
fn run_at_a_terminal_gives_the_command_the_foreground() {
    let script = r#"
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "--", "sh", "-c", "read line; echo got-$line"])
os.write(fd, b"hello\n")
out = b""
while True:
    ready, _, _ = select.select([fd], [], [], 20)
    if not ready:
        break
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
done, status = os.waitpid(pid, os.WNOHANG)
if done == 0:
    # Stuck (the command stopped by SIGTTIN, say): end sheepdog; its sentinel ends the rest.
    os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r", ""))
"#;
    let Some(out) = python_with_sheepdog(script, "cli_foreground") else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("0 ") && text.contains("got-hello"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Live processes whose environment carries `SHEEPDOG_TEST=marker` (descendants inherit it).
fn alive(marker: &str) -> Vec<u32> {
    let needle = format!("SHEEPDOG_TEST={marker}");
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| !matches!(state_of(pid), None | Some('Z')))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

/// Asserts that no process marked with `marker` is left. sheepdog's owner-death sentinel is a
/// fork of sheepdog, so it carries the marker too, and it ends a moment after sheepdog (once it
/// has seen the exit and removed the cgroups): so poll, bounded. A leaked tree never goes.
fn assert_nothing_left(marker: &str) {
    assert!(
        poll_until(|| alive(marker).is_empty()),
        "left: {:?}",
        alive(marker)
    );
}

fn sheepdog_marked(marker: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(args)
        .env("SHEEPDOG_TEST", marker)
        .output()
        .expect("run the sheepdog binary")
}

#[test]
fn timeout_exits_124_and_leaves_nothing() {
    let marker = format!("cli_timeout-{}", std::process::id());
    let out = sheepdog_marked(
        &marker,
        &[
            "run",
            "--timeout",
            "300ms",
            "--",
            "sh",
            "-c",
            "sleep 100 & sleep 100 & wait",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("timed out and was killed by SIGTERM"),
        "{report}"
    );
    assert_nothing_left(&marker);
}

#[test]
fn timeout_escalates_against_a_tree_that_ignores_sigterm() {
    let marker = format!("cli_timeout_kill-{}", std::process::id());
    let out = sheepdog_marked(
        &marker,
        &[
            "run",
            "--timeout",
            "200ms",
            "--grace",
            "300ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 100 & wait",
        ],
    );
    // As timeout(1) with -k: the command had to be killed, 137 rather than 124.
    assert_eq!(out.status.code(), Some(137));
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("killed by SIGKILL"), "{report}");
    assert_nothing_left(&marker);
}

/// SIGTERM and SIGINT sent to sheepdog reach the command, which decides how to end.
#[test]
fn signals_to_sheepdog_reach_the_tree() {
    for (signal, number) in [("TERM", 15), ("INT", 2)] {
        let marker = format!("cli_forward_{signal}-{}", std::process::id());
        let script = format!(
            "trap 'echo got-{signal}; exit 7' {signal}; echo ready; while :; do sleep 0.05; done"
        );
        let mut sheepdog = Command::new(env!("CARGO_BIN_EXE_sheepdog"))
            .args(["run", "--quiet", "--", "sh", "-c", &script])
            .env("SHEEPDOG_TEST", &marker)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run sheepdog");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
            sheepdog.stdout.take().expect("stdout"),
        ));
        assert_eq!(lines.next().expect("a line").expect("read"), "ready");
        let status = Command::new("kill")
            .args([&format!("-{number}"), &sheepdog.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        assert_eq!(
            lines.next().expect("a line").expect("read"),
            format!("got-{signal}")
        );
        assert_eq!(sheepdog.wait().expect("wait").code(), Some(7));
        assert_nothing_left(&marker);
    }
}

#[test]
fn json_report_parses_and_adds_up() {
    let marker = format!("cli_json-{}", std::process::id());
    let out = sheepdog_marked(
        &marker,
        &[
            "run",
            "--json",
            "--",
            "sh",
            "-c",
            "sleep 100 >/dev/null & exit 2",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("a report")).expect("valid JSON");
    assert_eq!(report["outcome"], "exited");
    assert_eq!(report["code"], 2);
    assert_eq!(report["signal"], serde_json::Value::Null);
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["left_running"], 1, "the background sleep: {report}");
    assert_eq!(report["command"][0], "sh");
    let wall = report["wall_ms"].as_f64().expect("wall_ms");
    assert!(wall > 0.0 && wall < 60_000.0, "{report}");
    // `sh`'s own peak cannot be told from sheepdog's (they share memory until exec): unknown.
    let peak = &report["max_rss_bytes"];
    assert!(
        peak.is_null() || peak.as_u64().is_some_and(|b| b > 0),
        "{report}"
    );
    // Each figure missing says why.
    let unknown = report["unknown"].as_array().expect("unknown");
    assert_eq!(
        peak.is_null(),
        unknown.iter().any(|u| u["figure"] == "peak memory"),
        "{report}"
    );
    assert!(unknown
        .iter()
        .all(|u| u["why"].as_str().is_some_and(|w| !w.is_empty())));
    assert_nothing_left(&marker);
}

#[test]
fn doctor_agrees_with_host_containment() {
    let out = sheepdog(&["doctor", "--json"]);
    assert!(out.status.success());
    let doctor: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");
    let expected = match sheepdog::host_containment().mechanism() {
        Some(sheepdog::Mechanism::CgroupV2) => "cgroup v2",
        Some(sheepdog::Mechanism::ProcessGroup) => "process group",
        _ => "none",
    };
    assert_eq!(doctor["predicted"], expected, "{doctor}");
    assert_eq!(doctor["mechanism"], expected, "{doctor}");
    // Typed values: yes/no as booleans, `-` as null.
    assert!(doctor["pidfd"].is_boolean(), "{doctor}");
    assert!(!doctor["clone3"].is_string(), "{doctor}");
    let text = sheepdog(&["doctor"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("mechanism:"));
}

#[test]
fn bad_arguments_are_named_and_exit_125() {
    let out = sheepdog(&["run", "--timeout", "5x", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--timeout") && stderr.contains("500ms"),
        "{stderr}"
    );
    let out = sheepdog(&["run", "--signal", "NOPE", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a signal name"));
    let out = sheepdog(&[
        "run",
        "--signal",
        "hup",
        "--timeout",
        "100ms",
        "--",
        "sleep",
        "10",
    ]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "lower case and no SIG prefix are fine"
    );
}

/// The cgroup.events file of the cgroup `pid` is in (cgroup v2), if any.
fn cgroup_events_of(pid: u32) -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| mount.to_owned())
    })?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let relative = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(
        std::path::Path::new(&mount)
            .join(relative.trim_start_matches('/'))
            .join("cgroup.events"),
    )
}

fn poll_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Ctrl-Z (SIGTSTP to sheepdog) freezes the tree and stops sheepdog; SIGCONT resumes both, and
/// the time spent stopped does not count against the timeout.
#[test]
fn ctrl_z_suspends_the_tree_and_pauses_the_timeout() {
    let marker = format!("cli_job_control-{}", std::process::id());
    let mut sheepdog = Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args([
            "run",
            "--quiet",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            "sleep 100 & echo $!; wait",
        ])
        .env("SHEEPDOG_TEST", &marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sheepdog");
    let guard = KillOnDrop(sheepdog.id());
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        sheepdog.stdout.take().expect("stdout"),
    ));
    let sleep: u32 = lines
        .next()
        .expect("a line")
        .expect("read")
        .parse()
        .expect("the sleep's pid");
    let events = cgroup_events_of(sleep);
    let frozen = |want: &str| {
        events
            .as_ref()
            .is_none_or(|e| std::fs::read_to_string(e).is_ok_and(|s| s.contains(want)))
    };

    let kill = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &sheepdog.id().to_string()])
            .status()
            .expect("kill")
            .success());
    };
    kill("-TSTP");
    assert!(
        poll_until(|| state_of(sheepdog.id()) == Some('T')),
        "sheepdog stopped itself"
    );
    assert!(poll_until(|| frozen("frozen 1")), "the tree is frozen");
    // Stopped for longer than the whole timeout: that time must not count.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        state_of(sleep).is_some_and(|s| s != 'Z'),
        "the tree is still there"
    );
    kill("-CONT");
    assert!(poll_until(|| frozen("frozen 0")), "the tree runs again");
    assert!(
        state_of(sleep).is_some_and(|s| s != 'Z'),
        "the timeout did not fire during the pause"
    );
    // The timeout fires once the running time is up.
    assert_eq!(sheepdog.wait().expect("wait").code(), Some(124));
    std::mem::forget(guard);
    assert_nothing_left(&marker);
}

/// Ctrl-Z at a terminal, with CMD in the foreground: CMD stops, sheepdog hands the terminal
/// back and stops too (so a shell regains the terminal); continued, CMD gets the terminal and
/// runs on. Driven through a pseudo-terminal from python3.
#[test]
fn ctrl_z_at_the_terminal_suspends_the_job_and_fg_resumes_it() {
    let script = r#"
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "--quiet", "--", "sh", "-c",
             "echo ready; read line; echo got-$line"])

def read_until(word, seconds=20):
    seen = b""
    end = time.time() + seconds
    while word not in seen and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 1024)
            except OSError:
                break
            if not data:
                break
            seen += data
    return seen

def state(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None

result = "fail"
try:
    if b"ready" not in read_until(b"ready"):
        raise SystemExit("no ready")
    os.write(fd, b"\x1a")  # Ctrl-Z
    end = time.time() + 10
    while state(pid) != "T" and time.time() < end:
        time.sleep(0.01)
    if state(pid) != "T":
        raise SystemExit("sheepdog did not stop with its job")
    if os.tcgetpgrp(fd) != os.getpgid(pid):
        raise SystemExit("the terminal was not handed back")
    os.kill(pid, signal.SIGCONT)  # fg
    os.write(fd, b"hello\n")
    if b"got-hello" not in read_until(b"got-hello"):
        raise SystemExit("the job did not run on")
    result = "ok"
finally:
    if result != "ok":
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print(result, os.waitstatus_to_exitcode(status))
"#;
    let Some(out) = python_with_sheepdog(script, "cli_ctrl_z_tty") else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "ok 0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a python3 `script` (which drives sheepdog through a pseudo-terminal) with the sheepdog
/// binary as its argument, or `None` (with a printed reason) where there is no python3.
fn python_with_sheepdog(script: &str, marker: &str) -> Option<std::process::Output> {
    match Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_sheepdog")])
        .env("SHEEPDOG_TEST", marker)
        .output()
    {
        Ok(out) => Some(out),
        Err(err) => {
            eprintln!("skipping: python3 is needed to drive a pseudo-terminal: {err}");
            None
        }
    }
}

/// How a test takes the cgroup away from `sheepdog run`.
#[derive(Clone, Copy, Debug)]
enum NoCgroup {
    /// Run as `nobody`, who may not create cgroups.
    Nobody,
    /// The cgroup v2 mount hidden under a tmpfs in a private mount namespace.
    HiddenMount,
}

/// Runs the sheepdog binary with `args` where it gets no cgroup, marked with `marker`, with
/// `env` added; `None` (with a printed reason) where this host cannot do that.
fn run_without_cgroup(
    how: NoCgroup,
    marker: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Option<std::process::Output> {
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !is_root {
        eprintln!("skipping {how:?}: needs root");
        return None;
    }
    let copy = TempCopy::new(env!("CARGO_BIN_EXE_sheepdog"));
    let mut command = match how {
        NoCgroup::Nobody => {
            let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
            else {
                eprintln!("skipping {how:?}: needs setpriv(1)");
                return None;
            };
            let mut command = Command::new(setpriv);
            command.args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]);
            command
        }
        NoCgroup::HiddenMount => {
            let Some(mount) = cgroup2_mount() else {
                eprintln!("skipping {how:?}: no cgroup v2 mount to hide");
                return None;
            };
            let mut command = Command::new("unshare");
            command.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t tmpfs none \"$0\" && exec \"$@\"",
                &mount,
            ]);
            command
        }
    };
    let out = command
        .arg(&copy.binary)
        .args(args)
        .envs(env.iter().copied())
        .env("SHEEPDOG_TEST", marker)
        .output()
        .expect("run sheepdog without a cgroup");
    Some(out)
}

/// Where cgroup v2 is mounted, if it is.
fn cgroup2_mount() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split(' ').next()? == "cgroup2")
            .then(|| left.split(' ').nth(4).map(str::to_owned))?
    })
}

/// Issue 16: without a cgroup, a setsid'd background process outlived `sheepdog run`, and the
/// report said it was stopped. Now the fallback adopts it, stops it, and says which containment
/// is in force, and why, before CMD starts.
#[test]
fn fallback_says_so_and_stops_the_setsid_escapee() {
    for how in [NoCgroup::Nobody, NoCgroup::HiddenMount] {
        let marker = format!("cli_fallback_{how:?}-{}", std::process::id());
        let script = "setsid sleep 30 >/dev/null 2>&1 & sleep 30 >/dev/null 2>&1 & \
                      sleep 0.2; exit 0";
        let Some(out) = run_without_cgroup(how, &marker, &[], &["run", "--", "sh", "-c", script])
        else {
            continue;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{how:?}: {stderr}");
        let mut lines = stderr.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with(
                "sheepdog: weaker containment: a process group with orphan adoption instead of \
                 a cgroup ("
            ),
            "{how:?}: {stderr}"
        );
        // As nobody the cgroup is refused; with the mount hidden, what is missing depends on
        // where the host mounts cgroup v2 (the reason is the library's, tested there).
        if let NoCgroup::Nobody = how {
            assert!(first.contains("(cannot create a cgroup below"), "{stderr}");
        }
        assert!(
            stderr.contains(
                "2 process(es) of its tree were still running when it ended: stopped 2\n"
            ) || stderr.ends_with("stopped 2"),
            "{how:?}: {stderr}"
        );
        assert!(!stderr.contains("could not"), "{how:?}: {stderr}");
        assert_nothing_left(&marker);
    }
}

/// With `--json` the containment and the fallback's reason are fields of the report, and the
/// line is printed too; `--quiet` prints neither.
#[test]
fn fallback_shows_in_the_json_report() {
    let marker = format!("cli_fallback_json-{}", std::process::id());
    let script = "setsid sleep 30 >/dev/null 2>&1 & exit 4";
    let args = ["run", "--json", "--", "sh", "-c", script];
    let Some(out) = run_without_cgroup(NoCgroup::Nobody, &marker, &[], &args) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.starts_with("sheepdog: weaker containment: a process group"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("a report")).expect("valid JSON");
    assert_eq!(report["containment"], "process group", "{report}");
    let why = report["fallback_reason"].as_str().expect("a reason");
    assert!(why.starts_with("cannot create a cgroup below"), "{report}");
    assert_eq!(report["left_running"], 1, "{report}");
    assert_eq!(report["stopped"], 1, "{report}");
    assert_eq!(report["not_stopped"], 0, "{report}");
    assert_nothing_left(&marker);

    let args = ["run", "--quiet", "--", "sh", "-c", "exit 0"];
    let Some(out) = run_without_cgroup(NoCgroup::Nobody, &marker, &[], &args) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "--quiet says nothing"
    );
}

/// `--require-cgroup` (or `SHEEPDOG_REQUIRE_CGROUP=1`) refuses to run without a cgroup: exit
/// 125 with the reason, and CMD never starts.
#[test]
fn require_cgroup_refuses_the_fallback() {
    let marker = format!("cli_require-{}", std::process::id());
    let witness = std::env::temp_dir().join(format!("sheepdog-require-{}", std::process::id()));
    let touch = format!("touch {}", witness.display());
    let flag: [&str; 6] = ["run", "--require-cgroup", "--", "sh", "-c", &touch];
    let plain: [&str; 5] = ["run", "--", "sh", "-c", &touch];
    for (env, args) in [
        (&[][..], &flag[..]),
        (&[("SHEEPDOG_REQUIRE_CGROUP", "1")][..], &plain[..]),
    ] {
        let Some(out) = run_without_cgroup(NoCgroup::Nobody, &marker, env, args) else {
            return;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert!(
            stderr.starts_with("sheepdog: a cgroup is required (--require-cgroup or ")
                && stderr.contains("cannot create a cgroup below"),
            "{stderr}"
        );
        assert!(!witness.exists(), "CMD was not started");
    }
    // Where a cgroup can be had, the option changes nothing.
    if cgroup_events_of(std::process::id()).is_some_and(|events| events.exists()) {
        let out = sheepdog_marked(
            &marker,
            &["run", "--require-cgroup", "--", "sh", "-c", "exit 6"],
        );
        assert_eq!(
            out.status.code(),
            Some(6),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_nothing_left(&marker);
}

/// As timeout(1): `--timeout 0` is no timeout, and a duration too long to count is "for ever"
/// (it once panicked with exit 101).
#[test]
fn timeout_zero_is_none_and_huge_timeouts_saturate() {
    let out = sheepdog(&[
        "run",
        "-q",
        "--timeout",
        "0",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    for huge in ["1e20", "99999999999999999999s", "99999d"] {
        let out = sheepdog(&["run", "-q", "--timeout", huge, "--", "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{huge}: {out:?}");
    }
}

/// A report nobody can read is dropped; the exit status is still the command's (a broken pipe
/// on stderr once made sheepdog panic with 101).
#[test]
fn a_broken_or_closed_stderr_is_no_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(["run", "--", "sh", "-c", "sleep 0.1; exit 7"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sheepdog");
    drop(child.stderr.take()); // the reader is gone before the report is written
    assert_eq!(child.wait().expect("wait").code(), Some(7));

    let closed = Command::new("sh")
        .args(["-c", "exec \"$0\" run -- sh -c 'exit 6' 2>&-"])
        .arg(env!("CARGO_BIN_EXE_sheepdog"))
        .status()
        .expect("run sheepdog with stderr closed");
    assert_eq!(closed.code(), Some(6));
}

/// Exit statuses as timeout(1)'s, side by side with the system's `timeout` where installed: a
/// timeout is 124, or 137 when the command had to be killed (`-s KILL`, or `-k` after an
/// ignored TERM); `--preserve-status` gives the command's own; a command killed by a signal
/// (no timeout) kills sheepdog by the same signal.
#[test]
fn exit_statuses_as_timeout1() {
    use std::os::unix::process::ExitStatusExt;
    /// timeout(1)'s options and duration, the command, the expected code and signal.
    type Case<'a> = (&'a [&'a str], &'a [&'a str], Option<i32>, Option<i32>);
    let cases: [Case; 5] = [
        (&["-s", "KILL", "0.2"], &["sleep", "10"], Some(137), None),
        (
            &["-k", "0.3", "0.2"],
            &["sh", "-c", "trap '' TERM; sleep 10"],
            Some(137),
            None,
        ),
        (&["0.2"], &["sleep", "10"], Some(124), None),
        (
            &["--preserve-status", "0.2"],
            &["sleep", "10"],
            Some(143),
            None,
        ),
        (&["10"], &["sh", "-c", "kill -TERM $$"], None, Some(15)),
    ];
    let gnu = Command::new("timeout").arg("--version").output().is_ok();
    if !gnu {
        eprintln!("no system `timeout`: comparing with the expected statuses only");
    }
    // What a shell sees: the code, or 128 + the signal (GNU's timeout kills itself with the
    // group it signals, sheepdog exits 137: the same to a shell).
    let seen = |status: std::process::ExitStatus| {
        status.code().or(status.signal().map(|signal| 128 + signal))
    };
    for (options, cmd, code, signal) in cases {
        // timeout(1)'s form: OPTIONS DURATION CMD; sheepdog's: OPTIONS --timeout DURATION -- CMD.
        let (duration, flags) = options.split_last().expect("a duration");
        let mut args = vec!["run", "-q"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--timeout", duration, "--"]);
        args.extend_from_slice(cmd);
        let ours = Command::new(env!("CARGO_BIN_EXE_sheepdog"))
            .args(&args)
            .status()
            .expect("run sheepdog");
        assert_eq!(
            (ours.code(), ours.signal()),
            (code, signal),
            "sheepdog {args:?}"
        );
        if gnu {
            let theirs = Command::new("timeout")
                .args(options)
                .args(cmd)
                .status()
                .expect("run timeout");
            assert_eq!(
                seen(ours),
                seen(theirs),
                "sheepdog {args:?} against timeout {options:?} {cmd:?}"
            );
        }
    }
}

/// A second SIGINT while the grace runs kills the tree at once (a tree that ignores TERM and
/// INT, with 20 s of grace, is gone well before that).
#[test]
fn a_second_sigint_during_the_grace_kills_at_once() {
    let marker = format!("cli_second_int-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args([
            "run",
            "-q",
            "--grace",
            "20s",
            "--",
            "sh",
            "-c",
            "trap '' TERM INT; (trap '' TERM INT; sleep 100) & echo ready; exit 0",
        ])
        .env("SHEEPDOG_TEST", &marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start sheepdog");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "ready");
    let started = std::time::Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still waiting out the grace"
        );
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "the command's own status");
    assert_nothing_left(&marker);
}

/// `--json` prints one object on every outcome, a failed spawn included.
#[test]
fn json_report_for_a_command_that_cannot_start() {
    let out = sheepdog(&["run", "--json", "--", "no-such-program-for-sheepdog"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("a report")).expect("valid JSON");
    assert_eq!(report["outcome"], "not_found", "{report}");
    assert!(report["error"]
        .as_str()
        .is_some_and(|e| e.contains("no-such-program-for-sheepdog")));
}

/// Ctrl-Z at a terminal stops the command (its process group has the foreground) and, with it,
/// every member of the tree: a member in a session of its own gets no Ctrl-Z from the
/// terminal, so sheepdog freezes the herd; SIGCONT (a shell's `fg`) thaws it. Driven through a
/// pseudo-terminal from python3.
#[test]
fn ctrl_z_at_a_terminal_freezes_members_in_other_sessions_too() {
    if !std::path::Path::new("/proc/self/mountinfo").exists() {
        return eprintln!("skipping: no /proc");
    }
    let script = r#"
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "run", "-q", "--", "sh", "-c",
             "setsid sleep 100 & echo escapee=$!; exec sleep 100"])
def until(cond, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False
def state(p):
    try:
        return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
def events_of(p):
    mount = next(l.split(" - ")[0].split()[4] for l in open("/proc/self/mountinfo")
                 if l.split(" - ")[1].split()[0] == "cgroup2")
    rel = next(l[3:].strip() for l in open(f"/proc/{p}/cgroup") if l.startswith("0::"))
    return os.path.join(mount, rel.lstrip("/"), "cgroup.events")
def frozen(path, want):
    try:
        return f"frozen {want}" in open(path).read()
    except OSError:
        return False
out = b""
while b"escapee=" not in out or not out.rstrip().endswith(b"\n") and b"\n" not in out.split(b"escapee=")[1]:
    ready, _, _ = select.select([fd], [], [], 10)
    if not ready:
        break
    out += os.read(fd, 1024)
escapee = int(out.split(b"escapee=")[1].split()[0])
events = events_of(escapee)
os.write(fd, b"\x1a")
stopped = until(lambda: state(pid) == "T")
was_frozen = until(lambda: frozen(events, 1))
os.kill(pid, signal.SIGCONT)
thawed = until(lambda: frozen(events, 0))
os.kill(pid, signal.SIGTERM)
try:
    while select.select([fd], [], [], 5)[0] and os.read(fd, 1024):
        pass
except OSError:
    pass
os.waitpid(pid, 0)
gone = until(lambda: state(escapee) in (None, "Z"))
print(f"stopped={stopped} frozen={was_frozen} thawed={thawed} gone={gone}")
"#;
    let Some(out) = python_with_sheepdog(script, "cli_ctrl_z_pty") else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stopped=True frozen=True thawed=True gone=True"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Short of descriptors (`ulimit -n 17`), `sheepdog run` still runs or fails cleanly, and
/// leaves no cgroup of its own behind (an empty home once was).
#[test]
fn few_descriptors_leave_no_cgroup_behind() {
    let Some(events) = cgroup_events_of(std::process::id()) else {
        return eprintln!("skipping: no cgroup v2 mount");
    };
    let parent = events.parent().expect("our cgroup").to_owned();
    for _ in 0..3 {
        let child = Command::new("sh")
            .args(["-c", "ulimit -n 17; exec \"$0\" run -q -- true"])
            .arg(env!("CARGO_BIN_EXE_sheepdog"))
            .spawn()
            .expect("run sheepdog");
        let pid = child.id();
        let status = child.wait_with_output().expect("wait").status;
        assert!(status.code().is_some(), "{status:?}");
        let prefix = format!("sheepdog-{pid}");
        let left = || -> Vec<String> {
            std::fs::read_dir(&parent)
                .expect("read our cgroup")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name == &prefix || name.starts_with(&format!("{prefix}.")))
                .collect()
        };
        // The sentinel removes a home just after its owner has gone: a moment, bounded.
        poll_until(|| left().is_empty());
        assert!(
            left().is_empty(),
            "left in {}: {:?}",
            parent.display(),
            left()
        );
    }
}
