//! The real `sheepdog` binary: exit statuses of `sheepdog run`.

use std::process::Command;

fn sheepdog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(args)
        .env("SHEEPDOG_TEST", "cli_run")
        .output()
        .expect("run the sheepdog binary")
}

#[test]
fn run_passes_output_and_exit_code_through() {
    let out = sheepdog(&["run", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
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
    let alive = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|r| r.1.trim_start().chars().next());
        !matches!(state, None | Some('Z'))
    };
    // SIGKILL was sent before sheepdog exited; dying takes the process a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!alive(), "the background sleep {pid} survived sheepdog");
    std::mem::forget(cleanup);
}

#[test]
fn run_reports_signals_as_128_plus_n() {
    let out = sheepdog(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
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
        let dir = std::env::temp_dir().join(format!("sheepdog-test-cli-{}", std::process::id()));
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
    let out = match Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_sheepdog")])
        .env("SHEEPDOG_TEST", "cli_foreground")
        .output()
    {
        Ok(out) => out,
        Err(err) => {
            eprintln!("skipping: python3 is needed to drive a pseudo-terminal: {err}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("0 ") && text.contains("got-hello"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
