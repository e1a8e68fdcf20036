//! Line streams: every line, in order within its stream, exactly; CRLF, a missing final
//! newline, bytes that are not UTF-8, and lines longer than the limit.

mod common;

use common::cmd;
use sheepdog::{Stdio, StreamKind};

#[tokio::test]
async fn many_lines_across_chunk_boundaries_arrive_whole_and_in_order() {
    // 200 000 lines of varying length: many 64 KiB chunks end inside a line.
    let mut child = cmd("lines_many", "sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 20000 ]; do echo \"line $i $i$i$i\"; i=$((i+1)); done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = child.lines();
    let mut n = 0;
    while let Some(line) = lines.next().await.expect("read") {
        assert_eq!(line.stream, StreamKind::Stdout);
        assert!(!line.partial);
        assert_eq!(line.text(), format!("line {n} {n}{n}{n}"));
        n += 1;
    }
    assert_eq!(n, 20000);
    assert!(child.wait().await.expect("wait").success());
}

#[tokio::test]
async fn crlf_missing_newline_and_invalid_utf8() {
    let mut child = cmd("lines_edges", "printf")
        .arg("dos\\r\\n\\ncaf\\351\\nlast")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = child.lines();
    let mut got = Vec::new();
    while let Some(line) = lines.next().await.expect("read") {
        got.push((line.bytes.to_vec(), line.text().into_owned()));
    }
    assert_eq!(
        got,
        vec![
            (b"dos".to_vec(), "dos".to_owned()),
            (b"".to_vec(), "".to_owned()),
            (b"caf\xe9".to_vec(), "caf\u{fffd}".to_owned()),
            (b"last".to_vec(), "last".to_owned()),
        ]
    );
    child.wait().await.expect("wait");
}

#[tokio::test]
async fn long_lines_come_in_bounded_pieces() {
    // One 300 000-byte line, then a short one; pieces of at most 100 000 bytes.
    let mut child = cmd("lines_long", "sh")
        .args([
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' x; echo; echo short",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = child.lines().max_line(100_000);
    let mut pieces = Vec::new();
    while let Some(line) = lines.next().await.expect("read") {
        assert!(line.bytes.len() <= 100_000);
        pieces.push((line.bytes.len(), line.partial));
    }
    assert_eq!(
        pieces,
        vec![
            (100_000, true),
            (100_000, true),
            (100_000, false),
            (5, false)
        ],
        "the last piece ends the line"
    );
    child.wait().await.expect("wait");
}

#[tokio::test]
async fn both_streams_are_tagged_and_each_keeps_its_order() {
    let mut child = cmd("lines_both", "sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = child.lines();
    let (mut out, mut err) = (0, 0);
    while let Some(line) = lines.next().await.expect("read") {
        match line.stream {
            StreamKind::Stdout => {
                assert_eq!(line.text(), format!("out{out}"));
                out += 1;
            }
            StreamKind::Stderr => {
                assert_eq!(line.text(), format!("err{err}"));
                err += 1;
            }
        }
    }
    assert_eq!((out, err), (2000, 2000));
    child.wait().await.expect("wait");
}
