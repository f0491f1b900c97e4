//! A full buffer: under `block` the sender is pushed back (gRPC `RESOURCE_EXHAUSTED` with
//! `RetryInfo`, HTTP 429 with `Retry-After`) and nothing beyond the bound is stored; under
//! `dropNewest` the sender is told of the loss through `partial_success` and the drop is counted.

use prost::Message;
use reqwest::StatusCode;

use super::super::rpc_status::{RetryInfo, RpcStatus, RETRY_INFO_TYPE_URL};
use super::*;
use crate::telemetry::dropped_total;

/// Buffer bound of these tests: room for a few of the requests below.
const MAX_BYTES: u64 = 8 * 1024;

/// A traces request of about 1 KiB.
fn kilobyte_request(
    n: u8,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut span = span([n.max(1); 16], 1, &format!("span-{n}"));
    span.attributes.push(KeyValue {
        key: "padding".into(),
        value: Some(AnyValue {
            value: Some(string(&"p".repeat(1000))),
        }),
        ..Default::default()
    });
    traces_request(vec![span])
}

/// Under `block`, requests are stored until the buffer is full, then refused with
/// RESOURCE_EXHAUSTED + RetryInfo (gRPC) and 429 + Retry-After (HTTP); the buffer holds exactly
/// the acknowledged requests and no more than its bound.
#[tokio::test]
async fn full_block_buffer_pushes_back_on_grpc_and_http() {
    let mut setup = Setup::new("sink_block_full");
    setup.max_bytes = MAX_BYTES;
    let mut agent = TestAgent::start(setup).await;
    let mut client = grpc_client(&agent).await;
    let mut acknowledged = 0;
    let refused = loop {
        assert!(acknowledged < 64, "the buffer never filled up");
        match client.export(kilobyte_request(acknowledged + 1)).await {
            Ok(response) => {
                assert_eq!(response.into_inner().partial_success, None);
                acknowledged += 1;
            }
            Err(status) => break status,
        }
    };
    assert!(acknowledged > 0, "the first request fits");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let details = RpcStatus::decode(refused.details()).unwrap();
    assert_eq!(details.code, 8);
    assert_eq!(details.details[0].type_url, RETRY_INFO_TYPE_URL);
    let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(retry.retry_delay.unwrap().seconds, 1);
    let trailer = refused
        .metadata()
        .get_bin("google.rpc.retryinfo-bin")
        .expect("RetryInfo trailer for the Python SDK")
        .to_bytes()
        .unwrap();
    assert_eq!(RetryInfo::decode(trailer).unwrap(), retry);

    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(kilobyte_request(99).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(body.code, 8);

    let batches = agent.stored_now().await;
    assert_eq!(
        batches.len(),
        acknowledged as usize,
        "stored = acknowledged"
    );
    let stored_bytes: usize = batches.iter().map(|b| b.encode().len()).sum();
    assert!(
        stored_bytes as u64 <= MAX_BYTES,
        "{stored_bytes} bytes stored"
    );
    agent.stop().await;
}

/// Issue 14, item 3: a full disk (`ENOSPC`, through the buffer's test quota) is back-pressure:
/// gRPC `UNAVAILABLE` with `RetryInfo`, HTTP 503 with `Retry-After`, nothing stored. Once what
/// was stored is delivered, requests are accepted again without a restart (they used to be
/// refused for good).
#[tokio::test]
async fn full_disk_pushes_back_then_heals() {
    let mut agent = TestAgent::start(Setup::new("sink_full_disk")).await;
    crate::buffer::disk_quota::set(agent.buffer_dir(), Some(32 << 10));
    let mut client = grpc_client(&agent).await;
    let mut acknowledged = 0;
    let refused = loop {
        assert!(acknowledged < 64, "the disk never filled up");
        match client.export(kilobyte_request(acknowledged + 1)).await {
            Ok(_) => acknowledged += 1,
            Err(status) => break status,
        }
    };
    assert!(acknowledged > 0, "the first request fits");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(refused.details()).unwrap();
    assert_eq!(details.details[0].type_url, RETRY_INFO_TYPE_URL);
    let http = agent.http;
    let post = |n: u8| {
        http_client()
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(kilobyte_request(n).encode_to_vec())
            .send()
    };
    let response = post(99).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");

    let batches = agent.stored_now().await;
    assert_eq!(
        batches.len(),
        acknowledged as usize,
        "stored = acknowledged"
    );
    // Delivered and acknowledged: the disk freed itself.
    client.export(kilobyte_request(100)).await.unwrap();
    assert_eq!(post(101).await.unwrap().status(), StatusCode::OK);
    assert_eq!(agent.stored_now().await.len(), 2);
    crate::buffer::disk_quota::set(agent.buffer_dir(), None);
    agent.stop().await;
}

/// Under `dropNewest`, every request is answered with success; those that did not fit carry a
/// `partial_success` naming the loss, are counted as dropped, and are not stored.
#[tokio::test]
async fn full_drop_newest_buffer_answers_success_and_counts_the_drop() {
    let mut setup = Setup::new("sink_drop_newest_full");
    setup.max_bytes = MAX_BYTES;
    setup.when_full = WhenFull::DropNewest;
    let mut agent = TestAgent::start(setup).await;
    let dropped_before = dropped_total(setup.sink, "buffer_full");
    let mut client = grpc_client(&agent).await;
    let (mut stored, mut dropped) = (0, 0);
    for n in 1..=24 {
        let response = client
            .export(kilobyte_request(n))
            .await
            .unwrap()
            .into_inner();
        match response.partial_success {
            None => stored += 1,
            Some(partial) => {
                assert_eq!(partial.rejected_spans, 1);
                assert!(partial.error_message.contains("dropNewest"));
                dropped += 1;
            }
        }
    }
    assert!(
        stored > 0 && dropped > 0,
        "stored {stored}, dropped {dropped}"
    );
    assert_eq!(
        dropped_total(setup.sink, "buffer_full") - dropped_before,
        dropped
    );
    assert_eq!(agent.stored_now().await.len(), stored as usize);
    agent.stop().await;
}

/// A request larger than the whole buffer can never be stored: it is refused as permanent
/// (HTTP 413, gRPC INVALID_ARGUMENT) instead of being retried forever.
#[tokio::test]
async fn request_larger_than_the_buffer_is_refused_as_permanent() {
    let mut setup = Setup::new("sink_too_large");
    setup.max_bytes = MAX_BYTES;
    // Under `block` the router reports any record without room as `Full` before the buffer
    // can say it would never fit; `dropNewest` lets the buffer answer.
    setup.when_full = WhenFull::DropNewest;
    let agent = TestAgent::start(setup).await;
    let spans =
        (1..=20).map(|n| kilobyte_request(n).resource_spans[0].scope_spans[0].spans[0].clone());
    let request = traces_request(spans.collect());

    let refused = grpc_client(&agent)
        .await
        .export(request.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("smaller batches"),
        "{}",
        refused.message()
    );

    let response = http_client()
        .post(format!("http://{}/v1/traces", agent.http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(body.message.contains("smaller batches"), "{}", body.message);
    agent.stop().await;
}
