//! Log source, change notifications: wakes the driver as soon as a watched directory's files
//! change (inotify on Linux, through the `notify` crate), so a write is read, and a truncation
//! noticed, right away rather than at the next poll. Polling stays as the fallback: events can
//! be missed (overlay and bind mounts, a directory created later, an exhausted inotify watch
//! limit), and a watch that cannot be set up is reported once and polling carries on alone.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::discover::Targets;
use super::source::COMPONENT;
use crate::telemetry::{emit, InternalEvent};

/// What the watcher tells the driver.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Something changed: read now.
    pub wake: Notify,
    /// A file was created, renamed or removed: discover the files again.
    pub rescan: AtomicBool,
}

impl Signals {
    /// Whether files were created, renamed or removed since the last call.
    pub fn take_rescan(&self) -> bool {
        self.rescan.swap(false, Ordering::AcqRel)
    }
}

/// The directories being watched; dropping it stops watching.
pub(crate) struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    pub signals: Arc<Signals>,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("watching", &self._watcher.is_some())
            .finish()
    }
}

/// Characters that make a path component a glob pattern.
const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// The directory to watch for a `files` glob, and whether below it too: the longest leading
/// part of the pattern's directory without glob characters.
pub(crate) fn glob_watch_dir(pattern: &str) -> (PathBuf, RecursiveMode) {
    let path = Path::new(pattern);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut literal = PathBuf::new();
    for component in dir.components() {
        if let Component::Normal(part) = component {
            if part.to_string_lossy().contains(GLOB_CHARS) {
                return (literal, RecursiveMode::Recursive);
            }
        }
        literal.push(component);
    }
    (literal, RecursiveMode::NonRecursive)
}

impl FileWatch {
    /// Watches the pod log directory (with its container folders) and the directories of the
    /// `files` globs.
    pub fn start(targets: &Targets) -> FileWatch {
        let signals = Arc::new(Signals::default());
        let handler_signals = signals.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                // A queue overflow or similar: look at everything again.
                handler_signals.rescan.store(true, Ordering::Release);
                handler_signals.wake.notify_one();
                return;
            };
            match event.kind {
                EventKind::Access(_) => return,
                EventKind::Modify(notify::event::ModifyKind::Data(_)) => {}
                _ => handler_signals.rescan.store(true, Ordering::Release),
            }
            handler_signals.wake.notify_one();
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(error) => {
                warn_once("", &error);
                return FileWatch {
                    _watcher: None,
                    signals,
                };
            }
        };
        let mut dirs: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        if let Some(dir) = &targets.pod_log_dir {
            dirs.push((dir.clone(), RecursiveMode::Recursive));
        }
        dirs.extend(targets.files.iter().map(|pattern| glob_watch_dir(pattern)));
        for (dir, mode) in dirs {
            if let Err(error) = watcher.watch(&dir, mode) {
                warn_once(&dir.display().to_string(), &error);
            }
        }
        FileWatch {
            _watcher: Some(watcher),
            signals,
        }
    }
}

fn warn_once(path: &str, error: &notify::Error) {
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
    use super::*;

    /// A glob is watched from its longest literal directory, recursively only when its
    /// directory part has glob characters.
    #[test]
    fn glob_directories() {
        assert_eq!(
            glob_watch_dir("/var/log/app/*.log"),
            (PathBuf::from("/var/log/app"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            glob_watch_dir("/var/log/*/current/app.log"),
            (PathBuf::from("/var/log"), RecursiveMode::Recursive)
        );
        assert_eq!(
            glob_watch_dir("/var/log/app.log"),
            (PathBuf::from("/var/log"), RecursiveMode::NonRecursive)
        );
    }

    /// A write to a watched file wakes the driver; a new file asks for discovery as well.
    #[tokio::test]
    async fn writes_and_new_files_are_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "one\n").unwrap();
        let watch = FileWatch::start(&Targets {
            pod_log_dir: None,
            containers: Vec::new(),
            files: vec![format!("{}/*.log", dir.path().display())],
        });
        assert!(watch._watcher.is_some());
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        let deadline = std::time::Duration::from_secs(30);
        tokio::time::timeout(deadline, watch.signals.wake.notified())
            .await
            .expect("a write to a watched file is signalled");
        std::fs::write(dir.path().join("other.log"), "x\n").unwrap();
        let rescan = async {
            while !watch.signals.take_rescan() {
                watch.signals.wake.notified().await;
            }
        };
        tokio::time::timeout(deadline, rescan)
            .await
            .expect("a new file in a watched directory asks for discovery");
    }
}
