//! Homes left behind: `<parent>/sheepdog-<pid>.<pidns>` directories whose owner is gone and
//! whose sentinel did not remove them (it was killed too, or the host went down mid-way).
//!
//! A pid names a process only in its pid namespace, and owners in other namespaces (a
//! container's, an `unshare --pid`) share parent cgroups with this one: so a home's name says
//! the owner's pid namespace (the inode of `/proc/self/ns/pid`), and only homes of this
//! process's own namespace are ever judged.
//!
//! A home is stale when its owner is gone: no process has its pid, or the one that has it
//! started after the home was made (the pid was reused). A home's change time is never earlier
//! than its making (it moves on when herds are made in it), so that test can only take a live
//! owner's home for a stranger's, never the reverse. Only directories named exactly like a home,
//! owned by this user and unpopulated are touched; each cgroup in them is removed, deepest
//! first, and then the home.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much later than a home its owner's recorded start may be before the owner is taken for
/// another process: start times are counted in clock ticks from a boot time given in seconds.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// The name of this process's home: `sheepdog-<pid>.<pidns>`, or `sheepdog-<pid>` where the
/// pid namespace cannot be read (such a home is never judged by another process).
pub(super) fn home_name() -> String {
    match own_pid_namespace() {
        Some(ns) => format!("sheepdog-{}.{ns}", std::process::id()),
        None => format!("sheepdog-{}", std::process::id()),
    }
}

/// The inode of this process's pid namespace.
fn own_pid_namespace() -> Option<u64> {
    fs::metadata("/proc/self/ns/pid")
        .ok()
        .map(|meta| meta.ino())
}

/// Removes this process's own leftover home below `parent`, if there is one: a home of a
/// process that had this pid before (this process has made none there yet).
pub(super) fn remove_own_leftover(parent: &Path) {
    let home = parent.join(home_name());
    if home.exists() {
        if let Err(err) = remove_if_unpopulated(&home) {
            tracing::debug!(path = %home.display(), %err, "sheepdog: cannot remove a leftover home");
        }
    }
}

/// Removes the stale homes of other processes below `parent`; returns how many it removed.
pub(super) fn sweep(parent: &Path) -> usize {
    let Some(namespace) = own_pid_namespace() else {
        return 0; // no pid of another home can be judged
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let uid = rustix::process::geteuid().as_raw();
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, home_namespace)) = home_owner(name.as_encoded_bytes()) else {
            continue;
        };
        if home_namespace != namespace {
            continue; // its pid means another process here, or none
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if pid == own || !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let made = UNIX_EPOCH + Duration::from_secs(meta.ctime().max(0) as u64);
        if owner_alive(pid, made) {
            continue;
        }
        // Made again meanwhile (by a new process with that pid): not stale any more.
        let again = fs::metadata(entry.path());
        if !again.is_ok_and(|again| again.ctime() == meta.ctime() && again.ino() == meta.ino()) {
            continue;
        }
        match remove_if_unpopulated(&entry.path()) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(err) => tracing::debug!(
                path = %entry.path().display(), %err,
                "sheepdog: cannot remove a stale home",
            ),
        }
    }
    if removed > 0 {
        tracing::info!(removed, parent = %parent.display(), "sheepdog: removed stale homes");
    }
    removed
}

/// The pid and pid namespace in a name of the form `sheepdog-<pid>.<pidns>` (nothing before
/// or after).
fn home_owner(name: &[u8]) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(b"sheepdog-")?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let pid = u32::try_from(number(&rest[..dot])?).ok()?;
    Some((pid, number(&rest[dot + 1..])?))
}

/// Whether the process `pid` exists and may be the one that made a home at `made`.
fn owner_alive(pid: u32, made: SystemTime) -> bool {
    let Some(process) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    if rustix::process::test_kill_process(process) == Err(rustix::io::Errno::SRCH) {
        return false;
    }
    match started_at(pid) {
        Some(started) => started <= made + CLOCK_SLACK,
        None => true, // unknown is not "reused"
    }
}

/// When process `pid` started, by the wall clock: boot time plus its start ticks.
fn started_at(pid: u32) -> Option<SystemTime> {
    let ticks = super::procfs::stat(pid)?.start_ticks;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / hz))
}

/// Removes the cgroup `home` and every cgroup below it, if nothing runs in any of them;
/// `Ok(false)` if something does.
fn remove_if_unpopulated(home: &Path) -> io::Result<bool> {
    let events = fs::read_to_string(home.join("cgroup.events"))?;
    if !events.lines().any(|line| line == "populated 0") {
        return Ok(false);
    }
    remove_tree(home, 0)?;
    Ok(true)
}

fn remove_tree(dir: &Path, depth: u32) -> io::Result<()> {
    if depth < 8 {
        for entry in fs::read_dir(dir)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), depth + 1)?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_like_a_home_are_taken() {
        assert_eq!(
            home_owner(b"sheepdog-123.4026531836"),
            Some((123, 4026531836))
        );
        for name in [
            &b"sheepdog-"[..],
            b"sheepdog-123",
            b"sheepdog-12.",
            b"sheepdog-12.4-herd-0",
            b"sheepdog-12x.4",
            b"xsheepdog-12.4",
            b"sheepdog--12.4",
            b"sheepdog-99999999999.4",
        ] {
            assert_eq!(home_owner(name), None, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn a_home_is_named_for_its_pid_namespace() {
        let name = home_name();
        let (pid, namespace) = home_owner(name.as_bytes()).expect("a home's name");
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(namespace), own_pid_namespace());
    }

    #[test]
    fn this_process_started_before_now() {
        let started = started_at(std::process::id()).expect("our own start time");
        assert!(owner_alive(std::process::id(), SystemTime::now()));
        assert!(started <= SystemTime::now() + CLOCK_SLACK);
        // A home made long before this process started is not its.
        assert!(!owner_alive(std::process::id(), UNIX_EPOCH));
    }
}
