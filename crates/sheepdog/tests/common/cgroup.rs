//! A cgroup v2 directory for one test, removed when dropped (also when the test fails).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// This process's own cgroup v2 directory.
pub fn own_cgroup() -> Option<PathBuf> {
    let mount = cgroup2_mount()?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

pub struct TestCgroup {
    pub path: PathBuf,
    pub dir: File,
}

impl TestCgroup {
    /// A fresh cgroup below this process's own, or `Err(reason)` to skip the test.
    pub fn new(test: &str) -> Result<TestCgroup, String> {
        let parent = own_cgroup().ok_or("no cgroup v2 mount")?;
        let path = parent.join(format!("sheepdog-test-{test}-{}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        match File::open(&path) {
            Ok(dir) => Ok(TestCgroup { path, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(format!("cannot open {}: {e}", path.display()))
            }
        }
    }

    pub fn target(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The path as /proc/PID/cgroup shows it ("0::/...").
    pub fn proc_line(&self) -> String {
        let mount = cgroup2_mount().unwrap_or_default();
        let rel = self.path.strip_prefix(&mount).unwrap_or(Path::new(""));
        format!("0::/{}", rel.display())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        super::poll_until(Duration::from_secs(10), || {
            std::fs::remove_dir(&self.path).is_ok() || !self.path.exists()
        });
    }
}
