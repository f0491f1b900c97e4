//! Known events of anomaly and forecast rules: dated occurrences (a tax deadline, a salary
//! day, a sale) whose effect the analytics engine learns instead of judging them anomalous, and
//! the RFC 3339 instants that bound them.

use std::borrow::Cow;
use std::fmt;

use kube::KubeSchema;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// A known event. Occurrences that share a name share their learned effect, so name a
/// recurring event the same way each time (`tax-deadline`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// A date is read as midnight UTC. `timestamp()` compares instants, so `end` given with an
// offset is compared correctly with a `start` in UTC.
#[x_kube(validation = Rule::new("!has(self.end) || timestamp(self.end.size() == 10 ? self.end + 'T00:00:00Z' : self.end) > timestamp(self.start.size() == 10 ? self.start + 'T00:00:00Z' : self.start)").message("knownEvents: end must be later than start").field_path(".end"))]
pub struct KnownEvent {
    /// Name of the event, such as `tax-deadline`; occurrences with one name share their learned
    /// effect. From 1 to 63 characters.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// When the event starts (inclusive): an RFC 3339 date (`2027-04-30`, midnight UTC) or
    /// date-time (`2027-04-30T08:00:00+02:00`). At most 35 characters.
    pub start: EventTime,
    /// When the event ends (exclusive), in the same format; later than `start`. Default: one
    /// day after `start`. At most 35 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<EventTime>,
}

/// Why a known event's bounds are unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("end {end} is not later than start {start}")]
pub struct EventOrderError {
    start: String,
    end: String,
}

impl KnownEvent {
    /// `[start, end)` in Unix seconds, `end` defaulting to one day after `start`.
    pub fn interval(&self) -> Result<(i64, i64), EventOrderError> {
        let start = self.start.unix_seconds();
        let end = self
            .end
            .as_ref()
            .map_or(start + 86_400, EventTime::unix_seconds);
        if end > start {
            Ok((start, end))
        } else {
            Err(EventOrderError {
                start: self.start.to_string(),
                end: self
                    .end
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            })
        }
    }
}

/// An instant written as an RFC 3339 date (`2027-04-30`, read as midnight UTC) or date-time
/// (`2027-04-30T08:00:00Z`, `2027-04-30T08:00:00.5+02:00`). Parsed when deserialised, so a bad
/// date is rejected with the field that holds it. At most 35 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventTime {
    text: String,
    #[serde(skip)]
    unix: i64,
}

/// Why an event time was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid date {input:?}: expected an RFC 3339 date such as 2027-04-30 or date-time such as 2027-04-30T08:00:00Z")]
pub struct EventTimeError {
    input: String,
}

impl EventTime {
    /// Regex used in the CRD schema; [`EventTime::parse`] also checks the calendar (no
    /// 31 April, 29 February only in leap years).
    pub const PATTERN: &'static str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$";

    /// `maxLength` in the CRD schema: a date-time with nanoseconds and an offset.
    pub const MAX_LEN: u32 = 35;

    /// Parses and validates a date or date-time.
    pub fn parse(input: &str) -> Result<Self, EventTimeError> {
        unix_seconds_of(input)
            .map(|unix| Self {
                text: input.to_owned(),
                unix,
            })
            .ok_or_else(|| EventTimeError {
                input: input.to_owned(),
            })
    }

    /// The instant in Unix seconds (fractions of a second dropped).
    pub fn unix_seconds(&self) -> i64 {
        self.unix
    }

    /// The time as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EventTime {
    fn schema_name() -> Cow<'static, str> {
        "EventTime".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
            "maxLength": Self::MAX_LEN,
            "description": "An RFC 3339 date (2027-04-30, midnight UTC) or date-time (2027-04-30T08:00:00+02:00). At most 35 characters."
        })
    }
}

/// Unix seconds of an RFC 3339 date or date-time, or `None` when it is not one.
fn unix_seconds_of(input: &str) -> Option<i64> {
    let b = input.as_bytes();
    if b.len() > EventTime::MAX_LEN as usize {
        return None;
    }
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = days_from_civil(year, month, day) * 86_400;
    if b.len() == 10 {
        return Some(date);
    }
    if !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    // 60 is a leap second, which RFC 3339 allows.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction) {
            return None;
        }
        i += 1 + fraction;
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    Some(date + hour * 3_600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates are midnight UTC and offsets move the instant the way RFC 3339 says.
    #[test]
    fn instants_match_rfc_3339() {
        let at = |s: &str| EventTime::parse(s).map(|t| t.unix_seconds());
        assert_eq!(at("1970-01-01"), Ok(0));
        assert_eq!(at("2027-04-30"), Ok(1_809_043_200));
        assert_eq!(at("2027-04-30T08:00:00Z"), Ok(1_809_043_200 + 8 * 3_600));
        assert_eq!(
            at("2027-04-30T08:00:00+02:00"),
            Ok(1_809_043_200 + 6 * 3_600)
        );
        assert_eq!(
            at("2027-04-30t08:00:00.250-01:30"),
            Ok(1_809_043_200 + 9 * 3_600 + 1_800)
        );
        assert_eq!(at("2024-02-29"), Ok(1_709_164_800));
    }

    /// Malformed text and impossible calendar dates are rejected.
    #[test]
    fn bad_dates_are_rejected() {
        for bad in [
            "",
            "2027-4-30",
            "2027-04-31",
            "2023-02-29",
            "2027-13-01",
            "2027-04-30T24:00:00Z",
            "2027-04-30T08:00:00",
            "2027-04-30T08:00Z",
            "2027-04-30T08:00:00.Z",
            "2027-04-30T08:00:00+0200",
            "2027-04-30 08:00:00Z",
            "next tuesday",
        ] {
            assert!(EventTime::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    /// The interval defaults to one day and refuses an end that is not after the start.
    #[test]
    fn interval_defaults_to_a_day_and_needs_end_after_start() {
        let event = |start: &str, end: Option<&str>| KnownEvent {
            name: "tax-deadline".into(),
            start: EventTime::parse(start).expect("valid start"),
            end: end.map(|e| EventTime::parse(e).expect("valid end")),
        };
        assert_eq!(
            event("2027-04-30", None).interval(),
            Ok((1_809_043_200, 1_809_043_200 + 86_400))
        );
        assert_eq!(
            event("2027-04-30", Some("2027-05-02")).interval(),
            Ok((1_809_043_200, 1_809_043_200 + 2 * 86_400))
        );
        let err = event("2027-04-30T10:00:00+02:00", Some("2027-04-30T08:00:00Z"))
            .interval()
            .expect_err("end equals start");
        assert_eq!(
            err.to_string(),
            "end 2027-04-30T08:00:00Z is not later than start 2027-04-30T10:00:00+02:00"
        );
    }
}
