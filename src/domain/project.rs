//! Projects, their API keys and dashboard users.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Invalid;

/// Trims `value` and checks it holds 1..=`max` characters.
fn bounded_text(value: String, max: usize) -> Result<String, Invalid> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        Err(Invalid::new("must not be empty"))
    } else if chars > max {
        Err(Invalid::new(format!("must be at most {max} characters")))
    } else if trimmed.chars().any(char::is_control) {
        Err(Invalid::new("must not contain control characters"))
    } else {
        Ok(trimmed.to_owned())
    }
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For names fixed in the code, which the tests check against the rules.
            pub fn from_static(value: &'static str) -> Self {
                debug_assert!(bounded_text(value.to_owned(), $max).is_ok(), "{value}");
                Self(value.to_owned())
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;
            fn try_from(value: String) -> Result<Self, Invalid> {
                bounded_text(value, $max).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

text_type!(
    /// A project's display name, 1 to 100 characters.
    ProjectName,
    100
);
text_type!(
    /// A label for an API key, 1 to 100 characters.
    KeyName,
    100
);
text_type!(
    /// A dashboard user's name, 1 to 100 characters.
    UserName,
    100
);

/// An e-mail address, lower-cased so that one person cannot be added twice under two spellings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = "email")]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !domain.contains('@')
            });
        if valid { Ok(Self(value)) } else { Err(Invalid::new("must be an e-mail address such as ada@example.com")) }
    }
}

impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

/// The hosting plan; it sets the default retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Shared,
    Dedicated,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Shared => "shared",
            Plan::Dedicated => "dedicated",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "shared" => Some(Plan::Shared),
            "dedicated" => Some(Plan::Dedicated),
            _ => None,
        }
    }

    /// Six months on the shared plan, twelve on a dedicated one.
    pub fn default_retention(self) -> RetentionDays {
        RetentionDays(match self {
            Plan::Shared => 183,
            Plan::Dedicated => 365,
        })
    }
}

/// How many days a project keeps its data: 1 to 3,650.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "i64", into = "i32")]
#[schema(value_type = i32, minimum = 1, maximum = 3650)]
pub struct RetentionDays(i32);

impl RetentionDays {
    pub const MAX: i32 = 3650;

    pub fn get(self) -> i32 {
        self.0
    }

    pub fn as_millis(self) -> i64 {
        i64::from(self.0) * 86_400_000
    }
}

impl TryFrom<i64> for RetentionDays {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Invalid> {
        if (1..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as i32))
        } else {
            Err(Invalid::new(format!("must be a whole number of days from 1 to {}", Self::MAX)))
        }
    }
}

impl From<RetentionDays> for i32 {
    fn from(v: RetentionDays) -> i32 {
        v.0
    }
}

/// What an API key may do: a server key everything in its project, a client key only send events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Server,
    Client,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Server => "server",
            KeyKind::Client => "client",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "server" => Some(KeyKind::Server),
            "client" => Some(KeyKind::Client),
            _ => None,
        }
    }
}


/// A project as read back from its projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub time_zone: crate::domain::time::ProjectTimeZone,
    pub plan: Plan,
    pub retention_days: i32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub project_id: String,
    pub kind: KeyKind,
    pub name: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub email: String,
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_name_is_trimmed_and_must_not_be_blank() {
        assert_eq!(ProjectName::try_from("  Shop  ".to_string()).unwrap().as_str(), "Shop");
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(101)] {
            assert!(ProjectName::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_email_is_lower_cased_and_needs_a_domain() {
        assert_eq!(Email::try_from(" Ada@Example.COM ".to_string()).unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com"] {
            assert!(Email::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_is_between_one_day_and_ten_years() {
        assert!(RetentionDays::try_from(1).is_ok());
        assert!(RetentionDays::try_from(3650).is_ok());
        for bad in [0, -1, 3651, i64::MAX] {
            assert!(RetentionDays::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_sets_the_default_retention() {
        assert_eq!(Plan::Shared.default_retention().get(), 183);
        assert_eq!(Plan::Dedicated.default_retention().get(), 365);
    }
}
