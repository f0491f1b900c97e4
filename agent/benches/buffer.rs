//! Disk buffer throughput: push + read + ack of 1 KiB records through a real buffer directory
//! (under the system temporary directory), in two shapes:
//!
//! - `streaming`: a reader keeps up with the writer (records come from the memory front; the
//!   disk is only written), acking every batch — the normal case;
//! - `backlog`: everything is pushed first (a sink outage), then read back from the segment
//!   files and acked — the catch-up after an outage.
//!
//! Prints MiB/s, records/s and CPU-seconds per GiB; asserts nothing. CPU time is the process's
//! user + system time from `/proc/self/stat`; on a busy machine it is the steadier figure, as
//! wall-clock rates drop with the CPU left to the benchmark.
//!
//! Run with `cargo bench -p vigil-agent --bench buffer`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark stops at the first failed setup step"
)]

use std::time::Instant;

use vigil_agent::buffer::{self, BufferOptions, BufferReader, BufferWriter};
use vigil_crds::monitored_app::WhenFull;

const RECORD_BYTES: usize = 1024;
const BATCH_RECORDS: usize = 256;

/// User + system CPU seconds of this process so far (Linux `USER_HZ` is 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn record(i: u64) -> Vec<u8> {
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.resize(RECORD_BYTES, (i % 251) as u8);
    bytes
}

async fn push_all(writer: &BufferWriter, records: u64) {
    for i in 0..records {
        writer.push(record(i)).await.expect("push");
    }
}

async fn read_and_ack_all(reader: &mut BufferReader, records: u64) {
    let mut seen = 0u64;
    while seen < records {
        let batch = reader
            .next_batch(BATCH_RECORDS, usize::MAX)
            .await
            .expect("next batch");
        seen += batch.len() as u64;
        if let Some(last) = batch.last() {
            reader.ack(last.id).expect("ack");
        }
    }
}

fn report(shape: &str, records: u64, seconds: f64, cpu: f64) {
    let mib = (records as f64 * RECORD_BYTES as f64) / (1024.0 * 1024.0);
    println!(
        "buffer {shape:<9}: {records} records of {RECORD_BYTES} B in {seconds:.2} s: \
         {:.0} MiB/s, {:.0} records/s (wall); {:.2} CPU-s/GiB = {:.0} MiB per CPU-second",
        mib / seconds,
        records as f64 / seconds,
        cpu / (mib / 1024.0),
        mib / cpu,
    );
}

async fn streaming(records: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = BufferOptions::new(64 << 20, WhenFull::Block);
    let (writer, mut reader) =
        buffer::open_with(dir.path(), options, "bench_streaming").expect("open buffer");
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let consumer = tokio::spawn(async move {
        read_and_ack_all(&mut reader, records).await;
    });
    push_all(&writer, records).await;
    consumer.await.expect("reader task");
    report(
        "streaming",
        records,
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
    );
}

async fn backlog(records: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = BufferOptions::new(512 << 20, WhenFull::Block);
    let (writer, mut reader) =
        buffer::open_with(dir.path(), options, "bench_backlog").expect("open buffer");
    let (cpu, start) = (cpu_seconds(), Instant::now());
    push_all(&writer, records).await;
    let pushed = start.elapsed().as_secs_f64();
    read_and_ack_all(&mut reader, records).await;
    let total = start.elapsed().as_secs_f64();
    report("backlog", records, total, cpu_seconds() - cpu);
    let mib = (records as f64 * RECORD_BYTES as f64) / (1024.0 * 1024.0);
    println!(
        "  of which push {:.0} MiB/s, read back from disk + ack {:.0} MiB/s",
        mib / pushed,
        mib / (total - pushed)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        streaming(20_000).await; // warm-up
        streaming(300_000).await;
        backlog(300_000).await;
    });
}
