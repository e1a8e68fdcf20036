//! What the process-group fallback needs from /proc: this process as the adopter of orphaned
//! descendants (`PR_SET_CHILD_SUBREAPER`), the children of a process, and the marks by which a
//! process is attributed to a herd.
//!
//! Everything here reads /proc and so blocks: callers on an async path run it on a blocking
//! thread.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// The variable each process-group herd sets in its children's environment; descendants inherit
/// it, so an orphan adopted by this process can be told to the herd it came from.
pub(crate) const HERD_VAR: &str = "SHEEPDOG_HERD";

/// Makes this process the adopter of its orphaned descendants, once; returns whether it is one.
/// The effect is process-wide and is never undone: other herds may rely on it.
pub(crate) fn become_subreaper() -> bool {
    static SUBREAPER: OnceLock<bool> = OnceLock::new();
    *SUBREAPER.get_or_init(|| {
        let me = rustix::process::getpid();
        match rustix::process::set_child_subreaper(Some(me)) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(
                    err = %io::Error::from(err),
                    "sheepdog: cannot adopt orphans (PR_SET_CHILD_SUBREAPER); processes that \
                     leave a process-group herd and lose their parent are not caught",
                );
                false
            }
        }
    })
}

pub(crate) use super::procfs::{stat, Stat};

/// The children of every thread of `pid` (`/proc/PID/task/*/children`); none where that
/// cannot be read.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    super::procfs::children(pid).unwrap_or_default()
}

/// Whether the environment `pid` started its program with holds `var` exactly (`NAME=value`).
/// A process of another user, a set-user-ID program or a zombie shows none.
///
/// A process in the middle of `execve` shows an empty environment for a moment (the new program's
/// is not set up yet), so with `recheck_empty` an empty one is read again a few times, a
/// millisecond apart (blocking); not for a scan of every process (kernel threads have none).
pub(crate) fn has_var(pid: u32, var: &[u8], recheck_empty: bool) -> bool {
    let reads = if recheck_empty {
        EMPTY_ENVIRONMENT_READS
    } else {
        1
    };
    for _ in 0..reads {
        match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(env) if env.is_empty() => std::thread::sleep(Duration::from_millis(1)),
            Ok(env) => return env.split(|&b| b == 0).any(|entry| entry == var),
            Err(_) => return false,
        }
    }
    false
}

/// How many times an empty environment is read before it is believed.
const EMPTY_ENVIRONMENT_READS: usize = 5;

/// Every pid in /proc.
pub(crate) fn all_pids() -> io::Result<Vec<u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_stat_and_environment_are_read() {
        let me = std::process::id();
        let stat = super::stat(me).expect("our own stat");
        assert!(!stat.is_dead());
        // SAFETY: getpgrp(2) takes no arguments. (rustix's getpgrp asserts a positive id, but a
        // group whose leader is outside this PID namespace shows as 0.)
        assert_eq!(stat.pgid, unsafe { libc::getpgrp() });
        assert!(stat.start_ticks > 0);
        let path = std::env::var("PATH").expect("PATH");
        assert!(super::has_var(me, format!("PATH={path}").as_bytes(), true));
        assert!(!super::has_var(me, b"PATH=", false));
    }
}
