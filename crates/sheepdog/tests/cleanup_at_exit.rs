//! A program that exits right after dropping a herd leaves no cgroup directory behind, and
//! neither does one that ran out of descriptors while making its first herd.
//!
//! The program's side runs in this test binary started again as `exit_helper`, so that it can
//! exit (or lower its descriptor limit) without ending the tests around it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const HELPER: &str = "SHEEPDOG_EXIT_HELPER";

/// How many herds the helper drops at once before it exits: more than the reaper thread could
/// remove in the moment between the drop and the exit.
const HERDS: usize = 50;

/// The program's side; does nothing unless run as the helper. Prints `cgroup=<path>` for each
/// cgroup herd it made and exits at once, without waiting for sheepdog's background work.
#[test]
fn exit_helper() {
    let Some(mode) = std::env::var_os(HELPER) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        match mode.to_str() {
            // No sentinel, so no home it would remove at exit: the herd sits straight below
            // this process's cgroup, and only its drop removes it.
            Some("drop") => {
                sheepdog::__private::force_homeless();
                let mut herds = Vec::new();
                for _ in 0..HERDS {
                    let herd = sheepdog::Herd::new().expect("a herd");
                    let status = herd
                        .spawn(&sheepdog::Command::new("true"))
                        .expect("spawn")
                        .wait()
                        .await
                        .expect("wait");
                    assert!(status.success());
                    herds.push(herd);
                }
                let cgroups: Vec<_> = herds
                    .iter()
                    .filter_map(|herd| herd.containment().cgroup().map(PathBuf::from))
                    .collect();
                drop(herds);
                report(&cgroups);
            }
            // Seventeen descriptors: stdio, the runtime's, and not enough for a herd's home
            // and its cgroup files.
            Some("emfile") => {
                let limit = rustix::process::Rlimit {
                    current: Some(17),
                    maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
                };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                    .expect("lower RLIMIT_NOFILE");
                let herd = sheepdog::Herd::new();
                let cgroup = herd
                    .as_ref()
                    .ok()
                    .and_then(|herd| herd.containment().cgroup().map(PathBuf::from));
                println!(
                    "herd={:?}",
                    herd.as_ref().map(|h| h.containment().to_string())
                );
                drop(herd);
                report(&Vec::from_iter(cgroup));
            }
            other => panic!("unknown helper mode {other:?}"),
        }
    });
}

fn report(cgroups: &[PathBuf]) {
    use std::io::Write;
    for path in cgroups {
        println!("cgroup={}", path.display());
    }
    let _ = std::io::stdout().flush();
    // At once: no runtime shutdown, no reaper thread finishing anything.
    std::process::exit(0);
}

/// Runs the helper in `mode`; returns its pid and its stdout.
fn run_helper(test: &str, mode: &str) -> (u32, String) {
    let exe = common::SharedExe::new(test);
    let marker = format!("{test}-{}", std::process::id());
    let child = Command::new(&exe.path)
        .args(["--exact", "exit_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, mode)
        .env(common::MARK, &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the helper");
    let pid = child.id();
    let out = child.wait_with_output().expect("run the helper");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{test}: helper failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::poll_until(Duration::from_secs(10), || common::alive(&marker)
            .is_empty()),
        "{test}: left {:?}",
        common::alive(&marker)
    );
    (pid, stdout)
}

#[test]
fn a_herd_dropped_right_before_exit_leaves_no_cgroup() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let (_, stdout) = run_helper("exit_drop", "drop");
    let paths: Vec<PathBuf> = stdout
        .lines()
        .filter_map(|l| l.split_once("cgroup=").map(|r| PathBuf::from(r.1)))
        .collect();
    if paths.is_empty() {
        eprintln!("skipping: no cgroup herd on this host");
        return;
    }
    // A leftover would be permanent (nobody else removes it); remove it so the host stays clean
    // even when the assertion fails.
    let left: Vec<&PathBuf> = paths.iter().filter(|path| path.exists()).collect();
    for path in &left {
        let _ = std::fs::remove_dir(path);
    }
    assert!(
        left.is_empty(),
        "{} of {} left behind: {left:?}",
        left.len(),
        paths.len()
    );
}

#[test]
fn running_out_of_descriptors_leaves_no_home() {
    if std::env::var_os(HELPER).is_some() {
        return;
    }
    let Some(own) = common::cgroup::own_cgroup() else {
        eprintln!("skipping: no cgroup v2 mount");
        return;
    };
    let (pid, stdout) = run_helper("exit_emfile", "emfile");
    let home = own.join(format!("sheepdog-{pid}"));
    // A home handed to the sentinel is removed by it once the helper is gone: wait for that.
    let gone = common::poll_until(Duration::from_secs(10), || !home.exists());
    let _ = std::fs::remove_dir(&home);
    assert!(
        gone,
        "{} is left behind; helper said:\n{stdout}",
        home.display()
    );
}
