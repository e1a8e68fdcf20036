//! A program written against `tokio::process`'s names, ported by changing its `use` lines:
//! public pipe fields, `id`, `start_kill`, `kill().await`, `wait_with_output`,
//! `kill_on_drop(false)`, one child's stdout as another's stdin, `?` into `io::Result`,
//! `uid`/`gid`, `process_group`; and the process-group mechanism chosen on a `Command`.

mod common;

use std::io;
use std::time::Duration;

// The port: these were `tokio::process::Command` and `std::process::Stdio`.
use sheepdog::{Command, Mechanism, Pipeline, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::{alive, pgid_of, pid_exists, pid_state, poll_until, MARK};

/// A command marked for its test (see `common::cmd`), as a tokio program would build it.
fn cmd(test: &str, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(MARK, test);
    cmd
}

/// The cgroup v2 directory of `pid`, if the host has a cgroup v2 mount.
fn cgroup_of(pid: u32) -> Option<std::path::PathBuf> {
    let mount = common::cgroup::cgroup2_mount()?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// Whether herds made here get a cgroup (else the tests of cgroup behaviour skip).
fn cgroup_herds() -> bool {
    sheepdog::host_containment().mechanism() == Some(Mechanism::CgroupV2)
}

/// Kills process `pid` (one this test started) when dropped, also when an assertion fails.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Spawns `sh` as `cmd` says, running `sleep 600` in the background and printing its pid, then
/// (with `wait`) waiting for it; returns the child and a guard that kills the sleep.
async fn with_background_sleep(
    cmd: &mut Command,
    wait: bool,
) -> io::Result<(sheepdog::Child, KillOnDrop)> {
    let script = if wait {
        "sleep 600 & echo $!; wait"
    } else {
        "sleep 600 & echo $!"
    };
    let mut child = cmd.args(["-c", script]).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines.next_line().await?.expect("a line");
    Ok((child, KillOnDrop(line.trim().parse().expect("a pid"))))
}

/// What [`port`]'s program found, the same under both imports.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    sorted: Vec<String>,
    sort_succeeded: bool,
    id_after_wait: Option<u32>,
    counted: String,
    killed_by_signal: bool,
    missing: io::ErrorKind,
    code: Option<i32>,
    stdout: Vec<u8>,
}

/// One program, compiled twice: once on `tokio::process` and once on sheepdog, the two
/// differing in their `use` lines only.
macro_rules! port {
    () => {
        pub async fn run() -> std::io::Result<super::Report> {
            // Feed a child's stdin and read its stdout line by line.
            let mut sort = Command::new("sort")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            assert!(sort.id().is_some());
            let mut stdin = sort.stdin.take().expect("piped");
            stdin.write_all(b"pear\napple\nfig\n").await?;
            drop(stdin);
            let mut lines = BufReader::new(sort.stdout.take().expect("piped")).lines();
            let mut sorted = Vec::new();
            while let Some(line) = lines.next_line().await? {
                sorted.push(line);
            }
            let status = sort.wait().await?;

            // Chain one child's stdout into the next one's stdin.
            let mut printf = Command::new("printf")
                .arg("a\\nb\\nc\\n")
                .stdout(Stdio::piped())
                .spawn()?;
            let piped: Stdio = printf.stdout.take().expect("piped").try_into()?;
            let wc = Command::new("wc")
                .arg("-l")
                .stdin(piped)
                .stdout(Stdio::piped())
                .spawn()?;
            let counted = wc.wait_with_output().await?;
            printf.wait().await?;

            // Stop a runaway in its own process group.
            let mut sleeper = Command::new("sleep").arg("600").process_group(0).spawn()?;
            sleeper.start_kill()?;
            sleeper.kill().await?;
            let killed = sleeper.try_wait()?.expect("reaped");

            let missing = Command::new("no-such-program-tokio-style")
                .spawn()
                .err()
                .expect("not found")
                .kind();
            let out = Command::new("sh")
                .args(["-c", "echo hi; exit 3"])
                .output()
                .await?;
            Ok(super::Report {
                sorted,
                sort_succeeded: status.success(),
                id_after_wait: sort.id(),
                counted: String::from_utf8_lossy(&counted.stdout).trim().to_owned(),
                killed_by_signal: !killed.success() && killed.code().is_none(),
                missing,
                code: out.status.code(),
                stdout: out.stdout,
            })
        }
    };
}

mod on_tokio {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::process::Command;
    port!();
}

mod on_sheepdog {
    use sheepdog::{Command, Stdio};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    port!();
}

/// The same program on tokio and on sheepdog: it compiles on both and finds the same.
#[tokio::test]
async fn a_tokio_program_ported_by_its_imports() -> io::Result<()> {
    let on_tokio = on_tokio::run().await?;
    let on_sheepdog = on_sheepdog::run().await?;
    assert_eq!(on_sheepdog, on_tokio);
    assert_eq!(
        on_sheepdog,
        Report {
            sorted: vec!["apple".into(), "fig".into(), "pear".into()],
            sort_succeeded: true,
            id_after_wait: None,
            counted: "3".into(),
            killed_by_signal: true,
            missing: io::ErrorKind::NotFound,
            code: Some(3),
            stdout: b"hi\n".to_vec(),
        }
    );
    Ok(())
}

/// The typical tokio program: write to stdin, read stdout line by line from the public fields,
/// look at `id()`, wait; `id()` is `None` once the child is reaped.
#[tokio::test]
async fn tokio_program_runs_unchanged() -> io::Result<()> {
    let test = "tokio_style_program";
    let mut child = cmd(test, "sort")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let id = child.id().expect("a running child has an id");
    assert!(pid_exists(id));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    assert!(child.stderr.is_none(), "stderr is not piped");
    tokio::spawn(async move {
        stdin.write_all(b"pear\napple\nfig\n").await?;
        drop(stdin);
        io::Result::Ok(())
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await? {
        seen.push(line);
    }
    let status = child.wait().await?;
    assert!(status.success(), "{status}");
    assert_eq!(seen, ["apple", "fig", "pear"]);
    assert_eq!(child.id(), None, "a reaped child has no id");
    assert!(!pid_exists(id), "the child was reaped");
    Ok(())
}

/// `start_kill` kills the private herd: the program and what it started in the background.
#[tokio::test]
async fn start_kill_kills_the_whole_private_tree() -> io::Result<()> {
    let test = "tokio_style_start_kill";
    let (mut child, sleep) = with_background_sleep(&mut cmd(test, "sh"), true).await?;
    let grandchild = sleep.0;
    child.start_kill()?;
    let status = child.wait().await?;
    assert_eq!(status.signal(), Some(sheepdog::Signal::KILL));
    assert!(
        poll_until(Duration::from_secs(10), || pid_state(grandchild)
            .is_none_or(|s| s == 'Z')),
        "the background sleep {grandchild} outlived start_kill"
    );
    child
        .start_kill()
        .expect("start_kill on a reaped child is a no-op");
    Ok(())
}

/// `kill().await` returns once the child is reaped and its whole tree is gone.
#[tokio::test]
async fn kill_await_waits_for_the_tree() -> io::Result<()> {
    let test = "tokio_style_kill_await";
    let mut child = cmd(test, "sh")
        .args(["-c", "sleep 600 & sleep 600 & echo started; wait"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    lines.next_line().await?;
    // A background job in the middle of exec shows no environment for a moment: look again.
    assert!(
        common::eventually(Duration::from_secs(10), || alive(test).len() == 3).await,
        "sh and two sleeps run: {:?}",
        alive(test)
    );
    tokio::time::timeout(Duration::from_secs(10), child.kill())
        .await
        .expect("kill ends")?;
    assert_eq!(child.id(), None, "kill reaps the child");
    // No poll: the wait covered the tree.
    assert_eq!(
        alive(test),
        Vec::<u32>::new(),
        "kill().await left processes"
    );
    Ok(())
}

/// `wait_with_output` reads both pipes while waiting, as tokio's does, and its wait ends
/// when a background process holds the pipe open.
#[tokio::test]
async fn wait_with_output_reads_both_streams_and_ends() -> io::Result<()> {
    let test = "tokio_style_wait_with_output";
    let child = cmd(test, "sh")
        .args(["-c", "head -c 300000 /dev/zero; echo err >&2; exit 4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = child.wait_with_output().await?;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(out.stdout.len(), 300_000, "more than a pipe's buffer");
    assert_eq!(out.stderr, b"err\n");

    let child = cmd(test, "sh")
        .args(["-c", "sleep 600 & echo hi"])
        .stdout(Stdio::piped())
        .drain_timeout(Duration::from_millis(200))
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the wait ends although `sleep` holds stdout")?;
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hi\n");
    assert!(out.held_open());
    assert!(
        poll_until(Duration::from_secs(10), || alive(test).is_empty()),
        "the holder of the pipe was not killed with the dropped child: {:?}",
        alive(test)
    );
    Ok(())
}

/// `kill_on_drop(false)`: the dropped child's tree runs on, the child is reaped (no zombie),
/// and its herd's cgroup is removed once the tree has ended.
#[tokio::test]
async fn kill_on_drop_false_leaves_the_tree_running_and_no_zombie() -> io::Result<()> {
    let test = "tokio_style_kill_on_drop";
    let mut leader = cmd(test, "sh");
    leader.kill_on_drop(false);
    assert!(!leader.get_kill_on_drop());
    let (child, sleep_guard) = with_background_sleep(&mut leader, false).await?;
    let (pid, sleeper) = (child.pid(), sleep_guard.0);
    let herd_cgroup = cgroup_of(sleeper).filter(|_| cgroup_herds());
    drop(child);
    assert!(
        poll_until(Duration::from_secs(10), || !pid_exists(pid)),
        "the dropped child {pid} was not reaped (state {:?})",
        pid_state(pid)
    );
    assert_eq!(
        pid_state(sleeper).map(|s| s != 'Z'),
        Some(true),
        "the background sleep was killed with the dropped child"
    );
    if let Some(dir) = herd_cgroup {
        assert!(dir.exists(), "the herd's cgroup stays while the tree runs");
        drop(sleep_guard); // the tree ends
        assert!(
            poll_until(Duration::from_secs(10), || !dir.exists()),
            "the released herd's cgroup {} was not removed",
            dir.display()
        );
    } else {
        eprintln!("skipping the cgroup removal check: herds here are not cgroups");
    }
    Ok(())
}

/// `kill_on_drop(false)` on the process-group mechanism: the group is let go, its members run
/// on in it, and the dropped leader is reaped.
#[tokio::test]
async fn kill_on_drop_false_on_the_process_group_mechanism() -> io::Result<()> {
    let test = "tokio_style_kill_on_drop_group";
    let mut leader = cmd(test, "sh");
    leader
        .mechanism(Mechanism::ProcessGroup)
        .kill_on_drop(false);
    let (child, sleep_guard) = with_background_sleep(&mut leader, false).await?;
    let (pid, sleeper) = (child.pid(), sleep_guard.0);
    let group = pgid_of(pid).expect("a group");
    drop(child);
    assert!(
        poll_until(Duration::from_secs(10), || !pid_exists(pid)),
        "the dropped child {pid} was not reaped (state {:?})",
        pid_state(pid)
    );
    assert_eq!(pid_state(sleeper).map(|s| s != 'Z'), Some(true));
    assert_eq!(pgid_of(sleeper), Some(group), "still in the herd's group");
    Ok(())
}

/// The default still kills the tree when the child is dropped (the contrast to the above).
#[tokio::test]
async fn kill_on_drop_by_default() -> io::Result<()> {
    let test = "tokio_style_kill_on_drop_default";
    let (child, sleep_guard) = with_background_sleep(&mut cmd(test, "sh"), false).await?;
    let sleeper = sleep_guard.0;
    drop(child);
    assert!(
        poll_until(Duration::from_secs(10), || pid_state(sleeper)
            .is_none_or(|s| s == 'Z')),
        "the tree outlived its dropped child"
    );
    Ok(())
}

/// One child's stdout as the next one's stdin, as tokio programs chain them.
#[tokio::test]
async fn child_stdout_chains_into_another_stdin() -> io::Result<()> {
    let test = "tokio_style_chain";
    let mut producer = cmd(test, "printf")
        .args(["b\\nc\\na\\n"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = producer.stdout.take().expect("piped");
    let stdin: Stdio = stdout.try_into()?;
    let consumer = cmd(test, "sort")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = consumer.wait_with_output().await?;
    assert!(producer.wait().await?.success());
    assert!(out.status.success());
    assert_eq!(out.stdout, b"a\nb\nc\n");
    Ok(())
}

/// `?` turns a sheepdog error into an `io::Error` of the same kind, with sheepdog's message.
#[tokio::test]
async fn question_mark_into_io_result_keeps_the_kind() {
    fn start() -> io::Result<sheepdog::Child> {
        let child = Command::new("no-such-program-tokio-style").spawn()?;
        Ok(child)
    }
    async fn run() -> io::Result<std::process::ExitStatus> {
        let out = Command::new("no-such-program-tokio-style").output().await?;
        Ok(out.status.into())
    }
    let err = start().expect_err("not found");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(
        err.to_string().contains("no-such-program-tokio-style") && err.to_string().contains("PATH"),
        "{err}"
    );
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<sheepdog::Error>())
        .expect("the sheepdog error inside");
    assert!(matches!(inner, sheepdog::Error::NotFound { .. }));
    assert_eq!(
        run().await.expect_err("not found").kind(),
        io::ErrorKind::NotFound
    );
}

/// `uid`/`gid` as `nobody`: the child runs as that user and group, with no supplementary group
/// left from root.
#[tokio::test]
async fn uid_and_gid_as_nobody() -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: changing the user id needs root");
        return Ok(());
    }
    let test = "tokio_style_uid_gid";
    let out = cmd(test, "sh")
        .args(["-c", "id -u; id -g; id -G"])
        .uid(65534)
        .gid(65534)
        .output()
        .await?;
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "65534\n65534\n65534\n"
    );

    Ok(())
}

/// `uid` refused by the kernel is a spawn error that says so, with the OS error's kind.
#[tokio::test]
async fn uid_refused_is_a_spawn_error() {
    if rustix::process::geteuid().is_root() {
        // Root may take any id but (uid_t)-1, which setuid(2) rejects for everybody.
        let err = Command::new("true")
            .uid(u32::MAX)
            .spawn()
            .expect_err("setuid(-1) is invalid");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("user or group id"), "{err}");
    } else {
        let err = Command::new("true")
            .uid(0)
            .spawn()
            .expect_err("only root may become root");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("user or group id"), "{err}");
    }
}

/// `process_group(0)` leads a new group; `process_group(pgid)` joins one, and the child stays
/// in its herd. On the process-group mechanism, where leaving the group escapes, it is an error.
#[tokio::test]
async fn process_group_as_in_tokio() -> io::Result<()> {
    let test = "tokio_style_process_group";
    let mut leader = cmd(test, "sleep").arg("600").process_group(0).spawn()?;
    assert_eq!(pgid_of(leader.pid()), Some(leader.pid() as i32));

    if cgroup_herds() {
        let mut joiner = cmd(test, "sleep")
            .arg("600")
            .process_group(leader.pid() as i32)
            .spawn()?;
        assert_eq!(pgid_of(joiner.pid()), Some(leader.pid() as i32));
        let cgroup = cgroup_of(joiner.pid()).expect("a cgroup");
        assert_ne!(cgroup, cgroup_of(leader.pid()).expect("a cgroup"));
        assert!(
            cgroup
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("herd")),
            "the joiner stays in its own herd: {}",
            cgroup.display()
        );
        joiner.kill().await?;
    } else {
        eprintln!("skipping the join: herds here are process groups");
    }
    leader.kill().await?;

    let err = cmd(test, "true")
        .mechanism(Mechanism::ProcessGroup)
        .process_group(0)
        .spawn()
        .expect_err("a process-group herd cannot let its child leave");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let err = cmd(test, "true")
        .process_group(-5)
        .spawn()
        .expect_err("no such group id");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(alive(test), Vec::<u32>::new());
    Ok(())
}

/// A `Command` chooses the process-group mechanism for its private herd: `spawn`, `output`,
/// a timeout and a pipeline all run on it.
#[tokio::test]
async fn process_group_mechanism_on_a_command() -> io::Result<()> {
    let test = "tokio_style_group_mechanism";
    let mut leader = cmd(test, "sh");
    leader.mechanism(Mechanism::ProcessGroup);
    let (mut child, sleep_guard) = with_background_sleep(&mut leader, true).await?;
    let sleeper = sleep_guard.0;
    // Both are in the herd's group, which the child does not lead (an anchor does).
    let group = pgid_of(child.pid()).expect("a group");
    assert_ne!(
        group,
        child.pid() as i32,
        "the child joined the herd's group"
    );
    assert_eq!(pgid_of(sleeper), Some(group));
    if let (Some(own), Some(childs)) = (common::cgroup::own_cgroup(), cgroup_of(child.pid())) {
        assert_eq!(childs, own, "no herd cgroup was made");
    }
    child.kill().await?;
    assert!(
        pid_state(sleeper).is_none_or(|s| s == 'Z'),
        "the group kill reached the background sleep"
    );

    let out = cmd(test, "sh")
        .args(["-c", "echo out; echo err >&2"])
        .mechanism(Mechanism::ProcessGroup)
        .output()
        .await?;
    assert_eq!(
        (&out.stdout[..], &out.stderr[..]),
        (&b"out\n"[..], &b"err\n"[..])
    );

    let started = std::time::Instant::now();
    let status = cmd(test, "sh")
        .args(["-c", "sleep 600 & sleep 600"])
        .mechanism(Mechanism::ProcessGroup)
        .timeout(Duration::from_millis(200))
        .status()
        .await?;
    assert!(status.timed_out(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let out = Pipeline::new(cmd(test, "printf").arg("b\\na\\n"))
        .pipe(&cmd(test, "sort"))
        .mechanism(Mechanism::ProcessGroup)
        .output()
        .await?;
    assert!(out.success());
    assert_eq!(out.stdout, b"a\nb\n");
    assert!(
        poll_until(Duration::from_secs(10), || alive(test).is_empty()),
        "left behind: {:?}",
        alive(test)
    );
    Ok(())
}

/// `lines()` on a child with nothing piped says so instead of ending quietly.
#[tokio::test]
async fn lines_without_a_pipe_is_an_error() -> io::Result<()> {
    let mut child = cmd("tokio_style_lines", "true").spawn()?;
    let mut lines = child.lines();
    let err = lines.next().await.expect_err("nothing is piped");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("piped"), "{err}");
    child.wait().await?;
    Ok(())
}

/// `ExitStatus` converts into std's, code and signal alike; `From<std::process::Command>`
/// keeps program, arguments, environment and working directory.
#[tokio::test]
async fn conversions_from_and_to_std() -> io::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let test = "tokio_style_std";
    let mut std_cmd = std::process::Command::new("sh");
    std_cmd
        .args(["-c", "echo \"$PWD $GREETING ${HOME-unset}\"; exit 5"])
        .env(MARK, test)
        .env("GREETING", "hello")
        .env_remove("HOME")
        .current_dir("/");
    let out = Command::from(std_cmd).output().await?;
    assert_eq!(out.stdout, b"/ hello unset\n");
    let status: std::process::ExitStatus = out.status.into();
    assert_eq!((status.code(), status.signal()), (Some(5), None));

    let mut child = cmd(test, "sleep").arg("600").spawn()?;
    child.start_kill()?;
    let status: std::process::ExitStatus = child.wait().await?.into();
    assert_eq!(
        (status.code(), status.signal()),
        (None, Some(libc_sigkill()))
    );
    Ok(())
}

fn libc_sigkill() -> i32 {
    sheepdog::Signal::KILL.as_raw()
}
