//! Test support, compiled only into the library's unit tests: never shipped.

pub mod fake_lxd;

pub use fake_lxd::{Call, FakeLxd};
