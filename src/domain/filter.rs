//! One definition per list filter: the parameters it takes (which also document it), how it reads
//! them from a query string, and how it reads the same names from a JSON object (the `filters` of a
//! bulk retry or an export), so every way of naming a set of rows means the same rows.

use serde_json::Value;

use super::params::Params;
use super::time::ProjectTimeZone;

/// What one parameter's values are, for its documentation.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// Free text, compared exactly (ids, channels, endpoints), or searched where the doc says so.
    Text,
    /// An RFC 3339 instant, or a local date-time or date in the project's time zone.
    Instant,
    /// One of a wire enum, documented by the named schema.
    OneOf(&'static str),
}

/// One parameter of a filter.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub values: Values,
    /// A repeatable parameter takes several values, OR-ed; a bound is given once.
    pub repeats: bool,
    pub doc: &'static str,
}

impl Field {
    pub const fn any_of(name: &'static str, values: Values, doc: &'static str) -> Self {
        Self { name, values, repeats: true, doc }
    }

    pub const fn bound(name: &'static str, doc: &'static str) -> Self {
        Self { name, values: Values::Instant, repeats: false, doc }
    }
}

/// The time window bounds most lists share.
pub const CREATED_AFTER: Field =
    Field::bound("created_after", "Inclusive: an RFC 3339 instant, or a local date-time or date in the project's zone.");
pub const CREATED_BEFORE: Field = Field::bound("created_before", "Exclusive, same forms as `created_after`.");

/// What a filter is read against: the project's zone for local dates, and now for defaults.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub zone: &'a ProjectTimeZone,
    pub now_ms: i64,
}

/// Bad values, as `(parameter, message)`.
pub type FilterErrors = Vec<(String, String)>;

pub trait Filter: Sized {
    /// The resource, as named in errors: "log", "sendout".
    const RESOURCE: &'static str;
    const FIELDS: &'static [Field];

    /// Reads the filter from its parameters; reports every bad value.
    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors>;

    fn is_field(name: &str) -> bool {
        Self::FIELDS.iter().any(|f| f.name == name)
    }

    /// Reads the filter from a JSON object of the same names, a repeated parameter as an array:
    /// `{"status": "failed", "webhook_id": ["whk_…"]}`. Errors name `filters.<name>`.
    fn from_json(value: &Value, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let Some(object) = value.as_object() else { return Err(vec![("filters".into(), "must be an object".into())]) };
        let (mut pairs, mut errors) = (Vec::new(), Vec::new());
        for (name, v) in object {
            let Some(field) = Self::FIELDS.iter().find(|f| f.name == name) else {
                let names: Vec<&str> = Self::FIELDS.iter().map(|f| f.name).collect();
                errors.push((format!("filters.{name}"), format!("is not a {} filter; use {}", Self::RESOURCE, names.join(", "))));
                continue;
            };
            let texts: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) if field.repeats && items.iter().all(Value::is_string) => {
                    items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                }
                Value::Null => Vec::new(),
                _ if field.repeats => {
                    errors.push((format!("filters.{name}"), "must be a string or an array of strings".into()));
                    continue;
                }
                _ => {
                    errors.push((format!("filters.{name}"), "must be a string".into()));
                    continue;
                }
            };
            // The rules of query parameters (see `Params::problem`) hold here too.
            if let Some(problem) = super::params::problem(&texts) {
                errors.push((format!("filters.{name}"), problem));
                continue;
            }
            pairs.extend(texts.into_iter().map(|t| (name.clone(), t)));
        }
        let parsed = Self::from_params(&Params::from_pairs(pairs), cx)
            .map_err(|e| e.into_iter().map(|(f, m)| (format!("filters.{f}"), m)).collect::<Vec<_>>());
        match parsed {
            Ok(filter) if errors.is_empty() => Ok(filter),
            Ok(_) => Err(errors),
            Err(more) => Err(errors.into_iter().chain(more).collect()),
        }
    }
}

/// Every value of a repeatable parameter, each read by `parse`; bad ones go to `errors`.
pub fn each<T, E: std::fmt::Display>(params: &Params, name: &str, parse: impl Fn(&str) -> Result<T, E>, errors: &mut FilterErrors) -> Vec<T> {
    params
        .all(name)
        .iter()
        .filter_map(|v| parse(v).map_err(|e| errors.push((name.to_owned(), format!("'{v}' {e}")))).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq)]
    struct Colours(Vec<String>);

    impl Filter for Colours {
        const RESOURCE: &'static str = "paint";
        const FIELDS: &'static [Field] = &[Field::any_of("colour", Values::Text, "")];

        fn from_params(params: &Params, _: Context<'_>) -> Result<Self, FilterErrors> {
            let mut errors = Vec::new();
            let colours = each(params, "colour", |v| if v == "mauve" { Err("is not a colour") } else { Ok(v.to_owned()) }, &mut errors);
            if errors.is_empty() { Ok(Self(colours)) } else { Err(errors) }
        }
    }

    fn cx() -> Context<'static> {
        static UTC: std::sync::LazyLock<ProjectTimeZone> = std::sync::LazyLock::new(ProjectTimeZone::utc);
        Context { zone: &UTC, now_ms: 0 }
    }

    #[test]
    fn a_json_object_reads_as_the_same_parameters_a_repeated_one_as_an_array() {
        assert_eq!(Colours::from_json(&json!({"colour": ["red", "blue"]}), cx()), Ok(Colours(vec!["red".into(), "blue".into()])));
        assert_eq!(Colours::from_json(&json!({"colour": "red"}), cx()), Ok(Colours(vec!["red".into()])));
    }

    #[test]
    fn json_filters_name_the_bad_field_under_filters() {
        let errors = Colours::from_json(&json!({"colour": ["mauve"], "shade": "dark", "x": 1}), cx()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["filters.shade", "filters.x", "filters.colour"]);
        assert_eq!(Colours::from_json(&json!({"colour": [1]}), cx()).unwrap_err()[0].1, "must be a string or an array of strings");
        assert_eq!(Colours::from_json(&json!(["red"]), cx()).unwrap_err()[0].0, "filters");
    }
}
