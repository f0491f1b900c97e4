//! The exported series: names and labels exactly as the metric contract and the alert rules
//! expect, only on the leader, and valid for Prometheus (`promtool check metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use kube::runtime::watcher::Event;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::watch;

use super::{monitored_app, pod, replica_set, unix};
use crate::signals::acknowledgements::{acknowledged, AlertmanagerAlert};
use crate::signals::Signals;

const T1: &str = "2024-05-01T10:00:00Z";

/// Signals with one restart, one release and one acknowledgement.
fn populated() -> Signals {
    let signals = Signals::default();
    signals.on_app(Event::Apply(monitored_app("checkout", "checkout", None)));
    let labels = [("app", "checkout")];
    signals.on_pod(
        Event::InitApply(pod("checkout-0", "u1", &labels, &[("api", 0, None)])),
        Instant::now(),
    );
    signals.on_pod(
        Event::Apply(pod(
            "checkout-0",
            "u1",
            &labels,
            &[("api", 1, Some(("OOMKilled", 137)))],
        )),
        Instant::now(),
    );
    signals.on_replica_set(Event::Apply(replica_set(
        "checkout",
        7,
        T1,
        2,
        &[("app", "checkout"), ("app.kubernetes.io/version", "17.2")],
        &[("api", "registry.example/checkout:17.2")],
    )));
    let alerts: Vec<AlertmanagerAlert> = serde_json::from_value(serde_json::json!([{
        "labels": {"alertname": "CheckoutCrash", "namespace": "shop", "app": "checkout", "severity": "page"},
        "status": {"state": "suppressed", "silencedBy": ["5e7c"], "inhibitedBy": []}
    }]))
    .unwrap();
    signals.record_acknowledgements(acknowledged(&alerts));
    signals
}

/// `(metric name, labels, value)` of every sample in `registry`.
fn samples(registry: &Registry) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for family in registry.gather() {
        for metric in family.get_metric() {
            let labels = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            let value = if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                metric.get_counter().get_value()
            } else {
                metric.get_gauge().get_value()
            };
            out.push((family.name().to_owned(), labels, value));
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every series carries exactly the labels the metric contract (README) lists and the alert
/// rules join on: release timestamps by `namespace, app, version, revision` (the context
/// template reads `.Labels.revision`), acknowledgements by `namespace, app, alertname`.
#[test]
fn series_carry_the_contract_labels() {
    let registry = Registry::new();
    populated().register(&registry).unwrap();
    let samples = samples(&registry);
    let find = |name: &str| {
        samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("vigil_container_restarts_total"),
        vec![(
            labels(&[
                ("namespace", "shop"),
                ("pod", "checkout-0"),
                ("container", "api"),
                ("app", "checkout"),
                ("reason", "OOMKilled"),
                ("exit_code", "137"),
            ]),
            1.0
        )]
    );
    assert_eq!(
        find("vigil_app_release_info"),
        vec![(
            labels(&[
                ("namespace", "shop"),
                ("app", "checkout"),
                ("version", "17.2"),
                ("revision", "7"),
                ("image", "registry.example/checkout:17.2"),
            ]),
            1.0
        )]
    );
    assert_eq!(
        find("vigil_app_release_timestamp_seconds"),
        vec![(
            labels(&[
                ("namespace", "shop"),
                ("app", "checkout"),
                ("version", "17.2"),
                ("revision", "7"),
            ]),
            unix(T1)
        )]
    );
    assert_eq!(
        find("vigil_alert_acknowledged"),
        vec![(
            labels(&[
                ("namespace", "shop"),
                ("app", "checkout"),
                ("alertname", "CheckoutCrash")
            ]),
            1.0
        )]
    );
}

/// Only the leader exports the signals (two replicas would double every `sum(increase(…))`);
/// the operator's own poll-failure counter is exported by every replica. Losing leadership
/// stops the export at the next scrape, regaining it resumes with the warm state.
#[test]
fn only_the_leader_exports_signals() {
    let registry = Registry::new();
    let signals = populated();
    signals.register(&registry).unwrap();
    let (leading, follower) = watch::channel(false);
    signals.export_while(follower);
    let names = |registry: &Registry| -> BTreeSet<String> {
        samples(registry).into_iter().map(|(n, _, _)| n).collect()
    };
    assert_eq!(
        names(&registry),
        BTreeSet::from(["vigil_operator_alertmanager_poll_failures_total".to_owned()])
    );
    leading.send_replace(true);
    assert!(names(&registry).contains("vigil_container_restarts_total"));
    assert!(names(&registry).contains("vigil_alert_acknowledged"));
}

/// The exposition passes Prometheus' own linter (`promtool check metrics`): names, types,
/// help texts and label syntax.
#[test]
fn exposition_passes_promtool_check_metrics() {
    let registry = Registry::new();
    populated().register(&registry).unwrap();
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-test-tools.sh)");
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&text)
    );
}
