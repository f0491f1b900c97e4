//! Sinks: where data leaves the agent. Each sink drains its own disk buffer, sends with retry
//! and acknowledges what the backend accepted.
//!
//! [`Sink::from_config`] builds one [`Sink`] per configured exporter; [`Sink::send`] turns the
//! batches a driver hands it into as few requests as the backend's protocol allows and says
//! whether a failure is worth retrying ([`SendError`]). The OTLP and remote-write sinks take
//! their buffer records undecoded instead ([`Sink::send_encoded`]): they are export and write
//! requests already.
//!
//! Labels the sinks derive from OTLP resource attributes (remote write series labels, Loki stream
//! labels, Splunk HEC fields) use the same names as the agent's scraped series:
//! `k8s.namespace.name` → `namespace`, `service.name` → `app`, `k8s.pod.name` → `pod`,
//! `k8s.container.name` → `container`, `service.version` → `version`, `k8s.cluster.name` →
//! `cluster`.
//!
//! Exporters ([`Exporter`]) are the single ones of the config (`exporters.otlp`, …) and the
//! named ones (`exporters.named[i]`), each with its own buffer and component name and the
//! signals it chose; several of one kind may run side by side.

pub mod access;
pub mod driver;
pub mod error_body;
pub mod http;
pub mod loki;
pub mod otlp;
pub mod remote_write;
pub mod retry;
pub mod splunk_hec;

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use vigil_crds::agent_config::ExportersConfig;
use vigil_crds::monitored_app::ExportSignal;

use crate::batch::{Batch, Signal};

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (connection refused, timeout, 429, 5xx, and 401/403: a refused credential
    /// is fixed or rotated without the agent); `retry_after` from the backend.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (400, 404, 413, payload the backend refuses).
    #[error("{reason}")]
    Permanent { reason: String },
}

/// Why an exporter's configuration cannot be used. Every message starts with the field's path
/// in the agent config, such as `exporters.loki.url`.
#[derive(Debug, thiserror::Error)]
pub enum SinkConfigError {
    /// The value of a field is unusable.
    #[error("exporters.{field}: {message}")]
    Invalid { field: String, message: String },
    /// A file named by a field cannot be read.
    #[error("exporters.{field}: cannot read {path}")]
    ReadFile {
        field: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built from the field's settings.
    #[error("exporters.{field}: cannot build the HTTP client")]
    HttpClient {
        field: String,
        #[source]
        source: reqwest::Error,
    },
    /// The gRPC channel could not be built from the field's settings.
    #[error("exporters.{field}: cannot build the gRPC channel")]
    GrpcChannel {
        field: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl SinkConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SinkConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A configured exporter.
#[derive(Debug)]
pub enum Sink {
    /// OTLP over gRPC or HTTP: traces, metrics and logs.
    Otlp(otlp::OtlpSink),
    /// Prometheus remote write: scraped and crash samples, and OTLP metrics converted to series.
    RemoteWrite(remote_write::RemoteWriteSink),
    /// Loki push: logs.
    Loki(loki::LokiSink),
    /// Splunk HTTP Event Collector: logs.
    SplunkHec(splunk_hec::SplunkHecSink),
}

/// A configured exporter: its sink, the component name it reports under (and its buffer's
/// folder), and the signals it carries.
#[derive(Debug)]
pub struct Exporter {
    /// `sink_<kind>` for the single exporters, `sink_<kind>_<name>` for named ones.
    pub name: String,
    /// What the router hands it: the kind's signals, narrowed by the exporter's `signals`.
    pub signals: Vec<Signal>,
    pub sink: Sink,
}

/// The signals of a sink `kind` (whose own signals are `all`) that the exporter at `field`
/// chose; all of them when it chose none. A choice the kind cannot carry is an error.
fn chosen_signals(
    field: &str,
    all: &[Signal],
    chosen: &[ExportSignal],
) -> Result<Vec<Signal>, SinkConfigError> {
    if chosen.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for (i, signal) in chosen.iter().enumerate() {
        let wanted: &[Signal] = match signal {
            ExportSignal::Traces => &[Signal::Traces],
            ExportSignal::Metrics => &[Signal::Metrics, Signal::Samples],
            ExportSignal::Logs => &[Signal::Logs],
        };
        let carried: Vec<Signal> = wanted.iter().copied().filter(|s| all.contains(s)).collect();
        if carried.is_empty() {
            return Err(SinkConfigError::invalid(
                format!("{field}.signals[{i}]"),
                format!("this exporter kind does not carry {}", signal.as_str()),
            ));
        }
        for s in carried {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// A DNS label of at most 40 characters, as the CRD requires of exporter names.
fn valid_exporter_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 40
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

impl Exporter {
    /// One exporter per configured one: the single ones in the order OTLP, remote write, Loki,
    /// Splunk HEC, then the named ones in their order. Errors name the offending field
    /// (`exporters.loki.url: ...`, `exporters.named[1].otlp.headers[0].name: ...`). Needs no
    /// async runtime and opens no connection: connections are made by the first send.
    pub fn from_config(exporters: &ExportersConfig) -> Result<Vec<Exporter>, SinkConfigError> {
        // Destructured without `..` so that a new exporter kind cannot be configured and
        // silently never built.
        let ExportersConfig {
            otlp,
            prometheus_remote_write,
            loki,
            splunk_hec,
            named,
        } = exporters;
        let mut out = Vec::new();
        let single = Kinds {
            otlp: otlp.as_ref(),
            prometheus_remote_write: prometheus_remote_write.as_ref(),
            loki: loki.as_ref(),
            splunk_hec: splunk_hec.as_ref(),
        };
        single.build("", None, &mut out)?;
        let mut names = std::collections::BTreeSet::new();
        for (i, n) in named.iter().enumerate() {
            let field = format!("named[{i}]");
            if !valid_exporter_name(&n.name) {
                return Err(SinkConfigError::invalid(
                    format!("{field}.name"),
                    format!(
                        "{:?} is not a valid name: use at most 40 lower-case letters, digits and '-', starting and ending with a letter or digit",
                        n.name
                    ),
                ));
            }
            if !names.insert(n.name.as_str()) {
                return Err(SinkConfigError::invalid(
                    format!("{field}.name"),
                    format!("{:?} names another exporter already", n.name),
                ));
            }
            let kinds = Kinds {
                otlp: n.otlp.as_ref(),
                prometheus_remote_write: n.prometheus_remote_write.as_ref(),
                loki: n.loki.as_ref(),
                splunk_hec: n.splunk_hec.as_ref(),
            };
            let before = out.len();
            kinds.build(&format!("{field}."), Some(&n.name), &mut out)?;
            if out.len() != before + 1 {
                return Err(SinkConfigError::invalid(
                    field,
                    "set exactly one of otlp, prometheusRemoteWrite, loki and splunkHec",
                ));
            }
        }
        Ok(out)
    }
}

/// The exporter kinds of one level of the config (the single fields, or one named entry).
struct Kinds<'a> {
    otlp: Option<&'a vigil_crds::agent_config::OtlpSink>,
    prometheus_remote_write: Option<&'a vigil_crds::agent_config::HttpSink>,
    loki: Option<&'a vigil_crds::agent_config::HttpSink>,
    splunk_hec: Option<&'a vigil_crds::agent_config::SplunkHecSink>,
}

impl Kinds<'_> {
    /// Builds every kind set; `prefix` goes before the kind in field paths, `name` after the
    /// component name.
    fn build(
        &self,
        prefix: &str,
        name: Option<&str>,
        out: &mut Vec<Exporter>,
    ) -> Result<(), SinkConfigError> {
        let component = |sink: &Sink| match name {
            Some(name) => format!("{}_{name}", sink.name()),
            None => sink.name().to_owned(),
        };
        let mut push = |sink: Sink, field: &str, chosen: &[ExportSignal]| {
            let signals = chosen_signals(field, sink.signals(), chosen)?;
            out.push(Exporter {
                name: component(&sink),
                signals,
                sink,
            });
            Ok::<(), SinkConfigError>(())
        };
        if let Some(config) = self.otlp {
            let field = format!("{prefix}otlp");
            let sink = Sink::Otlp(otlp::OtlpSink::at(&field, config)?);
            push(sink, &field, &config.signals)?;
        }
        if let Some(config) = self.prometheus_remote_write {
            let field = format!("{prefix}prometheusRemoteWrite");
            let sink = Sink::RemoteWrite(remote_write::RemoteWriteSink::at(&field, config)?);
            push(sink, &field, &config.signals)?;
        }
        if let Some(config) = self.loki {
            let field = format!("{prefix}loki");
            let sink = Sink::Loki(loki::LokiSink::at(&field, config)?);
            push(sink, &field, &config.signals)?;
        }
        if let Some(config) = self.splunk_hec {
            let field = format!("{prefix}splunkHec");
            let sink = Sink::SplunkHec(splunk_hec::SplunkHecSink::at(&field, config)?);
            push(sink, &field, &config.signals)?;
        }
        Ok(())
    }
}

impl Sink {
    /// One sink per configured exporter, in the order of [`Exporter::from_config`].
    pub fn from_config(exporters: &ExportersConfig) -> Result<Vec<Sink>, SinkConfigError> {
        Ok(Exporter::from_config(exporters)?
            .into_iter()
            .map(|e| e.sink)
            .collect())
    }

    /// Component name (`sink_otlp`, `sink_remote_write`, `sink_loki`, `sink_splunk_hec`).
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Otlp(_) => otlp::COMPONENT,
            Sink::RemoteWrite(_) => remote_write::COMPONENT,
            Sink::Loki(_) => loki::COMPONENT,
            Sink::SplunkHec(_) => splunk_hec::COMPONENT,
        }
    }

    /// Signals this sink takes.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            Sink::Otlp(_) => otlp::SIGNALS,
            Sink::RemoteWrite(_) => remote_write::SIGNALS,
            Sink::Loki(_) => loki::SIGNALS,
            Sink::SplunkHec(_) => splunk_hec::SIGNALS,
        }
    }

    /// Whether the backend needs this sink's requests one at a time, in order, so that its
    /// driver keeps a single one in flight: a Prometheus remote-write receiver refuses a sample
    /// older than the newest it has for the series, so two concurrent requests holding samples
    /// of one series (two scrapes) could see the older refused for good.
    pub fn needs_order(&self) -> bool {
        matches!(self, Sink::RemoteWrite(_))
    }

    /// Whether the driver hands this sink its buffer records undecoded, through
    /// [`Sink::send_encoded`] (OTLP, whose records are already export requests; remote write,
    /// whose samples records are usually already write requests as receivers want them),
    /// rather than decoded batches through [`Sink::send`].
    pub fn sends_encoded(&self) -> bool {
        matches!(self, Sink::Otlp(_) | Sink::RemoteWrite(_))
    }

    /// Sends encoded batches. The OTLP sink sends them as they are, the remote-write sink its
    /// samples records when they need no merging ([`remote_write::RemoteWriteSink::send_encoded`]);
    /// any other sink decodes them and sends the batches.
    pub async fn send_encoded(&self, batches: &otlp::EncodedBatches) -> Result<(), SendError> {
        match self {
            Sink::Otlp(sink) => sink.send_encoded(batches).await,
            Sink::RemoteWrite(sink) => sink.send_encoded(batches).await,
            other => other.send(&decode_encoded(batches)?).await,
        }
    }

    /// Sends batches (all of signals this sink takes) as few requests as the protocol allows.
    /// Batches of other signals are ignored. `Ok` means the backend accepted everything it did
    /// not explicitly reject (rejections are counted as dropped with reason `rejected`).
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        match self {
            Sink::Otlp(sink) => sink.send(batches).await,
            Sink::RemoteWrite(sink) => sink.send(batches).await,
            Sink::Loki(sink) => sink.send(batches).await,
            Sink::SplunkHec(sink) => sink.send(batches).await,
        }
    }
}

/// Decodes encoded OTLP export requests into batches.
pub(crate) fn decode_encoded(batches: &otlp::EncodedBatches) -> Result<Vec<Batch>, SendError> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let invalid = |signal: &'static str| {
        move |e: prost::DecodeError| SendError::Permanent {
            reason: format!("invalid {signal} batch: {e}"),
        }
    };
    let mut out = Vec::new();
    for part in &batches.traces {
        let request = ExportTraceServiceRequest::decode(part.clone()).map_err(invalid("traces"))?;
        out.push(Batch::Traces(request));
    }
    for part in &batches.metrics {
        let request =
            ExportMetricsServiceRequest::decode(part.clone()).map_err(invalid("metrics"))?;
        out.push(Batch::Metrics(request));
    }
    for part in &batches.logs {
        let request = ExportLogsServiceRequest::decode(part.clone()).map_err(invalid("logs"))?;
        out.push(Batch::Logs(request));
    }
    for part in &batches.samples {
        let request =
            crate::prompb::WriteRequest::decode(part.clone()).map_err(invalid("samples"))?;
        out.push(Batch::Samples(request));
    }
    Ok(out)
}

/// The string value of attribute `key`, if it is a string.
fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    })
}

/// An attribute value as text: strings as they are, other scalars in their usual spelling,
/// arrays and maps as JSON.
fn any_value_text(value: Option<&AnyValue>) -> Cow<'_, str> {
    match value.and_then(|v| v.value.as_ref()) {
        None => Cow::Borrowed(""),
        Some(Value::StringValue(s)) => Cow::Borrowed(s),
        Some(Value::BoolValue(b)) => Cow::Owned(b.to_string()),
        Some(Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Value::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(Value::BytesValue(b)) => Cow::Owned(hex::encode(b)),
        Some(other) => Cow::Owned(any_value_json(Some(other)).to_string()),
    }
}

/// An attribute value as JSON.
fn any_value_json(value: Option<&Value>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(Value::BytesValue(b)) => Json::String(hex::encode(b)),
        Some(Value::ArrayValue(a)) => Json::Array(
            a.values
                .iter()
                .map(|v| any_value_json(v.value.as_ref()))
                .collect(),
        ),
        Some(Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        any_value_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
        // An index into a dictionary this agent never receives (profiles only).
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
    }
}

/// Level name of an OTLP log record: its severity text when it is a known spelling, else the
/// range its severity number falls in; `None` when neither says anything.
fn log_level(severity_text: &str, severity_number: i32) -> Option<&'static str> {
    if let Some(level) = crate::event::Level::parse(severity_text) {
        return Some(level.as_str());
    }
    Some(match severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

/// Time of a log record in nanoseconds: its own time, else when it was observed, else now.
fn log_time_unix_nano(time: u64, observed: u64) -> u64 {
    if time != 0 {
        time
    } else if observed != 0 {
        observed
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_crds::agent_config::{HttpSink, OtlpSink, SplunkHecSink};
    use vigil_crds::monitored_app::OtlpProtocol;

    fn http_sink(url: &str) -> HttpSink {
        HttpSink {
            url: url.to_owned(),
            tenant: None,
            bearer_token_file: None,
            ca_file: None,
            ..Default::default()
        }
    }

    /// Every configured exporter becomes a sink, with its component name and signals.
    #[test]
    fn from_config_builds_every_exporter() {
        let exporters = ExportersConfig {
            otlp: Some(OtlpSink {
                endpoint: "http://collector:4317".into(),
                protocol: OtlpProtocol::Grpc,
                tenant: Some("team-a".into()),
                bearer_token_file: None,
                ca_file: None,
                ..Default::default()
            }),
            prometheus_remote_write: Some(http_sink("http://prometheus:9090/api/v1/write")),
            loki: Some(http_sink("http://loki:3100/loki/api/v1/push")),
            splunk_hec: Some(SplunkHecSink {
                url: "https://splunk:8088".into(),
                token_file: "/var/run/secrets/vigil/hec/token".into(),
                index: None,
                sourcetype: None,
                ca_file: None,
                ..Default::default()
            }),
            ..Default::default()
        };
        let sinks = Sink::from_config(&exporters).unwrap();
        let names: Vec<_> = sinks.iter().map(Sink::name).collect();
        assert_eq!(
            names,
            [
                "sink_otlp",
                "sink_remote_write",
                "sink_loki",
                "sink_splunk_hec"
            ]
        );
        assert_eq!(
            sinks[0].signals(),
            [Signal::Traces, Signal::Metrics, Signal::Logs]
        );
        assert_eq!(sinks[1].signals(), [Signal::Samples, Signal::Metrics]);
        assert_eq!(sinks[2].signals(), [Signal::Logs]);
        assert_eq!(sinks[3].signals(), [Signal::Logs]);
        assert!(Sink::from_config(&ExportersConfig::default())
            .unwrap()
            .is_empty());
    }

    /// Configuration errors start with the path of the offending field.
    #[test]
    fn config_errors_name_the_field() {
        let err = |exporters: ExportersConfig| Sink::from_config(&exporters).unwrap_err();
        let e = err(ExportersConfig {
            loki: Some(http_sink("loki:3100/push")),
            ..Default::default()
        });
        assert!(e.to_string().starts_with("exporters.loki.url: "), "{e}");
        let e = err(ExportersConfig {
            prometheus_remote_write: Some(HttpSink {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..http_sink("https://prometheus:9090/api/v1/write")
            }),
            ..Default::default()
        });
        assert!(
            e.to_string()
                .starts_with("exporters.prometheusRemoteWrite.caFile: "),
            "{e}"
        );
        let e = err(ExportersConfig {
            otlp: Some(OtlpSink {
                endpoint: "ftp://collector".into(),
                protocol: OtlpProtocol::Http,
                tenant: None,
                bearer_token_file: None,
                ca_file: None,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            e.to_string().starts_with("exporters.otlp.endpoint: "),
            "{e}"
        );
        let e = err(ExportersConfig {
            loki: Some(HttpSink {
                tenant: Some("bad\ntenant".into()),
                ..http_sink("http://loki:3100/loki/api/v1/push")
            }),
            ..Default::default()
        });
        assert!(e.to_string().starts_with("exporters.loki.tenant: "), "{e}");
    }

    /// Named exporters: several of one kind, each with its own component name (and so its own
    /// buffer folder) and the signals it chose; `metrics` on remote write takes scraped
    /// samples and OTLP metrics alike.
    #[test]
    fn named_exporters_choose_their_signals() {
        use vigil_crds::agent_config::NamedSink;
        use vigil_crds::monitored_app::ExportSignal;
        let otlp = |signals: Vec<ExportSignal>| OtlpSink {
            endpoint: "http://collector:4317".into(),
            signals,
            ..Default::default()
        };
        let exporters = ExportersConfig {
            otlp: Some(otlp(vec![])),
            named: vec![
                NamedSink {
                    name: "traces-only".into(),
                    otlp: Some(otlp(vec![ExportSignal::Traces])),
                    ..Default::default()
                },
                NamedSink {
                    name: "team".into(),
                    prometheus_remote_write: Some(HttpSink {
                        signals: vec![ExportSignal::Metrics],
                        ..http_sink("http://mimir:8080/api/v1/push")
                    }),
                    ..Default::default()
                },
                NamedSink {
                    name: "second".into(),
                    prometheus_remote_write: Some(http_sink("http://other:8080/api/v1/push")),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let built = Exporter::from_config(&exporters).unwrap();
        let got: Vec<(&str, &[Signal])> = built
            .iter()
            .map(|e| (e.name.as_str(), e.signals.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "sink_otlp",
                    &[Signal::Traces, Signal::Metrics, Signal::Logs][..]
                ),
                ("sink_otlp_traces-only", &[Signal::Traces][..]),
                (
                    "sink_remote_write_team",
                    &[Signal::Metrics, Signal::Samples][..]
                ),
                (
                    "sink_remote_write_second",
                    &[Signal::Samples, Signal::Metrics][..]
                ),
            ]
        );
    }

    /// Mistakes in the new exporter settings are refused with the field's path: a signal the
    /// kind cannot carry, a name used twice or not a DNS label, an entry of no kind, a header
    /// replacing one the exporter sets, a header with both or neither value, basic auth beside
    /// a bearer token, a client certificate without its key.
    #[test]
    fn named_and_access_errors_name_the_field() {
        use vigil_crds::agent_config::{BasicAuthFile, HeaderConfig, NamedSink};
        use vigil_crds::monitored_app::ExportSignal;
        let loki = |name: &str, sink: HttpSink| NamedSink {
            name: name.into(),
            loki: Some(sink),
            ..Default::default()
        };
        let url = "http://loki:3100/loki/api/v1/push";
        let header = |name: &str, value: Option<&str>, file: Option<&str>| HeaderConfig {
            name: name.into(),
            value: value.map(Into::into),
            value_file: file.map(Into::into),
        };
        let cases: Vec<(ExportersConfig, &str)> = vec![
            (
                ExportersConfig {
                    named: vec![loki(
                        "a",
                        HttpSink {
                            signals: vec![ExportSignal::Traces],
                            ..http_sink(url)
                        },
                    )],
                    ..Default::default()
                },
                "exporters.named[0].loki.signals[0]: ",
            ),
            (
                ExportersConfig {
                    named: vec![loki("a", http_sink(url)), loki("a", http_sink(url))],
                    ..Default::default()
                },
                "exporters.named[1].name: ",
            ),
            (
                ExportersConfig {
                    named: vec![loki("Not_A_Label", http_sink(url))],
                    ..Default::default()
                },
                "exporters.named[0].name: ",
            ),
            (
                ExportersConfig {
                    named: vec![NamedSink {
                        name: "empty".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "exporters.named[0]: ",
            ),
            (
                ExportersConfig {
                    loki: Some(HttpSink {
                        tenant: Some("shop".into()),
                        headers: vec![header("X-Scope-OrgID", Some("other"), None)],
                        ..http_sink(url)
                    }),
                    ..Default::default()
                },
                "exporters.loki.headers[0].name: ",
            ),
            (
                ExportersConfig {
                    loki: Some(HttpSink {
                        headers: vec![header("Content-Type", Some("text/plain"), None)],
                        ..http_sink(url)
                    }),
                    ..Default::default()
                },
                "exporters.loki.headers[0].name: ",
            ),
            (
                ExportersConfig {
                    loki: Some(HttpSink {
                        headers: vec![header("X-Key", Some("a"), Some("/secret"))],
                        ..http_sink(url)
                    }),
                    ..Default::default()
                },
                "exporters.loki.headers[0]: ",
            ),
            (
                ExportersConfig {
                    loki: Some(HttpSink {
                        bearer_token_file: Some("/token".into()),
                        basic_auth: Some(BasicAuthFile {
                            username: "u".into(),
                            password_file: "/password".into(),
                        }),
                        ..http_sink(url)
                    }),
                    ..Default::default()
                },
                "exporters.loki.basicAuth: ",
            ),
            (
                ExportersConfig {
                    named: vec![loki(
                        "mtls",
                        HttpSink {
                            client_cert_file: Some("/tls.crt".into()),
                            ..http_sink(url)
                        },
                    )],
                    ..Default::default()
                },
                "exporters.named[0].loki.clientKeyFile: ",
            ),
            (
                ExportersConfig {
                    named: vec![NamedSink {
                        name: "o".into(),
                        otlp: Some(OtlpSink {
                            endpoint: "ftp://collector".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "exporters.named[0].otlp.endpoint: ",
            ),
            (
                ExportersConfig {
                    otlp: Some(OtlpSink {
                        endpoint: "http://collector:4317".into(),
                        headers: vec![header("trace-context-bin", Some("x"), None)],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "exporters.otlp.headers[0].name: ",
            ),
        ];
        for (exporters, prefix) in cases {
            let e = Exporter::from_config(&exporters).unwrap_err();
            assert!(e.to_string().starts_with(prefix), "{prefix} / {e}");
        }
    }
}
