//! What a crash record tells by OpenTelemetry's exception conventions: the severity a crash
//! gets (the crash detector sets it on the event), and the `exception.message` and
//! `exception.stacktrace` the enrichment step writes on the record — read from the event after
//! redaction, so that they carry nothing the body does not.

use super::analyse::STACK_ATTRIBUTES;
use crate::event::{Level, LogEvent};
use crate::processors::multiline::rules;

/// Longest `exception.message` kept, in characters (a test's expected-versus-actual diff can
/// run to kilobytes; the whole text stays in the stack trace and the body).
const MAX_MESSAGE_CHARS: usize = 4096;

/// The text holding an event's stack trace: its message when it is a joined trace, else the
/// stack attribute of a structured line; `None` for a crash on a single line.
pub(crate) fn stack_text(event: &LogEvent) -> Option<&str> {
    if event.lines > 1 || event.message.contains('\n') {
        return Some(&event.message);
    }
    event
        .attributes
        .iter()
        .find(|(key, value)| value.contains('\n') && STACK_ATTRIBUTES.contains(&key.as_str()))
        .map(|(_, value)| value.as_str())
}

/// The severity of a crash: `Fatal` when the text shows the program (or its main thread)
/// ended — Go's `panic:` and `fatal error:` outside net/http's recovery, a Rust panic in
/// `main`, a JVM `Exception in thread "main"`, .NET's `Unhandled exception.`, Node's uncaught
/// error (`Node.js v…` after it), PHP's fatal errors, Dart's `Unhandled exception:`, Ruby's
/// uncaught exception line — or the line said so itself; `Error` otherwise, and never lower
/// than the level the line carried.
pub(crate) fn crash_level(text: &str, language: &str, level: Option<Level>) -> Level {
    let first = text.lines().next().unwrap_or_default().trim();
    let fatal = match language {
        "go" => {
            (first.starts_with("panic: ") && !first.ends_with("[recovered]"))
                || first.starts_with("fatal error: ")
                || (first.starts_with("SIG") && first.contains(": "))
        }
        "rust" => first.starts_with("thread 'main' panicked"),
        "java" => first.starts_with("Exception in thread \"main\" "),
        "csharp" => {
            first.starts_with("Unhandled exception. ") || first.starts_with("Unhandled Exception: ")
        }
        "js" => text.contains("\nNode.js v") || first.starts_with("Uncaught "),
        "php" => first.contains("PHP Fatal error") || first.contains("Fatal error: Uncaught "),
        "dart" => first == "Unhandled exception:",
        "ruby" => !first.ends_with("):") && first.contains(":in "),
        _ => false,
    };
    let crash = if fatal { Level::Fatal } else { Level::Error };
    level.map_or(crash, |level| level.max(crash))
}

/// The exception's message as the trace states it (`exception.message`): what follows the
/// exception type on its line, with the lines a JVM message continues on; Python's last line,
/// Go's panic value, Rust's panic message, Ruby's and PHP's message; the line itself for a
/// crash without frames. Empty when the trace states none.
pub(crate) fn exception_message(text: &str, kind: &str, language: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.first().copied().unwrap_or_default();
    let message = match language {
        // The last line naming the exception (a trimmed traceback may have none).
        "python" => lines
            .iter()
            .rev()
            .find(|l| {
                l.strip_prefix(kind)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            })
            .map(|l| after_kind(l, kind))
            .unwrap_or_default(),
        "go" => {
            let t = first.trim();
            let rest = match t.split_once("http: panic serving ") {
                // `http: panic serving 10.0.0.1:5431: message`.
                Some((_, rest)) => rest.split_once(": ").map_or(rest, |(_, m)| m),
                None => ["panic: ", "fatal error: "]
                    .iter()
                    .find_map(|p| t.find(p).map(|i| &t[i + p.len()..]))
                    .unwrap_or(t),
            };
            rest.trim_end_matches(" [recovered]").to_owned()
        }
        "rust" => match first.split_once("' panicked at '") {
            // Before Rust 1.73: `thread 'main' panicked at 'message', src/main.rs:2:5`.
            Some((_, rest)) => rest.rsplit_once("', ").map_or(rest, |(m, _)| m).to_owned(),
            None if first.trim_end().ends_with(':') => {
                lines.get(1).copied().unwrap_or_default().to_owned()
            }
            None => String::new(),
        },
        "dart" => lines.get(1).copied().unwrap_or_default().to_owned(),
        "php" => {
            let rest = after_kind(first, kind);
            // PHP 5: `exception 'Kind' with message 'text' in /file.php:3`.
            let rest = rest.trim_start_matches('\'').trim_start();
            let rest = rest.strip_prefix("with message '").unwrap_or(rest);
            match rest.rfind(" in /").or_else(|| rest.rfind(" in ")) {
                Some(i) => rest[..i].trim_end_matches('\'').to_owned(),
                None => rest.to_owned(),
            }
        }
        "ruby" => {
            let t = first.trim();
            if let Some(inner) = t.strip_suffix("):").and_then(|t| t.split_once(" (")) {
                // Rails: `NoMethodError (undefined method …):`.
                inner.1.to_owned()
            } else if let Some((_, rest)) = t.split_once("': ") {
                // Uncaught: `app.rb:3:in 'm': message (Kind)`.
                let suffix = format!(" ({kind})");
                rest.strip_suffix(suffix.as_str())
                    .unwrap_or(rest)
                    .to_owned()
            } else {
                String::new()
            }
        }
        "java" | "js" | "csharp" => jvm_message(&lines, kind),
        _ => first.trim().to_owned(),
    };
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// The message of a JVM, .NET or JavaScript exception: after the type on the header line, up
/// to an inner exception (`--->`), with the following lines up to the first frame.
fn jvm_message(lines: &[&str], kind: &str) -> String {
    let Some(at) = lines.iter().position(|l| rules::is_exception_line(l)) else {
        return String::new();
    };
    if lines[at].trim_start().starts_with("V8 errors stack trace") {
        return String::new();
    }
    let header = after_kind(lines[at], kind);
    let mut message = header.split(" ---> ").next().unwrap_or_default().to_owned();
    for line in &lines[at + 1..] {
        let t = line.trim_start();
        if t.starts_with("at ")
            || t.starts_with("eval at ")
            || t.starts_with("nested exception is")
            || t.starts_with("Caused by: ")
            || t.starts_with("--- End of")
            || t.starts_with("... ")
            || t.contains('@') && t.ends_with(|c: char| c.is_ascii_digit())
        {
            break;
        }
        message.push('\n');
        message.push_str(line);
    }
    message.trim_end().to_owned()
}

/// What follows `kind` and its `: ` on `line`, or the line when it does not name `kind`.
fn after_kind(line: &str, kind: &str) -> String {
    let line = line.trim();
    match line.find(kind).filter(|_| !kind.is_empty()) {
        Some(i) => {
            let rest = &line[i + kind.len()..];
            rest.strip_prefix(':').unwrap_or(rest).trim().to_owned()
        }
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::crash::analyse::analyse_trace;
    use crate::processors::multiline::tests::{corpus_manifest, read_corpus, real_project_traces};

    /// The message and level real traces get, in every language: the text after the type (all
    /// of a multi-line JVM message), Go's panic value (after net/http's address too), Rust's
    /// message on its own line, Ruby's and PHP's message; FATAL only where the program ended.
    #[test]
    fn messages_and_levels_of_real_traces() {
        let expected: [(&str, Level, &str); 16] = [
            (
                "complex_java_exc.txt",
                Level::Error,
                "Something bad happened",
            ),
            (
                "nested_java_exc.txt",
                Level::Error,
                "javax.mail.SendFailedException: Invalid Addresses;",
            ),
            (
                "java_kafka_consumer.txt",
                Level::Fatal,
                "Failed to construct kafka consumer",
            ),
            (
                "csharp_exc.txt",
                Level::Error,
                "The given key was not present in the dictionary.",
            ),
            (
                "csharp_nested_exc.txt",
                Level::Error,
                "This is the outer exception",
            ),
            ("node_js_exc.txt", Level::Error, "myArray is not defined"),
            ("client_js_exc.txt", Level::Error, ""),
            ("python_exc.txt", Level::Error, "('spam', 'eggs')"),
            ("go_exc.txt", Level::Fatal, "my panic"),
            ("go_http.txt", Level::Error, "test panic"),
            (
                "rust_option_unwrap.txt",
                Level::Fatal,
                "called `Option::unwrap()` on a `None` value",
            ),
            ("php_exc.txt", Level::Error, "Custom exception"),
            ("php_on_gae_exc.txt", Level::Fatal, "message"),
            (
                "rails_exc.txt",
                Level::Error,
                "No route matches [GET] \"/settings\"",
            ),
            (
                "ruby_exc.txt",
                Level::Error,
                "undefined method `resursivewordload' for #<BooksController:0x007f8dd9a0c738>",
            ),
            ("dart_async_err.txt", Level::Fatal, "Bad state: oops"),
        ];
        let mut traces: Vec<(String, String)> = corpus_manifest()
            .into_iter()
            .filter(|(_, _, _, one)| *one)
            .map(|(name, ..)| (name.clone(), read_corpus(&name)))
            .collect();
        traces.extend(real_project_traces());
        for (name, level, message) in expected {
            let text = &traces.iter().find(|(n, _)| n == name).unwrap().1;
            let found = analyse_trace(text).unwrap();
            assert_eq!(crash_level(text, found.language, None), level, "{name}");
            assert_eq!(
                exception_message(text, &found.kind, found.language),
                message,
                "{name}"
            );
        }
        // A level the line carried is never lowered.
        let text = &traces[0].1;
        assert_eq!(crash_level(text, "java", Some(Level::Fatal)), Level::Fatal);
        assert_eq!(crash_level(text, "java", Some(Level::Info)), Level::Error);
    }
}
