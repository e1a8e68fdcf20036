//! Run-and-capture: output is complete and exact, and the wait ends even when a descendant
//! keeps the output open.

mod common;

use std::time::{Duration, Instant};

use common::{alive, cmd};
use sheepdog::Stdio;

#[tokio::test]
async fn output_captures_both_streams_byte_for_byte() {
    // 3 MiB of every byte value on stdout, a line on stderr, exit code 5.
    let out = cmd("output_bytes", "sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 12 ]; do head -c 262144 /dev/zero | tr '\\0' '\\377'; i=$((i+1)); done; printf 'a\\000b' ; echo oops >&2; exit 5",
        ])
        .output()
        .await
        .expect("output");
    assert_eq!(out.status.code(), Some(5));
    assert!(!out.held_open());
    let mut expected = vec![0xffu8; 12 * 262_144];
    expected.extend_from_slice(b"a\0b");
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "stdout differs");
    assert_eq!(out.stderr, b"oops\n");
}

#[tokio::test]
async fn output_reads_no_stdin_unless_given() {
    let out = cmd("output_stdin", "cat").output().await.expect("output");
    assert!(out.status.success());
    assert_eq!(out.stdout, b"", "stdin is /dev/null");
    let file = common::TempDir::new("output_stdin");
    let path = file.path().join("in.txt");
    std::fs::write(&path, "given\n").expect("write");
    let out = cmd("output_stdin", "cat")
        .stdin(std::fs::File::open(&path).expect("open"))
        .output()
        .await
        .expect("output");
    assert_eq!(out.stdout, b"given\n");
}

/// A grandchild holds stdout open for ten minutes after the program exits: the call returns
/// after the drain timeout, with what was printed, says so, and the holder is killed. The same
/// once the stream is big (read on a blocking thread past 1 MiB): that thread is stopped at the
/// drain timeout and hands back everything it read.
#[tokio::test]
async fn output_returns_when_a_descendant_holds_the_output_open() {
    let big = vec![0u8; 4 << 20];
    for (script, printed) in [
        ("sleep 600 & echo hi", &b"hi\n"[..]),
        ("head -c 4194304 /dev/zero; sleep 600 &", &big[..]),
    ] {
        let marker = format!("output_held-{}", std::process::id());
        let started = Instant::now();
        let out = cmd(&marker, "sh")
            .args(["-c", script])
            .drain_timeout(Duration::from_millis(200))
            .output()
            .await
            .expect("output");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the wait ended"
        );
        assert!(out.held_open(), "{script}");
        assert!(out.status.success(), "{}", out.status);
        assert!(
            out.stdout == printed,
            "{script}: {} bytes",
            out.stdout.len()
        );
        assert!(
            common::poll_until(Duration::from_secs(10), || alive(&marker).is_empty()),
            "the holder was killed: {:?}",
            alive(&marker)
        );
    }
}

#[tokio::test]
async fn output_keeps_what_the_user_set() {
    let out = cmd("output_set", "sh")
        .args(["-c", "echo out; echo err >&2"])
        .stderr(Stdio::null())
        .output()
        .await
        .expect("output");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"", "stderr went to /dev/null as asked");
}

#[tokio::test]
async fn status_reports_how_it_ended_and_spawn_errors_stay_errors() {
    let status = cmd("status", "sh")
        .args(["-c", "exit 4"])
        .status()
        .await
        .expect("status");
    assert_eq!(status.code(), Some(4));
    let err = cmd("status", "sheepdog-no-such-program")
        .status()
        .await
        .expect_err("not found");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let err = cmd("status", "sheepdog-no-such-program")
        .output()
        .await
        .expect_err("not found");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn run_returns_trimmed_stdout() {
    let text = cmd("run_ok", "printf")
        .arg("  hello world \n\n")
        .run()
        .await
        .expect("run");
    assert_eq!(text, "hello world");
}

/// The error says what ran (shell-quoted), how it ended, how long it took, and how stderr
/// ended; each fact is also a field.
#[tokio::test]
async fn run_failure_text() {
    let err = cmd("run_fail", "sh")
        .args([
            "-c",
            "echo one >&2; echo two >&2; echo 'it'\"'\"'s broken' >&2; exit 3",
        ])
        .run()
        .await
        .expect_err("exit 3");
    let text = err.to_string();
    let (head, rest) = text.split_once(" after ").expect("a duration");
    assert_eq!(
        head,
        r#"`sh -c 'echo one >&2; echo two >&2; echo '\''it'\''"'\''"'\''s broken'\'' >&2; exit 3'` exited with code 3"#
    );
    let (seconds, stderr) = rest.split_once("s\n").expect("seconds, then stderr");
    assert!(seconds.parse::<f64>().is_ok(), "{seconds}");
    assert_eq!(stderr, "stderr ended with:\n  one\n  two\n  it's broken");
    match err {
        sheepdog::Error::Failed(failure) => {
            assert_eq!(failure.status.code(), Some(3));
            assert!(!failure.held_open);
            assert_eq!(failure.stderr_tail, "one\ntwo\nit's broken");
        }
        other => panic!("not a failure: {other:?}"),
    }
}

#[tokio::test]
async fn run_failure_says_signal_timeout_and_held_open() {
    let err = cmd("run_signal", "sh")
        .args(["-c", "kill -KILL $$"])
        .run()
        .await
        .expect_err("killed");
    assert!(
        err.to_string()
            .starts_with("`sh -c 'kill -KILL $$'` killed by SIGKILL after "),
        "{err}"
    );
    let err = cmd("run_timeout", "sleep")
        .arg("100")
        .timeout(Duration::from_millis(100))
        .run()
        .await
        .expect_err("timed out");
    assert!(
        err.to_string()
            .starts_with("`sleep 100` timed out, then killed by SIGTERM after "),
        "{err}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let marker = format!("run_held-{}", std::process::id());
    let err = cmd(&marker, "sh")
        .args(["-c", "sleep 600 & echo hi"])
        .drain_timeout(Duration::from_millis(100))
        .run()
        .await
        .expect_err("held open");
    assert!(
        err.to_string()
            .contains("a process it started still held its output open, and was killed"),
        "{err}"
    );
    assert!(common::poll_until(Duration::from_secs(10), || alive(
        &marker
    )
    .is_empty()));
}

#[tokio::test]
async fn input_reaches_stdin_while_output_is_read() {
    // More than a pipe holds in either direction: writing and reading must go on together.
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let out = cmd("input_cat", "cat")
        .input(data.clone())
        .output()
        .await
        .expect("output");
    assert!(out.status.success());
    assert!(out.stdout == data, "the bytes came back unchanged");
    let sorted = cmd("input_sort", "sort")
        .input("b\nc\na\n")
        .run()
        .await
        .expect("run");
    assert_eq!(sorted, "a\nb\nc");
}

/// A child that exits without reading its input is no error, no panic, no hang.
#[tokio::test]
async fn input_unread_by_the_child_is_no_error() {
    let out = cmd("input_unread", "true")
        .input(vec![b'x'; 16 * 1024 * 1024])
        .output()
        .await
        .expect("output");
    assert!(out.status.success());
    assert!(!out.held_open());
}

/// Past the capture limit the head or the tail is kept, exactly, and the cut is reported; the
/// program is never blocked by what is not kept.
#[tokio::test]
async fn capture_limit_keeps_head_or_tail_and_says_so() {
    // 10 000 numbered lines, about 49 KB, far more than the 1000-byte limit.
    let script = "i=0; while [ $i -lt 10000 ]; do echo $i; i=$((i+1)); done";
    let all: Vec<u8> = (0..10000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    for keep in [sheepdog::OverLimit::KeepHead, sheepdog::OverLimit::KeepTail] {
        let out = cmd("capture_limit", "sh")
            .args(["-c", script])
            .capture_limit(1000, keep)
            .output()
            .await
            .expect("output");
        assert!(out.status.success());
        assert!(out.stdout_truncated() && !out.stderr_truncated());
        let expected = match keep {
            sheepdog::OverLimit::KeepHead => &all[..1000],
            _ => &all[all.len() - 1000..],
        };
        assert_eq!(out.stdout, expected, "{keep:?}");
    }
    // Under the limit nothing is cut.
    let out = cmd("capture_limit", "echo")
        .arg("short")
        .capture_limit(1000, sheepdog::OverLimit::KeepTail)
        .output()
        .await
        .expect("output");
    assert_eq!(out.stdout, b"short\n");
    assert!(!out.stdout_truncated());
}

/// The limits hold as exactly for a stream read past the point where it leaves the reactor for
/// a blocking thread (1 MiB): the head, the tail, or the head and a kill.
#[tokio::test]
async fn capture_limit_holds_for_big_streams() {
    use sheepdog::OverLimit;
    // 1,048,576 records of 8 bytes ("0000000\n" to "1048575\n"): 8 MiB.
    let all: Vec<u8> = (0..1_048_576)
        .flat_map(|i| format!("{i:07}\n").into_bytes())
        .collect();
    let limit = (3 << 20) + 5;
    for keep in [OverLimit::KeepHead, OverLimit::KeepTail] {
        let out = cmd("capture_limit_big", "seq")
            .args(["-w", "0", "1048575"])
            .capture_limit(limit, keep)
            .output()
            .await
            .expect("output");
        assert!(out.status.success(), "{}", out.status);
        assert!(out.stdout_truncated());
        let expected = match keep {
            OverLimit::KeepHead => &all[..limit],
            _ => &all[all.len() - limit..],
        };
        assert!(
            out.stdout == expected,
            "{keep:?}: {} bytes",
            out.stdout.len()
        );
    }
    let out = cmd("capture_limit_big", "seq")
        .args(["-w", "0", "1048575"])
        .capture_limit(limit, OverLimit::Fail)
        .output()
        .await
        .expect("output");
    assert!(out.limit_exceeded(), "{:?}", out.outcome());
    assert!(out.stdout == all[..limit], "{} bytes", out.stdout.len());
}

#[tokio::test]
async fn outcome_is_one_value_to_match() {
    common::sigint_default_for_children();
    use sheepdog::Outcome;
    let exited = cmd("outcome", "sh")
        .args(["-c", "exit 9"])
        .output()
        .await
        .expect("output");
    assert_eq!(exited.outcome(), Outcome::Exited(9));
    let killed = cmd("outcome", "sh")
        .args(["-c", "kill -INT $$"])
        .output()
        .await
        .expect("output");
    assert_eq!(killed.outcome(), Outcome::Killed(sheepdog::Signal::INT));
    let timed_out = cmd("outcome", "sleep")
        .arg("100")
        .timeout(Duration::from_millis(50))
        .output()
        .await
        .expect("output");
    assert_eq!(timed_out.outcome(), Outcome::TimedOut);
    let held = cmd("outcome", "sh")
        .args(["-c", "sleep 600 & exit 0"])
        .drain_timeout(Duration::from_millis(50))
        .output()
        .await
        .expect("output");
    assert_eq!(held.outcome(), Outcome::OutputHeldOpen);
    match cmd("outcome", "false").run().await {
        Err(sheepdog::Error::Failed(failure)) => assert_eq!(failure.outcome(), Outcome::Exited(1)),
        other => panic!("{other:?}"),
    }
}

/// 256 MiB of random bytes (every byte value, no lines) come back exactly, also into a reused
/// buffer, which keeps its memory.
#[tokio::test]
async fn large_binary_output_is_exact() {
    let dir = common::TempDir::new("output_large");
    let (path, expected) = common::random_file("output_large", &dir, 256 << 20).await;
    let cat = {
        let mut cat = cmd("output_large", "cat");
        cat.arg(&path);
        cat
    };
    let out = cat.output().await.expect("output");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), expected.len());
    assert!(
        out.stdout == expected,
        "the captured bytes differ from the file"
    );
    // Into the same buffer again: cleared, refilled exactly, not reallocated.
    let buffer = out.stdout.as_ptr();
    let again = cat
        .output_with_buffers(out.stdout, out.stderr)
        .await
        .expect("output again");
    assert_eq!(again.stdout.as_ptr(), buffer, "the buffer was reused");
    assert!(again.stdout == expected, "the second capture differs");
}

/// A buffer with content is cleared before the capture; what it held never shows.
#[tokio::test]
async fn output_with_buffers_starts_empty() {
    let out = cmd("output_buffers", "sh")
        .args(["-c", "echo new; echo err >&2"])
        .output_with_buffers(b"old stdout".to_vec(), b"old stderr".to_vec())
        .await
        .expect("output");
    assert_eq!(out.stdout, b"new\n");
    assert_eq!(out.stderr, b"err\n");
}

/// With `OverLimit::Fail`, going past the limit stops the whole tree at once; the head is
/// kept, the outcome says why, and `run()` fails with a text that says so.
#[tokio::test]
async fn capture_limit_fail_stops_the_tree() {
    use sheepdog::{Outcome, OverLimit};
    let marker = format!("capture_fail-{}", std::process::id());
    let started = Instant::now();
    // `yes` never ends by itself; neither does the sleeper it leaves beside it.
    let out = cmd(&marker, "sh")
        .args(["-c", "sleep 600 & yes"])
        .capture_limit(4096, OverLimit::Fail)
        .output()
        .await
        .expect("output");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(out.limit_exceeded() && out.stdout_truncated());
    assert_eq!(out.outcome(), Outcome::OutputLimit);
    assert_eq!(out.stdout, b"y\n".repeat(2048));
    assert_eq!(out.status.signal(), Some(sheepdog::Signal::KILL));
    assert!(common::poll_until(Duration::from_secs(10), || alive(
        &marker
    )
    .is_empty()));

    // Exactly at the limit is not past it.
    let out = cmd(&marker, "head")
        .args(["-c", "4096", "/dev/zero"])
        .capture_limit(4096, OverLimit::Fail)
        .output()
        .await
        .expect("output");
    assert_eq!(out.outcome(), Outcome::Exited(0));
    assert_eq!(out.stdout.len(), 4096);

    let err = cmd(&marker, "yes")
        .capture_limit(100, OverLimit::Fail)
        .run()
        .await
        .expect_err("over the limit");
    let sheepdog::Error::Failed(failure) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(failure.output_limit, Some(100));
    assert_eq!(failure.outcome(), Outcome::OutputLimit);
    let text = err.to_string();
    assert!(
        text.starts_with("`yes` went past the output limit of 100 bytes and was killed after ")
            && text.ends_with('s'),
        "{text}"
    );
}

/// `merge_stderr` is `2>&1`: one pipe, the order written, for `output`, `lines` and a file.
#[tokio::test]
async fn merged_streams_keep_the_order_written() {
    let script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done";
    let out = cmd("merge", "sh")
        .args(["-c", script])
        .merge_stderr()
        .output()
        .await
        .expect("output");
    assert_eq!(out.stdout, b"out1\nerr1\nout2\nerr2\nout3\nerr3\n");
    assert_eq!(out.stderr, b"");

    let mut child = cmd("merge", "sh")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .merge_stderr()
        .spawn()
        .expect("spawn");
    let mut lines = child.lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next().await.expect("line") {
        assert_eq!(line.stream, sheepdog::StreamKind::Stdout);
        seen.push(line.text().into_owned());
    }
    assert_eq!(seen, ["out1", "err1", "out2", "err2", "out3", "err3"]);
    assert!(child.wait().await.expect("wait").success());

    let dir = common::TempDir::new("merge");
    let path = dir.path().join("log");
    let status = cmd("merge", "sh")
        .args(["-c", script])
        .stdout(std::fs::File::create(&path).expect("create"))
        .merge_stderr()
        .status()
        .await
        .expect("status");
    assert!(status.success());
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"out1\nerr1\nout2\nerr2\nout3\nerr3\n"
    );

    // `run` quotes the end of the merged stream, where the errors are.
    let err = cmd("merge", "sh")
        .args(["-c", "echo step; echo broke >&2; exit 3"])
        .merge_stderr()
        .run()
        .await
        .expect_err("exit 3");
    assert!(
        err.to_string()
            .ends_with("\nstderr ended with:\n  step\n  broke"),
        "{err}"
    );
}

/// stdin fed from an `AsyncRead`: more than a pipe holds, exact; the reader is read once; a
/// reader that fails is reported; an endless reader and a child that does not read end fine.
#[tokio::test]
async fn input_reader_feeds_stdin() {
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut cat = cmd("input_reader", "cat");
    cat.input_reader(std::io::Cursor::new(data.clone()));
    let out = cat.output().await.expect("output");
    assert!(out.status.success());
    assert!(out.stdout == data, "the bytes came back unchanged");

    let again = cat.output().await.expect_err("the reader is used up");
    assert!(
        again.to_string().contains("used up by an earlier run"),
        "{again}"
    );

    let out = cmd("input_reader", "head")
        .args(["-c", "10"])
        .input_reader(tokio::io::repeat(b'z'))
        .output()
        .await
        .expect("an endless reader ends with its reader");
    assert_eq!(out.stdout, b"zzzzzzzzzz");

    struct Broken;
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")))
        }
    }
    let err = cmd("input_reader", "cat")
        .input_reader(Broken)
        .output()
        .await
        .expect_err("the reader fails");
    let text = err.to_string();
    assert!(
        text.contains("read the input") && text.contains("disk on fire"),
        "{text}"
    );
}
