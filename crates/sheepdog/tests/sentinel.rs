//! The owner-death sentinel as a process: what it looks like from outside, that no call into
//! it can hang its owner, that a dead one is replaced, that only the end of its socket is taken
//! for the owner's death, and that it leaves no cgroup behind.
//!
//! Each owner is this test binary run again as `sentinel_helper` with `SHEEPDOG_SENTINEL_HELPER`
//! naming a scenario: the sentinel is one per process, so stopping or killing it must not touch
//! the other tests of this binary. The helper prints `@@ key value` lines, then either exits
//! (its assertions decide its status) or waits on stdin to be killed.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

const HELPER: &str = "SHEEPDOG_SENTINEL_HELPER";
/// How long a herd may take to make and use while the sentinel is stopped (its answers are
/// awaited for at most a second).
const STOPPED_BOUND: Duration = Duration::from_secs(4);

// ---- the owner's side ----

/// Runs the scenario `SHEEPDOG_SENTINEL_HELPER` names; does nothing in a normal test run.
#[test]
fn sentinel_helper() {
    let Some(scenario) = std::env::var(HELPER).ok() else {
        return;
    };
    // A hang is a failure too: a scenario that does not end in time aborts its owner.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("the owner's scenario did not end within 60 s");
        std::process::abort();
    });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        match scenario.as_str() {
            "stop" => stopped_sentinel().await,
            "kill" => killed_sentinel().await,
            "census" => census_owner().await,
            "receive-errors" => receive_errors().await,
            "exit-after-drop" => exit_after_drop().await,
            "one-herd" => one_herd().await,
            "measure" => measure_start(),
            "image-not-executable" => image_not_executable(),
            "image-deleted" => image_deleted(),
            other => panic!("no scenario {other}"),
        }
    });
}

fn say(key: &str, value: impl std::fmt::Display) {
    println!("@@ {key} {value}");
}

fn wait_for_stdin() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn group_herd() -> sheepdog::Herd {
    sheepdog::Herd::builder()
        .mechanism(sheepdog::Mechanism::ProcessGroup)
        .build()
        .expect("a process-group herd")
}

/// A cgroup herd, or `None` (printed as a skip) where this host has none.
fn cgroup_herd() -> Option<sheepdog::Herd> {
    match sheepdog::Herd::builder()
        .mechanism(sheepdog::Mechanism::CgroupV2)
        .build()
    {
        Ok(herd) => Some(herd),
        Err(err) => {
            say("skip", err);
            None
        }
    }
}

/// The marker the outer test gave this owner, which its herds' processes carry too.
fn marker() -> String {
    std::env::var(common::MARK).expect("the owner is marked")
}

/// A small tree; with `escape`, one of its processes starts a session of its own, which only a
/// cgroup holds.
fn sleeper(escape: bool) -> sheepdog::Command {
    let mut cmd = common::cmd(&marker(), "sh");
    let script = if escape {
        "sleep 1000 & setsid sleep 1000 & wait"
    } else {
        "sleep 1000 & (sleep 1000 &) ; wait"
    };
    cmd.args(["-c", script]).stdout(sheepdog::Stdio::null());
    cmd
}

/// Sends `signal` to the sentinel, this process's child.
fn signal_sentinel(pid: i32, signal: Signal) {
    rustix::process::kill_process(Pid::from_raw(pid).expect("a pid"), signal)
        .expect("signal the sentinel");
}

/// Continues the sentinel when dropped, so that a failed assertion leaves none stopped.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(Pid::from_raw(self.0).expect("pid"), Signal::CONT);
    }
}

async fn stopped_sentinel() {
    let sentinel = sheepdog::__private::sentinel_pid().expect("a sentinel");
    // Many guarded herds held, so that dropping them while the sentinel is stopped sends more
    // than its socket holds.
    let held: Vec<_> = (0..1000).map(|_| group_herd()).collect();
    assert!(held
        .iter()
        .all(|h| h.containment().unguarded_reason().is_none()));
    // Every answer on its way (the anchor ordered ahead) is read before the stop, so that the
    // requests after it find the socket full and wait in the owner's backlog.
    sheepdog::__private::sentinel_inject_receive_error(libc::EINTR).expect("a round trip");
    let _continue = Continue(sentinel);
    signal_sentinel(sentinel, Signal::STOP);
    assert!(
        common::poll_until(Duration::from_secs(5), || common::pid_state(
            sentinel as u32
        ) == Some('T')),
        "the sentinel stopped"
    );

    let started = Instant::now();
    drop(held);
    let dropped = started.elapsed();
    say("drop-1000", format!("{dropped:?}"));
    assert!(
        dropped < STOPPED_BOUND,
        "dropping 1000 herds took {dropped:?}"
    );

    // The anchor ordered ahead may be at hand; the herd after it must not wait long.
    let mut reason = None;
    for _ in 0..3 {
        let started = Instant::now();
        let herd = group_herd();
        let mut child = herd.spawn(&common::cmd("stop", "true")).expect("spawn");
        assert!(child.wait().await.expect("wait").success());
        let took = started.elapsed();
        say(
            "herd",
            format!("{took:?} {:?}", herd.containment().unguarded_reason()),
        );
        assert!(
            took < STOPPED_BOUND,
            "a herd took {took:?} with the sentinel stopped"
        );
        if let Some(why) = herd.containment().unguarded_reason() {
            reason = Some(why.to_owned());
            break;
        }
    }
    let reason = reason.expect("a herd made while the sentinel is stopped says it is unguarded");
    assert!(reason.contains("did not answer"), "{reason}");
    assert!(
        group_herd().containment().unguarded_reason().is_some(),
        "the next herd does not wait again"
    );

    // A cgroup herd in a parent that needs a new home: its registration is not answered.
    match common::cgroup::TestCgroup::new("sentinel-stop") {
        Ok(parent) => {
            let started = Instant::now();
            let herd = sheepdog::Herd::builder()
                .parent_cgroup(&parent.path)
                .mechanism(sheepdog::Mechanism::CgroupV2)
                .build()
                .expect("a cgroup herd");
            let took = started.elapsed();
            say("cgroup-herd", format!("{took:?}"));
            assert!(took < STOPPED_BOUND, "{took:?}");
            assert!(
                herd.containment().unguarded_reason().is_some(),
                "a cgroup herd registered with a stopped sentinel says it is unguarded"
            );
            drop(herd);
            common::settle();
        }
        Err(why) => say("no-cgroup", why),
    }

    signal_sentinel(sentinel, Signal::CONT);
    let guarded_again = common::poll_until(Duration::from_secs(5), || {
        group_herd().containment().unguarded_reason().is_none()
    });
    assert!(
        guarded_again,
        "herds are guarded again once the sentinel runs"
    );
    assert_eq!(sheepdog::__private::sentinel_pid(), Some(sentinel));
    say("ok", "");
}

async fn killed_sentinel() {
    let first = sheepdog::__private::sentinel_pid().expect("a sentinel");
    let before = cgroup_herd();
    let old_group = group_herd();
    let pidfd = pidfd(first as u32).expect("a pidfd for the sentinel");
    signal_sentinel(first, Signal::KILL);
    assert!(
        exited_within(&pidfd, Duration::from_secs(5)),
        "the sentinel died"
    );

    // The owner learns of the death from its socket; on a loaded host that can come a moment
    // after the pidfd says so: look again, bounded.
    let start = std::time::Instant::now();
    while sheepdog::__private::sentinel_pid() == Some(first)
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = cgroup_herd();
    let new_group = group_herd();
    let second = sheepdog::__private::sentinel_pid().expect("a new sentinel");
    assert_ne!(first, second, "a new sentinel");
    for herd in after.iter().chain([&new_group]) {
        assert_eq!(
            herd.containment().unguarded_reason(),
            None,
            "a new herd is guarded"
        );
    }
    // Every herd gets a tree; the outer test kills this process and expects the trees of the
    // cgroup herds (the home was registered again) and of the new group herd to die.
    let mut children = Vec::new();
    for herd in before.iter().chain(after.iter()).chain([&new_group]) {
        let cgroup = herd.containment().cgroup().is_some();
        children.push(herd.spawn(&sleeper(cgroup)).expect("spawn"));
        if let Some(cgroup) = herd.containment().cgroup() {
            say("cgroup", cgroup.display());
        }
    }
    // The old group herd's anchor died with the first sentinel: its tree is not expected to
    // die with this process, so it gets none.
    drop(old_group);
    say("ready", "");
    wait_for_stdin();
}

async fn census_owner() {
    let herds = [cgroup_herd(), Some(group_herd())];
    for herd in herds.iter().flatten() {
        let mut child = herd.spawn(&common::cmd("census", "true")).expect("spawn");
        assert!(child.wait().await.expect("wait").success());
        if let Some(cgroup) = herd.containment().cgroup() {
            say("home", cgroup.parent().expect("a home").display());
        }
    }
    drop(herds);
    common::settle();
    say("ready", "");
    wait_for_stdin();
}

async fn receive_errors() {
    let sentinel = sheepdog::__private::sentinel_pid().expect("a sentinel");
    let herd = group_herd();
    assert_eq!(herd.containment().unguarded_reason(), None);
    let mut child = herd
        .spawn(
            common::cmd(&marker(), "sleep")
                .arg("1000")
                .stdout(sheepdog::Stdio::null()),
        )
        .expect("spawn");
    for errno in [
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EINTR,
        libc::EAGAIN,
        libc::EFAULT,
    ] {
        let answered = sheepdog::__private::sentinel_inject_receive_error(errno);
        assert!(
            answered.is_ok(),
            "the sentinel took errno {errno} for its owner's death: {answered:?}"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the herd lives on"
        );
    }
    assert_eq!(
        sheepdog::__private::sentinel_pid(),
        Some(sentinel),
        "the same sentinel"
    );
    say("ready", "");
    wait_for_stdin();
}

async fn exit_after_drop() {
    let Some(herd) = cgroup_herd() else {
        return;
    };
    let cgroup = herd.containment().cgroup().expect("a cgroup").to_owned();
    say("home", cgroup.parent().expect("a home").display());
    say(
        "sentinel",
        sheepdog::__private::sentinel_pid().expect("a sentinel"),
    );
    // A cgroup the herd made inside itself (as a program with a delegated cgroup may).
    let nested = std::fs::create_dir(cgroup.join("nested")).is_ok();
    say("nested", nested);
    let _child = herd.spawn(&sleeper(true)).expect("spawn");
    drop(herd);
    std::process::exit(0);
}

async fn one_herd() {
    if let Some(herd) = cgroup_herd() {
        say(
            "home",
            herd.containment()
                .cgroup()
                .expect("a cgroup")
                .parent()
                .expect("home")
                .display(),
        );
        drop(herd);
        common::settle();
    }
    say("ok", "");
}

/// The owner's image turns unexecutable (mode 000: even root may not exec it) before its
/// first herd: the herd works, unguarded, and says why.
fn image_not_executable() {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().expect("this binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let herd = group_herd();
    let why = herd
        .containment()
        .unguarded_reason()
        .expect("the herd says it is unguarded");
    say("reason", why);
    assert!(why.contains("Permission denied"), "{why}");
    assert!(herd
        .containment()
        .cannot_catch()
        .iter()
        .any(|gap| gap.contains("SIGKILL")));
    assert!(
        sheepdog::__private::sentinel_pid().is_none(),
        "no sentinel, and none tried again"
    );
}

/// The owner's image is deleted (as an upgrade replaces it) before its first herd: the
/// sentinel runs from the open image all the same.
fn image_deleted() {
    std::fs::remove_file(std::env::current_exe().expect("this binary")).expect("delete it");
    let herd = group_herd();
    assert_eq!(herd.containment().unguarded_reason(), None);
    say("ok", "");
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn measure_start() {
    // 4 GiB, every page touched, so that a fork would have page tables to copy.
    let mut memory = vec![0u8; 4 << 30];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    let status = |cmd: &mut Command| assert!(cmd.status().expect("run true").success());
    let plain = median(5, || status(&mut Command::new("true")));
    let forked = median(5, || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("true");
        // SAFETY: the closure does nothing; it only makes std fork instead of posix_spawn.
        unsafe { cmd.pre_exec(|| Ok(())) };
        status(&mut cmd);
    });
    let started = Instant::now();
    let sentinel = sheepdog::__private::sentinel_pid();
    let first = started.elapsed();
    assert!(sentinel.is_some(), "a sentinel");
    say("plain-spawn", format!("{plain:?}"));
    say("fork-spawn", format!("{forked:?}"));
    say("sentinel-start", format!("{first:?}"));
    std::hint::black_box(&memory);
}

// ---- the tests ----

/// The first start of the sentinel from a 4 GiB parent, against a plain spawn and wait of
/// `true` (std's posix_spawn) and a fork and exec of it (what a forked sentinel costs). Run by
/// hand: `cargo test --release --test sentinel -- --ignored --nocapture sentinel_start_cost`.
#[test]
#[ignore = "a measurement that touches 4 GiB; run by hand"]
fn sentinel_start_cost_from_a_4_gib_parent() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let said = Owner::start("measure").finish();
    eprintln!("{said:?}");
}

/// An owner run as a helper, killed and reaped when dropped (also when an assertion fails).
struct Owner {
    child: std::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Owner {
    fn start(scenario: &str) -> Owner {
        Owner::start_from(
            &std::env::current_exe().expect("this test binary"),
            scenario,
        )
    }

    /// The owner run from a copy of this test binary at `exe`.
    fn start_from(exe: &Path, scenario: &str) -> Owner {
        // A binary just copied may be open for writing in a child another test is forking
        // ("text file busy") until that child execs: try again a few times.
        let mut attempts = 0;
        let mut child = loop {
            match Owner::command(exe, scenario).spawn() {
                Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                spawned => break spawned.expect("start the owner"),
            }
        };
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Owner { child, lines }
    }

    fn command(exe: &Path, scenario: &str) -> Command {
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "sentinel_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, scenario)
        .env(
            common::MARK,
            format!("sentinel-{scenario}-{}", std::process::id()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        cmd
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The owner's `@@` lines up to `until` (or its end), as `(key, value)`.
    fn read_until(&mut self, until: &str) -> Vec<(String, String)> {
        let mut said = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.expect("read the owner's output");
            // libtest prints "test sentinel_helper ... " without a newline before it.
            let Some((_, said_line)) = line.split_once("@@ ") else {
                continue;
            };
            let (key, value) = said_line.split_once(' ').unwrap_or((said_line, ""));
            said.push((key.to_owned(), value.to_owned()));
            if key == until || key == "skip" {
                break;
            }
        }
        said
    }

    /// Runs the owner to its end; its status must be success.
    fn finish(mut self) -> Vec<(String, String)> {
        let said = self.read_until("\u{0}");
        let status = self.child.wait().expect("wait for the owner");
        assert!(
            status.success(),
            "the owner failed ({status}); it said {said:?}"
        );
        said
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the owner");
        let _ = self.child.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value<'a>(said: &'a [(String, String)], key: &str) -> Option<&'a str> {
    said.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn skipped(said: &[(String, String)], test: &str) -> bool {
    match value(said, "skip") {
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            true
        }
        None => false,
    }
}

fn pidfd(pid: u32) -> Option<OwnedFd> {
    rustix::process::pidfd_open(
        Pid::from_raw(pid as i32)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()
}

/// Waits (bounded, by event) until the process behind `pidfd` has exited.
fn exited_within(pidfd: &OwnedFd, limit: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec::try_from(limit).expect("a timespec");
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&timeout)), Ok(1))
}

/// The children of `pid` (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The sentinel among the owner's children: the one whose `comm` is sheepdog's.
fn find_sentinel(owner: u32) -> Option<u32> {
    children(owner)
        .into_iter()
        .find(|&pid| comm(pid) == "sheepdog-sentin")
}

#[test]
fn stopped_sentinel_neither_hangs_herds_nor_guards_them() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let said = Owner::start("stop").finish();
    eprintln!("stopped sentinel: {said:?}");
}

#[test]
fn killed_sentinel_is_replaced_and_guards_new_and_old_cgroup_herds() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let mut owner = Owner::start("kill");
    let said = owner.read_until("ready");
    assert_eq!(
        value(&said, "ready"),
        Some(""),
        "the owner got ready: {said:?}"
    );
    let marker = format!("sentinel-kill-{}", std::process::id());
    let tree = |owner: u32| -> Vec<u32> {
        common::alive(&marker)
            .into_iter()
            .filter(|&pid| pid != owner && is_descendant_of(pid, owner))
            .collect()
    };
    let owner_pid = owner.pid();
    let trees = tree(owner_pid);
    assert!(trees.len() >= 3, "the trees run: {trees:?}");
    let sentinel = find_sentinel(owner_pid).expect("the new sentinel");
    let sentinel_fd = pidfd(sentinel).expect("a pidfd for the sentinel");
    let cgroups: Vec<PathBuf> = said
        .iter()
        .filter(|(k, _)| k == "cgroup")
        .map(|(_, v)| PathBuf::from(v))
        .collect();
    owner.kill();
    assert!(
        exited_within(&sentinel_fd, Duration::from_secs(10)),
        "the sentinel exited"
    );
    let gone = common::poll_until(Duration::from_secs(10), || {
        trees
            .iter()
            .all(|&pid| common::pid_state(pid).is_none_or(|s| s == 'Z'))
            && cgroups.iter().all(|c| !c.exists())
    });
    assert!(
        gone,
        "trees {trees:?} or cgroups {cgroups:?} left after the owner was killed"
    );
}

/// Whether `pid` descends from `ancestor` (read from `/proc`, while both are alive).
fn is_descendant_of(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
        else {
            return false;
        };
        if parent == ancestor {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

#[test]
fn helper_census_one_sentinel_named_for_what_it_is_and_gone_with_its_owner() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let mut owner = Owner::start("census");
    let said = owner.read_until("ready");
    assert_eq!(
        value(&said, "ready"),
        Some(""),
        "the owner got ready: {said:?}"
    );
    let owner_pid = owner.pid();
    let owner_args = cmdline(owner_pid);
    let helpers: Vec<u32> = children(owner_pid);
    assert_eq!(helpers.len(), 1, "one helper child: {helpers:?}");
    let sentinel = helpers[0];
    assert_eq!(
        comm(sentinel),
        "sheepdog-sentin",
        "comm (the kernel keeps 15 bytes)"
    );
    let args = cmdline(sentinel);
    assert_eq!(args, ["sheepdog-sentinel"], "the sentinel's command line");
    for arg in &owner_args[1..] {
        assert!(!args.contains(arg), "{arg} of the owner shows in {args:?}");
    }
    assert_ne!(
        common::pgid_of(sentinel),
        common::pgid_of(owner_pid),
        "the sentinel is out of the owner's group"
    );
    let status = std::fs::read_to_string(format!("/proc/{sentinel}/status")).expect("status");
    let ignored = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .expect("SigIgn");
    for signal in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTSTP,
        libc::SIGTTIN,
    ] {
        assert!(
            ignored & (1 << (signal - 1)) != 0,
            "signal {signal} is ignored: {ignored:x}"
        );
    }
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{sentinel}/fd"))
        .expect("the sentinel's fds")
        .flatten()
        .map(|fd| {
            std::fs::read_link(fd.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let sockets = fds.iter().filter(|t| t.starts_with("socket:")).count();
    assert_eq!(
        sockets, 1,
        "its socket and nothing else of the owner's: {fds:?}"
    );
    // Besides the socket, only what it was handed for the homes: cgroup files.
    let mount = common::cgroup::cgroup2_mount().unwrap_or_default();
    let mount = mount.display().to_string();
    assert!(
        fds.iter()
            .all(|t| t.starts_with("socket:") || (!mount.is_empty() && t.starts_with(&mount))),
        "no inherited descriptor: {fds:?}"
    );
    let home = value(&said, "home").map(PathBuf::from);

    let sentinel_fd = pidfd(sentinel).expect("a pidfd for the sentinel");
    let killed = Instant::now();
    owner.kill();
    assert!(
        exited_within(&sentinel_fd, Duration::from_secs(5)),
        "the sentinel is gone after its owner"
    );
    let took = killed.elapsed();
    eprintln!("the sentinel was gone {took:?} after its owner's SIGKILL");
    assert!(took < Duration::from_secs(2), "{took:?}");
    if let Some(home) = home {
        assert!(
            common::poll_until(Duration::from_secs(2), || !home.exists()),
            "{} left",
            home.display()
        );
    }
}

#[test]
fn receive_errors_are_not_taken_for_the_owners_death() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let mut owner = Owner::start("receive-errors");
    let said = owner.read_until("ready");
    assert_eq!(
        value(&said, "ready"),
        Some(""),
        "the owner got through: {said:?}"
    );
    // And the sentinel still does its job.
    let marker = format!("sentinel-receive-errors-{}", std::process::id());
    let owner_pid = owner.pid();
    let tree: Vec<u32> = common::alive(&marker)
        .into_iter()
        .filter(|&pid| pid != owner_pid && comm(pid) == "sleep")
        .collect();
    assert_eq!(tree.len(), 1, "the herd's sleep: {tree:?}");
    owner.kill();
    assert!(
        common::poll_until(Duration::from_secs(10), || common::pid_state(tree[0])
            .is_none_or(|s| s == 'Z')),
        "the herd died with its owner"
    );
}

#[test]
fn owner_exiting_right_after_a_drop_leaves_no_cgroup() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let owner = Owner::start("exit-after-drop");
    let said = owner.finish();
    if skipped(&said, "owner_exiting_right_after_a_drop_leaves_no_cgroup") {
        return;
    }
    let home = PathBuf::from(value(&said, "home").expect("the home"));
    let sentinel: u32 = value(&said, "sentinel")
        .expect("a sentinel")
        .parse()
        .expect("a pid");
    if let Some(fd) = pidfd(sentinel) {
        assert!(
            exited_within(&fd, Duration::from_secs(10)),
            "the sentinel exited"
        );
    }
    let left: Vec<PathBuf> = std::fs::read_dir(&home)
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !home.exists(),
        "{} left, with {left:?} (said {said:?})",
        home.display()
    );
}

/// A fake home, removed when dropped.
struct FakeHome(PathBuf);

/// The inode of this process's pid namespace, as homes are named with it.
fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(std::fs::metadata("/proc/self/ns/pid").ok()?.ino())
}

impl FakeHome {
    fn new(parent: &Path, pid: u32) -> Option<FakeHome> {
        FakeHome::in_namespace(parent, pid, pid_namespace()?)
    }

    fn in_namespace(parent: &Path, pid: u32, namespace: u64) -> Option<FakeHome> {
        let path = parent.join(format!("sheepdog-{pid}.{namespace}"));
        std::fs::create_dir(&path).ok()?;
        std::fs::create_dir(path.join("herd-0")).ok()?;
        Some(FakeHome(path))
    }
}

impl Drop for FakeHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.0.join("herd-0"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn stale_homes_of_dead_owners_are_removed_and_live_ones_kept() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let Some(parent) = common::cgroup::own_cgroup() else {
        eprintln!("skipping: no cgroup v2 mount");
        return;
    };
    // A pid that is gone: a child of ours, reaped.
    let mut gone = Command::new("true").spawn().expect("start true");
    let dead_pid = gone.id();
    gone.wait().expect("reap true");
    let Some(stale) = FakeHome::new(&parent, dead_pid) else {
        eprintln!("skipping: cannot make a cgroup in {}", parent.display());
        return;
    };
    // This test process is alive and started before its fake home was made.
    let live = FakeHome::new(&parent, std::process::id()).expect("a live fake home");
    // A home of another pid namespace: its pid means nothing here, so it is never judged.
    let foreign = FakeHome::in_namespace(&parent, dead_pid, pid_namespace().expect("ns") + 1)
        .expect("a foreign fake home");
    let said = Owner::start("one-herd").finish();
    if skipped(
        &said,
        "stale_homes_of_dead_owners_are_removed_and_live_ones_kept",
    ) {
        return;
    }
    assert!(
        !stale.0.exists(),
        "the stale home {} was removed",
        stale.0.display()
    );
    assert!(
        live.0.join("herd-0").exists(),
        "the live home {} is kept",
        live.0.display()
    );
    assert!(
        foreign.0.join("herd-0").exists(),
        "the home {} of another pid namespace is kept",
        foreign.0.display()
    );
}

/// A copy of this test binary (not a link: the owner changes the file), in a directory
/// removed when dropped.
fn copied_exe(test: &str) -> (common::TempDir, PathBuf) {
    let dir = common::TempDir::new(test);
    let path = dir.path().join("owner");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &path)
        .expect("copy the test binary");
    (dir, path)
}

#[test]
fn unexecutable_image_leaves_herds_unguarded_and_says_why() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let exe = copied_exe("sentinel-noexec");
    let said = Owner::start_from(&exe.1, "image-not-executable").finish();
    eprintln!("{said:?}");
}

#[test]
fn deleted_image_still_runs_the_sentinel() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let exe = copied_exe("sentinel-deleted");
    let said = Owner::start_from(&exe.1, "image-deleted").finish();
    assert_eq!(value(&said, "ok"), Some(""), "{said:?}");
}
