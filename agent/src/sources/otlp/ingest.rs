//! What both OTLP transports do with a decoded request: drop spans with invalid ids, sample
//! traces by trace id, redact, enrich with the pod identity, and store the batch in every sink
//! buffer through the router. A request counts as acknowledged only when the router stored it.
//!
//! The buffer record is the request's protobuf encoding. When ingest changed nothing but the
//! resources' identity attributes (the common case: every id valid, nothing sampled out,
//! nothing to redact), the record is made from the request as it arrived, with the missing
//! attributes spliced into each resource ([`spliced_record`]), rather than by encoding the
//! decoded request again.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
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
use crate::prompb::WriteRequest;
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

/// A protobuf request that was not ingested.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// The body is not a valid encoding of the request (the client's error: HTTP 400, gRPC
    /// `INVALID_ARGUMENT`); the message names the problem, never the bytes.
    Malformed(String),
    /// The request was not stored: see [`Refusal`].
    Refused(Refusal),
}

/// Items of a request, by what became of them.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    /// Spans with invalid ids.
    invalid: u64,
    /// Spans of traces sampled out.
    sampled_out: u64,
    /// Items in the record.
    kept: u64,
}

/// Items of a protobuf request decoded at a time: a large request is processed in parts of
/// about this many bytes of encoded items, so the decoded form (several times the encoding)
/// never exists for the whole request at once.
const PART_BYTES: usize = 256 * 1024;

impl OtlpReceiver {
    /// Ingests a request that came as its protobuf encoding (`ExportTraceServiceRequest`,
    /// `ExportMetricsServiceRequest` or `ExportLogsServiceRequest` for `signal`). A request
    /// larger than [`PART_BYTES`] is decoded and processed in parts (see [`split_request`]) and
    /// stored as one record, the concatenation of the parts' encodings.
    pub(crate) fn ingest_protobuf(
        &self,
        component: &'static str,
        signal: Signal,
        request: &[u8],
    ) -> Result<Acknowledged, IngestError> {
        let mut tally = Tally::default();
        let mut record = Vec::with_capacity(request.len() + 1 + 1024);
        record.push(record_tag(signal));
        split_request(signal, request, PART_BYTES, |part| {
            let batch = decode_part(signal, part).map_err(|error| {
                IngestError::Malformed(format!(
                    "invalid OTLP/protobuf {} request: {error}",
                    signal.as_str()
                ))
            })?;
            self.process(batch, Some(part), &mut tally, &mut record);
            Ok(())
        })?;
        self.store(component, signal, request.len() as u64, tally, record)
            .map_err(IngestError::Refused)
    }

    /// Runs `batch` through sampling, redaction and enrichment and stores it. `bytes` is the
    /// request size for the received-bytes counter.
    pub(crate) fn ingest(
        &self,
        component: &'static str,
        batch: Batch,
        bytes: u64,
    ) -> Result<Acknowledged, Refusal> {
        let signal = batch.signal();
        let mut tally = Tally::default();
        let mut record = vec![record_tag(signal)];
        self.process(batch, None, &mut tally, &mut record);
        self.store(component, signal, bytes, tally, record)
    }

    /// Drops invalid and sampled-out spans, redacts and enriches `batch`, and appends its
    /// encoding to `record`. `encoded` is the protobuf encoding `batch` was decoded from, when it
    /// came as protobuf: when only enrichment changes the batch, that encoding is appended with
    /// the identity attributes spliced in, rather than the batch encoded again.
    fn process(
        &self,
        mut batch: Batch,
        encoded: Option<&[u8]>,
        tally: &mut Tally,
        record: &mut Vec<u8>,
    ) {
        let received = batch.item_count() as u64;
        tally.received += received;
        // Whether the batch differs from `encoded` in more than enrichment.
        let mut changed = false;
        if let Batch::Traces(request) = &mut batch {
            let (kept, removed) = retain_spans(request, has_valid_ids);
            changed |= removed;
            tally.invalid += received - kept;
            if self.sampling_ratio < 1.0 {
                let ratio = self.sampling_ratio;
                let (sampled, removed) =
                    retain_spans(request, |span| keeps_trace(&span.trace_id, ratio));
                changed |= removed;
                tally.sampled_out += kept - sampled;
            }
        }
        let kept = batch.item_count() as u64;
        if kept == 0 {
            return;
        }
        tally.kept += kept;
        changed |= self.redactor.redact_batch(&mut batch);
        if let Some(encoded) = encoded.filter(|_| !changed) {
            if splice_into(&self.identity, &batch, encoded, record).is_some() {
                return;
            }
        }
        enrich_batch(&self.identity, &mut batch);
        // Encoding into a Vec cannot fail: a Vec grows as needed.
        let _ = match &batch {
            Batch::Traces(m) => m.encode(record),
            Batch::Metrics(m) => m.encode(record),
            Batch::Logs(m) => m.encode(record),
            Batch::Samples(m) => m.encode(record),
        };
    }

    /// Reports what was dropped and stores `record` (the tag and the encoding of the kept
    /// items) through the router.
    fn store(
        &self,
        component: &'static str,
        signal: Signal,
        bytes: u64,
        tally: Tally,
        record: Vec<u8>,
    ) -> Result<Acknowledged, Refusal> {
        let mut acknowledged = Acknowledged::default();
        if tally.invalid > 0 {
            emit(InternalEvent::Dropped {
                component,
                events: tally.invalid,
                reason: "rejected",
            });
            acknowledged.rejected = tally.invalid as i64;
            acknowledged.message = format!(
                "{} spans rejected: a trace id must be 16 bytes and a span id 8 bytes, not all \
                 zero",
                tally.invalid
            );
        }
        if tally.sampled_out > 0 {
            emit(InternalEvent::Dropped {
                component,
                events: tally.sampled_out,
                reason: "sampled",
            });
        }
        if tally.kept > 0 {
            match self.router.try_send_record(signal, tally.kept, record) {
                Ok(Routed::Accepted) => {}
                Ok(Routed::Dropped) => {
                    // The router counted the drop; the sender learns it through partial
                    // success and must not retry (that is what `dropNewest` asks for).
                    acknowledged.rejected = tally.received as i64;
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
                        events: tally.received,
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
            signal: signal.as_str(),
            events: tally.received,
            bytes,
        });
        Ok(acknowledged)
    }
}

/// Decodes one part of a protobuf request of `signal`.
fn decode_part(signal: Signal, part: &[u8]) -> Result<Batch, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => Batch::Traces(ExportTraceServiceRequest::decode(part)?),
        Signal::Metrics => Batch::Metrics(ExportMetricsServiceRequest::decode(part)?),
        Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(part)?),
        Signal::Samples => Batch::Samples(WriteRequest::decode(part)?),
    })
}

/// Calls `each` with parts of the encoded export request `request` that together hold what it
/// holds: `request` itself when it is at most `part_bytes`, otherwise requests of one resource
/// entry with one scope entry and consecutive items (spans, metrics, log records) of that scope
/// of about `part_bytes` encoded bytes. The three OTLP export requests share this layout:
/// entries of field 1 (`Resource*`: `resource` 1, scope entries 2, `schema_url` 3), each scope
/// entry (`Scope*`: `scope` 1, items 2, `schema_url` 3). Other fields of an entry come with every
/// part; fields of the request other than 1 come with the first part.
fn split_request(
    signal: Signal,
    request: &[u8],
    part_bytes: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    if request.len() <= part_bytes {
        return each(request);
    }
    let broken = || {
        IngestError::Malformed(format!(
            "invalid OTLP/protobuf {} request: the protobuf framing is broken",
            signal.as_str()
        ))
    };
    let mut part = Vec::with_capacity(part_bytes + 4096);
    // Fields of the request other than resource entries, for the first part.
    let mut top = Vec::new();
    let mut fields = Fields::new(request);
    let mut start = 0;
    while let Some(field) = fields.next() {
        let end = fields.position();
        if field.ok_or_else(broken)?.0 != 1 {
            top.extend_from_slice(&request[start..end]);
        }
        start = end;
    }
    let mut emit_part = |part: &mut Vec<u8>, top: &mut Vec<u8>| -> Result<(), IngestError> {
        if !top.is_empty() {
            part.splice(0..0, top.drain(..));
        }
        let result = each(part);
        part.clear();
        result
    };
    for field in Fields::new(request) {
        let (number, value) = field.ok_or_else(broken)?;
        let entry = match (number, value) {
            (1, Value::Bytes(entry)) => entry,
            (1, _) => return Err(broken()),
            _ => continue,
        };
        let (entry_head, scopes) = split_fields(entry).ok_or_else(broken)?;
        if scopes.is_empty() {
            put_length_delimited_key(1, entry.len(), &mut part);
            part.extend_from_slice(entry);
            emit_part(&mut part, &mut top)?;
            continue;
        }
        for scope in scopes {
            let (scope_head, items) = split_fields(scope).ok_or_else(broken)?;
            let mut items = items.into_iter().peekable();
            loop {
                // Raw fields (key, length, content) of the items of this part.
                let mut group = Vec::new();
                let mut group_len = 0;
                while let Some(&item) = items.peek() {
                    let item_len = length_delimited_len(item.len());
                    if !group.is_empty() && group_len + item_len > part_bytes {
                        break;
                    }
                    group.push(item);
                    group_len += item_len;
                    items.next();
                }
                let scope_len = scope_head.len() + group_len;
                let entry_len = entry_head.len() + length_delimited_len(scope_len);
                put_length_delimited_key(1, entry_len, &mut part);
                part.extend_from_slice(&entry_head);
                put_length_delimited_key(2, scope_len, &mut part);
                part.extend_from_slice(&scope_head);
                for item in group {
                    put_length_delimited_key(2, item.len(), &mut part);
                    part.extend_from_slice(item);
                }
                emit_part(&mut part, &mut top)?;
                if items.peek().is_none() {
                    break;
                }
            }
        }
    }
    if !top.is_empty() {
        emit_part(&mut part, &mut top)?;
    }
    Ok(())
}

/// The fields of `message` other than field 2 (as encoded, in order), and the contents of its
/// field-2 entries; `None` when the encoding is broken or a field 2 is not length-delimited.
fn split_fields(message: &[u8]) -> Option<(Vec<u8>, Vec<&[u8]>)> {
    let mut head = Vec::new();
    let mut entries = Vec::new();
    let mut fields = Fields::new(message);
    let mut start = 0;
    while let Some(field) = fields.next() {
        let end = fields.position();
        match field? {
            (2, Value::Bytes(content)) => entries.push(content),
            (2, _) => return None,
            _ => head.extend_from_slice(&message[start..end]),
        }
        start = end;
    }
    Some((head, entries))
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
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn spliced_record(
    identity: &Identity,
    batch: &Batch,
    encoded: &[u8],
) -> Option<Vec<u8>> {
    let mut out = vec![record_tag(batch.signal())];
    splice_into(identity, batch, encoded, &mut out)?;
    Some(out)
}

/// [`spliced_record`] without the tag, appended to `out`; `out` is left as it was on `None`.
fn splice_into(
    identity: &Identity,
    batch: &Batch,
    encoded: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    let before = out.len();
    let spliced = splice_resources(identity, batch, encoded, out);
    if spliced.is_none() {
        out.truncate(before);
    }
    spliced
}

fn splice_resources(
    identity: &Identity,
    batch: &Batch,
    encoded: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
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
    out.reserve(encoded.len() + 256 * resources.len());
    let mut resources = resources.into_iter();
    let mut fields = Fields::new(encoded);
    let mut start = 0;
    while let Some(field) = fields.next() {
        let end = fields.position();
        match field? {
            // `resource_spans`, `resource_metrics`, `resource_logs`.
            (1, Value::Bytes(entry)) => {
                let additions = resource_additions(identity, resources.next()?)?;
                splice_resource_entry(entry, &additions, out)?;
            }
            (1, _) => return None,
            _ => out.extend_from_slice(&encoded[start..end]),
        }
        start = end;
    }
    resources.next().is_none().then_some(())
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

    /// A request larger than a part is split into parts of about the part size that, decoded
    /// together, hold every span in order under its own resource and scope; the request's own
    /// other fields come once, with the first part. A small request is its own only part.
    #[test]
    fn parts_hold_what_the_request_holds() {
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

        let Batch::Traces(mut request) = traces_batch("GET /f") else {
            unreachable!()
        };
        let template = request.resource_spans[0].scope_spans[0].spans[0].clone();
        let mut second = request.resource_spans[0].clone();
        second.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
        request.resource_spans.push(second);
        for (r, resource) in request.resource_spans.iter_mut().enumerate() {
            resource.scope_spans = (0..2)
                .map(|s| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("scope-{r}-{s}"),
                        ..Default::default()
                    }),
                    spans: (0..300)
                        .map(|n| Span {
                            name: format!("span-{r}-{s}-{n}"),
                            ..template.clone()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect();
        }
        let flat = |request: &ExportTraceServiceRequest| -> Vec<(String, String, String)> {
            let mut out = Vec::new();
            for resource in &request.resource_spans {
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        out.push((
                            resource.schema_url.clone(),
                            scope.scope.as_ref().unwrap().name.clone(),
                            span.name.clone(),
                        ));
                    }
                }
            }
            out
        };
        let mut encoded = request.encode_to_vec();
        encoded.extend_from_slice(&[0x78, 0x2a]); // field 15, varint 42
        let mut parts = Vec::new();
        split_request(Signal::Traces, &encoded, 4096, |part| {
            parts.push(part.to_vec());
            Ok(())
        })
        .unwrap();
        assert!(parts.len() > 10, "{} parts", parts.len());
        for part in &parts {
            assert!(part.len() < 4096 + 1024, "a part of {} bytes", part.len());
        }
        assert!(parts[0].starts_with(&[0x78, 0x2a]));
        let merged = ExportTraceServiceRequest::decode(parts.concat().as_slice()).unwrap();
        assert_eq!(flat(&merged), flat(&request));
        for resource in &merged.resource_spans {
            assert_eq!(resource.resource, request.resource_spans[0].resource);
        }

        let small = traces_batch("GET /g").encode();
        let mut parts = Vec::new();
        split_request(Signal::Traces, &small[1..], 4096, |part| {
            parts.push(part.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(parts, [small[1..].to_vec()]);
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
