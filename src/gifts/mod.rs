//! The gift monitor's service (seed 001): months in the configured zone
//! and the monthly summaries that `/gift*` answers and `tidelog gifts as-of`
//! prints.

pub mod collector;
pub mod ingest;
pub mod month;
pub mod summary;

pub use month::{BadMonth, Month};
