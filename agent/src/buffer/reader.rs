//! The reading side of a buffer: takes records from memory while it can and from the segment
//! files otherwise, skips damaged records, and persists acks (removing delivered segments).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::format::{
    decode_frame_header, encode_ack, frame_len, segment_file_name, Position, ACK_FILE, ACK_LEN,
    ACK_TMP_FILE, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::recover::{read_full, resync, segment_path, walk_frames};
use super::space;
use super::{BufferError, Record, RecordId, Shared};
use crate::telemetry::{emit, InternalEvent};

/// Reads and acknowledges records, in order. One per buffer.
pub struct BufferReader {
    shared: Arc<Shared>,
    /// Id of the next record to return.
    next_read: u64,
    /// Where that record's frame starts on disk.
    cursor_segment: u64,
    cursor_offset: u64,
    /// The segment file being read, if any.
    file: Option<OpenSegment>,
    /// Records returned and not yet acknowledged, oldest first.
    in_flight: VecDeque<InFlight>,
}

struct OpenSegment {
    segment: u64,
    /// Offset the reader is at.
    position: u64,
    reader: BufReader<File>,
}

struct InFlight {
    id: u64,
    /// Position of the record after this one.
    next: Position,
    /// Bytes this record holds in the buffer's level.
    bytes: u64,
}

impl std::fmt::Debug for BufferReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferReader")
            .field("component", &self.shared.component)
            .field("next_read", &self.next_read)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// Why a disk read stopped.
enum DiskRead {
    /// Reached the first record held in memory (or the end of what was written).
    ReachedBound,
    /// The batch is full.
    BatchFull,
}

impl BufferReader {
    pub(super) fn new(shared: Arc<Shared>, start: Position) -> Self {
        BufferReader {
            shared,
            next_read: start.id,
            cursor_segment: start.segment,
            cursor_offset: start.offset,
            file: None,
            in_flight: VecDeque::new(),
        }
    }

    /// Waits for at least one unacknowledged record and returns up to `max_records` records
    /// totalling at most `max_bytes` (always at least one). Records returned but not acked are
    /// returned again after a restart, not again by this reader. Cancel-safe: dropping the
    /// future loses nothing. `BufferError::Closed` once every writer is gone and all was read,
    /// or once the directory was opened again.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, BufferError> {
        let shared = self.shared.clone();
        loop {
            // Created before looking, so a record stored in between still wakes us.
            let stored = shared.data.notified();
            let batch = self.read_available(max_records.max(1), max_bytes)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            {
                let state = shared.lock();
                if state.superseded || (state.writers_gone && self.next_read >= state.next_id) {
                    return Err(shared.closed());
                }
            }
            stored.await;
        }
    }

    /// Marks every record up to and including `through` as delivered, durably: the ack file is
    /// rewritten and segments wholly delivered are removed. Acking past the last returned
    /// record acks what was returned.
    pub fn ack(&mut self, through: RecordId) -> Result<(), BufferError> {
        let mut released = 0;
        let mut point = None;
        while let Some(first) = self.in_flight.front() {
            if first.id > through.0 {
                break;
            }
            released += first.bytes;
            point = Some(first.next);
            self.in_flight.pop_front();
        }
        let Some(mut point) = point else {
            return Ok(());
        };
        let shared = self.shared.clone();
        // The ack file is written and segments removed under the lock, so a reopen of the
        // directory (which takes the lock to supersede these handles) never races with it.
        let mut state = shared.lock();
        if state.superseded {
            return Err(shared.closed());
        }
        state.buffered = state.buffered.saturating_sub(released);
        let level = state.buffered;
        // The end of a sealed segment is the start of the next one; pointing there lets the
        // sealed segment go.
        if let (Some(len), Some(next)) = (
            state.sealed_len(point.segment),
            state.segment_after(point.segment),
        ) {
            if point.offset >= len {
                point = Position {
                    id: point.id.max(next),
                    segment: next,
                    offset: SEGMENT_HEADER_LEN,
                };
            }
        }
        state.acked = point;
        // Delivered segments are removed before the ack file is written: on a full disk that
        // frees the space the ack file needs, and an ack file left behind by a kill in between
        // points before every segment left, so delivery restarts at the oldest one, which is
        // where this ack point is.
        let mut removed = Ok(());
        {
            while state
                .sealed
                .front()
                .is_some_and(|s| s.first < point.segment)
            {
                let Some(delivered) = state.sealed.pop_front() else {
                    break;
                };
                if self
                    .file
                    .as_ref()
                    .is_some_and(|f| f.segment == delivered.first)
                {
                    self.file = None;
                }
                match fs::remove_file(segment_path(&shared.dir, delivered.first)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        removed = Err(shared.io_error(
                            format!(
                                "cannot remove segment {}",
                                segment_file_name(delivered.first)
                            ),
                            e,
                        ));
                    }
                }
            }
        }
        state.ack_unwritten = Some(point);
        let written = match shared.flush_ack(&mut state) {
            None => Ok(()),
            Some(e) => Err(shared.io_error("cannot write ack file".to_owned(), e)),
        };
        drop(state);
        // Acked bytes are free even when persisting the ack failed: those records are only
        // delivered again after a restart.
        shared.emit_level(level);
        shared.room.notify_waiters();
        written.and(removed)
    }

    /// Records available now, without waiting.
    fn read_available(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, BufferError> {
        let shared = self.shared.clone();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_records {
            let bound = {
                let mut state = shared.lock();
                if state.superseded {
                    return Err(shared.closed());
                }
                if std::mem::take(&mut state.reader_file_stale) {
                    self.file = None;
                }
                loop {
                    if out.len() >= max_records || self.next_read >= state.next_id {
                        return Ok(out);
                    }
                    let Some(front) = state.memory.front() else {
                        break;
                    };
                    if front.id > self.next_read {
                        break;
                    }
                    if front.id == self.next_read
                        && !out.is_empty()
                        && bytes + front.bytes.len() > max_bytes
                    {
                        return Ok(out);
                    }
                    let Some(record) = state.memory.pop_front() else {
                        break;
                    };
                    state.memory_bytes -= record.bytes.len();
                    if record.id < self.next_read {
                        continue; // already read from disk
                    }
                    bytes += record.bytes.len();
                    self.accept(
                        record.id,
                        record.segment,
                        record.offset,
                        record.bytes,
                        &mut out,
                    );
                }
                state.disk_bound()
            };
            match self.read_disk(bound, &mut out, &mut bytes, max_records, max_bytes)? {
                DiskRead::BatchFull => break,
                DiskRead::ReachedBound => {}
            }
        }
        Ok(out)
    }

    /// Hands out one record and remembers it for `ack`.
    fn accept(
        &mut self,
        id: u64,
        segment: u64,
        offset: u64,
        payload: Vec<u8>,
        out: &mut Vec<Record>,
    ) {
        let frame = frame_len(payload.len());
        let next = Position {
            id: id + 1,
            segment,
            offset: offset + frame,
        };
        self.in_flight.push_back(InFlight {
            id,
            next,
            bytes: frame,
        });
        self.next_read = next.id;
        self.cursor_segment = next.segment;
        self.cursor_offset = next.offset;
        out.push(Record {
            id: RecordId(id),
            bytes: payload,
        });
    }

    /// Reads records before `bound` from the segment files.
    fn read_disk(
        &mut self,
        bound: Position,
        out: &mut Vec<Record>,
        bytes: &mut usize,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<DiskRead, BufferError> {
        let shared = self.shared.clone();
        let mut header = [0u8; FRAME_HEADER_LEN];
        loop {
            if self.next_read >= bound.id {
                return Ok(DiskRead::ReachedBound);
            }
            if out.len() >= max_records {
                return Ok(DiskRead::BatchFull);
            }
            let segment_end = {
                let state = shared.lock();
                if state.superseded {
                    return Err(shared.closed());
                }
                if self.cursor_segment == bound.segment {
                    bound.offset
                } else {
                    state.sealed_len(self.cursor_segment).unwrap_or(u64::MAX)
                }
            };
            let segment_name = segment_file_name(self.cursor_segment);
            let cursor_offset = self.cursor_offset;
            let read_error = |e| shared.io_error(format!("cannot read segment {segment_name}"), e);
            let file = match self.open_cursor() {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.skip_rest_of_segment(bound);
                    continue;
                }
                Err(e) => return Err(read_error(e)),
            };
            let n = read_full(&mut file.reader, &mut header).map_err(read_error)?;
            file.position += n as u64;
            if n < FRAME_HEADER_LEN {
                // The end of this segment (n == 0) or a frame cut short.
                self.skip_rest_of_segment(bound);
                continue;
            }
            let Some(frame) = decode_frame_header(&header) else {
                if !self.resynchronise(bound)? {
                    self.skip_rest_of_segment(bound);
                }
                continue;
            };
            let len = frame.len as usize;
            if cursor_offset + frame_len(len) > segment_end {
                self.skip_rest_of_segment(bound);
                continue;
            }
            if !out.is_empty() && *bytes + len > max_bytes {
                file.reader
                    .seek_relative(-(FRAME_HEADER_LEN as i64))
                    .map_err(read_error)?;
                file.position -= FRAME_HEADER_LEN as u64;
                return Ok(DiskRead::BatchFull);
            }
            let mut payload = vec![0u8; len];
            let n = read_full(&mut file.reader, &mut payload).map_err(read_error)?;
            file.position += n as u64;
            if n < len {
                self.skip_rest_of_segment(bound);
                continue;
            }
            if frame.matches(&payload) {
                *bytes += len;
                let (segment, offset) = (self.cursor_segment, self.cursor_offset);
                self.accept(self.next_read, segment, offset, payload, out);
            } else {
                // The frame is intact, only its payload is damaged: skip this one record.
                let skipped = frame_len(len);
                self.next_read += 1;
                self.cursor_offset += skipped;
                emit(InternalEvent::Dropped {
                    component: &shared.component,
                    events: 1,
                    reason: "corrupt_record",
                });
                self.release(skipped);
            }
        }
    }

    /// Makes sure the open file is the cursor's segment, positioned at the cursor.
    fn open_cursor(&mut self) -> io::Result<&mut OpenSegment> {
        let (segment, offset) = (self.cursor_segment, self.cursor_offset);
        if self.file.as_ref().is_none_or(|f| f.segment != segment) {
            let file = File::open(segment_path(&self.shared.dir, segment))?;
            self.file = Some(OpenSegment {
                segment,
                position: 0,
                reader: BufReader::with_capacity(128 << 10, file),
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::ErrorKind::NotFound.into());
        };
        if file.position != offset {
            let delta = i64::try_from(offset).unwrap_or(i64::MAX)
                - i64::try_from(file.position).unwrap_or(i64::MAX);
            file.reader.seek_relative(delta)?;
            file.position = offset;
        }
        Ok(file)
    }

    /// Moves the cursor from a damaged frame header to the next intact frame of its segment
    /// (header and payload checksums valid). Its id is counted back from the segment's end,
    /// whose id is known (the next segment's first record, or the disk bound); the records in
    /// between are counted as dropped and the skipped bytes reported. `false` when no intact
    /// frame follows, or the ids do not fit: the caller then leaves the segment.
    fn resynchronise(&mut self, bound: Position) -> Result<bool, BufferError> {
        let shared = self.shared.clone();
        let segment = self.cursor_segment;
        let (end, end_id) = {
            let state = shared.lock();
            if state.superseded {
                return Err(shared.closed());
            }
            if segment == bound.segment {
                (bound.offset, bound.id)
            } else {
                match (state.sealed_len(segment), state.segment_after(segment)) {
                    (Some(len), Some(next)) => (len, next),
                    _ => return Ok(false),
                }
            }
        };
        let name = segment_file_name(segment);
        let read_error = |e| shared.io_error(format!("cannot read segment {name}"), e);
        let file = match File::open(segment_path(&shared.dir, segment)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(read_error(e)),
        };
        let damaged_at = self.cursor_offset;
        let Some(at) = resync(&file, damaged_at + 1, end).map_err(read_error)? else {
            return Ok(false);
        };
        let after = walk_frames(&file, at, end, None).map_err(read_error)?;
        if after.end != end {
            return Ok(false);
        }
        let Some(id) = end_id
            .checked_sub(after.records)
            .filter(|&id| id > self.next_read)
        else {
            return Ok(false);
        };
        let lost = id - self.next_read;
        let skipped = at - damaged_at;
        emit(InternalEvent::Dropped {
            component: &shared.component,
            events: lost,
            reason: "corrupt_record",
        });
        emit(InternalEvent::BufferSkipped {
            component: &shared.component,
            bytes: skipped,
        });
        emit(InternalEvent::Error {
            component: &shared.component,
            error: "CorruptBufferSegment",
            message: &format!(
                "segment {name} has a damaged frame header at offset {damaged_at}: skipped \
                 {skipped} bytes ({lost} records) to the next intact record {id} at offset {at}"
            ),
        });
        self.next_read = id;
        self.cursor_offset = at;
        self.release(skipped);
        Ok(true)
    }

    /// Leaves the cursor's segment: at its end, or because the rest cannot be framed. Records
    /// between the cursor and where reading resumes are counted as dropped.
    fn skip_rest_of_segment(&mut self, bound: Position) {
        let shared = self.shared.clone();
        let (resume, skipped_bytes) = {
            let state = shared.lock();
            if state.superseded {
                // The new owner may have removed what is missing here; not a loss.
                return;
            }
            match state.segment_after(self.cursor_segment) {
                Some(next) if self.cursor_segment < bound.segment => {
                    let len = state
                        .sealed_len(self.cursor_segment)
                        .unwrap_or(self.cursor_offset);
                    let resume = Position {
                        id: next,
                        segment: next,
                        offset: SEGMENT_HEADER_LEN,
                    };
                    (resume, len.saturating_sub(self.cursor_offset))
                }
                _ => (bound, bound.offset.saturating_sub(self.cursor_offset)),
            }
        };
        let lost = resume.id.saturating_sub(self.next_read);
        if lost > 0 {
            emit(InternalEvent::Dropped {
                component: &shared.component,
                events: lost,
                reason: "corrupt_record",
            });
            emit(InternalEvent::Error {
                component: &shared.component,
                error: "CorruptBufferSegment",
                message: &format!(
                    "segment {} is damaged at offset {}; skipped to record {}",
                    segment_file_name(self.cursor_segment),
                    self.cursor_offset,
                    resume.id
                ),
            });
        }
        self.next_read = self.next_read.max(resume.id);
        self.cursor_segment = resume.segment;
        self.cursor_offset = resume.offset;
        if skipped_bytes > 0 {
            self.release(skipped_bytes);
        }
    }

    /// Takes bytes that will never be delivered out of the buffer's level.
    fn release(&self, bytes: u64) {
        let level = {
            let mut state = self.shared.lock();
            state.buffered = state.buffered.saturating_sub(bytes);
            state.buffered
        };
        self.shared.emit_level(level);
        self.shared.room.notify_waiters();
    }
}

/// Writes the ack point `point`: in place through `handle`, the ack file kept open, when there
/// is one; otherwise (the first ack of a run, or after an in-place write failed) by
/// [`write_ack_file`], after which the new file is opened into `handle`. The in-place write is
/// one 40-byte write at offset 0: a kill cannot tear it, and a torn one after a machine crash
/// fails its checksum and only means redelivering, as for [`write_ack_file`]'s own fallback.
pub(super) fn write_ack(dir: &Path, handle: &mut Option<File>, point: Position) -> io::Result<()> {
    let path = dir.join(ACK_FILE);
    if let Some(file) = handle.as_ref() {
        let bytes = encode_ack(point);
        let in_place =
            space::reserve(&path, ACK_LEN as u64).and_then(|()| file.write_all_at(&bytes, 0));
        if in_place.is_ok() {
            return Ok(());
        }
        *handle = None;
    }
    write_ack_file(dir, point)?;
    *handle = OpenOptions::new().write(true).open(&path).ok();
    Ok(())
}

/// Replaces the ack file atomically: written whole to a temporary file, then renamed over it.
/// When that fails (a full disk has no block for the temporary file), the temporary file is
/// removed and the existing ack file is overwritten in place, which needs no new space: one
/// 40-byte write at offset 0 that a kill cannot tear (a torn one after a machine crash fails its
/// checksum and only means redelivering).
pub(super) fn write_ack_file(dir: &Path, point: Position) -> io::Result<()> {
    let bytes = encode_ack(point);
    let tmp = dir.join(ACK_TMP_FILE);
    let replaced = space::reserve(&tmp, ACK_LEN as u64)
        .and_then(|()| fs::write(&tmp, bytes))
        .and_then(|()| fs::rename(&tmp, dir.join(ACK_FILE)));
    let Err(error) = replaced else {
        return Ok(());
    };
    let _ = fs::remove_file(&tmp);
    let path = dir.join(ACK_FILE);
    let in_place = OpenOptions::new().write(true).open(&path).and_then(|file| {
        space::reserve(&path, ACK_LEN as u64)?;
        file.write_all_at(&bytes, 0)
    });
    in_place.map_err(|_| error)
}
