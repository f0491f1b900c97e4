//! Sources: where data enters the agent.

pub mod logs;
pub mod otlp;
pub mod scrape;
