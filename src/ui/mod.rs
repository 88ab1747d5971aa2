//! What people see: progress and warnings on stderr, data on stdout.

pub mod format;
pub mod printer;
pub mod prompt;
mod select_table;

pub use format::{OutputFormat, Tabular, render};
pub use printer::Printer;
