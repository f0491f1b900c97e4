//! Prometheus remote-write protocol messages (`prometheus/prompb/types.proto` and `remote.proto`,
//! the v1 subset senders use), declared with prost derives.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, `__name__` included.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Field keys of the messages above (field number and wire type), for writing series straight
/// from borrowed labels with [`put_labels`] and [`put_encoded_series`].
const KEY_TIMESERIES: u8 = 0x0a; // WriteRequest.timeseries = 1, length-delimited
const KEY_LABELS: u8 = 0x0a; // TimeSeries.labels = 1, length-delimited
const KEY_SAMPLES: u8 = 0x12; // TimeSeries.samples = 2, length-delimited
const KEY_NAME: u8 = 0x0a; // Label.name = 1, length-delimited
const KEY_VALUE: u8 = 0x12; // Label.value = 2, length-delimited
const KEY_SAMPLE_VALUE: u8 = 0x09; // Sample.value = 1, 64-bit
const KEY_SAMPLE_TIMESTAMP: u8 = 0x10; // Sample.timestamp = 2, varint

/// The range of the length-delimited value whose length varint starts at `at` in `bytes`;
/// `None` when the varint is broken or the value runs past the end.
pub(crate) fn delimited(bytes: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    // Most lengths (label names and values) fit in the varint's first byte.
    let first = *bytes.get(at)?;
    if first < 0x80 {
        let stop = at + 1 + usize::from(first);
        return (stop <= bytes.len()).then_some(at + 1..stop);
    }
    let mut rest = bytes.get(at..)?;
    let len = prost::encoding::decode_varint(&mut rest).ok()?;
    let start = bytes.len() - rest.len();
    let stop = start.checked_add(usize::try_from(len).ok()?)?;
    (stop <= bytes.len()).then_some(start..stop)
}

fn varint_len(value: u64) -> usize {
    prost::encoding::encoded_len_varint(value)
}

/// A string field as prost writes it: left out when empty (the proto3 default).
fn string_field_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        1 + varint_len(text.len() as u64) + text.len()
    }
}

/// A varint as prost writes it, with the one-byte case (most lengths here) inline.
fn put_varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        prost::encoding::encode_varint(value, out);
    }
}

fn put_string_field(key: u8, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        out.push(key);
        put_varint(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }
}

fn sample_len(value: f64, timestamp: i64) -> usize {
    // Defaults (0) are left out, as prost does.
    (if value != 0.0 { 9 } else { 0 })
        + if timestamp != 0 {
            1 + varint_len(timestamp as u64)
        } else {
            0
        }
}

/// Appends the `TimeSeries.labels` fields of `labels` (in the order given), byte for byte what
/// prost writes for them; [`put_encoded_series`] makes a series of them.
pub fn put_labels<N: AsRef<str>, V: AsRef<str>>(labels: &[(N, V)], out: &mut Vec<u8>) {
    for (name, value) in labels {
        let (name, value) = (name.as_ref(), value.as_ref());
        out.push(KEY_LABELS);
        put_varint(
            (string_field_len(name) + string_field_len(value)) as u64,
            out,
        );
        put_string_field(KEY_NAME, name, out);
        put_string_field(KEY_VALUE, value, out);
    }
}

/// Appends one `WriteRequest.timeseries` field: a series with the encoded labels `labels`
/// ([`put_labels`]) and one sample, byte for byte what prost writes for the same
/// [`TimeSeries`]. Appended to a [`WriteRequest`]'s encoding (or to nothing), it adds that
/// series to the request, so a scrape is encoded without building the series as owned strings,
/// and a series' labels are encoded once for every scrape that has it.
pub fn put_encoded_series(labels: &[u8], value: f64, timestamp: i64, out: &mut Vec<u8>) {
    let sample = sample_len(value, timestamp);
    let series = labels.len() + 1 + varint_len(sample as u64) + sample;
    out.reserve(1 + varint_len(series as u64) + series);
    out.push(KEY_TIMESERIES);
    put_varint(series as u64, out);
    out.extend_from_slice(labels);
    out.push(KEY_SAMPLES);
    put_varint(sample as u64, out);
    if value != 0.0 {
        out.push(KEY_SAMPLE_VALUE);
        out.extend_from_slice(&value.to_le_bytes());
    }
    if timestamp != 0 {
        out.push(KEY_SAMPLE_TIMESTAMP);
        prost::encoding::encode_varint(timestamp as u64, out);
    }
}

/// Appends `series` as one `WriteRequest.timeseries` field (prost's own encoding).
pub fn put_owned_series(series: &TimeSeries, out: &mut Vec<u8>) {
    prost::encoding::message::encode(1, series, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// [`put_labels`] and [`put_encoded_series`] write what prost writes, for defaults (0,
    /// empty strings), negative and large timestamps, NaN and multi-byte lengths.
    #[test]
    fn put_encoded_series_matches_prost() {
        let long = "v".repeat(300);
        type Case<'a> = (Vec<(&'a str, &'a str)>, f64, i64);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![("__name__", "up"), ("job", "a")],
                1.0,
                1_700_000_000_000,
            ),
            (vec![("__name__", "x"), ("empty", "")], 0.0, 0),
            (vec![("", "nameless"), ("l", long.as_str())], f64::NAN, -5),
            (vec![], -0.0, i64::MAX),
            (vec![("__name__", "y")], f64::INFINITY, i64::MIN),
        ];
        let mut ours = Vec::new();
        let mut request = WriteRequest::default();
        for (labels, value, timestamp) in &cases {
            let mut encoded_labels = Vec::new();
            put_labels(labels, &mut encoded_labels);
            put_encoded_series(&encoded_labels, *value, *timestamp, &mut ours);
            request.timeseries.push(TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect(),
                samples: vec![Sample {
                    value: *value,
                    timestamp: *timestamp,
                }],
            });
        }
        assert_eq!(ours, request.encode_to_vec());
        let mut owned = Vec::new();
        for series in &request.timeseries {
            put_owned_series(series, &mut owned);
        }
        assert_eq!(owned, request.encode_to_vec());
    }
}
