//! Extractors whose rejections answer in the contract's error body.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::domain::pagination::{Cursor, Limit};
use crate::domain::params::Params;
use crate::error::{ApiError, ErrorCode};

/// A JSON body. Syntax errors answer 400; content that breaks a rule answers 422 naming the field
/// by its JSON path (`logs[2].channel`).
pub struct Json<T>(pub T);

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
            let bytes = bytes.await.map_err(|e| {
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

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed("The request body is empty; send a JSON object."));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::malformed(format!("The request body is not valid JSON: {e}.")))?;
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

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Params::parse(req.query_string())))
    }
}

/// Reads `limit` and `cursor` and refuses any parameter not in `known` (besides those two).
pub fn paging(params: &Params, known: &[&str]) -> Result<(Limit, Option<Cursor>), ApiError> {
    if let Some(unknown) = params.first_unknown(known).filter(|p| !["limit", "cursor"].contains(p)) {
        return Err(ApiError::invalid_query(unknown, "is not a parameter of this list"));
    }
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
