//! The properties the fuzz targets in `fuzz/` check, one function per target, each taking the
//! fuzzer's bytes and panicking when a property fails. Built with the `fuzzing` feature (for
//! `fuzz/`) and under test, where [`tests`] runs every function over the committed seed corpus,
//! so that the properties hold for real inputs and the code stays built.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz properties and their tests: a failed property must panic, with its message"
)]

use std::time::{Duration, Instant};

use crate::buffer;
use crate::event::{LogEvent, Stream};
use crate::identity::Identity;
use crate::processors::crash::analyse::{analyse_event, analyse_trace};
use crate::processors::crash::CrashDetector;
use crate::processors::multiline::Joiner;
use crate::processors::redact::detectors;
use crate::sources::scrape::cache::SeriesCache;
use crate::sources::scrape::parse::{parse, Format};
use crate::sources::scrape::render::owned_encoding;

/// The Prometheus text and OpenMetrics parsers (the agent's scrape of the application): the
/// families partition the samples, and every label is reachable. The series cache encodes
/// every page as reading it afresh does, or refuses it with the parser's error: cold, warm with
/// the same page, and warm with the page's first half.
pub fn scrape(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let identity = [("namespace", "ns"), ("app", "a"), ("pod", "p"), ("job", "")];
    // Up to the last line end in the first half (a line end is a character boundary).
    let half_end = text.as_bytes()[..text.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let half = &text[..half_end];
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let parsed = parse(text, format);
        let expected = parsed
            .as_ref()
            .map(|page| owned_encoding(page, &identity, 7))
            .map_err(Clone::clone);
        let mut cache = SeriesCache::default();
        for warmed_with in ["nothing", "the page", "its first half"] {
            if warmed_with == "its first half" {
                cache = SeriesCache::default();
                let _ = cache.encode(half, format, &identity, 7, &mut Vec::new());
            }
            let mut out = Vec::new();
            let got = cache
                .encode(text, format, &identity, 7, &mut out)
                .map(|_| out);
            assert!(
                got == expected,
                "{format:?}, cache warmed with {warmed_with}: {got:?} against {expected:?}"
            );
        }
        let Ok(page) = parsed else {
            continue;
        };
        let in_families: usize = page.families().iter().map(|f| page.samples(f).len()).sum();
        assert_eq!(in_families, page.all_samples().len(), "{format:?}");
        assert_eq!(page.sample_count(), page.all_samples().len(), "{format:?}");
        for sample in page.all_samples() {
            for label in page.labels(sample) {
                assert!(!label.name.is_empty(), "{format:?}: a label without a name");
            }
        }
    }
}

/// Container runtime lines (CRI, Docker json-file) and application lines (JSON, logfmt, text).
pub fn logs(data: &[u8]) {
    crate::sources::logs::fuzzing::decode(data);
}

/// The multi-line joiner and the crash analyser: every line pushed comes out exactly once (the
/// joined events' line counts add up to the lines pushed), and each event is analysed.
pub fn join_and_analyse(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let max_lines = usize::from(selector % 64) + 2;
    let mut joiner = Joiner::new(max_lines, Duration::from_secs(1));
    let start = Instant::now();
    let mut out = Vec::new();
    let mut pushed = 0u64;
    for (i, line) in text.split('\n').enumerate() {
        // Two streams interleaved by the selector's bits, a pause now and then.
        let stream = if (selector >> (i % 8)) & 1 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let now =
            start + Duration::from_millis(i as u64 * if selector & 0x80 == 0 { 10 } else { 700 });
        joiner.push(LogEvent::line("app", stream, i as u64, line), now, &mut out);
        joiner.flush_expired(now, &mut out);
        pushed += 1;
    }
    joiner.flush_all(&mut out);
    assert_eq!(joiner.open_traces(), 0, "flush_all left a trace open");
    let lines: u64 = out.iter().map(|e| u64::from(e.lines)).sum();
    assert_eq!(
        lines, pushed,
        "lines pushed and lines in the joined events differ"
    );
    let detector = CrashDetector::new(&identity(), Some("user.id".into()));
    for mut event in out {
        analyse_event(&event);
        detector.observe_at(&mut event, 1_700_000_000_000);
    }
    analyse_trace(&text);
}

/// The redaction detectors against their prescan: the prescan never says "no match" where the
/// full detector finds one (the redactor runs a detector only when its prescan trigger is set).
pub fn redact(data: &[u8]) {
    let triggers = detectors::prescan(data);
    type Detector = fn(&[u8], &mut Vec<(std::ops::Range<usize>, detectors::Found)>);
    let checks: [(&str, bool, Detector); 6] = [
        ("card", triggers.card, detectors::cards),
        ("iban", triggers.iban, detectors::ibans),
        ("email", triggers.email, detectors::emails),
        ("phone", triggers.phone, detectors::phones),
        ("token", triggers.token, detectors::tokens),
        ("jwt", triggers.jwt, detectors::jwts),
    ];
    for (name, triggered, detector) in checks {
        let mut found = Vec::new();
        detector(data, &mut found);
        assert!(
            triggered || found.is_empty(),
            "the {name} prescan says no match, the detector found {found:?}"
        );
        for (range, _) in &found {
            assert!(
                range.start < range.end && range.end <= data.len(),
                "{name}: {range:?}"
            );
        }
    }
}

/// OTLP/HTTP bodies (protobuf or JSON, maybe gzipped): what ingest stores decodes to what was
/// received, enriched.
pub fn otlp_http(data: &[u8]) {
    crate::sources::otlp::fuzzing::http(data);
}

/// OTLP/gRPC messages: what ingest stores decodes to what was received, enriched.
pub fn otlp_grpc(data: &[u8]) {
    crate::sources::otlp::fuzzing::grpc(data);
}

/// A disk buffer recovered from files it did not write (or wrote and were then damaged).
///
/// The first byte picks the layout: with bit 0 clear the rest is the content of the first
/// segment file (and, with bit 1 set, its first 24 bytes the ack file); with bit 0 set, the
/// rest up to a `0xff` is records (split at `\n`) written by the buffer itself, and each 3
/// bytes after it flip one byte (offset, mask) of the files, in name order. Opening never
/// panics; an undamaged buffer gives back every record in order; whatever opens can be read
/// to the end and written to again.
pub fn buffer_recovery(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path();
    let open = || {
        buffer::open(
            path,
            1 << 20,
            vigil_crds::monitored_app::WhenFull::DropNewest,
            "fuzz",
        )
    };
    let mut expected = None;
    if selector & 1 == 0 {
        let (ack, segment) = if selector & 2 == 0 {
            (None, rest)
        } else {
            let at = rest.len().min(24);
            (Some(&rest[..at]), &rest[at..])
        };
        let _ = std::fs::write(path.join(buffer::fuzzing_segment_name(0)), segment);
        if let Some(ack) = ack {
            let _ = std::fs::write(path.join(buffer::fuzzing_ack_name()), ack);
        }
    } else {
        let (records, flips) = match rest.iter().position(|&b| b == 0xff) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let records: Vec<Vec<u8>> = records.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        {
            let Ok((writer, _reader)) = open() else {
                return;
            };
            for record in &records {
                let _ = writer.try_push(record.clone());
            }
            let _ = writer.sync();
        }
        let mut files: Vec<_> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let mut contents: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_default())
            .collect();
        let total: usize = contents.iter().map(Vec::len).sum();
        let mut flipped = false;
        for flip in flips.chunks_exact(3) {
            if total == 0 || flip[2] == 0 {
                continue;
            }
            let mut at = usize::from(u16::from_le_bytes([flip[0], flip[1]])) % total;
            for content in &mut contents {
                if at < content.len() {
                    content[at] ^= flip[2];
                    flipped = true;
                    break;
                }
                at -= content.len();
            }
        }
        for (file, content) in files.iter().zip(&contents) {
            let _ = std::fs::write(file, content);
        }
        if !flipped {
            expected = Some(records);
        }
    }
    let Ok((writer, mut reader)) = open() else {
        assert!(expected.is_none(), "an undamaged buffer does not open");
        return;
    };
    let _ = writer.try_push(b"after recovery".to_vec());
    drop(writer);
    let mut read = Vec::new();
    while let Ok(batch) = futures::executor::block_on(reader.next_batch(64, usize::MAX)) {
        assert!(!batch.is_empty());
        read.extend(batch.into_iter().map(|r| r.bytes));
        assert!(read.len() <= 1 << 20, "more records than bytes written");
    }
    assert_eq!(
        read.last().map(Vec::as_slice),
        Some(&b"after recovery"[..]),
        "the record written after recovery is not read back"
    );
    if let Some(mut expected) = expected {
        expected.push(b"after recovery".to_vec());
        assert_eq!(
            read, expected,
            "an undamaged buffer gives back other records"
        );
    }
}

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

#[cfg(test)]
mod tests;
