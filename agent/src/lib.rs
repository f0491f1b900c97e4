//! `vigil-agent`: the per-pod sidecar. Data flows
//! sources (OTLP, app scrape, pod logs) → processors (multi-line joining, crash detection,
//! redaction, enrichment) → [`router`] → one disk [`buffer`] per sink → sinks (OTLP, Prometheus
//! remote write, Loki, Splunk HEC), each with retry. [`runtime`] wires it from an
//! [`vigil_crds::AgentConfig`] and reloads it when the mounted file changes.

pub mod admin;
pub mod batch;
pub mod buffer;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod http_server;
pub mod identity;
pub mod processors;
pub mod prompb;
pub mod router;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod telemetry;
