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

/// The buffer record of [`logs_request`] ([`Batch::encode`] of `Batch::Logs`), written
/// straight from the events: byte for byte the same, without building the request's log
/// records as owned strings first (events with a crash, rare, still go through
/// [`log_record`]).
pub fn logs_record(identity: &Identity, events: &[LogEvent]) -> Vec<u8> {
    let observed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    logs_record_observed_at(identity, events, observed)
}

/// [`logs_record`] with the observation time given (nanoseconds since the epoch).
pub fn logs_record_observed_at(
    identity: &Identity,
    events: &[LogEvent],
    observed_time_unix_nano: u64,
) -> Vec<u8> {
    use prost::encoding::{encode_varint, encoded_len_varint, message};
    use prost::Message;
    let resource = Resource {
        attributes: resource_attributes(identity)
            .into_iter()
            .map(|(key, value)| string_attribute(key, value))
            .collect(),
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    };
    let field_len = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    let resource_len = resource.encoded_len();
    let scope_len = scope.encoded_len();
    // The records go last, and the headers before them depend on their length. Plain records
    // (the rule) have their length worked out first and are then written straight behind the
    // headers; a batch with a crash record is encoded apart first and appended.
    let with_crash = events.iter().any(|e| e.crash.is_some()).then(|| {
        let estimate = events.iter().map(|e| e.message.len() + 160).sum::<usize>();
        let mut records = Vec::with_capacity(estimate);
        for event in events {
            match event.crash {
                None => {
                    let record = PlainRecord::new(event);
                    let len = record.len(observed_time_unix_nano);
                    record.put(len, observed_time_unix_nano, &mut records);
                }
                Some(_) => message::encode(
                    2,
                    &log_record(event.clone(), observed_time_unix_nano),
                    &mut records,
                ),
            }
        }
        records
    });
    // Each plain record's length, worked out once: it is also its length prefix.
    let plain_lens: Vec<usize> = match &with_crash {
        Some(_) => Vec::new(),
        None => events
            .iter()
            .map(|e| PlainRecord::new(e).len(observed_time_unix_nano))
            .collect(),
    };
    let records_len = match &with_crash {
        Some(records) => records.len(),
        None => plain_lens.iter().map(|&len| field_len(len)).sum(),
    };
    let scope_logs_len = field_len(scope_len) + records_len;
    let resource_logs_len = field_len(resource_len) + field_len(scope_logs_len);
    let mut out = Vec::with_capacity(1 + field_len(resource_logs_len));
    out.push(crate::batch::LOGS_TAG);
    // ExportLogsServiceRequest.resource_logs = 1
    out.push(0x0a);
    encode_varint(resource_logs_len as u64, &mut out);
    // ResourceLogs.resource = 1, ResourceLogs.scope_logs = 2
    message::encode(1, &resource, &mut out);
    out.push(0x12);
    encode_varint(scope_logs_len as u64, &mut out);
    // ScopeLogs.scope = 1, then its log_records (= 2)
    message::encode(1, &scope, &mut out);
    match with_crash {
        Some(records) => out.extend_from_slice(&records),
        None => {
            for (event, &len) in events.iter().zip(&plain_lens) {
                PlainRecord::new(event).put(len, observed_time_unix_nano, &mut out);
            }
        }
    }
    out
}

/// Length of a string field as prost writes it (left out when empty).
fn string_field_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        1 + prost::encoding::encoded_len_varint(text.len() as u64) + text.len()
    }
}

/// Length of an `AnyValue` holding a string (a oneof: written even when empty).
fn string_any_value_len(text: &str) -> usize {
    1 + prost::encoding::encoded_len_varint(text.len() as u64) + text.len()
}

/// Length of a `KeyValue` with a string value.
fn string_key_value_len(key: &str, value: &str) -> usize {
    let any = string_any_value_len(value);
    string_field_len(key) + 1 + prost::encoding::encoded_len_varint(any as u64) + any
}

fn put_bytes_field(key: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(key);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends a `KeyValue` with a string value as field `key` (a length-delimited key byte).
fn put_string_key_value(field: u8, key: &str, value: &str, out: &mut Vec<u8>) {
    out.push(field);
    prost::encoding::encode_varint(string_key_value_len(key, value) as u64, out);
    if !key.is_empty() {
        put_bytes_field(0x0a, key.as_bytes(), out);
    }
    // KeyValue.value = 2: AnyValue { string_value = 1 }
    out.push(0x12);
    prost::encoding::encode_varint(string_any_value_len(value) as u64, out);
    put_bytes_field(0x0a, value.as_bytes(), out);
}

/// The attributes every plain record carries before the event's own: the container, the
/// stream and the file path (when known); how many there are.
fn fixed_attributes(event: &LogEvent) -> ([(&str, &str); 3], usize) {
    let mut attributes: [(&str, &str); 3] = [("", ""); 3];
    let mut fixed = 0;
    if !event.container.is_empty() {
        attributes[fixed] = ("k8s.container.name", &event.container);
        fixed += 1;
    }
    attributes[fixed] = ("log.iostream", event.stream.as_str());
    fixed += 1;
    if let Some(origin) = &event.origin {
        attributes[fixed] = (FILE_PATH_ATTRIBUTE, &origin.path);
        fixed += 1;
    }
    (attributes, fixed)
}

/// A log event without a crash, ready to be written as the `LogRecord` prost would write for
/// [`log_record`]'s record, fields in the order of their numbers: its length is worked out
/// first (it is also its length prefix), then it is written.
struct PlainRecord<'a> {
    event: &'a LogEvent,
    /// The container, stream and file path attributes (the first `fixed`).
    fixed_attributes: [(&'a str, &'a str); 3],
    fixed: usize,
    severity_number: i32,
    severity_text: &'static str,
    /// Length of the body's `AnyValue`.
    body: usize,
}

impl<'a> PlainRecord<'a> {
    fn new(event: &'a LogEvent) -> PlainRecord<'a> {
        let (fixed_attributes, fixed) = fixed_attributes(event);
        PlainRecord {
            event,
            fixed_attributes,
            fixed,
            severity_number: event.level.map_or(0, |l| l.severity_number()),
            severity_text: event.level.map_or("", severity_text),
            body: string_any_value_len(&event.message),
        }
    }

    /// The fixed attributes, then the event's own.
    fn attributes(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fixed_attributes[..self.fixed].iter().copied().chain(
            self.event
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Length of the `LogRecord` (without its field key and length).
    fn len(&self, observed_time_unix_nano: u64) -> usize {
        (if self.event.time_unix_nano != 0 { 9 } else { 0 })
            + if observed_time_unix_nano != 0 { 9 } else { 0 }
            + if self.severity_number != 0 {
                1 + prost::encoding::encoded_len_varint(self.severity_number as u64)
            } else {
                0
            }
            + string_field_len(self.severity_text)
            + 1
            + prost::encoding::encoded_len_varint(self.body as u64)
            + self.body
            + self
                .attributes()
                .map(|(k, v)| {
                    let kv = string_key_value_len(k, v);
                    1 + prost::encoding::encoded_len_varint(kv as u64) + kv
                })
                .sum::<usize>()
    }

    /// Appends it as `ScopeLogs.log_records` (= 2); `len` is its [`PlainRecord::len`].
    fn put(&self, len: usize, observed_time_unix_nano: u64, out: &mut Vec<u8>) {
        out.push(0x12);
        prost::encoding::encode_varint(len as u64, out);
        if self.event.time_unix_nano != 0 {
            // LogRecord.time_unix_nano = 1, fixed64
            out.push(0x09);
            out.extend_from_slice(&self.event.time_unix_nano.to_le_bytes());
        }
        if self.severity_number != 0 {
            // LogRecord.severity_number = 2
            out.push(0x10);
            prost::encoding::encode_varint(self.severity_number as u64, out);
        }
        if !self.severity_text.is_empty() {
            // LogRecord.severity_text = 3
            put_bytes_field(0x1a, self.severity_text.as_bytes(), out);
        }
        // LogRecord.body = 5: AnyValue { string_value = 1 }
        out.push(0x2a);
        prost::encoding::encode_varint(self.body as u64, out);
        put_bytes_field(0x0a, self.event.message.as_bytes(), out);
        for (key, value) in self.attributes() {
            // LogRecord.attributes = 6
            put_string_key_value(0x32, key, value, out);
        }
        if observed_time_unix_nano != 0 {
            // LogRecord.observed_time_unix_nano = 11, fixed64
            out.push(0x59);
            out.extend_from_slice(&observed_time_unix_nano.to_le_bytes());
        }
    }
}

/// The OTLP severity text of a level (its name in capitals).
fn severity_text(level: crate::event::Level) -> &'static str {
    use crate::event::Level;
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
        Level::Fatal => "FATAL",
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
            .map(|l| severity_text(l).to_owned())
            .unwrap_or_default(),
        body: string_value(event.message),
        attributes,
        ..LogRecord::default()
    }
}
