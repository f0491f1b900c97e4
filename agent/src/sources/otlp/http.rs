//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics` and `/v1/logs` with a protobuf
//! (`application/x-protobuf`) or JSON (`application/json`, the OTLP/JSON encoding) body,
//! optionally gzip-compressed. Responses use the request's content type; errors carry a
//! `google.rpc.Status` whose message names what failed and never quotes the payload.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ingest::{Acknowledged, Refusal};
use super::rpc_status::{RetryInfo, RpcCode, RpcStatus};
use super::{too_large_message, OtlpReceiver, MAX_REQUEST_BYTES, RETRY_AFTER};
use crate::batch::{Batch, Signal};

/// Component name in the agent's own telemetry.
const COMPONENT: &str = "otlp_http";

/// The two body encodings of OTLP/HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// The encoding named by a `Content-Type` value (parameters such as `charset` ignored).
    fn from_content_type(value: &str) -> Option<Encoding> {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

/// An answer other than success.
#[derive(Debug)]
pub(super) struct Rejection {
    pub status: StatusCode,
    pub code: RpcCode,
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, code: RpcCode, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Rejection::new(StatusCode::BAD_REQUEST, RpcCode::InvalidArgument, message)
    }

    fn too_large() -> Self {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcCode::InvalidArgument,
            format!("request body is larger than {MAX_REQUEST_BYTES} bytes"),
        )
    }
}

/// Serves OTLP/HTTP on `listener` until `shutdown`, then lets in-flight requests finish.
pub(super) async fn serve(
    listener: TcpListener,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) {
    let receiver = Arc::new(receiver);
    crate::http_server::serve(
        listener,
        COMPONENT,
        move |request| {
            let receiver = Arc::clone(&receiver);
            async move { answer(&receiver, request).await }
        },
        shutdown,
    )
    .await;
}

/// Answers one request.
async fn answer(receiver: &OtlpReceiver, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(Encoding::from_content_type);
    // Errors are answered in the request's encoding; protobuf when it has none we know.
    let reply_encoding = content_type.unwrap_or(Encoding::Protobuf);
    match export(receiver, request, content_type).await {
        Ok(body) => response(StatusCode::OK, reply_encoding, body),
        Err(rejection) => rejection_response(rejection, reply_encoding),
    }
}

/// Checks, reads, decodes and ingests one export request; returns the response body.
async fn export(
    receiver: &OtlpReceiver,
    request: Request<Incoming>,
    encoding: Option<Encoding>,
) -> Result<Bytes, Rejection> {
    let signal = match request.uri().path() {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        "/v1/logs" => Signal::Logs,
        _ => {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                RpcCode::NotFound,
                "no such path: OTLP/HTTP serves /v1/traces, /v1/metrics and /v1/logs",
            ))
        }
    };
    if request.method() != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            RpcCode::Unimplemented,
            format!(
                "method {} not allowed: OTLP/HTTP takes POST",
                request.method()
            ),
        ));
    }
    let Some(encoding) = encoding else {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RpcCode::InvalidArgument,
            "unsupported Content-Type: use application/x-protobuf or application/json",
        ));
    };
    let gzip = match request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::to_str)
    {
        None => false,
        Some(Ok(value)) if value.trim().eq_ignore_ascii_case("identity") => false,
        Some(Ok(value)) if value.trim().eq_ignore_ascii_case("gzip") => true,
        Some(_) => {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                RpcCode::InvalidArgument,
                "unsupported Content-Encoding: use gzip or none",
            ))
        }
    };
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_REQUEST_BYTES as u64) {
        return Err(Rejection::too_large());
    }
    let body = Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                Rejection::too_large()
            } else {
                Rejection::bad_request("cannot read the request body")
            }
        })?
        .to_bytes();
    let body = if gzip { gunzip(&body)? } else { body };
    let bytes = body.len() as u64;
    let batch = decode(signal, encoding, &body)?;
    let encoded = (encoding == Encoding::Protobuf).then_some(&body[..]);
    let acknowledged = receiver
        .ingest(COMPONENT, batch, bytes, encoded)
        .map_err(refusal_rejection)?;
    Ok(export_response(signal, encoding, acknowledged))
}

/// Decompresses a gzip body, refusing one that inflates past the request size limit.
pub(super) fn gunzip(body: &[u8]) -> Result<Bytes, Rejection> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_REQUEST_BYTES));
    flate2::read::GzDecoder::new(body)
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| Rejection::bad_request("invalid gzip body"))?;
    if out.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcCode::InvalidArgument,
            format!("decompressed request body is larger than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    Ok(Bytes::from(out))
}

/// Decodes the body of an export request.
pub(super) fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<Batch, Rejection> {
    Ok(match (signal, encoding) {
        (Signal::Traces, Encoding::Protobuf) => Batch::Traces(decode_protobuf(signal, body)?),
        (Signal::Metrics, Encoding::Protobuf) => Batch::Metrics(decode_protobuf(signal, body)?),
        (Signal::Logs, Encoding::Protobuf) => Batch::Logs(decode_protobuf(signal, body)?),
        (Signal::Traces, Encoding::Json) => {
            Batch::Traces(decode_json::<ExportTraceServiceRequest>(signal, body)?)
        }
        (Signal::Metrics, Encoding::Json) => {
            Batch::Metrics(decode_json::<ExportMetricsServiceRequest>(signal, body)?)
        }
        (Signal::Logs, Encoding::Json) => {
            Batch::Logs(decode_json::<ExportLogsServiceRequest>(signal, body)?)
        }
        (Signal::Samples, _) => {
            return Err(Rejection::bad_request("samples are not an OTLP signal"));
        }
    })
}

fn decode_protobuf<M: Message + Default>(signal: Signal, body: &[u8]) -> Result<M, Rejection> {
    // prost's errors name the message, field and wire problem, never the bytes.
    M::decode(body).map_err(|error| {
        Rejection::bad_request(format!(
            "invalid OTLP/protobuf {} request: {error}",
            signal.as_str()
        ))
    })
}

/// Decodes OTLP/JSON. The error names the JSON path, line and column and the kind of problem;
/// serde's own messages are not used because they quote the offending value.
pub(super) fn decode_json<M: DeserializeOwned>(
    signal: Signal,
    body: &[u8],
) -> Result<M, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let decoded: Result<M, _> = serde_path_to_error::deserialize(&mut deserializer);
    let describe = |path: Option<String>, error: &serde_json::Error| {
        let problem = match error.classify() {
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Eof => "JSON ends early",
            serde_json::error::Category::Data => "a value of the wrong type or format",
            serde_json::error::Category::Io => "unreadable body",
        };
        let at = path
            .filter(|path| path != ".")
            .map(|path| format!(" at {path}"))
            .unwrap_or_default();
        Rejection::bad_request(format!(
            "invalid OTLP/JSON {} request{at}: {problem} (line {}, column {})",
            signal.as_str(),
            error.line(),
            error.column()
        ))
    };
    let message =
        decoded.map_err(|error| describe(Some(error.path().to_string()), error.inner()))?;
    deserializer.end().map_err(|error| describe(None, &error))?;
    Ok(message)
}

fn refusal_rejection(refusal: Refusal) -> Rejection {
    match refusal {
        Refusal::BackPressure => Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            RpcCode::ResourceExhausted,
            "the agent's buffer is full; retry later",
        ),
        Refusal::Unavailable => Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcCode::Unavailable,
            "the agent's buffer is unavailable; retry later",
        ),
        Refusal::TooLarge { bytes, max_bytes } => Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcCode::InvalidArgument,
            too_large_message(bytes, max_bytes),
        ),
    }
}

/// The `Export*ServiceResponse` for `signal`, with `partial_success` when items were rejected.
fn export_response(signal: Signal, encoding: Encoding, ack: Acknowledged) -> Bytes {
    let partial = ack.rejected > 0;
    if !partial && encoding == Encoding::Json {
        // The JSON form of a response without fields (serde would write `"partialSuccess":null`).
        return Bytes::from_static(b"{}");
    }
    match signal {
        Signal::Traces => encode(
            encoding,
            &ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: ack.rejected,
                    error_message: ack.message,
                }),
            },
        ),
        Signal::Metrics => encode(
            encoding,
            &ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: ack.rejected,
                    error_message: ack.message,
                }),
            },
        ),
        Signal::Logs | Signal::Samples => encode(
            encoding,
            &ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: ack.rejected,
                    error_message: ack.message,
                }),
            },
        ),
    }
}

fn encode<M: Message + Serialize>(encoding: Encoding, message: &M) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(message.encode_to_vec()),
        // Serialising these response types cannot fail (no maps with non-string keys).
        Encoding::Json => Bytes::from(serde_json::to_vec(message).unwrap_or_default()),
    }
}

fn response(status: StatusCode, encoding: Encoding, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    response
}

fn rejection_response(rejection: Rejection, encoding: Encoding) -> Response<Full<Bytes>> {
    let throttled = matches!(
        rejection.status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    );
    let mut status = RpcStatus::new(rejection.code, rejection.message);
    if throttled {
        status = status.with_retry_info(&RetryInfo::after(RETRY_AFTER));
    }
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => status.to_json(),
    };
    let mut response = response(rejection.status, encoding, Bytes::from(body));
    let headers = response.headers_mut();
    if throttled {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs().max(1)),
        );
    }
    match rejection.status {
        StatusCode::METHOD_NOT_ALLOWED => {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("gzip, identity"),
            );
        }
        _ => {}
    }
    response
}
