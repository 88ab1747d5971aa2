//! Front ends of the one pipeline: every way a person says what they want
//! (a preseed file, interactive answers) becomes the same
//! [`crate::plan::PlanRequest`]. This is where [`crate::preseed`] (the file's
//! schema) meets [`crate::plan`] (the pure rules), so neither imports the other.

pub mod interactive;
pub mod preseed;
