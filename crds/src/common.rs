//! Value types shared by the resources: durations, PromQL expressions, audiences, client types,
//! severities and Secret references.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// A Prometheus duration such as `30s`, `5m`, `1h30m` or `30d`.
///
/// Units: `ms`, `s`, `m`, `h`, `d` (24h), `w` (7d), `y` (365d). Parsed when deserialised, so a
/// malformed duration is rejected with the field that holds it. At most 32 characters
/// ([`Duration::MAX_LEN`]), far more than any real duration needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Duration(String);

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected a Prometheus duration such as 30s, 5m, 1h30m or 30d")]
pub struct DurationError {
    input: String,
}

impl Duration {
    /// Regex used in the CRD schema; the parser below accepts exactly this language.
    pub const PATTERN: &'static str = "^([0-9]+(ms|s|m|h|d|w|y))+$";

    /// `maxLength` in the CRD schema, so the API server need not assume megabyte durations.
    pub const MAX_LEN: u32 = 32;

    /// Parses and validates a duration.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        Self::seconds_of(input)
            .filter(|s| *s > 0.0)
            .map(|_| Self(input.to_owned()))
            .ok_or_else(|| DurationError {
                input: input.to_owned(),
            })
    }

    /// Parses a duration that may also be zero, as a rule's `for` may be (`0s`: fire at the
    /// first evaluation that matches, as Prometheus has it).
    pub fn parse_allowing_zero(input: &str) -> Result<Self, DurationError> {
        Self::seconds_of(input)
            .map(|_| Self(input.to_owned()))
            .ok_or_else(|| DurationError {
                input: input.to_owned(),
            })
    }

    /// A duration of whole seconds, written in the largest unit that divides it exactly.
    pub fn from_secs(secs: u64) -> Self {
        const UNITS: [(u64, &str); 5] = [
            (604_800, "w"),
            (86_400, "d"),
            (3_600, "h"),
            (60, "m"),
            (1, "s"),
        ];
        let secs = secs.max(1);
        for (size, unit) in UNITS {
            if secs % size == 0 {
                return Self(format!("{}{unit}", secs / size));
            }
        }
        Self(format!("{secs}s"))
    }

    fn seconds_of(input: &str) -> Option<f64> {
        if input.is_empty() {
            return None;
        }
        let bytes = input.as_bytes();
        let (mut i, mut total) = (0usize, 0f64);
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return None;
            }
            let n: f64 = input[start..i].parse().ok()?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let factor = match &input[unit_start..i] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3_600.0,
                "d" => 86_400.0,
                "w" => 604_800.0,
                "y" => 31_536_000.0,
                _ => return None,
            };
            total += n * factor;
        }
        Some(total)
    }

    /// Length in seconds.
    pub fn as_secs_f64(&self) -> f64 {
        // Construction goes through `parse`, so the string is always valid.
        Self::seconds_of(&self.0).unwrap_or_default()
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Deserialises an optional duration that may be zero (a rule's `for: 0s`), through
/// [`Duration::parse_allowing_zero`]; use with `#[serde(default, deserialize_with = ...)]`.
pub fn optional_duration_allowing_zero<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| Duration::parse_allowing_zero(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": Self::PATTERN, "maxLength": Self::MAX_LEN })
    }
}

/// A PromQL expression. Checked for balanced brackets and quotes when loaded; the real
/// parser (promtool) checks the rendered rules. At most 8192 characters ([`PromQl::MAX_LEN`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PromQl(String);

/// Why a PromQL expression was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromQlError {
    #[error("PromQL expression is empty")]
    Empty,
    #[error("PromQL expression has an unbalanced {0:?}")]
    Unbalanced(char),
    #[error("PromQL expression has an unterminated string")]
    UnterminatedString,
}

impl PromQl {
    /// `maxLength` in the CRD schema: room for the longest hand-written alert or SLI
    /// expressions, while bounding what the API server must assume.
    pub const MAX_LEN: u32 = 8192;

    /// Validates the lexical shape of an expression: non-empty, brackets balanced, strings closed.
    pub fn parse(input: &str) -> Result<Self, PromQlError> {
        let expr = input.trim();
        if expr.is_empty() {
            return Err(PromQlError::Empty);
        }
        let mut stack = Vec::new();
        let mut chars = expr.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' | '\'' | '`' => loop {
                    match chars.next() {
                        None => return Err(PromQlError::UnterminatedString),
                        Some('\\') if c != '`' => {
                            chars.next();
                        }
                        Some(q) if q == c => break,
                        Some(_) => {}
                    }
                },
                '#' => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            break;
                        }
                    }
                }
                '(' | '[' | '{' => stack.push(c),
                ')' | ']' | '}' => {
                    let open = match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    };
                    if stack.pop() != Some(open) {
                        return Err(PromQlError::Unbalanced(c));
                    }
                }
                _ => {}
            }
        }
        match stack.pop() {
            Some(open) => Err(PromQlError::Unbalanced(open)),
            None => Ok(Self(expr.to_owned())),
        }
    }

    /// The expression text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromQl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PromQl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for PromQl {
    fn schema_name() -> Cow<'static, str> {
        "PromQl".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "minLength": 1, "maxLength": Self::MAX_LEN })
    }
}

/// Who an alert or dashboard is for. Each audience wants different context.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Audience {
    /// First-line support: user impact, affected users, what to tell customers.
    Support,
    /// Developers and SREs: stack traces, fingerprints, versions and release correlation.
    Engineering,
    /// Management: trends, SLO summaries, business impact.
    Management,
}

impl Audience {
    /// Every audience, in routing order.
    pub const ALL: [Audience; 3] = [
        Audience::Support,
        Audience::Engineering,
        Audience::Management,
    ];

    /// The value used in the `audience` alert label.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Support => "support",
            Audience::Engineering => "engineering",
            Audience::Management => "management",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of client an application serves; selects dashboard presets and defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientType {
    /// Retail or mobile banking: active users, crashes by app version, transactions.
    Banking,
    /// Critical infrastructure: latency and errors across services, release annotations.
    Infrastructure,
    /// Public-administration portals: load against forecast, regional breakdown.
    PublicSector,
    /// Anything else: the common panels only.
    #[default]
    Generic,
}

impl ClientType {
    /// The value used in labels and dashboard tags.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Banking => "banking",
            ClientType::Infrastructure => "infrastructure",
            ClientType::PublicSector => "publicSector",
            ClientType::Generic => "generic",
        }
    }
}

impl fmt::Display for ClientType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is; carried in the `severity` label and used for routing.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Needs a human now.
    Critical,
    /// Needs attention during working hours.
    #[default]
    Warning,
    /// For the record; no action expected.
    Info,
}

impl Severity {
    /// The value used in the `severity` alert label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key in a Secret in the resource's own namespace. Vigil never copies the value into a
/// rendered file: Prometheus and Alertmanager read it from a mounted file, the agent from a
/// mounted volume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret: a Kubernetes DNS subdomain name (lower-case letters, digits, `-`
    /// and `.`, starting and ending with a letter or digit). At most 253 characters.
    #[schemars(length(min = 1, max = 253), pattern(SecretKeyRef::NAME_PATTERN))]
    pub name: String,
    /// Key inside the Secret whose value is used: letters, digits, `-`, `_` and `.`, not `.`
    /// and not starting with `..`. At most 253 characters.
    #[schemars(length(min = 1, max = 253), pattern(SecretKeyRef::KEY_PATTERN))]
    pub key: String,
}

impl SecretKeyRef {
    /// A Kubernetes object name (RFC 1123 DNS subdomain), as the API server checks it.
    pub const NAME_PATTERN: &'static str =
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    /// A Secret key (`[-._a-zA-Z0-9]+`, not `.`, `..` or anything starting with `..`), as the
    /// API server checks the keys of a Secret.
    pub const KEY_PATTERN: &'static str = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$";

    /// What is wrong with the reference, as `(field, message)` with the field `name` or `key`;
    /// empty when both are valid. A valid reference is one path component each, so the paths
    /// built from it never leave the secrets directory.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !is_dns_subdomain(&self.name) {
            out.push(("name", format!(
                "{:?} is not a valid Secret name: use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
                self.name
            )));
        }
        if !is_secret_key(&self.key) {
            out.push(("key", format!(
                "{:?} is not a valid Secret key: use at most 253 letters, digits, '-', '_' and '.', not '.' and not starting with '..'",
                self.key
            )));
        }
        out
    }

    /// Where the agent sidecar finds this key: its pod only mounts Secrets of its own namespace.
    /// `None` when the name or key is not valid ([`SecretKeyRef::problems`]): such a path could
    /// point outside the Secret's folder.
    pub fn mount_path(&self) -> Option<String> {
        self.problems()
            .is_empty()
            .then(|| format!("{}/{}/{}", SECRETS_DIR, self.name, self.key))
    }

    /// Where a shared component (Alertmanager, Prometheus) that serves every namespace finds
    /// this key: the namespace is part of the path, so two tenants' Secrets of the same name
    /// never collide. `None` when the namespace, name or key is not valid: the path could then
    /// point into another tenant's folder.
    pub fn namespaced_mount_path(&self, namespace: &str) -> Option<String> {
        (is_dns_subdomain(namespace) && self.problems().is_empty())
            .then(|| format!("{}/{}/{}/{}", SECRETS_DIR, namespace, self.name, self.key))
    }
}

/// An RFC 1123 DNS subdomain of at most 253 characters: dot-separated labels of lower-case
/// letters, digits and `-`, each starting and ending with a letter or digit.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// A Secret or ConfigMap key: letters, digits, `-`, `_` and `.`, at most 253 characters, not
/// `.` and not starting with `..`.
fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && !s.starts_with("..")
}

/// Directory under which referenced Secrets are mounted, one folder per Secret.
pub const SECRETS_DIR: &str = "/etc/vigil/secrets";

/// A reference to a `MonitoredApp` in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppRef {
    /// Name of the `MonitoredApp` in this resource's namespace. At most 253 characters.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Status conditions follow the Kubernetes convention (`type`, `status`, `reason`, `message`).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    /// Secret names are DNS subdomain names and keys are Secret keys: a reference can name
    /// nothing outside its own Secret, so no path built from it leaves its folder.
    #[test]
    fn secret_refs_stay_in_their_folder() {
        for (name, key) in [
            ("pagerduty", "routing-key"),
            ("team.a-slack", "api_url.txt"),
            ("a", ".hidden"),
            ("x1", "A-b_c.d"),
        ] {
            let r = secret(name, key);
            assert_eq!(r.problems(), vec![], "{name}/{key}");
            assert_eq!(
                r.namespaced_mount_path("tenant-a").as_deref(),
                Some(format!("{SECRETS_DIR}/tenant-a/{name}/{key}").as_str())
            );
            assert_eq!(r.mount_path(), Some(format!("{SECRETS_DIR}/{name}/{key}")));
        }
        for (name, key, field) in [
            ("..", "routing-key", "name"),
            ("../tenant-b/pagerduty", "routing-key", "name"),
            ("tenant-b/pagerduty", "routing-key", "name"),
            ("Upper", "key", "name"),
            ("-dash", "key", "name"),
            ("a..b", "key", "name"),
            ("pagerduty", "..", "key"),
            ("pagerduty", ".", "key"),
            ("pagerduty", "../../tenant-b/pagerduty/routing-key", "key"),
            ("pagerduty", "..routing-key", "key"),
            ("pagerduty", "dir/key", "key"),
            ("pagerduty", "", "key"),
        ] {
            let r = secret(name, key);
            let problems = r.problems();
            assert_eq!(problems.len(), 1, "{name}/{key}: {problems:?}");
            assert_eq!(problems[0].0, field, "{name}/{key}");
            assert_eq!(r.mount_path(), None, "{name}/{key}");
            assert_eq!(r.namespaced_mount_path("tenant-a"), None, "{name}/{key}");
        }
        let fine = secret("pagerduty", "routing-key");
        assert_eq!(fine.namespaced_mount_path("../tenant-b"), None);
        assert_eq!(fine.namespaced_mount_path("tenant-a/x"), None);
    }

    /// Durations accept every Prometheus unit and reject malformed input.
    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(
            Duration::parse("1h30m").map(|d| d.as_secs_f64()),
            Ok(5400.0)
        );
        assert_eq!(
            Duration::parse("30d").map(|d| d.as_secs_f64()),
            Ok(2_592_000.0)
        );
        assert_eq!(Duration::parse("250ms").map(|d| d.as_secs_f64()), Ok(0.25));
        for bad in ["", "5", "m", "5x", "1.5h", "-5m", "0s"] {
            assert!(Duration::parse(bad).is_err(), "{bad} must be rejected");
        }
        assert_eq!(
            Duration::parse_allowing_zero("0s").map(|d| d.as_secs_f64()),
            Ok(0.0)
        );
        for bad in ["", "5", "-5m", "0"] {
            assert!(
                Duration::parse_allowing_zero(bad).is_err(),
                "{bad} must be rejected"
            );
        }
        assert_eq!(Duration::from_secs(3600).as_str(), "1h");
        assert_eq!(Duration::from_secs(90).as_str(), "90s");
        assert_eq!(Duration::from_secs(86_400 * 3).as_str(), "3d");
    }

    /// Lexically broken PromQL is rejected before any rule file is written.
    #[test]
    fn promql_shape_is_checked() {
        assert!(PromQl::parse(r#"sum(rate(x{a="b)"}[5m]))"#).is_ok());
        assert_eq!(
            PromQl::parse("sum(rate(x[5m])"),
            Err(PromQlError::Unbalanced('('))
        );
        assert_eq!(
            PromQl::parse("x{a=\"b}"),
            Err(PromQlError::UnterminatedString)
        );
        assert_eq!(PromQl::parse("  "), Err(PromQlError::Empty));
        assert_eq!(PromQl::parse("x]"), Err(PromQlError::Unbalanced(']')));
    }
}

/// Extra labels and annotations for the objects Vigil generates from one resource: its
/// `PodMonitor`, `PrometheusRule`, `AlertmanagerConfig`, `GrafanaDashboard` and ConfigMaps. For a
/// monitoring stack that discovers objects by label, such as kube-prometheus-stack's `release`.
/// They add to the chart's `outputs.*` settings and win over them on a clash. Vigil's own labels
/// (`app.kubernetes.io/managed-by`, `vigil.dev/owner`) are never replaced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratedObjects {
    /// Labels added to every generated object. Keys are Kubernetes label keys (an optional DNS
    /// prefix and `/`, then at most 63 letters, digits, `-`, `_`, `.`); values at most 63 such
    /// characters. At most 32 labels. (Keys and values are checked by the admission webhook and
    /// `vigil-operator check`.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::bounds::generated_labels)]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every generated object. Keys are Kubernetes annotation keys; values
    /// at most 4096 characters. At most 32 annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::bounds::generated_annotations)]
    pub annotations: BTreeMap<String, String>,
}

impl GeneratedObjects {
    /// Whether nothing is added.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// A resource whose generated objects may carry extra metadata ([`GeneratedObjects`]).
pub trait HasGeneratedObjects {
    /// The resource's `spec.generatedObjects`.
    fn generated_objects(&self) -> &GeneratedObjects;
}
