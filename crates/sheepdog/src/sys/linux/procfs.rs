//! What `/proc` says of any process: identity (start time, boot id), tree links, command line;
//! and what a pidfd says of a process that is not ours (`PIDFD_GET_INFO`).
//!
//! proc(5): `/proc/PID/stat`, `/proc/PID/task/TID/children`, `/proc/PID/cmdline`,
//! `/proc/sys/kernel/random/boot_id`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;

use super::raw::syscall;
pub(crate) use crate::sys::Stat;

/// Reads `/proc/PID/stat` with one `read` (the kernel makes the whole line at once, and it
/// fits: the name is at most 64 bytes, the numbers under 600); `None` if the process is gone
/// (or hidden).
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let n = rustix::io::read(&file, &mut buf).ok()?;
    parse_stat(&buf[..n])
}

/// Parses a `stat` line. The command name (field 2) is parenthesised and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?; // field 3
    let ppid = fields.next()?.parse().ok()?; // 4
    let pgid = fields.next()?.parse().ok()?; // 5
    let sid = fields.next()?.parse().ok()?; // 6
    let start_ticks = fields.nth(15)?.parse().ok()?; // 22
    Some(Stat {
        state,
        ppid,
        pgid,
        sid,
        start_ticks,
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once.
pub(crate) fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
        })
        .as_deref()
}

/// The children of `pid` (of all its threads), from `/proc/PID/task/*/children`; `None` where
/// the kernel does not provide that file (`CONFIG_PROC_CHILDREN`) or the process is gone.
pub(crate) fn children(pid: u32) -> Option<Vec<u32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    let mut read_any = false;
    // A thread that exits meanwhile takes its file with it: the others still count.
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read(task.path().join("children")) else {
            continue;
        };
        read_any = true;
        children.extend(
            String::from_utf8_lossy(&text)
                .split_ascii_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    read_any.then_some(children)
}

/// Every pid in `/proc` now.
pub(crate) fn all_pids() -> io::Result<Vec<u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

/// The command line of `pid`, one entry per argument; for a process without one (a kernel
/// thread, a zombie), its name in brackets, as `ps` shows it.
pub(crate) fn command_line(pid: u32) -> Vec<OsString> {
    let args: Vec<OsString> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    if !args.is_empty() {
        return args;
    }
    match std::fs::read(format!("/proc/{pid}/comm")) {
        Ok(mut name) => {
            name.retain(|&b| b != b'\n');
            let mut shown = b"[".to_vec();
            shown.extend_from_slice(&name);
            shown.push(b']');
            vec![OsString::from_vec(shown)]
        }
        Err(_) => Vec::new(),
    }
}

/// `PIDFD_GET_INFO` (`_IOWR(0xFF, 11, struct pidfd_info)`, Linux 6.13) with the first
/// version of `struct pidfd_info` (64 bytes): the kernel fills what it knows of that size.
const PIDFD_GET_INFO: usize = 0xC040_FF0B;
/// Asks for the exit status (Linux 6.15); the kernel sets it in the answer's mask once the
/// process has been reaped.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `struct pidfd_info`, version 0 (include/uapi/linux/pidfd.h).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

/// How the process behind `pidfd` ended, as a wait status (`WIFEXITED` ...), where the
/// kernel tells: it has exited and been reaped by its parent, on Linux 6.15 or later.
pub(crate) fn pidfd_exit_code(pidfd: &impl AsFd) -> Option<i32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: ioctl(2) on an open pidfd with a pointer to a writable struct of the size that
    // the request number encodes.
    let ret = unsafe {
        syscall(
            libc::SYS_ioctl,
            &[
                pidfd.as_fd().as_raw_fd() as usize,
                PIDFD_GET_INFO,
                &mut info as *mut PidfdInfo as usize,
            ],
        )
    };
    (ret == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_after_a_name_with_spaces_and_parentheses() {
        let line = b"42 (a (b) c) S 7 42 41 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 \
            1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(line).expect("parsed");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 7,
                pgid: 42,
                sid: 41,
                start_ticks: 123456,
            }
        );
    }

    #[test]
    fn this_process_has_a_stat_a_boot_id_and_a_command_line() {
        let me = stat(std::process::id()).expect("own stat");
        assert!(matches!(me.state, 'R' | 'S'), "{me:?}");
        // SAFETY: getsid(2) takes no pointers. (rustix's getsid asserts a positive id, but the
        // id of a session whose leader is outside this PID namespace reads as 0.)
        let sid = unsafe { libc::getsid(0) };
        assert_eq!(me.sid, sid);
        assert!(me.start_ticks > 0);
        assert_eq!(boot_id().map(str::len), Some(36));
        assert!(!command_line(std::process::id()).is_empty());
        assert_eq!(std::mem::size_of::<PidfdInfo>(), 64);
    }
}
