//! Dashboard renderer: Grafana dashboard JSON for each `DashboardView` (presets by audience and
//! client type, plus the view's own panels) and for each `SLO`, and the two ways they reach
//! Grafana: a ConfigMap for the Grafana sidecar (`grafana_dashboard: "1"`) and a grafana-operator
//! `GrafanaDashboard`.
//!
//! Every query runs on the `${datasource}` variable and is scoped with `namespace="$namespace"`
//! (a constant variable holding the resource's namespace), so a dashboard never shows another
//! namespace's series. The `cluster` and `app` variables are queries over
//! `vigil_app_release_info`; `cluster=~"$cluster"` with the all-value `.*` also matches series
//! without a `cluster` label, so single-cluster setups lose nothing. Panels are laid out row by
//! row on Grafana's 24-column grid.
//!
//! Request panels read each app's own request metrics
//! ([`MonitoredAppSpec::request_metrics`](vigil_crds::MonitoredAppSpec::request_metrics), the
//! same names its alert rules and SLIs use); a view over apps that name them differently joins
//! one series per naming with `or`.
//!
//! Release annotations mark the first minutes of every `vigil_app_release_info` series:
//! `changes()` cannot be used because each release is a *new* series (its `version` and
//! `revision` labels differ), in which nothing ever changes.
//!
//! SLO dashboards read the recording rules of `super::slo`, over the same windows
//! ([`super::slo::sli_windows`], which scale with the SLO's window), and the analytics engine's
//! budget forecast (`vigil:slo:*`), as does the management audience's section.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vigil_crds::common::HasGeneratedObjects;
use vigil_crds::crash_users::users_affected_promql;
use vigil_crds::dashboard_view::PanelKind;
use vigil_crds::{Audience, ClientType, DashboardView, Slo};

use super::alerts::duration;
use super::slo::{budget_forecast_horizon, sli_windows};
use super::{child_meta, namespace_of, promql_str, Inventory};

mod analytics;
mod requests;
#[cfg(test)]
mod tests;

use analytics::{forecast_panel, AnalyticsRules};
use requests::{app_regex, RequestSeries};

/// Grafana dashboard schema version written.
pub const SCHEMA_VERSION: u32 = 39;
/// Label the Grafana dashboard sidecar watches for.
pub const SIDECAR_LABEL: &str = "grafana_dashboard";
/// Annotation the Grafana dashboard sidecar reads the folder from.
pub const FOLDER_ANNOTATION: &str = "grafana_folder";
/// Folder used when a view does not name one.
pub const DEFAULT_FOLDER: &str = "Vigil";
/// Grafana's grid width.
const GRID_WIDTH: u32 = 24;
/// Every panel and query uses this data source variable.
const DATASOURCE: &str = "${datasource}";
/// Matcher scoping app series to the dashboard's namespace, clusters and selected apps.
const SCOPE: &str = r#"namespace="$namespace", app=~"$app", cluster=~"$cluster""#;
/// Range of the rates on time-series panels: Grafana's `$__rate_interval` (at least four scrape
/// intervals, growing with the time range shown).
const RATE: &str = "$__rate_interval";
/// The series every app has (one per release, from the operator), which the `cluster` and `app`
/// variables list their values from.
const INVENTORY_SERIES: &str = "vigil_app_release_info";

/// One query of a panel.
struct Query {
    expr: String,
    legend: String,
    /// Evaluate at the dashboard's end time only (tables, ranked bars).
    instant: bool,
}

fn q(expr: impl Into<String>, legend: &str) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.to_owned(),
        instant: false,
    }
}

fn instant(expr: impl Into<String>, legend: &str) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.to_owned(),
        instant: true,
    }
}

/// A panel before layout.
struct Panel {
    title: String,
    kind: PanelKind,
    unit: String,
    description: Option<String>,
    queries: Vec<Query>,
    /// Reads the apps' request metrics: left out when no app of the view serves requests.
    requests: bool,
    /// Legend prefixes of series pairs `<prefix> band low` / `<prefix> band high` drawn as a
    /// shaded band (the analytics engine's 80 % bands).
    bands: Vec<String>,
}

impl Panel {
    fn new(kind: PanelKind, title: &str, unit: &str, queries: Vec<Query>) -> Self {
        Panel {
            title: title.to_owned(),
            kind,
            unit: unit.to_owned(),
            description: None,
            queries,
            requests: false,
            bands: Vec::new(),
        }
    }

    /// Shades the area between `<prefix> band low` and `<prefix> band high` for each prefix.
    fn bands(mut self, prefixes: Vec<String>) -> Self {
        self.bands = prefixes;
        self
    }

    /// Marks a panel that reads the apps' request metrics.
    fn requests(mut self) -> Self {
        self.requests = true;
        self
    }

    fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.to_owned());
        self
    }

    /// Width and height on the grid.
    fn size(&self) -> (u32, u32) {
        match self.kind {
            PanelKind::Stat => (6, 4),
            PanelKind::Table => (24, 8),
            PanelKind::Timeseries | PanelKind::Bargauge => (12, 8),
        }
    }
}

/// A titled group of panels, rendered as a Grafana row followed by its panels.
struct Section {
    title: String,
    panels: Vec<Panel>,
}

fn section(title: &str, panels: Vec<Panel>) -> Section {
    Section {
        title: title.to_owned(),
        panels,
    }
}

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": DATASOURCE })
}

/// Places sections on the grid: each row spans the width, panels fill lines left to right and
/// wrap when the next one would not fit; ids are sequential.
fn layout(sections: Vec<Section>) -> Vec<Value> {
    let mut out = Vec::new();
    let (mut y, mut id) = (0u32, 1u32);
    for s in sections {
        out.push(json!({
            "id": id,
            "type": "row",
            "title": s.title,
            "collapsed": false,
            "datasource": datasource(),
            "gridPos": { "x": 0, "y": y, "w": GRID_WIDTH, "h": 1 },
            "panels": [],
        }));
        id += 1;
        y += 1;
        let (mut x, mut line_height) = (0u32, 0u32);
        for p in s.panels {
            let (w, h) = p.size();
            if x + w > GRID_WIDTH {
                y += line_height;
                x = 0;
                line_height = 0;
            }
            out.push(panel_json(&p, id, x, y, w, h));
            id += 1;
            x += w;
            line_height = line_height.max(h);
        }
        y += line_height;
    }
    out
}

fn panel_json(p: &Panel, id: u32, x: u32, y: u32, w: u32, h: u32) -> Value {
    let ref_ids = ('A'..='Z').map(String::from);
    let targets: Vec<Value> = p
        .queries
        .iter()
        .zip(ref_ids)
        .map(|(query, ref_id)| {
            let mut t = json!({
                "refId": ref_id,
                "datasource": datasource(),
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": !query.instant,
                "instant": query.instant,
            });
            if p.kind == PanelKind::Table {
                t["format"] = json!("table");
            }
            t
        })
        .collect();
    let options = match p.kind {
        PanelKind::Stat => json!({
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
            "colorMode": "value",
            "graphMode": "area",
        }),
        PanelKind::Bargauge => json!({
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
            "orientation": "horizontal",
            "displayMode": "gradient",
        }),
        PanelKind::Table => json!({ "showHeader": true }),
        PanelKind::Timeseries => json!({
            "legend": { "displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"] },
            "tooltip": { "mode": "multi", "sort": "desc" },
        }),
    };
    let mut panel = json!({
        "id": id,
        "type": p.kind.as_str(),
        "title": p.title,
        "datasource": datasource(),
        "gridPos": { "x": x, "y": y, "w": w, "h": h },
        "fieldConfig": { "defaults": { "unit": p.unit }, "overrides": band_overrides(&p.bands) },
        "options": options,
        "targets": targets,
    });
    if let Some(d) = &p.description {
        panel["description"] = json!(d);
    }
    if p.kind == PanelKind::Table {
        panel["transformations"] = json!([{ "id": "merge", "options": {} }]);
    }
    panel
}

/// Field overrides drawing each band: its edges without lines, the area between them shaded.
fn band_overrides(prefixes: &[String]) -> Value {
    let edge = |name: String, extra: Vec<Value>| {
        let mut properties = vec![json!({ "id": "custom.lineWidth", "value": 0 })];
        properties.extend(extra);
        json!({ "matcher": { "id": "byName", "options": name }, "properties": properties })
    };
    prefixes
        .iter()
        .flat_map(|p| {
            [
                edge(format!("{p} band low"), Vec::new()),
                edge(
                    format!("{p} band high"),
                    vec![
                        json!({ "id": "custom.fillBelowTo", "value": format!("{p} band low") }),
                        json!({ "id": "custom.fillOpacity", "value": 20 }),
                    ],
                ),
            ]
        })
        .collect()
}

// ---- presets -----------------------------------------------------------------------------

/// What every dashboard starts with: crashes, affected users, restarts and their trend.
fn overview(req: &RequestSeries) -> Section {
    use PanelKind::*;
    section(
        "Overview",
        vec![
            Panel::new(
                Stat,
                "Crashes (last hour)",
                "short",
                vec![q(
                    format!("sum(increase(vigil_crashes_total{{{SCOPE}}}[1h]))"),
                    "crashes",
                )],
            ),
            Panel::new(
                Stat,
                "Users affected by crashes",
                "short",
                vec![q(users_affected_promql(SCOPE, &["namespace"]), "users")],
            )
            .describe(
                "Distinct users in crash events of the last hour, across pods, versions and \
                 fingerprints (HyperLogLog estimate, standard error 13 %).",
            ),
            Panel::new(
                Stat,
                "Container restarts (last hour)",
                "short",
                vec![q(
                    format!("sum(increase(vigil_container_restarts_total{{{SCOPE}}}[1h]))"),
                    "restarts",
                )],
            ),
            Panel::new(
                Stat,
                "Error ratio",
                "percentunit",
                vec![q(req.error_ratio("namespace"), "errors")],
            )
            .requests(),
            Panel::new(
                Timeseries,
                "Crash rate by app",
                "short",
                vec![q(
                    format!(
                        "sum by (app) (rate(vigil_crashes_total{{{SCOPE}}}[$__rate_interval]))"
                    ),
                    "{{app}}",
                )],
            ),
            Panel::new(
                Timeseries,
                "Request rate by app",
                "reqps",
                vec![q(req.rate("app"), "{{app}}")],
            )
            .requests(),
        ],
    )
}

/// Panels for the client type, if it has any.
fn client_section(
    client: ClientType,
    req: &RequestSeries,
    analytics: &AnalyticsRules,
) -> Option<Section> {
    use PanelKind::*;
    let panels = match client {
        ClientType::Banking => vec![
            Panel::new(Timeseries, "Active users", "short", vec![q(
                format!("sum by (app) (vigil_active_users{{{SCOPE}}})"),
                "{{app}}",
            )])
            .describe("Distinct users seen in the last 5 minutes (estimate), from the logs' user field."),
        ]
        .into_iter()
        .chain(active_users_forecast(analytics))
        .chain([
            Panel::new(Timeseries, "Transactions", "reqps", vec![q(req.rate("app"), "{{app}}")]).requests(),
            Panel::new(Timeseries, "Crash rate by app version", "short", vec![q(
                format!("sum by (version) (rate(vigil_crashes_total{{{SCOPE}}}[$__rate_interval]))"),
                "{{version}}",
            )]),
            Panel::new(Bargauge, "Crash clusters by users affected", "short", vec![instant(
                format!("topk(10, sum by (fingerprint, type) (vigil_crash_affected_users{{{SCOPE}}}))"),
                "{{type}} {{fingerprint}}",
            )])
            .describe("The ten crash fingerprints that affect the most distinct users."),
        ])
        .collect(),
        ClientType::Infrastructure => vec![
            Panel::new(Timeseries, "Latency p50 by service", "s", vec![q(req.latency("0.5"), "{{app}}")]).requests(),
            Panel::new(Timeseries, "Latency p99 by service", "s", vec![q(req.latency("0.99"), "{{app}}")]).requests(),
            Panel::new(Timeseries, "Error rate by service", "percentunit", vec![q(req.error_ratio("app"), "{{app}}")]).requests(),
            Panel::new(Timeseries, "Container restarts by service", "short", vec![q(
                format!("sum by (app) (increase(vigil_container_restarts_total{{{SCOPE}}}[15m]))"),
                "{{app}}",
            )]),
        ],
        ClientType::PublicSector => vec![
            load_against_forecast(req, analytics),
            Panel::new(Timeseries, "Load by region", "reqps", vec![q(req.rate("region"), "{{region}}")]).requests()
                .describe("Needs a `region` label on the request series (set by the app or relabelling)."),
            Panel::new(Timeseries, "Error rate", "percentunit", vec![q(req.error_ratio("app"), "{{app}}")]).requests(),
            Panel::new(Timeseries, "Latency p99", "s", vec![q(req.latency("0.99"), "{{app}}")]).requests(),
        ],
        ClientType::Generic => return None,
    };
    Some(section(
        &format!("Client: {}", client_title(client)),
        panels,
    ))
}

/// Banking's "Active users against forecast": the active users and the forecast made an hour
/// earlier by the forecast rules that read them; none without such a rule.
fn active_users_forecast(analytics: &AnalyticsRules) -> Option<Panel> {
    let rules = analytics.forecasts_of("vigil_active_users");
    (!rules.is_empty()).then(|| {
        forecast_panel("Active users against forecast", "short", &rules).describe(
            "Active users and what the analytics engine forecast for them one hour earlier, \
             with its 80 % band.",
        )
    })
}

/// Public sector's "Load against forecast": the request rate and the forecast made an hour
/// earlier by the view's forecast rules, with its 80 % band (just the load without a rule).
fn load_against_forecast(req: &RequestSeries, analytics: &AnalyticsRules) -> Panel {
    let forecasts = analytics.forecasts();
    let mut panel = forecast_panel("Load against forecast", "reqps", &forecasts);
    panel.queries.insert(0, q(req.rate("namespace"), "load"));
    panel.requests().describe(
        "Request rate, and each forecast rule's series with what the analytics engine forecast \
         for it one hour earlier (80 % band). Add a forecast rule on the request rate to draw \
         one.",
    )
}

/// Panels for the audience.
fn audience_section(
    audience: Audience,
    namespace: &str,
    req: &RequestSeries,
    analytics: &AnalyticsRules,
) -> Section {
    use PanelKind::*;
    let panels = match audience {
        Audience::Engineering => vec![
            Panel::new(Table, "Stack-trace fingerprints (last 24h)", "short", vec![instant(
                format!(
                    "topk(25, sum by (fingerprint, type, language, version) (increase(vigil_crashes_total{{{SCOPE}}}[24h])))"
                ),
                "",
            )]),
            Panel::new(Timeseries, "Crash rate by fingerprint", "short", vec![q(
                format!("topk(10, sum by (fingerprint) (rate(vigil_crashes_total{{{SCOPE}}}[$__rate_interval])))"),
                "{{fingerprint}}",
            )]),
            Panel::new(Timeseries, "Crashes by version (release correlation)", "short", vec![q(
                format!("sum by (app, version) (rate(vigil_crashes_total{{{SCOPE}}}[$__rate_interval]))"),
                "{{app}} {{version}}",
            )])
            .describe("Release annotations mark each new version."),
            Panel::new(Timeseries, "Container restarts by reason", "short", vec![q(
                format!("sum by (reason) (increase(vigil_container_restarts_total{{{SCOPE}}}[15m]))"),
                "{{reason}}",
            )]),
            Panel::new(Timeseries, "Latency p99", "s", vec![q(req.latency("0.99"), "{{app}}")]).requests(),
            Panel::new(Table, "Releases", "dateTimeAsIso", vec![instant(
                format!("max by (app, version, revision) (vigil_app_release_timestamp_seconds{{{SCOPE}}}) * 1000"),
                "",
            )]),
        ],
        Audience::Support => vec![
            Panel::new(Timeseries, "Users affected", "short", vec![q(
                users_affected_promql(SCOPE, &["namespace", "app"]),
                "{{app}}",
            )])
            .describe("Distinct users in crash events of the last hour, per app, across pods (estimate, ±13 %)."),
            Panel::new(Timeseries, "Crashes by type", "short", vec![q(
                format!("sum by (type) (rate(vigil_crashes_total{{{SCOPE}}}[$__rate_interval]))"),
                "{{type}}",
            )]),
            Panel::new(Table, "Current alerts", "short", vec![instant(
                format!(
                    r#"sum by (alertname, severity, app) (ALERTS{{{SCOPE}, audience="support", alertstate="firing"}})"#
                ),
                "",
            )])
            .describe(&format!("Firing alerts routed to support in {namespace}.")),
        ],
        Audience::Management => vec![
            Panel::new(Timeseries, "Crashes per day, week over week", "short", vec![
                q(format!("sum(increase(vigil_crashes_total{{{SCOPE}}}[1d]))"), "this week"),
                q(format!("sum(increase(vigil_crashes_total{{{SCOPE}}}[1d] offset 1w))"), "last week"),
            ]),
            Panel::new(Timeseries, "Requests per day, week over week", "short", vec![
                q(req.increase("namespace", "1d", ""), "this week"),
                q(req.increase("namespace", "1d", " offset 1w"), "last week"),
            ]).requests(),
            Panel::new(Bargauge, "SLO error budget remaining", "percentunit", vec![instant(
                format!("min by (app, slo) (slo:error_budget_remaining:ratio{{{SCOPE}}})"),
                "{{app}} / {{slo}}",
            )]),
            Panel::new(Stat, "SLOs out of budget", "short", vec![q(
                format!("count(slo:error_budget_remaining:ratio{{{SCOPE}}} <= 0) or vector(0)"),
                "SLOs",
            )]),
            Panel::new(Stat, "Lowest error budget", "percentunit", vec![q(
                format!("min(slo:error_budget_remaining:ratio{{{SCOPE}}})"),
                "budget",
            )]),
            Panel::new(Bargauge, "SLO budget forecast: probability of running out", "percentunit", vec![instant(
                format!("max by (app, slo) (vigil:slo:budget_exhaustion_probability{{{SCOPE}}})"),
                "{{app}} / {{slo}}",
            )])
            .describe("The analytics engine's probability that each SLO's error budget runs out within its forecast horizon (a quarter of the SLO window, at most a week); for a grouped SLO, its likeliest group. Empty without the analytics engine."),
            Panel::new(Bargauge, "SLO budget forecast: runs out in", "s", vec![instant(
                format!("min by (app, slo) (vigil:slo:budget_exhaustion_seconds{{{SCOPE}}})"),
                "{{app}} / {{slo}}",
            )])
            .describe("When the analytics engine's forecast error ratio spends each SLO's remaining budget over its rolling window; SLOs whose budget lasts beyond the forecast horizon are not listed."),
        ]
        .into_iter()
        .chain(analytics.trend_panels())
        .collect(),
    };
    Section {
        title: format!("Audience: {}", audience_title(audience)),
        panels,
    }
}

fn audience_title(a: Audience) -> &'static str {
    match a {
        Audience::Support => "Support",
        Audience::Engineering => "Engineering",
        Audience::Management => "Management",
    }
}

fn client_title(c: ClientType) -> &'static str {
    match c {
        ClientType::Banking => "Banking",
        ClientType::Infrastructure => "Infrastructure",
        ClientType::PublicSector => "Public sector",
        ClientType::Generic => "Generic",
    }
}

// ---- dashboard skeleton ------------------------------------------------------------------

/// A Grafana uid (≤ 40 characters) that depends only on `kind`, namespace and name.
fn stable_uid(prefix: &str, kind: &str, namespace: &str, name: &str) -> String {
    let digest = hex::encode(Sha256::digest(
        format!("{kind}/{namespace}/{name}").as_bytes(),
    ));
    format!("{prefix}-{}", &digest[..20])
}

/// The Grafana uid of a view's dashboard: `vigil-` and 20 hex characters of a hash of its
/// namespace and name. Stable across renders and unique per view.
pub fn view_uid(view: &DashboardView) -> String {
    stable_uid(
        "vigil",
        "dashboardview",
        &namespace_of(view),
        &view.name_any(),
    )
}

/// The Grafana uid of an SLO's dashboard (`vigil-slo-…`).
pub fn slo_uid(slo: &Slo) -> String {
    stable_uid("vigil-slo", "slo", &namespace_of(slo), &slo.name_any())
}

/// The Grafana folder of a view's dashboard (`Vigil` unless the view names one).
pub fn folder_of(view: &DashboardView) -> &str {
    view.spec.folder.as_deref().unwrap_or(DEFAULT_FOLDER)
}

/// The `datasource` variable: any Prometheus data source, the default one at first.
fn datasource_variable() -> Value {
    json!({
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": { "text": "default", "value": "default" },
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    })
}

/// The `namespace` variable: a hidden constant, so no query ever leaves the resource's
/// namespace whatever the data source holds.
fn namespace_variable(namespace: &str) -> Value {
    json!({
        "name": "namespace",
        "label": "Namespace",
        "type": "constant",
        "query": namespace,
        "current": { "text": namespace, "value": namespace },
        "hide": 2,
        "skipUrlSync": true,
    })
}

/// A variable listing the values of `label` on `vigil_app_release_info{selector}`, with an
/// "All" entry standing for `all_value`, selected at first.
fn query_variable(
    (name, label_title): (&str, &str),
    label: &str,
    selector: &str,
    all_value: &str,
    regex: &str,
    multi: bool,
) -> Value {
    let query = format!("label_values({INVENTORY_SERIES}{{{selector}}}, {label})");
    json!({
        "name": name,
        "label": label_title,
        "type": "query",
        "datasource": datasource(),
        "query": query,
        "refresh": 2,
        "regex": regex,
        "sort": 1,
        "multi": multi,
        "includeAll": true,
        "allValue": all_value,
        "current": { "text": ["All"], "value": ["$__all"] },
        "options": [],
        "hide": 0,
    })
}

/// Variables: data source, namespace (constant), cluster and app (queries). "All" clusters is
/// `.*`, which also matches series without a `cluster` label; "All" apps is exactly the
/// dashboard's apps, never others in the namespace.
fn templating(namespace: &str, apps: &[String], multi_app: bool) -> Value {
    let names: Vec<&str> = apps.iter().map(String::as_str).collect();
    let apps_re = app_regex(&names);
    json!({ "list": [
        datasource_variable(),
        namespace_variable(namespace),
        query_variable(
            ("cluster", "Cluster"),
            "cluster",
            r#"namespace="$namespace""#,
            ".*",
            "",
            true,
        ),
        query_variable(
            ("app", "App"),
            "app",
            r#"namespace="$namespace", cluster=~"$cluster""#,
            // Substituted into PromQL strings by Grafana; the option filter is a JS regex.
            &promql_str(&apps_re),
            &format!("/^({apps_re})$/"),
            multi_app,
        ),
    ]})
}

/// The built-in Grafana annotations and release markers, as the Prometheus data source reads
/// them: the query in `target`, the marker texts beside it.
fn annotations(app_matcher: &str) -> Value {
    json!({ "list": [
        {
            "builtIn": 1,
            "datasource": { "type": "grafana", "uid": "-- Grafana --" },
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "name": "Releases",
            "datasource": datasource(),
            "enable": true,
            "iconColor": "#8F3BB8",
            "target": {
                "refId": "Anno",
                "expr": format!(
                    "max by (app, version, revision) (vigil_app_release_info{{{app_matcher}}} unless vigil_app_release_info{{{app_matcher}}} offset 5m)"
                ),
                "interval": "1m",
            },
            "titleFormat": "Release {{version}}",
            "textFormat": "{{app}} {{version}} ({{revision}})",
            "tagKeys": "app,version",
            "useValueForTime": false,
        },
    ]})
}

fn skeleton(
    uid: String,
    title: String,
    tags: Vec<&str>,
    templating: Value,
    annotations: Value,
    panels: Vec<Value>,
) -> Value {
    json!({
        "id": null,
        "uid": uid,
        "title": title,
        "tags": tags,
        "editable": false,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": { "from": "now-6h", "to": "now" },
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "templating": templating,
        "annotations": annotations,
        "panels": panels,
    })
}

/// The Grafana dashboard of a `DashboardView`: an overview, the client type's preset, the
/// audience's preset, then the view's own panels.
///
/// The client type is the view's, else that of its first app in `inv`, else `generic`.
pub fn dashboard(view: &DashboardView, inv: &Inventory) -> Value {
    let namespace = namespace_of(view);
    let spec = &view.spec;
    let client = spec
        .client_type
        .or_else(|| {
            spec.apps
                .first()
                .and_then(|a| inv.app(&namespace, a))
                .map(|a| a.spec.client_type)
        })
        .unwrap_or_default();

    let req = RequestSeries::of(&namespace, &spec.apps, inv);
    let analytics = AnalyticsRules::of(&namespace, &spec.apps, inv);
    let mut sections = vec![overview(&req)];
    sections.extend(client_section(client, &req, &analytics));
    sections.push(audience_section(
        spec.audience,
        &namespace,
        &req,
        &analytics,
    ));
    sections.extend(analytics.section());
    if req.is_empty() {
        // No app of the view serves requests (databases, queue consumers): no request panels.
        for section in &mut sections {
            section.panels.retain(|p| !p.requests);
        }
        sections.retain(|s| !s.panels.is_empty());
    }
    if !spec.panels.is_empty() {
        let extra = spec
            .panels
            .iter()
            .map(|p| {
                let query = match p.kind {
                    PanelKind::Table | PanelKind::Bargauge => instant(p.expr.as_str(), ""),
                    PanelKind::Stat | PanelKind::Timeseries => q(p.expr.as_str(), ""),
                };
                Panel::new(
                    p.kind,
                    &p.title,
                    p.unit.as_deref().unwrap_or("short"),
                    vec![query],
                )
            })
            .collect();
        sections.push(section("More", extra));
    }

    let title = spec.title.clone().unwrap_or_else(|| {
        format!(
            "{} · {}",
            audience_title(spec.audience),
            spec.apps.join(", ")
        )
    });
    skeleton(
        view_uid(view),
        title,
        vec!["vigil", spec.audience.as_str(), client.as_str()],
        templating(&namespace, &spec.apps, true),
        annotations(SCOPE),
        layout(sections),
    )
}

/// The dashboard of one SLO: objective, budget remaining, burn rate now and across every
/// recording window, the SLI against the objective over time, and the analytics engine's
/// budget forecast (when the budget runs out, how likely, the error ratio against its
/// forecast).
pub fn slo_dashboard(slo: &Slo) -> Value {
    use PanelKind::*;
    let namespace = namespace_of(slo);
    let app = slo.spec.app_ref.name.clone();
    let sel = format!(
        r#"namespace="$namespace", app=~"$app", cluster=~"$cluster", slo="{}""#,
        promql_str(&slo.name_any())
    );
    let windows: Vec<String> = sli_windows(slo.spec.window.as_secs_f64())
        .into_iter()
        .map(duration)
        .collect();
    let shortest = windows
        .first()
        .cloned()
        .unwrap_or_else(|| slo.spec.window.to_string());
    let whole = windows
        .last()
        .cloned()
        .unwrap_or_else(|| slo.spec.window.to_string());
    let ratio = |w: &str| format!("slo:sli_error:ratio_rate{w}{{{sel}}}");
    let budget = format!("(1 - slo:objective:ratio{{{sel}}})");
    let burn_rates = windows
        .iter()
        .map(|w| {
            q(
                format!("{} / on (namespace, app, slo) {budget}", ratio(w)),
                w,
            )
        })
        .collect();
    let objective = || q(format!("slo:objective:ratio{{{sel}}}"), "objective");
    let remaining = || {
        q(
            format!("slo:error_budget_remaining:ratio{{{sel}}}"),
            "remaining",
        )
    };

    // The analytics engine's budget forecast, one series per groupBy group.
    let group_legend: String = slo
        .spec
        .group_by
        .iter()
        .map(|l| format!("{{{{{l}}}}} "))
        .collect();
    let horizon = duration(budget_forecast_horizon(slo.spec.window.as_secs_f64()));
    let forecast = |metric: &str, legend: &str| {
        q(
            format!("vigil:slo:error_ratio_forecast:{metric}{{{sel}, horizon=\"1h\"}} offset 1h"),
            &format!("{group_legend}{legend}"),
        )
    };
    let budget_forecast = section(
        "Budget forecast",
        vec![
            Panel::new(
                Stat,
                "Budget forecast to run out in",
                "s",
                vec![q(
                    format!("vigil:slo:budget_exhaustion_seconds{{{sel}}}"),
                    &format!("{group_legend}runs out in"),
                )],
            )
            .describe(&format!(
                "When the analytics engine's forecast of the error ratio spends the remaining \
                 budget over the rolling window. Empty when it lasts beyond the {horizon} \
                 forecast, or without the analytics engine."
            )),
            Panel::new(
                Stat,
                &format!("Probability of running out within {horizon}"),
                "percentunit",
                vec![q(
                    format!("vigil:slo:budget_exhaustion_probability{{{sel}}}"),
                    &format!("{group_legend}probability"),
                )],
            )
            .describe("From the forecast's calibrated 80 % band; a ticket goes out from 50 %."),
            Panel::new(
                Timeseries,
                "Error ratio against its forecast an hour earlier",
                "percentunit",
                vec![
                    q(ratio(&shortest), &format!("{group_legend}error ratio")),
                    forecast("mean", "forecast"),
                    forecast("upper", "forecast 80 % high"),
                ],
            ),
        ],
    );
    let sections = vec![
        section(
            "Objective",
            vec![
                Panel::new(Stat, "Objective", "percentunit", vec![objective()]),
                Panel::new(
                    Stat,
                    "Error budget remaining",
                    "percentunit",
                    vec![remaining()],
                ),
                Panel::new(
                    Stat,
                    "Current burn rate",
                    "short",
                    vec![q(
                        format!("slo:current_burn_rate:ratio{{{sel}}}"),
                        "burn rate",
                    )],
                )
                .describe(
                    "Over the shortest window. 1 spends the budget exactly over the SLO window.",
                ),
                Panel::new(
                    Stat,
                    &format!("SLI over {}", slo.spec.window),
                    "percentunit",
                    vec![q(format!("1 - {}", ratio(&whole)), "SLI")],
                ),
            ],
        ),
        section(
            "Burn rate",
            vec![
                Panel::new(Timeseries, "Burn rate by window", "short", burn_rates),
                Panel::new(
                    Timeseries,
                    "Error budget remaining",
                    "percentunit",
                    vec![remaining()],
                ),
            ],
        ),
        section(
            "Service level",
            vec![Panel::new(
                Timeseries,
                "SLI against objective",
                "percentunit",
                vec![
                    q(
                        format!("1 - {}", ratio(&shortest)),
                        &format!("SLI ({shortest})"),
                    ),
                    q(format!("1 - {}", ratio(&whole)), &format!("SLI ({whole})")),
                    objective(),
                ],
            )],
        ),
        budget_forecast,
    ];
    let mut out = skeleton(
        slo_uid(slo),
        format!("SLO · {app} · {}", slo.name_any()),
        vec!["vigil", "slo"],
        templating(&namespace, std::slice::from_ref(&app), false),
        annotations(r#"namespace="$namespace", app=~"$app", cluster=~"$cluster""#),
        layout(sections),
    );
    if let Some(d) = &slo.spec.description {
        out["description"] = json!(d);
    }
    out
}

// ---- delivery ----------------------------------------------------------------------------

/// Name of the ConfigMap or `GrafanaDashboard` carrying `owner`'s dashboard:
/// `vigil-<kind>-<name>`, so a view and an SLO of the same name never collide.
pub fn dashboard_object_name<K: Resource<DynamicType = ()> + ResourceExt>(owner: &K) -> String {
    format!("vigil-{}-{}", K::kind(&()).to_lowercase(), owner.name_any())
}

fn pretty(json: &Value) -> String {
    // A `serde_json::Value` always serialises: its maps have string keys.
    serde_json::to_string_pretty(json).unwrap_or_default()
}

/// A ConfigMap for the Grafana dashboard sidecar: labelled `grafana_dashboard: "1"`, the folder
/// in the `grafana_folder` annotation, and the dashboard in the file `<uid>.json`.
pub fn dashboard_config_map<K: Resource<DynamicType = ()> + ResourceExt + HasGeneratedObjects>(
    owner: &K,
    name: String,
    json: &Value,
    folder: &str,
) -> ConfigMap {
    let uid = json["uid"].as_str().unwrap_or("dashboard");
    let mut metadata = child_meta(owner, name);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(SIDECAR_LABEL.into(), "1".into());
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(FOLDER_ANNOTATION.into(), folder.into());
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(format!("{uid}.json"), pretty(json))])),
        ..ConfigMap::default()
    }
}

/// A grafana-operator `GrafanaDashboard` (`grafana.integreatly.org/v1beta1`) carrying the
/// dashboard as a JSON string, for Grafana instances labelled `dashboards: grafana` in any
/// namespace (Vigil resources live in application namespaces, Grafana usually does not).
pub fn grafana_dashboard_cr<K: Resource<DynamicType = ()> + ResourceExt + HasGeneratedObjects>(
    owner: &K,
    json: &Value,
    folder: &str,
) -> Value {
    json!({
        "apiVersion": "grafana.integreatly.org/v1beta1",
        "kind": "GrafanaDashboard",
        "metadata": child_meta(owner, dashboard_object_name(owner)),
        "spec": {
            "instanceSelector": { "matchLabels": { "dashboards": "grafana" } },
            "allowCrossNamespaceImport": true,
            "folder": folder,
            "json": pretty(json),
        },
    })
}
