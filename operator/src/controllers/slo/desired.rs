//! What an `SLO` should produce, from the pure renderers: a `PrometheusRule` when
//! prometheus-operator serves it (otherwise its rule file, its part of the shared outputs; see
//! `aggregate`), the dashboard ConfigMap for Grafana's sidecar, and a `GrafanaDashboard` when
//! grafana-operator serves it.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::Value;
use vigil_crds::{MonitoredApp, Slo};

use crate::controllers::aggregate::{self, Contribution, PrometheusPart, Routes};
use crate::controllers::OptionalApis;
use crate::render::rules::Rule;
use crate::render::slo::SloSeverities;
use crate::render::{alertmanager, dashboards, namespace_of, slo, Inventory};

/// The children of one objective, one field per child kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `vigil-slo-<name>`, when `PrometheusRule` is served.
    pub prometheus_rule: Option<Value>,
    /// `vigil-slo-<name>`, labelled `grafana_dashboard: "1"`.
    pub dashboard_config_map: ConfigMap,
    /// `vigil-slo-<name>`, when `GrafanaDashboard` is served.
    pub grafana_dashboard: Option<Value>,
    /// The objective's file in the namespace's shared ConfigMap; none when `PrometheusRule` is
    /// served.
    pub rule_file: PrometheusPart,
    /// `vigil-slo-<name>`, when `AlertmanagerConfig` is served and the objective names
    /// receivers of its own.
    pub alertmanager_config: Option<Value>,
    /// The routes to its own receivers in the shared `alertmanager.yml`; none when
    /// `AlertmanagerConfig` is served or it names no receivers.
    pub routes: Routes,
}

/// What the objective renders to, for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Recording rules (SLI windows and error budget).
    pub recording_rules: i32,
    /// Burn-rate, absent-SLI and budget-forecast alerts.
    pub alerts: i32,
}

/// Renders the children of `objective` on `app`; alerts carry `cluster` (`--cluster-name`).
pub fn children(
    objective: &Slo,
    app: &MonitoredApp,
    apis: OptionalApis,
    severities: &SloSeverities,
    cluster: Option<&str>,
) -> Result<Desired, serde_yaml::Error> {
    let dashboard = dashboards::slo_dashboard(objective);
    let folder = dashboards::DEFAULT_FOLDER;
    Ok(Desired {
        prometheus_rule: apis.prometheus_rule.then(|| {
            slo::slo_prometheus_rule(
                objective,
                &slo::slo_rules_with(objective, app, severities).with_cluster(cluster),
            )
        }),
        dashboard_config_map: dashboards::dashboard_config_map(
            objective,
            dashboards::dashboard_object_name(objective),
            &dashboard,
            folder,
        ),
        grafana_dashboard: apis
            .grafana_dashboard
            .then(|| dashboards::grafana_dashboard_cr(objective, &dashboard, folder)),
        rule_file: aggregate::slo_rules_part(objective, app, apis, severities, cluster)?,
        alertmanager_config: if apis.alertmanager_config {
            alertmanager::alertmanager_config_crs(&Inventory {
                slos: vec![objective.clone()],
                ..Inventory::default()
            })
            .into_iter()
            .next()
        } else {
            None
        },
        routes: aggregate::slo_routes_part(objective, apis),
    })
}

/// The objective's parts of the shared outputs, all empty: what is withdrawn when it goes.
pub fn withdrawn(objective: &Slo) -> Contribution {
    Contribution {
        prometheus: Some(PrometheusPart::RuleFile {
            key: aggregate::slo_rules_key(&objective.name_any()),
            yaml: None,
        }),
        routes: Some(Routes {
            namespace: namespace_of(objective),
            name: objective.name_any(),
            of_slo: true,
            spec: None,
        }),
    }
}

/// Counts what `objective` renders to.
pub fn summary(objective: &Slo, app: &MonitoredApp) -> Summary {
    let file = slo::slo_rules(objective, app);
    let rules: Vec<&Rule> = file.groups.iter().flat_map(|g| &g.rules).collect();
    let count = |alerting: bool| {
        let n = rules
            .iter()
            .filter(|r| matches!(r, Rule::Alerting(_)) == alerting)
            .count();
        i32::try_from(n).unwrap_or(i32::MAX)
    };
    Summary {
        recording_rules: count(false),
        alerts: count(true),
    }
}
