//! STUB — owned by the buffer helper. Interface contract below; replace the bodies.
//!
//! The per-sink buffer: a memory front over an on-disk queue bounded in bytes.

use std::path::Path;

use vigil_crds::monitored_app::WhenFull;

/// Position of a record in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordId(pub u64);

/// One stored record.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: RecordId,
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

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer {component} is full")]
    Full { component: String },
    #[error("buffer {component}: {message}")]
    Io {
        component: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("buffer {component} is closed")]
    Closed { component: String },
}

/// Appends records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BufferWriter {}

/// Reads and acknowledges records, in order. One per buffer.
#[derive(Debug)]
pub struct BufferReader {}

/// Opens (or creates, or recovers) the buffer in `dir`.
pub fn open(
    _dir: &Path,
    _max_bytes: u64,
    _when_full: WhenFull,
    _component: &str,
) -> Result<(BufferWriter, BufferReader), BufferError> {
    Ok((BufferWriter {}, BufferReader {}))
}

impl BufferWriter {
    /// Appends one record and returns once it is in the segment file. When full: `Block`
    /// waits for room, `DropNewest` returns `Pushed::Dropped` at once.
    pub async fn push(&self, _record: Vec<u8>) -> Result<Pushed, BufferError> {
        Ok(Pushed::Stored)
    }

    /// Like `push` but never waits: under `Block` a full buffer is `BufferError::Full`.
    pub fn try_push(&self, _record: Vec<u8>) -> Result<Pushed, BufferError> {
        Ok(Pushed::Stored)
    }

    /// Whether `len` more bytes fit now.
    pub fn has_room(&self, _len: usize) -> bool {
        true
    }

    /// The overflow policy this buffer was opened with.
    pub fn when_full(&self) -> WhenFull {
        WhenFull::Block
    }

    /// Bytes stored and not yet acknowledged.
    pub fn buffered_bytes(&self) -> u64 {
        0
    }
}

impl BufferReader {
    /// Waits for at least one unacknowledged record and returns up to `max_records` records
    /// totalling at most `max_bytes` (always at least one). Records returned but not acked are
    /// returned again after a restart.
    pub async fn next_batch(
        &mut self,
        _max_records: usize,
        _max_bytes: usize,
    ) -> Result<Vec<Record>, BufferError> {
        std::future::pending().await
    }

    /// Marks every record up to and including `through` as delivered, durably.
    pub fn ack(&mut self, _through: RecordId) -> Result<(), BufferError> {
        Ok(())
    }
}
