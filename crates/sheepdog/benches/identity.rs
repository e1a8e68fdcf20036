//! `ProcessRef::of` and `tree()` on a host with many processes, against what `ps` and a full
//! `/proc` scan (what procfs-style crates do to find children) cost for the same answers.
//!
//!     cargo bench -p sheepdog --bench identity
//!
//! Starts `SHEEPDOG_BENCH_HOST` (default 3000) idle `sleep` processes in a herd of its own,
//! and kills them at the end. Each figure is the median of its rounds, after warm-up, in this
//! one process; the variants interleave round by round.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{BoxResult, Context, Stats};
use sheepdog::{Command, Herd, ProcessRef};

const ROUNDS: usize = 200;

fn main() -> BoxResult<()> {
    common::run_timed(bench())
}

async fn bench() -> BoxResult<()> {
    let host: usize = match std::env::var("SHEEPDOG_BENCH_HOST") {
        Ok(n) => n.parse().context("SHEEPDOG_BENCH_HOST")?,
        Err(_) => 3000,
    };
    let rounds = common::rounds_override()?.unwrap_or(ROUNDS);
    let crowd = Herd::new().context("a herd for the crowd")?;
    let mut sleep = Command::new("sleep");
    sleep.arg("600").env("SHEEPDOG_BENCH", "identity-crowd");
    for _ in 0..host {
        // Dropped at once: the herd keeps them, and kills them at the end.
        drop(crowd.spawn(&sleep).context("start the crowd")?);
    }
    // The tree measured: a shell, two subshells, a sleep below each.
    let mut tree_cmd = Command::new("sh");
    tree_cmd
        .args(["-c", "(sleep 600; true) & (sleep 600; true) & wait"])
        .env("SHEEPDOG_BENCH", "identity-tree");
    let small = Herd::new().context("a herd for the tree")?;
    let root = small.spawn(&tree_cmd).context("start the tree")?;
    let root_ref = root.process_ref();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sheepdog::tree(&root_ref).context("tree")?.len() < 5 {
        if Instant::now() > deadline {
            return Err("the measured tree did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = std::fs::read_dir("/proc")?
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .count();
    println!("host: {total} processes; {rounds} rounds each, medians (p90)");

    let pid = root.pid();
    let pid_text = pid.to_string();
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for round in 0..rounds + 10 {
        let timed = [
            time(|| black_box(ProcessRef::of(pid).map(drop))),
            time(|| black_box(sheepdog::tree(&root_ref).map(drop))),
            time(|| black_box(scan_children(pid))),
            time(|| {
                black_box(
                    std::process::Command::new("ps")
                        .args(["-o", "pid=", "--ppid", &pid_text])
                        .output()
                        .map(drop),
                )
            }),
            time(|| {
                black_box(
                    std::process::Command::new("ps")
                        .args(["-o", "lstart=", "-p", &pid_text])
                        .output()
                        .map(drop),
                )
            }),
        ];
        if round >= 10 {
            for (series, sample) in samples.iter_mut().zip(timed) {
                series.push(sample);
            }
        }
    }
    let names = [
        "ProcessRef::of (pid, start ticks, boot id)",
        "tree() of 5 processes (children files)",
        "children by a full /proc scan (procfs-style)",
        "ps --ppid (children, a process per call)",
        "ps -o lstart -p (start time, a process per call)",
    ];
    for (name, series) in names.iter().zip(samples.iter_mut()) {
        let stats = Stats::of(series);
        println!(
            "{name:<50} {:>10.1} us ({:.1} us)",
            stats.median.as_secs_f64() * 1e6,
            stats.p90.as_secs_f64() * 1e6
        );
    }
    drop(root);
    crowd.kill().await.context("kill the crowd")?;
    small.kill().await.context("kill the tree")?;
    Ok(())
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    black_box(f());
    start.elapsed()
}

/// The children of `pid` the way a crate without `/proc/PID/task/*/children` finds them: read
/// every process's stat and keep those whose parent is `pid`.
fn scan_children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}
