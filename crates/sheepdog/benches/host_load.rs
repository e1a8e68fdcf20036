//! What dropping and killing a populated cgroup herd costs as the host runs more processes:
//! neither may grow with the process count of the host, only with the herd's own.
//!
//! For each level (100, 1000, 3000 other processes), the bench starts that many idle `sleep`
//! processes of its own (marked `SHEEPDOG_BENCH_IDLE=<this pid>`, ended by pid after the
//! level), then measures, on a current-thread runtime:
//! - drop: `drop(herd)` of a herd holding one `sleep 1000`, the call alone;
//! - kill: `herd.kill().await` of such a herd (until it is empty), 25 ms after the spawn: the
//!   kernel announces a change of `cgroup.events` at most once per 20 ms, so a kill right after
//!   the spawn would wait for the end of that interval and measure it rather than the kill;
//! - stall: 100 such herds dropped from 100 tasks at once, the longest gap of a task that ticks
//!   every millisecond (how long the runtime stood still).
//!
//! `SHEEPDOG_BENCH_ROUNDS=N` sets the rounds of drop and kill (default 200) and the runs of the
//! stall (N/20, at least 3; default 10).
//!
//! Run with `cargo bench -p sheepdog --bench host_load`.

use std::time::{Duration, Instant};

mod common;

use common::*;

use sheepdog::{Herd, Mechanism};

const LEVELS: [usize; 3] = [100, 1000, 3000];
const STALL_HERDS: usize = 100;
const MARK: &str = "SHEEPDOG_BENCH_IDLE";

/// The idle processes of one level, ended (SIGKILL and reaped, by pid) when dropped.
struct Idle(Vec<std::process::Child>);

impl Idle {
    fn start(count: usize) -> BoxResult<Idle> {
        let mut idle = Idle(Vec::with_capacity(count));
        let mark = std::process::id().to_string();
        for i in 0..count {
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .env(MARK, &mark)
                .stdin(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("start idle process #{i}"))?;
            idle.0.push(child);
        }
        Ok(idle)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// A cgroup herd holding one `sleep 1000`.
fn populated_herd(cmd: &sheepdog::Command) -> BoxResult<(Herd, sheepdog::Child)> {
    let herd = Herd::new().context("create a herd")?;
    if herd.containment().mechanism() != Mechanism::CgroupV2 {
        return Err(format!("no cgroup herd here: {}", herd.containment()).into());
    }
    let child = herd.spawn(cmd).context("spawn sleep into the herd")?;
    Ok((herd, child))
}

async fn drop_cost(cmd: &sheepdog::Command, rounds: usize) -> BoxResult<Stats> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (herd, child) = populated_herd(cmd)?;
        let start = Instant::now();
        drop(herd);
        samples.push(start.elapsed());
        drop(child);
    }
    Ok(Stats::of(&mut samples))
}

async fn kill_cost(cmd: &sheepdog::Command, rounds: usize) -> BoxResult<Stats> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (herd, child) = populated_herd(cmd)?;
        tokio::time::sleep(Duration::from_millis(25)).await;
        let start = Instant::now();
        herd.kill().await.context("kill the herd")?;
        samples.push(start.elapsed());
        drop(child);
        drop(herd);
    }
    Ok(Stats::of(&mut samples))
}

/// The longest the runtime stood still while 100 populated herds were dropped from 100 tasks.
async fn stall(cmd: &sheepdog::Command) -> BoxResult<Duration> {
    let mut herds = Vec::with_capacity(STALL_HERDS);
    for _ in 0..STALL_HERDS {
        herds.push(populated_herd(cmd)?);
    }
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = tokio::spawn({
        let ticking = ticking.clone();
        async move {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let drops: Vec<_> = herds
        .into_iter()
        .map(|herd| tokio::spawn(async move { drop(herd) }))
        .collect();
    for task in drops {
        task.await.context("a drop task")?;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    ticker.await.context("the ticker")
}

/// Waits until sheepdog has finished the dropped herds (so a level starts clean).
async fn settle() -> BoxResult<()> {
    let start = Instant::now();
    while sheepdog::__private::background_work() > 0 {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("sheepdog's background work did not finish within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn host_processes() -> usize {
    std::fs::read_dir("/proc").map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .count()
    })
}

fn main() -> BoxResult<()> {
    run_timed(run())
}

async fn run() -> BoxResult<()> {
    let rounds = rounds_override()?.unwrap_or(200);
    let stall_runs = (rounds / 20).max(3);
    let mut cmd = sheepdog::Command::new("sleep");
    cmd.arg("1000");
    println!("pid {}", std::process::id());
    println!("host containment: {}", sheepdog::host_containment());
    println!(
        "{:>6} {:>7} {:>10} {:>10} {:>10} {:>10} {:>22}",
        "idle", "on host", "drop µs", "drop p90", "kill µs", "kill p90", "stall ms (min/med/max)"
    );
    let mut summary = Vec::new();
    for level in LEVELS {
        let idle = Idle::start(level)?;
        let on_host = host_processes();
        let dropped = drop_cost(&cmd, rounds).await?;
        settle().await?;
        let killed = kill_cost(&cmd, rounds).await?;
        settle().await?;
        let mut stalls = Vec::with_capacity(stall_runs);
        for _ in 0..stall_runs {
            stalls.push(stall(&cmd).await?);
            settle().await?;
        }
        let stats = Stats::of(&mut stalls);
        let max = stalls.last().copied().unwrap_or_default();
        let stalls = stats;
        drop(idle);
        println!(
            "{:>6} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>22}",
            level,
            on_host,
            dropped.median_us(),
            dropped.p90_us(),
            killed.median_us(),
            killed.p90_us(),
            format!(
                "{:.1}/{:.1}/{:.1}",
                stalls.best.as_secs_f64() * 1e3,
                stalls.median.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ),
        );
        summary.push(format!(
            "{level} idle: drop {:.0} µs, kill {:.0} µs, stall {:.1} ms",
            dropped.median_us(),
            killed.median_us(),
            stalls.median.as_secs_f64() * 1e3
        ));
    }
    println!();
    println!("Summary (medians): {}", summary.join("; "));
    Ok(())
}
