//! `MonitoredApp`: which pods Vigil watches, what the sidecar agent collects from them and where
//! it sends it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ClientType, Condition, Duration, GeneratedObjects, SecretKeyRef};

/// Declares an application to monitor: the pods that make it up, what the injected agent
/// collects from them, and where the data goes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "MonitoredApp",
    doc = "A MonitoredApp declares an application to monitor: the pods that make it up, what the injected Vigil agent collects from them (traces, metrics, logs, crashes) and where the data goes.",
    namespaced,
    status = "MonitoredAppStatus",
    shortname = "mapp",
    category = "vigil",
    printcolumn = r#"{"name":"Client","type":"string","jsonPath":".spec.clientType"}"#,
    printcolumn = r#"{"name":"Selected","type":"integer","jsonPath":".status.selectedPods"}"#,
    printcolumn = r#"{"name":"Injected","type":"integer","jsonPath":".status.injectedPods"}"#,
    printcolumn = r#"{"name":"Stale","type":"integer","jsonPath":".status.stalePods"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitoredAppSpec {
    /// Selects the application's pods in this namespace. The agent is injected into every pod
    /// it matches when the pod is created. At most 64 `matchLabels` and 16 `matchExpressions`.
    #[schemars(transform = crate::bounds::label_selector)]
    pub selector: LabelSelector,

    /// The kind of client the application serves; picks dashboard presets and alert context.
    /// Default `generic`.
    #[serde(default)]
    pub client_type: ClientType,

    /// Scraping of the application's Prometheus endpoint. Omit to scrape nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,

    /// Log collection from the pod's own log files. Omit to collect no logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsSpec>,

    /// Trace reception over OTLP from the application's containers.
    #[serde(default)]
    pub traces: TracesSpec,

    /// Crash detection in logs (stack traces, panics, fatal errors).
    #[serde(default)]
    pub crashes: CrashesSpec,

    /// Removal of personal data and credentials before anything leaves the pod.
    #[serde(default)]
    pub redaction: RedactionSpec,

    /// Where the running version of the application is read from.
    #[serde(default)]
    pub release: ReleaseSpec,

    /// Where the agent forwards what it collects. At least one exporter, or scraping of the
    /// agent's `/metrics` by Prometheus, is needed for data to leave the pod.
    #[serde(default)]
    pub exporters: ExportersSpec,

    /// The injected agent container itself.
    #[serde(default)]
    pub agent: AgentSpec,
    /// Extra labels and annotations for the objects generated from this resource, such as
    /// `labels: {release: kube-prometheus-stack}`.
    #[serde(default, skip_serializing_if = "GeneratedObjects::is_empty")]
    pub generated_objects: GeneratedObjects,
}

impl crate::common::HasGeneratedObjects for MonitoredApp {
    fn generated_objects(&self) -> &crate::common::GeneratedObjects {
        &self.spec.generated_objects
    }
}

/// What to scrape from the application.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    /// Container port that serves metrics: a port name (as declared in the pod, at most 15
    /// characters) or a number.
    pub port: MetricsPort,

    /// HTTP path of the metrics endpoint. Default `/metrics`. At most 1024 characters.
    #[serde(default = "default_metrics_path")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must start with '/'"))]
    pub path: String,

    /// How often to scrape. Default `30s`.
    #[serde(default = "default_interval")]
    pub interval: Duration,

    /// Give up on a scrape after this long; must not exceed `interval`. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,

    /// Honour the `prometheus.io/scrape`, `prometheus.io/port`, `prometheus.io/path` and
    /// `prometheus.io/scheme` pod annotations, in Prometheus and in the agent: a pod annotated
    /// `prometheus.io/scrape: "false"` is not scraped, and the annotated port, path and scheme
    /// override the ones above. Default `true`.
    #[serde(default = "default_true")]
    pub honor_annotations: bool,

    /// The application's HTTP request metrics, which dashboards, the `errorRate` and `latency`
    /// alert rules and the `availability` and `latency` SLIs read. Default: the
    /// `prometheus-client` preset (`http_requests_total{code}` and
    /// `http_request_duration_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestMetricsSpec>,
}

/// How the application names its HTTP request metrics: a preset for a common instrumentation
/// library, with any of its names overridden field by field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMetricsSpec {
    /// The instrumentation library whose names to start from: `spring-micrometer`
    /// (`http_server_requests_seconds_*`, status in `status`), `opentelemetry-http` (the
    /// OpenTelemetry semantic conventions, `http_server_request_duration_seconds_*`, status in
    /// `http_response_status_code`) or `prometheus-client` (`http_requests_total{code}`,
    /// `http_request_duration_seconds`), or `none` for an app that serves no HTTP requests.
    /// Default `prometheus-client`.
    #[serde(default)]
    pub preset: RequestMetricsPreset,

    /// Counter of all requests, such as `http_server_requests_seconds_count`. Default: the
    /// preset's. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_:][a-zA-Z0-9_:]*$')").message("requests.counter must be a Prometheus metric name"))]
    pub counter: Option<String>,

    /// Label of the counter holding the response status code. Default: the preset's. At most
    /// 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_][a-zA-Z0-9_]*$')").message("requests.statusLabel must be a Prometheus label name"))]
    pub status_label: Option<String>,

    /// Regex (RE2, anchored) of the status values that are errors. Default `5..`. At most 256
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub error_regex: Option<String>,

    /// Request duration histogram in seconds, base name without `_bucket`, `_count` or `_sum`.
    /// Default: the preset's. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_:][a-zA-Z0-9_:]*$')").message("requests.durationHistogram must be a Prometheus metric name"))]
    pub duration_histogram: Option<String>,
}

/// An instrumentation library's request metric names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestMetricsPreset {
    /// Spring Boot with Micrometer: `http_server_requests_seconds_count{status}` and the
    /// `http_server_requests_seconds` histogram (with percentile histograms enabled).
    SpringMicrometer,
    /// OpenTelemetry HTTP semantic conventions as Prometheus names:
    /// `http_server_request_duration_seconds_count{http_response_status_code}` and the
    /// `http_server_request_duration_seconds` histogram.
    #[serde(rename = "opentelemetry-http")]
    OpenTelemetryHttp,
    /// The Prometheus client libraries' conventional names: `http_requests_total{code}` and
    /// `http_request_duration_seconds`.
    #[default]
    PrometheusClient,
    /// The app serves no HTTP requests (a database, a queue consumer): dashboards leave the
    /// request panels out, and `errorRate`/`latency` rules and `availability`/`latency` SLIs on
    /// it must name their own metrics.
    None,
}

/// An application's request metrics with every name decided: what dashboards, alert rules and
/// SLIs query.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestMetrics {
    /// Counter of all requests.
    pub counter: String,
    /// Label holding the status code.
    pub status_label: String,
    /// Regex of the status values that are errors.
    pub error_regex: String,
    /// Duration histogram base name, in seconds.
    pub duration_histogram: String,
}

impl RequestMetrics {
    /// The names a preset stands for.
    pub fn preset(preset: RequestMetricsPreset) -> Self {
        let (counter, status_label, duration_histogram) = match preset {
            RequestMetricsPreset::SpringMicrometer => (
                "http_server_requests_seconds_count",
                "status",
                "http_server_requests_seconds",
            ),
            RequestMetricsPreset::OpenTelemetryHttp => (
                "http_server_request_duration_seconds_count",
                "http_response_status_code",
                "http_server_request_duration_seconds",
            ),
            RequestMetricsPreset::PrometheusClient | RequestMetricsPreset::None => (
                "http_requests_total",
                "code",
                "http_request_duration_seconds",
            ),
        };
        RequestMetrics {
            counter: counter.to_owned(),
            status_label: status_label.to_owned(),
            error_regex: "5..".to_owned(),
            duration_histogram: duration_histogram.to_owned(),
        }
    }
}

impl Default for RequestMetrics {
    /// The `prometheus-client` preset.
    fn default() -> Self {
        RequestMetrics::preset(RequestMetricsPreset::default())
    }
}

impl RequestMetrics {
    /// These names with an alert rule's or SLI's own choices, where it makes one, in place of
    /// the application's.
    pub fn overridden(
        &self,
        counter: Option<&String>,
        status_label: Option<&String>,
        error_regex: Option<&String>,
        duration_histogram: Option<&String>,
    ) -> RequestMetrics {
        let pick = |own: Option<&String>, app: &String| own.unwrap_or(app).clone();
        RequestMetrics {
            counter: pick(counter, &self.counter),
            status_label: pick(status_label, &self.status_label),
            error_regex: pick(error_regex, &self.error_regex),
            duration_histogram: pick(duration_histogram, &self.duration_histogram),
        }
    }
}

impl MonitoredAppSpec {
    /// The application's request metrics: `metrics.requests` over its preset, or the
    /// `prometheus-client` preset when the app declares none. The one place these names are
    /// decided; dashboards, alert rules and SLIs all read them from here.
    /// Whether the app serves HTTP requests, i.e. its request metrics preset is not `none`.
    pub fn serves_requests(&self) -> bool {
        self.metrics
            .as_ref()
            .and_then(|m| m.requests.as_ref())
            .is_none_or(|r| r.preset != RequestMetricsPreset::None)
    }

    /// The app's request metrics (for an app that serves no requests, the default names, which
    /// only a rule or SLI naming its own metrics overrides).
    pub fn request_metrics(&self) -> RequestMetrics {
        let spec = self
            .metrics
            .as_ref()
            .and_then(|m| m.requests.clone())
            .unwrap_or_default();
        let base = RequestMetrics::preset(spec.preset);
        RequestMetrics {
            counter: spec.counter.unwrap_or(base.counter),
            status_label: spec.status_label.unwrap_or(base.status_label),
            error_regex: spec.error_regex.unwrap_or(base.error_regex),
            duration_histogram: spec.duration_histogram.unwrap_or(base.duration_histogram),
        }
    }
}

/// A container port, by name or number.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum MetricsPort {
    /// A port number, 1–65535.
    Number(u16),
    /// A port name as declared in the container's `ports`.
    Name(String),
}

impl JsonSchema for MetricsPort {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MetricsPort".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A port name is an IANA service name: at most 15 characters.
        schemars::json_schema!({ "x-kubernetes-int-or-string": true, "maxLength": 15 })
    }
}

impl std::fmt::Display for MetricsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsPort::Number(n) => write!(f, "{n}"),
            MetricsPort::Name(s) => f.write_str(s),
        }
    }
}

/// Which logs the agent reads and how it parses them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.containerLogs || (has(self.files) && size(self.files) > 0)").message("logs needs a source: set containerLogs: true or list files"))]
pub struct LogsSpec {
    /// Read the pod's own container logs (`/var/log/pods/<namespace>_<pod>_<uid>/`), which the
    /// agent mounts read-only; it sees no other pod's logs. Default `true`.
    #[serde(default = "default_true")]
    pub container_logs: bool,

    /// Limit container logs to these containers. Empty: every container except the agent. At
    /// most 32 container names of at most 63 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub containers: Vec<String>,

    /// Extra file globs to tail, such as `/var/log/app/*.log`. The files must be on a volume
    /// shared with the agent. At most 32 globs of at most 1024 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new("self.all(f, f.startsWith('/'))").message("file globs must be absolute paths"))]
    pub files: Vec<String>,

    /// How each log line is written. Default `text`.
    #[serde(default)]
    pub format: LogFormat,

    /// Join multi-line stack traces (Java, Python, Go, Node, Ruby, PHP, C#, Dart, Rust) into one
    /// event. Default `true`.
    #[serde(default = "default_true")]
    pub multiline: bool,

    /// Field (JSON key or logfmt key) that identifies the end user, used to count the users a
    /// crash affects. Only a hash-based estimate of distinct values leaves the pod. At most 256
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub user_field: Option<String>,
}

/// The format of log lines.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    /// One JSON object per line; `level`, `time`/`timestamp` and `msg`/`message` are recognised.
    Json,
    /// `key=value` pairs; the same keys are recognised.
    Logfmt,
    /// Free text; the level is guessed from common prefixes.
    #[default]
    Text,
}

/// Trace reception.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracesSpec {
    /// Accept OTLP on `localhost:4317` (gRPC) and `localhost:4318` (HTTP) and point the app's
    /// containers there with `OTEL_EXPORTER_OTLP_ENDPOINT`. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Fraction of traces kept, from 0 to 1. Traces that contain an error are always kept.
    /// Default `1`.
    #[serde(default = "default_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
}

impl Default for TracesSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            sampling_ratio: 1.0,
        }
    }
}

/// Crash detection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashesSpec {
    /// Detect stack traces, panics and fatal errors in logs and count them per fingerprint as
    /// `vigil_crashes_total`. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The application's own packages, whose frames crash fingerprints are built from (the
    /// top frame in them decides the group): JVM or .NET package prefixes (`com.bank.mobile`),
    /// Go module paths (`github.com/bank/mobile`), Python, Ruby, PHP or JavaScript top-level
    /// packages or source directories (`mobile`, `src/accounts`), Dart package names, Rust
    /// crate names. When empty (the default), every frame outside the language runtime,
    /// reflection, test frameworks and known third-party packages (`org.springframework`,
    /// `org.apache`, `com.fasterxml`, `io.netty`, `site-packages/`, `node_modules/`,
    /// `vendor/`, …) counts as the application's. Set it when the application lives under such
    /// a prefix (an app in `org.apache.fineract`). At most 64 entries of at most 256
    /// characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub app_packages: Vec<String>,
}

impl Default for CrashesSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            app_packages: Vec::new(),
        }
    }
}

/// What the agent removes from log bodies and attributes before they leave the pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionSpec {
    /// Built-in detectors to run. Default: all of them. At most 16 entries.
    #[serde(default = "Detector::all")]
    #[schemars(length(max = 16))]
    pub detectors: Vec<Detector>,

    /// Extra patterns to redact. At most 64 patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub patterns: Vec<RedactionPattern>,
}

impl Default for RedactionSpec {
    fn default() -> Self {
        Self {
            detectors: Detector::all(),
            patterns: Vec::new(),
        }
    }
}

/// A built-in redaction detector.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Detector {
    /// Payment card numbers (13–19 digits, Luhn-checked).
    CreditCard,
    /// International bank account numbers (checksum-verified).
    Iban,
    /// E-mail addresses.
    Email,
    /// Phone numbers in international or common national formats.
    Phone,
    /// `Bearer …` tokens in headers and messages.
    BearerToken,
    /// JSON Web Tokens.
    Jwt,
}

impl Detector {
    /// Every built-in detector.
    pub fn all() -> Vec<Detector> {
        vec![
            Detector::CreditCard,
            Detector::Iban,
            Detector::Email,
            Detector::Phone,
            Detector::BearerToken,
            Detector::Jwt,
        ]
    }
}

/// A custom redaction rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionPattern {
    /// Name of the rule, used in the agent's own metrics. At most 63 characters.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Regular expression (RE2 syntax) whose matches are replaced. At most 1024 characters.
    #[schemars(length(min = 1, max = 1024))]
    pub regex: String,
    /// Replacement text. Default `[REDACTED]`. At most 256 characters.
    #[serde(default = "default_replacement")]
    #[schemars(length(max = 256))]
    pub replacement: String,
}

/// Where the application's version comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.source != 'label' || (has(self.label) && size(self.label) > 0)").message("release.label is required when release.source is label"))]
pub struct ReleaseSpec {
    /// `label` reads a pod label; `imageTag` reads the tag of the application's image.
    /// Default `label`.
    #[serde(default)]
    pub source: ReleaseSource,

    /// Pod label holding the version. Default `app.kubernetes.io/version`. At most 317
    /// characters (a label key: a 253-character prefix, `/` and a 63-character name).
    #[serde(default = "default_version_label")]
    #[schemars(length(max = 317))]
    pub label: String,

    /// Container whose image tag is the version (for `imageTag`). Default: the first container.
    /// At most 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub container: Option<String>,
}

impl Default for ReleaseSpec {
    fn default() -> Self {
        Self {
            source: ReleaseSource::Label,
            label: default_version_label(),
            container: None,
        }
    }
}

/// Source of the version label.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseSource {
    /// A pod label.
    #[default]
    Label,
    /// The image tag.
    ImageTag,
}

/// The analytics back ends the agent forwards to. Credentials are only ever Secret references.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportersSpec {
    /// An OTLP endpoint (OpenTelemetry Collector, Tempo, a vendor) for traces, logs and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpExporter>,
    /// Prometheus remote write for metrics and crash series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write: Option<HttpExporter>,
    /// Loki push API for logs and crash events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<HttpExporter>,
    /// Splunk HTTP Event Collector for logs and crash events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<SplunkHecExporter>,
    /// Further exporters, each named and of one kind (`otlp`, `prometheusRemoteWrite`, `loki`
    /// or `splunkHec`), for several back ends of one kind (a central Mimir and a team's own, a
    /// Grafana Cloud stack beside the in-house collector). They work like the single fields
    /// above and sit beside them; each has its own disk buffer. Names are unique. At most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("named exporter names must be unique"))]
    pub named: Vec<NamedExporter>,
}

/// One named exporter: a name and exactly one exporter kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.otlp) ? 1 : 0) + (has(self.prometheusRemoteWrite) ? 1 : 0) + (has(self.loki) ? 1 : 0) + (has(self.splunkHec) ? 1 : 0) == 1").message("a named exporter sets exactly one of otlp, prometheusRemoteWrite, loki and splunkHec"))]
pub struct NamedExporter {
    /// Name of the exporter, shown in the agent's own metrics and logs as the `component`
    /// `sink_<kind>_<name>` (such as `sink_remote_write_central`, `sink_otlp_tempo`): a DNS
    /// label (lower-case letters, digits and `-`, starting and ending with a letter or digit),
    /// 1 to 40 characters.
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// An OTLP exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpExporter>,
    /// A Prometheus remote-write exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write: Option<HttpExporter>,
    /// A Loki exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<HttpExporter>,
    /// A Splunk HEC exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<SplunkHecExporter>,
}

impl NamedExporter {
    /// The kind's field name (`otlp`, `prometheusRemoteWrite`, `loki`, `splunkHec`) when exactly
    /// one kind is set.
    pub fn kind(&self) -> Option<&'static str> {
        let set: Vec<&'static str> = [
            self.otlp.is_some().then_some("otlp"),
            self.prometheus_remote_write
                .is_some()
                .then_some("prometheusRemoteWrite"),
            self.loki.is_some().then_some("loki"),
            self.splunk_hec.is_some().then_some("splunkHec"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// What an exporter carries. Crash series travel with the metrics, crash events with the logs.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ExportSignal {
    /// Spans received over OTLP.
    Traces,
    /// Scraped series, crash series and OTLP metrics.
    Metrics,
    /// Log lines and crash events.
    Logs,
}

impl ExportSignal {
    /// The name as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportSignal::Traces => "traces",
            ExportSignal::Metrics => "metrics",
            ExportSignal::Logs => "logs",
        }
    }
}

/// HTTP basic authentication (Grafana Cloud, a Loki or Mimir behind a proxy).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// User name (for Grafana Cloud: the stack's instance ID). Not secret; at most 256
    /// characters, without `:` or line breaks.
    #[schemars(length(min = 1, max = 256), pattern(r"^[^:\r\n]+$"))]
    pub username: String,
    /// The password or API token.
    pub password_secret_ref: SecretKeyRef,
}

/// An extra request header: a literal value or one read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueSecretRef)").message("a header sets exactly one of value and valueSecretRef"))]
pub struct HeaderSpec {
    /// Header name, such as `X-Api-Key`: an HTTP token (letters, digits and
    /// ``!#$%&'*+-.^_`|~``), at most 128 characters. `Authorization` only when no other
    /// credential of the exporter sets it.
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// Literal value, for what is not secret (an organisation or data-set name). At most 1024
    /// characters, without line breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(r"^[^\r\n]*$"))]
    pub value: Option<String>,
    /// The value, from a Secret: for API keys and tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_secret_ref: Option<SecretKeyRef>,
}

/// An OTLP exporter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.endpoint.startsWith('http://') || self.endpoint.startsWith('https://')").message("otlp.endpoint must be an http:// or https:// URL"))]
#[x_kube(validation = Rule::new("has(self.clientCertSecretRef) == has(self.clientKeySecretRef)").message("clientCertSecretRef and clientKeySecretRef go together"))]
#[x_kube(validation = Rule::new("!(has(self.bearerTokenSecretRef) && has(self.basicAuth))").message("set bearerTokenSecretRef or basicAuth, not both"))]
pub struct OtlpExporter {
    /// Endpoint URL, such as `http://otel-collector.observability:4317`. At most 2048
    /// characters.
    #[schemars(length(max = 2048))]
    pub endpoint: String,
    /// `grpc` or `http` (protobuf over HTTP). Default `grpc`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Tenant, sent as the `X-Scope-OrgID` header. At most 150 characters, the longest tenant
    /// ID Mimir, Loki and Tempo accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 150))]
    pub tenant: Option<String>,
    /// Bearer token for the `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// CA certificate (PEM) that signed the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// HTTP basic authentication instead of a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Extra headers (gRPC metadata for `grpc`) sent with every request. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderSpec>,
    /// Client certificate (PEM) presented to the endpoint (mutual TLS), with
    /// `clientKeySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretKeyRef>,
    /// Private key (PEM) of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_secret_ref: Option<SecretKeyRef>,
    /// What this exporter carries, among `traces`, `metrics` and `logs`. Default: all three;
    /// at most 3 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub signals: Vec<ExportSignal>,
}

/// OTLP transport.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// An HTTP push exporter (Prometheus remote write, Loki).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.url.startsWith('http://') || self.url.startsWith('https://')").message("url must be an http:// or https:// URL"))]
#[x_kube(validation = Rule::new("has(self.clientCertSecretRef) == has(self.clientKeySecretRef)").message("clientCertSecretRef and clientKeySecretRef go together"))]
#[x_kube(validation = Rule::new("!(has(self.bearerTokenSecretRef) && has(self.basicAuth))").message("set bearerTokenSecretRef or basicAuth, not both"))]
pub struct HttpExporter {
    /// Full push URL, such as `http://mimir:8080/api/v1/push` or
    /// `http://loki:3100/loki/api/v1/push`. At most 2048 characters.
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Tenant, sent as the `X-Scope-OrgID` header. At most 150 characters, the longest tenant
    /// ID Mimir, Loki and Tempo accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 150))]
    pub tenant: Option<String>,
    /// Bearer token for the `Authorization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// CA certificate (PEM) that signed the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// HTTP basic authentication instead of a bearer token (Grafana Cloud: the instance ID and
    /// an access-policy token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Extra headers sent with every request. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderSpec>,
    /// Client certificate (PEM) presented to the endpoint (mutual TLS), with
    /// `clientKeySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretKeyRef>,
    /// Private key (PEM) of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_secret_ref: Option<SecretKeyRef>,
    /// What this exporter carries: `metrics` for remote write, `logs` for Loki (their only
    /// signal, and the default). At most 3 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub signals: Vec<ExportSignal>,
}

/// A Splunk HTTP Event Collector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.url.startsWith('http://') || self.url.startsWith('https://')").message("splunkHec.url must be an http:// or https:// URL"))]
#[x_kube(validation = Rule::new("has(self.clientCertSecretRef) == has(self.clientKeySecretRef)").message("clientCertSecretRef and clientKeySecretRef go together"))]
pub struct SplunkHecExporter {
    /// HEC base URL, such as `https://splunk.example:8088`. At most 2048 characters.
    #[schemars(length(max = 2048))]
    pub url: String,
    /// The HEC token.
    pub token_secret_ref: SecretKeyRef,
    /// Target index. Default: the token's default index. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub index: Option<String>,
    /// Sourcetype of the events. Default `vigil`. At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub sourcetype: Option<String>,
    /// CA certificate (PEM) that signed the endpoint's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Extra headers sent with every request. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderSpec>,
    /// Client certificate (PEM) presented to the endpoint (mutual TLS), with
    /// `clientKeySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretKeyRef>,
    /// Private key (PEM) of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_secret_ref: Option<SecretKeyRef>,
    /// What this exporter carries: `logs`, its only signal and the default. At most 3 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub signals: Vec<ExportSignal>,
}

/// The Secret references of one exporter's common settings.
fn common_refs<'a>(
    basic_auth: Option<&'a BasicAuth>,
    headers: &'a [HeaderSpec],
    cert: Option<&'a SecretKeyRef>,
    key: Option<&'a SecretKeyRef>,
) -> impl Iterator<Item = &'a SecretKeyRef> {
    basic_auth
        .map(|b| &b.password_secret_ref)
        .into_iter()
        .chain(headers.iter().filter_map(|h| h.value_secret_ref.as_ref()))
        .chain(cert)
        .chain(key)
}

impl OtlpExporter {
    fn secret_refs(&self) -> impl Iterator<Item = &SecretKeyRef> {
        self.bearer_token_secret_ref
            .iter()
            .chain(self.ca_secret_ref.iter())
            .chain(common_refs(
                self.basic_auth.as_ref(),
                &self.headers,
                self.client_cert_secret_ref.as_ref(),
                self.client_key_secret_ref.as_ref(),
            ))
    }
}

impl HttpExporter {
    fn secret_refs(&self) -> impl Iterator<Item = &SecretKeyRef> {
        self.bearer_token_secret_ref
            .iter()
            .chain(self.ca_secret_ref.iter())
            .chain(common_refs(
                self.basic_auth.as_ref(),
                &self.headers,
                self.client_cert_secret_ref.as_ref(),
                self.client_key_secret_ref.as_ref(),
            ))
    }
}

impl SplunkHecExporter {
    fn secret_refs(&self) -> impl Iterator<Item = &SecretKeyRef> {
        std::iter::once(&self.token_secret_ref)
            .chain(self.ca_secret_ref.iter())
            .chain(common_refs(
                None,
                &self.headers,
                self.client_cert_secret_ref.as_ref(),
                self.client_key_secret_ref.as_ref(),
            ))
    }
}

impl ExportersSpec {
    /// Every Secret key the exporters reference, in a stable order and without repeats.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut refs: Vec<&SecretKeyRef> = Vec::new();
        let named = self.named.iter().map(|n| {
            (
                &n.otlp,
                [&n.prometheus_remote_write, &n.loki],
                &n.splunk_hec,
            )
        });
        let single = std::iter::once((
            &self.otlp,
            [&self.prometheus_remote_write, &self.loki],
            &self.splunk_hec,
        ));
        for (otlp, https, splunk) in single.chain(named) {
            if let Some(o) = otlp {
                refs.extend(o.secret_refs());
            }
            for h in https.into_iter().flatten() {
                refs.extend(h.secret_refs());
            }
            if let Some(s) = splunk {
                refs.extend(s.secret_refs());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        refs.retain(|r| seen.insert((r.name.clone(), r.key.clone())));
        refs
    }
}

/// The injected agent container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// Agent image. Default: the image matching the operator's version. At most 512 characters
    /// (a 255-character repository, a 128-character tag and a digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// CPU and memory for the agent. Default: requests 10m CPU / 16Mi, limits 200m / 64Mi. At
    /// most 16 resources in `limits` and in `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::bounds::resource_requirements)]
    pub resources: Option<ResourceRequirements>,

    /// Upper bound of the on-disk buffer in bytes, as a Kubernetes quantity. Data that cannot
    /// be delivered is kept here until the back end is back. Default `256Mi`. At most 32
    /// characters.
    #[serde(default = "default_buffer_size")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(Ki|Mi|Gi)?$')").message("bufferSize must be a byte quantity such as 256Mi or 1Gi"))]
    pub buffer_size: String,

    /// What to do when the buffer is full: `block` applies back-pressure to the senders (no
    /// loss), `dropNewest` discards new data (no back-pressure). Default `block`.
    #[serde(default)]
    pub when_full: WhenFull,

    /// Port on which the agent serves `/metrics`, `/healthz` and `/readyz`. Default `9464`.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub admin_port: u16,

    /// Requests each exporter may have sent and not yet answered at once; more helps a distant
    /// back end keep up with a backlog. Data is still delivered at least once: the buffer keeps
    /// everything up to the oldest unanswered request. Prometheus remote write always keeps
    /// one in flight, so that samples of a series arrive in order. Default `2`; from 1 to 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub max_in_flight: Option<u32>,
}

impl Default for AgentSpec {
    fn default() -> Self {
        Self {
            image: None,
            resources: None,
            buffer_size: default_buffer_size(),
            when_full: WhenFull::default(),
            admin_port: default_admin_port(),
            max_in_flight: None,
        }
    }
}

impl AgentSpec {
    /// Buffer size in bytes.
    pub fn buffer_bytes(&self) -> u64 {
        parse_byte_quantity(&self.buffer_size).unwrap_or(256 << 20)
    }
}

/// Parses `123`, `64Ki`, `256Mi` or `1Gi` into bytes.
pub fn parse_byte_quantity(q: &str) -> Option<u64> {
    let (digits, factor) = match q {
        _ if q.ends_with("Ki") => (&q[..q.len() - 2], 1u64 << 10),
        _ if q.ends_with("Mi") => (&q[..q.len() - 2], 1 << 20),
        _ if q.ends_with("Gi") => (&q[..q.len() - 2], 1 << 30),
        _ => (q, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
}

/// Buffer overflow policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WhenFull {
    /// Back-pressure: senders are told to retry later; nothing is lost.
    #[default]
    Block,
    /// Discard new data while the buffer is full.
    DropNewest,
}

/// Observed state of a `MonitoredApp`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoredAppStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Injected` and `ConfigRendered` conditions. At most 16 conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), transform = crate::bounds::conditions)]
    pub conditions: Vec<Condition>,
    /// Pods the selector matches.
    #[serde(default)]
    pub selected_pods: i32,
    /// Selected pods that run the agent.
    #[serde(default)]
    pub injected_pods: i32,
    /// Injected pods whose agent image or resources differ from the spec; they pick up the
    /// change when restarted.
    #[serde(default)]
    pub stale_pods: i32,
    /// Hash of the rendered agent configuration currently published. At most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub config_hash: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_ratio() -> f64 {
    1.0
}
fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_replacement() -> String {
    "[REDACTED]".into()
}
fn default_version_label() -> String {
    "app.kubernetes.io/version".into()
}
fn default_buffer_size() -> String {
    "256Mi".into()
}
fn default_admin_port() -> u16 {
    9464
}

#[cfg(test)]
mod request_metrics_tests {
    #![allow(clippy::expect_used, reason = "tests fail loudly")]

    use super::*;

    fn spec(metrics: &str) -> MonitoredAppSpec {
        serde_yaml::from_str(&format!("{{selector: {{}}, {metrics}}}")).expect("spec")
    }

    /// Each preset stands for its library's names; without `metrics.requests` the
    /// `prometheus-client` names apply, as before the field existed.
    #[test]
    fn presets_name_their_libraries_metrics() {
        let resolved = |preset: &str| {
            spec(&format!(
                "metrics: {{port: 80, requests: {{preset: {preset}}}}}"
            ))
            .request_metrics()
        };
        let spring = resolved("spring-micrometer");
        assert_eq!(
            (spring.counter.as_str(), spring.status_label.as_str()),
            ("http_server_requests_seconds_count", "status")
        );
        assert_eq!(spring.duration_histogram, "http_server_requests_seconds");
        let otel = resolved("opentelemetry-http");
        assert_eq!(
            (otel.counter.as_str(), otel.status_label.as_str()),
            (
                "http_server_request_duration_seconds_count",
                "http_response_status_code"
            )
        );
        assert_eq!(
            otel.duration_histogram,
            "http_server_request_duration_seconds"
        );
        let classic = resolved("prometheus-client");
        assert_eq!(
            (classic.counter.as_str(), classic.status_label.as_str()),
            ("http_requests_total", "code")
        );
        assert_eq!(spec("").request_metrics(), classic);
        assert_eq!(spec("metrics: {port: 80}").request_metrics(), classic);
        assert_eq!(classic.error_regex, "5..");
    }

    /// Fields given beside a preset replace only its corresponding names; a rule's own names
    /// replace the app's.
    #[test]
    fn fields_override_the_preset_and_rules_override_the_app() {
        let app = spec(
            "metrics: {port: 80, requests: {preset: spring-micrometer, statusLabel: outcome, \
             errorRegex: SERVER_ERROR}}",
        )
        .request_metrics();
        assert_eq!(app.counter, "http_server_requests_seconds_count");
        assert_eq!(
            (app.status_label.as_str(), app.error_regex.as_str()),
            ("outcome", "SERVER_ERROR")
        );
        let own = "own_seconds".to_owned();
        let rule = app.overridden(None, None, None, Some(&own));
        assert_eq!(rule.duration_histogram, "own_seconds");
        assert_eq!(rule.counter, app.counter);
    }
}
