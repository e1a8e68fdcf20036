//! The fallback for kernels or sandboxes without clone3: glibc's clone() with CLONE_PIDFD, the
//! cgroup joined by writing cgroup.procs. Forced for this whole test process.

#[macro_use]
mod common;

scenario_tests!(sheepdog::SpawnPath::Clone, "clone_");
