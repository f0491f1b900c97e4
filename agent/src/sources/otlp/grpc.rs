//! OTLP/gRPC: the `TraceService`, `MetricsService` and `LogsService` of the OTLP protocol on one
//! tonic server, accepting gzip-compressed requests.

use std::convert::Infallible;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

use super::ingest::{Acknowledged, Refusal};
use super::rpc_status::{RetryInfo, RpcCode, RpcStatus};
use super::{too_large_message, OtlpError, OtlpReceiver, MAX_REQUEST_BYTES, RETRY_AFTER};
use crate::batch::Batch;

/// Component name in the agent's own telemetry.
const COMPONENT: &str = "otlp_grpc";

/// The three OTLP services over one receiver.
#[derive(Clone, Debug)]
struct OtlpGrpc {
    receiver: Arc<OtlpReceiver>,
}

/// Serves the OTLP services on `listener` until `shutdown`, then lets in-flight calls finish.
pub(super) async fn serve(
    listener: TcpListener,
    receiver: OtlpReceiver,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    let services = OtlpGrpc {
        receiver: Arc::new(receiver),
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let services = OtlpServices {
        traces: TraceServiceServer::new(services.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        metrics: MetricsServiceServer::new(services.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        logs: LogsServiceServer::new(services)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
    };
    Server::builder()
        .serve_with_incoming_shutdown(services, incoming, async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|source| OtlpError::Serve {
            transport: "grpc",
            source: Box::new(source),
        })
}

/// The three services on one server, chosen by the gRPC path (`/<service>/Export`).
#[derive(Clone, Debug)]
struct OtlpServices {
    traces: TraceServiceServer<OtlpGrpc>,
    metrics: MetricsServiceServer<OtlpGrpc>,
    logs: LogsServiceServer<OtlpGrpc>,
}

impl Service<http::Request<Body>> for OtlpServices {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .map(|(service, _method)| service);
        match service {
            Some(TraceServiceServer::<OtlpGrpc>::NAME) => self.traces.call(request),
            Some(MetricsServiceServer::<OtlpGrpc>::NAME) => self.metrics.call(request),
            Some(LogsServiceServer::<OtlpGrpc>::NAME) => self.logs.call(request),
            _ => Box::pin(async {
                Ok(Status::unimplemented("unknown service: this port serves OTLP").into_http())
            }),
        }
    }
}

impl OtlpGrpc {
    fn ingest(&self, batch: Batch, bytes: usize) -> Result<Acknowledged, Status> {
        self.receiver
            .ingest(COMPONENT, batch, bytes as u64)
            .map_err(refusal_status)
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

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let bytes = request.encoded_len();
        let ack = self.ingest(Batch::Traces(request), bytes)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: ack.rejected,
                error_message: ack.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let request = request.into_inner();
        let bytes = request.encoded_len();
        let ack = self.ingest(Batch::Metrics(request), bytes)?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: ack.rejected,
                error_message: ack.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let request = request.into_inner();
        let bytes = request.encoded_len();
        let ack = self.ingest(Batch::Logs(request), bytes)?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (ack.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: ack.rejected,
                error_message: ack.message,
            }),
        }))
    }
}
