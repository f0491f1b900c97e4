//! OTLP/HTTP answers bad requests with the status codes of the OTLP specification and a
//! `google.rpc.Status` body, and keeps serving afterwards.

use std::io::Write;

use prost::Message;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::rpc_status::RpcStatus;
use super::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Posts `body` to `path` with the given headers; returns status, headers and body.
async fn post(
    agent: &TestAgent,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = http_client()
        .post(format!("http://{}{path}", agent.http))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");

/// The protobuf `Status` of an error response, checked to be in the request's encoding.
fn status_body(headers: &reqwest::header::HeaderMap, body: &[u8]) -> RpcStatus {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    RpcStatus::decode(body).unwrap()
}

/// Wrong path 404, wrong method 405, unknown content type or encoding 415, garbage protobuf,
/// malformed JSON and broken gzip 400, oversized and over-inflating bodies 413 — and after all
/// of them a valid request is still accepted and stored.
#[tokio::test]
async fn bad_requests_get_otlp_status_codes_and_the_server_keeps_serving() {
    let mut agent = TestAgent::start(Setup::new("sink_http_errors")).await;
    let valid = traces_request(vec![span([7; 16], 1, "after-errors")]).encode_to_vec();

    let (status, headers, body) = post(&agent, "/v1/spans", &[PROTOBUF], valid.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(status_body(&headers, &body).message.contains("/v1/traces"));

    let response = http_client()
        .get(format!("http://{}/v1/traces", agent.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");

    let (status, _, _) = post(
        &agent,
        "/v1/traces",
        &[("content-type", "text/plain")],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, _) = post(
        &agent,
        "/v1/traces",
        &[PROTOBUF, ("content-encoding", "br")],
        valid.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, headers, body) = post(&agent, "/v1/traces", &[PROTOBUF], vec![0xff; 64]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let rpc = status_body(&headers, &body);
    assert_eq!(rpc.code, 3);
    assert!(
        rpc.message.contains("invalid OTLP/protobuf traces request"),
        "{}",
        rpc.message
    );

    let (status, headers, body) = post(
        &agent,
        "/v1/logs",
        &[("content-type", "application/json")],
        br#"{"resourceLogs": [{"scopeLogs": "#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], 3);
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("invalid OTLP/JSON logs request"));

    let (status, _, body) = post(
        &agent,
        "/v1/traces",
        &[PROTOBUF, ("content-encoding", "gzip")],
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        RpcStatus::decode(body.as_slice()).unwrap().message,
        "invalid gzip body"
    );

    // 17 MiB of zeros inflate past the 16 MiB limit from a few kilobytes.
    let bomb = gzip(&vec![0; 17 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _, _) = post(
        &agent,
        "/v1/traces",
        &[PROTOBUF, ("content-encoding", "gzip")],
        bomb,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A declared body over the limit is refused before it is read.
    let mut stream = tokio::net::TcpStream::connect(agent.http).await.unwrap();
    stream
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nhost: agent\r\ncontent-type: application/x-protobuf\r\n\
              content-length: 17000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(stream);

    let (status, headers, body) = post(&agent, "/v1/traces", &[PROTOBUF], Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "an empty request is a success");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert!(body.is_empty());

    let (status, _, _) = post(
        &agent,
        "/v1/traces",
        &[PROTOBUF, ("content-encoding", "gzip")],
        gzip(&valid),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_eq!(spans(&batches)[0].1.name, "after-errors");
    assert_eq!(batches.len(), 1, "nothing else was stored");
    agent.stop().await;
}

/// A gRPC request over the 16 MiB limit is refused as permanent (`INVALID_ARGUMENT`, which
/// OTLP SDKs do not retry, not `OUT_OF_RANGE`, which they do), and the next one is served.
#[tokio::test]
async fn oversized_grpc_request_is_refused_and_the_server_keeps_serving() {
    let mut agent = TestAgent::start(Setup::new("sink_grpc_oversize")).await;
    let mut client = grpc_client(&agent)
        .await
        .max_encoding_message_size(64 << 20);
    let mut big = span([5; 16], 1, "too-big");
    big.attributes.push(KeyValue {
        key: "blob".into(),
        value: Some(AnyValue {
            value: Some(string(&"x".repeat(17 << 20))),
        }),
        ..Default::default()
    });
    let refused = client.export(traces_request(vec![big])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("smaller batches"), "{refused:?}");
    client
        .export(traces_request(vec![span([5; 16], 2, "fits")]))
        .await
        .unwrap();
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_eq!(spans(&batches)[0].1.name, "fits");
    agent.stop().await;
}

/// Sends one gRPC message (`compressed`: flagged gzip) to the trace `Export` method over
/// HTTP/2 and returns the answer's `grpc-status` and `grpc-message`.
async fn raw_grpc_export(agent: &TestAgent, message: &[u8], compressed: bool) -> (String, String) {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut request = client
        .post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            agent.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if compressed {
        request = request.header("grpc-encoding", "gzip");
    }
    let response = request.body(frame).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

/// A gRPC body that is not protobuf, and a gzip body over the limit once decompressed, are
/// refused with `INVALID_ARGUMENT` (permanent, as OTLP/HTTP answers 400/413), not `INTERNAL` or
/// `RESOURCE_EXHAUSTED`; the server keeps serving.
#[tokio::test]
async fn malformed_and_inflated_grpc_requests_are_invalid_arguments() {
    let mut agent = TestAgent::start(Setup::new("sink_grpc_malformed")).await;
    let (code, message) = raw_grpc_export(&agent, &[0xff, 0xff, 0xff, 0x0f, 0x01], false).await;
    assert_eq!(code, "3", "malformed protobuf: {message}");
    let inflated = gzip(&vec![0u8; 17 << 20]);
    let (code, message) = raw_grpc_export(&agent, &inflated, true).await;
    assert_eq!(code, "3", "inflated over the limit: {message}");
    grpc_client(&agent)
        .await
        .export(traces_request(vec![span([6; 16], 1, "fits")]))
        .await
        .unwrap();
    let batches = agent.stored_until(|b| !b.is_empty()).await;
    assert_eq!(spans(&batches)[0].1.name, "fits");
    agent.stop().await;
}
