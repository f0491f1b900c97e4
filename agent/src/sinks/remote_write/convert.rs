//! OTLP metrics → Prometheus series, following Prometheus' own OTLP translation (the
//! `UnderscoreEscapingWithSuffixes` strategy): names and label names sanitised, unit and
//! `_total` suffixes added, histograms as `_bucket{le}`/`_sum`/`_count`, summaries as
//! `{quantile}`/`_sum`/`_count`.
//!
//! Resource attributes become labels: `service.name` (prefixed by `service.namespace/` when set)
//! → `job`; `service.instance.id`, else `k8s.pod.name` → `instance`; and the agent's series labels
//! `namespace`, `app`, `pod`, `container`, `version` (see [`super::super`]); other `k8s.*`
//! attributes with sanitised names (`k8s.deployment.name` → `k8s_deployment_name`). A data
//! point's own attributes win over labels derived from the resource, except `job`, `instance`,
//! `namespace` and `cluster`: the pod's namespace and the cluster (enrichment makes
//! `k8s.namespace.name` and `k8s.cluster.name` the agent's) are the tenant boundary, so a
//! point's own `namespace` or `cluster` is kept as `exported_<name>`, as Prometheus keeps a
//! scraped label that clashes with a target label.
//!
//! Not converted, and counted as dropped: exponential histograms (`unsupported`) and delta
//! sums and histograms (`delta_temporality`; Prometheus series are cumulative).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, NumberDataPoint};

use crate::prompb::{Label, Sample, TimeSeries};
use crate::sinks::{any_value_text, string_attribute};

/// The value Prometheus uses as a staleness marker; sent for points flagged "no recorded
/// value".
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// `DataPointFlags.NO_RECORDED_VALUE_MASK`.
const NO_RECORDED_VALUE: u32 = 1;

/// Series converted from an OTLP metrics request, and the data points that were not.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    pub series: Vec<TimeSeries>,
    /// Exponential histogram points.
    pub unsupported: u64,
    /// Points of delta sums and histograms.
    pub delta: u64,
}

/// Converts every metric of `request`.
pub fn convert(request: &ExportMetricsServiceRequest, out: &mut Converted) {
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let resource_labels = ResourceLabels::from_attributes(resource);
        for scope in &resource_metrics.scope_metrics {
            for metric in &scope.metrics {
                convert_metric(metric, &resource_labels, out);
            }
        }
    }
}

/// Labels derived from a resource.
#[derive(Debug, Default)]
struct ResourceLabels {
    /// `job` and `instance`: override point attributes.
    identity: Vec<(String, String)>,
    /// `namespace` and `cluster`: override a point attribute, which is kept as
    /// `exported_<name>`.
    enforced: Vec<(&'static str, String)>,
    /// Added only when the point has no label of that name.
    defaults: Vec<(String, String)>,
}

impl ResourceLabels {
    fn from_attributes(attributes: &[KeyValue]) -> ResourceLabels {
        let get = |key| string_attribute(attributes, key);
        let mut labels = ResourceLabels::default();
        if let Some(service) = get("service.name") {
            let job = match get("service.namespace") {
                Some(ns) => format!("{ns}/{service}"),
                None => service.to_owned(),
            };
            labels.identity.push(("job".to_owned(), job));
        }
        if let Some(instance) = get("service.instance.id").or_else(|| get("k8s.pod.name")) {
            labels
                .identity
                .push(("instance".to_owned(), instance.to_owned()));
        }
        for (key, label) in [
            ("k8s.namespace.name", "namespace"),
            ("k8s.cluster.name", "cluster"),
        ] {
            if let Some(value) = get(key) {
                labels.enforced.push((label, value.to_owned()));
            }
        }
        for (key, label) in [
            ("service.name", "app"),
            ("k8s.pod.name", "pod"),
            ("k8s.container.name", "container"),
            ("service.version", "version"),
        ] {
            if let Some(value) = get(key) {
                labels.defaults.push((label.to_owned(), value.to_owned()));
            }
        }
        for kv in attributes {
            if kv.key.starts_with("k8s.")
                && !matches!(
                    kv.key.as_str(),
                    "k8s.namespace.name"
                        | "k8s.pod.name"
                        | "k8s.container.name"
                        | "k8s.cluster.name"
                )
            {
                let value = any_value_text(kv.value.as_ref());
                if !value.is_empty() {
                    labels
                        .defaults
                        .push((label_name(&kv.key), value.into_owned()));
                }
            }
        }
        labels
    }
}

/// The label set of one data point, before the metric name is added.
fn point_labels(attributes: &[KeyValue], resource: &ResourceLabels) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for kv in attributes {
        let value = any_value_text(kv.value.as_ref());
        if value.is_empty() {
            continue;
        }
        // Attributes that sanitise to the same name are joined with `;`, as Prometheus does.
        labels
            .entry(label_name(&kv.key))
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    for (name, value) in &resource.defaults {
        labels.entry(name.clone()).or_insert_with(|| value.clone());
    }
    for (name, value) in &resource.identity {
        labels.insert(name.clone(), value.clone());
    }
    for (name, value) in &resource.enforced {
        if let Some(own) = labels.insert((*name).to_owned(), value.clone()) {
            if own != *value {
                labels.insert(format!("exported_{name}"), own);
            }
        }
    }
    labels
}

fn series(
    name: &str,
    labels: &BTreeMap<String, String>,
    extra: Option<(&str, String)>,
    value: f64,
    timestamp_ms: i64,
) -> TimeSeries {
    let mut out: Vec<Label> = Vec::with_capacity(labels.len() + 2);
    out.push(Label {
        name: "__name__".to_owned(),
        value: name.to_owned(),
    });
    for (n, v) in labels {
        if n != "__name__" {
            out.push(Label {
                name: n.clone(),
                value: v.clone(),
            });
        }
    }
    if let Some((n, v)) = extra {
        out.retain(|l| l.name != n);
        out.push(Label {
            name: n.to_owned(),
            value: v,
        });
    }
    out.sort();
    TimeSeries {
        labels: out,
        samples: vec![Sample {
            value,
            timestamp: timestamp_ms,
        }],
    }
}

fn timestamp_ms(time_unix_nano: u64) -> i64 {
    i64::try_from(time_unix_nano / 1_000_000).unwrap_or(i64::MAX)
}

fn number_value(point: &NumberDataPoint) -> f64 {
    if point.flags & NO_RECORDED_VALUE != 0 {
        return f64::from_bits(STALE_NAN);
    }
    match point.value {
        Some(NumberValue::AsDouble(d)) => d,
        Some(NumberValue::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn stale_or(flags: u32, value: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 {
        f64::from_bits(STALE_NAN)
    } else {
        value
    }
}

fn convert_metric(metric: &Metric, resource: &ResourceLabels, out: &mut Converted) {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match &metric.data {
        None => {}
        Some(Data::Gauge(gauge)) => {
            let name = metric_name(&metric.name, &metric.unit, Kind::Gauge);
            for point in &gauge.data_points {
                let labels = point_labels(&point.attributes, resource);
                out.series.push(series(
                    &name,
                    &labels,
                    None,
                    number_value(point),
                    timestamp_ms(point.time_unix_nano),
                ));
            }
        }
        Some(Data::Sum(sum)) => {
            if sum.aggregation_temporality != cumulative {
                out.delta += sum.data_points.len() as u64;
                return;
            }
            let kind = if sum.is_monotonic {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            let name = metric_name(&metric.name, &metric.unit, kind);
            for point in &sum.data_points {
                let labels = point_labels(&point.attributes, resource);
                out.series.push(series(
                    &name,
                    &labels,
                    None,
                    number_value(point),
                    timestamp_ms(point.time_unix_nano),
                ));
            }
        }
        Some(Data::Histogram(histogram)) => {
            if histogram.aggregation_temporality != cumulative {
                out.delta += histogram.data_points.len() as u64;
                return;
            }
            let name = metric_name(&metric.name, &metric.unit, Kind::Histogram);
            for point in &histogram.data_points {
                let labels = point_labels(&point.attributes, resource);
                let ts = timestamp_ms(point.time_unix_nano);
                let flags = point.flags;
                let mut cumulative_count = 0u64;
                for (i, bound) in point.explicit_bounds.iter().enumerate() {
                    cumulative_count += point.bucket_counts.get(i).copied().unwrap_or(0);
                    out.series.push(series(
                        &format!("{name}_bucket"),
                        &labels,
                        Some(("le", format_float(*bound))),
                        stale_or(flags, cumulative_count as f64),
                        ts,
                    ));
                }
                out.series.push(series(
                    &format!("{name}_bucket"),
                    &labels,
                    Some(("le", "+Inf".to_owned())),
                    stale_or(flags, point.count as f64),
                    ts,
                ));
                if let Some(sum) = point.sum {
                    out.series.push(series(
                        &format!("{name}_sum"),
                        &labels,
                        None,
                        stale_or(flags, sum),
                        ts,
                    ));
                }
                out.series.push(series(
                    &format!("{name}_count"),
                    &labels,
                    None,
                    stale_or(flags, point.count as f64),
                    ts,
                ));
            }
        }
        Some(Data::Summary(summary)) => {
            let name = metric_name(&metric.name, &metric.unit, Kind::Summary);
            for point in &summary.data_points {
                let labels = point_labels(&point.attributes, resource);
                let ts = timestamp_ms(point.time_unix_nano);
                for q in &point.quantile_values {
                    out.series.push(series(
                        &name,
                        &labels,
                        Some(("quantile", format_float(q.quantile))),
                        stale_or(point.flags, q.value),
                        ts,
                    ));
                }
                out.series.push(series(
                    &format!("{name}_sum"),
                    &labels,
                    None,
                    stale_or(point.flags, point.sum),
                    ts,
                ));
                out.series.push(series(
                    &format!("{name}_count"),
                    &labels,
                    None,
                    stale_or(point.flags, point.count as f64),
                    ts,
                ));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            out.unsupported += h.data_points.len() as u64;
        }
    }
}

/// How a metric is exposed, which decides its suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// A float as Prometheus prints `le` and `quantile` values (`0.005`, `1`, `+Inf`).
fn format_float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if value.is_nan() {
        "NaN".to_owned()
    } else {
        value.to_string()
    }
}

/// A Prometheus label name for an attribute key: characters outside `[a-zA-Z0-9_]` become `_`,
/// a leading digit gets a `key_` prefix and a single leading `_` a `key` prefix.
pub(crate) fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "key_");
    } else if name.starts_with('_') && !name.starts_with("__") {
        name.insert_str(0, "key");
    }
    if name.is_empty() {
        name.push_str("key_empty");
    }
    name
}

/// A Prometheus metric name for an OTLP metric: words of the name joined with `_`, the unit
/// appended when the name does not already say it (`s` → `seconds`, `By/s` →
/// `bytes_per_second`), `_total` for counters and `_ratio` for gauges of unit `1`.
fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric() && c != ':')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    // Annotations in braces (`{request}`) carry no unit.
    let unit = strip_annotations(unit);
    let (main_unit, per_unit) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), per.trim()),
        None => (unit.trim(), ""),
    };
    if let Some(main) = unit_word(main_unit) {
        if !words.iter().any(|w| w == &main) {
            words.push(main);
        }
    }
    if let Some(per) = per_unit_word(per_unit) {
        let already = words.windows(2).any(|w| w[0] == "per" && w[1] == per);
        if !already {
            words.push("per".to_owned());
            words.push(per);
        }
    }
    match kind {
        Kind::Counter => {
            words.retain(|w| w != "total");
            words.push("total".to_owned());
        }
        Kind::Gauge if unit.trim() == "1" => {
            words.retain(|w| w != "ratio");
            words.push("ratio".to_owned());
        }
        _ => {}
    }
    let mut joined = words.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        joined.insert(0, '_');
    }
    if joined.is_empty() {
        joined.push_str("unnamed");
    }
    joined
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The word for a UCUM unit, or the unit with non-alphanumerics removed when unknown.
fn unit_word(unit: &str) -> Option<String> {
    let word = match unit {
        "" | "1" => return None,
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        other => {
            let cleaned: String = other
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            return (!cleaned.is_empty()).then_some(cleaned);
        }
    };
    Some(word.to_owned())
}

fn per_unit_word(unit: &str) -> Option<String> {
    let word = match unit {
        "" => return None,
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => return unit_word(other),
    };
    Some(word.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metric names follow Prometheus' OTLP translation: unit words, `_total` for counters,
    /// `_ratio` for unit-1 gauges, no doubled suffixes.
    #[test]
    fn metric_names_follow_prometheus_conventions() {
        assert_eq!(
            metric_name("http.server.duration", "ms", Kind::Histogram),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("http.server.request.duration", "s", Kind::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("requests", "{request}", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("requests_total", "1", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("system.network.io", "By", Kind::Counter),
            "system_network_io_bytes_total"
        );
        assert_eq!(
            metric_name("net.throughput", "By/s", Kind::Gauge),
            "net_throughput_bytes_per_second"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("queue_seconds", "s", Kind::Gauge),
            "queue_seconds"
        );
        assert_eq!(metric_name("2xx.count", "", Kind::Gauge), "_2xx_count");
    }

    /// A data point cannot claim another namespace: the resource's (the pod's) `namespace`
    /// wins over a point's own `namespace` attribute, which is kept as `exported_namespace`;
    /// other point attributes still win over resource-derived labels.
    #[test]
    fn point_namespace_cannot_override_the_pods() {
        let attribute = |key: &str, value: &str| KeyValue {
            key: key.to_owned(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        value.to_owned(),
                    ),
                ),
            }),
            ..KeyValue::default()
        };
        let resource = ResourceLabels::from_attributes(&[
            attribute("k8s.namespace.name", "shop"),
            attribute("service.name", "checkout"),
        ]);
        let labels = point_labels(
            &[attribute("namespace", "bank"), attribute("app", "ledger")],
            &resource,
        );
        assert_eq!(labels["namespace"], "shop");
        assert_eq!(labels["exported_namespace"], "bank");
        assert_eq!(labels["app"], "ledger");
        let own = point_labels(&[attribute("namespace", "shop")], &resource);
        assert_eq!(own["namespace"], "shop");
        assert!(!own.contains_key("exported_namespace"));

        // The cluster likewise: `k8s.cluster.name` becomes `cluster` (not
        // `k8s_cluster_name`) and wins over a point's own `cluster`.
        let resource = ResourceLabels::from_attributes(&[
            attribute("k8s.namespace.name", "shop"),
            attribute("k8s.cluster.name", "eu-prod-1"),
        ]);
        let labels = point_labels(&[attribute("cluster", "elsewhere")], &resource);
        assert_eq!(labels["cluster"], "eu-prod-1");
        assert_eq!(labels["exported_cluster"], "elsewhere");
        assert!(!labels.contains_key("k8s_cluster_name"), "{labels:?}");
    }

    /// Label names are sanitised the way Prometheus does it.
    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(label_name("2fa"), "key_2fa");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__reserved"), "__reserved");
    }
}
