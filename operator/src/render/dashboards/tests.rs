//! Tests of the dashboard renderer: snapshots of representative dashboards and invariants that
//! must hold for every audience × client type combination and every SLO dashboard.

use std::collections::BTreeSet;

use vigil_crds::{MonitoredApp, PromQl};

use super::*;

fn view(yaml: &str) -> DashboardView {
    serde_yaml::from_str(yaml).unwrap()
}

fn slo(yaml: &str) -> Slo {
    serde_yaml::from_str(yaml).unwrap()
}

fn app(yaml: &str) -> MonitoredApp {
    serde_yaml::from_str(yaml).unwrap()
}

fn inventory() -> Inventory {
    Inventory {
        apps: vec![
            app(r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec: {selector: {matchLabels: {app: checkout}}, clientType: banking}
"#),
            app(r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: grid-api, namespace: energy}
spec: {selector: {matchLabels: {app: grid-api}}, clientType: infrastructure}
"#),
        ],
        policies: vec![serde_yaml::from_str(CHECKOUT_ANALYTICS).unwrap()],
        ..Inventory::default()
    }
}

/// An anomaly rule on checkout's errors and a forecast rule on its active users.
const CHECKOUT_ANALYTICS: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-analytics, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutErrorAnomaly
      anomaly: {query: 'sum(rate(http_requests_total{code=~"5.."}[5m]))'}
    - name: CheckoutUsersForecast
      forecast: {query: 'sum(vigil_active_users)', horizon: 6h, capacity: 5000}
"#;

const CHECKOUT_SLO: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: checkout-availability, namespace: shop}
spec:
  appRef: {name: checkout}
  description: 99.9 % of checkout requests succeed
  sli: {availability: {}}
  objective: 99.9
"#;

/// A view for one audience and client type, with one extra panel.
fn combo(audience: Audience, client: ClientType) -> DashboardView {
    view(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {{name: {a}-{c}, namespace: shop}}
spec:
  apps: [checkout, payments]
  audience: {a}
  clientType: {c}
  panels:
  - title: Checkout queue depth
    expr: 'sum(checkout_queue_depth{{namespace="$namespace", app=~"$app"}})'
    kind: stat
"#,
        a = audience.as_str(),
        c = client.as_str(),
    ))
}

const CLIENTS: [ClientType; 4] = [
    ClientType::Banking,
    ClientType::Infrastructure,
    ClientType::PublicSector,
    ClientType::Generic,
];

/// Every dashboard the renderer can produce for the fixtures.
fn all_dashboards() -> Vec<Value> {
    let inv = inventory();
    let mut out: Vec<Value> = Audience::ALL
        .iter()
        .flat_map(|a| CLIENTS.iter().map(move |c| combo(*a, *c)))
        .map(|v| dashboard(&v, &inv))
        .collect();
    out.push(slo_dashboard(&slo(CHECKOUT_SLO)));
    let monthly = CHECKOUT_SLO.replace("checkout-availability", "checkout-availability-28d");
    out.push(slo_dashboard(&slo(&format!("{monthly}  window: 28d\n"))));
    out
}

fn panels(d: &Value) -> &Vec<Value> {
    d["panels"].as_array().unwrap()
}

/// Every PromQL expression in a dashboard: panel targets and annotation queries.
fn expressions(d: &Value) -> Vec<String> {
    let targets = panels(d)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default());
    let annotations = d["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["target"].clone());
    targets
        .chain(annotations)
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

/// An expression as Grafana sends it to Prometheus: `$__rate_interval` replaced by a range.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
}

/// Dashboards are JSON objects with the keys Grafana needs, schema version 39, and tags naming
/// Vigil, the audience and the client type.
#[test]
fn dashboards_have_the_required_top_level_keys() {
    for d in all_dashboards() {
        let o = d.as_object().unwrap();
        for key in [
            "uid",
            "title",
            "tags",
            "schemaVersion",
            "panels",
            "templating",
            "annotations",
            "time",
        ] {
            assert!(o.contains_key(key), "{key} missing in {}", d["title"]);
        }
        assert_eq!(d["schemaVersion"], 39);
        assert_eq!(d["tags"][0], "vigil");
    }
    let d = dashboard(
        &combo(Audience::Support, ClientType::PublicSector),
        &inventory(),
    );
    assert_eq!(d["tags"], json!(["vigil", "support", "publicSector"]));
}

/// Uids are at most 40 characters, the same on every render, and different for every view
/// and SLO (a view and an SLO of the same name included).
#[test]
fn uids_are_stable_and_unique() {
    let first: Vec<String> = all_dashboards()
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect();
    let second: Vec<String> = all_dashboards()
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, second);
    let unique: BTreeSet<&String> = first.iter().collect();
    assert_eq!(unique.len(), first.len());
    assert!(
        first
            .iter()
            .all(|u| u.len() <= 40 && u.starts_with("vigil-")),
        "{first:?}"
    );

    let other_ns = view(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: support-banking, namespace: bank}
spec: {apps: [checkout], audience: support}
"#,
    );
    assert_ne!(
        view_uid(&other_ns),
        view_uid(&combo(Audience::Support, ClientType::Banking))
    );
    let same_name_slo = slo(&CHECKOUT_SLO.replace("checkout-availability", "support-banking"));
    assert_ne!(
        slo_uid(&same_name_slo),
        view_uid(&combo(Audience::Support, ClientType::Banking))
    );
}

/// Panels lie inside the 24-column grid and never overlap; panel ids are unique.
#[test]
fn panels_do_not_overlap() {
    for d in all_dashboards() {
        let rects: Vec<(u64, u64, u64, u64)> = panels(&d)
            .iter()
            .map(|p| {
                let g = &p["gridPos"];
                (
                    g["x"].as_u64().unwrap(),
                    g["y"].as_u64().unwrap(),
                    g["w"].as_u64().unwrap(),
                    g["h"].as_u64().unwrap(),
                )
            })
            .collect();
        for (i, a) in rects.iter().enumerate() {
            assert!(
                a.0 + a.2 <= 24 && a.2 > 0 && a.3 > 0,
                "{a:?} in {}",
                d["title"]
            );
            for b in &rects[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?} in {}", d["title"]);
            }
        }
        let ids: BTreeSet<u64> = panels(&d)
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), panels(&d).len());
    }
}

/// Every panel and every query reads from the `${datasource}` variable, which is declared as a
/// Prometheus data source variable.
#[test]
fn every_panel_uses_the_datasource_variable() {
    for d in all_dashboards() {
        for p in panels(&d) {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            }
        }
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
        assert_eq!(
            (ds["type"].as_str(), ds["query"].as_str()),
            (Some("datasource"), Some("prometheus"))
        );
        assert!(vars.iter().any(|v| v["name"] == "namespace"));
        assert!(vars.iter().any(|v| v["name"] == "app"));
    }
}

/// Every PromQL expression is lexically valid and scoped to the namespace variable, so no
/// dashboard shows another namespace's series.
#[test]
fn every_expression_is_valid_and_namespace_scoped() {
    for d in all_dashboards() {
        let exprs = expressions(&d);
        assert!(exprs.len() > 5, "{}", d["title"]);
        for e in exprs {
            PromQl::parse(&as_sent(&e)).unwrap_or_else(|err| panic!("{err}: {e}"));
            assert!(
                e.contains(r#"namespace="$namespace""#),
                "not namespace-scoped: {e}"
            );
        }
    }
}

/// The namespace variable is a hidden constant holding exactly the view's namespace; `cluster`
/// and `app` are `label_values` queries, "All" clusters is `.*` (which also matches series
/// without a `cluster` label) and "All" apps is exactly the view's apps; every variable has a
/// current value (Grafana's schema requires `text` and `value`).
#[test]
fn variables_hold_the_views_namespace_clusters_and_apps() {
    let d = dashboard(
        &combo(Audience::Engineering, ClientType::Banking),
        &inventory(),
    );
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap();
    let ns = var("namespace");
    assert_eq!(
        (&ns["type"], &ns["query"]),
        (&json!("constant"), &json!("shop"))
    );
    assert_eq!(ns["current"]["value"], "shop");
    let cluster = var("cluster");
    assert_eq!(cluster["type"], "query");
    assert_eq!(
        cluster["query"],
        r#"label_values(vigil_app_release_info{namespace="$namespace"}, cluster)"#
    );
    assert_eq!(
        (&cluster["includeAll"], &cluster["allValue"]),
        (&json!(true), &json!(".*"))
    );
    let app = var("app");
    assert_eq!(app["type"], "query");
    assert_eq!(
        app["query"],
        r#"label_values(vigil_app_release_info{namespace="$namespace", cluster=~"$cluster"}, app)"#
    );
    assert_eq!(app["allValue"], "checkout|payments");
    assert_eq!(app["regex"], "/^(checkout|payments)$/");
    assert_eq!(app["multi"], true);
    for v in vars {
        assert!(
            v["current"]["text"].is_string() || v["current"]["text"].is_array(),
            "{} has no current value",
            v["name"]
        );
    }
    assert_eq!(var("datasource")["current"]["value"], "default");
}

/// Every preset query is scoped by the cluster variable too (the view's own panel is the
/// user's to scope).
#[test]
fn every_preset_query_is_cluster_scoped() {
    for d in all_dashboards() {
        for e in expressions(&d)
            .into_iter()
            .filter(|e| !e.contains("checkout_queue_depth"))
        {
            assert!(
                e.contains(r#"cluster=~"$cluster""#),
                "not cluster-scoped: {e}"
            );
        }
    }
}

/// Regression: release annotations carried their query in the legacy top-level `expr`, which
/// Grafana's current dashboard schema no longer has; the query is in `target`.
#[test]
fn release_annotations_keep_their_query_in_target() {
    for d in all_dashboards() {
        let list = d["annotations"]["list"].as_array().unwrap();
        let releases = list.iter().find(|a| a["name"] == "Releases").unwrap();
        assert!(releases.get("expr").is_none() && releases.get("step").is_none());
        assert_eq!(releases["target"]["refId"], "Anno");
        assert!(releases["target"]["expr"]
            .as_str()
            .unwrap()
            .contains("vigil_app_release_info{"));
    }
}

fn app_with_requests(name: &str, requests: &str) -> MonitoredApp {
    app(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  clientType: banking
  metrics: {{port: 8080, requests: {requests}}}
"#
    ))
}

/// Regression: request panels hard-coded `http_requests_total` and
/// `http_request_duration_seconds`, so an app exposing other names (Spring's
/// `http_server_requests_seconds_*{status}`) had empty panels. They read the app's declared
/// request metrics.
#[test]
fn request_panels_read_the_apps_request_metrics() {
    let inv = Inventory {
        apps: vec![app_with_requests("checkout", "{preset: spring-micrometer}")],
        ..Inventory::default()
    };
    let d = dashboard(
        &view(
            r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: eng, namespace: shop}
spec: {apps: [checkout], audience: engineering, clientType: infrastructure}
"#,
        ),
        &inv,
    );
    let exprs = expressions(&d).join("\n");
    assert!(!exprs.contains("http_requests_total") && !exprs.contains("http_request_duration"));
    assert!(exprs.contains(
        r#"rate(http_server_requests_seconds_count{namespace="$namespace", app=~"$app", cluster=~"$cluster", status=~"5.."}[$__rate_interval])"#
    ));
    assert!(exprs.contains("http_server_requests_seconds_bucket{"));
}

/// A view over apps that name their request metrics differently reads each app's series under
/// its own names, joined with `or`, each restricted to the apps using that naming.
#[test]
fn apps_with_different_request_metrics_are_joined() {
    let inv = Inventory {
        apps: vec![
            app_with_requests("checkout", "{preset: opentelemetry-http}"),
            app_with_requests(
                "payments",
                "{counter: payments_requests_total, statusLabel: rc, errorRegex: 'E.*'}",
            ),
        ],
        ..Inventory::default()
    };
    let d = dashboard(
        &view(
            r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: mgmt, namespace: shop}
spec: {apps: [checkout, payments], audience: management}
"#,
        ),
        &inv,
    );
    let exprs = expressions(&d);
    let per_day = exprs
        .iter()
        .find(|e| e.contains("increase(") && e.contains("[1d])") && !e.contains("vigil_crashes"))
        .unwrap();
    assert_eq!(
        per_day,
        r#"sum by (namespace) (increase(http_server_request_duration_seconds_count{namespace="$namespace", app=~"$app", cluster=~"$cluster", app=~"checkout"}[1d]) or increase(payments_requests_total{namespace="$namespace", app=~"$app", cluster=~"$cluster", app=~"payments"}[1d]))"#
    );
    let joined = exprs.join("\n");
    assert!(joined.contains(r#"http_response_status_code=~"5..""#));
    assert!(joined.contains(r#"payments_requests_total{namespace="$namespace", app=~"$app", cluster=~"$cluster", app=~"payments", rc=~"E.*"}"#));
}

/// Presets follow audience and client type (a few telling panels each), and the view's own
/// panels come last.
#[test]
fn presets_follow_audience_and_client_type() {
    let titles = |a, c| -> Vec<String> {
        let d = dashboard(&combo(a, c), &inventory());
        panels(&d)
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let has = |t: &[String], s: &str| t.iter().any(|x| x == s);
    let banking = titles(Audience::Support, ClientType::Banking);
    assert!(has(&banking, "Crash clusters by users affected") && has(&banking, "Active users"));
    assert!(
        has(&banking, "Current alerts") && !has(&banking, "Stack-trace fingerprints (last 24h)")
    );
    let infra = titles(Audience::Engineering, ClientType::Infrastructure);
    assert!(
        has(&infra, "Latency p99 by service") && has(&infra, "Stack-trace fingerprints (last 24h)")
    );
    let public = titles(Audience::Management, ClientType::PublicSector);
    assert!(has(&public, "Load against forecast") && has(&public, "SLO error budget remaining"));
    let generic = titles(Audience::Management, ClientType::Generic);
    assert!(!generic.iter().any(|t| t.starts_with("Client:")));
    assert_eq!(
        generic.last().map(String::as_str),
        Some("Checkout queue depth")
    );
}

/// Without a client type on the view, the first app's client type picks the preset.
#[test]
fn client_type_defaults_to_the_first_apps() {
    let v = view(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: ops, namespace: energy}
spec: {apps: [grid-api], audience: engineering}
"#,
    );
    let d = dashboard(&v, &inventory());
    assert_eq!(d["tags"], json!(["vigil", "engineering", "infrastructure"]));
    assert_eq!(d["title"], "Engineering · grid-api");
}

/// The sidecar ConfigMap carries the dashboard as `<uid>.json`, labelled for the sidecar and
/// owned by the view; the GrafanaDashboard carries the same JSON as a string.
#[test]
fn delivery_objects_carry_the_dashboard() {
    let v = combo(Audience::Support, ClientType::Banking);
    let d = dashboard(&v, &inventory());
    let uid = d["uid"].as_str().unwrap();
    let cm = dashboard_config_map(&v, dashboard_object_name(&v), &d, folder_of(&v));
    assert_eq!(
        cm.metadata.name.as_deref(),
        Some("vigil-dashboardview-support-banking")
    );
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
        "1"
    );
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "vigil"
    );
    assert_eq!(
        cm.metadata.annotations.as_ref().unwrap()["grafana_folder"],
        "Vigil"
    );
    let file = &cm.data.as_ref().unwrap()[&format!("{uid}.json")];
    assert_eq!(serde_json::from_str::<Value>(file).unwrap(), d);

    let cr = grafana_dashboard_cr(&v, &d, folder_of(&v));
    assert_eq!(cr["apiVersion"], "grafana.integreatly.org/v1beta1");
    assert_eq!(
        cr["spec"]["instanceSelector"],
        json!({ "matchLabels": { "dashboards": "grafana" } })
    );
    assert_eq!(
        serde_json::from_str::<Value>(cr["spec"]["json"].as_str().unwrap()).unwrap(),
        d
    );
    assert_eq!(cr["metadata"]["namespace"], "shop");

    let s = slo(CHECKOUT_SLO);
    assert_eq!(dashboard_object_name(&s), "vigil-slo-checkout-availability");
}

/// The SLO dashboard shows objective, budget, and the burn rate for exactly the windows the
/// SLO renderer records (they scale with the SLO window), for this SLO only.
#[test]
fn slo_dashboard_covers_every_recorded_window() {
    for window in ["30d", "28d", "7d"] {
        let s = slo(&format!("{CHECKOUT_SLO}  window: {window}\n"));
        let d = slo_dashboard(&s);
        let exprs = expressions(&d);
        let recorded: BTreeSet<String> =
            super::super::slo::sli_windows(s.spec.window.as_secs_f64())
                .into_iter()
                .map(super::super::alerts::duration)
                .collect();
        let shown: BTreeSet<String> = exprs
            .iter()
            .filter_map(|e| e.split("slo:sli_error:ratio_rate").nth(1))
            .map(|rest| rest.split('{').next().unwrap().to_owned())
            .collect();
        assert_eq!(shown, recorded, "{window}");
        let burn = panels(&d)
            .iter()
            .find(|p| p["title"] == "Burn rate by window")
            .unwrap();
        assert_eq!(burn["targets"].as_array().unwrap().len(), recorded.len());
        for record in [
            "slo:objective:ratio",
            "slo:error_budget_remaining:ratio",
            "slo:current_burn_rate:ratio",
        ] {
            assert!(exprs.iter().any(|e| e.starts_with(record)), "{record}");
        }
        assert!(exprs
            .iter()
            .filter(|e| e.contains("slo:"))
            .all(|e| e.contains(r#"slo="checkout-availability""#)));
        assert_eq!(d["description"], "99.9 % of checkout requests succeed");
    }
}

/// Representative dashboards, as Grafana will import them.
#[test]
fn dashboard_snapshots() {
    let inv = inventory();
    for (a, c) in [
        (Audience::Support, ClientType::Banking),
        (Audience::Engineering, ClientType::Infrastructure),
        (Audience::Management, ClientType::PublicSector),
    ] {
        let name = format!("dashboards__{}_{}", a.as_str(), c.as_str());
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_json_snapshot!(name, dashboard(&combo(a, c), &inv));
        });
    }
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("dashboards__slo", slo_dashboard(&slo(CHECKOUT_SLO)));
    });
}

use crate::render::promtool_tests::tool;

/// Beyond the lexical check, Prometheus' own parser accepts every dashboard query: each one is
/// written as a recording rule (Grafana's `$namespace`/`$app` sit inside label strings, where
/// they are plain text) and `promtool check rules` passes.
#[test]
fn promtool_parses_every_dashboard_query() {
    let mut exprs: Vec<String> = all_dashboards().iter().flat_map(expressions).collect();
    exprs.sort();
    exprs.dedup();
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "record": format!("vigil:dashboard_query_{i}"), "expr": as_sent(e) }))
        .collect();
    let file = json!({ "groups": [{ "name": "dashboard-queries", "rules": rules }] });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queries.yml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    let out = std::process::Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// App names are DNS subdomains and may hold dots: the app variable's "All" value (substituted
/// into PromQL strings) escapes them for PromQL, its option filter (a JavaScript regex) only for
/// the regex, and the request queries of a mixed view match the dotted name literally.
#[test]
fn dotted_app_names_are_escaped_for_promql_and_for_grafana() {
    let inv = Inventory {
        apps: vec![
            app_with_requests("api.v2", "{preset: spring-micrometer}"),
            app_with_requests("web", "{}"),
        ],
        ..Inventory::default()
    };
    let d = dashboard(
        &view(
            r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: eng, namespace: shop}
spec: {apps: [api.v2, web], audience: engineering}
"#,
        ),
        &inv,
    );
    let vars = d["templating"]["list"].as_array().unwrap();
    let app = vars.iter().find(|v| v["name"] == "app").unwrap();
    assert_eq!(app["allValue"], r"api\\.v2|web");
    assert_eq!(app["regex"], r"/^(api\.v2|web)$/");
    assert!(expressions(&d)
        .iter()
        .any(|e| e.contains(r#"http_server_requests_seconds_count{namespace="$namespace", app=~"$app", cluster=~"$cluster", app=~"api\\.v2"}"#)));
}

/// Apps that serve no HTTP requests (`requests: {preset: none}`, the infrastructure example's
/// database and queue) get dashboards without request panels, which could only ever show
/// "No data"; their crash, restart and SLO panels stay.
#[test]
fn apps_without_requests_get_no_request_panels() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/infrastructure");
    let loaded = crate::manifests::load(&[dir]).expect("example loads");
    let inv = &loaded.inventory;
    assert!(inv.apps.iter().all(|a| !a.spec.serves_requests()));
    for view in &inv.views {
        let board = dashboard(view, inv);
        let text = board.to_string();
        assert!(
            !text.contains("http_request") && !text.contains("http_server_request"),
            "{}: a request panel is left",
            view.name_any()
        );
        assert!(text.contains("vigil_crashes_total"), "{}", view.name_any());
    }
    // With one app that serves requests, the request panels come back.
    let mut mixed = inv.clone();
    mixed.apps[0]
        .spec
        .metrics
        .as_mut()
        .expect("metrics")
        .requests = None;
    assert!(dashboard(&mixed.views[0], &mixed)
        .to_string()
        .contains("http_requests_total"));
}

/// Views over apps with anomaly or forecast rules draw the engine's series (the band, the
/// forecasts an hour earlier, banking's active users and management's trends against them);
/// views over apps without such rules get none of these panels, which would stay empty.
#[test]
fn analytics_panels_follow_the_apps_rules() {
    let inv = inventory();
    let titles = |d: &Value| -> BTreeSet<String> {
        panels(d)
            .iter()
            .filter_map(|p| p["title"].as_str().map(str::to_owned))
            .collect()
    };
    let banking = titles(&dashboard(
        &combo(Audience::Management, ClientType::Banking),
        &inv,
    ));
    for expected in [
        "Baselines and forecasts",
        "Against the learned baseline",
        "Baseline band held (last week)",
        "Forecast an hour ahead against what happened",
        "Active users against forecast",
        "Trends: forecast a day ahead",
        "Chance of exceeding capacity",
    ] {
        assert!(
            banking.contains(expected),
            "{expected} missing from {banking:?}"
        );
    }
    let public = dashboard(&combo(Audience::Support, ClientType::PublicSector), &inv);
    let load = panels(&public)
        .iter()
        .find(|p| p["title"] == "Load against forecast")
        .expect("load panel");
    let exprs: Vec<&str> = load["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect();
    let shaded: Vec<&str> = load["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["properties"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == "custom.fillBelowTo")
        })
        .filter_map(|o| o["matcher"]["options"].as_str())
        .collect();
    assert_eq!(shaded, ["CheckoutUsersForecast band high"]);
    assert!(exprs.contains(&r#"vigil:forecast:mean{namespace="$namespace", app=~"$app", cluster=~"$cluster", vigil_rule="CheckoutUsersForecast", horizon="1h"} offset 1h"#), "{exprs:#?}");
    assert!(!titles(&public).contains("Trends: forecast a day ahead"));

    let grid = view(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: DashboardView
metadata: {name: grid, namespace: energy}
spec: {apps: [grid-api], audience: management, clientType: banking}
"#,
    );
    let plain = titles(&dashboard(&grid, &inv));
    for absent in [
        "Baselines and forecasts",
        "Active users against forecast",
        "Trends: forecast a day ahead",
    ] {
        assert!(!plain.contains(absent), "{absent} in {plain:?}");
    }
}
