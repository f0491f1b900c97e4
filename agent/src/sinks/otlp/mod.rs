//! The OTLP sink: traces, metrics and logs to an OpenTelemetry collector (or Tempo, Mimir, …)
//! over gRPC (`TraceService`, `MetricsService`, `LogsService`) or HTTP (`POST
//! <endpoint>/v1/{traces,metrics,logs}` with protobuf bodies).
//!
//! The driver hands this sink its buffer records undecoded ([`OtlpSink::send_encoded`]): each is
//! the protobuf encoding of an export request, and the records of one signal, concatenated, are
//! sent as one export request — their merge ([`encoded`]). Headers, TLS and status mapping are
//! the same as with the generated clients.
//!
//! Failures follow the OTLP specification: gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//! `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `OUT_OF_RANGE` and `DATA_LOSS` are retried (after
//! the server's `RetryInfo` delay when it sends one), and so are `UNAUTHENTICATED` and
//! `PERMISSION_DENIED` (the data stays buffered until the credential is fixed); other codes are
//! permanent; HTTP statuses
//! are mapped by [`super::http::status_error`]. Items a backend rejects in a partial success are
//! counted as dropped with reason `rejected`.

pub(crate) mod encoded;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::Url;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http as http_request;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use vigil_crds::agent_config::OtlpSink as OtlpSinkConfig;
use vigil_crds::monitored_app::OtlpProtocol;

use super::http::{
    self, body_excerpt, Access, CredentialFile, HttpClient, HttpSettings, CONNECT_TIMEOUT,
    REQUEST_TIMEOUT,
};
use super::{SendError, SinkConfigError};
use crate::batch::{Batch, Signal};
use crate::telemetry::{emit, InternalEvent};

pub use encoded::{count_items, EncodedBatches, EncodedError};

/// Component name.
pub const COMPONENT: &str = "sink_otlp";
/// Signals the OTLP sink takes.
pub const SIGNALS: &[Signal] = &[Signal::Traces, Signal::Metrics, Signal::Logs];

/// An OTLP exporter.
#[derive(Debug)]
pub struct OtlpSink {
    transport: Transport,
}

#[derive(Debug)]
enum Transport {
    Grpc(Box<GrpcTransport>),
    Http(Box<HttpTransport>),
}

/// OTLP/gRPC: one lazily connected channel shared by the three service clients.
#[derive(Debug)]
struct GrpcTransport {
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
    tenant: Option<AsciiMetadataValue>,
    credential: Option<CredentialFile>,
    /// Extra metadata; the client certificate is in `endpoint`'s TLS settings.
    access: Access,
}

/// OTLP/HTTP with protobuf bodies.
#[derive(Debug)]
struct HttpTransport {
    client: HttpClient,
    traces: Url,
    metrics: Url,
    logs: Url,
}

impl OtlpSink {
    /// Checks the config and builds the client; connects on the first send.
    pub fn new(config: &OtlpSinkConfig) -> Result<Self, SinkConfigError> {
        Self::at("otlp", config)
    }

    /// [`OtlpSink::new`] for the exporter at config path `field` (errors name
    /// `exporters.<field>.…`).
    pub fn at(field: &str, config: &OtlpSinkConfig) -> Result<Self, SinkConfigError> {
        let OtlpSinkConfig {
            endpoint,
            protocol,
            tenant,
            bearer_token_file,
            ca_file,
            basic_auth,
            headers,
            client_cert_file,
            client_key_file,
            signals: _,
        } = config;
        let endpoint_field = format!("{field}.endpoint");
        let base = http::parse_url(&endpoint_field, endpoint)?;
        let credential =
            http::credential(field, bearer_token_file.as_deref(), basic_auth.as_ref())?;
        let access = http::access(
            field,
            headers,
            client_cert_file.as_deref(),
            client_key_file.as_deref(),
            credential.is_some(),
            tenant.is_some(),
        )?;
        let transport = match protocol {
            OtlpProtocol::Grpc => Transport::Grpc(Box::new(GrpcTransport::new(
                field,
                &base,
                tenant.as_deref(),
                credential,
                ca_file.as_deref(),
                access,
            )?)),
            OtlpProtocol::Http => {
                let client = HttpClient::new(HttpSettings {
                    field,
                    ca_file: ca_file.as_deref(),
                    tenant: tenant.as_deref(),
                    credential,
                    access,
                })?;
                let signal_url = |path: &str| {
                    let text = format!("{}{path}", base.as_str().trim_end_matches('/'));
                    http::parse_url(&endpoint_field, &text)
                };
                Transport::Http(Box::new(HttpTransport {
                    client,
                    traces: signal_url("/v1/traces")?,
                    metrics: signal_url("/v1/metrics")?,
                    logs: signal_url("/v1/logs")?,
                }))
            }
        };
        Ok(OtlpSink { transport })
    }

    /// Sends the batches as at most one export request per signal (traces, then metrics, then
    /// logs); the first failure ends the send.
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        self.send_encoded(&EncodedBatches::from_batches(batches))
            .await
    }

    /// Sends encoded export requests as they are: the requests of one signal, concatenated,
    /// go out as one export request (their merge), traces first, then metrics, then logs; the
    /// first failure ends the send.
    pub async fn send_encoded(&self, batches: &EncodedBatches) -> Result<(), SendError> {
        if !batches.traces.is_empty() {
            let rejected = match &self.transport {
                Transport::Grpc(grpc) => grpc
                    .export::<ExportTraceServiceResponse>(TRACES_METHOD, &batches.traces)
                    .await?
                    .partial_success
                    .map_or(0, |p| p.rejected_spans),
                Transport::Http(h) => h
                    .export::<ExportTraceServiceResponse>(&h.traces, &batches.traces)
                    .await?
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| p.rejected_spans),
            };
            count_rejected(rejected);
        }
        if !batches.metrics.is_empty() {
            let rejected = match &self.transport {
                Transport::Grpc(grpc) => grpc
                    .export::<ExportMetricsServiceResponse>(METRICS_METHOD, &batches.metrics)
                    .await?
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points),
                Transport::Http(h) => h
                    .export::<ExportMetricsServiceResponse>(&h.metrics, &batches.metrics)
                    .await?
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| p.rejected_data_points),
            };
            count_rejected(rejected);
        }
        if !batches.logs.is_empty() {
            let rejected = match &self.transport {
                Transport::Grpc(grpc) => grpc
                    .export::<ExportLogsServiceResponse>(LOGS_METHOD, &batches.logs)
                    .await?
                    .partial_success
                    .map_or(0, |p| p.rejected_log_records),
                Transport::Http(h) => h
                    .export::<ExportLogsServiceResponse>(&h.logs, &batches.logs)
                    .await?
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| p.rejected_log_records),
            };
            count_rejected(rejected);
        }
        Ok(())
    }
}

fn count_rejected(rejected: i64) {
    if rejected > 0 {
        emit(InternalEvent::Dropped {
            component: COMPONENT,
            events: u64::try_from(rejected).unwrap_or(0),
            reason: "rejected",
        });
    }
}

/// A gRPC method of the OTLP collector services: service name and the request path.
#[derive(Clone, Copy, Debug)]
struct GrpcMethod {
    service: &'static str,
    path: &'static str,
}

const TRACES_METHOD: GrpcMethod = GrpcMethod {
    service: "opentelemetry.proto.collector.trace.v1.TraceService",
    path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
};
const METRICS_METHOD: GrpcMethod = GrpcMethod {
    service: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
};
const LOGS_METHOD: GrpcMethod = GrpcMethod {
    service: "opentelemetry.proto.collector.logs.v1.LogsService",
    path: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
};

/// The gRPC codec of an export call whose request is already encoded: the request message is
/// the [`EncodedMessage`] that [`PreEncoded`] sends (tonic's encoder writes nothing), the
/// decoder decodes the response `R`.
struct EncodedCodec<R>(PhantomData<R>);

impl<R> Default for EncodedCodec<R> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for EncodedCodec<R> {
    type Encode = ();
    type Decode = R;
    type Encoder = NothingEncoder;
    type Decoder = ResponseDecoder<R>;

    fn encoder(&mut self) -> NothingEncoder {
        NothingEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder<R> {
        ResponseDecoder(PhantomData)
    }
}

/// Encodes nothing: the message travels beside tonic's body, in an [`EncodedMessage`].
struct NothingEncoder;

impl Encoder for NothingEncoder {
    type Item = ();
    type Error = tonic::Status;

    fn encode(&mut self, (): (), _: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

/// An export request's encoded parts (their concatenation is the message), carried as a
/// request extension to [`PreEncoded`].
#[derive(Clone)]
struct EncodedMessage(Vec<Bytes>);

/// The gRPC channel, sending the [`EncodedMessage`] of a request as its one message, parts as
/// they are. Tonic's codec would copy every message into a buffer of its own — for a batch of
/// logs, hundreds of KiB allocated, faulted in and freed per request — while the parts are
/// already the encoded message. Tonic still makes the call: headers, deadlines, the response
/// and its status.
#[derive(Clone, Debug)]
struct PreEncoded(Channel);

impl tonic::codegen::Service<http_request::Request<tonic::body::Body>> for PreEncoded {
    type Response =
        <Channel as tonic::codegen::Service<http_request::Request<tonic::body::Body>>>::Response;
    type Error =
        <Channel as tonic::codegen::Service<http_request::Request<tonic::body::Body>>>::Error;
    type Future =
        <Channel as tonic::codegen::Service<http_request::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http_request::Request<tonic::body::Body>) -> Self::Future {
        if let Some(EncodedMessage(parts)) = request.extensions_mut().remove() {
            *request.body_mut() = grpc_message_body(parts);
        }
        self.0.call(request)
    }
}

/// A gRPC request body holding one uncompressed message made of `parts`: the 5-byte prefix
/// (compression flag 0, big-endian length), then the parts.
fn grpc_message_body(parts: Vec<Bytes>) -> tonic::body::Body {
    let len: usize = parts.iter().map(Bytes::len).sum();
    // Batches are bounded far below 4 GiB; a larger one fails on the server's size limit.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut prefix = [0u8; 5];
    prefix[1..].copy_from_slice(&len.to_be_bytes());
    let frames = std::iter::once(Bytes::copy_from_slice(&prefix))
        .chain(parts)
        .map(|data| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(data)));
    tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )))
}

/// Decodes a protobuf response.
struct ResponseDecoder<R>(PhantomData<R>);

impl<R: Message + Default> Decoder for ResponseDecoder<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        R::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl GrpcTransport {
    fn new(
        field: &str,
        base: &Url,
        tenant: Option<&str>,
        credential: Option<CredentialFile>,
        ca_file: Option<&str>,
        access: Access,
    ) -> Result<Self, SinkConfigError> {
        let grpc_error = |source| SinkConfigError::GrpcChannel {
            field: field.to_owned(),
            source,
        };
        let ca_field = format!("{field}.caFile");
        // Checked here so that a header gRPC cannot carry is a config error, not a send error
        // that would drop the data.
        for (i, (name, _)) in access.headers.iter().enumerate() {
            if tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes()).is_err() {
                return Err(SinkConfigError::invalid(
                    format!("{field}.headers[{i}].name"),
                    format!("{name} cannot be sent as gRPC metadata (binary `-bin` keys are not supported)"),
                ));
            }
        }
        let mut endpoint = Endpoint::from_shared(base.as_str().to_owned())
            .map_err(grpc_error)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .user_agent(http::USER_AGENT)
            .map_err(grpc_error)?;
        if base.scheme() == "https" {
            let mut tls = ClientTlsConfig::new();
            tls = match ca_file {
                Some(path) => {
                    // Checked here so that a bad bundle is a config error, not a send error.
                    http::read_ca_bundle(path, &ca_field)?;
                    let pem = std::fs::read(path).map_err(|source| SinkConfigError::ReadFile {
                        field: ca_field.clone(),
                        path: path.to_owned(),
                        source,
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_native_roots(),
            };
            if let Some(identity) = &access.client_identity {
                tls = tls.identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(grpc_error)?;
        }
        let tenant = tenant
            .map(|t| {
                MetadataValue::try_from(t).map_err(|_| {
                    SinkConfigError::invalid(
                        format!("{field}.tenant"),
                        "must be printable text without line breaks",
                    )
                })
            })
            .transpose()?;
        Ok(GrpcTransport {
            endpoint,
            channel: OnceLock::new(),
            tenant,
            credential,
            access,
        })
    }

    /// The channel, created on first use (creating it needs the async runtime).
    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }

    /// The request with tenant and credential metadata, and the credential sent (to mask it in
    /// an error message that echoes it).
    fn request<T>(
        &self,
        message: T,
    ) -> Result<(tonic::Request<T>, Vec<reqwest::header::HeaderValue>), SendError> {
        let mut request = tonic::Request::new(message);
        let mut sent = Vec::new();
        for (name, value) in self.access.header_values()? {
            let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes())
                .map_err(|_| SendError::Permanent {
                    reason: format!("header {name} is not a gRPC metadata key"),
                })?;
            let mut text = AsciiMetadataValue::try_from(value.as_bytes()).map_err(|_| {
                SendError::Retryable {
                    reason: format!("the value of header {name} is not allowed in gRPC metadata"),
                    retry_after: None,
                }
            })?;
            if value.is_sensitive() {
                text.set_sensitive(true);
                sent.push(value);
            }
            request.metadata_mut().insert(key, text);
        }
        if let Some(tenant) = &self.tenant {
            request
                .metadata_mut()
                .insert("x-scope-orgid", tenant.clone());
        }
        if let Some(credential) = &self.credential {
            let header = credential.header_value()?;
            let mut value = AsciiMetadataValue::try_from(header.as_bytes()).map_err(|_| {
                SendError::Retryable {
                    reason: format!(
                        "credential file {} holds characters not allowed in gRPC metadata",
                        credential.path().display()
                    ),
                    retry_after: None,
                }
            })?;
            value.set_sensitive(true);
            request.metadata_mut().insert("authorization", value);
            sent.push(header);
        }
        Ok((request, sent))
    }

    /// One export call of `method` whose request body is `parts`, concatenated.
    async fn export<R: Message + Default + Send + 'static>(
        &self,
        method: GrpcMethod,
        parts: &[Bytes],
    ) -> Result<R, SendError> {
        let (mut request, credential) = self.request(())?;
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(method.service, "Export"));
        request
            .extensions_mut()
            .insert(EncodedMessage(parts.to_vec()));
        let mut client = tonic::client::Grpc::new(PreEncoded(self.channel()));
        client.ready().await.map_err(|e| SendError::Retryable {
            reason: format!("gRPC channel not ready: {e}"),
            retry_after: None,
        })?;
        let response = client
            .unary(
                request,
                PathAndQuery::from_static(method.path),
                EncodedCodec::<R>::default(),
            )
            .await
            .map_err(|s| status_error(&s, &credential))?;
        Ok(response.into_inner())
    }
}

impl HttpTransport {
    async fn post(&self, url: &Url, body: Vec<u8>) -> Result<bytes::Bytes, SendError> {
        let response = self
            .client
            .post(url, "application/x-protobuf", &[], body)
            .await?;
        if response.status.is_success() {
            return Ok(response.body);
        }
        // OTLP/HTTP error bodies are a protobuf `google.rpc.Status`; quote its message rather
        // than the binary encoding when it decodes.
        let body = RpcStatus::decode(response.body.as_ref())
            .ok()
            .filter(|s| !s.message.is_empty())
            .map(|s| bytes::Bytes::from(s.message))
            .unwrap_or(response.body);
        Err(http::status_error(
            response.status,
            response.retry_after,
            &body,
        ))
    }

    /// One export request whose body is `parts`, concatenated; the response when it
    /// decodes.
    async fn export<R: Message + Default>(
        &self,
        url: &Url,
        parts: &[Bytes],
    ) -> Result<Option<R>, SendError> {
        let mut body = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in parts {
            body.extend_from_slice(part);
        }
        let response = self.post(url, body).await?;
        Ok(R::decode(response).ok())
    }
}

/// gRPC codes worth retrying, per the OTLP specification (plus `RESOURCE_EXHAUSTED`, which
/// collectors use for back-pressure).
fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The error a failed gRPC call maps to; `credential` (the `authorization` sent) is masked in
/// the quoted message. `UNAUTHENTICATED` and `PERMISSION_DENIED` are retried like an HTTP 401
/// or 403: the data stays buffered until the credential is fixed.
fn status_error(status: &tonic::Status, secrets: &[reqwest::header::HeaderValue]) -> SendError {
    let mut reason = format!("backend answered gRPC {:?}", status.code());
    let mut message = bytes::Bytes::copy_from_slice(status.message().as_bytes());
    for secret in secrets {
        message = http::mask_credential(message, secret);
    }
    reason.push_str(&body_excerpt(&message));
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        source = e.source();
    }
    if matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied
    ) {
        http::auth_failed(reason, retry_info(status.details()))
    } else if retryable_code(status.code()) || transport_failure(status) {
        SendError::Retryable {
            reason,
            retry_after: retry_info(status.details()),
        }
    } else {
        SendError::Permanent { reason }
    }
}

/// Whether `status` was made on this side from a failed connection (refused, reset, a TLS
/// alert such as a refused client certificate) rather than answered by the backend: tonic
/// reports those as `UNKNOWN` with the transport error as the source, while a status the
/// backend sent has none. Retrying can help (the backend or the certificate is fixed without
/// the agent), so the data stays buffered.
fn transport_failure(status: &tonic::Status) -> bool {
    status.code() == Code::Unknown && std::error::Error::source(status).is_some()
}

/// `google.rpc.Status`, the rich error model carried in `grpc-status-details-bin` and in
/// OTLP/HTTP error bodies.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of a `RetryInfo` detail in an encoded `google.rpc.Status`.
fn retry_info(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(seconds, nanos))
}
