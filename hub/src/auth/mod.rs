//! Users' authentication: argon2id passwords, JWT access/refresh tokens, role guards, rate limits.

pub mod guard;
pub mod limit;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;
pub const REFRESH_COOKIE: &str = "gatewatch_refresh";

/// Roles in increasing power; a route names the least role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub name: String,
    pub role: Role,
    /// "access" or "refresh": a refresh token is never accepted as an access token.
    pub typ: String,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// HS256 keys made from the secret in the data directory.
pub struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Refuses an empty secret (the data directory's key is at least 32 bytes).
    pub fn new(secret: &[u8]) -> Result<Keys, jsonwebtoken::errors::Error> {
        Ok(Keys {
            enc: EncodingKey::from_secret(secret)?,
            dec: DecodingKey::from_secret(secret)?,
        })
    }

    pub fn issue(&self, user: Uuid, name: &str, role: Role, typ: &str, jti: Uuid, ttl: i64) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            name: name.into(),
            role,
            typ: typ.into(),
            jti,
            iat: now,
            exp: now + ttl,
        };
        // Encoding HS256 with a valid key only fails on serialisation, which these claims cannot hit.
        encode(&Header::new(Algorithm::HS256), &claims, &self.enc).unwrap_or_default()
    }

    pub fn verify(&self, token: &str, typ: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 5;
        let data = decode::<Claims>(token, &self.dec, &v).ok()?;
        (data.claims.typ == typ).then_some(data.claims)
    }
}

pub fn hash_password(password: &str) -> Result<String, crate::error::ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| crate::error::ApiError::internal(format!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user does not exist, so timing does not reveal usernames.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_type_and_key() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef").expect("keys");
        let id = Uuid::new_v4();
        let t = k.issue(id, "a", Role::Operator, "access", Uuid::new_v4(), 60);
        assert_eq!(k.verify(&t, "access").map(|c| c.sub), Some(id));
        assert!(k.verify(&t, "refresh").is_none());
        assert!(Keys::new(b"another key another key another!")
            .expect("keys")
            .verify(&t, "access")
            .is_none());
        let expired = k.issue(id, "a", Role::Admin, "access", Uuid::new_v4(), -60);
        assert!(k.verify(&expired, "access").is_none());
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
