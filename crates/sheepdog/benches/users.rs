//! What users call, measured as they meet it: `sheepdog::Command::spawn()` (a private herd per
//! child) and a shared `Herd`, beside `std::process::Command`, `tokio::process::Command` and the
//! raw floor (`posix_spawn` + `waitpid`).
//!
//! Every measurement runs in a FRESH PROCESS: this benchmark runs its own binary again with
//! `--child <workload> <variant>`; the child warms up, runs the timed iterations and prints its
//! figures on one line. The parent runs the variants round-robin, in a rotating order, for a
//! number of rounds, and reports for each figure the median over rounds, its ratio to the
//! floor's median, and the range of the per-round ratios (variant / floor of the same round).
//!
//! Workloads:
//! - `seq`: spawn + wait `/bin/true` back to back; each child times 500 single spawns after 50
//!   of warm-up and reports their median and p99.
//! - `big`: the same from a parent holding 4 GiB of touched memory (100 timed, 10 warm-up).
//! - `flight`: 64 `/bin/true` kept in flight for 2000 spawns (after 128 of warm-up): spawns per
//!   second. The floor and std run 64 threads, each spawning and waiting; tokio and sheepdog
//!   run 64 tasks on a multi-thread runtime, each spawning and waiting.
//! - `hold1000`, `hold10000`: that many `sleep 1000` children held, then killed until all are
//!   gone (reaped): the kill's time, the parent's RSS growth per held child, and the thread
//!   count while holding them. The floor and std put them in one process group and kill it;
//!   tokio the same; `herd` holds them in one `Herd` and calls `kill().await`, then waits for
//!   each `Child`. Skipped, with the reason printed, where the host has too few pids or
//!   descriptors.
//!
//! `SHEEPDOG_BENCH_ROUNDS=N` sets the rounds of every workload (by default 7 for `seq`, 5 for
//! `big`, `flight` and `hold1000`, 3 for `hold10000`); `SHEEPDOG_BENCH_WORKLOADS=seq,flight`
//! runs only the workloads named.
//!
//! Run with `cargo bench -p sheepdog --bench users`.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Floor,
    Std,
    Tokio,
    /// `sheepdog::Command::spawn()`: a private herd per child.
    Spawn,
    /// One shared `sheepdog::Herd`.
    Herd,
}

const ALL: [Variant; 5] = [
    Variant::Floor,
    Variant::Std,
    Variant::Tokio,
    Variant::Spawn,
    Variant::Herd,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Floor => "floor",
            Variant::Std => "std",
            Variant::Tokio => "tokio",
            Variant::Spawn => "sheepdog",
            Variant::Herd => "herd",
        }
    }

    fn parse(name: &str) -> BoxResult<Variant> {
        ALL.into_iter()
            .find(|v| v.name() == name)
            .with_context(|| format!("variant {name:?}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Seq,
    Big,
    Flight,
    Hold(usize),
}

/// How a figure compares with the floor's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Lower,
    Higher,
    /// Not as a ratio: the floor holds no state per child (memory, threads).
    Plain,
}

const WORKLOADS: [Workload; 5] = [
    Workload::Seq,
    Workload::Big,
    Workload::Flight,
    Workload::Hold(1000),
    Workload::Hold(10_000),
];

/// How many spawns `flight` keeps in flight, and how many it times.
const IN_FLIGHT: usize = 64;
const FLIGHT_SPAWNS: usize = 2000;

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::Seq => "seq".into(),
            Workload::Big => "big".into(),
            Workload::Flight => "flight".into(),
            Workload::Hold(n) => format!("hold{n}"),
        }
    }

    fn parse(name: &str) -> BoxResult<Workload> {
        WORKLOADS
            .into_iter()
            .find(|w| w.name() == name)
            .with_context(|| format!("workload {name:?}"))
    }

    fn description(self) -> String {
        match self {
            Workload::Seq => "spawn + wait /bin/true, back to back".into(),
            Workload::Big => "spawn + wait /bin/true from a parent holding 4 GiB".into(),
            Workload::Flight => {
                format!("{IN_FLIGHT} /bin/true in flight, {FLIGHT_SPAWNS} spawns")
            }
            Workload::Hold(n) => format!("hold {n} sleeps, then kill until all are gone"),
        }
    }

    fn variants(self) -> Vec<Variant> {
        match self {
            // A private herd per held child is not "one herd".
            Workload::Hold(_) => vec![Variant::Floor, Variant::Std, Variant::Tokio, Variant::Herd],
            _ => ALL.to_vec(),
        }
    }

    fn default_rounds(self) -> usize {
        match self {
            Workload::Seq => 7,
            Workload::Hold(n) if n > 1000 => 3,
            _ => 5,
        }
    }

    /// The figures the child reports, and how they compare.
    fn figures(self) -> &'static [(&'static str, &'static str, Compare)] {
        match self {
            Workload::Seq | Workload::Big => &[
                ("median_us", "median of single spawns (µs)", Compare::Lower),
                ("p99_us", "p99 of single spawns (µs)", Compare::Lower),
            ],
            Workload::Flight => &[("per_s", "spawns per second", Compare::Higher)],
            Workload::Hold(_) => &[
                ("kill_ms", "kill until all are reaped (ms)", Compare::Lower),
                ("rss_b", "RSS growth per held child (bytes)", Compare::Plain),
                ("threads", "threads added while holding", Compare::Plain),
            ],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child: one workload, one variant, in a fresh process.
// ---------------------------------------------------------------------------------------------

fn child_main(workload: Workload, variant: Variant) -> BoxResult<()> {
    let figures = match workload {
        Workload::Seq => sequential(variant, 50, 500)?,
        Workload::Big => {
            let memory = big_touched_allocation();
            let figures = sequential(variant, 10, 100);
            std::hint::black_box(&memory);
            figures?
        }
        Workload::Flight => flight(variant)?,
        Workload::Hold(n) => hold(variant, n)?,
    };
    let line: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("figures {}", line.join(" "));
    Ok(())
}

fn current_thread() -> BoxResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")
}

/// Spawn + wait of `/bin/true`, `warmup` untimed then `timed` timed one by one.
fn sequential(
    variant: Variant,
    warmup: usize,
    timed: usize,
) -> BoxResult<Vec<(&'static str, f64)>> {
    let runtime = current_thread()?;
    let program = CString::new(PROGRAM)?;
    let cmd = sheepdog::Command::new(PROGRAM);
    let herd = (variant == Variant::Herd)
        .then(sheepdog::Herd::new)
        .transpose()
        .context("make a herd")?;
    let mut samples = Vec::with_capacity(timed);
    runtime.block_on(async {
        for i in 0..warmup + timed {
            let start = Instant::now();
            match variant {
                Variant::Floor => floor_wait(floor_spawn(&program)?)?,
                Variant::Std => {
                    let status = std::process::Command::new(PROGRAM)
                        .status()
                        .context("std")?;
                    check(status.success(), &status)?;
                }
                Variant::Tokio => {
                    let status = tokio::process::Command::new(PROGRAM)
                        .status()
                        .await
                        .context("tokio")?;
                    check(status.success(), &status)?;
                }
                Variant::Spawn => {
                    let status = cmd.spawn().context("sheepdog")?.wait().await?;
                    check(status.success(), &status)?;
                }
                Variant::Herd => {
                    let herd = herd.as_ref().context("the herd")?;
                    let status = herd.spawn(&cmd).context("herd")?.wait().await?;
                    check(status.success(), &status)?;
                }
            }
            if i >= warmup {
                samples.push(start.elapsed());
            }
        }
        BoxResult::Ok(())
    })?;
    samples.sort_unstable();
    let median = Stats::of(&mut samples).median;
    let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
    Ok(vec![
        ("median_us", median.as_secs_f64() * 1e6),
        ("p99_us", p99.as_secs_f64() * 1e6),
    ])
}

fn check(success: bool, status: &dyn std::fmt::Display) -> BoxResult<()> {
    if !success {
        return Err(format!("{PROGRAM} failed: {status}").into());
    }
    Ok(())
}

/// [`IN_FLIGHT`] spawns of `/bin/true` kept in flight: 128 of warm-up, then
/// [`FLIGHT_SPAWNS`] timed.
fn flight(variant: Variant) -> BoxResult<Vec<(&'static str, f64)>> {
    let run = |total: usize| -> BoxResult<Duration> {
        let start = Instant::now();
        match variant {
            Variant::Floor => flight_threads(total, floor_true)?,
            Variant::Std => flight_threads(total, std_true)?,
            _ => flight_tasks(variant, total)?,
        }
        Ok(start.elapsed())
    };
    run(2 * IN_FLIGHT)?;
    let elapsed = run(FLIGHT_SPAWNS)?;
    Ok(vec![(
        "per_s",
        FLIGHT_SPAWNS as f64 / elapsed.as_secs_f64(),
    )])
}

/// [`IN_FLIGHT`] threads, each spawning and waiting (blocking) until `total` spawns were
/// started: what keeps that many in flight without an async runtime.
fn flight_threads(total: usize, spawn_and_wait: fn() -> BoxResult<()>) -> BoxResult<()> {
    let started = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                scope.spawn(|| {
                    while started.fetch_add(1, Ordering::Relaxed) < total {
                        spawn_and_wait().map_err(|err| err.to_string())?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| "a spawning thread panicked")??;
        }
        Ok(())
    })
}

fn floor_true() -> BoxResult<()> {
    floor_wait(floor_spawn(c"/bin/true")?)
}

fn std_true() -> BoxResult<()> {
    let status = std::process::Command::new(PROGRAM)
        .status()
        .context("std")?;
    check(status.success(), &status)
}

/// [`IN_FLIGHT`] tasks on a multi-thread runtime, each spawning and waiting until `total`
/// spawns were started.
fn flight_tasks(variant: Variant, total: usize) -> BoxResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    runtime.block_on(async {
        let herd = match variant {
            Variant::Herd => Some(Arc::new(sheepdog::Herd::new().context("make a herd")?)),
            _ => None,
        };
        let started = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let started = Arc::clone(&started);
            let herd = herd.clone();
            tasks.spawn(async move {
                spawn_until(variant, herd.as_deref(), &started, total)
                    .await
                    .map_err(|err| err.to_string())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.context("a spawning task")??;
        }
        BoxResult::Ok(())
    })
}

/// One of `flight`'s tasks: spawns and waits until `total` spawns were started.
async fn spawn_until(
    variant: Variant,
    herd: Option<&sheepdog::Herd>,
    started: &AtomicUsize,
    total: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cmd = sheepdog::Command::new(PROGRAM);
    while started.fetch_add(1, Ordering::Relaxed) < total {
        let success = match (variant, herd) {
            (Variant::Tokio, _) => {
                let status = tokio::process::Command::new(PROGRAM).status().await;
                status.map_err(|err| format!("tokio: {err}"))?.success()
            }
            (Variant::Herd, Some(herd)) => {
                let mut child = herd.spawn(&cmd).map_err(|err| format!("herd: {err}"))?;
                child.wait().await?.success()
            }
            _ => {
                let mut child = cmd.spawn().map_err(|err| format!("sheepdog: {err}"))?;
                child.wait().await?.success()
            }
        };
        if !success {
            return Err(format!("{PROGRAM} failed").into());
        }
    }
    Ok(())
}

/// This process's thread count, from /proc/self/status.
fn threads() -> BoxResult<u64> {
    proc_self_status("Threads:")
}

/// `n` children of `sleep 1000` held, then killed until every one is reaped: after a warm-up
/// of 100 held and killed the same way.
fn hold(variant: Variant, n: usize) -> BoxResult<Vec<(&'static str, f64)>> {
    let runtime = current_thread()?;
    runtime.block_on(async {
        hold_once(variant, 100).await?;
        let threads_before = threads()?;
        let rss_before = vm_rss_kib()?;
        let held = hold_once(variant, n).await?;
        let rss_b = (held.rss_kib as f64 - rss_before as f64) * 1024.0 / n as f64;
        Ok(vec![
            ("kill_ms", held.kill.as_secs_f64() * 1e3),
            ("rss_b", rss_b),
            ("threads", held.threads as f64 - threads_before as f64),
        ])
    })
}

struct Held {
    /// RSS while holding the children.
    rss_kib: u64,
    threads: u64,
    start: Instant,
    kill: Duration,
}

impl Held {
    /// What holding the children costs now; the kill's clock starts.
    fn measure() -> BoxResult<Held> {
        Ok(Held {
            rss_kib: vm_rss_kib()?,
            threads: threads()?,
            start: Instant::now(),
            kill: Duration::ZERO,
        })
    }

    /// The clock stops: every child is gone.
    fn all_gone(mut self) -> Held {
        self.kill = self.start.elapsed();
        self
    }
}

async fn hold_once(variant: Variant, n: usize) -> BoxResult<Held> {
    let sleep = CString::new("/bin/sleep")?;
    let thousand = CString::new("1000")?;
    match variant {
        Variant::Floor => {
            let (pids, pgid) = in_one_group(n, |pgid| {
                let pid = floor_spawn_sleep(&sleep, &thousand, pgid)?;
                Ok((pid, pid))
            })?;
            let held = Held::measure()?;
            killpg(pgid)?;
            for pid in pids {
                let mut status = 0;
                // SAFETY: our own unreaped child; `status` is a valid out-pointer.
                while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {}
            }
            Ok(held.all_gone())
        }
        Variant::Std => {
            let (mut children, pgid) = in_one_group(n, |pgid| {
                let child = sleep_in(pgid).spawn().context("std: spawn a sleep")?;
                let pid = child.id() as i32;
                Ok((child, pid))
            })?;
            let held = Held::measure()?;
            killpg(pgid)?;
            for child in &mut children {
                let status = child.wait().context("std: wait")?;
                killed(status.signal())?;
            }
            Ok(held.all_gone())
        }
        Variant::Tokio => {
            let (mut children, pgid) = in_one_group(n, |pgid| {
                let child = tokio::process::Command::from(sleep_in(pgid))
                    .spawn()
                    .context("tokio: spawn a sleep")?;
                let pid = child.id().context("tokio: a sleep's pid")? as i32;
                Ok((child, pid))
            })?;
            let held = Held::measure()?;
            killpg(pgid)?;
            for child in &mut children {
                let status = child.wait().await.context("tokio: wait")?;
                killed(status.signal())?;
            }
            Ok(held.all_gone())
        }
        Variant::Herd | Variant::Spawn => {
            let herd = sheepdog::Herd::new().context("make a herd")?;
            let mut cmd = sheepdog::Command::new("/bin/sleep");
            cmd.arg("1000")
                .stdin(sheepdog::Stdio::null())
                .stdout(sheepdog::Stdio::null())
                .stderr(sheepdog::Stdio::null());
            let mut children = Vec::with_capacity(n);
            for _ in 0..n {
                children.push(herd.spawn(&cmd).context("herd: spawn a sleep")?);
            }
            let held = Held::measure()?;
            herd.kill().await.context("herd: kill")?;
            for child in &mut children {
                let status = child.wait().await.context("herd: wait")?;
                killed(status.signal().map(sheepdog::Signal::as_raw))?;
            }
            Ok(held.all_gone())
        }
    }
}

/// `sleep 1000` with stdio on /dev/null, in process group `pgid` (0: a new one it leads).
fn sleep_in(pgid: i32) -> std::process::Command {
    let mut cmd = std::process::Command::new("/bin/sleep");
    cmd.arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid);
    cmd
}

/// `n` children started by `spawn(pgid)` into one process group, led by the first (`spawn`
/// gets 0 for it); returns them and the group.
fn in_one_group<C>(
    n: usize,
    mut spawn: impl FnMut(i32) -> BoxResult<(C, i32)>,
) -> BoxResult<(Vec<C>, i32)> {
    let mut children = Vec::with_capacity(n);
    let mut pgid = 0;
    for _ in 0..n {
        let (child, pid) = spawn(pgid)?;
        if pgid == 0 {
            pgid = pid;
        }
        children.push(child);
    }
    Ok((children, pgid))
}

fn killed(signal: Option<i32>) -> BoxResult<()> {
    if signal != Some(libc::SIGKILL) {
        return Err(format!("a held sleep ended by {signal:?}, not SIGKILL").into());
    }
    Ok(())
}

fn killpg(pgid: i32) -> BoxResult<()> {
    // SAFETY: kill(2) of a process group this process made (its leader is unreaped).
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(format!("kill(-{pgid}): {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// `posix_spawn` of `sleep 1000` with stdio on /dev/null, into process group `pgid` (0: a new
/// one led by the child).
fn floor_spawn_sleep(
    program: &CString,
    arg: &CString,
    pgid: libc::pid_t,
) -> BoxResult<libc::pid_t> {
    let argv: [*mut c_char; 3] = [
        program.as_ptr().cast_mut(),
        arg.as_ptr().cast_mut(),
        std::ptr::null_mut(),
    ];
    let null = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialized before use and destroyed after;
    // every pointer passed is valid for the calls (see `floor_spawn` for argv and environ).
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        for fd in 0..3 {
            let flags = if fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            libc::posix_spawn_file_actions_addopen(&mut actions, fd, null.as_ptr(), flags, 0);
        }
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETPGROUP as libc::c_short);
        libc::posix_spawnattr_setpgroup(&mut attr, pgid);
        let rc = libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &actions,
            &attr,
            argv.as_ptr(),
            environ,
        );
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    if rc != 0 {
        let err = std::io::Error::from_raw_os_error(rc);
        return Err(format!("posix_spawn sleep: {err}").into());
    }
    Ok(pid)
}

/// Why this host cannot hold `n` more children, if it cannot.
fn cannot_hold(n: usize) -> Option<String> {
    let margin = 2000;
    let pid_max: Option<usize> = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if let Some(pid_max) = pid_max.filter(|&max| max < n + margin) {
        return Some(format!("pid_max is {pid_max}, below {n} + {margin}"));
    }
    let mut nproc = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one valid `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut nproc) } == 0
        && nproc.rlim_cur != libc::RLIM_INFINITY
        && (nproc.rlim_cur as usize) < n + margin
    {
        return Some(format!(
            "ulimit -u is {}, below {n} + {margin}",
            nproc.rlim_cur
        ));
    }
    // Descriptors: tokio and sheepdog hold a pidfd per child.
    let mut files = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) } != 0 {
        return Some("cannot read RLIMIT_NOFILE".into());
    }
    if files.rlim_max != libc::RLIM_INFINITY && (files.rlim_max as usize) < n + 1000 {
        return Some(format!(
            "the descriptor limit is {}, below {n} + 1000",
            files.rlim_max
        ));
    }
    files.rlim_cur = files.rlim_max;
    // SAFETY: setrlimit(2) reads one valid `rlimit` (the soft limit raised to the hard one).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &files) } != 0 {
        return Some(format!(
            "cannot raise the descriptor limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The parent: rounds of fresh children, interleaved, and the tables.
// ---------------------------------------------------------------------------------------------

type Figures = HashMap<String, f64>;

fn run_child(workload: Workload, variant: Variant) -> BoxResult<Figures> {
    let exe = std::env::current_exe().context("this benchmark's own path")?;
    let mut child = std::process::Command::new(&exe)
        .args(["--child", &workload.name(), variant.name()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", exe.display()))?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let mut figures = None;
    // Only up to the figures: a leftover holding the pipe open must not hang the parent.
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read the child's figures")?;
        if let Some(rest) = line.strip_prefix("figures ") {
            figures = Some(
                rest.split(' ')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_owned(), v.parse().ok()?))
                    })
                    .collect(),
            );
            break;
        }
    }
    let status = child.wait().context("wait for the child")?;
    if !status.success() {
        return Err(format!(
            "{} {}: the child failed ({status})",
            workload.name(),
            variant.name()
        )
        .into());
    }
    figures.with_context(|| format!("{} {}: no figures", workload.name(), variant.name()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn run_workload(workload: Workload, rounds: usize) -> BoxResult<String> {
    let variants = workload.variants();
    println!();
    println!(
        "{}: {} ({rounds} rounds, a fresh process per variant and round)",
        workload.name(),
        workload.description()
    );
    if let Workload::Hold(n) = workload {
        if let Some(reason) = cannot_hold(n) {
            println!("  skipped: {reason}");
            return Ok(format!("  {}: skipped ({reason})", workload.name()));
        }
        if damon_running() {
            println!(
                "  note: this host runs DAMON (kdamond); its reverse-map walks over pages that all \
                 held children map slow their exits by chance (see docs/BENCHMARKS.md)"
            );
        }
    }
    let mut results: Vec<Vec<Figures>> = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let index = (round + k) % variants.len();
            results[index].push(run_child(workload, variants[index])?);
        }
    }
    let mut summary = Vec::new();
    for &(key, title, compare) in workload.figures() {
        let mut line = format!("[{key}]");
        println!("  {title}: median of rounds, / floor's, range of per-round ratios");
        let value = |v: usize, r: usize| results[v][r].get(key).copied().unwrap_or(f64::NAN);
        let floor_median = median(&mut (0..rounds).map(|r| value(0, r)).collect::<Vec<_>>());
        for (v, variant) in variants.iter().enumerate() {
            let m = median(&mut (0..rounds).map(|r| value(v, r)).collect::<Vec<_>>());
            let mut ratios: Vec<f64> = (0..rounds).map(|r| value(v, r) / value(0, r)).collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = m / floor_median;
            if compare == Compare::Plain {
                println!("    {:<9} {:>12.1}", variant.name(), m);
                line.push_str(&format!(" {} {m:.1}", variant.name()));
                continue;
            }
            println!(
                "    {:<9} {:>12.1} {:>7.3}x   {:.3}-{:.3}",
                variant.name(),
                m,
                ratio,
                ratios[0],
                ratios[ratios.len() - 1]
            );
            if *variant != Variant::Floor {
                line.push_str(&format!(" {} {ratio:.2}x", variant.name()));
            }
        }
        if compare == Compare::Higher {
            println!("    (higher is better)");
        }
        summary.push(line);
    }
    Ok(format!("  {}: {}", workload.name(), summary.join("; ")))
}

/// Whether a DAMON monitor runs on this host (any kdamond `on`, as its sysfs interface says).
fn damon_running() -> bool {
    let Ok(kdamonds) = std::fs::read_dir("/sys/kernel/mm/damon/admin/kdamonds") else {
        return false;
    };
    kdamonds.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("state")).is_ok_and(|state| state.trim() == "on")
    })
}

fn selected() -> BoxResult<Vec<Workload>> {
    match std::env::var("SHEEPDOG_BENCH_WORKLOADS") {
        Ok(list) => list
            .split(',')
            .map(|name| Workload::parse(name.trim()))
            .collect(),
        Err(std::env::VarError::NotPresent) => Ok(WORKLOADS.to_vec()),
        Err(err) => Err(format!("SHEEPDOG_BENCH_WORKLOADS: {err}").into()),
    }
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let workload = Workload::parse(args.get(at + 1).context("a workload after --child")?)?;
        let variant = Variant::parse(args.get(at + 2).context("a variant after the workload")?)?;
        if let Workload::Hold(n) = workload {
            if let Some(reason) = cannot_hold(n) {
                return Err(reason.into());
            }
        }
        return child_main(workload, variant);
    }
    let rounds = rounds_override()?;
    let started = Instant::now();
    let mut summary = Vec::new();
    for workload in selected()? {
        summary.push(run_workload(
            workload,
            rounds.unwrap_or(workload.default_rounds()),
        )?);
    }
    println!();
    println!("Summary (median of rounds / floor's median):");
    for line in summary {
        println!("{line}");
    }
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
