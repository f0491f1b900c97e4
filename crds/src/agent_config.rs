//! The agent configuration: what the operator renders into a ConfigMap per `MonitoredApp` and
//! the sidecar agent reads (and reloads) from its mounted file.
//!
//! Everything here is plain data with `deny_unknown_fields`, so a typo in a hand-written agent
//! config is an error naming the field rather than a silently ignored setting. Secrets are never
//! inlined: exporters name files under the mounted secrets directory.

use serde::{Deserialize, Serialize};

use crate::common::{ClientType, Duration};
use crate::monitored_app::{
    Detector, ExportSignal, LogFormat, OtlpProtocol, ReleaseSource, WhenFull,
};

/// The whole agent configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Config format version; the agent refuses versions it does not know.
    pub version: u32,
    /// The application this agent belongs to.
    pub app: AppIdentity,
    /// Listening addresses.
    pub listen: Listen,
    /// Scraping of the application's metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeConfig>,
    /// Log tailing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsConfig>,
    /// OTLP reception.
    pub traces: TracesConfig,
    /// Crash detection.
    pub crashes: CrashesConfig,
    /// Redaction rules.
    pub redaction: RedactionConfig,
    /// Memory and disk buffering.
    pub buffer: BufferConfig,
    /// How sinks send what is buffered. Omitted: the defaults of [`DeliveryConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryConfig>,
    /// Where data goes.
    #[serde(default)]
    pub exporters: ExportersConfig,
}

/// The current agent config format version.
pub const AGENT_CONFIG_VERSION: u32 = 1;

/// Identity of the monitored application; pod-level identity (pod name, uid, node, version
/// label) comes from the downward API at run time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppIdentity {
    /// Namespace of the `MonitoredApp`.
    pub namespace: String,
    /// Name of the `MonitoredApp`; the `app` label on every series.
    pub name: String,
    /// Client type.
    pub client_type: ClientType,
    /// Where the version comes from.
    pub release_source: ReleaseSource,
    /// Pod label holding the version, when `releaseSource` is `label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// Container whose image tag is the version, when `releaseSource` is `imageTag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_container: Option<String>,
    /// Name of the Kubernetes cluster the pod runs in: the `cluster` label on every series the
    /// agent sends or serves and the `k8s.cluster.name` resource attribute on every OTLP
    /// record. Omitted: neither is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// Listening addresses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listen {
    /// OTLP/gRPC, such as `127.0.0.1:4317`.
    pub otlp_grpc: String,
    /// OTLP/HTTP, such as `127.0.0.1:4318`.
    pub otlp_http: String,
    /// `/metrics`, `/healthz`, `/readyz`, such as `0.0.0.0:9464`.
    pub admin: String,
}

/// Scraping of the app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Port name or number on localhost.
    pub port: String,
    /// HTTP path.
    pub path: String,
    /// Scrape interval.
    pub interval: Duration,
    /// Scrape timeout.
    pub timeout: Duration,
    /// Honour the pod's `prometheus.io/scrape`, `port`, `path` and `scheme` annotations, read
    /// from the downward API file `annotations` in `podInfoDir` before every scrape: they
    /// override `port` and `path` for this pod, and `scrape: "false"` stops the scrape.
    pub honor_annotations: bool,
    /// Directory of the downward API volume holding the pod's `annotations` file. Default
    /// `/etc/vigil/podinfo`, where injection mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_info_dir: Option<String>,
    /// The `job` label of the scraped series: the job name of the Prometheus scrape config
    /// that would scrape this app (`vigil/<namespace>/<app>`), so that pushed series look like
    /// scraped ones. Omitted: no `job` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Where injection mounts the pod's downward API volume (file `annotations`) in the agent.
pub const POD_INFO_DIR: &str = "/etc/vigil/podinfo";
/// File name of the pod's annotations in [`POD_INFO_DIR`], in the downward API format.
pub const POD_ANNOTATIONS_FILE: &str = "annotations";
/// Environment variable injection sets on an agent whose pod may not mount the node's pod log
/// directory (its namespace enforces a Pod Security level that forbids hostPath volumes); its
/// value says why. The agent then reads no pod log files, whatever `logs.podLogDir` says.
pub const POD_LOGS_OFF_ENV: &str = "VIGIL_POD_LOGS_OFF";

/// Log tailing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsConfig {
    /// Directory holding the pod's own container log folders (the CRI layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_log_dir: Option<String>,
    /// Only these containers; empty means all but the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// Extra file globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Line format.
    pub format: LogFormat,
    /// Join stack traces.
    pub multiline: bool,
    /// Field identifying the end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_field: Option<String>,
    /// Where read offsets are checkpointed.
    pub checkpoint_dir: String,
}

/// OTLP reception.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracesConfig {
    /// Accept OTLP.
    pub enabled: bool,
    /// Fraction of traces kept.
    pub sampling_ratio: f64,
    /// Bytes of OTLP request bodies (decompressed) the agent holds at once, across all requests
    /// on both listeners; a request that does not fit is answered with a retryable refusal
    /// (HTTP 429, gRPC `RESOURCE_EXHAUSTED`), one larger than all of it with 413 /
    /// `INVALID_ARGUMENT`. Size it to the sidecar's memory limit: handling a request takes
    /// about twice its size. Omitted: 20 MiB, one largest request (16 MiB) at a time with room
    /// for its compressed form. At least 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes_in_flight: Option<u64>,
}

/// Crash detection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashesConfig {
    /// Detect crashes.
    pub enabled: bool,
    /// The application's own packages, for fingerprints (`MonitoredApp`
    /// `crashes.appPackages`); empty: detected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_packages: Vec<String>,
}

/// Redaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionConfig {
    /// Built-in detectors.
    pub detectors: Vec<Detector>,
    /// Custom patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<crate::monitored_app::RedactionPattern>,
}

/// Buffering.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the disk buffer.
    pub path: String,
    /// Upper bound of the disk buffer in bytes.
    pub max_bytes: u64,
    /// Overflow policy.
    pub when_full: WhenFull,
}

/// Default of [`DeliveryConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 2;
/// Largest [`DeliveryConfig::max_in_flight`] accepted.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 16;

/// How sinks send what is buffered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Requests each exporter may have sent and not yet answered at once. Answers may come
    /// back in any order; the buffer is acknowledged only up to the oldest request still
    /// unanswered, so a restart sends that one again (and any answered after it), never skips
    /// it. Prometheus remote write always keeps one in flight: its receivers refuse a sample
    /// older than the newest they have for its series. Default 2; from 1 to 16.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

/// Exporters, with credentials as file paths.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportersConfig {
    /// OTLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpSink>,
    /// Prometheus remote write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write: Option<HttpSink>,
    /// Loki.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<HttpSink>,
    /// Splunk HEC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<SplunkHecSink>,
    /// Further exporters, each named and of exactly one kind; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named: Vec<NamedSink>,
}

/// A named exporter: exactly one of the kinds is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedSink {
    /// A DNS label of at most 40 characters.
    pub name: String,
    /// OTLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpSink>,
    /// Prometheus remote write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write: Option<HttpSink>,
    /// Loki.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<HttpSink>,
    /// Splunk HEC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<SplunkHecSink>,
}

/// HTTP basic authentication with the password in a mounted Secret file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthFile {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: String,
}

/// An extra request header: exactly one of `value` and `valueFile`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// File holding the value (a mounted Secret key); never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_file: Option<String>,
}

/// OTLP sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpSink {
    /// Endpoint URL.
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// `X-Scope-OrgID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// File holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// File holding the CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthFile>,
    /// Extra headers (gRPC metadata).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderConfig>,
    /// File holding the client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// File holding the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Signals carried; empty: all the kind takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<ExportSignal>,
}

/// Generic HTTP push sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSink {
    /// Push URL.
    pub url: String,
    /// `X-Scope-OrgID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// File holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// File holding the CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthFile>,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderConfig>,
    /// File holding the client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// File holding the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Signals carried; empty: all the kind takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<ExportSignal>,
}

/// Splunk HEC sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplunkHecSink {
    /// HEC base URL.
    pub url: String,
    /// File holding the HEC token.
    pub token_file: String,
    /// Index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Sourcetype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// File holding the CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderConfig>,
    /// File holding the client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// File holding the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Signals carried; empty: all the kind takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<ExportSignal>,
}

/// Why an agent config was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("agent config: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("agent config: unsupported version {found} (this agent reads version {expected})")]
    Version { found: u32, expected: u32 },
    #[error("agent config: traces.samplingRatio must be between 0 and 1, got {0}")]
    SamplingRatio(f64),
    #[error("agent config: buffer.maxBytes must be at least 1 MiB, got {0}")]
    BufferTooSmall(u64),
    #[error("agent config: traces.maxRequestBytesInFlight must be at least 1 MiB, got {0}")]
    RequestBytesInFlightTooSmall(u64),
    #[error(
        "agent config: delivery.maxInFlight must be between 1 and {MAX_IN_FLIGHT_LIMIT}, got {0}"
    )]
    MaxInFlight(u32),
}

impl AgentConfig {
    /// Parses and checks an agent config; errors name the offending field.
    pub fn from_yaml(text: &str) -> Result<Self, AgentConfigError> {
        let config: AgentConfig = serde_yaml::from_str(text)?;
        if config.version != AGENT_CONFIG_VERSION {
            return Err(AgentConfigError::Version {
                found: config.version,
                expected: AGENT_CONFIG_VERSION,
            });
        }
        if !(0.0..=1.0).contains(&config.traces.sampling_ratio) {
            return Err(AgentConfigError::SamplingRatio(
                config.traces.sampling_ratio,
            ));
        }
        if config.buffer.max_bytes < (1 << 20) {
            return Err(AgentConfigError::BufferTooSmall(config.buffer.max_bytes));
        }
        if let Some(bytes) = config
            .traces
            .max_request_bytes_in_flight
            .filter(|&bytes| bytes < (1 << 20))
        {
            return Err(AgentConfigError::RequestBytesInFlightTooSmall(bytes));
        }
        let max_in_flight = config.max_in_flight();
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight) {
            return Err(AgentConfigError::MaxInFlight(max_in_flight));
        }
        Ok(config)
    }

    /// Requests each exporter may have in flight: `delivery.maxInFlight`, or its default.
    pub fn max_in_flight(&self) -> u32 {
        self.delivery
            .as_ref()
            .map_or(DEFAULT_MAX_IN_FLIGHT, |d| d.max_in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version: 1
app: {namespace: default, name: portal, clientType: generic, releaseSource: label}
listen: {otlpGrpc: '127.0.0.1:4317', otlpHttp: '127.0.0.1:4318', admin: '0.0.0.0:9464'}
traces: {enabled: true, samplingRatio: 1}
crashes: {enabled: true}
redaction: {detectors: []}
buffer: {path: /var/lib/vigil/buffer, maxBytes: 268435456, whenFull: block}
";

    /// A config without `delivery` (as older operators render it) keeps the default number of
    /// requests in flight, and so does an empty `delivery`.
    #[test]
    fn max_in_flight_defaults_when_absent() {
        let config = AgentConfig::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.delivery, None);
        assert_eq!(config.max_in_flight(), DEFAULT_MAX_IN_FLIGHT);
        let config = AgentConfig::from_yaml(&format!("{MINIMAL}delivery: {{}}\n")).unwrap();
        assert_eq!(config.max_in_flight(), DEFAULT_MAX_IN_FLIGHT);
    }

    /// `traces.maxRequestBytesInFlight` is optional, and refused below 1 MiB with an error
    /// naming the field.
    #[test]
    fn request_bytes_in_flight_is_at_least_one_mebibyte() {
        let config = AgentConfig::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.traces.max_request_bytes_in_flight, None);
        let with = |bytes: u64| {
            MINIMAL.replace(
                "samplingRatio: 1}",
                &format!("samplingRatio: 1, maxRequestBytesInFlight: {bytes}}}"),
            )
        };
        let config = AgentConfig::from_yaml(&with(1 << 20)).unwrap();
        assert_eq!(config.traces.max_request_bytes_in_flight, Some(1 << 20));
        let error = AgentConfig::from_yaml(&with(1000)).unwrap_err();
        assert!(matches!(
            error,
            AgentConfigError::RequestBytesInFlightTooSmall(1000)
        ));
        assert!(
            error.to_string().contains("traces.maxRequestBytesInFlight"),
            "{error}"
        );
    }

    /// `delivery.maxInFlight` is accepted from 1 to the limit and refused outside, with an error
    /// naming the field; a misspelt field is refused too.
    #[test]
    fn max_in_flight_is_bounded() {
        for n in [1, MAX_IN_FLIGHT_LIMIT] {
            let yaml = format!("{MINIMAL}delivery: {{maxInFlight: {n}}}\n");
            assert_eq!(AgentConfig::from_yaml(&yaml).unwrap().max_in_flight(), n);
        }
        for n in [0, MAX_IN_FLIGHT_LIMIT + 1] {
            let yaml = format!("{MINIMAL}delivery: {{maxInFlight: {n}}}\n");
            let error = AgentConfig::from_yaml(&yaml).unwrap_err();
            assert!(matches!(error, AgentConfigError::MaxInFlight(m) if m == n));
            assert!(
                error.to_string().contains("delivery.maxInFlight"),
                "{error}"
            );
        }
        let yaml = format!("{MINIMAL}delivery: {{maxInFlights: 4}}\n");
        assert!(AgentConfig::from_yaml(&yaml).is_err());
    }
}
