//! The last fallback, for kernels or sandboxes that refuse pidfds: children are addressed by
//! pid while unreaped, and waited for on a blocking thread. Forced for this whole test process.

#[macro_use]
mod common;

scenario_tests!(sheepdog::SpawnPath::CloneWithoutPidfd, "nopidfd_");
