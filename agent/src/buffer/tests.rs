//! Tests of the disk buffer: ordering, acks across restarts, recovery from torn and damaged
//! files, the byte bound under both overflow policies, segment lifecycle and concurrency.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_crds::monitored_app::WhenFull;

use super::format::{self, encode_segment_header, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::*;
use crate::telemetry;

/// A deadline for waiting, never a speed requirement.
const DEADLINE: Duration = Duration::from_secs(20);

fn options(max_bytes: u64, when_full: WhenFull) -> BufferOptions {
    BufferOptions {
        segment_bytes: 4096,
        memory_bytes: 1024,
        ..BufferOptions::new(max_bytes, when_full)
    }
}

/// A recognisable payload of `len` bytes (at least 9) for record number `i`.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut bytes = format!("r{i:08}").into_bytes();
    bytes.resize(len.max(9), (i % 251) as u8);
    bytes
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Offset of record `index` in a segment of equal-sized records.
fn frame_offset(index: u64, payload_len: usize) -> u64 {
    SEGMENT_HEADER_LEN + index * frame_len(payload_len)
}

/// Reads exactly `n` records, waiting for them at most [`DEADLINE`].
async fn take(reader: &mut BufferReader, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(DEADLINE, reader.next_batch(n - out.len(), usize::MAX))
            .await
            .expect("records arrive before the deadline")
            .unwrap();
        assert!(!batch.is_empty());
        out.extend(batch);
    }
    assert_eq!(out.len(), n, "next_batch returned more than asked for");
    out
}

/// Whether the reader has nothing to hand out right now.
async fn is_drained(reader: &mut BufferReader) -> bool {
    tokio::time::timeout(Duration::from_millis(50), reader.next_batch(1, usize::MAX))
        .await
        .is_err()
}

fn payloads(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.bytes.clone()).collect()
}

/// Forgets a buffer without closing anything, as a SIGKILL would: no destructor runs, no
/// fsync, files stay as they are.
fn kill(writer: BufferWriter, reader: BufferReader) {
    std::mem::forget(writer);
    std::mem::forget(reader);
}

/// Records come out in push order with consecutive ids, batches respect both limits, and
/// acking everything brings the level back to zero.
#[tokio::test]
async fn push_read_ack_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) = open_with(
        dir.path(),
        options(1 << 20, WhenFull::Block),
        "test_buffer_order",
    )
    .unwrap();
    for i in 0..100 {
        assert_eq!(writer.push(payload(i, 50)).await.unwrap(), Pushed::Stored);
    }
    assert_eq!(writer.buffered_bytes(), 100 * frame_len(50));

    let first = reader.next_batch(7, usize::MAX).await.unwrap();
    assert_eq!(first.len(), 7);
    let by_bytes = reader.next_batch(100, 120).await.unwrap();
    assert_eq!(
        by_bytes.len(),
        2,
        "two 50-byte records fit in 120 bytes, three do not"
    );
    let tiny = reader.next_batch(100, 1).await.unwrap();
    assert_eq!(tiny.len(), 1, "a batch always holds at least one record");
    let rest = take(&mut reader, 90).await;

    let all: Vec<Record> = first
        .into_iter()
        .chain(by_bytes)
        .chain(tiny)
        .chain(rest)
        .collect();
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record.id, RecordId(i as u64));
        assert_eq!(record.bytes, payload(i as u64, 50));
    }
    assert!(is_drained(&mut reader).await);
    reader.ack(RecordId(99)).unwrap();
    assert_eq!(writer.buffered_bytes(), 0);
}

/// After acking part of what was read and restarting, delivery resumes right after the acked
/// record, with the same ids.
#[tokio::test]
async fn reopen_after_ack_resumes_after_acked_point() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_resume";
    {
        let (writer, mut reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..10 {
            writer.push(payload(i, 40)).await.unwrap();
        }
        let read = take(&mut reader, 10).await;
        reader.ack(read[4].id).unwrap();
    }
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert_eq!(writer.buffered_bytes(), 5 * frame_len(40));
    let again = take(&mut reader, 5).await;
    assert_eq!(again[0].id, RecordId(5));
    assert_eq!(
        payloads(&again),
        (5..10).map(|i| payload(i, 40)).collect::<Vec<_>>()
    );
    assert!(is_drained(&mut reader).await);
    // New records continue the id sequence.
    writer.push(payload(10, 40)).await.unwrap();
    assert_eq!(take(&mut reader, 1).await[0].id, RecordId(10));
}

/// At-least-once: records read but never acked are delivered again after a restart.
#[tokio::test]
async fn reopen_without_ack_redelivers() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_redeliver";
    let first = {
        let (writer, mut reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..5 {
            writer.push(payload(i, 30)).await.unwrap();
        }
        take(&mut reader, 5).await
    };
    let (_writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let second = take(&mut reader, 5).await;
    assert_eq!(payloads(&first), payloads(&second));
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        second.iter().map(|r| r.id).collect::<Vec<_>>()
    );
}

/// A record cut short by a kill mid-write is truncated away on open, without being counted
/// as corrupt, and new records are appended after the intact ones.
#[tokio::test]
async fn torn_tail_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_torn";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..3 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let cut = frame_offset(2, 100) + FRAME_HEADER_LEN as u64 + 37;
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let corrupt_before = telemetry::dropped_total(component, "corrupt_record");
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), frame_offset(2, 100));
    assert_eq!(writer.buffered_bytes(), 2 * frame_len(100));
    writer.push(payload(7, 100)).await.unwrap();
    let read = take(&mut reader, 3).await;
    assert_eq!(
        payloads(&read),
        vec![payload(0, 100), payload(1, 100), payload(7, 100)]
    );
    assert_eq!(read[2].id, RecordId(2));
    assert_eq!(
        telemetry::dropped_total(component, "corrupt_record"),
        corrupt_before
    );

    // A torn frame header (fewer than 12 bytes) is handled the same way.
    drop((writer, reader));
    let len = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[1, 2, 3, 4, 5]).unwrap();
    drop(file);
    let (_writer, _reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), len);
}

/// A record whose payload checksum fails is skipped and counted; the records around it are
/// delivered.
#[tokio::test]
async fn corrupted_checksum_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_bad_checksum";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..5 {
            writer.push(payload(i, 64)).await.unwrap();
        }
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    bytes[(frame_offset(2, 64) + FRAME_HEADER_LEN as u64 + 20) as usize] ^= 0x40;
    fs::write(&segment, bytes).unwrap();

    let before = telemetry::dropped_total(component, "corrupt_record");
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let read = take(&mut reader, 4).await;
    assert_eq!(
        read.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        vec![0, 1, 3, 4]
    );
    assert_eq!(read[2].bytes, payload(3, 64));
    assert_eq!(
        telemetry::dropped_total(component, "corrupt_record"),
        before + 1
    );
    reader.ack(RecordId(4)).unwrap();
    assert_eq!(
        writer.buffered_bytes(),
        0,
        "the skipped record no longer counts"
    );
}

/// Issue 14, item 9: one flipped frame-header byte used to lose the rest of its segment (every
/// record after it). Now the reader resynchronises at the next intact frame: only the damaged
/// record is lost (counted as dropped), the skipped bytes are counted in
/// `vigil_agent_buffer_skipped_bytes_total`, and ids stay exact in a sealed segment and in the
/// newest one (which recovery no longer cuts off at the damage).
#[tokio::test]
async fn damaged_frame_header_resynchronises_at_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_bad_frame";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..60 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2, "4 KiB segments roll: {files:?}");
    let per_segment = (4096 - SEGMENT_HEADER_LEN) / frame_len(100);
    // The length field of record 10 (sealed segment) and of the newest segment's third record.
    for (file, index) in [(&files[0], 10), (&files[1], 2)] {
        let mut bytes = fs::read(file).unwrap();
        bytes[frame_offset(index, 100) as usize] ^= 0xff;
        fs::write(file, bytes).unwrap();
    }

    let dropped = telemetry::dropped_total(component, "corrupt_record");
    let skipped = telemetry::buffer_skipped_bytes_total(component);
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let read = take(&mut reader, 58).await;
    let damaged = [10, per_segment + 2];
    let expected: Vec<u64> = (0..60).filter(|i| !damaged.contains(i)).collect();
    assert_eq!(read.iter().map(|r| r.id.0).collect::<Vec<_>>(), expected);
    assert!(read.iter().all(|r| r.bytes == payload(r.id.0, 100)));
    assert_eq!(
        telemetry::dropped_total(component, "corrupt_record"),
        dropped + 2
    );
    assert_eq!(
        telemetry::buffer_skipped_bytes_total(component),
        skipped + 2 * frame_len(100)
    );
    // New records continue after the last stored id.
    writer.push(payload(60, 100)).await.unwrap();
    assert_eq!(take(&mut reader, 1).await[0].id, RecordId(60));
    reader.ack(RecordId(60)).unwrap();
    assert_eq!(writer.buffered_bytes(), 0);
}

/// A segment whose header is damaged is removed and its records counted as dropped.
#[tokio::test]
async fn damaged_segment_header_is_removed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_bad_header";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..60 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    let files = segment_files(dir.path());
    let per_segment = (4096 - SEGMENT_HEADER_LEN) / frame_len(100);
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[3] ^= 1;
    fs::write(&files[0], bytes).unwrap();

    let before = telemetry::dropped_total(component, "corrupt_record");
    let (_writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert!(!files[0].exists());
    assert_eq!(
        telemetry::dropped_total(component, "corrupt_record"),
        before + per_segment
    );
    let read = take(&mut reader, (60 - per_segment) as usize).await;
    assert_eq!(read[0].id, RecordId(per_segment));
}

/// Files of another on-disk format version are refused with an error naming the version,
/// never rewritten.
#[tokio::test]
async fn unknown_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = encode_segment_header(0);
    header[8] = 9;
    let path = dir.path().join(format::segment_file_name(0));
    fs::write(&path, header).unwrap();
    let err = open(dir.path(), 1 << 20, WhenFull::Block, "test_buffer_version").unwrap_err();
    assert!(
        matches!(err, BufferError::UnsupportedFormat { version: 9, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("format version 9"), "{message}");
    assert!(message.contains("reads version 1"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), header);
}

/// Under `block`, a push into a full buffer waits, and proceeds once an ack frees room;
/// `try_push` refuses at once with `Full`.
#[tokio::test]
async fn block_waits_for_room_then_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    let max = 3 * frame_len(100);
    let (writer, mut reader) = open_with(
        dir.path(),
        options(max, WhenFull::Block),
        "test_buffer_block",
    )
    .unwrap();
    for i in 0..3 {
        writer.push(payload(i, 100)).await.unwrap();
    }
    assert!(!writer.has_room(100));
    assert!(matches!(
        writer.try_push(payload(9, 100)),
        Err(BufferError::Full { .. })
    ));

    let blocked = tokio::spawn({
        let writer = writer.clone();
        async move { writer.push(payload(3, 100)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "push must wait while the buffer is full"
    );

    let read = take(&mut reader, 3).await;
    assert!(
        !blocked.is_finished(),
        "reading alone frees nothing; acking does"
    );
    reader.ack(read[0].id).unwrap();
    let pushed = tokio::time::timeout(DEADLINE, blocked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.unwrap(), Pushed::Stored);
    assert_eq!(take(&mut reader, 1).await[0].bytes, payload(3, 100));
    assert_eq!(writer.buffered_bytes(), max);
}

/// Under `dropNewest`, a push into a full buffer returns `Dropped` at once and is counted;
/// after an ack, pushes are stored again, and the dropped record is never delivered.
#[tokio::test]
async fn drop_newest_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let max = 2 * frame_len(100);
    let (writer, mut reader) = open_with(
        dir.path(),
        options(max, WhenFull::DropNewest),
        "test_buffer_drop",
    )
    .unwrap();
    assert_eq!(writer.when_full(), WhenFull::DropNewest);
    assert_eq!(writer.push(payload(0, 100)).await.unwrap(), Pushed::Stored);
    assert_eq!(writer.push(payload(1, 100)).await.unwrap(), Pushed::Stored);
    assert_eq!(writer.push(payload(2, 100)).await.unwrap(), Pushed::Dropped);
    assert_eq!(writer.try_push(payload(3, 100)).unwrap(), Pushed::Dropped);
    assert_eq!(writer.dropped_records(), 2);

    let read = take(&mut reader, 2).await;
    reader.ack(read[1].id).unwrap();
    assert_eq!(writer.push(payload(4, 100)).await.unwrap(), Pushed::Stored);
    let next = take(&mut reader, 1).await;
    assert_eq!(next[0].bytes, payload(4, 100));
    assert_eq!(next[0].id, RecordId(2), "dropped records take no id");
}

/// A record that could never fit is an error under both policies, immediately, not a
/// deadlock.
#[tokio::test]
async fn oversize_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _reader) = open_with(
        dir.path(),
        options(1000, WhenFull::Block),
        "test_buffer_oversize",
    )
    .unwrap();
    let err = tokio::time::timeout(DEADLINE, writer.push(vec![0; 1000]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BufferError::TooLarge {
                bytes: 1012,
                max_bytes: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("can never fit"), "{err}");
    assert!(matches!(
        writer.try_push(vec![0; 5000]),
        Err(BufferError::TooLarge { .. })
    ));
    // The largest record that fits is fine.
    assert_eq!(writer.max_record_len(), 988);
    assert_eq!(writer.push(vec![0; 988]).await.unwrap(), Pushed::Stored);

    let dir = tempfile::tempdir().unwrap();
    let (writer, _reader) = open_with(
        dir.path(),
        options(1000, WhenFull::DropNewest),
        "test_buffer_oversize_drop",
    )
    .unwrap();
    assert!(matches!(
        writer.push(vec![0; 2000]).await,
        Err(BufferError::TooLarge { .. })
    ));
}

/// Segments roll at `segment_bytes`, and a segment is deleted as soon as all of it is acked;
/// the active one stays.
#[tokio::test]
async fn segments_roll_and_acked_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_segments";
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    for i in 0..100 {
        writer.push(payload(i, 200)).await.unwrap();
    }
    let files = segment_files(dir.path());
    let per_segment = (4096 - SEGMENT_HEADER_LEN) / frame_len(200);
    assert_eq!(files.len() as u64, 100u64.div_ceil(per_segment));
    for file in &files {
        assert!(fs::metadata(file).unwrap().len() <= 4096);
    }

    let read = take(&mut reader, 100).await;
    // Acking into the third segment removes the first two.
    reader.ack(read[(2 * per_segment + 1) as usize].id).unwrap();
    assert_eq!(segment_files(dir.path()), files[2..].to_vec());
    // Acking the last record of a segment removes that segment too.
    reader.ack(read[(3 * per_segment - 1) as usize].id).unwrap();
    assert_eq!(segment_files(dir.path()), files[3..].to_vec());
    reader.ack(read[99].id).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        vec![files[files.len() - 1].clone()]
    );
    assert_eq!(writer.buffered_bytes(), 0);

    // After a restart nothing is redelivered and the ids go on.
    drop((writer, reader));
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert_eq!(writer.buffered_bytes(), 0);
    assert!(is_drained(&mut reader).await);
    writer.push(payload(100, 200)).await.unwrap();
    assert_eq!(take(&mut reader, 1).await[0].id, RecordId(100));
}

/// A reader far behind the writers (a sink outage) gets the records that left the memory
/// front back from disk, in order, then switches to memory.
#[tokio::test]
async fn reader_behind_reads_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) = open_with(
        dir.path(),
        options(1 << 20, WhenFull::Block),
        "test_buffer_behind",
    )
    .unwrap();
    for i in 0..300 {
        writer.push(payload(i, 150)).await.unwrap();
    }
    let first = take(&mut reader, 150).await;
    for i in 300..400 {
        writer.push(payload(i, 150)).await.unwrap();
    }
    let rest = take(&mut reader, 250).await;
    for (i, record) in first.iter().chain(&rest).enumerate() {
        assert_eq!(record.id, RecordId(i as u64));
        assert_eq!(record.bytes, payload(i as u64, 150));
    }
    reader.ack(RecordId(399)).unwrap();
    assert_eq!(writer.buffered_bytes(), 0);
}

/// Writers on several tasks and threads, racing with a reader that acks (so writers also
/// block): every record arrives exactly once and each writer's records stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_every_record_once_in_order() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) = open_with(
        dir.path(),
        options(40 * frame_len(64), WhenFull::Block),
        "test_buffer_concurrent",
    )
    .unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for seq in 0..PER_WRITER {
                    let mut record = format!("{w}:{seq:06}:").into_bytes();
                    record.resize(64, b'.');
                    assert_eq!(writer.push(record).await.unwrap(), Pushed::Stored);
                }
            })
        })
        .collect();
    drop(writer);

    let mut next_seq = vec![0u64; WRITERS as usize];
    let mut total = 0;
    loop {
        let batch = match tokio::time::timeout(DEADLINE, reader.next_batch(13, usize::MAX))
            .await
            .expect("records arrive before the deadline")
        {
            Ok(batch) => batch,
            Err(BufferError::Closed { .. }) => break,
            Err(e) => panic!("{e}"),
        };
        for record in &batch {
            let text = String::from_utf8(record.bytes.clone()).unwrap();
            let mut parts = text.split(':');
            let w: usize = parts.next().unwrap().parse().unwrap();
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            assert_eq!(seq, next_seq[w], "writer {w} out of order or duplicated");
            next_seq[w] += 1;
            assert_eq!(record.id, RecordId(total));
            total += 1;
        }
        reader.ack(batch[batch.len() - 1].id).unwrap();
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(total, WRITERS * PER_WRITER);
    assert!(next_seq.iter().all(|&n| n == PER_WRITER));
}

/// A kill (no destructor, no fsync, no close) loses no record that `push` reported as
/// stored: after reopening, everything not acked is delivered, in order, across segments.
#[tokio::test]
async fn kill_loses_no_stored_record() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_kill";
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let mut stored = Vec::new();
    for i in 0..200 {
        if writer.push(payload(i, 120)).await.unwrap() == Pushed::Stored {
            stored.push(i);
        }
    }
    let read = take(&mut reader, 120).await;
    reader.ack(read[79].id).unwrap();
    kill(writer, reader);

    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let redelivered = take(&mut reader, 120).await;
    assert_eq!(
        redelivered.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        stored[80..].to_vec()
    );
    assert!(redelivered.iter().all(|r| r.bytes == payload(r.id.0, 120)));
    assert!(is_drained(&mut reader).await);
    assert_eq!(writer.buffered_bytes(), 120 * frame_len(120));
}

/// When every writer is gone, the reader drains what is left and then reports `Closed`.
#[tokio::test]
async fn reader_reports_closed_after_writers_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) = open_with(
        dir.path(),
        options(1 << 20, WhenFull::Block),
        "test_buffer_closed",
    )
    .unwrap();
    let second = writer.clone();
    writer.push(payload(0, 10)).await.unwrap();
    drop(writer);
    second.push(payload(1, 10)).await.unwrap();
    drop(second);
    assert_eq!(take(&mut reader, 2).await.len(), 2);
    let end = tokio::time::timeout(DEADLINE, reader.next_batch(1, usize::MAX))
        .await
        .unwrap();
    assert!(matches!(end, Err(BufferError::Closed { .. })), "{end:?}");
}

/// Opening a directory that is still open in this process (a reload while old handles
/// linger) hands it over: the old handles get `Closed` and cannot touch the files, and what
/// the old reader had not acked is delivered by the new one.
#[tokio::test]
async fn reopening_a_directory_hands_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_handover";
    let (old_writer, mut old_reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    for i in 0..4 {
        old_writer.push(payload(i, 10)).await.unwrap();
    }
    let read = take(&mut old_reader, 2).await;
    old_reader.ack(read[0].id).unwrap();

    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert!(matches!(
        old_writer.push(payload(99, 10)).await,
        Err(BufferError::Closed { .. })
    ));
    assert!(matches!(
        old_reader.ack(read[1].id),
        Err(BufferError::Closed { .. })
    ));
    assert!(matches!(
        old_reader.next_batch(10, usize::MAX).await,
        Err(BufferError::Closed { .. })
    ));

    writer.push(payload(4, 10)).await.unwrap();
    let delivered = take(&mut reader, 4).await;
    assert_eq!(
        delivered.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(delivered.iter().all(|r| r.bytes == payload(r.id.0, 10)));
    assert!(is_drained(&mut reader).await);
}

/// Data written and synced survives; `sync` reports success on a healthy directory and the
/// ack file is replaced atomically (no temporary file is left behind).
#[tokio::test]
async fn sync_and_ack_file_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) = open_with(
        dir.path(),
        options(1 << 20, WhenFull::Block),
        "test_buffer_sync",
    )
    .unwrap();
    writer.push(payload(0, 10)).await.unwrap();
    writer.sync().unwrap();
    let read = take(&mut reader, 1).await;
    reader.ack(read[0].id).unwrap();
    assert!(dir.path().join(format::ACK_FILE).exists());
    assert!(!dir.path().join(format::ACK_TMP_FILE).exists());
}

/// Writers can be cloned and shared between tasks on any thread; the reader can move to its
/// sink's task.
#[test]
fn handles_can_cross_threads() {
    fn shared_between_tasks<T: Clone + Send + Sync>() {}
    fn moved_to_a_task<T: Send>() {}
    shared_between_tasks::<BufferWriter>();
    moved_to_a_task::<BufferReader>();
}

/// Whether a push failed because the disk is full (`ENOSPC`).
fn is_no_space(result: &Result<Pushed, BufferError>) -> bool {
    matches!(result, Err(BufferError::Io { source, .. }) if source.raw_os_error() == Some(28))
}

/// Pushes 1000-byte records until the disk is full; returns how many were stored.
async fn fill_disk(writer: &BufferWriter) -> u64 {
    let mut stored = 0;
    loop {
        let result = writer.push(payload(stored, 1000)).await;
        if is_no_space(&result) {
            return stored;
        }
        assert_eq!(result.unwrap(), Pushed::Stored);
        stored += 1;
        assert!(stored < 10_000, "the quota never filled up");
    }
}

/// Issue 14, item 3: on a full disk (every record in the active segment, as with the default
/// segment size) the buffer used to stay wedged after delivering everything: the delivered
/// active segment was never removed and the ack file could not be written (a 0-byte `ack.tmp`
/// was left), so every later push failed and every restart sent the whole segment again. Now
/// new data is refused while the disk is full, and once the backlog is delivered the next push
/// removes the delivered segment, the ack file is written and nothing is redelivered, after
/// space frees or after a restart.
#[tokio::test]
async fn full_disk_heals_after_delivery_without_resending() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_full_disk";
    let opts = || BufferOptions {
        segment_bytes: 1 << 20,
        ..options(4 << 20, WhenFull::Block)
    };
    space::quota::set(dir.path(), Some(64 << 10));
    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    let stored = fill_disk(&writer).await;
    assert!(stored > 10, "{stored} records fit in 64 KiB");
    // Still full: refused again (the source answers 503/UNAVAILABLE with Retry-After).
    assert!(is_no_space(&writer.push(payload(stored, 1000)).await));

    let delivered = take(&mut reader, stored as usize).await;
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, r)| r.bytes == payload(i as u64, 1000)));
    reader.ack(delivered.last().unwrap().id).unwrap();

    // Healed by itself, the quota unchanged: the delivered segment made room.
    for i in stored..stored + 5 {
        assert_eq!(writer.push(payload(i, 1000)).await.unwrap(), Pushed::Stored);
    }
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(!dir.path().join("ack.tmp").exists());
    let more = take(&mut reader, 5).await;
    assert_eq!(
        payloads(&more),
        (stored..stored + 5)
            .map(|i| payload(i, 1000))
            .collect::<Vec<_>>()
    );
    reader.ack(more.last().unwrap().id).unwrap();
    kill(writer, reader);

    // A restart sends nothing again.
    space::quota::set(dir.path(), None);
    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    assert!(is_drained(&mut reader).await);
    assert_eq!(writer.buffered_bytes(), 0);
}

/// A restart while the disk is still full, after the backlog was delivered and acked, sends
/// none of it again: the ack file is overwritten in place when no block is left for
/// `ack.tmp`.
#[tokio::test]
async fn full_disk_ack_survives_restart_without_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_full_disk_restart";
    let opts = || BufferOptions {
        segment_bytes: 1 << 20,
        ..options(4 << 20, WhenFull::Block)
    };
    space::quota::set(dir.path(), Some(64 << 10));
    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    let stored = fill_disk(&writer).await;
    let delivered = take(&mut reader, stored as usize).await;
    reader.ack(delivered.last().unwrap().id).unwrap();
    assert!(!dir.path().join("ack.tmp").exists());
    kill(writer, reader);

    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    assert!(
        is_drained(&mut reader).await,
        "delivered records sent again"
    );
    assert_eq!(writer.buffered_bytes(), 0);
    // And the first push after the restart heals the disk.
    assert_eq!(
        writer.push(payload(stored, 1000)).await.unwrap(),
        Pushed::Stored
    );
    assert_eq!(take(&mut reader, 1).await[0].bytes, payload(stored, 1000));
    space::quota::set(dir.path(), None);
}

/// With small segments a full disk frees itself as delivery proceeds: each ack removes the
/// delivered sealed segments even while the ack file cannot be replaced, and pushes succeed
/// again before the whole backlog is delivered. Every record comes out once, in order.
#[tokio::test]
async fn full_disk_frees_sealed_segments_as_they_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_full_disk_sealed";
    let opts = || BufferOptions {
        segment_bytes: 8 << 10,
        ..options(4 << 20, WhenFull::Block)
    };
    space::quota::set(dir.path(), Some(64 << 10));
    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    let stored = fill_disk(&writer).await;
    let half = take(&mut reader, (stored / 2) as usize).await;
    reader.ack(half.last().unwrap().id).unwrap();
    let mut next = stored;
    for _ in 0..8 {
        assert_eq!(
            writer.push(payload(next, 1000)).await.unwrap(),
            Pushed::Stored
        );
        next += 1;
    }
    let rest = take(&mut reader, (next - stored / 2) as usize).await;
    assert_eq!(
        payloads(&rest),
        (stored / 2..next)
            .map(|i| payload(i, 1000))
            .collect::<Vec<_>>()
    );
    reader.ack(rest.last().unwrap().id).unwrap();
    kill(writer, reader);
    space::quota::set(dir.path(), None);
    let (_writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    assert!(is_drained(&mut reader).await);
}

/// Writes an ack file saying `id` at `offset` of `segment` (checksum-valid, whatever it says).
fn write_ack(dir: &Path, id: u64, segment: u64, offset: u64) {
    let point = format::Position {
        id,
        segment,
        offset,
    };
    fs::write(dir.join("ack"), format::encode_ack(point)).unwrap();
}

/// Issue 14, item 9: recovery trusted the ack file's record id. An ack file whose id is past
/// every record (checksum-valid) made the reader wait for ids that never come: delivery
/// stopped silently. Now the id is taken from the records at the ack offset and the mismatch
/// is reported.
#[tokio::test]
async fn ack_id_is_checked_against_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_ack_id";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..60 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    // Records 0..5 delivered, but the ack file says record 1000.
    write_ack(dir.path(), 1000, 0, frame_offset(5, 100));
    let errors = telemetry::errors_total(component, "InconsistentBufferAck");
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let read = take(&mut reader, 55).await;
    assert_eq!(
        read.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        (5..60).collect::<Vec<_>>()
    );
    assert!(read.iter().all(|r| r.bytes == payload(r.id.0, 100)));
    assert_eq!(
        telemetry::errors_total(component, "InconsistentBufferAck"),
        errors + 1
    );
    writer.push(payload(60, 100)).await.unwrap();
    assert_eq!(take(&mut reader, 1).await[0].bytes, payload(60, 100));
}

/// Issue 14, item 9: an ack file naming a segment past every segment there is made recovery
/// delete every segment as "delivered". Now that is reported and everything is delivered.
#[tokio::test]
async fn ack_past_every_segment_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_ack_segment";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..60 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    write_ack(dir.path(), 500, 500, SEGMENT_HEADER_LEN);
    let errors = telemetry::errors_total(component, "InconsistentBufferAck");
    let (_writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let read = take(&mut reader, 60).await;
    assert_eq!(
        payloads(&read),
        (0..60).map(|i| payload(i, 100)).collect::<Vec<_>>()
    );
    assert_eq!(
        telemetry::errors_total(component, "InconsistentBufferAck"),
        errors + 1
    );
    assert!(is_drained(&mut reader).await);
}

/// Issue 14, item 9: segment names were trusted. A segment renamed (header rewritten to match,
/// so checksum-valid) to a first id inside the previous segment's records gave two records one
/// id: the reader skipped past them and then waited for ids that never come. Now recovery
/// numbers the segments from their contents, renames the file and reports it.
#[tokio::test]
async fn overlapping_segment_names_are_renumbered() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_overlap";
    {
        let (writer, _reader) =
            open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
        for i in 0..60 {
            writer.push(payload(i, 100)).await.unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    let per_segment = (4096 - SEGMENT_HEADER_LEN) / frame_len(100);
    let mut second = fs::read(&files[1]).unwrap();
    second[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&encode_segment_header(20));
    fs::remove_file(&files[1]).unwrap();
    fs::write(dir.path().join(format::segment_file_name(20)), second).unwrap();

    let errors = telemetry::errors_total(component, "InconsistentBufferSegment");
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    let read = take(&mut reader, 60).await;
    assert_eq!(
        payloads(&read),
        (0..60).map(|i| payload(i, 100)).collect::<Vec<_>>()
    );
    assert_eq!(
        read.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    assert_eq!(
        segment_files(dir.path())[1],
        dir.path().join(format::segment_file_name(per_segment))
    );
    assert_eq!(
        telemetry::errors_total(component, "InconsistentBufferSegment"),
        errors + 1
    );
    writer.push(payload(60, 100)).await.unwrap();
    let next = take(&mut reader, 1).await;
    assert_eq!(
        (next[0].id, next[0].bytes.clone()),
        (RecordId(60), payload(60, 100))
    );
    reader.ack(RecordId(60)).unwrap();
    assert!(is_drained(&mut reader).await);
}

/// A tmpfs of `size` mounted on a new temporary directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts it; panics (never skips) when mounting is not allowed.
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// The full-disk case on a real file system: a 256 KiB tmpfs, so the kernel answers `ENOSPC`
/// (including for `ack.tmp`). Ignored in the suite because mounting needs root; run by the
/// chaos benchmark (`./scripts/bench.sh agent`) with
/// `cargo test -p vigil-agent --lib full_tmpfs -- --ignored`.
#[tokio::test]
#[ignore = "mounts a tmpfs (root): scripts/test.sh runs it where it may mount"]
async fn full_tmpfs_heals_after_delivery_without_resending() {
    let tmpfs = Tmpfs::mount("256k");
    let dir = tmpfs.0.path().join("buffer");
    let component = "test_buffer_full_tmpfs";
    let opts = || BufferOptions {
        segment_bytes: 1 << 20,
        ..options(4 << 20, WhenFull::Block)
    };
    let (writer, mut reader) = open_with(&dir, opts(), component).unwrap();
    let stored = fill_disk(&writer).await;
    assert!(stored > 100, "{stored} records fit in 256 KiB");
    assert!(is_no_space(&writer.push(payload(stored, 1000)).await));
    let delivered = take(&mut reader, stored as usize).await;
    reader.ack(delivered.last().unwrap().id).unwrap();
    for i in stored..stored + 5 {
        assert_eq!(writer.push(payload(i, 1000)).await.unwrap(), Pushed::Stored);
    }
    assert!(!dir.join("ack.tmp").exists());
    let more = take(&mut reader, 5).await;
    assert_eq!(
        payloads(&more),
        (stored..stored + 5)
            .map(|i| payload(i, 1000))
            .collect::<Vec<_>>()
    );
    reader.ack(more.last().unwrap().id).unwrap();
    // Fill it again, deliver, and restart on the still-full disk: nothing comes back.
    let again = fill_disk(&writer).await;
    let delivered = take(&mut reader, again as usize).await;
    reader.ack(delivered.last().unwrap().id).unwrap();
    kill(writer, reader);
    let (writer, mut reader) = open_with(&dir, opts(), component).unwrap();
    assert!(
        is_drained(&mut reader).await,
        "delivered records sent again"
    );
    assert_eq!(writer.push(payload(0, 1000)).await.unwrap(), Pushed::Stored);
    assert_eq!(take(&mut reader, 1).await[0].bytes, payload(0, 1000));
}

/// A segment the full disk cannot start (created, but no block for its header) is not left
/// behind as an empty file beside the active one, where recovery would take it for a damaged
/// segment; once the records are delivered the roll frees the space and the push succeeds.
#[tokio::test]
async fn segment_the_full_disk_cannot_start_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_full_disk_roll";
    let opts = || BufferOptions {
        segment_bytes: 8 << 10,
        ..options(4 << 20, WhenFull::Block)
    };
    // Three 4 KiB blocks: the ack file and a segment of two 4000-byte records.
    space::quota::set(dir.path(), Some(12 << 10));
    let (writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    for i in 0..2 {
        assert_eq!(writer.push(payload(i, 4000)).await.unwrap(), Pushed::Stored);
    }
    let refused = writer.push(payload(2, 4000)).await;
    assert!(is_no_space(&refused), "{refused:?}");
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("cannot create segment"),
        "the roll is what failed"
    );
    assert_eq!(segment_files(dir.path()).len(), 1);

    let delivered = take(&mut reader, 2).await;
    reader.ack(delivered[1].id).unwrap();
    assert_eq!(writer.push(payload(2, 4000)).await.unwrap(), Pushed::Stored);
    assert_eq!(
        segment_files(dir.path()),
        vec![dir.path().join(format::segment_file_name(2))]
    );
    let next = take(&mut reader, 1).await;
    assert_eq!(next[0].bytes, payload(2, 4000));
    reader.ack(next[0].id).unwrap();
    kill(writer, reader);
    space::quota::set(dir.path(), None);
    let (_writer, mut reader) = open_with(dir.path(), opts(), component).unwrap();
    assert!(is_drained(&mut reader).await);
}

/// A kill in the middle of freeing a fully delivered segment (emptied and renamed to the next
/// id, header not yet written, ack file still pointing into the old segment) recovers with
/// nothing redelivered, nothing reported as inconsistent, and ids going on.
#[tokio::test]
async fn kill_while_reclaiming_recovers_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let component = "test_buffer_reclaim_kill";
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    for i in 0..5 {
        writer.push(payload(i, 100)).await.unwrap();
    }
    let read = take(&mut reader, 5).await;
    reader.ack(read[4].id).unwrap();
    kill(writer, reader);
    let old = dir.path().join(format::segment_file_name(0));
    OpenOptions::new()
        .write(true)
        .open(&old)
        .unwrap()
        .set_len(0)
        .unwrap();
    fs::rename(&old, dir.path().join(format::segment_file_name(5))).unwrap();

    let errors = telemetry::errors_total(component, "InconsistentBufferSegment")
        + telemetry::errors_total(component, "InconsistentBufferAck");
    let (writer, mut reader) =
        open_with(dir.path(), options(1 << 20, WhenFull::Block), component).unwrap();
    assert!(is_drained(&mut reader).await);
    writer.push(payload(5, 100)).await.unwrap();
    let next = take(&mut reader, 1).await;
    assert_eq!(
        (next[0].id, next[0].bytes.clone()),
        (RecordId(5), payload(5, 100))
    );
    assert_eq!(
        telemetry::errors_total(component, "InconsistentBufferSegment")
            + telemetry::errors_total(component, "InconsistentBufferAck"),
        errors
    );
}
