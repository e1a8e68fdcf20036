//! `sheepdog tree`: a live shell tree drawn as text and as nested JSON.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// A shell with two background sleeps; killed (the whole process group) when dropped.
struct ShellTree(Child);

impl ShellTree {
    fn start() -> (ShellTree, Vec<u32>) {
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "sleep 30 & echo $!; sleep 30 & echo $!; echo ready; wait",
            ])
            .env("SHEEPDOG_TEST", "cli_tree")
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sh");
        let mut sleeps = Vec::new();
        let mut lines = BufReader::new(shell.stdout.take().expect("stdout")).lines();
        for line in lines.by_ref() {
            let line = line.expect("read");
            if line == "ready" {
                break;
            }
            sleeps.push(line.parse().expect("a pid"));
        }
        // A background job prints its pid before it has exec'd `sleep`: wait until it has.
        let start = std::time::Instant::now();
        while !sleeps.iter().all(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0030\0")
        }) {
            assert!(start.elapsed().as_secs() < 10, "the sleeps did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (ShellTree(shell), sleeps)
    }
}

impl Drop for ShellTree {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn sheepdog(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(args)
        .output()
        .expect("run sheepdog")
}

#[test]
fn tree_draws_a_shell_and_its_children() {
    let (shell, sleeps) = ShellTree::start();
    let root = shell.0.id();
    let out = sheepdog(&["tree".into(), root.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(&format!("{root}  sh -c")), "{text}");
    for sleep in &sleeps {
        assert!(
            lines.contains(&format!("  {sleep}  sleep 30").as_str()),
            "{sleep} in {text}"
        );
    }

    let out = sheepdog(&["tree".into(), "--json".into(), root.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["pid"], root);
    let children: Vec<u64> = json["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|child| child["pid"].as_u64().expect("pid"))
        .collect();
    assert_eq!(
        children,
        sleeps.iter().map(|&p| p as u64).collect::<Vec<_>>()
    );
    assert_eq!(json["children"][0]["command"][0], "sleep");
    drop(shell);
}

#[test]
fn tree_of_a_missing_process_fails_with_a_message() {
    let out = sheepdog(&["tree".into(), "4194304".into()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no process 4194304"),
        "{out:?}"
    );
}
