//! OTLP/gRPC: the `Export` methods of the OTLP `TraceService`, `MetricsService` and
//! `LogsService` on one tonic server, accepting gzip-compressed requests.
//!
//! The request body is taken as bytes (tonic still handles framing, decompression and the size
//! limit), decoded here, and handed to ingest together with its encoding, so that an unchanged
//! request is stored as it arrived rather than encoded again.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http_body_util::Full;
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Request, Response, Status};

use super::ingest::{Acknowledged, IngestError, Refusal};
use super::rpc_status::{RetryInfo, RpcCode, RpcStatus};
use super::{too_large_message, OtlpError, OtlpReceiver, MAX_REQUEST_BYTES, RETRY_AFTER};
use crate::batch::Signal;
use crate::http_server::{read_body, BodyError, Framing, ReadBody};

/// Component name in the agent's own telemetry.
const COMPONENT: &str = "otlp_grpc";

/// Serves the OTLP services on `listener` until `shutdown`, then lets in-flight calls finish.
/// Connections are handled by the agent's own HTTP server (time limits, connection bound and
/// accept back-off shared with OTLP/HTTP); each request body is read there within the shared
/// [`RequestBudget`](crate::http_server::RequestBudget) before tonic decodes it.
pub(super) async fn serve(
    listener: TcpListener,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    let limits = receiver.limits;
    let services = OtlpServices {
        receiver: Arc::new(receiver),
    };
    crate::http_server::serve(
        listener,
        COMPONENT,
        limits,
        move |request| services.clone().answer(request),
        shutdown,
    )
    .await;
    Ok(())
}

/// The three `Export` methods on one server, chosen by the gRPC path.
#[derive(Clone, Debug)]
struct OtlpServices {
    receiver: Arc<OtlpReceiver>,
}

/// The gRPC paths of the three `Export` methods.
const EXPORT_PATHS: [&str; 3] = [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
];

impl OtlpServices {
    /// Reads the request body within the budget and the body deadline, then calls the method.
    async fn answer(mut self, request: http::Request<Incoming>) -> http::Response<Body> {
        if !EXPORT_PATHS.contains(&request.uri().path()) {
            return Status::unimplemented("unknown method: this port serves OTLP").into_http();
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let (parts, body) = request.into_parts();
        let receiver = Arc::clone(&self.receiver);
        // The gRPC frame: five bytes of header, then the message.
        let read = read_body(
            body,
            declared,
            Framing::Grpc,
            MAX_REQUEST_BYTES + 5,
            &receiver.budget,
            receiver.limits.timeouts.body_read,
        )
        .await;
        let ReadBody { bytes, permit } = match read {
            Ok(read) => read,
            Err(error) => return body_status(error).into_http(),
        };
        let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
        let response = match self.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        drop(permit);
        response
    }
}

/// The status of a request whose body was not read.
fn body_status(error: BodyError) -> Status {
    match error {
        BodyError::TooLarge { limit } => Status::invalid_argument(format!(
            "the request is larger than {limit} bytes: send smaller batches"
        )),
        BodyError::OverBudget => retry_status(
            Code::ResourceExhausted,
            RpcCode::ResourceExhausted,
            "the agent is handling as many request bytes as its memory allows; retry later",
        ),
        BodyError::TimedOut => Status::deadline_exceeded("the request body did not arrive in time"),
        BodyError::Unreadable => Status::invalid_argument("cannot read the request body"),
    }
}

impl Service<http::Request<Body>> for OtlpServices {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let receiver = self.receiver.clone();
        match request.uri().path() {
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => {
                Box::pin(export::<Traces>(receiver, request))
            }
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => {
                Box::pin(export::<Metrics>(receiver, request))
            }
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => {
                Box::pin(export::<Logs>(receiver, request))
            }
            _ => Box::pin(async {
                Ok(Status::unimplemented("unknown method: this port serves OTLP").into_http())
            }),
        }
    }
}

/// One `Export` call: the body as bytes through tonic (gzip accepted, size limited), then
/// [`ExportMethod`].
async fn export<S: ExportSignal>(
    receiver: Arc<OtlpReceiver>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    let mut grpc = Grpc::new(RequestBytesCodec::<S::Response>(PhantomData))
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let method = ExportMethod::<S> {
        receiver,
        signal: PhantomData,
    };
    Ok(size_errors_are_permanent(grpc.unary(method, request).await))
}

/// tonic answers a request over the size limit with `OUT_OF_RANGE` (or, when it is over the
/// limit once decompressed, `RESOURCE_EXHAUSTED` without `RetryInfo`), codes OTLP SDKs retry;
/// the same request would only be refused again, so the answer is `INVALID_ARGUMENT`, the
/// non-retryable code the OTLP specification prescribes for a request that cannot be processed
/// (as HTTP answers 413, also not retried).
fn size_errors_are_permanent(response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let too_large = status.code() == Code::OutOfRange
        || (status.code() == Code::ResourceExhausted
            && status
                .message()
                .starts_with("Error decompressing: size limit"));
    if !too_large {
        return response;
    }
    Status::invalid_argument(format!(
        "the request is larger than {MAX_REQUEST_BYTES} bytes: send smaller batches ({})",
        status.message()
    ))
    .into_http()
}

/// What differs between the three services.
trait ExportSignal: Send + 'static {
    const SIGNAL: Signal;
    type Response: Message + Default + Send + 'static;
    fn response(acknowledged: Acknowledged) -> Self::Response;
}

struct Traces;
struct Metrics;
struct Logs;

impl ExportSignal for Traces {
    const SIGNAL: Signal = Signal::Traces;
    type Response = ExportTraceServiceResponse;

    fn response(ack: Acknowledged) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: ack.rejected,
                error_message: ack.message,
            }),
        }
    }
}

impl ExportSignal for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    type Response = ExportMetricsServiceResponse;

    fn response(ack: Acknowledged) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: ack.rejected,
                error_message: ack.message,
            }),
        }
    }
}

impl ExportSignal for Logs {
    const SIGNAL: Signal = Signal::Logs;
    type Response = ExportLogsServiceResponse;

    fn response(ack: Acknowledged) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: ack.rejected,
                error_message: ack.message,
            }),
        }
    }
}

/// Decodes the request body and ingests it; ingest never waits, so the answer is ready at once.
struct ExportMethod<S> {
    receiver: Arc<OtlpReceiver>,
    signal: PhantomData<S>,
}

impl<S: ExportSignal> UnaryService<Bytes> for ExportMethod<S> {
    type Response = S::Response;
    type Future = std::future::Ready<Result<Response<S::Response>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let body = request.into_inner();
        // A body that does not decode is the client's error, never worth retrying: OTLP/HTTP
        // answers it 400, gRPC `INVALID_ARGUMENT`.
        let result = self
            .receiver
            .ingest_protobuf(COMPONENT, S::SIGNAL, &body)
            .map_err(|error| match error {
                IngestError::Malformed(message) => {
                    Status::invalid_argument(format!("the request does not decode: {message}"))
                }
                IngestError::Refused(refusal) => refusal_status(refusal),
            })
            .map(|ack| Response::new(S::response(ack)));
        std::future::ready(result)
    }
}

/// The gRPC codec of the `Export` methods: the request body as bytes, the response `R`
/// encoded with prost.
struct RequestBytesCodec<R>(PhantomData<R>);

impl<R: Message + Send + 'static> Codec for RequestBytesCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RequestBytesDecoder;

    fn encoder(&mut self) -> ResponseEncoder<R> {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> RequestBytesDecoder {
        RequestBytesDecoder
    }
}

struct ResponseEncoder<R>(PhantomData<R>);

impl<R: Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

struct RequestBytesDecoder;

impl Decoder for RequestBytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The gRPC status for a request that was not stored. Back-pressure is `RESOURCE_EXHAUSTED`
/// with a `RetryInfo`, both as `grpc-status-details-bin` (Go, Java and .NET SDKs read it) and as
/// `google.rpc.retryinfo-bin` trailer (the Python SDK reads that); without `RetryInfo` an SDK
/// must not retry `RESOURCE_EXHAUSTED`.
pub(super) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::BackPressure => {
            let message = "the agent's buffer is full; retry later";
            retry_status(Code::ResourceExhausted, RpcCode::ResourceExhausted, message)
        }
        Refusal::Unavailable => {
            let message = "the agent's buffer is unavailable; retry later";
            retry_status(Code::Unavailable, RpcCode::Unavailable, message)
        }
        Refusal::TooLarge { bytes, max_bytes } => {
            Status::invalid_argument(too_large_message(bytes, max_bytes))
        }
    }
}

fn retry_status(code: Code, rpc_code: RpcCode, message: &str) -> Status {
    let retry = RetryInfo::after(RETRY_AFTER);
    let details = RpcStatus::new(rpc_code, message).with_retry_info(&retry);
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(
        "google.rpc.retryinfo-bin",
        MetadataValue::from_bytes(&retry.encode_to_vec()),
    );
    Status::with_details_and_metadata(code, message, details.encode_to_vec().into(), metadata)
}
