//! What a `DashboardView` should produce, from the pure renderers: the dashboard ConfigMap for
//! Grafana's sidecar and a `GrafanaDashboard` when grafana-operator serves it.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;
use vigil_crds::DashboardView;

use crate::controllers::OptionalApis;
use crate::render::{dashboards, Inventory};

/// The children of one view, one field per child kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `vigil-dashboardview-<name>`, labelled `grafana_dashboard: "1"`.
    pub dashboard_config_map: ConfigMap,
    /// `vigil-dashboardview-<name>`, when `GrafanaDashboard` is served.
    pub grafana_dashboard: Option<Value>,
}

/// What the view renders to, for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Panels in the dashboard (rows included).
    pub panels: i32,
    /// The dashboard's Grafana uid.
    pub uid: String,
}

/// Renders the children of `view`; `inv` holds the view's apps.
pub fn children(view: &DashboardView, inv: &Inventory, apis: OptionalApis) -> Desired {
    let dashboard = dashboards::dashboard(view, inv);
    let folder = dashboards::folder_of(view);
    Desired {
        dashboard_config_map: dashboards::dashboard_config_map(
            view,
            dashboards::dashboard_object_name(view),
            &dashboard,
            folder,
        ),
        grafana_dashboard: apis
            .grafana_dashboard
            .then(|| dashboards::grafana_dashboard_cr(view, &dashboard, folder)),
    }
}

/// Counts what `view` renders to.
pub fn summary(view: &DashboardView, inv: &Inventory) -> Summary {
    let dashboard = dashboards::dashboard(view, inv);
    let panels = dashboard["panels"].as_array().map_or(0, Vec::len);
    Summary {
        panels: i32::try_from(panels).unwrap_or(i32::MAX),
        uid: dashboards::view_uid(view),
    }
}
