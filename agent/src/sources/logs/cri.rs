//! Log source, record layer: turns the physical lines of one file into log records.
//!
//! Files in the pod log directory are written by the container runtime in the CRI format,
//! `<RFC 3339 time> <stdout|stderr> <P|F>[:<more tags>] <message>`, where `P` marks a fragment
//! of a longer line (the runtime splits lines at 16 KiB) and `F` the last one. Fragments are
//! reassembled per stream, since stdout and stderr fragments interleave. Docker's json-file
//! lines (`{"log":"…\n","stream":"stdout","time":"…"}`, a `log` without its trailing newline
//! being a fragment) are read too. Files matched by the `files` globs are plain lines.
//!
//! A reassembled record is bounded by [`MAX_RECORD_BYTES`]: beyond it the record is cut and
//! the rest becomes the next record, so memory stays bounded whatever the input.

use std::borrow::Cow;

use serde::Deserialize;

use super::parse::parse_rfc3339;
use super::tail::Segment;
use crate::event::Stream;

/// Largest record handed on; longer lines are cut into records of this size.
pub(crate) const MAX_RECORD_BYTES: usize = 256 * 1024;

/// One log record: a whole line, or a reassembled sequence of fragments.
#[derive(Debug, PartialEq)]
pub(crate) struct Record<'a> {
    pub stream: Stream,
    /// The runtime's time for the line (nanoseconds since the epoch), when it wrote one.
    pub time_unix_nano: Option<u64>,
    pub message: &'a [u8],
    /// Offset of the first byte of the first line of the record.
    pub start: u64,
    /// Offset just past the last line of the record.
    pub end: u64,
}

/// How lines of a file are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineFormat {
    /// The container runtime's format (CRI, or Docker json-file).
    Runtime,
    /// Lines as the application wrote them.
    Plain,
}

/// Fragments of one stream waiting for their last part.
#[derive(Debug, Default)]
struct Fragments {
    held: bool,
    bytes: Vec<u8>,
    start: u64,
    time_unix_nano: Option<u64>,
}

/// The header of the line a cut segment belongs to, for the segments that follow it.
#[derive(Clone, Copy, Debug)]
struct Continued {
    stream: Stream,
    time_unix_nano: Option<u64>,
    fragment: bool,
}

/// Decodes the lines of one file into records.
#[derive(Debug)]
pub(crate) struct LineDecoder {
    format: LineFormat,
    fragments: [Fragments; 2],
    continued: Option<Continued>,
}

/// A line in the runtime's format, taken apart.
struct RuntimeLine<'a> {
    stream: Stream,
    time_unix_nano: Option<u64>,
    /// A `P` line, or a Docker `log` without its newline: more of the line follows.
    fragment: bool,
    message: Cow<'a, [u8]>,
}

/// Parses a CRI line: stream, time, whether it is a fragment, and the message.
fn parse_cri(line: &[u8]) -> Option<RuntimeLine<'_>> {
    let time_end = memchr::memchr(b' ', line)?;
    let time = parse_rfc3339(&line[..time_end])?;
    let rest = &line[time_end + 1..];
    let (stream, rest) = if let Some(rest) = rest.strip_prefix(b"stdout ") {
        (Stream::Stdout, rest)
    } else if let Some(rest) = rest.strip_prefix(b"stderr ") {
        (Stream::Stderr, rest)
    } else {
        return None;
    };
    let fragment = match rest.first()? {
        b'P' => true,
        b'F' => false,
        _ => return None,
    };
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(space) => (&rest[..space], &rest[space + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if tags.len() > 1 && tags[1] != b':' {
        return None;
    }
    Some(RuntimeLine {
        stream,
        time_unix_nano: Some(time),
        fragment,
        message: Cow::Borrowed(message),
    })
}

/// One line of Docker's json-file log driver.
#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
}

/// Parses a Docker json-file line: stream, time, whether it is a fragment, and the message.
fn parse_docker(line: &[u8]) -> Option<RuntimeLine<'_>> {
    let parsed: DockerLine<'_> = serde_json::from_slice(line).ok()?;
    let stream = match parsed.stream.as_deref() {
        Some("stderr") => Stream::Stderr,
        _ => Stream::Stdout,
    };
    let time = parsed.time.and_then(|t| parse_rfc3339(t.as_bytes()));
    let (fragment, message) = match parsed.log {
        Cow::Borrowed(log) => match log.strip_suffix('\n') {
            Some(whole) => (false, Cow::Borrowed(whole.as_bytes())),
            None => (true, Cow::Borrowed(log.as_bytes())),
        },
        Cow::Owned(mut log) => {
            let fragment = !log.ends_with('\n');
            if !fragment {
                log.pop();
            }
            (fragment, Cow::Owned(log.into_bytes()))
        }
    };
    Some(RuntimeLine {
        stream,
        time_unix_nano: time,
        fragment,
        message,
    })
}

/// Index of a stream in per-stream arrays.
pub(crate) fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl LineDecoder {
    pub fn new(format: LineFormat) -> Self {
        LineDecoder {
            format,
            fragments: Default::default(),
            continued: None,
        }
    }

    /// A decoder of the same format with nothing held.
    pub fn fresh(&self) -> Self {
        LineDecoder::new(self.format)
    }

    /// Decodes one segment of a line, handing complete records to `emit`.
    pub fn decode(&mut self, segment: Segment<'_>, emit: &mut impl FnMut(Record<'_>)) {
        if self.format == LineFormat::Plain {
            let mut message = segment.bytes;
            if segment.last {
                message = message.strip_suffix(b"\r").unwrap_or(message);
            }
            emit(Record {
                stream: Stream::Stdout,
                time_unix_nano: None,
                message,
                start: segment.start,
                end: segment.end,
            });
            return;
        }
        if segment.continued {
            let Some(header) = self.continued else {
                // The head of this line was cut off before the agent saw it.
                return self.plain(segment, emit);
            };
            if segment.last {
                self.continued = None;
            }
            let fragment = header.fragment || !segment.last;
            return self.assemble(
                header.stream,
                header.time_unix_nano,
                fragment,
                segment.bytes,
                segment.start,
                segment.end,
                emit,
            );
        }
        let parsed = if segment.bytes.first() == Some(&b'{') {
            parse_docker(segment.bytes)
        } else {
            parse_cri(segment.bytes)
        };
        let Some(RuntimeLine {
            stream,
            time_unix_nano,
            fragment,
            message,
        }) = parsed
        else {
            return self.plain(segment, emit);
        };
        if !segment.last {
            self.continued = Some(Continued {
                stream,
                time_unix_nano,
                fragment,
            });
        }
        let fragment = fragment || !segment.last;
        self.assemble(
            stream,
            time_unix_nano,
            fragment,
            &message,
            segment.start,
            segment.end,
            emit,
        );
    }

    /// A line that is not in the runtime's format is passed on as it is.
    fn plain(&mut self, segment: Segment<'_>, emit: &mut impl FnMut(Record<'_>)) {
        emit(Record {
            stream: Stream::Stdout,
            time_unix_nano: None,
            message: segment.bytes,
            start: segment.start,
            end: segment.end,
        });
    }

    #[allow(clippy::too_many_arguments)] // the parts of one parsed line
    fn assemble(
        &mut self,
        stream: Stream,
        time_unix_nano: Option<u64>,
        fragment: bool,
        message: &[u8],
        start: u64,
        end: u64,
        emit: &mut impl FnMut(Record<'_>),
    ) {
        let held = &mut self.fragments[slot(stream)];
        if !held.held {
            if !fragment {
                // The common case: a whole line, handed on without copying.
                return emit(Record {
                    stream,
                    time_unix_nano,
                    message,
                    start,
                    end,
                });
            }
            held.held = true;
            held.start = start;
            held.time_unix_nano = time_unix_nano;
            held.bytes.clear();
        }
        let mut message = message;
        loop {
            let room = MAX_RECORD_BYTES - held.bytes.len();
            if message.len() < room || (!fragment && message.len() == room) {
                held.bytes.extend_from_slice(message);
                break;
            }
            // Cut at the bound; what is left starts the next record.
            held.bytes.extend_from_slice(&message[..room]);
            message = &message[room..];
            emit(Record {
                stream,
                time_unix_nano: held.time_unix_nano,
                message: &held.bytes,
                start: held.start,
                end,
            });
            held.bytes.clear();
            held.start = start;
        }
        if !fragment {
            emit(Record {
                stream,
                time_unix_nano: held.time_unix_nano,
                message: &held.bytes,
                start: held.start,
                end,
            });
            held.held = false;
            held.bytes.clear();
            if held.bytes.capacity() > MAX_RECORD_BYTES {
                held.bytes = Vec::new();
            }
        }
    }

    /// Start offset of the fragments of `stream` held: that stream may not be checkpointed
    /// past it.
    pub fn held_start(&self, stream: Stream) -> Option<u64> {
        let held = &self.fragments[slot(stream)];
        held.held.then_some(held.start)
    }

    /// Hands on held fragments as records (the file ended or was truncated).
    pub fn flush(&mut self, end: u64, emit: &mut impl FnMut(Record<'_>)) {
        self.continued = None;
        for (i, held) in self.fragments.iter_mut().enumerate() {
            if held.held {
                emit(Record {
                    stream: if i == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    time_unix_nano: held.time_unix_nano,
                    message: &held.bytes,
                    start: held.start,
                    end,
                });
                held.held = false;
                held.bytes = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(bytes: &[u8], start: u64, continued: bool, last: bool) -> Segment<'_> {
        let end = start + bytes.len() as u64 + u64::from(last);
        Segment {
            bytes,
            start,
            end,
            continued,
            last,
        }
    }

    #[derive(Debug, PartialEq)]
    struct Owned {
        stream: Stream,
        time: Option<u64>,
        message: String,
        start: u64,
        end: u64,
    }

    fn decode_lines(decoder: &mut LineDecoder, text: &str) -> Vec<Owned> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for line in text.split_inclusive('\n') {
            let bytes = line.strip_suffix('\n').unwrap().as_bytes();
            decoder.decode(segment(bytes, offset, false, true), &mut |r| {
                out.push(Owned {
                    stream: r.stream,
                    time: r.time_unix_nano,
                    message: String::from_utf8_lossy(r.message).into_owned(),
                    start: r.start,
                    end: r.end,
                })
            });
            offset += line.len() as u64;
        }
        out
    }

    /// CRI headers are read; `P` fragments are joined with their `F` line per stream, also when
    /// the other stream writes in between, and the record spans all its fragments' bytes.
    #[test]
    fn cri_fragments_reassembled_per_stream() {
        let text = "2024-05-01T12:00:00.000000001Z stdout P hello \n\
                    2024-05-01T12:00:00.5Z stderr F oops\n\
                    2024-05-01T12:00:01Z stdout P big \n\
                    2024-05-01T12:00:02Z stdout F world\n\
                    2024-05-01T12:00:03+00:00 stdout F\n";
        let mut decoder = LineDecoder::new(LineFormat::Runtime);
        let records = decode_lines(&mut decoder, text);
        let lens: Vec<u64> = text.split_inclusive('\n').map(|l| l.len() as u64).collect();
        let t0 = 1_714_564_800_000_000_000;
        assert_eq!(
            records,
            vec![
                Owned {
                    stream: Stream::Stderr,
                    time: Some(t0 + 500_000_000),
                    message: "oops".into(),
                    start: lens[0],
                    end: lens[0] + lens[1],
                },
                Owned {
                    stream: Stream::Stdout,
                    time: Some(t0 + 1),
                    message: "hello big world".into(),
                    start: 0,
                    end: lens[..4].iter().sum(),
                },
                Owned {
                    stream: Stream::Stdout,
                    time: Some(t0 + 3_000_000_000),
                    message: String::new(),
                    start: lens[..4].iter().sum(),
                    end: lens.iter().sum(),
                },
            ]
        );
        assert_eq!(decoder.held_start(Stream::Stdout), None);
        assert_eq!(decoder.held_start(Stream::Stderr), None);
    }

    /// While a fragment is held its start bounds the checkpoint; `flush` hands it on.
    #[test]
    fn held_fragment_bounds_checkpoint() {
        let mut decoder = LineDecoder::new(LineFormat::Runtime);
        let records = decode_lines(
            &mut decoder,
            "2024-05-01T12:00:00Z stdout F a\n2024-05-01T12:00:00Z stdout P b\n",
        );
        assert_eq!(records.len(), 1);
        assert_eq!(decoder.held_start(Stream::Stdout), Some(32));
        assert_eq!(decoder.held_start(Stream::Stderr), None);
        let mut flushed = Vec::new();
        decoder.flush(64, &mut |r| flushed.push(r.message.to_vec()));
        assert_eq!(flushed, vec![b"b".to_vec()]);
        assert_eq!(decoder.held_start(Stream::Stdout), None);
    }

    /// Docker json-file lines: unescaped, stream and time read, fragments joined.
    #[test]
    fn docker_json_lines() {
        let text = concat!(
            r#"{"log":"part one ","stream":"stderr","time":"2024-05-01T12:00:00Z"}"#,
            "\n",
            r#"{"log":"and \"two\"\n","stream":"stderr","time":"2024-05-01T12:00:01Z"}"#,
            "\n"
        );
        let mut decoder = LineDecoder::new(LineFormat::Runtime);
        let records = decode_lines(&mut decoder, text);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].message, r#"part one and "two""#);
        assert_eq!(records[0].stream, Stream::Stderr);
        assert_eq!(records[0].time, Some(1_714_564_800_000_000_000));
    }

    /// A line not in the runtime's format is passed on unchanged, with no time.
    #[test]
    fn foreign_line_passes_through() {
        let mut decoder = LineDecoder::new(LineFormat::Runtime);
        let records = decode_lines(
            &mut decoder,
            "not a cri line\n2024-05-01T12:00:00Z stdin F x\n",
        );
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].message, "not a cri line");
        assert_eq!(records[0].time, None);
        assert_eq!(records[1].message, "2024-05-01T12:00:00Z stdin F x");
    }

    /// A line cut by the reader continues with the header of its first segment; a record
    /// never exceeds the bound.
    #[test]
    fn cut_lines_continue_and_stay_bounded() {
        let mut decoder = LineDecoder::new(LineFormat::Runtime);
        let mut lens = Vec::new();
        let head = format!("2024-05-01T12:00:00Z stderr F {}", "a".repeat(200_000));
        let middle = "b".repeat(200_000);
        let tail = "c".repeat(10);
        let mut emit = |r: Record<'_>| lens.push((r.stream, r.message.len(), r.start, r.end));
        decoder.decode(segment(head.as_bytes(), 0, false, false), &mut emit);
        decoder.decode(
            segment(middle.as_bytes(), head.len() as u64, true, false),
            &mut emit,
        );
        let tail_start = (head.len() + middle.len()) as u64;
        decoder.decode(segment(tail.as_bytes(), tail_start, true, true), &mut emit);
        assert_eq!(
            lens,
            vec![
                (Stream::Stderr, MAX_RECORD_BYTES, 0, tail_start),
                (
                    Stream::Stderr,
                    400_010 - MAX_RECORD_BYTES,
                    head.len() as u64,
                    tail_start + 11
                ),
            ]
        );
    }

    /// Plain files: each line is a record, a trailing carriage return is dropped.
    #[test]
    fn plain_lines() {
        let mut decoder = LineDecoder::new(LineFormat::Plain);
        let records = decode_lines(&mut decoder, "one\r\n2024-05-01T12:00:00Z stdout F two\n");
        assert_eq!(records[0].message, "one");
        assert_eq!(records[1].message, "2024-05-01T12:00:00Z stdout F two");
        assert_eq!(records[1].time, None);
    }
}
