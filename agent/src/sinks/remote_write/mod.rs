//! The Prometheus remote-write sink: scraped and crash samples, and OTLP metrics converted to
//! series ([`convert`]), sent as one snappy-compressed protobuf `WriteRequest` (protocol 1.0)
//! per send to Prometheus (`--web.enable-remote-write-receiver`), Mimir, Thanos, VictoriaMetrics
//! or any other receiver.
//!
//! Before sending, series with the same labels are merged, their labels sorted by name and
//! their samples sorted by time (a sample repeated at the same timestamp keeps the last value),
//! as receivers require.

pub mod convert;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use prost::Message;
use reqwest::Url;
use vigil_crds::agent_config::HttpSink;

use super::http::{self, HttpClient};
use super::{SendError, SinkConfigError};
use crate::batch::{Batch, Signal};
use crate::prompb::{Label, Sample, TimeSeries, WriteRequest};
use crate::telemetry::{emit, InternalEvent};

/// Component name.
pub const COMPONENT: &str = "sink_remote_write";
/// Signals the remote-write sink takes.
pub const SIGNALS: &[Signal] = &[Signal::Samples, Signal::Metrics];

/// A Prometheus remote-write exporter.
#[derive(Debug)]
pub struct RemoteWriteSink {
    client: HttpClient,
    url: Url,
}

impl RemoteWriteSink {
    /// Checks the config and builds the client.
    pub fn new(config: &HttpSink) -> Result<Self, SinkConfigError> {
        Self::at("prometheusRemoteWrite", config)
    }

    /// [`RemoteWriteSink::new`] for the exporter at config path `field` (errors name
    /// `exporters.<field>.…`).
    pub fn at(field: &str, config: &HttpSink) -> Result<Self, SinkConfigError> {
        let (client, url) = http::push_client(field, config)?;
        Ok(RemoteWriteSink { client, url })
    }

    /// Sends all samples of the batches, and the OTLP metrics converted to series, as one
    /// write request.
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        let request = write_request(batches);
        if request.timeseries.is_empty() {
            return Ok(());
        }
        let body = encode(&request)?;
        self.client
            .post(
                &self.url,
                "application/x-protobuf",
                &[
                    ("Content-Encoding", "snappy"),
                    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ],
                body,
            )
            .await?
            .into_result()
            .map(|_| ())
    }
}

/// The snappy-compressed (block format) protobuf body of a write request.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, SendError> {
    let raw = request.encode_to_vec();
    // Snappy refuses only inputs over ~4 GiB, far beyond any batch.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| SendError::Permanent {
            reason: format!(
                "cannot compress a write request of {} bytes: {e}",
                raw.len()
            ),
        })
}

/// One write request from the samples and metrics batches: series merged by label set,
/// labels sorted, samples sorted by time. Counts OTLP points that cannot be converted as
/// dropped.
pub fn write_request(batches: &[Batch]) -> WriteRequest {
    let mut converted = convert::Converted::default();
    let mut merged: BTreeMap<Vec<Label>, Vec<Sample>> = BTreeMap::new();
    let mut add = |series: TimeSeries| {
        let labels = normalise_labels(series.labels);
        if labels.is_empty() {
            return;
        }
        merged.entry(labels).or_default().extend(series.samples);
    };
    for batch in batches {
        match batch {
            Batch::Samples(request) => request.timeseries.iter().cloned().for_each(&mut add),
            Batch::Metrics(request) => {
                convert::convert(request, &mut converted);
                converted.series.drain(..).for_each(&mut add);
            }
            Batch::Traces(_) | Batch::Logs(_) => {}
        }
    }
    for (count, reason) in [
        (converted.unsupported, "unsupported"),
        (converted.delta, "delta_temporality"),
    ] {
        if count > 0 {
            emit(InternalEvent::Dropped {
                component: COMPONENT,
                events: count,
                reason,
            });
        }
    }
    let timeseries = merged
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.timestamp);
            // Keep the last of several samples at one timestamp: receivers reject duplicates
            // with different values.
            let mut deduplicated: Vec<Sample> = Vec::with_capacity(samples.len());
            for sample in samples {
                match deduplicated.last_mut() {
                    Some(last) if last.timestamp == sample.timestamp => *last = sample,
                    _ => deduplicated.push(sample),
                }
            }
            TimeSeries {
                labels,
                samples: deduplicated,
            }
        })
        .filter(|s| !s.samples.is_empty())
        .collect();
    WriteRequest { timeseries }
}

/// Labels sorted by name, without empty values (Prometheus treats an empty value as absent)
/// and without repeated names (the first wins). A series without `__name__` is refused.
fn normalise_labels(mut labels: Vec<Label>) -> Vec<Label> {
    labels.retain(|l| !l.value.is_empty());
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|later, earlier| later.name == earlier.name);
    if !labels.iter().any(|l| l.name == "__name__") {
        return Vec::new();
    }
    labels
}
