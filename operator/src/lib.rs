//! Vigil's operator: pure renderers from the four resources to what Prometheus, Alertmanager,
//! Grafana, the agent and Kubernetes consume, and the offline `render` command around them.

pub mod bundle;
pub mod controllers;
pub mod leader;
pub mod manifests;
pub mod render;
pub mod run;
pub mod signals;
pub mod telemetry;
pub mod tls;
pub mod webhook;
