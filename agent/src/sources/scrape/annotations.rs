//! Per-pod overrides of the scrape source: the classic `prometheus.io/*` pod annotations, which
//! the agent reads from a Kubernetes downward API file before every scrape when the config sets
//! `honorAnnotations`.
//!
//! **Where they come from.** Injection mounts a `downwardAPI` volume exposing
//! `metadata.annotations` as the file `annotations` in `scrape.podInfoDir` (default
//! [`POD_INFO_DIR`]). The kubelet writes it in the format of its `fieldpath.FormatMap`: one
//! `key="value"` per line, keys sorted, the value quoted like Go's `%q` (`\"`, `\\`, `\n`, `\t`,
//! `\xNN`, `\uNNNN`, …), no newline after the last line; when the pod's annotations change it
//! swaps the whole directory atomically (the `..data` symlink), so a read never sees half a
//! file. The file is read again before each scrape, so a `kubectl annotate` reaches the agent
//! once the kubelet has refreshed the volume (its sync period, about a minute), without a
//! restart.
//!
//! **Precedence.** The annotations are the developer's per-pod override of the app-wide config:
//! - `prometheus.io/scrape: "false"` stops scraping this pod: no request, no page series and no
//!   `up` / `scrape_*` series (as for a target Prometheus drops), the page served on the agent's
//!   `/metrics` is emptied, and one log line says why. The crash series keep flowing.
//!   `"true"` changes nothing (scraping is on whenever the config has a `scrape` section).
//! - `prometheus.io/port` (a number 1–65535) replaces the configured port, named or numbered.
//! - `prometheus.io/path` (starting with `/`) replaces the configured path.
//! - `prometheus.io/scheme` (`http` or `https`) sets the scheme; the config's is `http`. Over
//!   `https` the certificate is not verified: the connection never leaves the pod's network
//!   namespace, and the app's certificate names its Service, never `127.0.0.1`.
//!
//! An invalid value (`prometheus.io/port: "abc"`) is ignored — the config wins — and logged
//! once, naming the annotation and the value (counted as `vigil_agent_errors_total{component=
//! "scrape",error="ScrapeAnnotationInvalid"}`). A missing file (honouring off in the operator,
//! or a pod injected before the volume existed) means the config as it is; an unreadable file
//! or lines that are not `key="value"` are logged once and skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

pub use vigil_crds::agent_config::{POD_ANNOTATIONS_FILE, POD_INFO_DIR};

use crate::telemetry::{emit, InternalEvent};

use super::COMPONENT;

#[cfg(test)]
mod tests;

/// `"false"` stops the scrape of this pod.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// Port number to scrape instead of the configured one.
pub const PORT_ANNOTATION: &str = "prometheus.io/port";
/// Path to scrape instead of the configured one.
pub const PATH_ANNOTATION: &str = "prometheus.io/path";
/// `http` or `https`.
pub const SCHEME_ANNOTATION: &str = "prometheus.io/scheme";

/// Largest annotations file read: Kubernetes caps all of a pod's annotations at 256 KiB.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Longest annotation value quoted in a log line.
const MAX_LOGGED_VALUE_CHARS: usize = 80;

/// A downward API file (`metadata.annotations` or `metadata.labels`), parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownwardApiFile {
    /// Key → value, unquoted.
    pub entries: BTreeMap<String, String>,
    /// 1-based numbers of the lines that are not `key="value"`.
    pub bad_lines: Vec<usize>,
}

/// Parses the downward API format: one `key="value"` per line, the value a Go double-quoted
/// string. Empty lines are skipped; other lines that do not parse are listed in `bad_lines`
/// and skipped; a repeated key keeps its last value.
pub fn parse_downward_api(text: &str) -> DownwardApiFile {
    let mut file = DownwardApiFile::default();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let entry = line.split_once('=').and_then(|(key, quoted)| {
            let key_ok = !key.is_empty()
                && !key
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"');
            key_ok
                .then(|| unquote_go(quoted))
                .flatten()
                .map(|value| (key.to_owned(), value))
        });
        match entry {
            Some((key, value)) => {
                file.entries.insert(key, value);
            }
            None => file.bad_lines.push(index + 1),
        }
    }
    file
}

/// Undoes Go's `strconv.Quote`: `quoted` must be one double-quoted Go string literal with
/// nothing around it. Supports every escape Go's `strconv.Unquote` accepts in such a literal.
pub fn unquote_go(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let mut utf8 = [0u8; 4];
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let escape = chars.next()?;
                let simple = match escape {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    _ => None,
                };
                if let Some(byte) = simple {
                    out.push(byte);
                    continue;
                }
                match escape {
                    'x' => out.push(u8::try_from(digits(&mut chars, 2, 16)?).ok()?),
                    '0'..='7' => {
                        let rest = digits(&mut chars, 2, 8)?;
                        let value = (escape.to_digit(8)? << 6) | rest;
                        out.push(u8::try_from(value).ok()?);
                    }
                    'u' | 'U' => {
                        let len = if escape == 'u' { 4 } else { 8 };
                        let scalar = char::from_u32(digits(&mut chars, len, 16)?)?;
                        out.extend_from_slice(scalar.encode_utf8(&mut utf8).as_bytes());
                    }
                    _ => return None,
                }
            }
            other => out.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    String::from_utf8(out).ok()
}

/// Reads exactly `count` digits in `radix` as one number.
fn digits(chars: &mut std::str::Chars<'_>, count: usize, radix: u32) -> Option<u32> {
    let mut value: u32 = 0;
    for _ in 0..count {
        value = value
            .checked_mul(radix)?
            .checked_add(chars.next()?.to_digit(radix)?)?;
    }
    Some(value)
}

/// URL scheme of the scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP, the default.
    #[default]
    Http,
    /// HTTPS; the certificate is not verified (loopback inside the pod).
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a scrape goes, on localhost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` unless annotated.
    pub scheme: Scheme,
    /// The port number, or the port name that could not be resolved to one.
    pub port: Result<u16, String>,
    /// HTTP path, starting with `/`.
    pub path: String,
}

impl Endpoint {
    /// `scheme://127.0.0.1:port/path`, or the unresolved port name.
    pub fn url(&self) -> Result<String, String> {
        let port = self.port.as_ref().map_err(Clone::clone)?;
        Ok(format!(
            "{}://127.0.0.1:{port}{}",
            self.scheme.as_str(),
            self.path
        ))
    }
}

/// An annotation whose value is ignored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAnnotation {
    /// The annotation key, such as `prometheus.io/port`.
    pub key: &'static str,
    /// Its value as found on the pod.
    pub value: String,
    /// What a valid value looks like.
    pub expected: &'static str,
}

impl InvalidAnnotation {
    /// One log line naming the annotation and its value.
    pub fn describe(&self) -> String {
        let mut shown: String = self.value.chars().take(MAX_LOGGED_VALUE_CHARS).collect();
        if shown.len() < self.value.len() {
            shown.push('…');
        }
        format!(
            "pod annotation {}: {shown:?} is not {}; ignored, the agent config applies",
            self.key, self.expected
        )
    }
}

/// The valid `prometheus.io/*` overrides found on the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `prometheus.io/scrape`: `Some(false)` stops the scrape.
    pub scrape: Option<bool>,
    /// `prometheus.io/port`.
    pub port: Option<u16>,
    /// `prometheus.io/path`.
    pub path: Option<String>,
    /// `prometheus.io/scheme`.
    pub scheme: Option<Scheme>,
    /// Annotations present with a value that is ignored.
    pub invalid: Vec<InvalidAnnotation>,
}

impl Overrides {
    /// Validates the `prometheus.io/*` annotations among `annotations`; the others are ignored.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Overrides {
        let mut overrides = Overrides::default();
        let mut invalid = |key: &'static str, value: &str, expected: &'static str| {
            overrides.invalid.push(InvalidAnnotation {
                key,
                value: value.to_owned(),
                expected,
            });
        };
        let mut scrape = None;
        let mut port = None;
        let mut path = None;
        let mut scheme = None;
        if let Some(value) = annotations.get(SCRAPE_ANNOTATION) {
            match value.as_str() {
                "true" => scrape = Some(true),
                "false" => scrape = Some(false),
                _ => invalid(SCRAPE_ANNOTATION, value, "\"true\" or \"false\""),
            }
        }
        if let Some(value) = annotations.get(PORT_ANNOTATION) {
            let number = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u16>().ok())
                .flatten()
                .filter(|n| *n > 0);
            match number {
                Some(n) => port = Some(n),
                None => invalid(PORT_ANNOTATION, value, "a port number from 1 to 65535"),
            }
        }
        if let Some(value) = annotations.get(PATH_ANNOTATION) {
            let valid = value.starts_with('/')
                && !value.chars().any(|c| c.is_whitespace() || c.is_control());
            if valid {
                path = Some(value.clone());
            } else {
                invalid(PATH_ANNOTATION, value, "a path starting with '/'");
            }
        }
        if let Some(value) = annotations.get(SCHEME_ANNOTATION) {
            match value.as_str() {
                "http" => scheme = Some(Scheme::Http),
                "https" => scheme = Some(Scheme::Https),
                _ => invalid(SCHEME_ANNOTATION, value, "\"http\" or \"https\""),
            }
        }
        overrides.scrape = scrape;
        overrides.port = port;
        overrides.path = path;
        overrides.scheme = scheme;
        overrides
    }

    /// The endpoint to scrape: `config` with these overrides applied, or `None` when the pod
    /// is annotated `prometheus.io/scrape: "false"`.
    pub fn apply(&self, config: &Endpoint) -> Option<Endpoint> {
        if self.scrape == Some(false) {
            return None;
        }
        Some(Endpoint {
            scheme: self.scheme.unwrap_or(config.scheme),
            port: self.port.map_or_else(|| config.port.clone(), Ok),
            path: self.path.clone().unwrap_or_else(|| config.path.clone()),
        })
    }
}

/// The pod's annotations file, read before each scrape. Remembers what it has logged so that
/// each problem is reported once, not every scrape.
#[derive(Debug)]
pub struct PodAnnotations {
    file: PathBuf,
    /// The file's bytes at the last read, and the overrides they gave.
    last: Option<(Vec<u8>, Overrides)>,
    /// Invalid (annotation, value) pairs already logged and still present.
    reported_invalid: BTreeSet<(&'static str, String)>,
    /// The last read error or bad-lines report logged, so it is not repeated.
    reported_problem: Option<String>,
}

impl PodAnnotations {
    /// The annotations file in the downward API directory `dir`.
    pub fn new(dir: &Path) -> PodAnnotations {
        PodAnnotations {
            file: dir.join(POD_ANNOTATIONS_FILE),
            last: None,
            reported_invalid: BTreeSet::new(),
            reported_problem: None,
        }
    }

    /// The file read.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Reads the file now and returns the valid overrides (none when the file is missing or
    /// unreadable), logging each new problem once.
    pub fn read(&mut self) -> Overrides {
        let (overrides, problems) = self.read_and_check();
        for problem in &problems {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: problem.category,
                message: &problem.message,
            });
        }
        overrides
    }

    /// [`PodAnnotations::read`] without logging: the overrides and the problems not reported
    /// before.
    pub fn read_and_check(&mut self) -> (Overrides, Vec<Problem>) {
        let mut problems = Vec::new();
        let bytes = match read_capped(&self.file) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.last = None;
                self.reported_invalid.clear();
                if error.kind() == std::io::ErrorKind::NotFound {
                    self.reported_problem = None;
                } else {
                    let message = format!(
                        "cannot read the pod annotations file {}: {error}; the agent config applies",
                        self.file.display()
                    );
                    problems.extend(self.new_file_problem(message));
                }
                return (Overrides::default(), problems);
            }
        };
        if let Some((last_bytes, overrides)) = &self.last {
            if *last_bytes == bytes {
                return (overrides.clone(), problems);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let parsed = parse_downward_api(&text);
        if parsed.bad_lines.is_empty() {
            self.reported_problem = None;
        } else {
            // Line numbers only: a line of another annotation may hold anything.
            let message = format!(
                "pod annotations file {}: lines {:?} are not key=\"value\" and are skipped",
                self.file.display(),
                parsed.bad_lines
            );
            problems.extend(self.new_file_problem(message));
        }
        let overrides = Overrides::from_annotations(&parsed.entries);
        let present: BTreeSet<(&'static str, String)> = overrides
            .invalid
            .iter()
            .map(|i| (i.key, i.value.clone()))
            .collect();
        for invalid in &overrides.invalid {
            if !self
                .reported_invalid
                .contains(&(invalid.key, invalid.value.clone()))
            {
                problems.push(Problem {
                    category: "ScrapeAnnotationInvalid",
                    message: invalid.describe(),
                });
            }
        }
        self.reported_invalid = present;
        self.last = Some((bytes, overrides.clone()));
        (overrides, problems)
    }

    fn new_file_problem(&mut self, message: String) -> Option<Problem> {
        if self.reported_problem.as_deref() == Some(message.as_str()) {
            return None;
        }
        self.reported_problem = Some(message.clone());
        Some(Problem {
            category: "ScrapePodInfoUnreadable",
            message,
        })
    }
}

/// Something wrong with the pod's annotations, reported once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Stable PascalCase category, the `error` label of `vigil_agent_errors_total`.
    pub category: &'static str,
    /// The log message.
    pub message: String,
}

/// Reads at most [`MAX_FILE_BYTES`] of `file` (following the kubelet's symlinks).
fn read_capped(file: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
