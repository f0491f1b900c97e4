//! Log source, message layer: turns the text of one log record into message, level, time and
//! attributes according to the configured `format` (`json`, `logfmt` or `text`), and parses
//! the timestamps found in CRI headers and structured fields.
//!
//! Structured parsing is best effort: a line that is not valid JSON or logfmt (a stack trace
//! printed by a JSON-logging app, a banner) stays plain text, with its level guessed the same
//! way as for `text`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::event::Level;

/// What a recognised key holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Message,
    Level,
    Time,
}

/// The role of a key and its rank among the keys of that role (lower is preferred):
/// message `msg`, `message`, `log`; level `level`, `lvl`, `severity`; time `time`, `ts`,
/// `timestamp`, `@timestamp`.
fn role(key: &str) -> Option<(Role, u8)> {
    Some(match key {
        "msg" => (Role::Message, 0),
        "message" => (Role::Message, 1),
        "log" => (Role::Message, 2),
        "level" => (Role::Level, 0),
        "lvl" => (Role::Level, 1),
        "severity" => (Role::Level, 2),
        "time" => (Role::Time, 0),
        "ts" => (Role::Time, 1),
        "timestamp" => (Role::Time, 2),
        "@timestamp" => (Role::Time, 3),
        _ => return None,
    })
}

/// What a structured line yielded.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Fields {
    /// The message field, or `None` when the line has none (the whole line is then the message).
    pub message: Option<String>,
    pub level: Option<Level>,
    /// Nanoseconds since the epoch.
    pub time_unix_nano: Option<u64>,
    /// Every other field, in line order.
    pub attributes: Vec<(String, String)>,
}

/// One field value as read from a line: text (borrowed from the line when it has no escapes),
/// a number, or anything else rendered as compact JSON.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Text(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Other(String),
    Null,
}

impl Value<'_> {
    fn into_string(self) -> Option<String> {
        match self {
            Value::Text(text) => Some(text.into_owned()),
            Value::Unsigned(n) => Some(n.to_string()),
            Value::Signed(n) => Some(n.to_string()),
            Value::Float(n) => Some(n.to_string()),
            Value::Other(text) => Some(text),
            Value::Null => None,
        }
    }

    fn level(&self) -> Option<Level> {
        match self {
            Value::Text(text) => {
                Level::parse(text).or_else(|| text.parse::<u64>().ok().and_then(numeric_level))
            }
            Value::Unsigned(n) => numeric_level(*n),
            Value::Signed(n) => u64::try_from(*n).ok().and_then(numeric_level),
            _ => None,
        }
    }

    fn time(&self) -> Option<u64> {
        match self {
            Value::Text(text) => parse_rfc3339(text.as_bytes())
                .or_else(|| text.parse::<u64>().ok().and_then(epoch_integer))
                .or_else(|| text.parse::<f64>().ok().and_then(epoch)),
            Value::Unsigned(n) => epoch_integer(*n),
            Value::Signed(n) => u64::try_from(*n).ok().and_then(epoch_integer),
            Value::Float(n) => epoch(*n),
            _ => None,
        }
    }
}

/// Levels of bunyan and pino (`10` trace … `60` fatal).
fn numeric_level(n: u64) -> Option<Level> {
    Some(match n {
        10 => Level::Trace,
        20 => Level::Debug,
        30 => Level::Info,
        40 => Level::Warn,
        50 => Level::Error,
        60 => Level::Fatal,
        _ => return None,
    })
}

/// An epoch number in seconds, milliseconds, microseconds or nanoseconds (told apart by size:
/// seconds reach 1e11 only in the year 5138).
fn epoch_integer(value: u64) -> Option<u64> {
    if value == 0 {
        return None;
    }
    let nanos_per_unit: u64 = match value {
        0..100_000_000_000 => 1_000_000_000,
        100_000_000_000..100_000_000_000_000 => 1_000_000,
        100_000_000_000_000..100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    value.checked_mul(nanos_per_unit)
}

/// Like [`epoch_integer`], for a number with a fraction.
fn epoch(value: f64) -> Option<u64> {
    if !value.is_finite() || value <= 0.0 || value >= u64::MAX as f64 {
        return None;
    }
    let nanos_per_unit: u64 = if value < 1e11 {
        1_000_000_000
    } else if value < 1e14 {
        1_000_000
    } else if value < 1e17 {
        1_000
    } else {
        1
    };
    // Whole units in integers, so that `1714564800.25` is exactly a quarter past.
    let whole = value.trunc();
    let fraction = ((value - whole) * nanos_per_unit as f64).round() as u64;
    (whole as u64)
        .checked_mul(nanos_per_unit)?
        .checked_add(fraction)
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Signed(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Other(if v { "true" } else { "false" }.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value<'de>, A::Error> {
        let nested = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Value::Other(nested.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value<'de>, A::Error> {
        let nested = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Value::Other(nested.to_string()))
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// A key, borrowed from the line when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Text(text) => Ok(Key(text)),
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

/// The fields of one top-level JSON object, in order.
struct Object<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, Value<'de>>()? {
                    fields.push((key, value));
                }
                Ok(Object(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Sorts parsed key/value pairs into message, level, time and attributes.
fn classify(pairs: Vec<(Cow<'_, str>, Value<'_>)>) -> Fields {
    // The preferred key of each role: (rank, index).
    let mut chosen: [Option<(u8, usize)>; 3] = [None; 3];
    for (index, (key, _)) in pairs.iter().enumerate() {
        if let Some((role, rank)) = role(key) {
            let slot = &mut chosen[role as usize];
            if slot.is_none_or(|(best, _)| rank < best) {
                *slot = Some((rank, index));
            }
        }
    }
    let chosen_index = |role: Role| chosen[role as usize].map(|(_, index)| index);
    let (message_at, level_at, time_at) = (
        chosen_index(Role::Message),
        chosen_index(Role::Level),
        chosen_index(Role::Time),
    );
    let mut fields = Fields {
        attributes: Vec::with_capacity(pairs.len()),
        ..Fields::default()
    };
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if Some(i) == level_at {
            if let Some(level) = value.level() {
                fields.level = Some(level);
                continue;
            }
        } else if Some(i) == time_at {
            if let Some(time) = value.time() {
                fields.time_unix_nano = Some(time);
                continue;
            }
        } else if Some(i) == message_at {
            fields.message = value.into_string();
            continue;
        }
        if let Some(text) = value.into_string() {
            fields.attributes.push((key.into_owned(), text));
        }
    }
    fields
}

/// Parses a line holding one JSON object; `None` when it is anything else.
pub(crate) fn parse_json(line: &str) -> Option<Fields> {
    let trimmed = line.trim_ascii();
    if !trimmed.starts_with('{') {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(trimmed);
    let object = Object::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(classify(object.0))
}

/// Parses a logfmt line (`key=value key2="quoted value"`); `None` unless every token is a
/// `key=value` pair.
pub(crate) fn parse_logfmt(line: &str) -> Option<Fields> {
    let bytes = line.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && !matches!(bytes[i], b'=' | b'"') && !bytes[i].is_ascii_whitespace()
        {
            i += 1;
        }
        if i == key_start || bytes.get(i) != Some(&b'=') {
            return None;
        }
        let key = &line[key_start..i];
        i += 1;
        let value = if bytes.get(i) == Some(&b'"') {
            let (value, next) = quoted(line, i + 1)?;
            i = next;
            value
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            Cow::Borrowed(&line[start..i])
        };
        pairs.push((Cow::Borrowed(key), Value::Text(value)));
    }
    if pairs.is_empty() {
        return None;
    }
    Some(classify(pairs))
}

/// A double-quoted logfmt value starting at `start` (just past the opening quote): the
/// unescaped text and the index just past the closing quote.
fn quoted(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let bytes = line.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((Cow::Borrowed(&line[start..i]), i + 1)),
            b'\\' => break,
            _ => i += 1,
        }
    }
    // Escapes: build the value.
    let mut out = String::with_capacity(i - start + 16);
    out.push_str(&line[start..i]);
    let mut chars = line[i..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), i + at + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => out.push(other),
            },
            other => out.push(other),
        }
    }
    None
}

/// Level words recognised in free text, matched without regard to case.
const TEXT_LEVELS: [(&str, Level); 20] = [
    ("TRACE", Level::Trace),
    ("TRC", Level::Trace),
    ("DEBUG", Level::Debug),
    ("DBG", Level::Debug),
    ("INFO", Level::Info),
    ("INF", Level::Info),
    ("NOTICE", Level::Info),
    ("WARN", Level::Warn),
    ("WARNING", Level::Warn),
    ("WRN", Level::Warn),
    ("ERROR", Level::Error),
    ("ERR", Level::Error),
    ("SEVERE", Level::Error),
    ("FATAL", Level::Fatal),
    ("FTL", Level::Fatal),
    ("CRITICAL", Level::Fatal),
    ("CRIT", Level::Fatal),
    ("PANIC", Level::Fatal),
    ("EMERG", Level::Fatal),
    ("ALERT", Level::Fatal),
];

/// How far into a text line the level is looked for.
const LEVEL_SCAN_BYTES: usize = 64;
/// How many tokens of a text line are looked at.
const LEVEL_SCAN_TOKENS: usize = 8;

/// Bytes that separate the tokens looked at for a level.
const SEPARATORS: [bool; 256] = {
    let mut table = [false; 256];
    let separators = b" \t[]()<>:|,=";
    let mut i = 0;
    while i < separators.len() {
        table[separators[i] as usize] = true;
        i += 1;
    }
    table
};

/// Guesses the level of a free-text line from its first few tokens: an upper-case level word
/// (`ERROR`, `WARN`, `INFO`, …), any-case one in brackets or before a colon (`[error]`,
/// `panic:`), or a klog header (`E0102 15:04:05.000000 …`). Never allocates.
pub(crate) fn infer_level(line: &str) -> Option<Level> {
    let bytes = line.as_bytes();
    let bytes = &bytes[..bytes.len().min(LEVEL_SCAN_BYTES)];
    if let Some(level) = klog_level(bytes) {
        return Some(level);
    }
    let is_separator = |b: u8| SEPARATORS[usize::from(b)];
    let mut i = 0;
    let mut tokens = 0;
    while i < bytes.len() && tokens < LEVEL_SCAN_TOKENS {
        while i < bytes.len() && is_separator(bytes[i]) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !is_separator(bytes[i]) {
            i += 1;
        }
        if start == i {
            break;
        }
        tokens += 1;
        let token = &bytes[start..i];
        if !(3..=8).contains(&token.len()) || !token[0].is_ascii_alphabetic() {
            continue;
        }
        let upper = token.iter().all(u8::is_ascii_uppercase);
        let marked = (start > 0 && matches!(bytes[start - 1], b'[' | b'<' | b'('))
            || matches!(bytes.get(i), Some(b':' | b']' | b'>' | b')'));
        if !upper && !marked {
            continue;
        }
        if let Some((_, level)) = TEXT_LEVELS
            .iter()
            .find(|(word, _)| word.as_bytes().eq_ignore_ascii_case(token))
        {
            return Some(*level);
        }
    }
    None
}

/// The klog header `Lmmdd hh:mm:ss.uuuuuu`, where `L` is `I`, `W`, `E` or `F`.
fn klog_level(bytes: &[u8]) -> Option<Level> {
    if bytes.len() < 7 || bytes[5] != b' ' || !bytes[1..5].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(match bytes[0] {
        b'I' => Level::Info,
        b'W' => Level::Warn,
        b'E' => Level::Error,
        b'F' => Level::Fatal,
        _ => return None,
    })
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.123456789Z`, `…+02:00`; a space may
/// stand for the `T`) into nanoseconds since the epoch. `None` for anything else or for times
/// before 1970.
pub(crate) fn parse_rfc3339(text: &[u8]) -> Option<u64> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        let mut n = 0u32;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(b - b'0');
        }
        Some(n)
    };
    if text.len() < 20
        || text[4] != b'-'
        || text[7] != b'-'
        || !matches!(text[10], b'T' | b't' | b' ')
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Leap seconds (`:60`) are read as the following second.
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if text.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < text.len() && text[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(text[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match text.get(i) {
        Some(b'Z' | b'z') if i + 1 == text.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(i + 1..i + 3)?;
            let (minutes, end) = match text.get(i + 3) {
                Some(b':') => (digits(i + 4..i + 6)?, i + 6),
                _ => (digits(i + 3..i + 5)?, i + 5),
            };
            if end != text.len() || hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    // Nanoseconds since the epoch fit a u64 until 2554; a later year is no timestamp to use.
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_714_564_800_000_000_000; // 2024-05-01T12:00:00Z

    /// RFC 3339 times with fractions and offsets land on the same instant.
    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339(b"2024-05-01T12:00:00Z"), Some(T0));
        assert_eq!(
            parse_rfc3339(b"2024-05-01T12:00:00.123456789Z"),
            Some(T0 + 123_456_789)
        );
        assert_eq!(
            parse_rfc3339(b"2024-05-01T14:00:00.5+02:00"),
            Some(T0 + 500_000_000)
        );
        assert_eq!(parse_rfc3339(b"2024-05-01 11:30:00-0030"), Some(T0));
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339(b"2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        assert_eq!(parse_rfc3339(b"2024-05-01T12:00:00"), None);
        assert_eq!(parse_rfc3339(b"2024-13-01T12:00:00Z"), None);
        assert_eq!(parse_rfc3339(b"not a time at all, no"), None);
        // Found by the `logs` fuzz target: a year past 2554 overflowed the nanosecond count
        // (a panic in debug builds, a wrong time in release). It is no timestamp instead.
        assert_eq!(parse_rfc3339(b"4048-01-02T03:04:05Z"), None);
        assert_eq!(
            parse_rfc3339(b"2554-07-21T23:34:33Z"),
            Some(18_446_744_073_000_000_000)
        );
    }

    /// JSON lines yield message, level, time and the remaining fields as attributes.
    #[test]
    fn json_fields() {
        let fields = parse_json(
            r#"{"time":"2024-05-01T12:00:00Z","level":"WARNING","msg":"disk \"low\"","free_mb":12,"ok":false,"ctx":{"a":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(fields.message.as_deref(), Some("disk \"low\""));
        assert_eq!(fields.level, Some(Level::Warn));
        assert_eq!(fields.time_unix_nano, Some(T0));
        assert_eq!(
            fields.attributes,
            vec![
                ("free_mb".to_owned(), "12".to_owned()),
                ("ok".to_owned(), "false".to_owned()),
                ("ctx".to_owned(), r#"{"a":[1,2]}"#.to_owned()),
            ]
        );
    }

    /// Epoch times in seconds, milliseconds and nanoseconds, and pino's numeric levels.
    #[test]
    fn json_epoch_times_and_numeric_levels() {
        let seconds = parse_json(r#"{"ts":1714564800.25,"lvl":"error","message":"m"}"#).unwrap();
        assert_eq!(seconds.time_unix_nano, Some(T0 + 250_000_000));
        assert_eq!(seconds.level, Some(Level::Error));
        let millis = parse_json(r#"{"time":1714564800123,"level":50,"msg":"boom"}"#).unwrap();
        assert_eq!(millis.time_unix_nano, Some(T0 + 123_000_000));
        assert_eq!(millis.level, Some(Level::Error));
        let nanos = parse_json(r#"{"timestamp":"1714564800000000001"}"#).unwrap();
        assert_eq!(nanos.time_unix_nano, Some(T0 + 1));
        assert_eq!(nanos.message, None);
    }

    /// An unknown level or an unreadable time is kept as an attribute, not lost.
    #[test]
    fn json_unreadable_level_and_time_stay_attributes() {
        let fields = parse_json(r#"{"level":"verbose","time":"yesterday","msg":"x"}"#).unwrap();
        assert_eq!(fields.level, None);
        assert_eq!(fields.time_unix_nano, None);
        assert_eq!(
            fields.attributes,
            vec![
                ("level".to_owned(), "verbose".to_owned()),
                ("time".to_owned(), "yesterday".to_owned()),
            ]
        );
    }

    /// Anything but one JSON object is not JSON.
    #[test]
    fn json_rejects_non_objects() {
        assert_eq!(parse_json("plain text"), None);
        assert_eq!(parse_json(r#"{"a":1} trailing"#), None);
        assert_eq!(parse_json(r#"{"a":1"#), None);
        assert_eq!(parse_json("[1,2]"), None);
    }

    /// logfmt pairs, quoted values with escapes, and the same key recognition as JSON.
    #[test]
    fn logfmt_fields() {
        let fields = parse_logfmt(
            r#"ts=2024-05-01T12:00:00Z level=info msg="user \"bob\" logged in" user=bob dur=1.5ms empty="#,
        )
        .unwrap();
        assert_eq!(fields.message.as_deref(), Some(r#"user "bob" logged in"#));
        assert_eq!(fields.level, Some(Level::Info));
        assert_eq!(fields.time_unix_nano, Some(T0));
        assert_eq!(
            fields.attributes,
            vec![
                ("user".to_owned(), "bob".to_owned()),
                ("dur".to_owned(), "1.5ms".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert_eq!(parse_logfmt("just some words"), None);
        assert_eq!(parse_logfmt("a=1 then words"), None);
        assert_eq!(parse_logfmt(r#"msg="unterminated"#), None);
        assert_eq!(parse_logfmt(""), None);
    }

    /// Levels guessed from free text: upper-case words, marked words, klog headers; ordinary
    /// words are not levels.
    #[test]
    fn text_levels() {
        assert_eq!(
            infer_level("2024-05-01 12:00:00.123 ERROR [main] c.e.Foo - failed"),
            Some(Level::Error)
        );
        assert_eq!(infer_level("[warn] disk almost full"), Some(Level::Warn));
        assert_eq!(infer_level("WARNING:root:careful"), Some(Level::Warn));
        assert_eq!(infer_level("panic: runtime error"), Some(Level::Fatal));
        assert_eq!(
            infer_level("E0501 12:00:00.000000    1 x.go:10] boom"),
            Some(Level::Error)
        );
        assert_eq!(
            infer_level("I0501 12:00:00.000000    1 x.go:10] ok"),
            Some(Level::Info)
        );
        assert_eq!(infer_level("info about the error we saw"), None);
        assert_eq!(infer_level("config loaded"), None);
        assert_eq!(infer_level(""), None);
    }
}
