//! A process-group herd that does not adopt orphans (`HerdBuilder::adopt_orphans(false)`, or
//! `SHEEPDOG_ADOPT_ORPHANS=0`): this process stays no subreaper, and the herd still finds a
//! setsid'd orphan by its mark, with a scan of every process. A file of its own, so that no
//! other test makes this process a subreaper first.

mod common;

use std::time::Duration;

use sheepdog::{Command, Herd, Mechanism, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

fn is_subreaper() -> bool {
    rustix::process::child_subreaper()
        .expect("PR_GET_CHILD_SUBREAPER")
        .is_some()
}

#[tokio::test]
async fn herd_without_adoption_still_ends_an_orphaned_setsid_grandchild() {
    // Both ways to refuse; the variable is read when a herd is built, in this process only.
    std::env::set_var("SHEEPDOG_ADOPT_ORPHANS", "0");
    let by_env = Herd::builder()
        .mechanism(Mechanism::ProcessGroup)
        .build()
        .expect("a process group herd");
    std::env::remove_var("SHEEPDOG_ADOPT_ORPHANS");
    assert!(!by_env.containment().adopts_orphans());
    drop(by_env);
    let herd = Herd::builder()
        .mechanism(Mechanism::ProcessGroup)
        .adopt_orphans(false)
        .build()
        .expect("a process group herd");
    assert!(!herd.containment().adopts_orphans());
    assert!(!is_subreaper(), "no herd here asked for adoption");
    let gaps = herd.containment().cannot_catch().join("; ");
    assert!(gaps.contains("not adopted"), "{gaps}");

    let marker = format!("no_adoption-{}", std::process::id());
    let script = "python3 -c 'import os; os.setsid(); print(os.getpid(), flush=True); \
                  os.execvp(\"sleep\", [\"sleep\", \"1000\"])' &";
    let mut leader = herd
        .spawn(
            Command::new("sh")
                .args(["-c", script])
                .env(common::MARK, &marker)
                .stdout(Stdio::piped()),
        )
        .expect("spawn");
    let mut lines = BufReader::new(leader.take_stdout().expect("stdout")).lines();
    let escapee: u32 = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the escapee's pid in time")
        .expect("read")
        .expect("a line")
        .trim()
        .parse()
        .expect("a pid");
    let _cleanup = common::KillOnDrop::new(escapee);
    drop(lines);
    leader.wait().await.expect("the leader exits");
    // Its parent is gone, and this process adopts nothing: it went elsewhere (init).
    let parent = std::fs::read_to_string(format!("/proc/{escapee}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()
        });
    assert_ne!(parent, Some(std::process::id()), "not adopted here");
    assert!(herd.members().expect("members").contains(&escapee));
    herd.kill().await.expect("kill");
    assert!(
        common::poll_until(Duration::from_secs(10), || common::alive(&marker)
            .is_empty()),
        "left: {:?}",
        common::alive(&marker)
    );
}
