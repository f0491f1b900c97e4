//! Vigil's API: the four custom resources (`MonitoredApp`, `AlertPolicy`, `SLO`,
//! `DashboardView`) in `vigil.dev/v1alpha1`, the value types they share, and the agent
//! configuration that the operator renders and the sidecar agent reads.
//!
//! Field doc comments are user documentation: they become the CRD descriptions that
//! `kubectl explain` shows.

pub mod agent_config;
pub mod alert_policy;
mod bounds;
pub mod common;
pub mod crash_users;
pub mod dashboard_view;
pub mod known_event;
pub mod monitored_app;
pub mod slo;

pub use agent_config::AgentConfig;
pub use alert_policy::{AlertPolicy, AlertPolicySpec};
pub use common::{Audience, ClientType, Duration, PromQl, SecretKeyRef, Severity};
pub use dashboard_view::{DashboardView, DashboardViewSpec};
pub use monitored_app::{MonitoredApp, MonitoredAppSpec};
pub use slo::{Slo, SloSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Vigil resource.
pub const GROUP: &str = "vigil.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "vigil.dev/v1alpha1";

/// Every Vigil CRD, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        MonitoredApp::crd(),
        AlertPolicy::crd(),
        Slo::crd(),
        DashboardView::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream, exactly as committed in `crds/` and the chart.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
