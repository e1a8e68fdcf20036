//! What a `Herd` costs: spawning into one, killing a tree in one, holding many children in one.
//! Each is compared with what a program does without sheepdog: a process group and `killpg`.
//!
//! One process run; within a phase the variants are interleaved round-robin (in a rotating
//! order) so that drift in machine state hits all of them equally. Reports medians and p90, and
//! each median's ratio to the floor's.
//!
//! Phases:
//! - 1A/1B/1C: spawn + wait of `/bin/true`. Floor: `posix_spawn` + `waitpid`. `std`:
//!   `std::process::Command::status`. `herd`: into one long-lived cgroup herd; `herd-group`:
//!   into one long-lived process-group herd;
//!   `tokio+killpg`: tokio with `process_group(0)`, what a tokio program does to be able to
//!   `killpg` later. 1A: small parent, back to back; 1B: the parent holds 4 GiB of touched
//!   memory; 1C: isolated spawns, one every 50 ms, where each herd variant creates a FRESH herd,
//!   spawns, waits and drops it, all of it timed.
//! - 2: kill a tree of 201 processes (a shell and 200 `sleep 1000`) until none is left. Floor:
//!   the tree started by tokio in a process group of its own, `kill(-pgid, SIGKILL)`, a poll of
//!   /proc until no live process of the group is left, and the shell reaped. `herd` and
//!   `herd-group`: `herd.kill().await` and the shell's `Child` waited.
//! - 3: hold 1000 `sleep 1000` children in one cgroup herd: this process's RSS growth, the
//!   time to spawn them, and the time to kill them all. Floor: 1000 std children in one process
//!   group, killed by `kill(-pgid, SIGKILL)` and each waited.
//!
//! `SHEEPDOG_BENCH_ROUNDS=N` makes phases 1 and 2 run N rounds (warm-up N/10, at least 1) and
//! phase 3 run min(N, 3) times, for a quick check; by default 1A runs 2000 rounds, 1B 300,
//! 1C 200 (a median of 60 moved by a few percent from run to run), 2 20, and phase 3 runs 3
//! times.
//!
//! `SHEEPDOG_BENCH_PHASES=1C,2` runs only the phases named (1A, 1B, 1C, 2, 3); by default all.
//!
//! Run with `cargo bench -p sheepdog --bench herd`.

use std::error::Error;
use std::ffi::CString;
use std::fs;
use std::hint::black_box;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::time::{Duration, Instant};

mod common;

use common::*;

use sheepdog::{Herd, Mechanism, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The tree of phase 2: the shell and its 200 background `sleep`s.
const TREE_SCRIPT: &str = "for i in $(seq 200); do sleep 1000 & done; echo ready; wait";
const TREE_SLEEPS: usize = 200;
/// How many children phase 3 holds.
const HELD: usize = 1000;
/// The longest any tree may take to come up or to go away before the run is called broken.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Statistics and tables.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Unit {
    Micros,
    Millis,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Micros => "µs",
            Unit::Millis => "ms",
        }
    }
    fn of(self, d: Duration) -> f64 {
        match self {
            Unit::Micros => d.as_secs_f64() * 1e6,
            Unit::Millis => d.as_secs_f64() * 1e3,
        }
    }
}

/// Prints one table: a row per variant, the first row being the floor.
fn print_table(title: &str, unit: Unit, rows: &[(&str, Stats)]) {
    let floor = rows[0].1.median.as_secs_f64();
    let u = unit.name();
    println!();
    println!("{title}");
    println!(
        "  {:<14} {:>11} {:>11} {:>13}",
        "variant",
        format!("median {u}"),
        format!("p90 {u}"),
        "median/floor"
    );
    for (name, s) in rows {
        println!(
            "  {:<14} {:>11.1} {:>11.1} {:>13.3}",
            name,
            unit.of(s.median),
            unit.of(s.p90),
            s.median.as_secs_f64() / floor
        );
    }
}

/// `floor 123.4 µs, herd 1.23x, ...`
fn summary_line(name: &str, unit: Unit, rows: &[(&str, Stats)]) -> String {
    let floor = rows[0].1.median;
    let parts: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (variant, s))| {
            if i == 0 {
                format!("{variant} {:.1} {}", unit.of(s.median), unit.name())
            } else {
                format!(
                    "{variant} {:.2}x",
                    s.median.as_secs_f64() / floor.as_secs_f64()
                )
            }
        })
        .collect();
    format!("  {name}: {}", parts.join(", "))
}

// ---------------------------------------------------------------------------------------------
// /proc: who is alive, in which process group, running what.
// ---------------------------------------------------------------------------------------------

struct ProcStat {
    comm: String,
    state: char,
    pgid: i32,
}

impl ProcStat {
    /// `/proc/PID/stat`, or `None` if the process is gone.
    fn read(pid: u32) -> Option<ProcStat> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, tail) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        // After the name: state, ppid, pgrp, ...
        let mut fields = tail.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let pgid = fields.nth(1)?.parse().ok()?;
        Some(ProcStat { comm, state, pgid })
    }

    /// Not exited: a zombie has finished dying, it only waits to be reaped.
    fn live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Every live process whose process group is `pgid`, from a scan of /proc.
fn live_group_members(pgid: i32) -> BoxResult<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if ProcStat::read(pid).is_some_and(|s| s.live() && s.pgid == pgid) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Whether `pids` is the whole tree, up: 201 live processes, 200 of which already run `sleep`
/// (a background job is a forked shell until it has exec'd).
fn tree_is_up(pids: &[u32]) -> bool {
    let stats: Vec<ProcStat> = pids
        .iter()
        .filter_map(|&pid| ProcStat::read(pid))
        .filter(ProcStat::live)
        .collect();
    stats.len() == TREE_SLEEPS + 1
        && stats.iter().filter(|s| s.comm == "sleep").count() == TREE_SLEEPS
}

/// Reads the tree's stdout until the shell says it started every `sleep`.
async fn await_ready(stdout: impl AsyncRead + Unpin) -> BoxResult<()> {
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.context("read the tree's stdout")? {
            if line.trim() == "ready" {
                return Ok(());
            }
        }
        Err::<(), Box<dyn Error>>("the tree's shell closed stdout before saying ready".into())
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .context("the tree's shell did not say ready")?
}

/// Polls `members` until the whole tree is up.
async fn await_tree(mut members: impl FnMut() -> BoxResult<Vec<u32>>) -> BoxResult<()> {
    let start = Instant::now();
    while !tree_is_up(&members()?) {
        if start.elapsed() > PATIENCE {
            return Err(format!("the tree did not come up within {PATIENCE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Polls /proc until no live process of group `pgid` is left: what a program without a
/// container has to do to know a killed tree is gone.
async fn await_group_gone(pgid: i32) -> BoxResult<()> {
    let start = Instant::now();
    loop {
        let left = live_group_members(pgid)?;
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > PATIENCE {
            return Err(format!(
                "{} process(es) of group {pgid} still alive {PATIENCE:?} after SIGKILL: {left:?}",
                left.len()
            )
            .into());
        }
        tokio::task::yield_now().await;
    }
}

/// Checks that nothing of group `pgid` is alive any more.
fn assert_group_gone(what: &str, pgid: i32) -> BoxResult<()> {
    let left = live_group_members(pgid)?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: processes of group {pgid} survived the round: {left:?}").into())
    }
}

/// `kill(-pgid, signal)`.
fn kill_group(pgid: i32, signal: i32) -> BoxResult<()> {
    // SAFETY: kill(2) takes plain integers. The group is one this program made: its leader is
    // this program's own child and is not reaped before the group is killed, so the id cannot
    // have been reused by anybody else.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("kill(-{pgid}, {signal}): {}", io::Error::last_os_error()).into())
    }
}

/// Kills a process group this program made if a round leaves early (on an error), so no tree
/// outlives the benchmark; disarmed once the round has killed the group itself.
struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    fn kill_now(&mut self) -> BoxResult<()> {
        let pgid = self.pgid.take().ok_or("the group was already killed")?;
        kill_group(pgid, libc::SIGKILL)
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            if let Err(err) = kill_group(pgid, libc::SIGKILL) {
                eprintln!("warning: could not kill process group {pgid}: {err}");
            }
        }
    }
}

fn killed_by_sigkill(variant: &str, signal: Option<i32>) -> BoxResult<()> {
    if signal == Some(libc::SIGKILL) {
        Ok(())
    } else {
        Err(format!("{variant}: a child ended otherwise than by SIGKILL ({signal:?})").into())
    }
}

// ---------------------------------------------------------------------------------------------
// Herds.
// ---------------------------------------------------------------------------------------------

fn cgroup_herd() -> io::Result<Herd> {
    Herd::new()
}

fn group_herd() -> io::Result<Herd> {
    Herd::builder().mechanism(Mechanism::ProcessGroup).build()
}

/// Makes a herd with `make` and checks it got `want` (`Herd::new` may fall back silently).
fn herd_of(make: fn() -> io::Result<Herd>, want: Mechanism) -> BoxResult<Herd> {
    let herd = make().context("cannot create a herd")?;
    let got = herd.containment().mechanism();
    if got == want {
        Ok(herd)
    } else {
        Err(format!("wanted a {want} herd, got {}", herd.containment()).into())
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: spawn + wait of /bin/true into a herd.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum SpawnVariant {
    Floor,
    Std,
    Herd,
    HerdGroup,
    TokioKillpg,
}

impl SpawnVariant {
    const ALL: [SpawnVariant; 5] = [
        SpawnVariant::Floor,
        SpawnVariant::Std,
        SpawnVariant::Herd,
        SpawnVariant::HerdGroup,
        SpawnVariant::TokioKillpg,
    ];

    fn name(self) -> &'static str {
        match self {
            SpawnVariant::Floor => "floor",
            SpawnVariant::Std => "std",
            SpawnVariant::Herd => "herd",
            SpawnVariant::HerdGroup => "herd-group",
            SpawnVariant::TokioKillpg => "tokio+killpg",
        }
    }
}

/// What the spawn variants share, prepared once.
struct SpawnBench {
    program: CString,
    cmd: sheepdog::Command,
    /// The long-lived herds of 1A and 1B.
    herd: Herd,
    group_herd: Herd,
}

impl SpawnBench {
    /// One timed spawn + wait; `fresh`: the herd variants make (and drop) a herd of their own.
    async fn run(&self, variant: SpawnVariant, fresh: bool) -> BoxResult<Duration> {
        match (variant, fresh) {
            (SpawnVariant::Floor, _) => self.floor(),
            (SpawnVariant::Std, _) => std_status(),
            (SpawnVariant::Herd, false) => self.in_herd(&self.herd).await,
            (SpawnVariant::HerdGroup, false) => self.in_herd(&self.group_herd).await,
            (SpawnVariant::Herd, true) => self.in_fresh_herd(cgroup_herd).await,
            (SpawnVariant::HerdGroup, true) => self.in_fresh_herd(group_herd).await,
            (SpawnVariant::TokioKillpg, _) => tokio_group_status().await,
        }
    }

    /// Raw `posix_spawn` + `waitpid`: the floor.
    fn floor(&self) -> BoxResult<Duration> {
        let start = Instant::now();
        floor_wait(floor_spawn(&self.program)?)?;
        Ok(start.elapsed())
    }

    async fn in_herd(&self, herd: &Herd) -> BoxResult<Duration> {
        let start = Instant::now();
        self.spawn_and_wait(herd).await?;
        Ok(start.elapsed())
    }

    /// Create a herd, spawn into it, wait, drop it: all of it timed.
    async fn in_fresh_herd(&self, make: fn() -> io::Result<Herd>) -> BoxResult<Duration> {
        let start = Instant::now();
        let herd = make().context("cannot create a herd")?;
        self.spawn_and_wait(&herd).await?;
        drop(herd);
        Ok(start.elapsed())
    }

    async fn spawn_and_wait(&self, herd: &Herd) -> BoxResult<()> {
        let status = herd
            .spawn(&self.cmd)
            .with_context(|| format!("spawn {PROGRAM} into the herd"))?
            .wait()
            .await
            .with_context(|| format!("wait for {PROGRAM} in the herd"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("herd: {PROGRAM} failed: {status}").into())
        }
    }
}

/// `std::process::Command`: what a program without sheepdog or tokio does.
fn std_status() -> BoxResult<Duration> {
    let start = Instant::now();
    let status = std::process::Command::new(PROGRAM)
        .status()
        .with_context(|| format!("std: run {PROGRAM}"))?;
    let elapsed = start.elapsed();
    if status.success() {
        Ok(elapsed)
    } else {
        Err(format!("std: {PROGRAM} failed: {status}").into())
    }
}

/// tokio in a process group of the child's own: the peer that can `killpg` later.
async fn tokio_group_status() -> BoxResult<Duration> {
    let start = Instant::now();
    let status = tokio::process::Command::new(PROGRAM)
        .process_group(0)
        .status()
        .await
        .with_context(|| format!("tokio: run {PROGRAM}"))?;
    let elapsed = start.elapsed();
    if status.success() {
        Ok(elapsed)
    } else {
        Err(format!("tokio+killpg: {PROGRAM} failed: {status}").into())
    }
}

struct SpawnPhase {
    name: &'static str,
    description: &'static str,
    warmup: usize,
    rounds: usize,
    gap: Option<Duration>,
    fresh: bool,
}

async fn spawn_phase(
    bench: &SpawnBench,
    phase: &SpawnPhase,
) -> BoxResult<Vec<(&'static str, Stats)>> {
    let variants = SpawnVariant::ALL;
    let stats = interleaved(&variants, phase.warmup, phase.rounds, phase.gap, |v| {
        bench.run(v, phase.fresh)
    })
    .await?;
    let rows: Vec<(&str, Stats)> = stats.into_iter().map(|(v, s)| (v.name(), s)).collect();
    print_table(
        &format!(
            "Phase {}: spawn + wait of {PROGRAM}, {} ({} rounds after {} warm-up rounds)",
            phase.name, phase.description, phase.rounds, phase.warmup
        ),
        Unit::Micros,
        &rows,
    );
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Phase 2: kill a 201-process tree until all of it is gone.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum KillVariant {
    Killpg,
    Herd,
    HerdGroup,
}

impl KillVariant {
    const ALL: [KillVariant; 3] = [
        KillVariant::Killpg,
        KillVariant::Herd,
        KillVariant::HerdGroup,
    ];

    fn name(self) -> &'static str {
        match self {
            KillVariant::Killpg => "tokio+killpg",
            KillVariant::Herd => "herd",
            KillVariant::HerdGroup => "herd-group",
        }
    }

    async fn run(self) -> BoxResult<Duration> {
        match self {
            KillVariant::Killpg => kill_tree_killpg().await,
            KillVariant::Herd => kill_tree_in_herd(cgroup_herd, Mechanism::CgroupV2).await,
            KillVariant::HerdGroup => kill_tree_in_herd(group_herd, Mechanism::ProcessGroup).await,
        }
    }
}

/// The floor: a tokio child in a new process group, `kill(-pgid, SIGKILL)`, /proc polled until
/// the group has no live process, and the shell reaped.
async fn kill_tree_killpg() -> BoxResult<Duration> {
    let mut shell = tokio::process::Command::new("sh")
        .args(["-c", TREE_SCRIPT])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("tokio: spawn the tree")?;
    let pgid = shell.id().ok_or("tokio: the tree's shell has no pid")? as i32;
    // Declared after `shell`, so dropped first: the group dies while its leader is unreaped.
    let mut killer = GroupKiller { pgid: Some(pgid) };
    let stdout = shell.stdout.take().ok_or("tokio: no stdout pipe")?;
    await_ready(stdout).await?;
    await_tree(|| live_group_members(pgid)).await?;

    let start = Instant::now();
    killer.kill_now()?;
    await_group_gone(pgid).await?;
    let status = shell.wait().await.context("tokio: wait for the shell")?;
    let elapsed = start.elapsed();

    killed_by_sigkill("tokio+killpg", status.signal())?;
    assert_group_gone("tokio+killpg", pgid)?;
    Ok(elapsed)
}

/// sheepdog: the tree in a fresh herd; `herd.kill().await` and the shell's `Child` waited.
async fn kill_tree_in_herd(make: fn() -> io::Result<Herd>, want: Mechanism) -> BoxResult<Duration> {
    let name = match want {
        Mechanism::CgroupV2 => "herd",
        _ => "herd-group",
    };
    let herd = herd_of(make, want)?;
    let mut cmd = sheepdog::Command::new("sh");
    cmd.args(["-c", TREE_SCRIPT])
        .stdout(sheepdog::Stdio::piped());
    let mut shell = herd
        .spawn(&cmd)
        .with_context(|| format!("{name}: spawn the tree"))?;
    // The herd's process group: the anchor's for a process-group herd, the first child's
    // (this shell's) for a cgroup herd.
    let pgid = ProcStat::read(shell.pid())
        .ok_or("the tree's shell is gone already")?
        .pgid;
    let stdout = shell.take_stdout().ok_or("sheepdog: no stdout pipe")?;
    await_ready(stdout).await?;
    await_tree(|| herd.members().context("list the herd")).await?;

    let start = Instant::now();
    herd.kill()
        .await
        .with_context(|| format!("{name}: kill the herd"))?;
    let status = shell
        .wait()
        .await
        .with_context(|| format!("{name}: wait for the shell"))?;
    let elapsed = start.elapsed();

    killed_by_sigkill(name, status.signal().map(Signal::as_raw))?;
    let left = herd.members().context("list the herd")?;
    if !left.is_empty() {
        return Err(format!("{name}: the herd still holds {left:?} after kill").into());
    }
    assert_group_gone(name, pgid)?;
    drop(herd);
    Ok(elapsed)
}

async fn kill_phase(warmup: usize, rounds: usize) -> BoxResult<Vec<(&'static str, Stats)>> {
    let variants = KillVariant::ALL;
    let stats = interleaved(&variants, warmup, rounds, None, KillVariant::run).await?;
    let rows: Vec<(&str, Stats)> = stats.into_iter().map(|(v, s)| (v.name(), s)).collect();
    print_table(
        &format!(
            "Phase 2: kill a tree of {} processes until all are gone \
             ({rounds} rounds after {warmup} warm-up rounds)",
            TREE_SLEEPS + 1
        ),
        Unit::Millis,
        &rows,
    );
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: hold 1000 children.
// ---------------------------------------------------------------------------------------------

/// One run of either side of phase 3.
struct Held {
    rss_growth_kib: i64,
    spawn: Duration,
    /// Until the children are dead: the herd empty, or (floor) every child reaped.
    kill: Duration,
    /// Until every child is reaped (the herd: its `Child` handles waited too).
    kill_and_reap: Duration,
}

/// 1000 `sleep 1000` in one cgroup herd, each `Child` kept; then `herd.kill().await`.
async fn hold_in_herd() -> BoxResult<Held> {
    let herd = herd_of(cgroup_herd, Mechanism::CgroupV2)?;
    let mut cmd = sheepdog::Command::new("sleep");
    cmd.arg("1000");
    let rss_before = vm_rss_kib()?;
    let start = Instant::now();
    let mut children = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let child = herd
            .spawn(&cmd)
            .with_context(|| format!("herd: spawn sleep #{i}"))?;
        children.push(child);
    }
    let spawn = start.elapsed();
    let rss_after = vm_rss_kib()?;
    let members = herd.members().context("list the herd")?.len();
    if members != HELD {
        return Err(format!("herd: {members} members, expected {HELD}").into());
    }
    let pgid = ProcStat::read(children[0].pid())
        .ok_or("herd: the first sleep is gone already")?
        .pgid;

    let start = Instant::now();
    herd.kill().await.context("herd: kill 1000")?;
    let kill = start.elapsed();
    for child in &mut children {
        let status = child.wait().await.context("herd: wait for a sleep")?;
        killed_by_sigkill("herd", status.signal().map(Signal::as_raw))?;
    }
    let kill_and_reap = start.elapsed();

    if !herd.members().context("list the herd")?.is_empty() {
        return Err("herd: members left after kill".into());
    }
    assert_group_gone("herd (1000)", pgid)?;
    drop(children);
    drop(herd);
    Ok(Held {
        rss_growth_kib: rss_after as i64 - rss_before as i64,
        spawn,
        kill,
        kill_and_reap,
    })
}

/// The floor: 1000 std children in one process group (led by the first), killed with
/// `kill(-pgid, SIGKILL)` and each waited.
fn hold_in_group() -> BoxResult<Held> {
    let rss_before = vm_rss_kib()?;
    let start = Instant::now();
    let mut children = Vec::with_capacity(HELD);
    let first = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .context("std: spawn the first sleep")?;
    let pgid = first.id() as i32;
    children.push(first);
    // From here on, leaving early kills the group (the first child, unreaped, holds the id).
    let mut killer = GroupKiller { pgid: Some(pgid) };
    for i in 1..HELD {
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(pgid)
            .spawn()
            .with_context(|| format!("std: spawn sleep #{i}"))?;
        children.push(child);
    }
    let spawn = start.elapsed();
    let rss_after = vm_rss_kib()?;

    let start = Instant::now();
    killer.kill_now()?;
    for child in &mut children {
        let status = child.wait().context("std: wait for a sleep")?;
        killed_by_sigkill("floor", status.signal())?;
    }
    let kill = start.elapsed();
    assert_group_gone("floor (1000)", pgid)?;
    Ok(Held {
        rss_growth_kib: rss_after as i64 - rss_before as i64,
        spawn,
        kill,
        kill_and_reap: kill,
    })
}

/// Runs phase 3 and prints its table; returns its summary line.
async fn hold_phase(runs: usize) -> BoxResult<String> {
    let mut herd_runs = Vec::with_capacity(runs);
    let mut floor_runs = Vec::with_capacity(runs);
    for run in 0..runs {
        // Alternate which side goes first.
        if run % 2 == 0 {
            herd_runs.push(hold_in_herd().await?);
            floor_runs.push(hold_in_group()?);
        } else {
            floor_runs.push(hold_in_group()?);
            herd_runs.push(hold_in_herd().await?);
        }
    }

    let stats = |runs: &[Held], pick: fn(&Held) -> Duration| {
        Stats::of(&mut runs.iter().map(pick).collect::<Vec<_>>())
    };
    let median_kib = |runs: &[Held]| {
        let mut kib: Vec<i64> = runs.iter().map(|h| h.rss_growth_kib).collect();
        kib.sort_unstable();
        kib[kib.len() / 2]
    };
    let herd_kib = median_kib(&herd_runs);
    let floor_kib = median_kib(&floor_runs);

    println!();
    println!("Phase 3: hold {HELD} `sleep 1000` children ({runs} runs; medians)");
    println!(
        "  RSS growth while holding them: herd {:.1} MiB ({:.1} KiB per child); \
         std floor {:.1} MiB ({:.1} KiB per child)",
        herd_kib as f64 / 1024.0,
        herd_kib as f64 / HELD as f64,
        floor_kib as f64 / 1024.0,
        floor_kib as f64 / HELD as f64,
    );
    let herd_kib_runs: Vec<String> = herd_runs
        .iter()
        .map(|h| h.rss_growth_kib.to_string())
        .collect();
    println!(
        "  herd RSS growth per run, KiB: {}",
        herd_kib_runs.join(", ")
    );
    println!(
        "  {:<40} {:>11} {:>11} {:>13}",
        "step", "herd ms", "floor ms", "herd/floor"
    );
    let spawn = (
        stats(&herd_runs, |h| h.spawn),
        stats(&floor_runs, |h| h.spawn),
    );
    let kill = (
        stats(&herd_runs, |h| h.kill),
        stats(&floor_runs, |h| h.kill),
    );
    let reap = (
        stats(&herd_runs, |h| h.kill_and_reap),
        stats(&floor_runs, |h| h.kill_and_reap),
    );
    for (step, (herd, floor)) in [
        ("spawn 1000", spawn),
        ("kill 1000 (herd: kill().await only)", kill),
        ("kill 1000 + reap every child", reap),
    ] {
        println!(
            "  {:<40} {:>11.1} {:>11.1} {:>13.3}",
            step,
            Unit::Millis.of(herd.median),
            Unit::Millis.of(floor.median),
            herd.median.as_secs_f64() / floor.median.as_secs_f64()
        );
    }
    Ok(format!(
        "herd RSS +{:.1} KiB per child; kill 1000: herd {:.1} ms, floor {:.1} ms, {:.2}x",
        herd_kib as f64 / HELD as f64,
        Unit::Millis.of(kill.0.median),
        Unit::Millis.of(kill.1.median),
        kill.0.median.as_secs_f64() / kill.1.median.as_secs_f64()
    ))
}

// ---------------------------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------------------------

fn main() -> BoxResult<()> {
    run_timed(run())
}

/// The phases `SHEEPDOG_BENCH_PHASES` names, or `None` for all.
fn selected_phases() -> BoxResult<Option<Vec<String>>> {
    match std::env::var("SHEEPDOG_BENCH_PHASES") {
        Ok(value) => {
            let phases: Vec<String> = value
                .split(',')
                .map(|p| p.trim().to_ascii_uppercase())
                .collect();
            if let Some(bad) = phases
                .iter()
                .find(|p| !["1A", "1B", "1C", "2", "3"].contains(&p.as_str()))
            {
                return Err(format!("SHEEPDOG_BENCH_PHASES: no phase {bad:?}").into());
            }
            Ok(Some(phases))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(format!("SHEEPDOG_BENCH_PHASES: {err}").into()),
    }
}

async fn run() -> BoxResult<()> {
    let rounds = rounds_override()?;
    let warmup = |default: usize| rounds.map_or(default, |r| (r / 10).max(1));
    let rounds_or = |default: usize| rounds.unwrap_or(default);
    let phase = |name, description, warm, default, gap, fresh| SpawnPhase {
        name,
        description,
        warmup: warmup(warm),
        rounds: rounds_or(default),
        gap,
        fresh,
    };
    let phase_a = phase("1A", "small parent, back to back", 60, 2000, None, false);
    let phase_b = phase(
        "1B",
        "parent holding 4 GiB of touched memory, back to back",
        20,
        300,
        None,
        false,
    );
    let phase_c = phase(
        "1C",
        "isolated, one every 50 ms, a FRESH herd per spawn (create+spawn+wait+drop timed)",
        10,
        200,
        Some(ISOLATION_GAP),
        true,
    );

    // The long-lived herds are made first, while the parent is small: the first herd also
    // forks sheepdog's owner-death sentinel.
    let herd = herd_of(cgroup_herd, Mechanism::CgroupV2)?;
    let group = herd_of(group_herd, Mechanism::ProcessGroup)?;
    println!("pid {}", std::process::id());
    println!("host containment: {}", sheepdog::host_containment());
    println!("herd: {}", herd.containment());
    println!("herd-group: {}", group.containment());
    let mut probe = sheepdog::Command::new(PROGRAM)
        .spawn()
        .context("spawn the probe")?;
    println!("sheepdog spawn path: {:?}", probe.spawn_path());
    probe.wait().await.context("wait for the probe")?;
    let bench = SpawnBench {
        program: CString::new(PROGRAM).context("program path")?,
        cmd: sheepdog::Command::new(PROGRAM),
        herd,
        group_herd: group,
    };

    let phases = selected_phases()?;
    let wanted = |name: &str| phases.as_ref().is_none_or(|p| p.iter().any(|q| q == name));
    let mut summary = Vec::new();
    if wanted("1A") {
        let stats = spawn_phase(&bench, &phase_a).await?;
        summary.push(summary_line("1A", Unit::Micros, &stats));
    }
    if wanted("1B") {
        let memory = big_touched_allocation();
        let stats = spawn_phase(&bench, &phase_b).await;
        black_box(&memory);
        drop(memory);
        summary.push(summary_line("1B", Unit::Micros, &stats?));
    }
    for herd in [&bench.herd, &bench.group_herd] {
        let left = herd.members().context("list a long-lived herd")?;
        if !left.is_empty() {
            return Err(format!("a long-lived herd still holds {left:?}").into());
        }
    }
    if wanted("1C") {
        let stats = spawn_phase(&bench, &phase_c).await?;
        summary.push(summary_line("1C", Unit::Micros, &stats));
    }
    drop(bench);

    if wanted("2") {
        let stats = kill_phase(warmup(1), rounds_or(20)).await?;
        summary.push(summary_line("2", Unit::Millis, &stats));
    }
    if wanted("3") {
        let runs_3 = rounds.map_or(3, |r| r.min(3));
        summary.push(format!("  3: {}", hold_phase(runs_3).await?));
    }

    println!();
    println!("Summary (median, and each median / floor's median):");
    for line in summary {
        println!("{line}");
    }
    Ok(())
}
