//! The log line decoders under fuzzing (see [`crate::fuzzing`]): container runtime lines (CRI
//! and Docker json-file, with their partial-line fragments) and application lines (JSON,
//! logfmt, text with an inferred level).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz properties and their tests: a failed property must panic, with its message"
)]

use super::cri::{LineDecoder, LineFormat, Record};
use super::parse::{infer_level, parse_json, parse_logfmt, parse_rfc3339};
use super::tail::Segment;

/// The first byte picks the line format; the rest is a file, cut at newlines the way the tail
/// cuts it (a long line into several segments).
pub(crate) fn decode(data: &[u8]) {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        LineFormat::Runtime
    } else {
        LineFormat::Plain
    };
    // Lines longer than this are handed over in pieces, as the tail does with its read chunk.
    let piece = usize::from(selector >> 1).max(1) * 16;
    let mut decoder = LineDecoder::new(format);
    // Records of stdout and stderr may come out of order (a fragment is held while the other
    // stream's lines pass), so each is checked on its own.
    let mut check = |record: Record<'_>| {
        assert!(
            record.start <= record.end && record.end <= file.len() as u64,
            "record {}..{} outside the file of {} bytes",
            record.start,
            record.end,
            file.len()
        );
        let text = String::from_utf8_lossy(record.message);
        for fields in [parse_json(&text), parse_logfmt(&text)]
            .into_iter()
            .flatten()
        {
            if let Some(message) = &fields.message {
                infer_level(message);
            }
        }
        infer_level(&text);
    };
    let mut offset = 0;
    for line in file.split_inclusive(|&b| b == b'\n') {
        let (bytes, newline) = match line.strip_suffix(b"\n") {
            Some(bytes) => (bytes, 1),
            None => (line, 0),
        };
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(piece).collect()
        };
        let count = pieces.len();
        for (i, bytes) in pieces.into_iter().enumerate() {
            let last = i + 1 == count && newline == 1;
            let end = offset + bytes.len() as u64 + if last { 1 } else { 0 };
            decoder.decode(
                Segment {
                    bytes,
                    start: offset,
                    end,
                    continued: i > 0,
                    last,
                },
                &mut check,
            );
            offset = end;
        }
    }
    decoder.flush(offset, &mut check);
    parse_rfc3339(file);
}
