//! [`Batch`]: the unit that goes through the router into a sink's buffer. OTLP data stays in
//! its protobuf form end to end (no conversion on the hot path); scraped and crash series travel
//! as remote-write `WriteRequest`s.
//!
//! Buffer record encoding (see [`Batch::encode`]): one tag byte (`1` traces, `2` metrics,
//! `3` logs, `4` samples) followed by the prost encoding of the message. A samples record the
//! scrape checked as it wrote it has tag `5` ([`CHECKED_SAMPLES_TAG`]): its number of series as
//! a little-endian `u32`, then the `WriteRequest`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

use crate::prompb::WriteRequest;

/// The tag byte of a logs batch's buffer record.
pub const LOGS_TAG: u8 = 3;
/// The tag byte of a samples batch's buffer record.
pub const SAMPLES_TAG: u8 = 4;
/// The tag byte of a samples record checked where it was written: every series is as
/// remote-write receivers want it (labels sorted by name, no name twice, no empty value, a
/// `__name__` label, exactly one sample) and no label set is in two series, so the record is
/// a write request as it is. The tag is followed by the number of series (`u32`, little-endian)
/// and the `WriteRequest`.
pub const CHECKED_SAMPLES_TAG: u8 = 5;
/// Bytes before a checked samples record's `WriteRequest`: the tag and the count.
pub const CHECKED_SAMPLES_HEADER: usize = 5;

/// The kind of data in a batch; sinks say which kinds they take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
    Samples,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Samples => "samples",
        }
    }
}

/// A batch of telemetry.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
    Samples(WriteRequest),
}

/// A buffer record that is not a batch.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty buffer record")]
    Empty,
    #[error("unknown batch tag {0}")]
    UnknownTag(u8),
    #[error("checked samples batch shorter than its series count")]
    Uncounted,
    #[error("invalid {signal} batch")]
    Invalid {
        signal: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
            Batch::Samples(_) => Signal::Samples,
        }
    }

    /// Spans, data points, log records or samples in the batch.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Batch::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                })
                .sum(),
            Batch::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
            Batch::Samples(w) => w.timeseries.iter().map(|t| t.samples.len()).sum(),
        }
    }

    /// The buffer record for this batch.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, len) = match self {
            Batch::Traces(m) => (1u8, m.encoded_len()),
            Batch::Metrics(m) => (2, m.encoded_len()),
            Batch::Logs(m) => (LOGS_TAG, m.encoded_len()),
            Batch::Samples(m) => (SAMPLES_TAG, m.encoded_len()),
        };
        let mut out = Vec::with_capacity(len + 1);
        out.push(tag);
        // Encoding into a Vec cannot fail: a Vec grows as needed.
        let _ = match self {
            Batch::Traces(m) => m.encode(&mut out),
            Batch::Metrics(m) => m.encode(&mut out),
            Batch::Logs(m) => m.encode(&mut out),
            Batch::Samples(m) => m.encode(&mut out),
        };
        out
    }

    /// Reads a buffer record written by [`Batch::encode`].
    pub fn decode(record: &[u8]) -> Result<Batch, DecodeError> {
        let (&tag, body) = record.split_first().ok_or(DecodeError::Empty)?;
        let invalid = |signal: &'static str| move |source| DecodeError::Invalid { signal, source };
        Ok(match tag {
            1 => Batch::Traces(ExportTraceServiceRequest::decode(body).map_err(invalid("traces"))?),
            2 => Batch::Metrics(
                ExportMetricsServiceRequest::decode(body).map_err(invalid("metrics"))?,
            ),
            3 => Batch::Logs(ExportLogsServiceRequest::decode(body).map_err(invalid("logs"))?),
            4 => Batch::Samples(WriteRequest::decode(body).map_err(invalid("samples"))?),
            CHECKED_SAMPLES_TAG => {
                let request = body
                    .get(CHECKED_SAMPLES_HEADER - 1..)
                    .ok_or(DecodeError::Uncounted)?;
                Batch::Samples(WriteRequest::decode(request).map_err(invalid("samples"))?)
            }
            other => return Err(DecodeError::UnknownTag(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::{Label, Sample, TimeSeries};

    /// A batch survives the buffer encoding unchanged, and a foreign tag is refused.
    #[test]
    fn buffer_record_round_trip() {
        let batch = Batch::Samples(WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
            }],
        });
        let record = batch.encode();
        assert_eq!(Batch::decode(&record).unwrap(), batch);
        assert_eq!(batch.item_count(), 1);
        assert!(matches!(
            Batch::decode(&[9, 1, 2]),
            Err(DecodeError::UnknownTag(9))
        ));
        assert!(matches!(Batch::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Batch::decode(&[CHECKED_SAMPLES_TAG, 1, 0]),
            Err(DecodeError::Uncounted)
        ));
    }
}
