//! Tests of the delivery loop with fake senders: retries, `Retry-After`, permanent errors,
//! undecodable records, shutdown in the middle of a retry or a send, when a batch leaves
//! (at once when full, after `linger` when short) and acks with several sends in flight.
//! Tests about waiting run on Tokio's paused clock: time only moves when every task waits, so
//! "sent before the linger ran out" is exact, not a measurement.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vigil_crds::monitored_app::WhenFull;

use super::*;
use crate::buffer::{self, BufferReader, BufferWriter};
use crate::prompb::{Label, Sample, TimeSeries, WriteRequest};
use crate::telemetry;

/// A deadline for waiting, never a speed requirement.
const DEADLINE: Duration = Duration::from_secs(20);

/// A batch of `samples` samples whose first value is `n`, to recognise it at the fake sink.
fn batch(n: u64, samples: usize) -> Batch {
    Batch::Samples(WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "driver_test".into(),
            }],
            samples: (0..samples)
                .map(|i| Sample {
                    value: (n + i as u64) as f64,
                    timestamp: 1_700_000_000_000,
                })
                .collect(),
        }],
    })
}

/// Which batch (by first sample value) this is.
fn batch_number(batch: &Batch) -> u64 {
    match batch {
        Batch::Samples(w) => w.timeseries[0].samples[0].value as u64,
        other => panic!("unexpected batch {other:?}"),
    }
}

fn settings(batch_records: usize) -> DriverSettings {
    DriverSettings {
        batch_records,
        shutdown_grace: Duration::from_millis(200),
        ..DriverSettings::new(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 2.0).unwrap(),
        )
    }
}

/// One call to the fake backend: when, and the batch numbers it carried.
#[derive(Clone)]
struct Call {
    at: Instant,
    batches: Vec<u64>,
}

/// What the fake backend saw.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Backend {
    fn record(&self, batches: &[Batch]) -> usize {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Call {
            at: Instant::now(),
            batches: batches.iter().map(batch_number).collect(),
        });
        calls.len()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.calls().into_iter().map(|c| c.batches).collect()
    }
}

async fn fill(writer: &BufferWriter, numbers: impl IntoIterator<Item = u64>) {
    for n in numbers {
        writer.push(batch(n, 3).encode()).await.unwrap();
    }
}

/// Records left in a buffer directory after the driver stopped (reopens it).
async fn left_in(dir: &std::path::Path, component: &str) -> Vec<u64> {
    let (writer, mut reader) = buffer::open(dir, 1 << 20, WhenFull::Block, component).unwrap();
    drop(writer);
    let mut left = Vec::new();
    while let Ok(Ok(records)) =
        tokio::time::timeout(DEADLINE, reader.next_batch(100, usize::MAX)).await
    {
        left.extend(
            records
                .iter()
                .map(|r| batch_number(&Batch::decode(&r.bytes).unwrap())),
        );
    }
    left
}

/// A flaky backend: retryable failures are retried with the same batches until they succeed;
/// everything is delivered once, in order, acked, and counted as sent and retried.
#[tokio::test]
async fn flaky_backend_gets_everything_in_order() {
    let component = "test_driver_flaky";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [10, 20, 30, 40, 50]).await;
    drop(writer);
    let (_stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();
    let sent_before = telemetry::sent_total(component);

    let seen = backend.clone();
    let stopped = tokio::time::timeout(
        DEADLINE,
        deliver(
            component,
            &mut reader,
            &settings(2),
            &mut shutdown,
            move |batches| {
                let call = seen.record(&batches);
                async move {
                    // Every other call fails.
                    if call % 2 == 1 {
                        Err(SendError::Retryable {
                            reason: "connection refused".into(),
                            retry_after: None,
                        })
                    } else {
                        Ok(())
                    }
                }
            },
        ),
    )
    .await
    .unwrap();

    assert_eq!(stopped, Stopped::Closed);
    assert_eq!(
        backend.batches(),
        vec![
            vec![10, 20],
            vec![10, 20],
            vec![30, 40],
            vec![30, 40],
            vec![50],
            vec![50]
        ]
    );
    assert_eq!(telemetry::sent_total(component), sent_before + 5 * 3);
    drop(reader);
    assert!(
        left_in(dir.path(), component).await.is_empty(),
        "everything was acked"
    );
}

/// A `Retry-After` longer than the backoff is waited out before the retry.
#[tokio::test]
async fn retry_after_is_waited_out() {
    let component = "test_driver_retry_after";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [1]).await;
    drop(writer);
    let (_stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();
    let retry_after = Duration::from_millis(300);

    let seen = backend.clone();
    tokio::time::timeout(
        DEADLINE,
        deliver(
            component,
            &mut reader,
            &settings(10),
            &mut shutdown,
            move |batches| {
                let call = seen.record(&batches);
                async move {
                    if call == 1 {
                        Err(SendError::Retryable {
                            reason: "429 too many requests".into(),
                            retry_after: Some(retry_after),
                        })
                    } else {
                        Ok(())
                    }
                }
            },
        ),
    )
    .await
    .unwrap();

    let calls = backend.calls();
    assert_eq!(calls.len(), 2);
    // Sleeping never ends early, so this lower bound holds on any machine.
    assert!(calls[1].at.duration_since(calls[0].at) >= retry_after);
}

/// A batch the backend refuses for good is dropped (counted as `rejected`) and acked, and the
/// batches behind it are delivered.
#[tokio::test]
async fn permanent_error_drops_batch_and_moves_on() {
    let component = "test_driver_permanent";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [1, 2, 3]).await;
    drop(writer);
    let (_stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();
    let rejected_before = telemetry::dropped_total(component, "rejected");

    let seen = backend.clone();
    let stopped = tokio::time::timeout(
        DEADLINE,
        deliver(
            component,
            &mut reader,
            &settings(1),
            &mut shutdown,
            move |batches| {
                seen.record(&batches);
                let poison = batch_number(&batches[0]) == 2;
                async move {
                    if poison {
                        Err(SendError::Permanent {
                            reason: "400 bad request".into(),
                        })
                    } else {
                        Ok(())
                    }
                }
            },
        ),
    )
    .await
    .unwrap();

    assert_eq!(stopped, Stopped::Closed);
    assert_eq!(backend.batches(), vec![vec![1], vec![2], vec![3]]);
    assert_eq!(
        telemetry::dropped_total(component, "rejected"),
        rejected_before + 3
    );
    drop(reader);
    assert!(left_in(dir.path(), component).await.is_empty());
}

/// A buffer record that is not a batch is dropped as `corrupt_record` and acked; the batches
/// around it are delivered.
#[tokio::test]
async fn undecodable_record_is_dropped() {
    let component = "test_driver_undecodable";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [1]).await;
    writer.push(vec![99, 1, 2, 3]).await.unwrap();
    writer.push(Vec::new()).await.unwrap();
    fill(&writer, [2]).await;
    drop(writer);
    let (_stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();
    let corrupt_before = telemetry::dropped_total(component, "corrupt_record");

    let seen = backend.clone();
    tokio::time::timeout(
        DEADLINE,
        deliver(
            component,
            &mut reader,
            &settings(2),
            &mut shutdown,
            move |batches| {
                seen.record(&batches);
                async { Ok(()) }
            },
        ),
    )
    .await
    .unwrap();

    assert_eq!(backend.batches(), vec![vec![1], vec![2]]);
    assert_eq!(
        telemetry::dropped_total(component, "corrupt_record"),
        corrupt_before + 2
    );
    drop(reader);
    assert!(left_in(dir.path(), component).await.is_empty());
}

/// Shutdown during a long retry wait stops the loop at once; the batch stays in the buffer and
/// is delivered after the next start.
#[tokio::test]
async fn shutdown_mid_retry_keeps_the_batch() {
    let component = "test_driver_shutdown_retry";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [7, 8]).await;
    let (stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();

    let seen = backend.clone();
    let settings = settings(10);
    let driver = deliver(
        component,
        &mut reader,
        &settings,
        &mut shutdown,
        move |batches| {
            seen.record(&batches);
            async {
                Err(SendError::Retryable {
                    reason: "503 service unavailable".into(),
                    retry_after: Some(Duration::from_secs(3600)),
                })
            }
        },
    );
    let stopper = async {
        while backend.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
    };
    let (stopped, ()) = tokio::time::timeout(DEADLINE, async { tokio::join!(driver, stopper) })
        .await
        .expect("shutdown interrupts the hour-long Retry-After");
    assert_eq!(stopped, Stopped::Shutdown);
    assert_eq!(backend.batches(), vec![vec![7, 8]]);
    drop((writer, reader));
    assert_eq!(left_in(dir.path(), component).await, vec![7, 8]);
}

/// A send still in flight at shutdown gets the grace period: one that finishes in time is
/// acked; one that does not is abandoned and its batch kept for the next start.
#[tokio::test]
async fn shutdown_mid_send_finishes_or_abandons_within_grace() {
    for (send_takes, expect_left) in [
        (Duration::from_millis(20), Vec::<u64>::new()),
        (Duration::from_secs(3600), vec![5]),
    ] {
        let component = "test_driver_shutdown_send";
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut reader) =
            buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
        fill(&writer, [5]).await;
        let (stop, mut shutdown) = watch::channel(false);
        let backend = Backend::default();

        let seen = backend.clone();
        let settings = settings(10);
        let driver = deliver(
            component,
            &mut reader,
            &settings,
            &mut shutdown,
            move |batches| {
                seen.record(&batches);
                async move {
                    tokio::time::sleep(send_takes).await;
                    Ok(())
                }
            },
        );
        let stopper = async {
            while backend.calls().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.send(true).unwrap();
        };
        let (stopped, ()) = tokio::time::timeout(DEADLINE, async { tokio::join!(driver, stopper) })
            .await
            .unwrap();
        assert_eq!(stopped, Stopped::Shutdown);
        assert_eq!(backend.batches().len(), 1, "no new batch after shutdown");
        drop((writer, reader));
        assert_eq!(left_in(dir.path(), component).await, expect_left);
    }
}

/// A dropped shutdown sender counts as shutdown, so a driver never outlives its agent.
#[tokio::test]
async fn dropped_shutdown_sender_stops_the_driver() {
    let component = "test_driver_sender_dropped";
    let dir = tempfile::tempdir().unwrap();
    let (_writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    let (stop, mut shutdown) = watch::channel(false);
    drop(stop);
    let stopped = tokio::time::timeout(
        DEADLINE,
        deliver(
            component,
            &mut reader,
            &settings(10),
            &mut shutdown,
            |_batches| async { Ok(()) },
        ),
    )
    .await
    .unwrap();
    assert_eq!(stopped, Stopped::Shutdown);
}

/// A batch short of a full one waits `linger`: records stored meanwhile leave in the same
/// send, and one that would overfill it goes in the next.
#[tokio::test]
async fn short_batch_lingers_for_more_records() {
    let component = "test_driver_linger";
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, [1]).await;
    let (_stop, mut shutdown) = watch::channel(false);
    let backend = Backend::default();
    let settings = DriverSettings {
        // Long enough that the records below are stored while the first one waits.
        linger: Duration::from_secs(2),
        ..settings(3)
    };

    let seen = backend.clone();
    let driver = deliver(
        component,
        &mut reader,
        &settings,
        &mut shutdown,
        move |batches| {
            seen.record(&batches);
            async { Ok(()) }
        },
    );
    // Polled after the driver took record 1 and started waiting.
    let more = async move {
        fill(&writer, [2, 3, 4]).await;
        drop(writer);
    };
    let (stopped, ()) = tokio::time::timeout(DEADLINE, async { tokio::join!(driver, more) })
        .await
        .unwrap();
    assert_eq!(stopped, Stopped::Closed);
    assert_eq!(backend.batches(), vec![vec![1, 2, 3], vec![4]]);
    drop(reader);
    assert!(left_in(dir.path(), component).await.is_empty());
}

/// Bytes of one record made by [`fill`].
fn record_len() -> usize {
    batch(1, 3).encode().len()
}

/// Runs `deliver` over records 1..=`records` with `settings` until `stop_after` sends were made
/// (then shuts down), the writer staying open (nothing is closed, so nothing but the rules
/// under test makes a batch leave). `answer` decides each send's outcome. Returns the calls
/// with the paused clock's time since the start, and the records left in the buffer.
async fn run_paused<A, F>(
    component: &str,
    records: u64,
    settings: DriverSettings,
    stop_after: usize,
    mut answer: A,
) -> (Vec<(Duration, Vec<u64>)>, Vec<u64>)
where
    A: FnMut(&[u64]) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, component).unwrap();
    fill(&writer, 1..=records).await;
    let (stop, mut shutdown) = watch::channel(false);
    let start = tokio::time::Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let stopped = deliver(
        component,
        &mut reader,
        &settings,
        &mut shutdown,
        move |batches| {
            let numbers: Vec<u64> = batches.iter().map(batch_number).collect();
            let answered = answer(&numbers);
            let mut calls = seen.lock().unwrap();
            calls.push((start.elapsed(), numbers));
            if calls.len() == stop_after {
                // Seen by the driver once this send is answered or the loop next waits.
                stop.send(true).unwrap();
            }
            answered
        },
    )
    .await;
    assert_eq!(stopped, Stopped::Shutdown);
    drop((writer, reader));
    let calls = calls.lock().unwrap().clone();
    (calls, left_in(dir.path(), component).await)
}

/// With a backlog, full batches leave one after another without waiting for `linger`: full by
/// count, and full by bytes when the next record does not fit (the case that used to wait).
#[tokio::test(start_paused = true)]
async fn backlog_leaves_in_full_batches_without_lingering() {
    let linger = Duration::from_secs(3600);
    let by_count = DriverSettings {
        linger,
        max_in_flight: 1,
        ..settings(3)
    };
    let by_bytes = DriverSettings {
        linger,
        max_in_flight: 1,
        // Three records fit, a fourth does not.
        batch_bytes: record_len() * 7 / 2,
        ..settings(64)
    };
    for settings in [by_count, by_bytes] {
        // Record 10 makes the third batch full; it is itself a short batch, still lingering
        // when the driver stops.
        let (calls, left) =
            run_paused("test_driver_backlog", 10, settings, 3, |_| async { Ok(()) }).await;
        let batches: Vec<_> = calls.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(batches, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        for (at, batch) in &calls {
            assert!(*at < linger, "batch {batch:?} waited {at:?}");
        }
        assert_eq!(left, vec![10], "the sent batches were acked");
    }
}

/// A batch short of full waits `linger` when the buffer has nothing more: it leaves no
/// earlier, so that a trickle of records goes out as few requests.
#[tokio::test(start_paused = true)]
async fn short_batch_with_nothing_waiting_leaves_after_linger() {
    let linger = Duration::from_secs(3600);
    let settings = DriverSettings {
        linger,
        ..settings(3)
    };
    let (calls, left) = run_paused("test_driver_short", 2, settings, 1, |_| async { Ok(()) }).await;
    assert_eq!(calls.len(), 1);
    let (at, batch) = &calls[0];
    assert_eq!(batch, &vec![1, 2]);
    assert!(
        *at >= linger,
        "left after {at:?}, before the linger ran out"
    );
    assert!(left.is_empty());
}

/// Several sends in flight whose answers come back out of order: the buffer is acked only up
/// to the oldest batch still unanswered, so after a restart nothing unanswered is missing; what
/// was answered after it is at most sent again. No more than `max_in_flight` batches are
/// between the ack position and the newest send.
#[tokio::test(start_paused = true)]
async fn out_of_order_answers_never_ack_past_an_unanswered_batch() {
    let settings = DriverSettings {
        max_in_flight: 3,
        linger: Duration::ZERO,
        ..settings(1)
    };
    // Batch 2 is never answered; the others at once. 1 is acked; 3 and 4 are answered but
    // behind 2; 5 is not sent, the window (2, 3, 4) being full.
    let (calls, left) = run_paused("test_driver_out_of_order", 6, settings.clone(), 4, |b| {
        let hold = b == [2];
        async move {
            if hold {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    })
    .await;
    let batches: Vec<_> = calls.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(batches, vec![vec![1], vec![2], vec![3], vec![4]]);
    assert_eq!(left, vec![2, 3, 4, 5, 6], "acked through 1 only");

    // Answers in reverse order of sending: everything is acked once all are answered.
    let settings = DriverSettings {
        shutdown_grace: Duration::from_secs(10),
        ..settings
    };
    let (calls, left) = run_paused("test_driver_reverse", 3, settings, 3, |b| {
        let wait = Duration::from_millis(100 * (4 - b[0]));
        async move {
            tokio::time::sleep(wait).await;
            Ok(())
        }
    })
    .await;
    let batches: Vec<_> = calls.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(batches, vec![vec![1], vec![2], vec![3]]);
    assert!(
        left.is_empty(),
        "all answered within the grace, left {left:?}"
    );
}

/// While a batch is being retried, no new batch is started: a failing backend is not sent
/// more.
#[tokio::test(start_paused = true)]
async fn no_new_batch_while_one_is_retried() {
    let settings = DriverSettings {
        max_in_flight: 4,
        linger: Duration::ZERO,
        ..settings(1)
    };
    let mut failed = false;
    let (calls, left) = run_paused("test_driver_retry_window", 6, settings, 5, move |b| {
        // The first send of batch 1 fails; everything else succeeds.
        let fail = b == [1] && !std::mem::replace(&mut failed, true);
        async move {
            if fail {
                Err(SendError::Retryable {
                    reason: "503".into(),
                    retry_after: None,
                })
            } else {
                Ok(())
            }
        }
    })
    .await;
    let batches: Vec<_> = calls.iter().map(|(_, b)| b.clone()).collect();
    // Batch 1 fails at once: it is retried before batch 2 starts, although the window has room.
    assert_eq!(batches, vec![vec![1], vec![1], vec![2], vec![3], vec![4]]);
    assert_eq!(left, vec![5, 6], "acked through the last answered batch");
}

/// The OTLP sink gets its records undecoded: good records of a signal reach the collector as
/// one export request carrying all of them, and a record that does not frame is dropped as
/// `corrupt_record` without holding the others back.
#[tokio::test]
async fn otlp_sink_gets_records_as_they_are() {
    use crate::sinks::test_support::{log_record, logs_batch, traces_batch, GrpcCollector};
    use vigil_crds::agent_config::{ExportersConfig, OtlpSink};
    use vigil_crds::monitored_app::OtlpProtocol;

    let collector = GrpcCollector::start(None).await;
    let sink = Sink::from_config(&ExportersConfig {
        otlp: Some(OtlpSink {
            endpoint: format!("http://{}", collector.addr),
            protocol: OtlpProtocol::Grpc,
            tenant: None,
            bearer_token_file: None,
            ca_file: None,
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
    .remove(0);
    assert!(sink.sends_encoded());
    let dir = tempfile::tempdir().unwrap();
    let (writer, reader) =
        buffer::open(dir.path(), 1 << 20, WhenFull::Block, "test_driver_encoded").unwrap();
    let logs = logs_batch(
        &[("service.name", "api")],
        vec![log_record(1, "hi", "", &[])],
    );
    for record in [
        traces_batch("GET /a").encode(),
        vec![1, 0x0a, 0x7f, 0, 0],
        logs.encode(),
        traces_batch("GET /b").encode(),
    ] {
        writer.push(record).await.unwrap();
    }
    drop(writer);
    let corrupt_before = telemetry::dropped_total("sink_otlp", "corrupt_record");
    let sent_before = telemetry::sent_total("sink_otlp");
    let (_stop, shutdown) = watch::channel(false);

    let stopped = tokio::time::timeout(DEADLINE, run_with(sink, reader, settings(10), shutdown))
        .await
        .unwrap();

    assert_eq!(stopped, Stopped::Closed);
    let traces = collector.recorder.traces.lock().unwrap().clone();
    assert_eq!(traces.len(), 1, "one traces request");
    let names: Vec<_> = traces[0]
        .1
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["GET /a", "GET /b"]);
    let received_logs = collector.recorder.logs.lock().unwrap().clone();
    assert_eq!(
        received_logs
            .into_iter()
            .map(Batch::Logs)
            .collect::<Vec<_>>(),
        [logs]
    );
    assert_eq!(
        telemetry::dropped_total("sink_otlp", "corrupt_record"),
        corrupt_before + 1
    );
    assert_eq!(telemetry::sent_total("sink_otlp"), sent_before + 3);
}

/// The driver can run on Tokio's multi-threaded runtime: its future is `Send`.
#[test]
fn run_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let _type_check_only = |sink: Sink, reader: BufferReader, shutdown: watch::Receiver<bool>| {
        let future = run(sink, reader, Backoff::default(), shutdown);
        assert_send(&future);
    };
}
