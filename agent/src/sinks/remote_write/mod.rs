//! The Prometheus remote-write sink: scraped and crash samples, and OTLP metrics converted to
//! series ([`convert`]), sent as one snappy-compressed protobuf `WriteRequest` (protocol 1.0)
//! per send to Prometheus (`--web.enable-remote-write-receiver`), Mimir, Thanos, VictoriaMetrics
//! or any other receiver.
//!
//! Before sending, series with the same labels are merged, their labels sorted by name and
//! their samples sorted by time (a sample repeated at the same timestamp keeps the last value),
//! as receivers require.
//!
//! Samples records usually need none of that: a scrape writes its series with their labels
//! sorted, without empty values, one sample each ([`crate::sources::scrape`]). Such records
//! are sent as they are — their concatenation is the write request ([`as_is_body`]) — with no
//! decode into owned series, merge or re-encode; only records with a series that is not so
//! (labels out of order, a series twice, several samples in one series) or OTLP metrics to
//! convert take the general path.

pub mod convert;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use prost::Message;
use reqwest::Url;
use vigil_crds::agent_config::HttpSink;

use super::http::{self, HttpClient};
use super::otlp::EncodedBatches;
use super::{SendError, SinkConfigError};
use crate::batch::{Batch, Signal};
use crate::prompb::{delimited, Label, Sample, TimeSeries, WriteRequest};
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
    /// The compressor of the as-is path, with its output buffer kept between sends (boxed: the
    /// encoder's table would make every [`super::Sink`] as large).
    compressor: Box<std::sync::Mutex<Compressor>>,
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
        Ok(RemoteWriteSink {
            client,
            url,
            compressor: Box::default(),
        })
    }

    /// Sends all samples of the batches, and the OTLP metrics converted to series, as one
    /// write request.
    pub async fn send(&self, batches: &[Batch]) -> Result<(), SendError> {
        let request = write_request(batches);
        if request.timeseries.is_empty() {
            return Ok(());
        }
        self.post(encode(&request)?).await
    }
}

impl RemoteWriteSink {
    /// Sends encoded batches: the samples records as they are when they are one record checked
    /// where it was written ([`crate::batch::CHECKED_SAMPLES_TAG`]) or [`as_is_body`] allows,
    /// else decoded and merged as [`RemoteWriteSink::send`] does.
    pub async fn send_encoded(&self, batches: &EncodedBatches) -> Result<(), SendError> {
        if batches.metrics.is_empty() {
            // One record checked where it was written is a write request as it is.
            let checked = match batches.samples.as_slice() {
                [one] if batches.checked_samples == 1 => Some(std::borrow::Cow::Borrowed(&one[..])),
                _ => None,
            };
            if let Some(raw) = checked.or_else(|| as_is_body(&batches.samples)) {
                if raw.is_empty() {
                    return Ok(());
                }
                // A poisoned lock only means a compression panicked; the buffer is rewritten.
                let body = self
                    .compressor
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .compress(&raw)?;
                return self.post(body).await;
            }
        }
        self.send(&super::decode_encoded(batches)?).await
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), SendError> {
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

/// The write request made of encoded `WriteRequest`s `requests` as they are (their
/// concatenation), when every series in them is as receivers want it: labels sorted by name,
/// no name twice, no empty value, a `__name__` label, exactly one sample, and no label set in
/// two series. `None` when one is not (the caller merges them the general way).
pub fn as_is_body(requests: &[bytes::Bytes]) -> Option<std::borrow::Cow<'_, [u8]>> {
    // (hash of the encoded labels, the encoded labels) of every series.
    let mut series: Vec<(u32, &[u8])> = Vec::new();
    for request in requests {
        // WriteRequest.timeseries = 1, length-delimited (0x0a), and nothing else.
        let mut at = 0;
        while at < request.len() {
            if request[at] != 0x0a {
                return None;
            }
            let one = delimited(request, at + 1)?;
            at = one.end;
            let labels = as_is_labels(&request[one])?;
            series.push((crc32fast::hash(labels), labels));
        }
    }
    // Sorted labels without empty values encode one way only: equal sets are equal bytes.
    series.sort_unstable();
    if series.windows(2).any(|pair| pair[0] == pair[1]) {
        return None;
    }
    Some(match requests {
        [one] => std::borrow::Cow::Borrowed(one.as_ref()),
        several => std::borrow::Cow::Owned(several.concat()),
    })
}

/// The encoded labels (the leading `labels` fields) of an encoded `TimeSeries` that can be
/// sent as it is (see [`as_is_body`]): each label exactly a name and a non-empty value, in this
/// order, then exactly one sample.
fn as_is_labels(series: &[u8]) -> Option<&[u8]> {
    // Keys: TimeSeries.labels = 1 and Label.name = 1 (0x0a), TimeSeries.samples = 2 and
    // Label.value = 2 (0x12), all length-delimited.
    let mut at = 0;
    let mut previous: Option<&[u8]> = None;
    let mut named = false;
    while series.get(at) == Some(&0x0a) {
        let label = delimited(series, at + 1)?;
        at = label.end;
        let label = &series[label];
        if label.first() != Some(&0x0a) {
            return None;
        }
        let name = delimited(label, 1)?;
        if label.get(name.end) != Some(&0x12) {
            return None;
        }
        let value = delimited(label, name.end + 1)?;
        if value.is_empty() || value.end != label.len() {
            return None;
        }
        let name = &label[name];
        if previous.is_some_and(|p| p >= name) {
            return None;
        }
        named |= name == b"__name__";
        previous = Some(name);
    }
    let labels_end = at;
    if series.get(at) != Some(&0x12) || delimited(series, at + 1)?.end != series.len() {
        return None;
    }
    named.then(|| &series[..labels_end])
}

/// The snappy-compressed (block format) protobuf body of a write request.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, SendError> {
    compress(&request.encode_to_vec())
}

/// Largest output buffer [`Compressor`] keeps between sends; a bigger body (a backlog sent at
/// once) is compressed into a buffer of its own.
const KEPT_OUTPUT_BYTES: usize = 4 << 20;

/// A snappy encoder and its output buffer, kept between sends: a scrape's body is compressed
/// without zeroing (and faulting in) a fresh buffer of the worst-case length every time, and
/// only the compressed bytes are copied out.
struct Compressor {
    encoder: snap::raw::Encoder,
    output: Vec<u8>,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            encoder: snap::raw::Encoder::new(),
            output: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("output", &self.output.len())
            .finish()
    }
}

impl Compressor {
    /// `raw` snappy-compressed (block format).
    fn compress(&mut self, raw: &[u8]) -> Result<Vec<u8>, SendError> {
        let needed = snap::raw::max_compress_len(raw.len());
        if needed == 0 || needed > KEPT_OUTPUT_BYTES {
            return compress(raw);
        }
        if self.output.len() < needed {
            self.output.resize(needed, 0);
        }
        let written =
            self.encoder
                .compress(raw, &mut self.output)
                .map_err(|e| SendError::Permanent {
                    reason: format!(
                        "cannot compress a write request of {} bytes: {e}",
                        raw.len()
                    ),
                })?;
        Ok(self.output[..written].to_vec())
    }
}

/// A protobuf body snappy-compressed (block format).
fn compress(raw: &[u8]) -> Result<Vec<u8>, SendError> {
    // Snappy refuses only inputs over ~4 GiB, far beyond any batch.
    snap::raw::Encoder::new()
        .compress_vec(raw)
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
