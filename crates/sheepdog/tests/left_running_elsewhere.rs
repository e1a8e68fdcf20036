//! What the usual ways of ending a child leave running, on the trees the herd tests end
//! completely: `tokio::process`'s kill and kill-on-drop (one process), and a kill of the child's
//! process group (what `process_group(0)` plus `killpg` does, and process-wrap's `ProcessGroup`
//! wrapper). The sheepdog side of each is in `tokio_style.rs` and `herd.rs`.

mod common;

use std::io;
use std::time::Duration;

use common::{pgid_of, pid_state, KillOnDrop, MARK};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Whether `pid` runs (exists and is not a zombie).
fn running(pid: u32) -> bool {
    pid_state(pid).is_some_and(|state| state != 'Z')
}

/// Spawns `sh -c script` on tokio, marked for `test`, and reads the pids the script prints on
/// its first line; each gets a guard that kills it at the end of the test.
async fn spawn_tree(
    test: &str,
    script: &str,
    own_group: bool,
) -> io::Result<(Child, Vec<u32>, Vec<KillOnDrop>)> {
    let mut command = Command::new("sh");
    command
        .args(["-c", script])
        .env(MARK, test)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if own_group {
        command.process_group(0);
    }
    let mut child = command.spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = lines
        .next_line()
        .await?
        .expect("the script prints its pids");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    let guards = pids.iter().map(|&pid| KillOnDrop::new(pid)).collect();
    Ok((child, pids, guards))
}

/// tokio's `kill().await` kills and reaps the child only: its background job runs on.
#[tokio::test]
async fn tokio_kill_leaves_the_background_child_running() -> io::Result<()> {
    let (mut child, pids, _guards) = spawn_tree(
        "left_running_tokio_kill",
        "sleep 600 & echo $!; wait",
        false,
    )
    .await?;
    child.kill().await?;
    assert!(child.try_wait()?.is_some(), "kill().await reaped the child");
    assert!(running(pids[0]), "the background sleep runs on after kill");
    Ok(())
}

/// tokio's `kill_on_drop(true)`: the drop kills the child only.
#[tokio::test]
async fn tokio_kill_on_drop_leaves_the_background_child_running() -> io::Result<()> {
    let (child, pids, _guards) = spawn_tree(
        "left_running_tokio_drop",
        "sleep 600 & echo $!; wait",
        false,
    )
    .await?;
    let shell = child.id().expect("running");
    drop(child);
    assert!(
        common::eventually(Duration::from_secs(10), || !running(shell)).await,
        "the drop killed the shell"
    );
    assert!(
        running(pids[0]),
        "the background sleep runs on after the drop"
    );
    Ok(())
}

/// A kill of the child's process group ends its background job, but not a grandchild that
/// started a session of its own (`setsid`), as daemons and some shells' jobs do.
#[tokio::test]
async fn process_group_kill_leaves_a_setsid_grandchild_running() -> io::Result<()> {
    let (mut child, pids, _guards) = spawn_tree(
        "left_running_killpg",
        "sleep 600 & in_group=$!
         python3 -c 'import os; os.setsid(); os.execvp(\"sleep\", [\"sleep\", \"600\"])' &
         echo $in_group $!; wait",
        true,
    )
    .await?;
    let (in_group, escapee) = (pids[0], pids[1]);
    // The escapee is in its own session (and group) once its setsid has run.
    assert!(
        common::eventually(Duration::from_secs(10), || pgid_of(escapee)
            == Some(escapee as i32))
        .await,
        "the grandchild's setsid ran"
    );
    let group = rustix::process::Pid::from_raw(child.id().expect("running") as i32).expect("pid");
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL)?;
    child.wait().await?;
    assert!(
        common::eventually(Duration::from_secs(10), || !running(in_group)).await,
        "the background sleep in the group was killed"
    );
    assert!(
        running(escapee),
        "the setsid grandchild runs on after the group kill"
    );
    Ok(())
}
