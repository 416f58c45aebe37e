//! Webhook endpoints: CRUD, secrets and their rotation, the address check, recovery tasks.

use entity::{event_log, webhook};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;

use super::Keyset;
use super::tasks::{self, NewTask};
use crate::domain::ids::{IdKind, new_id};
use crate::domain::log::{RelatedKind, RelatedRef};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::sendout::{Sendout, SendoutFilter, SendoutStatus};
use crate::domain::task::TaskType;
use crate::domain::time::now_ms;
use crate::domain::webhook::{EventTypePattern, SigningSecrets, Webhook, WebhookUrl, new_secret, refused_address};
use crate::vault::{SealedSecret, Vault, VaultError};
use super::error::{ServiceError, ServiceResult};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, SendoutCreated, WebhookCreated, WebhookRef, WebhookSecretRotated, WebhookUpdated};

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP_MS: i64 = 24 * 3_600_000;

/// An endpoint's settings; [`create`] and [`update`] check them before anything is stored.
pub struct Settings {
    pub url: WebhookUrl,
    pub event_types: Vec<EventTypePattern>,
    pub description: Option<String>,
    pub enabled: bool,
    pub rate_limit_per_second: Option<i32>,
}

impl Settings {
    /// The rules between fields and on counts; every broken one is reported.
    fn check(&self) -> ServiceResult<()> {
        let mut errors = Vec::new();
        if self.event_types.is_empty() || self.event_types.len() > 100 {
            errors.push(("event_types".into(), "must hold 1 to 100 patterns".into()));
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            errors.push(("description".into(), "must be at most 500 characters".into()));
        }
        if self.rate_limit_per_second.is_some_and(|r| !(1..=10_000).contains(&r)) {
            errors.push(("rate_limit_per_second".into(), "must be from 1 to 10000".into()));
        }
        if errors.is_empty() { Ok(()) } else { Err(ServiceError::Rejected(errors)) }
    }
}

/// Refuses URLs whose host is or resolves to an internal address (unless private addresses are
/// allowed). Deliveries check again when they connect: DNS may answer differently by then.
async fn check_url(url: &WebhookUrl, allow_private: bool) -> ServiceResult<()> {
    if allow_private {
        return Ok(());
    }
    let parsed = url.parsed();
    let refused = |why: &str| {
        ServiceError::UrlNotAllowed(why.to_string())
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<std::net::IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(refused("loopback"));
            }
            let found = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|_| ServiceError::invalid("url", format!("the host {name} cannot be resolved")))?;
            found.map(|a| a.ip()).collect()
        }
        None => return Err(ServiceError::invalid("url", "must name a host")),
    };
    match addresses.into_iter().find_map(refused_address) {
        Some(why) => Err(refused(why)),
        None => Ok(()),
    }
}

/// The new endpoint, and its secret (shown once, in the creation response).
pub async fn create(store: &EventStore, project_id: &str, meta: &EventMetadata, s: Settings, allow_private: bool) -> ServiceResult<(Webhook, SigningSecrets)> {
    s.check()?;
    check_url(&s.url, allow_private).await?;
    let id = new_id(IdKind::Webhook);
    let event = DomainEvent::WebhookCreated(WebhookCreated {
        id: id.clone(),
        project_id: project_id.to_owned(),
        url: s.url,
        event_types: s.event_types,
        description: s.description,
        enabled: s.enabled,
        rate_limit_per_second: s.rate_limit_per_second,
        secret: store.vault().seal(&new_secret(), &id),
    });
    store.append(meta, vec![event]).await?;
    let created = row(store.db(), project_id, &id).await?;
    let secrets = open_secrets(store.vault(), &created).map_err(ServiceError::internal)?;
    Ok((read(created)?, secrets))
}

/// The endpoint, decoded.
pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<Webhook> {
    read(row(db, project_id, id).await?)
}

/// Decodes a projection row. Its URL and patterns were written from validated values, so a
/// failure here means a damaged database: an internal error, logged.
pub fn read(row: webhook::Model) -> ServiceResult<Webhook> {
    Ok(Webhook {
        url: WebhookUrl::try_from(row.url).map_err(ServiceError::internal)?,
        event_types: serde_json::from_str(&row.event_types).map_err(ServiceError::internal)?,
        id: row.id,
        description: row.description,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        rate_limit_per_second: row.rate_limit_per_second,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    })
}

async fn row(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<webhook::Model> {
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("webhook"))
}

pub async fn list(db: &DatabaseConnection, project_id: &str, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<Webhook>> {
    let select = webhook::Entity::find().filter(webhook::Column::ProjectId.eq(project_id));
    let lister = Keyset::new(select, webhook::Column::CreatedAtMs, webhook::Column::Id, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() });
    let page = lister.page(db, limit, cursor).await?;
    let rows = page.rows.into_iter().map(read).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page { rows, next_cursor: page.next_cursor })
}

/// Applies `change` to the endpoint's current settings and checks the result as [`create`] does; a
/// refusal changes nothing. The checks (a changed URL is resolved) run before the write lock is
/// taken; a concurrent update between the two is overwritten, as with any PATCH.
pub async fn update(
    store: &EventStore,
    project_id: &str,
    id: &str,
    meta: &EventMetadata,
    allow_private: bool,
    change: impl FnOnce(Settings) -> Settings,
) -> ServiceResult<Webhook> {
    let now = get(store.db(), project_id, id).await?;
    let current_url = now.url.as_str().to_owned();
    let current = Settings {
        url: now.url,
        event_types: now.event_types,
        description: now.description,
        enabled: now.enabled,
        rate_limit_per_second: now.rate_limit_per_second,
    };
    let s = change(current);
    s.check()?;
    if s.url.as_str() != current_url {
        check_url(&s.url, allow_private).await?;
    }
    let writer = store.begin().await?;
    row(writer.conn(), project_id, id).await?;
    let event = DomainEvent::WebhookUpdated(WebhookUpdated {
        id: id.to_owned(),
        project_id: project_id.to_owned(),
        url: s.url,
        event_types: s.event_types,
        description: s.description,
        enabled: s.enabled,
        rate_limit_per_second: s.rate_limit_per_second,
    });
    writer.append(meta, vec![event]).await?;
    let webhook = get(writer.conn(), project_id, id).await?;
    writer.commit().await?;
    Ok(webhook)
}

/// Removes the endpoint; its pending sendouts fail at their next attempt.
pub async fn delete(store: &EventStore, project_id: &str, id: &str, meta: &EventMetadata) -> ServiceResult<()> {
    let writer = store.begin().await?;
    row(writer.conn(), project_id, id).await?;
    writer.append(meta, vec![DomainEvent::WebhookDeleted(WebhookRef { id: id.to_owned(), project_id: project_id.to_owned() })]).await?;
    writer.commit().await?;
    Ok(())
}

/// The endpoint's signing secrets, opened.
pub async fn secrets(store: &EventStore, project_id: &str, id: &str) -> ServiceResult<SigningSecrets> {
    open_secrets(store.vault(), &row(store.db(), project_id, id).await?).map_err(ServiceError::internal)
}

/// A new secret; the old one signs beside it for 24 hours.
pub async fn rotate_secret(store: &EventStore, project_id: &str, id: &str, meta: &EventMetadata) -> ServiceResult<SigningSecrets> {
    let writer = store.begin().await?;
    row(writer.conn(), project_id, id).await?;
    let event = DomainEvent::WebhookSecretRotated(WebhookSecretRotated {
        id: id.to_owned(),
        project_id: project_id.to_owned(),
        secret: store.vault().seal(&new_secret(), id),
        previous_secret_until_ms: now_ms() + ROTATION_OVERLAP_MS,
    });
    writer.append(meta, vec![event]).await?;
    let rotated = row(writer.conn(), project_id, id).await?;
    writer.commit().await?;
    open_secrets(store.vault(), &rotated).map_err(ServiceError::internal)
}

/// A projection row's secrets, opened (each is sealed for its endpoint's id).
pub fn open_secrets(vault: &Vault, row: &webhook::Model) -> Result<SigningSecrets, VaultError> {
    let open = |text: &str| vault.open(&SealedSecret::stored(text.to_owned()), &row.id);
    Ok(SigningSecrets {
        secret: open(&row.secret)?,
        previous: row.previous_secret.as_deref().map(open).transpose()?,
        previous_until_ms: row.previous_secret_until_ms,
    })
}

/// Schedules a `webhook_recovery` task that sends again every sendout matching `filter`.
/// Sends a `webhook.test` event to this endpoint alone, whatever its event types and even while it
/// is disabled, so that a user can check the receiver and its signature check; answers with the
/// sendout, delivered like any other.
pub async fn send_test(store: &EventStore, project_id: &str, id: &str, meta: &EventMetadata) -> ServiceResult<Sendout> {
    let endpoint = get(store.db(), project_id, id).await?;
    let data = json!({ "message": "A test event from Logbook.", "webhook_id": endpoint.id });
    let DomainEvent::EventPublished(event) = super::events::system_event(project_id, "webhook.test", data) else {
        unreachable!("system_event publishes an event")
    };
    let sendout = SendoutCreated {
        id: new_id(IdKind::Sendout),
        project_id: project_id.to_owned(),
        webhook_id: endpoint.id.clone(),
        url: endpoint.url.as_str().to_owned(),
        event_id: event.id.clone(),
        event_type: event.event_type.as_str().to_owned(),
        source_id: None,
        created_at_ms: event.created_at_ms,
    };
    let sendout_id = sendout.id.clone();
    store.append(meta, vec![DomainEvent::EventPublished(event), DomainEvent::SendoutCreated(sendout)]).await?;
    super::sendouts::get(store.db(), project_id, &sendout_id).await
}

pub async fn schedule_recovery(
    store: &EventStore,
    project_id: &str,
    meta: &EventMetadata,
    filter: SendoutFilter,
    related: Vec<RelatedRef>,
) -> ServiceResult<crate::domain::task::Task> {
    let task = tasks::scheduled(meta, NewTask {
        project_id: project_id.to_owned(),
        task_type: TaskType::WebhookRecovery,
        params: json!({ "filter": filter }),
        related,
        total: None,
    });
    let id = task.id.clone();
    store.append(meta, vec![DomainEvent::TaskScheduled(task)]).await?;
    tasks::get(store.db(), project_id, &id).await
}

/// `POST /v1/webhooks/{id}/recover`: the endpoint's failed sendouts in `[since, until)`.
pub async fn recover(
    store: &EventStore,
    project_id: &str,
    id: &str,
    meta: &EventMetadata,
    since: i64,
    until: Option<i64>,
) -> ServiceResult<crate::domain::task::Task> {
    row(store.db(), project_id, id).await?;
    let filter = SendoutFilter {
        status: vec![SendoutStatus::Failed],
        webhook_id: vec![id.to_owned()],
        created_after: Some(since),
        created_before: until,
        ..Default::default()
    };
    schedule_recovery(store, project_id, meta, filter, vec![RelatedRef { kind: RelatedKind::Webhook, id: id.to_owned() }]).await
}

/// One stored secret to re-seal: in an event's payload (by `seq`) or in an endpoint's row.
enum Reseal {
    Event { seq: i64, payload: String },
    /// `was` is what the row held when read: a rotation committed meanwhile is left alone.
    Row { id: String, secret: String, previous: Option<String>, was: (String, Option<String>) },
}

/// Re-seals, under the vault's current key, every secret sealed with a previous key (or stored in
/// plaintext by a version before sealing), in the event log and in the endpoints' rows; run at
/// start-up. A secret sealed with a key this node lacks stops the start, since it could not sign.
pub async fn reseal_secrets(store: &EventStore) -> anyhow::Result<usize> {
    if pending_reseals(store.db(), store.vault()).await?.is_empty() {
        return Ok(0);
    }
    let writer = store.begin().await?;
    let conn = writer.conn();
    let changes = pending_reseals(conn, store.vault()).await?;
    crate::dialect::grant_purge_permit(conn, "reseal").await?;
    for change in &changes {
        match change {
            Reseal::Event { seq, payload } => {
                event_log::Entity::update_many().col_expr(event_log::Column::Payload, Expr::value(payload)).filter(event_log::Column::Seq.eq(*seq)).exec(conn).await?;
            }
            Reseal::Row { id, secret, previous, was } => {
                let was_previous = match &was.1 {
                    Some(p) => webhook::Column::PreviousSecret.eq(p.as_str()),
                    None => webhook::Column::PreviousSecret.is_null(),
                };
                webhook::Entity::update_many()
                    .col_expr(webhook::Column::Secret, Expr::value(secret))
                    .col_expr(webhook::Column::PreviousSecret, Expr::value(previous.clone()))
                    .filter(webhook::Column::Id.eq(id))
                    .filter(webhook::Column::Secret.eq(was.0.as_str()))
                    .filter(was_previous)
                    .exec(conn)
                    .await?;
            }
        }
    }
    crate::dialect::revoke_purge_permit(conn, "reseal").await?;
    writer.commit().await?;
    Ok(changes.len())
}

async fn pending_reseals(conn: &impl ConnectionTrait, vault: &Vault) -> anyhow::Result<Vec<Reseal>> {
    let fail = |what: &str, e: VaultError| anyhow::anyhow!("the webhook secret of {what} cannot be opened: {e}");
    let mut changes = Vec::new();
    let events = event_log::Entity::find()
        .select_only()
        .columns([event_log::Column::Seq, event_log::Column::StreamId, event_log::Column::Payload])
        .filter(Expr::cust(migration::VERSIONED_STREAMS))
        .filter(event_log::Column::StreamType.eq("webhook"))
        .filter(event_log::Column::EventType.is_in(["webhook.created", "webhook.secret_rotated"]))
        .into_tuple::<(i64, String, String)>()
        .all(conn)
        .await?;
    for (seq, webhook_id, payload) in events {
        let mut content: serde_json::Value = serde_json::from_str(&payload)?;
        let Some(stored) = content.get("secret").and_then(|s| s.as_str()) else { continue };
        let sealed = SealedSecret::stored(stored.to_owned());
        if let Some(resealed) = vault.reseal(&sealed, &webhook_id).map_err(|e| fail(&format!("event {seq}"), e))? {
            content["secret"] = resealed.into_string().into();
            changes.push(Reseal::Event { seq, payload: content.to_string() });
        }
    }
    for row in webhook::Entity::find().all(conn).await? {
        let reseal = |text: &str| vault.reseal(&SealedSecret::stored(text.to_owned()), &row.id).map_err(|e| fail(&row.id, e));
        let secret = reseal(&row.secret)?;
        let previous = row.previous_secret.as_deref().map(reseal).transpose()?.flatten();
        if secret.is_some() || previous.is_some() {
            changes.push(Reseal::Row {
                secret: secret.map_or(row.secret.clone(), SealedSecret::into_string),
                previous: previous.map(SealedSecret::into_string).or(row.previous_secret.clone()),
                was: (row.secret.clone(), row.previous_secret.clone()),
                id: row.id.clone(),
            });
        }
    }
    Ok(changes)
}
