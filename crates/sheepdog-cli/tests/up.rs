//! The real `sheepdog up`: configuration errors, `--check`, readiness order, crash loops,
//! Ctrl-C during start-up and with a daemonizing child, a second Ctrl-C, PID 1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MARK: &str = "SHEEPDOG_TEST";

/// A directory for one test's configuration, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("sheepdog-up-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a directory");
        Dir(dir)
    }

    /// Writes `sheepdog.toml` (`@MARK@` becomes the test's marker variable) and returns its path.
    fn config(&self, test: &str, text: &str) -> PathBuf {
        let path = self.0.join("sheepdog.toml");
        let text = text.replace("@MARK@", &format!("env = {{ {MARK} = \"{test}\" }}"));
        std::fs::write(&path, text).expect("write the configuration");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn up(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sheepdog"));
    command
        .arg("up")
        .arg("-f")
        .arg(config)
        .args(args)
        .env_remove("NO_COLOR");
    command
}

fn run(args: &[&str], config: &Path) -> std::process::Output {
    up(args, config).output().expect("run sheepdog up")
}

/// Live processes carrying `MARK=marker` in their environment.
fn alive(marker: &str) -> Vec<u32> {
    let needle = format!("{MARK}={marker}");
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, s)| s.trim_start().chars().next());
            state.is_some_and(|s| s != 'Z')
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A running `sheepdog up` whose stderr lines arrive on a channel; killed (with what it runs,
/// by marker) if a test fails half-way.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    marker: &'static str,
}

impl Running {
    fn start(command: &mut Command, marker: &'static str) -> Running {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sheepdog up");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            marker,
        }
    }

    /// Waits (bounded) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {text:?}; saw {:#?}", self.seen);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).expect("signal sheepdog up");
    }

    /// Waits (bounded) for `up` to exit; returns its code and every stderr line.
    fn finish(&mut self) -> (Option<i32>, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "up did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in alive(self.marker) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

#[test]
fn check_validates_and_starts_nothing() {
    let dir = Dir::new("check");
    let flag = dir.0.join("started");
    let config = dir.config(
        "up_check",
        &format!(
            "[services.a]\ncommand = \"touch {}\"\n[services.b]\nargv = [\"true\"]\n\
             depends_on = [\"a\"]\n",
            flag.display()
        ),
    );
    let out = run(&["--check"], &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 service(s), valid: a, b"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!flag.exists(), "--check started a service");
}

#[test]
fn bad_configs_name_file_line_and_key() {
    let dir = Dir::new("bad");
    let cases = [
        (
            "[services.a]\ncommand = \"true\"\nrestrat = \"always\"\n",
            ":3: `services.a.restrat`: unknown field `restrat`",
        ),
        (
            "[services.a]\ncommand = \"true\"\nstart_limit = { burst = \"five\", interval = \"1s\" }\n",
            ":3: `services.a.start_limit.burst`: invalid type: string \"five\"",
        ),
        (
            "[services.a]\ncommand = \"true\"\ndepends_on = [\"b\"]\n\n[services.b]\ncommand = \"true\"\ndepends_on = { a = \"started\" }\n",
            ":3: `services.a.depends_on`: dependency cycle: a -> b -> a",
        ),
        (
            "[services.a]\ncommand = \"true\"\n\n\ndepends_on = { db = \"ready\" }\n",
            ":5: `services.a.depends_on.db`: service `a` depends on `db`, which is not a service",
        ),
    ];
    for (text, expected) in cases {
        let config = dir.config("up_bad", text);
        let out = run(&["--check"], &config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        let want = format!("sheepdog up: {}{expected}", config.display());
        assert!(
            stderr.starts_with(&want),
            "{text}:\n{stderr}\nwanted {want}"
        );
        // Without --check too: nothing starts.
        assert_eq!(run(&[], &config).status.code(), Some(2));
    }
}

#[test]
fn readiness_gates_dependants_and_up_ends_by_itself() {
    let dir = Dir::new("ready");
    let log = dir.0.join("log");
    let config = dir.config(
        "up_ready",
        &format!(
            r#"
[services.db]
command = "sleep 0.3; echo db-ready >> {log}; echo accepting connections; sleep 0.3"
ready = {{ line = "accepting connections" }}

[services.api]
command = "echo api-start >> {log}"
depends_on = {{ db = "ready" }}
"#,
            log = log.display()
        ),
    );
    let out = run(&["--timestamps"], &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "db-ready\napi-start\n"
    );
    // Lines carry the name, padded, and a time of day; piped output has no colour.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("accepting"))
        .expect("db's line");
    assert!(line.ends_with(" db  | accepting connections"), "{line:?}");
    assert_eq!(line.as_bytes()[2], b':', "{line:?}");
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'));
}

#[test]
fn a_crash_loop_gives_up_and_up_names_the_failed_service() {
    let dir = Dir::new("crash");
    let config = dir.config(
        "up_crash",
        r#"
[services.crash]
command = "exit 3"
restart = "on-failure"
backoff = { initial = "10ms", factor = 2.0, max = "1s", jitter = 0.0 }
start_limit = { burst = 3, interval = "60s" }

[services.fine]
argv = ["true"]
"#,
    );
    let out = run(&[], &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("crash | [sheepdog] starting").count(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.contains("crash | [sheepdog] restarting in 10ms"),
        "{stderr}"
    );
    assert!(
        stderr.contains("crash | [sheepdog] restarting in 20ms"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sheepdog up: failed: crash (gave up: started 3 times within 60s"),
        "{last}"
    );
}

#[test]
fn ctrl_c_during_start_up_stops_what_started() {
    let dir = Dir::new("startup");
    let config = dir.config(
        "up_startup",
        r#"
[services.db]
command = "sleep 1000 & exec sleep 1000"
ready = { line = "never printed", timeout = "100s" }
@MARK@

[services.api]
command = "sleep 1000"
depends_on = { db = "ready" }
@MARK@
"#,
    );
    let mut up = Running::start(&mut up(&[], &config), "up_startup");
    up.wait_for("db  | [sheepdog] starting");
    assert!(poll_until(Duration::from_secs(5), || alive("up_startup")
        .len()
        == 2));
    up.signal(rustix::process::Signal::INT);
    let (code, lines) = up.finish();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("db  | [sheepdog] stopped: SIGTERM to 2 process(es)")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == "api | [sheepdog] stopped"),
        "{lines:#?}"
    );
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("api | [sheepdog] starting")));
    assert!(
        alive("up_startup").is_empty(),
        "left running: {:?}",
        alive("up_startup")
    );
}

#[test]
fn sigterm_stops_a_daemonizing_service_and_a_second_signal_kills() {
    let dir = Dir::new("daemon");
    // The daemon leaves its session and its parent; the other service ignores TERM and INT and
    // would take its whole minute of grace.
    let config = dir.config(
        "up_daemon",
        r#"
[services.daemon]
command = "sh -c 'setsid sleep 1000 </dev/null >/dev/null 2>&1 &'; exec sleep 1000"
@MARK@

[services.stubborn]
command = "trap '' TERM INT; echo trapped; while :; do sleep 0.05; done"
ready = { line = "trapped" }
stop = { signal = "TERM", grace = "60s" }
@MARK@
"#,
    );
    let mut up = Running::start(&mut up(&[], &config), "up_daemon");
    up.wait_for("sheepdog up: all 2 services ready after");
    assert!(poll_until(Duration::from_secs(5), || alive("up_daemon")
        .len()
        >= 4));
    up.signal(rustix::process::Signal::TERM);
    up.wait_for("daemon   | [sheepdog] stopped");
    let started = Instant::now();
    up.signal(rustix::process::Signal::INT);
    let (code, lines) = up.finish();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second signal did not kill"
    );
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("SIGINT again: killing every service")));
    assert!(
        alive("up_daemon").is_empty(),
        "left running: {:?}",
        alive("up_daemon")
    );
}

/// `unshare --pid --fork --mount-proc` in front of sheepdog, or why it cannot run here.
fn in_pid_namespace() -> Result<Command, String> {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
        .map_err(|err| format!("no unshare: {err}"))?;
    if !probe.status.success() {
        return Err(format!(
            "unshare is not permitted here: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_sheepdog"));
    Ok(command)
}

#[test]
fn as_pid1_it_reaps_orphans_and_passes_the_status_on() {
    let mut command = match in_pid_namespace() {
        Ok(command) => command,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let dir = Dir::new("pid1");
    // Five orphans re-parented to PID 1 exit after 0.1 s; 0.5 s later none may be a zombie.
    let config = dir.config(
        "up_pid1",
        r#"
[services.orphans]
command = "for i in 1 2 3 4 5; do sh -c 'sleep 0.1 &'; done; sleep 0.6; z=$(cat /proc/[0-9]*/stat | awk '$3 == \"Z\"' | wc -l); echo zombies=$z; test $z -eq 0"
"#,
    );
    let out = command
        .arg("up")
        .arg("-f")
        .arg(&config)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("orphans | zombies=0"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = in_pid_namespace()
        .expect("unshare")
        .args(["run", "--quiet", "--", "sh", "-c", "exit 7"])
        .output()
        .expect("run unshare");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn as_pid1_sigterm_stops_every_service() {
    let mut command = match in_pid_namespace() {
        Ok(command) => command,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let dir = Dir::new("pid1term");
    let config = dir.config(
        "up_pid1_term",
        r#"
[services.server]
command = "sleep 1000 & exec sleep 1000"
@MARK@
"#,
    );
    command.arg("up").arg("-f").arg(&config);
    let mut up = Running::start(&mut command, "up_pid1_term");
    up.wait_for("server | [sheepdog] starting");
    assert!(poll_until(Duration::from_secs(5), || alive("up_pid1_term")
        .len()
        == 2));
    // The init (PID 1 inside) is unshare's one child.
    let unshare = up.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let init: i32 = children.trim().parse().expect("unshare's child");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).expect("a pid"),
        rustix::process::Signal::TERM,
    )
    .expect("signal the init");
    let (code, lines) = up.finish();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("server | [sheepdog] stopped: SIGTERM to 2 process(es)")),
        "{lines:#?}"
    );
    assert!(alive("up_pid1_term").is_empty());
}

#[test]
fn names_are_coloured_on_a_terminal_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        return eprintln!("skipped: no `script` to give sheepdog a terminal");
    }
    let dir = Dir::new("colour");
    let config = dir.config("up_colour", "[services.a]\ncommand = \"echo hi\"\n");
    let line = format!(
        "{} up -f {}",
        env!("CARGO_BIN_EXE_sheepdog"),
        config.display()
    );
    let on_terminal = |no_color: Option<&str>| {
        let mut command = Command::new("script");
        command
            .args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let out = command.output().expect("run script");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("\x1b[36ma |\x1b[0m hi"), "{coloured:?}");
    let plain = on_terminal(Some("1"));
    assert!(
        plain.contains("a | hi") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/up/sheepdog.toml");
    let out = run(&["--check"], &example);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 service(s), valid: setup, web, worker")
    );
}

/// The state letter of `pid` (R, S, T, Z, ...).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn ctrl_z_freezes_the_services_with_up_and_fg_thaws_them() {
    let dir = Dir::new("suspend");
    let ticks = dir.0.join("ticks");
    let config = dir.config(
        "up_suspend",
        &format!(
            "[services.ticker]\ncommand = \"while :; do echo x >> {}; sleep 0.02; done\"\n@MARK@\n",
            ticks.display()
        ),
    );
    let size = || std::fs::metadata(&ticks).map_or(0, |m| m.len());
    let mut up = Running::start(&mut up(&[], &config), "up_suspend");
    up.wait_for("all 1 services ready");
    assert!(poll_until(Duration::from_secs(5), || size() > 0));
    let pid = up.child.id();
    up.signal(rustix::process::Signal::TSTP);
    assert!(
        poll_until(Duration::from_secs(5), || state_of(pid) == Some('T')),
        "up did not stop"
    );
    // A window in which a running ticker would write about 15 times.
    let frozen = size();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(size(), frozen, "the service ran on while up was stopped");
    up.signal(rustix::process::Signal::CONT);
    assert!(
        poll_until(Duration::from_secs(5), || size() > frozen),
        "the service was not thawed"
    );
    up.signal(rustix::process::Signal::INT);
    let (code, lines) = up.finish();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(alive("up_suspend").is_empty());
}

/// A restart's backoff runs only while `up` runs: time stopped by Ctrl-Z does not count, so a
/// shell's `fg` does not set off the restarts that were due meanwhile.
#[test]
fn a_restart_backoff_does_not_count_the_time_up_was_stopped() {
    let dir = Dir::new("backoff_stopped");
    let starts = dir.0.join("starts");
    let config = dir.config(
        "up_backoff_stopped",
        &format!(
            r#"[services.crash]
command = "echo x >> {}; exit 3"
restart = "on-failure"
backoff = {{ initial = "2s", factor = 1.0, max = "2s", jitter = 0.0 }}
start_limit = {{ burst = 10, interval = "60s" }}
@MARK@
"#,
            starts.display()
        ),
    );
    let count = || std::fs::read_to_string(&starts).map_or(0, |s| s.lines().count());
    let mut up = Running::start(&mut up(&[], &config), "up_backoff_stopped");
    up.wait_for("crash | [sheepdog] restarting in");
    let pid = up.child.id();
    up.signal(rustix::process::Signal::TSTP);
    assert!(
        poll_until(Duration::from_secs(5), || state_of(pid) == Some('T')),
        "up did not stop"
    );
    // Stopped for longer than the whole backoff.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count(), 1);
    up.signal(rustix::process::Signal::CONT);
    // Most of the backoff is still to run: no restart yet. (A restart that is late under load
    // cannot fail this check; only one set off by the continue can.)
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), 1, "restarted as soon as up was continued");
    assert!(
        poll_until(Duration::from_secs(10), || count() >= 2),
        "no restart after the backoff"
    );
    up.signal(rustix::process::Signal::INT);
    let (code, lines) = up.finish();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(alive("up_backoff_stopped").is_empty());
}
