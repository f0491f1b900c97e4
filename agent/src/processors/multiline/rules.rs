//! The stack-trace state machine of the multi-line joiner: which line may start a trace
//! ([`start`]) and, once a trace is open, what each further line does to it ([`step`]).
//!
//! One state set per language family, in the spirit of fluent-plugin-detect-exceptions:
//! Java/JVM, JavaScript (V8 and browsers) and C# share the "header line, then `at` frames"
//! shape; Python, PHP, Go, Ruby, Dart and Rust have their own. Lines the machine is not sure
//! about (a blank line between goroutines, a Node source excerpt before the error, a Go frame's
//! function line before its file line) are *tentative*: they join only when a later line
//! confirms the trace, otherwise they are handed back and read again as ordinary lines.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

/// Where an open trace stands after its last line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// After a JVM/JS/C# exception line (`java.lang.X: msg`, `TypeError: msg`, `Caused by:`).
    JavaHeader,
    /// After `nested exception is:`: the next line names the nested exception.
    JavaNested,
    /// Inside `at …` frames.
    JavaFrames,
    /// A blank line after frames: Node prints `Node.js vX` after it.
    JavaAfterFrames,
    /// Inside the `{ code: …, errno: … }` properties Node prints after the last frame: lines
    /// shaped like `util.inspect`'s (`  key: value`, deeper-indented nested values) up to a
    /// `}` in the first column.
    JsProps,
    /// After Node's `file.js:12` line that precedes an uncaught error.
    NodeSource,
    /// After the `^` caret under Node's source excerpt.
    NodeCaret,
    /// Inside a Python traceback.
    PyFrames,
    /// After a Python exception line: a chained traceback may follow.
    PyAfterError,
    /// After "During handling of the above exception…" or "The above exception was…".
    PyChain,
    /// After a PHP error or exception line.
    PhpHeader,
    /// Inside PHP `#N` frames.
    PhpFrames,
    /// After a Go `panic:` or `fatal error:` line.
    GoPanic,
    /// Inside a goroutine: function lines, `created by`, blank lines between goroutines.
    GoFrames,
    /// After a Go function line: its tab-indented file line must follow.
    GoFile,
    /// After a blank line in a Go dump: another goroutine may follow.
    GoBetween,
    /// After a Rails `XError (message):` line.
    RubyHeader,
    /// Inside Ruby frames.
    RubyFrames,
    /// After Dart's `Unhandled exception:`.
    DartHeader,
    /// Inside a Dart error description, before the first frame.
    DartMessage,
    /// Inside Dart `#N` frames.
    DartFrames,
    /// After a Rust `panicked at …:` line whose message follows on the next line.
    RustHeader,
    /// After a Rust panic message.
    RustMessage,
    /// Inside a Rust `stack backtrace:`.
    RustBacktrace,
}

/// What one line does to an open trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The line belongs to the trace, and so do the tentative lines before it.
    Continue(State),
    /// The line may belong to the trace; a later `Continue` or `End` decides.
    Maybe(State),
    /// The line is the last line of the trace.
    End,
    /// The line is not part of the trace, which ended before the tentative lines.
    Break,
}

struct Patterns {
    /// Cheap pre-filter: a line that holds none of these words starts no trace. A plain
    /// multi-literal searcher (SIMD on x86-64), without a regex engine behind it.
    any_start: AhoCorasick,
    java_header: Regex,
    jvm_class_header: Regex,
    go_panic: Regex,
    go_goroutine: Regex,
    php_start: Regex,
    ruby_header: Regex,
    ruby_uncaught: Regex,
    ruby_frame: Regex,
    node_source: Regex,
    java_frame: Regex,
    js_frame_with_props: Regex,
    js_prop: Regex,
    browser_frame: Regex,
    java_more: Regex,
    python_error: Regex,
    dart_frame: Regex,
    rust_frame: Regex,
    klog: Regex,
    record_prefix: Regex,
}

/// Compiles a pattern written in this file.
fn re(pattern: &str) -> Regex {
    // Every pattern is a literal below and each is exercised by the corpus tests, so
    // compiling cannot fail at run time.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("literal pattern compiles")
}

/// Words at least one of which is in every line that starts a trace, bar the two shapes
/// [`start`] checks by their ending.
const START_WORDS: [&str; 14] = [
    "Exception",
    "Error",
    "Throwable",
    "V8 errors",
    "panic",
    "Traceback",
    "Unhandled exception:",
    "thread '",
    "PHP ",
    "exception '",
    "goroutine ",
    "fatal error: ",
    "SIG",
    ":in ",
];

/// Builds the searcher for [`START_WORDS`].
fn start_words() -> AhoCorasick {
    // Fourteen short literals with default options: building cannot fail at run time (the
    // only errors are for pattern sets far beyond the automaton's size limits).
    #[allow(clippy::expect_used)]
    // Leftmost-first lets the searcher use its packed SIMD (Teddy) prefilter.
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(START_WORDS)
        .expect("start words build a searcher")
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    any_start: start_words(),
    java_header: re(concat!(
        r"(?:Exception|Error|Throwable)(?::|\s*$)|^V8 errors stack trace\s*$|",
        r"Error \[[A-Z0-9_]+\]:"
    )),
    // Any JVM class name as the first word, with a message or alone: `junit.framework.
    // ComparisonFailure: expected…`, `org.mockito.exceptions.verification.WantedButNotInvoked:`,
    // `org.apache.commons.math.MathRuntimeException$4: …`.
    jvm_class_header: re(concat!(
        r#"^(?:Exception in thread "[^"]*" )?((?:[a-z_][\w$]*\.)+[A-Z_$][\w$]*)"#,
        r"(?:: |:$|$)"
    )),
    go_panic: re(r"(?-u:\b)panic: |^fatal error: |http: panic serving |^SIG[A-Z]+: "),
    go_goroutine: re(r"^goroutine \d+(?: [^\[]*)?\[[^\]]*\]:\s*$"),
    php_start: re(concat!(
        r"PHP (?:Fatal error|Parse error|Warning|Notice|Catchable fatal error):|",
        r"(?:^|\s)Fatal error: Uncaught |exception '[^']+' with message '"
    )),
    ruby_header: re(r"^\s*[A-Z][\w:]* \(.*\):\s*$"),
    ruby_uncaught: re(r"^\S.*:\d+:in [`'].*\([A-Z][\w:]*\)\s*$"),
    ruby_frame: re(r"^\s+(?:from )?\S.*:\d+:in [`']"),
    node_source: re(r"^(?:node:[\w/]+|\S+\.(?:js|mjs|cjs|ts|jsx|tsx)):\d+\s*$"),
    // Not `at [`: JS and JVM frames never start so, Jackson's ` at [Source: …]` message does.
    java_frame: re(r"^\s+(?:eval )?at [^\s\[]"),
    // A V8 frame followed by the error's own properties: `at f (file.js:1:2) {`.
    js_frame_with_props: re(r"(?::\d+\)?|\(native\)|<anonymous>\)?) \{$"),
    // `  code: 'EADDRINUSE',`, `  [cause]: Error: …`, `  'x-id': 1`, nested values four or
    // more spaces in, closing brackets at two.
    js_prop: re(r#"^(?:  (?:[\w$'"][^\s:]*|\[[^\]]*\]): |    +\S|  [\]})])"#),
    browser_frame: re(r"^[^\s@]*@\S+:\d+(?::\d+)?\s*$"),
    java_more: re(r"^\s*\.\.\. \d+ (?:more|common frames omitted)"),
    python_error: re(r"^[A-Za-z_][\w.]*(?::.*)?$"),
    dart_frame: re(r"^#\d+\s+\S.*\(.+\)\s*$"),
    rust_frame: re(r"^\s+\d+: "),
    klog: re(r"^[IWEF]\d{4} "),
    record_prefix: re(concat!(
        r"^(?:\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|\d\d/\w{3}/\d{4}|\d{10}|",
        r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d|<\d{1,3}>|\{\s*\x22[^\x22]*\x22\s*:|",
        r"\[(?:\d|(?i:trace|debug|info|warn|warning|error|fatal|critical)\b))"
    )),
});

/// The state a line opens, if it can start a stack trace.
pub(crate) fn start(line: &str) -> Option<State> {
    let p = &*PATTERNS;
    let trimmed = line.trim_end();
    // Literal pre-filter (fast on every ordinary line); the two shapes without a keyword are
    // a Rails header ending in `):` and Node's `file.js:12` line, which ends in a digit.
    if !p.any_start.is_match(line)
        && !trimmed.ends_with("):")
        && !trimmed.ends_with(|c: char| c.is_ascii_digit())
        && !may_be_jvm_class_header(line)
    {
        return None;
    }
    if trimmed.ends_with("Traceback (most recent call last):") {
        return Some(State::PyFrames);
    }
    if trimmed == "Unhandled exception:" {
        return Some(State::DartHeader);
    }
    if line.starts_with("thread '") && line.contains("' panicked at ") {
        // Since Rust 1.73 the message follows on its own line after `panicked at file:l:c:`.
        return Some(if trimmed.ends_with(':') {
            State::RustHeader
        } else {
            State::RustMessage
        });
    }
    if p.go_goroutine.is_match(line) {
        return Some(State::GoFrames);
    }
    if p.go_panic.is_match(line) {
        return Some(State::GoPanic);
    }
    if p.php_start.is_match(line) {
        return Some(State::PhpHeader);
    }
    if p.ruby_header.is_match(line) {
        return Some(State::RubyHeader);
    }
    if p.ruby_uncaught.is_match(line) {
        return Some(State::RubyFrames);
    }
    if p.node_source.is_match(line) {
        return Some(State::NodeSource);
    }
    if p.java_header.is_match(trimmed) || p.jvm_class_header.is_match(trimmed) {
        return Some(State::JavaHeader);
    }
    None
}

/// Cheap test before [`Patterns::jvm_class_header`]: the first word starts with a lower-case
/// letter, holds a dot and ends the line or is followed by `:`.
fn may_be_jvm_class_header(line: &str) -> bool {
    let line = line
        .strip_prefix("Exception in thread ")
        .map_or(line, |rest| {
            rest.split_once("\" ").map_or(rest, |(_, after)| after)
        });
    if !line.starts_with(|c: char| c.is_ascii_lowercase()) {
        return false;
    }
    let line = line.trim_end();
    let word_end = line
        .find(|c: char| c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    line[..word_end].contains('.') && matches!(line[word_end..].chars().next(), None | Some(':'))
}

/// The JVM class a line starts with, as in `org.junit.ComparisonFailure: expected…` or
/// `Exception in thread "main" com.acme.Rejected`.
pub(crate) fn jvm_class_name(line: &str) -> Option<&str> {
    let line = line.trim();
    if !may_be_jvm_class_header(line) {
        return None;
    }
    PATTERNS
        .jvm_class_header
        .captures(line)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// True for a line that starts a JVM, JavaScript or C# exception.
pub(crate) fn is_exception_line(line: &str) -> bool {
    let trimmed = line.trim_end();
    let p = &*PATTERNS;
    p.java_header.is_match(trimmed) || p.jvm_class_header.is_match(trimmed)
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// True for a line that looks like the start of an ordinary log record (a timestamp, a level,
/// a bracketed or JSON prefix, a klog header): such a line never continues a trace tentatively.
pub(crate) fn looks_like_record(line: &str) -> bool {
    let Some(first) = line.chars().next() else {
        return false;
    };
    if first.is_ascii_digit() || matches!(first, '[' | '{' | '<') {
        return true;
    }
    if PATTERNS.klog.is_match(line) {
        return true;
    }
    let word: String = line
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let after = line[word.len()..].chars().next();
    let level_word = matches!(
        word.as_str(),
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "WARNING" | "ERROR" | "FATAL" | "CRITICAL"
    ) && matches!(after, None | Some(' ' | ':' | ']' | '\t' | '|'));
    let key_value = matches!(word.as_str(), "level" | "lvl" | "time" | "ts" | "msg" | "t")
        && after == Some('=');
    level_word || key_value
}

/// A line that may be part of an exception message spanning several lines.
fn may_continue_message(line: &str) -> bool {
    !looks_like_record(line) && start(line).is_none()
}

/// True for a line that a logger wrote as a record of its own: it starts with a timestamp, a
/// syslog priority, a JSON object's first key, a bracketed timestamp or level, a level word,
/// a klog header or a `level=`-style key. Stricter than [`looks_like_record`]: a JVM message
/// line such as `[Header2`, `{`, `}` or `1.5 expected` is not one.
fn is_log_record(line: &str) -> bool {
    let p = &*PATTERNS;
    if p.record_prefix.is_match(line) || p.klog.is_match(line) {
        return true;
    }
    let word_len = line
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(line.len());
    let (word, after) = line.split_at(word_len);
    let level_word = matches!(
        word,
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "WARNING" | "ERROR" | "FATAL" | "CRITICAL"
    ) && matches!(
        after.chars().next(),
        None | Some(' ' | ':' | ']' | '\t' | '|')
    );
    // `t=` only before a timestamp: `t=09]>` is a piece of a test's expected text.
    let key_value = match word {
        "level" | "lvl" | "time" | "ts" | "msg" => after.starts_with('='),
        "t" => after.strip_prefix('=').is_some_and(|value| {
            value.starts_with('"')
                || value.get(..5).is_some_and(|year| {
                    year.ends_with('-') && year[..4].bytes().all(|b| b.is_ascii_digit())
                })
        }),
        _ => false,
    };
    level_word || key_value
}

/// A line of a JVM exception message that spans lines (test-assertion diffs, help texts,
/// Jackson's ` at [Source: …]`, pretty-printed JSON): anything but a record of the logger or
/// a line, in the first column, that starts another trace. Such lines are held tentatively
/// until a frame confirms them.
fn may_continue_jvm_message(line: &str) -> bool {
    !is_log_record(line) && (is_indented(line) || start(line).is_none())
}

/// What `line` does to a trace in `state`.
pub(crate) fn step(state: State, line: &str) -> Step {
    use State::*;
    use Step::*;
    let p = &*PATTERNS;
    match state {
        JavaHeader | JavaFrames => {
            if p.java_frame.is_match(line) || p.browser_frame.is_match(line) {
                if p.js_frame_with_props.is_match(line.trim_end()) {
                    return Continue(JsProps);
                }
                return Continue(JavaFrames);
            }
            let t = line.trim_start();
            if t.starts_with("Caused by: ")
                || t.starts_with("Suppressed: ")
                || t.starts_with("Wrapped by: ")
                || t.starts_with("---> ")
                || line.starts_with("Emitted '")
            {
                return Continue(JavaHeader);
            }
            if p.java_more.is_match(line)
                || t.starts_with("--- End of inner exception stack trace")
                || t.starts_with("--- End of stack trace from previous location")
            {
                return Continue(JavaFrames);
            }
            if t.starts_with("nested exception is") {
                return Continue(JavaNested);
            }
            if is_blank(line) {
                return if state == JavaHeader {
                    Maybe(JavaHeader)
                } else {
                    Maybe(JavaAfterFrames)
                };
            }
            if state == JavaHeader && may_continue_jvm_message(line) {
                return Maybe(JavaHeader);
            }
            Break
        }
        JavaNested => {
            if is_blank(line) {
                Maybe(JavaNested)
            } else if is_exception_line(line) {
                Continue(JavaHeader)
            } else {
                Break
            }
        }
        JavaAfterFrames => {
            if line.starts_with("Node.js v") {
                End
            } else if is_blank(line) {
                Maybe(JavaAfterFrames)
            } else {
                Break
            }
        }
        JsProps => {
            if line.trim_end() == "}" {
                Continue(JavaFrames)
            } else if p.js_prop.is_match(line) {
                Continue(JsProps)
            } else {
                Break
            }
        }
        NodeSource => {
            let t = line.trim();
            if is_blank(line) || t.chars().all(|c| c == '^') {
                Maybe(NodeCaret)
            } else if is_exception_line(line) {
                Maybe(JavaHeader)
            } else if !looks_like_record(line) {
                Maybe(NodeSource)
            } else {
                Break
            }
        }
        NodeCaret => {
            if is_blank(line) {
                Maybe(NodeCaret)
            } else if is_exception_line(line) {
                Maybe(JavaHeader)
            } else {
                Break
            }
        }
        PyFrames => {
            if is_indented(line) && !is_blank(line) {
                Continue(PyFrames)
            } else if p.python_error.is_match(line.trim_end()) {
                Continue(PyAfterError)
            } else {
                Break
            }
        }
        PyAfterError => {
            let t = line.trim_end();
            if is_blank(line) {
                Maybe(PyAfterError)
            } else if t == "During handling of the above exception, another exception occurred:"
                || t == "The above exception was the direct cause of the following exception:"
            {
                Maybe(PyChain)
            } else {
                Break
            }
        }
        PyChain => {
            if is_blank(line) {
                Maybe(PyChain)
            } else if line
                .trim_end()
                .ends_with("Traceback (most recent call last):")
            {
                Continue(PyFrames)
            } else {
                Break
            }
        }
        PhpHeader => {
            let t = line.trim_start();
            if t.starts_with("Stack trace:") || t.starts_with("PHP Stack trace:") {
                Continue(PhpFrames)
            } else if is_blank(line) {
                Maybe(PhpHeader)
            } else {
                Break
            }
        }
        PhpFrames => {
            let t = line.trim_start();
            let hash_frame =
                line.starts_with('#') && line[1..].starts_with(|c: char| c.is_ascii_digit());
            // Xdebug's `PHP   1. {main}() /app/index.php:0`.
            let xdebug_frame = t.starts_with("PHP ")
                && t[4..]
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_digit());
            if hash_frame || xdebug_frame {
                Continue(PhpFrames)
            } else if is_indented(line) && t.starts_with("thrown in ") {
                End
            } else if line.starts_with("Next ") {
                Continue(PhpHeader)
            } else if is_blank(line) {
                Maybe(PhpFrames)
            } else {
                Break
            }
        }
        GoPanic => {
            let t = line.trim_start();
            if p.go_goroutine.is_match(line) {
                Continue(GoFrames)
            } else if line.starts_with("[signal ")
                || line.starts_with("PC=")
                || line.starts_with("signal arrived")
                || (is_indented(line) && t.starts_with("panic: "))
            {
                Continue(GoPanic)
            } else if t == "runtime stack:" {
                Continue(GoFrames)
            } else if is_blank(line) || may_continue_message(line) {
                Maybe(GoPanic)
            } else {
                Break
            }
        }
        GoFrames => {
            if p.go_goroutine.is_match(line) || line.trim() == "...additional frames elided..." {
                Continue(GoFrames)
            } else if line.starts_with("created by ")
                || (!is_indented(line) && line.trim_end().ends_with(')'))
            {
                // A function line (or `created by`) joins once its file line follows.
                Maybe(GoFile)
            } else if is_blank(line) {
                Maybe(GoBetween)
            } else if line.starts_with("exit status ") {
                End
            } else {
                Break
            }
        }
        GoFile => {
            if is_indented(line) && !is_blank(line) {
                Continue(GoFrames)
            } else {
                Break
            }
        }
        GoBetween => {
            if p.go_goroutine.is_match(line) || line.trim_end() == "runtime stack:" {
                Continue(GoFrames)
            } else if is_blank(line) {
                Maybe(GoBetween)
            } else if line.starts_with("exit status ") {
                End
            } else {
                Break
            }
        }
        RubyHeader => {
            if p.ruby_frame.is_match(line) {
                Continue(RubyFrames)
            } else if is_blank(line) {
                Maybe(RubyHeader)
            } else {
                Break
            }
        }
        RubyFrames => {
            if p.ruby_frame.is_match(line) {
                Continue(RubyFrames)
            } else {
                Break
            }
        }
        DartHeader => {
            if is_blank(line) {
                Break
            } else {
                Continue(DartMessage)
            }
        }
        DartMessage => {
            if p.dart_frame.is_match(line) {
                Continue(DartFrames)
            } else if looks_like_record(line) && !is_blank(line) {
                Break
            } else {
                Maybe(DartMessage)
            }
        }
        DartFrames => {
            if p.dart_frame.is_match(line) || line.trim_end() == "<asynchronous suspension>" {
                Continue(DartFrames)
            } else {
                Break
            }
        }
        RustHeader => Continue(RustMessage),
        RustMessage => {
            let t = line.trim_end();
            if t == "stack backtrace:" {
                Continue(RustBacktrace)
            } else if t.starts_with("note: run with `RUST_BACKTRACE") {
                End
            } else if line.starts_with("thread '") || looks_like_record(line) {
                Break
            } else {
                Maybe(RustMessage)
            }
        }
        RustBacktrace => {
            // Frames are `  N: symbol`, with `at file:line` and (in full backtraces) inlined
            // symbols on deeper-indented lines below them.
            let t = line.trim_start();
            let deep = line.len() - t.len() >= 8 && !t.is_empty();
            if p.rust_frame.is_match(line) || t.starts_with("at ") || deep {
                Continue(RustBacktrace)
            } else if line.starts_with("note: ") {
                End
            } else {
                Break
            }
        }
    }
}
