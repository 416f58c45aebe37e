//! Histogram buckets: an interval, and bucket starts aligned on the project's clock (a day bucket
//! starts at local midnight, an hour bucket on the local hour), empty buckets included.

use super::Invalid;
use super::time::ProjectTimeZone;

const MINUTE_MS: i64 = 60_000;

/// Every bucket boundary of every interval falls on a quarter hour in UTC, since every zone's
/// offset today is a whole number of quarter hours (Nepal's +05:45 included). Rows are counted in
/// bins of this size (or of the interval, when finer) and bins are summed into buckets.
const QUARTER_HOUR_MS: i64 = 15 * MINUTE_MS;

/// More buckets than this is no chart: the request asks for a coarser interval.
pub const MAX_BUCKETS: usize = 2_000;

/// A bucket width: minutes that divide a day, counted from local midnight, or a local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Minutes(u32),
    Day,
}

/// The intervals a request may name, finest first.
const NAMED: &[(&str, Interval)] = &[
    ("1m", Interval::Minutes(1)),
    ("5m", Interval::Minutes(5)),
    ("15m", Interval::Minutes(15)),
    ("30m", Interval::Minutes(30)),
    ("1h", Interval::Minutes(60)),
    ("3h", Interval::Minutes(180)),
    ("6h", Interval::Minutes(360)),
    ("12h", Interval::Minutes(720)),
    ("1d", Interval::Day),
];

/// About this many buckets when the request names no interval.
const TARGET_BUCKETS: i64 = 120;

impl Interval {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        NAMED.iter().find(|(name, _)| *name == text).map(|(_, i)| *i).ok_or_else(|| {
            let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
            Invalid::new(format!("must be one of: {}", names.join(", ")))
        })
    }

    /// The finest interval that draws `span_ms` in about `TARGET_BUCKETS` buckets.
    pub fn for_span(span_ms: i64) -> Self {
        NAMED.iter().map(|(_, i)| *i).find(|i| span_ms / i.nominal_ms() <= TARGET_BUCKETS).unwrap_or(Interval::Day)
    }

    pub fn name(self) -> &'static str {
        NAMED.iter().find(|(_, i)| *i == self).map_or("1d", |(n, _)| n)
    }

    fn nominal_ms(self) -> i64 {
        match self {
            Interval::Minutes(m) => i64::from(m) * MINUTE_MS,
            Interval::Day => 1_440 * MINUTE_MS,
        }
    }

    /// The bin rows are counted in: no bin straddles a bucket boundary.
    pub fn bin_ms(self) -> i64 {
        self.nominal_ms().min(QUARTER_HOUR_MS)
    }

    /// The starts of the buckets that cover `[after, before)`, the first at or before `after`.
    pub fn buckets(self, after: i64, before: i64, zone: &ProjectTimeZone) -> Result<Vec<i64>, Invalid> {
        let floor = |ms: i64| match self {
            Interval::Minutes(m) => zone.floor_local(ms, m),
            Interval::Day => zone.floor_local(ms, 1_440),
        };
        let mut starts = vec![floor(after)];
        loop {
            let last = *starts.last().unwrap_or(&after);
            let next = match self {
                Interval::Day => zone.next_local_midnight(last).unwrap_or(before),
                // Across a change of offset the local grid can step back; the plain width then.
                Interval::Minutes(_) => Some(floor(last + self.nominal_ms())).filter(|n| *n > last).unwrap_or(last + self.nominal_ms()),
            };
            if next >= before {
                return Ok(starts);
            }
            if starts.len() == MAX_BUCKETS {
                return Err(Invalid::new(format!("gives more than {MAX_BUCKETS} buckets over this range; choose a coarser interval")));
            }
            starts.push(next);
        }
    }
}

/// The buckets of one histogram request: its interval, the filter's range, and the buckets'
/// starts (the first at or before `after`).
#[derive(Debug, Clone)]
pub struct Buckets {
    pub interval: Interval,
    pub after: i64,
    pub before: i64,
    pub starts: Vec<i64>,
}

impl Buckets {
    /// The buckets over `[after, before)`, in `interval` or, when it is `None`, in one chosen from
    /// the span.
    pub fn new(interval: Option<Interval>, after: i64, before: i64, zone: &ProjectTimeZone) -> Result<Self, Invalid> {
        if before <= after {
            return Err(Invalid::new("the range is empty: the end must come after the start"));
        }
        let interval = interval.unwrap_or_else(|| Interval::for_span(before - after));
        Ok(Self { interval, after, before, starts: interval.buckets(after, before, zone)? })
    }
}

/// Counts per bucket, from counts per bin (`bin` is a bin's start divided by `Interval::bin_ms`).
pub fn sum_bins<const N: usize>(starts: &[i64], bin_ms: i64, bins: impl IntoIterator<Item = (i64, [i64; N])>) -> Vec<[i64; N]> {
    let mut counts = vec![[0; N]; starts.len()];
    for (bin, values) in bins {
        let at = bin * bin_ms;
        let Some(i) = starts.partition_point(|s| *s <= at).checked_sub(1) else { continue };
        for (sum, v) in counts[i].iter_mut().zip(values) {
            *sum += v;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::{format_in_zone, parse_instant};

    fn zone(name: &str) -> ProjectTimeZone {
        ProjectTimeZone::try_from(name.to_string()).unwrap()
    }

    fn at(text: &str) -> i64 {
        parse_instant(text).unwrap()
    }

    #[test]
    fn day_buckets_start_at_local_midnight_across_a_change_of_offset() {
        let berlin = zone("Europe/Berlin");
        let starts = Interval::Day.buckets(at("2026-10-24T10:00:00Z"), at("2026-10-27T00:00:00Z"), &berlin).unwrap();
        let local: Vec<String> = starts.iter().map(|s| format_in_zone(*s, &berlin)).collect();
        assert_eq!(
            local,
            ["2026-10-24T00:00:00.000+02:00", "2026-10-25T00:00:00.000+02:00", "2026-10-26T00:00:00.000+01:00", "2026-10-27T00:00:00.000+01:00"]
        );
    }

    #[test]
    fn hour_buckets_follow_a_quarter_hour_zone() {
        let kathmandu = zone("Asia/Kathmandu");
        let starts = Interval::Minutes(60).buckets(at("2026-11-23T10:20:00Z"), at("2026-11-23T12:00:00Z"), &kathmandu).unwrap();
        let local: Vec<String> = starts.iter().map(|s| format_in_zone(*s, &kathmandu)).collect();
        assert_eq!(local, ["2026-11-23T16:00:00.000+05:45", "2026-11-23T17:00:00.000+05:45"]);
    }

    #[test]
    fn the_interval_follows_the_span_and_too_many_buckets_is_refused() {
        assert_eq!(Interval::for_span(86_400_000), Interval::Minutes(15));
        assert_eq!(Interval::for_span(3_600_000), Interval::Minutes(1));
        assert_eq!(Interval::for_span(400 * 86_400_000), Interval::Day);
        assert!(Interval::Minutes(1).buckets(0, 30 * 86_400_000, &ProjectTimeZone::utc()).is_err());
        assert!(Interval::parse("2m").is_err());
    }

    #[test]
    fn bins_sum_into_their_buckets() {
        let starts = [0, 3_600_000];
        let bins = [(0, [1, 2]), (3, [1, 0]), (4, [5, 5]), (-1, [9, 9])];
        assert_eq!(sum_bins(&starts, QUARTER_HOUR_MS, bins), vec![[2, 2], [5, 5]]);
    }
}
