//! Reading what children print: capture, lines and a pipeline, each against a raw floor (std
//! spawn + blocking `read(2)` of 64 KiB into a preallocated, already touched buffer), std and
//! tokio.
//!
//! One process run; within a phase the variants are interleaved round-robin (in a rotating
//! order) so that drift in machine state hits all of them equally. Every sample is one whole
//! run: spawn, read to the end, and wait (every child is reaped before the clock stops).
//! Reports the median time, the throughput at the median and at the best round, and each
//! variant's median throughput as a ratio of the floor's (below 1: slower than the floor).
//!
//! Phases:
//! - 1: capture 256 MiB of stdout from `head -c 268435456 /dev/zero`. Floor: std spawn with
//!   stdout piped, `read(2)` 64 KiB at a time into one 256 MiB buffer, wait. `fresh floor`:
//!   the same, but a blocking `read_to_end` into a fresh `Vec` (what a plain thread does, and
//!   what a capture that returns a new buffer can reach). `std`:
//!   `std::process::Command::output`; `tokio`: `tokio::process::Command::output`; `sheepdog`:
//!   `sheepdog::Command::output` (a private herd per run, stdout and stderr captured).
//! - 2: stream the 2 000 000 lines of `seq 2000000`. Floor: `read(2)` 64 KiB at a time and count
//!   the newlines; `std`: `BufReader::lines`; `tokio`: tokio's `BufReader::lines`; `sheepdog`:
//!   `Child::lines` (lines borrowed from its buffer).
//! - 3: `head -c 134217728 /dev/zero | cat`, reading the last stage's 128 MiB. Floor: two std
//!   children joined by a kernel pipe (`Stdio::from(ChildStdout)`), `read(2)` of `cat`'s
//!   stdout into the preallocated buffer; `tokio`: two tokio children with the bytes copied
//!   through this process (`tokio::io::copy` from `head`'s stdout to `cat`'s stdin) and
//!   `cat`'s stdout read to the end; `sheepdog`: `Pipeline::output` (kernel pipe between the
//!   stages, one herd).
//!
//! Every byte count and line count is checked exactly, and every child must exit with 0. At the
//! end the run checks that no child of this process is left (but sheepdog's owner-death
//! sentinel, which lives as long as this process) and that sheepdog has no background work.
//!
//! Note on phases 1 and 3: the floor's buffer is touched once before the first round, so the
//! floor pays no page faults, while every other variant returns a fresh `Vec` and pays the
//! first touch of each of its pages (zeroing and memcg charge included) inside the measurement.
//! On a small machine that is most of the distance between the floor and everybody else
//! (sheepdog takes those faults while its pipe is empty rather than inside the reads, which
//! hides part of them). The `sd reused` variant reads into the previous round's buffers, as
//! the floor does.
//!
//! `SHEEPDOG_BENCH_ROUNDS=N` makes every phase run N rounds (warm-up N/10, at least 1) for a
//! quick check; by default every phase runs 21 rounds after 1 warm-up round (the floor moves
//! from round to round on a small machine; fewer rounds give medians that move by a tenth).
//!
//! Each table also gives the median count of this process's context switches per run
//! (`getrusage`, every thread: voluntary / involuntary).
//!
//! `SHEEPDOG_BENCH_RUNTIME=multi` runs everything on tokio's multi-thread runtime (what
//! `#[tokio::main]` builds) instead of a current-thread one.
//!
//! Run with `cargo bench -p sheepdog --bench output`.

use std::fmt::Display;
use std::fs;
use std::hint::black_box;
use std::io::{self, BufRead, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::*;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// Phase 1: what `head` prints.
const CAPTURE_BYTES: usize = 256 << 20;
const CAPTURE_ARG: &str = "268435456";
/// Phase 2: how many lines `seq` prints.
const LINES: usize = 2_000_000;
const LINES_ARG: &str = "2000000";
/// Phase 3: what flows through `head | cat`.
const PIPELINE_BYTES: usize = 128 << 20;
const PIPELINE_ARG: &str = "134217728";
/// The floor's read size.
const CHUNK: usize = 64 << 10;
const DEFAULT_ROUNDS: usize = 21;
const DEFAULT_WARMUP: usize = 1;
/// How long the final check waits for background reaping to finish.
const PATIENCE: Duration = Duration::from_secs(10);

const MIB: f64 = (1u64 << 20) as f64;

// ---------------------------------------------------------------------------------------------
// Variants and phases.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Floor,
    /// The floor's reads into a fresh `Vec` (`read_to_end`).
    FreshFloor,
    Std,
    Tokio,
    Sheepdog,
    /// sheepdog capturing into the buffers of its previous run (`output_with_buffers`).
    SheepdogReused,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Floor => "floor",
            Variant::FreshFloor => "fresh floor",
            Variant::Std => "std",
            Variant::Tokio => "tokio",
            Variant::Sheepdog => "sheepdog",
            Variant::SheepdogReused => "sd reused",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Capture,
    Lines,
    Pipeline,
}

struct Phase {
    name: &'static str,
    description: &'static str,
    kind: Kind,
    variants: &'static [Variant],
    warmup: usize,
    rounds: usize,
}

impl Phase {
    /// What one run moves: bytes for capture and pipeline, lines for lines.
    fn units(&self) -> f64 {
        match self.kind {
            Kind::Capture => CAPTURE_BYTES as f64,
            Kind::Lines => LINES as f64,
            Kind::Pipeline => PIPELINE_BYTES as f64,
        }
    }

    /// The throughput's unit, and how many units one of it is.
    fn rate_unit(&self) -> (&'static str, f64) {
        match self.kind {
            Kind::Capture | Kind::Pipeline => ("MiB/s", MIB),
            Kind::Lines => ("Mlines/s", 1e6),
        }
    }

    fn rate(&self, elapsed: Duration) -> f64 {
        self.units() / self.rate_unit().1 / elapsed.as_secs_f64()
    }
}

/// What the variants share, prepared once: the floor's buffer and sheepdog's commands.
struct Bench {
    /// The floor's preallocated buffer (256 MiB, every page touched once, reused by every
    /// floor run of every phase).
    buf: Vec<u8>,
    sd_capture: sheepdog::Command,
    sd_seq: sheepdog::Command,
    sd_head: sheepdog::Command,
    sd_cat: sheepdog::Command,
    /// What `SheepdogReused` captured last time, handed back to its next run.
    sd_buffers: (Vec<u8>, Vec<u8>),
    /// Context switches (voluntary, involuntary) of every run, by phase and variant.
    switches: Vec<((Kind, Variant), (i64, i64))>,
}

/// This process's context switches so far, all threads (voluntary, involuntary).
fn context_switches() -> (i64, i64) {
    // SAFETY: `usage` is a valid out-pointer to a `rusage`, which getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0, 0);
    }
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

impl Bench {
    fn new() -> Bench {
        let mut buf = vec![0u8; CAPTURE_BYTES];
        for page in buf.chunks_mut(PAGE) {
            page[0] = 1;
        }
        let mut sd_capture = sheepdog::Command::new("head");
        sd_capture.args(["-c", CAPTURE_ARG, "/dev/zero"]);
        let mut sd_seq = sheepdog::Command::new("seq");
        sd_seq
            .arg(LINES_ARG)
            .stdin(sheepdog::Stdio::null())
            .stdout(sheepdog::Stdio::piped());
        let mut sd_head = sheepdog::Command::new("head");
        sd_head.args(["-c", PIPELINE_ARG, "/dev/zero"]);
        Bench {
            buf: black_box(buf),
            sd_capture,
            sd_seq,
            sd_head,
            sd_cat: sheepdog::Command::new("cat"),
            sd_buffers: (Vec::new(), Vec::new()),
            switches: Vec::new(),
        }
    }

    async fn run(&mut self, kind: Kind, variant: Variant) -> BoxResult<Duration> {
        let before = context_switches();
        let elapsed = self.run_one(kind, variant).await?;
        let after = context_switches();
        self.switches
            .push(((kind, variant), (after.0 - before.0, after.1 - before.1)));
        Ok(elapsed)
    }

    /// The median context switches of `variant`'s runs in phase `kind`.
    fn median_switches(&self, kind: Kind, variant: Variant) -> (i64, i64) {
        let runs = || {
            self.switches
                .iter()
                .filter(move |(key, _)| *key == (kind, variant))
                .map(|(_, counts)| *counts)
        };
        let median = |mut counts: Vec<i64>| {
            counts.sort_unstable();
            counts.get(counts.len() / 2).copied().unwrap_or(0)
        };
        (
            median(runs().map(|c| c.0).collect()),
            median(runs().map(|c| c.1).collect()),
        )
    }

    async fn run_one(&mut self, kind: Kind, variant: Variant) -> BoxResult<Duration> {
        match (kind, variant) {
            (Kind::Capture, Variant::Floor) => floor_capture(&mut self.buf),
            (Kind::Capture, Variant::FreshFloor) => fresh_floor_capture(),
            (Kind::Capture, Variant::Std) => std_capture(),
            (Kind::Capture, Variant::Tokio) => tokio_capture().await,
            (Kind::Capture, Variant::Sheepdog) => {
                sheepdog_capture(&self.sd_capture, &mut (Vec::new(), Vec::new())).await
            }
            (Kind::Capture, Variant::SheepdogReused) => {
                sheepdog_capture(&self.sd_capture, &mut self.sd_buffers).await
            }
            (Kind::Lines, Variant::Floor) => floor_lines(&mut self.buf[..CHUNK]),
            (Kind::Lines, Variant::Std) => std_lines(),
            (Kind::Lines, Variant::Tokio) => tokio_lines().await,
            (Kind::Lines, Variant::Sheepdog) => sheepdog_lines(&self.sd_seq).await,
            (Kind::Pipeline, Variant::Floor) => floor_pipeline(&mut self.buf[..PIPELINE_BYTES]),
            (Kind::Pipeline, Variant::Tokio) => tokio_pipeline().await,
            (Kind::Pipeline, Variant::Sheepdog) => {
                sheepdog_pipeline(&self.sd_head, &self.sd_cat, &mut Vec::new()).await
            }
            (Kind::Pipeline, Variant::SheepdogReused) => {
                sheepdog_pipeline(&self.sd_head, &self.sd_cat, &mut self.sd_buffers.0).await
            }
            (Kind::Pipeline, Variant::Std) => Err("no std variant for the pipeline".into()),
            (Kind::Lines, Variant::SheepdogReused) => Err("no reused buffer for lines".into()),
            (_, Variant::FreshFloor) => Err("a fresh floor for the capture only".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks and the std child guard.
// ---------------------------------------------------------------------------------------------

fn check_status(who: &str, success: bool, status: &dyn Display) -> BoxResult<()> {
    if success {
        Ok(())
    } else {
        Err(format!("{who}: the child failed: {status}").into())
    }
}

fn check_count(who: &str, what: &str, got: usize, want: usize) -> BoxResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{who}: {got} {what}, expected {want}").into())
    }
}

/// A std child that is killed (if still running) and reaped when dropped, so that no error
/// path leaves one behind. After a successful `wait`, std's `kill` sends nothing and `wait`
/// returns the kept status.
struct StdChild(std::process::Child);

impl StdChild {
    fn spawn(cmd: &mut std::process::Command, what: &str) -> BoxResult<StdChild> {
        cmd.spawn().map(StdChild).context(what)
    }

    fn wait_success(&mut self, who: &str) -> BoxResult<()> {
        let status = self.0.wait().context(who)?;
        check_status(who, status.success(), &status)
    }
}

impl Drop for StdChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `read(2)` until end-of-file, at most 64 KiB at a time, into `buf`; returns the byte count.
/// More bytes than `buf` holds is an error (one extra probe read checks for end-of-file).
fn read_raw(pipe: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    loop {
        let end = (filled + CHUNK).min(buf.len());
        let result = if filled == end {
            let mut probe = [0u8; 1];
            match pipe.read(&mut probe) {
                Ok(0) => return Ok(filled),
                Ok(_) => return Err(io::Error::other("more bytes than the buffer holds")),
                Err(err) => Err(err),
            }
        } else {
            pipe.read(&mut buf[filled..end])
        };
        match result {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: capture.
// ---------------------------------------------------------------------------------------------

fn head_std(bytes: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("head");
    cmd.args(["-c", bytes, "/dev/zero"]);
    cmd
}

/// A std `head` with its stdout piped, read by `read` into a buffer of its own (as the floor
/// variants do), then waited for; `read` returns the byte count.
fn floor_capture_with(
    who: &str,
    read: impl FnOnce(&mut std::process::ChildStdout) -> io::Result<usize>,
) -> BoxResult<Duration> {
    let start = Instant::now();
    let mut child = StdChild::spawn(
        head_std(CAPTURE_ARG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
        &format!("{who}: spawn head"),
    )?;
    let mut stdout = child
        .0
        .stdout
        .take()
        .with_context(|| format!("{who}: head's stdout"))?;
    let n = read(&mut stdout).with_context(|| format!("{who}: read head's stdout"))?;
    drop(stdout);
    child.wait_success(&format!("{who}: head"))?;
    let elapsed = start.elapsed();
    check_count(who, "bytes", n, CAPTURE_BYTES)?;
    Ok(elapsed)
}

fn floor_capture(buf: &mut [u8]) -> BoxResult<Duration> {
    floor_capture_with("floor", |stdout| read_raw(stdout, buf))
}

fn fresh_floor_capture() -> BoxResult<Duration> {
    floor_capture_with("fresh floor", |stdout| {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf)?;
        Ok(black_box(buf).len())
    })
}

fn std_capture() -> BoxResult<Duration> {
    let start = Instant::now();
    let out = head_std(CAPTURE_ARG).output().context("std: head")?;
    let elapsed = start.elapsed();
    check_status("std: head", out.status.success(), &out.status)?;
    check_count("std", "bytes", out.stdout.len(), CAPTURE_BYTES)?;
    Ok(elapsed)
}

async fn tokio_capture() -> BoxResult<Duration> {
    let start = Instant::now();
    let out = tokio::process::Command::new("head")
        .args(["-c", CAPTURE_ARG, "/dev/zero"])
        .kill_on_drop(true)
        .output()
        .await
        .context("tokio: head")?;
    let elapsed = start.elapsed();
    check_status("tokio: head", out.status.success(), &out.status)?;
    check_count("tokio", "bytes", out.stdout.len(), CAPTURE_BYTES)?;
    Ok(elapsed)
}

/// `output_with_buffers` into `buffers` (empty ones: a fresh allocation, as `output()`), which
/// get what was captured, for the next run.
async fn sheepdog_capture(
    cmd: &sheepdog::Command,
    buffers: &mut (Vec<u8>, Vec<u8>),
) -> BoxResult<Duration> {
    let (stdout, stderr) = std::mem::take(buffers);
    let start = Instant::now();
    let out = cmd
        .output_with_buffers(stdout, stderr)
        .await
        .context("sheepdog: head")?;
    let elapsed = start.elapsed();
    check_status("sheepdog: head", out.status.success(), &out.status)?;
    check_count("sheepdog", "bytes", out.stdout.len(), CAPTURE_BYTES)?;
    *buffers = (out.stdout, out.stderr);
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Phase 2: lines.
// ---------------------------------------------------------------------------------------------

fn seq_std() -> std::process::Command {
    let mut cmd = std::process::Command::new("seq");
    cmd.arg(LINES_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

fn floor_lines(chunk: &mut [u8]) -> BoxResult<Duration> {
    let start = Instant::now();
    let mut child = StdChild::spawn(&mut seq_std(), "floor: spawn seq")?;
    let mut stdout = child.0.stdout.take().context("floor: seq's stdout")?;
    let mut lines = 0;
    loop {
        match stdout.read(chunk) {
            Ok(0) => break,
            Ok(n) => lines += chunk[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("floor: read seq's stdout: {err}").into()),
        }
    }
    drop(stdout);
    child.wait_success("floor: seq")?;
    let elapsed = start.elapsed();
    check_count("floor", "lines", lines, LINES)?;
    Ok(elapsed)
}

fn std_lines() -> BoxResult<Duration> {
    let start = Instant::now();
    let mut child = StdChild::spawn(&mut seq_std(), "std: spawn seq")?;
    let stdout = child.0.stdout.take().context("std: seq's stdout")?;
    let mut lines = 0;
    for line in io::BufReader::new(stdout).lines() {
        black_box(line.context("std: read seq's stdout")?);
        lines += 1;
    }
    child.wait_success("std: seq")?;
    let elapsed = start.elapsed();
    check_count("std", "lines", lines, LINES)?;
    Ok(elapsed)
}

async fn tokio_lines() -> BoxResult<Duration> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new("seq")
        .arg(LINES_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("tokio: spawn seq")?;
    let stdout = child.stdout.take().context("tokio: seq's stdout")?;
    let mut reader = tokio::io::BufReader::new(stdout).lines();
    let mut lines = 0;
    while let Some(line) = reader
        .next_line()
        .await
        .context("tokio: read seq's stdout")?
    {
        black_box(line);
        lines += 1;
    }
    drop(reader);
    let status = child.wait().await.context("tokio: wait for seq")?;
    let elapsed = start.elapsed();
    check_status("tokio: seq", status.success(), &status)?;
    check_count("tokio", "lines", lines, LINES)?;
    Ok(elapsed)
}

async fn sheepdog_lines(cmd: &sheepdog::Command) -> BoxResult<Duration> {
    let start = Instant::now();
    let mut child = cmd.spawn().context("sheepdog: spawn seq")?;
    let mut reader = child.lines();
    let mut lines = 0;
    while let Some(line) = reader.next().await.context("sheepdog: read seq's stdout")? {
        black_box(line.bytes);
        lines += 1;
    }
    drop(reader);
    let status = child.wait().await.context("sheepdog: wait for seq")?;
    let elapsed = start.elapsed();
    check_status("sheepdog: seq", status.success(), &status)?;
    check_count("sheepdog", "lines", lines, LINES)?;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: pipeline.
// ---------------------------------------------------------------------------------------------

fn floor_pipeline(buf: &mut [u8]) -> BoxResult<Duration> {
    let start = Instant::now();
    let mut head = StdChild::spawn(
        head_std(PIPELINE_ARG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
        "floor: spawn head",
    )?;
    let head_out = head.0.stdout.take().context("floor: head's stdout")?;
    // The temporary `Command` holding this process's copy of the pipe's read end is dropped at
    // the end of the statement: from then on only `cat` holds it, as in a shell.
    let mut cat = StdChild::spawn(
        std::process::Command::new("cat")
            .stdin(Stdio::from(head_out))
            .stdout(Stdio::piped()),
        "floor: spawn cat",
    )?;
    let mut stdout = cat.0.stdout.take().context("floor: cat's stdout")?;
    let n = read_raw(&mut stdout, buf).context("floor: read cat's stdout")?;
    drop(stdout);
    cat.wait_success("floor: cat")?;
    head.wait_success("floor: head")?;
    let elapsed = start.elapsed();
    check_count("floor", "bytes", n, PIPELINE_BYTES)?;
    Ok(elapsed)
}

async fn tokio_pipeline() -> BoxResult<Duration> {
    let start = Instant::now();
    let mut head = tokio::process::Command::new("head")
        .args(["-c", PIPELINE_ARG, "/dev/zero"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("tokio: spawn head")?;
    let mut cat = tokio::process::Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("tokio: spawn cat")?;
    let mut head_out = head.stdout.take().context("tokio: head's stdout")?;
    let mut cat_in = cat.stdin.take().context("tokio: cat's stdin")?;
    let mut cat_out = cat.stdout.take().context("tokio: cat's stdout")?;
    let copy = async move {
        let copied = tokio::io::copy(&mut head_out, &mut cat_in).await;
        // `cat` reads end-of-file once its stdin is closed.
        drop(cat_in);
        copied
    };
    let mut out = Vec::new();
    let (copied, read) = tokio::join!(copy, cat_out.read_to_end(&mut out));
    let copied = copied.context("tokio: copy head's stdout to cat's stdin")?;
    read.context("tokio: read cat's stdout")?;
    drop(cat_out);
    let cat_status = cat.wait().await.context("tokio: wait for cat")?;
    let head_status = head.wait().await.context("tokio: wait for head")?;
    let elapsed = start.elapsed();
    check_status("tokio: cat", cat_status.success(), &cat_status)?;
    check_status("tokio: head", head_status.success(), &head_status)?;
    check_count("tokio", "bytes copied", copied as usize, PIPELINE_BYTES)?;
    check_count("tokio", "bytes", out.len(), PIPELINE_BYTES)?;
    Ok(elapsed)
}

/// `Pipeline::output_with_buffer` into `buffer`, which gets what was captured.
async fn sheepdog_pipeline(
    head: &sheepdog::Command,
    cat: &sheepdog::Command,
    buffer: &mut Vec<u8>,
) -> BoxResult<Duration> {
    let stdout = std::mem::take(buffer);
    let start = Instant::now();
    let out = sheepdog::Pipeline::new(head)
        .pipe(cat)
        .output_with_buffer(stdout)
        .await
        .context("sheepdog: head | cat")?;
    let elapsed = start.elapsed();
    if let Some((stage, status)) = out.failure() {
        return Err(format!("sheepdog: head | cat: stage {stage} failed: {status}").into());
    }
    check_count("sheepdog", "bytes", out.stdout.len(), PIPELINE_BYTES)?;
    *buffer = out.stdout;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Running, statistics and tables.
// ---------------------------------------------------------------------------------------------

/// Runs one phase, interleaved, and prints its table; returns each variant's stats, in the
/// phase's order (the floor first).
async fn run_phase(bench: &mut Bench, phase: &Phase) -> BoxResult<Vec<(Variant, Stats)>> {
    let variants = phase.variants;
    let stats = interleaved(
        variants,
        phase.warmup,
        phase.rounds,
        None,
        async |variant| bench.run(phase.kind, variant).await,
    )
    .await?;
    if stats[0].0 != Variant::Floor {
        return Err("the floor must be the first variant".into());
    }
    let floor = phase.rate(stats[0].1.median);

    let (unit, _) = phase.rate_unit();
    println!();
    println!(
        "Phase {}: {} ({} rounds after {} warm-up)",
        phase.name, phase.description, phase.rounds, phase.warmup
    );
    println!(
        "  {:<11} {:>10} {:>16} {:>16} {:>10} {:>16}",
        "variant",
        "median ms",
        format!("{unit} (median)"),
        format!("{unit} (best)"),
        "vs floor",
        "switches (v/i)"
    );
    for (variant, s) in &stats {
        let rate = phase.rate(s.median);
        let (voluntary, involuntary) = bench.median_switches(phase.kind, *variant);
        println!(
            "  {:<11} {:>10.1} {:>16.1} {:>16.1} {:>9.3}x {:>16}",
            variant.name(),
            s.median.as_secs_f64() * 1e3,
            rate,
            phase.rate(s.best),
            rate / floor,
            format!("{voluntary}/{involuntary}")
        );
    }
    Ok(stats)
}

/// `1 Capture: floor 1234.5 MiB/s, std 0.98x, ...` (median throughput / the floor's).
fn summary_line(phase: &Phase, stats: &[(Variant, Stats)]) -> String {
    let floor = phase.rate(stats[0].1.median);
    let (unit, _) = phase.rate_unit();
    let parts: Vec<String> = stats
        .iter()
        .map(|(variant, s)| {
            if *variant == Variant::Floor {
                format!("floor {floor:.1} {unit}")
            } else {
                format!("{} {:.2}x", variant.name(), phase.rate(s.median) / floor)
            }
        })
        .collect();
    format!("  {} {:?}: {}", phase.name, phase.kind, parts.join(", "))
}

/// This process's live children, from /proc (`None` if the kernel does not list them).
fn live_children() -> Option<Vec<String>> {
    let mut children = Vec::new();
    for task in fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("children");
        children.extend(
            fs::read_to_string(path)
                .ok()?
                .split_whitespace()
                .map(|pid| {
                    // `pid (comm) state ...`, for the report.
                    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let about = stat.split(' ').take(3).collect::<Vec<_>>().join(" ");
                    if about.is_empty() {
                        pid.to_owned()
                    } else {
                        about
                    }
                }),
        );
    }
    Some(children)
}

/// Waits until sheepdog's background work is done and no child of this process is left.
async fn check_nothing_left() -> BoxResult<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let background = sheepdog::__private::background_work();
        let children = live_children();
        // The owner-death sentinel (`sheepdog-sentinel`, its comm cut to 15 bytes) is
        // sheepdog's by design: it lives as long as this process and ends when it does.
        let children = children.map(|all| {
            all.into_iter()
                .filter(|child| !child.contains("(sheepdog-sentin)"))
                .collect::<Vec<_>>()
        });
        let clean = background == 0 && children.as_ref().is_none_or(Vec::is_empty);
        if clean {
            match children {
                Some(_) => println!(
                    "nothing left: no live child (but sheepdog's sentinel), no background work"
                ),
                None => println!("no background work left (the kernel lists no children here)"),
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "left behind after {PATIENCE:?}: background work {background}, children {children:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() -> BoxResult<()> {
    if std::env::var("SHEEPDOG_BENCH_RUNTIME").is_ok_and(|runtime| runtime == "multi") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot build the tokio runtime")?;
        println!("runtime: multi-thread");
        return runtime.block_on(run());
    }
    run_timed(run())
}

async fn run() -> BoxResult<()> {
    let rounds = rounds_override()?;
    let phase = |name, description, kind, variants| Phase {
        name,
        description,
        kind,
        variants,
        warmup: rounds.map_or(DEFAULT_WARMUP, |r: usize| (r / 10).max(1)),
        rounds: rounds.unwrap_or(DEFAULT_ROUNDS),
    };
    const ALL: &[Variant] = &[
        Variant::Floor,
        Variant::FreshFloor,
        Variant::Std,
        Variant::Tokio,
        Variant::Sheepdog,
        Variant::SheepdogReused,
    ];
    let phases = [
        phase(
            "1",
            "capture 256 MiB of stdout from `head -c 268435456 /dev/zero`",
            Kind::Capture,
            ALL,
        ),
        phase(
            "2",
            "stream the 2 000 000 lines of `seq 2000000`",
            Kind::Lines,
            &[
                Variant::Floor,
                Variant::Std,
                Variant::Tokio,
                Variant::Sheepdog,
            ],
        ),
        phase(
            "3",
            "`head -c 134217728 /dev/zero | cat`, read the last stage's 128 MiB",
            Kind::Pipeline,
            &[
                Variant::Floor,
                Variant::Tokio,
                Variant::Sheepdog,
                Variant::SheepdogReused,
            ],
        ),
    ];

    let mut probe = sheepdog::Command::new("true").spawn()?;
    println!(
        "sheepdog spawn path: {:?} (pid {}, {} CPUs)",
        probe.spawn_path(),
        std::process::id(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    probe.wait().await?;
    drop(probe);
    if let Ok(size) = fs::read_to_string("/proc/sys/fs/pipe-max-size") {
        println!(
            "pipe buffer: default (64 KiB); pipe-max-size {}",
            size.trim()
        );
    }

    let mut bench = Bench::new();
    let mut results = Vec::with_capacity(phases.len());
    for phase in &phases {
        results.push(run_phase(&mut bench, phase).await?);
    }
    drop(bench);

    println!();
    println!("Summary (median throughput, and each as a ratio of the floor's):");
    for (phase, stats) in phases.iter().zip(&results) {
        println!("{}", summary_line(phase, stats));
    }
    println!();
    check_nothing_left().await
}
