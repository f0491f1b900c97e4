//! Processors: what happens to log events between their source and the router.

pub mod crash;
pub mod enrich;
pub mod multiline;
pub mod redact;
