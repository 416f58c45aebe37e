//! Cursor pagination over lists ordered newest first by (time, id).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Invalid;

/// Page size: 1 to 1,000, default 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u64);

impl Limit {
    pub const MAX: u64 = 1000;

    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(50)
    }
}

impl TryFrom<i64> for Limit {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        if (1..=Self::MAX as i64).contains(&value) {
            Ok(Self(value as u64))
        } else {
            Err(Invalid::new(format!("must be from 1 to {}", Self::MAX)))
        }
    }
}

/// Where a page ends: the sort key of its last row. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.time_ms, self.id))
    }

    pub fn decode(value: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("is not a cursor returned by this list");
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (time, id) = text.split_once('|').ok_or_else(bad)?;
        let time_ms = time.parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(Self { time_ms, id: id.to_owned() })
    }
}

/// One page of rows plus the cursor for the next, computed from a query that fetched `limit + 1` rows.
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    pub fn from_overfetch(mut rows: Vec<T>, limit: Limit, key: impl Fn(&T) -> Cursor) -> Self {
        let has_more = rows.len() as u64 > limit.get();
        rows.truncate(limit.get() as usize);
        let next_cursor = if has_more { rows.last().map(key) } else { None };
        Self { rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { rows: self.rows.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_round_trip() {
        let c = Cursor { time_ms: 1_764_000_000_123, id: "log_01jd".into() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn a_forged_cursor_is_refused() {
        for bad in ["", "!!!", "bm9waXBl", &URL_SAFE_NO_PAD.encode("x|log_1"), &URL_SAFE_NO_PAD.encode("1|")] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_limit_is_between_one_and_a_thousand() {
        assert_eq!(Limit::default().get(), 50);
        assert!(Limit::try_from(1).is_ok() && Limit::try_from(1000).is_ok());
        assert!(Limit::try_from(0).is_err() && Limit::try_from(1001).is_err());
    }

    #[test]
    fn an_overfetched_page_reports_the_last_row_as_cursor() {
        let limit = Limit::try_from(2).unwrap();
        let page = Page::from_overfetch(vec![3, 2, 1], limit, |n| Cursor { time_ms: *n, id: n.to_string() });
        assert_eq!(page.rows, vec![3, 2]);
        assert_eq!(page.next_cursor.unwrap().time_ms, 2);
        let last = Page::from_overfetch(vec![1], limit, |n| Cursor { time_ms: *n, id: n.to_string() });
        assert!(last.next_cursor.is_none());
    }
}
