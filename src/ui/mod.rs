//! What people see: progress and warnings on stderr, data on stdout.

pub mod format;
pub mod printer;

pub use format::{OutputFormat, Tabular, render};
pub use printer::Printer;
