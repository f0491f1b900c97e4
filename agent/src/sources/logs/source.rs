//! Log source, reading core: the set of files being tailed and what happens to their lines up
//! to the batch — discovery, rotation, reading, record decoding, message parsing, multi-line
//! joining, crash detection and redaction — plus the checkpoint of what has been delivered.
//! It does no I/O but file reads and the checkpoint write, and never waits; the driver in
//! [`super::run`] batches its events, sends them and calls [`LogSource::checkpoint`].
//!
//! Rotation. Kubelet rotates `N.log` by renaming it (`N.log.<timestamp>`) and asking the
//! runtime to reopen; logrotate-style tools rename too, or copy and truncate in place. A file
//! is known by its inode, so a renamed file keeps being read through its open descriptor until
//! it is finished — at its end after its successor appeared (the writer switched over), or
//! [`GONE_GRACE`] after it vanished without one — and its successor in the same lineage is not
//! read while it still has unread bytes, so lines stay in order. A file that became shorter
//! than what was read, or whose first bytes changed, was truncated in place and is read again
//! from its start; what it held past the point read is read from the copy copy-truncate made
//! next to it (`app.log.1`, `app.log-20240501`: a rotated name, the old first bytes, at least
//! as long as what was read), which then carries on as the old content's file. A file matched
//! by a glob that is such a copy of a tailed file is not read from its start.
//!
//! Checkpoints are per stream as well as per file (see [`FileCheckpoint::streams`]): after a
//! restart, a runtime's file is read again from the earliest line still to deliver on either
//! stream, and the records of a stream that start before that stream's own offset are skipped.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_crds::agent_config::LogsConfig;
use vigil_crds::monitored_app::LogFormat;

use super::checkpoint::{CheckpointStore, FileCheckpoint};
use super::cri::{slot, LineDecoder, LineFormat, Record};
use super::discover::{Found, Origin as FoundIn, Problem, Targets};
use super::parse::{infer_level, parse_json, parse_logfmt};
use super::tail::{FileId, FileReader, Head};
use super::{LogPipeline, LogSourceError};
use crate::event::{LogEvent, Origin, Stream};
use crate::processors::crash::CrashDetector;
use crate::processors::multiline::Joiner;
use crate::processors::redact::Redactor;
use crate::telemetry::{emit, InternalEvent};

/// Component name in the agent's own telemetry.
pub(crate) const COMPONENT: &str = "logs";
/// How often the file set is discovered again (new containers, new files).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a file that vanished without a successor may still grow before it is closed.
pub const GONE_GRACE: Duration = Duration::from_secs(5);
/// Bytes read from one file in one poll, so that one busy file cannot starve the others; also
/// what bounds, in bytes, the events a poll adds to those waiting for a batch (about one batch
/// of short lines per file).
pub const READ_BUDGET_PER_FILE: usize = 256 * 1024;
/// Most lines joined into one multi-line event.
pub const MULTILINE_MAX_LINES: usize = crate::processors::multiline::DEFAULT_MAX_LINES;
/// How long an open multi-line event waits for its next line.
pub const MULTILINE_TIMEOUT: Duration = Duration::from_secs(1);
/// Log record attribute naming the file an event was read from (its [`Origin::path`]).
pub const FILE_PATH_ATTRIBUTE: &str = "log.file.path";

/// What one [`LogSource::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Bytes read from files.
    pub bytes: u64,
    /// Events handed out.
    pub events: usize,
    /// Some file has more to read now: poll again without waiting.
    pub more: bool,
}

/// What every event of one file carries.
#[derive(Debug)]
struct FileLabels {
    /// The file's key in event origins; a new key after a truncation.
    key: Arc<str>,
    container: Arc<str>,
    /// The file's path when it was opened.
    path: Arc<str>,
}

/// A file that vanished from discovery (renamed away or deleted).
#[derive(Clone, Copy, Debug)]
struct Gone {
    since: Instant,
    /// Poll in which another file was seen at its path.
    replaced_in: Option<u64>,
}

/// One file being tailed.
#[derive(Debug)]
struct Tailed {
    id: FileId,
    path: PathBuf,
    lineage: Arc<str>,
    rank: u64,
    labels: FileLabels,
    reader: FileReader,
    decoder: LineDecoder,
    gone: Option<Gone>,
    /// Poll in which a read last reached the end of the file.
    eof_in: u64,
    /// Per stream: records starting before this offset were delivered before a restart and
    /// are skipped (see [`FileCheckpoint::streams`]).
    delivered_to: [u64; 2],
}

impl Tailed {
    /// Whether a vanished file is read to its end in poll `poll` and will not grow any more.
    fn finished(&self, poll: u64, now: Instant) -> bool {
        self.gone.is_some_and(|gone| {
            self.eof_in == poll && (gone.replaced_in.is_some() || now >= gone.since + GONE_GRACE)
        })
    }

    /// The file's checkpoint, given the starts of events of each stream still pending
    /// downstream (in the joiner or not yet stored in the buffer).
    fn checkpoint(&self, pending: impl Fn(&str, Stream) -> Option<u64>) -> FileCheckpoint {
        let processed = self.reader.processed();
        let decoder = &self.decoder;
        let key = &*self.labels.key;
        let (offset, streams) = offsets(processed, self.delivered_to, |stream| {
            min_some(decoder.held_start(stream), pending(key, stream))
        });
        FileCheckpoint {
            dev: self.id.dev,
            inode: self.id.inode,
            path: self.path.display().to_string(),
            offset,
            streams: Some(streams),
            head_len: self.reader.head.len,
            head_crc: self.reader.head.crc,
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The resume offset and the per-stream offsets of a file read (and its lines handed on) up to
/// `processed`, where `held` gives the start of the first record of a stream not yet
/// delivered. A stream's offset never goes back before what a restart found delivered.
fn offsets(
    processed: u64,
    delivered_to: [u64; 2],
    held: impl Fn(Stream) -> Option<u64>,
) -> (u64, [u64; 2]) {
    let mut streams = [0; 2];
    for stream in [Stream::Stdout, Stream::Stderr] {
        let at = held(stream).map_or(processed, |start| start.min(processed));
        streams[slot(stream)] = at.max(delivered_to[slot(stream)]);
    }
    (streams[0].min(streams[1]), streams)
}

/// A finished file whose last events may not be delivered yet.
#[derive(Debug)]
struct Closed {
    key: Arc<str>,
    /// Its checkpoint when it was finished (everything read and handed on).
    checkpoint: FileCheckpoint,
    processed: u64,
    delivered_to: [u64; 2],
}

/// From records to finished events: parsing, joining, crash detection, redaction.
struct Stage {
    format: LogFormat,
    joiner: Option<Joiner>,
    crashes: Arc<CrashDetector>,
    redactor: Arc<Redactor>,
    now: Instant,
    /// Time of the current poll, for records that carry none.
    read_time: u64,
    /// Wall-clock time of the current poll in milliseconds, for the crash detector's
    /// active-user window (one clock read per poll, not per event).
    now_ms: i64,
    joined: Vec<LogEvent>,
    done: Vec<LogEvent>,
}

impl Stage {
    /// Accepts a record unless a run before a restart delivered it already.
    fn accept_new(&mut self, record: Record<'_>, labels: &FileLabels, delivered_to: &[u64; 2]) {
        if record.start >= delivered_to[slot(record.stream)] {
            self.accept(record, labels);
        }
    }

    fn accept(&mut self, record: Record<'_>, labels: &FileLabels) {
        let event = self.event(record, labels);
        match &mut self.joiner {
            Some(joiner) => {
                joiner.push(event, self.now, &mut self.joined);
                self.finish_joined();
            }
            None => self.finish(event),
        }
    }

    fn finish_joined(&mut self) {
        let mut joined = std::mem::take(&mut self.joined);
        for event in joined.drain(..) {
            self.finish(event);
        }
        self.joined = joined;
    }

    fn finish(&mut self, mut event: LogEvent) {
        self.crashes.observe_at(&mut event, self.now_ms);
        self.redactor.redact_event(&mut event);
        self.done.push(event);
    }

    fn event(&self, record: Record<'_>, labels: &FileLabels) -> LogEvent {
        // `from_utf8` skips ASCII a word at a time; the lossy decoder only runs on bad input.
        let text = match std::str::from_utf8(record.message) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(record.message),
        };
        let fields = match self.format {
            LogFormat::Json => parse_json(&text),
            LogFormat::Logfmt => parse_logfmt(&text),
            LogFormat::Text => None,
        };
        let (message, level, time, attributes) = match fields {
            Some(fields) => {
                let message = fields.message.unwrap_or_else(|| text.into_owned());
                let level = fields.level.or_else(|| infer_level(&message));
                (message, level, fields.time_unix_nano, fields.attributes)
            }
            None => {
                let message = text.into_owned();
                let level = infer_level(&message);
                (message, level, None, Vec::new())
            }
        };
        LogEvent {
            time_unix_nano: time.or(record.time_unix_nano).unwrap_or(self.read_time),
            container: labels.container.clone(),
            stream: record.stream,
            message,
            level,
            attributes,
            lines: 1,
            crash: None,
            origin: Some(Origin {
                file: labels.key.clone(),
                path: labels.path.clone(),
                start: record.start,
                end: record.end,
            }),
        }
    }
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("format", &self.format)
            .field("multiline", &self.joiner.is_some())
            .field("done", &self.done.len())
            .finish()
    }
}

/// The log source's files and processing, driven by polls.
#[derive(Debug)]
pub struct LogSource {
    targets: Targets,
    files: Vec<Tailed>,
    closed: Vec<Closed>,
    /// Checkpoint entries read at start and not yet matched to a file.
    restored: Vec<FileCheckpoint>,
    scanned: bool,
    stage: Stage,
    store: CheckpointStore,
    buf: Vec<u8>,
    next_scan: Option<Instant>,
    poll_count: u64,
    next_key: u64,
    /// Problems already reported, so a lasting one is logged once.
    reported: HashSet<(&'static str, String)>,
    /// Files known to be copies that copy-truncate rotation made of a tailed file: their
    /// content was or will be read through the original, so discovery never reads them from
    /// their start.
    copies: HashSet<FileId>,
    /// Copies taken over during a scan, added to `files` when it ends.
    adopted: Vec<Tailed>,
}

fn unix_nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn unix_millis_now() -> i64 {
    i64::try_from(unix_nanos_now() / 1_000_000).unwrap_or(i64::MAX)
}

impl LogSource {
    /// Prepares the source: the checkpoint directory and the offsets stored in it. Files are
    /// discovered by the first [`LogSource::poll`].
    pub fn open(config: &LogsConfig, pipeline: &LogPipeline) -> Result<LogSource, LogSourceError> {
        let dir = Path::new(&config.checkpoint_dir);
        let mut store = CheckpointStore::open(dir).map_err(|source| LogSourceError::Io {
            message: format!("cannot create checkpoint directory {}", dir.display()),
            source,
        })?;
        let restored = store.load().unwrap_or_else(|error| {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: "LogCheckpointRead",
                message: &format!(
                    "cannot read checkpoint {}, reading every file from its start: {error}",
                    store.path().display()
                ),
            });
            Vec::new()
        });
        Ok(LogSource {
            targets: Targets {
                pod_log_dir: config.pod_log_dir.as_ref().map(PathBuf::from),
                containers: config.containers.clone(),
                files: config.files.clone(),
            },
            files: Vec::new(),
            closed: Vec::new(),
            restored,
            scanned: false,
            stage: Stage {
                format: config.format,
                joiner: config
                    .multiline
                    .then(|| Joiner::new(MULTILINE_MAX_LINES, MULTILINE_TIMEOUT)),
                crashes: pipeline.crashes.clone(),
                redactor: pipeline.redactor.clone(),
                now: Instant::now(),
                read_time: 0,
                now_ms: 0,
                joined: Vec::new(),
                done: Vec::new(),
            },
            store,
            buf: Vec::new(),
            next_scan: None,
            poll_count: 0,
            next_key: 0,
            reported: HashSet::new(),
            copies: HashSet::new(),
            adopted: Vec::new(),
        })
    }

    /// Reads what the files have (up to a budget per file) and appends the finished events to
    /// `out`. Events still open in the joiner are kept until complete or timed out.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<LogEvent>) -> PollOutcome {
        self.poll_count += 1;
        self.stage.now_ms = unix_millis_now();
        let due = self.next_scan.is_none_or(|at| now >= at);
        if due || self.paths_changed() {
            self.scan(now);
            if due {
                self.next_scan = Some(now + RESCAN_INTERVAL);
            }
        }
        self.handle_truncations(due, now);
        self.stage.now = now;
        self.stage.read_time = unix_nanos_now();

        let mut outcome = PollOutcome::default();
        // Lineages whose rotated file still has bytes to read: their successor waits.
        let mut unfinished: Vec<Arc<str>> = Vec::new();
        let poll = self.poll_count;
        let LogSource {
            files,
            stage,
            buf,
            reported,
            ..
        } = self;
        for file in files.iter_mut() {
            if file.gone.is_none() && unfinished.contains(&file.lineage) {
                outcome.more = true;
                continue;
            }
            let Tailed {
                reader,
                decoder,
                labels,
                delivered_to,
                ..
            } = file;
            let read = reader.read(buf, READ_BUDGET_PER_FILE, &mut |segment| {
                decoder.decode(segment, &mut |record| {
                    stage.accept_new(record, labels, delivered_to)
                })
            });
            match read {
                Ok(read) => {
                    outcome.bytes += read.bytes;
                    if read.eof {
                        file.eof_in = poll;
                        if file.finished(poll, now) {
                            // Its last line and fragments go on before its successor's lines
                            // are read, as when it was finished in an earlier poll.
                            hand_on_rest(file, stage);
                        }
                    } else {
                        outcome.more = true;
                        if file.gone.is_some() {
                            unfinished.push(file.lineage.clone());
                        }
                    }
                }
                Err(error) => report(
                    reported,
                    Problem {
                        category: "LogFileRead",
                        path: file.path.display().to_string(),
                        error: error.to_string(),
                    },
                ),
            }
        }
        if let Some(joiner) = &mut self.stage.joiner {
            joiner.flush_expired(now, &mut self.stage.joined);
            self.stage.finish_joined();
        }
        self.close_finished(now);
        outcome.events = self.stage.done.len();
        out.append(&mut self.stage.done);
        if outcome.bytes > 0 || outcome.events > 0 {
            emit(InternalEvent::Received {
                component: COMPONENT,
                signal: "logs",
                events: outcome.events as u64,
                bytes: outcome.bytes,
            });
        }
        outcome
    }

    /// What the source looks for.
    pub(crate) fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Makes the next [`LogSource::poll`] discover the files again (a file was created or
    /// renamed where files are looked for).
    pub fn rescan(&mut self) {
        self.next_scan = None;
    }

    /// Appends every event still held (open multi-line events) to `out`, for shutdown.
    /// Fragments of lines not yet complete stay unread: the checkpoint points before them.
    pub fn flush_all(&mut self, out: &mut Vec<LogEvent>) {
        self.stage.now_ms = unix_millis_now();
        if let Some(joiner) = &mut self.stage.joiner {
            joiner.flush_all(&mut self.stage.joined);
            self.stage.finish_joined();
        }
        out.append(&mut self.stage.done);
    }

    /// Records, for every file, the offset before which every event has been delivered:
    /// everything handed out by [`LogSource::poll`] except `unsent`. Finished files whose
    /// events are all delivered are forgotten.
    pub fn checkpoint<'e>(&mut self, unsent: impl IntoIterator<Item = &'e LogEvent>) {
        let mut unsent_starts: Vec<(&'e Arc<str>, Stream, u64)> = Vec::new();
        for event in unsent {
            let Some(origin) = event.origin.as_ref() else {
                continue;
            };
            // The events of one file share its key: the pointers match, the text is compared
            // only for keys from elsewhere.
            match unsent_starts.iter_mut().find(|(key, stream, _)| {
                *stream == event.stream
                    && (Arc::ptr_eq(key, &origin.file) || ***key == *origin.file)
            }) {
                Some((_, _, start)) => *start = (*start).min(origin.start),
                None => unsent_starts.push((&origin.file, event.stream, origin.start)),
            }
        }
        let joiner = self.stage.joiner.as_ref();
        let pending = |key: &str, stream: Stream| -> Option<u64> {
            let held = joiner.and_then(|j| j.pending_start(key, stream));
            let queued = unsent_starts
                .iter()
                .find(|(k, s, _)| ***k == *key && *s == stream)
                .map(|(_, _, start)| *start);
            min_some(held, queued)
        };
        let mut entries: Vec<FileCheckpoint> = self.restored.clone();
        for file in &self.files {
            entries.push(file.checkpoint(pending));
        }
        self.closed.retain_mut(|closed| {
            let key = &*closed.key;
            if pending(key, Stream::Stdout).is_none() && pending(key, Stream::Stderr).is_none() {
                return false;
            }
            let (offset, streams) = offsets(closed.processed, closed.delivered_to, |stream| {
                pending(key, stream)
            });
            closed.checkpoint.offset = offset;
            closed.checkpoint.streams = Some(streams);
            entries.push(closed.checkpoint.clone());
            true
        });
        if let Err(error) = self.store.save(entries) {
            report(
                &mut self.reported,
                Problem {
                    category: "LogCheckpointWrite",
                    path: self.store.path().display().to_string(),
                    error: error.to_string(),
                },
            );
        }
    }

    /// Whether a tailed file's path now names another file (or none), or a vanished file got
    /// a successor: rotation, to be handled before reading on.
    fn paths_changed(&self) -> bool {
        self.files.iter().any(|file| {
            let now_at_path = std::fs::metadata(&file.path).ok().map(|m| FileId::of(&m));
            match file.gone {
                None => now_at_path != Some(file.id),
                Some(gone) => gone.replaced_in.is_none() && now_at_path.is_some(),
            }
        })
    }

    /// Discovers the files and updates the tailed set.
    fn scan(&mut self, now: Instant) {
        let mut problems = Vec::new();
        let found = self.targets.discover(&mut problems);
        let found_ids: HashSet<FileId> = found.iter().map(|f| f.id).collect();
        for problem in problems {
            report(&mut self.reported, problem);
        }
        let mut seen = vec![false; self.files.len()];
        for found in found {
            if let Some(copy) = self.adopted.iter_mut().find(|t| t.id == found.id) {
                // A copy taken over at start, discovered too: tailed and checkpointed from now
                // on like any discovered file, so never read from its start.
                copy.gone = None;
                copy.path = found.path;
                continue;
            }
            if self.copies.contains(&found.id) && !self.files.iter().any(|t| t.id == found.id) {
                continue;
            }
            if let Some(i) = self.files.iter().position(|t| t.id == found.id) {
                seen[i] = true;
                let file = &mut self.files[i];
                file.path = found.path;
                file.gone = None;
                continue;
            }
            match self.open_file(&found) {
                Ok(Some(file)) => {
                    self.files.push(file);
                    seen.push(true);
                }
                Ok(None) => {}
                Err(error) => report(
                    &mut self.reported,
                    Problem {
                        category: "LogFileOpen",
                        path: found.path.display().to_string(),
                        error: error.to_string(),
                    },
                ),
            }
        }
        // Copies matter only while discovery still finds them.
        self.copies.retain(|id| found_ids.contains(id));
        for file in self.adopted.drain(..) {
            self.files.push(file);
            seen.push(true);
        }
        let poll = self.poll_count;
        for (file, seen) in self.files.iter_mut().zip(seen) {
            if !seen && file.gone.is_none() {
                file.gone = Some(Gone {
                    since: now,
                    replaced_in: None,
                });
            }
            if let Some(gone) = &mut file.gone {
                if gone.replaced_in.is_none() && std::fs::metadata(&file.path).is_ok() {
                    gone.replaced_in = Some(poll);
                }
            }
        }
        if !self.scanned {
            self.scanned = true;
            self.resume_rotated(now);
            self.restored.clear();
        }
        // Vanished files first, so that they are finished before their successors are read.
        self.files.sort_by(|a, b| {
            (a.gone.is_none(), &a.lineage, a.rank, &a.path).cmp(&(
                b.gone.is_none(),
                &b.lineage,
                b.rank,
                &b.path,
            ))
        });
    }

    /// Opens a newly found file, resuming at its checkpoint when one matches it. `None` when
    /// the path turned out to name a file already tailed.
    fn open_file(&mut self, found: &Found) -> std::io::Result<Option<Tailed>> {
        let (mut reader, metadata) = FileReader::open(&found.path)?;
        let id = FileId::of(&metadata);
        if self.files.iter().chain(&self.adopted).any(|t| t.id == id) {
            return Ok(None);
        }
        let mut delivered_to = [0; 2];
        if let Some(at) = self
            .restored
            .iter()
            .position(|c| c.dev == id.dev && c.inode == id.inode)
        {
            let checkpoint = self.restored.swap_remove(at);
            if checkpoint.offset <= metadata.len()
                && reader.starts_with(checkpoint_head(&checkpoint))?
            {
                reader.resume_at(checkpoint.offset);
                delivered_to = checkpoint.streams.unwrap_or([checkpoint.offset; 2]);
            } else {
                // Truncated while the agent was down: the rest of what it held, if a copy
                // of it was made, is read from the copy.
                self.adopt_copy(found, id, &checkpoint);
            }
        } else if found.origin == FoundIn::Glob {
            match self.is_copy_of_tailed(&found.path, &reader, metadata.len())? {
                Some(false) => {}
                Some(true) => {
                    self.copies.insert(id);
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
        let mut file = self.tailed(
            id,
            found.path.clone(),
            &found.origin,
            found.lineage.clone(),
            found.rank,
            reader,
        );
        file.delivered_to = delivered_to;
        Ok(Some(file))
    }

    fn tailed(
        &mut self,
        id: FileId,
        path: PathBuf,
        origin: &FoundIn,
        lineage: Arc<str>,
        rank: u64,
        reader: FileReader,
    ) -> Tailed {
        let (container, format) = match origin {
            FoundIn::Container(name) => (name.clone(), LineFormat::Runtime),
            FoundIn::Glob => (Arc::from(""), LineFormat::Plain),
        };
        Tailed {
            id,
            labels: FileLabels {
                key: self.new_key(id),
                container,
                path: Arc::from(path.to_string_lossy().as_ref()),
            },
            path,
            lineage,
            rank,
            reader,
            decoder: LineDecoder::new(format),
            gone: None,
            eof_in: 0,
            delivered_to: [0; 2],
        }
    }

    fn new_key(&mut self, id: FileId) -> Arc<str> {
        self.next_key += 1;
        Arc::from(format!("{}:{}#{}", id.dev, id.inode, self.next_key))
    }

    /// At start, finds the files that rotation renamed while the agent was down (`0.log` is
    /// now `0.log.<timestamp>`) and reads their rest before their successors.
    fn resume_rotated(&mut self, now: Instant) {
        for checkpoint in std::mem::take(&mut self.restored) {
            let old_path = PathBuf::from(&checkpoint.path);
            let (Some(dir), Some(name)) = (old_path.parent(), old_path.file_name()) else {
                continue;
            };
            let prefix = format!("{}.", name.to_string_lossy());
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                // The file itself: still there but no longer discovered (a copy taken over
                // from a truncated file).
                let itself = entry.file_name() == name;
                if !itself && (!file_name.starts_with(&prefix) || file_name.ends_with(".gz")) {
                    continue;
                }
                let path = entry.path();
                let same = std::fs::metadata(&path).is_ok_and(|m| {
                    FileId::of(&m)
                        == FileId {
                            dev: checkpoint.dev,
                            inode: checkpoint.inode,
                        }
                });
                if !same {
                    continue;
                }
                let Some(origin) = self.origin_of(&old_path) else {
                    break;
                };
                let Ok((mut reader, metadata)) = FileReader::open(&path) else {
                    break;
                };
                let id = FileId::of(&metadata);
                let resumable = checkpoint.offset <= metadata.len()
                    && reader
                        .starts_with(checkpoint_head(&checkpoint))
                        .unwrap_or(false);
                if !resumable || self.files.iter().any(|t| t.id == id) {
                    break;
                }
                reader.resume_at(checkpoint.offset);
                let lineage = match &origin {
                    FoundIn::Container(name) => name.clone(),
                    FoundIn::Glob => Arc::from(checkpoint.path.as_str()),
                };
                let rank = old_path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                let mut file = self.tailed(id, path, &origin, lineage, rank, reader);
                file.delivered_to = checkpoint.streams.unwrap_or([checkpoint.offset; 2]);
                file.gone = Some(Gone {
                    since: now,
                    replaced_in: std::fs::metadata(&old_path)
                        .is_ok()
                        .then_some(self.poll_count),
                });
                self.files.push(file);
                break;
            }
        }
    }

    /// Where a file at `path` would have been discovered from.
    fn origin_of(&self, path: &Path) -> Option<FoundIn> {
        let container_dir = path.parent()?;
        let in_pod_dir = self
            .targets
            .pod_log_dir
            .as_deref()
            .is_some_and(|dir| container_dir.parent() == Some(dir));
        if in_pod_dir {
            let name = container_dir.file_name()?.to_str()?;
            return self
                .targets
                .wants_container(name)
                .then(|| FoundIn::Container(Arc::from(name)));
        }
        Some(FoundIn::Glob)
    }

    /// Files truncated in place are read again from their start, under a new key. What had
    /// not been read of the old content is read from the copy copy-truncate rotation made of
    /// it, when there is one next to it (`app.log.1`, `app.log-20240501`).
    fn handle_truncations(&mut self, check_heads: bool, now: Instant) {
        for index in 0..self.files.len() {
            let truncated = match self.files[index].reader.truncated(check_heads) {
                Ok(truncated) => truncated,
                Err(error) => {
                    let path = self.files[index].path.display().to_string();
                    report(
                        &mut self.reported,
                        Problem {
                            category: "LogFileRead",
                            path,
                            error: error.to_string(),
                        },
                    );
                    continue;
                }
            };
            if !truncated {
                continue;
            }
            tracing::debug!(
                component = COMPONENT,
                path = %self.files[index].path.display(),
                "log file truncated, reading it from its start"
            );
            let id = self.files[index].id;
            let key = self.new_key(id);
            let copy = self.take_over_copy(index, now);
            let LogSource { files, stage, .. } = self;
            let file = &mut files[index];
            if copy.is_none() {
                // What was held of the old content is all there will ever be of it.
                hand_on_rest(file, stage);
            }
            file.labels.key = key;
            file.delivered_to = [0; 2];
            if let Err(error) = file.reader.restart() {
                let path = file.path.display().to_string();
                report(
                    &mut self.reported,
                    Problem {
                        category: "LogFileRead",
                        path,
                        error: error.to_string(),
                    },
                );
            }
            if let Some(copy) = copy {
                self.files.push(copy);
            }
        }
    }

    /// For the truncated file at `index`: finds the copy of its old content and makes it a
    /// tailed file that goes on from where the original was read, with the original's key,
    /// held fragments and delivered offsets; the original is left to start over.
    fn take_over_copy(&mut self, index: usize, now: Instant) -> Option<Tailed> {
        let file = &self.files[index];
        let processed = file.reader.processed();
        let (path, mut reader, id) = find_copy(&file.path, file.id, file.reader.head, processed)?;
        if self.files.iter().any(|t| t.id == id) {
            return None;
        }
        tracing::debug!(
            component = COMPONENT,
            path = %file.path.display(),
            copy = %path.display(),
            "log file truncated, reading the rest of its old content from its copy"
        );
        reader.resume_at(processed);
        self.copies.insert(id);
        let file = &mut self.files[index];
        let fresh = file.decoder.fresh();
        let decoder = std::mem::replace(&mut file.decoder, fresh);
        Some(Tailed {
            id,
            path,
            lineage: file.lineage.clone(),
            rank: file.rank,
            labels: FileLabels {
                key: file.labels.key.clone(),
                container: file.labels.container.clone(),
                path: file.labels.path.clone(),
            },
            reader,
            decoder,
            // Finished like a renamed file; but kept, and so checkpointed, when discovery
            // finds it too (a glob matching the copies), so that it is never read again.
            gone: Some(Gone {
                since: now,
                replaced_in: None,
            }),
            eof_in: 0,
            delivered_to: file.delivered_to,
        })
    }

    /// At start, for a file truncated while the agent was down: tails the copy of its old
    /// content from the checkpoint on.
    fn adopt_copy(&mut self, found: &Found, id: FileId, checkpoint: &FileCheckpoint) {
        let Some((path, mut reader, copy_id)) = find_copy(
            &found.path,
            id,
            checkpoint_head(checkpoint),
            checkpoint.offset,
        ) else {
            return;
        };
        if self
            .files
            .iter()
            .chain(&self.adopted)
            .any(|t| t.id == copy_id)
        {
            return;
        }
        reader.resume_at(checkpoint.offset);
        self.copies.insert(copy_id);
        let mut copy = self.tailed(
            copy_id,
            path,
            &found.origin,
            found.lineage.clone(),
            found.rank,
            reader,
        );
        copy.labels.path = Arc::from(found.path.to_string_lossy().as_ref());
        copy.delivered_to = checkpoint.streams.unwrap_or([checkpoint.offset; 2]);
        copy.gone = Some(Gone {
            since: self.stage.now,
            replaced_in: None,
        });
        self.adopted.push(copy);
    }

    /// Whether a newly found file is a copy of the current content of a tailed file next to
    /// it (copy-truncate rotation made it and has not truncated the original yet): `None`
    /// while that cannot be told yet, the file being still shorter than the head it is to be
    /// compared with (it is being copied; the next discovery looks again).
    fn is_copy_of_tailed(
        &self,
        path: &Path,
        reader: &FileReader,
        len: u64,
    ) -> std::io::Result<Option<bool>> {
        for file in &self.files {
            if file.reader.head.len == 0 || !is_rotated_name(path, &file.path) {
                continue;
            }
            if len < u64::from(file.reader.head.len) {
                return Ok(None);
            }
            if reader.starts_with(file.reader.head)? {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    /// Closes vanished files that are finished, handing on their last bytes.
    fn close_finished(&mut self, now: Instant) {
        let poll = self.poll_count;
        let mut index = 0;
        while index < self.files.len() {
            if !self.files[index].finished(poll, now) {
                index += 1;
                continue;
            }
            let mut file = self.files.remove(index);
            hand_on_rest(&mut file, &mut self.stage);
            self.closed.push(Closed {
                checkpoint: file.checkpoint(|_, _| None),
                processed: file.reader.processed(),
                delivered_to: file.delivered_to,
                key: file.labels.key,
            });
        }
    }
}

/// Whether `path` is a rotated name of `original`: `<name>.<suffix>` or `<name>-<suffix>` in
/// the same directory, not compressed.
fn is_rotated_name(path: &Path, original: &Path) -> bool {
    let (Some(name), Some(base)) = (
        path.file_name().and_then(|n| n.to_str()),
        original.file_name().and_then(|n| n.to_str()),
    ) else {
        return false;
    };
    path.parent() == original.parent()
        && name
            .strip_prefix(base)
            .is_some_and(|rest| rest.len() > 1 && (rest.starts_with('.') || rest.starts_with('-')))
        && !name.ends_with(".gz")
}

/// The copy copy-truncate rotation made of the file at `path` (device and inode `id`) before
/// truncating it: a file next to it with a rotated name, another inode, the first bytes `head`
/// and at least `len` bytes; the most recently modified one. Opened, at offset 0.
fn find_copy(
    path: &Path,
    id: FileId,
    head: Head,
    len: u64,
) -> Option<(PathBuf, FileReader, FileId)> {
    if head.len == 0 {
        return None;
    }
    let dir = path.parent()?;
    let mut best: Option<(SystemTime, PathBuf, FileReader, FileId)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let candidate = entry.path();
        if !is_rotated_name(&candidate, path) {
            continue;
        }
        let Ok((reader, metadata)) = FileReader::open(&candidate) else {
            continue;
        };
        let candidate_id = FileId::of(&metadata);
        if candidate_id == id || !metadata.is_file() || metadata.len() < len {
            continue;
        }
        if !reader.starts_with(head).unwrap_or(false) {
            continue;
        }
        let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
        if best.as_ref().is_none_or(|(at, ..)| modified > *at) {
            best = Some((modified, candidate, reader, candidate_id));
        }
    }
    best.map(|(_, path, reader, id)| (path, reader, id))
}

/// Hands on the unfinished last line and any held fragments of a file.
fn hand_on_rest(file: &mut Tailed, stage: &mut Stage) {
    let Tailed {
        reader,
        decoder,
        labels,
        delivered_to,
        ..
    } = file;
    reader.take_partial(&mut |segment| {
        decoder.decode(segment, &mut |record| {
            stage.accept_new(record, labels, delivered_to)
        })
    });
    decoder.flush(reader.processed(), &mut |record| {
        stage.accept_new(record, labels, delivered_to)
    });
}

fn checkpoint_head(checkpoint: &FileCheckpoint) -> Head {
    Head {
        len: checkpoint.head_len,
        crc: checkpoint.head_crc,
    }
}

/// Logs and counts a problem the first time it is met.
fn report(reported: &mut HashSet<(&'static str, String)>, problem: Problem) {
    if reported.insert((problem.category, problem.path.clone())) {
        emit(InternalEvent::Error {
            component: COMPONENT,
            error: problem.category,
            message: &format!("{}: {}", problem.path, problem.error),
        });
    }
}
