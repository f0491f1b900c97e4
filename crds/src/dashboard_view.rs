//! `DashboardView`: a Grafana dashboard for one audience over one or more applications.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Audience, ClientType, Condition, GeneratedObjects, PromQl};

/// A Grafana dashboard built from presets for an audience and a client type, over one or more
/// `MonitoredApp`s, with optional extra panels.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "DashboardView",
    doc = "A DashboardView is a Grafana dashboard for one audience and client type over one or more MonitoredApps, built from presets with optional extra panels.",
    namespaced,
    status = "DashboardViewStatus",
    shortname = "dv",
    category = "vigil",
    printcolumn = r#"{"name":"Audience","type":"string","jsonPath":".spec.audience"}"#,
    printcolumn = r#"{"name":"Client","type":"string","jsonPath":".spec.clientType"}"#,
    printcolumn = r#"{"name":"Panels","type":"integer","jsonPath":".status.panels"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DashboardViewSpec {
    /// Dashboard title. Default: derived from the audience and the apps. At most 256
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub title: Option<String>,

    /// Names of the `MonitoredApp`s (same namespace) the dashboard covers. At most 32 names of
    /// at most 253 characters.
    #[schemars(length(min = 1, max = 32), inner(length(max = 253)))]
    pub apps: Vec<String>,

    /// Who the dashboard is for: `engineering` (stack-trace fingerprints, release correlation),
    /// `support` (users affected) or `management` (trends, SLO summary).
    pub audience: Audience,

    /// Client-type preset panels. Default: the client type of the first app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<ClientType>,

    /// Extra panels appended after the presets. At most 64 panels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub panels: Vec<ExtraPanel>,

    /// Grafana folder for the dashboard. Default `Vigil`. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub folder: Option<String>,
    /// Extra labels and annotations for the objects generated from this resource, such as
    /// `labels: {release: kube-prometheus-stack}`.
    #[serde(default, skip_serializing_if = "GeneratedObjects::is_empty")]
    pub generated_objects: GeneratedObjects,
}

impl crate::common::HasGeneratedObjects for DashboardView {
    fn generated_objects(&self) -> &crate::common::GeneratedObjects {
        &self.spec.generated_objects
    }
}

/// A user-defined panel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraPanel {
    /// Panel title. At most 256 characters.
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// Query; `$namespace`, `$app` and `$cluster` are dashboard variables (match the last two
    /// with `=~`: "All" stands for a regex). At most 8192 characters.
    pub expr: PromQl,
    /// Grafana unit, such as `percentunit`, `s`, `reqps` or `short`. Default `short`. At most
    /// 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub unit: Option<String>,
    /// `timeseries`, `stat`, `table` or `bargauge`. Default `timeseries`.
    #[serde(default)]
    pub kind: PanelKind,
}

/// Grafana panel type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PanelKind {
    /// A time series graph.
    #[default]
    Timeseries,
    /// A single number.
    Stat,
    /// A table of series.
    Table,
    /// Horizontal bars, ranked.
    Bargauge,
}

impl PanelKind {
    /// Grafana's panel `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            PanelKind::Timeseries => "timeseries",
            PanelKind::Stat => "stat",
            PanelKind::Table => "table",
            PanelKind::Bargauge => "bargauge",
        }
    }
}

/// Observed state of a `DashboardView`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardViewStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `DashboardApplied` conditions. At most 16 conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), transform = crate::bounds::conditions)]
    pub conditions: Vec<Condition>,
    /// Panels in the generated dashboard.
    #[serde(default)]
    pub panels: i32,
    /// The Grafana `uid` of the generated dashboard. At most 40 characters, Grafana's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub uid: Option<String>,
}
