use serde::{Deserialize, Serialize};

use super::Invalid;

/// A log channel: a slug of `[a-z0-9_-]{1,32}` (`api`, `client`, `dashboard`, `shopify`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Channel(String);

impl Channel {
    pub const API: &'static str = "api";
    pub const CLIENT: &'static str = "client";
    pub const DASHBOARD: &'static str = "dashboard";
    pub const ADMIN: &'static str = "admin";
    pub const ANONYMOUS: &'static str = "anonymous";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn known(name: &'static str) -> Self {
        Self(name.to_owned())
    }
}

impl TryFrom<String> for Channel {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = (1..=32).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err(Invalid::new("must be 1 to 32 characters of a-z, 0-9, '_' or '-'"))
        }
    }
}

impl From<Channel> for String {
    fn from(c: Channel) -> Self {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_a_short_lowercase_slug() {
        for ok in ["api", "shopify", "my_app-2", &"a".repeat(32)] {
            assert!(Channel::try_from(ok.to_string()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_channel_with_capitals_spaces_or_too_many_characters_is_refused() {
        for bad in ["", "Shopify", "my app", "ünï", &"a".repeat(33), "a.b"] {
            assert!(Channel::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
