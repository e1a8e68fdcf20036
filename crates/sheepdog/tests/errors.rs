//! Every way a spawn can fail gives an error that names the program and the cause, and leaves
//! no process, zombie or descriptor behind (counted in tests/hygiene.rs, alone in its process).

mod common;

use std::io::ErrorKind;

use common::{cmd, TempDir};
use sheepdog::Error;

#[tokio::test]
async fn not_found_names_the_program_and_the_path_searched() {
    let err = cmd("not_found", "sheepdog-no-such-program")
        .env("PATH", "/nonexistent-a:/nonexistent-b")
        .spawn()
        .expect_err("cannot exist");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "cannot run `sheepdog-no-such-program`: not found in PATH `/nonexistent-a:/nonexistent-b`"
    );
    assert!(matches!(
        err,
        Error::NotFound {
            searched_path: Some(_),
            ..
        }
    ));

    let err = cmd("not_found", "/nonexistent/program")
        .spawn()
        .expect_err("absent");
    assert_eq!(
        err.to_string(),
        "cannot run `/nonexistent/program`: no such file"
    );

    let err = cmd("not_found", "").spawn().expect_err("empty name");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn missing_interpreter_is_not_reported_as_missing_program() {
    let dir = TempDir::new("interpreter");
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").expect("write");
    chmod(&script, 0o755);
    let err = cmd("interpreter", &script)
        .spawn()
        .expect_err("no interpreter");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains("exists, but its interpreter `/nonexistent/interpreter` (its `#!` line)"),
        "{err}"
    );
}

/// A relative name says where it was looked for; control characters in a name are shown
/// escaped, never sent to the terminal as they are.
#[tokio::test]
async fn not_found_messages_say_where_and_escape_control_characters() {
    let dir = TempDir::new("where");
    let err = cmd("where", "./no-such-tool")
        .current_dir(dir.path())
        .spawn()
        .expect_err("absent");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot run `./no-such-tool`: no such file in `{}`",
            dir.path().display()
        )
    );
    let err = cmd("where", "tab\there\u{1b}[31m")
        .env("PATH", "/nonexistent-a")
        .spawn()
        .expect_err("absent");
    assert_eq!(
        err.to_string(),
        "cannot run `tab\\there\\u{1b}[31m`: not found in PATH `/nonexistent-a`"
    );
}

#[tokio::test]
async fn not_executable() {
    let dir = TempDir::new("not_executable");
    let file = dir.path().join("data.txt");
    std::fs::write(&file, "just text").expect("write");
    let err = cmd("not_executable", &file).spawn().expect_err("mode 644");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.to_string(),
        format!(
            "cannot run `{0}`: `{0}` is not executable: Permission denied (os error 13)",
            file.display()
        )
    );

    chmod(&file, 0o755); // executable bit, but no #! line and not ELF
    let err = cmd("not_executable", &file)
        .spawn()
        .expect_err("not a program");
    assert_eq!(err.raw_os_error(), Some(libc_enoexec()));
    assert!(matches!(err, Error::NotExecutable { .. }), "{err}");

    let err = cmd("not_executable", dir.path())
        .spawn()
        .expect_err("a directory");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn bad_working_directory_is_not_reported_as_not_found() {
    let err = cmd("bad_cwd", "true")
        .current_dir("/nonexistent/dir")
        .spawn()
        .expect_err("no such directory");
    assert!(matches!(err, Error::WorkingDirectory { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot run `true`: working directory `/nonexistent/dir`: No such file or directory (os error 2)"
    );
    let err = cmd("bad_cwd", "true")
        .current_dir("/etc/passwd")
        .spawn()
        .expect_err("a file, not a directory");
    assert!(matches!(err, Error::WorkingDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("Not a directory"), "{err}");
}

#[tokio::test]
async fn nul_bytes_are_refused_before_anything_runs() {
    let cases: [(sheepdog::Command, &str); 4] = [
        (cmd("nul", "ec\0ho"), "the program name"),
        (
            {
                let mut c = cmd("nul", "echo");
                c.args(["ok", "b\0d"]);
                c
            },
            "argument 2",
        ),
        (
            {
                let mut c = cmd("nul", "echo");
                c.env("K", "v\0");
                c
            },
            "environment variable `K`",
        ),
        (
            {
                let mut c = cmd("nul", "echo");
                c.current_dir("/t\0mp");
                c
            },
            "the working directory",
        ),
    ];
    for (command, what) in cases {
        let err = command.spawn().expect_err("NUL byte");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .ends_with(&format!("{what} contains a NUL byte")),
            "{err}"
        );
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn libc_enoexec() -> i32 {
    8 // ENOEXEC on Linux
}

/// A program that stays open for writing is reported as busy, after a bounded retry (the retry
/// itself is for writers that close a moment later, such as a sibling being spawned).
#[tokio::test]
async fn program_open_for_writing_is_reported_busy() {
    let dir = TempDir::new("busy");
    let script = dir.path().join("busy.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    chmod(&script, 0o755);
    let _writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&script)
        .expect("open for writing");
    let started = std::time::Instant::now();
    let err = cmd("busy", &script).spawn().expect_err("text file busy");
    assert_eq!(err.raw_os_error(), Some(26), "{err}"); // ETXTBSY
    assert!(err.to_string().contains("Text file busy"), "{err}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(60),
        "the exec was retried for about 63 ms before giving up"
    );
}
