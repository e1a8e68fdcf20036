//! Dropping many populated herds does not stall the runtime that drops them, however many
//! other processes the host runs: a drop kills with one write and looks at no other process.

mod common;

use std::time::{Duration, Instant};

use sheepdog::{Herd, Mechanism};

/// Other processes on the host, started (and ended, by pid) by the test.
const OTHERS: usize = 300;
const HERDS: usize = 100;
/// Far above what the drops cost (7-9 ms here, debug build), far below what a scan of /proc
/// per drop cost with these few hundred processes (284 ms here).
const LONGEST_GAP: Duration = Duration::from_millis(100);

/// Idle processes of the test's own, killed and reaped when dropped (also when it fails).
struct Others(Vec<std::process::Child>);

impl Drop for Others {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn dropping_many_populated_herds_does_not_stall_the_runtime() {
    let mut others = Others(Vec::with_capacity(OTHERS));
    for _ in 0..OTHERS {
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .env(common::MARK, "drop_stall_others")
            .spawn()
            .expect("start an idle process");
        others.0.push(child);
    }
    let mut cmd = common::cmd("drop_stall", "sleep");
    cmd.arg("1000");
    let mut herds = Vec::with_capacity(HERDS);
    for _ in 0..HERDS {
        let herd = Herd::new().expect("a herd");
        if herd.containment().mechanism() != Mechanism::CgroupV2 {
            eprintln!("skipping: no cgroup herd here ({})", herd.containment());
            return;
        }
        let child = herd.spawn(&cmd).expect("spawn");
        herds.push((herd, child));
    }

    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = tokio::spawn({
        let ticking = ticking.clone();
        async move {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        }
    });
    // Let the ticker start ticking before the drops.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let drops: Vec<_> = herds
        .into_iter()
        .map(|herd| tokio::spawn(async move { drop(herd) }))
        .collect();
    for drop in drops {
        drop.await.expect("a drop task");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    let longest = ticker.await.expect("the ticker");
    eprintln!("longest gap while dropping {HERDS} populated herds: {longest:?}");
    drop(others);
    assert!(
        common::poll_until(Duration::from_secs(10), || common::alive("drop_stall")
            .is_empty()),
        "the dropped herds' children are gone"
    );
    assert!(
        longest <= LONGEST_GAP,
        "dropping {HERDS} populated herds stalled the runtime for {longest:?}"
    );
}
