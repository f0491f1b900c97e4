//! The log event: one line, or one joined multi-line record (a stack trace), on its way from the
//! log source through the processors to the router.

use std::sync::Arc;

/// Which output stream of the container a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Severity as parsed from the line (JSON/logfmt `level`) or inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Parses common spellings (`warn`, `WARNING`, `err`, `critical`, `panic`, …).
    pub fn parse(text: &str) -> Option<Level> {
        let lower = text.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "trace" | "finest" | "finer" => Level::Trace,
            "debug" | "dbug" | "fine" | "config" => Level::Debug,
            "info" | "information" | "informational" | "notice" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "err" | "severe" => Level::Error,
            "fatal" | "critical" | "crit" | "panic" | "emerg" | "emergency" | "alert" => {
                Level::Fatal
            }
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// OTLP `SeverityNumber` (the first of each range).
    pub fn severity_number(self) -> i32 {
        match self {
            Level::Trace => 1,
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warn => 13,
            Level::Error => 17,
            Level::Fatal => 21,
        }
    }
}

/// Where the bytes of an event were read from, so the log source can checkpoint only what has
/// been handed to the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Stable identity of the file being read (the tailer's key).
    pub file: Arc<str>,
    /// The file's path when it was opened (OpenTelemetry's `log.file.path`).
    pub path: Arc<str>,
    /// Byte offset of the start of the first line of this event.
    pub start: u64,
    /// Byte offset just past the last line of this event.
    pub end: u64,
}

/// A crash found in an event by the crash detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashInfo {
    /// Stable hash of the exception types and the top in-app frame (16 hex chars).
    pub fingerprint: String,
    /// Exception or error type, such as `java.lang.NullPointerException` or `panic`.
    pub kind: String,
    /// `java`, `python`, `go`, `js`, `ruby`, `php`, `csharp`, `dart`, `rust`.
    pub language: String,
    /// The top frame of the application's own code, normalised (no line number), such as
    /// `com.bank.mobile.AccountParser.parse`; the top frame outside the runtime and test
    /// frameworks when no frame is in-app; empty for a crash without frames.
    pub frame: String,
}

/// One log event.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    /// Time of the event in nanoseconds since the epoch (parsed, else the CRI time, else when read).
    pub time_unix_nano: u64,
    /// Container name (`""` for files outside the pod log directory).
    pub container: Arc<str>,
    /// Output stream.
    pub stream: Stream,
    /// The message; for a joined stack trace, all its lines separated by `\n`.
    pub message: String,
    /// Parsed or inferred severity.
    pub level: Option<Level>,
    /// Fields parsed from JSON or logfmt lines (other than message, level and time).
    pub attributes: Vec<(String, String)>,
    /// Number of physical lines joined into this event (1 for a plain line).
    pub lines: u32,
    /// Set by the crash detector. Boxed: crashes are rare, and every event is moved several
    /// times on its way to a batch.
    pub crash: Option<Box<CrashInfo>>,
    /// Where it was read from; `None` for events not read from a file.
    pub origin: Option<Origin>,
}

impl LogEvent {
    /// A plain one-line event with no parsed fields.
    pub fn line(container: &str, stream: Stream, time_unix_nano: u64, message: &str) -> Self {
        LogEvent {
            time_unix_nano,
            container: Arc::from(container),
            stream,
            message: message.to_owned(),
            level: None,
            attributes: Vec::new(),
            lines: 1,
            crash: None,
            origin: None,
        }
    }

    /// The value of a parsed attribute.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
