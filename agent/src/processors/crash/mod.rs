//! Crash detection, the processor after multi-line joining in the log pipeline
//! (tail → parse → join → **crash** → redact → batch), also applied to OTLP log records.
//!
//! An event is a crash when it is a joined stack trace with an identifiable exception or panic
//! (see `analyse`) or a line that is fatal on its own: `level=fatal`, `PHP Fatal error`, Go's
//! `panic:` and `fatal error:`, a JVM `Exception in thread`, a Rust `panicked at`. The event gets
//! a [`CrashInfo`] whose fingerprint is a stable hash of the language, the exception types and
//! the top frame of the application's own code (`in_app`; the top frame outside the runtime and
//! test frameworks when it has none), normalised, so the same bug has the same fingerprint in
//! every version and pod, and frames of a test framework, the runtime or a web framework never
//! decide a group by themselves.
//!
//! Series (labels from the pod's [`Identity`]):
//! - `vigil_crashes_total{namespace,app,version,fingerprint,type,language,frame}`: crashes
//!   seen; `frame` is the top in-app frame the fingerprint was built from (one per
//!   fingerprint, so it adds no series), for alerts to show where it crashed.
//! - `vigil_crash_affected_users{namespace,app,version,fingerprint}`: distinct values of the
//!   configured user field among the crash events of a fingerprint.
//! - `vigil_crash_users_register{namespace,app,version,register}`: the users of the app's crash
//!   events over the last hour (all fingerprints) as 64 HyperLogLog registers, which PromQL
//!   merges across pods into one distinct count (`vigil_crds::crash_users`: the expression,
//!   window and error bound). Summing `vigil_crash_affected_users` across pods or fingerprints
//!   counts a user once per pod and fingerprint; these do not.
//! - `vigil_active_users{namespace,app}`: distinct users seen in any event over the last five
//!   minutes (one sketch per minute, merged when read).
//!
//! Memory is bounded: at most [`MAX_FINGERPRINTS`] fingerprints are tracked (later new ones
//! are counted under `fingerprint="other"`), and each user count is a `hll::DistinctCounter`
//! (exact up to 512 users, then a 4 KiB HyperLogLog sketch).

pub(crate) mod analyse;
pub(crate) mod exception;
#[cfg(test)]
mod grouping_tests;
pub(crate) mod hll;
pub(crate) mod in_app;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod users_tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use vigil_crds::crash_users::{REGISTERS, REGISTER_METRIC};

use crate::event::{CrashInfo, LogEvent};
use crate::identity::Identity;
use crate::prompb::{Label, Sample, TimeSeries, WriteRequest};
use analyse::Analysis;
use hll::{CrashUserWindow, DistinctCounter};
pub use in_app::AppPackages;

/// Most fingerprints tracked one by one; further new ones are counted as `other`.
pub const MAX_FINGERPRINTS: usize = 1000;

/// The fingerprint, type and language label of crashes past [`MAX_FINGERPRINTS`].
pub const OVERFLOW_LABEL: &str = "other";

/// Length of the active-user window, in one-minute slots.
const ACTIVE_WINDOW_MINUTES: usize = 5;

/// The log record attribute the OTLP path adds to crash records.
pub const FINGERPRINT_ATTRIBUTE: &str = "vigil.crash.fingerprint";

/// Longest `frame` label value, in characters.
const MAX_FRAME_LABEL_LEN: usize = 200;

/// `register` label values, `"0"` to `"63"`.
static REGISTER_LABELS: LazyLock<[String; REGISTERS]> =
    LazyLock::new(|| std::array::from_fn(|i| i.to_string()));

/// Counts of one fingerprint.
#[derive(Debug, Default)]
struct FingerprintCounts {
    kind: String,
    language: String,
    frame: String,
    crashes: u64,
    users: DistinctCounter,
}

/// Distinct users per minute over the last [`ACTIVE_WINDOW_MINUTES`] minutes.
#[derive(Debug, Default)]
struct ActiveUsers {
    /// (minute since the epoch, users seen in it), indexed by minute modulo the window.
    slots: [(i64, DistinctCounter); ACTIVE_WINDOW_MINUTES],
}

impl ActiveUsers {
    fn insert(&mut self, now_ms: i64, hash: u64) {
        let minute = now_ms.div_euclid(60_000);
        let slot = &mut self.slots[minute.rem_euclid(ACTIVE_WINDOW_MINUTES as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, DistinctCounter::default());
        }
        slot.1.insert(hash);
    }

    fn estimate(&self, now_ms: i64) -> f64 {
        let minute = now_ms.div_euclid(60_000);
        let mut merged = DistinctCounter::default();
        for (slot_minute, users) in &self.slots {
            if *slot_minute <= minute && minute - *slot_minute < ACTIVE_WINDOW_MINUTES as i64 {
                merged.merge(users);
            }
        }
        merged.estimate()
    }
}

#[derive(Debug, Default)]
struct CrashCounts {
    /// Sorted by fingerprint, so the exposition is stable.
    fingerprints: BTreeMap<String, FingerprintCounts>,
    overflow: Option<FingerprintCounts>,
    active: ActiveUsers,
    /// Users of any crash over the last hour, mergeable across pods.
    crash_users: CrashUserWindow,
}

impl CrashCounts {
    /// Counts a crash; `user` is the user's (local hash, [`hll::stable_hash`]).
    fn record(&mut self, crash: &CrashInfo, user: Option<(u64, u64)>, now_ms: i64) {
        let counts = if self.fingerprints.contains_key(&crash.fingerprint)
            || self.fingerprints.len() < MAX_FINGERPRINTS
        {
            self.fingerprints
                .entry(crash.fingerprint.clone())
                .or_insert_with(|| FingerprintCounts {
                    kind: crash.kind.clone(),
                    language: crash.language.clone(),
                    frame: crash.frame.clone(),
                    ..FingerprintCounts::default()
                })
        } else {
            self.overflow.get_or_insert_with(|| FingerprintCounts {
                kind: OVERFLOW_LABEL.to_owned(),
                language: OVERFLOW_LABEL.to_owned(),
                frame: OVERFLOW_LABEL.to_owned(),
                ..FingerprintCounts::default()
            })
        };
        counts.crashes += 1;
        if let Some((user, stable)) = user {
            counts.users.insert(user);
            self.crash_users.insert(now_ms, stable);
        }
    }

    fn each(&self) -> impl Iterator<Item = (&str, &FingerprintCounts)> {
        self.fingerprints
            .iter()
            .map(|(fingerprint, counts)| (fingerprint.as_str(), counts))
            .chain(self.overflow.iter().map(|counts| (OVERFLOW_LABEL, counts)))
    }
}

/// One series of the crash metrics.
struct Series<'a> {
    name: &'static str,
    labels: Vec<(&'static str, &'a str)>,
    value: f64,
}

/// Finds crashes in joined events, fingerprints and counts them.
#[derive(Debug)]
pub struct CrashDetector {
    identity: Identity,
    user_field: Option<String>,
    /// Replaced on config reload; read only when a crash is found.
    app_packages: RwLock<AppPackages>,
    counts: Mutex<CrashCounts>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl CrashDetector {
    /// `user_field`: the log attribute naming the end user, for `vigil_crash_affected_users`
    /// and `vigil_active_users`.
    pub fn new(identity: &Identity, user_field: Option<String>) -> Self {
        CrashDetector {
            identity: identity.clone(),
            user_field: user_field.filter(|f| !f.is_empty()),
            app_packages: RwLock::new(AppPackages::default()),
            counts: Mutex::new(CrashCounts::default()),
        }
    }

    /// The application's own packages (`crashes.appPackages`), whose frames fingerprints are
    /// built from; without, frames outside known runtime, test and library packages count.
    pub fn with_app_packages(self, app_packages: AppPackages) -> Self {
        self.set_app_packages(app_packages);
        self
    }

    /// Replaces the application's packages (a reloaded config); counts are kept.
    pub fn set_app_packages(&self, app_packages: AppPackages) {
        // A panic while holding the lock leaves a whole value behind: still usable.
        *self
            .app_packages
            .write()
            .unwrap_or_else(PoisonError::into_inner) = app_packages;
    }

    /// Sets `event.crash` when the event is a crash, counts it, and returns it; a crash's level
    /// becomes at least `error`, `fatal` when it ended the program (`exception::crash_level`).
    /// Every event passes here: those carrying the user field also count towards
    /// `vigil_active_users`.
    pub fn observe(&self, event: &mut LogEvent) -> Option<CrashInfo> {
        self.observe_at(event, now_ms())
    }

    /// [`CrashDetector::observe`] at a given wall-clock time (milliseconds since the epoch).
    pub fn observe_at(&self, event: &mut LogEvent, now_ms: i64) -> Option<CrashInfo> {
        let user = self
            .user_field
            .as_deref()
            .and_then(|field| event.attribute(field))
            .filter(|user| !user.is_empty());
        let crash = analyse::analyse_event(event).map(|found| self.crash_info(&found));
        if user.is_none() && crash.is_none() {
            return None;
        }
        // The stable hash (SHA-256) only for crashes: ordinary lines need the local one.
        let user = user.map(|u| {
            let stable = if crash.is_some() {
                hll::stable_hash(u)
            } else {
                0
            };
            (hll::hash_value(u), stable)
        });
        let mut counts = self.lock();
        if let Some((user, _)) = user {
            counts.active.insert(now_ms, user);
        }
        let crash = crash?;
        counts.record(&crash, user, now_ms);
        drop(counts);
        let text = exception::stack_text(event).unwrap_or(&event.message);
        event.level = Some(exception::crash_level(text, &crash.language, event.level));
        event.crash = Some(Box::new(crash.clone()));
        Some(crash)
    }

    /// Detects crashes in OTLP log records that carry `exception.type` or
    /// `exception.stacktrace` (OpenTelemetry semantic conventions), or whose body is a stack
    /// trace; adds `vigil.crash.fingerprint` to those records (and a severity where they have
    /// none) and counts them like log events.
    /// Records with the user field as an attribute count towards `vigil_active_users`.
    pub fn observe_otlp_logs(&self, request: &mut ExportLogsServiceRequest) {
        self.observe_otlp_logs_at(request, now_ms());
    }

    /// [`CrashDetector::observe_otlp_logs`] at a given wall-clock time.
    pub fn observe_otlp_logs_at(&self, request: &mut ExportLogsServiceRequest, now_ms: i64) {
        for resource_logs in &mut request.resource_logs {
            let sdk_language = resource_logs.resource.as_ref().and_then(|r| {
                string_attribute(&r.attributes, "telemetry.sdk.language").map(str::to_owned)
            });
            for record in resource_logs
                .scope_logs
                .iter_mut()
                .flat_map(|s| s.log_records.iter_mut())
            {
                let user = self
                    .user_field
                    .as_deref()
                    .and_then(|field| string_attribute(&record.attributes, field))
                    .filter(|user| !user.is_empty());
                let crash = self.otlp_crash(
                    string_attribute(&record.attributes, "exception.type"),
                    string_attribute(&record.attributes, "exception.stacktrace"),
                    record.body.as_ref().and_then(any_string),
                    sdk_language.as_deref(),
                );
                if user.is_none() && crash.is_none() {
                    continue;
                }
                // The stable hash (SHA-256) only for crashes: ordinary records need the local one.
                let user = user.map(|u| {
                    let stable = if crash.is_some() {
                        hll::stable_hash(u)
                    } else {
                        0
                    };
                    (hll::hash_value(u), stable)
                });
                let mut counts = self.lock();
                if let Some((user, _)) = user {
                    counts.active.insert(now_ms, user);
                }
                if let Some(crash) = crash {
                    counts.record(&crash, user, now_ms);
                    drop(counts);
                    // Severity only where the application set none.
                    if record.severity_number == 0 {
                        let text = string_attribute(&record.attributes, "exception.stacktrace")
                            .or(record.body.as_ref().and_then(any_string))
                            .unwrap_or_default();
                        let level = exception::crash_level(text, &crash.language, None);
                        record.severity_number = level.severity_number();
                        record.severity_text = level.as_str().to_ascii_uppercase();
                    }
                    record.attributes.push(KeyValue {
                        key: FINGERPRINT_ATTRIBUTE.to_owned(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(crash.fingerprint)),
                        }),
                        ..KeyValue::default()
                    });
                }
            }
        }
    }

    /// `vigil_crashes_total`, `vigil_crash_affected_users`, `vigil_active_users` in the
    /// Prometheus text format (for `/metrics`).
    pub fn exposition(&self) -> String {
        self.exposition_at(now_ms())
    }

    /// [`CrashDetector::exposition`] with the active-user window ending at `now_ms`.
    pub fn exposition_at(&self, now_ms: i64) -> String {
        let counts = self.lock();
        let mut out = String::new();
        let mut last_name = "";
        for series in self.series(&counts, now_ms) {
            if series.name != last_name {
                let (help, kind) = describe(series.name);
                let _ = writeln!(out, "# HELP {} {help}", series.name);
                let _ = writeln!(out, "# TYPE {} {kind}", series.name);
                last_name = series.name;
            }
            out.push_str(series.name);
            out.push('{');
            for (i, (name, value)) in series.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
            }
            let _ = writeln!(out, "}} {}", format_value(series.value));
        }
        out
    }

    /// The same series as samples stamped `now_ms`, for remote write.
    pub fn samples(&self, now_ms: i64) -> WriteRequest {
        let counts = self.lock();
        let timeseries = self
            .series(&counts, now_ms)
            .into_iter()
            .map(|series| {
                let mut labels: Vec<Label> = series
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: (*name).to_owned(),
                        value: (*value).to_owned(),
                    })
                    .collect();
                labels.push(Label {
                    name: "__name__".to_owned(),
                    value: series.name.to_owned(),
                });
                labels.sort();
                TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value: series.value,
                        timestamp: now_ms,
                    }],
                }
            })
            .collect();
        WriteRequest { timeseries }
    }

    /// Crashes counted so far under `fingerprint`, for tests and the shutdown summary.
    pub fn crash_count(&self, fingerprint: &str) -> u64 {
        let counts = self.lock();
        let found = counts
            .each()
            .find(|(f, _)| *f == fingerprint)
            .map_or(0, |(_, c)| c.crashes);
        found
    }

    fn lock(&self) -> MutexGuard<'_, CrashCounts> {
        // A panic while holding the lock leaves counts that are still valid numbers.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn series<'a>(&'a self, counts: &'a CrashCounts, now_ms: i64) -> Vec<Series<'a>> {
        let id = &self.identity;
        let mut out = Vec::new();
        for (fingerprint, c) in counts.each() {
            let mut labels = vec![
                ("namespace", id.namespace.as_str()),
                ("app", id.app.as_str()),
                ("version", id.version.as_str()),
                ("fingerprint", fingerprint),
                ("type", c.kind.as_str()),
                ("language", c.language.as_str()),
            ];
            // An empty value is no label in Prometheus; left out rather than sent.
            if !c.frame.is_empty() {
                labels.push(("frame", c.frame.as_str()));
            }
            out.push(Series {
                name: "vigil_crashes_total",
                labels,
                value: c.crashes as f64,
            });
        }
        if self.user_field.is_some() {
            for (fingerprint, c) in counts.each() {
                out.push(Series {
                    name: "vigil_crash_affected_users",
                    labels: vec![
                        ("namespace", id.namespace.as_str()),
                        ("app", id.app.as_str()),
                        ("version", id.version.as_str()),
                        ("fingerprint", fingerprint),
                    ],
                    value: c.users.estimate().round(),
                });
            }
            let registers = counts.crash_users.registers(now_ms);
            for (register, value) in REGISTER_LABELS.iter().zip(registers) {
                out.push(Series {
                    name: REGISTER_METRIC,
                    labels: vec![
                        ("namespace", id.namespace.as_str()),
                        ("app", id.app.as_str()),
                        ("version", id.version.as_str()),
                        ("register", register.as_str()),
                    ],
                    value: f64::from(value),
                });
            }
            out.push(Series {
                name: "vigil_active_users",
                labels: vec![
                    ("namespace", id.namespace.as_str()),
                    ("app", id.app.as_str()),
                ],
                value: counts.active.estimate(now_ms).round(),
            });
        }
        out
    }
}

impl CrashDetector {
    fn crash_info(&self, found: &Analysis) -> CrashInfo {
        let app_packages = self
            .app_packages
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let frame = found
            .top_frame(&app_packages)
            .map(|f| f.name.chars().take(MAX_FRAME_LABEL_LEN).collect())
            .unwrap_or_default();
        CrashInfo {
            fingerprint: found.fingerprint(&app_packages),
            kind: found.kind.clone(),
            language: found.language.to_owned(),
            frame,
        }
    }

    /// A crash from the `exception.*` attributes or the body of an OTLP log record.
    fn otlp_crash(
        &self,
        exception_type: Option<&str>,
        stacktrace: Option<&str>,
        body: Option<&str>,
        sdk_language: Option<&str>,
    ) -> Option<CrashInfo> {
        let trace = stacktrace.or(body.filter(|b| b.contains('\n')));
        let mut found = match trace.and_then(analyse::analyse_trace) {
            Some(found) => found,
            None => {
                let kind = exception_type?.trim();
                if kind.is_empty() {
                    return None;
                }
                Analysis {
                    kind: kind.to_owned(),
                    chain: vec![kind.to_owned()],
                    language: "unknown",
                    frames: Vec::new(),
                }
            }
        };
        if let Some(kind) = exception_type.map(str::trim).filter(|k| !k.is_empty()) {
            if found.kind != kind && !found.chain.iter().any(|k| k == kind) {
                found.kind = kind.to_owned();
                found.chain.insert(0, kind.to_owned());
            }
        }
        if found.language == "unknown" {
            found.language = otlp_language(sdk_language);
        }
        Some(self.crash_info(&found))
    }
}

/// Our language label for a `telemetry.sdk.language` value.
fn otlp_language(sdk_language: Option<&str>) -> &'static str {
    match sdk_language.unwrap_or_default() {
        "java" => "java",
        "python" => "python",
        "go" => "go",
        "nodejs" | "webjs" | "js" => "js",
        "ruby" => "ruby",
        "php" => "php",
        "dotnet" => "csharp",
        "rust" => "rust",
        "dart" => "dart",
        _ => "unknown",
    }
}

fn any_string(value: &AnyValue) -> Option<&str> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(any_string)
}

fn describe(name: &str) -> (&'static str, &'static str) {
    match name {
        "vigil_crashes_total" => (
            "Crashes (stack traces and fatal errors) seen in the logs, by fingerprint.",
            "counter",
        ),
        "vigil_crash_affected_users" => (
            "Distinct users among the crash events of a fingerprint (HyperLogLog estimate).",
            "gauge",
        ),
        REGISTER_METRIC => (
            "HyperLogLog register (largest rank) of the users of crash events over the last hour; \
             max by (register) across pods merges them into one distinct count.",
            "gauge",
        ),
        _ => (
            "Distinct users seen in any event over the last 5 minutes (HyperLogLog estimate).",
            "gauge",
        ),
    }
}

/// Escapes a label value for the text format: backslash, double quote and newline.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}
