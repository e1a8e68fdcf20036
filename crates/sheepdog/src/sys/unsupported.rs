//! A platform sheepdog has no backend for: the interface of `sys/mod.rs`, with every call that
//! would start or reach a process failing with [`io::ErrorKind::Unsupported`].
//!
//! The handles (`Process`, `Leader`, `Container`, `Subtree`, `Terminal`) are empty enums: none
//! can be made, since every constructor fails, so their methods can never run (`match *self
//! {}`). What only reads the host says "nothing known" (`None`, an empty list).

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::signal::Signal;
use crate::sys::{ContainerError, Reaped, SpawnError, SpawnPath, SpawnRequest, Spawned, Stat};

pub(crate) const SUPPORTED: bool = false;

/// What this platform says to every request.
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "sheepdog has no backend for this platform",
    )
}

#[derive(Debug)]
pub(crate) enum Process {}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        match *self {}
    }

    pub(crate) async fn wait(&mut self) -> io::Result<Reaped> {
        match *self {}
    }

    pub(crate) fn try_wait(&mut self) -> io::Result<Option<Reaped>> {
        match *self {}
    }

    pub(crate) fn status(&self) -> Option<Reaped> {
        match *self {}
    }

    pub(crate) fn signal(&self, _: Signal) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn leader(&self) -> io::Result<Leader> {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum Leader {}

impl Leader {
    pub(crate) fn open(_: u32) -> io::Result<Leader> {
        Err(unsupported())
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        match *self {}
    }

    pub(crate) fn pid(&self) -> u32 {
        match *self {}
    }

    pub(crate) fn signal(&self, _: Signal, _: bool) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn has_exited(&self) -> bool {
        match *self {}
    }

    pub(crate) async fn exited(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) async fn reaped(&self) -> io::Result<()> {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum Terminal {}

impl Terminal {
    pub(crate) fn give_back(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn hand_to(&self, _: i32) -> io::Result<()> {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum Container {}

impl Container {
    pub(crate) fn cgroup(_: Option<&Path>, _: bool) -> Result<Container, ContainerError> {
        Err(ContainerError::Unavailable(unsupported().to_string()))
    }

    pub(crate) fn group(_: bool) -> io::Result<Container> {
        Err(unsupported())
    }

    pub(crate) fn adopts_orphans(&self) -> Option<bool> {
        match *self {}
    }

    pub(crate) fn cgroup_path(&self) -> Option<&Path> {
        match *self {}
    }

    pub(crate) fn process_group(&self) -> Option<i32> {
        match *self {}
    }

    pub(crate) fn guarded(&self) -> bool {
        match *self {}
    }

    pub(crate) fn spawn(&self, _: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
        match *self {}
    }

    pub(crate) fn spawn_subtree(
        &self,
        _: &SpawnRequest<'_>,
    ) -> Result<(Spawned, Option<Subtree>), SpawnError> {
        match *self {}
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        match *self {}
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn cpu_time(&self) -> io::Result<Option<(Duration, Duration)>> {
        match *self {}
    }

    pub(crate) fn counter(&self, _: &str) -> io::Result<Option<u64>> {
        match *self {}
    }

    pub(crate) fn members(&self) -> io::Result<Vec<u32>> {
        match *self {}
    }

    pub(crate) async fn members_async(&self) -> io::Result<Vec<u32>> {
        match *self {}
    }

    pub(crate) fn signal_members(&self, _: Signal, _: bool) -> io::Result<Vec<u32>> {
        match *self {}
    }

    pub(crate) async fn signal_members_async(&self, _: Signal, _: bool) -> io::Result<Vec<u32>> {
        match *self {}
    }

    pub(crate) fn kill_strays(&self) {
        match *self {}
    }

    pub(crate) async fn set_frozen(&self, _: bool) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn thaw_now(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn release(self) {
        match self {}
    }

    pub(crate) fn dispose(self) {
        match self {}
    }
}

#[derive(Debug)]
pub(crate) enum Subtree {}

impl Subtree {
    pub(crate) fn thaw(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn signal_all(&self, _: Signal) -> io::Result<Vec<u32>> {
        match *self {}
    }

    pub(crate) async fn wait_empty(&self) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn count(&self) -> usize {
        match *self {}
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        match *self {}
    }
}

pub(crate) fn spawn_into(
    _: &SpawnRequest<'_>,
    _: Option<BorrowedFd<'_>>,
    _: Option<i32>,
) -> Result<Spawned, SpawnError> {
    Err(SpawnError::os("spawn")(unsupported()))
}

pub(crate) fn force_spawn_path(_: SpawnPath) {}

pub(crate) fn writable_cgroup_parent() -> Result<PathBuf, String> {
    Err(unsupported().to_string())
}

pub(crate) fn force_homeless() {}

pub(crate) fn namespace_init() -> bool {
    false
}

pub(crate) fn unguarded_reason() -> String {
    unsupported().to_string()
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Err(unsupported())
}

pub(crate) fn populate(_: &mut [MaybeUninit<u8>]) {}

pub(crate) fn resize_pipe(_: BorrowedFd<'_>, _: usize) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn set_nonblocking(_: BorrowedFd<'_>) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn read_now(_: BorrowedFd<'_>, _: &mut Vec<u8>) -> io::Result<usize> {
    Err(unsupported())
}

/// Never made: [`stop_switch`] fails.
#[derive(Debug)]
pub(crate) enum StopSwitch {}

/// Never made: [`stop_switch`] fails.
#[derive(Debug)]
pub(crate) enum StopWatch {}

pub(crate) fn stop_switch() -> io::Result<(StopSwitch, StopWatch)> {
    Err(unsupported())
}

pub(crate) fn wait_readable(_: BorrowedFd<'_>, stop: &StopWatch) -> io::Result<bool> {
    match *stop {}
}

/// Returns: the caller then exits with 128 + the signal's number.
pub(crate) fn die_by(_: Signal) {}

/// Returns at once: nothing is stopped.
pub(crate) fn stop_self() {}

pub(crate) fn stat(_: u32) -> Option<Stat> {
    None
}

pub(crate) fn boot_id() -> Option<&'static str> {
    None
}

pub(crate) fn children(_: u32) -> Option<Vec<u32>> {
    None
}

pub(crate) fn command_line(_: u32) -> Vec<OsString> {
    Vec::new()
}

pub(crate) fn all_pids() -> io::Result<Vec<u32>> {
    Err(unsupported())
}

pub(crate) fn background_work() -> usize {
    0
}

pub(crate) fn sentinel_pid() -> Option<i32> {
    None
}

pub(crate) fn sentinel_inject_receive_error(_: i32) -> io::Result<()> {
    Err(unsupported())
}
