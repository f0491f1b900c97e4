//! The analytics engine in process for the tests against a real Prometheus: an engine reading
//! one Prometheus, and the published series read back from its exposition text.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: each user needs part of it, and a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::Registry;
use vigil_operator::analytics::engine::exposition::{EngineMetrics, Published};
use vigil_operator::analytics::engine::prometheus::{PrometheusClient, PrometheusSettings};
use vigil_operator::analytics::engine::runner::{RunContext, RunSettings};
use vigil_operator::analytics::engine::Engine;

/// An engine of two workers reading the Prometheus at `url` at `step` seconds, and the
/// registry of its own metrics.
pub fn new_engine(url: &str, step: i64, timeout: Duration) -> (Engine, Registry) {
    let registry = Registry::new();
    let metrics = EngineMetrics::new(&registry).unwrap();
    let prometheus = PrometheusClient::new(PrometheusSettings {
        url: url.to_owned(),
        timeout,
        ..PrometheusSettings::default()
    })
    .unwrap();
    let ctx = RunContext {
        prometheus,
        published: Published::default(),
        metrics,
        settings: RunSettings {
            step,
            ..RunSettings::default()
        },
    };
    (Engine::new(ctx, 2), registry)
}

/// Parses `name{labels} value` lines of the exposition into (labels, value) per name.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = label
                .captures_iter(labels)
                .map(|c| (c[1].to_owned(), c[2].to_owned()))
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The values of the `name` series whose labels include every pair of `want`.
pub fn find(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<f64> {
    samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect()
}

/// The value of the one `name` series whose labels include every pair of `want`.
pub fn one(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let found = find(text, name, want);
    assert_eq!(
        found.len(),
        1,
        "expected one {name} with {want:?} in:\n{text}"
    );
    found[0]
}
