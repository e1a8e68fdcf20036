//! What a run used, told truthfully: a child's peak memory is its own or unknown, never this
//! program's (a vfork-style child shares this program's memory until it execs, and the kernel
//! counts that memory's peak in the child's); a herd's figures say why they are missing.

mod common;

use common::cmd;

const BIG_PARENT: &str = "SHEEPDOG_ACCOUNTING_BIG_PARENT";

/// Run as a helper: holds 512 MiB (touched), spawns `true`, prints what its peak memory reads.
#[tokio::test]
async fn big_parent_helper() {
    if std::env::var_os(BIG_PARENT).is_none() {
        return;
    }
    let held = vec![1u8; 512 << 20];
    std::hint::black_box(&held);
    let status = cmd("accounting_big_parent", "true")
        .spawn()
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    println!("max_rss={:?}", status.usage().max_rss_bytes());
}

/// `true` from a parent that holds 512 MiB: about 516 MiB was once reported for it.
#[test]
fn true_from_a_512_mib_parent_is_never_given_the_parents_memory() {
    if std::env::var_os(BIG_PARENT).is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--exact",
            "big_parent_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BIG_PARENT, "1")
        .env(common::MARK, "accounting_big_parent")
        .output()
        .expect("run the helper");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let reported = text
        .lines()
        .find_map(|line| Some(&line[line.find("max_rss=")? + "max_rss=".len()..]))
        .expect("the helper's figure");
    match reported {
        "None" => {}
        some => {
            let bytes: u64 = some
                .trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .expect("a number");
            assert!(bytes < 64 << 20, "`true` reported {bytes} bytes");
        }
    }
}

/// A child that touches 300 MiB from this small test process: its own peak, at least that.
#[tokio::test]
async fn a_child_that_touches_300_mib_reports_its_own_peak() {
    let status = cmd("accounting_300", "python3")
        .args(["-c", "b = b'x' * (300 << 20)"])
        .spawn()
        .expect("spawn python3")
        .wait()
        .await
        .expect("wait");
    assert!(status.success(), "{status}");
    let peak = status
        .usage()
        .max_rss_bytes()
        .expect("above this process's own peak");
    assert!(peak >= 300 << 20, "{peak}");
}

/// A herd's figures are there where its mechanism keeps them, and each missing one says why.
#[tokio::test]
async fn herd_usage_names_what_is_unknown_and_why() {
    let herd = sheepdog::Herd::new().expect("herd");
    let status = herd
        .spawn(
            cmd("accounting_herd", "sh")
                .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]),
        )
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    assert!(status.success());
    let usage = herd.usage().expect("usage");
    let unknown: Vec<&str> = usage
        .unknown()
        .into_iter()
        .map(|(figure, _)| figure)
        .collect();
    assert_eq!(usage.user_time().is_none(), unknown.contains(&"CPU time"));
    assert_eq!(
        usage.memory_peak_bytes().is_none(),
        unknown.contains(&"peak memory")
    );
    assert_eq!(
        usage.tasks_peak().is_none(),
        unknown.contains(&"peak process count")
    );
    if herd.containment().mechanism() == sheepdog::Mechanism::CgroupV2 {
        let cpu = usage.user_time().expect("cpu.stat") + usage.system_time().expect("cpu.stat");
        assert!(cpu > std::time::Duration::ZERO, "{usage:?}");
    }
    if let Some(peak) = usage.tasks_peak() {
        assert!(peak >= 1, "{usage:?}");
    }
    for (_, why) in usage.unknown() {
        assert!(!why.is_empty());
    }
}
