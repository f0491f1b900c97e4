//! OTLP export requests as they are stored in the buffer, sent on without being decoded.
//!
//! A buffer record of an OTLP signal is a tag byte and the protobuf encoding of an
//! `Export*ServiceRequest` ([`crate::batch`]). In protobuf, the concatenation of two encodings
//! of a message is the encoding of their merge, and merging appends repeated fields: several
//! records of one signal, concatenated, are one export request carrying all their resources.
//! So the OTLP sink sends records as they are, with no decode, copy into structs or re-encode.
//!
//! Records are still checked before they go: the framing of the request, resource, scope and
//! item levels is walked (which also counts the items for the agent's own telemetry), and a
//! record that does not frame is dropped as `corrupt_record` as a decoded one would be, so it
//! cannot make the backend refuse the good records sent with it.

use bytes::Bytes;

use crate::batch::{Batch, Signal, CHECKED_SAMPLES_HEADER, CHECKED_SAMPLES_TAG};
use crate::buffer::Record;
use crate::prompb::delimited;

/// Export requests of the OTLP signals, one encoded request body per buffer record, grouped by
/// signal. Sending one group as one request body is sending their merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedBatches {
    /// Encoded `ExportTraceServiceRequest`s.
    pub traces: Vec<Bytes>,
    /// Encoded `ExportMetricsServiceRequest`s.
    pub metrics: Vec<Bytes>,
    /// Encoded `ExportLogsServiceRequest`s.
    pub logs: Vec<Bytes>,
    /// Encoded remote-write `WriteRequest`s (scraped and crash samples; the remote-write sink
    /// takes them, the OTLP sink does not).
    pub samples: Vec<Bytes>,
    /// How many of `samples` come from records checked where they were written
    /// ([`crate::batch::CHECKED_SAMPLES_TAG`]).
    pub checked_samples: usize,
    /// Spans, data points and log records in all of them.
    pub items: u64,
    /// Bytes of the buffer records they came from.
    pub record_bytes: u64,
}

/// A buffer record that cannot be sent as an OTLP export request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodedError {
    #[error("empty buffer record")]
    Empty,
    #[error("unknown batch tag {0}")]
    UnknownTag(u8),
    #[error("invalid {signal} batch: the protobuf framing is broken")]
    Framing { signal: &'static str },
}

const TRACES_TAG: u8 = 1;
const METRICS_TAG: u8 = 2;
const LOGS_TAG: u8 = 3;
const SAMPLES_TAG: u8 = 4;

impl EncodedBatches {
    /// Takes buffer records as they are. Records that do not frame are returned as errors,
    /// one per record, for the caller to count.
    pub fn from_records(records: Vec<Record>) -> (EncodedBatches, Vec<EncodedError>) {
        let mut batches = EncodedBatches::default();
        let mut errors = Vec::new();
        for record in records {
            let len = record.bytes.len() as u64;
            match batches.push_record(Bytes::from(record.bytes)) {
                Ok(()) => batches.record_bytes += len,
                Err(e) => errors.push(e),
            }
        }
        (batches, errors)
    }

    /// Encodes decoded batches (for callers that hold batches rather than records).
    pub fn from_batches(batches: &[Batch]) -> EncodedBatches {
        let mut encoded = EncodedBatches::default();
        for batch in batches {
            let record = batch.encode();
            let len = record.len() as u64;
            if encoded.push_record(Bytes::from(record)).is_ok() {
                encoded.record_bytes += len;
            }
        }
        encoded
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
            && self.metrics.is_empty()
            && self.logs.is_empty()
            && self.samples.is_empty()
    }

    fn push_record(&mut self, record: Bytes) -> Result<(), EncodedError> {
        let (&tag, _) = record.split_first().ok_or(EncodedError::Empty)?;
        let body = record.slice(1..);
        let (signal, group) = match tag {
            TRACES_TAG => (Signal::Traces, &mut self.traces),
            METRICS_TAG => (Signal::Metrics, &mut self.metrics),
            LOGS_TAG => (Signal::Logs, &mut self.logs),
            SAMPLES_TAG => {
                self.items += count_samples(&body).ok_or(EncodedError::Framing {
                    signal: Signal::Samples.as_str(),
                })?;
                self.samples.push(body);
                return Ok(());
            }
            CHECKED_SAMPLES_TAG => {
                // The count the scrape wrote, one sample per series: the record is not walked.
                let count = body.first_chunk::<{ CHECKED_SAMPLES_HEADER - 1 }>().ok_or(
                    EncodedError::Framing {
                        signal: Signal::Samples.as_str(),
                    },
                )?;
                self.items += u64::from(u32::from_le_bytes(*count));
                self.samples.push(body.slice(CHECKED_SAMPLES_HEADER - 1..));
                self.checked_samples += 1;
                return Ok(());
            }
            other => return Err(EncodedError::UnknownTag(other)),
        };
        let items = count_items(signal, &body).ok_or(EncodedError::Framing {
            signal: signal.as_str(),
        })?;
        self.items += items;
        group.push(body);
        Ok(())
    }
}

/// Spans, data points or log records in an encoded export request of `signal`; `None` when its
/// framing is broken at the levels walked.
pub fn count_items(signal: Signal, request: &[u8]) -> Option<u64> {
    let mut items = 0u64;
    // Export*ServiceRequest.resource_* = 1, Resource*.scope_* = 2, Scope*.{spans, metrics,
    // log_records} = 2.
    for resource in messages(request, 1) {
        for scope in messages(resource?, 2) {
            for item in messages(scope?, 2) {
                let item = item?;
                items += match signal {
                    Signal::Metrics => data_points(item)?,
                    _ => 1,
                };
            }
        }
    }
    Some(items)
}

/// Samples in an encoded remote-write `WriteRequest` (`timeseries` = 1, `TimeSeries.samples` =
/// 2); `None` when its framing is broken at the levels walked.
pub fn count_samples(request: &[u8]) -> Option<u64> {
    count_canonical_samples(request).or_else(|| count_any_samples(request))
}

/// [`count_samples`] in one tight pass for a request made only of `timeseries` holding only
/// `labels` and `samples` (what the agent writes); `None` for anything else.
fn count_canonical_samples(request: &[u8]) -> Option<u64> {
    let mut samples = 0;
    let mut at = 0;
    while at < request.len() {
        // WriteRequest.timeseries = 1, TimeSeries.labels = 1, TimeSeries.samples = 2.
        if request[at] != 0x0a {
            return None;
        }
        let series = delimited(request, at + 1)?;
        at = series.end;
        let series = &request[series];
        let mut inner = 0;
        while inner < series.len() {
            let key = series[inner];
            if key != 0x0a && key != 0x12 {
                return None;
            }
            samples += u64::from(key == 0x12);
            inner = delimited(series, inner + 1)?.end;
        }
    }
    Some(samples)
}

fn count_any_samples(request: &[u8]) -> Option<u64> {
    let mut samples = 0;
    for series in messages(request, 1) {
        for sample in messages(series?, 2) {
            sample?;
            samples += 1;
        }
    }
    Some(samples)
}

/// Data points of an encoded `Metric`: the `data_points` (field 1) of its gauge (5), sum (7),
/// histogram (9), exponential histogram (10) or summary (11).
fn data_points(metric: &[u8]) -> Option<u64> {
    let mut points = 0;
    for field in Fields::new(metric) {
        let (number, value) = field?;
        if matches!(number, 5 | 7 | 9 | 10 | 11) {
            let Value::Bytes(data) = value else {
                return None;
            };
            for point in messages(data, 1) {
                point?;
                points += 1;
            }
        }
    }
    Some(points)
}

/// The length-delimited values of field `number` in an encoded message, every field's framing
/// checked; an item is `None` where the framing breaks (and the iteration ends there).
fn messages(message: &[u8], number: u32) -> impl Iterator<Item = Option<&[u8]>> {
    Fields::new(message).filter_map(move |field| match field {
        Some((n, Value::Bytes(bytes))) if n == number => Some(Some(bytes)),
        Some((n, _)) if n == number => Some(None),
        Some(_) => None,
        None => Some(None),
    })
}

/// One field's value in the protobuf wire format.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint,
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

/// The fields of an encoded message, in order; yields `None` once, where the framing breaks.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    len: usize,
    broken: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Fields {
            rest: message,
            len: message.len(),
            broken: false,
        }
    }

    /// Bytes of the message read so far: where the next field starts.
    pub(crate) fn position(&self) -> usize {
        self.len - self.rest.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0)?;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Varint)?,
            1 => self.take(8).map(|_| Value::Fixed64)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed32)?,
            // Groups (3, 4) are not used by OTLP; anything else is not protobuf.
            _ => return None,
        };
        Some((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u32, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.broken || self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        self.broken = field.is_none();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::RecordId;
    use crate::sinks::test_support::{counter_batch, log_record, logs_batch, traces_batch};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    fn record(id: u64, bytes: Vec<u8>) -> Record {
        Record {
            id: RecordId(id),
            bytes,
        }
    }

    /// Items are counted from the encoding as `Batch::item_count` counts them decoded.
    #[test]
    fn counts_items_like_the_decoded_batch() {
        let batches = [
            traces_batch("GET /a"),
            counter_batch("orders", 3.0, 1),
            logs_batch(
                &[("service.name", "api")],
                vec![
                    log_record(1, "one", "info", &[]),
                    log_record(2, "two", "", &[]),
                ],
            ),
        ];
        for batch in &batches {
            let record = batch.encode();
            assert_eq!(
                count_items(batch.signal(), &record[1..]),
                Some(batch.item_count() as u64),
                "{:?}",
                batch.signal()
            );
        }
    }

    /// Concatenated records are the merged request: decoding the concatenation gives every
    /// resource of every record, in order.
    #[test]
    fn concatenated_records_decode_as_their_merge() {
        let records = vec![
            record(1, traces_batch("a").encode()),
            record(2, traces_batch("b").encode()),
        ];
        let (encoded, errors) = EncodedBatches::from_records(records);
        assert!(errors.is_empty());
        assert_eq!(encoded.items, 2);
        let body: Vec<u8> = encoded.traces.iter().flatten().copied().collect();
        let merged = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let names: Vec<_> = merged
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    /// Empty records, foreign tags and broken framing are refused one by one; the good
    /// records around them are kept.
    #[test]
    fn broken_records_are_refused() {
        let good = traces_batch("ok").encode();
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        let mut bad_length = vec![TRACES_TAG, 0x0a, 0x7f];
        bad_length.extend_from_slice(&[0; 4]);
        let records = vec![
            record(1, Vec::new()),
            record(2, vec![99, 1, 2]),
            record(3, truncated),
            record(4, bad_length),
            record(5, vec![LOGS_TAG, 0x0b]),
            record(6, good.clone()),
        ];
        let (encoded, errors) = EncodedBatches::from_records(records);
        assert_eq!(
            errors,
            [
                EncodedError::Empty,
                EncodedError::UnknownTag(99),
                EncodedError::Framing { signal: "traces" },
                EncodedError::Framing { signal: "traces" },
                EncodedError::Framing { signal: "logs" },
            ]
        );
        assert_eq!(encoded.traces, [Bytes::copy_from_slice(&good[1..])]);
        assert_eq!(encoded.record_bytes, good.len() as u64);
    }
}
