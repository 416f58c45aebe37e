//! Extractors whose rejections answer in the contract's error body.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::domain::filter::{Context, Filter, FilterErrors, Values};
use crate::domain::histogram::{Buckets, Interval};
use crate::domain::pagination::{Cursor, Limit};
use crate::domain::params::{self, Params};
use crate::domain::time::{ProjectTimeZone, now_ms};
use crate::error::{ApiError, ErrorCode, FieldError};

/// A JSON body. Syntax errors answer 400; content that breaks a rule answers 422 naming the field
/// by its JSON path (`logs[2].channel`).
pub struct Json<T>(pub T);

/// How long a JSON body may take to arrive: a stalled client must not hold a worker's request.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
        if let Some(ct) = content_type.filter(|ct| !ct.contains("json")) {
            let message = format!("Send a JSON body with Content-Type: application/json (got {ct}).");
            return Box::pin(ready(Err(ApiError::new(ErrorCode::UnsupportedMediaType, message))));
        }
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let Ok(bytes) = tokio::time::timeout(BODY_TIMEOUT, bytes).await else {
                let message = format!("The request body did not arrive within {} s.", BODY_TIMEOUT.as_secs());
                return Err(ApiError::new(ErrorCode::RequestTimeout, message));
            };
            let bytes = bytes.map_err(|e| {
                if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "The request body is larger than LOGBOOK_MAX_BODY_BYTES allows.")
                } else {
                    ApiError::malformed(format!("The request body could not be read: {e}."))
                }
            })?;
            parse_json(&bytes).map(Json)
        })
    }
}

/// How deep a request body may nest: far beyond what an API payload needs, and well within what
/// every reader of stored bodies (and PostgreSQL's JSON functions) handles. (serde_json alone
/// refuses more than 128 levels, as malformed.)
pub const MAX_JSON_DEPTH: usize = 64;

/// How many arrays and objects deep `value` nests (`{"a": 1}` is 1), without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|v| (v, level + 1)));
    }
    deepest
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed("The request body is empty; send a JSON object."));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::malformed(format!("The request body is not valid JSON: {e}.")))?;
    if depth(&value) > MAX_JSON_DEPTH {
        return Err(ApiError::invalid_field("body", format!("must not nest arrays and objects deeper than {MAX_JSON_DEPTH} levels")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        ApiError::invalid_field(field, message)
    })
}

impl FromRequest for Params {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    /// Each parameter's values are checked by [`params::problem`]; a NUL in a name is refused too.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let params = Params::parse(req.query_string());
        let mut by_name: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        for (name, value) in params.pairs() {
            by_name.entry(name).or_default().push(value);
        }
        let bad = by_name.iter().find_map(|(name, values)| match params::problem(values) {
            Some(problem) => Some((*name, problem)),
            None if name.contains('\0') => Some((*name, "must not contain NUL characters".to_owned())),
            None => None,
        });
        ready(match bad {
            Some((name, message)) => Err(ApiError::invalid_query(&name.replace('\0', ""), message)),
            None => Ok(params),
        })
    }
}

/// Reads `limit` and `cursor` and refuses any parameter not in `known` (besides those two).
pub fn paging(params: &Params, known: &[&str]) -> Result<(Limit, Option<Cursor>), ApiError> {
    if let Some(unknown) = params.first_unknown(known).filter(|p| !["limit", "cursor"].contains(p)) {
        return Err(ApiError::invalid_query(unknown, "is not a parameter of this list"));
    }
    limit_and_cursor(params)
}

fn limit_and_cursor(params: &Params) -> Result<(Limit, Option<Cursor>), ApiError> {
    let limit = match params.one("limit").map_err(|e| ApiError::invalid_query("limit", e.0))? {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .and_then(|n| Limit::try_from(n).ok())
            .ok_or_else(|| ApiError::invalid_query("limit", "must be a whole number from 1 to 1000"))?,
        None => Limit::default(),
    };
    let cursor = match params.one("cursor").map_err(|e| ApiError::invalid_query("cursor", e.0))? {
        Some(v) => Some(Cursor::decode(v).map_err(|e| ApiError::invalid_query("cursor", e.0))?),
        None => None,
    };
    Ok((limit, cursor))
}

/// A list request: the resource's filter, `limit` and `cursor`, read from the query string in the
/// project's zone; an unknown parameter or a bad value is a 400 naming every bad one.
pub struct ListQuery<F> {
    pub filter: F,
    pub limit: Limit,
    pub cursor: Option<Cursor>,
}

impl<F: Filter> ListQuery<F> {
    pub fn read(params: &Params, zone: &ProjectTimeZone) -> Result<Self, ApiError> {
        let names: Vec<&str> = F::FIELDS.iter().map(|f| f.name).collect();
        let (limit, cursor) = paging(params, &names)?;
        let filter = F::from_params(params, Context { zone, now_ms: now_ms() }).map_err(query_errors)?;
        Ok(Self { filter, limit, cursor })
    }
}

/// Reads the filter from a request body's `filters` object (a bulk retry, an export): a 422 naming
/// every bad one as `filters.<name>`.
pub fn json_filter<F: Filter>(filters: &serde_json::Value, zone: &ProjectTimeZone) -> Result<F, ApiError> {
    F::from_json(filters, Context { zone, now_ms: now_ms() })
        .map_err(|errors| ApiError::validation(errors.into_iter().map(|(field, message)| FieldError { field, message }).collect()))
}

/// A 400 naming every bad query parameter.
pub fn query_errors(errors: FilterErrors) -> ApiError {
    let mut err = match errors.first() {
        Some((field, message)) => ApiError::invalid_query(field, message.clone()),
        None => ApiError::malformed("The query string is invalid."),
    };
    err.details = errors.into_iter().map(|(field, message)| FieldError { field, message }).collect();
    err
}

/// An aggregate over a list's rows (a histogram, facets, failure groups): the resource's filter
/// and the request's own parameters `own`, read like a list's; any other parameter is a 400.
pub fn aggregate_filter<F: Filter>(params: &Params, zone: &ProjectTimeZone, own: &[&str]) -> Result<F, ApiError> {
    let known: Vec<&str> = F::FIELDS.iter().map(|f| f.name).chain(own.iter().copied()).collect();
    if let Some(unknown) = params.first_unknown(&known) {
        return Err(ApiError::invalid_query(unknown, "is not a parameter of this request"));
    }
    F::from_params(params, Context { zone, now_ms: now_ms() }).map_err(query_errors)
}

/// A histogram request's buckets: its `interval` (chosen from the range when absent) over the
/// filter's range `[after, before)`, which is the 24 hours before `before` (now by default) when
/// `after` is not given.
pub fn histogram_buckets(params: &Params, zone: &ProjectTimeZone, after: Option<i64>, before: Option<i64>) -> Result<Buckets, ApiError> {
    const DAY_MS: i64 = 86_400_000;
    let interval = match params.one("interval").map_err(|e| ApiError::invalid_query("interval", e.0))? {
        Some(v) => Some(Interval::parse(v).map_err(|e| ApiError::invalid_query("interval", e.0))?),
        None => None,
    };
    let before = before.unwrap_or_else(now_ms);
    Buckets::new(interval, after.unwrap_or(before - DAY_MS), before, zone).map_err(|e| ApiError::invalid_query("interval", e.0))
}

/// The query parameters of a filter, documented from its fields: the docs cannot drift from what
/// the list reads.
pub struct FilterParams<F>(std::marker::PhantomData<F>);

/// A list's query parameters: its filter's, `limit` and `cursor`.
pub struct ListParams<F>(std::marker::PhantomData<F>);

fn query_param(name: &str, doc: &str, schema: utoipa::openapi::RefOr<utoipa::openapi::Schema>) -> utoipa::openapi::path::ParameterBuilder {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description((!doc.is_empty()).then(|| doc.to_owned()))
        .schema(Some(schema))
}

impl<F: Filter> utoipa::IntoParams for FilterParams<F> {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::ParameterStyle;
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        use utoipa::openapi::{Ref, RefOr, Schema};
        F::FIELDS
            .iter()
            .map(|field| {
                let value: RefOr<Schema> = match field.values {
                    Values::Text => ObjectBuilder::new().schema_type(Type::String).into(),
                    Values::Instant => ObjectBuilder::new().schema_type(Type::String).into(),
                    Values::OneOf(schema) => Ref::from_schema_name(schema).into(),
                };
                if field.repeats {
                    query_param(field.name, field.doc, ArrayBuilder::new().items(value).into())
                        .style(Some(ParameterStyle::Form))
                        .explode(Some(true))
                        .build()
                } else {
                    query_param(field.name, field.doc, value).build()
                }
            })
            .collect()
    }
}

impl<F: Filter> utoipa::IntoParams for ListParams<F> {
    fn into_params(parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let mut params = FilterParams::<F>::into_params(parameter_in);
        let limit = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(1000));
        params.push(query_param("limit", "1 to 1000, default 50.", limit.into()).build());
        let cursor = ObjectBuilder::new().schema_type(Type::String);
        params.push(query_param("cursor", "The `next_cursor` of the previous page.", cursor.into()).build());
        params
    }
}
