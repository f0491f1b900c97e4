//! The Splunk HTTP Event Collector sink: logs as HEC JSON events, all events of a send
//! concatenated in one `POST <url>/services/collector/event` with `Authorization: Splunk
//! <token>` (the token read from `tokenFile`, re-read when the mounted Secret changes).
//!
//! Each event: `time` (seconds with millisecond decimals), `host` (the node), `source`
//! (`<pod>/<container>`), `sourcetype` (configured, default `vigil`), `index` (when configured),
//! `event` (the log line, or `{"message": line, ...fields}` when the record has parsed fields;
//! a crash's `exception.stacktrace` that repeats the line is not sent twice)
//! and indexed `fields` for the low-cardinality identity: `namespace`, `app`, `pod`, `container`,
//! `stream`, `level`, and on crash records `crash_fingerprint`, `exception_type`, `crash_language`.
//!
//! HEC answers errors as `{"text": ..., "code": N}`: codes 8 (internal error), 9 (server busy),
//! 18 (unhealthy), 19 (queues full) and 23 (shutting down) are retried, the others are
//! permanent.

#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use vigil_crds::agent_config::SplunkHecSink as SplunkHecSinkConfig;

use super::http::{self, body_excerpt, CredentialFile, HttpClient, HttpSettings};
use super::{any_value_json, log_level, log_time_unix_nano, string_attribute};
use super::{SendError, SinkConfigError};
use crate::batch::{Batch, Signal};

/// Component name.
pub const COMPONENT: &str = "sink_splunk_hec";
/// Signals the Splunk HEC sink takes.
pub const SIGNALS: &[Signal] = &[Signal::Logs];
/// Sourcetype when none is configured.
pub const DEFAULT_SOURCETYPE: &str = "vigil";
/// The HEC event endpoint's path.
const EVENT_PATH: &str = "/services/collector/event";

/// A Splunk HEC exporter.
#[derive(Debug)]
pub struct SplunkHecSink {
    client: HttpClient,
    url: Url,
    index: Option<String>,
    sourcetype: String,
}

impl SplunkHecSink {
    /// Checks the config and builds the client. `url` may be the HEC base URL or already end
    /// in `/services/collector` or `/services/collector/event`.
    pub fn new(config: &SplunkHecSinkConfig) -> Result<Self, SinkConfigError> {
        Self::at("splunkHec", config)
    }

    /// [`SplunkHecSink::new`] for the exporter at config path `field` (errors name
    /// `exporters.<field>.…`).
    pub fn at(field: &str, config: &SplunkHecSinkConfig) -> Result<Self, SinkConfigError> {
        let SplunkHecSinkConfig {
            url,
            token_file,
            index,
            sourcetype,
            ca_file,
            headers,
            client_cert_file,
            client_key_file,
            signals: _,
        } = config;
        if token_file.trim().is_empty() {
            return Err(SinkConfigError::invalid(
                format!("{field}.tokenFile"),
                "must name the file holding the HEC token",
            ));
        }
        let url_field = format!("{field}.url");
        let base = http::parse_url(&url_field, url)?;
        let url = http::parse_url(&url_field, &event_url(base.as_str()))?;
        let access = http::access(
            field,
            headers,
            client_cert_file.as_deref(),
            client_key_file.as_deref(),
            true,
            false,
        )?;
        let client = HttpClient::new(HttpSettings {
            field,
            ca_file: ca_file.as_deref(),
            tenant: None,
            credential: Some(CredentialFile::new(token_file.as_str(), "Splunk")),
            access,
        })?;
        Ok(SplunkHecSink {
            client,
            url,
            index: index.clone().filter(|i| !i.is_empty()),
            sourcetype: sourcetype
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_SOURCETYPE.to_owned()),
        })
    }

    /// Sends every log record of the batches in one request.
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        let body = self.events(batches)?;
        if body.is_empty() {
            return Ok(());
        }
        let response = self
            .client
            .post(&self.url, "application/json", &[], body)
            .await?;
        if response.status.is_success() {
            return Ok(());
        }
        Err(hec_error(
            response.status,
            response.retry_after,
            &response.body,
        ))
    }

    /// The request body: the events of all log records, concatenated.
    pub fn events(&self, batches: &[Batch]) -> Result<Vec<u8>, SendError> {
        let mut body = Vec::new();
        for batch in batches {
            if let Batch::Logs(request) = batch {
                self.write_events(request, &mut body)?;
            }
        }
        Ok(body)
    }

    fn write_events(
        &self,
        request: &ExportLogsServiceRequest,
        body: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        for resource_logs in &request.resource_logs {
            let resource = resource_logs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let mut resource_fields = Map::new();
            for (key, field) in [
                ("k8s.namespace.name", "namespace"),
                ("service.name", "app"),
                ("k8s.pod.name", "pod"),
                ("k8s.container.name", "container"),
                ("k8s.cluster.name", "cluster"),
            ] {
                if let Some(value) = string_attribute(resource, key) {
                    resource_fields.insert(field.to_owned(), Json::String(value.to_owned()));
                }
            }
            let host = string_attribute(resource, "k8s.node.name");
            for scope in &resource_logs.scope_logs {
                for record in &scope.log_records {
                    let mut fields = resource_fields.clone();
                    let mut extra = Map::new();
                    let line_value = record.body.as_ref().and_then(|b| b.value.as_ref());
                    for kv in &record.attributes {
                        let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                        // A stack trace that repeats the body is sent once, as the message.
                        if kv.key == "exception.stacktrace"
                            && value.is_some()
                            && value == line_value
                        {
                            continue;
                        }
                        let value = any_value_json(value);
                        let indexed = match kv.key.as_str() {
                            "k8s.container.name" => Some("container"),
                            "log.iostream" => Some("stream"),
                            "vigil.crash.fingerprint" => Some("crash_fingerprint"),
                            "exception.type" => Some("exception_type"),
                            "vigil.crash.language" => Some("crash_language"),
                            _ => None,
                        };
                        match indexed {
                            Some(name) => {
                                fields.insert(name.to_owned(), value);
                            }
                            None => {
                                extra.insert(kv.key.clone(), value);
                            }
                        }
                    }
                    if let Some(level) = log_level(&record.severity_text, record.severity_number) {
                        fields.insert("level".to_owned(), Json::String(level.to_owned()));
                    }
                    let line = any_value_json(record.body.as_ref().and_then(|b| b.value.as_ref()));
                    let event = if extra.is_empty() {
                        line
                    } else {
                        if record.trace_id.iter().any(|b| *b != 0) {
                            extra.insert(
                                "trace_id".to_owned(),
                                Json::String(hex::encode(&record.trace_id)),
                            );
                        }
                        extra.insert("message".to_owned(), line);
                        Json::Object(extra)
                    };
                    let source = match (
                        fields.get("pod").and_then(Json::as_str),
                        fields.get("container").and_then(Json::as_str),
                    ) {
                        (Some(pod), Some(container)) => Some(format!("{pod}/{container}")),
                        (Some(pod), None) => Some(pod.to_owned()),
                        (None, Some(container)) => Some(container.to_owned()),
                        (None, None) => None,
                    };
                    let time_ns =
                        log_time_unix_nano(record.time_unix_nano, record.observed_time_unix_nano);
                    let hec = HecEvent {
                        time: hec_time(time_ns),
                        host,
                        source: source.as_deref(),
                        sourcetype: &self.sourcetype,
                        index: self.index.as_deref(),
                        event,
                        fields,
                    };
                    serde_json::to_writer(&mut *body, &hec).map_err(|e| SendError::Permanent {
                        reason: format!("cannot encode a Splunk HEC event: {e}"),
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The event endpoint for a configured URL.
fn event_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with(EVENT_PATH) {
        url.to_owned()
    } else if url.ends_with("/services/collector") {
        format!("{url}/event")
    } else {
        format!("{url}{EVENT_PATH}")
    }
}

/// Seconds since the epoch with millisecond decimals, which HEC reads exactly.
fn hec_time(time_unix_nano: u64) -> f64 {
    // One correctly rounded division of an exact integer, so the shortest decimal form of the
    // result is exactly the millisecond value.
    (time_unix_nano / 1_000_000) as f64 / 1000.0
}

/// One HEC event.
#[derive(Debug, Serialize)]
struct HecEvent<'a> {
    time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: Json,
    #[serde(skip_serializing_if = "Map::is_empty")]
    fields: Map<String, Json>,
}

/// HEC's answer: `{"text": "Success", "code": 0}`.
#[derive(Debug, Deserialize)]
struct HecResponse {
    #[serde(default)]
    text: String,
    code: i64,
}

/// HEC codes worth retrying: internal error, server busy, unhealthy, queues full, shutting
/// down.
fn retryable_hec_code(code: i64) -> bool {
    matches!(code, 8 | 9 | 18 | 19 | 23)
}

/// HEC codes of a refused token: disabled, required, invalid authorization, invalid token.
/// Retried like a 401: the token may be fixed or rotated, and the data stays buffered.
fn auth_hec_code(code: i64) -> bool {
    matches!(code, 1..=4)
}

/// The error a failed HEC request maps to: by HEC code when the body has one, else by status.
fn hec_error(
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
) -> SendError {
    let Ok(answer) = serde_json::from_slice::<HecResponse>(body) else {
        return http::status_error(status, retry_after, body);
    };
    let reason = format!(
        "Splunk HEC answered {status}, code {}{}",
        answer.code,
        body_excerpt(answer.text.as_bytes())
    );
    if auth_hec_code(answer.code)
        || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        return http::auth_failed(reason, retry_after);
    }
    if retryable_hec_code(answer.code) || status == StatusCode::TOO_MANY_REQUESTS {
        SendError::Retryable {
            reason,
            retry_after,
        }
    } else {
        SendError::Permanent { reason }
    }
}
