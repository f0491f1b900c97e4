use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use regex::Regex;

use super::analyse::{analyse_trace, normalise_path};
use super::hll::{hash_value, DistinctCounter};
use super::*;
use crate::event::{Level, LogEvent, Stream};
use crate::processors::multiline::tests::{
    corpus_manifest, read_corpus, real_project_traces, testdata_dir,
};

fn identity() -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f-abc".into(),
        pod_uid: "uid".into(),
        node: "node-1".into(),
        version: "17.2".into(),
        cluster: String::new(),
    }
}

/// The event the joiner makes of a whole trace.
fn joined(text: &str) -> LogEvent {
    let mut event = LogEvent::line("app", Stream::Stderr, 1, text.trim_end());
    event.lines = text.trim_end().lines().count() as u32;
    event
}

fn crash_of(text: &str) -> CrashInfo {
    let detector = CrashDetector::new(&identity(), None);
    detector
        .observe(&mut joined(text))
        .unwrap_or_else(|| panic!("no crash found in:\n{text}"))
}

/// Every corpus and real-project trace: (name, text).
fn all_traces() -> Vec<(String, String)> {
    let mut traces: Vec<(String, String)> = corpus_manifest()
        .into_iter()
        .filter(|(_, _, _, one)| *one)
        .map(|(name, ..)| {
            let text = read_corpus(&name);
            (name, text)
        })
        .collect();
    traces.extend(real_project_traces());
    traces
}

/// Every corpus trace is a crash of the manifest's language with the exception type a
/// developer would name; the arbitrary text is not.
#[test]
fn corpus_traces_are_crashes_with_type_and_language() {
    let expected_kinds: BTreeMap<&str, &str> = [
        ("java_exc.txt", "RuntimeException"),
        ("complex_java_exc.txt", "javax.servlet.ServletException"),
        ("nested_java_exc.txt", "java.lang.RuntimeException"),
        (
            "csharp_exc.txt",
            "System.Collections.Generic.KeyNotFoundException",
        ),
        ("csharp_nested_exc.txt", "System.InvalidOperationException"),
        ("client_js_exc.txt", "Error"),
        ("node_js_exc.txt", "ReferenceError"),
        ("python_exc.txt", "Exception"),
        ("go_exc.txt", "panic"),
        ("go_on_gae_exc.txt", "runtime error: index out of range"),
        (
            "go_signal_exc.txt",
            "runtime error: invalid memory address or nil pointer dereference",
        ),
        ("php_exc.txt", "Exception"),
        ("php_on_gae_exc.txt", "Exception"),
        ("rails_exc.txt", "ActionController::RoutingError"),
        ("ruby_exc.txt", "NoMethodError"),
        ("dart_err.txt", "MyError"),
        ("dart_async_err.txt", "StateError"),
        ("dart_range_err.txt", "RangeError"),
        ("dart_type_err.txt", "TypeError"),
        ("dart_fallthrough_err.txt", "FallThroughError"),
        ("dart_no_method_err.txt", "NoSuchMethodError"),
    ]
    .into_iter()
    .collect();
    for (name, language, _, one_trace) in corpus_manifest() {
        let text = read_corpus(&name);
        if !one_trace {
            let detector = CrashDetector::new(&identity(), None);
            for line in text.lines() {
                let mut event = LogEvent::line("app", Stream::Stdout, 1, line);
                assert_eq!(detector.observe(&mut event), None, "{line}");
            }
            continue;
        }
        let crash = crash_of(&text);
        let language = if language == "javascript" {
            "js"
        } else {
            language.as_str()
        };
        assert_eq!(crash.language, language, "{name}");
        assert_eq!(crash.fingerprint.len(), 16);
        assert!(crash.fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        if let Some(kind) = expected_kinds.get(name.as_str()) {
            assert_eq!(crash.kind, *kind, "{name}");
        }
    }
}

/// Real-project traces are crashes of the right language too.
#[test]
fn real_project_traces_are_crashes() {
    for (name, text) in real_project_traces() {
        let crash = crash_of(&text);
        let language = match name.split('_').next().unwrap() {
            "node" => "js",
            other => other,
        };
        assert_eq!(crash.language, language, "{name}");
    }
}

/// Different bugs get different fingerprints: all corpus and real-project traces are pairwise
/// distinct, except two Dart pairs that are the same bug by the fingerprint's own rules (same
/// exception type thrown from the same functions of the same test harness; only line numbers
/// and messages differ, which the fingerprint must ignore).
#[test]
fn fingerprints_of_different_bugs_differ() {
    let mut by_fingerprint: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, text) in all_traces() {
        by_fingerprint
            .entry(crash_of(&text).fingerprint)
            .or_default()
            .push(name);
    }
    let mut shared: Vec<Vec<String>> = by_fingerprint
        .into_values()
        .filter(|v| v.len() > 1)
        .collect();
    shared.sort();
    assert_eq!(
        shared,
        vec![
            vec!["dart_format_err.txt", "dart_format_with_code_err.txt"],
            vec!["dart_no_method_err.txt", "dart_no_method_global_err.txt"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
}

/// The same trace from another build, pod or request: other line and column numbers, hex
/// addresses and offsets, goroutine numbers, and messages.
fn other_build(text: &str) -> String {
    let shift = |re: &str, text: &str, f: &dyn Fn(&regex::Captures) -> String| {
        Regex::new(re)
            .unwrap()
            .replace_all(text, |c: &regex::Captures| f(c))
            .into_owned()
    };
    let text = shift(r":(\d+)", text, &|c| {
        format!(":{}", c[1].parse::<u64>().unwrap() + 13)
    });
    let text = shift(r"line (\d+)", &text, &|c| {
        format!("line {}", c[1].parse::<u64>().unwrap() + 7)
    });
    let text = shift(r"\((\d+)\):", &text, &|c| {
        format!("({}):", c[1].parse::<u64>().unwrap() + 3)
    });
    let text = shift(r"0x[0-9a-f]+", &text, &|c| {
        format!("0x{:x}", c[0].len() * 4099 + 17)
    });
    let text = shift(r"goroutine \d+", &text, &|_| "goroutine 9071".to_owned());
    // Messages: the text after the exception type on the header line.
    shift(
        r"(?m)^(\s*(?:Exception in thread \S+ )?[\w.$]+(?:Exception|Error)): .*$",
        &text,
        &|c| format!("{}: order 8812 of user bob failed", &c[1]),
    )
}

/// Same bug → same fingerprint: every trace keeps its fingerprint when line numbers,
/// addresses, goroutine numbers and messages change.
#[test]
fn fingerprints_survive_line_numbers_addresses_and_messages() {
    for (name, text) in all_traces() {
        let moved = other_build(&text);
        assert_ne!(moved, text, "{name}: the variant must differ");
        assert_eq!(
            crash_of(&text).fingerprint,
            crash_of(&moved).fingerprint,
            "{name}:\n{moved}"
        );
    }
}

/// Generated names differ between builds but not between bugs: JVM lambdas, proxies, CGLIB
/// classes and anonymous classes; C# async state machines; Go closures and argument words;
/// Rust symbol hashes; version and hash directories; install prefixes.
#[test]
fn fingerprints_ignore_generated_names_and_versioned_paths() {
    let pairs = [
        (
            "java.lang.IllegalStateException: order 1 missing\n\
             \tat com.acme.Orders.lambda$submit$0(Orders.java:42)\n\
             \tat com.acme.Orders$$Lambda$231/0x0000000800c0b840.run(Unknown Source)\n\
             \tat com.acme.Orders$1.call(Orders.java:55)\n\
             \tat jdk.internal.reflect.GeneratedMethodAccessor12.invoke(Unknown Source)\n\
             \tat com.acme.Service$$EnhancerBySpringCGLIB$$fe6e8092.place(<generated>)",
            "java.lang.IllegalStateException: order 77 missing\n\
             \tat com.acme.Orders.lambda$submit$3(Orders.java:47)\n\
             \tat com.acme.Orders$$Lambda$987/0x00000008001a2000.run(Unknown Source)\n\
             \tat com.acme.Orders$2.call(Orders.java:61)\n\
             \tat jdk.internal.reflect.GeneratedMethodAccessor57.invoke(Unknown Source)\n\
             \tat com.acme.Service$$EnhancerBySpringCGLIB$$0a1b2c3d.place(<generated>)",
        ),
        (
            "System.InvalidOperationException: boom\n   \
             at Shop.Cart.<CheckoutAsync>d__5.MoveNext() in /src/Cart.cs:line 36\n   \
             at Shop.Cart.<>c__DisplayClass7_0.<Run>b__0() in /src/Cart.cs:line 50",
            "System.InvalidOperationException: bang\n   \
             at Shop.Cart.<CheckoutAsync>d__9.MoveNext() in /build/Cart.cs:line 38\n   \
             at Shop.Cart.<>c__DisplayClass12_1.<Run>b__3() in /build/Cart.cs:line 58",
        ),
        (
            "panic: runtime error: index out of range [5] with length 3\n\n\
             goroutine 7 [running]:\n\
             main.handler.func1({0x4a4b60?, 0x4e2a38?})\n\t/app/main.go:12 +0x1d\n\
             main.handler(0xc000012345)\n\t/app/main.go:20 +0x2f",
            "panic: runtime error: index out of range [9] with length 2\n\n\
             goroutine 4242 [running]:\n\
             main.handler.func3({0x5b5c70?, 0x5f3b49?})\n\t/src/main.go:14 +0x3a\n\
             main.handler(0xc000099999)\n\t/src/main.go:25 +0x4c",
        ),
        (
            "thread 'main' panicked at src/cart.rs:10:5:\nboom\nstack backtrace:\n   \
             0:     0x55d3c1f0a0c3 - shop::cart::checkout::h5f2f1c2a9c1d2e3f\n   \
             1:     0x55d3c1f0a1c3 - shop::main::h0123456789abcdef",
            "thread 'worker-3' panicked at src/cart.rs:12:9:\nbang\nstack backtrace:\n   \
             0:     0x7fd3c1f0a0c3 - shop::cart::checkout::h99f2f1c2a9c1d2aa\n   \
             1:     0x7fd3c1f0a1c3 - shop::main::hfedcba9876543210",
        ),
        (
            "Traceback (most recent call last):\n  \
             File \"/opt/venv/lib/python3.11/site-packages/shop/cart.py\", line 3, in pay\n    \
             charge()\nValueError: card 4111 declined",
            "Traceback (most recent call last):\n  \
             File \"/usr/local/lib/python3.12/site-packages/shop/cart.py\", line 5, in pay\n    \
             charge()\nValueError: card 5500 declined",
        ),
        (
            "TypeError: Cannot read properties of undefined (reading 'id')\n    \
             at render (https://cdn.example.com/static/js/main.3f2a1b9c.js:2:1234)\n    \
             at /srv/app/node_modules/react-dom/cjs/react-dom.production.min.js:1:100",
            "TypeError: Cannot read properties of undefined (reading 'name')\n    \
             at render (https://cdn.example.com/static/js/main.77aa00ff.js:2:999)\n    \
             at /app/node_modules/react-dom/cjs/react-dom.production.min.js:1:200",
        ),
        (
            "Unhandled exception:\nBad state: no element\n\
             #0      Cart.first (package:shop/cart.dart:10:7)\n\
             #1      main (file:///app/bin/main.dart:5:3)",
            "Unhandled exception:\nBad state: empty cart\n\
             #0      Cart.first (package:shop/cart.dart:12:7)\n\
             #1      main (file:///app/bin/main.dart:7:3)",
        ),
    ];
    for (a, b) in pairs {
        let (fa, fb) = (crash_of(a), crash_of(b));
        assert_eq!(fa, fb, "\n{a}\n---\n{b}");
    }
    // …while a different function or exception type is a different bug.
    let base = pairs[0].0;
    assert_ne!(
        crash_of(base).fingerprint,
        crash_of(&base.replace("lambda$submit$0", "lambda$cancel$0")).fingerprint
    );
    assert_ne!(
        crash_of(base).fingerprint,
        crash_of(&base.replace("IllegalStateException", "IllegalArgumentException")).fingerprint
    );
}

/// Paths lose what differs between builds and installs, and keep what names the code.
#[test]
fn paths_are_normalised() {
    assert_eq!(
        normalise_path("/base/data/home/apps/s~crash-example-php/1.388306779641080894/errors.php"),
        "/base/data/home/apps/s~crash-example-php/*/errors.php"
    );
    assert_eq!(
        normalise_path("/usr/lib/python3.10/site-packages/requests/api.py:110"),
        "site-packages/requests/api.py"
    );
    assert_eq!(
        normalise_path("http://<anonymous>/file.js?foo=bar:875:140"),
        "/file.js"
    );
    assert_eq!(
        normalise_path("C:\\src\\Shop\\Cart.cs"),
        "C:/src/Shop/Cart.cs"
    );
    assert_eq!(
        normalise_path(
            "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.41.0/src/lib.rs"
        ),
        "/root/.cargo/registry/src/*/*/src/lib.rs"
    );
}

/// Lines that crash on their own are crashes; ordinary error lines are not.
#[test]
fn fatal_single_lines() {
    let detector = CrashDetector::new(&identity(), None);
    let crashes = [
        ("panic: something went wrong", "go", "panic"),
        ("fatal error: concurrent map writes", "go", "fatal error: concurrent map writes"),
        (
            "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /var/www/a.php on line 12",
            "php",
            "PHP Fatal error",
        ),
        (
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
            "java",
            "java.lang.OutOfMemoryError",
        ),
        (
            "thread 'main' panicked at 'index out of bounds', src/main.rs:4:5",
            "rust",
            "panic",
        ),
    ];
    for (line, language, kind) in crashes {
        let crash = detector
            .observe(&mut LogEvent::line("c", Stream::Stderr, 1, line))
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            (crash.language.as_str(), crash.kind.as_str()),
            (language, kind),
            "{line}"
        );
    }
    let mut fatal = LogEvent::line(
        "c",
        Stream::Stdout,
        1,
        "database unreachable after 5 retries",
    );
    fatal.level = Some(Level::Fatal);
    let crash = detector.observe(&mut fatal).unwrap();
    assert_eq!(
        (crash.kind.as_str(), crash.language.as_str()),
        ("fatal", "unknown")
    );
    assert!(fatal.crash.is_some());
    // The same fatal message with other numbers is the same crash; another message is not.
    let mut again = LogEvent::line(
        "c",
        Stream::Stdout,
        1,
        "database unreachable after 9 retries",
    );
    again.level = Some(Level::Fatal);
    assert_eq!(
        detector.observe(&mut again).unwrap().fingerprint,
        crash.fingerprint
    );
    let mut other = LogEvent::line("c", Stream::Stdout, 1, "config file missing");
    other.level = Some(Level::Fatal);
    assert_ne!(
        detector.observe(&mut other).unwrap().fingerprint,
        crash.fingerprint
    );

    for line in [
        "2024-05-01 ERROR payment failed: java.net.ConnectException: Connection refused",
        "Error: connection refused",
        "level=error msg=\"recovered from panic: nil map\"",
        "INFO all good",
    ] {
        let mut event = LogEvent::line("c", Stream::Stdout, 1, line);
        event.level = Some(Level::Error);
        assert_eq!(detector.observe(&mut event), None, "{line}");
        assert_eq!(event.crash, None);
    }
}

/// A structured line carrying the trace in a stack attribute is a crash too.
#[test]
fn stack_trace_in_an_attribute() {
    let detector = CrashDetector::new(&identity(), None);
    let trace = read_corpus("java_exc.txt");
    let mut event = LogEvent::line("c", Stream::Stdout, 1, "request failed");
    event.attributes.push(("stack_trace".into(), trace.clone()));
    let crash = detector.observe(&mut event).unwrap();
    assert_eq!(crash.fingerprint, crash_of(&trace).fingerprint);
}

/// Exposition: counts per fingerprint with the identity labels, distinct affected users per
/// fingerprint, active users; escaped label values; accepted by `promtool check metrics`.
#[test]
fn exposition_counts_crashes_and_users_and_passes_promtool() {
    let detector = CrashDetector::new(&identity(), Some("user_id".into()));
    let java = read_corpus("java_exc.txt");
    let go = read_corpus("go_signal_exc.txt");
    let now = 1_700_000_000_000;
    for user in ["alice", "bob", "alice", "carol"] {
        let mut event = joined(&java);
        event.attributes.push(("user_id".into(), user.into()));
        detector.observe_at(&mut event, now);
    }
    let mut event = joined(&go);
    event.attributes.push(("user_id".into(), "dave".into()));
    detector.observe_at(&mut event, now);
    // Users seen in ordinary events count as active only.
    for user in ["erin", "frank"] {
        let mut event = LogEvent::line("c", Stream::Stdout, 1, "GET /cart 200");
        event.attributes.push(("user_id".into(), user.into()));
        assert_eq!(detector.observe_at(&mut event, now), None);
    }

    let java_fp = crash_of(&java).fingerprint;
    let go_fp = crash_of(&go).fingerprint;
    assert_eq!(detector.crash_count(&java_fp), 4);
    let text = detector.exposition_at(now);
    let labels = "namespace=\"shop\",app=\"checkout\",version=\"17.2\"";
    assert!(text.contains(&format!(
        "vigil_crashes_total{{{labels},fingerprint=\"{java_fp}\",type=\"RuntimeException\",language=\"java\",frame=\"com.my.app.Object.do$a1\"}} 4\n"
    )), "{text}");
    assert!(text.contains(&format!(
        "vigil_crashes_total{{{labels},fingerprint=\"{go_fp}\",type=\"runtime error: invalid memory address or nil pointer dereference\",language=\"go\",frame=\"panics.nilPtrDereference\"}} 1\n"
    )), "{text}");
    assert!(text.contains(&format!(
        "vigil_crash_affected_users{{{labels},fingerprint=\"{java_fp}\"}} 3\n"
    )));
    assert!(text.contains(&format!(
        "vigil_crash_affected_users{{{labels},fingerprint=\"{go_fp}\"}} 1\n"
    )));
    assert!(text.contains("vigil_active_users{namespace=\"shop\",app=\"checkout\"} 6\n"));
    assert_eq!(
        text.matches("# TYPE vigil_crashes_total counter").count(),
        1
    );
    promtool_check_metrics(&text);

    // Label values that need escaping.
    let odd = Identity {
        version: "17.2 \"beta\" \\ rc\n1".into(),
        ..identity()
    };
    let detector = CrashDetector::new(&odd, None);
    detector.observe(&mut joined(&java));
    let text = detector.exposition();
    assert!(
        text.contains(r#"version="17.2 \"beta\" \\ rc\n1""#),
        "{text}"
    );
    promtool_check_metrics(&text);
}

/// Runs `promtool check metrics` on `text`; fails when promtool is missing.
fn promtool_check_metrics(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-test-tools.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Remote-write samples carry the same series, labels sorted with `__name__`.
#[test]
fn samples_match_the_exposition() {
    let detector = CrashDetector::new(&identity(), Some("user".into()));
    let mut event = joined(&read_corpus("python_exc.txt"));
    event.attributes.push(("user".into(), "u1".into()));
    detector.observe_at(&mut event, 60_000);
    let request = detector.samples(90_000);
    let names: Vec<&str> = request
        .timeseries
        .iter()
        .map(|t| {
            let mut sorted = t.labels.clone();
            sorted.sort();
            assert_eq!(sorted, t.labels);
            assert_eq!(t.samples.len(), 1);
            assert_eq!(t.samples[0].timestamp, 90_000);
            t.labels
                .iter()
                .find(|l| l.name == "__name__")
                .unwrap()
                .value
                .as_str()
        })
        .collect();
    let mut expected = vec!["vigil_crashes_total", "vigil_crash_affected_users"];
    expected.extend(["vigil_crash_users_register"; 64]);
    expected.push("vigil_active_users");
    assert_eq!(names, expected);
    let crashes = &request.timeseries[0];
    let label = |name: &str| {
        crashes
            .labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    };
    assert_eq!(label("type"), Some("Exception"));
    assert_eq!(label("language"), Some("python"));
    assert_eq!(label("version"), Some("17.2"));
    assert_eq!(crashes.samples[0].value, 1.0);

    // Without a user field only the crash counter is sent.
    let detector = CrashDetector::new(&identity(), None);
    detector.observe(&mut joined(&read_corpus("python_exc.txt")));
    assert_eq!(detector.samples(1).timeseries.len(), 1);
    assert!(!detector.exposition().contains("users"));
}

/// The HyperLogLog estimate of 10k and 100k distinct users is within 3 %, small counts are
/// exact, repeats do not count, and merging sketches counts the union.
#[test]
fn distinct_user_estimates_are_accurate() {
    for n in [10_000u32, 100_000] {
        let mut counter = DistinctCounter::default();
        for i in 0..n {
            counter.insert(hash_value(&format!("user-{i}")));
            counter.insert(hash_value(&format!("user-{}", i / 2)));
        }
        let estimate = counter.estimate();
        let error = (estimate - f64::from(n)).abs() / f64::from(n);
        assert!(error < 0.03, "{n}: estimate {estimate}, error {error}");
    }
    let mut small = DistinctCounter::default();
    for i in 0..300 {
        small.insert(hash_value(&format!("u{}", i % 100)));
    }
    assert_eq!(small.estimate(), 100.0);

    let (mut a, mut b) = (DistinctCounter::default(), DistinctCounter::default());
    for i in 0..20_000 {
        a.insert(hash_value(&format!("a{i}")));
        b.insert(hash_value(&format!("a{}", i + 10_000)));
    }
    a.merge(&b);
    let error = (a.estimate() - 30_000.0).abs() / 30_000.0;
    assert!(error < 0.03, "merged estimate {}", a.estimate());
}

/// Active users cover the last five minutes: users seen earlier drop out.
#[test]
fn active_users_window_slides() {
    let detector = CrashDetector::new(&identity(), Some("user".into()));
    let minute = 60_000;
    let t0 = 1_700_000_040_000 / minute * minute;
    let see = |user: &str, at: i64| {
        let mut event = LogEvent::line("c", Stream::Stdout, 1, "hello");
        event.attributes.push(("user".into(), user.into()));
        detector.observe_at(&mut event, at);
    };
    see("a", t0);
    see("b", t0 + minute);
    see("c", t0 + 4 * minute + 59_000);
    let active = |at: i64| {
        let text = detector.exposition_at(at);
        let line = text
            .lines()
            .find(|l| l.starts_with("vigil_active_users{"))
            .unwrap()
            .to_owned();
        line.rsplit(' ').next().unwrap().parse::<u32>().unwrap()
    };
    assert_eq!(active(t0 + 4 * minute + 59_000), 3);
    assert_eq!(active(t0 + 5 * minute), 2);
    assert_eq!(active(t0 + 6 * minute), 1);
    see("d", t0 + 6 * minute);
    assert_eq!(active(t0 + 6 * minute), 2);
    assert_eq!(active(t0 + 20 * minute), 0);
}

/// At most `MAX_FINGERPRINTS` fingerprints are tracked; later new ones count as `other`.
#[test]
fn fingerprint_count_is_bounded() {
    let detector = CrashDetector::new(&identity(), None);
    for i in 0..MAX_FINGERPRINTS + 5 {
        let trace = format!("java.lang.IllegalStateException: x\n\tat com.acme.C{i}.run(C.java:1)");
        assert!(detector.observe(&mut joined(&trace)).is_some());
    }
    assert_eq!(detector.crash_count(OVERFLOW_LABEL), 5);
    let text = detector.exposition();
    assert_eq!(
        text.matches("vigil_crashes_total{").count(),
        MAX_FINGERPRINTS + 1
    );
    assert!(text
        .contains("fingerprint=\"other\",type=\"other\",language=\"other\",frame=\"other\"} 5\n"));
    // Known fingerprints keep counting under their own name.
    let first = "java.lang.IllegalStateException: x\n\tat com.acme.C0.run(C.java:1)";
    detector.observe(&mut joined(first));
    assert_eq!(detector.crash_count(&crash_of(first).fingerprint), 2);
}

/// The detector is shared by the log and OTLP paths: concurrent observers lose no count.
#[test]
fn concurrent_observers_lose_no_count() {
    let detector = Arc::new(CrashDetector::new(&identity(), Some("user".into())));
    let trace = read_corpus("node_js_exc.txt");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let detector = detector.clone();
            let trace = trace.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let mut event = joined(&trace);
                    event.attributes.push(("user".into(), format!("{t}-{i}")));
                    detector.observe(&mut event);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let fingerprint = crash_of(&trace).fingerprint;
    assert_eq!(detector.crash_count(&fingerprint), 1000);
    let text = detector.exposition();
    let users: f64 = text
        .lines()
        .find(|l| l.starts_with("vigil_crash_affected_users{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((users - 1000.0).abs() / 1000.0 < 0.03, "{users}");
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// OTLP log records with `exception.*` attributes are crashes: they get the fingerprint
/// attribute (the same as the log path gives the same trace) and are counted.
#[test]
fn otlp_log_records_with_exceptions() {
    let detector = CrashDetector::new(&identity(), Some("enduser.id".into()));
    let trace = read_corpus("python_exc.txt");
    let record = |attributes: Vec<KeyValue>| LogRecord {
        attributes,
        ..LogRecord::default()
    };
    let mut request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(vec![
                        attribute("exception.type", "Exception"),
                        attribute("exception.message", "('spam', 'eggs')"),
                        attribute("exception.stacktrace", &trace),
                        attribute("enduser.id", "alice"),
                    ]),
                    record(vec![attribute("exception.type", "KeyError")]),
                    record(vec![attribute("enduser.id", "bob")]),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    detector.observe_otlp_logs_at(&mut request, 0);
    let records = &request.resource_logs[0].scope_logs[0].log_records;
    let fingerprint = |r: &LogRecord| {
        r.attributes
            .iter()
            .find(|a| a.key == FINGERPRINT_ATTRIBUTE)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
    };
    let from_logs = crash_of(&trace).fingerprint;
    assert_eq!(fingerprint(&records[0]), Some(from_logs.clone()));
    assert!(fingerprint(&records[1]).is_some());
    assert_eq!(fingerprint(&records[2]), None);
    assert_eq!(detector.crash_count(&from_logs), 1);
    let text = detector.exposition_at(0);
    assert!(
        text.contains("type=\"KeyError\",language=\"unknown\"} 1"),
        "{text}"
    );
    assert!(text.contains("vigil_active_users{namespace=\"shop\",app=\"checkout\"} 2"));
}

/// The real-project fixtures documented in SOURCE.txt are all present.
#[test]
fn real_project_sources_are_documented() {
    let sources = std::fs::read_to_string(testdata_dir().join("SOURCE.txt")).unwrap();
    for (name, _) in real_project_traces() {
        assert!(sources.contains(&name), "{name} missing from SOURCE.txt");
    }
    let languages: std::collections::BTreeSet<String> = real_project_traces()
        .iter()
        .map(|(name, _)| name.split('_').next().unwrap().to_owned())
        .collect();
    for language in ["java", "python", "go", "rust", "node", "csharp"] {
        assert!(languages.contains(language), "{language}");
    }
    // Each one analyses as a trace on its own as well.
    for (name, text) in real_project_traces() {
        assert!(analyse_trace(&text).is_some(), "{name}");
    }
}
