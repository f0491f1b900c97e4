//! Enrichment: the last processor before the router. It stamps the pod identity on what leaves
//! the pod (OpenTelemetry semantic-convention resource attributes on OTLP batches, `namespace`,
//! `app`, `pod`, `version` labels on samples) and shapes log events into OTLP log records.
//!
//! Enrichment fills gaps: an attribute or label the application set itself is kept — except the
//! pod's namespace (`k8s.namespace.name`) and the cluster (`k8s.cluster.name`, when the config
//! names one), facts the application cannot change: a value it set is replaced by the agent's,
//! so its data can never claim another tenant's namespace or another cluster.

#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::batch::Batch;
use crate::event::LogEvent;
use crate::identity::Identity;
use crate::processors::crash::exception;
use crate::prompb::{Label, TimeSeries};
use crate::sources::logs::FILE_PATH_ATTRIBUTE;

/// Instrumentation scope of the log records the agent builds from log lines.
pub const SCOPE_NAME: &str = "vigil-agent";

/// The pod identity as OTLP resource attributes (semantic-convention keys), empty values left
/// out.
pub fn resource_attributes(identity: &Identity) -> Vec<(&'static str, &str)> {
    [
        ("k8s.namespace.name", identity.namespace.as_str()),
        ("k8s.pod.name", identity.pod.as_str()),
        ("k8s.pod.uid", identity.pod_uid.as_str()),
        ("k8s.node.name", identity.node.as_str()),
        ("service.name", identity.app.as_str()),
        ("service.version", identity.version.as_str()),
        ("k8s.cluster.name", identity.cluster.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .collect()
}

fn string_value(value: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    })
}

fn string_attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: string_value(value),
        ..KeyValue::default()
    }
}

/// The resource attributes whose values are always the agent's (the tenant boundary, and the
/// cluster many clusters' data is told apart by).
const ENFORCED_ATTRIBUTES: [&str; 2] = ["k8s.namespace.name", "k8s.cluster.name"];

/// Whether a resource already carries `key` with a value enrichment keeps (`value`: the
/// identity's). A `service.name` of `unknown_service…` (the OpenTelemetry SDKs' default when
/// the application names nothing) counts as missing, and so does a `k8s.namespace.name` other
/// than the pod's.
fn has_attribute(attributes: &[KeyValue], key: &str, value: &str) -> bool {
    attributes.iter().any(|kv| {
        let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        };
        kv.key == key
            && !(key == "service.name" && text.is_some_and(|s| s.starts_with("unknown_service")))
            && !(ENFORCED_ATTRIBUTES.contains(&key) && text != Some(value))
    })
}

/// Adds the identity attributes a resource lacks.
fn enrich_resource(identity: &Identity, resource: &mut Option<Resource>) {
    let resource = resource.get_or_insert_with(Resource::default);
    for (key, value) in resource_attributes(identity) {
        if has_attribute(&resource.attributes, key, value) {
            continue;
        }
        // Replace an SDK-default `service.name` or another namespace in place, else append.
        match resource.attributes.iter_mut().find(|kv| kv.key == key) {
            Some(existing) => existing.value = string_value(value),
            None => resource.attributes.push(string_attribute(key, value)),
        }
    }
}

/// The attributes [`enrich_batch`] would append to `resource`: the identity attributes it
/// lacks, in order. `None` when enrichment would also change an attribute in place (an SDK-default
/// `service.name`, another namespace), which appending cannot express.
pub fn resource_additions(
    identity: &Identity,
    resource: Option<&Resource>,
) -> Option<Vec<KeyValue>> {
    let attributes = resource.map_or(&[][..], |r| r.attributes.as_slice());
    let mut additions = Vec::new();
    for (key, value) in resource_attributes(identity) {
        if has_attribute(attributes, key, value) {
            continue;
        }
        if attributes.iter().any(|kv| kv.key == key) {
            return None;
        }
        additions.push(string_attribute(key, value));
    }
    Some(additions)
}

/// Adds `namespace`, `app`, `pod`, `version` to a series that lacks them, keeping the labels
/// sorted by name.
fn enrich_series(identity: &Identity, series: &mut TimeSeries) {
    for (name, value) in identity.series_labels() {
        if value.is_empty() {
            continue;
        }
        if let Err(at) = series
            .labels
            .binary_search_by(|label| label.name.as_str().cmp(name))
        {
            series.labels.insert(
                at,
                Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            );
        }
    }
}

/// Adds the pod identity: missing resource attributes on OTLP batches (`k8s.namespace.name`,
/// always the pod's; `k8s.pod.name`, `k8s.pod.uid`, `k8s.node.name`, `service.name`,
/// `service.version`), and the `namespace`, `app`, `pod`, `version` labels on samples when
/// absent.
pub fn enrich_batch(identity: &Identity, batch: &mut Batch) {
    match batch {
        Batch::Traces(request) => {
            for rs in &mut request.resource_spans {
                enrich_resource(identity, &mut rs.resource);
            }
        }
        Batch::Metrics(request) => {
            for rm in &mut request.resource_metrics {
                enrich_resource(identity, &mut rm.resource);
            }
        }
        Batch::Logs(request) => {
            for rl in &mut request.resource_logs {
                enrich_resource(identity, &mut rl.resource);
            }
        }
        Batch::Samples(request) => {
            for series in &mut request.timeseries {
                // Labels of a remote-write series are sorted; sort first if a producer did not.
                if !series.labels.is_sorted_by(|a, b| a.name <= b.name) {
                    series.labels.sort_by(|a, b| a.name.cmp(&b.name));
                }
                enrich_series(identity, series);
            }
        }
    }
}

/// Log events as one OTLP logs request under the pod's resource: body, severity, time,
/// attributes (`k8s.container.name`, `log.iostream`, `log.file.path`, parsed fields, and for
/// crashes OpenTelemetry's `exception.type`, `exception.message` and `exception.stacktrace`
/// with `vigil.crash.fingerprint`, `vigil.crash.language`, `vigil.crash.frame`,
/// `vigil.crash.lines`). A crash record's body and `exception.stacktrace` both hold the trace:
/// the body for log readers, the attribute for tools that follow the conventions.
pub fn logs_request(identity: &Identity, events: Vec<LogEvent>) -> ExportLogsServiceRequest {
    let observed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    logs_request_observed_at(identity, events, observed)
}

/// [`logs_request`] with the observation time given (nanoseconds since the epoch).
pub fn logs_request_observed_at(
    identity: &Identity,
    events: Vec<LogEvent>,
    observed_time_unix_nano: u64,
) -> ExportLogsServiceRequest {
    let resource = Resource {
        attributes: resource_attributes(identity)
            .into_iter()
            .map(|(key, value)| string_attribute(key, value))
            .collect(),
        ..Resource::default()
    };
    let log_records = events
        .into_iter()
        .map(|event| log_record(event, observed_time_unix_nano))
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// One log event as an OTLP log record.
fn log_record(event: LogEvent, observed_time_unix_nano: u64) -> LogRecord {
    let mut attributes = Vec::with_capacity(event.attributes.len() + 10);
    if !event.container.is_empty() {
        attributes.push(string_attribute("k8s.container.name", &*event.container));
    }
    attributes.push(string_attribute("log.iostream", event.stream.as_str()));
    if let Some(origin) = &event.origin {
        attributes.push(string_attribute(FILE_PATH_ATTRIBUTE, &*origin.path));
    }
    if let Some(crash) = &event.crash {
        // What the application logged under these keys itself is kept instead.
        let own = |key: &str| event.attributes.iter().any(|(k, _)| k == key);
        let stack = exception::stack_text(&event);
        if !own("exception.type") {
            attributes.push(string_attribute("exception.type", &crash.kind));
        }
        let message = exception::exception_message(
            stack.unwrap_or(&event.message),
            &crash.kind,
            &crash.language,
        );
        if !message.is_empty() && !own("exception.message") {
            attributes.push(string_attribute("exception.message", message));
        }
        if let Some(stack) = stack.filter(|_| !own("exception.stacktrace")) {
            attributes.push(string_attribute("exception.stacktrace", stack));
        }
        attributes.push(string_attribute(
            "vigil.crash.fingerprint",
            &crash.fingerprint,
        ));
        attributes.push(string_attribute("vigil.crash.language", &crash.language));
        if !crash.frame.is_empty() {
            attributes.push(string_attribute("vigil.crash.frame", &crash.frame));
        }
        attributes.push(KeyValue {
            key: "vigil.crash.lines".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(i64::from(event.lines))),
            }),
            ..KeyValue::default()
        });
    }
    attributes.extend(event.attributes.into_iter().map(|(key, value)| KeyValue {
        key,
        value: string_value(value),
        ..KeyValue::default()
    }));
    LogRecord {
        time_unix_nano: event.time_unix_nano,
        observed_time_unix_nano,
        severity_number: event.level.map_or(0, |l| l.severity_number()),
        severity_text: event
            .level
            .map(|l| l.as_str().to_ascii_uppercase())
            .unwrap_or_default(),
        body: string_value(event.message),
        attributes,
        ..LogRecord::default()
    }
}
