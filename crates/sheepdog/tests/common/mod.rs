//! Helpers shared by the integration tests: marked commands, descriptor counts, bounded polls,
//! temporary directories that clean up after themselves.

#![allow(dead_code, unused_macros)] // each test file uses a different subset

pub mod cgroup;
pub mod scenarios;

/// One test per scenario of [`scenarios`], run under `$path`: a fallback path is forced for the
/// whole test process first. `$prefix` marks the processes of these tests.
macro_rules! scenario_tests {
    ($path:expr, $prefix:literal) => {
        fn use_path() -> sheepdog::SpawnPath {
            if $path != sheepdog::SpawnPath::Clone3 {
                sheepdog::__private::force_spawn_path($path);
            }
            $path
        }

        #[tokio::test]
        async fn statuses_and_signals() {
            let path = use_path();
            common::scenarios::statuses_and_signals(concat!($prefix, "statuses"), path).await;
        }

        #[tokio::test]
        async fn args_env_cwd_round_trip() {
            use_path();
            common::scenarios::args_env_cwd_round_trip(concat!($prefix, "args_env_cwd")).await;
        }

        #[tokio::test]
        async fn path_lookup_uses_child_path() {
            use_path();
            common::scenarios::path_lookup_uses_child_path(concat!($prefix, "path_lookup")).await;
        }

        #[tokio::test]
        async fn stdio_pipes() {
            use_path();
            common::scenarios::stdio_pipes(concat!($prefix, "stdio_pipes")).await;
        }

        #[tokio::test]
        async fn dropped_child_is_reaped() {
            use_path();
            common::scenarios::dropped_child_is_reaped(concat!($prefix, "dropped_child")).await;
        }

        #[tokio::test]
        async fn wait_is_cancel_safe() {
            use_path();
            common::scenarios::wait_is_cancel_safe(concat!($prefix, "wait_cancel")).await;
        }

        #[tokio::test]
        async fn enters_cgroup_and_process_group() {
            use_path();
            common::scenarios::enters_cgroup_and_process_group(concat!($prefix, "cgroup")).await;
        }
    };
}

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every process a test starts carries this variable, so a leak can be traced to its test.
pub const MARK: &str = "SHEEPDOG_TEST";

/// A command marked with the name of the test that runs it.
pub fn cmd(test: &str, program: impl AsRef<OsStr>) -> sheepdog::Command {
    let mut cmd = sheepdog::Command::new(program);
    cmd.env(MARK, test);
    cmd
}

/// Gives the children of this test process SIGINT's default action. A test run started in the
/// background by a non-interactive shell inherits SIGINT ignored, exec keeps an ignored signal
/// ignored, and a shell cannot trap a signal ignored on entry; a caught signal is reset to the
/// default at exec, so catching it here (tokio's handler stays installed) is enough.
pub fn sigint_default_for_children() {
    // The stream may go: the handler stays.
    drop(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("install a SIGINT handler"),
    );
}

/// The descriptors open in this process right now.
pub fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    fds
}

/// The descriptors open in this process, each with what it refers to (for failure messages).
pub fn describe_fds() -> Vec<String> {
    open_fds()
        .into_iter()
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
            format!(
                "{fd} -> {}",
                target.map_or("?".into(), |t| t.display().to_string())
            )
        })
        .collect()
}

/// Waits (bounded) until sheepdog's background work — reaping dropped children, removing
/// dropped herds' cgroups, making the next ones ahead — is done, so descriptors can be counted.
pub fn settle() {
    assert!(
        poll_until(Duration::from_secs(10), || {
            sheepdog::__private::background_work() == 0
        }),
        "sheepdog's background work did not finish within 10 s"
    );
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` still exists in any state, zombie included.
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The state letter of `pid` from /proc (R, S, Z, ...), if it exists.
pub fn pid_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The process group of `pid`, from /proc.
pub fn pgid_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Live (non-zombie) processes carrying `MARK=marker` in their environment (descendants inherit
/// it), to check that nothing of a test's process tree is left.
pub fn alive(marker: &str) -> Vec<u32> {
    let needle = format!("{MARK}={marker}");
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid_state(pid).is_some_and(|s| s != 'Z'))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// This test binary, hard-linked (or copied) into a fresh world-readable directory, so that
/// another user (`nobody`) can run it although the build tree may be closed to them.
pub struct SharedExe {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl SharedExe {
    pub fn new(test: &str) -> SharedExe {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new(test);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the directory");
        let path = dir.path().join("test-binary");
        let exe = std::env::current_exe().expect("this test binary");
        // A link opens nothing for writing, so no concurrent spawn can make exec fail with
        // "text file busy"; a copy only across filesystems.
        if std::fs::hard_link(&exe, &path).is_err() {
            std::fs::copy(&exe, &path).expect("copy the test binary");
        }
        SharedExe { dir, path }
    }
}

/// A directory removed (with its contents) when dropped, also when a test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sheepdog-test-{test}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file of `bytes` random bytes (from `/dev/urandom`, written by a marked `head`) in `dir`,
/// and its contents.
pub async fn random_file(test: &str, dir: &TempDir, bytes: usize) -> (PathBuf, Vec<u8>) {
    let path = dir.path().join("random.bin");
    let made = cmd(test, "head")
        .args(["-c", &bytes.to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&path).expect("create the file"))
        .status()
        .await
        .expect("write the file");
    assert!(made.success(), "head: {made}");
    let contents = std::fs::read(&path).expect("read the file");
    assert_eq!(contents.len(), bytes);
    (path, contents)
}

/// Reads a piped stdout to the end and waits: (status, bytes).
pub async fn output(mut child: sheepdog::Child) -> (sheepdog::ExitStatus, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if let Some(mut stdout) = child.take_stdout() {
        stdout.read_to_end(&mut out).await.expect("read stdout");
    }
    let status = child.wait().await.expect("wait");
    (status, out)
}

/// Ends a process when dropped (a possible escapee, should a test fail), through a pidfd opened
/// while it was known to be the test's, so a reused pid is never hit.
pub struct KillOnDrop(Option<std::os::fd::OwnedFd>);

impl KillOnDrop {
    pub fn new(pid: u32) -> KillOnDrop {
        KillOnDrop(rustix::process::Pid::from_raw(pid as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        }))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pidfd) = &self.0 {
            let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
        }
    }
}

/// Polls `cond` without blocking the async runtime (a test's driver tasks run on it) until it
/// holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Reads `stdout` until `word` has been printed; returns everything read.
pub async fn read_until(stdout: &mut sheepdog::ChildStdout, word: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(word) {
        let n = stdout.read(&mut buf).await.expect("read");
        assert!(n > 0, "ended before printing {word:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}
