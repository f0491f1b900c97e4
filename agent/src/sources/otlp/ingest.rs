//! What both OTLP transports do with a decoded request: drop spans with invalid ids, sample
//! traces by trace id, redact, enrich with the pod identity, and store the batch in every sink
//! buffer through the router. A request counts as acknowledged only when the router stored it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::OtlpReceiver;
use crate::batch::Batch;
use crate::buffer::BufferError;
use crate::processors::enrich::enrich_batch;
use crate::router::Routed;
use crate::telemetry::{emit, InternalEvent};

/// A request that was acknowledged, with what it partly lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Acknowledged {
    /// Items (spans, data points, log records) that were not kept, for `partial_success`.
    pub rejected: i64,
    /// Why they were not kept; empty when nothing was rejected.
    pub message: String,
}

/// A request that was not acknowledged: the sender should retry it.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A `block` buffer has no room: push back on the sender (gRPC `RESOURCE_EXHAUSTED`,
    /// HTTP 429, both with a retry delay).
    BackPressure,
    /// The buffer failed or is closed (gRPC `UNAVAILABLE`, HTTP 503).
    Unavailable,
    /// The batch is larger than the whole buffer: retrying cannot help (gRPC
    /// `INVALID_ARGUMENT`, HTTP 413).
    TooLarge { bytes: u64, max_bytes: u64 },
}

impl OtlpReceiver {
    /// Runs `batch` through sampling, redaction and enrichment and stores it. `bytes` is the
    /// request size for the received-bytes counter.
    pub(crate) fn ingest(
        &self,
        component: &'static str,
        mut batch: Batch,
        bytes: u64,
    ) -> Result<Acknowledged, Refusal> {
        let received = batch.item_count() as u64;
        let signal = batch.signal().as_str();
        let mut acknowledged = Acknowledged::default();
        if let Batch::Traces(request) = &mut batch {
            let kept = retain_spans(request, has_valid_ids);
            let invalid = received - kept;
            if invalid > 0 {
                emit(InternalEvent::Dropped {
                    component,
                    events: invalid,
                    reason: "rejected",
                });
                acknowledged.rejected = invalid as i64;
                acknowledged.message = format!(
                    "{invalid} spans rejected: a trace id must be 16 bytes and a span id 8 \
                     bytes, not all zero"
                );
            }
            if self.sampling_ratio < 1.0 {
                let ratio = self.sampling_ratio;
                let sampled = retain_spans(request, |span| keeps_trace(&span.trace_id, ratio));
                if sampled < kept {
                    emit(InternalEvent::Dropped {
                        component,
                        events: kept - sampled,
                        reason: "sampled",
                    });
                }
            }
        }
        if batch.item_count() > 0 {
            self.redactor.redact_batch(&mut batch);
            enrich_batch(&self.identity, &mut batch);
            match self.router.try_send(&batch) {
                Ok(Routed::Accepted) => {}
                Ok(Routed::Dropped) => {
                    // The router counted the drop; the sender learns it through partial
                    // success and must not retry (that is what `dropNewest` asks for).
                    acknowledged.rejected = received as i64;
                    acknowledged.message =
                        "the agent's buffer is full and drops new data (whenFull: dropNewest)"
                            .to_owned();
                }
                Err(BufferError::Full { .. }) => {
                    emit(InternalEvent::Error {
                        component,
                        error: "BackPressure",
                        message: "buffer full, asking the sender to retry",
                    });
                    return Err(Refusal::BackPressure);
                }
                Err(BufferError::TooLarge {
                    bytes: record_bytes,
                    max_bytes,
                    ..
                }) => {
                    emit(InternalEvent::Dropped {
                        component,
                        events: received,
                        reason: "too_large",
                    });
                    return Err(Refusal::TooLarge {
                        bytes: record_bytes,
                        max_bytes,
                    });
                }
                Err(error) => {
                    emit(InternalEvent::Error {
                        component,
                        error: error.category(),
                        message: &error.to_string(),
                    });
                    return Err(Refusal::Unavailable);
                }
            }
        }
        emit(InternalEvent::Received {
            component,
            signal,
            events: received,
            bytes,
        });
        Ok(acknowledged)
    }
}

/// Keeps the spans for which `keep` holds, drops scopes and resources left without spans, and
/// returns the number of spans kept.
fn retain_spans(request: &mut ExportTraceServiceRequest, keep: impl Fn(&Span) -> bool) -> u64 {
    let mut kept = 0;
    request.resource_spans.retain_mut(|resource| {
        resource.scope_spans.retain_mut(|scope| {
            scope.spans.retain(&keep);
            kept += scope.spans.len() as u64;
            !scope.spans.is_empty()
        });
        !resource.scope_spans.is_empty()
    });
    kept
}

/// Whether the span's trace id is 16 bytes and its span id 8 bytes, neither all zero (the
/// OTLP and W3C trace-context definition of a valid id).
fn has_valid_ids(span: &Span) -> bool {
    let nonzero = |id: &[u8]| id.iter().any(|&b| b != 0);
    span.trace_id.len() == 16
        && span.span_id.len() == 8
        && nonzero(&span.trace_id)
        && nonzero(&span.span_id)
}

/// Whether a trace is kept under `ratio`: when the low 8 bytes of its id, read as a big-endian
/// u64, are below `ratio × 2^64`. Every span of a trace gets the same answer, in this agent and
/// in any other that samples the same way, so traces are kept or dropped whole.
pub fn keeps_trace(trace_id: &[u8], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // Zero, negative and NaN ratios keep nothing.
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let Some(low) = trace_id
        .get(8..16)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
    else {
        return true;
    };
    // A float-to-int `as` cast saturates; below 1.0 the product is below 2^64 anyway.
    let threshold = (ratio * 18_446_744_073_709_551_616.0) as u128;
    u128::from(u64::from_be_bytes(low)) < threshold
}
