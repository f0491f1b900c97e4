//! The disk buffer's on-disk encoding: segment headers, record frames and the ack file. The
//! layout is described at the top of [`crate::buffer`]; this module only turns it into bytes and
//! back, with no I/O.

/// First bytes of every segment file.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"VIGILSEG";
/// First bytes of the ack file.
pub(super) const ACK_MAGIC: [u8; 8] = *b"VIGILACK";
/// The one on-disk format version this code reads and writes.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Bytes of a segment header: magic, version, first record id, CRC.
pub(super) const SEGMENT_HEADER_LEN: u64 = 24;
/// Bytes of a record frame header: payload length, payload CRC, header CRC.
pub(super) const FRAME_HEADER_LEN: usize = 12;
/// Bytes of the ack file: magic, version, next id, segment, offset, CRC.
pub(super) const ACK_LEN: usize = 40;
/// File name suffix of segment files.
pub(super) const SEGMENT_SUFFIX: &str = ".seg";
/// Name of the ack (checkpoint) file.
pub(super) const ACK_FILE: &str = "ack";
/// Name of the temporary file the ack file is written to before the rename.
pub(super) const ACK_TMP_FILE: &str = "ack.tmp";

/// Bytes a record of `payload_len` bytes takes in a segment.
pub(super) fn frame_len(payload_len: usize) -> u64 {
    (FRAME_HEADER_LEN + payload_len) as u64
}

/// File name of the segment whose first record is `first_id`: zero-padded so names sort by id.
pub(super) fn segment_file_name(first_id: u64) -> String {
    format!("{first_id:020}{SEGMENT_SUFFIX}")
}

/// The first record id of a segment file name, or `None` for any other file.
pub(super) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The header of a new segment whose first record is `first_id`.
pub(super) fn encode_segment_header(first_id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&first_id.to_le_bytes());
    let crc = crc32fast::hash(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What a segment header says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SegmentHeader {
    /// A valid version-1 header.
    Valid { first_id: u64 },
    /// A Vigil segment written in another format version.
    UnknownVersion(u32),
    /// Not a segment header (wrong magic or checksum).
    Corrupt,
}

/// Reads a segment header.
pub(super) fn decode_segment_header(bytes: &[u8; SEGMENT_HEADER_LEN as usize]) -> SegmentHeader {
    if bytes[0..8] != SEGMENT_MAGIC {
        return SegmentHeader::Corrupt;
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return SegmentHeader::UnknownVersion(version);
    }
    if crc32fast::hash(&bytes[0..20]) != u32_at(bytes, 20) {
        return SegmentHeader::Corrupt;
    }
    SegmentHeader::Valid {
        first_id: u64_at(bytes, 12),
    }
}

/// The frame header for `payload`.
pub(super) fn encode_frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut out = [0u8; FRAME_HEADER_LEN];
    // Callers refuse payloads over `u32::MAX` bytes before framing them.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out[0..8]);
    out[8..12].copy_from_slice(&header_crc.to_le_bytes());
    out
}

/// A frame header whose own checksum matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// Payload bytes that follow the header.
    pub(super) len: u32,
    /// CRC-32 of the payload.
    pub(super) payload_crc: u32,
}

impl FrameHeader {
    /// Whether `payload` is what was written.
    pub(super) fn matches(&self, payload: &[u8]) -> bool {
        crc32fast::hash(payload) == self.payload_crc
    }
}

/// Reads a frame header; `None` when its checksum does not match (framing is lost).
pub(super) fn decode_frame_header(bytes: &[u8; FRAME_HEADER_LEN]) -> Option<FrameHeader> {
    if crc32fast::hash(&bytes[0..8]) != u32_at(bytes, 8) {
        return None;
    }
    Some(FrameHeader {
        len: u32_at(bytes, 0),
        payload_crc: u32_at(bytes, 4),
    })
}

/// A place in the buffer: a record id and where that record's frame starts on disk. The ack
/// file stores the position of the first unacknowledged record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    /// Id of the record.
    pub(super) id: u64,
    /// First record id (file name) of the segment holding the record.
    pub(super) segment: u64,
    /// Byte offset of the record's frame in the segment.
    pub(super) offset: u64,
}

/// The ack file's bytes.
pub(super) fn encode_ack(point: Position) -> [u8; ACK_LEN] {
    let mut out = [0u8; ACK_LEN];
    out[0..8].copy_from_slice(&ACK_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&point.id.to_le_bytes());
    out[20..28].copy_from_slice(&point.segment.to_le_bytes());
    out[28..36].copy_from_slice(&point.offset.to_le_bytes());
    let crc = crc32fast::hash(&out[0..36]);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What an ack file says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AckFile {
    Valid(Position),
    UnknownVersion(u32),
    Corrupt,
}

/// Reads the ack file's bytes.
pub(super) fn decode_ack(bytes: &[u8]) -> AckFile {
    if bytes.len() != ACK_LEN || bytes[0..8] != ACK_MAGIC {
        return AckFile::Corrupt;
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return AckFile::UnknownVersion(version);
    }
    if crc32fast::hash(&bytes[0..36]) != u32_at(bytes, 36) {
        return AckFile::Corrupt;
    }
    AckFile::Valid(Position {
        id: u64_at(bytes, 12),
        segment: u64_at(bytes, 20),
        offset: u64_at(bytes, 28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every header type reads back what was written, and a flipped bit is noticed.
    #[test]
    fn headers_round_trip_and_detect_damage() {
        let header = encode_segment_header(42);
        assert_eq!(
            decode_segment_header(&header),
            SegmentHeader::Valid { first_id: 42 }
        );
        let mut damaged = header;
        damaged[14] ^= 1;
        assert_eq!(decode_segment_header(&damaged), SegmentHeader::Corrupt);
        let mut newer = header;
        newer[8] = 2;
        assert_eq!(
            decode_segment_header(&newer),
            SegmentHeader::UnknownVersion(2)
        );

        let frame = encode_frame_header(b"hello");
        let decoded = decode_frame_header(&frame).unwrap();
        assert_eq!(decoded.len, 5);
        assert!(decoded.matches(b"hello"));
        assert!(!decoded.matches(b"hellp"));
        let mut damaged = frame;
        damaged[0] ^= 4;
        assert_eq!(decode_frame_header(&damaged), None);
        // A zero-filled tail (a crash after the size grew but before data reached disk) is
        // never a valid frame.
        assert_eq!(decode_frame_header(&[0u8; FRAME_HEADER_LEN]), None);

        let point = Position {
            id: 7,
            segment: 3,
            offset: 99,
        };
        assert_eq!(decode_ack(&encode_ack(point)), AckFile::Valid(point));
        let mut damaged = encode_ack(point);
        damaged[30] ^= 1;
        assert_eq!(decode_ack(&damaged), AckFile::Corrupt);
        assert_eq!(decode_ack(&[]), AckFile::Corrupt);
    }

    /// Segment names sort by first id and foreign files are not taken for segments.
    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(5), "00000000000000000005.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("ack"), None);
        assert_eq!(parse_segment_file_name("5.seg"), None);
    }
}
