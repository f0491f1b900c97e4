//! The seam through which tests give a buffer directory a full disk. Every write that makes a
//! buffer file grow (a record appended, a segment created, the ack file written) first asks
//! [`reserve`]; in the agent that is a no-op and the kernel answers `ENOSPC` itself, in unit
//! tests a directory can be given a quota, counted in 4 KiB blocks like tmpfs, past which
//! [`reserve`] fails exactly as a full file system would.

/// Whether growing `file` to `new_len` bytes fits; always, outside unit tests.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn reserve(_file: &std::path::Path, _new_len: u64) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(super) use quota::reserve;

#[cfg(test)]
pub(crate) mod quota {
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    /// Allocation unit of the simulated file system (a tmpfs page).
    const BLOCK: u64 = 4096;
    /// `ENOSPC` on Linux.
    const ENOSPC: i32 = 28;

    fn quotas() -> &'static Mutex<HashMap<PathBuf, u64>> {
        static QUOTAS: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
        QUOTAS.get_or_init(|| Mutex::new(HashMap::new()))
    }

    fn blocks(len: u64) -> u64 {
        len.div_ceil(BLOCK) * BLOCK
    }

    /// Gives `dir` a disk of `bytes` (rounded to blocks), or lifts its limit with `None`.
    pub(crate) fn set(dir: &Path, bytes: Option<u64>) {
        let mut quotas = quotas().lock().unwrap_or_else(|p| p.into_inner());
        match bytes {
            Some(bytes) => quotas.insert(dir.to_owned(), bytes),
            None => quotas.remove(dir),
        };
    }

    /// Bytes the files of `dir` take, in blocks.
    pub(in crate::buffer) fn used(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| blocks(m.len()))
                    .sum()
            })
            .unwrap_or(0)
    }

    pub(in crate::buffer) fn reserve(file: &Path, new_len: u64) -> io::Result<()> {
        let Some(dir) = file.parent() else {
            return Ok(());
        };
        let Some(limit) = quotas()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
            .copied()
        else {
            return Ok(());
        };
        let current = std::fs::metadata(file).map_or(0, |m| m.len());
        let grows = blocks(new_len).saturating_sub(blocks(current));
        // A new file takes its block when created, as `fs::write` does before writing.
        if grows > 0 && used(dir) + grows > limit {
            if current == 0 && !file.exists() {
                let _ = std::fs::File::create(file);
            }
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}
