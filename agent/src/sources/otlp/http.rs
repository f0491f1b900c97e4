//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics` and `/v1/logs` with a protobuf
//! (`application/x-protobuf`) or JSON (`application/json`, the OTLP/JSON encoding) body,
//! optionally gzip-compressed. Responses use the request's content type; errors carry a
//! `google.rpc.Status` whose message names what failed and never quotes the payload.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
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
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::ingest::{Acknowledged, IngestError, Refusal};
use super::rpc_status::{RetryInfo, RpcCode, RpcStatus};
use super::{too_large_message, OtlpReceiver, MAX_REQUEST_BYTES, RETRY_AFTER};
use crate::batch::{Batch, Signal};
use crate::http_server::{read_body, BodyError, Framing, ReadBody, RequestBudget};

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
    let limits = receiver.limits;
    let receiver = Arc::new(receiver);
    crate::http_server::serve(
        listener,
        COMPONENT,
        limits,
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
    let ReadBody {
        bytes: body,
        permit,
    } = read_body(
        request.into_body(),
        declared_length,
        Framing::Plain,
        MAX_REQUEST_BYTES,
        &receiver.budget,
        receiver.limits.timeouts.body_read,
    )
    .await
    .map_err(body_rejection)?;
    let (body, _permit) = if gzip {
        gunzip(&body, &receiver.budget, permit)?
    } else {
        (body, permit)
    };
    let bytes = body.len() as u64;
    let acknowledged = match encoding {
        Encoding::Protobuf => {
            receiver
                .ingest_protobuf(COMPONENT, signal, &body)
                .map_err(|error| match error {
                    IngestError::Malformed(message) => Rejection::bad_request(message),
                    IngestError::Refused(refusal) => refusal_rejection(refusal),
                })?
        }
        Encoding::Json => {
            let batch = decode_json_batch(signal, &body)?;
            drop(body);
            receiver
                .ingest(COMPONENT, batch, bytes)
                .map_err(refusal_rejection)?
        }
    };
    Ok(export_response(signal, encoding, acknowledged))
}

/// Decompresses a gzip body, refusing one that inflates past the request size limit; the
/// decompressed bytes are taken from `budget` as they come, the compressed ones given back.
pub(super) fn gunzip(
    body: &[u8],
    budget: &RequestBudget,
    compressed: Option<OwnedSemaphorePermit>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Rejection> {
    const CHUNK: usize = 256 * 1024;
    let mut permit = None;
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(body).take(MAX_REQUEST_BYTES as u64 + 1);
    loop {
        let len = out.len();
        if let Err(error) = budget.take(&mut permit, CHUNK) {
            // More than the whole budget could never be handled: retrying cannot help.
            return Err(if body.len() + len + CHUNK > budget.bytes() {
                too_large_decompressed()
            } else {
                body_rejection(error)
            });
        }
        out.resize(len + CHUNK, 0);
        let read = decoder
            .read(&mut out[len..])
            .map_err(|_| Rejection::bad_request("invalid gzip body"))?;
        out.truncate(len + read);
        if read == 0 {
            break;
        }
        if out.len() > MAX_REQUEST_BYTES {
            return Err(too_large_decompressed());
        }
        // Only what was filled stays taken.
        if let Some(held) = permit.as_mut() {
            if let Some(unused) = held.split(CHUNK - read) {
                drop(unused);
            }
        }
    }
    drop(compressed);
    Ok((Bytes::from(out), permit))
}

fn too_large_decompressed() -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        RpcCode::InvalidArgument,
        format!("decompressed request body is larger than {MAX_REQUEST_BYTES} bytes"),
    )
}

/// The answer to a body that was not read.
fn body_rejection(error: BodyError) -> Rejection {
    match error {
        BodyError::TooLarge { .. } => Rejection::too_large(),
        BodyError::OverBudget => Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            RpcCode::ResourceExhausted,
            "the agent is handling as many request bytes as its memory allows; retry later",
        ),
        BodyError::TimedOut => Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            RpcCode::DeadlineExceeded,
            "the request body did not arrive in time",
        ),
        BodyError::Unreadable => Rejection::bad_request("cannot read the request body"),
    }
}

/// Decodes the OTLP/JSON body of an export request.
pub(super) fn decode_json_batch(signal: Signal, body: &[u8]) -> Result<Batch, Rejection> {
    Ok(match signal {
        Signal::Traces => Batch::Traces(decode_json::<ExportTraceServiceRequest>(signal, body)?),
        Signal::Metrics => {
            Batch::Metrics(decode_json::<ExportMetricsServiceRequest>(signal, body)?)
        }
        Signal::Logs => Batch::Logs(decode_json::<ExportLogsServiceRequest>(signal, body)?),
        Signal::Samples => {
            return Err(Rejection::bad_request("samples are not an OTLP signal"));
        }
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
