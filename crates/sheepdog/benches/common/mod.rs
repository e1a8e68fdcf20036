//! What the benchmarks share: the raw floor (`posix_spawn` + blocking `waitpid`), the big
//! parent, the `SHEEPDOG_BENCH_ROUNDS` override, error context and the runtime around a run.

#![allow(dead_code)] // each benchmark uses a different subset

use std::error::Error;
use std::ffi::{c_char, CStr};
use std::fmt::Display;
use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

pub const PROGRAM: &str = "/bin/true";
pub const PAGE: usize = 4096;
pub const BIG_PARENT_BYTES: usize = 4 << 30;
pub const ISOLATION_GAP: Duration = Duration::from_millis(50);

pub type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Adds what was being done to an error.
pub trait Context<T> {
    fn context(self, what: &str) -> BoxResult<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> BoxResult<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> BoxResult<T> {
        self.map_err(|err| format!("{what}: {err}").into())
    }
    fn with_context(self, what: impl FnOnce() -> String) -> BoxResult<T> {
        self.map_err(|err| format!("{}: {err}", what()).into())
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> BoxResult<T> {
        self.ok_or_else(|| format!("{what}: missing").into())
    }
    fn with_context(self, what: impl FnOnce() -> String) -> BoxResult<T> {
        self.ok_or_else(|| format!("{}: missing", what()).into())
    }
}

/// A phase's samples of one variant, summarized.
#[derive(Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    /// Nearest rank: the smallest sample with at least 90 % of samples at or below it.
    pub p90: Duration,
    pub best: Duration,
}

impl Stats {
    /// Sorts `samples` and summarizes them; there must be at least one.
    pub fn of(samples: &mut [Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples to summarize");
        samples.sort_unstable();
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Stats {
            median,
            p90: samples[(n * 9).div_ceil(10) - 1],
            best: samples[0],
        }
    }

    pub fn median_us(&self) -> f64 {
        self.median.as_secs_f64() * 1e6
    }

    pub fn p90_us(&self) -> f64 {
        self.p90.as_secs_f64() * 1e6
    }
}

/// Runs `rounds` (after `warmup` unrecorded ones) of every variant, rotating the order every
/// round so that no variant always follows the same one, after a `gap` of idle time each;
/// returns each variant with the statistics of its samples, in `variants` order.
pub async fn interleaved<V: Copy>(
    variants: &[V],
    warmup: usize,
    rounds: usize,
    gap: Option<Duration>,
    mut run: impl AsyncFnMut(V) -> BoxResult<Duration>,
) -> BoxResult<Vec<(V, Stats)>> {
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..warmup + rounds {
        for k in 0..variants.len() {
            let index = (round + k) % variants.len();
            if let Some(gap) = gap {
                tokio::time::sleep(gap).await;
            }
            let elapsed = run(variants[index]).await?;
            if round >= warmup {
                samples[index].push(elapsed);
            }
        }
    }
    Ok(variants
        .iter()
        .zip(&mut samples)
        .map(|(&variant, s)| (variant, Stats::of(s)))
        .collect())
}

/// Runs a benchmark's body on a current-thread tokio runtime and prints the total time.
/// (`cargo bench` passes `--bench`; the harnesses take no options and ignore it.)
pub fn run_timed(body: impl Future<Output = BoxResult<()>>) -> BoxResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    let started = Instant::now();
    runtime.block_on(body)?;
    println!();
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

extern "C" {
    /// The C library's environment, passed unchanged to `posix_spawn` children.
    pub static environ: *const *mut c_char;
}

/// Starts `program` with raw `posix_spawn`: the floor every variant is compared against.
pub fn floor_spawn(program: &CStr) -> BoxResult<libc::pid_t> {
    let argv: [*mut c_char; 2] = [program.as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: `pid` is a valid out-pointer; the path is a NUL-terminated string that outlives
    // the call; null file actions and attributes mean "none" (inherit everything); `argv` is
    // a null-terminated array of NUL-terminated strings, which posix_spawn does not modify
    // despite its `*mut` type; `environ` is the C library's own null-terminated environment,
    // which nothing in this program modifies concurrently.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr(),
            environ,
        )
    };
    if rc != 0 {
        let err = std::io::Error::from_raw_os_error(rc);
        return Err(format!("posix_spawn {}: {err}", program.to_string_lossy()).into());
    }
    Ok(pid)
}

/// Reaps the floor's child with a blocking `waitpid` and checks that it succeeded.
pub fn floor_wait(pid: libc::pid_t) -> BoxResult<()> {
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our own unreaped child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid({pid}): {err}").into());
        }
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("floor: {PROGRAM} failed, wait status {status:#x}").into());
    }
    Ok(())
}

/// 4 GiB, every page written once so it is really resident.
pub fn big_touched_allocation() -> Vec<u8> {
    let mut memory = vec![0u8; BIG_PARENT_BYTES];
    for page in memory.chunks_mut(PAGE) {
        page[0] = 1;
    }
    black_box(memory)
}

/// `SHEEPDOG_BENCH_ROUNDS=N`: run every phase N rounds, for a quick check.
pub fn rounds_override() -> BoxResult<Option<usize>> {
    match std::env::var("SHEEPDOG_BENCH_ROUNDS") {
        Ok(value) => {
            let rounds: usize = value
                .trim()
                .parse()
                .map_err(|err| format!("SHEEPDOG_BENCH_ROUNDS={value:?}: {err}"))?;
            if rounds == 0 {
                return Err("SHEEPDOG_BENCH_ROUNDS must be at least 1".into());
            }
            Ok(Some(rounds))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(format!("SHEEPDOG_BENCH_ROUNDS: {err}").into()),
    }
}

/// A number from a line of /proc/self/status (`VmRSS:`, `Threads:`), without its unit.
pub fn proc_self_status(field: &str) -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let value = line.trim().trim_end_matches("kB").trim();
    value.parse().with_context(|| format!("{field} {value:?}"))
}

/// This process's resident set, in KiB.
pub fn vm_rss_kib() -> BoxResult<u64> {
    proc_self_status("VmRSS:")
}
