//! Instants are Unix milliseconds everywhere below the API. This module formats them as the contract's
//! `X_at` (UTC) and `X_at_project` (the project's zone), and reads date filters in the project's zone.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Invalid;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_utc(ms: i64) -> DateTime<Utc> {
    // Out-of-range values cannot come from our own clock or from validated input; clamp rather than panic.
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `2026-11-23T16:40:00.123Z`
pub fn format_utc(ms: i64) -> String {
    to_utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2026-11-23T17:40:00.123+01:00`
pub fn format_in_zone(ms: i64, zone: &ProjectTimeZone) -> String {
    to_utc(ms).with_timezone(&zone.0).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// Parses an RFC 3339 instant (any offset), e.g. a back-dated `occurred_at` of an ingested log.
pub fn parse_instant(value: &str) -> Result<i64, Invalid> {
    DateTime::parse_from_rfc3339(value)
        .map(|dt| dt.timestamp_millis())
        .map_err(|_| Invalid::new("must be an RFC 3339 date-time such as 2026-11-23T16:40:00Z"))
}

/// Reads a date filter: an RFC 3339 instant, or a date-time without offset (`2026-11-23T08:00`,
/// seconds optional) or a date (`2026-11-23`, meaning its midnight), both in the project's zone.
pub fn parse_filter(value: &str, zone: &ProjectTimeZone) -> Result<i64, Invalid> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        return Ok(dt.timestamp_millis());
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            Invalid::new("must be an RFC 3339 instant, a local date-time like 2026-11-23T08:00, or a date like 2026-11-23")
        })?;
    Ok(zone.resolve_local(local))
}

/// An IANA time zone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectTimeZone(Tz);

impl ProjectTimeZone {
    pub fn utc() -> Self {
        Self(Tz::UTC)
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The start of the local period of `minutes` (a divisor of a day, counted from local midnight)
    /// that holds `ms`.
    pub fn floor_local(&self, ms: i64, minutes: u32) -> i64 {
        let local = to_utc(ms).with_timezone(&self.0).naive_local();
        let since_midnight = local.time().num_seconds_from_midnight() / 60;
        let floored = local.date().and_time(NaiveTime::MIN) + chrono::Duration::minutes(i64::from(since_midnight / minutes * minutes));
        self.resolve_local(floored).min(ms)
    }

    /// The next local midnight after `ms`; `None` past the calendar's end.
    pub fn next_local_midnight(&self, ms: i64) -> Option<i64> {
        let date = to_utc(ms).with_timezone(&self.0).date_naive().succ_opt()?;
        Some(self.resolve_local(date.and_time(NaiveTime::MIN)))
    }

    /// The instant a wall-clock reading means in this zone. In the autumn overlap the earlier of the
    /// two instants is taken; a reading inside the spring gap (which never occurs on a clock there)
    /// moves forward by the gap, like a clock being set forward.
    fn resolve_local(&self, local: NaiveDateTime) -> i64 {
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(dt) => dt.timestamp_millis(),
            LocalResult::Ambiguous(earliest, _) => earliest.timestamp_millis(),
            LocalResult::None => {
                // Read the reading with the offset in force just before the gap.
                let before = self.0.offset_from_utc_datetime(&(local - chrono::Duration::hours(6))).fix();
                (local - chrono::Duration::seconds(i64::from(before.local_minus_utc())))
                    .and_utc()
                    .timestamp_millis()
            }
        }
    }
}

impl TryFrom<String> for ProjectTimeZone {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .parse::<Tz>()
            .map(Self)
            .map_err(|_| Invalid::new(format!("'{value}' is not an IANA time zone such as Europe/Berlin")))
    }
}

impl From<ProjectTimeZone> for String {
    fn from(z: ProjectTimeZone) -> Self {
        z.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> ProjectTimeZone {
        ProjectTimeZone::try_from(name.to_string()).unwrap()
    }

    #[test]
    fn instants_format_in_utc_with_milliseconds() {
        let ms = parse_instant("2026-11-23T16:40:00.123Z").unwrap();
        assert_eq!(format_utc(ms), "2026-11-23T16:40:00.123Z");
    }

    #[test]
    fn instants_format_in_the_project_zone_with_its_offset() {
        let ms = parse_instant("2026-11-23T16:40:00.123Z").unwrap();
        assert_eq!(format_in_zone(ms, &zone("Europe/Berlin")), "2026-11-23T17:40:00.123+01:00");
        assert_eq!(format_in_zone(ms, &zone("UTC")), "2026-11-23T16:40:00.123+00:00");
    }

    #[test]
    fn a_date_filter_means_midnight_in_the_project_zone() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(parse_filter("2026-11-23", &berlin).unwrap(), parse_instant("2026-11-22T23:00:00Z").unwrap());
        assert_eq!(parse_filter("2026-07-01", &berlin).unwrap(), parse_instant("2026-06-30T22:00:00Z").unwrap());
    }

    #[test]
    fn a_local_date_time_filter_is_read_in_the_project_zone() {
        let ny = zone("America/New_York");
        assert_eq!(parse_filter("2026-11-23T08:00", &ny).unwrap(), parse_instant("2026-11-23T13:00:00Z").unwrap());
        assert_eq!(parse_filter("2026-11-23T08:00:30", &ny).unwrap(), parse_instant("2026-11-23T13:00:30Z").unwrap());
    }

    #[test]
    fn an_instant_with_an_offset_ignores_the_project_zone() {
        let ny = zone("America/New_York");
        assert_eq!(parse_filter("2026-11-23T08:00:00+01:00", &ny).unwrap(), parse_instant("2026-11-23T07:00:00Z").unwrap());
    }

    #[test]
    fn an_ambiguous_autumn_time_means_its_first_occurrence() {
        // 02:30 happens twice in Berlin on 2026-10-25; the first is still summer time (+02:00).
        let berlin = zone("Europe/Berlin");
        assert_eq!(parse_filter("2026-10-25T02:30", &berlin).unwrap(), parse_instant("2026-10-25T00:30:00Z").unwrap());
    }

    #[test]
    fn a_time_inside_the_spring_gap_moves_forward_by_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 jumps to 03:00): it reads as 03:30+02:00.
        let berlin = zone("Europe/Berlin");
        assert_eq!(parse_filter("2026-03-29T02:30", &berlin).unwrap(), parse_instant("2026-03-29T01:30:00Z").unwrap());
    }

    #[test]
    fn unreadable_dates_and_zones_are_refused() {
        for bad in ["yesterday", "2026-13-01", "2026-11-23T25:00", "23.11.2026", ""] {
            assert!(parse_filter(bad, &ProjectTimeZone::utc()).is_err(), "{bad}");
        }
        for bad in ["Mars/Olympus", "", "+01:00"] {
            assert!(ProjectTimeZone::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatting_then_parsing_an_instant_gives_it_back(ms in 0i64..4_102_444_800_000) {
            proptest::prop_assert_eq!(parse_instant(&format_utc(ms)).unwrap(), ms);
            let berlin = zone("Europe/Berlin");
            proptest::prop_assert_eq!(parse_filter(&format_in_zone(ms, &berlin), &berlin).unwrap(), ms);
        }
    }
}
