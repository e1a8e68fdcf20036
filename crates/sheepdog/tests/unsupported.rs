//! The unsupported platform backend (`sys/unsupported.rs`): everything that would start or
//! reach a process fails with `io::ErrorKind::Unsupported`, and nothing panics. Runs only in a
//! build with `RUSTFLAGS='--cfg sheepdog_unsupported'` (see `.ci/run`); elsewhere it is empty.
#![cfg(sheepdog_unsupported)]

use std::io::ErrorKind::Unsupported;

#[tokio::test]
async fn every_start_fails_with_unsupported() {
    let err = sheepdog::Command::new("true")
        .spawn()
        .expect_err("no backend");
    assert_eq!(err.kind(), Unsupported, "{err}");
    assert_eq!(err.program(), "true");

    let err = sheepdog::Command::new("true")
        .output()
        .await
        .expect_err("no backend");
    assert_eq!(err.kind(), Unsupported, "{err}");

    let err = sheepdog::Herd::new().expect_err("no backend");
    assert_eq!(err.kind(), Unsupported, "{err}");
    assert_eq!(
        sheepdog::Herd::builder()
            .mechanism(sheepdog::Mechanism::CgroupV2)
            .build()
            .expect_err("no backend")
            .kind(),
        Unsupported
    );

    let err = sheepdog::ProcessRef::of(std::process::id()).expect_err("no backend");
    assert_eq!(err.kind(), Unsupported, "{err}");
}

#[test]
fn the_host_says_why() {
    let host = sheepdog::host_containment();
    assert_eq!(host.mechanism(), None, "Herd::new fails: {host}");
    assert!(host.reason().contains("no backend"), "{}", host.reason());
}
