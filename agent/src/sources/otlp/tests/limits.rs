//! What bounds the receiver's memory: a large protobuf request is processed in parts and still
//! stored whole (one record, every span in order, invalid ones rejected, redacted and
//! enriched); request bodies share one byte budget across both transports, a request that does
//! not fit now being refused as retryable and one larger than the whole budget as permanent;
//! a gRPC body that stalls is cut off.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
use prost::Message;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use super::super::rpc_status::{RetryInfo, RpcStatus, RETRY_INFO_TYPE_URL};
use super::*;

/// About 1.5 MB (several parts): two resources of two scopes each; every 100th span has an
/// invalid (all-zero) span id and every 10th an e-mail address in an attribute.
fn large_request(tag: &str) -> (ExportTraceServiceRequest, Vec<String>, i64) {
    let mut request = traces_request(Vec::new());
    let mut second = request.resource_spans[0].clone();
    if let Some(resource) = second.resource.as_mut() {
        resource.attributes[0].value = Some(AnyValue {
            value: Some(string("payments")),
        });
    }
    request.resource_spans.push(second);
    let mut kept = Vec::new();
    let mut invalid = 0;
    let mut n: u32 = 0;
    for resource in &mut request.resource_spans {
        resource.scope_spans = (0..2)
            .map(|_| ScopeSpans {
                spans: (0..2500)
                    .map(|_| {
                        n += 1;
                        let name = format!("{tag}-{n:06}-{}", "n".repeat(100));
                        let mut span = span([(n % 250 + 1) as u8; 16], 1, &name);
                        span.span_id = n.to_be_bytes().repeat(2);
                        if n % 100 == 0 {
                            span.span_id = vec![0; 8];
                            invalid += 1;
                        } else {
                            kept.push(name);
                        }
                        if n % 10 == 0 {
                            span.attributes.push(KeyValue {
                                key: "contact".into(),
                                value: Some(AnyValue {
                                    value: Some(string("write to alice@example.com")),
                                }),
                                ..Default::default()
                            });
                        }
                        span
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
    }
    (request, kept, invalid)
}

/// The stored batch holds exactly the valid spans, in order, with their own resource
/// (enriched), and no e-mail address.
fn assert_stored_whole(batches: &[Batch], kept: &[String]) {
    assert_eq!(batches.len(), 1, "one request, one record");
    let stored = spans(batches);
    let names: Vec<&str> = stored.iter().map(|(_, span)| span.name.as_str()).collect();
    assert_eq!(names, kept);
    for (i, (resource, span)) in stored.iter().enumerate() {
        assert_enriched(resource);
        let service = if i < kept.len() / 2 {
            "checkout"
        } else {
            "payments"
        };
        assert_eq!(
            attribute(&resource.attributes, "service.name"),
            Some(&string(service))
        );
        if let Some(contact) = attribute(&span.attributes, "contact") {
            assert_eq!(contact, &string("write to [REDACTED:email]"));
        }
    }
}

#[tokio::test]
async fn large_requests_are_stored_whole_over_both_transports() {
    let mut agent = TestAgent::start(Setup::new("sink_large_requests")).await;
    let (request, kept, invalid) = large_request("grpc");
    assert!(request.encoded_len() > 1_000_000);
    let mut client = grpc_client(&agent)
        .await
        .max_encoding_message_size(16 << 20);
    let response = client.export(request).await.unwrap().into_inner();
    assert_eq!(response.partial_success.unwrap().rejected_spans, invalid);
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_stored_whole(&batches, &kept);

    let (request, kept, invalid) = large_request("http");
    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(response.partial_success.unwrap().rejected_spans, invalid);
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_stored_whole(&batches, &kept);

    // A large body whose encoding breaks half-way is refused whole, naming the signal.
    let mut broken = large_request("broken").0.encode_to_vec();
    // (Not at a half: the two resources are of one size, and that would be a valid request.)
    broken.truncate(broken.len() / 2 + 1000);
    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(
        status
            .message
            .starts_with("invalid OTLP/protobuf traces request"),
        "{}",
        status.message
    );
    assert!(agent.stored_now().await.is_empty(), "nothing of it stored");
    agent.stop().await;
}

/// While an HTTP request holds the whole budget (its declared length, its body still coming),
/// gRPC and HTTP requests are refused as retryable — `RESOURCE_EXHAUSTED` with `RetryInfo`,
/// 429 with `Retry-After` — and served once it is gone; a gRPC request larger than the whole
/// budget is `INVALID_ARGUMENT` (not retried).
#[tokio::test]
async fn requests_over_the_budget_are_retryable_and_larger_ones_permanent() {
    let mut setup = Setup::new("sink_request_budget");
    setup.budget_bytes = 1 << 20;
    let mut agent = TestAgent::start(setup).await;
    let mut holder = tokio::net::TcpStream::connect(agent.http).await.unwrap();
    holder
        .write_all(
            format!(
                "POST /v1/traces HTTP/1.1\r\nhost: agent\r\ncontent-type: \
                 application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
                1 << 20
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    holder.write_all(&[0; 1000]).await.unwrap();

    let mut client = grpc_client(&agent)
        .await
        .max_encoding_message_size(16 << 20);
    let small = traces_request(vec![span([7; 16], 1, "small")]);
    // The holder's request may take a moment to reach its handler.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        match client.export(small.clone()).await {
            Err(status) => break status,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "never refused"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let details = RpcStatus::decode(refused.details()).unwrap();
    assert_eq!(details.details[0].type_url, RETRY_INFO_TYPE_URL);
    let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(retry.retry_delay.unwrap().seconds, 1);
    assert!(refused
        .metadata()
        .get_bin("google.rpc.retryinfo-bin")
        .is_some());

    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(small.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");

    // A large refused body is read to its end and discarded, so the client gets the answer
    // rather than a connection closed under its upload; over gRPC the message length comes
    // first and the refusal is the same.
    let (mut large, _, _) = large_request("refused");
    while large.encoded_len() > 900_000 {
        large.resource_spans.pop();
        large.resource_spans[0].scope_spans[0].spans.truncate(3000);
    }
    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(large.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let refused = client.export(large).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    // The holder goes away: its bytes come back.
    drop(holder);
    let stored = loop {
        match client.export(small.clone()).await {
            Ok(_) => break agent.stored_until(|b| !b.is_empty()).await,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                assert!(tokio::time::Instant::now() < deadline, "budget never freed");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(spans(&stored)[0].1.name, "small");

    let (large, _, _) = large_request("too-large");
    assert!(large.encoded_len() > 1 << 20);
    let refused = client.export(large).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    agent.stop().await;
}

/// A gRPC call whose body stalls is answered `DEADLINE_EXCEEDED` once the body time is over.
#[tokio::test]
async fn slow_grpc_body_is_cut_off() {
    let mut setup = Setup::new("sink_slow_grpc");
    setup.limits.timeouts.body_read = Duration::from_millis(300);
    let agent = TestAgent::start(setup).await;
    let stream = tokio::net::TcpStream::connect(agent.grpc).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(format!(
        "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        agent.grpc
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // A frame header announcing 1000 bytes, and only a few of them.
    body.send_data(Bytes::from_static(b"\0\0\0\x03\xe8partial"), false)
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "{response:?}");
    agent.stop().await;
}
