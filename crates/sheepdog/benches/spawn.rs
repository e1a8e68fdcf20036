//! Spawn + wait latency of `/bin/true`: sheepdog's spawn engine (no herd, and into a given
//! cgroup) against raw `posix_spawn`, std and tokio. `Command::spawn`, which makes a private
//! herd per child, is measured in `benches/herd.rs`.
//!
//! Two more raw floors (x86_64) show what the kernel itself charges: `clone3` with
//! `CLONE_VM | CLONE_VFORK` and a blocking `waitpid`, into no cgroup and into an empty one
//! (`CLONE_INTO_CGROUP`, the thread pinned for the clone as sheepdog does) — no signal mask, no
//! pidfd, no reactor: what a spawn into a cgroup cannot go below.
//!
//! One process run; the variants are interleaved round-robin (in a rotating order) so that
//! drift in machine state hits all of them equally, and every spawn + wait is timed on its own.
//! Reports medians and p90 in microseconds, and each median's ratio to the floor's.
//!
//! Phases:
//! - A: small parent, back to back.
//! - B: the parent holds 4 GiB of touched memory (what a fork-based spawn would pay for).
//! - C: isolated spawns, one every 50 ms (cold caches, idle CPU).
//! - D: the spawn call and the wait timed apart, for sheepdog and the floor.
//! - E: the spawn call alone for a CPU-bound child, isolated, into no cgroup and into an empty
//!   one (skipped without a cgroup).
//!
//! `SHEEPDOG_BENCH_ROUNDS=N` makes every phase run N rounds (warm-up N/10, at least 1) for a
//! quick check; by default A runs 2000 rounds, B 300, C 200 (a median of 60 moved by a few
//! percent from run to run, as much as the gap it measures), D 1000 and E 100.
//!
//! Run with `cargo bench -p sheepdog --bench spawn`.

use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// Variants: each spawns `/bin/true` with inherited stdio, waits for it, and returns how long
// that took. A child that does not exit with status 0 is an error: the measurement would lie.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Floor,
    Sheepdog,
    SheepdogCgroup,
    RawClone3,
    RawClone3Cgroup,
    Std,
    Tokio,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Floor => "floor",
            Variant::Sheepdog => "sheepdog",
            Variant::SheepdogCgroup => "sheepdog+cgroup",
            Variant::RawClone3 => "raw clone3",
            Variant::RawClone3Cgroup => "raw clone3+cgroup",
            Variant::Std => "std",
            Variant::Tokio => "tokio",
        }
    }
}

/// What the variants share, prepared once.
struct Bench {
    program: CString,
    sheepdog_cmd: sheepdog::Command,
    /// `None` when cgroup v2 is unavailable here; the variant is skipped then.
    cgroup: Option<CgroupGuard>,
    /// The raw floor's own empty cgroup, so that the two never share one.
    raw_cgroup: Option<CgroupGuard>,
    variants: Vec<Variant>,
}

impl Bench {
    async fn run(&self, variant: Variant) -> BoxResult<Duration> {
        match variant {
            Variant::Floor => self.floor(),
            Variant::Sheepdog => self.sheepdog().await,
            Variant::SheepdogCgroup => self.sheepdog_cgroup().await,
            Variant::RawClone3 => raw_clone3(&self.program, None),
            Variant::RawClone3Cgroup => raw_clone3(
                &self.program,
                Some(
                    self.raw_cgroup
                        .as_ref()
                        .ok_or("raw clone3+cgroup run without a cgroup")?,
                ),
            ),
            Variant::Std => std_status(),
            Variant::Tokio => tokio_status().await,
        }
    }

    /// Raw `posix_spawn` + `waitpid`: the floor.
    fn floor(&self) -> BoxResult<Duration> {
        let start = Instant::now();
        let pid = floor_spawn(&self.program)?;
        floor_wait(pid)?;
        Ok(start.elapsed())
    }

    /// The spawn engine alone: no herd, no cgroup (what `Herd::spawn` costs on top of a
    /// herd that already exists, minus the cgroup).
    async fn sheepdog(&self) -> BoxResult<Duration> {
        let start = Instant::now();
        let status = sheepdog::__private::spawn_into(&self.sheepdog_cmd, None, None)?
            .wait()
            .await?;
        let elapsed = start.elapsed();
        check("sheepdog", status.success(), &status)?;
        Ok(elapsed)
    }

    async fn sheepdog_cgroup(&self) -> BoxResult<Duration> {
        let cgroup = self
            .cgroup
            .as_ref()
            .ok_or("sheepdog+cgroup run without a cgroup")?;
        let start = Instant::now();
        let status = spawn_into_cgroup(&self.sheepdog_cmd, cgroup)?
            .wait()
            .await?;
        let elapsed = start.elapsed();
        check("sheepdog+cgroup", status.success(), &status)?;
        Ok(elapsed)
    }
}

/// Phase D: where the time goes. The spawn call alone (returns once the child has exec'd) and
/// the wait alone, for sheepdog and for `posix_spawn` + blocking `waitpid`, interleaved.
async fn split_phase(bench: &Bench, rounds: usize) -> BoxResult<()> {
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut child = sheepdog::__private::spawn_into(&bench.sheepdog_cmd, None, None)?;
        times[0].push(start.elapsed());
        let start = Instant::now();
        let status = child.wait().await?;
        times[1].push(start.elapsed());
        check("sheepdog", status.success(), &status)?;

        let start = Instant::now();
        let pid = floor_spawn(&bench.program)?;
        times[2].push(start.elapsed());
        let start = Instant::now();
        floor_wait(pid)?;
        times[3].push(start.elapsed());
    }
    let [sd_spawn, sd_wait, fl_spawn, fl_wait] = times.each_mut().map(|t| Stats::of(t).median_us());
    println!();
    println!("Phase D: spawn and wait timed apart, small parent ({rounds} rounds)");
    println!(
        "  {:<10} {:>14} {:>14} {:>8}",
        "step", "sheepdog µs", "floor µs", "ratio"
    );
    println!(
        "  {:<10} {:>14.1} {:>14.1} {:>8.3}",
        "spawn",
        sd_spawn,
        fl_spawn,
        sd_spawn / fl_spawn
    );
    println!(
        "  {:<10} {:>14.1} {:>14.1} {:>8.3}",
        "wait",
        sd_wait,
        fl_wait,
        sd_wait / fl_wait
    );
    Ok(())
}

/// Phase E: the spawn call alone for a CPU-bound child, isolated, into no cgroup and into an
/// empty one, interleaved. A spawn returns at the child's exec; into an empty cgroup, unless the
/// spawning thread is pinned for the clone, it returned only after the child's first time slice
/// (see docs/ARCHITECTURE.md, "The first task in an empty cgroup").
async fn busy_child_phase(cgroup: &CgroupGuard, rounds: usize) -> BoxResult<()> {
    let mut cmd = sheepdog::Command::new("sh");
    cmd.args(["-c", "i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done"]);
    let mut times: [Vec<Duration>; 2] = Default::default();
    for round in 0..rounds {
        for into_cgroup in [round % 2 == 0, round % 2 == 1] {
            tokio::time::sleep(ISOLATION_GAP).await;
            let start = Instant::now();
            let mut child = if into_cgroup {
                spawn_into_cgroup(&cmd, cgroup)?
            } else {
                sheepdog::__private::spawn_into(&cmd, None, None)?
            };
            times[into_cgroup as usize].push(start.elapsed());
            let status = child.wait().await?;
            check("busy child", status.success(), &status)?;
        }
    }
    let [plain, cgroup] = times.each_mut().map(|t| Stats::of(t).median_us());
    println!();
    println!("Phase E: the spawn call alone, CPU-bound child, one every 50 ms ({rounds} rounds)");
    println!("  into no cgroup       {plain:>10.1} µs");
    println!(
        "  into an empty cgroup {cgroup:>10.1} µs  ({:.2}x)",
        cgroup / plain
    );
    Ok(())
}

fn spawn_into_cgroup(
    cmd: &sheepdog::Command,
    cgroup: &CgroupGuard,
) -> Result<sheepdog::Child, sheepdog::Error> {
    sheepdog::__private::spawn_into(cmd, Some(cgroup.dir.as_fd()), None)
}

fn std_status() -> BoxResult<Duration> {
    let start = Instant::now();
    let status = std::process::Command::new(PROGRAM).status()?;
    let elapsed = start.elapsed();
    check("std", status.success(), &status)?;
    Ok(elapsed)
}

async fn tokio_status() -> BoxResult<Duration> {
    let start = Instant::now();
    let status = tokio::process::Command::new(PROGRAM).status().await?;
    let elapsed = start.elapsed();
    check("tokio", status.success(), &status)?;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// The raw floors of a spawn into a cgroup (x86_64: the child's code is a few instructions of
// assembly, since it runs on this thread's stack while the thread is suspended).
// ---------------------------------------------------------------------------------------------

/// `CLONE_INTO_CGROUP` (Linux 5.7), from `linux/sched.h`.
#[cfg(target_arch = "x86_64")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` up to `cgroup` (clone3(2)).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// This thread pinned to the CPU it runs on, and its mask before, put back on drop.
#[cfg(target_arch = "x86_64")]
struct Pinned {
    saved: libc::cpu_set_t,
}

#[cfg(target_arch = "x86_64")]
impl Pinned {
    fn new() -> BoxResult<Pinned> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: all-zero bytes are a valid (empty) cpu_set_t.
        let (mut saved, mut one): (libc::cpu_set_t, libc::cpu_set_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: the masks are valid for `size` bytes; sched_getcpu takes no arguments.
        let cpu = unsafe {
            if libc::sched_getaffinity(0, size, &mut saved) != 0 {
                let err = std::io::Error::last_os_error();
                return Err(format!("sched_getaffinity: {err}").into());
            }
            libc::sched_getcpu()
        };
        let cpu = usize::try_from(cpu).map_err(|_| "sched_getcpu failed")?;
        // SAFETY: CPU_SET checks `cpu` against the mask's size; `one` is a valid mask of `size`
        // bytes.
        if unsafe {
            libc::CPU_SET(cpu, &mut one);
            libc::sched_setaffinity(0, size, &one)
        } != 0
        {
            let err = std::io::Error::last_os_error();
            return Err(format!("sched_setaffinity: {err}").into());
        }
        Ok(Pinned { saved })
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: `saved` is the valid mask sched_getaffinity filled in.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}

/// Spawns `program` with a bare `clone3(CLONE_VM | CLONE_VFORK)` — into `cgroup` with
/// `CLONE_INTO_CGROUP`, pinned as sheepdog pins — and waits with a blocking `waitpid`.
#[cfg(target_arch = "x86_64")]
fn raw_clone3(program: &CStr, cgroup: Option<&CgroupGuard>) -> BoxResult<Duration> {
    use std::ffi::c_char;
    use std::io;
    use std::os::fd::AsRawFd;

    let argv: [*const c_char; 2] = [program.as_ptr(), std::ptr::null()];
    let start = Instant::now();
    let pinned = cgroup.map(|_| Pinned::new()).transpose()?;
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.dir.as_raw_fd() as u64;
    }
    let (mask, mask_len) = pinned.as_ref().map_or((std::ptr::null(), 0), |p| {
        (
            &p.saved as *const libc::cpu_set_t,
            std::mem::size_of::<libc::cpu_set_t>(),
        )
    });
    let ret: isize;
    // SAFETY: clone3(2) with a valid `clone_args` of the size given. The child shares this
    // thread's memory and stack while the thread is suspended (CLONE_VFORK): it runs only the
    // instructions below, touches no memory but the kernel's reads of the mask, path, argv and
    // environ (all alive until the thread resumes), restores the thread's mask if it was pinned,
    // and execs or exits. No handler of this process runs in it: nothing signals a process
    // that is nobody's parent and whose pid nobody has yet. The parent's path only takes the
    // clone's result; the syscall instruction clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "test r12, r12",
            "jz 3f",
            "mov eax, {setaffinity}",
            "xor edi, edi",
            "mov rsi, r13",
            "mov rdx, r12",
            "syscall",
            "3:",
            "mov eax, {execve}",
            "mov rdi, r8",
            "mov rsi, r9",
            "mov rdx, r10",
            "syscall",
            "mov eax, {exit}",
            "mov edi, 127",
            "syscall",
            "ud2",
            "2:",
            setaffinity = const libc::SYS_sched_setaffinity,
            execve = const libc::SYS_execve,
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r8") program.as_ptr(),
            in("r9") argv.as_ptr(),
            in("r10") environ,
            in("r12") mask,
            in("r13") mask_len,
            lateout("rcx") _,
            lateout("rdx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    drop(pinned);
    if ret < 0 {
        let err = io::Error::from_raw_os_error(-ret as i32);
        return Err(format!("clone3: {err}").into());
    }
    floor_wait(ret as libc::pid_t)?;
    Ok(start.elapsed())
}

#[cfg(not(target_arch = "x86_64"))]
fn raw_clone3(_: &CStr, _: Option<&CgroupGuard>) -> BoxResult<Duration> {
    Err("the raw clone3 floors are x86_64 only".into())
}

fn check(variant: &str, success: bool, status: &dyn std::fmt::Display) -> BoxResult<()> {
    if success {
        Ok(())
    } else {
        Err(format!("{variant}: {PROGRAM} failed: {status}").into())
    }
}

// ---------------------------------------------------------------------------------------------
// The cgroup for `sheepdog+cgroup`.
// ---------------------------------------------------------------------------------------------

/// A fresh cgroup v2 directory, open, removed on drop (also when a panic unwinds).
struct CgroupGuard {
    path: PathBuf,
    dir: File,
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // Every child was waited for (or is reaped by sheepdog in the background, which happens
        // as soon as it exits), so the cgroup holds no process and can be removed.
        if let Err(err) = fs::remove_dir(&self.path) {
            eprintln!(
                "warning: could not remove cgroup {}: {err}",
                self.path.display()
            );
        }
    }
}

/// Creates `sheepdog-bench-<pid><suffix>` under this process's cgroup, or says why it cannot.
fn make_cgroup(suffix: &str) -> Result<CgroupGuard, String> {
    let mount = cgroup2_mount()?;
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|err| format!("cannot read /proc/self/cgroup: {err}"))?;
    let own = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 hierarchy (no `0::` line in /proc/self/cgroup)")?;
    let parent = mount.join(own.trim_start_matches('/'));
    let path = parent.join(format!("sheepdog-bench-{}{suffix}", std::process::id()));
    fs::create_dir(&path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;

    // From here on the directory exists: a half-built guard still removes it on failure.
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&path);
    match dir {
        Ok(dir) => Ok(CgroupGuard { path, dir }),
        Err(err) => {
            let msg = format!("cannot open {}: {err}", path.display());
            if let Err(err) = fs::remove_dir(&path) {
                eprintln!("warning: could not remove cgroup {}: {err}", path.display());
            }
            Err(msg)
        }
    }
}

/// Where cgroup v2 is mounted, from /proc/self/mountinfo.
fn cgroup2_mount() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
    for line in mountinfo.lines() {
        // `id parent major:minor root mount-point options [optional...] - fstype source super`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        // Only a mount of the hierarchy's root makes `0::<path>` a path below the mount point.
        if let (Some(&"/"), Some(mount_point)) = (fields.get(3), fields.get(4)) {
            return Ok(PathBuf::from(unescape_mountinfo(mount_point)));
        }
    }
    Err("no cgroup2 mount of the hierarchy root in /proc/self/mountinfo".to_owned())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Phases and statistics.
// ---------------------------------------------------------------------------------------------

struct Phase {
    name: &'static str,
    description: &'static str,
    warmup_rounds: usize,
    rounds: usize,
    /// Pause before every spawn (isolated spawns), or none (back to back).
    gap: Option<Duration>,
}

/// Runs one phase and prints its table; returns each variant's stats, in `bench.variants` order.
async fn run_phase(bench: &Bench, phase: &Phase) -> BoxResult<Vec<(Variant, Stats)>> {
    let variants = &bench.variants;
    let stats = interleaved(
        variants,
        phase.warmup_rounds,
        phase.rounds,
        phase.gap,
        |variant| bench.run(variant),
    )
    .await?;
    let floor = stats
        .iter()
        .find(|(v, _)| *v == Variant::Floor)
        .map(|(_, s)| s.median_us())
        .ok_or("the floor variant is missing")?;

    println!();
    println!(
        "Phase {}: {} ({} rounds after {} warm-up rounds)",
        phase.name, phase.description, phase.rounds, phase.warmup_rounds
    );
    println!(
        "  {:<18} {:>10} {:>10} {:>12}",
        "variant", "median µs", "p90 µs", "median/floor"
    );
    for (variant, s) in &stats {
        println!(
            "  {:<18} {:>10.1} {:>10.1} {:>12.3}",
            variant.name(),
            s.median_us(),
            s.p90_us(),
            s.median_us() / floor
        );
    }
    Ok(stats)
}

fn summary_line(phase: &Phase, stats: &[(Variant, Stats)]) -> String {
    let floor = stats
        .iter()
        .find(|(v, _)| *v == Variant::Floor)
        .map_or(f64::NAN, |(_, s)| s.median_us());
    let parts: Vec<String> = stats
        .iter()
        .map(|(v, s)| {
            if *v == Variant::Floor {
                format!("floor {:.1} µs", s.median_us())
            } else {
                format!("{} {:.2}x", v.name(), s.median_us() / floor)
            }
        })
        .collect();
    format!("  {}: {}", phase.name, parts.join(", "))
}

fn main() -> BoxResult<()> {
    run_timed(run())
}

async fn run() -> BoxResult<()> {
    let rounds = rounds_override()?;
    let phase = |name, description, warmup_rounds, default_rounds, gap| Phase {
        name,
        description,
        warmup_rounds: rounds.map_or(warmup_rounds, |r: usize| (r / 10).max(1)),
        rounds: rounds.unwrap_or(default_rounds),
        gap,
    };
    let phase_a = phase("A", "small parent, back to back", 60, 2000, None);
    let phase_b = phase(
        "B",
        "parent holding 4 GiB of touched memory, back to back",
        20,
        300,
        None,
    );
    let phase_c = phase(
        "C",
        "isolated spawns, one every 50 ms",
        10,
        200,
        Some(ISOLATION_GAP),
    );

    let sheepdog_cmd = sheepdog::Command::new(PROGRAM);
    let mut probe = sheepdog::__private::spawn_into(&sheepdog_cmd, None, None)?;
    println!(
        "sheepdog spawn path: {:?} (program {PROGRAM}, pid {})",
        probe.spawn_path(),
        std::process::id()
    );
    probe.wait().await?;
    if let Ok(thp) = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
        println!("transparent huge pages: {}", thp.trim());
    }

    let mut variants = vec![Variant::Floor, Variant::Sheepdog];
    let cgroup = match make_cgroup("") {
        Ok(cgroup) => match spawn_into_cgroup(&sheepdog_cmd, &cgroup) {
            Ok(mut child) => {
                child.wait().await?;
                println!("cgroup for sheepdog+cgroup: {}", cgroup.path.display());
                variants.push(Variant::SheepdogCgroup);
                Some(cgroup)
            }
            Err(err) => {
                println!(
                    "skipping sheepdog+cgroup: cannot spawn into {}: {err}",
                    cgroup.path.display()
                );
                None
            }
        },
        Err(reason) => {
            println!("skipping sheepdog+cgroup: {reason}");
            None
        }
    };
    let program = CString::new(PROGRAM)?;
    let mut raw_cgroup = None;
    match raw_clone3(&program, None) {
        Ok(_) => {
            variants.push(Variant::RawClone3);
            if cgroup.is_some() {
                let made =
                    make_cgroup("-raw").and_then(|made| match raw_clone3(&program, Some(&made)) {
                        Ok(_) => Ok(made),
                        Err(err) => Err(err.to_string()),
                    });
                match made {
                    Ok(made) => {
                        raw_cgroup = Some(made);
                        variants.push(Variant::RawClone3Cgroup);
                    }
                    Err(reason) => println!("skipping raw clone3+cgroup: {reason}"),
                }
            }
        }
        Err(err) => println!("skipping the raw clone3 floors: {err}"),
    }
    variants.extend([Variant::Std, Variant::Tokio]);
    let bench = Bench {
        program,
        sheepdog_cmd,
        cgroup,
        raw_cgroup,
        variants,
    };

    let stats_a = run_phase(&bench, &phase_a).await?;

    let memory = big_touched_allocation();
    let stats_b = run_phase(&bench, &phase_b).await;
    black_box(&memory);
    drop(memory);
    let stats_b = stats_b?;

    let stats_c = run_phase(&bench, &phase_c).await?;
    split_phase(&bench, phase_a.rounds / 2).await?;
    if let Some(cgroup) = &bench.cgroup {
        busy_child_phase(cgroup, phase_c.rounds / 2).await?;
    }

    println!();
    println!("Summary (median, and each median / floor's median):");
    for (phase, stats) in [
        (&phase_a, &stats_a),
        (&phase_b, &stats_b),
        (&phase_c, &stats_c),
    ] {
        println!("{}", summary_line(phase, stats));
    }
    Ok(())
}
