//! Opening a disk buffer: reads the ack file, removes delivered segments, checks every segment
//! header, cuts a torn record off the end of the newest segment and works out where delivery
//! resumes and how many bytes are still unacknowledged.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    decode_ack, decode_frame_header, decode_segment_header, encode_segment_header,
    parse_segment_file_name, segment_file_name, AckFile, Position, SegmentHeader, ACK_FILE,
    ACK_TMP_FILE, FORMAT_VERSION, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::{BufferError, Sealed};
use crate::telemetry::{emit, InternalEvent};

/// What a buffer directory holds after recovery.
pub(super) struct Recovered {
    /// Segments before the active one, oldest first.
    pub(super) sealed: VecDeque<Sealed>,
    /// The segment new records are appended to, opened for appending.
    pub(super) active: File,
    pub(super) active_first: u64,
    pub(super) active_len: u64,
    /// Id the next pushed record gets.
    pub(super) next_id: u64,
    /// The first record to deliver.
    pub(super) start: Position,
    /// Unacknowledged bytes on disk (from `start` on).
    pub(super) buffered: u64,
}

/// Builds the error for a failed file operation.
pub(super) fn io_error(component: &str, message: String, source: io::Error) -> BufferError {
    BufferError::Io {
        component: component.to_owned(),
        message,
        source,
    }
}

/// Path of the segment whose first record is `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(segment_file_name(first))
}

/// Creates an empty segment (header only) and opens it for appending.
pub(super) fn create_segment(dir: &Path, first: u64) -> io::Result<File> {
    let path = segment_path(dir, first);
    fs::write(&path, encode_segment_header(first))?;
    OpenOptions::new().append(true).open(&path)
}

/// Reads into `buf` until it is full or the file ends; returns the bytes read.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Recovers (or creates) the buffer in `dir`. See the module documentation of
/// [`crate::buffer`] for what is repaired and how.
pub(super) fn recover(dir: &Path, component: &str) -> Result<Recovered, BufferError> {
    fs::create_dir_all(dir).map_err(|e| {
        io_error(
            component,
            format!("cannot create directory {}", dir.display()),
            e,
        )
    })?;
    match fs::remove_file(dir.join(ACK_TMP_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io_error(
                component,
                format!("cannot remove {}", dir.join(ACK_TMP_FILE).display()),
                e,
            ))
        }
    }
    let ack = read_ack(dir, component)?;
    let mut segments = list_segments(dir, component)?;

    // Segments wholly before the ack point were delivered; a crash can leave them behind
    // between writing the ack file and removing them.
    if let Some(ack) = ack {
        for &first in segments.iter().filter(|&&first| first < ack.segment) {
            remove_segment(dir, first, component)?;
        }
        segments.retain(|&first| first >= ack.segment);
    }

    let mut valid: Vec<(u64, u64)> = Vec::with_capacity(segments.len());
    for (i, &first) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        match check_segment(dir, first, is_last, component)? {
            Some(len) => valid.push((first, len)),
            None => {
                // A damaged header: the records in it cannot be trusted. The next segment's
                // first id says how many there were.
                let lost = segments.get(i + 1).map_or(1, |next| next - first).max(1);
                emit(InternalEvent::Dropped {
                    component,
                    events: lost,
                    reason: "corrupt_record",
                });
                emit(InternalEvent::Error {
                    component,
                    error: "CorruptBufferSegment",
                    message: &format!(
                        "segment {} has a damaged header and was removed",
                        segment_file_name(first)
                    ),
                });
                remove_segment(dir, first, component)?;
            }
        }
    }

    let ack_offset = |segment: u64| ack.filter(|a| a.segment == segment).map(|a| a.offset);
    let (active_first, active_len, next_id, ack_index) = match valid.pop() {
        Some((first, len)) => {
            let scan = scan_segment(dir, first, len, ack_offset(first), component)?;
            if scan.end < len {
                let path = segment_path(dir, first);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(scan.end))
                    .map_err(|e| {
                        io_error(
                            component,
                            format!("cannot truncate torn record in {}", path.display()),
                            e,
                        )
                    })?;
            }
            (first, scan.end, first + scan.records, scan.index_at_ack)
        }
        None => {
            let first = ack.map_or(0, |a| a.id);
            (first, SEGMENT_HEADER_LEN, first, None)
        }
    };
    let active_path = segment_path(dir, active_first);
    let active = if active_len == SEGMENT_HEADER_LEN && !active_path.exists() {
        create_segment(dir, active_first)
    } else {
        OpenOptions::new().append(true).open(&active_path)
    }
    .map_err(|e| {
        io_error(
            component,
            format!("cannot open segment {}", active_path.display()),
            e,
        )
    })?;
    let sealed: VecDeque<Sealed> = valid
        .into_iter()
        .map(|(first, len)| Sealed { first, len })
        .collect();

    let start = match ack {
        Some(a) if a.segment == active_first => Position {
            id: ack_index.map_or(active_first, |k| active_first + k),
            segment: active_first,
            offset: if ack_index.is_some() {
                a.offset
            } else {
                SEGMENT_HEADER_LEN
            },
        },
        Some(a) => match sealed.iter().find(|s| s.first == a.segment) {
            Some(s) if (SEGMENT_HEADER_LEN..=s.len).contains(&a.offset) => Position {
                id: a.id.max(s.first),
                ..a
            },
            Some(s) => segment_start(s.first),
            None => segment_start(sealed.front().map_or(active_first, |s| s.first)),
        },
        None => segment_start(sealed.front().map_or(active_first, |s| s.first)),
    };

    let buffered = sealed
        .iter()
        .map(|s| (s.first, s.len))
        .chain(std::iter::once((active_first, active_len)))
        .filter(|&(first, _)| first >= start.segment)
        .map(|(first, len)| {
            let from = if first == start.segment {
                start.offset
            } else {
                SEGMENT_HEADER_LEN
            };
            len.saturating_sub(from)
        })
        .sum();

    Ok(Recovered {
        sealed,
        active,
        active_first,
        active_len,
        next_id,
        start,
        buffered,
    })
}

fn segment_start(first: u64) -> Position {
    Position {
        id: first,
        segment: first,
        offset: SEGMENT_HEADER_LEN,
    }
}

fn read_ack(dir: &Path, component: &str) -> Result<Option<Position>, BufferError> {
    let path = dir.join(ACK_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io_error(
                component,
                format!("cannot read {}", path.display()),
                e,
            ))
        }
    };
    match decode_ack(&bytes) {
        AckFile::Valid(point) => Ok(Some(point)),
        AckFile::UnknownVersion(version) => Err(BufferError::UnsupportedFormat {
            component: component.to_owned(),
            path,
            version,
            supported: FORMAT_VERSION,
        }),
        AckFile::Corrupt => {
            // Losing the ack point only means redelivering: start at the oldest segment.
            emit(InternalEvent::Error {
                component,
                error: "CorruptBufferAckFile",
                message: "ack file is damaged; delivery restarts at the oldest segment",
            });
            Ok(None)
        }
    }
}

fn list_segments(dir: &Path, component: &str) -> Result<Vec<u64>, BufferError> {
    let listing_error = |e| {
        io_error(
            component,
            format!("cannot list directory {}", dir.display()),
            e,
        )
    };
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing_error)? {
        let entry = entry.map_err(listing_error)?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            segments.push(first);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn remove_segment(dir: &Path, first: u64, component: &str) -> Result<(), BufferError> {
    let path = segment_path(dir, first);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(
            component,
            format!("cannot remove segment {}", path.display()),
            e,
        )),
    }
}

/// Checks a segment's header: `Some(file length)` when valid, `None` when damaged. A newest
/// segment shorter than a header was being created when the process died: it is rewritten.
fn check_segment(
    dir: &Path,
    first: u64,
    is_last: bool,
    component: &str,
) -> Result<Option<u64>, BufferError> {
    let path = segment_path(dir, first);
    let failed = |e| {
        io_error(
            component,
            format!("cannot read segment {}", path.display()),
            e,
        )
    };
    let mut file = File::open(&path).map_err(failed)?;
    let len = file.metadata().map_err(failed)?.len();
    if len < SEGMENT_HEADER_LEN {
        if !is_last {
            return Ok(None);
        }
        fs::write(&path, encode_segment_header(first)).map_err(|e| {
            io_error(
                component,
                format!("cannot rewrite segment header {}", path.display()),
                e,
            )
        })?;
        return Ok(Some(SEGMENT_HEADER_LEN));
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact(&mut header).map_err(failed)?;
    match decode_segment_header(&header) {
        SegmentHeader::Valid { first_id } if first_id == first => Ok(Some(len)),
        SegmentHeader::Valid { .. } | SegmentHeader::Corrupt => Ok(None),
        SegmentHeader::UnknownVersion(version) => Err(BufferError::UnsupportedFormat {
            component: component.to_owned(),
            path,
            version,
            supported: FORMAT_VERSION,
        }),
    }
}

/// The newest segment's intact prefix.
struct Scan {
    /// Offset just past the last whole frame.
    end: u64,
    /// Whole frames (a frame whose payload checksum fails still counts: it holds an id).
    records: u64,
    /// Index of the record starting at the ack offset, when the ack offset is a frame start.
    index_at_ack: Option<u64>,
}

/// Walks the frames of the newest segment to find where the intact data ends. A torn last
/// frame (a write cut short) or a zero-filled tail is cut off silently: such a record was never
/// reported as stored. A frame header that fails its checksum in the middle of data means the
/// rest of the segment cannot be framed; it is cut off and counted as dropped.
fn scan_segment(
    dir: &Path,
    first: u64,
    len: u64,
    ack_offset: Option<u64>,
    component: &str,
) -> Result<Scan, BufferError> {
    let path = segment_path(dir, first);
    let failed = |e| {
        io_error(
            component,
            format!("cannot read segment {}", path.display()),
            e,
        )
    };
    let mut reader = BufReader::with_capacity(256 << 10, File::open(&path).map_err(failed)?);
    reader
        .seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
        .map_err(failed)?;
    let mut scan = Scan {
        end: SEGMENT_HEADER_LEN,
        records: 0,
        index_at_ack: None,
    };
    let mut header = [0u8; FRAME_HEADER_LEN];
    loop {
        if ack_offset == Some(scan.end) {
            scan.index_at_ack = Some(scan.records);
        }
        let n = read_full(&mut reader, &mut header).map_err(failed)?;
        if n < FRAME_HEADER_LEN {
            break; // clean end (n == 0) or a torn frame header
        }
        let Some(frame) = decode_frame_header(&header) else {
            if header.iter().any(|&b| b != 0) || !rest_is_zero(&mut reader).map_err(failed)? {
                emit(InternalEvent::Dropped {
                    component,
                    events: 1,
                    reason: "corrupt_record",
                });
                emit(InternalEvent::Error {
                    component,
                    error: "CorruptBufferSegment",
                    message: &format!(
                        "segment {} is damaged at offset {}; the rest of it was removed",
                        segment_file_name(first),
                        scan.end
                    ),
                });
            }
            break;
        };
        let frame_end = scan.end + FRAME_HEADER_LEN as u64 + u64::from(frame.len);
        if frame_end > len {
            break; // torn payload
        }
        reader.seek_relative(i64::from(frame.len)).map_err(failed)?;
        scan.end = frame_end;
        scan.records += 1;
    }
    Ok(scan)
}

fn rest_is_zero(reader: &mut impl Read) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = read_full(reader, &mut chunk)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < chunk.len() {
            return Ok(true);
        }
    }
}
