//! `Command`: what to run, as plain data.
//!
//! A `Command` owns no process and no kernel state beyond the file descriptors handed to it as
//! stdio, so it can be cloned, inspected and spawned any number of times. All work that can fail
//! (C strings, `PATH` search, pipes) happens at spawn time, in `sys`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::child::Child;
use crate::error::Error;
use crate::herd::Mechanism;
use crate::output::{Input, OverLimit};
use crate::stop::StopPlan;
use crate::sys::{SpawnError, SpawnRequest, SpawnStdio};

/// A program to run, with its arguments, environment, working directory and stdio.
///
/// Built like [`std::process::Command`]. Arguments and environment are [`OsStr`], so bytes that
/// are not UTF-8 pass through unchanged. A program name without a `/` is searched for in the
/// child's `PATH` (the one set with [`env`](Command::env) if any, else this process's).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sheepdog::{Command, Stdio};
///
/// let mut child = Command::new("ls")
///     .arg("-l")
///     .current_dir("/")
///     .env("LC_ALL", "C")
///     .stdout(Stdio::null())
///     .spawn()?;
/// let status = child.wait().await?;
/// assert!(status.success());
/// # Ok(()) }
/// ```
///
/// # Coming from `tokio::process`
///
/// The builder and the verbs have tokio's names (`kill_on_drop`, `process_group`, `uid`, `gid`,
/// `arg0`, the `get_*` getters), and `From<std::process::Command>` takes over what std lets a
/// caller read; docs/from-tokio.md in the repository lists what differs.
///
/// There is no `pre_exec`: the child is started by a vfork-style `clone3` that shares this
/// process's memory until it execs, so it may only make raw system calls, and a Rust closure
/// (which may allocate, lock, or touch state shared with the suspended parent) cannot run
/// there. What `pre_exec` hooks are mostly for has a setting here instead: `process_group`,
/// `uid`/`gid`, [`foreground`](Command::foreground), [`pass_fd`](Command::pass_fd), and
/// containment itself (a cgroup instead of `setsid` or `PR_SET_PDEATHSIG`).
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    arg0: Option<OsString>,
    args: Vec<OsString>,
    env_clear: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    current_dir: Option<PathBuf>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    /// Which of stdin, stdout, stderr were set, so that `output()` can default the others.
    stdio_set: [bool; 3],
    drain: Duration,
    /// What [`output`](Command::output) feeds the child's stdin.
    input: Option<Input>,
    capture_limit: Option<(usize, OverLimit)>,
    passed_fds: Vec<(RawFd, Arc<OwnedFd>)>,
    foreground: bool,
    timeout: Option<Duration>,
    stop_plan: StopPlan,
    kill_on_drop: bool,
    /// The containment of the private herd `spawn` makes (`None`: the strongest).
    mechanism: Option<Mechanism>,
    process_group: Option<i32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Command {
    /// A command that runs `program` with no arguments, this process's environment and working
    /// directory, and inherited stdio.
    ///
    /// ```
    /// let cmd = sheepdog::Command::new("echo");
    /// assert_eq!(cmd.get_program(), "echo");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            arg0: None,
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            current_dir: None,
            stdin: Stdio::inherit(),
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
            stdio_set: [false; 3],
            drain: Duration::from_secs(1),
            input: None,
            capture_limit: None,
            passed_fds: Vec::new(),
            foreground: false,
            timeout: None,
            stop_plan: StopPlan::default(),
            kill_on_drop: true,
            mechanism: None,
            process_group: None,
            uid: None,
            gid: None,
        }
    }

    /// Adds one argument.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("echo");
    /// cmd.arg("hello");
    /// assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["hello"]);
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several arguments.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("printf");
    /// cmd.args(["%s\n", "a", "b"]);
    /// assert_eq!(cmd.get_args().count(), 3);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `argv[0]`, the name the program sees for itself (the program name by default).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("/bin/sh");
    /// cmd.arg0("-sh"); // a login shell
    /// ```
    pub fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("env");
    /// cmd.env("GREETING", "hello");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several environment variables.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("env");
    /// cmd.envs([("A", "1"), ("B", "2")]);
    /// ```
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from the child's environment.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("env");
    /// cmd.env_remove("HOME");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the child with an empty environment; variables set afterwards are kept.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("/usr/bin/env");
    /// cmd.env_clear().env("PATH", "/bin");
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Sets the child's working directory. A relative program path is resolved from it.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("ls");
    /// cmd.current_dir("/");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets the child's standard input (inherited by default).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("cat");
    /// cmd.stdin(sheepdog::Stdio::null());
    /// ```
    pub fn stdin(&mut self, stdin: impl Into<Stdio>) -> &mut Command {
        self.stdin = stdin.into();
        self.stdio_set[0] = true;
        self
    }

    /// Sets the child's standard output (inherited by default).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("echo");
    /// cmd.stdout(sheepdog::Stdio::piped());
    /// ```
    pub fn stdout(&mut self, stdout: impl Into<Stdio>) -> &mut Command {
        self.stdout = stdout.into();
        self.stdio_set[1] = true;
        self
    }

    /// Sets the child's standard error (inherited by default).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("ls");
    /// cmd.stderr(sheepdog::Stdio::null());
    /// ```
    pub fn stderr(&mut self, stderr: impl Into<Stdio>) -> &mut Command {
        self.stderr = stderr.into();
        self.stdio_set[2] = true;
        self
    }

    /// Passes `fd` to the child as descriptor number `child_fd` (3 or more; 0 to 2 are set with
    /// [`stdin`](Command::stdin) and friends). No other descriptor beyond stdio survives exec.
    ///
    /// ```
    /// # fn demo() -> std::io::Result<()> {
    /// let file = std::fs::File::open("/etc/hostname")?;
    /// let mut cmd = sheepdog::Command::new("cat");
    /// cmd.arg("/dev/fd/3").pass_fd(3, file);
    /// # Ok(()) }
    /// ```
    pub fn pass_fd(&mut self, child_fd: RawFd, fd: impl Into<OwnedFd>) -> &mut Command {
        self.passed_fds.retain(|(target, _)| *target != child_fd);
        self.passed_fds.push((child_fd, Arc::new(fd.into())));
        self
    }

    /// Bounds the child's run time: `timeout` after it started, its whole private herd (the
    /// program and everything it started, also once the program itself has exited) is stopped
    /// by the [stop plan](Command::stop_plan), whether or not anybody waits: readers of its
    /// output then see end-of-file, and [`Child::wait`] returns a status that says it
    /// [timed out](crate::ExitStatus::timed_out) if the program was still running. Time spent
    /// suspended by [`suspend`](crate::suspend) does not count.
    ///
    /// The deadline runs in a task on the tokio runtime the command is spawned from; spawned
    /// outside one, it is enforced from the first `wait`. For a child of a shared herd
    /// ([`Herd::spawn`](crate::Herd::spawn)) only the child itself is stopped: to bound a
    /// shared herd's tree, give the herd a [deadline](crate::HerdBuilder::timeout).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("sleep")
    ///     .arg("100")
    ///     .timeout(std::time::Duration::from_millis(100))
    ///     .spawn()?
    ///     .wait()
    ///     .await?;
    /// assert!(status.timed_out());
    /// # Ok(()) }
    /// ```
    pub fn timeout(&mut self, timeout: Duration) -> &mut Command {
        self.timeout = Some(timeout);
        self
    }

    /// How a timed-out child's tree is stopped ([`StopPlan::default`]: SIGTERM, 5 s, SIGKILL).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sheepdog::{Signal, StopPlan, StopTarget};
    /// let mut cmd = sheepdog::Command::new("server");
    /// cmd.stop_plan(StopPlan::new().then(Signal::INT, StopTarget::Leader, Duration::from_secs(2)));
    /// ```
    pub fn stop_plan(&mut self, plan: StopPlan) -> &mut Command {
        self.stop_plan = plan;
        self
    }

    /// Shorthand for the stop plan "SIGTERM to the tree, wait `grace`, kill".
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("server");
    /// cmd.grace(std::time::Duration::from_secs(10));
    /// ```
    pub fn grace(&mut self, grace: Duration) -> &mut Command {
        self.stop_plan(StopPlan::grace(grace))
    }

    /// Gives the child the controlling terminal's foreground while it runs, for interactive
    /// programs (editors, REPLs, pagers) that read the terminal or should get its Ctrl-C.
    ///
    /// A herd's children run in background process groups of their own, and one that reads
    /// the terminal is stopped (SIGTTIN). With this, the child makes its group the foreground
    /// before it execs; the foreground goes back to the group that had it when the child is
    /// waited for or its `Child` dropped. Spawning fails if this process has no controlling
    /// terminal.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("vi").foreground(true).spawn()?.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn foreground(&mut self, interactive: bool) -> &mut Command {
        self.foreground = interactive;
        self
    }

    /// Whether dropping the [`Child`] that [`spawn`](Command::spawn) returns kills the
    /// program's whole tree (its private herd). `true` by default, unlike tokio's: a dropped
    /// handle leaves nothing running.
    ///
    /// With `false`, dropping the `Child` (or cancelling [`output`](Command::output) or
    /// [`status`](Command::status)) lets the tree run on: the program is reaped in the
    /// background when it exits, so it never stays a zombie, and its private herd lives on
    /// until the tree has left it by itself, then its cgroup is removed. The tree still dies
    /// with this program (the owner-death sentinel kills it on the cgroup mechanism; see
    /// docs/from-tokio.md), and its [timeout](Command::timeout) no longer applies once the
    /// `Child` is dropped. On the process-group mechanism the group is let go at once: nothing
    /// kills it afterwards, not even this program's death.
    ///
    /// A child of a shared herd ([`Herd::spawn`](crate::Herd::spawn)) lives as long as its
    /// herd, whatever this says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let child = sheepdog::Command::new("sleep").arg("0.1").kill_on_drop(false).spawn()?;
    /// drop(child); // `sleep` runs on, and is reaped when it exits
    /// # Ok(()) }
    /// ```
    pub fn kill_on_drop(&mut self, kill_on_drop: bool) -> &mut Command {
        self.kill_on_drop = kill_on_drop;
        self
    }

    /// Whether dropping the spawned [`Child`] kills its tree
    /// ([`kill_on_drop`](Command::kill_on_drop)).
    ///
    /// ```
    /// assert!(sheepdog::Command::new("ls").get_kill_on_drop());
    /// ```
    pub fn get_kill_on_drop(&self) -> bool {
        self.kill_on_drop
    }

    /// The containment of the private herd that [`spawn`](Command::spawn) (and with it
    /// [`output`](Command::output), [`status`](Command::status), [`run`](Command::run)) makes:
    /// `mechanism` or an error, as [`HerdBuilder::mechanism`](crate::HerdBuilder::mechanism)
    /// gives, instead of the strongest the host allows. Ignored by
    /// [`Herd::spawn`](crate::Herd::spawn), whose herd is made already.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let out = sheepdog::Command::new("echo")
    ///     .arg("hi")
    ///     .mechanism(sheepdog::Mechanism::ProcessGroup)
    ///     .output()
    ///     .await?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok(()) }
    /// ```
    pub fn mechanism(&mut self, mechanism: Mechanism) -> &mut Command {
        self.mechanism = Some(mechanism);
        self
    }

    /// Puts the child in process group `pgid` before it execs, as `setpgid(0, pgid)`: `0`
    /// makes it lead a new group whose id is its pid (tokio's and std's meaning).
    ///
    /// On the cgroup mechanism every child already leads a new group, so `0` changes nothing,
    /// and joining another group leaves the child in its herd (the cgroup holds it). On the
    /// process-group mechanism the herd *is* a process group: moving the child out of it would
    /// let it escape, so spawning with this set fails there (`InvalidInput`). A negative
    /// `pgid` fails likewise; a group the child may not join fails as the kernel says (`EPERM`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let child = sheepdog::Command::new("sleep").arg("1").process_group(0).spawn()?;
    /// // A group whose id is the child's pid (on the cgroup mechanism).
    /// # Ok(()) }
    /// ```
    pub fn process_group(&mut self, pgid: i32) -> &mut Command {
        self.process_group = Some(pgid);
        self
    }

    /// Sets the child's user id before it execs (`setuid(2)`); with it, a child started by
    /// root also drops its supplementary groups (as std does). Needs the privilege to do so;
    /// a refusal fails the spawn (`PermissionDenied`), with nothing left behind.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("id").uid(65534).gid(65534).status().await?;
    /// # Ok(()) }
    /// ```
    pub fn uid(&mut self, uid: u32) -> &mut Command {
        self.uid = Some(uid);
        self
    }

    /// Sets the child's group id before it execs (`setgid(2)`); see [`uid`](Command::uid).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("id");
    /// cmd.gid(65534);
    /// ```
    pub fn gid(&mut self, gid: u32) -> &mut Command {
        self.gid = Some(gid);
        self
    }

    /// Starts the program in a private [`Herd`](crate::Herd); the returned [`Child`] watches
    /// it. Everything the program starts stays in that herd, and dropping the `Child` kills the
    /// whole tree (unless [`kill_on_drop(false)`](Command::kill_on_drop)). Use
    /// [`Herd::spawn`](crate::Herd::spawn) to put several programs in one herd.
    ///
    /// Fails before anything runs if the program cannot be found or executed, the working
    /// directory is unusable, or a string holds a NUL byte; nothing is left behind then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let status = sheepdog::Command::new("true").spawn()?.wait().await?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self) -> Result<Child, Error> {
        let mut builder = crate::Herd::builder();
        builder.cpu_time_unasked();
        if let Some(mechanism) = self.mechanism {
            builder.mechanism(mechanism);
        }
        let herd = builder
            .build_or_os_error()
            .map_err(|(_, source)| self.os_error("create a herd", source))?;
        let child = herd.spawn_untimed(self)?;
        let timeout = self
            .get_timeout()
            .map(|(timeout, plan)| (crate::time::Deadline::after(timeout), plan));
        Ok(child.in_private_herd(herd, timeout))
    }

    /// The program, as given to [`Command::new`].
    ///
    /// ```
    /// assert_eq!(sheepdog::Command::new("ls").get_program(), "ls");
    /// ```
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, not counting `argv[0]`.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("ls");
    /// cmd.arg("-a");
    /// assert_eq!(cmd.get_args().next().unwrap(), "-a");
    /// ```
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// The environment changes: `None` means removed.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("env");
    /// cmd.env("A", "1").env_remove("B");
    /// assert_eq!(cmd.get_envs().count(), 2);
    /// ```
    pub fn get_envs(&self) -> impl Iterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// The working directory, if one was set.
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("ls");
    /// cmd.current_dir("/tmp");
    /// assert_eq!(cmd.get_current_dir(), Some(std::path::Path::new("/tmp")));
    /// ```
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.current_dir.as_deref()
    }

    pub(crate) fn get_stop_plan(&self) -> &StopPlan {
        &self.stop_plan
    }

    pub(crate) fn get_timeout(&self) -> Option<(Duration, &StopPlan)> {
        self.timeout.map(|timeout| (timeout, &self.stop_plan))
    }

    /// How long [`output`](Command::output) keeps reading after the program exited, while
    /// something it started still holds its stdout or stderr open (1 s by default). Then the
    /// rest of its tree is killed and the output is returned as it is, marked
    /// [held open](crate::Output::held_open).
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("make");
    /// cmd.drain_timeout(std::time::Duration::from_millis(200));
    /// ```
    pub fn drain_timeout(&mut self, drain: Duration) -> &mut Command {
        self.drain = drain;
        self
    }

    /// Bytes that [`output`](Command::output) and [`run`](Command::run) write to the child's
    /// stdin (then closed). A child that exits without reading them all is no error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let sorted = sheepdog::Command::new("sort").input("b\na\n").run().await?;
    /// assert_eq!(sorted, "a\nb");
    /// # Ok(()) }
    /// ```
    pub fn input(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Command {
        self.input = Some(Input::Bytes(bytes.into().into()));
        self
    }

    /// Feeds the child's stdin from `reader` in [`output`](Command::output) and
    /// [`run`](Command::run), while the output is read; stdin is closed at the reader's end. A
    /// reader can be read once: the first run takes it (clones of this command share it), even
    /// one that then fails to start, and a later run fails before it starts unless a new one
    /// is set. A child that exits without
    /// reading it all is no error. To feed a file, hand it over as stdin instead
    /// (`.stdin(File::open(path)?)`): the child then reads it without a copy through this process.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Any `AsyncRead`: a socket, a decompressor, or bytes in memory.
    /// let reader: &'static [u8] = b"hello";
    /// let count = sheepdog::Command::new("wc").arg("-c").input_reader(reader).run().await?;
    /// # Ok(()) }
    /// ```
    pub fn input_reader(
        &mut self,
        reader: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    ) -> &mut Command {
        self.input = Some(Input::Reader(Arc::new(std::sync::Mutex::new(Some(
            Box::new(reader),
        )))));
        self
    }

    /// Keeps at most `bytes` of each captured stream in [`output`](Command::output); what
    /// happens past it is `over`'s choice: keep the head or the tail (the rest is read and
    /// dropped, and [`Output::stdout_truncated`] / [`Output::stderr_truncated`] say so), or
    /// stop the run ([`OverLimit::Fail`]). Unlimited by default, as in std.
    ///
    /// [`Output::stdout_truncated`]: crate::Output::stdout_truncated
    /// [`Output::stderr_truncated`]: crate::Output::stderr_truncated
    ///
    /// ```
    /// let mut cmd = sheepdog::Command::new("make");
    /// cmd.capture_limit(1 << 20, sheepdog::OverLimit::KeepTail); // the last MiB of each stream
    /// ```
    pub fn capture_limit(&mut self, bytes: usize, over: OverLimit) -> &mut Command {
        self.capture_limit = Some((bytes, over));
        self
    }

    /// Sends stderr where stdout goes, like the shell's `2>&1`: one pipe (or file) carries
    /// both, in the order the program wrote them. [`output`](Command::output) then has both
    /// in `stdout`, and [`Child::lines`] tags every line [`StreamKind::Stdout`]. Setting
    /// [`stderr`](Command::stderr) afterwards undoes it.
    ///
    /// [`StreamKind::Stdout`]: crate::StreamKind::Stdout
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sheepdog::Error> {
    /// let out = sheepdog::Command::new("sh")
    ///     .args(["-c", "echo out; echo err >&2"])
    ///     .merge_stderr()
    ///     .output()
    ///     .await?;
    /// assert_eq!(out.stdout, b"out\nerr\n");
    /// # Ok(()) }
    /// ```
    pub fn merge_stderr(&mut self) -> &mut Command {
        self.stderr = Stdio(StdioKind::MergeIntoStdout);
        self.stdio_set[2] = true;
        self
    }

    pub(crate) fn merges_stderr(&self) -> bool {
        matches!(self.stderr.0, StdioKind::MergeIntoStdout)
    }

    pub(crate) fn get_capture_limit(&self) -> Option<(usize, OverLimit)> {
        self.capture_limit
    }

    pub(crate) fn get_input(&self) -> Option<&Input> {
        self.input.as_ref()
    }

    pub(crate) fn get_drain(&self) -> Duration {
        self.drain
    }

    pub(crate) fn stdio_is_set(&self) -> [bool; 3] {
        self.stdio_set
    }

    pub(crate) fn get_stdio(&self) -> [&Stdio; 3] {
        [&self.stdin, &self.stdout, &self.stderr]
    }

    /// What `sys` needs to start this command, borrowed from it.
    pub(crate) fn spawn_request(&self) -> SpawnRequest<'_> {
        SpawnRequest {
            program: &self.program,
            arg0: self.arg0.as_deref(),
            args: &self.args,
            env_clear: self.env_clear,
            env: Cow::Borrowed(&self.env),
            current_dir: self.current_dir.as_deref(),
            stdio: self.get_stdio().map(spawn_stdio),
            passed_fds: &self.passed_fds,
            foreground: self.foreground,
            process_group: self.process_group,
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// The error for a failed spawn of this command: `err` with the program's name.
    pub(crate) fn spawn_error(&self, err: SpawnError) -> Error {
        Error::from_spawn(&self.program, self.current_dir.as_deref(), err)
    }
}

impl From<std::process::Command> for Command {
    /// Takes the program, arguments, environment changes and working directory of a
    /// [`std::process::Command`]. What std does not let a caller read is not taken: stdio,
    /// `env_clear`, `arg0`, `uid`/`gid`, `process_group` and `pre_exec` hooks (set those again
    /// here). For a `tokio::process::Command`, convert `cmd.as_std()`'s settings the same way.
    ///
    /// ```
    /// let mut std_cmd = std::process::Command::new("ls");
    /// std_cmd.arg("-l").env("LC_ALL", "C").current_dir("/");
    /// let cmd = sheepdog::Command::from(std_cmd);
    /// assert_eq!(cmd.get_program(), "ls");
    /// assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["-l"]);
    /// assert_eq!(cmd.get_current_dir(), Some(std::path::Path::new("/")));
    /// ```
    fn from(std_cmd: std::process::Command) -> Command {
        let mut cmd = Command::new(std_cmd.get_program());
        cmd.args(std_cmd.get_args());
        for (key, value) in std_cmd.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = std_cmd.get_current_dir() {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// Where `sys` puts a child's stdio stream.
fn spawn_stdio(stdio: &Stdio) -> SpawnStdio<'_> {
    match &stdio.0 {
        StdioKind::Inherit => SpawnStdio::Inherit,
        StdioKind::Null => SpawnStdio::Null,
        StdioKind::Piped => SpawnStdio::Piped,
        StdioKind::Fd(fd) => SpawnStdio::Fd(fd.as_fd()),
        StdioKind::MergeIntoStdout => SpawnStdio::MergeIntoStdout,
    }
}

/// Where a child's standard input, output or error goes.
///
/// ```
/// use sheepdog::Stdio;
/// let _ = [Stdio::inherit(), Stdio::null(), Stdio::piped()];
/// ```
#[derive(Debug, Clone)]
pub struct Stdio(pub(crate) StdioKind);

#[derive(Debug, Clone)]
pub(crate) enum StdioKind {
    Inherit,
    Null,
    Piped,
    Fd(Arc<OwnedFd>),
    /// Stderr only ([`Command::merge_stderr`]): a copy of the child's stdout.
    MergeIntoStdout,
}

impl Stdio {
    /// The child uses this process's descriptor.
    ///
    /// ```
    /// let _ = sheepdog::Stdio::inherit();
    /// ```
    pub fn inherit() -> Stdio {
        Stdio(StdioKind::Inherit)
    }

    /// The child reads end-of-file / its writes are discarded (`/dev/null`).
    ///
    /// ```
    /// let _ = sheepdog::Stdio::null();
    /// ```
    pub fn null() -> Stdio {
        Stdio(StdioKind::Null)
    }

    /// A new pipe: this process gets the other end as [`Child::stdin`](crate::Child::stdin),
    /// [`Child::stdout`](crate::Child::stdout) or [`Child::stderr`](crate::Child::stderr).
    ///
    /// ```
    /// let _ = sheepdog::Stdio::piped();
    /// ```
    pub fn piped() -> Stdio {
        Stdio(StdioKind::Piped)
    }
}

impl From<OwnedFd> for Stdio {
    /// The child gets a copy of this descriptor (a file, a socket, a pipe end).
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(StdioKind::Fd(Arc::new(fd)))
    }
}

impl From<File> for Stdio {
    /// The child reads from or writes to this file.
    fn from(file: File) -> Stdio {
        Stdio::from(OwnedFd::from(file))
    }
}
