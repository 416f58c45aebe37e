//! Prefixed, time-sortable identifiers: `prj_01jd…` (a ULID in lower case behind a kind prefix).

use std::sync::{LazyLock, Mutex};

use ulid::{Generator, Ulid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Project,
    ApiKey,
    User,
    Log,
    Task,
    Import,
    Export,
    Event,
    Webhook,
    Sendout,
    Attempt,
    AdminToken,
    /// A stored upload's bytes (internal; users see the import).
    File,
    /// Rows of the internal event log (not the user-facing events, which are `evt_`).
    LogEntry,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Project => "prj",
            IdKind::ApiKey => "key",
            IdKind::User => "usr",
            IdKind::Log => "log",
            IdKind::Task => "task",
            IdKind::Import => "imp",
            IdKind::Export => "exp",
            IdKind::Event => "evt",
            IdKind::Webhook => "whk",
            IdKind::Sendout => "snd",
            IdKind::Attempt => "att",
            IdKind::AdminToken => "adm",
            IdKind::File => "file",
            IdKind::LogEntry => "ev",
        }
    }
}

/// A monotonic generator, so ids minted in the same millisecond still sort in creation order.
static GENERATOR: LazyLock<Mutex<Generator>> = LazyLock::new(|| Mutex::new(Generator::new()));

#[allow(clippy::unwrap_or_default)]
pub fn new_id(kind: IdKind) -> String {
    let ulid = GENERATOR
        .lock()
        .ok()
        .and_then(|mut g| g.generate().ok())
        // A fresh random ULID: `Ulid::default()` is the nil id, whatever clippy's lint assumes.
        .unwrap_or_else(Ulid::new);
    format!("{}_{}", kind.prefix(), ulid.to_string().to_ascii_lowercase())
}

/// Whether `id` has the shape of an id of `kind`. Used to answer 404 early for ids that cannot exist.
pub fn has_kind(id: &str, kind: IdKind) -> bool {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| Ulid::from_string(ulid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_kind_prefix() {
        let id = new_id(IdKind::Project);
        assert!(id.starts_with("prj_"), "{id}");
        assert_eq!(id.len(), 4 + 26);
        assert!(has_kind(&id, IdKind::Project));
        assert!(!has_kind(&id, IdKind::User));
    }

    #[test]
    fn ids_sort_in_creation_order_even_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(IdKind::Log)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn malformed_ids_are_not_of_any_kind() {
        for bad in ["", "prj_", "prj_xyz", "prj01jd000000000000000000000", "usr_01jd3z"] {
            assert!(!has_kind(bad, IdKind::Project), "{bad}");
        }
    }
}
