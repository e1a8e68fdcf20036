//! `Pipeline`: `a | b | c` without a shell. Stages are joined by kernel pipes (the bytes never
//! pass through this process, and a reader that quits gives the writer SIGPIPE, as in a
//! shell), all stages live in one herd, and each stage's status is kept.

use std::io;

use rustix::pipe::{pipe_with, PipeFlags};
use tokio::io::AsyncReadExt;

use crate::command::{Command, Stdio};
use crate::error::Error;
use crate::herd::Herd;
use crate::status::ExitStatus;

/// Commands whose stdout feeds the next one's stdin.
///
/// ```no_run
/// # async fn demo() -> Result<(), sheepdog::Error> {
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
}

/// What a [`Pipeline`] printed (its last stage's stdout) and how each stage ended.
///
/// ```no_run
/// # fn demo(out: sheepdog::PipelineOutput) {
/// for (i, status) in out.statuses.iter().enumerate() {
///     println!("stage {i}: {status}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineOutput {
    /// Each stage's status, in order.
    pub statuses: Vec<ExitStatus>,
    /// The last stage's stdout.
    pub stdout: Vec<u8>,
}

impl PipelineOutput {
    /// `pipefail`: the status of the rightmost stage that did not succeed, or `None` if all did.
    ///
    /// ```no_run
    /// # fn demo(out: sheepdog::PipelineOutput) {
    /// match out.failure() {
    ///     None => println!("all stages succeeded"),
    ///     Some((stage, status)) => println!("stage {stage} {status}"),
    /// }
    /// # }
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
    /// ```no_run
    /// # fn demo(out: sheepdog::PipelineOutput) {
    /// assert!(out.success());
    /// # }
    /// ```
    pub fn success(&self) -> bool {
        self.failure().is_none()
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
        }
    }

    /// Adds a stage that reads what the previous one writes.
    ///
    /// ```
    /// use sheepdog::{Command, Pipeline};
    /// let pipeline = Pipeline::new(&Command::new("ls")).pipe(Command::new("wc").arg("-l"));
    /// ```
    pub fn pipe(mut self, next: &Command) -> Pipeline {
        self.stages.push(next.clone());
        self
    }

    /// Runs every stage in one herd and captures the last stage's stdout; stderr is inherited
    /// unless a stage sets it, and the first stage reads `/dev/null` unless it sets stdin.
    /// When the last stage ends, whatever is left of the pipeline is killed.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sheepdog::Error> {
    /// use sheepdog::{Command, Pipeline};
    /// let out = Pipeline::new(Command::new("ls").arg("/"))
    ///     .pipe(Command::new("wc").arg("-l"))
    ///     .output()
    ///     .await?;
    /// println!("{} entries", String::from_utf8_lossy(&out.stdout).trim());
    /// # Ok(()) }
    /// ```
    pub async fn output(&self) -> Result<PipelineOutput, Error> {
        let first = &self.stages[0];
        let os_err = |action: &'static str| {
            move |source: io::Error| Error::Os {
                program: first.get_program().to_owned(),
                action,
                source,
            }
        };
        let herd = Herd::builder()
            .build_or_os_error()
            .map_err(|(_, source)| os_err("create a herd")(source))?;
        let last = self.stages.len() - 1;
        let mut children = Vec::with_capacity(self.stages.len());
        let mut next_stdin: Option<Stdio> = None;
        for (i, stage) in self.stages.iter().enumerate() {
            let mut cmd = stage.clone();
            match next_stdin.take() {
                Some(stdin) => {
                    cmd.stdin(stdin);
                }
                None if !stage.stdio_is_set()[0] => {
                    cmd.stdin(Stdio::null());
                }
                None => {}
            }
            if i < last {
                // Straight from this stage to the next: the kernel's pipe, not ours.
                let (read, write) =
                    pipe_with(PipeFlags::CLOEXEC).map_err(|e| os_err("create a pipe")(e.into()))?;
                cmd.stdout(Stdio::from(write));
                next_stdin = Some(Stdio::from(read));
            } else if !stage.stdio_is_set()[1] {
                cmd.stdout(Stdio::piped());
            }
            // `cmd` (and with it this process's copies of the pipe ends) is dropped right after
            // the spawn, so a stage sees end-of-file or SIGPIPE exactly as in a shell.
            children.push(herd.spawn(&cmd)?);
        }
        let mut stdout = Vec::new();
        if let Some(mut pipe) = children[last].take_stdout() {
            pipe.read_to_end(&mut stdout)
                .await
                .map_err(os_err("read the pipeline's output"))?;
        }
        let mut statuses = Vec::with_capacity(children.len());
        let last_status = children[last]
            .wait()
            .await
            .map_err(os_err("wait for the pipeline"))?;
        // The last stage is done: upstream stages get SIGPIPE on their next write; a stage
        // that would never write again is stopped with the rest of the herd.
        for child in &mut children[..last] {
            let status = match tokio::time::timeout(first.get_drain(), child.wait()).await {
                Ok(status) => status.map_err(os_err("wait for the pipeline"))?,
                Err(_) => {
                    child.kill().map_err(os_err("stop the pipeline"))?;
                    child
                        .wait()
                        .await
                        .map_err(os_err("wait for the pipeline"))?
                }
            };
            statuses.push(status);
        }
        statuses.push(last_status);
        drop(herd);
        Ok(PipelineOutput { statuses, stdout })
    }
}
