//! Request guards: `Auth<R>` (bearer JWT, least role `R`, per-user rate limit) and `Body<T>` (strict JSON).

use std::marker::PhantomData;

use rocket::data::{Data, FromData, Outcome as DataOutcome, ToByteUnit};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::Request;
use serde::de::DeserializeOwned;

use super::{Claims, Role};
use crate::error::ApiError;
use crate::App;

pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}
#[derive(Debug)]
pub struct Viewer;
#[derive(Debug)]
pub struct Operator;
#[derive(Debug)]
pub struct Admin;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Operator {
    const ROLE: Role = Role::Operator;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// An authenticated user whose role is at least `R`.
#[derive(Debug)]
pub struct Auth<R: MinRole> {
    pub claims: Claims,
    _role: PhantomData<R>,
}

impl<R: MinRole> Auth<R> {
    pub fn user_id(&self) -> uuid::Uuid {
        self.claims.sub
    }
}

fn app<'r>(req: &'r Request<'_>) -> Result<&'r App, ApiError> {
    req.rocket()
        .state::<App>()
        .ok_or_else(|| ApiError::internal("hub state missing"))
}

/// Checks a bearer token (or a WebSocket `token` query value) and the role.
pub fn authorize(app: &App, token: Option<&str>, need: Role) -> Result<Claims, ApiError> {
    let token = token.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let claims = app
        .keys
        .verify(token, "access")
        .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
    if claims.role < need {
        return Err(ApiError::forbidden(format!(
            "this action needs the {} role",
            need.as_str()
        )));
    }
    app.user_limit
        .check(&claims.sub.to_string())
        .map_err(ApiError::too_many)?;
    Ok(claims)
}

#[rocket::async_trait]
impl<'r, R: MinRole> FromRequest<'r> for Auth<R> {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let result = app(req).and_then(|app| {
            let token = req
                .headers()
                .get_one("Authorization")
                .and_then(|h| h.strip_prefix("Bearer "));
            authorize(app, token.map(str::trim), R::ROLE)
        });
        match result {
            Ok(claims) => Outcome::Success(Auth {
                claims,
                _role: PhantomData,
            }),
            Err(e) => Outcome::Error(e.stash(req)),
        }
    }
}

/// A JSON body parsed strictly (unknown fields rejected by the types), with 413 over the limit and
/// 422 naming the offending field.
#[derive(Debug)]
pub struct Body<T>(pub T);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for Body<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> DataOutcome<'r, Self> {
        let limit = match app(req) {
            Ok(app) => app.config.max_body_bytes,
            Err(e) => return DataOutcome::Error(e.stash(req)),
        };
        let bytes = match data.open(limit.bytes()).into_bytes().await {
            Ok(b) if b.is_complete() => b.into_inner(),
            Ok(_) => {
                let e = ApiError::new(
                    Status::PayloadTooLarge,
                    "payload_too_large",
                    format!("request body is larger than {limit} bytes (max_body_bytes)"),
                );
                return DataOutcome::Error(e.stash(req));
            }
            Err(e) => {
                return DataOutcome::Error(
                    ApiError::new(Status::BadRequest, "bad_request", format!("cannot read body: {e}")).stash(req),
                )
            }
        };
        match parse_json(&bytes) {
            Ok(v) => DataOutcome::Success(Body(v)),
            Err(e) => DataOutcome::Error(e.stash(req)),
        }
    }
}

/// Parses JSON; errors name the field path (`flows[3].features`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(Status::BadRequest, "invalid_json", format!("malformed JSON: {inner}"));
        }
        let mut path = e.path().to_string();
        let msg = inner.to_string();
        // serde names a missing field in the message; the path stops at its parent.
        if let Some(rest) = msg.split("missing field `").nth(1) {
            let name = rest.split('`').next().unwrap_or("");
            path = if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
        }
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::field(if path == "." { "body".to_string() } else { path }, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        v: Vec<u8>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    #[test]
    fn errors_name_the_field() {
        let field = |s: &str| {
            parse_json::<Outer>(s.as_bytes()).expect_err("must fail").fields[0]
                .field
                .clone()
        };
        assert_eq!(
            field(r#"{"name":"a","items":[{"v":[1]},{"v":[300]}]}"#),
            "items[1].v[0]"
        );
        assert_eq!(field(r#"{"name":"a","items":[],"extra":1}"#), "extra");
        assert_eq!(field(r#"{"items":[]}"#), "name");
        assert_eq!(
            parse_json::<Outer>(b"{").expect_err("must fail").status,
            Status::BadRequest
        );
    }
}
