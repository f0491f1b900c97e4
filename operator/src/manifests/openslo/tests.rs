//! OpenSLO input: the fixtures in `fixtures/` load as the Vigil `SLO`s they describe, render
//! rules the real Prometheus accepts, and what Vigil cannot honour is refused naming the
//! OpenSLO field.

#![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};

use kube::ResourceExt;

use crate::manifests::{load, Problem};
use crate::render::promtool_tests::check_rules;
use crate::render::slo::slo_rules;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/manifests/openslo/fixtures")
        .join(name)
}

/// A `MonitoredApp` `shop` in `retail`, the app the fixtures' `service` names, and an
/// `AlertPolicy` whose audiences receive its SLO alerts.
fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: shop, namespace: retail}\nspec:\n  selector: {matchLabels: {app: shop}}\n---\napiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: shop, namespace: retail}\nspec:\n  appRef: {name: shop}\n  rules:\n    - {name: ShopDown, severity: critical, audiences: [engineering], promql: {expr: 'up{job=\"shop\"} == 0'}}\n  audiences:\n    - {audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}\n    - {audience: support, receivers: [{name: desk, email: {to: desk@shop.example}}]}\n",
    )
    .expect("write app");
    dir
}

fn lines(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            format!(
                "{}: {}: {}",
                p.object.clone().unwrap_or_default(),
                p.field.clone().unwrap_or_default(),
                p.message
            )
        })
        .collect()
}

/// Good/total and bad/total ratio indicators become `goodTotal` and `errorTotal` SLIs with the
/// service as the app, the rolling window, the target as a percentage and the labels as the
/// SLO's labels; plain counter selectors get a rate over `{{.window}}`. Other OpenSLO kinds are
/// skipped like any non-Vigil object.
#[test]
fn ratio_indicators_convert_to_vigil_slos() {
    let apps = app_dir();
    let loaded = load(&[apps.path().to_path_buf(), fixture("ratio-good-total.yaml")])
        .unwrap_or_else(|p| panic!("fixture loads: {:#?}", lines(&p)));
    let slos = &loaded.inventory.slos;
    assert_eq!(slos.len(), 2);
    assert_eq!(loaded.skipped, ["Service/default/shop"]);

    let checkout = slos
        .iter()
        .find(|s| s.name_any() == "checkout-availability")
        .expect("checkout");
    assert_eq!(checkout.namespace().as_deref(), Some("retail"));
    assert_eq!(checkout.spec.app_ref.name, "shop");
    assert_eq!(checkout.spec.objective, 99.9);
    assert_eq!(checkout.spec.window.as_str(), "28d");
    assert_eq!(
        checkout.spec.description.as_deref(),
        Some("99.9 % of checkout requests succeed")
    );
    let good_total = checkout.spec.sli.good_total.as_ref().expect("goodTotal");
    assert_eq!(
        good_total.good.as_str(),
        r#"sum(rate(http_requests_total{route="/checkout", code!~"5.."}[{{.window}}]))"#
    );
    assert_eq!(
        good_total.total.as_str(),
        r#"sum(rate(http_requests_total{route="/checkout"}[{{.window}}]))"#
    );
    assert_eq!(
        checkout.spec.labels,
        [
            ("team".into(), "payments".into()),
            ("tier".into(), "1".into())
        ]
        .into()
    );

    let ledger = slos
        .iter()
        .find(|s| s.name_any() == "ledger-writes")
        .expect("ledger");
    let error_total = ledger.spec.sli.error_total.as_ref().expect("errorTotal");
    assert_eq!(
        error_total.errors.as_str(),
        "sum(rate(ledger_write_failures_total[{{.window}}]))"
    );
    assert_eq!(ledger.spec.objective, 99.5);
    assert_eq!(
        ledger.spec.window.as_str(),
        "30d",
        "the Vigil default window"
    );

    let app = &loaded.inventory.apps[0];
    for slo in slos {
        check_rules(&slo_rules(slo, app));
    }
}

/// Calendar windows, timeslice budgeting, non-Prometheus sources, queries without a range,
/// several objectives, alert policies, threshold objectives and indicator references are each
/// refused with the OpenSLO field that holds them.
#[test]
fn unsupported_openslo_is_refused_naming_the_field() {
    let apps = app_dir();
    let problems = load(&[apps.path().to_path_buf(), fixture("unsupported.yaml")])
        .expect_err("unsupported features are refused");
    let lines = lines(&problems);
    for expected in [
        "SLO/retail/sla-availability: spec.alertPolicies: OpenSLO: OpenSLO alert policies are not supported",
        "SLO/retail/sla-availability: spec.budgetingMethod: OpenSLO: Timeslices is not supported",
        "SLO/retail/sla-availability: spec.indicator.spec.ratioMetric.good.metricSource.type: OpenSLO: metric source type \"Datadog\" is not supported",
        "SLO/retail/sla-availability: spec.indicator.spec.ratioMetric.total.metricSource.spec.query: OpenSLO: the query must use {{.window}}",
        "SLO/retail/sla-availability: spec.timeWindow[0].isRolling: OpenSLO: calendar windows are not supported",
        "SLO/retail/sla-availability: spec.objectives: OpenSLO: has 2 objectives",
        "SLO/retail/search-latency: spec.indicatorRef: OpenSLO: SLI references are not supported",
        "SLO/retail/search-latency: spec.objectives[0].op: OpenSLO: not supported",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "missing {expected:?} in:\n{}",
            lines.join("\n")
        );
    }
}
