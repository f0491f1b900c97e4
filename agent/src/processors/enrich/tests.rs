//! Tests of enrichment: identity on OTLP resources and samples, and log events as OTLP.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::*;
use crate::event::{CrashInfo, Level, Origin, Stream};
use crate::prompb::{Sample, WriteRequest};

fn identity() -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f".into(),
        pod_uid: "0b7e-uid".into(),
        node: "node-1".into(),
        version: "17.2".into(),
        cluster: String::new(),
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_of<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Missing resource attributes are added; ones the application set are kept, except the SDK
/// default `unknown_service` name, which the app name replaces.
#[test]
fn resource_attributes_fill_gaps() {
    let mut batch = Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        string_attribute("service.name", "unknown_service:python"),
                        string_attribute("service.version", "app-says-1.0"),
                    ],
                    ..Resource::default()
                }),
                ..ResourceSpans::default()
            },
            ResourceSpans::default(),
        ],
    });
    enrich_batch(&identity(), &mut batch);
    let Batch::Traces(request) = batch else {
        unreachable!()
    };
    let first = &request.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(string_of(first, "service.name"), Some("checkout"));
    assert_eq!(string_of(first, "service.version"), Some("app-says-1.0"));
    assert_eq!(string_of(first, "k8s.namespace.name"), Some("shop"));
    assert_eq!(string_of(first, "k8s.pod.name"), Some("checkout-7d9f"));
    assert_eq!(string_of(first, "k8s.pod.uid"), Some("0b7e-uid"));
    assert_eq!(string_of(first, "k8s.node.name"), Some("node-1"));
    assert_eq!(
        first.iter().filter(|kv| kv.key == "service.name").count(),
        1
    );
    let second = &request.resource_spans[1]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(second.len(), 6);
}

/// An application cannot claim another namespace: a `k8s.namespace.name` it set is replaced by
/// the pod's (and the encoded request cannot be kept as it arrived), while one that names the
/// pod's own namespace is kept as it is.
#[test]
fn resource_namespace_is_always_the_pods() {
    let spoofed = Resource {
        attributes: vec![string_attribute("k8s.namespace.name", "bank")],
        ..Resource::default()
    };
    assert_eq!(resource_additions(&identity(), Some(&spoofed)), None);
    let mut batch = Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(spoofed),
            ..ResourceSpans::default()
        }],
    });
    enrich_batch(&identity(), &mut batch);
    let Batch::Traces(request) = batch else {
        unreachable!()
    };
    let attributes = &request.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(string_of(attributes, "k8s.namespace.name"), Some("shop"));
    assert_eq!(
        attributes
            .iter()
            .filter(|kv| kv.key == "k8s.namespace.name")
            .count(),
        1
    );
    let own = Resource {
        attributes: vec![string_attribute("k8s.namespace.name", "shop")],
        ..Resource::default()
    };
    let additions = resource_additions(&identity(), Some(&own)).unwrap();
    assert!(additions.iter().all(|kv| kv.key != "k8s.namespace.name"));
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// Samples get the identity labels they lack, in sorted position; labels they carry stay.
#[test]
fn samples_get_missing_labels_sorted() {
    let mut batch = Batch::Samples(WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", "vigil_crashes_total"),
                label("fingerprint", "abc"),
                label("version", "16.0"),
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
        }],
    });
    enrich_batch(&identity(), &mut batch);
    let Batch::Samples(request) = batch else {
        unreachable!()
    };
    let labels: Vec<_> = request.timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "vigil_crashes_total"),
            ("app", "checkout"),
            ("fingerprint", "abc"),
            ("namespace", "shop"),
            ("pod", "checkout-7d9f"),
            ("version", "16.0"),
        ]
    );
}

/// Log events become one resource with the pod identity, one `vigil-agent` scope, and a
/// record per event with time, severity, body, container, stream, file, parsed fields and,
/// for crashes, the crash attributes.
#[test]
fn log_events_as_otlp() {
    let mut plain = LogEvent::line("web", Stream::Stdout, 1_700_000_000_000_000_000, "started");
    plain.level = Some(Level::Info);
    plain.attributes.push(("user".into(), "u-42".into()));
    plain.origin = Some(Origin {
        file: Arc::from("2049:1234#1"),
        path: Arc::from("/var/log/pods/shop_checkout_uid/web/0.log"),
        start: 0,
        end: 8,
    });
    let mut crash = LogEvent::line(
        "web",
        Stream::Stderr,
        1_700_000_000_500_000_000,
        "Exception in thread \"main\" java.lang.IllegalStateException\n\tat A.b(A.java:1)",
    );
    crash.level = Some(Level::Error);
    crash.lines = 2;
    crash.crash = Some(Box::new(CrashInfo {
        fingerprint: "0123456789abcdef".into(),
        kind: "java.lang.IllegalStateException".into(),
        language: "java".into(),
        frame: "A.b".into(),
    }));
    let request = logs_request_observed_at(&identity(), vec![plain, crash], 42);
    assert_eq!(request.resource_logs.len(), 1);
    let rl = &request.resource_logs[0];
    let resource = &rl.resource.as_ref().unwrap().attributes;
    assert_eq!(string_of(resource, "k8s.pod.name"), Some("checkout-7d9f"));
    assert_eq!(string_of(resource, "service.name"), Some("checkout"));
    assert_eq!(rl.scope_logs.len(), 1);
    assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "vigil-agent");
    let records = &rl.scope_logs[0].log_records;
    assert_eq!(records.len(), 2);

    let first = &records[0];
    assert_eq!(first.time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(first.observed_time_unix_nano, 42);
    assert_eq!(first.severity_number, 9);
    assert_eq!(first.severity_text, "INFO");
    assert_eq!(
        first.body.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("started".into()))
    );
    assert_eq!(
        string_of(&first.attributes, "k8s.container.name"),
        Some("web")
    );
    assert_eq!(string_of(&first.attributes, "log.iostream"), Some("stdout"));
    assert_eq!(
        string_of(&first.attributes, "log.file.path"),
        Some("/var/log/pods/shop_checkout_uid/web/0.log")
    );
    assert_eq!(string_of(&first.attributes, "user"), Some("u-42"));
    assert_eq!(attribute(&first.attributes, "exception.type"), None);

    let second = &records[1];
    assert_eq!(second.severity_number, 17);
    assert_eq!(
        string_of(&second.attributes, "log.iostream"),
        Some("stderr")
    );
    assert_eq!(
        string_of(&second.attributes, "exception.type"),
        Some("java.lang.IllegalStateException")
    );
    assert_eq!(
        string_of(&second.attributes, "vigil.crash.fingerprint"),
        Some("0123456789abcdef")
    );
    assert_eq!(
        string_of(&second.attributes, "vigil.crash.language"),
        Some("java")
    );
    assert_eq!(
        attribute(&second.attributes, "vigil.crash.lines"),
        Some(&any_value::Value::IntValue(2))
    );
    assert_eq!(
        string_of(&second.attributes, "exception.stacktrace"),
        Some("Exception in thread \"main\" java.lang.IllegalStateException\n\tat A.b(A.java:1)")
    );
    // The trace states no message: no `exception.message`.
    assert_eq!(attribute(&second.attributes, "exception.message"), None);
    assert_eq!(
        string_of(&second.attributes, "vigil.crash.frame"),
        Some("A.b")
    );
}

/// Crash records follow OpenTelemetry's exception conventions, in every language: the
/// detector sets severity ERROR, or FATAL when the crash ended the program, and the record
/// carries `exception.type`, `exception.message` (multi-line JVM messages whole),
/// `exception.stacktrace` (the trace, from the message or from a structured line's stack
/// field) and the file's real path as `log.file.path`; what the application logged under an
/// `exception.*` key itself is kept, not doubled.
#[test]
fn crash_records_follow_opentelemetry_exception_conventions() {
    use crate::processors::crash::CrashDetector;
    let cases: [(&str, &str, &str, i32); 8] = [
        (
            "java.lang.IllegalStateException: order 12 missing\n\tat com.shop.Orders.get(Orders.java:3)",
            "java.lang.IllegalStateException",
            "order 12 missing",
            17,
        ),
        (
            "junit.framework.ComparisonFailure: expected:<a\n[b]\n> but was:<a\n[c]\n>\n\tat junit.framework.Assert.assertEquals(Assert.java:100)",
            "junit.framework.ComparisonFailure",
            "expected:<a\n[b]\n> but was:<a\n[c]\n>",
            17,
        ),
        (
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat com.shop.Cache.fill(Cache.java:9)",
            "java.lang.OutOfMemoryError",
            "Java heap space",
            21,
        ),
        (
            "Traceback (most recent call last):\n  File \"/app/shop/cart.py\", line 3, in pay\n    charge()\nValueError: card declined",
            "ValueError",
            "card declined",
            17,
        ),
        (
            "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d\nexit status 2",
            "runtime error: index out of range",
            "runtime error: index out of range [5] with length 3",
            21,
        ),
        (
            "thread 'main' panicked at src/main.rs:4:5:\nattempt to divide by zero\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "panic",
            "attempt to divide by zero",
            21,
        ),
        (
            "TypeError: Cannot read properties of undefined (reading 'id')\n    at load (/app/src/accounts.js:41:18)",
            "TypeError",
            "Cannot read properties of undefined (reading 'id')",
            17,
        ),
        (
            "PHP Fatal error:  Uncaught RuntimeException: cart is empty in /var/www/src/Cart.php:20\nStack trace:\n#0 /var/www/src/index.php(5): Cart->pay()\n#1 {main}\n  thrown in /var/www/src/Cart.php on line 20",
            "RuntimeException",
            "cart is empty",
            21,
        ),
    ];
    let detector = CrashDetector::new(&identity(), None);
    let path = "/var/log/pods/shop_checkout_uid/web/0.log";
    for (trace, kind, message, severity) in cases {
        let mut event = LogEvent::line("web", Stream::Stderr, 1, trace);
        event.lines = trace.lines().count() as u32;
        event.origin = Some(Origin {
            file: Arc::from("2049:1234#1"),
            path: Arc::from(path),
            start: 0,
            end: 1,
        });
        detector.observe(&mut event).expect(trace);
        let request = logs_request_observed_at(&identity(), vec![event], 1);
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        let attributes = &record.attributes;
        assert_eq!(
            string_of(attributes, "exception.type"),
            Some(kind),
            "{trace}"
        );
        assert_eq!(
            string_of(attributes, "exception.message"),
            Some(message),
            "{trace}"
        );
        assert_eq!(string_of(attributes, "exception.stacktrace"), Some(trace));
        assert_eq!(record.severity_number, severity, "{trace}");
        let text = if severity == 21 { "FATAL" } else { "ERROR" };
        assert_eq!(record.severity_text, text);
        assert_eq!(string_of(attributes, "log.file.path"), Some(path));
        assert_eq!(
            attributes
                .iter()
                .filter(|kv| kv.key == "log.file.path")
                .count(),
            1
        );
    }

    // A JSON line with the trace in its `stack_trace` field, and its own `exception.type`.
    let stack = "java.lang.IllegalStateException: order 12 missing\n\tat com.shop.Orders.get(Orders.java:3)";
    let mut event = LogEvent::line("web", Stream::Stdout, 1, "order lookup failed");
    event.level = Some(Level::Warn);
    event.attributes.push(("stack_trace".into(), stack.into()));
    event
        .attributes
        .push(("exception.type".into(), "OrderMissing".into()));
    detector.observe(&mut event).unwrap();
    assert_eq!(event.level, Some(Level::Error));
    let request = logs_request_observed_at(&identity(), vec![event], 1);
    let attributes = &request.resource_logs[0].scope_logs[0].log_records[0].attributes;
    assert_eq!(string_of(attributes, "exception.stacktrace"), Some(stack));
    assert_eq!(
        string_of(attributes, "exception.message"),
        Some("order 12 missing")
    );
    let types: Vec<_> = attributes
        .iter()
        .filter(|kv| kv.key == "exception.type")
        .collect();
    assert_eq!(types.len(), 1);
    assert_eq!(
        string_of(attributes, "exception.type"),
        Some("OrderMissing")
    );
}

/// An event without a level has severity 0 and no text; empty identity fields are left out
/// of the resource.
#[test]
fn unknown_level_and_partial_identity() {
    let id = Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        version: "unknown".into(),
        ..Identity::default()
    };
    let request = logs_request(&id, vec![LogEvent::line("", Stream::Stdout, 5, "x")]);
    let rl = &request.resource_logs[0];
    let keys: Vec<_> = rl
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["k8s.namespace.name", "service.name", "service.version"]
    );
    let record = &rl.scope_logs[0].log_records[0];
    assert_eq!(
        (record.severity_number, record.severity_text.as_str()),
        (0, "")
    );
    assert!(record.observed_time_unix_nano > 0);
    assert_eq!(attribute(&record.attributes, "k8s.container.name"), None);
}

/// The cluster name of the config is `k8s.cluster.name` on every resource and always the
/// agent's: an application that set another cluster has it replaced; without a cluster name
/// nothing is added.
#[test]
fn cluster_name_is_enforced_on_resources() {
    let id = Identity {
        cluster: "eu-prod-1".into(),
        ..identity()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans::default(),
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attribute("k8s.cluster.name", "elsewhere")],
                    ..Resource::default()
                }),
                ..ResourceSpans::default()
            },
        ],
    };
    let mut batch = Batch::Traces(request.clone());
    enrich_batch(&id, &mut batch);
    let Batch::Traces(enriched) = batch else {
        panic!("traces expected");
    };
    for rs in &enriched.resource_spans {
        let attributes = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(string_of(attributes, "k8s.cluster.name"), Some("eu-prod-1"));
        assert_eq!(
            attributes
                .iter()
                .filter(|kv| kv.key == "k8s.cluster.name")
                .count(),
            1
        );
    }
    let mut batch = Batch::Traces(request);
    enrich_batch(&identity(), &mut batch);
    let Batch::Traces(plain) = batch else {
        panic!("traces expected");
    };
    assert!(plain.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .all(|kv| kv.key != "k8s.cluster.name"));
}

/// The logs buffer record written straight from the events is byte for byte the encoding of
/// the request [`logs_request_observed_at`] builds: every level, with and without container,
/// origin, parsed attributes, time, a crash, empty and long (multi-byte length) messages.
#[test]
fn logs_record_is_the_encoded_request() {
    let origin = Origin {
        file: Arc::from("2049:1234#1"),
        path: Arc::from("/var/log/pods/shop_checkout_uid/web/0.log"),
        start: 0,
        end: 8,
    };
    let mut events = Vec::new();
    for (i, level) in [
        None,
        Some(Level::Trace),
        Some(Level::Debug),
        Some(Level::Info),
        Some(Level::Warn),
        Some(Level::Error),
        Some(Level::Fatal),
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = LogEvent::line("web", Stream::Stdout, 1_700_000_000_000_000_000, "ok");
        event.level = level;
        if i % 2 == 0 {
            event.origin = Some(origin.clone());
        }
        if i % 3 == 0 {
            event.attributes.push(("user".into(), "u-42".into()));
            event.attributes.push((String::new(), String::new()));
        }
        events.push(event);
    }
    events.push(LogEvent::line("", Stream::Stderr, 0, ""));
    events.push(LogEvent::line(
        "é",
        Stream::Stderr,
        7,
        &"ü long ".repeat(5000),
    ));
    let mut crash = LogEvent::line(
        "web",
        Stream::Stderr,
        1_700_000_000_500_000_000,
        "Exception in thread \"main\" java.lang.IllegalStateException\n\tat A.b(A.java:1)",
    );
    crash.crash = Some(Box::new(CrashInfo {
        fingerprint: "0123456789abcdef".into(),
        kind: "java.lang.IllegalStateException".into(),
        language: "java".into(),
        frame: "A.b".into(),
    }));
    crash.origin = Some(origin);
    events.push(crash);
    for (i, event) in events.iter().enumerate() {
        let one = std::slice::from_ref(event);
        let expected = Batch::Logs(logs_request_observed_at(&identity(), one.to_vec(), 9)).encode();
        let ours = logs_record_observed_at(&identity(), one, 9);
        let at = ours.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(ours, expected, "event {i}: first difference at byte {at:?}");
    }
    // With the crash (records encoded apart) and without it (written behind the headers).
    let plain = &events[..events.len() - 1];
    for observed in [0, 42] {
        for id in [identity(), Identity::default()] {
            for events in [&events[..], plain] {
                let expected =
                    Batch::Logs(logs_request_observed_at(&id, events.to_vec(), observed)).encode();
                assert_eq!(logs_record_observed_at(&id, events, observed), expected);
            }
        }
    }
    let empty = Batch::Logs(logs_request_observed_at(&identity(), Vec::new(), 1)).encode();
    assert_eq!(logs_record_observed_at(&identity(), &[], 1), empty);
}
