//! The per-sink buffer, between the [`crate::router`] and a sink's
//! [`driver`](crate::sinks::driver): a bounded memory front over an append-only disk queue,
//! bounded in bytes. Every sink has its own buffer directory; [`open`] recovers whatever a
//! previous run left there.
//!
//! # Guarantees
//!
//! - **Stored means written.** [`BufferWriter::push`] returns [`Pushed::Stored`] only after the
//!   record was handed to the kernel with write(2) (one `writev` of frame header and payload,
//!   made on the calling task: a page-cache write is short enough not to need a thread hop).
//!   It then survives the agent being killed (SIGKILL, OOM kill, panic): the data is in the
//!   page cache and reaches the file.
//! - **Machine crashes.** Segment files are fsynced by a background task at most once per
//!   `fsync_interval` (default 1 s) when something was written, and every sealed segment (and the
//!   directory, after a segment was created) in the same pass. A power loss or kernel crash can
//!   therefore lose up to about one second of stored records; nothing already fsynced is lost.
//!   Without a Tokio runtime at [`open`], segments are fsynced when they are sealed and when the
//!   last writer is dropped; [`BufferWriter::sync`] forces it at any time.
//! - **At least once.** Records come out of [`BufferReader::next_batch`] in push order. A record
//!   returned but not acknowledged with [`BufferReader::ack`] is returned again after a restart,
//!   so a crash between a send and its ack gives duplicates, never loss. `ack(through)`
//!   acknowledges every record returned up to `through`: a reader with several sends in flight,
//!   answered in any order, acks only through the last record before the oldest unanswered
//!   send (the sink driver's window does so), never past it.
//! - **Bounded.** `max_bytes` bounds the bytes of records stored and not yet acknowledged
//!   (records being sent count until acked), frame headers included. Disk use stays below
//!   `max_bytes` plus one segment (the oldest segment is removed once all of it is acked).
//!   When full, [`WhenFull::Block`] makes `push` wait until acks free room and
//!   [`WhenFull::DropNewest`] discards the new record ([`Pushed::Dropped`]); `try_push` never
//!   waits. A record that could never fit is refused with [`BufferError::TooLarge`].
//! - **A full disk heals by itself.** A write the file system refuses (`ENOSPC`) fails the
//!   push with [`BufferError::Io`] (sources answer 503/`UNAVAILABLE` with `Retry-After`) and
//!   stores nothing. Space comes back without a restart as delivery proceeds: every ack removes
//!   the segments wholly delivered *before* it rewrites the ack file, and when every record on
//!   disk was delivered the next push empties the active segment in place and renames it to the
//!   next record id (no new space needed) before writing. When `ack.tmp` cannot be written the
//!   ack file is overwritten in place (it is created at open, so it always exists); an ack that
//!   still cannot be written is retried on the next ack and every fsync tick. Delivered records
//!   are not sent again, after space frees nor after a restart.
//! - **Memory.** Records not yet read are also kept in memory, up to `memory_bytes` (the newest
//!   ones win), so a reader that keeps up never reads the disk; a reader behind (a sink outage)
//!   reads older records back from the segments.
//! - **One owner per directory.** Opening a directory whose buffer is still open in this process
//!   (a configuration reload while old handles linger) hands the buffer over: the old writers
//!   and reader get [`BufferError::Closed`] from then on and can no longer touch the files,
//!   and what the old reader had not acked is delivered again by the new one.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian; every checksum is CRC-32 (IEEE 802.3, as in zlib and gzip).
//!
//! **Segment files** `NNNNNNNNNNNNNNNNNNNN.seg`, named by the zero-padded id of their first
//! record, are written append-only:
//!
//! ```text
//! header  (24 bytes): magic "VIGILSEG" (8) | format version u32 = 1 | first record id u64
//!                     | CRC-32 of the preceding 20 bytes u32
//! record (12 + n)   : payload length n u32 | CRC-32 of the payload u32
//!                     | CRC-32 of the preceding 8 bytes u32 | payload (n bytes)
//! ```
//!
//! Record ids are consecutive: the k-th record of a segment (from 0) has id `first + k`. A new
//! segment is started when the next record would make the current one exceed `segment_bytes`.
//!
//! **Ack file** `ack` holds the position of the first unacknowledged record. The first ack of a
//! run writes it whole to `ack.tmp` and renames that over `ack` (atomic on POSIX file systems);
//! later acks overwrite its 40 bytes in place through a descriptor kept open (one write at
//! offset 0, which a kill cannot tear), so delivering a batch costs no new inode and no rename
//! (on ext4 a rename over a file also starts the write-back of the new one):
//!
//! ```text
//! ack (40 bytes): magic "VIGILACK" (8) | format version u32 = 1 | next record id u64
//!                 | segment (its first record id) u64 | byte offset in that segment u64
//!                 | CRC-32 of the preceding 36 bytes u32
//! ```
//!
//! The ack file is not fsynced: losing it to a machine crash only means redelivering. When the
//! temporary file cannot be written (a full disk) the 40 bytes are overwritten in place; a kill
//! cannot tear that single write, and a torn one after a machine crash fails its checksum.
//!
//! # Recovery on open
//!
//! - Segments wholly before the ack point are deleted (acked segments are also deleted as soon as
//!   the ack passes them, before the ack file is rewritten: an ack file pointing before every
//!   segment means "start at the oldest").
//! - Names are checked against contents. Every segment's frames are walked: a segment whose
//!   name (or header id) falls inside the previous segment's records would give two records one
//!   id, so it is renumbered (header rewritten in place, file renamed) and reported
//!   (`vigil_agent_errors_total{error="InconsistentBufferSegment"}`). The ack file must point
//!   at a segment there is (or before all of them) and at a frame start; its record id is taken
//!   from the records there, not from the file. An ack file that does not fit is reported
//!   (`InconsistentBufferAck`) and delivery restarts at the oldest segment (or that segment's
//!   start): redelivery, never a silent stall or loss. The corrected ack file is written.
//! - A segment or ack file with another format version is an error
//!   ([`BufferError::UnsupportedFormat`]), never silently rewritten.
//! - A segment whose header is damaged is removed and its records counted as dropped
//!   (`vigil_agent_dropped_events_total{reason="corrupt_record"}`); a damaged ack file restarts
//!   delivery at the oldest segment.
//! - In the newest segment, a torn last record (a write cut short by the kill) or a zero-filled
//!   tail is truncated away; such a record was never reported as stored. Damage with no intact
//!   frame after it is truncated too and counted as (at least one) dropped record.
//! - When reading, a record whose payload checksum fails is skipped and counted as dropped and
//!   the segment continues with the next frame. When a frame header itself fails its checksum,
//!   the reader resynchronises: it scans forward for the next offset where a frame's header and
//!   payload checksums both hold and goes on there. That record's id is counted back from the
//!   segment's end (the next segment's first id, or the newest record), so the records lost in
//!   between are counted exactly as dropped (`reason="corrupt_record"`) and the bytes skipped in
//!   `vigil_agent_buffer_skipped_bytes_total`, with an error naming the segment and offset.
//!   (In the newest segment, recovery counts one record for a damaged stretch.) Only when no
//!   intact frame follows is the rest of the segment skipped.
//!
//! Telemetry: `Buffered{component, bytes}` is emitted whenever the level changes; dropping a
//! record under `dropNewest` is reported by the caller, who knows how many events it held
//! ([`crate::router`] does), and counted in [`BufferWriter::dropped_records`].

mod format;
mod reader;
mod recover;
mod space;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use vigil_crds::monitored_app::WhenFull;

use crate::telemetry::{emit, InternalEvent};
use format::{
    encode_frame_header, encode_segment_header, frame_len, segment_file_name, Position,
    SEGMENT_HEADER_LEN,
};
use recover::{create_segment, io_error, recover, segment_path};

pub use reader::BufferReader;
/// Gives a buffer directory a simulated disk size in unit tests (a full disk answers `ENOSPC`).
#[cfg(test)]
pub(crate) use space::quota as disk_quota;

/// Position of a record in the buffer. Ids grow by one per pushed record and are kept across
/// restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

/// One stored record.
#[derive(Clone, Debug)]
pub struct Record {
    /// Where the record is; pass it to [`BufferReader::ack`] once delivered.
    pub id: RecordId,
    /// The bytes that were pushed.
    pub bytes: Vec<u8>,
}

/// What became of a pushed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the segment file: survives the agent being killed.
    Stored,
    /// Discarded because the buffer is full and the policy is `dropNewest`.
    Dropped,
}

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The buffer has no room and the policy is `block` (only from `try_push`).
    #[error("buffer {component} is full")]
    Full { component: String },
    /// A file operation failed.
    #[error("buffer {component}: {message}")]
    Io {
        component: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// Every writer is gone and every record was read.
    #[error("buffer {component} is closed")]
    Closed { component: String },
    /// A record larger than the whole buffer.
    #[error("buffer {component}: a record of {bytes} bytes can never fit in a buffer of {max_bytes} bytes")]
    TooLarge {
        component: String,
        bytes: u64,
        max_bytes: u64,
    },
    /// A file in the buffer directory was written in another on-disk format version.
    #[error("buffer {component}: {path} is in on-disk format version {version}, this agent reads version {supported}")]
    UnsupportedFormat {
        component: String,
        path: PathBuf,
        version: u32,
        supported: u32,
    },
}

impl BufferError {
    /// A stable PascalCase name for the `error` label of `vigil_agent_errors_total`.
    pub fn category(&self) -> &'static str {
        match self {
            BufferError::Full { .. } => "BufferFull",
            BufferError::Io { .. } => "BufferIo",
            BufferError::Closed { .. } => "BufferClosed",
            BufferError::TooLarge { .. } => "RecordTooLarge",
            BufferError::UnsupportedFormat { .. } => "UnsupportedBufferFormat",
        }
    }
}

/// How a buffer is sized and flushed.
#[derive(Clone, Debug)]
pub struct BufferOptions {
    /// Upper bound on stored, unacknowledged bytes (frame headers included).
    pub max_bytes: u64,
    /// What `push` does when a record does not fit.
    pub when_full: WhenFull,
    /// Size at which a segment is sealed and a new one started. Default: an eighth of
    /// `max_bytes`, between 64 KiB and 32 MiB.
    pub segment_bytes: u64,
    /// Memory for records not yet read. Default: a quarter of `max_bytes`, at most 2 MiB.
    pub memory_bytes: usize,
    /// Longest time written data waits for fsync. Default 1 s; at least 1 ms.
    pub fsync_interval: Duration,
}

impl BufferOptions {
    /// The defaults for a buffer of `max_bytes`.
    pub fn new(max_bytes: u64, when_full: WhenFull) -> Self {
        BufferOptions {
            max_bytes,
            when_full,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 32 << 20),
            memory_bytes: usize::try_from((max_bytes / 4).min(2 << 20)).unwrap_or(2 << 20),
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// The name of the segment file whose first record is `first_id` (for the fuzz target that
/// lays out buffer directories by hand).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzzing_segment_name(first_id: u64) -> String {
    format::segment_file_name(first_id)
}

/// The name of the ack file (for the fuzz target that lays out buffer directories by hand).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzzing_ack_name() -> &'static str {
    format::ACK_FILE
}

/// Opens (or creates, or recovers) the buffer in `dir` with default options for `max_bytes`.
/// `component` names the buffer in telemetry and errors (the sink's component name).
pub fn open(
    dir: &Path,
    max_bytes: u64,
    when_full: WhenFull,
    component: &str,
) -> Result<(BufferWriter, BufferReader), BufferError> {
    open_with(dir, BufferOptions::new(max_bytes, when_full), component)
}

/// Opens (or creates, or recovers) the buffer in `dir`.
pub fn open_with(
    dir: &Path,
    options: BufferOptions,
    component: &str,
) -> Result<(BufferWriter, BufferReader), BufferError> {
    let options = BufferOptions {
        segment_bytes: options.segment_bytes.max(SEGMENT_HEADER_LEN + 1),
        fsync_interval: options.fsync_interval.max(Duration::from_millis(1)),
        ..options
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        io_error(
            component,
            format!("cannot create directory {}", dir.display()),
            e,
        )
    })?;
    let key = dir.canonicalize().map_err(|e| {
        io_error(
            component,
            format!("cannot resolve directory {}", dir.display()),
            e,
        )
    })?;
    // Held until the new buffer is registered, so two opens of one directory cannot interleave.
    let mut open_buffers = open_buffers()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(previous) = open_buffers.get(&key).and_then(Weak::upgrade) {
        previous.supersede();
    }
    let recovered = recover(dir, component)?;
    let runtime = tokio::runtime::Handle::try_current().ok();
    let shared = Arc::new(Shared {
        component: component.to_owned(),
        dir: dir.to_owned(),
        options,
        background_sync: runtime.is_some(),
        state: Mutex::new(State {
            active: recovered.active,
            active_first: recovered.active_first,
            active_len: recovered.active_len,
            needs_roll: false,
            sealed: recovered.sealed,
            next_id: recovered.next_id,
            buffered: recovered.buffered,
            memory: VecDeque::new(),
            memory_bytes: 0,
            dirty: false,
            unsynced: Vec::new(),
            directory_dirty: false,
            writers_gone: false,
            superseded: false,
            acked: recovered.start,
            ack_unwritten: None,
            ack_file: None,
            short_of_space: false,
            reader_file_stale: false,
        }),
        data: Notify::new(),
        room: Notify::new(),
        dropped: AtomicU64::new(0),
    });
    emit(InternalEvent::Buffered {
        component,
        bytes: recovered.buffered,
    });
    if let Some(runtime) = runtime {
        spawn_sync_task(&runtime, Arc::downgrade(&shared));
    }
    open_buffers.retain(|_, buffer| buffer.strong_count() > 0);
    open_buffers.insert(key, Arc::downgrade(&shared));
    drop(open_buffers);
    let writer = BufferWriter {
        token: Arc::new(WriterToken {
            shared: shared.clone(),
        }),
    };
    let reader = BufferReader::new(shared, recovered.start);
    Ok((writer, reader))
}

/// A sealed (no longer written) segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sealed {
    first: u64,
    len: u64,
}

/// A record kept in memory for the reader, with where it is on disk.
struct MemoryRecord {
    id: u64,
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
}

/// Everything behind the buffer's lock.
struct State {
    /// The segment being appended to.
    active: File,
    active_first: u64,
    active_len: u64,
    /// A failed write could not be undone: start a new segment before the next record.
    needs_roll: bool,
    sealed: VecDeque<Sealed>,
    next_id: u64,
    buffered: u64,
    /// Unread records `[memory.front().id, next_id)`, newest last.
    memory: VecDeque<MemoryRecord>,
    memory_bytes: usize,
    /// Written since the last fsync.
    dirty: bool,
    /// Sealed segments not yet fsynced.
    unsynced: Vec<File>,
    /// A segment was created since the directory was last fsynced.
    directory_dirty: bool,
    writers_gone: bool,
    /// The directory was opened again: these handles must not touch it any more.
    superseded: bool,
    /// The reader's ack point: the first record not yet delivered.
    acked: Position,
    /// An ack point that could not be written to the ack file yet (retried on every ack, every
    /// sync tick and when segments are freed).
    ack_unwritten: Option<Position>,
    /// The ack file, kept open so that acks overwrite it in place ([`reader::write_ack`]).
    ack_file: Option<File>,
    /// The last write failed (a full disk, as a rule): the next one first frees delivered space.
    short_of_space: bool,
    /// The active segment was emptied and renamed: the reader must let go of any segment file
    /// it has open.
    reader_file_stale: bool,
}

impl State {
    /// The first record the reader cannot take from memory, and where it is on disk.
    fn disk_bound(&self) -> Position {
        match self.memory.front() {
            Some(front) => Position {
                id: front.id,
                segment: front.segment,
                offset: front.offset,
            },
            None => Position {
                id: self.next_id,
                segment: self.active_first,
                offset: self.active_len,
            },
        }
    }

    /// First record id of the segment after `segment`.
    fn segment_after(&self, segment: u64) -> Option<u64> {
        self.sealed
            .iter()
            .map(|s| s.first)
            .chain(std::iter::once(self.active_first))
            .find(|&first| first > segment)
    }

    /// Length of a sealed segment (`None` for the active one).
    fn sealed_len(&self, segment: u64) -> Option<u64> {
        self.sealed
            .iter()
            .find(|s| s.first == segment)
            .map(|s| s.len)
    }

    /// The fsyncs due now.
    fn take_sync_work(&mut self, dir: &Path) -> io::Result<SyncWork> {
        let mut files = std::mem::take(&mut self.unsynced);
        if self.dirty {
            files.push(self.active.try_clone()?);
            self.dirty = false;
        }
        let directory = std::mem::take(&mut self.directory_dirty).then(|| dir.to_owned());
        Ok(SyncWork { files, directory })
    }
}

/// Files and a directory to fsync, done outside the lock.
struct SyncWork {
    files: Vec<File>,
    directory: Option<PathBuf>,
}

impl SyncWork {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.directory.is_none()
    }

    fn run(self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some(dir) = self.directory {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// State shared by the writers and the reader of one buffer.
struct Shared {
    component: String,
    dir: PathBuf,
    options: BufferOptions,
    /// A background task fsyncs; otherwise sealed segments are fsynced when sealed.
    background_sync: bool,
    state: Mutex<State>,
    /// Wakes the reader when a record was stored or the writers are gone.
    data: Notify,
    /// Wakes blocked writers when acks freed room.
    room: Notify,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every field update is
        // a plain assignment after the I/O succeeded), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed(&self) -> BufferError {
        BufferError::Closed {
            component: self.component.clone(),
        }
    }

    /// Hands the directory to a new buffer: from now on these handles fail with `Closed`.
    /// Every file operation of writers and reader happens under the lock, so none is under way
    /// once this returns.
    fn supersede(&self) {
        self.lock().superseded = true;
        self.data.notify_one();
        self.room.notify_waiters();
    }

    fn io_error(&self, message: String, source: io::Error) -> BufferError {
        io_error(&self.component, message, source)
    }

    fn emit_level(&self, bytes: u64) {
        emit(InternalEvent::Buffered {
            component: &self.component,
            bytes,
        });
    }

    /// Fsyncs whatever is due, outside the lock.
    fn sync_now(&self) -> Result<(), BufferError> {
        let work = self
            .lock()
            .take_sync_work(&self.dir)
            .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))?;
        work.run()
            .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))
    }

    /// Stores `record` or says why not; under `block` without room the record comes back.
    fn store(&self, record: Vec<u8>) -> Result<Store, BufferError> {
        let frame = frame_len(record.len());
        let max_bytes = self.options.max_bytes;
        if u32::try_from(record.len()).is_err() || frame > max_bytes {
            return Err(BufferError::TooLarge {
                component: self.component.clone(),
                bytes: frame,
                max_bytes,
            });
        }
        let mut state = self.lock();
        if state.superseded {
            return Err(self.closed());
        }
        if state.buffered + frame > max_bytes {
            drop(state);
            return Ok(match self.options.when_full {
                WhenFull::Block => Store::NoRoom(record),
                WhenFull::DropNewest => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Store::Done(Pushed::Dropped)
                }
            });
        }
        let mut retried = false;
        let offset = loop {
            if state.needs_roll
                || (state.active_len > SEGMENT_HEADER_LEN
                    && (state.active_len + frame > self.options.segment_bytes
                        || (state.short_of_space && state.acked.id == state.next_id)))
            {
                // A full disk whose data was all delivered: the roll removes the delivered
                // active segment before it creates the next one, which frees the space it needs.
                self.roll(&mut state)?;
            }
            let offset = state.active_len;
            let path = segment_path(&self.dir, state.active_first);
            let written = space::reserve(&path, offset + frame).and_then(|()| {
                write_frame(&mut state.active, &encode_frame_header(&record), &record)
            });
            let Err(e) = written else {
                break offset;
            };
            state.short_of_space = true;
            // Cut off whatever part of the frame reached the file; if even that fails, the
            // next record goes to a new segment and readers stop at the damage.
            if state.active.set_len(offset).is_err() {
                state.needs_roll = true;
            }
            if !retried && state.acked.id == state.next_id && state.active_len > SEGMENT_HEADER_LEN
            {
                // Everything on disk was delivered: free it and try once more.
                retried = true;
                continue;
            }
            return Err(self.io_error(
                format!(
                    "cannot write to segment {}",
                    segment_file_name(state.active_first)
                ),
                e,
            ));
        };
        state.short_of_space = false;
        let id = state.next_id;
        let segment = state.active_first;
        state.next_id += 1;
        state.active_len += frame;
        state.buffered += frame;
        state.dirty = true;
        let len = record.len();
        if len <= self.options.memory_bytes {
            while state.memory_bytes + len > self.options.memory_bytes {
                match state.memory.pop_front() {
                    Some(evicted) => state.memory_bytes -= evicted.bytes.len(),
                    None => break,
                }
            }
            state.memory_bytes += len;
            state.memory.push_back(MemoryRecord {
                id,
                segment,
                offset,
                bytes: record,
            });
        } else {
            // Memory must hold a suffix of the unread records: this one cannot be in it.
            state.memory.clear();
            state.memory_bytes = 0;
        }
        let level = state.buffered;
        drop(state);
        self.emit_level(level);
        self.data.notify_one();
        Ok(Store::Done(Pushed::Stored))
    }

    /// Seals the active segment and starts a new one at the next record id. When every record
    /// was delivered, the old segments are removed first: the new one never needs more space
    /// than they held (a full disk frees itself this way).
    fn roll(&self, state: &mut State) -> Result<(), BufferError> {
        if state.acked.id == state.next_id {
            return self.reclaim(state);
        }
        let first = state.next_id;
        let file = create_segment(&self.dir, first).map_err(|e| {
            state.short_of_space = true;
            self.io_error(
                format!("cannot create segment {}", segment_file_name(first)),
                e,
            )
        })?;
        let sealed = std::mem::replace(&mut state.active, file);
        state.sealed.push_back(Sealed {
            first: state.active_first,
            len: state.active_len,
        });
        state.active_first = first;
        state.active_len = SEGMENT_HEADER_LEN;
        state.needs_roll = false;
        state.directory_dirty = true;
        if state.dirty {
            state.unsynced.push(sealed);
            state.dirty = false;
        }
        if !self.background_sync {
            let work = state
                .take_sync_work(&self.dir)
                .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))?;
            work.run()
                .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))?;
        }
        Ok(())
    }
}

impl Shared {
    /// Rolls a buffer whose every record was delivered: removes the sealed segments, empties
    /// the active one in place (its blocks are freed even while a reader still has it open),
    /// gives it the next record id as header and name, and points the ack file at it. A kill at
    /// any step leaves a directory that recovers without redelivering anything.
    fn reclaim(&self, state: &mut State) -> Result<(), BufferError> {
        let first = state.next_id;
        state.unsynced.clear();
        while let Some(sealed) = state.sealed.pop_front() {
            match std::fs::remove_file(segment_path(&self.dir, sealed.first)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    state.sealed.push_front(sealed);
                    return Err(self.io_error(
                        format!(
                            "cannot remove delivered segment {}",
                            segment_file_name(sealed.first)
                        ),
                        e,
                    ));
                }
            }
        }
        // Until the emptied segment has its new header, no record may be appended to it.
        state.needs_roll = true;
        state.reader_file_stale = true;
        let old = segment_path(&self.dir, state.active_first);
        let new = segment_path(&self.dir, first);
        // Emptied, renamed, then given its header: a kill in between leaves an empty newest
        // segment, which recovery gives the header its name says.
        let renewed = state
            .active
            .set_len(0)
            .and_then(|()| std::fs::rename(&old, &new))
            .and_then(|()| space::reserve(&new, SEGMENT_HEADER_LEN))
            .and_then(|()| (&state.active).write_all(&encode_segment_header(first)));
        if new.exists() {
            state.active_first = first;
        }
        if let Err(e) = renewed {
            state.short_of_space = true;
            return Err(self.io_error(
                format!("cannot start segment {}", segment_file_name(first)),
                e,
            ));
        }
        state.active_first = first;
        state.active_len = SEGMENT_HEADER_LEN;
        state.needs_roll = false;
        state.dirty = true;
        state.directory_dirty = true;
        let point = Position {
            id: first,
            segment: first,
            offset: SEGMENT_HEADER_LEN,
        };
        state.acked = point;
        state.ack_unwritten = Some(point);
        self.flush_ack(state);
        if !self.background_sync {
            let work = state
                .take_sync_work(&self.dir)
                .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))?;
            work.run()
                .map_err(|e| self.io_error("cannot sync segment".to_owned(), e))?;
        }
        Ok(())
    }

    /// Writes the ack point the ack file is behind on, if any; a failure is reported and left
    /// for the next attempt.
    fn flush_ack(&self, state: &mut State) -> Option<io::Error> {
        let point = state.ack_unwritten?;
        match reader::write_ack(&self.dir, &mut state.ack_file, point) {
            Ok(()) => {
                state.ack_unwritten = None;
                None
            }
            Err(e) => {
                emit(InternalEvent::Error {
                    component: &self.component,
                    error: "BufferAckWrite",
                    message: &format!("cannot write ack file (retried later): {e}"),
                });
                Some(e)
            }
        }
    }
}

/// Outcome of one attempt to store.
enum Store {
    Done(Pushed),
    NoRoom(Vec<u8>),
}

/// Writes a frame header and payload with as few system calls as the kernel allows (one
/// `writev` unless it comes back short).
fn write_frame(file: &mut File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let total = header.len() + payload.len();
    let mut written = 0;
    while written < total {
        let result = if written < header.len() {
            file.write_vectored(&[IoSlice::new(&header[written..]), IoSlice::new(payload)])
        } else {
            file.write(&payload[written - header.len()..])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every `fsync_interval`, fsyncs what was written; ends when the buffer is dropped.
fn spawn_sync_task(runtime: &tokio::runtime::Handle, shared: Weak<Shared>) {
    let interval = shared
        .upgrade()
        .map_or(Duration::from_secs(1), |s| s.options.fsync_interval);
    runtime.spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(shared) = shared.upgrade() else {
                break;
            };
            let component = shared.component.clone();
            let work = {
                let mut state = shared.lock();
                if !state.superseded {
                    shared.flush_ack(&mut state);
                }
                state.take_sync_work(&shared.dir)
            };
            drop(shared);
            let result = match work {
                Ok(work) if work.is_empty() => Ok(()),
                Ok(work) => tokio::task::spawn_blocking(move || work.run())
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e))),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                emit(InternalEvent::Error {
                    component: &component,
                    error: "BufferSync",
                    message: &format!("cannot fsync buffer segment: {e}"),
                });
            }
        }
    });
}

/// The buffers open in this process, by canonical directory.
fn open_buffers() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Held by every clone of a writer; dropping the last one closes the writing side.
struct WriterToken {
    shared: Arc<Shared>,
}

impl Drop for WriterToken {
    fn drop(&mut self) {
        self.shared.lock().writers_gone = true;
        if let Err(e) = self.shared.sync_now() {
            emit(InternalEvent::Error {
                component: &self.shared.component,
                error: e.category(),
                message: &e.to_string(),
            });
        }
        self.shared.data.notify_one();
    }
}

/// Appends records. Cheap to clone; clones share the buffer and may push from several tasks.
#[derive(Clone)]
pub struct BufferWriter {
    token: Arc<WriterToken>,
}

impl std::fmt::Debug for BufferWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferWriter")
            .field("component", &self.token.shared.component)
            .field("dir", &self.token.shared.dir)
            .finish_non_exhaustive()
    }
}

impl BufferWriter {
    fn shared(&self) -> &Shared {
        &self.token.shared
    }

    /// Appends one record and returns once it is in the segment file. When full: `Block`
    /// waits for room, `DropNewest` returns `Pushed::Dropped` at once. A record larger than the
    /// whole buffer is [`BufferError::TooLarge`].
    pub async fn push(&self, record: Vec<u8>) -> Result<Pushed, BufferError> {
        let shared = self.shared();
        let mut record = record;
        loop {
            // Created before the attempt, so an ack between the attempt and the wait still
            // wakes this writer.
            let room = shared.room.notified();
            match shared.store(record)? {
                Store::Done(pushed) => return Ok(pushed),
                Store::NoRoom(back) => record = back,
            }
            room.await;
        }
    }

    /// Like `push` but never waits: under `Block` a full buffer is `BufferError::Full`.
    pub fn try_push(&self, record: Vec<u8>) -> Result<Pushed, BufferError> {
        match self.shared().store(record)? {
            Store::Done(pushed) => Ok(pushed),
            Store::NoRoom(_) => Err(BufferError::Full {
                component: self.shared().component.clone(),
            }),
        }
    }

    /// Whether a record of `len` bytes fits now.
    pub fn has_room(&self, len: usize) -> bool {
        let shared = self.shared();
        shared.lock().buffered + frame_len(len) <= shared.options.max_bytes
    }

    /// Length of the largest record this buffer can ever hold (an empty buffer's room);
    /// longer ones are [`BufferError::TooLarge`], never merely "full".
    pub fn max_record_len(&self) -> usize {
        let room = self.shared().options.max_bytes.saturating_sub(frame_len(0));
        usize::try_from(room.min(u64::from(u32::MAX))).unwrap_or(usize::MAX)
    }

    /// The overflow policy this buffer was opened with.
    pub fn when_full(&self) -> WhenFull {
        self.shared().options.when_full
    }

    /// Bytes stored and not yet acknowledged (frame headers included).
    pub fn buffered_bytes(&self) -> u64 {
        self.shared().lock().buffered
    }

    /// Records discarded under `dropNewest` since the buffer was opened.
    pub fn dropped_records(&self) -> u64 {
        self.shared().dropped.load(Ordering::Relaxed)
    }

    /// Fsyncs everything stored so far (for shutdown; the background task does it otherwise).
    pub fn sync(&self) -> Result<(), BufferError> {
        self.shared().sync_now()
    }
}
