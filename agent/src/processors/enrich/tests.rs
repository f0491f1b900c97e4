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
        file: Arc::from("/var/log/pods/shop_checkout_uid/web/0.log"),
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
    crash.crash = Some(CrashInfo {
        fingerprint: "0123456789abcdef".into(),
        kind: "java.lang.IllegalStateException".into(),
        language: "java".into(),
        frame: "A.b".into(),
    });
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
