//! `DashboardView` controller behaviour against the in-memory API server.

use std::sync::Arc;

use serde_json::json;
use vigil_crds::{DashboardView, MonitoredApp};

use super::*;
use crate::controllers::fixtures::{condition, create, APP};
use crate::controllers::Settings;
use crate::fake_api::FakeApiServer;

const VIEW: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: support, namespace: shop}
spec:
  apps: [checkout]
  audience: support
"#;

fn create_view(server: &FakeApiServer, view: &str) -> Arc<DashboardView> {
    create::<MonitoredApp>(server, APP);
    create(server, view)
}

/// Without grafana-operator: only the labelled ConfigMap; the status gives the uid and panel
/// count and says where the dashboard is.
#[tokio::test]
async fn without_grafana_operator_the_dashboard_is_a_config_map() {
    let server = FakeApiServer::new().without_group("grafana.integreatly.org");
    let ctx = server.context(Settings::default());
    let view = create_view(&server, VIEW);
    reconcile(view.clone(), ctx).await.unwrap();

    let map = server
        .get("configmaps", "shop", "vigil-dashboardview-support")
        .unwrap();
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        map["metadata"]["ownerReferences"][0]["uid"],
        json!(view.metadata.uid.clone().unwrap())
    );
    assert!(server.list("grafanadashboards", "shop").is_empty());
    let stored = server.get("dashboardviews", "shop", "support").unwrap();
    let uid = stored["status"]["uid"].as_str().unwrap();
    assert!(map["data"].get(format!("{uid}.json")).is_some());
    assert!(stored["status"]["panels"].as_i64().unwrap() > 0);
    assert!(condition(&stored, "DashboardApplied")["message"]
        .as_str()
        .unwrap()
        .contains("grafana-operator is not installed"));
}

/// With grafana-operator: a `GrafanaDashboard` too; deleting the view removes both.
#[tokio::test]
async fn with_grafana_operator_both_are_written_and_deleted_with_the_view() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    reconcile(create_view(&server, VIEW), ctx).await.unwrap();
    assert!(server
        .get("grafanadashboards", "shop", "vigil-dashboardview-support")
        .is_some());
    assert!(server
        .get("configmaps", "shop", "vigil-dashboardview-support")
        .is_some());

    server.delete("dashboardviews", "shop", "support");
    assert!(server.list("grafanadashboards", "shop").is_empty());
    assert!(server
        .list("configmaps", "shop")
        .iter()
        .all(|c| c["metadata"]["name"] != "vigil-dashboardview-support"));
}

/// A name in `apps` with no `MonitoredApp` is `AppNotFound`, naming the list entry.
#[tokio::test]
async fn a_missing_app_is_named_by_its_index() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let view = create_view(&server, &VIEW.replace("[checkout]", "[checkout, cart]"));
    let error = reconcile(view, ctx).await.unwrap_err();
    assert_eq!(error.category(), "AppNotFound");
    let stored = server.get("dashboardviews", "shop", "support").unwrap();
    assert_eq!(
        condition(&stored, "Ready")["message"],
        r#"spec.apps[1] "cart" names no MonitoredApp in namespace "shop"; create it or fix spec.apps[1]"#
    );
    assert!(server.list("configmaps", "shop").is_empty());
}
