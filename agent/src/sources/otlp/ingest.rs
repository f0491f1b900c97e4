//! What both OTLP transports do with a decoded request: drop spans with invalid ids, sample
//! traces by trace id, redact, enrich with the pod identity, and store the batch in every sink
//! buffer through the router. A request counts as acknowledged only when the router stored it.
//!
//! The buffer record is the request's protobuf encoding. When ingest changed nothing but the
//! resources' identity attributes (the common case: every id valid, nothing sampled out,
//! nothing to redact), the record is made from the request as it arrived, with the missing
//! attributes spliced into each resource ([`spliced_record`]), rather than by encoding the
//! decoded request again.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::OtlpReceiver;
use crate::batch::{Batch, Signal};
use crate::buffer::BufferError;
use crate::identity::Identity;
use crate::processors::enrich::{enrich_batch, resource_additions};
use crate::router::Routed;
use crate::sinks::otlp::encoded::{Fields, Value};
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
    /// request size for the received-bytes counter; `encoded` is the protobuf encoding `batch`
    /// was decoded from, when it came as protobuf.
    pub(crate) fn ingest(
        &self,
        component: &'static str,
        mut batch: Batch,
        bytes: u64,
        encoded: Option<&[u8]>,
    ) -> Result<Acknowledged, Refusal> {
        let received = batch.item_count() as u64;
        let signal = batch.signal().as_str();
        let mut acknowledged = Acknowledged::default();
        // Whether the batch differs from `encoded` in more than enrichment.
        let mut changed = false;
        if let Batch::Traces(request) = &mut batch {
            let (kept, removed) = retain_spans(request, has_valid_ids);
            changed |= removed;
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
                let (sampled, removed) =
                    retain_spans(request, |span| keeps_trace(&span.trace_id, ratio));
                changed |= removed;
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
            changed |= self.redactor.redact_batch(&mut batch);
            let routed = match encoded.filter(|_| !changed && self.router.takes(batch.signal())) {
                Some(encoded) => match spliced_record(&self.identity, &batch, encoded) {
                    Some(record) => self.router.try_send_record(
                        batch.signal(),
                        batch.item_count() as u64,
                        record,
                    ),
                    None => {
                        enrich_batch(&self.identity, &mut batch);
                        self.router.try_send(&batch)
                    }
                },
                None => {
                    enrich_batch(&self.identity, &mut batch);
                    self.router.try_send(&batch)
                }
            };
            match routed {
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
/// returns the number of spans kept and whether anything (span, scope or resource) was removed.
fn retain_spans(
    request: &mut ExportTraceServiceRequest,
    keep: impl Fn(&Span) -> bool,
) -> (u64, bool) {
    let mut kept = 0;
    let mut removed = false;
    request.resource_spans.retain_mut(|resource| {
        resource.scope_spans.retain_mut(|scope| {
            let before = scope.spans.len();
            scope.spans.retain(&keep);
            removed |= scope.spans.len() < before;
            kept += scope.spans.len() as u64;
            !scope.spans.is_empty()
        });
        removed |= resource.scope_spans.is_empty();
        !resource.scope_spans.is_empty()
    });
    (kept, removed)
}

/// The tag byte of a buffer record of `signal` (see [`crate::batch`]).
fn record_tag(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
        Signal::Samples => 4,
    }
}

/// The buffer record of `batch`, an OTLP batch decoded from `encoded` and left unchanged, after
/// enrichment: `encoded` as it arrived, with the identity attributes each resource lacks
/// appended to that resource's attributes. Attributes are a repeated field, so the appended
/// entries decode as the last attributes of the resource, exactly as [`enrich_batch`] appends
/// them. `None` when splicing cannot express the enrichment (an attribute replaced in place, a
/// resource given twice) or the encoding does not match the batch.
pub(crate) fn spliced_record(
    identity: &Identity,
    batch: &Batch,
    encoded: &[u8],
) -> Option<Vec<u8>> {
    let resources: Vec<Option<&Resource>> = match batch {
        Batch::Traces(r) => r
            .resource_spans
            .iter()
            .map(|x| x.resource.as_ref())
            .collect(),
        Batch::Metrics(r) => r
            .resource_metrics
            .iter()
            .map(|x| x.resource.as_ref())
            .collect(),
        Batch::Logs(r) => r
            .resource_logs
            .iter()
            .map(|x| x.resource.as_ref())
            .collect(),
        Batch::Samples(_) => return None,
    };
    let mut out = Vec::with_capacity(encoded.len() + 1 + 256 * resources.len());
    out.push(record_tag(batch.signal()));
    let mut resources = resources.into_iter();
    let mut fields = Fields::new(encoded);
    let mut start = 0;
    while let Some(field) = fields.next() {
        let end = fields.position();
        match field? {
            // `resource_spans`, `resource_metrics`, `resource_logs`.
            (1, Value::Bytes(entry)) => {
                let additions = resource_additions(identity, resources.next()?)?;
                splice_resource_entry(entry, &additions, &mut out)?;
            }
            (1, _) => return None,
            _ => out.extend_from_slice(&encoded[start..end]),
        }
        start = end;
    }
    resources.next().is_none().then_some(out)
}

/// Writes one resource entry (`ResourceSpans`, `ResourceMetrics`, `ResourceLogs`) as field 1,
/// with `additions` appended to the attributes of its `resource` (field 1; created when absent).
fn splice_resource_entry(entry: &[u8], additions: &[KeyValue], out: &mut Vec<u8>) -> Option<()> {
    // `Resource.attributes` is field 1.
    let mut appended = Vec::new();
    for attribute in additions {
        put_length_delimited_key(1, attribute.encoded_len(), &mut appended);
        attribute.encode_raw(&mut appended);
    }
    let mut resource = None;
    let mut fields = Fields::new(entry);
    let mut start = 0;
    while let Some(field) = fields.next() {
        let end = fields.position();
        match field? {
            (1, Value::Bytes(content)) if resource.is_none() => {
                resource = Some((start, end, content))
            }
            (1, _) => return None,
            _ => {}
        }
        start = end;
    }
    match resource {
        Some((start, end, content)) => {
            let resource_len = content.len() + appended.len();
            let entry_len = entry.len() - (end - start) + length_delimited_len(resource_len);
            put_length_delimited_key(1, entry_len, out);
            out.extend_from_slice(&entry[..start]);
            put_length_delimited_key(1, resource_len, out);
            out.extend_from_slice(content);
            out.extend_from_slice(&appended);
            out.extend_from_slice(&entry[end..]);
        }
        None => {
            let entry_len = entry.len() + length_delimited_len(appended.len());
            put_length_delimited_key(1, entry_len, out);
            out.extend_from_slice(entry);
            put_length_delimited_key(1, appended.len(), out);
            out.extend_from_slice(&appended);
        }
    }
    Some(())
}

/// Writes the key of length-delimited field `number` (below 16) and the length `len`.
fn put_length_delimited_key(number: u8, len: usize, out: &mut Vec<u8>) {
    out.push((number << 3) | 2);
    let mut value = len as u64;
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes of a length-delimited field (below 16) with `len` bytes of content.
fn length_delimited_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    use super::*;
    use crate::sinks::test_support::{counter_batch, log_record, logs_batch, traces_batch};

    fn identity() -> Identity {
        Identity {
            namespace: "shop".into(),
            app: "checkout".into(),
            pod: "checkout-7d9f".into(),
            pod_uid: "0b7e-uid".into(),
            node: "node-1".into(),
            version: "17.2".into(),
            cluster: String::new(),
        }
    }

    fn string_attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    /// What encoding the batch again after `enrich_batch` would store.
    fn enriched(batch: &Batch) -> Batch {
        let mut expected = batch.clone();
        enrich_batch(&identity(), &mut expected);
        expected
    }

    /// A spliced record decodes to exactly the enriched batch, for every OTLP signal, whether
    /// a resource is complete, partial or missing, and whatever comes after it in the entry.
    #[test]
    fn spliced_record_decodes_as_the_enriched_batch() {
        let mut two_resources = traces_batch("GET /a");
        if let Batch::Traces(request) = &mut two_resources {
            let mut bare = request.resource_spans[0].clone();
            bare.resource = None;
            bare.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
            request.resource_spans.push(bare);
            let mut partial = request.resource_spans[0].clone();
            partial.resource = Some(Resource {
                attributes: vec![
                    string_attribute("service.name", "payments"),
                    string_attribute("k8s.pod.name", "payments-1"),
                ],
                dropped_attributes_count: 2,
                ..Default::default()
            });
            request.resource_spans.push(partial);
        }
        let batches = [
            traces_batch("GET /b"),
            two_resources,
            counter_batch("orders", 3.0, 1),
            logs_batch(&[], vec![log_record(1, "hello", "info", &[])]),
        ];
        for batch in &batches {
            let encoded = batch.encode();
            let record = spliced_record(&identity(), batch, &encoded[1..]).unwrap();
            assert_eq!(record[0], encoded[0], "same tag");
            assert_eq!(Batch::decode(&record).unwrap(), enriched(batch));
        }
    }

    /// Fields the agent does not know, after the resource entries, are kept as they came.
    #[test]
    fn unknown_fields_are_kept() {
        let batch = traces_batch("GET /c");
        let mut encoded = batch.encode()[1..].to_vec();
        encoded.extend_from_slice(&[0x78, 0x2a]); // field 15, varint 42
        let record = spliced_record(&identity(), &batch, &encoded).unwrap();
        assert!(record.ends_with(&[0x78, 0x2a]));
        assert_eq!(Batch::decode(&record).unwrap(), enriched(&batch));
    }

    /// Where appending cannot express the enrichment, there is no spliced record (ingest then
    /// encodes the enriched batch): an SDK-default `service.name` is replaced in place; an
    /// encoding that does not match the batch is not trusted.
    #[test]
    fn no_splice_where_appending_is_not_enough() {
        let mut default_name = traces_batch("GET /d");
        if let Batch::Traces(request) = &mut default_name {
            request.resource_spans[0].resource = Some(Resource {
                attributes: vec![string_attribute("service.name", "unknown_service:python")],
                ..Default::default()
            });
        }
        let encoded = default_name.encode();
        assert_eq!(
            spliced_record(&identity(), &default_name, &encoded[1..]),
            None
        );

        let one = traces_batch("GET /e");
        let mut two = one.clone();
        if let Batch::Traces(request) = &mut two {
            request.resource_spans.push(ResourceSpans::default());
        }
        assert_eq!(spliced_record(&identity(), &one, &two.encode()[1..]), None);
        assert_eq!(spliced_record(&identity(), &two, &one.encode()[1..]), None);
    }

    /// The record tags agree with [`Batch::encode`].
    #[test]
    fn record_tags_match_the_batch_encoding() {
        for batch in [
            traces_batch("x"),
            counter_batch("y", 1.0, 1),
            logs_batch(&[], vec![]),
        ] {
            assert_eq!(record_tag(batch.signal()), batch.encode()[0]);
        }
    }
}
