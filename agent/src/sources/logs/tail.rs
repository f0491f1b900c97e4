//! Log source, file layer: reads one file from an offset in large chunks and cuts it into
//! lines, and notices when the file was truncated in place (copy-truncate rotation).
//!
//! Reads use `pread` on a file descriptor held open, so a file renamed away by rotation keeps
//! being read until it is finished. A file is known by its device and inode, and its first
//! bytes are remembered as a checksum ([`Head`]), so that a new file which happens to reuse an
//! inode is not mistaken for the old one.
//!
//! Lines longer than [`MAX_LINE_BYTES`] are handed on in segments of at most that size, so a
//! writer that never ends its line cannot make the agent buffer without bound.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// Bytes read per `pread`.
pub(crate) const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Longest line handed on in one piece.
pub(crate) const MAX_LINE_BYTES: usize = 256 * 1024;
/// Bytes at the start of a file that identify it together with its inode.
pub(crate) const HEAD_BYTES: usize = 256;

/// A file's identity on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub inode: u64,
}

impl FileId {
    pub fn of(metadata: &Metadata) -> Self {
        FileId {
            dev: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// Checksum of a file's first `len` bytes (at most [`HEAD_BYTES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub len: u32,
    pub crc: u32,
}

impl Head {
    /// Reads the head of `file` (up to [`HEAD_BYTES`]).
    pub fn read(file: &File) -> io::Result<Head> {
        let mut bytes = [0u8; HEAD_BYTES];
        let mut len = 0;
        while len < HEAD_BYTES {
            match file.read_at(&mut bytes[len..], len as u64)? {
                0 => break,
                n => len += n,
            }
        }
        Ok(Head {
            len: len as u32,
            crc: crc32fast::hash(&bytes[..len]),
        })
    }

    /// Whether `file` still starts with the bytes this head was taken from.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let mut bytes = [0u8; HEAD_BYTES];
        let want = self.len as usize;
        let mut len = 0;
        while len < want {
            match file.read_at(&mut bytes[len..want], len as u64)? {
                0 => return Ok(false),
                n => len += n,
            }
        }
        Ok(crc32fast::hash(&bytes[..want]) == self.crc)
    }
}

/// One line, or one piece of a line longer than [`MAX_LINE_BYTES`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment<'a> {
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// File offset of the first byte.
    pub start: u64,
    /// File offset just past the segment (and its newline, when it has one).
    pub end: u64,
    /// This segment continues the line of the previous one.
    pub continued: bool,
    /// This segment ends its line.
    pub last: bool,
}

/// What one call to [`FileReader::read`] did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadOutcome {
    pub bytes: u64,
    /// The end of the file was reached.
    pub eof: bool,
}

/// Reads one open file.
#[derive(Debug)]
pub(crate) struct FileReader {
    file: File,
    /// Offset of the next byte to read.
    read_offset: u64,
    /// Bytes read after the last newline.
    partial: Vec<u8>,
    /// The last segment handed on was cut from a longer line.
    continuing: bool,
    /// The identifying head of the file.
    pub head: Head,
}

impl FileReader {
    /// Opens `path`, returning the reader (positioned at 0) and the file's metadata.
    pub fn open(path: &Path) -> io::Result<(FileReader, Metadata)> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        let head = Head::read(&file)?;
        Ok((
            FileReader {
                file,
                read_offset: 0,
                partial: Vec::new(),
                continuing: false,
                head,
            },
            metadata,
        ))
    }

    /// Whether the file starts with the bytes `head` was taken from.
    pub fn starts_with(&self, head: Head) -> io::Result<bool> {
        head.matches(&self.file)
    }

    /// Continues reading at `offset` (a line start recorded by a checkpoint).
    pub fn resume_at(&mut self, offset: u64) {
        self.read_offset = offset;
        self.partial.clear();
        self.continuing = false;
    }

    /// Offset just past the last segment handed on: everything before it has been seen.
    pub fn processed(&self) -> u64 {
        self.read_offset - self.partial.len() as u64
    }

    /// Whether the file was truncated in place: it is now shorter than what was read, or its
    /// head changed (looked at when it grew, or when `check_head`: a file truncated and
    /// written past the old offset between two polls is only told by its head). Takes a
    /// fuller head while the file is still shorter than [`HEAD_BYTES`].
    pub fn truncated(&mut self, check_head: bool) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        if size < self.read_offset {
            return Ok(true);
        }
        if check_head || size > self.read_offset {
            if !self.head.matches(&self.file)? {
                return Ok(true);
            }
            if (self.head.len as usize) < HEAD_BYTES && size > u64::from(self.head.len) {
                self.head = Head::read(&self.file)?;
            }
        }
        Ok(false)
    }

    /// Starts over at offset 0 after a truncation.
    pub fn restart(&mut self) -> io::Result<()> {
        self.resume_at(0);
        self.head = Head::read(&self.file)?;
        Ok(())
    }

    /// Hands on the bytes after the last newline as a final segment (the file is finished or
    /// was truncated, so that line will never be completed).
    pub fn take_partial(&mut self, on_segment: &mut impl FnMut(Segment<'_>)) {
        if self.partial.is_empty() {
            return;
        }
        let start = self.processed();
        on_segment(Segment {
            bytes: &self.partial,
            start,
            end: self.read_offset,
            continued: self.continuing,
            last: true,
        });
        self.partial.clear();
        self.continuing = false;
    }

    /// Reads up to about `budget` bytes (whole chunks), handing each complete line to
    /// `on_segment`. `buf` is scratch space shared by all readers, kept between calls (its
    /// contents are overwritten, never read before they are).
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        budget: usize,
        on_segment: &mut impl FnMut(Segment<'_>),
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        while (outcome.bytes as usize) < budget {
            let kept = self.partial.len();
            let base = self.read_offset - kept as u64;
            let need = kept + READ_CHUNK_BYTES;
            if buf.len() < need {
                // Zeroed once, not before every read: a fresh zeroed allocation is not even
                // touched, so at live rates only the part that reads fill becomes resident.
                if buf.is_empty() {
                    *buf = vec![0; need];
                } else {
                    buf.resize(need, 0);
                }
            }
            buf[..kept].copy_from_slice(&self.partial);
            let n = loop {
                match self.file.read_at(&mut buf[kept..need], self.read_offset) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                outcome.eof = true;
                break;
            }
            self.read_offset += n as u64;
            outcome.bytes += n as u64;
            let data = &buf[..kept + n];
            let mut pos = 0;
            for newline in memchr::memchr_iter(b'\n', data) {
                self.hand_on(&data[pos..newline], base + pos as u64, true, on_segment);
                pos = newline + 1;
            }
            let mut rest = &data[pos..];
            let mut rest_start = base + pos as u64;
            while rest.len() >= MAX_LINE_BYTES {
                let (piece, after) = rest.split_at(MAX_LINE_BYTES);
                self.hand_on(piece, rest_start, false, on_segment);
                rest = after;
                rest_start += MAX_LINE_BYTES as u64;
            }
            self.partial.clear();
            self.partial.extend_from_slice(rest);
            if n < READ_CHUNK_BYTES {
                // A short read: the file has no more bytes for now.
                outcome.eof = true;
                break;
            }
        }
        if self.partial.capacity() > MAX_LINE_BYTES && self.partial.len() < 4096 {
            self.partial.shrink_to(4096);
        }
        // Grown for a long partial line: back to one chunk once that line is done.
        if buf.len() > READ_CHUNK_BYTES + 4096 && self.partial.len() < 4096 {
            buf.truncate(READ_CHUNK_BYTES);
            buf.shrink_to_fit();
        }
        Ok(outcome)
    }

    /// Hands on one line (`last`) or a piece cut from a long one, in pieces of at most
    /// [`MAX_LINE_BYTES`].
    fn hand_on(
        &mut self,
        mut bytes: &[u8],
        mut start: u64,
        last: bool,
        on_segment: &mut impl FnMut(Segment<'_>),
    ) {
        while bytes.len() > MAX_LINE_BYTES {
            let (piece, after) = bytes.split_at(MAX_LINE_BYTES);
            on_segment(Segment {
                bytes: piece,
                start,
                end: start + MAX_LINE_BYTES as u64,
                continued: self.continuing,
                last: false,
            });
            self.continuing = true;
            bytes = after;
            start += MAX_LINE_BYTES as u64;
        }
        on_segment(Segment {
            bytes,
            start,
            end: start + bytes.len() as u64 + u64::from(last),
            continued: self.continuing,
            last,
        });
        self.continuing = !last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(reader: &mut FileReader, buf: &mut Vec<u8>) -> Vec<(String, u64, u64, bool, bool)> {
        let mut out = Vec::new();
        reader
            .read(buf, usize::MAX, &mut |s: Segment<'_>| {
                out.push((
                    String::from_utf8_lossy(s.bytes).into_owned(),
                    s.start,
                    s.end,
                    s.continued,
                    s.last,
                ))
            })
            .unwrap();
        out
    }

    /// Lines come out with exact offsets; a line without its newline waits for the rest.
    #[test]
    fn lines_and_offsets_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"one\ntwo\nthr").unwrap();
        let (mut reader, _) = FileReader::open(&path).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            collect(&mut reader, &mut buf),
            vec![
                ("one".into(), 0, 4, false, true),
                ("two".into(), 4, 8, false, true)
            ]
        );
        assert_eq!(reader.processed(), 8);
        file.write_all(b"ee\n").unwrap();
        assert_eq!(
            collect(&mut reader, &mut buf),
            vec![("three".into(), 8, 14, false, true)]
        );
        assert_eq!(reader.processed(), 14);
    }

    /// A line longer than the bound is handed on in bounded pieces whose offsets tile it.
    #[test]
    fn long_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let long = "x".repeat(MAX_LINE_BYTES * 2 + 10);
        std::fs::write(&path, format!("{long}\nok\n")).unwrap();
        let (mut reader, _) = FileReader::open(&path).unwrap();
        let mut buf = Vec::new();
        let segments = collect(&mut reader, &mut buf);
        let shape: Vec<_> = segments
            .iter()
            .map(|(text, start, end, continued, last)| {
                (text.len(), *start, *end, *continued, *last)
            })
            .collect();
        let m = MAX_LINE_BYTES as u64;
        assert_eq!(
            shape,
            vec![
                (MAX_LINE_BYTES, 0, m, false, false),
                (MAX_LINE_BYTES, m, 2 * m, true, false),
                (10, 2 * m, 2 * m + 11, true, true),
                (2, 2 * m + 11, 2 * m + 14, false, true),
            ]
        );
    }

    /// A file cut back in place is noticed, by its size or by its changed head.
    #[test]
    fn truncation_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "first line\nsecond line\n").unwrap();
        let (mut reader, _) = FileReader::open(&path).unwrap();
        let mut buf = Vec::new();
        collect(&mut reader, &mut buf);
        assert!(!reader.truncated(true).unwrap());
        std::fs::write(&path, "new\n").unwrap();
        assert!(reader.truncated(false).unwrap());
        reader.restart().unwrap();
        assert_eq!(
            collect(&mut reader, &mut buf),
            vec![("new".into(), 0, 4, false, true)]
        );
        // Rewritten past the old offset: only the head tells.
        std::fs::write(&path, "rewritten, and longer than before\n").unwrap();
        assert!(reader.truncated(false).unwrap());
        // Unchanged size, changed head: told when heads are checked.
        reader.restart().unwrap();
        collect(&mut reader, &mut buf);
        std::fs::write(&path, "REWRITTEN, AND LONGER THAN BEFORE\n").unwrap();
        assert!(!reader.truncated(false).unwrap());
        assert!(reader.truncated(true).unwrap());
    }
}
