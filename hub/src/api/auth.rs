//! `/auth`: register (admin), login, refresh (rotating cookie), logout, me.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::auth::{self as a, Role, ACCESS_TTL_SECS, REFRESH_COOKIE, REFRESH_TTL_SECS};
use crate::db::models::User;
use crate::db::schema::{refresh_tokens, users};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![register, login, refresh, logout, me, users_list, change_password]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserOut {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// The password was set at first start; the console asks for a new one.
    pub must_change_password: bool,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        UserOut {
            id: u.id,
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            username: u.username,
            email: u.email,
            is_active: u.is_active,
            created_at: u.created_at,
            must_change_password: u.must_change_password,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    /// For clients without cookies; browsers use the httpOnly cookie.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenOut {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub user: UserOut,
}

fn validate_register(r: &RegisterIn) -> ApiResult<()> {
    let ok_name = (3..=50).contains(&r.username.len())
        && r.username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok_name {
        return Err(ApiError::field("username", "3-50 characters: letters, digits, _ . -"));
    }
    let at = r.email.find('@');
    if r.email.len() > 255
        || !at.is_some_and(|i| i > 0 && i + 1 < r.email.len())
        || r.email.contains(char::is_whitespace)
    {
        return Err(ApiError::field("email", "not an email address"));
    }
    check_password("password", &r.password)
}

fn check_password(field: &'static str, p: &str) -> ApiResult<()> {
    if p.chars().count() < 10 || p.len() > 256 {
        return Err(ApiError::field(field, "10-256 characters"));
    }
    Ok(())
}

#[rocket::post("/auth/register", data = "<body>")]
pub async fn register(
    _auth: Auth<Admin>,
    app: &State<App>,
    body: Body<RegisterIn>,
) -> ApiResult<(Status, Json<UserOut>)> {
    let r = body.0;
    validate_register(&r)?;
    let hashed = a::hash_password(&r.password)?;
    let user = User {
        id: Uuid::new_v4(),
        username: r.username,
        email: r.email,
        hashed_password: hashed,
        role: r.role.unwrap_or(Role::Viewer).as_str().into(),
        is_active: true,
        created_at: Utc::now(),
        must_change_password: false,
    };
    let user = app
        .db
        .run(move |c| {
            Ok(diesel::insert_into(users::table)
                .values(&user)
                .returning(User::as_returning())
                .get_result(c)?)
        })
        .await?;
    Ok((Status::Created, Json(user.into())))
}

/// Issues a token pair and stores the refresh token's id so that it can be rotated once.
async fn issue_pair(app: &App, user: User, cookies: &CookieJar<'_>) -> ApiResult<TokenOut> {
    let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
    let jti = Uuid::new_v4();
    let access = app
        .keys
        .issue(user.id, &user.username, role, "access", Uuid::new_v4(), ACCESS_TTL_SECS);
    let refresh = app
        .keys
        .issue(user.id, &user.username, role, "refresh", jti, REFRESH_TTL_SECS);
    let uid = user.id;
    app.db
        .run(move |c| {
            diesel::insert_into(refresh_tokens::table)
                .values((
                    refresh_tokens::id.eq(jti),
                    refresh_tokens::user_id.eq(uid),
                    refresh_tokens::expires_at.eq(Utc::now() + Duration::seconds(REFRESH_TTL_SECS)),
                ))
                .execute(c)?;
            Ok(())
        })
        .await?;
    let cookie = Cookie::build((REFRESH_COOKIE, refresh.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/api/v1/auth")
        .max_age(rocket::time::Duration::seconds(REFRESH_TTL_SECS));
    cookies.add(cookie);
    Ok(TokenOut {
        access_token: access,
        refresh_token: refresh,
        token_type: "bearer",
        expires_in: ACCESS_TTL_SECS,
        user: user.into(),
    })
}

#[rocket::post("/auth/login", data = "<body>")]
pub async fn login(
    app: &State<App>,
    ip: Option<std::net::IpAddr>,
    cookies: &CookieJar<'_>,
    body: Body<LoginIn>,
) -> ApiResult<Json<TokenOut>> {
    let LoginIn { username, password } = body.0;
    let client = ip.map(|i| i.to_string()).unwrap_or_default();
    app.login_limit
        .check(&format!("{client}|{username}"))
        .map_err(ApiError::too_many)?;
    let name = username.clone();
    let user = app
        .db
        .run(move |c| {
            Ok(users::table
                .filter(users::username.eq(name))
                .select(User::as_select())
                .first(c)
                .optional()?)
        })
        .await?;
    // Hashing runs on the blocking pool: argon2 takes tens of milliseconds.
    let hash = user
        .as_ref()
        .map(|u| u.hashed_password.clone())
        .unwrap_or_else(|| a::dummy_hash().to_string());
    let ok = rocket::tokio::task::spawn_blocking(move || a::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match user {
        Some(u) if ok && u.is_active => {
            tracing::info!(user = %u.username, "login");
            Ok(Json(issue_pair(app, u, cookies).await?))
        }
        _ => {
            tracing::info!(user = %username, %client, "failed login");
            Err(ApiError::unauthorized("wrong username or password"))
        }
    }
}

#[rocket::post("/auth/refresh", data = "<body>")]
pub async fn refresh(
    app: &State<App>,
    cookies: &CookieJar<'_>,
    body: Option<Body<RefreshIn>>,
) -> ApiResult<Json<TokenOut>> {
    let token = body
        .and_then(|b| b.0.refresh_token)
        .or_else(|| cookies.get(REFRESH_COOKIE).map(|c| c.value().to_string()))
        .ok_or_else(|| ApiError::unauthorized("no refresh token (cookie or body)"))?;
    let claims = app
        .keys
        .verify(&token, "refresh")
        .ok_or_else(|| ApiError::unauthorized("invalid or expired refresh token"))?;
    let (jti, uid) = (claims.jti, claims.sub);
    // Rotation: the token is revoked as it is used; a second use fails.
    let user = app
        .db
        .run(move |c| {
            c.transaction(|c| {
                let revoked = diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::id.eq(jti))
                        .filter(refresh_tokens::user_id.eq(uid))
                        .filter(refresh_tokens::revoked_at.is_null()),
                )
                .set(refresh_tokens::revoked_at.eq(Utc::now()))
                .execute(c)?;
                if revoked == 0 {
                    return Ok(None);
                }
                Ok(users::table.find(uid).select(User::as_select()).first(c).optional()?)
            })
        })
        .await?;
    match user {
        Some(u) if u.is_active => Ok(Json(issue_pair(app, u, cookies).await?)),
        _ => Err(ApiError::unauthorized("refresh token already used or revoked")),
    }
}

/// Revokes every refresh token of the user: their sessions end when the access tokens expire.
fn end_sessions(c: &mut diesel::PgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Utc::now()))
    .execute(c)
}

#[rocket::post("/auth/logout")]
pub async fn logout(auth: Auth<Viewer>, app: &State<App>, cookies: &CookieJar<'_>) -> ApiResult<Status> {
    let uid = auth.user_id();
    app.db
        .run(move |c| {
            end_sessions(c, uid)?;
            Ok(())
        })
        .await?;
    cookies.remove(Cookie::build(REFRESH_COOKIE).path("/api/v1/auth"));
    Ok(Status::NoContent)
}

#[rocket::get("/auth/me")]
pub async fn me(auth: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<UserOut>> {
    let uid = auth.user_id();
    let user = app
        .db
        .run(move |c| Ok(users::table.find(uid).select(User::as_select()).first(c)?))
        .await?;
    Ok(Json(user.into()))
}

/// Every user account, oldest first (admins).
#[rocket::get("/auth/users")]
pub async fn users_list(_a: Auth<Admin>, app: &State<App>) -> ApiResult<Json<Vec<UserOut>>> {
    let rows = app
        .db
        .run(|c| {
            Ok(users::table
                .order(users::created_at.asc())
                .select(User::as_select())
                .load(c)?)
        })
        .await?;
    Ok(Json(rows.into_iter().map(UserOut::from).collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordIn {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the signed-in user's password (204). The current password is checked and counted by
/// the login limiter; the user's other sessions end (their refresh tokens are revoked).
#[rocket::post("/auth/password", data = "<body>")]
pub async fn change_password(
    auth: Auth<Viewer>,
    app: &State<App>,
    ip: Option<std::net::IpAddr>,
    body: Body<PasswordIn>,
) -> ApiResult<Status> {
    let PasswordIn {
        current_password,
        new_password,
    } = body.0;
    check_password("new_password", &new_password)?;
    if new_password == current_password {
        return Err(ApiError::field("new_password", "must differ from the current password"));
    }
    let uid = auth.user_id();
    let user = app
        .db
        .run(move |c| Ok(users::table.find(uid).select(User::as_select()).first(c)?))
        .await?;
    let client = ip.map(|i| i.to_string()).unwrap_or_default();
    app.login_limit
        .check(&format!("{client}|{}", user.username))
        .map_err(ApiError::too_many)?;
    let hash = user.hashed_password.clone();
    // Both argon2 runs are CPU work: off the async workers.
    let hashed = rocket::tokio::task::spawn_blocking(move || {
        a::verify_password(&current_password, &hash).then(|| a::hash_password(&new_password))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let Some(hashed) = hashed else {
        return Err(ApiError::field("current_password", "not the current password"));
    };
    let hashed = hashed?;
    app.db
        .run(move |c| {
            c.transaction(|c| {
                diesel::update(users::table.find(uid))
                    .set((users::hashed_password.eq(hashed), users::must_change_password.eq(false)))
                    .execute(c)?;
                end_sessions(c, uid)?;
                Ok::<_, diesel::result::Error>(())
            })?;
            Ok(())
        })
        .await?;
    tracing::info!(user = %user.username, "password changed");
    Ok(Status::NoContent)
}
