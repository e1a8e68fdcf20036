//! Behaviour every spawn path must show. Each test file runs them under one path: the default,
//! or a fallback forced for the whole test process.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use sheepdog::{Signal, SpawnPath, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{cmd, output, pid_exists, poll_until, TempDir};

/// Exit codes, signals, `try_wait`, a second `wait`, and the path the child was started by.
pub async fn statuses_and_signals(test: &str, path: SpawnPath) {
    let mut child = cmd(test, "true").spawn().expect("spawn true");
    assert_eq!(child.spawn_path(), path);
    let status = child.wait().await.expect("wait true");
    assert!(status.success(), "{status}");
    assert_eq!(child.wait().await.expect("second wait"), status);

    let mut child = cmd(test, "sh")
        .args(["-c", "exit 42"])
        .spawn()
        .expect("spawn");
    let status = child.wait().await.expect("wait");
    assert_eq!((status.code(), status.signal()), (Some(42), None));
    assert_eq!(status.to_string(), "exited with code 42");

    // Exited before the first wait: reported at once (that wait registers first, then looks).
    let mut child = cmd(test, "sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("spawn");
    let pid = child.pid();
    assert!(
        poll_until(Duration::from_secs(10), || super::pid_state(pid)
            == Some('Z')),
        "{pid} did not exit (state {:?})",
        super::pid_state(pid)
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the wait for a child that has exited ends")
        .expect("wait");
    assert_eq!(status.code(), Some(7));

    let mut child = cmd(test, "sleep").arg("600").spawn().expect("spawn sleep");
    assert!(child.try_wait().expect("try_wait").is_none());
    child.signal(Signal::TERM).expect("send SIGTERM");
    let status = child.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(Signal::TERM));
    assert_eq!(status.code(), None);
    assert_eq!(status.to_string(), "killed by SIGTERM");
    let err = child
        .signal(Signal::TERM)
        .expect_err("a reaped child cannot be signalled");
    assert!(err.to_string().contains("already"), "{err}");
    child.start_kill().expect("kill after exit is a no-op");

    let mut child = cmd(test, "sleep").arg("600").spawn().expect("spawn sleep");
    child.start_kill().expect("kill");
    let status = child.wait().await.expect("wait");
    assert_eq!(status.signal(), Some(Signal::KILL));
    assert!(!pid_exists(child.pid()), "a waited child is reaped");
}

/// Arguments, environment and working directory reach the child byte for byte, UTF-8 or not.
pub async fn args_env_cwd_round_trip(test: &str) {
    let weird = OsStr::from_bytes(b"caf\xe9 \xff\xfe\n\ttab");
    let child = cmd(test, "sh")
        .args([
            OsStr::new("-c"),
            OsStr::new("printf '%s|' \"$0\" \"$1\" \"$2\" \"$WEIRD\""),
        ])
        .arg("plain")
        .arg(weird)
        .arg("")
        .env("WEIRD", weird)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (status, out) = output(child).await;
    assert!(status.success());
    let mut expected = b"plain|".to_vec();
    expected.extend_from_slice(weird.as_bytes());
    expected.extend_from_slice(b"||");
    expected.extend_from_slice(weird.as_bytes());
    expected.push(b'|');
    assert_eq!(out, expected);

    let dir = TempDir::new(test);
    let inner = dir.path().join(OsStr::from_bytes(b"d\xffir"));
    std::fs::create_dir(&inner).expect("mkdir");
    let child = cmd(test, "pwd")
        .current_dir(&inner)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (_, out) = output(child).await;
    assert_eq!(out, [inner.as_os_str().as_bytes(), b"\n"].concat());

    // A relative program path is resolved from the new working directory.
    let script = inner.join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho from-script\n").expect("write script");
    make_executable(&script);
    let child = cmd(test, "./hello.sh")
        .current_dir(&inner)
        .stdout(Stdio::piped())
        .spawn();
    let (_, out) = output(child.expect("spawn ./hello.sh")).await;
    assert_eq!(out, b"from-script\n");

    // env_clear, env_remove, arg0.
    let child = cmd(test, "/usr/bin/env")
        .env("DROPPED", "1")
        .env_clear()
        .env("KEPT", "yes")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn env");
    let (_, out) = output(child).await;
    assert_eq!(out, b"KEPT=yes\n");
    let child = cmd(test, "sh")
        .args(["-c", "echo \"${HOME-unset}\""])
        .env_remove("HOME")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert_eq!(output(child).await.1, b"unset\n");
    let child = cmd(test, "sh")
        .arg0("my-shell")
        .args(["-c", "echo $0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert_eq!(output(child).await.1, b"my-shell\n");
}

/// The program is looked up in the child's PATH when the command sets one.
pub async fn path_lookup_uses_child_path(test: &str) {
    let dir = TempDir::new(test);
    let tool = dir.path().join("sheepdog-only-here");
    std::fs::write(&tool, "#!/bin/sh\necho found-it\n").expect("write");
    make_executable(&tool);
    let path = format!("/nonexistent-dir:{}:/bin:/usr/bin", dir.path().display());
    let child = cmd(test, "sheepdog-only-here")
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn through the child's PATH");
    assert_eq!(output(child).await.1, b"found-it\n");
    // A non-executable file earlier in PATH does not hide an executable one later (execvp).
    let shadow = TempDir::new(test);
    std::fs::write(shadow.path().join("sheepdog-only-here"), "not a program").expect("write");
    let path = format!("{}:{}", shadow.path().display(), dir.path().display());
    let child = cmd(test, "sheepdog-only-here")
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn past a non-executable candidate");
    assert_eq!(output(child).await.1, b"found-it\n");
}

/// Bytes written to stdin come back on stdout exactly; stderr is separate.
pub async fn stdio_pipes(test: &str) {
    let mut child = cmd(test, "sh")
        .args(["-c", "cat; echo done >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut stdin = child.take_stdin().expect("stdin");
    let mut stdout = child.take_stdout().expect("stdout");
    let mut stderr = child.take_stderr().expect("stderr");
    let to_write = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&to_write).await.expect("write stdin");
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await.expect("read stdout");
    let mut err = Vec::new();
    stderr.read_to_end(&mut err).await.expect("read stderr");
    writer.await.expect("writer task");
    assert!(child.wait().await.expect("wait").success());
    assert_eq!(out.len(), data.len());
    assert!(out == data, "stdout differs from what was written");
    assert_eq!(err, b"done\n");
}

/// A dropped child never stays a zombie. Dropped from `Command::spawn` (its private herd) it is
/// killed with its tree; dropped from a herd's `spawn` it lives on and is reaped once it exits.
pub async fn dropped_child_is_reaped(test: &str) {
    let child = cmd(test, "sh")
        .args(["-c", "sleep 1000 & echo started; wait"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.pid();
    drop(child);
    assert!(
        poll_until(Duration::from_secs(10), || !pid_exists(pid)),
        "the dropped child {pid} was not killed and reaped (state {:?})",
        super::pid_state(pid)
    );
    assert!(
        poll_until(Duration::from_secs(10), || super::alive(test).is_empty()),
        "its tree was not killed: {:?}",
        super::alive(test)
    );

    let herd = sheepdog::Herd::new().expect("a herd");
    let mut child = herd
        .spawn(
            cmd(test, "sh")
                .args(["-c", "read line"])
                .stdin(Stdio::piped()),
        )
        .expect("spawn");
    let pid = child.pid();
    let stdin = child.take_stdin();
    drop(child);
    assert!(pid_exists(pid), "dropping a herd's Child does not kill it");
    drop(stdin); // EOF: the shell exits now
    assert!(
        poll_until(Duration::from_secs(10), || !pid_exists(pid)),
        "the dropped child {pid} was not reaped (state {:?})",
        super::pid_state(pid)
    );
}

/// Abandoning a `wait` (a timeout around it) loses nothing: a later wait gets the status.
pub async fn wait_is_cancel_safe(test: &str) {
    let mut child = cmd(test, "sh")
        .args(["-c", "read line; exit 5"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.take_stdin().expect("stdin");
    let first = tokio::time::timeout(Duration::from_millis(50), child.wait()).await;
    assert!(
        first.is_err(),
        "the child cannot have exited: it waits for a line"
    );
    stdin.write_all(b"go\n").await.expect("write");
    assert_eq!(child.wait().await.expect("wait").code(), Some(5));
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A child spawned into a cgroup is inside it when its program starts, and can lead or join a
/// process group.
pub async fn enters_cgroup_and_process_group(test: &str) {
    let cgroup = match super::cgroup::TestCgroup::new(test) {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            return;
        }
    };
    let mut show = cmd(test, "sh");
    show.args([
        "-c",
        "grep ^0:: /proc/self/cgroup; cut -d' ' -f5 /proc/$$/stat",
    ])
    .stdout(Stdio::piped());
    let leader = sheepdog::__private::spawn_into(&show, Some(cgroup.target()), Some(0))
        .expect("spawn into the cgroup");
    let leader_pid = leader.pid();
    let (status, out) = output(leader).await;
    assert!(status.success());
    let out = String::from_utf8(out).expect("utf-8");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(cgroup.proc_line().as_str()), "{out}");
    assert_eq!(
        lines.next(),
        Some(leader_pid.to_string().as_str()),
        "leads its group"
    );

    // Join the group of a member that is still alive.
    let mut holder = cmd(test, "cat")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn a group leader");
    let mut lead = cmd(test, "cat");
    lead.stdin(Stdio::piped());
    let mut leader = sheepdog::__private::spawn_into(&lead, None, Some(0)).expect("leader");
    let pgid = leader.pid() as i32;
    let joiner = sheepdog::__private::spawn_into(&show, Some(cgroup.target()), Some(pgid))
        .expect("join the group");
    let (_, out) = output(joiner).await;
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        out.lines().nth(1),
        Some(pgid.to_string().as_str()),
        "joined group {pgid}"
    );
    drop(leader.take_stdin());
    drop(holder.take_stdin());
    assert!(leader.wait().await.expect("wait").success());
    assert!(holder.wait().await.expect("wait").success());
}
