//! The one error shape of the API: `{"error": {"code", "message", "fields"?}}`.

use std::io::Cursor;
use std::sync::Mutex;

use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder};
use rocket::{Request, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: Status,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub retry_after: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: Status, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        ApiError {
            status: Status::UnprocessableEntity,
            code: "validation_failed",
            message: format!("{field}: {message}"),
            fields: vec![FieldError { field, message }],
            retry_after: None,
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(Status::NotFound, "not_found", format!("{what} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Status::Conflict, "conflict", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Status::Unauthorized, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Status::Forbidden, "forbidden", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Status::InternalServerError, "internal", message)
    }
    pub fn too_many(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                Status::TooManyRequests,
                "rate_limited",
                "too many requests; retry later",
            )
        }
    }

    /// Keeps the error for the catcher that renders a failed request guard.
    pub fn stash(self, req: &Request<'_>) -> (Status, Self) {
        let slot = req.local_cache(|| Stash(Mutex::new(None)));
        if let Ok(mut s) = slot.0.lock() {
            *s = Some(self.clone());
        }
        (self.status, self)
    }

    /// The error a guard stashed for this request, if any.
    pub fn stashed(req: &Request<'_>) -> Option<ApiError> {
        req.local_cache(|| Stash(Mutex::new(None)))
            .0
            .lock()
            .ok()
            .and_then(|s| s.clone())
    }
}

struct Stash(Mutex<Option<ApiError>>);

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match e {
            E::NotFound => ApiError::not_found("record"),
            E::DatabaseError(K::UniqueViolation, info) => {
                let field = info.constraint_name().map(constraint_field).unwrap_or_default();
                ApiError {
                    fields: vec![FieldError {
                        field: field.clone(),
                        message: "already exists".into(),
                    }],
                    ..ApiError::conflict(format!("{field} already exists"))
                }
            }
            E::DatabaseError(K::ForeignKeyViolation, info) => {
                let field = info.constraint_name().map(constraint_field).unwrap_or_default();
                ApiError::field(field, "refers to a record that does not exist or is still in use")
            }
            E::DatabaseError(K::CheckViolation, info) => ApiError::field(
                info.constraint_name().map(constraint_field).unwrap_or_default(),
                "value out of range",
            ),
            // PostgreSQL text cannot hold NUL; whatever field carried it, it is the client's input.
            E::DatabaseError(_, info) if info.message().contains("0x00") => {
                ApiError::field("", "text must not contain NUL (\\0) characters")
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::internal("database error")
            }
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Query(q) => q.into(),
            other => {
                tracing::error!(error = %other, "database unavailable");
                ApiError::new(
                    Status::ServiceUnavailable,
                    "database_unavailable",
                    "the database is not reachable",
                )
            }
        }
    }
}

/// `devices_name_key` → `name`: PostgreSQL names constraints table_column_suffix.
fn constraint_field(name: &str) -> String {
    let trimmed = name
        .trim_end_matches("_key")
        .trim_end_matches("_fkey")
        .trim_end_matches("_check");
    for table in [
        "devices_",
        "users_",
        "agents_",
        "predictions_",
        "alerts_",
        "traffic_logs_",
        "prevention_rules_",
    ] {
        if let Some(rest) = trimmed.strip_prefix(table) {
            return rest.to_string();
        }
    }
    trimmed.to_string()
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        if self.status.code >= 500 {
            tracing::warn!(code = self.code, message = %self.message, "server error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                fields: self.fields,
            },
        };
        let json = serde_json::to_string(&body).unwrap_or_else(|_| "{\"error\":{\"code\":\"internal\"}}".into());
        let mut resp = Response::build();
        resp.status(self.status)
            .header(ContentType::JSON)
            .sized_body(json.len(), Cursor::new(json));
        if let Some(secs) = self.retry_after {
            resp.header(Header::new("Retry-After", secs.to_string()));
        }
        Ok(resp.finalize())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
