//! Opening a disk buffer: reads the ack file, removes delivered segments, checks every segment
//! header, cuts a torn record off the end of the newest segment and works out where delivery
//! resumes and how many bytes are still unacknowledged.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{
    decode_ack, decode_frame_header, decode_segment_header, encode_segment_header,
    parse_segment_file_name, segment_file_name, AckFile, Position, SegmentHeader, ACK_FILE,
    ACK_TMP_FILE, FORMAT_VERSION, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::reader::write_ack_file;
use super::{space, BufferError, Sealed};
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

/// Creates an empty segment (header only) and opens it for appending. A file the failed
/// attempt left behind (created, but no room for the header) is removed, so no stray name
/// lingers beside the active segment.
pub(super) fn create_segment(dir: &Path, first: u64) -> io::Result<File> {
    let path = segment_path(dir, first);
    let created = space::reserve(&path, SEGMENT_HEADER_LEN)
        .and_then(|()| fs::write(&path, encode_segment_header(first)));
    if let Err(e) = created {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
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

/// A segment found on disk whose header is intact.
struct Found {
    /// The number in its file name.
    name: u64,
    /// The first record id its header says.
    header_id: u64,
    len: u64,
}

/// A segment after its frames were walked: where its records are and what they are numbered.
struct Walked {
    name: u64,
    header_id: u64,
    /// The id its first record has (differs from `name` when the directory is repaired).
    first: u64,
    len: u64,
    records: u64,
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
    let ack_file = read_ack(dir, component)?;
    let names = list_segments(dir, component)?;

    let mut found: Vec<Found> = Vec::with_capacity(names.len());
    for (i, &name) in names.iter().enumerate() {
        let is_last = i + 1 == names.len();
        match check_segment(dir, name, is_last, component)? {
            Some((header_id, len)) => found.push(Found {
                name,
                header_id,
                len,
            }),
            None => {
                // A damaged header: the records in it cannot be trusted. The next segment's
                // first id says how many there were.
                let lost = names.get(i + 1).map_or(1, |next| next - name).max(1);
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
                        segment_file_name(name)
                    ),
                });
                remove_segment(dir, name, component)?;
            }
        }
    }

    // The ack file must point into the segments there are, or before all of them (delivered
    // segments are removed before the ack file is rewritten). Anything else is a directory
    // that does not fit together: delivery restarts at the oldest segment rather than trusting
    // it (segments are never removed on its word).
    let mut ack = ack_file;
    if let Some(a) = ack {
        let known = found.iter().any(|f| f.name == a.segment);
        let before_all = found.first().is_none_or(|f| a.segment < f.name);
        if !known && !before_all {
            emit(InternalEvent::Error {
                component,
                error: "InconsistentBufferAck",
                message: &format!(
                    "ack file points at segment {} (record {}), which is not in the buffer \
                     (segments {} to {}); delivery restarts at the oldest segment",
                    segment_file_name(a.segment),
                    a.id,
                    found.first().map_or(0, |f| f.name),
                    found.last().map_or(0, |f| f.name),
                ),
            });
            ack = None;
        }
    }
    // Segments wholly before the ack point were delivered; a crash can leave them behind
    // between writing the ack file and removing them.
    if let Some(a) = ack {
        for f in found.iter().filter(|f| f.name < a.segment) {
            remove_segment(dir, f.name, component)?;
        }
        found.retain(|f| f.name >= a.segment);
    }

    // Walk every segment's frames: count its records, check that the names agree with them and
    // find the record the ack file points at.
    let mut walked: Vec<Walked> = Vec::with_capacity(found.len());
    let mut start = None;
    let count = found.len();
    for (i, f) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let path = segment_path(dir, f.name);
        let failed = |e| {
            io_error(
                component,
                format!("cannot read segment {}", path.display()),
                e,
            )
        };
        let file = File::open(&path).map_err(failed)?;
        let mark = ack.filter(|a| a.segment == f.name).map(|a| a.offset);
        let walk = walk_frames(&file, SEGMENT_HEADER_LEN, f.len, mark).map_err(failed)?;
        // Ids are consecutive: a segment named before the previous one's last record would
        // give two records one id (and a reader past them would wait for ids that never come).
        let first = match walked.last() {
            Some(previous) => f.name.max(previous.first + previous.records),
            None => f.name,
        };
        if first != f.name || first != f.header_id {
            emit(InternalEvent::Error {
                component,
                error: "InconsistentBufferSegment",
                message: &format!(
                    "segment {} (header says first record {}) does not fit its name or the \
                     records before it; renumbered from record {first}",
                    segment_file_name(f.name),
                    f.header_id
                ),
            });
        }
        let mut len = f.len;
        if is_last && walk.end < f.len {
            if walk.lost_tail {
                emit(InternalEvent::Dropped {
                    component,
                    events: 1,
                    reason: "corrupt_record",
                });
                emit(InternalEvent::Error {
                    component,
                    error: "CorruptBufferSegment",
                    message: &format!(
                        "segment {} is damaged at offset {} with no intact record after it; \
                         the rest of it was removed",
                        segment_file_name(f.name),
                        walk.end
                    ),
                });
            }
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(walk.end))
                .map_err(|e| {
                    io_error(
                        component,
                        format!("cannot truncate torn record in {}", path.display()),
                        e,
                    )
                })?;
            len = walk.end;
        }
        if let Some(a) = ack.filter(|a| a.segment == f.name) {
            start = Some(match walk.index_at {
                Some(index) => {
                    if a.id != first + index && first == f.name {
                        emit(InternalEvent::Error {
                            component,
                            error: "InconsistentBufferAck",
                            message: &format!(
                                "ack file says record {} at offset {} of segment {}, where \
                                 record {} is; delivery resumes at record {}",
                                a.id,
                                a.offset,
                                segment_file_name(f.name),
                                first + index,
                                first + index
                            ),
                        });
                    }
                    Position {
                        id: first + index,
                        segment: first,
                        offset: a.offset,
                    }
                }
                // Past the intact records (a damaged tail was cut off after the ack).
                None if a.offset >= walk.end => Position {
                    id: first + walk.records,
                    segment: first,
                    offset: walk.end.max(SEGMENT_HEADER_LEN),
                },
                None => {
                    emit(InternalEvent::Error {
                        component,
                        error: "InconsistentBufferAck",
                        message: &format!(
                            "ack file points at offset {} of segment {}, where no record \
                             starts; delivery restarts at the start of that segment",
                            a.offset,
                            segment_file_name(f.name)
                        ),
                    });
                    segment_start(first)
                }
            });
        }
        walked.push(Walked {
            name: f.name,
            header_id: f.header_id,
            first,
            len,
            records: walk.records,
        });
    }
    // Repairs go newest first: new names only ever grow, so each target name is free by the
    // time it is taken.
    for w in walked.iter().rev() {
        if w.first != w.name || w.first != w.header_id {
            renumber_segment(dir, w.name, w.first, component)?;
        }
    }

    let (active_first, active_len, next_id) = match walked.last() {
        Some(w) => (w.first, w.len, w.first + w.records),
        None => {
            let first = ack.map_or(0, |a| a.id);
            (first, SEGMENT_HEADER_LEN, first)
        }
    };
    let active_path = segment_path(dir, active_first);
    let active = if walked.is_empty() {
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
    let sealed: VecDeque<Sealed> = walked
        .iter()
        .take(walked.len().saturating_sub(1))
        .map(|w| Sealed {
            first: w.first,
            len: w.len,
        })
        .collect();
    let start =
        start.unwrap_or_else(|| segment_start(walked.first().map_or(active_first, |w| w.first)));

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

    // The ack file always exists and says where delivery resumes: a full disk can then still
    // record acks by overwriting it in place.
    if ack_file != Some(start) {
        if let Err(e) = write_ack_file(dir, start) {
            emit(InternalEvent::Error {
                component,
                error: "BufferAckWrite",
                message: &format!("cannot write ack file (retried on the next ack): {e}"),
            });
        }
    }

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

/// Gives a segment the first record id `first`: its header is rewritten in place (no new
/// space needed) and the file renamed.
fn renumber_segment(dir: &Path, name: u64, first: u64, component: &str) -> Result<(), BufferError> {
    let from = segment_path(dir, name);
    let to = segment_path(dir, first);
    OpenOptions::new()
        .write(true)
        .open(&from)
        .and_then(|file| file.write_all_at(&encode_segment_header(first), 0))
        .and_then(|()| {
            if from == to {
                Ok(())
            } else {
                fs::rename(&from, &to)
            }
        })
        .map_err(|e| {
            io_error(
                component,
                format!(
                    "cannot renumber segment {} to {}",
                    from.display(),
                    to.display()
                ),
                e,
            )
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

/// Checks a segment's header: `Some((first id it says, file length))` when valid, `None` when
/// damaged. A newest
/// segment shorter than a header was being created when the process died: it is rewritten.
fn check_segment(
    dir: &Path,
    first: u64,
    is_last: bool,
    component: &str,
) -> Result<Option<(u64, u64)>, BufferError> {
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
        return Ok(Some((first, SEGMENT_HEADER_LEN)));
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact(&mut header).map_err(failed)?;
    match decode_segment_header(&header) {
        SegmentHeader::Valid { first_id } => Ok(Some((first_id, len))),
        SegmentHeader::Corrupt => Ok(None),
        SegmentHeader::UnknownVersion(version) => Err(BufferError::UnsupportedFormat {
            component: component.to_owned(),
            path,
            version,
            supported: FORMAT_VERSION,
        }),
    }
}

/// Reads a file at any offset through a buffer, for walking frames.
struct Window<'a> {
    file: &'a File,
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl<'a> Window<'a> {
    fn new(file: &'a File) -> Self {
        Window {
            file,
            buf: vec![0; WINDOW],
            start: 0,
            len: 0,
        }
    }

    /// Up to `n` (at most [`WINDOW`]) bytes at `offset`; fewer at the end of the file.
    fn get(&mut self, offset: u64, n: usize) -> io::Result<&[u8]> {
        let n = n.min(WINDOW);
        if offset < self.start || offset + n as u64 > self.start + self.len as u64 {
            self.start = offset;
            self.len = read_full_at(self.file, &mut self.buf, offset)?;
        }
        let from = usize::try_from(offset - self.start)
            .unwrap_or(usize::MAX)
            .min(self.len);
        let to = (from + n).min(self.len);
        Ok(&self.buf[from..to])
    }
}

/// Bytes read at once when walking a segment.
const WINDOW: usize = 256 << 10;

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What walking a segment's frames found.
#[derive(Debug)]
pub(super) struct Walk {
    /// Offset just past the last whole frame.
    pub(super) end: u64,
    /// Records: whole frames (a frame whose payload checksum fails still counts: it holds an
    /// id), and one for each damaged stretch skipped (it held at least one record).
    pub(super) records: u64,
    /// Damaged stretches skipped to resynchronise.
    pub(super) damaged: u64,
    /// Bytes in those stretches.
    pub(super) skipped: u64,
    /// Index of the record starting at the marked offset, when a frame starts there.
    pub(super) index_at: Option<u64>,
    /// The walk stopped at a damaged frame header with no intact frame after it and data that
    /// is not a zero-filled tail.
    pub(super) lost_tail: bool,
}

/// Walks the frames of a segment from offset `from` up to `limit`. A frame header that fails
/// its checksum is resynchronised past: the walk goes on at the next offset where an intact
/// frame starts (header and payload checksums both valid). It stops at a torn last frame, a
/// zero-filled tail, or damage with no intact frame after it.
pub(super) fn walk_frames(
    file: &File,
    from: u64,
    limit: u64,
    mark: Option<u64>,
) -> io::Result<Walk> {
    let mut window = Window::new(file);
    let mut walk = Walk {
        end: from,
        records: 0,
        damaged: 0,
        skipped: 0,
        index_at: None,
        lost_tail: false,
    };
    let mut header = [0u8; FRAME_HEADER_LEN];
    loop {
        let pos = walk.end;
        if mark == Some(pos) {
            walk.index_at = Some(walk.records);
        }
        if pos + FRAME_HEADER_LEN as u64 > limit {
            break; // clean end or a torn frame header
        }
        let bytes = window.get(pos, FRAME_HEADER_LEN)?;
        if bytes.len() < FRAME_HEADER_LEN {
            break;
        }
        header.copy_from_slice(bytes);
        match decode_frame_header(&header) {
            Some(frame) => {
                let frame_end = pos + FRAME_HEADER_LEN as u64 + u64::from(frame.len);
                if frame_end > limit {
                    break; // torn payload
                }
                walk.end = frame_end;
                walk.records += 1;
            }
            None => match resync_in(&mut window, pos + 1, limit)? {
                Some(next) => {
                    walk.damaged += 1;
                    walk.skipped += next - pos;
                    walk.records += 1;
                    walk.end = next;
                }
                None => {
                    walk.lost_tail = !is_zero(&mut window, pos, limit)?;
                    break;
                }
            },
        }
    }
    Ok(walk)
}

/// The first offset in `[from, limit)` where an intact frame starts and ends by `limit`.
pub(super) fn resync(file: &File, from: u64, limit: u64) -> io::Result<Option<u64>> {
    resync_in(&mut Window::new(file), from, limit)
}

fn resync_in(window: &mut Window<'_>, from: u64, limit: u64) -> io::Result<Option<u64>> {
    let mut pos = from;
    let mut header = [0u8; FRAME_HEADER_LEN];
    while pos + FRAME_HEADER_LEN as u64 <= limit {
        let want = usize::try_from(limit - pos)
            .unwrap_or(usize::MAX)
            .min(64 << 10);
        let chunk = window.get(pos, want)?.to_vec();
        if chunk.len() < FRAME_HEADER_LEN {
            break;
        }
        for i in 0..=chunk.len() - FRAME_HEADER_LEN {
            header.copy_from_slice(&chunk[i..i + FRAME_HEADER_LEN]);
            let Some(frame) = decode_frame_header(&header) else {
                continue;
            };
            let at = pos + i as u64;
            let payload_at = at + FRAME_HEADER_LEN as u64;
            if payload_at + u64::from(frame.len) > limit {
                continue;
            }
            let mut payload = vec![0u8; frame.len as usize];
            if read_full_at(window.file, &mut payload, payload_at)? == payload.len()
                && frame.matches(&payload)
            {
                return Ok(Some(at));
            }
        }
        pos += (chunk.len() - FRAME_HEADER_LEN + 1) as u64;
    }
    Ok(None)
}

fn is_zero(window: &mut Window<'_>, from: u64, limit: u64) -> io::Result<bool> {
    let mut pos = from;
    while pos < limit {
        let want = usize::try_from(limit - pos).unwrap_or(usize::MAX);
        let chunk = window.get(pos, want)?;
        if chunk.is_empty() {
            break;
        }
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += chunk.len() as u64;
    }
    Ok(true)
}
