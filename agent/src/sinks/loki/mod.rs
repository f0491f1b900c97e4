//! The Loki sink: logs pushed as JSON to Loki's push API (`POST /loki/api/v1/push`, the URL as
//! configured), gzip-compressed, one request per send.
//!
//! Stream labels are kept to low-cardinality values: `namespace`, `app`, `pod`, `container`,
//! `level`, and `crash="true"` on crash records. Everything else a record carries — its parsed
//! fields, the crash fingerprint, exception type and language, trace and span ids — travels as
//! structured metadata (Loki 3, or 2.9 with `allow_structured_metadata`), with dots in names
//! replaced by underscores; a crash's `exception.stacktrace` that repeats the line is left out
//! (Loki bounds metadata per entry). Entries are sorted by time within each stream.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use reqwest::Url;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use vigil_crds::agent_config::HttpSink;

use super::http::{self, HttpClient};
use super::{any_value_text, log_level, log_time_unix_nano, string_attribute};
use super::{SendError, SinkConfigError};
use crate::batch::{Batch, Signal};

/// Component name.
pub const COMPONENT: &str = "sink_loki";
/// Signals the Loki sink takes.
pub const SIGNALS: &[Signal] = &[Signal::Logs];

/// Record attribute holding the crash fingerprint (set by crash detection).
const CRASH_FINGERPRINT: &str = "vigil.crash.fingerprint";
/// Record or resource attribute holding the container name.
const CONTAINER: &str = "k8s.container.name";
/// Record attribute holding a crash's stack trace (OpenTelemetry's exception conventions).
const STACKTRACE: &str = "exception.stacktrace";

/// A Loki exporter.
#[derive(Debug)]
pub struct LokiSink {
    client: HttpClient,
    url: Url,
}

impl LokiSink {
    /// Checks the config and builds the client.
    pub fn new(config: &HttpSink) -> Result<Self, SinkConfigError> {
        Self::at("loki", config)
    }

    /// [`LokiSink::new`] for the exporter at config path `field` (errors name
    /// `exporters.<field>.…`).
    pub fn at(field: &str, config: &HttpSink) -> Result<Self, SinkConfigError> {
        let (client, url) = http::push_client(field, config)?;
        Ok(LokiSink { client, url })
    }

    /// Pushes every log record of the batches in one request.
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        let push = PushRequest::from_batches(batches);
        if push.streams.is_empty() {
            return Ok(());
        }
        let body = push.to_gzip_json()?;
        self.client
            .post(
                &self.url,
                "application/json",
                &[("Content-Encoding", "gzip")],
                body,
            )
            .await?
            .into_result()
            .map(|_| ())
    }
}

/// The body of a push: `{"streams": [...]}`.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct PushRequest {
    pub streams: Vec<Stream>,
}

/// One stream: its labels and its entries in time order.
#[derive(Debug, PartialEq, Serialize)]
pub struct Stream {
    pub stream: BTreeMap<&'static str, String>,
    pub values: Vec<Entry>,
}

/// One log line: `["<unix ns>", "<line>"]`, or with structured metadata
/// `["<unix ns>", "<line>", {"key": "value"}]`.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub time_unix_nano: u64,
    pub line: String,
    pub metadata: BTreeMap<String, String>,
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = if self.metadata.is_empty() { 2 } else { 3 };
        let mut seq = serializer.serialize_seq(Some(len))?;
        seq.serialize_element(&self.time_unix_nano.to_string())?;
        seq.serialize_element(&self.line)?;
        if !self.metadata.is_empty() {
            seq.serialize_element(&self.metadata)?;
        }
        seq.end()
    }
}

impl PushRequest {
    /// Groups the log records of the batches into streams.
    pub fn from_batches(batches: &[Batch]) -> PushRequest {
        let mut streams: BTreeMap<BTreeMap<&'static str, String>, Vec<Entry>> = BTreeMap::new();
        for batch in batches {
            if let Batch::Logs(request) = batch {
                add_logs(request, &mut streams);
            }
        }
        PushRequest {
            streams: streams
                .into_iter()
                .map(|(stream, mut values)| {
                    // Stable: records with equal times keep the order they were read in.
                    values.sort_by_key(|e| e.time_unix_nano);
                    Stream { stream, values }
                })
                .collect(),
        }
    }

    /// The gzip-compressed JSON body.
    pub fn to_gzip_json(&self) -> Result<Vec<u8>, SendError> {
        let permanent = |e: &dyn std::fmt::Display| SendError::Permanent {
            reason: format!("cannot encode a Loki push request: {e}"),
        };
        let json = serde_json::to_vec(self).map_err(|e| permanent(&e))?;
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        encoder.write_all(&json).map_err(|e| permanent(&e))?;
        encoder.finish().map_err(|e| permanent(&e))
    }
}

fn add_logs(
    request: &ExportLogsServiceRequest,
    streams: &mut BTreeMap<BTreeMap<&'static str, String>, Vec<Entry>>,
) {
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let mut base: BTreeMap<&'static str, String> = BTreeMap::new();
        for (key, label) in [
            ("k8s.namespace.name", "namespace"),
            ("service.name", "app"),
            ("k8s.pod.name", "pod"),
            (CONTAINER, "container"),
            ("k8s.cluster.name", "cluster"),
        ] {
            if let Some(value) = string_attribute(resource, key) {
                base.insert(label, value.to_owned());
            }
        }
        for scope in &resource_logs.scope_logs {
            for record in &scope.log_records {
                let mut labels = base.clone();
                if let Some(container) = string_attribute(&record.attributes, CONTAINER) {
                    labels.insert("container", container.to_owned());
                }
                if let Some(level) = log_level(&record.severity_text, record.severity_number) {
                    labels.insert("level", level.to_owned());
                }
                if string_attribute(&record.attributes, CRASH_FINGERPRINT).is_some() {
                    labels.insert("crash", "true".to_owned());
                }
                if labels.is_empty() {
                    // Loki refuses streams without labels.
                    labels.insert("job", "vigil-agent".to_owned());
                }
                let line = any_value_text(record.body.as_ref()).into_owned();
                let metadata = structured_metadata(
                    &record.attributes,
                    &line,
                    &record.trace_id,
                    &record.span_id,
                );
                let entry = Entry {
                    time_unix_nano: log_time_unix_nano(
                        record.time_unix_nano,
                        record.observed_time_unix_nano,
                    ),
                    line,
                    metadata,
                };
                streams.entry(labels).or_default().push(entry);
            }
        }
    }
}

/// The record's attributes as structured metadata; an `exception.stacktrace` that repeats the
/// line is left out (the line carries it, and Loki bounds metadata per entry).
fn structured_metadata(
    attributes: &[KeyValue],
    line: &str,
    trace_id: &[u8],
    span_id: &[u8],
) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    for kv in attributes {
        if kv.key == CONTAINER {
            continue;
        }
        let value = any_value_text(kv.value.as_ref());
        if kv.key == STACKTRACE && value == line {
            continue;
        }
        if !value.is_empty() {
            metadata.insert(kv.key.replace('.', "_"), value.into_owned());
        }
    }
    if trace_id.iter().any(|b| *b != 0) {
        metadata.insert("trace_id".to_owned(), hex::encode(trace_id));
    }
    if span_id.iter().any(|b| *b != 0) {
        metadata.insert("span_id".to_owned(), hex::encode(span_id));
    }
    metadata
}
