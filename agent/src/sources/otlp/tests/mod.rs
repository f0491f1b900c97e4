//! Tests of OTLP reception. Requests go through real listeners into a real disk buffer, and
//! what the buffer stored is read back and decoded, as a sink would.

mod back_pressure;
mod http_errors;
mod json;
mod limits;
mod python_sdk;
mod sampling;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_crds::agent_config::RedactionConfig;
use vigil_crds::monitored_app::{Detector, WhenFull};

use super::{serve_grpc_on, serve_http_on, Limits, OtlpError, OtlpReceiver, RequestBudget};
use crate::batch::{Batch, Signal};
use crate::buffer::{self, BufferReader};
use crate::identity::Identity;
use crate::processors::redact::Redactor;
use crate::router::{Route, Router};

/// Longest wait for anything in these tests; a deadline, never a speed check.
pub(super) const DEADLINE: Duration = Duration::from_secs(60);

/// How a test agent is set up.
#[derive(Clone, Copy, Debug)]
pub(super) struct Setup {
    /// Component name of the test sink (unique per test, as telemetry counters are global).
    pub sink: &'static str,
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub sampling_ratio: f64,
    /// `traces.maxRequestBytesInFlight`.
    pub budget_bytes: usize,
    pub limits: Limits,
}

impl Setup {
    pub fn new(sink: &'static str) -> Self {
        Setup {
            sink,
            max_bytes: 64 * 1024 * 1024,
            when_full: WhenFull::Block,
            sampling_ratio: 1.0,
            budget_bytes: super::DEFAULT_REQUEST_BYTES_IN_FLIGHT,
            limits: Limits::default(),
        }
    }
}

/// The pod the test agent runs in.
pub(super) fn identity() -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f-x2kq".into(),
        pod_uid: "4f1c2e8a-0000-4000-8000-000000000001".into(),
        node: "node-a".into(),
        version: "1.4.2".into(),
        cluster: String::new(),
    }
}

/// An OTLP receiver over a real buffer in a temporary directory, with both listeners running.
pub(super) struct TestAgent {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub reader: BufferReader,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), OtlpError>>>,
    _dir: tempfile::TempDir,
}

impl TestAgent {
    pub async fn start(setup: Setup) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let (writer, reader) =
            buffer::open(dir.path(), setup.max_bytes, setup.when_full, setup.sink).unwrap();
        let router = Router::new(vec![Route {
            sink: setup.sink.into(),
            signals: [Signal::Traces, Signal::Metrics, Signal::Logs].to_vec(),
            writer,
        }]);
        let redaction = RedactionConfig {
            detectors: Detector::all(),
            patterns: Vec::new(),
        };
        let receiver = OtlpReceiver {
            identity: identity(),
            redactor: Arc::new(Redactor::new(&redaction).unwrap()),
            router,
            sampling_ratio: setup.sampling_ratio,
            budget: RequestBudget::new(setup.budget_bytes),
            limits: setup.limits,
        };
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let http = http_listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let servers = vec![
            tokio::spawn(serve_grpc_on(
                grpc_listener,
                receiver.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(serve_http_on(http_listener, receiver, shutdown)),
        ];
        TestAgent {
            grpc,
            http,
            reader,
            stop,
            servers,
            _dir: dir,
        }
    }

    /// Reads stored batches (acknowledging them) until `done` holds for all read so far.
    pub async fn stored_until(&mut self, done: impl Fn(&[Batch]) -> bool) -> Vec<Batch> {
        let mut batches = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(&batches) {
            let next = tokio::time::timeout_at(deadline, self.reader.next_batch(64, 64 << 20));
            let Ok(records) = next.await else {
                panic!("the buffer holds only these batches: {batches:#?}");
            };
            let records = records.unwrap();
            let last = records.last().unwrap().id;
            batches.extend(records.iter().map(|r| Batch::decode(&r.bytes).unwrap()));
            self.reader.ack(last).unwrap();
        }
        batches
    }

    /// Every batch stored so far, without waiting for more than a moment.
    pub async fn stored_now(&mut self) -> Vec<Batch> {
        let mut batches = Vec::new();
        while let Ok(records) = tokio::time::timeout(
            Duration::from_millis(300),
            self.reader.next_batch(64, 64 << 20),
        )
        .await
        {
            let records = records.unwrap();
            let last = records.last().unwrap().id;
            batches.extend(records.iter().map(|r| Batch::decode(&r.bytes).unwrap()));
            self.reader.ack(last).unwrap();
        }
        batches
    }

    /// The buffer's directory.
    pub fn buffer_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Stops both listeners and waits for them to finish.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for server in self.servers.drain(..) {
            tokio::time::timeout(DEADLINE, server)
                .await
                .expect("listener stops on shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// An HTTP client for plain-text `http://` test endpoints.
pub(super) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// Spans with their resource, across batches.
pub(super) fn spans(batches: &[Batch]) -> Vec<(&Resource, &Span)> {
    let mut out = Vec::new();
    for batch in batches {
        if let Batch::Traces(request) = batch {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans.resource.as_ref().unwrap();
                for scope in &resource_spans.scope_spans {
                    out.extend(scope.spans.iter().map(|span| (resource, span)));
                }
            }
        }
    }
    out
}

/// The value of attribute `key`.
pub(super) fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

/// A string attribute value.
pub(super) fn string(value: &str) -> Value {
    Value::StringValue(value.to_owned())
}

/// The string of an `AnyValue` body.
pub(super) fn body_text(body: &Option<AnyValue>) -> Option<&str> {
    match body.as_ref()?.value.as_ref()? {
        Value::StringValue(text) => Some(text),
        _ => None,
    }
}

/// Checks the resource attributes that enrichment adds (it keeps the sender's own values).
pub(super) fn assert_enriched(resource: &Resource) {
    let pod = identity();
    let attributes = &resource.attributes;
    assert_eq!(
        attribute(attributes, "k8s.namespace.name"),
        Some(&string(&pod.namespace))
    );
    assert_eq!(
        attribute(attributes, "k8s.pod.name"),
        Some(&string(&pod.pod))
    );
    assert_eq!(
        attribute(attributes, "k8s.pod.uid"),
        Some(&string(&pod.pod_uid))
    );
    assert_eq!(
        attribute(attributes, "k8s.node.name"),
        Some(&string(&pod.node))
    );
}

/// A span of trace `trace_id` with span id `[span_id; 8]`.
pub(super) fn span(trace_id: [u8; 16], span_id: u8, name: &str) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![span_id; 8],
        name: name.to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        ..Default::default()
    }
}

/// One resource and scope holding `spans`.
pub(super) fn traces_request(
    spans: Vec<Span>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(string("checkout")),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A gRPC trace client for the test agent.
pub(super) async fn grpc_client(
    agent: &TestAgent,
) -> opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
    tonic::transport::Channel,
> {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    TraceServiceClient::connect(format!("http://{}", agent.grpc))
        .await
        .unwrap()
}
