//! Trace sampling by trace id, and the rejection of spans with invalid ids.

use super::super::keeps_trace;
use super::*;

/// The sampling threshold compares the low 8 bytes of the trace id with `ratio × 2^64`; the
/// high bytes play no part, and ratios 0 and 1 drop and keep everything.
#[test]
fn keeps_trace_by_low_eight_bytes() {
    let id = |high: u8, low: u64| {
        let mut id = [high; 16];
        id[8..].copy_from_slice(&low.to_be_bytes());
        id
    };
    assert!(keeps_trace(&id(0xff, 0x7fff_ffff_ffff_ffff), 0.5));
    assert!(!keeps_trace(&id(0x00, 0x8000_0000_0000_0000), 0.5));
    assert!(keeps_trace(&id(0x00, u64::MAX), 1.0));
    assert!(!keeps_trace(&id(0x00, 0), 0.0));
    assert!(keeps_trace(&id(0x00, 0), 0.000_001));
    assert!(!keeps_trace(&id(0x00, 1 << 60), 0.01));
    assert!(!keeps_trace(&id(0x00, 0), f64::NAN));
}

/// With ratio 0.5 a trace whose id falls below the threshold is stored with all its spans and
/// the other trace with none; a span with a malformed trace id is rejected and reported
/// through `partial_success`.
#[tokio::test]
async fn sampling_keeps_or_drops_whole_traces() {
    let mut setup = Setup::new("sink_sampling");
    setup.sampling_ratio = 0.5;
    let mut agent = TestAgent::start(setup).await;
    let kept = [0x11; 16];
    let mut dropped = [0x11; 16];
    dropped[8] = 0xf0;
    let mut malformed = span(kept, 9, "malformed");
    malformed.trace_id.truncate(15);
    let request = traces_request(vec![
        span(kept, 1, "kept-root"),
        span(dropped, 2, "dropped-root"),
        span(kept, 3, "kept-child"),
        malformed,
        span(dropped, 4, "dropped-child"),
    ]);
    let response = grpc_client(&agent)
        .await
        .export(request)
        .await
        .unwrap()
        .into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace id"),
        "{}",
        partial.error_message
    );

    let batches = agent.stored_until(|b| !b.is_empty()).await;
    let mut names: Vec<&str> = spans(&batches)
        .iter()
        .map(|(_, s)| s.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["kept-child", "kept-root"]);
    agent.stop().await;
}
