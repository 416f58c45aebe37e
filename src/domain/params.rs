//! Query-string parameters as the contract reads them: a parameter may repeat, and its values are
//! OR-ed. Unknown parameters are refused so that a typo does not silently widen a filter.

use super::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

/// Values one parameter may have (they are OR-ed into one filter).
pub const MAX_VALUES: usize = 100;

/// What is wrong with the values one parameter was given, if anything: an empty value (it would
/// otherwise read as absent and widen a filter silently), a NUL (no text column holds one), or
/// more than [`MAX_VALUES`].
pub fn problem(values: &[impl AsRef<str>]) -> Option<String> {
    if values.iter().any(|v| v.as_ref().is_empty()) {
        Some("must not be empty; leave the parameter out to not filter by it".into())
    } else if values.iter().any(|v| v.as_ref().contains('\0')) {
        Some("must not contain NUL characters".into())
    } else if values.len() > MAX_VALUES {
        Some(format!("may be given at most {MAX_VALUES} times"))
    } else {
        None
    }
}

impl Params {
    /// The `created_after`/`created_before` window of a list, read in the project's zone; bad
    /// values are added to `errors` as `(parameter, message)`.
    pub fn created_window(&self, zone: &super::time::ProjectTimeZone, errors: &mut Vec<(String, String)>) -> (Option<i64>, Option<i64>) {
        let mut date = |name: &str| {
            let parsed = self.one(name).and_then(|v| v.map(|v| super::time::parse_filter(v, zone)).transpose());
            parsed.unwrap_or_else(|e| {
                errors.push((name.to_owned(), e.0));
                None
            })
        };
        (date("created_after"), date("created_before"))
    }

    pub fn parse(query: &str) -> Self {
        Self(url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Every value of `name`, empty ones dropped.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    /// The single value of `name`; naming it twice is an error.
    pub fn one(&self, name: &str) -> Result<Option<&str>, Invalid> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (_, Some(_)) => Err(Invalid::new("may be given only once")),
            (value, None) => Ok(value.filter(|v| !v.is_empty())),
        }
    }

    /// The first parameter whose name is not in `known`.
    pub fn first_unknown(&self, known: &[&str]) -> Option<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| !known.contains(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_parameter_keeps_every_value() {
        let p = Params::parse("status=failure&channel=api&channel=client&channel=");
        assert_eq!(p.all("channel"), vec!["api", "client"]);
        assert_eq!(p.one("status").unwrap(), Some("failure"));
        assert!(p.one("channel").is_err());
        assert_eq!(p.one("limit").unwrap(), None);
    }

    #[test]
    fn percent_encoding_is_decoded() {
        let p = Params::parse("endpoint=POST%20%2Fv1%2Fexports&q=a+b");
        assert_eq!(p.all("endpoint"), vec!["POST /v1/exports"]);
        assert_eq!(p.all("q"), vec!["a b"]);
    }

    #[test]
    fn an_unknown_parameter_is_reported() {
        let p = Params::parse("limit=5&statuss=failure");
        assert_eq!(p.first_unknown(&["limit", "status"]), Some("statuss"));
    }
}
