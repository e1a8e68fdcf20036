//! The real `sheepdog` binary: exit statuses of `sheepdog run`.

use std::process::Command;

fn sheepdog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sheepdog"))
        .args(args)
        .env("SHEEPDOG_TEST", "cli_run")
        .output()
        .expect("run the sheepdog binary")
}

#[test]
fn run_passes_output_and_exit_code_through() {
    let out = sheepdog(&["run", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
}

#[test]
fn run_reports_signals_as_128_plus_n() {
    let out = sheepdog(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
}

#[test]
fn run_uses_timeouts_exit_codes_for_its_own_failures() {
    let out = sheepdog(&["run", "--", "sheepdog-no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sheepdog-no-such-program"), "{stderr}");
    assert!(stderr.contains("not found in PATH"), "{stderr}");

    let out = sheepdog(&["run", "--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn version_and_help() {
    let out = sheepdog(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sheepdog "));
    let out = sheepdog(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
}
