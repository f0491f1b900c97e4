//! Known events of anomaly and forecast rules: dated occurrences (a tax deadline, a salary
//! day, a sale) whose effect the analytics engine learns instead of judging them anomalous, and
//! the RFC 3339 instants that bound them.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::jiff;
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

/// Unix seconds of an RFC 3339 date or date-time, or `None` when it is not one: the shape is
/// [`EventTime::PATTERN`] itself (what the API server checks), the calendar and the instant are
/// jiff's.
fn unix_seconds_of(input: &str) -> Option<i64> {
    static SHAPE: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(EventTime::PATTERN).ok());
    if input.len() > EventTime::MAX_LEN as usize || !SHAPE.as_ref()?.is_match(input) {
        return None;
    }
    if input.len() == 10 {
        return Some(midnight_utc(input.parse().ok()?));
    }
    input
        .parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_second)
}

/// Unix seconds of midnight UTC on `date`.
pub fn midnight_utc(date: jiff::civil::Date) -> i64 {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map_or(0, |z| z.timestamp().as_second())
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
