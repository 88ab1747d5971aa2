//! Test support, compiled only into the library's unit tests: never shipped.

pub mod fake_lxd;
pub mod fake_microcluster;

pub use fake_lxd::{Call, FakeLxd};
pub use fake_microcluster::FakeMicrocluster;
