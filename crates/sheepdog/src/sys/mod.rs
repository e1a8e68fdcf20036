//! The platform layer: everything that talks to the kernel, behind one internal interface.
//!
//! The portable core (`command`, `child`, `status`, ...) calls only what this module exports;
//! each platform module provides the same items. Every `unsafe` block of the crate lives below
//! this point.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::SpawnPath;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("sheepdog supports Linux only for now; see docs/ARCHITECTURE.md, \"Platforms\"");
