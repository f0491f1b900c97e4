//! Log source, change notifications: wakes the driver as soon as a watched directory's files
//! change (inotify), so a write is read, and a truncation noticed, right away rather than at
//! the next poll. Polling stays as the fallback: events can be missed (overlay and bind
//! mounts, a directory created later, an exhausted inotify watch limit), and a watch that
//! cannot be set up is reported once and polling carries on alone.
//!
//! The inotify descriptor is read on the driver's own task, when it waits for a change or
//! before it polls — no thread of its own, and the writes an application makes while the
//! driver gathers (see `WAKE_GATHER`) are read as one queue, the kernel merging repeated
//! modifications of one file. Each event costs a few flag tests; nothing is allocated but the
//! path of a new directory to watch.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::io::unix::AsyncFd;

use super::discover::Targets;
use super::source::COMPONENT;
use crate::telemetry::{emit, InternalEvent};

/// What a watched directory reports: its files written, created, removed or renamed, and the
/// directory itself removed or renamed.
const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Deepest sub-directory watched below a recursively watched one (the pod log directory holds
/// one folder per container, with the log files in it).
const MAX_DEPTH: usize = 8;

/// Bytes read from the descriptor at once: dozens of events (each 16 bytes and a name).
const READ_BYTES: usize = 4096;

/// Characters that make a path component a glob pattern.
const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// Whether a directory's sub-directories are watched too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Depth {
    /// The directory alone.
    Directory,
    /// The directory and those below it.
    Recursive,
}

/// The directory to watch for a `files` glob, and whether below it too: the longest leading
/// part of the pattern's directory without glob characters.
pub(crate) fn glob_watch_dir(pattern: &str) -> (PathBuf, Depth) {
    let path = Path::new(pattern);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut literal = PathBuf::new();
    for component in dir.components() {
        if let Component::Normal(part) = component {
            if part.to_string_lossy().contains(GLOB_CHARS) {
                return (literal, Depth::Recursive);
            }
        }
        literal.push(component);
    }
    (literal, Depth::Directory)
}

/// What changed since the last look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// A file was written (or truncated).
    pub written: bool,
    /// A file or directory was created, renamed or removed, or events were lost: discover
    /// the files again.
    pub rescan: bool,
}

impl Changes {
    fn any(self) -> bool {
        self.written || self.rescan
    }
}

/// The watched directories; dropping it stops watching.
pub(crate) struct FileWatch {
    /// `None`: no watch could be set up, polling alone.
    inotify: Option<AsyncFd<Inotify>>,
    watches: Option<Watches>,
    /// Each watch's directory and depth, to watch the directories created below it.
    dirs: HashMap<WatchDescriptor, (PathBuf, Depth, usize)>,
    buffer: Box<[u8; READ_BYTES]>,
    /// What was read but not yet taken.
    pending: Changes,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("watching", &self.dirs.len())
            .finish()
    }
}

impl FileWatch {
    /// Watches the pod log directory (with its container folders) and the directories of the
    /// `files` globs. Needs a Tokio runtime.
    pub fn start(targets: &Targets) -> FileWatch {
        let mut watch = FileWatch {
            inotify: None,
            watches: None,
            dirs: HashMap::new(),
            buffer: Box::new([0; READ_BYTES]),
            pending: Changes::default(),
        };
        // `AsyncFd::new` is deprecated because a `T` that does not own its descriptor could
        // let it close while registered; an `Inotify` owns it (shared only with the `Watches`
        // handle, dropped after it), so it stays open until the reactor let go of it.
        #[allow(deprecated)]
        let inotify = match Inotify::init().and_then(AsyncFd::new) {
            Ok(inotify) => inotify,
            Err(error) => {
                warn_once("", &error);
                return watch;
            }
        };
        watch.watches = Some(inotify.get_ref().watches());
        watch.inotify = Some(inotify);
        if let Some(dir) = &targets.pod_log_dir {
            watch.add(dir, Depth::Recursive, 0, true);
        }
        for pattern in &targets.files {
            let (dir, depth) = glob_watch_dir(pattern);
            watch.add(&dir, depth, 0, true);
        }
        watch
    }

    /// Whether any directory is watched.
    #[cfg(test)]
    fn watching(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// Watches `dir` (and, for a recursive watch, the directories below it); `report`: say
    /// so when it cannot be watched (a directory created later is looked at by the next
    /// discovery in any case).
    fn add(&mut self, dir: &Path, depth: Depth, level: usize, report: bool) {
        let Some(watches) = &mut self.watches else {
            return;
        };
        match watches.add(dir, MASK) {
            Ok(wd) => {
                self.dirs.insert(wd, (dir.to_path_buf(), depth, level));
            }
            Err(error) => {
                if report {
                    warn_once(&dir.display().to_string(), &error);
                }
                return;
            }
        }
        if depth == Depth::Recursive && level < MAX_DEPTH {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add(&entry.path(), depth, level + 1, false);
                }
            }
        }
    }

    /// Waits until something changed (forever when nothing is watched) and takes what did.
    pub async fn changed(&mut self) -> Changes {
        loop {
            let changes = self.take();
            if changes.any() {
                return changes;
            }
            let Some(inotify) = &self.inotify else {
                return std::future::pending().await;
            };
            match inotify.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(error) => {
                    // The descriptor cannot be waited on: polling alone from now on.
                    warn_once("", &error);
                    self.inotify = None;
                }
            }
        }
    }

    /// What changed since the last call, reading what the kernel queued without waiting.
    pub fn take(&mut self) -> Changes {
        self.read();
        std::mem::take(&mut self.pending)
    }

    /// Reads every queued event into `pending`.
    fn read(&mut self) {
        let mut created: Vec<(PathBuf, usize)> = Vec::new();
        loop {
            let Some(inotify) = &mut self.inotify else {
                return;
            };
            let events = match inotify.get_mut().read_events(&mut self.buffer[..]) {
                Ok(events) => events,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    warn_once("", &error);
                    self.inotify = None;
                    self.pending.rescan = true;
                    break;
                }
            };
            for event in events {
                if event.mask == EventMask::MODIFY {
                    self.pending.written = true;
                    continue;
                }
                // Anything else changes which files there are; a lost queue hides what.
                self.pending.rescan = true;
                if event.mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&event.wd);
                    continue;
                }
                let new_dir = event.mask.contains(EventMask::ISDIR)
                    && event
                        .mask
                        .intersects(EventMask::CREATE | EventMask::MOVED_TO);
                if let (true, Some(name)) = (new_dir, event.name) {
                    if let Some((dir, Depth::Recursive, level)) = self.dirs.get(&event.wd) {
                        if *level < MAX_DEPTH {
                            created.push((dir.join(name), level + 1));
                        }
                    }
                }
            }
        }
        for (dir, level) in created {
            self.add(&dir, Depth::Recursive, level, false);
        }
    }
}

fn warn_once(path: &str, error: &std::io::Error) {
    emit(InternalEvent::Error {
        component: COMPONENT,
        error: "LogWatch",
        message: &format!(
            "cannot watch {path} for changes, polling it every {} ms instead: {error}",
            super::POLL_INTERVAL.as_millis()
        ),
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// A glob is watched from its longest literal directory, recursively only when its
    /// directory part has glob characters.
    #[test]
    fn glob_directories() {
        assert_eq!(
            glob_watch_dir("/var/log/app/*.log"),
            (PathBuf::from("/var/log/app"), Depth::Directory)
        );
        assert_eq!(
            glob_watch_dir("/var/log/*/current/app.log"),
            (PathBuf::from("/var/log"), Depth::Recursive)
        );
        assert_eq!(
            glob_watch_dir("/var/log/app.log"),
            (PathBuf::from("/var/log"), Depth::Directory)
        );
    }

    const DEADLINE: Duration = Duration::from_secs(30);

    async fn next(watch: &mut FileWatch) -> Changes {
        tokio::time::timeout(DEADLINE, watch.changed())
            .await
            .expect("a change is signalled")
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// A write to a watched file says so; a new file asks for discovery as well; writes made
    /// while nobody looked are taken at once, together.
    #[tokio::test]
    async fn writes_and_new_files_are_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "one\n").unwrap();
        let mut watch = FileWatch::start(&Targets {
            pod_log_dir: None,
            containers: Vec::new(),
            files: vec![format!("{}/*.log", dir.path().display())],
        });
        assert!(watch.watching());
        assert_eq!(watch.take(), Changes::default(), "nothing changed yet");
        append(&log, "two\n");
        assert_eq!(
            next(&mut watch).await,
            Changes {
                written: true,
                rescan: false
            }
        );
        for line in ["three\n", "four\n", "five\n"] {
            append(&log, line);
        }
        assert_eq!(
            watch.take(),
            Changes {
                written: true,
                rescan: false
            }
        );
        assert_eq!(watch.take(), Changes::default(), "taken once");
        std::fs::write(dir.path().join("other.log"), "x\n").unwrap();
        assert!(
            next(&mut watch).await.rescan,
            "a new file asks for discovery"
        );
    }

    /// Below the pod log directory, a container folder created after the start is watched
    /// too: a write in it is signalled.
    #[tokio::test]
    async fn new_container_folders_are_watched() {
        let pods = tempfile::tempdir().unwrap();
        std::fs::create_dir(pods.path().join("app")).unwrap();
        std::fs::write(pods.path().join("app/0.log"), "").unwrap();
        let mut watch = FileWatch::start(&Targets {
            pod_log_dir: Some(pods.path().to_path_buf()),
            containers: Vec::new(),
            files: Vec::new(),
        });
        append(&pods.path().join("app/0.log"), "one\n");
        assert!(next(&mut watch).await.written, "an existing folder's file");
        std::fs::create_dir(pods.path().join("worker")).unwrap();
        assert!(
            next(&mut watch).await.rescan,
            "a new folder asks for discovery"
        );
        let log = pods.path().join("worker/0.log");
        std::fs::write(&log, "").unwrap();
        assert!(
            next(&mut watch).await.rescan,
            "a new file in the new folder"
        );
        append(&log, "two\n");
        assert!(next(&mut watch).await.written, "a write in the new folder");
    }

    /// A directory that does not exist is not watched, and waiting for a change then never
    /// ends (polling carries on alone).
    #[tokio::test]
    async fn missing_directories_leave_polling_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = FileWatch::start(&Targets {
            pod_log_dir: Some(dir.path().join("absent")),
            containers: Vec::new(),
            files: Vec::new(),
        });
        assert!(!watch.watching());
        let waited = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(waited.is_err(), "no change without a watch: {waited:?}");
    }
}
