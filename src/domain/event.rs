//! Events that projects publish (`POST /v1/events`, import rows, the server's own notices).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::Invalid;

/// `order.created`: lowercase words of `[a-z0-9_]` joined by dots, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")]
pub struct EventType(String);

impl EventType {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For the server's own event types, which the tests check against the rules.
    pub fn from_static(value: &'static str) -> Self {
        debug_assert!(Self::try_from(value.to_owned()).is_ok(), "{value}");
        Self(value.to_owned())
    }
}

impl TryFrom<String> for EventType {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        let ok = !value.is_empty()
            && value.len() <= 200
            && value.split('.').all(|word| {
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if ok {
            Ok(Self(value))
        } else {
            Err(Invalid::new("must be lowercase words of a-z, 0-9 and _ joined by dots, such as order.created (at most 200 characters)"))
        }
    }
}

impl From<EventType> for String {
    fn from(v: EventType) -> String {
        v.0
    }
}

/// The id of the object an event is about, in the host application; 1 to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct SourceId(String);

impl SourceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceId {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
            Err(Invalid::new("must be 1 to 255 characters without control characters"))
        } else {
            Ok(Self(value))
        }
    }
}

impl From<SourceId> for String {
    fn from(v: SourceId) -> String {
        v.0
    }
}

/// A valid event ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub source_id: Option<SourceId>,
    pub data: Map<String, Value>,
}

/// Events the server publishes itself.
pub mod system {
    pub const IMPORT_DONE: &str = "import.done";
    pub const IMPORT_FAILED: &str = "import.failed";
    pub const EXPORT_DONE: &str = "export.done";
    pub const EXPORT_FAILED: &str = "export.failed";
    pub const TASK_FAILED: &str = "task.failed";
    pub const SENDOUT_FAILED: &str = "sendout.failed";
    pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
}

/// Sets `value` at a dotted path (`customer.email`) inside `data`, creating objects on the way.
/// Refuses a path that runs through a value that is not an object (`customer` and `customer.email`).
pub fn insert_dotted(data: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), Invalid> {
    let mut parts = path.split('.').peekable();
    let mut node = data;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Invalid::new(format!("column `{path}` has an empty name part")));
        }
        if parts.peek().is_none() {
            if node.contains_key(part) {
                return Err(Invalid::new(format!("column `{path}` collides with another column")));
            }
            node.insert(part.to_owned(), value);
            return Ok(());
        }
        let child = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        node = child
            .as_object_mut()
            .ok_or_else(|| Invalid::new(format!("column `{path}` collides with column `{part}`")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_types_follow_the_contract_pattern() {
        for ok in ["order", "order.created", "a_b.c9.d", "import.done"] {
            assert!(EventType::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["", "Order", "order.", ".order", "order..created", "order-created", "order created", &"a".repeat(201)] {
            assert!(EventType::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        for own in [system::IMPORT_DONE, system::IMPORT_FAILED, system::TASK_FAILED] {
            assert!(EventType::try_from(own.to_owned()).is_ok());
        }
    }

    #[test]
    fn dotted_columns_nest_and_collisions_are_refused() {
        let mut data = Map::new();
        insert_dotted(&mut data, "customer.email", json!("a@b.c")).unwrap();
        insert_dotted(&mut data, "customer.name", json!("Ann")).unwrap();
        insert_dotted(&mut data, "total", json!("12")).unwrap();
        assert_eq!(Value::Object(data.clone()), json!({"customer": {"email": "a@b.c", "name": "Ann"}, "total": "12"}));
        assert!(insert_dotted(&mut data, "customer", json!("x")).is_err());
        assert!(insert_dotted(&mut data, "total.cents", json!("1")).is_err());
        assert!(insert_dotted(&mut data, "a..b", json!("1")).is_err());
    }
}

/// A published event as read: its index fields and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEvent {
    pub id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub data: serde_json::Value,
    pub created_at_ms: i64,
    /// The log id of the request that published it.
    pub request_id: Option<String>,
}
