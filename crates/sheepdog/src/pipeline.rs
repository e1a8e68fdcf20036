//! `Pipeline`: `a | b | c` without a shell. Stages are joined by kernel pipes (the bytes never
//! pass through this process, and a reader that quits gives the writer SIGPIPE, as in a
//! shell), all stages live in one herd, and each stage's status is kept.

use std::io;
use std::time::Duration;

use crate::capture::{capture, Running, Streams};
use crate::child::Child;
use crate::command::{Command, Stdio};
use crate::error::Error;
use crate::herd::{Herd, Mechanism};
use crate::lines::Lines;
use crate::output::Ending;
use crate::pipe::{ChildStdin, ChildStdout};
use crate::status::ExitStatus;
use crate::stop::StopPlan;
use crate::time::Deadline;

/// Commands whose stdout feeds the next one's stdin.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sheepdog::Error> {
/// use sheepdog::{Command, Pipeline};
/// let out = Pipeline::new(&Command::new("yes"))
///     .pipe(Command::new("head").args(["-n", "3"]))
///     .output()
///     .await?;
/// assert_eq!(out.stdout, b"y\ny\ny\n");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Command>,
    timeout: Option<Duration>,
    stop_plan: StopPlan,
    mechanism: Option<Mechanism>,
}

/// What a [`Pipeline`] printed (its last stage's stdout) and how each stage ended.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let echo = sheepdog::Command::new("echo");
/// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
/// for (i, status) in out.statuses.iter().enumerate() {
///     println!("stage {i}: {status}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineOutput {
    /// Each stage's status, in order.
    pub statuses: Vec<ExitStatus>,
    /// The last stage's stdout.
    pub stdout: Vec<u8>,
    ending: Ending,
    truncated: bool,
}

impl PipelineOutput {
    /// `pipefail`: the status of the rightmost stage that did not succeed, or `None` if all did.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// match out.failure() {
    ///     None => println!("all stages succeeded"),
    ///     Some((stage, status)) => println!("stage {stage} {status}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn failure(&self) -> Option<(usize, ExitStatus)> {
        self.statuses
            .iter()
            .enumerate()
            .rev()
            .find(|(_, status)| !status.success())
            .map(|(stage, status)| (stage, *status))
    }

    /// Whether every stage succeeded (`pipefail`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// assert!(out.success());
    /// # Ok(()) }
    /// ```
    pub fn success(&self) -> bool {
        self.failure().is_none()
    }

    /// Whether the pipeline ran into its [timeout](Pipeline::timeout) and was stopped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// if out.timed_out() { eprintln!("too slow"); }
    /// # Ok(()) }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.statuses.iter().any(ExitStatus::timed_out)
    }

    /// Whether the last stage's stdout went past its [capture limit](Command::capture_limit)
    /// and only part of it was kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// if out.stdout_truncated() { eprintln!("(output cut)"); }
    /// # Ok(()) }
    /// ```
    pub fn stdout_truncated(&self) -> bool {
        self.truncated
    }

    /// Whether the output went past the capture limit under
    /// [`OverLimit::Fail`](crate::OverLimit::Fail), and the pipeline was killed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// if out.limit_exceeded() { eprintln!("too much output"); }
    /// # Ok(()) }
    /// ```
    pub fn limit_exceeded(&self) -> bool {
        self.ending == Ending::LimitExceeded
    }

    /// Whether, once every stage had ended, something they started still held the output
    /// open past the [drain timeout](Command::drain_timeout), and was killed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let echo = sheepdog::Command::new("echo");
    /// # let out = sheepdog::Pipeline::new(&echo).pipe(&sheepdog::Command::new("cat")).output().await?;
    /// if out.held_open() { eprintln!("a daemon kept the pipe open"); }
    /// # Ok(()) }
    /// ```
    pub fn held_open(&self) -> bool {
        self.ending == Ending::HeldOpen
    }
}

impl Pipeline {
    /// A pipeline of one stage.
    ///
    /// ```
    /// let pipeline = sheepdog::Pipeline::new(&sheepdog::Command::new("ls"));
    /// ```
    pub fn new(first: &Command) -> Pipeline {
        Pipeline {
            stages: vec![first.clone()],
            timeout: None,
            stop_plan: StopPlan::default(),
            mechanism: None,
        }
    }

    /// Adds a stage that reads what the previous one writes.
    ///
    /// ```
    /// use sheepdog::{Command, Pipeline};
    /// let mut pipeline = Pipeline::new(&Command::new("ls"));
    /// pipeline.pipe(Command::new("wc").arg("-l"));
    /// ```
    pub fn pipe(&mut self, next: &Command) -> &mut Pipeline {
        self.stages.push(next.clone());
        self
    }

    /// The longest the whole pipeline may run; then every stage and everything they started
    /// is stopped by the [stop plan](Pipeline::stop_plan), and every stage's status says
    /// [timed out](ExitStatus::timed_out). Time suspended by job control does not count.
    /// The stages' own [`Command::timeout`]s do not apply: the pipeline's herd is one.
    ///
    /// ```
    /// use sheepdog::{Command, Pipeline};
    /// let mut pipeline = Pipeline::new(&Command::new("find").arg("/"));
    /// pipeline
    ///     .pipe(&Command::new("wc"))
    ///     .timeout(std::time::Duration::from_secs(60));
    /// ```
    pub fn timeout(&mut self, timeout: Duration) -> &mut Pipeline {
        self.timeout = Some(timeout);
        self
    }

    /// How a timed-out pipeline is stopped ([`StopPlan::default`]: SIGTERM to the tree, 5 s,
    /// SIGKILL).
    ///
    /// ```
    /// use sheepdog::{Command, Pipeline, StopPlan};
    /// let mut pipeline = Pipeline::new(&Command::new("make"));
    /// pipeline
    ///     .pipe(&Command::new("tee").arg("build.log"))
    ///     .stop_plan(StopPlan::grace(std::time::Duration::from_secs(1)));
    /// ```
    pub fn stop_plan(&mut self, plan: StopPlan) -> &mut Pipeline {
        self.stop_plan = plan;
        self
    }

    /// The containment of the pipeline's herd, as [`Command::mechanism`] sets it for one
    /// command (the stages' own settings do not apply: the pipeline's herd is one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sheepdog::{Command, Mechanism, Pipeline};
    /// let out = Pipeline::new(Command::new("echo").arg("b\na"))
    ///     .pipe(&Command::new("sort"))
    ///     .mechanism(Mechanism::ProcessGroup)
    ///     .output()
    ///     .await?;
    /// assert_eq!(out.stdout, b"a\nb\n");
    /// # Ok(()) }
    /// ```
    pub fn mechanism(&mut self, mechanism: Mechanism) -> &mut Pipeline {
        self.mechanism = Some(mechanism);
        self
    }

    /// Starts every stage in one herd, each stage's stdout joined to the next one's stdin by a
    /// kernel pipe. The first stage's stdin and the last stage's stdout are as their commands
    /// set them (inherited by default); pipe the last one to stream the result.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sheepdog::{Command, Pipeline, Stdio};
    /// let mut running = Pipeline::new(Command::new("sh").args(["-c", "echo ok; echo error: disk full"]))
    ///     .pipe(Command::new("grep").args(["--line-buffered", "error"]).stdout(Stdio::piped()))
    ///     .spawn()?;
    /// let mut lines = running.lines();
    /// while let Some(line) = lines.next().await? {
    ///     println!("{}", line.text());
    /// }
    /// running.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self) -> Result<RunningPipeline, Error> {
        let first = &self.stages[0];
        let mut builder = Herd::builder();
        if let Some(mechanism) = self.mechanism {
            builder.mechanism(mechanism);
        }
        let herd = builder
            .build_or_os_error()
            .map_err(|(_, source)| first.os_error("create a herd", source))?;
        let last = self.stages.len() - 1;
        let mut stages = Vec::with_capacity(self.stages.len());
        let mut next_stdin: Option<Stdio> = None;
        for (i, stage) in self.stages.iter().enumerate() {
            let mut cmd = stage.clone();
            if let Some(stdin) = next_stdin.take() {
                cmd.stdin(stdin);
            }
            if i < last {
                // Straight from this stage to the next: the kernel's pipe, not ours.
                let (read, write) =
                    crate::sys::pipe().map_err(|e| first.os_error("create a pipe", e))?;
                cmd.stdout(Stdio::from(write));
                next_stdin = Some(Stdio::from(read));
            }
            // `cmd` (and with it this process's copies of the pipe ends) is dropped right after
            // the spawn, so a stage sees end-of-file or SIGPIPE exactly as in a shell.
            stages.push(herd.spawn_untimed(&cmd)?);
        }
        if let Some(timeout) = self.timeout {
            herd.enforce(Deadline::after(timeout), self.stop_plan.clone(), None, true);
        }
        Ok(RunningPipeline {
            herd,
            stages,
            drain: self.stages[last].get_drain(),
            drained: None,
        })
    }

    /// Runs the pipeline and captures the last stage's stdout; stderr is inherited unless a
    /// stage sets it, and the first stage reads `/dev/null` unless it sets stdin or
    /// [input](Command::input). The last stage's [capture limit](Command::capture_limit) and
    /// [drain timeout](Command::drain_timeout) apply. When the last stage ends, the others get
    /// the drain timeout to end too; then whatever is left of the pipeline is killed.
    /// Cancelling kills every stage's tree at once and loses the output.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// use sheepdog::{Command, Pipeline};
    /// let out = Pipeline::new(Command::new("ls").arg("/"))
    ///     .pipe(Command::new("wc").arg("-l"))
    ///     .output()
    ///     .await?;
    /// println!("{} entries", String::from_utf8_lossy(&out.stdout).trim());
    /// # Ok(()) }
    /// ```
    pub async fn output(&self) -> Result<PipelineOutput, Error> {
        self.output_with_buffer(Vec::new()).await
    }

    /// [`output`](Pipeline::output) into a buffer the caller provides (cleared first, its
    /// capacity kept), as [`Command::output_with_buffers`] does. Cancelling is as for
    /// `output` (the buffer is dropped).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// use sheepdog::{Command, Pipeline};
    /// let mut pipeline = Pipeline::new(Command::new("cat").arg("big.log"));
    /// pipeline.pipe(&Command::new("sort"));
    /// let first = pipeline.output_with_buffer(Vec::with_capacity(64 << 20)).await?;
    /// let again = pipeline.output_with_buffer(first.stdout).await?;
    /// # Ok(()) }
    /// ```
    pub async fn output_with_buffer(&self, stdout: Vec<u8>) -> Result<PipelineOutput, Error> {
        let (first, last) = (&self.stages[0], &self.stages[self.stages.len() - 1]);
        let feed = first.take_input()?;
        let mut pipeline = self.clone();
        pipeline.stages[0].stdin_for_capture(feed.is_some());
        let last_index = pipeline.stages.len() - 1;
        pipeline.stages[last_index].outputs_for_capture(false);
        let mut running = pipeline.spawn()?;
        let streams = Streams {
            stdout: running.take_stdout(),
            stderr: None,
            stdin: running.take_stdin().zip(feed),
        };
        let (limit, drain) = (last.get_capture_limit(), last.get_drain());
        let got = capture(&mut running, streams, [stdout, Vec::new()], limit, drain)
            .await
            .map_err(|(action, source)| first.os_error(action, source))?;
        drop(running);
        let [stdout, _] = got.bufs;
        Ok(PipelineOutput {
            statuses: got.status,
            stdout,
            ending: got.ending,
            truncated: got.truncated[0],
        })
    }
}

/// A started [`Pipeline`]: its stages (one [`Child`] each) in one herd.
///
/// Dropping it kills every stage and everything they started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sheepdog::{Command, Pipeline};
/// let mut running = Pipeline::new(&Command::new("yes")).pipe(&Command::new("sleep").arg("0.1")).spawn()?;
/// let statuses = running.wait().await?;
/// assert_eq!(statuses[0].signal(), Some(sheepdog::Signal::PIPE));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a RunningPipeline kills every stage"]
pub struct RunningPipeline {
    herd: Herd,
    stages: Vec<Child>,
    /// How long upstream stages may run on once the last stage has ended.
    drain: Duration,
    /// When upstream stages are killed, once the last stage has ended.
    drained: Option<tokio::time::Instant>,
}

impl RunningPipeline {
    /// The stages, in order, for their pids, their signals or their pipes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// let pids: Vec<u32> = running.stages().iter().map(|stage| stage.pid()).collect();
    /// # Ok(()) }
    /// ```
    pub fn stages(&mut self) -> &mut [Child] {
        &mut self.stages
    }

    /// The herd every stage runs in.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// println!("{} processes", running.herd().members()?.len());
    /// # Ok(()) }
    /// ```
    pub fn herd(&self) -> &Herd {
        &self.herd
    }

    /// The first stage's stdin pipe, if its command had [`Stdio::piped`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// let stdin = running.take_stdin();
    /// # Ok(()) }
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stages[0].take_stdin()
    }

    /// The last stage's stdout pipe, if its command had [`Stdio::piped`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// let stdout = running.take_stdout();
    /// # Ok(()) }
    /// ```
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        let last = self.stages.len() - 1;
        self.stages[last].take_stdout()
    }

    /// The last stage's piped stdout and stderr, as lines ([`Child::lines`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, mut cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # cat.stdout(sheepdog::Stdio::piped());
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// let mut lines = running.lines();
    /// while let Some(line) = lines.next().await? {
    ///     println!("{}", line.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lines(&mut self) -> Lines {
        let last = self.stages.len() - 1;
        self.stages[last].lines()
    }

    /// Waits for the pipeline and returns each stage's status. Once the last stage has ended,
    /// upstream stages get the last stage's [drain timeout](Command::drain_timeout) to end
    /// (a writer's next write gets SIGPIPE); a stage still running then is killed. At the
    /// [timeout](Pipeline::timeout), the whole herd is stopped, whether or not anybody waits;
    /// a timed-out pipeline's wait returns once that stop has ended.
    ///
    /// Cancel-safe: dropping the future loses nothing (each stage keeps its status, the drain
    /// period keeps its end, and a stop under way goes on).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// let statuses = running.wait().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> io::Result<Vec<ExitStatus>> {
        let lifecycle = self.herd.lifecycle();
        lifecycle.start_pending();
        let mut statuses = self.wait_stages().await?;
        self.herd.lifecycle().conclude(&mut statuses).await?;
        Ok(statuses)
    }

    /// Kills every stage and everything they started, and returns when all are gone.
    /// Cancel-safe, as [`Herd::kill`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (echo, cat) = (sheepdog::Command::new("echo"), sheepdog::Command::new("cat"));
    /// # let mut running = sheepdog::Pipeline::new(&echo).pipe(&cat).spawn()?;
    /// running.kill().await?;
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self) -> io::Result<()> {
        self.herd.kill().await
    }

    async fn wait_stages(&mut self) -> io::Result<Vec<ExitStatus>> {
        let (last, upstream) = self
            .stages
            .split_last_mut()
            .expect("a pipeline has a stage");
        let last_status = last.wait().await?;
        let drained = *self
            .drained
            .get_or_insert_with(|| crate::time::later(tokio::time::Instant::now(), self.drain));
        let mut statuses = Vec::with_capacity(upstream.len() + 1);
        for stage in upstream {
            let status = match tokio::time::timeout_at(drained, stage.wait()).await {
                Ok(status) => status?,
                // It would never write again: stop it (the herd takes the rest at drop).
                Err(_) => {
                    stage.start_kill()?;
                    stage.wait().await?
                }
            };
            statuses.push(status);
        }
        statuses.push(last_status);
        Ok(statuses)
    }
}

impl Running for RunningPipeline {
    type Status = Vec<ExitStatus>;

    fn finish(&mut self) -> impl std::future::Future<Output = io::Result<Vec<ExitStatus>>> + Send {
        self.wait()
    }

    fn kill_tree(&mut self) -> io::Result<()> {
        self.herd.kill_now()
    }
}
