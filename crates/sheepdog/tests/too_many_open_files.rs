//! Running out of descriptors is reported as such, and leaves nothing behind. Alone in its test
//! process because it lowers this process's descriptor limit.

mod common;

use common::{cmd, open_fds};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use sheepdog::Stdio;

/// Restores the descriptor limit, also when an assertion fails.
struct RestoreLimit(Rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        let _ = setrlimit(Resource::Nofile, self.0);
    }
}

#[tokio::test]
async fn too_many_open_files() {
    // Start the lazily created pieces first so they do not count against the lowered limit,
    // and let the reaper remove that first herd.
    cmd("emfile", "true")
        .spawn()
        .expect("spawn")
        .wait()
        .await
        .expect("wait");
    common::settle();

    let original = getrlimit(Resource::Nofile);
    let _restore = RestoreLimit(original);
    let before = open_fds();
    let highest = *before.last().expect("some descriptor is open") as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(highest + 64),
            maximum: original.maximum,
        },
    )
    .expect("lower RLIMIT_NOFILE");
    // Fill every free slot, then free one: room for one descriptor, and a pipe needs two.
    let mut filler = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        filler.push(file);
    }
    filler.pop();

    let err = cmd("emfile", "echo")
        .stdout(Stdio::piped())
        .spawn()
        .expect_err("no descriptor left for a pipe");
    assert_eq!(err.raw_os_error(), Some(24), "{err}"); // EMFILE
    let text = err.to_string();
    // Whichever runs out first: the private herd's cgroup files, or the pipe.
    assert!(
        text.starts_with("cannot run `echo`: create a herd failed: ")
            || text.starts_with("cannot run `echo`: create a pipe for stdout failed: "),
        "{text}"
    );
    assert!(text.contains("too many open files"), "{text}");
    // The same with a herd made beforehand: then the pipe is what fails.
    drop(filler.pop());
    drop(filler.pop());
    drop(filler.pop());
    drop(filler.pop());
    drop(filler.pop());
    let herd = sheepdog::Herd::new().expect("a herd, with five descriptors free");
    // The herd that failed above is still being cleaned up in the background, which frees
    // descriptors: let that finish before filling the free slots again.
    common::settle();
    filler.extend(std::iter::from_fn(|| std::fs::File::open("/dev/null").ok()));
    filler.pop();
    let err = herd
        .spawn(cmd("emfile", "echo").stdout(Stdio::piped()))
        .expect_err("no descriptor left for a pipe");
    assert_eq!(
        err.to_string(),
        "cannot run `echo`: create a pipe for stdout failed: Too many open files (os error 24) \
         (too many open files: close descriptors or raise the limit, `ulimit -n`)"
    );
    drop(herd);
    common::settle();

    drop(filler);
    drop(_restore);
    common::settle();
    assert_eq!(open_fds().len(), before.len());
}
