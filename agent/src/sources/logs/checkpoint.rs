//! Log source, checkpoints: how far each file has been delivered, so that a restarted agent
//! resumes exactly where the buffer's contents end.
//!
//! One JSON file, `logs.json` in the checkpoint directory, so that a kill at any moment leaves
//! either the old or the new checkpoint, never a torn one: the first save of a run replaces it
//! atomically (written to `logs.json.tmp`, then renamed over the old one); later saves of at
//! most one page ([`IN_PLACE_MAX`] bytes) overwrite it in place through a descriptor kept open,
//! one write at offset 0 padded with blanks to the length on disk (JSON allows trailing
//! whitespace), which a kill cannot tear. That spares every delivered batch a new inode and a
//! rename (on ext4 a rename over a file also starts the write-back of the new one); a bigger
//! checkpoint is always replaced by rename. Each entry names a file by device and inode,
//! with the checksum of its first bytes (an inode may be reused by a later file) and the path
//! it was last seen at (to find it again after a rotation renamed it while the agent was down).
//! The offset is always the start of a line whose event has not yet been stored in the buffer;
//! each stream of a runtime's file (stdout, stderr) has its own offset besides, since one
//! stream's open stack trace must not make the other's delivered lines be sent again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the checkpoint file format.
const FORMAT_VERSION: u32 = 1;
/// File name of the checkpoint.
pub(crate) const CHECKPOINT_FILE: &str = "logs.json";
/// Longest checkpoint written in place: one page, which a single write at offset 0 either
/// fills or leaves as it was, even when the agent is killed in the middle of it.
const IN_PLACE_MAX: usize = 4096;

/// How far one file has been delivered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileCheckpoint {
    pub dev: u64,
    pub inode: u64,
    /// Where the file was last seen.
    pub path: String,
    /// Offset reading resumes at: no line before it still has to be delivered.
    pub offset: u64,
    /// Per stream (stdout, stderr): offset of the first record of that stream not yet
    /// delivered. Records of a stream that start before it were delivered and are skipped when
    /// the lines between `offset` and it are read again (the other stream's held lines kept
    /// `offset` back). Absent in checkpoints of older agents: `offset` for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<[u64; 2]>,
    /// Length and CRC-32 of the file's first bytes.
    pub head_len: u32,
    pub head_crc: u32,
}

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileCheckpoint>,
}

/// The checkpoint file of the log source.
#[derive(Debug)]
pub(crate) struct CheckpointStore {
    path: PathBuf,
    tmp: PathBuf,
    /// The text last written, to skip writing an unchanged checkpoint.
    last: String,
    /// The checkpoint file this run replaced, kept open for in-place saves, and its length.
    file: Option<(File, usize)>,
}

impl CheckpointStore {
    /// Uses `dir`, creating it when missing.
    pub fn open(dir: &Path) -> io::Result<CheckpointStore> {
        std::fs::create_dir_all(dir)?;
        Ok(CheckpointStore {
            path: dir.join(CHECKPOINT_FILE),
            tmp: dir.join(format!("{CHECKPOINT_FILE}.tmp")),
            last: String::new(),
            file: None,
        })
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored entries; none when there is no checkpoint yet. A checkpoint of another
    /// version or that cannot be read is an error (the caller starts over and says so).
    pub fn load(&mut self) -> io::Result<Vec<FileCheckpoint>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let file: CheckpointFile = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if file.version != FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown checkpoint version {}", file.version),
            ));
        }
        self.last = text;
        Ok(file.files)
    }

    /// Replaces the checkpoint with `files`, unless it already says exactly that.
    pub fn save(&mut self, files: Vec<FileCheckpoint>) -> io::Result<()> {
        let text = serde_json::to_string(&CheckpointFile {
            version: FORMAT_VERSION,
            files,
        })
        .map_err(io::Error::other)?;
        if text == self.last {
            return Ok(());
        }
        if !self.overwrite(&text) {
            self.replace(&text)?;
        }
        self.last = text;
        Ok(())
    }

    /// Writes `text` over the open checkpoint file in one write, padded with blanks to the
    /// file's length; whether it did (not when there is no open file, either is longer than
    /// [`IN_PLACE_MAX`] or the write failed).
    fn overwrite(&mut self, text: &str) -> bool {
        let Some((file, len)) = &mut self.file else {
            return false;
        };
        let padded_len = text.len().max(*len);
        if padded_len > IN_PLACE_MAX {
            return false;
        }
        let mut bytes = Vec::with_capacity(padded_len);
        bytes.extend_from_slice(text.as_bytes());
        bytes.resize(padded_len, b' ');
        if file.write_all_at(&bytes, 0).is_ok() {
            *len = padded_len;
            return true;
        }
        self.file = None;
        false
    }

    /// Replaces the checkpoint file with `text` (temporary file, rename) and keeps the new file
    /// open for in-place saves.
    fn replace(&mut self, text: &str) -> io::Result<()> {
        self.file = None;
        let mut tmp = File::create(&self.tmp)?;
        tmp.write_all(text.as_bytes())?;
        drop(tmp);
        std::fs::rename(&self.tmp, &self.path)?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .ok()
            .map(|file| (file, text.len()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is saved is loaded back; an unchanged checkpoint is not rewritten; a foreign
    /// version is refused.
    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::open(&dir.path().join("cp")).unwrap();
        assert!(store.load().unwrap().is_empty());
        let entry = FileCheckpoint {
            dev: 1,
            inode: 2,
            path: "/var/log/vigil/pod/app/0.log".into(),
            offset: 42,
            streams: Some([42, 99]),
            head_len: 256,
            head_crc: 7,
        };
        store.save(vec![entry.clone()]).unwrap();
        let mtime = std::fs::metadata(store.path()).unwrap().modified().unwrap();
        store.save(vec![entry.clone()]).unwrap();
        assert_eq!(
            std::fs::metadata(store.path()).unwrap().modified().unwrap(),
            mtime
        );
        let mut again = CheckpointStore::open(&dir.path().join("cp")).unwrap();
        assert_eq!(again.load().unwrap(), vec![entry]);
        // A checkpoint written before per-stream offsets existed still loads.
        std::fs::write(
            again.path(),
            r#"{"version":1,"files":[{"dev":1,"inode":2,"path":"a","offset":7,"head_len":0,"head_crc":0}]}"#,
        )
        .unwrap();
        assert_eq!(again.load().unwrap()[0].streams, None);
        std::fs::write(again.path(), r#"{"version":99,"files":[]}"#).unwrap();
        assert!(again.load().is_err());
    }

    /// Saves after the first overwrite the file in place, padded: a shorter checkpoint after a
    /// longer one, a longer one after it and one past a page all load back exactly, and only
    /// the first save and the one past a page replace the file (a new inode).
    #[test]
    fn in_place_saves_load_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::open(dir.path()).unwrap();
        let entry = |path: &str, offset: u64| FileCheckpoint {
            dev: 1,
            inode: offset,
            path: path.into(),
            offset,
            streams: None,
            head_len: 0,
            head_crc: 0,
        };
        let inode = |store: &CheckpointStore| std::fs::metadata(store.path()).unwrap().ino();
        let cases = [
            vec![entry("/var/log/pods/a/0.log", 123_456), entry("b", 1)],
            vec![entry("c", 7)],
            vec![
                entry("/var/log/pods/a/0.log.20261206-1", 9_999_999),
                entry("d", 2),
            ],
            (0..80)
                .map(|n| entry(&format!("/var/log/pods/app/{n}.log"), n))
                .collect(),
            vec![entry("e", 3)],
        ];
        let mut inodes = Vec::new();
        for files in cases {
            store.save(files.clone()).unwrap();
            inodes.push((
                inode(&store),
                std::fs::metadata(store.path()).unwrap().len(),
            ));
            let mut fresh = CheckpointStore::open(dir.path()).unwrap();
            assert_eq!(fresh.load().unwrap(), files);
        }
        assert!(!dir.path().join("logs.json.tmp").exists());
        assert_eq!(inodes[0].0, inodes[1].0);
        assert_eq!(inodes[1].0, inodes[2].0);
        assert!(inodes[3].1 > IN_PLACE_MAX as u64);
        assert_ne!(
            inodes[2].0, inodes[3].0,
            "a checkpoint past a page is replaced"
        );
        assert_ne!(
            inodes[3].0, inodes[4].0,
            "so is the next one, the file being past a page"
        );
    }
}
