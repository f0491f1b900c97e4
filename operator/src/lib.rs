//! Vigil's operator: pure renderers from the four resources to what Prometheus, Alertmanager,
//! Grafana, the agent and Kubernetes consume, and the offline `render` command around them.

// The in-memory API server under `tests/support/fake_api` names this crate `vigil_operator`, as
// the integration tests that also include it do.
#[cfg(test)]
extern crate self as vigil_operator;

pub mod analytics;
pub mod bundle;
pub mod controllers;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod leader;
pub mod manifests;
pub mod render;
pub mod run;
pub mod signals;
pub mod telemetry;
pub mod tls;
pub mod webhook;
pub mod yaml;

/// The in-memory API server of the controller tests (test support, not product code).
#[cfg(test)]
#[path = "../tests/support/fake_api/mod.rs"]
pub mod fake_api;
