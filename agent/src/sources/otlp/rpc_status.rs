//! The `google.rpc` messages an OTLP receiver answers errors with: `Status` (the body of every
//! OTLP/HTTP error response and the `grpc-status-details-bin` of a gRPC error) and `RetryInfo`
//! (which tells OpenTelemetry SDKs that a throttled request may be retried, and when).
//!
//! Only these few messages are needed, so they are declared here with prost derives instead of
//! pulling in a crate of Google API types.

use std::time::Duration;

use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong, in English, never quoting request data.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details such as [`RetryInfo`].
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: when the client may try again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Type URL of [`RetryInfo`] inside an `Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `google.rpc.Code` values this receiver answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcCode {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Unavailable = 14,
}

impl RetryInfo {
    /// A `RetryInfo` asking the client to wait `delay`.
    pub fn after(delay: Duration) -> Self {
        RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
            }),
        }
    }
}

impl RpcStatus {
    /// A status without details.
    pub fn new(code: RpcCode, message: impl Into<String>) -> Self {
        RpcStatus {
            code: code as i32,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a `RetryInfo` detail.
    pub fn with_retry_info(mut self, retry: &RetryInfo) -> Self {
        self.details.push(ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_owned(),
            value: retry.encode_to_vec(),
        });
        self
    }

    /// The proto3 JSON mapping of this status: `{"code":8,"message":"…","details":[{"@type":
    /// "type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1s"}]}`.
    pub fn to_json(&self) -> Vec<u8> {
        let details: Vec<serde_json::Value> = self
            .details
            .iter()
            .filter_map(|any| {
                let retry = RetryInfo::decode(any.value.as_slice()).ok()?;
                let delay = retry.retry_delay.unwrap_or_default();
                let seconds = delay.seconds as f64 + f64::from(delay.nanos) / 1e9;
                Some(serde_json::json!({
                    "@type": any.type_url,
                    "retryDelay": format!("{seconds}s"),
                }))
            })
            .collect();
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if !details.is_empty() {
            body["details"] = serde_json::Value::Array(details);
        }
        body.to_string().into_bytes()
    }
}
