//! The OTLP decoders under fuzzing (see [`crate::fuzzing`]): a body as the HTTP or gRPC handler
//! receives it is decoded, and what ingest would store for it must decode to exactly what was
//! received, enriched with the pod identity.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz properties and their tests: a failed property must panic, with its message"
)]

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::http::{decode_json_batch, gunzip, Encoding};
use super::ingest::spliced_record;
use crate::batch::{Batch, Signal};
use crate::identity::Identity;
use crate::processors::enrich::enrich_batch;

const SIGNALS: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

fn identity() -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f".into(),
        pod_uid: "0b7e-uid".into(),
        node: "node-1".into(),
        version: "17.2".into(),
        cluster: "eu-prod-1".into(),
    }
}

/// OTLP/HTTP: the first byte picks the signal, the encoding (protobuf or JSON) and whether the
/// body is gzipped; the rest is the body.
pub(crate) fn http(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signal = SIGNALS[usize::from(selector % 3)];
    let encoding = if selector & 0x80 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let gunzipped;
    let body = if selector & 0x40 == 0 {
        body
    } else {
        // The handler's own decompression, with a budget of the largest request.
        let budget = crate::http_server::RequestBudget::new(2 * super::MAX_REQUEST_BYTES);
        match gunzip(body, &budget, None) {
            Ok((bytes, _permit)) => {
                gunzipped = bytes;
                &gunzipped[..]
            }
            Err(_) => return,
        }
    };
    let decoded = match encoding {
        Encoding::Protobuf => decode_protobuf(signal, body),
        Encoding::Json => decode_json_batch(signal, body).ok(),
    };
    if let Some(batch) = decoded {
        let encoded = (encoding == Encoding::Protobuf).then_some(body);
        check_stored(batch, encoded);
    }
}

/// A protobuf body as one batch of `signal` (the handler decodes large ones in parts; each part
/// is stored the same way).
fn decode_protobuf(signal: Signal, body: &[u8]) -> Option<Batch> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .map(Batch::Traces)
            .ok(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .map(Batch::Metrics)
            .ok(),
        _ => ExportLogsServiceRequest::decode(body).map(Batch::Logs).ok(),
    }
}

/// OTLP/gRPC: the first byte picks the service, the rest is the message as the codec hands it
/// over (the gRPC framing is tonic's).
pub(crate) fn grpc(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let batch = match selector % 3 {
        0 => ExportTraceServiceRequest::decode(body).map(Batch::Traces),
        1 => ExportMetricsServiceRequest::decode(body).map(Batch::Metrics),
        _ => ExportLogsServiceRequest::decode(body).map(Batch::Logs),
    };
    if let Ok(batch) = batch {
        check_stored(batch, Some(body));
    }
}

/// What ingest stores for an unchanged `batch` (the request as received with the identity
/// spliced in when it can be, else the enriched batch encoded) decodes to the enriched batch.
/// Compared in encoded form, so that a NaN equals itself.
fn check_stored(batch: Batch, encoded: Option<&[u8]>) {
    let identity = identity();
    let mut enriched = batch.clone();
    enrich_batch(&identity, &mut enriched);
    let expected = enriched.encode();
    let spliced = encoded.and_then(|encoded| spliced_record(&identity, &batch, encoded));
    let stored = spliced.clone().unwrap_or_else(|| expected.clone());
    let decoded = match Batch::decode(&stored) {
        Ok(decoded) => decoded,
        Err(e) => panic!(
            "the stored record does not decode: {e}; spliced: {}",
            spliced.is_some()
        ),
    };
    assert!(
        decoded.encode() == expected,
        "the stored record (spliced: {}) decodes to something else than the enriched request",
        spliced.is_some()
    );
}
