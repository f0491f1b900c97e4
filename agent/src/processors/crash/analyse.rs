//! Reading a crash out of a log event's text: which language, which exception (or panic) and
//! which frames, normalised so that the same bug reads the same across versions and pods, and
//! the fingerprint built from them.
//!
//! Normalisation drops what changes between builds, pods and requests but not between bugs:
//! line and column numbers, hex addresses and offsets, generated names (JVM lambdas and proxies,
//! `$1` inner classes, C# async state machines and display classes, Go `funcN` closures and
//! argument words, Dart frame indexes, Rust symbol hashes), version and hash directories in
//! paths, install prefixes before `site-packages/`, `node_modules/` and the like, and the
//! exception message. Only a crash with no frames at all (a single fatal line) falls back on its
//! message, reduced to a template with quoted text, numbers and identifiers removed.
//!
//! Each frame is also sorted by where its code lives (`in_app`): the fingerprint is built from
//! the application's own frames, so that test-framework, runtime and library frames never decide
//! a group by themselves.

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

use super::in_app::{self, AppPackages, FrameKind};
use crate::event::{Level, LogEvent};
use crate::processors::multiline::rules;

/// How many frames go into a fingerprint: the top in-app frames, or without any, the top
/// frames outside the runtime and test frameworks. One, as Bugsnag does (error class and top
/// in-project frame): where the exception was thrown names the bug, while its callers name
/// the path to it. Measured on the Defects4J traces (`grouping_tests`), one frame gives
/// pairwise precision 0.82 and recall 0.46, two 0.64 / 0.17, five 0.61 / 0.12.
pub(crate) const FINGERPRINT_FRAMES: usize = 1;

/// Most frames of one trace read (a JVM prints up to 1,024 per exception): in-app frames are
/// looked for this deep.
const MAX_FRAMES: usize = 256;

/// Longest exception type kept (a label value).
const MAX_KIND_LEN: usize = 120;

/// A crash read out of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// The exception that crashed the program (outermost for JVM/C#/JS, last for Python).
    pub kind: String,
    /// Every exception type of the chain, outermost first.
    pub chain: Vec<String>,
    /// `java`, `python`, `go`, `js`, `ruby`, `php`, `csharp`, `dart`, `rust` or `unknown`.
    pub language: &'static str,
    /// Normalised frames, innermost (where it was thrown) first.
    pub frames: Vec<Frame>,
}

/// One frame of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The frame normalised (no line numbers, generated names or install prefixes): what the
    /// fingerprint hashes.
    pub name: String,
    /// Where its code lives, for the application's packages: the function's qualified name
    /// (JVM, C#, Go, Rust) or the file (Python, JavaScript, Ruby, PHP, Dart).
    pub module: String,
    /// Where its code lives as the frame itself tells.
    pub kind: FrameKind,
}

impl Frame {
    fn new(name: String, module: impl Into<String>, kind: FrameKind) -> Self {
        Frame {
            name,
            module: module.into(),
            kind,
        }
    }

    /// A frame that is not code (a message template), kept only when there is nothing else.
    fn placeholder(name: String) -> Self {
        Frame::new(name, "", FrameKind::Unlisted)
    }
}

impl Analysis {
    /// The frames a fingerprint is built from: the top in-app frames; without any, the top
    /// frames that are neither runtime nor test framework; without those, the top frames.
    pub(crate) fn grouping_frames<'a>(&'a self, app: &AppPackages) -> Vec<&'a Frame> {
        let pick = |keep: &dyn Fn(&Frame) -> bool| -> Vec<&'a Frame> {
            self.frames
                .iter()
                .filter(|f| keep(f))
                .take(FINGERPRINT_FRAMES)
                .collect()
        };
        let in_app = pick(&|f| app.is_in_app(f.kind, &f.module));
        if !in_app.is_empty() {
            return in_app;
        }
        let outside_runtime = pick(&|f| !matches!(f.kind, FrameKind::Runtime | FrameKind::Test));
        if !outside_runtime.is_empty() {
            return outside_runtime;
        }
        pick(&|_| true)
    }

    /// The frame a person reading the crash looks at first: the first of
    /// [`Self::grouping_frames`], unless that is a message template standing in for frames.
    pub(crate) fn top_frame(&self, app: &AppPackages) -> Option<&Frame> {
        self.grouping_frames(app)
            .into_iter()
            .next()
            .filter(|f| !f.module.is_empty())
    }

    /// Stable hash (16 hex chars) of language, exception chain and [`Self::grouping_frames`].
    pub(crate) fn fingerprint(&self, app: &AppPackages) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.language.as_bytes());
        for kind in &self.chain {
            hasher.update(b"\x1f");
            hasher.update(kind.as_bytes());
        }
        hasher.update(b"\x1e");
        for frame in self.grouping_frames(app) {
            hasher.update(frame.name.as_bytes());
            hasher.update(b"\x1f");
        }
        hex::encode(&hasher.finalize()[..8])
    }
}

struct Patterns {
    jvm_type: Regex,
    python_file: Regex,
    python_error: Regex,
    dart_frame: Regex,
    rust_frame: Regex,
    rust_hash: Regex,
    go_func_n: Regex,
    php_uncaught_old: Regex,
    php_uncaught: Regex,
    php_error: Regex,
    php_frame: Regex,
    ruby_header: Regex,
    ruby_uncaught: Regex,
    ruby_frame: Regex,
    ruby_gem_version: Regex,
    ruby_levels: Regex,
    js_frame_with_place: Regex,
    browser_frame: Regex,
    line_col: Regex,
    hex: Regex,
    java_lambda: Regex,
    java_lambda_method: Regex,
    java_hash_suffix: Regex,
    java_generated: Regex,
    java_inner_number: Regex,
    csharp_generated: Regex,
    lambda_index: Regex,
    versioned_dir: Regex,
    file_hash: Regex,
    template_quoted: Regex,
    template_number: Regex,
    spaces: Regex,
}

/// Compiles a pattern written in this file.
fn re(pattern: &str) -> Regex {
    // Every pattern is a literal below and each is exercised by the tests, so compiling
    // cannot fail at run time.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("literal pattern compiles")
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    jvm_type: re(concat!(
        r"(?:^|[^\w$.])([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*",
        r"(?:Exception|Error|Throwable|Failure|Fault))(?:[^\w$]|$)"
    )),
    python_file: re(r#"^\s*File "([^"]*)", line \d+(?:, in (.+))?"#),
    python_error: re(r"^([A-Za-z_][\w.]*)(?::|$)"),
    dart_frame: re(r"^#\d+\s+(.+?)\s+\((.+)\)\s*$"),
    rust_frame: re(r"^\s*\d+:\s+(?:0x[0-9a-fA-F]+ - )?(.+?)\s*$"),
    rust_hash: re(r"::h[0-9a-f]{16}$"),
    go_func_n: re(r"\.(func|gowrap|glob\.\.func)\d+"),
    php_uncaught_old: re(r"exception '([^']+)' with message"),
    php_uncaught: re(r"Uncaught ([\w\\]+)(?::| in |$)"),
    php_error: re(r"PHP (Fatal error|Parse error|Warning|Notice|Catchable fatal error):\s*(.*)"),
    php_frame: re(r"^#\d+ (?:(.+?)\(\d+\)|(\[internal function\])): (.+)$"),
    ruby_header: re(r"^\s*([A-Z][\w:]*) \(.*\):\s*$"),
    ruby_uncaught: re(r"^(\S+?):\d+:in [`'](.*?)': .*\(([A-Z][\w:]*)\)\s*$"),
    ruby_frame: re(r"^\s+(?:from )?(.+?):\d+:in [`'](.*?)'?\s*$"),
    ruby_gem_version: re(r" \([\w.\-]+\)"),
    ruby_levels: re(r" \(\d+ levels\)"),
    js_frame_with_place: re(r"^(.*?) \((.*)\)$"),
    browser_frame: re(r"^([^\s@]*)@(\S+?)(?::\d+)*$"),
    line_col: re(r"(?::\d+)+$|:line \d+$"),
    hex: re(r"0x[0-9a-fA-F]+"),
    java_lambda: re(r"\$\$Lambda(?:\$\d+)?(?:/0x[0-9a-fA-F]+|/\d+)?"),
    java_lambda_method: re(r"lambda\$([\w$]*?)\$\d+"),
    java_hash_suffix: re(r"\$\$[0-9a-f]{6,}"),
    java_generated: re(r"(GeneratedMethodAccessor|GeneratedConstructorAccessor|\$Proxy)\d+"),
    java_inner_number: re(r"\$\d+"),
    csharp_generated: re(r"(d__|b__|m__|c__AnonStorey|DisplayClass|\|)\d+(?:_\d+)?"),
    lambda_index: re(r"<lambda_\d+>"),
    versioned_dir: re(r"^(?:v?\d+|.*\d\.\d.*|.*[0-9a-f]{7,}.*|.*@v?\d.*)$"),
    file_hash: re(r"\.[0-9a-f]{8,}\."),
    template_quoted: re(r#""[^"]*"|'[^']*'|`[^`]*`|<[^>]*>|\[[^\]]*\]"#),
    template_number: re(concat!(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|",
        r"0x[0-9a-fA-F]+|[\w.+-]+@[\w-]+\.[\w.]+|\w*\d[\w.:/-]*"
    )),
    spaces: re(r"\s+"),
});

/// Fields of structured lines that may hold a stack trace.
pub(crate) const STACK_ATTRIBUTES: [&str; 8] = [
    "stack_trace",
    "stacktrace",
    "stack",
    "exception",
    "exc_info",
    "error.stack",
    "exception.stacktrace",
    "err.stack",
];

/// Reads a crash out of `event`: a joined stack trace (in the message or in a stack
/// attribute of a structured line) or a fatal single line.
pub(crate) fn analyse_event(event: &LogEvent) -> Option<Analysis> {
    if event.lines > 1 || event.message.contains('\n') {
        if let Some(found) = analyse_trace(&event.message) {
            return Some(found);
        }
    }
    for (key, value) in &event.attributes {
        if value.contains('\n') && STACK_ATTRIBUTES.contains(&key.as_str()) {
            if let Some(found) = analyse_trace(value) {
                return Some(found);
            }
        }
    }
    analyse_fatal_line(&event.message, event.level)
}

/// A stack trace of any supported language.
pub(crate) fn analyse_trace(text: &str) -> Option<Analysis> {
    let lines: Vec<&str> = text.lines().collect();
    let first = *lines.first()?;
    let found = if lines
        .iter()
        .any(|l| l.trim_end().ends_with("Traceback (most recent call last):"))
    {
        python(&lines)
    } else if first.trim_end() == "Unhandled exception:" {
        dart(&lines)
    } else if first.starts_with("thread '") && first.contains("' panicked at ") {
        Some(rust(&lines))
    } else if is_go(first) {
        go(&lines)
    } else if PATTERNS.php_error.is_match(first)
        || PATTERNS.php_uncaught_old.is_match(first)
        || first.contains("Fatal error: Uncaught ")
    {
        Some(php(&lines))
    } else if PATTERNS.ruby_header.is_match(first) || PATTERNS.ruby_uncaught.is_match(first) {
        ruby(&lines)
    } else {
        jvm_family(&lines)
    };
    found.map(with_frames_or_template(text))
}

/// A single line that reports a crash on its own.
fn analyse_fatal_line(line: &str, level: Option<Level>) -> Option<Analysis> {
    let t = line.trim();
    let found = if t.starts_with("panic: ")
        || t.starts_with("fatal error: ")
        || t.contains("http: panic serving ")
    {
        go(&[t])
    } else if t.contains("PHP ")
        && (t.contains("PHP Fatal error:") || t.contains("PHP Parse error:"))
    {
        Some(php(&[t]))
    } else if t.starts_with("Exception in thread ") {
        jvm_family(&[t])
    } else if t.starts_with("thread '") && t.contains("' panicked at ") {
        Some(rust(&[t]))
    } else if level == Some(Level::Fatal) {
        Some(Analysis {
            kind: "fatal".to_owned(),
            chain: vec!["fatal".to_owned()],
            language: "unknown",
            frames: Vec::new(),
        })
    } else {
        None
    };
    found.map(with_frames_or_template(t))
}

/// A crash without frames is told apart by its message template.
fn with_frames_or_template(text: &str) -> impl FnOnce(Analysis) -> Analysis + '_ {
    move |mut found| {
        if found.frames.is_empty() {
            let first = text.lines().next().unwrap_or_default();
            found
                .frames
                .push(Frame::placeholder(message_template(first)));
        }
        found
    }
}

/// `text` with quoted parts, numbers, hex values, ids, addresses and e-mails removed.
pub(crate) fn message_template(text: &str) -> String {
    let p = &*PATTERNS;
    let text = p.template_quoted.replace_all(text, "_");
    let text = p.template_number.replace_all(&text, "_");
    let text = p.spaces.replace_all(&text, " ");
    text.trim().chars().take(200).collect()
}

fn short_kind(kind: &str) -> String {
    let kind = kind.trim();
    if kind.chars().count() <= MAX_KIND_LEN {
        kind.to_owned()
    } else {
        kind.chars().take(MAX_KIND_LEN).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and names.

/// Drops what varies between builds and machines from a source path: scheme and host, query,
/// line and column, install prefixes before package folders, version and hash directories, and
/// content hashes in bundle file names.
pub(crate) fn normalise_path(path: &str) -> String {
    let p = &*PATTERNS;
    let mut path = path.trim().replace('\\', "/");
    if let Some(i) = path.find("://") {
        let rest = &path[i + 3..];
        path = rest
            .find('/')
            .map_or_else(String::new, |j| rest[j..].to_owned());
    }
    if let Some(i) = path.find(['?', '#']) {
        path.truncate(i);
    }
    let path = p.line_col.replace(&path, "").into_owned();
    let mut path = path.as_str();
    for marker in [
        "/site-packages/",
        "/dist-packages/",
        "/node_modules/",
        "/gems/",
        "/vendor/",
        "/pkg/mod/",
    ] {
        if let Some(i) = path.rfind(marker) {
            path = &path[i + 1..];
        }
    }
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            if i == last {
                p.file_hash.replace_all(segment, ".").into_owned()
            } else if segment.contains(|c: char| c.is_ascii_digit())
                && p.versioned_dir.is_match(segment)
            {
                "*".to_owned()
            } else {
                (*segment).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Removes generated parts of a JVM, C# or JS function name.
fn normalise_name(name: &str) -> String {
    let p = &*PATTERNS;
    let name = p.java_lambda.replace_all(name, "$$$$Lambda");
    let name = p.java_lambda_method.replace_all(&name, "lambda$$$1");
    let name = p.java_hash_suffix.replace_all(&name, "$$$$");
    let name = p.java_generated.replace_all(&name, "$1");
    let name = p.java_inner_number.replace_all(&name, "$$");
    let name = p.csharp_generated.replace_all(&name, "$1");
    let name = p.lambda_index.replace_all(&name, "<lambda>");
    let name = p.hex.replace_all(&name, "");
    p.spaces.replace_all(name.trim(), " ").into_owned()
}

/// The name in `name(args)`: what comes before the final bracketed argument list.
fn strip_call_args(call: &str) -> &str {
    let call = call.trim_end();
    if !call.ends_with(')') {
        return call;
    }
    let mut depth = 0usize;
    for (i, c) in call.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return call[..i].trim_end();
                }
            }
            _ => {}
        }
    }
    call
}

// ---------------------------------------------------------------------------------------------
// JVM, JavaScript and C#.

fn jvm_family(lines: &[&str]) -> Option<Analysis> {
    let p = &*PATTERNS;
    let header_at = lines.iter().position(|l| rules::is_exception_line(l))?;
    let header = lines[header_at];
    let mut chain = Vec::new();
    // The class that starts the line (`junit.framework.ComparisonFailure: …`), else the first
    // name ending like an exception in it (`Unhandled: System.InvalidOperationException`).
    let first_type = |line: &str| {
        rules::jvm_class_name(line)
            .or_else(|| {
                p.jvm_type
                    .captures(line)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str())
            })
            .map(str::to_owned)
    };
    chain.push(first_type(header).unwrap_or_else(|| "Error".to_owned()));
    // C# prints inner exceptions on the header line after `--->`.
    for inner in header.split("---> ").skip(1) {
        if let Some(kind) = first_type(inner) {
            chain.push(kind);
        }
    }
    let mut frames = Vec::new();
    let mut raw_frames = Vec::new();
    let mut after_nested = false;
    for line in &lines[header_at + 1..] {
        let t = line.trim_start();
        if let Some(rest) = t
            .strip_prefix("Caused by: ")
            .or_else(|| t.strip_prefix("Suppressed: "))
            .or_else(|| t.strip_prefix("---> "))
        {
            chain.extend(first_type(rest));
        } else if t.starts_with("nested exception is") {
            after_nested = true;
            continue;
        } else if after_nested && rules::is_exception_line(line) {
            chain.extend(first_type(line));
        } else if let Some(frame) = t.strip_prefix("at ").or_else(|| t.strip_prefix("eval at ")) {
            raw_frames.push(frame);
        } else if p.browser_frame.is_match(t) && t.contains('@') {
            raw_frames.push(t);
        }
        after_nested = false;
    }
    chain.dedup();
    let text = lines.join("\n");
    let language = jvm_language(&chain[0], header, &raw_frames, &text);
    for raw in raw_frames.iter().take(MAX_FRAMES) {
        let frame = match language {
            "csharp" => csharp_frame(raw),
            "js" => js_frame(raw),
            _ => java_frame(raw),
        };
        if !frame.name.is_empty() {
            frames.push(frame);
        }
    }
    Some(Analysis {
        kind: short_kind(&chain[0]),
        chain: chain.iter().map(|k| short_kind(k)).collect(),
        language,
        frames,
    })
}

fn jvm_language(kind: &str, header: &str, frames: &[&str], text: &str) -> &'static str {
    let csharp = text.contains("--- End of ")
        || header.contains("---> ")
        || kind.starts_with("System.")
        || kind.starts_with("Microsoft.")
        || frames
            .iter()
            .any(|f| f.contains(":line ") || f.contains(" [0x") || f.contains(") in "));
    if csharp {
        return "csharp";
    }
    if frames
        .iter()
        .any(|f| f.contains(".java:") || f.contains("(Native Method)"))
    {
        return "java";
    }
    let js_kinds = [
        "Error",
        "TypeError",
        "ReferenceError",
        "SyntaxError",
        "RangeError",
        "EvalError",
        "URIError",
        "AggregateError",
    ];
    let js = header.trim_start().starts_with("V8 errors")
        || text.contains("\nNode.js v")
        || js_kinds.contains(&kind)
        || frames.iter().any(|f| {
            f.contains(".js:")
                || f.contains(".mjs:")
                || f.contains(".ts:")
                || f.contains("<anonymous>")
                || f.contains("(native)")
                || f.contains("node:")
                || f.contains('@')
        });
    if js {
        "js"
    } else {
        "java"
    }
}

fn java_frame(raw: &str) -> Frame {
    // `com.x.Y.method(Y.java:60) ~[jar:1.0]` → `com.x.Y.method`; module prefixes such as
    // `java.base@21/` or `app//` are dropped.
    let name = raw.split('(').next().unwrap_or(raw).trim();
    let name = name.rsplit('/').next().unwrap_or(name);
    let name = normalise_name(name);
    let kind = in_app::jvm_kind(&name);
    Frame::new(name.clone(), name, kind)
}

fn csharp_frame(raw: &str) -> Frame {
    // `Ns.Type.Method(Args) in C:\src\File.cs:line 36` and Mono's
    // `Ns.Type.Method (Args) [0x00012] in /src/File.cs:12`: the file and offsets go.
    let mut frame = raw;
    if let Some(i) = frame.find(" [0x") {
        frame = &frame[..i];
    }
    if let Some(i) = frame.rfind(") in ") {
        frame = &frame[..=i];
    }
    let name = normalise_name(frame);
    let kind = in_app::csharp_kind(&name);
    Frame::new(name.clone(), name, kind)
}

fn js_frame(raw: &str) -> Frame {
    let p = &*PATTERNS;
    let raw = raw.trim().trim_end_matches('{').trim_end();
    let frame = |name: String, place: &str| {
        let path = normalise_path(place);
        Frame::new(name, path.clone(), in_app::js_kind(&path))
    };
    if let Some(c) = p.browser_frame.captures(raw) {
        if raw.contains('@') {
            let function = c.get(1).map_or("", |m| m.as_str());
            let place = c.get(2).map_or("", |m| m.as_str());
            return frame(
                format!("{}@{}", normalise_name(function), normalise_path(place)),
                place,
            );
        }
    }
    match p.js_frame_with_place.captures(raw) {
        Some(c) => {
            let function = c.get(1).map_or("", |m| m.as_str());
            let place = c.get(2).map_or("", |m| m.as_str());
            // `eval at f (eval at g (file.js:1:2))`: keep the outer place only.
            let place = place
                .split(" (")
                .last()
                .unwrap_or(place)
                .trim_end_matches(')');
            frame(
                format!("{} ({})", normalise_name(function), normalise_path(place)),
                place,
            )
        }
        None => frame(normalise_path(raw), raw),
    }
}

// ---------------------------------------------------------------------------------------------
// Python.

fn python(lines: &[&str]) -> Option<Analysis> {
    let p = &*PATTERNS;
    let mut chain = Vec::new();
    let mut sections: Vec<Vec<Frame>> = Vec::new();
    for line in lines {
        let t = line.trim_end();
        if t.ends_with("Traceback (most recent call last):") {
            sections.push(Vec::new());
        } else if let Some(c) = p.python_file.captures(line) {
            let raw_file = c.get(1).map_or("", |m| m.as_str());
            let file = normalise_path(raw_file);
            let function = c.get(2).map_or("", |m| m.as_str().trim());
            if let Some(section) = sections.last_mut() {
                section.push(Frame::new(
                    format!("{file} in {function}"),
                    file.clone(),
                    in_app::python_kind(raw_file),
                ));
            }
        } else if !line.starts_with([' ', '\t'])
            && !t.starts_with("During handling of the above exception")
            && !t.starts_with("The above exception was the direct cause")
        {
            if let Some(c) = p.python_error.captures(t) {
                chain.extend(c.get(1).map(|m| m.as_str().to_owned()));
            }
        }
    }
    // The traceback printed last is the one that ended the program; its innermost call is
    // printed last.
    let frames: Vec<Frame> = sections
        .pop()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(MAX_FRAMES)
        .collect();
    let kind = chain
        .last()
        .cloned()
        .unwrap_or_else(|| "Traceback".to_owned());
    if chain.is_empty() {
        chain.push(kind.clone());
    }
    Some(Analysis {
        kind: short_kind(&kind),
        chain: chain.iter().map(|k| short_kind(k)).collect(),
        language: "python",
        frames,
    })
}

// ---------------------------------------------------------------------------------------------
// Go.

fn is_go(first: &str) -> bool {
    first.starts_with("panic: ")
        || first.contains(" panic: ")
        || first.starts_with("fatal error: ")
        || first.contains("http: panic serving ")
        || first.starts_with("goroutine ")
        || (first.starts_with("SIG") && first.contains(": "))
}

/// `index out of range [5] with length 3` → `index out of range`.
fn go_error_class(message: &str) -> String {
    let end = message.find(['[', '(', '"', '\'']).unwrap_or(message.len());
    let class: String = message[..end]
        .chars()
        .take_while(|c| !c.is_ascii_digit())
        .collect();
    class.trim().trim_end_matches(':').trim().to_owned()
}

fn go(lines: &[&str]) -> Option<Analysis> {
    let first = lines.first()?;
    let kind = if let Some(i) = first.find("panic: ") {
        let message = first[i + "panic: ".len()..].trim_end_matches(" [recovered]");
        match message.strip_prefix("runtime error: ") {
            Some(error) => format!("runtime error: {}", go_error_class(error)),
            None => "panic".to_owned(),
        }
    } else if let Some(error) = first.trim_start().strip_prefix("fatal error: ") {
        format!("fatal error: {}", go_error_class(error))
    } else if let Some((signal, _)) = first.split_once(": ").filter(|_| first.starts_with("SIG")) {
        signal.to_owned()
    } else {
        "panic".to_owned()
    };
    // Frames of the first goroutine (the one that crashed): function lines without their
    // argument words, sorted with the file line that follows each.
    let mut frames: Vec<Frame> = Vec::new();
    let mut pending: Option<String> = None;
    let mut in_goroutine = false;
    let finish = |function: String, file: &str, frames: &mut Vec<Frame>| {
        let kind = in_app::go_kind(&function, file);
        frames.push(Frame::new(function.clone(), function, kind));
    };
    for line in lines {
        if line.starts_with("goroutine ") {
            if in_goroutine {
                break;
            }
            in_goroutine = true;
            continue;
        }
        if !in_goroutine {
            continue;
        }
        if line.trim().is_empty() {
            if frames.is_empty() && pending.is_none() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(function) = pending.take() {
                finish(function, line.trim(), &mut frames);
            }
            continue;
        }
        if let Some(function) = pending.take() {
            finish(function, "", &mut frames);
        }
        if line.starts_with("created by ") || frames.len() >= MAX_FRAMES {
            continue;
        }
        let name = strip_call_args(line);
        pending = Some(PATTERNS.go_func_n.replace_all(name, ".$1").into_owned());
    }
    if let Some(function) = pending {
        finish(function, "", &mut frames);
    }
    Some(Analysis {
        chain: vec![kind.clone()],
        kind: short_kind(&kind),
        language: "go",
        frames,
    })
}

// ---------------------------------------------------------------------------------------------
// Rust.

fn rust(lines: &[&str]) -> Analysis {
    let p = &*PATTERNS;
    let first = lines.first().copied().unwrap_or_default();
    let after = first
        .split_once("' panicked at ")
        .map_or("", |(_, rest)| rest);
    // Old format: `panicked at 'message', src/main.rs:2:5`; new: `panicked at src/main.rs:2:5:`.
    let location = match after.rfind("', ") {
        Some(i) if after.starts_with('\'') => &after[i + 3..],
        _ => after.trim_end().trim_end_matches(':'),
    };
    let location = normalise_path(location);
    let mut frames = vec![Frame::new(
        location.clone(),
        location.clone(),
        in_app::rust_kind(&location),
    )];
    let mut in_backtrace = false;
    for line in lines.iter().skip(1) {
        if line.trim_end() == "stack backtrace:" {
            in_backtrace = true;
            continue;
        }
        if !in_backtrace {
            continue;
        }
        if let Some(c) = p.rust_frame.captures(line) {
            let symbol = c.get(1).map_or("", |m| m.as_str());
            let symbol = p.rust_hash.replace(symbol, "").into_owned();
            // The panic machinery says nothing about the bug: left out altogether.
            let machinery = symbol.starts_with("rust_panic")
                || symbol.starts_with("core::panicking")
                || symbol.starts_with("std::panicking")
                || symbol.starts_with("std::rt::")
                || symbol.starts_with("rust_begin_unwind")
                || symbol.starts_with("__rust");
            if !machinery && frames.len() < MAX_FRAMES {
                let kind = in_app::rust_kind(&symbol);
                frames.push(Frame::new(symbol.clone(), symbol, kind));
            }
        }
    }
    Analysis {
        kind: "panic".to_owned(),
        chain: vec!["panic".to_owned()],
        language: "rust",
        frames,
    }
}

// ---------------------------------------------------------------------------------------------
// PHP.

fn php(lines: &[&str]) -> Analysis {
    let p = &*PATTERNS;
    let first = lines.first().copied().unwrap_or_default();
    let kind = if let Some(c) = p.php_uncaught_old.captures(first) {
        c[1].to_owned()
    } else if let Some(c) = p.php_uncaught.captures(first) {
        c[1].to_owned()
    } else if let Some(c) = p.php_error.captures(first) {
        format!("PHP {}", &c[1])
    } else {
        "PHP Fatal error".to_owned()
    };
    let frames = lines
        .iter()
        .skip(1)
        .filter_map(|line| p.php_frame.captures(line.trim()))
        .take(MAX_FRAMES)
        .map(|c| {
            let place = c
                .get(1)
                .map(|m| normalise_path(m.as_str()))
                .or_else(|| c.get(2).map(|m| m.as_str().to_owned()))
                .unwrap_or_default();
            let call = c.get(3).map_or("", |m| m.as_str());
            let kind = in_app::php_kind(&place);
            Frame::new(format!("{place}: {}", strip_call_args(call)), place, kind)
        })
        .collect();
    let mut found = Analysis {
        chain: vec![short_kind(&kind)],
        kind: short_kind(&kind),
        language: "php",
        frames,
    };
    if found.frames.is_empty() && kind.starts_with("PHP ") {
        // A plain fatal error has no frames: its message, without the file and line, is all
        // there is to tell one from another.
        let message = p.php_error.captures(first).map_or("", |c| {
            let m = c.get(2).map_or("", |m| m.as_str());
            m.split(" in /").next().unwrap_or(m)
        });
        found
            .frames
            .push(Frame::placeholder(message_template(message)));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Ruby.

fn ruby(lines: &[&str]) -> Option<Analysis> {
    let p = &*PATTERNS;
    let first = lines.first()?;
    let mut frames = Vec::new();
    let kind = if let Some(c) = p.ruby_header.captures(first) {
        c[1].to_owned()
    } else {
        let c = p.ruby_uncaught.captures(first)?;
        frames.push(ruby_frame(&c[1], &c[2]));
        c[3].to_owned()
    };
    for line in lines.iter().skip(1) {
        if frames.len() >= MAX_FRAMES {
            break;
        }
        if let Some(c) = p.ruby_frame.captures(line) {
            let file = p.ruby_gem_version.replace_all(&c[1], "");
            frames.push(ruby_frame(&file, &c[2]));
        }
    }
    Some(Analysis {
        chain: vec![short_kind(&kind)],
        kind: short_kind(&kind),
        language: "ruby",
        frames,
    })
}

fn ruby_frame(file: &str, method: &str) -> Frame {
    let path = normalise_path(file);
    Frame::new(
        format!("{path} in {}", ruby_method(method)),
        path,
        in_app::ruby_kind(file),
    )
}

fn ruby_method(method: &str) -> String {
    PATTERNS
        .ruby_levels
        .replace_all(method.trim_end_matches('\''), "")
        .into_owned()
}

// ---------------------------------------------------------------------------------------------
// Dart.

/// The error class behind the fixed texts of Dart's `toString()`s.
fn dart_kind(message: &str) -> String {
    const KNOWN: [(&str, &str); 11] = [
        ("Bad state", "StateError"),
        ("Invalid argument", "ArgumentError"),
        ("Unsupported operation", "UnsupportedError"),
        ("Concurrent modification", "ConcurrentModificationError"),
        ("Out of Memory", "OutOfMemoryError"),
        ("Stack Overflow", "StackOverflowError"),
        ("Assertion failed", "AssertionError"),
        (
            "Cannot instantiate abstract class",
            "AbstractClassInstantiationError",
        ),
        ("Reading static variable", "CyclicInitializationError"),
        ("Null check operator used on a null value", "TypeError"),
        ("LateInitializationError", "LateInitializationError"),
    ];
    let m = message.trim();
    if let Some(rest) = m.strip_prefix("Instance of '") {
        return rest.split('\'').next().unwrap_or("Object").to_owned();
    }
    for (prefix, kind) in KNOWN {
        if m.starts_with(prefix) {
            return kind.to_owned();
        }
    }
    if m.contains("Switch case fall-through") {
        return "FallThroughError".to_owned();
    }
    if m.contains("malformed type") || m.contains("is not a subtype of") {
        return "TypeError".to_owned();
    }
    let word: String = m
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !word.is_empty() && word.starts_with(|c: char| c.is_ascii_uppercase()) {
        word
    } else {
        "Error".to_owned()
    }
}

fn dart(lines: &[&str]) -> Option<Analysis> {
    let p = &*PATTERNS;
    let kind = dart_kind(lines.get(1).copied().unwrap_or_default());
    let frames = lines
        .iter()
        .skip(1)
        .filter_map(|line| p.dart_frame.captures(line))
        .take(MAX_FRAMES)
        .map(|c| {
            let function = normalise_name(c.get(1).map_or("", |m| m.as_str()));
            let raw_place = c.get(2).map_or("", |m| m.as_str());
            let place = normalise_path(raw_place);
            let kind = in_app::dart_kind(raw_place);
            Frame::new(format!("{function} ({place})"), place, kind)
        })
        .collect();
    Some(Analysis {
        chain: vec![kind.clone()],
        kind,
        language: "dart",
        frames,
    })
}
