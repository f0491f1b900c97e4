//! The series cache: the encoded labels of every series of the page, kept from one scrape to
//! the next, as Prometheus' own scrape loop keeps a cache of the series it has seen.
//!
//! An application's page names the same series scrape after scrape; only the values change.
//! So [`SeriesCache::encode`] reads each sample line's series — its metric name and label block,
//! as written — as a key, and when that exact text was read before it copies the series'
//! remote-write labels ([`SeriesLabels`]: page labels, identity labels, `__name__`, sorted, the
//! page's clashes renamed), encoded once, and reads only the value and timestamp. A series not
//! seen before is read by the [`parse`]r like any other line, and its encoding kept.
//!
//! The output is byte for byte what encoding every line afresh gives, and a page is refused for
//! the same lines with the same errors: a key is only ever the text of a series the parser
//! accepted, and where a line's series ends is found the way the parser finds it
//! (`parse::series_end`); the value, the timestamp, comments and `# EOF` are read by the
//! parser's own code at every scrape.
//!
//! It also tells whether the page named any series twice ([`Encoded::unique`]): a series seen
//! again on the same page, or a new series whose labels (after merging, renaming and dropping
//! empty values) are those of a series already cached, written another way. A page without
//! (nearly every page) makes a record remote-write receivers take as it is.
//!
//! The cache keeps the series of the last page read whole: after a page, series it did not have
//! are dropped (a failed page drops nothing). Its keys and encodings are bounded by
//! [`MAX_CACHE_BYTES`]; series beyond that are read afresh at every scrape. It is emptied when
//! the identity labels or the page's format change.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use super::parse::{self, Exposition, Format, ParseError};
use super::render::{IdentityLabels, SeriesLabels};
use crate::prompb;

/// Most bytes of keys and encoded labels the cache keeps (a few hundred bytes a series:
/// node_exporter's 3,000 series take about 1 MiB).
pub const MAX_CACHE_BYTES: usize = 8 << 20;

/// Bytes counted for an entry besides its key and labels (the map's slot and two allocations).
const ENTRY_OVERHEAD: usize = 64;

/// The encoded labels of the series seen on the previous page.
#[derive(Debug, Default)]
pub struct SeriesCache {
    entries: HashMap<Box<str>, Entry, foldhash::fast::RandomState>,
    /// The hashes of the entries' encoded labels, one entry each: a new series with the labels
    /// of a cached one is a series the page names twice (or a cached one written another way).
    label_hashes: HashSet<u64, foldhash::fast::RandomState>,
    /// Bytes the entries take, as counted against [`MAX_CACHE_BYTES`].
    bytes: usize,
    /// Pages encoded so far; an entry remembers the last one that had it.
    pages: u64,
    /// What the entries were encoded for.
    format: Option<Format>,
    identity: Vec<(String, String)>,
}

#[derive(Debug)]
struct Entry {
    labels: Box<[u8]>,
    label_hash: u64,
    seen: u64,
}

/// What [`SeriesCache::encode`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Samples (series) written.
    pub samples: usize,
    /// Whether no two of them have the same labels.
    pub unique: bool,
}

impl SeriesCache {
    /// Series cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the cached series take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.label_hashes.clear();
        self.bytes = 0;
    }

    /// Whether a series with the encoded labels `labels` may be cached (a false yes only when
    /// two label sets share a 64-bit hash).
    pub fn has_labels(&self, labels: &[u8]) -> bool {
        self.label_hashes
            .contains(&self.label_hashes.hasher().hash_one(labels))
    }

    /// Appends one remote-write `timeseries` field per sample of the page `text` to `out`:
    /// the series [`SeriesLabels`] labels with `identity`, stamped with the sample's own
    /// timestamp or `scrape_time_ms`. Returns the number of samples and whether their label
    /// sets are unique; on a malformed page, the parser's error and `out` as it was.
    pub fn encode(
        &mut self,
        text: &str,
        format: Format,
        identity: &IdentityLabels<'_>,
        scrape_time_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, ParseError> {
        let same_identity = self.identity.len() == identity.len()
            && self
                .identity
                .iter()
                .zip(identity)
                .all(|((n, v), (name, value))| n == name && v == value);
        if self.format != Some(format) || !same_identity {
            self.clear();
            self.format = Some(format);
            self.identity = identity
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
        }
        self.pages += 1;
        let page = self.pages;
        let start = out.len();
        let series_labels = SeriesLabels::new(identity);
        let mut samples = 0;
        let mut seen = 0;
        let mut unique = true;
        let mut encoded = Vec::new();
        let scanned = parse::scan(
            text,
            format,
            Exposition::default(),
            false,
            |parser, line| {
                let bytes = line.as_bytes();
                let name_end = parse::metric_name_end(bytes, 0);
                let cached = parse::series_end(bytes, name_end)
                    .and_then(|end| Some((end, self.entries.get_mut(&line[..end])?)));
                if let Some((end, entry)) = cached {
                    let (value, timestamp) =
                        parser.value_and_timestamp(line, &line[..name_end], end)?;
                    let time = timestamp.unwrap_or(scrape_time_ms);
                    prompb::put_encoded_series(&entry.labels, value, time, out);
                    samples += 1;
                    if entry.seen == page {
                        unique = false;
                    } else {
                        entry.seen = page;
                        seen += 1;
                    }
                    return Ok(());
                }
                let end = parser.sample(line)?;
                // The sample just read, the page's only one: the parser keeps none once encoded.
                if let Some(read) = parser.page.all_samples().last() {
                    encoded.clear();
                    series_labels.encode(read.name, parser.page.labels(read), &mut encoded);
                    let time = read.timestamp_ms.unwrap_or(scrape_time_ms);
                    prompb::put_encoded_series(&encoded, read.value, time, out);
                    samples += 1;
                }
                parser.page.forget_samples();
                // A series with the labels of a cached one (seen on this page or not) is not cached
                // under a second key, which would hide the duplicate the next time.
                let label_hash = self.label_hashes.hasher().hash_one(encoded.as_slice());
                let cost = end + encoded.len() + ENTRY_OVERHEAD;
                if self.label_hashes.contains(&label_hash) || self.bytes + cost > MAX_CACHE_BYTES {
                    unique = false;
                    return Ok(());
                }
                self.bytes += cost;
                seen += 1;
                self.label_hashes.insert(label_hash);
                let labels = encoded.as_slice().into();
                self.entries.insert(
                    line[..end].into(),
                    Entry {
                        labels,
                        label_hash,
                        seen: page,
                    },
                );
                Ok(())
            },
        );
        if let Err(error) = scanned {
            out.truncate(start);
            return Err(error);
        }
        if seen < self.entries.len() {
            let (bytes, label_hashes) = (&mut self.bytes, &mut self.label_hashes);
            self.entries.retain(|key, entry| {
                let keep = entry.seen == page;
                if !keep {
                    *bytes -= key.len() + entry.labels.len() + ENTRY_OVERHEAD;
                    label_hashes.remove(&entry.label_hash);
                }
                keep
            });
        }
        Ok(Encoded { samples, unique })
    }
}
